//! The services port: how an island kernel reaches the program's process-wide services.
//!
//! Every process-wide service goes through [`Services`]: the memory layout (mmap, munmap, brk,
//! mprotect, mremap, madvise), futexes, file descriptors and every call that uses them, signal
//! actions and delivery to a thread wherever it runs, thread creation, the thread directory,
//! thread exit, exit_group. There are two implementations:
//!
//! - the **origin's** (`origin.rs`): it owns that state (the layout's authority, the futex table,
//!   the file descriptor table, the signal actions, the thread directory, the exit status) and
//!   serves it, to its own threads directly and to other islands' requests;
//! - a **member's** (`member.rs`): each call is a request to the origin over the island's link,
//!   and the caller waits for the reply.
//!
//! A single island is the origin with no members. No island kernel holds a reference to another
//! island's state: whatever another island needs travels as a message (and is counted in
//! `/stats`).

use std::fmt;
use std::sync::Arc;

use super::errno::{Errno, ExitStatus, SysResult};
use super::messages::{FileCall, FutexCall, IslandId, MmCall, Reply, Request, ThreadOp};
use super::signal::SigAction;
use super::wait::Waiting;

/// The program's process-wide services, as one island kernel reaches them.
pub trait Services: Send + Sync + fmt::Debug {
    /// A memory call: the layout changes at the origin and on every island that has it before
    /// this returns.
    fn mm(&self, call: MmCall) -> SysResult;

    /// A futex operation; a wait ends as `w` says (a signal, the timeout).
    fn futex(&self, call: FutexCall, w: &Waiting<'_>) -> SysResult;

    /// A file system call on the program's descriptors; a blocking one ends as `w` says.
    fn file(&self, call: FileCall, w: &Waiting<'_>) -> SysResult;

    /// rt_sigaction: installs `new` (if any) and returns the previous action.
    fn sigaction(&self, sig: u64, new: Option<SigAction>) -> Result<SigAction, Errno>;

    /// A signal for thread `tid` of the program, wherever it runs (ESRCH: no such thread).
    fn signal_thread(&self, tid: u32, sig: u32) -> SysResult;

    /// The island running thread `tid`, if it is alive.
    fn locate(&self, tid: u32) -> Option<IslandId>;

    /// Places new thread `tid` (clone on island `from`): the island it is to start on, which
    /// has the layout by then. The caller starts it there.
    fn clone_thread(&self, from: IslandId, tid: u32) -> Result<IslandId, Errno>;

    /// Thread `tid` has exited with `code`; the last thread's exit ends the program.
    fn thread_exited(&self, tid: u32, code: i32);

    /// Thread `tid` is about to migrate to island `to`: `to` gets the layout and joins the
    /// protocol; signals for the thread wait at the origin until [`Services::end_move`].
    /// `from` is the island it leaves. A previous migration of the thread whose end has not been
    /// recorded yet (it arrived on `from` and moves on at once) counts as ended.
    fn begin_move(&self, tid: u32, from: IslandId, to: IslandId) -> Result<(), Errno>;

    /// Thread `tid`'s migration to `to` has ended: it runs on island `at` now (`to`, or where it
    /// stayed). Ignored if a newer migration of the thread has begun meanwhile.
    fn end_move(&self, tid: u32, to: IslandId, at: IslandId);

    /// Does `op` to thread `tid` wherever it runs (ESRCH: no such thread).
    fn thread_control(&self, tid: u32, op: ThreadOp) -> SysResult;

    /// Ends the program with `status` (the first caller decides), on every island.
    fn exit_group(&self, status: ExitStatus);

    /// Takes request `id` of island `from` for one of these services (only the origin serves
    /// them). Called on the island's service thread, so it never blocks: what may block comes
    /// back as work for a worker thread.
    fn serve(self: Arc<Self>, from: IslandId, id: u64, request: Request) -> Served;
}

/// A blocking part of a request, for a worker thread: its reply, or None when the reply is sent
/// later by whoever completes the request (a futex wake).
pub type Work = Box<dyn FnOnce() -> Option<Reply> + Send>;

/// How a request is served.
pub enum Served {
    /// The reply, at once.
    Now(Reply),
    /// Work that may block, for a worker thread.
    Work(Work),
    /// Work that may block for long, for a worker thread: the request is answered `Queued` at
    /// once and its outcome goes in a `Complete` request (sent by the work's result, or later by
    /// whoever completes it).
    Detached(Work),
}

impl fmt::Debug for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Served::Now(r) => write!(f, "Now({r:?})"),
            Served::Work(_) => f.write_str("Work"),
            Served::Detached(_) => f.write_str("Detached"),
        }
    }
}

/// Turns a reply back into a system call result (EIO when the reply does not fit the request).
pub fn value(reply: Reply) -> SysResult {
    match reply {
        Reply::Value(Ok(v)) => Ok(v),
        Reply::Value(Err(e)) | Reply::Action(Err(e)) => Err(Errno(e)),
        Reply::Done => Ok(0),
        Reply::Action(Ok(_)) | Reply::Queued => Err(Errno::EIO),
    }
}

/// A system call's result as a reply.
pub fn reply_of(r: SysResult) -> Reply {
    Reply::Value(r.map_err(|e| e.0))
}
