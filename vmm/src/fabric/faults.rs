//! Fault injection in the links, for tests and soak runs: a [`Transport`] wrapper that delays
//! frames, makes links behave as full for a while, and stalls an island's receive loop — and
//! never reorders a link nor loses a frame (the protocols need FIFO links that deliver
//! everything: see the module docs).
//!
//! ```text
//! POPVMM_FAULTS=SEED[,delay=P:MAX][,burst=P:MAX][,stall=ISLAND:FOR:EVERY]
//! POPVMM_FAULTS=7,delay=20:500us,burst=5:2ms,stall=1:30ms:300ms
//! ```
//!
//! - `delay=P:MAX`: each frame a receive loop takes is, with probability P %, held back for a
//!   random time up to MAX before the loop gets it (the link's later frames wait behind it, so
//!   the link stays FIFO; its credit returns only when the loop has the frame).
//! - `burst=P:MAX`: each frame a link is offered starts, with probability P %, a burst during
//!   which the link refuses frames as a full ring does, for a random time up to MAX: the frame
//!   and those after it wait in the sender's outbox, in order, and the sender's own receive loop
//!   is woken when the burst ends, to flush them (the path a ring full of overdrafts takes).
//! - `stall=I:FOR:EVERY`: island I's receive loop takes nothing (no frame, no page fault) for FOR,
//!   every EVERY from a random phase; `*` for I: a random island each time.
//!
//! Durations are `N`, `Nus`, `Nms` or `Ns` (plain numbers are microseconds). The same seed
//! draws the same choices (each island and link has its generator), though thread timing still
//! differs from run to run. Without a spec the wrapper passes everything through unchanged.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ring::RingTransport;
use super::stats::IslandCounters;
use super::transport::{Attachment, Fill, Inbox, LinkTx, Take, Transport, Wake, Waker};
use super::{FabricError, IslandId};

/// The environment variable that turns fault injection on (see the module docs).
pub const FAULTS_VAR: &str = "POPVMM_FAULTS";

/// Which island a stall hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallTarget {
    Island(IslandId),
    /// A random island for each stall.
    Any,
}

/// What to inject (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    pub seed: u64,
    /// Percent of frames held back, and the longest hold.
    pub delay: Option<(u32, Duration)>,
    /// Percent of frames that start a burst, and the longest burst.
    pub burst: Option<(u32, Duration)>,
    /// Island, length, period.
    pub stall: Option<(StallTarget, Duration, Duration)>,
}

fn duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "us"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 500us, 2ms or 1s"))?;
    let d = match unit {
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        _ => return Err(format!("{s:?}: the unit is us, ms or s")),
    };
    if d > Duration::from_secs(10) {
        return Err(format!("{s:?}: at most 10 s"));
    }
    Ok(d)
}

fn show(d: Duration) -> String {
    if d.subsec_micros() % 1000 == 0 && d >= Duration::from_millis(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}us", d.as_micros())
    }
}

fn percent(s: &str) -> Result<u32, String> {
    s.parse()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| format!("{s:?}: expected a percentage, 0 to 100"))
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultSpec, String> {
        let mut parts = s.split([',', ' ']).filter(|p| !p.is_empty());
        let first = parts
            .next()
            .ok_or("an empty fault spec: expected SEED[,...]")?;
        let seed = first
            .strip_prefix("seed=")
            .unwrap_or(first)
            .parse()
            .map_err(|_| format!("{first:?}: the spec starts with the seed (a number)"))?;
        let mut spec = FaultSpec {
            seed,
            delay: None,
            burst: None,
            stall: None,
        };
        for part in parts {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected KEY=VALUE"))?;
            let fields: Vec<&str> = value.split(':').collect();
            match (key, fields.as_slice()) {
                ("delay", [p, max]) => spec.delay = Some((percent(p)?, duration(max)?)),
                ("burst", [p, max]) => spec.burst = Some((percent(p)?, duration(max)?)),
                ("stall", [island, length, every]) => {
                    let target =
                        match *island {
                            "*" => StallTarget::Any,
                            i => StallTarget::Island(i.parse().map_err(|_| {
                                format!("{i:?}: the stalled island is a number or *")
                            })?),
                        };
                    let (length, every) = (duration(length)?, duration(every)?);
                    if every <= length {
                        return Err(format!("{part:?}: the period must exceed the stall"));
                    }
                    spec.stall = Some((target, length, every));
                }
                _ => {
                    return Err(format!(
                        "{part:?}: expected delay=P:MAX, burst=P:MAX or stall=ISLAND:FOR:EVERY"
                    ))
                }
            }
        }
        Ok(spec)
    }
}

