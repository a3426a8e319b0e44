//! System call dispatch and the calls that belong to no other module (time, identity, limits,
//! signals, futex decoding). Numbers are x86-64 Linux's; arguments come in rdi, rsi, rdx, r10, r8, r9.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::kvm_regs;

use super::cluster::{self, FutexCall, MmCall, Request, ORIGIN};
use super::futex::BITSET_MATCH_ANY;
use super::signal::{Disposition, SigAction};
use super::thread::{clone, clone3, CloneArgs, Thread};
use super::vma::Access;
use super::{fs, mm, Errno, ExitStatus, Process, SysResult, ThreadState};

/// What the vCPU loop does after a system call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Return to user mode with this rax.
    Return(u64),
    /// Return to user mode with these registers (rt_sigreturn).
    Restore(kvm_regs),
    /// This thread ends (exit).
    ExitThread(i32),
    /// The program is ending: stop this vCPU.
    Stop,
}

fn ret(r: SysResult) -> Action {
    Action::Return(match r {
        Ok(v) => v,
        Err(e) => (-(e.0 as i64)) as u64,
    })
}

/// Serves one system call.
pub fn dispatch(p: &Arc<Process>, t: &mut Thread, regs: &kvm_regs) -> Action {
    // exit_group from another thread: this one must not do anything more (Linux would have
    // killed it already).
    if p.exiting() {
        return Action::Stop;
    }
    let nr = regs.rax;
    let a = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
    t.status.syscalls.fetch_add(1, Ordering::Relaxed);
    let action = dispatch_inner(p, t, regs, nr, a);
    if p.config.verbose >= 2 {
        let shown = match action {
            Action::Return(v) => format!("{}", v as i64),
            other => format!("{other:?}"),
        };
        eprintln!(
            "popvmm: {:>8}us [{}] {}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x}) = {shown}",
            p.started.elapsed().as_micros(),
            t.tid,
            name(nr),
            a[0],
            a[1],
            a[2],
            a[3],
            a[4],
            a[5]
        );
    }
    action
}

