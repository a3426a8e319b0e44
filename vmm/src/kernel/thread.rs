//! Threads are vCPUs: each program thread is one vCPU driven by one host thread running
//! `KVM_RUN`. This module holds the per-thread state, the vCPU loop (system calls, faults),
//! clone/clone3, and thread exit.

use std::cell::Cell;
use std::sync::Arc;

use kvm_bindings::kvm_regs;

use std::sync::atomic::Ordering;

use super::cluster::{self, Request, ThreadStart, ORIGIN};
use super::sigframe::{self, SigInfo};
use super::signal::{signal_for_vector, Disposition};
use super::syscall::{dispatch, Action};
use super::{Errno, ExitStatus, Process, SysResult, ThreadState, ThreadStatus};
use crate::kvm::{Exit, Vcpu};

/// Host stack of a vCPU thread: it only runs the island kernel, never guest code.
const VCPU_THREAD_STACK: usize = 256 << 10;

/// A program thread and its vCPU.
#[derive(Debug)]
pub struct Thread {
    pub tid: u32,
    pub vcpu: Vcpu,
    pub status: Arc<ThreadStatus>,
    pub clear_child_tid: u64,
    pub robust_list: u64,
    pub sigmask: u64,
    /// The sigaltstack record (stack_t: sp, flags, size).
    pub altstack: (u64, u32, u64),
    /// fs base set by this system call (arch_prctl), applied on return to user mode.
    pub new_fs_base: Option<u64>,
}

impl Thread {
    pub fn new(tid: u32, vcpu: Vcpu) -> Self {
        let status = Arc::new(ThreadStatus::new(tid, vcpu.id()));
        Self {
            tid,
            vcpu,
            status,
            clear_child_tid: 0,
            robust_list: 0,
            sigmask: 0,
            altstack: (0, libc::SS_DISABLE as u32, 0),
            new_fs_base: None,
        }
    }
}

/// Starts the host thread of `t` (already registered with the process).
pub fn spawn(p: &Arc<Process>, t: Thread) -> Result<(), Errno> {
    let p2 = Arc::clone(p);
    std::thread::Builder::new()
        .name(format!("vcpu-{}", t.tid))
        .stack_size(VCPU_THREAD_STACK)
        .spawn(move || {
            // A bug in the island kernel must not leave the program half alive: end it.
            let p3 = Arc::clone(&p2);
            let tid = t.tid;
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(p2, t))).is_err() {
                eprintln!("popvmm: internal error serving thread {tid}; the program is ended");
                p3.exit(ExitStatus::Signal(libc::SIGKILL));
            }
        })
        .map(|_| ())
        .map_err(|_| Errno::EAGAIN)
}

thread_local! {
    /// This host thread's vCPU `immediate_exit` flag, for `on_kick`.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// The host signal that kicks a vCPU thread out of KVM_RUN or a blocking host call.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Async-signal-safe: a const-initialised thread-local read and one byte store. Setting
    // immediate_exit makes a KVM_RUN that is about to start return at once, closing the race
    // with a signal that arrives just before it.
    let flag = IMMEDIATE_EXIT.with(|c| c.get());
    if !flag.is_null() {
        // SAFETY: the pointer is this thread's vCPU's kvm_run field, mapped while the vCPU lives
        // (the thread clears it before giving the vCPU away).
        unsafe { std::ptr::write_volatile(flag, 1) };
    }
}

/// Installs the kick handler (once per process, before the first vCPU thread starts). Without
/// SA_RESTART, so that a blocking host call of the island kernel returns EINTR.
pub fn install_kick_handler() -> Result<(), Errno> {
    vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
        .map_err(|e| Errno(e.errno()))
}

/// The vCPU loop of one thread.
pub fn run(p: Arc<Process>, mut t: Thread) {
    IMMEDIATE_EXIT.with(|c| c.set(t.vcpu.immediate_exit_ptr()));
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    t.status.host_thread.store(me as u64, Ordering::SeqCst);
    let end = run_loop(&p, &mut t);
    t.status.set(ThreadState::Exited);
    IMMEDIATE_EXIT.with(|c| c.set(std::ptr::null_mut()));
    if let Some(code) = end {
        exit_thread(&p, t, code);
    }
}

