//! What the fabric needs from a transport: links that carry frames of bytes in FIFO order, and a
//! way for an island's receive loop to wait for the next frame on any of its inbound links.
//!
//! Nothing here assumes that the two ends of a link share memory: the ring transport
//! ([`super::ring`]) implements these traits over shared rings and eventfds; a socket transport
//! would implement them over one connected socket per link (`try_send` = a non-blocking write,
//! `want_space` = EPOLLOUT interest, `recv` = epoll over the sockets). Flow control (credits,
//! outboxes), message encoding and counters live above, in [`super::Fabric`], and are shared by
//! every transport.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use super::stats::IslandCounters;
use super::{FabricError, IslandId};

/// Writes one frame into the buffer it is given and returns the frame's length.
pub type Fill<'a> = dyn FnMut(&mut [u8]) -> Result<usize, FabricError> + 'a;

/// Handles one frame: the island it came from and its bytes.
pub type Take<'a> = dyn FnMut(IslandId, &[u8]) -> Result<(), FabricError> + 'a;

/// A way to carry frames between islands.
pub trait Transport: Send + Sync + 'static {
    /// The sending end of one link. The fabric keeps each behind a lock, so `&mut self` methods
    /// are never called concurrently.
    type LinkTx: LinkTx;
    /// All inbound links of one island, owned by its receive loop.
    type Inbox: Inbox;
    /// Wakes one island's receive loop.
    type Waker: Waker;

    /// Number of islands.
    fn islands(&self) -> usize;

    /// Whether `island` lives in this process (and can be attached here).
    fn is_local(&self, island: IslandId) -> bool {
        island < self.islands()
    }

    /// The largest frame a link carries, in bytes.
    fn max_frame(&self) -> usize;

    /// Frames a link holds in flight without the sender's outbox: the bound the credit limit is
    /// checked against (credits × 2 ≤ capacity, see the module docs). `None`: unknown.
    fn capacity(&self) -> Option<usize>;

    /// Attaches a local island: its sending end of every link towards another island (`None` at
    /// its own index), its inbox, and a waker for the inbox. The transport counts its own events
    /// (doorbells, sleeps, wake-ups) in `counters`. Each island is attached at most once.
    fn attach(
        &self,
        island: IslandId,
        counters: Arc<IslandCounters>,
    ) -> Result<Attachment<Self>, FabricError>;
}

/// What [`Transport::attach`] hands out.
#[derive(Debug)]
pub struct Attachment<T: Transport + ?Sized> {
    pub links: Vec<Option<T::LinkTx>>,
    pub inbox: T::Inbox,
    pub waker: T::Waker,
}

/// The sending end of one link.
pub trait LinkTx: Send + 'static {
    /// Appends one frame without blocking: calls `fill` with a buffer of at least
    /// [`Transport::max_frame`] bytes and publishes the `n` bytes it reports (waking the receiver
    /// if it sleeps). Returns `Ok(false)`, without calling `fill`, if the link has no room. If
    /// `fill` fails nothing is published and its error is returned.
    fn try_send(&mut self, fill: &mut Fill<'_>) -> Result<bool, FabricError>;

    /// After `try_send` found no room: asks the transport to wake this island's receive loop
    /// (its [`Waker`]) once the link has room. Returns `true` if it has room already (then try
    /// again: no wake-up is promised).
    fn want_space(&mut self) -> bool;
}

/// Why [`Inbox::recv`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A frame was taken.
    Frame,
    /// The deadline passed.
    Deadline,
    /// The island's [`Waker`] was used.
    Woken,
    /// A watched descriptor ([`Inbox::watch`]) is readable.
    Watched,
}

/// All inbound links of one island.
pub trait Inbox: Send + 'static {
    /// Takes the next frame on any inbound link and hands it to `take`. Waits for one (first
    /// polling, then asleep) until `deadline` (`None`: for ever), until the island's [`Waker`] is
    /// used, or until a watched descriptor is readable. An error of `take` is returned after the
    /// frame has been consumed.
    fn recv(&mut self, deadline: Option<Instant>, take: &mut Take<'_>)
        -> Result<Wake, FabricError>;

    /// Also waits for `fd` to be readable (level-triggered: `recv` keeps returning
    /// [`Wake::Watched`] while it is). For a receive loop that serves another source too, such as
    /// the island's userfaultfd. `fd` must stay open while the inbox lives.
    fn watch(&mut self, fd: RawFd) -> Result<(), FabricError>;
}

/// Wakes one island's receive loop (out of `Inbox::recv`, which then returns [`Wake::Woken`]).
pub trait Waker: Send + Sync + 'static {
    fn wake(&self);
}
