//! Several islands, one program: the messages between island kernels and the distributed kernel
//! services they carry.
//!
//! Each island kernel (a [`Process`]) has an [`IslandLink`]: its coherency layer ([`Dsm`]), its
//! end of the links to the other islands, and the table of its outstanding requests. One service
//! thread per island ([`service_loop`]) serves the island's userfaultfd and its incoming messages;
//! it never blocks on guest memory or on a kernel lock, so that faults can always be served.
//! Requests that may block (a layout change takes the layout lock, a futex wait sleeps, the origin
//! reads a futex word through the protocol) run on short-lived worker threads.
//!
//! The services, as Popcorn has them:
//! - **VMAs**: the origin (island 0) serializes mmap, munmap, brk, mprotect, mremap and madvise; an
//!   island learns the layout when its first thread arrives (a snapshot), and from then on the
//!   origin pushes every change to it and waits for its acknowledgement before the call returns.
//! - **futex**: served by the origin, so that a wake on one island reaches a waiter on another;
//!   the origin reads futex words through the protocol like any other access.
//! - **threads**: clone places the new thread on an island (`--placement`); the island creates a
//!   vCPU with the state clone gives it. Thread ids are unique without coordination (island `i`
//!   allocates `pid + i + k * islands`).
//! - **exit**: exit_group on any island ends the program everywhere.
//!
//! Process-wide kernel state that is not guest memory (file descriptors, signal dispositions, the
//! exit status) is kept once in popvmm and shared by the island kernels of the program; a transport
//! across processes would forward those calls to the origin.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use kvm_bindings::{kvm_fpu, kvm_regs};

use super::vma::{Prot, VmaKind};
use super::{Errno, ExitStatus, Process, SysResult};
use crate::dsm::{Dsm, PageMessage};
use crate::fabric::{Fabric, FabricError, Receiver, Sender};

/// Index of an island; island 0 is the origin.
pub type IslandId = u8;

/// The island that runs the program's first thread and serves its VMAs and futexes.
pub const ORIGIN: IslandId = 0;

/// Where new threads go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Every thread on the origin.
    Origin,
    /// Threads in turn on islands 1, 2, ..., N-1, 0, 1, ... (the main thread stays on the origin).
    RoundRobin,
    /// The n-th new thread goes to the n-th island of the list (cycling).
    List(Vec<IslandId>),
}

impl Placement {
    /// Parses `origin`, `round-robin` or `list:0,1,2`.
    pub fn parse(s: &str, islands: usize) -> Result<Placement, String> {
        match s {
            "origin" => Ok(Placement::Origin),
            "round-robin" => Ok(Placement::RoundRobin),
            _ => {
                let Some(list) = s.strip_prefix("list:") else {
                    return Err(format!(
                        "unknown placement {s:?}: expected origin, round-robin or list:I,J,..."
                    ));
                };
                let ids: Result<Vec<IslandId>, String> = list
                    .split(',')
                    .map(|x| {
                        let i: usize = x.trim().parse().map_err(|_| {
                            format!("placement list: {x:?} is not an island number")
                        })?;
                        if i >= islands {
                            return Err(format!(
                                "placement list: island {i} does not exist (--islands {islands})"
                            ));
                        }
                        Ok(i as IslandId)
                    })
                    .collect();
                let ids = ids?;
                if ids.is_empty() {
                    return Err("placement list: empty".to_string());
                }
                Ok(Placement::List(ids))
            }
        }
    }
}

/// A change to the layout, as the origin pushes it.
#[derive(Debug, Clone, PartialEq)]
pub enum LayoutOp {
    /// A fresh mapping (replacing whatever was there): zero pages, or pages the origin holds.
    Map {
        start: u64,
        len: u64,
        prot: Prot,
        kind: VmaKind,
    },
    Unmap {
        start: u64,
        len: u64,
    },
    Protect {
        start: u64,
        len: u64,
        prot: Prot,
    },
}