/// Runs the thread until it exits (Some(code)) or the program ends (None).
fn run_loop(p: &Arc<Process>, t: &mut Thread) -> Option<i32> {
    loop {
        if p.exiting() {
            return None;
        }
        t.status.set(ThreadState::Running);
        if p.first_entry_ns.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            let ns = p.started.elapsed().as_nanos().max(1) as u64;
            let _ = p.first_entry_ns.compare_exchange(
                0,
                ns,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let exit = match t.vcpu.run() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("popvmm: thread {}: {e}", t.tid);
                return fatal(p, t, libc::SIGKILL);
            }
        };
        match exit {
            Exit::Syscall => {
                let regs = match t.vcpu.regs() {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("popvmm: thread {}: {e}", t.tid);
                        return fatal(p, t, libc::SIGKILL);
                    }
                };
                t.status.set_rip(regs.rcx);
                t.status.set(ThreadState::InKernel);
                let mut back = match dispatch(p, t, &regs) {
                    Action::Return(v) => Vcpu::syscall_return_regs(&regs, v),
                    Action::Restore(r) => r,
                    Action::ExitThread(code) => return Some(code),
                    Action::Stop => return None,
                };
                // A slow call interrupted by a signal whose handler has SA_RESTART is restarted
                // after the handler, as Linux does: back to the `syscall` instruction.
                if back.rax == (-libc::EINTR) as u64 && restartable(regs.rax) {
                    if let Some(sig) = next_deliverable(t) {
                        if p.signals.get(sig).flags & SA_RESTART != 0 {
                            back.rip = back.rip.wrapping_sub(2);
                            back.rax = regs.rax;
                        }
                    }
                }
                // Signals sent to this thread are delivered on its way back to user mode.
                match deliver_pending(p, t, &mut back) {
                    Ok(()) => {}
                    Err(None) => return None,
                    Err(Some(sig)) => return fatal(p, t, sig),
                }
                let fs = t.new_fs_base.take();
                if let Err(e) = t.vcpu.resume_user(&back, fs) {
                    eprintln!("popvmm: thread {}: {e}", t.tid);
                    return fatal(p, t, libc::SIGKILL);
                }
            }
            Exit::Exception(v) => {
                let sig = signal_for_vector(v);
                let ctx = user_context_of_exception(p, t, v);
                let cr2 = t.vcpu.sregs().map(|s| s.cr2).unwrap_or(0);
                if p.config.verbose >= 1 {
                    let rip = ctx.map_or(0, |(r, _)| r.rip);
                    p.log(
                        1,
                        format_args!(
                            "thread {}: exception {v} at rip {rip:#x} (cr2 {cr2:#x})",
                            t.tid
                        ),
                    );
                    if p.config.verbose >= 3 {
                        eprintln!(
                            "popvmm: user context {ctx:x?}\npopvmm: sregs {:x?}",
                            t.vcpu.sregs()
                        );
                    }
                }
                let info = SigInfo {
                    code: fault_code(v),
                    addr: match v {
                        14 => cr2,
                        _ => ctx.map_or(0, |(r, _)| r.rip),
                    },
                    trapno: u64::from(v),
                    err: ctx.map_or(0, |(_, e)| e),
                    ..Default::default()
                };
                match ctx {
                    Some((r, _)) if fault_to_handler(p, t, sig as u64, &info, r) => continue,
                    _ => return fatal(p, t, sig),
                }
            }
            Exit::MemoryFault | Exit::Mmio(_) => {
                let regs = t.vcpu.regs().unwrap_or_default();
                p.log(
                    1,
                    format_args!("thread {}: memory fault at rip {:#x}", t.tid, regs.rip),
                );
                // KVM does not say which address faulted (see PLATFORM.md): si_addr is 0.
                let addr = if let Exit::Mmio(a) = exit { a } else { 0 };
                let info = SigInfo {
                    code: if addr != 0 { 1 } else { 2 }, // SEGV_MAPERR / SEGV_ACCERR
                    addr,
                    trapno: 14,
                    ..Default::default()
                };
                if fault_to_handler(p, t, libc::SIGSEGV as u64, &info, regs) {
                    continue;
                }
                return fatal(p, t, libc::SIGSEGV);
            }
            Exit::UserPortIo(port) => {
                if !p.config.allow_port_io {
                    // Linux runs programs with IOPL 0: port I/O raises #GP, i.e. SIGSEGV.
                    p.log(1, format_args!("thread {}: port I/O to {port:#x}", t.tid));
                    return fatal(p, t, libc::SIGSEGV);
                }
            }
            Exit::Interrupted => {
                // A kick (a signal for this thread) or a host signal: deliver what is pending if
                // the vCPU stopped in the program's own code.
                t.vcpu.clear_immediate_exit();
                if next_deliverable(t).is_some() {
                    let in_user = t.vcpu.sregs().is_ok_and(|s| s.cs.dpl == 3);
                    if let (true, Ok(mut regs)) = (in_user, t.vcpu.regs()) {
                        if regs.rip >= crate::memory::layout::KERNEL_AREA_END {
                            match deliver_pending(p, t, &mut regs) {
                                Ok(()) => {}
                                Err(None) => return None,
                                Err(Some(sig)) => return fatal(p, t, sig),
                            }
                            if t.vcpu.resume_user(&regs, None).is_err() {
                                return fatal(p, t, libc::SIGKILL);
                            }
                        }
                    }
                }
            }
            Exit::Fatal(what) => {
                eprintln!("popvmm: thread {}: the vCPU cannot continue: {what}", t.tid);
                return fatal(p, t, libc::SIGKILL);
            }
        }
    }
}

