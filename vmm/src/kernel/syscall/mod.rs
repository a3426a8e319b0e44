//! The system-call table: every call the island kernel serves, its number (from `libc::SYS_*`),
//! its name (for `-vv`) and its handler, in one entry, grouped by family: `fs` (the program's
//! files), `mm` (memory), `futex`, `signal`, `time`, `thread` (threads and scheduling), `process`
//! (identity, limits, system information). Arguments come in rdi, rsi, rdx, r10, r8, r9.
//!
//! A handler is one of three kinds: a plain call on the calling thread's island (`Sys`), a call
//! that decides what the vCPU loop does next (`Action`: exit, sigreturn, a thread to start), or a
//! file call (`File`), which the files service serves against the program's descriptor table (on
//! the origin; from another island it travels there as a request). Unknown calls answer ENOSYS
//! and are counted by number (`/stats`).

mod fs;
mod futex;
mod mm;
pub mod popcorn;
mod process;
mod signal;
mod thread;
mod time;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};

use kvm_bindings::kvm_regs;

pub use self::futex::futex_wake;
pub use self::signal::deliver_to_self;
use super::errno::{Errno, SysResult};
use super::fs::FileCx;
use super::island::Island;
use super::messages::{FileCall, IslandId, ThreadImage};
use super::thread::{Thread, ThreadState};
use super::wait::Abandon;
use super::wait::Waiting;
use crate::sync::lock;

/// What the vCPU loop does after a system call.
#[derive(Debug, Clone)]
pub enum Action {
    /// Return to user mode with this rax.
    Return(u64),
    /// Return to user mode with these registers (rt_sigreturn).
    Restore(kvm_regs),
    /// This thread ends (exit).
    ExitThread(i32),
    /// The program is ending: stop this vCPU.
    Stop,
    /// clone placed the new thread on this island: start it, and return its tid.
    StartThread(Box<ThreadImage>),
    /// Move this thread to island `to` and resume it there with `resume` (None: returning 0
    /// from this call). If it cannot move, the call returns the error.
    Migrate {
        to: IslandId,
        resume: Option<Box<kvm_regs>>,
    },
}

/// One system call being served: the calling thread, its island, its registers and arguments.
#[derive(Debug)]
pub struct Call<'a> {
    pub island: &'a Arc<Island>,
    pub t: &'a mut Thread,
    pub regs: &'a kvm_regs,
    pub nr: u64,
    pub a: [u64; 6],
}

impl Call<'_> {
    /// Why a blocking call gives up now, if it does: a signal for the thread, or the end of the
    /// program.
    pub fn abandon(&self) -> Option<Abandon> {
        if self.island.exiting() {
            return Some(Abandon::Interrupted);
        }
        // A migration asked from outside interrupts a call that starts again on the destination.
        if self.t.status.migration_requested() && restartable(self.nr) {
            return Some(Abandon::Interrupted);
        }
        self.t.abandon()
    }

    /// Runs `f` with how this thread waits in a blocking call (until `deadline`).
    pub fn waiting<R>(
        &self,
        deadline: Option<std::time::Instant>,
        f: impl FnOnce(&Waiting<'_>) -> R,
    ) -> R {
        let abandon = || self.abandon();
        f(&Waiting {
            wakeup: &self.t.status.wakeup,
            deadline,
            abandon: &abandon,
        })
    }
}

/// A handler, by how it is served.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Served on the calling thread's island; the result goes back in rax.
    Sys(fn(&mut Call<'_>) -> SysResult),
    /// Decides what the vCPU loop does next.
    Action(fn(&mut Call<'_>) -> Action),
    /// A file call, served by the files service (see `Services::file`).
    File(fn(&FileCx<'_>, [u64; 6]) -> SysResult),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Handler::Sys(_) => "Sys",
            Handler::Action(_) => "Action",
            Handler::File(_) => "File",
        })
    }
}

/// One entry of the table.
#[derive(Debug, Clone, Copy)]
pub struct Syscall {
    pub nr: u64,
    pub name: &'static str,
    /// The call may sleep for long (the thread shows as blocked meanwhile).
    pub blocks: bool,
    pub handler: Handler,
}

/// An entry (a `const fn` so that the families' tables are constants).
pub const fn sys(nr: libc::c_long, name: &'static str, handler: Handler) -> Syscall {
    Syscall {
        nr: nr as u64,
        name,
        blocks: false,
        handler,
    }
}

/// An entry for a call that may sleep for long.
pub const fn blocking(nr: libc::c_long, name: &'static str, handler: Handler) -> Syscall {
    Syscall {
        nr: nr as u64,
        name,
        blocks: true,
        handler,
    }
}

/// The families, in the order the table lists them.
const FAMILIES: [&[Syscall]; 8] = [
    fs::CALLS,
    mm::CALLS,
    futex::CALLS,
    signal::CALLS,
    time::CALLS,
    thread::CALLS,
    process::CALLS,
    popcorn::CALLS,
];

/// The numbers the table can hold (x86-64 Linux numbers stop below 512; Popcorn's calls are at
/// 900-903).
const MAX_NR: usize = 1024;

static INDEX: LazyLock<Vec<Option<&'static Syscall>>> = LazyLock::new(|| {
    let mut index = vec![None; MAX_NR];
    for entry in FAMILIES.iter().flat_map(|f| f.iter()) {
        if let Some(slot) = index.get_mut(entry.nr as usize) {
            *slot = Some(entry);
        }
    }
    index
});

