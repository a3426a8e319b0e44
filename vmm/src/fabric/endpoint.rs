//! The fabric proper: islands' endpoints ([`Sender`], [`Receiver`]) over any [`Transport`], with
//! the flow control (credits, outboxes) and the counters. See the module docs for the design and
//! the argument that it neither deadlocks nor grows without bound.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::ring::RingTransport;
use super::stats::{FabricStats, IslandCounters, IslandStats};
use super::transport::{Inbox, LinkTx, Transport, Wake, Waker};
use super::wire::{Class, Wire, WireError};
use super::{FabricConfig, FabricError, IslandId, FRAME_HEADER, MAX_ISLANDS};

thread_local! {
    /// The islands (addresses of their cores) whose receive loop has run on this thread: such a
    /// thread must never wait for a credit (see `Sender::send`).
    static RECEIVE_LOOPS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn runs_receive_loop(core: usize) -> bool {
    RECEIVE_LOOPS.with_borrow(|v| v.contains(&core))
}

// A panic while holding a link lock (only possible inside a Wire implementation's encode) leaves
// the link state consistent: every update under the lock is a single step. Hence `lock` ignores
// poisoning.
use crate::sync::lock;

/// The sending side of one link, behind its lock.
struct OutState<L> {
    tx: L,
    /// Requests sent on the link whose answers have not been taken yet.
    outstanding: u64,
    /// Frames that found the link full, oldest first. Drained before anything new enters the
    /// link, so the link stays FIFO.
    outbox: VecDeque<Box<[u8]>>,
    /// Where a frame to park is encoded (kept: the bound of a message may be a range of pages,
    /// 128 KiB, too much to allocate and zero for each parked frame of a few bytes).
    scratch: Vec<u8>,
    /// Ticket queue of requesters waiting for a credit: the next ticket to hand out and the one
    /// to serve next (FIFO among waiters, so none starves).
    next_ticket: u64,
    serving: u64,
    waiting: u64,
}

struct OutLink<L> {
    state: Mutex<OutState<L>>,
    /// Signalled when a credit returns (or at shutdown).
    credit: Condvar,
}

/// How a send treats a request when no credit is free.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Wait for one (a requester thread).
    Wait,
    /// Refuse (return `false`).
    Try,
    /// Send anyway: an overdraft (the receive loop and the threads it depends on).
    Post,
}

/// One island's side of the fabric, shared by its senders and its receiver.
struct Core<M, T: Transport> {
    id: IslandId,
    islands: usize,
    credits: u64,
    max_outbox: usize,
    /// Indexed by destination island; `None` at `id`.
    links: Box<[Option<OutLink<T::LinkTx>>]>,
    counters: Arc<IslandCounters>,
    waker: T::Waker,
    /// Destinations whose outbox is not empty (bit per island).
    parked: AtomicU64,
    shutdown: Arc<AtomicBool>,
    _msg: PhantomData<fn(M) -> M>,
}

impl<M: Wire, T: Transport> Core<M, T> {
    fn link(&self, to: IslandId) -> Result<&OutLink<T::LinkTx>, FabricError> {
        if to >= self.islands {
            return Err(FabricError::NoSuchIsland {
                island: to,
                islands: self.islands,
            });
        }
        if to == self.id {
            return Err(FabricError::SelfSend(to));
        }
        self.links
            .get(to)
            .and_then(Option::as_ref)
            .ok_or(FabricError::NotLocal(to))
    }

    fn check_shutdown(&self) -> Result<(), FabricError> {
        if self.shutdown.load(Ordering::SeqCst) {
            return Err(FabricError::Shutdown);
        }
        Ok(())
    }

