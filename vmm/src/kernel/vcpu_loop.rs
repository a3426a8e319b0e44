//! The vCPU loop: each program thread is one vCPU driven by one host thread running `KVM_RUN`.
//! It serves the thread's system calls (`syscall::dispatch`), turns CPU exceptions into signals,
//! delivers pending signals on the way back to user mode, starts the threads clone places on this
//! island, and ends threads (clear-child-tid, robust futexes, the vCPU back to the pool).

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::kvm_regs;

use super::errno::{Errno, ExitStatus, SysResult};
use super::island::{kick_signal, Arrival, Island};
use super::messages::{IslandId, Request, ThreadImage};
use super::services::value;
use super::sigframe::{self, SigInfo, SA_RESETHAND};
use super::signal::{signal_for_vector, Disposition, SigAction};
use super::syscall::{dispatch, futex_wake, restartable, ret, Action};
use super::thread::{Thread, ThreadState, ThreadStatus};
use super::vma::Access;
use crate::dsm::PAGE_SIZE;
use crate::kvm::{Exit, Vcpu};

/// Host stack of a vCPU thread: it only runs the island kernel, never guest code.
const VCPU_THREAD_STACK: usize = 256 << 10;

/// Starts a thread on this island from its image: a new thread (clone, on this island or
/// another), or one that migrates here. It is registered here before this returns; a parked vCPU
/// thread runs it (or a new one, when none is parked).
pub fn start_thread(island: &Arc<Island>, image: ThreadImage) -> SysResult {
    let tid = image.tid;
    let status = Arc::new(ThreadStatus::from_image(&image));
    island.register_thread(Arc::clone(&status));
    let arrival = Arrival {
        image: Box::new(image),
        status,
    };
    if let Err(arrival) = island.hand_to_parked(arrival) {
        let vcpu = island.new_vcpu().map_err(|e| {
            island.log(1, format_args!("thread {tid}: {e}"));
            island.forget_thread(tid);
            Errno::EAGAIN
        })?;
        spawn_runner(island, vcpu, Some(arrival)).inspect_err(|_| island.forget_thread(tid))?;
    }
    keep_spare(island);
    Ok(u64::from(tid))
}

/// Keeps one vCPU thread parked on `island` for the next arrival, made off the arrival's path.
pub fn keep_spare(island: &Arc<Island>) {
    if island.parked() > 0 || island.exiting() || island.spare_coming.swap(true, Ordering::SeqCst) {
        return;
    }
    let island2 = Arc::clone(island);
    let made = std::thread::Builder::new()
        .name(format!("island{}-spare", island.id))
        .stack_size(64 << 10)
        .spawn(move || {
            if let Ok(vcpu) = island2.new_vcpu() {
                let _ = spawn_runner(&island2, vcpu, None);
            }
            island2.spare_coming.store(false, Ordering::SeqCst);
        });
    if made.is_err() {
        island.spare_coming.store(false, Ordering::SeqCst);
    }
}

/// Starts a vCPU thread on `island`: it runs `first` (if any), then each thread handed to it
/// while it is parked, until the program ends.
fn spawn_runner(island: &Arc<Island>, vcpu: Vcpu, first: Option<Arrival>) -> Result<(), Errno> {
    let island = Arc::clone(island);
    std::thread::Builder::new()
        .name(format!("island{}-vcpu{}", island.id, vcpu.id()))
        .stack_size(VCPU_THREAD_STACK)
        .spawn(move || {
            let mut vcpu = vcpu;
            let mut next = first;
            loop {
                let arrival = match next.take() {
                    Some(a) => a,
                    None => match island.park() {
                        Some(a) => a,
                        None => return,
                    },
                };
                // A bug in the island kernel must not leave the program half alive: end it.
                let tid = arrival.image.tid;
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_arrival(&island, vcpu, arrival)
                }));
                match ran {
                    Ok(v) => vcpu = v,
                    Err(_) => {
                        crate::diag!(
                            "popvmm: internal error serving thread {tid}; the program is ended"
                        );
                        island
                            .services
                            .exit_group(ExitStatus::Signal(libc::SIGKILL));
                        return;
                    }
                }
                if island.exiting() {
                    return;
                }
            }
        })
        .map(|_| ())
        .map_err(|_| Errno::EAGAIN)
}