impl std::fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.seed)?;
        if let Some((p, max)) = self.delay {
            write!(f, ",delay={p}:{}", show(max))?;
        }
        if let Some((p, max)) = self.burst {
            write!(f, ",burst={p}:{}", show(max))?;
        }
        if let Some((target, length, every)) = self.stall {
            let island = match target {
                StallTarget::Island(i) => i.to_string(),
                StallTarget::Any => "*".into(),
            };
            write!(f, ",stall={island}:{}:{}", show(length), show(every))?;
        }
        Ok(())
    }
}

impl FaultSpec {
    /// Refuses a spec that names an island a program of `islands` islands does not have.
    pub fn check(&self, islands: usize) -> Result<(), String> {
        match self.stall {
            Some((StallTarget::Island(i), _, _)) if i >= islands => Err(format!(
                "{FAULTS_VAR}={self}: stall of island {i}, but the program has {islands} islands"
            )),
            _ => Ok(()),
        }
    }

    /// The spec in [`FAULTS_VAR`], if it is set (and not empty).
    pub fn from_env() -> Result<Option<FaultSpec>, String> {
        match std::env::var(FAULTS_VAR) {
            Ok(v) if !v.trim().is_empty() => v
                .parse()
                .map(Some)
                .map_err(|e| format!("{FAULTS_VAR}={v}: {e}")),
            _ => Ok(None),
        }
    }
}

/// What was injected so far.
#[derive(Debug, Default)]
pub struct FaultCounters {
    delays: AtomicU64,
    delayed_ns: AtomicU64,
    bursts: AtomicU64,
    refused_sends: AtomicU64,
    stalls: AtomicU64,
    stalled_ns: AtomicU64,
}

/// A snapshot of [`FaultCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FaultStats {
    /// Frames held back, and for how long in all.
    pub delays: u64,
    pub delayed_us: u64,
    /// Bursts started, and sends a link refused during one (those frames waited in an outbox).
    pub bursts: u64,
    pub refused_sends: u64,
    /// Stalls of a receive loop, and their time in all.
    pub stalls: u64,
    pub stalled_us: u64,
}

impl FaultCounters {
    pub fn snapshot(&self) -> FaultStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FaultStats {
            delays: get(&self.delays),
            delayed_us: get(&self.delayed_ns) / 1000,
            bursts: get(&self.bursts),
            refused_sends: get(&self.refused_sends),
            stalls: get(&self.stalls),
            stalled_us: get(&self.stalled_ns) / 1000,
        }
    }
}

impl std::fmt::Display for FaultStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} frames delayed ({:.1} ms in all), {} bursts ({} sends refused), {} stalls ({:.1} ms)",
            self.delays,
            self.delayed_us as f64 / 1e3,
            self.bursts,
            self.refused_sends,
            self.stalls,
            self.stalled_us as f64 / 1e3
        )
    }
}

/// SplitMix64: small, seedable, and the same everywhere.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, a: u64, b: u64) -> Rng {
        let mut r = Rng(seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.rotate_left(32));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn percent(&mut self, p: u32) -> bool {
        self.next() % 100 < u64::from(p)
    }

    /// Uniform in `[0, max]`.
    fn upto(&mut self, max: Duration) -> Duration {
        Duration::from_nanos(self.next() % (max.as_nanos() as u64 + 1))
    }
}