    /// Sends `msg` to `to`. `Ok(false)` only in `Mode::Try`, for a request with no credit.
    fn submit(&self, to: IslandId, msg: &M, mode: Mode) -> Result<bool, FabricError> {
        let class = msg.class();
        let ty = msg.type_index();
        if ty >= M::TYPE_NAMES.len() {
            return Err(FabricError::BadType {
                type_index: ty,
                types: M::TYPE_NAMES.len(),
            });
        }
        let link = self.link(to)?;
        let mut st = lock(&link.state);
        self.check_shutdown()?;
        // A message that carries several requests takes as many credits (see `Wire::weight`); one
        // heavier than all the credits goes when none is outstanding (or it would never go).
        let weight = u64::from(msg.weight().max(1));
        if class == Class::Request {
            let free = st.outstanding == 0 || st.outstanding + weight <= self.credits;
            let queued = st.waiting > 0;
            let mode = if mode == Mode::Wait && runs_receive_loop(self as *const Self as usize) {
                // The receive loop must never wait for a credit: the answer that would return it
                // can only be taken by this very thread.
                Mode::Post
            } else {
                mode
            };
            match mode {
                Mode::Post if !free => {
                    self.counters
                        .out(to)
                        .overdrafts
                        .fetch_add(1, Ordering::Relaxed);
                }
                Mode::Post => {}
                Mode::Try if !free || queued => return Ok(false),
                Mode::Try => {}
                Mode::Wait if !free || queued => st = self.wait_credit(link, st, to, weight)?,
                Mode::Wait => {}
            }
            st.outstanding += weight;
        }
        match self.write(&mut st, to, class, ty, msg) {
            Ok(()) => Ok(true),
            Err(e) => {
                if class == Class::Request {
                    st.outstanding -= weight;
                    if st.waiting > 0 {
                        link.credit.notify_all();
                    }
                }
                Err(e)
            }
        }
    }