/// A memory system call made on another island, served by the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmCall {
    Brk(u64),
    Mmap {
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        fd: u64,
        off: u64,
    },
    Munmap {
        addr: u64,
        len: u64,
    },
    Mprotect {
        addr: u64,
        len: u64,
        prot: u64,
    },
    Madvise {
        addr: u64,
        len: u64,
        advice: u64,
    },
    Mremap {
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    },
}

/// A futex operation, served by the origin (arguments already checked by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FutexCall {
    Wait {
        addr: u64,
        val: u32,
        bitset: u32,
        /// Nanoseconds from the request, or none.
        timeout_ns: Option<u64>,
    },
    Wake {
        addr: u64,
        n: u32,
        bitset: u32,
    },
    Requeue {
        addr: u64,
        addr2: u64,
        n_wake: u32,
        n_requeue: u32,
        check: Option<u32>,
    },
    WakeOp {
        addr: u64,
        addr2: u64,
        n: u32,
        n2: u32,
        encoded: u32,
    },
}

/// A new thread's state, for the island that will run it.
#[derive(Clone)]
pub struct ThreadStart {
    pub tid: u32,
    pub regs: kvm_regs,
    pub fs_base: u64,
    pub fpu: kvm_fpu,
    pub sigmask: u64,
    pub clear_child_tid: u64,
}

impl std::fmt::Debug for ThreadStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadStart")
            .field("tid", &self.tid)
            .field("rip", &self.regs.rip)
            .field("rsp", &self.regs.rsp)
            .finish()
    }
}

/// A request from one island kernel to another.
#[derive(Debug, Clone)]
pub enum Request {
    Mm(MmCall),
    Futex(FutexCall),
    /// The waiter of request `wait` was interrupted (a signal on its island).
    FutexCancel {
        wait: u64,
    },
    Layout(Vec<LayoutOp>),
    /// To the origin: make sure `island` has the layout (a thread is about to start there).
    SyncLayout {
        island: IslandId,
    },
    /// From the origin: the islands that take part in the coherency protocol from now on.
    Members {
        members: u64,
    },
    StartThread(Box<ThreadStart>),
    Signal {
        tid: u32,
        sig: u32,
    },
    Exit(ExitStatus),
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Result(Result<u64, i32>),
    Done,
}

/// Everything island kernels say to each other.
#[derive(Debug, Clone)]
pub enum IslandMessage {
    Coherency(PageMessage),
    Request {
        id: u64,
        from: IslandId,
        body: Request,
    },
    /// A request that expects no answer (fire and forget).
    Reply {
        id: u64,
        body: Reply,
    },
}

impl IslandMessage {
    /// The type name, for the counters.
    pub fn type_name(&self) -> &'static str {
        match self {
            IslandMessage::Coherency(m) => m.kind.message_type().name(),
            IslandMessage::Request { body, .. } => match body {
                Request::Mm(_) => "vma_request",
                Request::Futex(_) => "futex_request",
                Request::FutexCancel { .. } => "futex_cancel",
                Request::Layout(_) => "layout_push",
                Request::SyncLayout { .. } => "layout_sync",
                Request::Members { .. } => "members",
                Request::StartThread(_) => "thread_start",
                Request::Signal { .. } => "signal",
                Request::Exit(_) => "exit",
            },
            IslandMessage::Reply { .. } => "reply",
        }
    }
}

/// The messaging layer between the islands of one program.
pub type IslandFabric = Fabric<IslandMessage>;

/// An island's receive side, for its service thread.
pub type IslandReceiver = Receiver<IslandMessage>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One outstanding request: where its reply lands.
#[derive(Debug, Default)]
struct RpcSlot {
    reply: Mutex<Option<Reply>>,
    cv: Condvar,
}

/// Program-wide facts every island knows (fixed at launch, or host bookkeeping).
#[derive(Debug)]
pub struct ProgramState {
    pub islands: usize,
    pub placement: Placement,
    placed: AtomicUsize,
    /// Which island runs each live thread (to route signals).
    directory: Mutex<HashMap<u32, IslandId>>,
}

impl ProgramState {
    pub fn new(islands: usize, placement: Placement) -> Self {
        Self {
            islands,
            placement,
            placed: AtomicUsize::new(0),
            directory: Mutex::new(HashMap::new()),
        }
    }

