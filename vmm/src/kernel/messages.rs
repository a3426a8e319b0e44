//! What island kernels say to each other: the coherency protocol's page messages, and requests
//! and replies of the kernel services. These are the only way one island kernel reaches another
//! (`wire.rs` puts them on the fabric's links).
//!
//! Requests to the origin (the program's services, see `services.rs`): memory calls, futexes,
//! file calls, signal actions and delivery, thread creation and exit, exit_group, and the
//! cancellation of a request whose caller gave up waiting. Requests from the origin to an island:
//! layout changes, protocol membership, a thread to start, a signal to post, the end of the
//! program. Every request gets exactly one reply (the fabric's credits count on it).

use kvm_bindings::kvm_regs;

use super::errno::{Errno, ExitStatus};
use super::signal::SigAction;
use super::vma::{Prot, VmaKind};
use super::wait::Abandon;
use crate::dsm::PageMessage;
pub use crate::fabric::IslandId;
use crate::kvm::FxSave;

/// The island that runs the program's first thread and owns its process-wide state.
pub const ORIGIN: IslandId = 0;

/// A change to the layout, as the origin pushes it.
#[derive(Debug, Clone, PartialEq)]
pub enum LayoutOp {
    /// A fresh mapping (replacing whatever was there): zero pages, or pages the origin holds.
    /// `gen`: the generation of its pages from now on (decision 16 of `coherency`; 0 in the
    /// layout an island gets when it joins, which resets nothing).
    Map {
        start: u64,
        len: u64,
        prot: Prot,
        kind: VmaKind,
        gen: u32,
    },
    /// The range leaves the layout; its pages are reset to `gen` first.
    Unmap {
        start: u64,
        len: u64,
        gen: u32,
    },
    /// The pages read back as zeros from now on (MADV_DONTNEED, MADV_FREE): reset to `gen`;
    /// the mapping is unchanged.
    Discard {
        start: u64,
        len: u64,
        gen: u32,
    },
    Protect {
        start: u64,
        len: u64,
        prot: Prot,
    },
}

/// A memory system call, served by the origin (which owns the layout).
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

/// A futex operation, served by the origin (arguments already checked by the caller). A wait's
/// timeout stays with the waiting thread: it cancels the wait when the time is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FutexCall {
    Wait {
        addr: u64,
        val: u32,
        bitset: u32,
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

/// A file system call (its number and raw arguments), served by the origin against the
/// program's file descriptor table; guest buffers are reached through the origin's view of the
/// program's memory, that is through the coherency protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCall {
    pub nr: u64,
    pub args: [u64; 6],
}

/// Everything of a thread that an island needs to run it: what clone gives a new thread, or what
/// a migrating thread carries to its destination (a Linux thread's state, all of it: registers,
/// TLS bases, FPU/SSE, signal mask and pending signals, alternate stack, clear-child-tid, robust
/// list). Its memory is not here: it follows through the coherency protocol.
#[derive(Clone)]
pub struct ThreadImage {
    pub tid: u32,
    pub regs: kvm_regs,
    pub fs_base: u64,
    pub gs_base: u64,
    /// x87, MXCSR, xmm0-15 (the FXSAVE area).
    pub fpu: FxSave,
    pub sigmask: u64,
    /// Signals pending for the thread (bit n-1 for signal n).
    pub pending: u64,
    /// sigaltstack: sp, flags, size.
    pub altstack: (u64, u32, u64),
    pub clear_child_tid: u64,
    pub robust_list: u64,
    /// The islands the thread may run on (sched_setaffinity; island i is CPU i).
    pub affinity: u64,
    /// The island proposed for its next migration (popcorn_propose_migration), if any.
    pub proposed: Option<IslandId>,
    /// Migrations so far.
    pub migrations: u32,
    /// When its island stopped it to migrate (CLOCK_MONOTONIC ns; 0: a new thread).
    pub departed_ns: u64,
}

impl ThreadImage {
    /// A new thread: registers, TLS, FPU and mask from clone; the rest as Linux starts it.
    pub fn new(tid: u32, regs: kvm_regs, fs_base: u64, fpu: FxSave) -> Self {
        Self {
            tid,
            regs,
            fs_base,
            gs_base: 0,
            fpu,
            sigmask: 0,
            pending: 0,
            altstack: (0, libc::SS_DISABLE as u32, 0),
            clear_child_tid: 0,
            robust_list: 0,
            affinity: u64::MAX,
            proposed: None,
            migrations: 0,
            departed_ns: 0,
        }
    }
}

impl std::fmt::Debug for ThreadImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadImage")
            .field("tid", &self.tid)
            .field("rip", &self.regs.rip)
            .field("rsp", &self.regs.rsp)
            .field("migrations", &self.migrations)
            .finish()
    }
}

/// What to do with a thread wherever it runs (see `Request::ThreadControl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadOp {
    /// Move it to this island now, wherever it is in its code.
    Migrate(IslandId),
    /// Propose this island for its next migration (None: withdraw the proposal).
    Propose(Option<IslandId>),
    /// Its CPU affinity (bit i: island i); it moves to the first island of the mask unless it
    /// runs on one of them.
    Affinity(u64),
}