    /// Waits in the link's ticket queue until it is our turn and a credit is free.
    fn wait_credit<'a>(
        &self,
        link: &'a OutLink<T::LinkTx>,
        mut st: MutexGuard<'a, OutState<T::LinkTx>>,
        to: IslandId,
        weight: u64,
    ) -> Result<MutexGuard<'a, OutState<T::LinkTx>>, FabricError> {
        self.counters
            .out(to)
            .credit_waits
            .fetch_add(1, Ordering::Relaxed);
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.waiting += 1;
        loop {
            if self.shutdown.load(Ordering::SeqCst) {
                st.waiting -= 1;
                return Err(FabricError::Shutdown);
            }
            let free = st.outstanding == 0 || st.outstanding + weight <= self.credits;
            if st.serving == ticket && free {
                st.serving += 1;
                st.waiting -= 1;
                if st.waiting > 0 {
                    // The next ticket may go too if more credits are free.
                    link.credit.notify_all();
                }
                return Ok(st);
            }
            st = link.credit.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Puts one message on the link, behind any parked frames.
    fn write(
        &self,
        st: &mut OutState<T::LinkTx>,
        to: IslandId,
        class: Class,
        ty: usize,
        msg: &M,
    ) -> Result<(), FabricError> {
        if !st.outbox.is_empty() {
            self.flush(st, to)?;
        }
        if st.outbox.is_empty() {
            let mut len = 0;
            let sent = st.tx.try_send(&mut |buf: &mut [u8]| {
                len = encode_frame(buf, msg, class, ty, self.id, to)?;
                Ok(len)
            })?;
            if sent {
                self.counters.out(to).count(ty, len);
                return Ok(());
            }
        }
        if st.outbox.len() >= self.max_outbox {
            return Err(FabricError::OutboxFull {
                from: self.id,
                to,
                bound: self.max_outbox,
            });
        }
        st.scratch.resize(FRAME_HEADER + M::MAX_ENCODED, 0);
        let len = encode_frame(&mut st.scratch, msg, class, ty, self.id, to)?;
        let frame: Box<[u8]> = st.scratch[..len].into();
        st.outbox.push_back(frame);
        let c = self.counters.out(to);
        c.parked.fetch_add(1, Ordering::Relaxed);
        c.outbox_high_water
            .fetch_max(st.outbox.len() as u64, Ordering::Relaxed);
        self.parked.fetch_or(1u64 << to, Ordering::Relaxed);
        if st.tx.want_space() {
            self.flush(st, to)?;
        }
        Ok(())
    }

    /// Moves parked frames into the link while it has room. If it runs out of room, asks the
    /// transport for a wake-up when room appears (the receive loop then calls this again).
    fn flush(&self, st: &mut OutState<T::LinkTx>, to: IslandId) -> Result<(), FabricError> {
        while let Some(frame) = st.outbox.front() {
            let sent = st.tx.try_send(&mut |buf: &mut [u8]| {
                let max = buf.len();
                let dst = buf
                    .get_mut(..frame.len())
                    .ok_or(FabricError::FrameTooLarge {
                        len: frame.len(),
                        max,
                    })?;
                dst.copy_from_slice(frame);
                Ok(frame.len())
            })?;
            if sent {
                // The type was validated when the frame was encoded.
                let ty = u16::from_le_bytes([frame[2], frame[3]]) as usize;
                self.counters.out(to).count(ty, frame.len());
                st.outbox.pop_front();
            } else if !st.tx.want_space() {
                return Ok(());
            }
        }
        self.parked.fetch_and(!(1u64 << to), Ordering::Relaxed);
        Ok(())
    }

    fn flush_parked(&self) -> Result<(), FabricError> {
        let mut mask = self.parked.load(Ordering::Relaxed);
        while mask != 0 {
            let to = mask.trailing_zeros() as IslandId;
            mask &= mask - 1;
            let link = self.link(to)?;
            let mut st = lock(&link.state);
            self.flush(&mut st, to)?;
        }
        Ok(())
    }

    /// Decodes one frame taken from the link `from` → us. Sets `*answer` to the answers its
    /// header says it carries (its weight; 0 for a request): the caller returns those credits
    /// once the frame's slot is free (not before: a credit lets a new request in, whose answer
    /// needs that slot; see the bound in the module docs).
    fn accept(
        &self,
        from: IslandId,
        frame: &[u8],
        answer: &mut u64,
    ) -> Result<(IslandId, M), FabricError> {
        let counters = self.counters.inb(from);
        let malformed = |source: WireError| {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            FabricError::Malformed {
                from,
                to: self.id,
                source,
            }
        };
        let (header, body) = frame.split_at_checked(FRAME_HEADER).ok_or_else(|| {
            malformed(WireError::Truncated {
                at: 0,
                need: FRAME_HEADER,
                have: frame.len(),
            })
        })?;
        let class = Class::from_byte(header[0]).map_err(malformed)?;
        let ty = u16::from_le_bytes([header[2], header[3]]) as usize;
        if ty >= M::TYPE_NAMES.len() {
            return Err(malformed(WireError::Invalid {
                what: "message type",
                value: ty as u64,
            }));
        }
        // The frame is consumed whatever its body: an answer's credits come back (at least one,
        // whatever the weight byte says: a frame is at least one message).
        let weight = header[1];
        if class == Class::Answer {
            *answer = u64::from(weight.max(1));
        }
        let msg = M::decode(body).map_err(malformed)?;
        if msg.class() != class || msg.type_index() != ty || msg.weight() != weight {
            return Err(malformed(WireError::Invalid {
                what: "frame header (type, class or weight differs from the body's)",
                value: ty as u64,
            }));
        }
        counters.count(ty, frame.len());
        Ok((from, msg))
    }

    fn answer_taken(&self, from: IslandId, answers: u64) -> Result<(), FabricError> {
        let link = self.link(from)?;
        let mut st = lock(&link.state);
        if st.outstanding < answers {
            return Err(FabricError::UnexpectedAnswer {
                island: self.id,
                from,
            });
        }
        st.outstanding -= answers;
        if st.waiting > 0 {
            link.credit.notify_all();
        }
        Ok(())
    }

    fn wake_all(&self) {
        for link in self.links.iter().flatten() {
            // Lock before notifying: a waiter checks the shutdown flag under this lock, so it
            // either saw the flag or is already waiting and gets the notification.
            let _st = lock(&link.state);
            link.credit.notify_all();
        }
        self.waker.wake();
    }
}