/// The entry of system call `nr`, if the island kernel serves it.
pub fn lookup(nr: u64) -> Option<&'static Syscall> {
    INDEX.get(usize::try_from(nr).ok()?).copied().flatten()
}

/// Every entry of the table, by family.
pub fn table() -> impl Iterator<Item = &'static Syscall> {
    FAMILIES.iter().flat_map(|f| f.iter())
}

/// The name of call `nr`, for diagnostics.
pub fn name(nr: u64) -> &'static str {
    lookup(nr).map_or("?", |s| s.name)
}

/// Calls answered ENOSYS because the island kernel does not serve them, by number.
static UNKNOWN: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());

/// How many times each unserved system call number was made (for `/stats`).
pub fn unknown_calls() -> BTreeMap<u64, u64> {
    lock(&UNKNOWN).clone()
}

/// Serves one system call of thread `t` (registers `regs`, number in rax).
pub fn dispatch(island: &Arc<Island>, t: &mut Thread, regs: &kvm_regs) -> Action {
    // exit_group from another thread: this one must not do anything more (Linux would have
    // killed it already).
    if island.exiting() {
        return Action::Stop;
    }
    let nr = island.config.popcorn_abi.translate(regs.rax);
    let a = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
    t.status.syscalls.fetch_add(1, Ordering::Relaxed);
    let mut call = Call {
        island,
        t,
        regs,
        nr,
        a,
    };
    let action = match lookup(nr) {
        Some(entry) => serve(&mut call, entry),
        None => {
            *lock(&UNKNOWN).entry(regs.rax).or_default() += 1;
            island.log_unknown_once(regs.rax, "?");
            ret(Err(Errno::ENOSYS))
        }
    };
    if island.config.verbose >= 2 {
        let shown = match &action {
            Action::Return(v) => format!("{}", *v as i64),
            other => format!("{other:?}"),
        };
        crate::diag!(
            "popvmm: {:>8}us [{}] {}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x}) = {shown}",
            island.started.elapsed().as_micros(),
            call.t.tid,
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

fn serve(call: &mut Call<'_>, entry: &Syscall) -> Action {
    if entry.blocks {
        call.t.status.set(ThreadState::Blocked);
    }
    let r = match entry.handler {
        Handler::Action(f) => return f(call),
        Handler::Sys(f) => f(call),
        Handler::File(_) => {
            let file = FileCall {
                nr: call.nr,
                args: call.a,
            };
            call.waiting(None, |w| call.island.services.file(file, w))
        }
    };
    // A write to a pipe nobody reads raises SIGPIPE (fatal by default, silent for the shell),
    // and answers EPIPE when the signal is ignored or blocked.
    if matches!(call.nr as libc::c_long, libc::SYS_write | libc::SYS_writev)
        && r == Err(Errno::EPIPE)
    {
        if let Action::Stop = deliver_to_self(call, libc::SIGPIPE as u64) {
            return Action::Stop;
        }
    }
    ret(r)
}

/// System calls Linux restarts after a handler with SA_RESTART (read, write, readv, writev,
/// pread, pwrite, futex), and that a migration may interrupt and restart on the destination;
/// nanosleep and poll always answer EINTR.
pub fn restartable(nr: u64) -> bool {
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

/// A system call result as the vCPU loop returns it (`-errno` in rax).
pub fn ret(r: SysResult) -> Action {
    Action::Return(match r {
        Ok(v) => v,
        Err(e) => (-(e.0 as i64)) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_number_and_every_name_known() {
        let mut seen = std::collections::HashSet::new();
        for e in table() {
            assert!(seen.insert(e.nr), "{} ({}) listed twice", e.name, e.nr);
            assert!((e.nr as usize) < MAX_NR, "{} out of range", e.name);
            assert!(
                e.nr < 512 || (900..=903).contains(&e.nr),
                "{}: {}",
                e.name,
                e.nr
            );
            assert!(!e.name.is_empty() && e.name != "?");
            assert_eq!(lookup(e.nr).map(|x| x.name), Some(e.name));
        }
        // Every call the island kernel served before the table existed is still in it.
        let served_before: [u64; 86] = [
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 24, 25,
            26, 28, 32, 33, 35, 39, 56, 57, 58, 59, 60, 61, 62, 63, 72, 79, 80, 89, 95, 96, 97, 98,
            99, 100, 102, 104, 107, 108, 110, 111, 124, 131, 157, 158, 186, 200, 201, 202, 203,
            204, 217, 218, 228, 229, 230, 231, 234, 257, 262, 267, 269, 271, 273, 292, 302, 309,
            318, 322, 332, 334, 435, 439,
        ];
        for nr in served_before {
            assert!(lookup(nr).is_some(), "system call {nr} is no longer served");
        }
        assert_eq!(name(libc::SYS_futex as u64), "futex");
        assert_eq!(name(libc::SYS_readv as u64), "readv");
        assert_eq!(name(999), "?");
        assert!(lookup(u64::MAX).is_none());
        assert_eq!(name(900), "popcorn_migrate");
    }
}
