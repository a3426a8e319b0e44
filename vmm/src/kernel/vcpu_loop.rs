//! The vCPU loop: each program thread is one vCPU driven by one host thread running `KVM_RUN`.
//! It serves the thread's system calls (`syscall::dispatch`), turns CPU exceptions into signals,
//! delivers pending signals on the way back to user mode, starts the threads clone places on this
//! island, and ends threads (clear-child-tid, robust futexes, the vCPU back to the pool).

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use kvm_bindings::kvm_regs;

use super::errno::{Errno, ExitStatus, SysResult};
use super::island::{kick_signal, Island};
use super::messages::ThreadStart;
use super::sigframe::{self, SigInfo, SA_RESETHAND};
use super::signal::{signal_for_vector, Disposition, SigAction};
use super::syscall::{dispatch, futex_wake, ret, Action};
use super::thread::{Thread, ThreadState};
use super::vma::Access;
use crate::kvm::{Exit, Vcpu};

/// Host stack of a vCPU thread: it only runs the island kernel, never guest code.
const VCPU_THREAD_STACK: usize = 256 << 10;

/// Starts a thread on this island with the state clone gave it (on this island or another):
/// a vCPU from the pool, the thread registered here, its host thread running.
pub fn start_thread(island: &Arc<Island>, start: ThreadStart) -> SysResult {
    let mut vcpu = island.take_vcpu().map_err(|e| {
        island.log(1, format_args!("clone: {e}"));
        Errno::EAGAIN
    })?;
    if let Err(e) = vcpu.start_user(&start.regs, start.fs_base, Some(&start.fpu)) {
        island.log(1, format_args!("clone: {e}"));
        island.park_vcpu(vcpu);
        return Err(Errno::EAGAIN);
    }
    let tid = start.tid;
    let mut child = Thread::new(tid, vcpu);
    // Where it will start: what /threads shows until it first enters the island kernel.
    child.status.set_rip(start.regs.rip);
    child.sigmask = start.sigmask;
    child.clear_child_tid = start.clear_child_tid;
    island.register_thread(Arc::clone(&child.status));
    spawn(island, child).inspect_err(|_| island.forget_thread(tid))?;
    Ok(u64::from(tid))
}

/// Starts the host thread of `t` (already registered with its island).
pub fn spawn(island: &Arc<Island>, t: Thread) -> Result<(), Errno> {
    let island = Arc::clone(island);
    std::thread::Builder::new()
        .name(format!("vcpu-{}", t.tid))
        .stack_size(VCPU_THREAD_STACK)
        .spawn(move || {
            // A bug in the island kernel must not leave the program half alive: end it.
            let tid = t.tid;
            let services = Arc::clone(&island.services);
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(island, t))).is_err() {
                eprintln!("popvmm: internal error serving thread {tid}; the program is ended");
                services.exit_group(ExitStatus::Signal(libc::SIGKILL));
            }
        })
        .map(|_| ())
        .map_err(|_| Errno::EAGAIN)
}

