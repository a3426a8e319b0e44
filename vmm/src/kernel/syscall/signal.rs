//! The signal family: actions (the origin's, through the services port), the thread's mask and
//! alternate stack (its own), sigreturn, and kill/tkill/tgkill to any thread of the program.

use std::sync::atomic::Ordering;

use super::{ret, sys, Action, Call, Handler::Action as Act, Handler::Sys, Syscall};
use crate::kernel::errno::{Errno, ExitStatus, SysResult};
use crate::kernel::sigframe;
use crate::kernel::signal::{Disposition, SigAction, UNBLOCKABLE};

pub const CALLS: &[Syscall] = &[
    sys(libc::SYS_rt_sigaction, "rt_sigaction", Sys(rt_sigaction)),
    sys(
        libc::SYS_rt_sigprocmask,
        "rt_sigprocmask",
        Sys(rt_sigprocmask),
    ),
    sys(libc::SYS_rt_sigreturn, "rt_sigreturn", Act(rt_sigreturn)),
    sys(
        libc::SYS_kill,
        "kill",
        Act(|c| {
            let (pid, sig) = (c.a[0] as i32 as i64, c.a[1]);
            kill(c, pid, sig, None)
        }),
    ),
    sys(libc::SYS_sigaltstack, "sigaltstack", Sys(sigaltstack)),
    sys(libc::SYS_rt_sigpending, "rt_sigpending", Sys(rt_sigpending)),
    sys(
        libc::SYS_tkill,
        "tkill",
        Act(|c| {
            let (pid, tid, sig) = (c.island.pid as i64, c.a[0] as u32, c.a[1]);
            kill(c, pid, sig, Some(tid))
        }),
    ),
    sys(
        libc::SYS_tgkill,
        "tgkill",
        Act(|c| {
            if c.a[0] as u32 != c.island.pid {
                return ret(Err(Errno::ESRCH));
            }
            let (pid, tid, sig) = (c.island.pid as i64, c.a[1] as u32, c.a[2]);
            kill(c, pid, sig, Some(tid))
        }),
    ),
];

fn rt_sigaction(c: &mut Call<'_>) -> SysResult {
    let (sig, act, oldact, size) = (c.a[0], c.a[1], c.a[2], c.a[3]);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let user = &c.island.user;
    let new = if act == 0 {
        None
    } else {
        let b = user.read_vec(act, 32)?;
        let f = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        Some(SigAction {
            handler: f(0),
            flags: f(1),
            restorer: f(2),
            mask: f(3),
        })
    };
    let old = c.island.services.sigaction(sig, new)?;
    if oldact != 0 {
        let mut b = [0u8; 32];
        for (i, v) in [old.handler, old.flags, old.restorer, old.mask]
            .iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        user.write(oldact, &b)?;
    }
    Ok(0)
}

/// Signals this unblocks are delivered by the vCPU loop on the way back to user mode.
fn rt_sigprocmask(c: &mut Call<'_>) -> SysResult {
    let (how, set, old, size) = (c.a[0], c.a[1], c.a[2], c.a[3]);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let user = &c.island.user;
    let new: Option<u64> = if set == 0 {
        None
    } else {
        Some(user.read_obj(set)?)
    };
    let prev = c.t.sigmask;
    if let Some(s) = new {
        c.t.sigmask = match how as i32 {
            libc::SIG_BLOCK => prev | s,
            libc::SIG_UNBLOCK => prev & !s,
            libc::SIG_SETMASK => s,
            _ => return Err(Errno::EINVAL),
        } & !UNBLOCKABLE;
    }
    user.write_opt(old, prev)?;
    Ok(0)
}

fn rt_sigreturn(c: &mut Call<'_>) -> Action {
    match sigframe::sigreturn(&c.island.user, c.t, c.regs) {
        Ok(r) => Action::Restore(r),
        // A corrupt frame: Linux kills with SIGSEGV.
        Err(_) => {
            c.island
                .services
                .exit_group(ExitStatus::Signal(libc::SIGSEGV));
            Action::Stop
        }
    }
}