const SA_RESTART: u64 = 0x1000_0000;

/// System calls Linux restarts after a handler with SA_RESTART (read, write, readv, writev,
/// pread, pwrite, futex); nanosleep and poll always answer EINTR.
fn restartable(nr: u64) -> bool {
    matches!(nr, 0 | 1 | 17 | 18 | 19 | 20 | 202)
}

/// The lowest pending signal `t` does not block.
fn next_deliverable(t: &Thread) -> Option<u64> {
    let d = t.status.pending.load(Ordering::SeqCst) & !t.sigmask;
    (d != 0).then(|| u64::from(d.trailing_zeros()) + 1)
}

/// Delivers the deliverable pending signals of `t` on its way back to user mode with `regs`:
/// default actions, or one handler frame. Err(Some(sig)): the program dies of `sig`; Err(None):
/// the program is ending.
fn deliver_pending(p: &Process, t: &mut Thread, regs: &mut kvm_regs) -> Result<(), Option<i32>> {
    loop {
        let pending = t.status.pending.load(Ordering::SeqCst);
        let deliverable = pending & !t.sigmask;
        if deliverable == 0 {
            return Ok(());
        }
        let sig = u64::from(deliverable.trailing_zeros()) + 1;
        t.status
            .pending
            .fetch_and(!(1 << (sig - 1)), Ordering::SeqCst);
        match p.signals.disposition(sig) {
            Disposition::Ignore => continue,
            Disposition::Terminate => {
                p.exit(ExitStatus::Signal(sig as i32));
                return Err(None);
            }
            Disposition::Handler => {
                let act = p.signals.get(sig);
                let info = SigInfo {
                    code: -6, // SI_TKILL
                    pid: p.pid,
                    // SAFETY: getuid has no arguments and cannot fail.
                    uid: unsafe { libc::getuid() },
                    ..Default::default()
                };
                return match sigframe::setup(p, t, sig, &act, &info, regs) {
                    Ok(()) => Ok(()),
                    Err(_) => Err(Some(libc::SIGSEGV)),
                };
            }
        }
    }
}

/// A CPU fault with a handler installed (and not blocked) runs the handler on `regs`, the
/// interrupted user context; returns false when the fault must kill (Linux's force_sig_fault).
fn fault_to_handler(
    p: &Process,
    t: &mut Thread,
    sig: u64,
    info: &SigInfo,
    mut regs: kvm_regs,
) -> bool {
    if p.signals.disposition(sig) != Disposition::Handler || t.sigmask & (1 << (sig - 1)) != 0 {
        return false;
    }
    let act = p.signals.get(sig);
    if sigframe::setup(p, t, sig, &act, info, &mut regs).is_err() {
        return false;
    }
    t.vcpu.resume_user(&regs, None).is_ok()
}

/// si_code of a CPU fault.
fn fault_code(vector: u8) -> i32 {
    match vector {
        0 => 1,       // FPE_INTDIV
        6 => 2,       // ILL_ILLOPN
        14 => 1,      // SEGV_MAPERR (2, ACCERR, when the page was present)
        16 | 19 => 7, // FPE_FLTINV
        17 => 1,      // BUS_ADRALN
        _ => 0x80,    // SI_KERNEL
    }
}