/// Writes the fabric's frame header (class, type) and the message after it.
fn encode_frame<M: Wire>(
    buf: &mut [u8],
    msg: &M,
    class: Class,
    ty: usize,
    from: IslandId,
    to: IslandId,
) -> Result<usize, FabricError> {
    // Never more than the type's bound, whatever room the transport offers: a message encodes
    // the same way into a ring slot and into an outbox frame.
    let limit = buf.len().min(FRAME_HEADER + M::MAX_ENCODED);
    let buf = &mut buf[..limit];
    let max = buf.len();
    let (header, body) =
        buf.split_at_mut_checked(FRAME_HEADER)
            .ok_or(FabricError::FrameTooLarge {
                len: FRAME_HEADER,
                max,
            })?;
    header[0] = class.to_byte();
    let weight = msg.weight();
    if weight == 0 {
        return Err(FabricError::Encode {
            from,
            to,
            source: WireError::Invalid {
                what: "message weight",
                value: 0,
            },
        });
    }
    header[1] = weight;
    header[2..4].copy_from_slice(&(ty as u16).to_le_bytes());
    let n = msg
        .encode(body)
        .map_err(|source| FabricError::Encode { from, to, source })?;
    if n > body.len() {
        return Err(FabricError::FrameTooLarge {
            len: FRAME_HEADER + n,
            max,
        });
    }
    Ok(FRAME_HEADER + n)
}

/// The messaging layer between `islands` island kernels: one link per ordered pair of islands.
pub struct Fabric<M: Wire, T: Transport = RingTransport> {
    islands: usize,
    config: FabricConfig,
    cores: Vec<Option<Arc<Core<M, T>>>>,
    inboxes: Mutex<Vec<Option<T::Inbox>>>,
    shutdown: Arc<AtomicBool>,
}

impl<M: Wire> Fabric<M, RingTransport> {
    /// A fabric of `islands` islands (1 to 64) in this process, over shared rings.
    pub fn new(islands: usize, config: FabricConfig) -> Result<Self, FabricError> {
        let transport = RingTransport::new(islands, config.ring_slots, config.poll)?;
        Self::with_transport(transport, config)
    }
}

impl<M: Wire, T: Transport> Fabric<M, T> {
    /// A fabric over `transport`, attaching its local islands. `config.ring_slots` and
    /// `config.poll` are the transport's business; the credits and the outbox bound are ours.
    pub fn with_transport(transport: T, config: FabricConfig) -> Result<Self, FabricError> {
        let islands = transport.islands();
        if islands == 0 || islands > MAX_ISLANDS {
            return Err(FabricError::IslandCount(islands));
        }
        if M::TYPE_NAMES.is_empty() || M::TYPE_NAMES.len() > usize::from(u16::MAX) {
            return Err(FabricError::Config(format!(
                "a message type set needs 1 to 65535 names, not {}",
                M::TYPE_NAMES.len()
            )));
        }
        if FRAME_HEADER + M::MAX_ENCODED > transport.max_frame() {
            return Err(FabricError::Config(format!(
                "messages of up to {} bytes do not fit the transport's {}-byte frames",
                M::MAX_ENCODED,
                transport.max_frame() - FRAME_HEADER
            )));
        }
        if config.credits == 0 {
            return Err(FabricError::Config("credits must be at least 1".into()));
        }
        if let Some(capacity) = transport.capacity() {
            if 2 * config.credits as usize > capacity {
                return Err(FabricError::Config(format!(
                    "2 × credits ({}) must not exceed the link capacity ({capacity} frames): \
                     the answer reserve",
                    config.credits
                )));
            }
        }
        if config.max_outbox == 0 {
            return Err(FabricError::Config("max_outbox must be at least 1".into()));
        }
        let shutdown = Arc::new(AtomicBool::new(false));
        let mut cores = Vec::with_capacity(islands);
        let mut inboxes = Vec::with_capacity(islands);
        for id in 0..islands {
            if !transport.is_local(id) {
                cores.push(None);
                inboxes.push(None);
                continue;
            }
            let counters = Arc::new(IslandCounters::new(id, islands, M::TYPE_NAMES));
            let att = transport.attach(id, Arc::clone(&counters))?;
            let links = att
                .links
                .into_iter()
                .map(|l| {
                    l.map(|tx| OutLink {
                        state: Mutex::new(OutState {
                            tx,
                            outstanding: 0,
                            outbox: VecDeque::new(),
                            scratch: Vec::new(),
                            next_ticket: 0,
                            serving: 0,
                            waiting: 0,
                        }),
                        credit: Condvar::new(),
                    })
                })
                .collect();
            cores.push(Some(Arc::new(Core {
                id,
                islands,
                credits: u64::from(config.credits),
                max_outbox: config.max_outbox,
                links,
                counters,
                waker: att.waker,
                parked: AtomicU64::new(0),
                shutdown: Arc::clone(&shutdown),
                _msg: PhantomData,
            })));
            inboxes.push(Some(att.inbox));
        }
        Ok(Fabric {
            islands,
            config,
            cores,
            inboxes: Mutex::new(inboxes),
            shutdown,
        })
    }

