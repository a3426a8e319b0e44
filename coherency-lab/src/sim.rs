//! A seeded, randomized simulator for systems too large to check exhaustively: up to 64 kernels,
//! thousands of pages, millions of accesses. It drives the real [`Engine`] (or the IVY baseline)
//! with a discrete-event scheduler: every message takes a random latency, links stay FIFO, and
//! nothing orders messages across links. After every event it checks the invariants of the page
//! the event touched (single writer / multiple readers, every mapped copy holds the latest write,
//! every read returns it) and it counts messages by type.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;

use coherency::{
    Access, AccessToken, Config, Engine, Host, KernelId, MapChange, Mapping, Message, PageId,
    MAX_KERNELS,
};

use crate::ivy::{IvyHost, IvyMessage, IvyNode};

/// A small deterministic PRNG (SplitMix64): the same seed gives the same run on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Which protocol keeps the pages coherent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// The Popcorn protocol (this crate's engine).
    Popcorn(Config),
    /// IVY's centralized manager.
    Ivy,
}

/// What each kernel's thread does: a sequence of accesses, with local time between them.
pub trait Workload {
    /// The next access of `kernel`'s thread, or `None` when it is done. The access happens
    /// `delay` time units after the previous one completed.
    fn next(&mut self, kernel: KernelId, rng: &mut Rng) -> Option<Step>;
}

/// One access of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub page: PageId,
    pub access: Access,
    pub delay: u64,
}

/// Random accesses: each kernel performs `per_kernel` accesses to uniformly chosen pages, writing
/// with probability `write_ratio`.
#[derive(Clone, Debug)]
pub struct RandomWorkload {
    pub pages: u64,
    pub write_ratio: f64,
    pub remaining: Vec<u64>,
    pub think: u64,
}

impl RandomWorkload {
    /// `accesses` in all, shared evenly by `kernels` kernels.
    pub fn new(kernels: usize, pages: u64, accesses: u64, write_ratio: f64) -> Self {
        let k = kernels as u64;
        let remaining = (0..k)
            .map(|i| accesses / k + u64::from(i < accesses % k))
            .collect();
        RandomWorkload {
            pages,
            write_ratio,
            remaining,
            think: 10,
        }
    }
}

impl Workload for RandomWorkload {
    fn next(&mut self, kernel: KernelId, rng: &mut Rng) -> Option<Step> {
        let left = &mut self.remaining[kernel as usize];
        if *left == 0 {
            return None;
        }
        *left -= 1;
        let access = if rng.unit() < self.write_ratio {
            Access::Write
        } else {
            Access::Read
        };
        Some(Step {
            page: rng.below(self.pages),
            access,
            delay: 1 + rng.below(self.think),
        })
    }
}

/// Simulation settings.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    pub kernels: usize,
    pub pages: u64,
    pub seed: u64,
    pub protocol: Protocol,
    /// Mean one-way message latency, in time units (an access takes 1).
    pub latency: u64,
    /// Pages start Not Replicated on kernel 0 (the program's origin) rather than Unmapped.
    pub origin_owns_pages: bool,
    /// Check the invariants after every event (otherwise only at the end).
    pub check_every_step: bool,
}

impl SimConfig {
    pub fn new(kernels: usize, pages: u64, seed: u64, protocol: Protocol) -> Self {
        SimConfig {
            kernels,
            pages,
            seed,
            protocol,
            latency: 100,
            origin_owns_pages: true,
            check_every_step: true,
        }
    }
}

/// Why a simulation could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("kernels must be 1 to {MAX_KERNELS}, got {0}")]
    Kernels(usize),
    #[error("pages must be 1 to {max}, got {got}")]
    Pages { got: u64, max: u64 },
}

/// The largest number of pages the simulator takes (it keeps every kernel's copies densely).
pub const MAX_SIM_PAGES: u64 = 1 << 20;

/// What a simulation measured.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub accesses: u64,
    /// Accesses that needed the protocol (the mapping did not permit them).
    pub faults: u64,
    pub messages: BTreeMap<&'static str, u64>,
    pub total_messages: u64,
    /// Sum of fault latencies, in time units.
    pub fault_time: u64,
    pub events: u64,
    pub invariant_checks: u64,
    pub end_time: u64,
    /// The first violation, if any: the run stops there.
    pub violation: Option<String>,
}

impl SimReport {
    pub fn count(&self, name: &str) -> u64 {
        self.messages.get(name).copied().unwrap_or(0)
    }

