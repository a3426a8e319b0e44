//! The messaging layer between island kernels.
//!
//! Island kernels share no memory: they cooperate only by messages over point-to-point links,
//! one per ordered pair of islands. A link is FIFO; there is no order across links and no
//! broadcast (a multicast is several sends).
//!
//! # Use
//! ```no_run
//! # use popvmm::fabric::{Fabric, FabricConfig, PageMessage};
//! # use coherency::{KernelSet, Message, MessageKind};
//! # fn main() -> Result<(), popvmm::fabric::FabricError> {
//! let fabric = Fabric::<PageMessage>::new(4, FabricConfig::default())?;
//! // Island 1's kernel: a sender per thread (clones), one receive loop.
//! let tx = fabric.sender(1)?;
//! let mut rx = fabric.receiver(1)?;
//! let fetch = Message { page: 7, from: 1, gen: 0, kind: MessageKind::Fetch, users: KernelSet::EMPTY };
//! tx.send(0, &fetch)?; // a vCPU thread: a request may wait for a credit
//! while let Some((from, msg)) = rx.recv(None)? {
//!     // handle `msg` from island `from`; answer with `tx.post(from, &answer)`, which never waits
//! #   let _ = (from, msg);
//! }
//! // A loop that also serves the island's userfaultfd: rx.watch(uffd_fd)?, then recv returns
//! // Ok(None) whenever the descriptor is readable.
//! fabric.shutdown(); // exit_group: every recv and blocked send returns FabricError::Shutdown
//! # Ok(()) }
//! ```
//! Messages are any type implementing [`Wire`] (bytes in, bytes out, a type index with static
//! names for the counters, and whether it is a request or an answer). [`PageMessage`], the
//! coherency protocol's `Message<PageBuf>`, is provided as a worked example.
//!
//! # Layers
//! - [`Fabric`], [`Sender`], [`Receiver`] (`endpoint.rs`): flow control, encoding, counters. The
//!   same for every transport.
//! - [`Transport`] (`transport.rs`): links that carry frames of bytes. Nothing in it assumes shared
//!   memory, so a socket transport (islands in other processes or hosts) can replace
//!   [`RingTransport`] (`ring.rs`): bounded virtio-style rings of fixed-size slots with
//!   producer/consumer indices, an eventfd doorbell per receiving island, and notification
//!   suppression (the receiver polls for an adaptive window of at most [`FabricConfig::poll`],
//!   then arms its doorbell, re-checks, and sleeps in epoll; a sender rings only an armed
//!   doorbell).
//!
//! # Backpressure without deadlock
//! Every message is a *request* or an *answer* ([`Class`]), and the protocols on top keep one
//! contract:
//!
//! - **(C1)** every request that island Y takes from island X is eventually answered by exactly
//!   one answer from Y to X, and Y sends X no answer that is not one of these;
//! - **(C2)** every island runs its receive loop ([`Receiver::recv`]) whenever it is not handling
//!   a message, and handling a message never waits for another message to arrive (it may defer an
//!   answer, as the coherency engine does, but then it returns to the loop);
//! - **(C3)** requests *posted* while no credit is free (overdrafts, below) are bounded by the
//!   protocol. For the coherency protocol the bound to establish (by whoever wires the engine to
//!   the fabric; not checked here) is: a kernel sends a request only for a page that has a
//!   waiting access on it, with a bounded number in flight per page and destination, so the
//!   overdrafts on a link are at most a small multiple of the threads of the sending island.
//!   The fabric enforces a hard cap ([`FabricConfig::max_outbox`]) and reports a protocol that
//!   breaks its bound as [`FabricError::OutboxFull`] instead of queueing without end.
//!
//! The fabric then works like this. Let `out(X,Y)` be the requests X has sent to Y whose answers
//! X has not taken yet, `R` = [`FabricConfig::credits`], and the capacity of a link (its ring) be
//! at least `2R` (checked when the fabric is made).
//!
//! - [`Sender::send`] (any thread that may block: vCPU threads, fault handlers): a request waits
//!   until `out(X,Y) < R`, in a FIFO ticket queue per link. The queue holds one entry per
//!   blocked thread, so its length is at most the number of requester threads of the island.
//!   This is where a full link makes the sender wait.
//! - [`Sender::post`] (the receive loop, and any thread the receive loop may wait for): never
//!   waits. An answer needs no credit. A request with no credit free goes anyway and is counted as
//!   an overdraft. [`Sender::send`] called on a receive-loop thread behaves as `post`.
//! - A credit returns when the requester's receive loop has taken the answer off the link (its
//!   slot is free again).
//! - A message that finds the ring full waits in the link's outbox (FIFO, drained before anything
//!   new enters the link; the receiver wakes the sender's loop when it frees a slot), bounded by
//!   [`FabricConfig::max_outbox`]: going over is an error ([`FabricError::OutboxFull`]), never
//!   silent growth.
//!
//! **Bound.** Every frame on link X→Y (in the ring or the outbox) is either a request of X not
//! yet answered-and-taken, so it counts in `out(X,Y)`, or an answer of X, which by (C1) matches a
//! distinct request of Y that Y has not taken the answer of, so it counts in `out(Y,X)`. Hence
//! `frames(X→Y) ≤ out(X,Y) + out(Y,X) ≤ 2R + D(X,Y) + D(Y,X)`, where `D` are the overdrafts
//! outstanding. Without overdrafts, `frames ≤ 2R ≤ capacity`: the ring alone holds everything,
//! the outbox stays empty, and an answer always finds a free slot (half of the ring is, in effect,
//! reserved for answers). With overdrafts, the outbox holds at most `D(X,Y) + D(Y,X)` frames,
//! bounded by (C3).
//!
//! **No deadlock.** The only places the fabric blocks are a `send` waiting for a credit and a
//! `recv` waiting for a frame. No receive loop ever blocks in the fabric except in `recv` (its
//! sends never wait), so by (C2) every frame that enters a ring is eventually taken; every
//! parked frame eventually enters its ring (the receiver that frees a slot wakes the sender's
//! loop, which flushes). So every message sent is delivered. A thread waiting for a credit on
//! X→Y has `out(X,Y) ≥ R ≥ 1` requests ahead of it; they are delivered, answered (C1) by posts
//! that do not wait, delivered back, and taken by X's loop, which returns their credits and wakes
//! the ticket queue in order. The classic deadlock, A's handler blocked sending to B while B's
//! handler is blocked sending to A, cannot happen because handlers never block sending; the price
//! is the outbox, bounded above. Tests: `naive_blocking_handlers_deadlock` reproduces that
//! deadlock step by step on bare 2-slot rings; `credits_prevent_that_deadlock` takes the same
//! steps through the fabric; `no_deadlock_under_pressure` is a stress (2-slot rings, one credit,
//! many requester threads both ways, handlers that send requests of their own) that fails with
//! "deadlock?" when handler posts are made to wait for credits.
//!
//! **Why overdraft instead of queueing a handler's request for a credit.** The coherency engine
//! expects FIFO over *everything* on a link (a vote, then a Fetch Write, must arrive in that
//! order). If a posted request waited for a credit, every later message on its link, answers
//! included, would have to wait behind it; with requests pending both ways and every credit held,
//! X's answers would wait behind X's request, which waits for Y's answers, which wait behind Y's
//! request, which waits for X's answers: a deadlock. Letting answers overtake the waiting request
//! would avoid it but break FIFO. So posts never wait, and the bound comes from (C3).
//!
//! **Messages that carry several.** A message may stand for several requests (or answers) of
//! the protocol on top ([`Wire::weight`], written in the frame header): a range of page messages
//! (`range.rs`) carries up to [`MAX_RANGE`] Fetches or Copies. Credits count the protocol's
//! messages, not frames: a request of weight `w` takes `w` credits (it goes when `w` are free, or
//! when none is outstanding, so a range heavier than `R` is not stuck), an answer of weight `w`
//! returns `w`. (C1) then holds message by message of the protocol whatever the grouping of
//! answers into frames, and the bound above holds a fortiori (a frame carries at least one).
//!
//! **FIFO.** A link has one producer at a time (its lock); a message enters the link in the order
//! its send took the lock, parked frames first; rings are FIFO. A `send` that waits for a credit
//! takes its place when it gets one (it has not been sent before it returns).
//!
//! # Counters
//! Per link and per message type (sent, received, bytes), doorbell rings, receive-loop sleeps and
//! wake-ups, credit waits, overdrafts, parked frames: [`Fabric::stats`] / [`Sender::stats`], as
//! serde-serializable snapshots ([`FabricStats`]).