/// A request from one island kernel to another.
#[derive(Debug, Clone)]
pub enum Request {
    // To the origin.
    Mm(MmCall),
    Futex(FutexCall),
    File(FileCall),
    /// rt_sigaction: install `new` (if any), answer the previous action.
    SigAction {
        sig: u64,
        new: Option<SigAction>,
    },
    /// A signal for thread `tid`, wherever it runs.
    SignalThread {
        tid: u32,
        sig: u32,
    },
    /// Which island runs thread `tid` (ESRCH: none).
    Locate {
        tid: u32,
    },
    /// clone: on which island thread `tid` starts (the origin records it and makes sure that
    /// island has the layout); the caller then starts it there.
    Clone {
        tid: u32,
    },
    /// Thread `tid` is about to migrate to island `to`: the origin makes sure `to` has the layout
    /// and holds signals for the thread until `MoveDone`.
    MoveThread {
        tid: u32,
        to: IslandId,
    },
    /// Thread `tid`'s migration to `to` ended: it runs on island `at` (`to`, or where it was).
    MoveDone {
        tid: u32,
        to: IslandId,
        at: IslandId,
    },
    /// Do `op` to thread `tid` wherever it runs (the origin forwards it to the thread's island).
    ThreadControl {
        tid: u32,
        op: ThreadOp,
    },
    ThreadExited {
        tid: u32,
        code: i32,
    },
    ExitGroup(ExitStatus),
    /// The caller of request `request` gives up waiting for it (a signal, or its timeout).
    Cancel {
        request: u64,
        why: Abandon,
    },
    // From the origin to an island.
    Layout(Vec<LayoutOp>),
    /// The islands that take part in the coherency protocol from now on.
    Members {
        members: u64,
    },
    StartThread(Box<ThreadImage>),
    /// A migrating thread arrives: run it here.
    Migrate(Box<ThreadImage>),
    /// Mark signal `sig` pending for thread `tid` of the island, and kick it.
    PostSignal {
        tid: u32,
        sig: u32,
    },
    /// The program has ended: stop every thread.
    Exit(ExitStatus),
    /// The outcome of this island's request `request`, which was answered `Reply::Queued`.
    Complete {
        request: u64,
        reply: Reply,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A system call's result (a value, or an errno).
    Value(Result<u64, i32>),
    /// rt_sigaction's previous action.
    Action(Result<SigAction, i32>),
    Done,
    /// The request is taken and may take long (a futex wait, a file call that waits for input):
    /// its outcome comes later in a `Complete` request. This reply returns the request's credit
    /// at once, so that threads waiting at the origin do not hold their link's credits.
    Queued,
}

impl Reply {
    /// The reply as the wire carries it: an errno out of [`super::errno::ERRNO_RANGE`] (which
    /// the wire refuses both ways) becomes EIO, so that a reply is never dropped for failing to
    /// encode (its caller would wait for ever, and the link's credit never come back).
    pub fn sendable(self) -> Reply {
        match self {
            Reply::Value(Err(e)) => Reply::Value(Err(Errno::linux(e).0)),
            Reply::Action(Err(e)) => Reply::Action(Err(Errno::linux(e).0)),
            r => r,
        }
    }
}

/// Everything island kernels say to each other.
#[derive(Debug, Clone)]
pub enum IslandMessage {
    Coherency(PageMessage),
    /// Consecutive coherency messages carried as one (`fabric::PageRange`, `--batch-ranges`):
    /// the receiver hands them to its engine one by one, in order.
    CoherencyRange(crate::fabric::PageRange),
    Request {
        id: u64,
        from: IslandId,
        body: Request,
    },
    Reply {
        id: u64,
        body: Reply,
    },
}

/// The names of the kernel services' message types, for the counters (`/stats`, `/metrics`), in
/// the order of [`Request::type_index`], with the reply last. The coherency protocol's names come
/// before these on the wire (see `wire::TYPE_NAMES`).
pub const SERVICE_TYPES: [&str; 21] = [
    "vma_request",
    "futex_request",
    "file_request",
    "sigaction_request",
    "signal_request",
    "locate_request",
    "clone_request",
    "thread_exit",
    "exit_group",
    "cancel",
    "layout_push",
    "members",
    "thread_start",
    "signal",
    "exit",
    "move_request",
    "move_done",
    "thread_control",
    "migrate",
    "complete",
    "reply",
];

impl Request {
    /// Position of this request's type in [`SERVICE_TYPES`].
    pub fn type_index(&self) -> usize {
        match self {
            Request::Mm(_) => 0,
            Request::Futex(_) => 1,
            Request::File(_) => 2,
            Request::SigAction { .. } => 3,
            Request::SignalThread { .. } => 4,
            Request::Locate { .. } => 5,
            Request::Clone { .. } => 6,
            Request::ThreadExited { .. } => 7,
            Request::ExitGroup(_) => 8,
            Request::Cancel { .. } => 9,
            Request::Layout(_) => 10,
            Request::Members { .. } => 11,
            Request::StartThread(_) => 12,
            Request::PostSignal { .. } => 13,
            Request::Exit(_) => 14,
            Request::MoveThread { .. } => 15,
            Request::MoveDone { .. } => 16,
            Request::ThreadControl { .. } => 17,
            Request::Migrate(_) => 18,
            Request::Complete { .. } => 19,
        }
    }
}

/// Position of the reply in [`SERVICE_TYPES`].
pub const REPLY_TYPE: usize = 20;