    /// The island of the next new thread.
    pub fn place(&self) -> IslandId {
        let n = self.placed.fetch_add(1, Ordering::Relaxed);
        match &self.placement {
            Placement::Origin => ORIGIN,
            Placement::RoundRobin => ((n + 1) % self.islands) as IslandId,
            Placement::List(l) => l[n % l.len()],
        }
    }

    pub fn island_of(&self, tid: u32) -> Option<IslandId> {
        lock(&self.directory).get(&tid).copied()
    }

    pub fn set_island(&self, tid: u32, island: IslandId) {
        lock(&self.directory).insert(tid, island);
    }

    pub fn forget_thread(&self, tid: u32) {
        lock(&self.directory).remove(&tid);
    }

    pub fn thread_count(&self) -> usize {
        lock(&self.directory).len()
    }
}

/// An island's side of the cluster.
#[derive(Debug)]
pub struct IslandLink {
    pub island: IslandId,
    /// This island's end of the links (one `Sender` per thread: it is cloned as needed).
    tx: Sender<IslandMessage>,
    /// All the links, for their counters.
    pub fabric: Arc<IslandFabric>,
    pub dsm: Mutex<Dsm>,
    pub program: Arc<ProgramState>,
    pub fault_fd: RawFd,
    rpcs: Mutex<HashMap<u64, Arc<RpcSlot>>>,
    next_rpc: AtomicU64,
    /// Origin only: islands that have the layout (they get every change).
    synced: Mutex<Vec<bool>>,
    /// Origin only: cancellation flags of remote futex waits, by request id.
    cancels: Mutex<HashMap<(IslandId, u64), Arc<AtomicBool>>>,
    /// Islands have the layout from their first thread on.
    layout_ready: AtomicBool,
    /// Origin only: one layout change (and its push to the islands) at a time, so that every
    /// island applies the changes in the origin's order.
    layout_serial: Mutex<()>,
    /// The coherency protocol runs: from the first thread on another island on (§5.2: "when a
    /// process is executing on only one kernel, the replication protocol is off").
    coherent: AtomicBool,
}

impl IslandLink {
    /// `coherent`: whether the protocol runs from the start (islands other than the origin only
    /// get memory once it does; the origin turns it on with the first thread elsewhere).
    pub fn new(
        island: IslandId,
        fabric: Arc<IslandFabric>,
        dsm: Dsm,
        program: Arc<ProgramState>,
        coherent: bool,
    ) -> Result<Self, FabricError> {
        let islands = program.islands;
        let tx = fabric.sender(island as usize)?;
        let fault_fd = dsm.fault_fd();
        let mut synced = vec![false; islands];
        synced[ORIGIN as usize] = true;
        Ok(Self {
            island,
            tx,
            fabric,
            dsm: Mutex::new(dsm),
            program,
            fault_fd,
            rpcs: Mutex::new(HashMap::new()),
            next_rpc: AtomicU64::new(1),
            synced: Mutex::new(synced),
            cancels: Mutex::new(HashMap::new()),
            layout_ready: AtomicBool::new(island == ORIGIN),
            layout_serial: Mutex::new(()),
            coherent: AtomicBool::new(coherent || island != ORIGIN),
        })
    }

    /// Whether the coherency protocol runs.
    pub fn coherent(&self) -> bool {
        self.coherent.load(Ordering::SeqCst)
    }

    pub fn is_origin(&self) -> bool {
        self.island == ORIGIN
    }

