//! Popcorn Linux's thread-migration calls for Rust programs that popvmm runs (static x86-64
//! Linux programs, `-C target-feature=+crt-static`): the same calls as libpopcorn's
//! (`guest-agent/libpopcorn/popcorn.h`), as safe functions returning [`Result`].
//!
//! A node is an island. Outside popvmm (natively) every call fails with [`Errno::ENOSYS`], so a
//! program can run both ways.
//!
//! ```no_run
//! let before = popcorn::getnid();
//! popcorn::migrate_with(1, || println!("on node {:?}", popcorn::getnid()))?;
//! // Here on node 1: same stack, heap, thread-locals, registers.
//! popcorn::migrate(0)?;
//! # Ok::<(), popcorn::Errno>(())
//! ```
//!
//! System call numbers: popvmm serves the calls at 900-903 by default and at Popcorn's own
//! 330-333 with `popvmm launch --popcorn-abi 4.4`. The crate uses 900-903 unless it was built with
//! the `abi-4-4` feature, or the environment variable `POPCORN_ABI` is `4.4` (or `popvmm`) when
//! the first call is made (read once). Never use the 4.4 numbers natively: on Linux 330 is
//! pkey_alloc and 332 statx.
//!
//! No dependency beyond `std`: the system calls are made with `asm!`, and [`migrate`] saves the
//! registers in a [`RegsetX86_64`] whose `rip` is a label after the call, as Popcorn's
//! `migrate()` does, so that the thread resumes from it on the destination.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::arch::{asm, global_asm};
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

/// Popcorn's node limit: the size of [`get_node_info`]'s table.
pub const MAX_NODES: usize = 32;

/// An error of a Popcorn call: the errno it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Not under popvmm (or the wrong ABI).
    pub const ENOSYS: Errno = Errno(38);
    /// A node outside 0..31, nothing proposed (nid -1), or a bad pointer.
    pub const EINVAL: Errno = Errno(22);
    /// The node is the current one.
    pub const EBUSY: Errno = Errno(16);
    /// No such island.
    pub const EAGAIN: Errno = Errno(11);
    /// No such thread.
    pub const ESRCH: Errno = Errno(3);

    /// The errno's name (ENOSYS, EINVAL, ...), or `errno N`.
    pub fn name(self) -> String {
        match self.0 {
            38 => "ENOSYS".into(),
            22 => "EINVAL".into(),
            16 => "EBUSY".into(),
            11 => "EAGAIN".into(),
            3 => "ESRCH".into(),
            14 => "EFAULT".into(),
            n => format!("errno {n}"),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::error::Error for Errno {}

/// The result of a Popcorn call.
pub type Result<T> = std::result::Result<T, Errno>;

/// `struct popcorn_thread_status`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadStatus {
    /// The node the thread runs on.
    pub current_nid: i32,
    /// The node proposed for its next migration, -1: none.
    pub proposed_nid: i32,
    /// Away from the origin: the origin (0); on the origin: -1.
    pub peer_nid: i32,
    /// Away from the origin: the program's pid there; else 0.
    pub peer_pid: i32,
}

/// `struct popcorn_node_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// 1: a node of the program; 0: offline.
    pub status: u32,
    /// 1: x86-64; -1: offline.
    pub arch: i32,
    /// 0 to the caller's own node, 1 to the others; -1: offline.
    pub distance: i32,
}

/// Popcorn's x86-64 register set (`struct regset_x86_64`), 624 bytes: what
/// [`popcorn_migrate_raw`] resumes from on the destination (rip, the general registers and the
/// user flags; the x87, MMX and SSE state travels from the thread itself).
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy, Default)]
pub struct RegsetX86_64 {
    pub rip: u64,
    /// rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp, r8..r15, in this order.
    pub gprs: [u64; 16],
    pub mmx: [u64; 8],
    pub xmm: [u128; 16],
    /// 80-bit values in 16-byte slots.
    pub st: [[u8; 16]; 8],
    /// cs, ss, ds, es, fs, gs.
    pub segments: [u32; 6],
    pub rflags: u64,
}

/// Where the calls are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abi {
    /// 900-903 (popvmm's default).
    Popvmm,
    /// 330-333 (Popcorn's 4.4 kernel; `popvmm launch --popcorn-abi 4.4`).
    Linux44,
}