    pub fn messages_per_access(&self) -> f64 {
        if self.accesses == 0 {
            0.0
        } else {
            self.total_messages as f64 / self.accesses as f64
        }
    }

    pub fn mean_fault_time(&self) -> f64 {
        if self.faults == 0 {
            0.0
        } else {
            self.fault_time as f64 / self.faults as f64
        }
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "accesses: {} ({} faults, mean fault latency {:.1} time units)",
            self.accesses,
            self.faults,
            self.mean_fault_time()
        )?;
        writeln!(f, "messages by type:")?;
        for (name, n) in &self.messages {
            writeln!(f, "  {name:<16} {n:>12}")?;
        }
        writeln!(f, "  {:<16} {:>12}", "total", self.total_messages)?;
        writeln!(f, "messages per access: {:.4}", self.messages_per_access())?;
        writeln!(
            f,
            "invariants: {} checks over {} events: {}",
            self.invariant_checks,
            self.events,
            match &self.violation {
                None => "all hold".to_string(),
                Some(v) => format!("VIOLATED: {v}"),
            }
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Deliver the oldest message of a link.
    Deliver { from: KernelId, to: KernelId },
    /// A kernel's thread asks its workload for the next access.
    Think { kernel: KernelId },
    /// A kernel's thread performs the access it holds.
    Access { kernel: KernelId },
}

/// Everything the kernels' hosts share: the links, every kernel's page copies, the truth.
struct World<M> {
    now: u64,
    rng: Rng,
    latency: u64,
    kernels: usize,
    links: Vec<VecDeque<M>>,
    link_clock: Vec<u64>,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    /// Per kernel, per page: the local content (None: not mapped) and its protection.
    memory: Vec<Vec<Option<u64>>>,
    mapping: Vec<Vec<Mapping>>,
    /// Latest completed write per page (0: initial content).
    latest: Vec<u64>,
    /// Per kernel: the access in flight, and when it started.
    in_flight: Vec<Option<(Step, u64)>>,
    report: SimReport,
    type_name: fn(&M) -> &'static str,
    next_value: u64,
    /// With `POPVMM_SIM_TRACE=PAGE`: every event of that page, printed when the run fails.
    trace_page: Option<PageId>,
    trace: Vec<String>,
}

impl<M> World<M> {
    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, event)));
    }

    fn send(&mut self, from: KernelId, to: KernelId, msg: M) {
        *self
            .report
            .messages
            .entry((self.type_name)(&msg))
            .or_default() += 1;
        self.report.total_messages += 1;
        let link = from as usize * self.kernels + to as usize;
        // Random latency, but FIFO per link: never before the link's previous message.
        let jitter = self.rng.below(self.latency.max(1));
        let at = (self.now + self.latency / 2 + jitter + 1).max(self.link_clock[link]);
        self.link_clock[link] = at;
        self.links[link].push_back(msg);
        self.schedule(at, Event::Deliver { from, to });
    }

    fn violate(&mut self, what: String) {
        if self.report.violation.is_none() {
            self.report.violation = Some(format!("at time {}: {what}", self.now));
        }
    }

    fn set_mapping(&mut self, me: KernelId, page: PageId, data: Option<Option<u64>>, m: Mapping) {
        let (k, p) = (me as usize, page as usize);
        if let Some(content) = data {
            self.memory[k][p] = content;
        }
        if m == Mapping::None {
            self.memory[k][p] = None;
        } else if self.memory[k][p].is_none() {
            self.violate(format!("kernel {me} maps page {page} without content"));
        }
        self.mapping[k][p] = m;
    }

    /// The access takes effect (the mapping permits it).
    fn perform(&mut self, kernel: KernelId, step: Step) {
        let (k, p) = (kernel as usize, step.page as usize);
        self.report.accesses += 1;
        match step.access {
            Access::Read => match self.memory[k][p] {
                Some(v) if v == self.latest[p] => {}
                Some(v) => {
                    let latest = self.latest[p];
                    self.violate(format!(
                        "kernel {kernel} read {v} from page {}, the latest write stored {latest}",
                        step.page
                    ));
                }
                None => self.violate(format!("kernel {kernel} read unmapped page {}", step.page)),
            },
            Access::Write => {
                self.next_value += 1;
                self.memory[k][p] = Some(self.next_value);
                self.latest[p] = self.next_value;
            }
        }
    }

    fn completed(&mut self, kernel: KernelId, page: PageId, access: Access) {
        let Some((step, started)) = self.in_flight[kernel as usize].take() else {
            self.violate(format!(
                "kernel {kernel}: completion with no access in flight"
            ));
            return;
        };
        if step.page != page || step.access != access {
            self.violate(format!("kernel {kernel}: completion of the wrong access"));
        }
        self.report.fault_time += self.now - started;
        self.perform(kernel, step);
        let now = self.now;
        self.schedule(now, Event::Think { kernel });
    }

    /// Single writer / multiple readers and value agreement for one page.
    fn check_page(&mut self, page: PageId) {
        self.report.invariant_checks += 1;
        let p = page as usize;
        let (mut writers, mut readers) = (0, 0);
        for k in 0..self.kernels {
            match self.mapping[k][p] {
                Mapping::ReadWrite => writers += 1,
                Mapping::ReadOnly => readers += 1,
                Mapping::None => {}
            }
            if let Some(v) = self.memory[k][p] {
                if v != self.latest[p] {
                    let latest = self.latest[p];
                    self.violate(format!(
                        "kernel {k} holds {v} for page {page}, the latest write stored {latest}"
                    ));
                }
            }
        }
        if writers > 1 || (writers == 1 && readers > 0) {
            self.violate(format!(
                "page {page}: {writers} writable and {readers} read-only copies"
            ));
        }
    }
}