/// Runs an arriving thread on `vcpu` until it leaves this island; gives the vCPU back.
fn run_arrival(island: &Arc<Island>, mut vcpu: Vcpu, a: Arrival) -> Vcpu {
    let image = a.image;
    // Asked for before the vCPU is set up, waited for after: the two overlap.
    let stack = if image.departed_ns != 0 {
        prefetch_stack(island, image.regs.rsp)
    } else {
        Vec::new()
    };
    if let Err(e) = vcpu.start_user(&image.regs, image.fs_base, image.gs_base, Some(&image.fpu)) {
        // The thread was promised (clone returned its tid, or its old island let it go).
        crate::diag!(
            "popvmm: thread {}: cannot start its vCPU: {e}; the program is ended",
            image.tid
        );
        island.forget_thread(image.tid);
        island
            .services
            .exit_group(ExitStatus::Signal(libc::SIGKILL));
        return vcpu;
    }
    let deadline = Instant::now() + STACK_PREFETCH_PATIENCE;
    for page in stack {
        island.dsm.wait_writable(page, deadline);
    }
    if image.departed_ns != 0 {
        let took = crate::metrics::monotonic_ns().saturating_sub(image.departed_ns);
        island.migration_latency.record(took);
    }
    run(island, Thread::from_image(vcpu, a.status, &image))
}

/// How long a migrated thread waits for the top of its stack before it starts anyway (and faults
/// there as it would have without the prefetch).
const STACK_PREFETCH_PATIENCE: Duration = Duration::from_millis(50);

/// The stack follows a migrating thread: the pages it writes first on arrival (the one at `rsp`
/// and the red zone below it) are asked for writable before it starts, in one protocol exchange
/// each, instead of a read fault and then a write fault (each ~100 us on this platform) once it
/// runs. Only pages of a coherent mapping the program may write: `rsp` is the guest's. Returns
/// the pages that are on their way.
fn prefetch_stack(island: &Island, rsp: u64) -> Vec<u64> {
    if !island.config.stack_prefetch || !island.dsm.coherent() {
        return Vec::new();
    }
    let top = rsp & !(PAGE_SIZE - 1);
    let below = rsp.saturating_sub(RED_ZONE) & !(PAGE_SIZE - 1);
    let pages: Vec<u64> = {
        let layout = island.user.layout();
        [top, below]
            .into_iter()
            .enumerate()
            .filter(|&(i, p)| i == 0 || p != top)
            .map(|(_, p)| p)
            .filter(|&p| {
                layout
                    .find(p)
                    .is_some_and(|v| !v.kind.is_local() && v.prot.writable())
            })
            .collect()
    };
    pages
        .into_iter()
        .filter(|&p| match island.dsm.prefetch_write(p) {
            Ok(ready) => !ready,
            Err(e) => {
                island.log(1, format_args!("prefetching the stack page {p:#x}: {e}"));
                false
            }
        })
        .collect()
}

/// The System V x86-64 ABI's red zone: the 128 bytes below rsp a function may use unannounced.
const RED_ZONE: u64 = 128;

/// The image of thread `t`, to resume with `regs` elsewhere.
fn capture(t: &mut Thread, regs: &kvm_regs) -> Result<ThreadImage, Errno> {
    let sregs = t.vcpu.sregs().map_err(|_| Errno::EIO)?;
    let fpu = t.vcpu.fxsave().map_err(|_| Errno::EIO)?;
    Ok(ThreadImage {
        tid: t.tid,
        regs: *regs,
        fs_base: t.new_fs_base.take().unwrap_or(sregs.fs.base),
        gs_base: sregs.gs.base,
        fpu,
        sigmask: t.sigmask,
        pending: t.status.pending.load(Ordering::SeqCst),
        altstack: t.altstack,
        clear_child_tid: t.clear_child_tid,
        robust_list: t.robust_list,
        affinity: t.status.affinity.load(Ordering::Relaxed),
        // A proposal is for the next migration: this one.
        proposed: None,
        migrations: t.status.migrations.load(Ordering::Relaxed) + 1,
        departed_ns: crate::metrics::monotonic_ns(),
    })
}