impl Abi {
    /// The number of popcorn_migrate; the other three follow it.
    pub const fn base(self) -> i64 {
        match self {
            Abi::Popvmm => 900,
            Abi::Linux44 => 330,
        }
    }
}

/// 0: not chosen yet.
static BASE: AtomicI64 = AtomicI64::new(0);

/// The ABI in use: the `abi-4-4` feature, or `POPCORN_ABI` (read at the first call).
pub fn abi() -> Abi {
    let base = match BASE.load(Ordering::Relaxed) {
        0 => {
            let built_in = if cfg!(feature = "abi-4-4") {
                Abi::Linux44
            } else {
                Abi::Popvmm
            };
            let abi = match std::env::var("POPCORN_ABI").as_deref() {
                Ok("4.4") => Abi::Linux44,
                Ok("popvmm") => Abi::Popvmm,
                _ => built_in,
            };
            // Threads racing here compute the same value.
            BASE.store(abi.base(), Ordering::Relaxed);
            abi.base()
        }
        b => b,
    };
    if base == Abi::Linux44.base() {
        Abi::Linux44
    } else {
        Abi::Popvmm
    }
}

/// Chooses the ABI, whatever the feature and the environment say.
pub fn set_abi(abi: Abi) {
    BASE.store(abi.base(), Ordering::Relaxed);
}

const MIGRATE: i64 = 0;
const PROPOSE_MIGRATION: i64 = 1;
const GET_THREAD_STATUS: i64 = 2;
const GET_NODE_INFO: i64 = 3;

fn nr(call: i64) -> i64 {
    abi().base() + call
}

