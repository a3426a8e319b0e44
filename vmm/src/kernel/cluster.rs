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

use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_fpu, kvm_regs};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::vma::{Prot, VmaKind};
use super::{Errno, ExitStatus, Process, SysResult};
use crate::dsm::{Dsm, PageMessage};

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
    Notice {
        from: IslandId,
        body: Request,
    },
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
            IslandMessage::Request { body, .. } | IslandMessage::Notice { body, .. } => {
                match body {
                    Request::Mm(_) => "vma_request",
                    Request::Futex(_) => "futex_request",
                    Request::FutexCancel { .. } => "futex_cancel",
                    Request::Layout(_) => "layout_push",
                    Request::SyncLayout { .. } => "layout_sync",
                    Request::Members { .. } => "members",
                    Request::StartThread(_) => "thread_start",
                    Request::Signal { .. } => "signal",
                    Request::Exit(_) => "exit",
                }
            }
            IslandMessage::Reply { .. } => "reply",
        }
    }
}

/// Error of the links between islands.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("island {0} does not exist")]
    NoIsland(IslandId),
}

/// The links between islands: FIFO on each ordered pair, no order across pairs, no broadcast.
pub trait Links: Send + Sync + std::fmt::Debug {
    fn send(&self, from: IslandId, to: IslandId, msg: IslandMessage) -> Result<(), LinkError>;
    /// The next message for `island`, without blocking.
    fn try_recv(&self, island: IslandId) -> Option<(IslandId, IslandMessage)>;
    /// Waits until a message for `island` may have arrived, `fd` is readable, or `timeout`.
    fn wait(&self, island: IslandId, fd: RawFd, timeout: Duration);
    /// Whether a message for `island` is waiting (cheap: no lock, no system call).
    fn has_pending(&self, island: IslandId) -> bool;
    /// Messages sent so far, by type name and by link `(from, to)`.
    fn counters(&self) -> LinkCounters;
}

/// Message counts.
#[derive(Debug, Clone, Default)]
pub struct LinkCounters {
    pub by_type: std::collections::BTreeMap<&'static str, u64>,
    pub by_link: std::collections::BTreeMap<(IslandId, IslandId), u64>,
}

/// In-process links: one queue per destination (so each ordered pair is FIFO) and an eventfd to
/// wake a sleeping service thread.
#[derive(Debug)]
pub struct QueueLinks {
    queues: Vec<Mutex<VecDeque<(IslandId, IslandMessage)>>>,
    queued: Vec<AtomicUsize>,
    doorbells: Vec<EventFd>,
    sleeping: Vec<AtomicBool>,
    counters: Mutex<LinkCounters>,
}

impl QueueLinks {
    pub fn new(islands: usize) -> std::io::Result<Self> {
        Ok(Self {
            queues: (0..islands).map(|_| Mutex::new(VecDeque::new())).collect(),
            queued: (0..islands).map(|_| AtomicUsize::new(0)).collect(),
            doorbells: (0..islands)
                .map(|_| EventFd::new(EFD_NONBLOCK))
                .collect::<std::io::Result<_>>()?,
            sleeping: (0..islands).map(|_| AtomicBool::new(false)).collect(),
            counters: Mutex::new(LinkCounters::default()),
        })
    }
}

impl Links for QueueLinks {
    fn send(&self, from: IslandId, to: IslandId, msg: IslandMessage) -> Result<(), LinkError> {
        let q = self
            .queues
            .get(to as usize)
            .ok_or(LinkError::NoIsland(to))?;
        {
            let mut c = lock(&self.counters);
            *c.by_type.entry(msg.type_name()).or_default() += 1;
            *c.by_link.entry((from, to)).or_default() += 1;
        }
        lock(q).push_back((from, msg));
        self.queued[to as usize].fetch_add(1, Ordering::SeqCst);
        // Ring only a sleeper: the service thread polls first (as the paper mixes polling and
        // interrupts).
        if self.sleeping[to as usize].load(Ordering::SeqCst) {
            let _ = self.doorbells[to as usize].write(1);
        }
        Ok(())
    }

    fn try_recv(&self, island: IslandId) -> Option<(IslandId, IslandMessage)> {
        let m = lock(self.queues.get(island as usize)?).pop_front();
        if m.is_some() {
            self.queued[island as usize].fetch_sub(1, Ordering::SeqCst);
        }
        m
    }