fn dispatch_inner(
    p: &Arc<Process>,
    t: &mut Thread,
    regs: &kvm_regs,
    nr: u64,
    a: [u64; 6],
) -> Action {
    let fd = a[0] as i32;
    let r = match nr {
        0 => fs::sys_read(p, fd, a[1], a[2], None),
        1 => fs::sys_write(p, fd, a[1], a[2]),
        2 => fs::sys_openat(p, libc::AT_FDCWD, a[0], a[1]),
        3 => fs::sys_close(p, fd),
        4 => fs::sys_newfstatat(p, libc::AT_FDCWD, a[0], a[1], 0),
        5 => fs::sys_fstat(p, fd, a[1]),
        6 => fs::sys_newfstatat(
            p,
            libc::AT_FDCWD,
            a[0],
            a[1],
            libc::AT_SYMLINK_NOFOLLOW as u64,
        ),
        7 => {
            t.status.set(ThreadState::Blocked);
            fs::sys_poll(p, a[0], a[1], a[2] as i32)
        }
        8 => fs::sys_lseek(p, fd, a[1], a[2]),
        9 => mm::call(
            p,
            MmCall::Mmap {
                addr: a[0],
                len: a[1],
                prot: a[2],
                flags: a[3],
                fd: a[4],
                off: a[5],
            },
        ),
        10 => mm::call(
            p,
            MmCall::Mprotect {
                addr: a[0],
                len: a[1],
                prot: a[2],
            },
        ),
        11 => mm::call(
            p,
            MmCall::Munmap {
                addr: a[0],
                len: a[1],
            },
        ),
        12 => mm::call(p, MmCall::Brk(a[0])),
        13 => sys_rt_sigaction(p, a[0], a[1], a[2], a[3]),
        14 => return sys_rt_sigprocmask(p, t, a[0], a[1], a[2], a[3]),
        15 => {
            return match super::sigframe::sigreturn(p, t, regs) {
                Ok(r) => Action::Restore(r),
                // A corrupt frame: Linux kills with SIGSEGV.
                Err(_) => {
                    p.exit(ExitStatus::Signal(libc::SIGSEGV));
                    Action::Stop
                }
            };
        }
        16 => fs::sys_ioctl(p, fd, a[1], a[2]),
        17 => fs::sys_read(p, fd, a[1], a[2], Some(a[3])),
        18 => {
            // pwrite64: stdio answers ESPIPE (a pipe or terminal), the read-only root's files EBADF.
            p.files().get(fd).and_then(|f| {
                if f.mappable() {
                    Err(Errno::EBADF)
                } else {
                    Err(Errno::ESPIPE)
                }
            })
        }
        19 => fs::sys_readv(p, fd, a[1], a[2], None),
        20 => fs::sys_writev(p, fd, a[1], a[2]),
        21 => fs::sys_faccessat(p, libc::AT_FDCWD, a[0], a[1], 0),
        24 => {
            std::thread::yield_now();
            Ok(0)
        }
        25 => mm::call(
            p,
            MmCall::Mremap {
                old: a[0],
                old_len: a[1],
                new_len: a[2],
                flags: a[3],
                new_addr: a[4],
            },
        ),
        26 => {
            if p.user
                .layout()
                .fully_mapped(a[0], a[0].saturating_add(a[1]))
            {
                Ok(0)
            } else {
                Err(Errno::ENOMEM)
            }
        }
        28 => mm::call(
            p,
            MmCall::Madvise {
                addr: a[0],
                len: a[1],
                advice: a[2],
            },
        ),
        32 => fs::sys_dup(p, fd),
        33 => fs::sys_dup3(p, fd, a[1] as i32, 0, true),
        35 => sys_nanosleep(p, t, libc::CLOCK_MONOTONIC, 0, a[0], a[1]),
        39 => Ok(p.pid as u64),
        56 => clone(
            p,
            t,
            regs,
            CloneArgs {
                flags: a[0] & !0xff,
                stack: a[1],
                parent_tid: a[2],
                child_tid: a[3],
                tls: a[4],
                exit_signal: a[0] & 0xff,
            },
        ),
        57 | 58 | 59 | 322 => {
            p.log(
                1,
                format_args!(
                    "{}: new processes and exec are not supported on an island yet",
                    name(nr)
                ),
            );
            Err(Errno::ENOSYS)
        }
        60 => return Action::ExitThread((a[0] & 0xff) as i32),
        61 => Err(Errno::ECHILD),
        62 => return sys_kill(p, t, a[0] as i32 as i64, a[1], None),
        63 => sys_uname(p, a[0]),
        72 => fs::sys_fcntl(p, fd, a[1], a[2]),
        79 => fs::sys_getcwd(p, a[0], a[1]),
        80 => fs::sys_chdir(p, a[0]),
        89 => fs::sys_readlinkat(p, libc::AT_FDCWD, a[0], a[1], a[2]),
        95 => Ok(p.umask.swap((a[0] & 0o777) as u32, Ordering::Relaxed) as u64),
        96 => sys_gettimeofday(p, a[0], a[1]),
        97 => sys_prlimit(p, 0, a[0], 0, a[1]),
        98 => sys_getrusage(p, a[0] as i32, a[1]),
        99 => sys_sysinfo(p, a[0]),
        100 => sys_times(p, a[0]),
        102 | 104 | 107 | 108 => Ok(identity(nr)),
        110 => Ok(std::os::unix::process::parent_id() as u64),
        111 | 124 => Ok(p.pid as u64),
        131 => sys_sigaltstack(p, t, a[0], a[1]),
        157 => sys_prctl(a[0]),
        158 => sys_arch_prctl(p, t, a[0], a[1]),
        186 => Ok(t.tid as u64),
        200 => return sys_kill(p, t, p.pid as i64, a[1], Some(a[0] as u32)),
        201 => sys_time(p, a[0]),
        202 => sys_futex(p, t, a),
        203 => {
            if a[0] == 0 || p.has_thread(a[0] as u32) {
                Ok(0)
            } else {
                Err(Errno::ESRCH)
            }
        }
        204 => sys_sched_getaffinity(p, a[0], a[1], a[2]),
        217 => fs::sys_getdents64(p, fd, a[1], a[2]),
        218 => {
            t.clear_child_tid = a[0];
            Ok(t.tid as u64)
        }
        228 => sys_clock_gettime(p, a[0], a[1], false),
        229 => sys_clock_gettime(p, a[0], a[1], true),
        230 => sys_nanosleep(p, t, a[0] as i32, a[1], a[2], a[3]),
        231 => {
            p.exit(ExitStatus::Code((a[0] & 0xff) as i32));
            return Action::Stop;
        }
        234 => {
            if a[0] as u32 != p.pid {
                Err(Errno::ESRCH)
            } else {
                return sys_kill(p, t, p.pid as i64, a[2], Some(a[1] as u32));
            }
        }
        257 => fs::sys_openat(p, a[0] as i32, a[1], a[2]),
        262 => fs::sys_newfstatat(p, a[0] as i32, a[1], a[2], a[3]),
        267 => fs::sys_readlinkat(p, a[0] as i32, a[1], a[2], a[3]),
        269 => fs::sys_faccessat(p, a[0] as i32, a[1], a[2], 0),
        273 => {
            if a[1] != 24 {
                Err(Errno::EINVAL)
            } else {
                t.robust_list = a[0];
                Ok(0)
            }
        }
        271 => {
            // ppoll: the signal mask argument is irrelevant while handlers never run.
            let timeout = if a[2] == 0 {
                Ok(-1)
            } else {
                read_timespec(p, a[2]).map(|ts| {
                    (ts.sec.saturating_mul(1000) + ts.nsec / 1_000_000).min(i32::MAX as i64) as i32
                })
            };
            t.status.set(ThreadState::Blocked);
            timeout.and_then(|ms| fs::sys_poll(p, a[0], a[1], ms))
        }
        292 => fs::sys_dup3(p, fd, a[1] as i32, a[2], false),
        302 => sys_prlimit(p, a[0], a[1], a[2], a[3]),
        309 => sys_getcpu(p, a[0], a[1]),
        318 => sys_getrandom(p, a[0], a[1], a[2]),
        332 => fs::sys_statx(p, a[0] as i32, a[1], a[2], a[3], a[4]),
        // rseq: glibc copes with ENOSYS (no restartable sequences on an island).
        334 => Err(Errno::ENOSYS),
        435 => clone3(p, t, regs, a[0], a[1]),
        439 => fs::sys_faccessat(p, a[0] as i32, a[1], a[2], a[3]),
        _ => {
            p.log_unknown_once(nr, name(nr));
            Err(Errno::ENOSYS)
        }
    };
    // A write to a pipe nobody reads raises SIGPIPE (fatal by default, silent for the shell),
    // and answers EPIPE when the signal is ignored or blocked.
    if matches!(nr, 1 | 20) && r == Err(Errno::EPIPE) {
        let me = Arc::clone(&t.status);
        if let Action::Stop = deliver(p, t, libc::SIGPIPE as u64, &me, true) {
            return Action::Stop;
        }
    }
    ret(r)
}