/// A system call with two arguments: the value, or -errno.
///
/// # Safety
/// The call must not break memory safety with these arguments (pointers valid for what the
/// call does with them).
unsafe fn syscall2(nr: i64, a: i64, b: i64) -> i64 {
    let ret: i64;
    // SAFETY: the caller vouches for the arguments; `syscall` clobbers rcx and r11 only, and
    // the kernel reads and writes memory only through the arguments.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a,
            in("rsi") b,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

fn check(r: i64) -> Result<i64> {
    if (-4095..0).contains(&r) {
        Err(Errno(-r as i32))
    } else {
        Ok(r)
    }
}

/// The calling thread's status (popcorn_get_thread_status).
pub fn get_status() -> Result<ThreadStatus> {
    let mut st = ThreadStatus::default();
    // SAFETY: the call writes one `struct popcorn_thread_status` (16 bytes) at the pointer.
    check(unsafe {
        syscall2(
            nr(GET_THREAD_STATUS),
            &mut st as *mut ThreadStatus as i64,
            0,
        )
    })?;
    Ok(st)
}

/// The node the calling thread runs on.
pub fn getnid() -> Result<i32> {
    get_status().map(|s| s.current_nid)
}

/// The caller's node and the table of [`MAX_NODES`] nodes (popcorn_get_node_info).
pub fn get_node_info() -> Result<(i32, [NodeInfo; MAX_NODES])> {
    let mut me: i32 = -1;
    let mut info = [NodeInfo::default(); MAX_NODES];
    // SAFETY: the call writes an int at the first pointer and MAX_NODES entries of 12 bytes at
    // the second.
    check(unsafe {
        syscall2(
            nr(GET_NODE_INFO),
            &mut me as *mut i32 as i64,
            info.as_mut_ptr() as i64,
        )
    })?;
    Ok((me, info))
}

/// How many nodes are online (they are 0..n-1).
pub fn nodes() -> Result<usize> {
    let (_, info) = get_node_info()?;
    Ok(info
        .iter()
        .rposition(|n| n.status == 1)
        .map_or(0, |i| i + 1))
}

/// Proposes node `nid` for thread `tid`'s next migration (tid 0: the caller); the thread follows
/// it with [`check_migrate`] (or `migrate(-1)`). Errors: ESRCH, EINVAL, EAGAIN.
pub fn propose_migration(tid: i32, nid: i32) -> Result<()> {
    // SAFETY: no pointer arguments.
    check(unsafe { syscall2(nr(PROPOSE_MIGRATION), i64::from(tid), i64::from(nid)) }).map(|_| ())
}

/// The raw call: moves the calling thread to node `nid` (-1: the proposed one), resuming it
/// there from `uregs` (null: the call returns 0 on the destination).
///
/// # Safety
/// A non-null `uregs` must describe a state the thread may continue from (rip, rsp and every
/// register the code at rip relies on): the thread jumps there.
pub unsafe fn popcorn_migrate_raw(nid: i32, uregs: *mut RegsetX86_64) -> Result<()> {
    // SAFETY: the caller vouches for uregs; with null the thread just returns on the destination.
    check(unsafe { syscall2(nr(MIGRATE), i64::from(nid), uregs as i64) }).map(|_| ())
}

// long __popcorn_rs_migrate_here(long nr, long nid, struct regset_x86_64 *regs): the same
// routine as libpopcorn's __popcorn_migrate_here (guest-agent/libpopcorn/migrate_x86_64.S): it
// fills *regs so that the thread, resumed from it, returns 0 from this function on the
// destination (rip: the label after the call, rax 0, rdi regs, rsp at entry, the callee-saved
// registers, xmm0-15, segments, rflags), then makes the call. Returns -errno on failure, 1 when
// the call returned 0 without resuming from regs.
global_asm!(
    ".text",
    ".globl __popcorn_rs_migrate_here",
    ".type __popcorn_rs_migrate_here, @function",
    ".p2align 4",
    "__popcorn_rs_migrate_here:",
    "lea .L__popcorn_rs_resumed(%rip), %rax",
    "mov %rax, 0(%rdx)",
    "movq $0, 8(%rdx)",
    "mov %rdx, 16(%rdx)",
    "mov %rcx, 24(%rdx)",
    "mov %rbx, 32(%rdx)",
    "mov %rsi, 40(%rdx)",
    "mov %rdx, 48(%rdx)",
    "mov %rbp, 56(%rdx)",
    "mov %rsp, 64(%rdx)",
    "mov %r8, 72(%rdx)",
    "mov %r9, 80(%rdx)",
    "mov %r10, 88(%rdx)",
    "mov %r11, 96(%rdx)",
    "mov %r12, 104(%rdx)",
    "mov %r13, 112(%rdx)",
    "mov %r14, 120(%rdx)",
    "mov %r15, 128(%rdx)",
    "movdqu %xmm0, 208(%rdx)",
    "movdqu %xmm1, 224(%rdx)",
    "movdqu %xmm2, 240(%rdx)",
    "movdqu %xmm3, 256(%rdx)",
    "movdqu %xmm4, 272(%rdx)",
    "movdqu %xmm5, 288(%rdx)",
    "movdqu %xmm6, 304(%rdx)",
    "movdqu %xmm7, 320(%rdx)",
    "movdqu %xmm8, 336(%rdx)",
    "movdqu %xmm9, 352(%rdx)",
    "movdqu %xmm10, 368(%rdx)",
    "movdqu %xmm11, 384(%rdx)",
    "movdqu %xmm12, 400(%rdx)",
    "movdqu %xmm13, 416(%rdx)",
    "movdqu %xmm14, 432(%rdx)",
    "movdqu %xmm15, 448(%rdx)",
    "xor %eax, %eax",
    "mov %cs, %ax",
    "mov %eax, 592(%rdx)",
    "mov %ss, %ax",
    "mov %eax, 596(%rdx)",
    "mov %ds, %ax",
    "mov %eax, 600(%rdx)",
    "mov %es, %ax",
    "mov %eax, 604(%rdx)",
    "mov %fs, %ax",
    "mov %eax, 608(%rdx)",
    "mov %gs, %ax",
    "mov %eax, 612(%rdx)",
    "pushfq",
    "popq 616(%rdx)",
    "mov %rdi, %rax",
    "mov %rsi, %rdi",
    "mov %rdx, %rsi",
    "syscall",
    "test %rax, %rax",
    "jnz 1f",
    "mov $1, %eax",
    "1:",
    "ret",
    ".L__popcorn_rs_resumed:",
    "movdqu 208(%rdi), %xmm0",
    "movdqu 224(%rdi), %xmm1",
    "movdqu 240(%rdi), %xmm2",
    "movdqu 256(%rdi), %xmm3",
    "movdqu 272(%rdi), %xmm4",
    "movdqu 288(%rdi), %xmm5",
    "movdqu 304(%rdi), %xmm6",
    "movdqu 320(%rdi), %xmm7",
    "movdqu 336(%rdi), %xmm8",
    "movdqu 352(%rdi), %xmm9",
    "movdqu 368(%rdi), %xmm10",
    "movdqu 384(%rdi), %xmm11",
    "movdqu 400(%rdi), %xmm12",
    "movdqu 416(%rdi), %xmm13",
    "movdqu 432(%rdi), %xmm14",
    "movdqu 448(%rdi), %xmm15",
    "xor %eax, %eax",
    "ret",
    ".size __popcorn_rs_migrate_here, .-__popcorn_rs_migrate_here",
    options(att_syntax)
);

extern "C" {
    fn __popcorn_rs_migrate_here(nr: i64, nid: i64, regs: *mut RegsetX86_64) -> i64;
}

/// Moves the calling thread to node `nid` (-1: the proposed one), as Popcorn's `migrate()` does
/// without a callback: it returns on the destination, where the thread carries on with its
/// stack, heap, thread-locals and registers. Errors: EINVAL, EBUSY (the current node), EAGAIN
/// (no such island), ENOSYS (not under popvmm).
pub fn migrate(nid: i32) -> Result<()> {
    let mut regs = RegsetX86_64::default();
    // SAFETY: the routine follows the C calling convention (it keeps rbx, rbp, r12-r15 and rsp,
    // and returns once, on the source when the call fails, on the destination from the register
    // set it filled, whose stack is this stack); `regs` lives across the call.
    let r = unsafe { __popcorn_rs_migrate_here(nr(MIGRATE), i64::from(nid), &mut regs) };
    check(r).map(|_| ())
}

/// [`migrate`], then `callback` on the destination before returning (Popcorn's
/// `migrate(nid, callback, arg)`). The callback does not run when the migration fails.
pub fn migrate_with<F: FnOnce()>(nid: i32, callback: F) -> Result<()> {
    migrate(nid)?;
    callback();
    Ok(())
}

/// Migrates to the node proposed for the calling thread, if any and not the current one:
/// Ok(true) if it moved, Ok(false) if nothing was proposed.
pub fn check_migrate() -> Result<bool> {
    check_migrate_with(|| {})
}

/// [`check_migrate`] with a callback run on the destination.
pub fn check_migrate_with<F: FnOnce()>(callback: F) -> Result<bool> {
    let st = get_status()?;
    if st.proposed_nid < 0 || st.proposed_nid == st.current_nid {
        return Ok(false);
    }
    migrate_with(st.proposed_nid, callback)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn the_structs_have_popcorns_layout() {
        assert_eq!(size_of::<RegsetX86_64>(), 624);
        assert_eq!(offset_of!(RegsetX86_64, gprs), 8);
        assert_eq!(offset_of!(RegsetX86_64, mmx), 136);
        assert_eq!(offset_of!(RegsetX86_64, xmm), 208);
        assert_eq!(offset_of!(RegsetX86_64, st), 464);
        assert_eq!(offset_of!(RegsetX86_64, segments), 592);
        assert_eq!(offset_of!(RegsetX86_64, rflags), 616);
        assert_eq!(size_of::<ThreadStatus>(), 16);
        assert_eq!(size_of::<NodeInfo>(), 12);
    }

    #[test]
    fn natively_every_call_is_enosys_and_nothing_moves() {
        // On the host (not under popvmm), with popvmm's numbers.
        set_abi(Abi::Popvmm);
        assert_eq!(get_status(), Err(Errno::ENOSYS));
        assert_eq!(getnid(), Err(Errno::ENOSYS));
        assert_eq!(get_node_info().map(|(me, _)| me), Err(Errno::ENOSYS));
        assert_eq!(propose_migration(0, 1), Err(Errno::ENOSYS));
        let x = std::hint::black_box(41) + 1;
        let mut ran = false;
        assert_eq!(migrate_with(1, || ran = true), Err(Errno::ENOSYS));
        assert!(!ran);
        assert_eq!(x, 42);
        assert_eq!(check_migrate(), Err(Errno::ENOSYS));
        assert_eq!(Errno::EBUSY.to_string(), "EBUSY");
        assert_eq!(Errno(99).to_string(), "errno 99");
    }
}