/// The user context interrupted by exception `vector`: the vCPU's general registers (the stubs
/// change none) with rip, rflags and rsp from the frame the CPU pushed on the exception stack,
/// and the error code. None if the frame is not a user-mode one.
fn user_context_of_exception(p: &Process, t: &Thread, vector: u8) -> Option<(kvm_regs, u64)> {
    use vm_memory::{Bytes, GuestAddress};
    let regs = t.vcpu.regs().ok()?;
    let has_error = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
    let base = regs.rsp;
    if !(crate::memory::layout::KERNEL_AREA_END / 2..crate::memory::layout::KERNEL_AREA_END - 64)
        .contains(&base)
    {
        return None;
    }
    let word = |i: u64| -> Option<u64> {
        p.vm.memory()
            .guest()
            .read_obj::<u64>(GuestAddress(base + 8 * i))
            .ok()
    };
    let (err, at) = if has_error { (word(0)?, 1) } else { (0, 0) };
    let (rip, cs, rflags, rsp) = (word(at)?, word(at + 1)?, word(at + 2)?, word(at + 3)?);
    if cs & 3 != 3 {
        return None;
    }
    let mut r = regs;
    r.rip = rip;
    r.rflags = rflags;
    r.rsp = rsp;
    Some((r, err))
}

fn fatal(p: &Process, t: &Thread, sig: i32) -> Option<i32> {
    t.status.set(ThreadState::Exited);
    p.exit(ExitStatus::Signal(sig));
    None
}

/// exit(2): CLONE_CHILD_CLEARTID handling, then the vCPU goes back to the pool.
fn exit_thread(p: &Arc<Process>, t: Thread, code: i32) {
    exit_robust_list(p, &t);
    if t.clear_child_tid != 0 {
        // Linux ignores a fault here; so do we.
        if p.user.write_obj(t.clear_child_tid, 0u32).is_ok() {
            super::syscall::futex_wake(p, t.clear_child_tid);
        }
    }
    let tid = t.tid;
    p.park_vcpu(t.vcpu);
    p.thread_exited(tid, code);
}

const FUTEX_WAITERS: u32 = 0x8000_0000;
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// Linux's bound on the robust list walk (ROBUST_LIST_LIMIT), against cycles.
const ROBUST_LIST_LIMIT: usize = 2048;

/// Robust futexes (set_robust_list): a thread that exits holding one marks it FUTEX_OWNER_DIED
/// and wakes a waiter, as Linux's exit_robust_list does. A bad list only stops the walk.
fn exit_robust_list(p: &Process, t: &Thread) {
    if t.robust_list == 0 {
        return;
    }
    // struct robust_list_head { next, futex_offset, list_op_pending }
    let head = t.robust_list;
    let (Ok(mut entry), Ok(offset), Ok(pending)) = (
        p.user.read_obj::<u64>(head),
        p.user.read_obj::<i64>(head + 8),
        p.user.read_obj::<u64>(head + 16),
    ) else {
        return;
    };
    let handle = |e: u64| {
        let word = (e & !1).wrapping_add(offset as u64);
        let _ = p
            .user
            .with_atomic_u32(word, super::vma::Access::Write, |a| {
                let mut cur = a.load(Ordering::SeqCst);
                loop {
                    if cur & FUTEX_TID_MASK != t.tid {
                        return false;
                    }
                    let new = (cur & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
                    match a.compare_exchange(cur, new, Ordering::SeqCst, Ordering::SeqCst) {
                        Ok(_) => return cur & FUTEX_WAITERS != 0,
                        Err(now) => cur = now,
                    }
                }
            })
            .map(|wake| {
                if wake {
                    super::syscall::futex_wake(p, word);
                }
            });
    };
    let mut n = 0;
    while entry != head && entry != 0 && n < ROBUST_LIST_LIMIT {
        let Ok(next) = p.user.read_obj::<u64>(entry) else {
            return;
        };
        // The entry being taken or released when the thread died is handled last.
        if entry != pending {
            handle(entry);
        }
        entry = next;
        n += 1;
    }
    if pending != 0 {
        handle(pending);
    }
}

/// Arguments of clone/clone3 (already decoded).
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub stack: u64,
    pub parent_tid: u64,
    pub child_tid: u64,
    pub tls: u64,
    pub exit_signal: u64,
}

const THREAD_FLAGS: u64 = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
const SUPPORTED: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_SETTID
    | libc::CLONE_CHILD_CLEARTID
    | libc::CLONE_DETACHED
    | libc::CLONE_IO) as u64;