struct PopcornHost<'a> {
    me: KernelId,
    world: &'a mut World<Message<u64>>,
}

impl Host<u64> for PopcornHost<'_> {
    fn send(&mut self, to: KernelId, msg: Message<u64>) {
        self.world.send(self.me, to, msg);
    }

    fn read_page(&mut self, page: PageId) -> u64 {
        match self.world.memory[self.me as usize][page as usize] {
            Some(v) => v,
            None => {
                let me = self.me;
                self.world
                    .violate(format!("kernel {me} reads unmapped page {page} for a Copy"));
                0
            }
        }
    }

    fn map(&mut self, page: PageId, change: MapChange<u64>) {
        let (data, m) = match change {
            MapChange::Install { data, writable } => (Some(Some(data)), writable),
            MapChange::InstallInitial { writable } => (Some(Some(0)), writable),
            MapChange::Upgrade => (None, true),
            MapChange::Downgrade => (None, false),
            MapChange::Drop => {
                self.world
                    .set_mapping(self.me, page, Some(None), Mapping::None);
                return;
            }
        };
        let mapping = if m {
            Mapping::ReadWrite
        } else {
            Mapping::ReadOnly
        };
        self.world.set_mapping(self.me, page, data, mapping);
    }

    fn complete(&mut self, page: PageId, _token: AccessToken, access: Access) {
        self.world.completed(self.me, page, access);
    }

    fn retry(&mut self, page: PageId, _token: AccessToken, _access: Access) {
        // The simulator makes no layout change, so no page is ever reset.
        let me = self.me;
        self.world.violate(format!(
            "kernel {me}: page {page} reset in a run without layout changes"
        ));
    }
}

struct IvyHostImpl<'a> {
    me: KernelId,
    world: &'a mut World<IvyMessage<u64>>,
}

impl IvyHost<u64> for IvyHostImpl<'_> {
    fn send(&mut self, to: KernelId, msg: IvyMessage<u64>) {
        self.world.send(self.me, to, msg);
    }

    fn read_page(&mut self, page: PageId) -> u64 {
        self.world.memory[self.me as usize][page as usize].unwrap_or_else(|| {
            let me = self.me;
            self.world.violate(format!(
                "kernel {me} reads unmapped page {page} for a reply"
            ));
            0
        })
    }

    fn map(&mut self, page: PageId, data: Option<u64>, mapping: Mapping) {
        self.world
            .set_mapping(self.me, page, data.map(Some), mapping);
    }

    fn complete(&mut self, page: PageId, _token: AccessToken, access: Access) {
        self.world.completed(self.me, page, access);
    }
}

/// The kernels of one protocol, as the simulator drives them.
trait Kernels<M> {
    /// Every kernel's state for `page`, for diagnostics.
    fn describe(&self, page: PageId) -> String;
    fn access(&mut self, world: &mut World<M>, k: KernelId, step: Step) -> Result<bool, String>;
    fn handle(&mut self, world: &mut World<M>, k: KernelId, msg: M) -> Result<(), String>;
    fn page_of(msg: &M) -> PageId;
}