mod endpoint;
mod faults;
mod page;
mod range;
mod ring;
mod stats;
mod transport;
mod wire;

#[cfg(test)]
mod tests;

use std::io;
use std::time::Duration;

pub use endpoint::{Fabric, Receiver, Sender};
pub use faults::{FaultCounters, FaultSpec, FaultStats, FaultTransport, StallTarget, FAULTS_VAR};
pub use page::{PageBuf, PageMessage, PAGE_MESSAGE_TYPES};
pub use range::{
    carried as range_carries, coalesce, joins as range_joins, PageRange, Rejected,
    RANGE_MAX_ENCODED,
};
pub use ring::{RingInbox, RingLinkTx, RingTransport, RingWaker};
pub use stats::{
    FabricStats, IslandCounters, IslandStats, LinkCounters, LinkStats, ReceiverStats, TypeStats,
};
pub use transport::{Attachment, Fill, Inbox, LinkTx, Take, Transport, Wake, Waker};
pub use wire::{Class, Wire, WireError, WireReader, WireWriter};

/// Index of an island, `0..islands`.
pub type IslandId = usize;

/// The most islands a fabric links (the coherency protocol's users bitmap is one 64-bit word).
pub const MAX_ISLANDS: usize = coherency::MAX_KERNELS;

/// Size of a guest page, the largest payload the coherency protocol sends.
pub const PAGE_SIZE: usize = crate::memory::layout::PAGE_SIZE as usize;