    fn has_pending(&self, island: IslandId) -> bool {
        self.queued
            .get(island as usize)
            .is_some_and(|q| q.load(Ordering::Relaxed) > 0)
    }

    fn wait(&self, island: IslandId, fd: RawFd, timeout: Duration) {
        let i = island as usize;
        let Some(bell) = self.doorbells.get(i) else {
            return;
        };
        self.sleeping[i].store(true, Ordering::SeqCst);
        // Re-check after arming: a sender that saw us awake has queued its message already.
        if !lock(&self.queues[i]).is_empty() {
            self.sleeping[i].store(false, Ordering::SeqCst);
            return;
        }
        use std::os::fd::AsRawFd;
        let mut fds = [
            libc::pollfd {
                fd: bell.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        self.sleeping[i].store(false, Ordering::SeqCst);
        let _ = bell.read();
    }

    fn counters(&self) -> LinkCounters {
        lock(&self.counters).clone()
    }
}

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
    pub links: Arc<dyn Links>,
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
        links: Arc<dyn Links>,
        dsm: Dsm,
        program: Arc<ProgramState>,
        coherent: bool,
    ) -> Self {
        let islands = program.islands;
        let fault_fd = dsm.fault_fd();
        let mut synced = vec![false; islands];
        synced[ORIGIN as usize] = true;
        Self {
            island,
            links,
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
        }
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
    ) -> Result<Reply, LinkError> {
        let id = self.next_rpc.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(RpcSlot::default());
        lock(&self.rpcs).insert(id, Arc::clone(&slot));
        if let Err(e) = self.links.send(
            self.island,
            to,
            IslandMessage::Request {
                id,
                from: self.island,
                body,
            },
        ) {
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
                    let _ = self.links.send(
                        self.island,
                        to,
                        IslandMessage::Notice {
                            from: self.island,
                            body: c,
                        },
                    );
                }
            }
        }
    }

    /// Sends a request that needs no answer.
    pub fn notify(&self, to: IslandId, body: Request) {
        let _ = self.links.send(
            self.island,
            to,
            IslandMessage::Notice {
                from: self.island,
                body,
            },
        );
    }

    fn complete(&self, id: u64, reply: Reply) {
        if let Some(slot) = lock(&self.rpcs).remove(&id) {
            *lock(&slot.reply) = Some(reply);
            slot.cv.notify_all();
        }
    }

    fn reply(&self, to: IslandId, id: u64, body: Reply) {
        let _ = self
            .links
            .send(self.island, to, IslandMessage::Reply { id, body });
    }

    /// Sends the coherency layer's pending messages, in order.
    fn flush(&self, dsm: &mut Dsm) {
        for (to, msg) in dsm.take_outbox() {
            let _ = self
                .links
                .send(self.island, to as IslandId, IslandMessage::Coherency(msg));
        }
    }
}

fn result_reply(r: SysResult) -> Reply {
    Reply::Result(r.map_err(|e| e.0))
}

/// Turns a reply back into a system call result.
pub fn reply_result(r: Result<Reply, LinkError>) -> SysResult {
    match r {
        Ok(Reply::Result(Ok(v))) => Ok(v),
        Ok(Reply::Result(Err(e))) => Err(Errno(e)),
        Ok(Reply::Done) => Ok(0),
        Err(_) => Err(Errno::EIO),
    }
}

/// How long an idle service thread polls before it sleeps. Measured here (faultbench, 2 cores
/// shared with the vCPUs): spinning 10-1000 us after every event, or while a fault of the
/// island awaits answers, made remote faults 1.2-15x slower than sleeping at once: the spinning
/// thread takes the core that the other island's kernel or a vCPU needs.
const POLL: Duration = Duration::from_micros(0);

/// The service thread of one island: faults and messages, until the program ends.
pub fn service_loop(p: Arc<Process>) {
    let Some(link) = p.cluster.as_ref() else {
        return;
    };
    let mut idle_since = Instant::now();
    loop {
        if p.exiting() {
            return;
        }
        let mut busy = false;
        {
            let mut dsm = link.dsm();
            match dsm.poll_faults() {
                Ok(n) => busy |= n > 0,
                Err(e) => return protocol_failure(&p, &e),
            }
            link.flush(&mut dsm);
        }
        while let Some((from, msg)) = link.links.try_recv(link.island) {
            busy = true;
            match msg {
                IslandMessage::Coherency(m) => {
                    let mut dsm = link.dsm();
                    if let Err(e) = dsm.on_message(m) {
                        drop(dsm);
                        return protocol_failure(&p, &e);
                    }
                    link.flush(&mut dsm);
                }
                IslandMessage::Reply { id, body } => link.complete(id, body),
                IslandMessage::Request { id, body, .. } => serve_request(&p, from, Some(id), body),
                IslandMessage::Notice { body, .. } => serve_request(&p, from, None, body),
            }
        }
        if busy {
            idle_since = Instant::now();
        } else if idle_since.elapsed() > POLL {
            link.links
                .wait(link.island, link.fault_fd, Duration::from_millis(50));
            idle_since = Instant::now();
        } else {
            std::hint::spin_loop();
        }
    }
}

