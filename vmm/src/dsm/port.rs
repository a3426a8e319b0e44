//! The one way into an island's coherency layer.
//!
//! The island's [`Dsm`] is driven through its [`DsmPort`]: the island's service thread feeds it
//! faults and messages, the memory calls register and forget ranges, the control socket reads
//! snapshots. Every method that can make the engine send something sends it before it returns
//! (in order: links are FIFO), so no caller can forget the flush, and errors come back to the
//! caller. A program that can never spread over several islands has no coherency layer at all
//! (no userfaultfd is opened): the port then does nothing, and says so (`coherent() == false`).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use coherency::{KernelId, KernelSet, PageId, PageView};

use super::{Dsm, DsmError, DsmStats, PageMessage, PageTraffic};
use crate::fabric::{FabricError, PageRange};
use crate::sync::{lock, Wakeup};

/// Sends one coherency message, or one range of them, to another island (never waits).
pub type SendPage = Box<dyn Fn(KernelId, Outgoing) -> Result<(), FabricError> + Send + Sync>;

/// What goes on a link: one page message, or several consecutive ones as a range
/// (`--batch-ranges`, see `fabric::PageRange`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    One(PageMessage),
    Range(PageRange),
}

/// How many pages one snapshot step reads while holding the engine (see [`DsmPort::snapshot`]).
const SNAPSHOT_CHUNK: usize = 256;

/// One page as the control socket shows it: its state here and what it cost here.
#[derive(Debug, Clone, Copy)]
pub struct PageSnapshot {
    pub page: PageId,
    pub view: PageView,
    pub traffic: PageTraffic,
}

/// An island's coherency layer and the only handle on it.
pub struct DsmPort {
    dsm: Option<Mutex<Dsm>>,
    stats: Option<Arc<DsmStats>>,
    fault_fd: Option<RawFd>,
    /// Whether the protocol runs (paper §5.2: off while the program runs on one island).
    coherent: AtomicBool,
    send: SendPage,
    /// Notified when a prefetch completes.
    prefetch_done: Option<Arc<Wakeup>>,
}

impl std::fmt::Debug for DsmPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsmPort")
            .field("enabled", &self.dsm.is_some())
            .field("coherent", &self.coherent())
            .finish()
    }
}

impl DsmPort {
    /// The port over `dsm` (None: a program that never spreads), sending through `send`.
    /// `coherent`: whether the protocol runs from the start.
    pub fn new(dsm: Option<Dsm>, coherent: bool, send: SendPage) -> Self {
        let stats = dsm.as_ref().map(Dsm::stats);
        let fault_fd = dsm.as_ref().map(Dsm::fault_fd);
        let prefetch_done = dsm.as_ref().map(Dsm::prefetch_done);
        Self {
            prefetch_done,
            coherent: AtomicBool::new(coherent && dsm.is_some()),
            dsm: dsm.map(Mutex::new),
            stats,
            fault_fd,
            send,
        }
    }

    /// Whether the coherency protocol runs on this island's memory.
    pub fn coherent(&self) -> bool {
        self.coherent.load(Ordering::SeqCst)
    }

    /// Turns the protocol on (the first thread on another island). Returns whether it was off.
    pub fn start(&self) -> bool {
        self.dsm.is_some() && !self.coherent.swap(true, Ordering::SeqCst)
    }

    /// The userfaultfd to watch for faults, if the island has a coherency layer.
    pub fn fault_fd(&self) -> Option<RawFd> {
        self.fault_fd
    }

    /// Fault counters and latencies (None without a coherency layer).
    pub fn stats(&self) -> Option<Arc<DsmStats>> {
        self.stats.clone()
    }

    /// Runs `f` on the engine, then sends what it queued, in order.
    fn with<R>(&self, f: impl FnOnce(&mut Dsm) -> Result<R, DsmError>) -> Result<R, DsmError> {
        let Some(dsm) = &self.dsm else {
            return Err(DsmError::Disabled);
        };
        let mut dsm = lock(dsm);
        let r = f(&mut dsm);
        for (to, out) in dsm.take_outgoing() {
            (self.send)(to, out).map_err(DsmError::Send)?;
        }
        r
    }

    /// See [`Dsm::register`].
    pub fn register(&self, start: u64, len: u64) -> Result<(), DsmError> {
        self.with(|d| d.register(start, len))
    }

    /// See [`Dsm::reset`].
    pub fn reset(&self, start: u64, len: u64, gen: u32) -> Result<(), DsmError> {
        self.with(|d| d.reset(start, len, gen))
    }