/// Moves thread `t` to island `to`, to resume there with `regs`. Ok: it runs there now (this
/// host thread ends). Err: it stays here, and the error says why.
fn migrate(
    island: &Arc<Island>,
    t: &mut Thread,
    regs: &kvm_regs,
    to: IslandId,
) -> Result<(), Errno> {
    if to == island.id {
        return Err(Errno::EBUSY);
    }
    let tid = t.tid;
    // The destination gets the layout and joins the protocol; signals wait at the origin.
    island.services.begin_move(tid, island.id, to)?;
    // Out of this island's table before its pending signals are read: a signal posted here from
    // now on finds no thread and goes back to the origin, which holds it.
    let status = island.release_thread(tid);
    let sent = capture(t, regs).and_then(|mut image| {
        // An explicit migration is a placement too: the destination joins the thread's
        // affinity (island i is CPU i), as a Popcorn migration moves the thread's CPU.
        if to < 64 {
            image.affinity |= 1 << to;
        }
        island
            .link
            .call(to, Request::Migrate(Box::new(image)))
            .map_err(|_| Errno::EAGAIN)
            .and_then(value)
    });
    match sent {
        Ok(_) => {
            island.services.end_move(tid, to, to);
            Ok(())
        }
        Err(e) => {
            if let Some(s) = status {
                island.register_thread(s);
            }
            island.services.end_move(tid, to, island.id);
            island.log(
                1,
                format_args!("thread {tid}: migration to island {to}: errno {}", e.0),
            );
            Err(e)
        }
    }
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

/// The vCPU loop of one thread, until it leaves this island; gives its vCPU back.
fn run(island: &Arc<Island>, mut t: Thread) -> Vcpu {
    IMMEDIATE_EXIT.with(|c| c.set(t.vcpu.immediate_exit_ptr()));
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    t.status.host_thread.store(me as u64, Ordering::SeqCst);
    let end = run_loop(island, &mut t);
    IMMEDIATE_EXIT.with(|c| c.set(std::ptr::null_mut()));
    t.status.host_thread.store(0, Ordering::SeqCst);
    match end {
        End::Exit(code) => {
            t.status.set(ThreadState::Exited);
            exit_thread(island, t, code)
        }
        End::Stop => {
            t.status.set(ThreadState::Exited);
            island.forget_thread(t.tid);
            t.vcpu
        }
        // It runs elsewhere now; its vCPU serves the next thread here.
        End::Migrated => t.vcpu,
    }
}

/// How a thread's time on this island ends.
enum End {
    /// exit(2) with this code.
    Exit(i32),
    /// The program is ending.
    Stop,
    /// It migrated to another island.
    Migrated,
}

/// Moves `t` to the island its migration was asked to, if one was, resuming with `regs`: true
/// when it left.
fn migrate_if_asked(island: &Arc<Island>, t: &mut Thread, regs: &kvm_regs) -> bool {
    match t.status.take_migration() {
        Some(to) if to != island.id => migrate(island, t, regs, to).is_ok(),
        _ => false,
    }
}

/// Runs the thread until it exits, migrates, or the program ends.
fn run_loop(island: &Arc<Island>, t: &mut Thread) -> End {
    loop {
        if island.exiting() {
            return End::Stop;
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
                crate::diag!("popvmm: thread {}: {e}", t.tid);
                return fatal(island, t, libc::SIGKILL);
            }
        };
        match exit {
            Exit::Syscall => {
                let regs = match t.vcpu.regs() {
                    Ok(r) => r,
                    Err(e) => {
                        crate::diag!("popvmm: thread {}: {e}", t.tid);
                        return fatal(island, t, libc::SIGKILL);
                    }
                };
                t.status.set_rip(regs.rcx);
                t.status.set(ThreadState::InKernel);
                let mut back = match dispatch(island, t, &regs) {
                    Action::Return(v) => Vcpu::syscall_return_regs(&regs, v),
                    Action::Restore(r) => r,
                    Action::ExitThread(code) => return End::Exit(code),
                    Action::Stop => return End::Stop,
                    Action::StartThread(start) => {
                        Vcpu::syscall_return_regs(&regs, start_child(island, *start))
                    }
                    Action::Migrate { to, resume } => {
                        let resume =
                            resume.map_or_else(|| Vcpu::syscall_return_regs(&regs, 0), |r| *r);
                        match migrate(island, t, &resume, to) {
                            Ok(()) => return End::Migrated,
                            Err(e) => Vcpu::syscall_return_regs(&regs, (-(e.0 as i64)) as u64),
                        }
                    }
                };
                // A slow call interrupted by a signal whose handler has SA_RESTART is restarted
                // after the handler, as Linux does: back to the `syscall` instruction.
                if back.rax == (-libc::EINTR) as u64 && restartable(regs.rax) {
                    if t.status.migration_requested() && !t.signal_deliverable() {
                        // Interrupted only to migrate: the call starts again on the destination,
                        // and the program sees nothing (Linux's -ERESTARTSYS).
                        back.rip = back.rip.wrapping_sub(2);
                        back.rax = regs.rax;
                    } else if let Some(sig) = t.next_deliverable() {
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
                // A migration asked from outside happens here, at a clean point; pending signals
                // travel with the thread.
                if migrate_if_asked(island, t, &back) {
                    return End::Migrated;
                }
                // Signals sent to this thread are delivered on its way back to user mode.
                match deliver_pending(island, t, &mut back) {
                    Ok(()) => {}
                    Err(None) => return End::Stop,
                    Err(Some(sig)) => return fatal(island, t, sig),
                }
                let fs = t.new_fs_base.take();
                if let Err(e) = t.vcpu.resume_user(&back, fs) {
                    crate::diag!("popvmm: thread {}: {e}", t.tid);
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
                        crate::diag!(
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
                // A kick (a signal for this thread, a migration asked from outside) or a host
                // signal: deliver what is pending if the vCPU stopped in the program's own code.
                t.vcpu.clear_immediate_exit();
                if t.status.migration_requested() {
                    let in_user = t.vcpu.sregs().is_ok_and(|s| s.cs.dpl == 3);
                    if let (true, Ok(regs)) = (in_user, t.vcpu.regs()) {
                        if crate::memory::layout::is_program_code(regs.rip)
                            && migrate_if_asked(island, t, &regs)
                        {
                            return End::Migrated;
                        }
                    }
                }
                if t.next_deliverable().is_some() {
                    let in_user = t.vcpu.sregs().is_ok_and(|s| s.cs.dpl == 3);
                    if let (true, Ok(mut regs)) = (in_user, t.vcpu.regs()) {
                        if crate::memory::layout::is_program_code(regs.rip) {
                            match deliver_pending(island, t, &mut regs) {
                                Ok(()) => {}
                                Err(None) => return End::Stop,
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
                crate::diag!("popvmm: thread {}: the vCPU cannot continue: {what}", t.tid);
                return fatal(island, t, libc::SIGKILL);
            }
        }
    }
}

const SA_RESTART: u64 = 0x1000_0000;

/// clone placed the new thread here: start it; clone returns its tid (or the error).
fn start_child(island: &Arc<Island>, start: ThreadImage) -> u64 {
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

fn fatal(island: &Island, t: &Thread, sig: i32) -> End {
    t.status.set(ThreadState::Exited);
    island.services.exit_group(ExitStatus::Signal(sig));
    End::Stop
}

/// exit(2): CLONE_CHILD_CLEARTID handling and robust futexes; gives the vCPU back.
fn exit_thread(island: &Arc<Island>, t: Thread, code: i32) -> Vcpu {
    exit_robust_list(island, &t);
    if t.clear_child_tid != 0 {
        // Linux ignores a fault here; so do we.
        if island.user.write_obj(t.clear_child_tid, 0u32).is_ok() {
            futex_wake(island, t.clear_child_tid);
        }
    }
    let tid = t.tid;
    island.forget_thread(tid);
    island.services.thread_exited(tid, code);
    t.vcpu
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