    pub fn dsm(&self) -> MutexGuard<'_, Dsm> {
        lock(&self.dsm)
    }

    /// Sends `body` to island `to` and waits for the reply. `cancel` is polled while waiting: when
    /// it returns a request, that request is sent to the same island (once).
    pub fn call(
        &self,
        to: IslandId,
        body: Request,
        mut cancel: impl FnMut(u64) -> Option<Request>,
    ) -> Result<Reply, FabricError> {
        let id = self.next_rpc.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(RpcSlot::default());
        lock(&self.rpcs).insert(id, Arc::clone(&slot));
        // A request: this waits while the link has no credit free (backpressure).
        let msg = IslandMessage::Request {
            id,
            from: self.island,
            body,
        };
        if let Err(e) = self.tx.send(to as usize, &msg) {
            lock(&self.rpcs).remove(&id);
            return Err(e);
        }
        let mut reply = lock(&slot.reply);
        let mut cancelled = false;
        loop {
            if let Some(r) = reply.take() {
                return Ok(r);
            }
            reply = slot
                .cv
                .wait_timeout(reply, super::futex::SIGNAL_CHECK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if !cancelled && reply.is_none() {
                if let Some(c) = cancel(id) {
                    cancelled = true;
                    self.notify(to, c);
                }
            }
        }
    }

    /// Sends a request without waiting for its reply (which is dropped when it comes: every
    /// request gets one, as the fabric's credits need).
    pub fn notify(&self, to: IslandId, body: Request) {
        let id = self.next_rpc.fetch_add(1, Ordering::Relaxed);
        let msg = IslandMessage::Request {
            id,
            from: self.island,
            body,
        };
        let _ = self.tx.send(to as usize, &msg);
    }

    fn complete(&self, id: u64, reply: Reply) {
        if let Some(slot) = lock(&self.rpcs).remove(&id) {
            *lock(&slot.reply) = Some(reply);
            slot.cv.notify_all();
        }
    }

    fn reply(&self, to: IslandId, id: u64, body: Reply) {
        let _ = self
            .tx
            .post(to as usize, &IslandMessage::Reply { id, body });
    }

    /// Sends the coherency layer's pending messages, in order. Posted: the service thread never
    /// waits for a credit (the fabric's contract; a request goes only for a page with a waiting
    /// access, so the overdrafts stay bounded by the island's threads).
    fn flush(&self, dsm: &mut Dsm) -> Result<(), FabricError> {
        for (to, msg) in dsm.take_outbox() {
            self.tx.post(to as usize, &IslandMessage::Coherency(msg))?;
        }
        Ok(())
    }
}

fn result_reply(r: SysResult) -> Reply {
    Reply::Result(r.map_err(|e| e.0))
}

/// Turns a reply back into a system call result.
pub fn reply_result(r: Result<Reply, FabricError>) -> SysResult {
    match r {
        Ok(Reply::Result(Ok(v))) => Ok(v),
        Ok(Reply::Result(Err(e))) => Err(Errno(e)),
        Ok(Reply::Done) => Ok(0),
        Err(_) => Err(Errno::EIO),
    }
}

/// The service thread of one island: faults and messages, until the program ends.
pub fn service_loop(p: Arc<Process>, mut rx: IslandReceiver) {
    let Some(link) = p.cluster.as_ref() else {
        return;
    };
    // Wake up for faults too, not only for messages.
    if let Err(e) = rx.watch(link.fault_fd) {
        eprintln!(
            "popvmm: island {}: cannot watch its faults: {e}",
            link.island
        );
        p.exit(ExitStatus::Signal(libc::SIGKILL));
        return;
    }
    loop {
        if p.exiting() {
            return;
        }
        {
            let mut dsm = link.dsm();
            if let Err(e) = dsm.poll_faults() {
                drop(dsm);
                return protocol_failure(&p, &e.to_string());
            }
            if let Err(e) = link.flush(&mut dsm) {
                drop(dsm);
                return protocol_failure(&p, &e.to_string());
            }
        }
        let (from, msg) = match rx.recv(Some(Duration::from_millis(50))) {
            Ok(Some((from, msg))) => (from as IslandId, msg),
            // A fault to serve, or nothing for a while.
            Ok(None) => continue,
            Err(FabricError::Shutdown) => return,
            Err(e) => return protocol_failure(&p, &e.to_string()),
        };
        match msg {
            IslandMessage::Coherency(m) => {
                let mut dsm = link.dsm();
                let r = dsm
                    .on_message(m)
                    .map_err(|e| e.to_string())
                    .and_then(|()| link.flush(&mut dsm).map_err(|e| e.to_string()));
                if let Err(e) = r {
                    drop(dsm);
                    return protocol_failure(&p, &e);
                }
            }
            IslandMessage::Reply { id, body } => link.complete(id, body),
            IslandMessage::Request { id, body, .. } => serve_request(&p, from, id, body),
        }
    }
}