/// A name for diagnostics.
pub fn name(nr: u64) -> &'static str {
    match nr {
        0 => "read",
        1 => "write",
        2 => "open",
        3 => "close",
        5 => "fstat",
        7 => "poll",
        9 => "mmap",
        10 => "mprotect",
        11 => "munmap",
        12 => "brk",
        13 => "rt_sigaction",
        14 => "rt_sigprocmask",
        16 => "ioctl",
        20 => "writev",
        22 => "pipe",
        25 => "mremap",
        28 => "madvise",
        39 => "getpid",
        41 => "socket",
        56 => "clone",
        57 => "fork",
        58 => "vfork",
        59 => "execve",
        60 => "exit",
        62 => "kill",
        158 => "arch_prctl",
        186 => "gettid",
        202 => "futex",
        218 => "set_tid_address",
        228 => "clock_gettime",
        231 => "exit_group",
        234 => "tgkill",
        257 => "openat",
        262 => "newfstatat",
        273 => "set_robust_list",
        293 => "pipe2",
        302 => "prlimit64",
        318 => "getrandom",
        322 => "execveat",
        332 => "statx",
        334 => "rseq",
        435 => "clone3",
        _ => "?",
    }
}

#[derive(Clone, Copy)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

fn read_timespec(p: &Process, addr: u64) -> Result<Timespec, Errno> {
    let sec: i64 = p.user.read_obj(addr)?;
    let nsec: i64 = p.user.read_obj(addr + 8)?;
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(Timespec { sec, nsec })
}

fn host_clock(clock: i32) -> Result<Timespec, Errno> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(Errno::last());
    }
    Ok(Timespec {
        sec: ts.tv_sec,
        nsec: ts.tv_nsec,
    })
}

fn valid_clock(clock: u64) -> Result<i32, Errno> {
    let c = clock as i32;
    if (0..=11).contains(&c) && c != 8 && c != 9 {
        Ok(c)
    } else {
        Err(Errno::EINVAL)
    }
}

