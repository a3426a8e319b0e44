//! The ring transport: islands in one process, one single-producer single-consumer ring per
//! ordered pair of islands, an eventfd doorbell per receiving island, and notification suppression.
//!
//! # A link
//! A ring of `slots` fixed-size slots ([`SLOT_BYTES`] each: an 8-byte slot header with the frame
//! length, then up to [`MAX_FRAME`] bytes of frame, enough for a range of 32 pages of content and a header)
//! and two free-running 32-bit indices, `prod` (written by the sender) and `cons` (written by the
//! receiver); slot `i mod slots` holds frame `i`. Slots `[cons, prod)` belong to the receiver, the
//! others to the sender. The fabric serializes senders per link, so each ring has one producer,
//! and each island has one receive loop, so one consumer.
//!
//! # Doorbells and notification suppression
//! As virtio's event index / `VRING_AVAIL_F_NO_INTERRUPT`: the receive loop polls its rings for a
//! while (its *poll window*); then it *arms* its doorbell (a flag), re-checks every ring (closing
//! the race with a sender that published meanwhile), and sleeps in `epoll_wait` on its eventfd.
//! A sender writes the eventfd only if it finds the flag armed, and clears it as it does, so a
//! burst wakes the receiver once and a polling receiver costs its senders no system call.
//!
//! # The poll window adapts
//! As KVM's halt polling (`grow_halt_poll_ns` / `shrink_halt_poll_ns`), between 0 and
//! [`RingTransport::poll`] (the cap): when the loop had to sleep and the frame came within the
//! cap, a longer window would have caught it, so the window doubles (from 1 µs); when it came
//! after more than the cap, the window was wasted, so it halves (to 0 below 1 µs). A window that
//! catches its frame stays. Why: measured on these 2-core hosts (`scripts/bench-fabric`), a fixed
//! window helps only while the peer has a core of its own; when threads outnumber cores, the
//! spinning loop holds the very core its peer needs to answer, and each call costs about the
//! window plus a wake-up (a 10 µs window gave 25 µs round trips where sleeping at once gave 4 µs).
//! The adaptive window shrinks to 0 in that case and grows back when polling pays.
//!
//! One doorbell per *receiving island* rather than per link: its rings are scanned after every
//! wake-up anyway, and 64 islands would otherwise need 64 × 63 = 4032 eventfds (the default soft
//! limit on open files is 1024). A socket transport has one descriptor per link by nature.
//!
//! # Room
//! A sender that finds its ring full (only possible when requests were posted over the credit
//! limit, see the module docs) sets the ring's `want_space` flag and re-checks; the receiver,
//! after freeing a slot, wakes the *sender's* island (its doorbell, with a "kicked" flag) if it
//! finds the flag set, so that the sender's receive loop flushes its outbox.
//!
//! # Memory
//! Each ring is one anonymous `MAP_NORESERVE` mapping: pages are committed only when a slot is
//! first written, and only as far as its frames reach (a single page message touches the first
//! two pages of its slot, a range of 32 pages all of it). So 64 islands with 32-slot rings reserve
//! 4032 × 4.1 MiB of address space (16.5 GiB) but use memory only on the links that carry
//! traffic: at most 4.1 MiB per link that carries full ranges, ~270 KiB per link that carries
//! single pages.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::stats::IslandCounters;
use super::transport::{Attachment, Fill, Inbox, LinkTx, Take, Transport, Wake, Waker};
use super::{FabricError, IslandId, MAX_FRAME, SLOT_BYTES, SLOT_HEADER};