    /// See [`Dsm::set_not_replicated`].
    pub fn set_not_replicated(&self, start: u64, len: u64) -> Result<(), DsmError> {
        self.with(|d| {
            d.set_not_replicated(start, len);
            Ok(())
        })
    }

    /// See [`Dsm::set_members`].
    pub fn set_members(&self, members: KernelSet) -> Result<(), DsmError> {
        self.with(|d| {
            d.set_members(members);
            Ok(())
        })
    }

    /// Serves the pending faults (the service thread, when the userfaultfd is readable).
    pub fn poll_faults(&self) -> Result<usize, DsmError> {
        if self.dsm.is_none() {
            return Ok(0);
        }
        self.with(Dsm::poll_faults)
    }

    /// What read-ahead proposed since the last call (see [`Dsm::take_read_ahead`]); nothing when
    /// the protocol does not run.
    pub fn take_read_ahead(&self) -> Vec<super::AheadRequest> {
        match &self.dsm {
            Some(dsm) if self.coherent() => lock(dsm).take_read_ahead(),
            _ => Vec::new(),
        }
    }

    /// See [`Dsm::read_ahead`]. The caller has checked that the program may read those pages,
    /// and holds the layout (for reading) so that no layout change slips in meanwhile.
    pub fn read_ahead(&self, pages: &[(PageId, bool)]) -> Result<u64, DsmError> {
        if self.dsm.is_none() || !self.coherent() || pages.is_empty() {
            return Ok(0);
        }
        self.with(|d| d.read_ahead(pages))
    }

    /// Asks for the page at guest address `addr` writable on this island, ahead of a thread that
    /// is about to write it (see [`Dsm::prefetch_write`]); [`DsmPort::wait_writable`] waits for
    /// it. Returns whether it is writable already. The caller has checked that the program may
    /// write there.
    pub fn prefetch_write(&self, addr: u64) -> Result<bool, DsmError> {
        if self.dsm.is_none() || !self.coherent() {
            return Ok(false);
        }
        self.with(|d| d.prefetch_write(addr))
    }

    /// Waits until the page at `addr` is writable here (a prefetch completed) or until
    /// `deadline`. Returns whether it is.
    pub fn wait_writable(&self, addr: u64, deadline: Instant) -> bool {
        let (Some(dsm), Some(done)) = (&self.dsm, &self.prefetch_done) else {
            return false;
        };
        done.wait_for(Some(deadline), || lock(dsm).writable(addr).then_some(()))
            .is_some()
    }

    /// When the first holding window ends (None: no window open, or no coherency layer). See
    /// [`Dsm::hold_deadline`].
    pub fn hold_deadline(&self) -> Option<Instant> {
        lock(self.dsm.as_ref()?).hold_deadline()
    }

    /// Ends the holding windows that are due (the service thread). See [`Dsm::release_holds`].
    pub fn release_holds(&self) -> Result<usize, DsmError> {
        if self.dsm.is_none() {
            return Ok(0);
        }
        self.with(Dsm::release_holds)
    }

    /// One message from another island (the service thread).
    pub fn on_message(&self, msg: PageMessage) -> Result<(), DsmError> {
        self.with(|d| d.on_message(msg))
    }

    /// A range of messages from another island (the service thread): see [`Dsm::on_range`]. The
    /// answers they call for go out together, so that they may make a range in turn.
    pub fn on_range(&self, range: PageRange) -> Result<(), DsmError> {
        self.with(|d| d.on_range(range.into_messages()))
    }

    /// Every page's traffic on this island so far (see [`Dsm::traffic_all`]); empty without the
    /// coherency layer.
    pub fn traffic_all(&self) -> Vec<(PageId, PageTraffic)> {
        match &self.dsm {
            Some(dsm) => lock(dsm).traffic_all(),
            None => Vec::new(),
        }
    }

    /// Up to `count` pages from page `first` on, in page order, each with its state and traffic.
    /// The engine is held for a few hundred pages at a time, never for the whole walk, so that
    /// fault service on this island goes on meanwhile.
    pub fn snapshot(&self, first: PageId, count: usize) -> Vec<PageSnapshot> {
        let Some(dsm) = &self.dsm else {
            return Vec::new();
        };
        let mut ids = lock(dsm).page_ids();
        ids.retain(|&p| p >= first);
        ids.sort_unstable();
        ids.truncate(count);
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(SNAPSHOT_CHUNK) {
            let dsm = lock(dsm);
            out.extend(chunk.iter().map(|&page| PageSnapshot {
                page,
                view: dsm.view(page),
                traffic: dsm.traffic(page),
            }));
        }
        out
    }
}