fn sys_clock_gettime(p: &Process, clock: u64, tp: u64, res: bool) -> SysResult {
    let c = valid_clock(clock)?;
    let ts = if res {
        let mut r = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_getres writes one timespec into `r`.
        if unsafe { libc::clock_getres(c, &mut r) } != 0 {
            return Err(Errno::last());
        }
        if tp == 0 {
            return Ok(0);
        }
        Timespec {
            sec: r.tv_sec,
            nsec: r.tv_nsec,
        }
    } else {
        host_clock(c)?
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&ts.sec.to_le_bytes());
    b[8..].copy_from_slice(&ts.nsec.to_le_bytes());
    p.user.write(tp, &b)?;
    Ok(0)
}

fn sys_gettimeofday(p: &Process, tv: u64, tz: u64) -> SysResult {
    let now = host_clock(libc::CLOCK_REALTIME)?;
    if tv != 0 {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&now.sec.to_le_bytes());
        b[8..].copy_from_slice(&(now.nsec / 1000).to_le_bytes());
        p.user.write(tv, &b)?;
    }
    p.user.write_opt(tz, 0u64)?;
    Ok(0)
}

fn sys_time(p: &Process, tloc: u64) -> SysResult {
    let now = host_clock(libc::CLOCK_REALTIME)?;
    p.user.write_opt(tloc, now.sec)?;
    Ok(now.sec as u64)
}

fn duration_until(clock: i32, abs: Timespec) -> Result<Duration, Errno> {
    let now = host_clock(clock)?;
    let d = (abs.sec as i128 - now.sec as i128) * 1_000_000_000 + (abs.nsec - now.nsec) as i128;
    Ok(Duration::from_nanos(d.clamp(0, u64::MAX as i128) as u64))
}

/// nanosleep and clock_nanosleep (TIMER_ABSTIME in `flags`).
fn sys_nanosleep(p: &Process, t: &Thread, clock: i32, flags: u64, req: u64, rem: u64) -> SysResult {
    valid_clock(clock as u64)?;
    let ts = read_timespec(p, req)?;
    let absolute = flags & libc::TIMER_ABSTIME as u64 != 0;
    let d = if absolute {
        duration_until(clock, ts)?
    } else {
        Duration::new(ts.sec as u64, ts.nsec as u32)
    };
    t.status.set(ThreadState::Blocked);
    // In slices, so that a signal for this thread interrupts the sleep (EINTR, as Linux).
    let end = Instant::now().checked_add(d);
    loop {
        let now = Instant::now();
        let left = match end {
            Some(e) if now >= e => return Ok(0),
            Some(e) => e - now,
            None => super::futex::SIGNAL_CHECK,
        };
        std::thread::sleep(left.min(super::futex::SIGNAL_CHECK));
        if signal_deliverable(t) {
            // A relative sleep reports the time it had left.
            if !absolute && rem != 0 {
                let left = end.map_or(Duration::MAX, |e| {
                    e.saturating_duration_since(Instant::now())
                });
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&(left.as_secs().min(i64::MAX as u64)).to_le_bytes());
                b[8..].copy_from_slice(&u64::from(left.subsec_nanos()).to_le_bytes());
                p.user.write(rem, &b)?;
            }
            return Err(Errno::EINTR);
        }
    }
}

/// Whether a signal is pending for `t` and not blocked (a blocking call must return EINTR).
pub fn signal_deliverable(t: &Thread) -> bool {
    t.status.pending.load(Ordering::SeqCst) & !t.sigmask != 0
}