/// Keeps a hot atomic on its own cache line(s) (128 bytes: adjacent-line prefetch on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// The slots of one ring: an anonymous mapping.
#[derive(Debug)]
struct SlotMem {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: SlotMem is plain memory that it owns; the threads that touch it (one producer, one
// consumer) coordinate through the ring's indices, which decide who owns each slot (see Ring).
unsafe impl Send for SlotMem {}
// SAFETY: as above: shared references only hand out raw pointers; every access through them is
// justified at its use by the ownership of slots.
unsafe impl Sync for SlotMem {}

impl SlotMem {
    fn new(len: usize) -> io::Result<SlotMem> {
        // SAFETY: a new anonymous private mapping with no address hint touches no existing memory;
        // the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave 0"))?;
        Ok(SlotMem { base, len })
    }
}

impl Drop for SlotMem {
    fn drop(&mut self) {
        // SAFETY: base and len are exactly the mapping made in `new`; it is unmapped once, here,
        // when the last Arc<Ring> goes, and no slot borrow outlives the call that made it (each
        // such call holds an Arc<Ring>).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// One link's ring (see the module docs for the layout and the ownership of slots).
#[derive(Debug)]
struct Ring {
    /// Frames published: written by the producer only.
    prod: Padded<AtomicU32>,
    /// Frames consumed: written by the consumer only.
    cons: Padded<AtomicU32>,
    /// The producer wants to be woken when a slot frees (see "Room" in the module docs).
    want_space: Padded<AtomicBool>,
    slots: u32,
    mem: SlotMem,
}

impl Ring {
    fn new(slots: u32, start: u32) -> io::Result<Ring> {
        Ok(Ring {
            prod: Padded(AtomicU32::new(start)),
            cons: Padded(AtomicU32::new(start)),
            want_space: Padded(AtomicBool::new(false)),
            slots,
            mem: SlotMem::new(slots as usize * SLOT_BYTES)?,
        })
    }

    /// Start of the slot of frame `index`. `slots` is a power of two, so the mask is exact even
    /// when the free-running index wraps around 2^32.
    fn slot(&self, index: u32) -> *mut u8 {
        let i = (index & (self.slots - 1)) as usize;
        self.mem.base.as_ptr().wrapping_add(i * SLOT_BYTES)
    }
}

/// One island's doorbell.
#[derive(Debug)]
struct Doorbell {
    /// Set by the receive loop just before it sleeps; cleared by the first sender that rings (so
    /// one wake-up per sleep), or by the loop when it wakes.
    armed: Padded<AtomicBool>,
    /// Set by a [`Waker`]: the loop returns from `recv` instead of taking a frame.
    kicked: AtomicBool,
    fd: EventFd,
}

impl Doorbell {
    /// Writes the eventfd if the receiver armed its doorbell. The caller has made its work
    /// visible and issued a SeqCst fence (see `RingLinkTx::try_send` for the argument).
    fn ring_if_armed(&self) -> io::Result<bool> {
        if self.armed.0.load(Ordering::Relaxed) && self.armed.0.swap(false, Ordering::Relaxed) {
            self.fd.write(1)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn kick(&self) {
        self.kicked.store(true, Ordering::Relaxed);
        // SeqCst fence between our store of `kicked` and our load of `armed`; the receive loop
        // stores `armed`, fences, then loads `kicked`: one of us sees the other's store.
        fence(Ordering::SeqCst);
        // An eventfd write fails only when its counter would overflow 2^64 - 2: impossible here,
        // and a lost kick could only delay an outbox flush to the next wake-up.
        let _ = self.ring_if_armed();
    }

    fn take_kick(&self) -> bool {
        self.kicked.load(Ordering::Relaxed) && self.kicked.swap(false, Ordering::Relaxed)
    }
}

/// Islands in one process, linked by shared rings.
#[derive(Debug)]
pub struct RingTransport {
    islands: usize,
    slots: u32,
    poll: Duration,
    /// Indexed by `from * islands + to`; `None` on the diagonal.
    rings: Vec<Option<Arc<Ring>>>,
    bells: Vec<Arc<Doorbell>>,
    attached: Vec<AtomicBool>,
}

impl RingTransport {
    /// `islands` islands (1 to 64), every ring `slots` slots (a power of two, 2 to 65536), every
    /// receive loop polling for at most `poll` before it sleeps (see "The poll window adapts").
    pub fn new(islands: usize, slots: u32, poll: Duration) -> Result<RingTransport, FabricError> {
        Self::with_start(islands, slots, poll, 0)
    }

    /// As `new`, with every ring's indices starting at `start` (tests: wrap-around of 2^32).
    fn with_start(
        islands: usize,
        slots: u32,
        poll: Duration,
        start: u32,
    ) -> Result<RingTransport, FabricError> {
        if islands == 0 || islands > super::MAX_ISLANDS {
            return Err(FabricError::IslandCount(islands));
        }
        if !slots.is_power_of_two() || !(2..=65536).contains(&slots) {
            return Err(FabricError::Config(format!(
                "ring slots must be a power of two from 2 to 65536, not {slots}"
            )));
        }
        let mut rings = Vec::with_capacity(islands * islands);
        for from in 0..islands {
            for to in 0..islands {
                rings.push(if from == to {
                    None
                } else {
                    Some(Arc::new(Ring::new(slots, start).map_err(|source| {
                        FabricError::RingMemory {
                            bytes: slots as usize * SLOT_BYTES,
                            source,
                        }
                    })?))
                });
            }
        }
        let bells = (0..islands)
            .map(|island| {
                Ok(Arc::new(Doorbell {
                    armed: Padded(AtomicBool::new(false)),
                    kicked: AtomicBool::new(false),
                    fd: EventFd::new(libc::EFD_NONBLOCK)
                        .map_err(|source| FabricError::Doorbell { island, source })?,
                }))
            })
            .collect::<Result<Vec<_>, FabricError>>()?;
        Ok(RingTransport {
            islands,
            slots,
            poll,
            rings,
            bells,
            attached: (0..islands).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    /// The longest a receive loop polls before it arms its doorbell and sleeps.
    pub fn poll(&self) -> Duration {
        self.poll
    }

    fn ring(&self, from: IslandId, to: IslandId) -> Option<&Arc<Ring>> {
        self.rings.get(from * self.islands + to)?.as_ref()
    }
}

impl Transport for RingTransport {
    type LinkTx = RingLinkTx;
    type Inbox = RingInbox;
    type Waker = RingWaker;

    fn islands(&self) -> usize {
        self.islands
    }

    fn max_frame(&self) -> usize {
        MAX_FRAME
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.slots as usize)
    }

    fn attach(
        &self,
        island: IslandId,
        counters: Arc<IslandCounters>,
    ) -> Result<Attachment<Self>, FabricError> {
        let nope = FabricError::NoSuchIsland {
            island,
            islands: self.islands,
        };
        let flag = self.attached.get(island).ok_or(nope)?;
        if flag.swap(true, Ordering::Relaxed) {
            return Err(FabricError::Attached(island));
        }
        counters
            .poll_window_ns
            .store(self.poll.as_nanos() as u64, Ordering::Relaxed);
        let bell = Arc::clone(&self.bells[island]);
        let epoll = Epoll::new().map_err(|source| FabricError::Doorbell { island, source })?;
        epoll
            .ctl(
                ControlOperation::Add,
                bell.fd.as_raw_fd(),
                EpollEvent::new(EventSet::IN, 0),
            )
            .map_err(|source| FabricError::Doorbell { island, source })?;
        let mut links = Vec::with_capacity(self.islands);
        let mut inbound = Vec::with_capacity(self.islands);
        for peer in 0..self.islands {
            match (self.ring(island, peer), self.ring(peer, island)) {
                (Some(out), Some(inb)) => {
                    links.push(Some(RingLinkTx {
                        prod: out.prod.0.load(Ordering::Relaxed),
                        ring: Arc::clone(out),
                        bell: Arc::clone(&self.bells[peer]),
                        counters: Arc::clone(&counters),
                        to: peer,
                    }));
                    inbound.push(InRing {
                        from: peer,
                        cons: inb.cons.0.load(Ordering::Relaxed),
                        ring: Arc::clone(inb),
                        sender_bell: Arc::clone(&self.bells[peer]),
                    });
                }
                _ => links.push(None),
            }
        }
        Ok(Attachment {
            links,
            inbox: RingInbox {
                rings: inbound,
                next: 0,
                bell: Arc::clone(&bell),
                epoll,
                window: PollWindow::new(self.poll),
                watched: 0,
                since_watch_check: 0,
                counters,
            },
            waker: RingWaker { bell },
        })
    }
}

use std::os::fd::{AsRawFd, RawFd};

/// The sending end of one ring.
#[derive(Debug)]
pub struct RingLinkTx {
    ring: Arc<Ring>,
    /// Our copy of `ring.prod` (we are its only writer).
    prod: u32,
    /// The receiver's doorbell.
    bell: Arc<Doorbell>,
    counters: Arc<IslandCounters>,
    to: IslandId,
}

impl LinkTx for RingLinkTx {
    fn try_send(&mut self, fill: &mut Fill<'_>) -> Result<bool, FabricError> {
        // Acquire pairs with the consumer's Release store of `cons`: its reads of the slots it
        // handed back happen before we overwrite them.
        let cons = self.ring.cons.0.load(Ordering::Acquire);
        if self.prod.wrapping_sub(cons) >= self.ring.slots {
            return Ok(false);
        }
        // SAFETY: prod - cons < slots, so slot `prod` is not in [cons, prod), the range the
        // consumer may read; it is ours until we publish it by advancing `prod`, and we are the
        // only producer (the fabric holds the link's lock, and `&mut self`). The pointer is in
        // bounds: `slot` masks the index, and the mapping holds `slots` slots of SLOT_BYTES.
        let slot = unsafe { std::slice::from_raw_parts_mut(self.ring.slot(self.prod), SLOT_BYTES) };
        let (header, body) = slot.split_at_mut(SLOT_HEADER);
        let len = fill(body)?;
        if len > body.len() {
            return Err(FabricError::FrameTooLarge {
                len,
                max: body.len(),
            });
        }
        header[..4].copy_from_slice(&(len as u32).to_le_bytes());
        self.prod = self.prod.wrapping_add(1);
        // Release publishes the slot's bytes with the index: pairs with the consumer's Acquire
        // load of `prod`.
        self.ring.prod.0.store(self.prod, Ordering::Release);
        // Notification suppression. This SeqCst fence orders our store of `prod` before our load
        // of the receiver's `armed`; the receive loop stores `armed`, issues a SeqCst fence, then
        // loads every `prod`. SeqCst fences are totally ordered: if ours is first, the loop's
        // re-check sees our frame; if its fence is first, our load sees `armed` set and we ring.
        // Either way no frame is left behind a sleeping receiver (Dekker's argument).
        fence(Ordering::SeqCst);
        let rung = self
            .bell
            .ring_if_armed()
            .map_err(|source| FabricError::Doorbell {
                island: self.to,
                source,
            })?;
        if rung {
            self.counters
                .out(self.to)
                .doorbells
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(true)
    }

    fn want_space(&mut self) -> bool {
        self.ring.want_space.0.store(true, Ordering::Relaxed);
        // SeqCst fence between our store of `want_space` and our load of `cons`; the consumer
        // stores `cons`, fences, then loads `want_space`: either we see the freed slot here, or
        // the consumer sees the flag and wakes us.
        fence(Ordering::SeqCst);
        let cons = self.ring.cons.0.load(Ordering::Acquire);
        let room = self.prod.wrapping_sub(cons) < self.ring.slots;
        if room {
            self.ring.want_space.0.store(false, Ordering::Relaxed);
        }
        room
    }
}

/// The receiving end of one ring.
#[derive(Debug)]
struct InRing {
    from: IslandId,
    ring: Arc<Ring>,
    /// Our copy of `ring.cons` (we are its only writer).
    cons: u32,
    /// The sender's doorbell, for room notifications.
    sender_bell: Arc<Doorbell>,
}

/// The adaptive poll window (see "The poll window adapts" in the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PollWindow {
    current: Duration,
    cap: Duration,
}

impl PollWindow {
    /// The smallest non-zero window: where growth starts and below which a shrinking window
    /// drops to 0.
    const START: Duration = Duration::from_micros(1);

    fn new(cap: Duration) -> PollWindow {
        PollWindow { current: cap, cap }
    }

    /// The loop slept, and its frame came `waited` after it started waiting.
    fn slept(&mut self, waited: Duration) {
        if waited <= self.cap {
            self.current = (self.current * 2).max(Self::START).min(self.cap);
        } else {
            self.current /= 2;
            if self.current < Self::START {
                self.current = Duration::ZERO;
            }
        }
    }
}

/// Every inbound ring of one island, and its doorbell.
#[derive(Debug)]
pub struct RingInbox {
    rings: Vec<InRing>,
    /// Round-robin position: the ring after the one served last.
    next: usize,
    bell: Arc<Doorbell>,
    epoll: Epoll,
    window: PollWindow,
    /// Descriptors watched besides the doorbell.
    watched: usize,
    /// Frames returned since the watched descriptors were last checked.
    since_watch_check: u32,
    counters: Arc<IslandCounters>,
}

impl RingInbox {
    /// Takes one frame from the first non-empty ring, round-robin. `Ok(false)`: all empty.
    fn take_one(&mut self, take: &mut Take<'_>) -> Result<bool, FabricError> {
        let n = self.rings.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let r = &mut self.rings[i];
            // Acquire pairs with the producer's Release store of `prod`: the frame's bytes are
            // visible.
            let prod = r.ring.prod.0.load(Ordering::Acquire);
            if prod == r.cons {
                continue;
            }
            if prod.wrapping_sub(r.cons) > r.ring.slots {
                return Err(FabricError::RingCorrupt { from: r.from });
            }
            // SAFETY: cons != prod, so slot `cons` is in [cons, prod): published by the producer
            // (the Acquire above makes its bytes visible) and not written again until we advance
            // `cons` below, after the last use of `slot`. In bounds as in `try_send`.
            let slot = unsafe { std::slice::from_raw_parts(r.ring.slot(r.cons), SLOT_BYTES) };
            let len = u32::from_le_bytes([slot[0], slot[1], slot[2], slot[3]]) as usize;
            let result = match slot.get(SLOT_HEADER..SLOT_HEADER + len) {
                Some(frame) => take(r.from, frame),
                None => Err(FabricError::FrameTooLarge {
                    len,
                    max: MAX_FRAME,
                }),
            };
            r.cons = r.cons.wrapping_add(1);
            // Release: our reads of the slot happen before the producer reuses it (pairs with
            // its Acquire load of `cons`).
            r.ring.cons.0.store(r.cons, Ordering::Release);
            // Room notification: the mirror image of `RingLinkTx::want_space` (store `cons`,
            // SeqCst fence, load `want_space`).
            fence(Ordering::SeqCst);
            let want = &r.ring.want_space.0;
            if want.load(Ordering::Relaxed) && want.swap(false, Ordering::Relaxed) {
                r.sender_bell.kick();
                self.counters
                    .inb(r.from)
                    .space_wakeups
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.next = (i + 1) % n;
            return result.map(|()| true);
        }
        Ok(false)
    }

    fn doorbell_error(&self, source: io::Error) -> FabricError {
        FabricError::Doorbell {
            island: self.counters.island(),
            source,
        }
    }
}

impl RingInbox {
    /// Whether a watched descriptor is readable, without waiting.
    fn watched_ready(&mut self) -> Result<bool, FabricError> {
        let mut events = [EpollEvent::default(); 8];
        match self.epoll.wait(0, &mut events) {
            Ok(n) => Ok(events[..n].iter().any(|e| e.data() != 0)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(self.doorbell_error(e)),
        }
    }

    /// A frame was taken: counts it, and says so.
    fn frame(&mut self, counter: fn(&IslandCounters) -> &std::sync::atomic::AtomicU64) -> Wake {
        counter(&self.counters).fetch_add(1, Ordering::Relaxed);
        self.since_watch_check = self.since_watch_check.saturating_add(1);
        Wake::Frame
    }
}

/// While frames keep coming during the poll window the loop never reaches epoll: watched
/// descriptors are checked (non-blocking) every this many frames, so that they do not starve.
const WATCH_CHECK_EVERY: u32 = 32;

impl Inbox for RingInbox {
    fn recv(
        &mut self,
        deadline: Option<Instant>,
        take: &mut Take<'_>,
    ) -> Result<Wake, FabricError> {
        let count = |c: &std::sync::atomic::AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        if self.watched > 0 && self.since_watch_check >= WATCH_CHECK_EVERY {
            self.since_watch_check = 0;
            if self.watched_ready()? {
                return Ok(Wake::Watched);
            }
        }
        // 1. Poll.
        let start = Instant::now();
        let window = self.window.current;
        let spin_end = match deadline {
            Some(d) => d.min(start + window),
            None => start + window,
        };
        let mut spins: u32 = 0;
        loop {
            if self.take_one(take)? {
                return Ok(self.frame(|c| &c.polled));
            }
            if self.bell.take_kick() {
                return Ok(Wake::Woken);
            }
            // Reading the clock costs about as much as a scan of a few rings: every 16 scans.
            if spins % 16 == 0 && Instant::now() >= spin_end {
                break;
            }
            spins = spins.wrapping_add(1);
            // No sched_yield here: with a CPU-bound vCPU thread runnable on this core, a yield
            // hands it a whole time slice (measured: calls of 1.4 to 3 ms instead of µs), while a
            // thread woken from epoll preempts it at once.
            std::hint::spin_loop();
        }
        // 2. Arm, re-check, sleep.
        let mut events = [EpollEvent::default(); 8];
        loop {
            let timeout_ms = match deadline {
                None => -1,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(Wake::Deadline);
                    }
                    // Round up: never wake before the deadline.
                    (d - now).as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                }
            };
            self.bell.armed.0.store(true, Ordering::Relaxed);
            // The receiver's half of the Dekker argument in `RingLinkTx::try_send` (and of
            // `Doorbell::kick`): store `armed`, SeqCst fence, then load every `prod` and `kicked`.
            fence(Ordering::SeqCst);
            let taken = self.take_one(take);
            if !matches!(taken, Ok(false)) {
                self.bell.armed.0.store(false, Ordering::Relaxed);
                taken?;
                return Ok(self.frame(|c| &c.polled));
            }
            if self.bell.take_kick() {
                self.bell.armed.0.store(false, Ordering::Relaxed);
                return Ok(Wake::Woken);
            }
            count(&self.counters.sleeps);
            let waited = self.epoll.wait(timeout_ms, &mut events);
            self.bell.armed.0.store(false, Ordering::Relaxed);
            let watched = match waited {
                Ok(n) => events[..n].iter().any(|e| e.data() != 0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                Err(e) => return Err(self.doorbell_error(e)),
            };
            count(&self.counters.wakeups);
            match self.bell.fd.read() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(self.doorbell_error(e)),
            }
            if self.take_one(take)? {
                self.window.slept(start.elapsed());
                self.counters
                    .poll_window_ns
                    .store(self.window.current.as_nanos() as u64, Ordering::Relaxed);
                return Ok(self.frame(|c| &c.woken));
            }
            if self.bell.take_kick() {
                return Ok(Wake::Woken);
            }
            if watched {
                self.since_watch_check = 0;
                return Ok(Wake::Watched);
            }
            count(&self.counters.empty_wakeups);
        }
    }

    fn watch(&mut self, fd: RawFd) -> Result<(), FabricError> {
        self.epoll
            .ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, self.watched as u64 + 1),
            )
            .map_err(|e| self.doorbell_error(e))?;
        self.watched += 1;
        Ok(())
    }
}

/// Wakes one island's receive loop.
#[derive(Debug, Clone)]
pub struct RingWaker {
    bell: Arc<Doorbell>,
}

impl Waker for RingWaker {
    fn wake(&self) {
        self.bell.kick();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    const NAMES: &[&str] = &["frame"];

    fn attach_all(t: &RingTransport) -> Vec<Attachment<RingTransport>> {
        (0..t.islands())
            .map(|i| {
                let c = Arc::new(IslandCounters::new(i, t.islands(), NAMES));
                t.attach(i, c).expect("attach")
            })
            .collect()
    }

    fn send_u64(tx: &mut RingLinkTx, v: u64) -> bool {
        tx.try_send(&mut |buf: &mut [u8]| {
            buf[..8].copy_from_slice(&v.to_le_bytes());
            Ok(8)
        })
        .expect("send")
    }

    fn recv_u64(rx: &mut RingInbox, deadline: Option<Instant>) -> Option<(IslandId, u64)> {
        let mut got = None;
        let taken = rx
            .recv(deadline, &mut |from, frame: &[u8]| {
                let mut b = [0u8; 8];
                b.copy_from_slice(frame);
                got = Some((from, u64::from_le_bytes(b)));
                Ok(())
            })
            .expect("recv");
        assert_eq!(taken == Wake::Frame, got.is_some());
        got
    }

    #[test]
    fn fifo_full_and_wrap_around() {
        // Indices start 3 below 2^32, so the ring wraps its index space on the way.
        let t = RingTransport::with_start(2, 4, Duration::ZERO, u32::MAX - 3).expect("new");
        let mut a = attach_all(&t);
        let mut tx = a[0].links[1].take().expect("link");
        let mut next_sent = 0u64;
        let mut next_recv = 0u64;
        for round in 0..5 {
            while send_u64(&mut tx, next_sent) {
                next_sent += 1;
            }
            assert_eq!(
                next_sent - next_recv,
                4,
                "round {round}: a full ring holds 4"
            );
            assert!(!tx.want_space());
            // Taking one frame frees a slot and kicks island 0 (it asked for room).
            assert_eq!(recv_u64(&mut a[1].inbox, None), Some((0, next_recv)));
            next_recv += 1;
            while let Some((_, v)) = recv_u64(&mut a[1].inbox, Some(Instant::now())) {
                assert_eq!(v, next_recv);
                next_recv += 1;
            }
            assert_eq!(next_recv, next_sent);
            // The kick reached island 0's doorbell; its inbox returns at once without a frame.
            assert!(a[0].inbox.bell.kicked.load(Ordering::Relaxed));
            assert_eq!(recv_u64(&mut a[0].inbox, None), None);
            assert!(!a[0].inbox.bell.kicked.load(Ordering::Relaxed));
        }
        assert!(t.ring(0, 1).expect("ring").prod.0.load(Ordering::Relaxed) < 100);
    }

    #[test]
    fn refuses_bad_configuration() {
        assert!(matches!(
            RingTransport::new(0, 4, Duration::ZERO),
            Err(FabricError::IslandCount(0))
        ));
        assert!(RingTransport::new(65, 4, Duration::ZERO).is_err());
        assert!(RingTransport::new(2, 3, Duration::ZERO).is_err());
        assert!(RingTransport::new(2, 1, Duration::ZERO).is_err());
        let t = RingTransport::new(2, 2, Duration::ZERO).expect("new");
        let c = Arc::new(IslandCounters::new(0, 2, NAMES));
        t.attach(0, Arc::clone(&c)).expect("attach");
        assert!(matches!(
            t.attach(0, Arc::clone(&c)),
            Err(FabricError::Attached(0))
        ));
        assert!(matches!(
            t.attach(2, c),
            Err(FabricError::NoSuchIsland { island: 2, .. })
        ));
    }

    #[test]
    fn oversized_fill_publishes_nothing() {
        let t = RingTransport::new(2, 2, Duration::ZERO).expect("new");
        let mut a = attach_all(&t);
        let mut tx = a[0].links[1].take().expect("link");
        let r = tx.try_send(&mut |buf: &mut [u8]| Ok(buf.len() + 1));
        assert!(matches!(r, Err(FabricError::FrameTooLarge { .. })));
        assert!(send_u64(&mut tx, 5));
        assert_eq!(
            recv_u64(&mut a[1].inbox, Some(Instant::now())),
            Some((0, 5))
        );
    }

    /// A sleeping receiver is woken by exactly one doorbell; a sender to a receiver that is not
    /// asleep rings none.
    #[test]
    fn doorbell_rings_only_when_armed() {
        let t = RingTransport::new(2, 64, Duration::ZERO).expect("new");
        let mut a = attach_all(&t);
        let mut tx = a[0].links[1].take().expect("link");
        let mut rx1 = a.pop().expect("island 1").inbox;
        let counters = Arc::clone(&rx1.counters);
        let sender_counters = Arc::clone(&tx.counters);
        // Receiver not in recv: nothing armed, no doorbell.
        for v in 0..10 {
            assert!(send_u64(&mut tx, v));
        }
        for v in 0..10 {
            assert_eq!(recv_u64(&mut rx1, None), Some((0, v)));
        }
        assert_eq!(sender_counters.out(1).doorbells.load(Ordering::Relaxed), 0);
        let h = std::thread::spawn(move || recv_u64(&mut rx1, None));
        // Wait until the receiver is asleep (armed, with no polling at poll = 0).
        while counters.sleeps.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        assert!(send_u64(&mut tx, 99));
        assert_eq!(h.join().expect("join"), Some((0, 99)));
        assert_eq!(sender_counters.out(1).doorbells.load(Ordering::Relaxed), 1);
        assert_eq!(counters.woken.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn waker_interrupts_a_sleep_and_deadline_ends_it() {
        let t = RingTransport::new(2, 2, Duration::from_micros(50)).expect("new");
        let mut a = attach_all(&t);
        let mut rx = a.remove(0);
        let start = Instant::now();
        assert_eq!(
            recv_u64(&mut rx.inbox, Some(start + Duration::from_millis(5))),
            None
        );
        assert!(start.elapsed() >= Duration::from_millis(5));
        let waker = rx.waker.clone();
        let counters = Arc::clone(&rx.inbox.counters);
        let h = std::thread::spawn(move || recv_u64(&mut rx.inbox, None));
        while counters.sleeps.load(Ordering::Relaxed) < 2 {
            std::thread::yield_now();
        }
        waker.wake();
        assert_eq!(h.join().expect("join"), None);
    }

    #[test]
    fn poll_window_grows_and_shrinks_like_halt_polling() {
        let us = Duration::from_micros;
        let mut w = PollWindow::new(us(10));
        assert_eq!(w.current, us(10));
        // Frames later than the cap: the window halves, then drops to 0 below 1 µs.
        for expected_ns in [5000, 2500, 1250, 0, 0] {
            w.slept(us(11));
            assert_eq!(w.current, Duration::from_nanos(expected_ns));
        }
        // A frame within the cap after a sleep: a longer window would have caught it.
        for expected in [1, 2, 4, 8, 10, 10] {
            w.slept(us(9));
            assert_eq!(w.current, us(expected));
        }
        // A cap of 0: always 0 (pure doorbell).
        let mut w = PollWindow::new(Duration::ZERO);
        w.slept(Duration::ZERO);
        assert_eq!(w.current, Duration::ZERO);
    }

    /// Frames far apart shrink the window to 0; a ping-pong grows it back.
    #[test]
    fn sparse_traffic_stops_polling() {
        let t = RingTransport::new(2, 8, Duration::from_micros(20)).expect("new");
        let mut a = attach_all(&t);
        let mut tx = a[0].links[1].take().expect("link");
        let mut rx1 = a.pop().expect("island 1").inbox;
        let counters = Arc::clone(&rx1.counters);
        assert_eq!(counters.poll_window_ns.load(Ordering::Relaxed), 20_000);
        let h = std::thread::spawn(move || {
            for v in 0..6 {
                assert_eq!(recv_u64(&mut rx1, None), Some((0, v)));
            }
            rx1
        });
        for v in 0..6 {
            // Each frame comes 1 ms after the receiver went to sleep.
            while counters.sleeps.load(Ordering::Relaxed) <= v {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(1));
            assert!(send_u64(&mut tx, v));
        }
        let _rx1 = h.join().expect("join");
        // 20 -> 10 -> 5 -> 2.5 -> 1.25 -> 0 -> 0 µs.
        assert_eq!(counters.poll_window_ns.load(Ordering::Relaxed), 0);
        assert_eq!(counters.woken.load(Ordering::Relaxed), 6);
    }

    /// SPSC stress: one producer, one consumer, small ring, every value once and in order, with
    /// the consumer sleeping whenever it runs dry.
    #[test]
    fn spsc_stress_in_order_no_loss() {
        const N: u64 = 200_000;
        let t = RingTransport::new(2, 4, Duration::from_micros(2)).expect("new");
        let mut a = attach_all(&t);
        let mut tx = a[0].links[1].take().expect("link");
        let mut rx1 = a.pop().expect("island 1").inbox;
        let mut rx0 = a.pop().expect("island 0").inbox;
        let h = std::thread::spawn(move || {
            let mut v = 0;
            while v < N {
                if send_u64(&mut tx, v) {
                    v += 1;
                } else if !tx.want_space() {
                    // Sleep until the consumer frees a slot and kicks us.
                    recv_u64(&mut rx0, None);
                }
            }
        });
        let sum = AtomicU64::new(0);
        for v in 0..N {
            let (from, got) = recv_u64(&mut rx1, None).expect("frame");
            assert_eq!((from, got), (0, v));
            sum.fetch_add(got, Ordering::Relaxed);
        }
        h.join().expect("join");
        assert_eq!(sum.load(Ordering::Relaxed), N * (N - 1) / 2);
    }
}