/// rt_sigpending: the signals raised for the thread and not delivered yet (the blocked ones:
/// the others are delivered on the way back to user mode).
fn rt_sigpending(c: &mut Call<'_>) -> SysResult {
    let (set, size) = (c.a[0], c.a[1]);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let pending = c.t.status.pending.load(Ordering::SeqCst);
    c.island.user.write_obj(set, pending)?;
    Ok(0)
}

const SS_AUTODISARM: u32 = 1 << 31;

fn sigaltstack(c: &mut Call<'_>) -> SysResult {
    let (ss, old) = (c.a[0], c.a[1]);
    let user = &c.island.user;
    let prev = c.t.altstack;
    if ss != 0 {
        let sp: u64 = user.read_obj(ss)?;
        let flags: u32 = user.read_obj(ss + 8)?;
        let size: u64 = user.read_obj(ss + 16)?;
        if flags & !(libc::SS_DISABLE as u32 | SS_AUTODISARM) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & libc::SS_DISABLE as u32 == 0 && size < libc::MINSIGSTKSZ as u64 {
            return Err(Errno::ENOMEM);
        }
        c.t.altstack = (sp, flags, size);
    }
    if old != 0 {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&prev.0.to_le_bytes());
        b[8..12].copy_from_slice(&prev.1.to_le_bytes());
        b[16..].copy_from_slice(&prev.2.to_le_bytes());
        user.write(old, &b)?;
    }
    Ok(0)
}

/// kill/tkill/tgkill to the program itself: `tid` None is the whole program (the caller takes it).
fn kill(c: &mut Call<'_>, pid: i64, sig: u64, tid: Option<u32>) -> Action {
    if sig > 64 {
        return ret(Err(Errno::EINVAL));
    }
    let ours = pid == c.island.pid as i64 || pid == 0 || pid == -1;
    if !ours {
        return ret(Err(Errno::ESRCH));
    }
    let target = tid.unwrap_or(c.t.tid);
    let local = c.island.thread(target);
    if target != c.t.tid && local.is_none() && c.island.services.locate(target).is_none() {
        return ret(Err(Errno::ESRCH));
    }
    if sig == 0 {
        return ret(Ok(0));
    }
    if target == c.t.tid {
        return deliver_to_self(c, sig);
    }
    let act = match c.island.services.sigaction(sig, None) {
        Ok(a) => a,
        Err(e) => return ret(Err(e)),
    };
    match act.disposition(sig) {
        Disposition::Ignore => ret(Ok(0)),
        Disposition::Terminate => {
            c.island.services.exit_group(ExitStatus::Signal(sig as i32));
            Action::Stop
        }
        Disposition::Handler => match local {
            // Handlers run when the target next returns to user mode.
            Some(_) => {
                c.island.post_signal(target, sig as u32);
                ret(Ok(0))
            }
            // A thread of another island: its kernel marks and kicks it.
            None => ret(c
                .island
                .services
                .signal_thread(target, sig as u32)
                .map(|_| 0)),
        },
    }
}

/// Sends `sig` to the calling thread. A fatal default action ends the program at once (unless
/// the thread blocks the signal); a handler runs right after this system call.
pub fn deliver_to_self(c: &mut Call<'_>, sig: u64) -> Action {
    let bit = 1u64 << (sig - 1);
    let act = match c.island.services.sigaction(sig, None) {
        Ok(a) => a,
        Err(e) => return ret(Err(e)),
    };
    match act.disposition(sig) {
        Disposition::Ignore => Action::Return(0),
        Disposition::Terminate if c.t.sigmask & bit == 0 => {
            c.island.services.exit_group(ExitStatus::Signal(sig as i32));
            Action::Stop
        }
        _ => {
            c.t.status.pending.fetch_or(bit, Ordering::SeqCst);
            Action::Return(0)
        }
    }
}