fn sys_futex(p: &Process, t: &Thread, a: [u64; 6]) -> SysResult {
    let (uaddr, op, val) = (a[0], a[1] as i32, a[2] as u32);
    let cmd = op & !(libc::FUTEX_PRIVATE_FLAG | libc::FUTEX_CLOCK_REALTIME);
    let realtime = op & libc::FUTEX_CLOCK_REALTIME != 0;
    let call = match cmd {
        libc::FUTEX_WAIT | libc::FUTEX_WAIT_BITSET => {
            let bitset = if cmd == libc::FUTEX_WAIT {
                BITSET_MATCH_ANY
            } else {
                a[5] as u32
            };
            let timeout_ns = if a[3] == 0 {
                None
            } else {
                let ts = read_timespec(p, a[3])?;
                let d = if cmd == libc::FUTEX_WAIT {
                    Duration::new(ts.sec as u64, ts.nsec as u32)
                } else {
                    let clock = if realtime {
                        libc::CLOCK_REALTIME
                    } else {
                        libc::CLOCK_MONOTONIC
                    };
                    duration_until(clock, ts)?
                };
                Some(d.as_nanos().min(u64::MAX as u128) as u64)
            };
            t.status.set(ThreadState::Blocked);
            FutexCall::Wait {
                addr: uaddr,
                val,
                bitset,
                timeout_ns,
            }
        }
        libc::FUTEX_WAKE => FutexCall::Wake {
            addr: uaddr,
            n: val,
            bitset: BITSET_MATCH_ANY,
        },
        libc::FUTEX_WAKE_BITSET => FutexCall::Wake {
            addr: uaddr,
            n: val,
            bitset: a[5] as u32,
        },
        libc::FUTEX_REQUEUE | libc::FUTEX_CMP_REQUEUE => {
            let n_requeue = a[3] as u32;
            if (val as i32) < 0 || (n_requeue as i32) < 0 {
                return Err(Errno::EINVAL);
            }
            FutexCall::Requeue {
                addr: uaddr,
                addr2: a[4],
                n_wake: val,
                n_requeue,
                check: (cmd == libc::FUTEX_CMP_REQUEUE).then_some(a[5] as u32),
            }
        }
        libc::FUTEX_WAKE_OP => FutexCall::WakeOp {
            addr: uaddr,
            addr2: a[4],
            n: val,
            n2: a[3] as u32,
            encoded: a[5] as u32,
        },
        _ => {
            p.log_unknown_once(202_000 + cmd as u64, "futex operation");
            return Err(Errno::ENOSYS);
        }
    };
    futex(p, Some(t), call)
}

/// A futex operation, wherever it is made: served here on a single island, by the origin when
/// the program spans several (so that a wake on one island reaches a waiter on another).
/// `t` is the calling thread (a signal for it interrupts a wait), if any.
pub fn futex(p: &Process, t: Option<&Thread>, call: FutexCall) -> SysResult {
    let interrupted = || t.is_some_and(signal_deliverable);
    match &p.cluster {
        Some(link) if !link.is_origin() => {
            let reply = link.call(ORIGIN, Request::Futex(call), |wait| {
                interrupted().then_some(Request::FutexCancel { wait })
            });
            cluster::reply_result(reply)
        }
        _ => futex_at_origin(p, call, &interrupted),
    }
}

/// FUTEX_WAKE from the island kernel itself (thread exit, robust lists).
pub fn futex_wake(p: &Process, addr: u64) {
    let _ = futex(
        p,
        None,
        FutexCall::Wake {
            addr,
            n: 1,
            bitset: BITSET_MATCH_ANY,
        },
    );
}