/// clone/clone3 for threads. Processes (fork, vfork, posix_spawn) are not supported yet: ENOSYS.
pub fn clone(p: &Arc<Process>, parent: &mut Thread, regs: &kvm_regs, a: CloneArgs) -> SysResult {
    if a.flags & THREAD_FLAGS != THREAD_FLAGS || a.flags & libc::CLONE_VFORK as u64 != 0 {
        p.log(
            1,
            format_args!(
                "clone flags {:#x}: new processes (fork/vfork) are not supported",
                a.flags
            ),
        );
        return Err(Errno::ENOSYS);
    }
    if a.flags & !(SUPPORTED | 0xff) != 0 || a.exit_signal != 0 {
        p.log(
            1,
            format_args!(
                "clone: unsupported flags {:#x} / exit signal {}",
                a.flags, a.exit_signal
            ),
        );
        return Err(Errno::EINVAL);
    }
    let tid = p.alloc_tid();
    if a.flags & libc::CLONE_PARENT_SETTID as u64 != 0 {
        p.user.write_obj(a.parent_tid, tid)?;
    }
    if a.flags & libc::CLONE_CHILD_SETTID as u64 != 0 {
        p.user.write_obj(a.child_tid, tid)?;
    }
    let fpu = parent.vcpu.fpu().map_err(|_| Errno::EAGAIN)?;
    let fs_base = if a.flags & libc::CLONE_SETTLS as u64 != 0 {
        a.tls
    } else {
        parent.vcpu.sregs().map_err(|_| Errno::EAGAIN)?.fs.base
    };
    let mut child_regs = *regs;
    child_regs.rax = 0;
    child_regs.rip = regs.rcx;
    child_regs.rflags = (regs.r11 & 0x3c_7fd7) | 0x2;
    if a.stack != 0 {
        child_regs.rsp = a.stack;
    }
    let start = ThreadStart {
        tid,
        regs: child_regs,
        fs_base,
        fpu,
        sigmask: parent.sigmask,
        clear_child_tid: if a.flags & libc::CLONE_CHILD_CLEARTID as u64 != 0 {
            a.child_tid
        } else {
            0
        },
    };
    let Some(link) = &p.cluster else {
        return start_remote(p, start);
    };
    let island = link.program.place();
    if island == link.island {
        return start_remote(p, start);
    }
    // The new island needs the layout before its first thread runs.
    if link.is_origin() {
        p.sync_layout_to(island);
    } else {
        cluster::reply_result(link.call(ORIGIN, Request::SyncLayout { island }, |_| None))?;
    }
    cluster::reply_result(link.call(island, Request::StartThread(Box::new(start)), |_| None))
}

/// Starts a thread on this island with the state clone gave it (from this island or another).
pub fn start_remote(p: &Arc<Process>, start: ThreadStart) -> SysResult {
    let mut vcpu = p.take_vcpu().map_err(|e| {
        p.log(1, format_args!("clone: {e}"));
        Errno::EAGAIN
    })?;
    if let Err(e) = vcpu.start_user(&start.regs, start.fs_base, Some(&start.fpu)) {
        p.log(1, format_args!("clone: {e}"));
        p.park_vcpu(vcpu);
        return Err(Errno::EAGAIN);
    }
    let tid = start.tid;
    let mut child = Thread::new(tid, vcpu);
    // Where it will start: what /threads shows until it first enters the island kernel.
    child.status.set_rip(start.regs.rip);
    child.sigmask = start.sigmask;
    child.clear_child_tid = start.clear_child_tid;
    p.register_thread(Arc::clone(&child.status));
    if let Err(e) = spawn(p, child) {
        p.thread_exited(tid, 0);
        return Err(e);
    }
    Ok(tid as u64)
}

/// clone3: decodes `struct clone_args`.
pub fn clone3(
    p: &Arc<Process>,
    parent: &mut Thread,
    regs: &kvm_regs,
    args: u64,
    size: u64,
) -> SysResult {
    if !(64..=4096).contains(&size) {
        return Err(Errno::EINVAL);
    }
    let raw = p.user.read_vec(args, size.min(88) as usize)?;
    let field = |i: usize| -> u64 {
        raw.get(i * 8..i * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    };
    // flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, ...
    // (pidfd is only read with CLONE_PIDFD, which `clone` refuses.)
    if field(8) != 0 || field(9) != 0 {
        p.log(1, format_args!("clone3: set_tid is not supported"));
        return Err(Errno::EINVAL);
    }
    let (stack, stack_size) = (field(5), field(6));
    let top = if stack == 0 {
        0
    } else {
        stack.checked_add(stack_size).ok_or(Errno::EINVAL)?
    };
    clone(
        p,
        parent,
        regs,
        CloneArgs {
            flags: field(0),
            child_tid: field(2),
            parent_tid: field(3),
            exit_signal: field(4),
            stack: top,
            tls: field(7),
        },
    )
}