fn protocol_failure(p: &Process, e: &str) {
    eprintln!("popvmm: island {}: {e}; the program is ended", p.island());
    p.exit(ExitStatus::Signal(libc::SIGKILL));
}

/// Serves one request on the service thread: what cannot block is done here, the rest on a
/// worker thread.
fn serve_request(p: &Arc<Process>, from: IslandId, id: u64, body: Request) {
    let Some(link) = p.cluster.as_ref() else {
        return;
    };
    // Every request gets exactly one reply (the fabric's credits count on it).
    match body {
        Request::FutexCancel { wait } => {
            if let Some(flag) = lock(&link.cancels).get(&(from, wait)) {
                flag.store(true, Ordering::SeqCst);
            }
            link.reply(from, id, Reply::Done);
        }
        Request::Signal { tid, sig } => {
            p.signal_local_thread(tid, sig);
            link.reply(from, id, Reply::Done);
        }
        Request::Exit(status) => {
            p.exit_local(status);
            link.reply(from, id, Reply::Done);
        }
        Request::Members { members } => {
            link.dsm().set_members(coherency::KernelSet(members));
            link.reply(from, id, Reply::Done);
        }
        Request::StartThread(start) => {
            let r = super::thread::start_remote(p, *start);
            link.reply(from, id, result_reply(r));
        }
        body => {
            if let Request::Futex(FutexCall::Wait { .. }) = body {
                lock(&link.cancels).insert((from, id), Arc::new(AtomicBool::new(false)));
            }
            let p = Arc::clone(p);
            let spawned = std::thread::Builder::new()
                .name(format!("island{}-worker", p.island()))
                .stack_size(256 << 10)
                .spawn(move || {
                    let reply = serve_blocking(&p, from, id, body);
                    if let Some(link) = p.cluster.as_ref() {
                        lock(&link.cancels).remove(&(from, id));
                        link.reply(from, id, reply);
                    }
                });
            if spawned.is_err() {
                lock(&link.cancels).remove(&(from, id));
                link.reply(from, id, result_reply(Err(Errno::EAGAIN)));
            }
        }
    }
}

/// Requests that may block: layout changes, memory calls and futexes at the origin.
fn serve_blocking(p: &Arc<Process>, from: IslandId, id: u64, body: Request) -> Reply {
    match body {
        Request::Layout(ops) => {
            for op in ops {
                if let Err(e) = super::mm::apply_layout_op(p, &op) {
                    return result_reply(Err(e));
                }
            }
            if let Some(link) = p.cluster.as_ref() {
                link.layout_ready.store(true, Ordering::SeqCst);
            }
            Reply::Done
        }
        Request::Mm(call) => result_reply(super::mm::serve_at_origin(p, call)),
        Request::SyncLayout { island } => {
            if (island as usize) < p.cluster.as_ref().map_or(0, |l| l.program.islands) {
                p.sync_layout_to(island);
            }
            Reply::Done
        }
        Request::Futex(call) => {
            let cancel = p
                .cluster
                .as_ref()
                .and_then(|l| lock(&l.cancels).get(&(from, id)).cloned());
            let interrupted = move || cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
            result_reply(super::syscall::futex_at_origin(p, call, &interrupted))
        }
        _ => Reply::Done,
    }
}

impl Process {
    /// The island this kernel runs.
    pub fn island(&self) -> IslandId {
        self.cluster.as_ref().map_or(ORIGIN, |l| l.island)
    }

    /// Whether the program spans several islands.
    pub fn distributed(&self) -> bool {
        self.cluster.is_some()
    }

    /// Whether the coherency protocol runs on this island's memory.
    pub fn protocol_on(&self) -> bool {
        self.cluster.as_ref().is_some_and(IslandLink::coherent)
    }