    pub fn islands(&self) -> usize {
        self.islands
    }

    pub fn config(&self) -> &FabricConfig {
        &self.config
    }

    fn core(&self, island: IslandId) -> Result<&Arc<Core<M, T>>, FabricError> {
        self.cores
            .get(island)
            .ok_or(FabricError::NoSuchIsland {
                island,
                islands: self.islands,
            })?
            .as_ref()
            .ok_or(FabricError::NotLocal(island))
    }

    /// A sending handle of `island` (cheap to clone; every thread of the island may hold one).
    pub fn sender(&self, island: IslandId) -> Result<Sender<M, T>, FabricError> {
        Ok(Sender {
            core: Arc::clone(self.core(island)?),
        })
    }

    /// The receiving end of `island`: one per island, for its receive loop.
    pub fn receiver(&self, island: IslandId) -> Result<Receiver<M, T>, FabricError> {
        let core = Arc::clone(self.core(island)?);
        let inbox = lock(&self.inboxes)
            .get_mut(island)
            .and_then(Option::take)
            .ok_or(FabricError::ReceiverTaken(island))?;
        Ok(Receiver { core, inbox })
    }

    /// Every counter of every local island, links merged.
    pub fn stats(&self) -> FabricStats {
        FabricStats::merge(
            self.islands,
            self.cores.iter().flatten().map(|c| c.counters.snapshot()),
        )
    }

    /// Ends all traffic: every blocked `send` and every `recv` returns [`FabricError::Shutdown`],
    /// and so does every later call.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for core in self.cores.iter().flatten() {
            core.wake_all();
        }
    }
}

impl<M: Wire, T: Transport> fmt::Debug for Fabric<M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fabric")
            .field("islands", &self.islands)
            .field("config", &self.config)
            .field("shutdown", &self.shutdown.load(Ordering::Relaxed))
            .finish()
    }
}

/// The sending side of one island. Every thread of the island kernel may hold a clone.
pub struct Sender<M: Wire, T: Transport = RingTransport> {
    core: Arc<Core<M, T>>,
}

impl<M: Wire, T: Transport> Clone for Sender<M, T> {
    fn clone(&self) -> Self {
        Sender {
            core: Arc::clone(&self.core),
        }
    }
}

impl<M: Wire, T: Transport> fmt::Debug for Sender<M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("island", &self.core.id)
            .finish()
    }
}

impl<M: Wire, T: Transport> Sender<M, T> {
    /// The island this sender sends from.
    pub fn island(&self) -> IslandId {
        self.core.id
    }

    pub fn islands(&self) -> usize {
        self.core.islands
    }

    /// Sends `msg` to island `to`, for a thread that may block (a vCPU thread serving a system
    /// call, a fault handler). A request waits, in FIFO order with the island's other
    /// requesters, until fewer than `credits` requests are outstanding on the link (backpressure).
    /// An answer never waits. Called on the island's receive-loop thread it never waits either
    /// (it behaves as [`Sender::post`]). Returns once the message is on the link: two sends of
    /// one thread to one island arrive in order.
    pub fn send(&self, to: IslandId, msg: &M) -> Result<(), FabricError> {
        self.core.submit(to, msg, Mode::Wait).map(|_| ())
    }