/// Serves a futex operation on the futex table of this island (the origin's, with several):
/// the futex words are read through `UserMemory`, hence through the coherency protocol.
pub fn futex_at_origin(p: &Process, call: FutexCall, interrupted: &dyn Fn() -> bool) -> SysResult {
    match call {
        FutexCall::Wait {
            addr,
            val,
            bitset,
            timeout_ns,
        } => {
            // A deadline beyond what Instant can represent is no deadline.
            let deadline =
                timeout_ns.and_then(|ns| Instant::now().checked_add(Duration::from_nanos(ns)));
            p.futexes
                .wait(
                    addr,
                    val,
                    bitset,
                    deadline,
                    || p.user.load_u32(addr),
                    interrupted,
                )
                .map(|_| 0)
        }
        FutexCall::Wake { addr, n, bitset } => p.futexes.wake(addr, n, bitset).map(u64::from),
        FutexCall::Requeue {
            addr,
            addr2,
            n_wake,
            n_requeue,
            check,
        } => {
            let read_word = || p.user.load_u32(addr);
            let check: Option<(u32, super::futex::ReadWord<'_>)> =
                check.map(|v| (v, &read_word as super::futex::ReadWord<'_>));
            p.futexes
                .requeue(addr, addr2, n_wake, n_requeue, check)
                .map(u64::from)
        }
        FutexCall::WakeOp {
            addr,
            addr2,
            n,
            n2,
            encoded,
        } => p
            .futexes
            .wake_op(addr, addr2, n, n2, || wake_op_update(p, addr2, encoded))
            .map(u64::from),
    }
}

/// FUTEX_WAKE_OP's atomic update of the second word; returns the comparison's result.
fn wake_op_update(p: &Process, addr: u64, encoded: u32) -> Result<bool, Errno> {
    let op = (encoded >> 28) & 0x7;
    let shift = (encoded >> 28) & 0x8 != 0;
    let cmp = (encoded >> 24) & 0xf;
    let mut oparg = (encoded >> 12) & 0xfff;
    let cmparg = encoded & 0xfff;
    if shift {
        oparg = 1u32.checked_shl(oparg).unwrap_or(0);
    }
    let old = p.user.with_atomic_u32(addr, Access::Write, |w| {
        w.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
            Some(match op {
                0 => oparg,
                1 => v.wrapping_add(oparg),
                2 => v | oparg,
                3 => v & !oparg,
                _ => v ^ oparg,
            })
        })
    })?;
    let old = old.unwrap_or_else(|v| v) as i32;
    let cmparg = cmparg as i32;
    Ok(match cmp {
        0 => old == cmparg,
        1 => old != cmparg,
        2 => old < cmparg,
        3 => old <= cmparg,
        4 => old > cmparg,
        5 => old >= cmparg,
        _ => return Err(Errno::ENOSYS),
    })
}

fn sys_rt_sigaction(p: &Process, sig: u64, act: u64, oldact: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let new = if act == 0 {
        None
    } else {
        let b = p.user.read_vec(act, 32)?;
        let f = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        Some(SigAction {
            handler: f(0),
            flags: f(1),
            restorer: f(2),
            mask: f(3),
        })
    };
    let old = p.signals.action(sig, new)?;
    if oldact != 0 {
        let mut b = [0u8; 32];
        for (i, v) in [old.handler, old.flags, old.restorer, old.mask]
            .iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        p.user.write(oldact, &b)?;
    }
    Ok(0)
}

const SS_AUTODISARM: u32 = 1 << 31;
use super::signal::UNBLOCKABLE;

fn sys_rt_sigprocmask(
    p: &Arc<Process>,
    t: &mut Thread,
    how: u64,
    set: u64,
    old: u64,
    size: u64,
) -> Action {
    let r = (|| {
        if size != 8 {
            return Err(Errno::EINVAL);
        }
        let new: Option<u64> = if set == 0 {
            None
        } else {
            Some(p.user.read_obj(set)?)
        };
        let prev = t.sigmask;
        if let Some(s) = new {
            t.sigmask = match how as i32 {
                libc::SIG_BLOCK => prev | s,
                libc::SIG_UNBLOCK => prev & !s,
                libc::SIG_SETMASK => s,
                _ => return Err(Errno::EINVAL),
            } & !UNBLOCKABLE;
        }
        p.user.write_opt(old, prev)?;
        Ok(0)
    })();
    // Signals this unblocks are delivered by the vCPU loop on the way back to user mode.
    ret(r)
}

fn sys_sigaltstack(p: &Process, t: &mut Thread, ss: u64, old: u64) -> SysResult {
    let prev = t.altstack;
    if ss != 0 {
        let sp: u64 = p.user.read_obj(ss)?;
        let flags: u32 = p.user.read_obj(ss + 8)?;
        let size: u64 = p.user.read_obj(ss + 16)?;
        if flags & !(libc::SS_DISABLE as u32 | SS_AUTODISARM) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & libc::SS_DISABLE as u32 == 0 && size < libc::MINSIGSTKSZ as u64 {
            return Err(Errno::ENOMEM);
        }
        t.altstack = (sp, flags, size);
    }
    if old != 0 {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&prev.0.to_le_bytes());
        b[8..12].copy_from_slice(&prev.1.to_le_bytes());
        b[16..].copy_from_slice(&prev.2.to_le_bytes());
        p.user.write(old, &b)?;
    }
    Ok(0)
}

/// kill/tkill/tgkill to the program itself.
fn sys_kill(p: &Arc<Process>, t: &mut Thread, pid: i64, sig: u64, tid: Option<u32>) -> Action {
    if sig > 64 {
        return ret(Err(Errno::EINVAL));
    }
    let ours = pid == p.pid as i64 || pid == 0 || pid == -1;
    if !ours {
        return ret(Err(Errno::ESRCH));
    }
    if let Some(tid) = tid {
        if tid != t.tid && !p.has_thread(tid) {
            return ret(Err(Errno::ESRCH));
        }
    }
    if sig == 0 {
        return ret(Ok(0));
    }
    let target = match tid {
        Some(x) if x != t.tid => match p.thread(x) {
            Some(s) => s,
            None => {
                // A thread of another island: its kernel marks and kicks it.
                let remote = p
                    .cluster
                    .as_ref()
                    .and_then(|l| l.program.island_of(x).map(|island| (l, island)));
                return match remote {
                    Some((link, island)) => {
                        if p.signals.disposition(sig) == Disposition::Ignore {
                            return ret(Ok(0));
                        }
                        if p.signals.disposition(sig) == Disposition::Terminate {
                            p.exit(ExitStatus::Signal(sig as i32));
                            return Action::Stop;
                        }
                        let r = link.call(
                            island,
                            Request::Signal {
                                tid: x,
                                sig: sig as u32,
                            },
                            |_| None,
                        );
                        ret(cluster::reply_result(r).map(|_| 0))
                    }
                    None => ret(Err(Errno::ESRCH)),
                };
            }
        },
        _ => Arc::clone(&t.status),
    };
    let to_self = Arc::ptr_eq(&target, &t.status);
    deliver(p, t, sig, &target, to_self)
}