thread_local! {
    /// This host thread's vCPU `immediate_exit` flag, for `on_kick`.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
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
pub fn run(island: Arc<Island>, mut t: Thread) {
    IMMEDIATE_EXIT.with(|c| c.set(t.vcpu.immediate_exit_ptr()));
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    t.status.host_thread.store(me as u64, Ordering::SeqCst);
    let end = run_loop(&island, &mut t);
    t.status.set(ThreadState::Exited);
    IMMEDIATE_EXIT.with(|c| c.set(std::ptr::null_mut()));
    match end {
        Some(code) => exit_thread(&island, t, code),
        None => island.forget_thread(t.tid),
    }
}

/// Runs the thread until it exits (Some(code)) or the program ends (None).
fn run_loop(island: &Arc<Island>, t: &mut Thread) -> Option<i32> {
    loop {
        if island.exiting() {
            return None;
        }
        t.status.set(ThreadState::Running);
        if island.first_entry_ns.load(Ordering::Relaxed) == 0 {
            let ns = island.started.elapsed().as_nanos().max(1) as u64;
            let _ =
                island
                    .first_entry_ns
                    .compare_exchange(0, ns, Ordering::Relaxed, Ordering::Relaxed);
        }
        let exit = match t.vcpu.run() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("popvmm: thread {}: {e}", t.tid);
                return fatal(island, t, libc::SIGKILL);
            }
        };
        match exit {
            Exit::Syscall => {
                let regs = match t.vcpu.regs() {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("popvmm: thread {}: {e}", t.tid);
                        return fatal(island, t, libc::SIGKILL);
                    }
                };
                t.status.set_rip(regs.rcx);
                t.status.set(ThreadState::InKernel);
                let mut back = match dispatch(island, t, &regs) {
                    Action::Return(v) => Vcpu::syscall_return_regs(&regs, v),
                    Action::Restore(r) => r,
                    Action::ExitThread(code) => return Some(code),
                    Action::Stop => return None,
                    Action::StartThread(start) => {
                        Vcpu::syscall_return_regs(&regs, start_child(island, *start))
                    }
                };
                // A slow call interrupted by a signal whose handler has SA_RESTART is restarted
                // after the handler, as Linux does: back to the `syscall` instruction.
                if back.rax == (-libc::EINTR) as u64 && restartable(regs.rax) {
                    if let Some(sig) = t.next_deliverable() {
                        let restart = island
                            .services
                            .sigaction(sig, None)
                            .is_ok_and(|a| a.flags & SA_RESTART != 0);
                        if restart {
                            back.rip = back.rip.wrapping_sub(2);
                            back.rax = regs.rax;
                        }
                    }
                }
                // Signals sent to this thread are delivered on its way back to user mode.
                match deliver_pending(island, t, &mut back) {
                    Ok(()) => {}
                    Err(None) => return None,
                    Err(Some(sig)) => return fatal(island, t, sig),
                }
                let fs = t.new_fs_base.take();
                if let Err(e) = t.vcpu.resume_user(&back, fs) {
                    eprintln!("popvmm: thread {}: {e}", t.tid);
                    return fatal(island, t, libc::SIGKILL);
                }
            }
            Exit::Exception(v) => {
                let sig = signal_for_vector(v);
                let ctx = user_context_of_exception(island, t, v);
                let cr2 = t.vcpu.sregs().map(|s| s.cr2).unwrap_or(0);
                if island.config.verbose >= 1 {
                    let rip = ctx.map_or(0, |(r, _)| r.rip);
                    island.log(
                        1,
                        format_args!(
                            "thread {}: exception {v} at rip {rip:#x} (cr2 {cr2:#x})",
                            t.tid
                        ),
                    );
                    if island.config.verbose >= 3 {
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
                    Some((r, _)) if fault_to_handler(island, t, sig as u64, &info, r) => continue,
                    _ => return fatal(island, t, sig),
                }
            }
            Exit::MemoryFault | Exit::Mmio(_) => {
                let regs = t.vcpu.regs().unwrap_or_default();
                island.log(
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
                if fault_to_handler(island, t, libc::SIGSEGV as u64, &info, regs) {
                    continue;
                }
                return fatal(island, t, libc::SIGSEGV);
            }
            Exit::UserPortIo(port) => {
                if !island.config.allow_port_io {
                    // Linux runs programs with IOPL 0: port I/O raises #GP, i.e. SIGSEGV.
                    island.log(1, format_args!("thread {}: port I/O to {port:#x}", t.tid));
                    return fatal(island, t, libc::SIGSEGV);
                }
            }
            Exit::Interrupted => {
                // A kick (a signal for this thread) or a host signal: deliver what is pending if
                // the vCPU stopped in the program's own code.
                t.vcpu.clear_immediate_exit();
                if t.next_deliverable().is_some() {
                    let in_user = t.vcpu.sregs().is_ok_and(|s| s.cs.dpl == 3);
                    if let (true, Ok(mut regs)) = (in_user, t.vcpu.regs()) {
                        if regs.rip >= crate::memory::layout::KERNEL_AREA_END {
                            match deliver_pending(island, t, &mut regs) {
                                Ok(()) => {}
                                Err(None) => return None,
                                Err(Some(sig)) => return fatal(island, t, sig),
                            }
                            if t.vcpu.resume_user(&regs, None).is_err() {
                                return fatal(island, t, libc::SIGKILL);
                            }
                        }
                    }
                }
            }
            Exit::Fatal(what) => {
                eprintln!("popvmm: thread {}: the vCPU cannot continue: {what}", t.tid);
                return fatal(island, t, libc::SIGKILL);
            }
        }
    }
}

const SA_RESTART: u64 = 0x1000_0000;

/// System calls Linux restarts after a handler with SA_RESTART (read, write, readv, writev,
/// pread, pwrite, futex); nanosleep and poll always answer EINTR.
fn restartable(nr: u64) -> bool {
    matches!(
        nr as libc::c_long,
        libc::SYS_read
            | libc::SYS_write
            | libc::SYS_pread64
            | libc::SYS_pwrite64
            | libc::SYS_readv
            | libc::SYS_writev
            | libc::SYS_futex
    )
}

/// clone placed the new thread here: start it; clone returns its tid (or the error).
fn start_child(island: &Arc<Island>, start: ThreadStart) -> u64 {
    let tid = start.tid;
    let r = start_thread(island, start);
    if r.is_err() {
        island.services.thread_exited(tid, 0);
    }
    match ret(r) {
        Action::Return(v) => v,
        _ => (-libc::EAGAIN) as u64,
    }
}