/// What every link and inbox of the transport share.
#[derive(Debug)]
struct Plan {
    spec: FaultSpec,
    islands: usize,
    counters: Arc<FaultCounters>,
    /// Time zero of the stall schedule.
    start: Instant,
    /// The random phase of the stall schedule.
    phase: Duration,
    /// Per island: when a burst of one of its links ends (ns after `start`; `u64::MAX`: none),
    /// so that its receive loop wakes then and flushes its outboxes.
    wake_at: Vec<AtomicU64>,
}

impl Plan {
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_nanos() as u64
    }

    /// The stall window `[start, end)` that is under way at `now` or comes next, for `island`.
    fn stall(&self, island: IslandId, now: Instant) -> Option<(Instant, Instant)> {
        let (target, length, every) = self.spec.stall?;
        let since = now.saturating_duration_since(self.start + self.phase);
        let every_ns = every.as_nanos().max(1);
        let first = u32::try_from(since.as_nanos() / every_ns).unwrap_or(u32::MAX - 256);
        // The window under way, else the next one that hits this island (a few periods ahead
        // at most for a random island; the search gives up beyond 4 x 64 periods).
        for k in first..first.saturating_add(256) {
            let at = self.start + self.phase + every * k;
            let hit = match target {
                StallTarget::Island(i) => i == island,
                StallTarget::Any => {
                    Rng::new(self.spec.seed, 0x57a1, u64::from(k)).next() % self.islands as u64
                        == island as u64
                }
            };
            if hit && at + length > now {
                return Some((at, at + length));
            }
            if !hit && matches!(target, StallTarget::Island(_)) {
                return None;
            }
        }
        None
    }
}

/// A transport whose links and receive loops suffer the faults of a [`FaultSpec`]; without one,
/// `inner` itself.
#[derive(Debug)]
pub struct FaultTransport<T: Transport = RingTransport> {
    inner: T,
    plan: Option<Arc<Plan>>,
}

impl<T: Transport> FaultTransport<T> {
    pub fn new(inner: T, spec: Option<FaultSpec>) -> Self {
        let plan = spec.map(|spec| {
            let islands = inner.islands();
            let phase = match spec.stall {
                Some((_, _, every)) => Rng::new(spec.seed, 0xfa5e, 0).upto(every),
                None => Duration::ZERO,
            };
            Arc::new(Plan {
                spec,
                islands,
                counters: Arc::default(),
                start: Instant::now(),
                phase,
                wake_at: (0..islands).map(|_| AtomicU64::new(u64::MAX)).collect(),
            })
        });
        FaultTransport { inner, plan }
    }

    /// What is injected, if anything (the fabric consumes the transport: keep this first).
    pub fn counters(&self) -> Option<Arc<FaultCounters>> {
        self.plan.as_ref().map(|p| Arc::clone(&p.counters))
    }

    pub fn spec(&self) -> Option<&FaultSpec> {
        self.plan.as_ref().map(|p| &p.spec)
    }
}

impl<T: Transport> Transport for FaultTransport<T> {
    type LinkTx = FaultLinkTx<T::LinkTx, T::Waker>;
    type Inbox = FaultInbox<T::Inbox>;
    type Waker = FaultWaker<T::Waker>;

    fn islands(&self) -> usize {
        self.inner.islands()
    }

    fn is_local(&self, island: IslandId) -> bool {
        self.inner.is_local(island)
    }

    fn max_frame(&self) -> usize {
        self.inner.max_frame()
    }

    fn capacity(&self) -> Option<usize> {
        self.inner.capacity()
    }

