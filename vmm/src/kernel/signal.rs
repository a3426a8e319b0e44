//! Signals: dispositions recorded by rt_sigaction, per-thread masks, and default actions.
//!
//! A signal with a handler is delivered through a signal frame (`sigframe`) when its thread next
//! returns to user mode: after a system call, or at once for a CPU fault. A signal whose default
//! action terminates ends the program as Linux would (status 128+N for the shell, and the shell's
//! message); an ignored one is dropped.

use std::sync::Mutex;

use super::errno::Errno;
use crate::sync::lock;

/// One recorded `struct sigaction` (kernel layout: handler, flags, restorer, mask).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// SIGKILL and SIGSTOP can never be blocked.
pub const UNBLOCKABLE: u64 = (1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1));

pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;
pub const NSIG: usize = 64;

/// What a signal does when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Terminate,
    Ignore,
    /// A handler is installed.
    Handler,
}

#[derive(Debug)]
pub struct Signals {
    actions: Mutex<[SigAction; NSIG]>,
}

impl Default for Signals {
    fn default() -> Self {
        Self {
            actions: Mutex::new([SigAction::default(); NSIG]),
        }
    }
}

impl Signals {
    /// rt_sigaction: installs `new` (if any) and returns the previous action.
    pub fn action(&self, sig: u64, new: Option<SigAction>) -> Result<SigAction, Errno> {
        let i = valid(sig)?;
        if new.is_some() && (sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64) {
            return Err(Errno::EINVAL);
        }
        let mut a = lock(&self.actions);
        let old = a[i];
        if let Some(n) = new {
            a[i] = n;
        }
        Ok(old)
    }

    /// The action recorded for `sig` (default for an invalid number).
    pub fn get(&self, sig: u64) -> SigAction {
        valid(sig)
            .map(|i| lock(&self.actions)[i])
            .unwrap_or_default()
    }

    pub fn disposition(&self, sig: u64) -> Disposition {
        self.get(sig).disposition(sig)
    }
}

impl SigAction {
    /// What `sig` does under this action.
    pub fn disposition(&self, sig: u64) -> Disposition {
        if valid(sig).is_err() {
            return Disposition::Ignore;
        }
        match self.handler {
            SIG_DFL if default_ignored(sig as i32) => Disposition::Ignore,
            SIG_DFL => Disposition::Terminate,
            SIG_IGN => Disposition::Ignore,
            _ => Disposition::Handler,
        }
    }
}

fn valid(sig: u64) -> Result<usize, Errno> {
    if sig == 0 || sig as usize > NSIG {
        Err(Errno::EINVAL)
    } else {
        Ok(sig as usize - 1)
    }
}

/// Signals whose default action is to do nothing (or to stop, which we treat the same).
fn default_ignored(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGCHLD
            | libc::SIGURG
            | libc::SIGWINCH
            | libc::SIGCONT
            | libc::SIGSTOP
            | libc::SIGTSTP
            | libc::SIGTTIN
            | libc::SIGTTOU
    )
}

/// The signal Linux sends for a CPU exception raised in user mode.
pub fn signal_for_vector(vector: u8) -> i32 {
    match vector {
        0 | 16 | 19 => libc::SIGFPE,  // #DE, #MF, #XM
        1 | 3 => libc::SIGTRAP,       // #DB, #BP
        6 => libc::SIGILL,            // #UD
        10..=12 | 17 => libc::SIGBUS, // #TS, #NP, #SS, #AC
        _ => libc::SIGSEGV,           // #GP, #PF, #OF, #BR, others
    }
}

/// What bash prints when a job dies of `sig` (its strsignal text, without "(core dumped)":
/// popvmm writes no core file).
pub fn shell_message(sig: i32) -> Option<String> {
    let s = match sig {
        libc::SIGHUP => "Hangup",
        libc::SIGINT | libc::SIGPIPE => return None, // bash stays silent for these
        libc::SIGQUIT => "Quit",
        libc::SIGILL => "Illegal instruction",
        libc::SIGTRAP => "Trace/breakpoint trap",
        libc::SIGABRT => "Aborted",
        libc::SIGBUS => "Bus error",
        libc::SIGFPE => "Floating point exception",
        libc::SIGKILL => "Killed",
        libc::SIGUSR1 => "User defined signal 1",
        libc::SIGSEGV => "Segmentation fault",
        libc::SIGUSR2 => "User defined signal 2",
        libc::SIGALRM => "Alarm clock",
        libc::SIGTERM => "Terminated",
        libc::SIGSTKFLT => "Stack fault",
        libc::SIGXCPU => "CPU time limit exceeded",
        libc::SIGXFSZ => "File size limit exceeded",
        libc::SIGVTALRM => "Virtual timer expired",
        libc::SIGPROF => "Profiling timer expired",
        libc::SIGIO => "I/O possible",
        libc::SIGPWR => "Power failure",
        libc::SIGSYS => "Bad system call",
        s if (34..=64).contains(&s) => return Some(format!("Real-time signal {}", s - 34)),
        s => return Some(format!("Unknown signal {s}")),
    };
    Some(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions() {
        let s = Signals::default();
        assert_eq!(s.disposition(libc::SIGABRT as u64), Disposition::Terminate);
        assert_eq!(s.disposition(libc::SIGCHLD as u64), Disposition::Ignore);
        let ign = SigAction {
            handler: SIG_IGN,
            ..Default::default()
        };
        assert_eq!(
            s.action(libc::SIGTERM as u64, Some(ign)),
            Ok(SigAction::default())
        );
        assert_eq!(s.disposition(libc::SIGTERM as u64), Disposition::Ignore);
        assert_eq!(
            s.action(libc::SIGKILL as u64, Some(ign)),
            Err(Errno::EINVAL)
        );
        assert_eq!(s.action(0, None), Err(Errno::EINVAL));
        assert_eq!(s.action(65, None), Err(Errno::EINVAL));
    }

    #[test]
    fn faults_and_messages() {
        assert_eq!(signal_for_vector(0), libc::SIGFPE);
        assert_eq!(signal_for_vector(14), libc::SIGSEGV);
        assert_eq!(signal_for_vector(6), libc::SIGILL);
        assert_eq!(
            shell_message(libc::SIGSEGV).as_deref(),
            Some("Segmentation fault")
        );
        assert_eq!(shell_message(libc::SIGPIPE), None);
    }
}