/// Delivers the deliverable pending signals of `t` on its way back to user mode with `regs`:
/// default actions, or one handler frame. Err(Some(sig)): the program dies of `sig`; Err(None):
/// the program is ending.
fn deliver_pending(
    island: &Island,
    t: &mut Thread,
    regs: &mut kvm_regs,
) -> Result<(), Option<i32>> {
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
        let act = island
            .services
            .sigaction(sig, None)
            .map_err(|_| Some(libc::SIGKILL))?;
        match act.disposition(sig) {
            Disposition::Ignore => continue,
            Disposition::Terminate => {
                island.services.exit_group(ExitStatus::Signal(sig as i32));
                return Err(None);
            }
            Disposition::Handler => {
                let info = SigInfo {
                    code: -6, // SI_TKILL
                    pid: island.pid,
                    // SAFETY: getuid has no arguments and cannot fail.
                    uid: unsafe { libc::getuid() },
                    ..Default::default()
                };
                return run_handler(island, t, sig, &act, &info, regs)
                    .map_err(|_| Some(libc::SIGSEGV));
            }
        }
    }
}

/// A CPU fault with a handler installed (and not blocked) runs the handler on `regs`, the
/// interrupted user context; returns false when the fault must kill (Linux's force_sig_fault).
fn fault_to_handler(
    island: &Island,
    t: &mut Thread,
    sig: u64,
    info: &SigInfo,
    mut regs: kvm_regs,
) -> bool {
    let Ok(act) = island.services.sigaction(sig, None) else {
        return false;
    };
    if act.disposition(sig) != Disposition::Handler || t.sigmask & (1 << (sig - 1)) != 0 {
        return false;
    }
    if run_handler(island, t, sig, &act, info, &mut regs).is_err() {
        return false;
    }
    t.vcpu.resume_user(&regs, None).is_ok()
}

/// Builds the handler's frame on `regs`; a one-shot handler (SA_RESETHAND) goes back to the
/// default action.
fn run_handler(
    island: &Island,
    t: &mut Thread,
    sig: u64,
    act: &SigAction,
    info: &SigInfo,
    regs: &mut kvm_regs,
) -> Result<(), Errno> {
    sigframe::setup(&island.user, t, sig, act, info, regs)?;
    if act.flags & SA_RESETHAND != 0 {
        island.services.sigaction(sig, Some(SigAction::default()))?;
    }
    Ok(())
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
fn user_context_of_exception(island: &Island, t: &Thread, vector: u8) -> Option<(kvm_regs, u64)> {
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
        island
            .vm
            .memory()
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

fn fatal(island: &Island, t: &Thread, sig: i32) -> Option<i32> {
    t.status.set(ThreadState::Exited);
    island.services.exit_group(ExitStatus::Signal(sig));
    None
}

/// exit(2): CLONE_CHILD_CLEARTID handling, then the vCPU goes back to the pool.
fn exit_thread(island: &Arc<Island>, t: Thread, code: i32) {
    exit_robust_list(island, &t);
    if t.clear_child_tid != 0 {
        // Linux ignores a fault here; so do we.
        if island.user.write_obj(t.clear_child_tid, 0u32).is_ok() {
            futex_wake(island, t.clear_child_tid);
        }
    }
    let tid = t.tid;
    island.forget_thread(tid);
    island.park_vcpu(t.vcpu);
    island.services.thread_exited(tid, code);
}

const FUTEX_WAITERS: u32 = 0x8000_0000;
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// Linux's bound on the robust list walk (ROBUST_LIST_LIMIT), against cycles.
const ROBUST_LIST_LIMIT: usize = 2048;

/// Robust futexes (set_robust_list): a thread that exits holding one marks it FUTEX_OWNER_DIED
/// and wakes a waiter, as Linux's exit_robust_list does. A bad list only stops the walk.
fn exit_robust_list(island: &Island, t: &Thread) {
    if t.robust_list == 0 {
        return;
    }
    // struct robust_list_head { next, futex_offset, list_op_pending }
    let head = t.robust_list;
    let (Ok(mut entry), Ok(offset), Ok(pending)) = (
        island.user.read_obj::<u64>(head),
        island.user.read_obj::<i64>(head + 8),
        island.user.read_obj::<u64>(head + 16),
    ) else {
        return;
    };
    let handle = |e: u64| {
        let word = (e & !1).wrapping_add(offset as u64);
        let _ = island
            .user
            .with_atomic_u32(word, Access::Write, |a| {
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
                    futex_wake(island, word);
                }
            });
    };
    let mut n = 0;
    while entry != head && entry != 0 && n < ROBUST_LIST_LIMIT {
        let Ok(next) = island.user.read_obj::<u64>(entry) else {
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