    fn attach(
        &self,
        island: IslandId,
        counters: Arc<IslandCounters>,
    ) -> Result<Attachment<Self>, FabricError> {
        let att = self.inner.attach(island, counters)?;
        let waker = Arc::new(att.waker);
        let seed = self.plan.as_ref().map_or(0, |p| p.spec.seed);
        let links = att
            .links
            .into_iter()
            .enumerate()
            .map(|(to, l)| {
                l.map(|inner| FaultLinkTx {
                    inner,
                    plan: self.plan.clone(),
                    from: island,
                    rng: Rng::new(seed, island as u64 + 1, to as u64 + 1),
                    full_until: None,
                    owed: false,
                    waker: Arc::clone(&waker),
                })
            })
            .collect();
        Ok(Attachment {
            links,
            inbox: FaultInbox {
                inner: att.inbox,
                plan: self.plan.clone(),
                island,
                rng: Rng::new(seed, island as u64 + 1, 0),
                held: None,
            },
            waker: FaultWaker(waker),
        })
    }
}

/// Wakes one island's receive loop (shared with its links, which wake it when a burst is over).
#[derive(Debug)]
pub struct FaultWaker<W>(Arc<W>);

impl<W: Waker> Waker for FaultWaker<W> {
    fn wake(&self) {
        self.0.wake();
    }
}

/// The sending end of a link, with bursts.
#[derive(Debug)]
pub struct FaultLinkTx<L, W> {
    inner: L,
    plan: Option<Arc<Plan>>,
    from: IslandId,
    rng: Rng,
    /// The burst under way: the link refuses frames until then.
    full_until: Option<Instant>,
    /// A burst ended and the frame that started it has not gone yet: it goes without a draw
    /// (else, at 100 %, every retry would start a new burst and nothing would ever go).
    owed: bool,
    /// The sending island's receive loop.
    waker: Arc<W>,
}

/// Whether the burst in `full_until` holds the link at `now` (ending it if its time is up).
fn in_burst(full_until: &mut Option<Instant>, now: Instant) -> bool {
    match *full_until {
        Some(until) if now < until => true,
        Some(_) => {
            *full_until = None;
            false
        }
        None => false,
    }
}