impl Kernels<Message<u64>> for Vec<Engine<u64>> {
    fn describe(&self, page: PageId) -> String {
        self.iter()
            .enumerate()
            .map(|(k, e)| format!("\n  {k}: {}", e.debug_page(page)))
            .collect::<Vec<_>>()
            .join("")
    }

    fn access(
        &mut self,
        world: &mut World<Message<u64>>,
        k: KernelId,
        step: Step,
    ) -> Result<bool, String> {
        let now = world.now;
        let mut host = PopcornHost { me: k, world };
        self[k as usize]
            .access(step.page, step.access, u64::from(k), now, &mut host)
            .map_err(|e| e.to_string())
    }

    fn handle(
        &mut self,
        world: &mut World<Message<u64>>,
        k: KernelId,
        msg: Message<u64>,
    ) -> Result<(), String> {
        let mut host = PopcornHost { me: k, world };
        self[k as usize]
            .handle(msg, &mut host)
            .map_err(|e| e.to_string())
    }

    fn page_of(msg: &Message<u64>) -> PageId {
        msg.page
    }
}

impl Kernels<IvyMessage<u64>> for Vec<IvyNode> {
    fn describe(&self, page: PageId) -> String {
        self.iter()
            .enumerate()
            .map(|(k, n)| format!("{k}:{:?}", n.mapping(page)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn access(
        &mut self,
        world: &mut World<IvyMessage<u64>>,
        k: KernelId,
        step: Step,
    ) -> Result<bool, String> {
        let mut host = IvyHostImpl { me: k, world };
        Ok(self[k as usize].access(step.page, step.access, u64::from(k), &mut host))
    }

    fn handle(
        &mut self,
        world: &mut World<IvyMessage<u64>>,
        k: KernelId,
        msg: IvyMessage<u64>,
    ) -> Result<(), String> {
        let mut host = IvyHostImpl { me: k, world };
        self[k as usize].handle(msg, &mut host);
        Ok(())
    }

    fn page_of(msg: &IvyMessage<u64>) -> PageId {
        msg.page()
    }
}

/// Runs `workload` under `config` and reports what happened.
pub fn simulate(config: &SimConfig, workload: &mut dyn Workload) -> Result<SimReport, SimError> {
    if !(1..=MAX_KERNELS).contains(&config.kernels) {
        return Err(SimError::Kernels(config.kernels));
    }
    if !(1..=MAX_SIM_PAGES).contains(&config.pages) {
        return Err(SimError::Pages {
            got: config.pages,
            max: MAX_SIM_PAGES,
        });
    }
    Ok(match config.protocol {
        Protocol::Popcorn(engine) => {
            let engine = Config {
                kernels: config.kernels,
                ..engine
            };
            let mut kernels: Vec<Engine<u64>> = (0..config.kernels)
                .map(|k| Engine::new(k as KernelId, engine))
                .collect();
            if config.origin_owns_pages {
                for page in 0..config.pages {
                    kernels[0].set_not_replicated(page);
                }
            }
            let name = |m: &Message<u64>| m.kind.message_type().name();
            run(config, workload, kernels, name)
        }
        Protocol::Ivy => {
            let kernels: Vec<IvyNode> = (0..config.kernels)
                .map(|k| IvyNode::new(k as KernelId))
                .collect();
            run(config, workload, kernels, IvyMessage::type_name)
        }
    })
}

fn run<M: fmt::Debug, K: Kernels<M>>(
    config: &SimConfig,
    workload: &mut dyn Workload,
    mut kernels: K,
    type_name: fn(&M) -> &'static str,
) -> SimReport {
    let n = config.kernels;
    let pages = config.pages as usize;
    let origin_mapping = if config.origin_owns_pages {
        Mapping::ReadWrite
    } else {
        Mapping::None
    };
    let mut memory = vec![vec![None; pages]; n];
    let mut mapping = vec![vec![Mapping::None; pages]; n];
    if config.origin_owns_pages {
        memory[0] = vec![Some(0); pages];
        mapping[0] = vec![origin_mapping; pages];
    }
    let mut world = World {
        now: 0,
        rng: Rng::new(config.seed),
        latency: config.latency,
        kernels: n,
        links: (0..n * n).map(|_| VecDeque::new()).collect(),
        link_clock: vec![0; n * n],
        queue: BinaryHeap::new(),
        seq: 0,
        memory,
        mapping,
        latest: vec![0; pages],
        in_flight: vec![None; n],
        report: SimReport::default(),
        type_name,
        next_value: 0,
        trace_page: std::env::var("POPVMM_SIM_TRACE")
            .ok()
            .and_then(|v| v.parse().ok()),
        trace: Vec::new(),
    };
    for k in 0..n {
        world.schedule(
            0,
            Event::Think {
                kernel: k as KernelId,
            },
        );
    }
    // The workload's own randomness is separate, so that both protocols see the same trace.
    let mut trace_rng = Rng::new(config.seed.wrapping_mul(31).wrapping_add(7));
    while let Some(Reverse((at, _, event))) = world.queue.pop() {
        world.now = at;
        world.report.events += 1;
        let touched = match event {
            Event::Deliver { from, to } => {
                let link = from as usize * n + to as usize;
                let Some(msg) = world.links[link].pop_front() else {
                    continue;
                };
                let page = K::page_of(&msg);
                if world.trace_page == Some(page) {
                    let line = format!("{at}: {from} -> {to}: {msg:?}");
                    world.trace.push(line);
                }
                if let Err(e) = kernels.handle(&mut world, to, msg) {
                    world.violate(format!("protocol error: {e}"));
                }
                Some(page)
            }
            Event::Think { kernel } => {
                if let Some(step) = workload.next(kernel, &mut trace_rng) {
                    world.in_flight[kernel as usize] = Some((step, at + step.delay));
                    world.schedule(at + step.delay, Event::Access { kernel });
                }
                None
            }
            Event::Access { kernel } => {
                let k = kernel as usize;
                match world.in_flight[k] {
                    None => None,
                    Some((step, _)) => {
                        if world.trace_page == Some(step.page) {
                            let line = format!(
                                "{at}: kernel {kernel} {:?} (mapping {:?})",
                                step.access, world.mapping[k][step.page as usize]
                            );
                            world.trace.push(line);
                        }
                        if world.mapping[k][step.page as usize].permits(step.access) {
                            // The mapping permits it: no protocol involved, as on real hardware.
                            world.in_flight[k] = None;
                            world.perform(kernel, step);
                            run_locally(&mut world, workload, &mut trace_rng, kernel, config);
                        } else {
                            world.report.faults += 1;
                            match kernels.access(&mut world, kernel, step) {
                                Ok(true) => {
                                    world.in_flight[k] = None;
                                    world.perform(kernel, step);
                                    world.schedule(at, Event::Think { kernel });
                                }
                                Ok(false) => {}
                                Err(e) => world.violate(format!("protocol error: {e}")),
                            }
                        }
                        Some(step.page)
                    }
                }
            }
        };
        if config.check_every_step {
            if let Some(page) = touched {
                world.check_page(page);
            }
        }
        if world.report.violation.is_some() {
            if let Some(page) = touched {
                let states = kernels.describe(page);
                if let Some(v) = world.report.violation.as_mut() {
                    v.push_str(&format!("; copies of page {page}: {states}"));
                }
            }
            break;
        }
    }
    for line in &world.trace {
        eprintln!("{line}");
    }
    world.report.end_time = world.now;
    if world.report.violation.is_none() {
        for page in 0..config.pages {
            world.check_page(page);
        }
        for k in 0..n {
            if let Some((step, _)) = world.in_flight[k] {
                let states = kernels.describe(step.page);
                world.violate(format!(
                    "kernel {k}'s {:?} of page {} never completed and the network is empty; \
                     copies: {states}",
                    step.access, step.page
                ));
            }
        }
    }
    world.report
}

/// Runs `kernel`'s next accesses in place while the mapping permits them and no other event comes
/// first: the same order the event queue would give, without its cost (a thread streaming over
/// an array it holds makes millions of such accesses).
fn run_locally<M>(
    world: &mut World<M>,
    workload: &mut dyn Workload,
    rng: &mut Rng,
    kernel: KernelId,
    config: &SimConfig,
) {
    let k = kernel as usize;
    loop {
        let Some(step) = workload.next(kernel, rng) else {
            return;
        };
        let at = world.now + step.delay;
        let next_event = world.queue.peek().map_or(u64::MAX, |Reverse((t, _, _))| *t);
        if at < next_event && world.mapping[k][step.page as usize].permits(step.access) {
            world.now = at;
            world.report.events += 1;
            world.perform(kernel, step);
            if config.check_every_step {
                world.check_page(step.page);
            }
            if world.report.violation.is_some() {
                return;
            }
            continue;
        }
        world.in_flight[k] = Some((step, at));
        world.schedule(at, Event::Access { kernel });
        return;
    }
}
