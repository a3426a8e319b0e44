//! A member's services: every process-wide service is a request to the origin over the island's
//! link, and the caller waits for its reply (see `services.rs` for the port, `origin.rs` for the
//! other side).

use std::sync::Arc;

use super::errno::{Errno, ExitStatus, SysResult};
use super::link::{Link, LinkError};
use super::messages::{FileCall, FutexCall, IslandId, MmCall, Reply, Request, ThreadOp, ORIGIN};
use super::services::{reply_of, value, Served, Services};
use super::signal::SigAction;
use super::wait::Waiting;

/// The services of an island other than the origin.
#[derive(Debug)]
pub struct Member {
    link: Arc<Link>,
}

impl Member {
    pub fn new(link: Arc<Link>) -> Self {
        Self { link }
    }

    fn ask(&self, request: Request) -> Result<Reply, Errno> {
        self.link.call(ORIGIN, request).map_err(link_errno)
    }
}

/// A request that could not be made: the program is ending (the thread stops anyway), or the
/// link failed.
fn link_errno(e: LinkError) -> Errno {
    match e {
        LinkError::Shutdown => Errno::EINTR,
        LinkError::Send { .. } => Errno::EIO,
    }
}

impl Services for Member {
    fn mm(&self, call: MmCall) -> SysResult {
        self.ask(Request::Mm(call)).and_then(value)
    }

    fn futex(&self, call: FutexCall, w: &Waiting<'_>) -> SysResult {
        self.link
            .call_waiting(ORIGIN, Request::Futex(call), w)
            .map_err(link_errno)
            .and_then(value)
    }

    fn file(&self, call: FileCall, w: &Waiting<'_>) -> SysResult {
        self.link
            .call_waiting(ORIGIN, Request::File(call), w)
            .map_err(link_errno)
            .and_then(value)
    }

    fn sigaction(&self, sig: u64, new: Option<SigAction>) -> Result<SigAction, Errno> {
        match self.ask(Request::SigAction { sig, new })? {
            Reply::Action(r) => r.map_err(Errno),
            other => value(other).and(Err(Errno::EIO)),
        }
    }

    fn signal_thread(&self, tid: u32, sig: u32) -> SysResult {
        self.ask(Request::SignalThread { tid, sig }).and_then(value)
    }

    fn locate(&self, tid: u32) -> Option<IslandId> {
        self.ask(Request::Locate { tid })
            .and_then(value)
            .ok()
            .map(|i| i as IslandId)
    }

    fn clone_thread(&self, _from: IslandId, tid: u32) -> Result<IslandId, Errno> {
        self.ask(Request::Clone { tid })
            .and_then(value)
            .map(|i| i as IslandId)
    }

    fn thread_exited(&self, tid: u32, code: i32) {
        self.link
            .notify(ORIGIN, Request::ThreadExited { tid, code });
    }

    fn begin_move(&self, tid: u32, _from: IslandId, to: IslandId) -> Result<(), Errno> {
        self.ask(Request::MoveThread { tid, to })
            .and_then(value)
            .map(|_| ())
    }

    fn end_move(&self, tid: u32, to: IslandId, at: IslandId) {
        self.link.notify(ORIGIN, Request::MoveDone { tid, to, at });
    }

    fn thread_control(&self, tid: u32, op: ThreadOp) -> SysResult {
        self.ask(Request::ThreadControl { tid, op }).and_then(value)
    }

    fn exit_group(&self, status: ExitStatus) {
        self.link.notify(ORIGIN, Request::ExitGroup(status));
    }

    fn serve(self: Arc<Self>, _from: IslandId, _id: u64, _request: Request) -> Served {
        // Only the origin serves the program's services: a request here is misrouted.
        Served::Now(reply_of(Err(Errno::EINVAL)))
    }
}