impl<L: LinkTx, W: Waker> LinkTx for FaultLinkTx<L, W> {
    fn try_send(&mut self, fill: &mut Fill<'_>) -> Result<bool, FabricError> {
        let Some(plan) = &self.plan else {
            return self.inner.try_send(fill);
        };
        let Some((p, max)) = plan.spec.burst else {
            return self.inner.try_send(fill);
        };
        let now = Instant::now();
        if in_burst(&mut self.full_until, now) {
            plan.counters.refused_sends.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        if !self.owed && self.rng.percent(p) {
            let d = self.rng.upto(max).max(Duration::from_micros(1));
            self.full_until = Some(now + d);
            self.owed = true;
            plan.counters.bursts.fetch_add(1, Ordering::Relaxed);
            plan.counters.refused_sends.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        let sent = self.inner.try_send(fill)?;
        if sent {
            self.owed = false;
        }
        Ok(sent)
    }

    fn want_space(&mut self) -> bool {
        let Some(plan) = &self.plan else {
            return self.inner.want_space();
        };
        if in_burst(&mut self.full_until, Instant::now()) {
            if let Some(until) = self.full_until {
                // The promised wake-up: the sender's own receive loop wakes when the burst ends.
                // It may be asleep with no deadline (a vCPU thread's send parked the frame): a
                // sooner wake-up time wakes it now, to sleep again until then.
                let at = plan.ns(until);
                if at < plan.wake_at[self.from].fetch_min(at, Ordering::AcqRel) {
                    self.waker.wake();
                }
            }
            return false;
        }
        self.inner.want_space()
    }
}

/// A frame taken from a link and held back, with when the receive loop gets it.
#[derive(Debug)]
struct Held {
    from: IslandId,
    frame: Box<[u8]>,
    until: Instant,
}

/// The inbound links of one island, with delays and stalls.
#[derive(Debug)]
pub struct FaultInbox<I> {
    inner: I,
    plan: Option<Arc<Plan>>,
    island: IslandId,
    rng: Rng,
    /// At most one frame at a time: nothing is taken from any link while it waits, so every
    /// link stays FIFO.
    held: Option<Held>,
}

/// Sleeps until `until` or `deadline`, whichever comes first; true if the deadline came first.
fn sleep_until(until: Instant, deadline: Option<Instant>) -> bool {
    let end = deadline.map_or(until, |d| d.min(until));
    let left = end.saturating_duration_since(Instant::now());
    if !left.is_zero() {
        std::thread::sleep(left);
    }
    deadline.is_some_and(|d| d < until)
}

impl<I: Inbox> Inbox for FaultInbox<I> {
    fn recv(
        &mut self,
        deadline: Option<Instant>,
        take: &mut Take<'_>,
    ) -> Result<Wake, FabricError> {
        let Some(plan) = self.plan.clone() else {
            return self.inner.recv(deadline, take);
        };
        loop {
            let now = Instant::now();
            // A stall: nothing at all for a while.
            if let Some((start, end)) = plan.stall(self.island, now) {
                if start <= now {
                    let slept = Instant::now();
                    let cut = sleep_until(end, deadline);
                    plan.counters
                        .stalled_ns
                        .fetch_add(slept.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    if !cut || end <= Instant::now() {
                        plan.counters.stalls.fetch_add(1, Ordering::Relaxed);
                    }
                    if cut {
                        return Ok(Wake::Deadline);
                    }
                    continue;
                }
            }
            // A held frame: the loop gets it when its time comes.
            if let Some(h) = self.held.take() {
                if now < h.until {
                    let until = h.until;
                    self.held = Some(h);
                    if sleep_until(until, deadline) {
                        return Ok(Wake::Deadline);
                    }
                    continue;
                }
                take(h.from, &h.frame)?;
                return Ok(Wake::Frame);
            }
            // A burst of one of our links ended: wake up to flush the outboxes.
            let wake_ns = plan.wake_at[self.island].load(Ordering::Acquire);
            if wake_ns != u64::MAX && plan.ns(now) >= wake_ns {
                // Only the time seen: a sooner one set meanwhile (by a link of ours whose burst
                // began since) is not lost, the next turn sees it.
                if plan.wake_at[self.island]
                    .compare_exchange(wake_ns, u64::MAX, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Ok(Wake::Woken);
                }
                continue;
            }
            let mut inner_deadline = deadline;
            let mut sooner = |t: Instant| {
                inner_deadline = Some(inner_deadline.map_or(t, |d| d.min(t)));
            };
            if wake_ns != u64::MAX {
                sooner(plan.start + Duration::from_nanos(wake_ns));
            }
            if let Some((start, _)) = plan.stall(self.island, now) {
                sooner(start);
            }
            let Self {
                inner, rng, held, ..
            } = self;
            let r = match plan.spec.delay {
                Some((p, max)) => inner.recv(inner_deadline, &mut |from, frame: &[u8]| {
                    if rng.percent(p) {
                        let d = rng.upto(max);
                        plan.counters.delays.fetch_add(1, Ordering::Relaxed);
                        plan.counters
                            .delayed_ns
                            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
                        *held = Some(Held {
                            from,
                            frame: frame.into(),
                            until: Instant::now() + d,
                        });
                        Ok(())
                    } else {
                        take(from, frame)
                    }
                })?,
                None => inner.recv(inner_deadline, take)?,
            };
            match r {
                Wake::Frame if self.held.is_some() => continue,
                Wake::Deadline if deadline.is_none_or(|d| Instant::now() < d) => continue,
                other => return Ok(other),
            }
        }
    }

    fn watch(&mut self, fd: std::os::fd::RawFd) -> Result<(), FabricError> {
        self.inner.watch(fd)
    }
}