    /// Pushes layout changes made at the origin to every island that has the layout, and waits
    /// until each has applied them.
    pub fn push_layout(&self, ops: Vec<LayoutOp>) {
        let Some(link) = self.cluster.as_ref() else {
            return;
        };
        if ops.is_empty() {
            return;
        }
        let targets: Vec<IslandId> = lock(&link.synced)
            .iter()
            .enumerate()
            .filter(|&(i, &s)| s && i != link.island as usize)
            .map(|(i, _)| i as IslandId)
            .collect();
        for to in targets {
            for chunk in super::wire::layout_chunks(ops.clone()) {
                let _ = link.call(to, Request::Layout(chunk), |_| None);
            }
        }
    }

    /// Origin: serializes layout changes with their pushes (see `layout_serial`).
    pub fn layout_serial(&self) -> Option<MutexGuard<'_, ()>> {
        self.cluster.as_ref().map(|l| lock(&l.layout_serial))
    }

    /// Origin: makes sure island `to` has the layout before a thread starts there.
    pub fn sync_layout_to(&self, to: IslandId) {
        let Some(link) = self.cluster.as_ref() else {
            return;
        };
        let _serial = lock(&link.layout_serial);
        if lock(&link.synced)[to as usize] {
            return;
        }
        // Under the layout lock, so that no change slips between the snapshot and `synced`.
        let space = self.user.layout_mut();
        if !link.coherent() {
            // The program leaves its single island: the protocol starts, with every written page
            // Not Replicated here.
            let ranges: Vec<(u64, u64)> = space
                .vmas()
                .filter(|v| !v.kind.is_local())
                .map(|v| (v.start, v.end - v.start))
                .collect();
            link.coherent.store(true, Ordering::SeqCst);
            for (start, len) in ranges {
                if let Err(e) = super::mm::make_coherent(self, start, len) {
                    self.log(
                        1,
                        format_args!("starting the protocol on {start:#x}: {e:?}"),
                    );
                }
            }
        }
        let ops: Vec<LayoutOp> = space
            .vmas()
            .filter(|v| !v.kind.is_local())
            .map(|v| LayoutOp::Map {
                start: v.start,
                len: v.end - v.start,
                prot: v.prot,
                kind: v.kind.clone(),
            })
            .collect();
        for chunk in super::wire::layout_chunks(ops) {
            let _ = link.call(to, Request::Layout(chunk), |_| None);
        }
        // The island takes part in the protocol from now on: every island must know it before
        // its first thread touches a page (a fetch out of Unmapped must reach it).
        let members = {
            let mut synced = lock(&link.synced);
            synced[to as usize] = true;
            synced
                .iter()
                .enumerate()
                .filter(|(_, &s)| s)
                .fold(coherency::KernelSet::EMPTY, |m, (i, _)| m.with(i as u8))
        };
        link.dsm().set_members(members);
        for i in 0..link.program.islands as IslandId {
            if i != link.island {
                let _ = link.call(i, Request::Members { members: members.0 }, |_| None);
            }
        }
        drop(space);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_parses_and_places() {
        assert_eq!(Placement::parse("origin", 4), Ok(Placement::Origin));
        assert_eq!(
            Placement::parse("round-robin", 4),
            Ok(Placement::RoundRobin)
        );
        assert_eq!(
            Placement::parse("list:0, 2,3", 4),
            Ok(Placement::List(vec![0, 2, 3]))
        );
        assert!(Placement::parse("list:4", 4).is_err());
        assert!(Placement::parse("list:", 4).is_err());
        assert!(Placement::parse("list:x", 4).is_err());
        assert!(Placement::parse("everywhere", 4).is_err());

        let rr = ProgramState::new(3, Placement::RoundRobin);
        let placed: Vec<_> = (0..5).map(|_| rr.place()).collect();
        assert_eq!(
            placed,
            vec![1, 2, 0, 1, 2],
            "the main thread holds island 0 already"
        );
        let list = ProgramState::new(4, Placement::List(vec![3, 1]));
        let placed: Vec<_> = (0..3).map(|_| list.place()).collect();
        assert_eq!(placed, vec![3, 1, 3]);
        let origin = ProgramState::new(4, Placement::Origin);
        assert_eq!(origin.place(), ORIGIN);
    }
}