    /// Sends `msg` to island `to` without ever waiting, for the island's message handling: an
    /// answer, or a request the handling of a message gives rise to. A request with no credit
    /// free goes anyway (an *overdraft*, counted); the module docs say why that stays bounded.
    pub fn post(&self, to: IslandId, msg: &M) -> Result<(), FabricError> {
        self.core.submit(to, msg, Mode::Post).map(|_| ())
    }

    /// Sends `msg` if it can without waiting and without an overdraft: `Ok(false)` for a request
    /// when no credit is free (or requesters are queued for one). Answers always go.
    pub fn try_send(&self, to: IslandId, msg: &M) -> Result<bool, FabricError> {
        self.core.submit(to, msg, Mode::Try)
    }

    /// Requests sent to `to` whose answers have not been taken yet.
    pub fn outstanding(&self, to: IslandId) -> Result<u64, FabricError> {
        Ok(lock(&self.core.link(to)?.state).outstanding)
    }

    /// This island's counters.
    pub fn stats(&self) -> IslandStats {
        self.core.counters.snapshot()
    }
}

/// The receiving end of one island: its receive loop calls [`Receiver::recv`].
pub struct Receiver<M: Wire, T: Transport = RingTransport> {
    core: Arc<Core<M, T>>,
    inbox: T::Inbox,
}

impl<M: Wire, T: Transport> fmt::Debug for Receiver<M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("island", &self.core.id)
            .finish()
    }
}

impl<M: Wire, T: Transport> Receiver<M, T> {
    pub fn island(&self) -> IslandId {
        self.core.id
    }

    /// A sender of the same island.
    pub fn sender(&self) -> Sender<M, T> {
        Sender {
            core: Arc::clone(&self.core),
        }
    }

    /// Also wakes [`Receiver::recv`] (with `Ok(None)`) when `fd` is readable, for a receive loop
    /// that serves another source too, such as the island's userfaultfd. Level-triggered: `recv`
    /// returns at once while `fd` stays readable. While messages keep arriving within the poll
    /// window, `fd` is checked every 32 messages. `fd` must stay open while the receiver lives.
    pub fn watch(&mut self, fd: RawFd) -> Result<(), FabricError> {
        self.inbox.watch(fd)
    }

    /// The next message from any island, with the island it came from: polls, then sleeps on the
    /// doorbell, for at most `timeout` (`None`: until a message comes). `Ok(None)` on timeout or
    /// when a watched descriptor is readable ([`Receiver::watch`]).
    /// Also moves parked frames of this island's outboxes into their links as room appears, so
    /// every island must keep its receive loop running.
    ///
    /// A malformed frame, or an answer for which no request is outstanding, is an error naming
    /// the link; the frame is consumed and the next call goes on with the next one.
    pub fn recv(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<(IslandId, M)>, FabricError> {
        let me = Arc::as_ptr(&self.core) as usize;
        RECEIVE_LOOPS.with_borrow_mut(|v| {
            if !v.contains(&me) {
                v.push(me);
            }
        });
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.core.check_shutdown()?;
            if self.core.parked.load(Ordering::Relaxed) != 0 {
                self.core.flush_parked()?;
            }
            let core = &self.core;
            let mut out = None;
            let mut answer_from = None;
            let taken = self.inbox.recv(deadline, &mut |from, frame: &[u8]| {
                let mut answer = 0;
                let r = core.accept(from, frame, &mut answer);
                if answer > 0 {
                    answer_from = Some((from, answer));
                }
                out = Some(r?);
                Ok(())
            });
            // The frame's slot is free now: return an answer's credit (even if the frame was
            // malformed: it was consumed).
            if let Some((from, answers)) = answer_from {
                core.answer_taken(from, answers)?;
            }
            match taken? {
                Wake::Frame => return Ok(out),
                Wake::Watched => return Ok(None),
                Wake::Deadline | Wake::Woken => {}
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            // Woken without a frame: flush the outboxes, check for shutdown, wait again.
        }
    }
}

impl<M: Wire, T: Transport> Drop for Receiver<M, T> {
    fn drop(&mut self) {
        let me = Arc::as_ptr(&self.core) as usize;
        RECEIVE_LOOPS.with_borrow_mut(|v| v.retain(|&c| c != me));
    }
}