fn protocol_failure(p: &Process, e: &crate::dsm::DsmError) {
    eprintln!("popvmm: island {}: {e}; the program is ended", p.island());
    p.exit(ExitStatus::Signal(libc::SIGKILL));
}

/// Serves one request on the service thread: what cannot block is done here, the rest on a
/// worker thread.
fn serve_request(p: &Arc<Process>, from: IslandId, id: Option<u64>, body: Request) {
    let Some(link) = p.cluster.as_ref() else {
        return;
    };
    match body {
        Request::FutexCancel { wait } => {
            if let Some(flag) = lock(&link.cancels).get(&(from, wait)) {
                flag.store(true, Ordering::SeqCst);
            }
        }
        Request::Signal { tid, sig } => {
            p.signal_local_thread(tid, sig);
            if let Some(id) = id {
                link.reply(from, id, Reply::Done);
            }
        }
        Request::Exit(status) => {
            p.exit_local(status);
        }
        Request::Members { members } => {
            link.dsm().set_members(coherency::KernelSet(members));
            if let Some(id) = id {
                link.reply(from, id, Reply::Done);
            }
        }
        Request::StartThread(start) => {
            let r = super::thread::start_remote(p, *start);
            if let Some(id) = id {
                link.reply(from, id, result_reply(r));
            }
        }
        body => {
            if let Request::Futex(FutexCall::Wait { .. }) = body {
                if let Some(id) = id {
                    lock(&link.cancels).insert((from, id), Arc::new(AtomicBool::new(false)));
                }
            }
            let p = Arc::clone(p);
            let spawned = std::thread::Builder::new()
                .name(format!("island{}-worker", p.island()))
                .stack_size(256 << 10)
                .spawn(move || {
                    let reply = serve_blocking(&p, from, id, body);
                    if let (Some(id), Some(link)) = (id, p.cluster.as_ref()) {
                        lock(&link.cancels).remove(&(from, id));
                        link.reply(from, id, reply);
                    }
                });
            if spawned.is_err() {
                if let Some(id) = id {
                    link.reply(from, id, result_reply(Err(Errno::EAGAIN)));
                }
            }
        }
    }
}

/// Requests that may block: layout changes, memory calls and futexes at the origin.
fn serve_blocking(p: &Arc<Process>, from: IslandId, id: Option<u64>, body: Request) -> Reply {
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
            let cancel = id.and_then(|id| {
                p.cluster
                    .as_ref()
                    .and_then(|l| lock(&l.cancels).get(&(from, id)).cloned())
            });
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
            let _ = link.call(to, Request::Layout(ops.clone()), |_| None);
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
        let _ = link.call(to, Request::Layout(ops), |_| None);
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

    #[test]
    fn queue_links_are_fifo_per_destination_and_counted() {
        let links = QueueLinks::new(3).expect("eventfds");
        for i in 0..5u64 {
            let msg = IslandMessage::Reply {
                id: i,
                body: Reply::Done,
            };
            links.send(1, 2, msg).expect("send");
        }
        links
            .send(
                0,
                2,
                IslandMessage::Reply {
                    id: 99,
                    body: Reply::Done,
                },
            )
            .expect("send");
        let ids: Vec<u64> = std::iter::from_fn(|| links.try_recv(2))
            .map(|(_, m)| match m {
                IslandMessage::Reply { id, .. } => id,
                _ => u64::MAX,
            })
            .collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4, 99]);
        let c = links.counters();
        assert_eq!(c.by_type.get("reply"), Some(&6));
        assert_eq!(c.by_link.get(&(1, 2)), Some(&5));
        assert!(links
            .send(
                0,
                3,
                IslandMessage::Reply {
                    id: 0,
                    body: Reply::Done
                }
            )
            .is_err());
    }
}