/// The most pages one range message carries (`page.rs`, `--batch-ranges`): the read-ahead
/// window's cap (`dsm::readahead::MAX_WINDOW`).
pub const MAX_RANGE: usize = 32;

/// Bytes of one ring slot: a range of [`MAX_RANGE`] pages (each with its 4-byte version) and 128
/// bytes of headers. The ring's mapping is `MAP_NORESERVE` and a small frame touches only the
/// start of its slot, so memory is committed only as far as frames actually reach.
pub const SLOT_BYTES: usize = MAX_RANGE * (PAGE_SIZE + 4) + 128;

/// The ring transport's slot header (the frame length).
pub const SLOT_HEADER: usize = 8;

/// The largest frame a ring slot carries.
pub const MAX_FRAME: usize = SLOT_BYTES - SLOT_HEADER;

/// The fabric's frame header: class, weight (how many protocol messages the frame carries, see
/// [`Wire::weight`]), type index (u16, little-endian).
pub const FRAME_HEADER: usize = 4;

/// The largest encoded message ([`Wire::MAX_ENCODED`]) the ring transport carries: a range of
/// [`MAX_RANGE`] pages and up to 116 bytes of message header.
pub const MAX_MESSAGE: usize = MAX_FRAME - FRAME_HEADER;

/// The longest a receive loop polls before it sleeps, by default (the cap of its adaptive poll
/// window, see `ring.rs`). Chosen from `scripts/bench-fabric` (round trips and its poll sweep), on
/// these 2-core hosts: an answer from a polling peer comes in about 1 µs (polled round trip,
/// median), well inside 5 µs; a wake-up costs 2 to 7 µs (doorbell round trips of 3 to 5 µs here,
/// 13.5 µs for the eventfd ping-pong of PLATFORM.md), so a 5 µs window wastes at most about one
/// wake-up per idle period (the ski-rental bound: within twice the best choice whatever the
/// gap); and when threads outnumber cores, windows of 20 µs and more made calls 4 to 30 times
/// slower than sleeping at once (the spinning loop holds the core its peer needs), while 5 µs and
/// less stayed within the noise of never polling.
pub const DEFAULT_POLL: Duration = Duration::from_micros(5);

/// Settings of a fabric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FabricConfig {
    /// Slots per ring (ring transport): a power of two, at least `2 × credits`.
    pub ring_slots: u32,
    /// `R`: requests outstanding per ordered pair of islands before `send` waits.
    pub credits: u32,
    /// The longest a receive loop polls before it arms its doorbell and sleeps: the cap of its
    /// adaptive poll window (ring transport). 0: always sleep at once.
    pub poll: Duration,
    /// Frames a link's outbox may hold before sends fail with [`FabricError::OutboxFull`].
    pub max_outbox: usize,
}

impl Default for FabricConfig {
    fn default() -> Self {
        FabricConfig {
            ring_slots: 32,
            credits: 16,
            poll: DEFAULT_POLL,
            max_outbox: 1024,
        }
    }
}

/// Errors of the messaging layer.
#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    #[error("a fabric links 1 to {MAX_ISLANDS} islands, not {0}")]
    IslandCount(usize),
    #[error("bad fabric configuration: {0}")]
    Config(String),
    #[error("island {island} does not exist (the fabric has {islands})")]
    NoSuchIsland { island: IslandId, islands: usize },
    #[error("island {0} has no link to itself")]
    SelfSend(IslandId),
    #[error("island {0} is not in this process")]
    NotLocal(IslandId),
    #[error("island {0} is already attached to the transport")]
    Attached(IslandId),
    #[error("the receiver of island {0} was already taken")]
    ReceiverTaken(IslandId),
    #[error("message type index {type_index} out of range ({types} types)")]
    BadType { type_index: usize, types: usize },
    #[error("cannot encode a message for link {from}->{to}: {source}")]
    Encode {
        from: IslandId,
        to: IslandId,
        source: WireError,
    },
    #[error("malformed message on link {from}->{to}: {source}")]
    Malformed {
        from: IslandId,
        to: IslandId,
        source: WireError,
    },
    #[error("frame of {len} bytes does not fit {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("island {island} got an answer from island {from} with no request outstanding")]
    UnexpectedAnswer { island: IslandId, from: IslandId },
    #[error("outbox of link {from}->{to} is full ({bound} frames): a protocol exceeds its bound")]
    OutboxFull {
        from: IslandId,
        to: IslandId,
        bound: usize,
    },
    #[error("ring from island {from} has inconsistent indices")]
    RingCorrupt { from: IslandId },
    #[error("cannot map {bytes} bytes for a ring: {source}")]
    RingMemory { bytes: usize, source: io::Error },
    #[error("doorbell of island {island}: {source}")]
    Doorbell { island: IslandId, source: io::Error },
    #[error("the fabric is shut down")]
    Shutdown,
}