/// Sends `sig` to the thread whose status is `target`. Fatal default actions end the program at
/// once (unless the caller itself blocks the signal); handlers run when the target next returns to
/// user mode (for the caller: right after this system call).
fn deliver(
    p: &Arc<Process>,
    t: &mut Thread,
    sig: u64,
    target: &super::ThreadStatus,
    to_self: bool,
) -> Action {
    let bit = 1u64 << (sig - 1);
    match p.signals.disposition(sig) {
        Disposition::Ignore => Action::Return(0),
        Disposition::Terminate if !(to_self && t.sigmask & bit != 0) => {
            p.exit(ExitStatus::Signal(sig as i32));
            Action::Stop
        }
        _ => {
            target.pending.fetch_or(bit, Ordering::SeqCst);
            if !to_self {
                p.kick(target.tid);
            }
            Action::Return(0)
        }
    }
}

fn sys_arch_prctl(p: &Process, t: &mut Thread, code: u64, addr: u64) -> SysResult {
    const ARCH_SET_GS: u64 = 0x1001;
    const ARCH_SET_FS: u64 = 0x1002;
    const ARCH_GET_FS: u64 = 0x1003;
    const ARCH_GET_GS: u64 = 0x1004;
    match code {
        ARCH_SET_FS => {
            if addr >= 1 << 47 {
                return Err(Errno::EPERM);
            }
            t.new_fs_base = Some(addr);
            Ok(0)
        }
        ARCH_GET_FS => {
            let fs = match t.new_fs_base {
                Some(f) => f,
                None => t.vcpu.sregs().map_err(|_| Errno::EIO)?.fs.base,
            };
            p.user.write_obj(addr, fs).map(|_| 0)
        }
        ARCH_SET_GS => {
            if addr >= 1 << 47 {
                return Err(Errno::EPERM);
            }
            let mut s = t.vcpu.sregs().map_err(|_| Errno::EIO)?;
            s.gs.base = addr;
            t.vcpu.set_sregs(&s).map_err(|_| Errno::EIO)?;
            Ok(0)
        }
        ARCH_GET_GS => {
            let gs = t.vcpu.sregs().map_err(|_| Errno::EIO)?.gs.base;
            p.user.write_obj(addr, gs).map(|_| 0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// getuid/getgid/geteuid/getegid: the program runs as popvmm's user.
fn identity(nr: u64) -> u64 {
    // SAFETY: identity queries without arguments; they cannot fail.
    let id = unsafe {
        match nr {
            102 => libc::getuid(),
            104 => libc::getgid(),
            107 => libc::geteuid(),
            _ => libc::getegid(),
        }
    };
    id as u64
}

fn sys_prctl(option: u64) -> SysResult {
    match option as i32 {
        // Thread names and the like are accepted and not kept.
        libc::PR_SET_NAME | libc::PR_SET_DUMPABLE | libc::PR_SET_PDEATHSIG => Ok(0),
        libc::PR_GET_DUMPABLE => Ok(1),
        _ => Err(Errno::EINVAL),
    }
}

fn sys_uname(p: &Process, buf: u64) -> SysResult {
    // SAFETY: an all-zero utsname is a valid value; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes one utsname into `u`.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(Errno::last());
    }
    let mut out = vec![0u8; 6 * 65];
    let fields = [
        &u.sysname,
        &u.nodename,
        &u.release,
        &u.version,
        &u.machine,
        &u.domainname,
    ];
    for (i, f) in fields.iter().enumerate() {
        for (j, c) in f.iter().take(64).enumerate() {
            out[i * 65 + j] = *c as u8;
        }
    }
    // The island's own host name.
    let node = format!("island{}", p.config.island);
    out[65..130].fill(0);
    out[65..65 + node.len()].copy_from_slice(node.as_bytes());
    p.user.write(buf, &out)?;
    Ok(0)
}

/// getrusage: popvmm's own usage (guest time counts as the vCPU threads' user time).
fn sys_getrusage(p: &Process, who: i32, buf: u64) -> SysResult {
    let host_who = match who {
        libc::RUSAGE_SELF | libc::RUSAGE_CHILDREN | libc::RUSAGE_THREAD => who,
        _ => return Err(Errno::EINVAL),
    };
    let mut out = [0u8; std::mem::size_of::<libc::rusage>()];
    // SAFETY: getrusage writes one `struct rusage` into `out`, which has exactly its size.
    if unsafe { libc::getrusage(host_who, out.as_mut_ptr().cast()) } != 0 {
        return Err(Errno::last());
    }
    p.user.write(buf, &out)?;
    Ok(0)
}

fn sys_times(p: &Process, buf: u64) -> SysResult {
    let mut out = [0u8; std::mem::size_of::<libc::tms>()];
    // SAFETY: times writes one `struct tms` into `out`, which has exactly its size.
    let r = unsafe { libc::times(out.as_mut_ptr().cast()) };
    if buf != 0 {
        p.user.write(buf, &out)?;
    }
    Ok(r as u64)
}

fn sys_sysinfo(p: &Process, buf: u64) -> SysResult {
    let mut out = [0u8; 112];
    // SAFETY: sysinfo writes one `struct sysinfo` (112 bytes on x86-64) into `out`.
    if unsafe { libc::sysinfo(out.as_mut_ptr().cast()) } != 0 {
        return Err(Errno::last());
    }
    p.user.write(buf, &out)?;
    Ok(0)
}

fn sys_prlimit(p: &Process, pid: u64, resource: u64, new: u64, old: u64) -> SysResult {
    if pid != 0 && pid != p.pid as u64 {
        return Err(Errno::ESRCH);
    }
    let res = resource as u32;
    if res >= 16 {
        return Err(Errno::EINVAL);
    }
    if new != 0 {
        // Read and validate, but limits are not enforced on an island.
        let cur: u64 = p.user.read_obj(new)?;
        let max: u64 = p.user.read_obj(new + 8)?;
        if cur > max {
            return Err(Errno::EINVAL);
        }
    }
    if old != 0 {
        let (cur, max) = match res {
            r if r == libc::RLIMIT_NOFILE => (fs::MAX_FDS as u64, fs::MAX_FDS as u64),
            r if r == libc::RLIMIT_STACK => (crate::memory::layout::STACK_SIZE, u64::MAX),
            r => {
                let mut rl = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: getrlimit writes one rlimit into `rl`.
                if unsafe { libc::getrlimit(r as _, &mut rl) } != 0 {
                    return Err(Errno::last());
                }
                (rl.rlim_cur, rl.rlim_max)
            }
        };
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&cur.to_le_bytes());
        b[8..].copy_from_slice(&max.to_le_bytes());
        p.user.write(old, &b)?;
    }
    Ok(0)
}

fn sys_sched_getaffinity(p: &Process, pid: u64, len: u64, mask: u64) -> SysResult {
    if pid != 0 && !p.has_thread(pid as u32) {
        return Err(Errno::ESRCH);
    }
    let len = len.min(4096) as usize;
    let mut buf = vec![0u8; len];
    // The island's vCPUs run on popvmm's CPUs: report popvmm's own affinity.
    // SAFETY: the raw syscall writes at most `len` bytes into `buf`.
    let n = unsafe { libc::syscall(libc::SYS_sched_getaffinity, 0, len, buf.as_mut_ptr()) };
    if n < 0 {
        return Err(Errno::last());
    }
    p.user.write(mask, &buf[..n as usize])?;
    Ok(n as u64)
}

fn sys_getcpu(p: &Process, cpu: u64, node: u64) -> SysResult {
    // SAFETY: sched_getcpu has no arguments.
    let c = unsafe { libc::sched_getcpu() }.max(0) as u32;
    p.user.write_opt(cpu, c)?;
    p.user.write_opt(node, 0u32)?;
    Ok(0)
}

fn sys_getrandom(p: &Process, buf: u64, len: u64, flags: u64) -> SysResult {
    if flags & !(libc::GRND_NONBLOCK | libc::GRND_RANDOM | 0x4) as u64 != 0 {
        return Err(Errno::EINVAL);
    }
    let len = len.min(1 << 20) as usize;
    let mut b = vec![0u8; len];
    // SAFETY: getrandom writes at most `len` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), len, 0) };
    if n < 0 {
        return Err(Errno::last());
    }
    p.user.write(buf, &b[..n as usize])?;
    Ok(n as u64)
}
