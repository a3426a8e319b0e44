//! The exhaustive model: every interleaving of a few kernels' accesses and message deliveries,
//! explored with stateright, driving the real [`Engine`] (never a copy of it).
//!
//! Each kernel runs one thread that performs `ops` accesses; each access nondeterministically reads
//! or writes one of the pages (a write stores a value unique to that access). The network holds
//! the messages in flight: FIFO per ordered pair of kernels with no order across pairs, or one
//! unordered bag. Nothing is duplicated or lost. An access takes effect atomically when the engine
//! completes it, which is the linearization point the properties check.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::{self, Write as _};

use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use stateright::{Checker, Model, Property};

use coherency::{
    Access, AccessToken, Config, Engine, Host, KernelId, MapChange, Mapping, Message, PageId,
    ProtocolError, State,
};

/// How the network delivers messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// FIFO on each ordered pair of kernels, no order across pairs.
    Fifo,
    /// Any message in flight may be delivered next.
    Unordered,
}

impl Delivery {
    pub fn name(self) -> &'static str {
        match self {
            Delivery::Fifo => "fifo",
            Delivery::Unordered => "unordered",
        }
    }
}

/// How a kernel drops the pages a layout change resets (DONTNEED, munmap, MAP_FIXED over, the
/// source of a moving mremap, brk shrink).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetMode {
    /// What popvmm did before decision 16: the kernel forgets its copy (`Engine::forget`) and the
    /// page starts over as Unmapped; a waiting access faults again. Messages of the old
    /// incarnation still in flight meet the fresh page.
    Forget,
    /// Decision 16: the origin gives the page a new generation (`Engine::reset`); messages of an
    /// older generation are dropped, a newer one heard of resets the page first.
    Generations,
}

/// The layout changes a changer thread makes while the kernels' threads access the pages: the
/// origin (kernel 0) applies each one, then pushes it to every other kernel, which applies it
/// when the push arrives (in any order with the coherency messages); the call returns once every
/// kernel has applied it, and the next change waits for that (the origin serializes them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayoutConfig {
    /// Changes the changer makes (a protect pair, PROT_NONE then back, counts as one).
    pub changes: usize,
    /// Changes may reset a page (its content becomes zero: DONTNEED and the others above).
    pub resets: bool,
    /// Changes may make a page PROT_NONE on the host, then read-write again (mprotect).
    pub protects: bool,
    pub mode: ResetMode,
    /// Whether the host reads a page for a Copy even when the program made it PROT_NONE (popvmm
    /// reads through /proc/self/mem, which does; process_vm_readv did not).
    pub forced_reads: bool,
}

impl LayoutConfig {
    /// No layout change: the protocol alone.
    pub const NONE: LayoutConfig = LayoutConfig {
        changes: 0,
        resets: false,
        protects: false,
        mode: ResetMode::Generations,
        forced_reads: true,
    };
}

/// What to explore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModelConfig {
    pub engine: Config,
    pub pages: usize,
    /// Accesses per kernel.
    pub ops: usize,
    pub delivery: Delivery,
    /// Paths that send more messages than this are cut and reported (a livelock guard that also
    /// keeps the state graph acyclic, so that the liveness property is sound).
    pub max_messages: u32,
    /// Layout changes racing with the accesses.
    pub layout: LayoutConfig,
}

impl ModelConfig {
    pub fn new(engine: Config, pages: usize, ops: usize, delivery: Delivery) -> Self {
        // Generous: a correct run needs a few rounds of (kernels - 1) messages per access.
        let max_messages = (engine.kernels * engine.kernels * ops * 12 + 16) as u32;
        ModelConfig {
            engine,
            pages,
            ops,
            delivery,
            max_messages,
            layout: LayoutConfig::NONE,
        }
    }

    /// The same, with layout changes racing with the accesses.
    pub fn with_layout(mut self, layout: LayoutConfig) -> Self {
        let k = self.engine.kernels;
        // Each change may restart every kernel's access and costs its rounds again.
        self.max_messages += (layout.changes * k * k * 12) as u32;
        self.layout = layout;
        self
    }
}

/// The model checked by stateright.
#[derive(Clone, Debug)]
pub struct CoherencyModel {
    pub config: ModelConfig,
}

/// One thread's access in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InFlight {
    pub page: PageId,
    pub access: Access,
    /// The value a write stores.
    pub value: u8,
    /// The local time the access was submitted at (its write timestamp).
    pub ts: u64,
    /// The page was reset under the waiting access: the thread faults again (`Action::Retry`).
    pub retry: bool,
}

/// A layout change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayoutChange {
    /// The page's content becomes zero (DONTNEED, munmap then mmap, MAP_FIXED over, ...).
    Reset,
    /// The host mapping becomes PROT_NONE (mprotect); `Unprotect` follows.
    Protect,
    /// Back to read-write.
    Unprotect,
}

/// The layout change in progress: applied on the origin, pushed to the kernels of `pending`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayoutInFlight {
    pub change: LayoutChange,
    pub page: PageId,
    /// The generation a reset gives the page.
    pub gen: u32,
    pub pending: coherency::KernelSet,
}

/// Everything but the engines: what the kernels' hosts touch.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct World {
    /// What each kernel's host maps for each page: the local content, or nothing.
    pub memory: Vec<Vec<Option<u8>>>,
    /// FIFO links, keyed by (from, to).
    pub links: BTreeMap<(KernelId, KernelId), VecDeque<Message<u8>>>,
    /// Unordered delivery: (to, message) pairs, sorted.
    pub bag: Vec<(KernelId, Message<u8>)>,
    /// Accesses issued by each kernel so far (also its clock).
    pub issued: Vec<u8>,
    pub in_flight: Vec<Option<InFlight>>,
    /// The value of the latest completed write to each page in each generation (0: the initial
    /// content, and what a reset leaves).
    pub latest: Vec<Vec<u8>>,
    /// The generation of each page on each kernel, as the model follows it (the push applied,
    /// or, with generations, a newer one heard of): what its reads must see.
    pub gens: Vec<Vec<u32>>,
    /// Changes the changer made so far, and the one in progress.
    pub layout_issued: u8,
    pub layout: Option<LayoutInFlight>,
    /// A Protect done: the changer's next change is the Unprotect of that page.
    pub unprotect_next: Option<PageId>,
    /// Pages the host maps PROT_NONE, per kernel.
    pub protected: Vec<Vec<bool>>,
    /// Per page, the history of accesses for the linearizability tester.
    pub history: Vec<LinearizabilityTester<KernelId, Register<u8>>>,
    /// Messages sent so far.
    pub sent: u32,
    /// Violations seen while stepping (stale reads, protocol errors).
    pub violation: Option<String>,
}

/// A state of the model.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct ModelState {
    pub engines: Vec<Engine<u8>>,
    pub world: World,
}

/// A step of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Kernel `kernel` starts its next access.
    Access {
        kernel: KernelId,
        page: PageId,
        access: Access,
    },
    /// Deliver the oldest message on the link `from → to`.
    DeliverFifo { from: KernelId, to: KernelId },
    /// Deliver this message (unordered network).
    DeliverAny { to: KernelId, msg: Message<u8> },
    /// The changer makes a layout change; the origin applies it and pushes it.
    Layout { change: LayoutChange, page: PageId },
    /// The push of the change in progress reaches kernel `to`, which applies it.
    ApplyLayout { to: KernelId },
    /// A thread whose page was reset under its waiting access faults again.
    Retry { kernel: KernelId },
    /// The holding window of `page` on `kernel` ends (decision 17): the requests it held back are
    /// answered. The model has no clock: a window may end at any point after it started (a
    /// nondeterministic "not yet" that eventually answers).
    Release { kernel: KernelId, page: PageId },
}

struct ModelHost<'a> {
    me: KernelId,
    delivery: Delivery,
    forced_reads: bool,
    world: &'a mut World,
}

impl Host<u8> for ModelHost<'_> {
    fn send(&mut self, to: KernelId, msg: Message<u8>) {
        self.world.sent += 1;
        match self.delivery {
            Delivery::Fifo => self
                .world
                .links
                .entry((self.me, to))
                .or_default()
                .push_back(msg),
            Delivery::Unordered => {
                let item = (to, msg);
                let at = self.world.bag.partition_point(|x| *x < item);
                self.world.bag.insert(at, item);
            }
        }
    }

    fn read_page(&mut self, page: PageId) -> u8 {
        if self.world.protected[self.me as usize][page as usize] && !self.forced_reads {
            self.violate(format!(
                "kernel {} cannot read page {page} for a Copy: the program made it PROT_NONE",
                self.me
            ));
        }
        match self.world.memory[self.me as usize][page as usize] {
            Some(v) => v,
            None => {
                self.violate(format!(
                    "kernel {} read page {page} to send a Copy while it is unmapped",
                    self.me
                ));
                0
            }
        }
    }

    fn map(&mut self, page: PageId, change: MapChange<u8>) {
        let slot = &mut self.world.memory[self.me as usize][page as usize];
        match change {
            MapChange::Install { data, .. } => *slot = Some(data),
            MapChange::InstallInitial { .. } => *slot = Some(0),
            MapChange::Upgrade | MapChange::Downgrade => {
                if slot.is_none() {
                    let me = self.me;
                    self.violate(format!(
                        "kernel {me} changed the protection of unmapped page {page}"
                    ));
                }
            }
            MapChange::Drop => *slot = None,
        }
    }

    fn complete(&mut self, page: PageId, _token: AccessToken, access: Access) {
        let me = self.me as usize;
        if self.world.in_flight[me].is_some_and(|op| op.retry) {
            self.violate(format!(
                "kernel {me}: completion of an access told to retry"
            ));
        }
        let Some(op) = self.world.in_flight[me].take() else {
            self.violate(format!("kernel {me}: completion with no access in flight"));
            return;
        };
        if op.page != page || op.access != access {
            self.violate(format!("kernel {me}: completion of the wrong access"));
        }
        self.perform(op);
    }

    fn retry(&mut self, page: PageId, _token: AccessToken, access: Access) {
        let me = self.me as usize;
        match &mut self.world.in_flight[me] {
            Some(op) if op.page == page && op.access == access && !op.retry => op.retry = true,
            _ => self.violate(format!("kernel {me}: retry of an access not waiting")),
        }
    }
}

impl ModelHost<'_> {
    fn violate(&mut self, what: String) {
        if self.world.violation.is_none() {
            self.world.violation = Some(what);
        }
    }

    /// The access takes effect: a read returns the local content, a write stores its value.
    fn perform(&mut self, op: InFlight) {
        let me = self.me as usize;
        let page = op.page as usize;
        let gen = self.world.gens[me][page] as usize;
        let tester = &mut self.world.history[page];
        match op.access {
            Access::Read => {
                let value = self.world.memory[me][page];
                let Some(value) = value else {
                    self.violate(format!("kernel {me} read unmapped page {page}"));
                    return;
                };
                let _ = tester.on_return(self.me, RegisterRet::ReadOk(value));
                let latest = self.world.latest[page][gen];
                if value != latest {
                    self.violate(format!(
                        "kernel {me} read {value} from page {page}, the latest write of its \
                         generation {gen} stored {latest}"
                    ));
                }
            }
            Access::Write => {
                let _ = tester.on_return(self.me, RegisterRet::WriteOk);
                self.world.memory[me][page] = Some(op.value);
                self.world.latest[page][gen] = op.value;
            }
        }
    }
}

impl CoherencyModel {
    pub fn new(config: ModelConfig) -> Self {
        CoherencyModel { config }
    }

    fn kernels(&self) -> usize {
        self.config.engine.kernels
    }

    /// Applies one action to a copy of the state; the engine's errors become violations.
    pub fn step(&self, state: &ModelState, action: &Action) -> ModelState {
        let mut next = state.clone();
        let delivery = self.config.delivery;
        let forced_reads = self.config.layout.forced_reads;
        let result: Result<(), ProtocolError> = match action {
            Action::Access {
                kernel,
                page,
                access,
            } => {
                let k = *kernel as usize;
                let issued = next.world.issued[k];
                next.world.issued[k] += 1;
                let value = 1 + (k * self.config.ops) as u8 + issued;
                let op = InFlight {
                    page: *page,
                    access: *access,
                    value,
                    ts: u64::from(issued),
                    retry: false,
                };
                let reg_op = match access {
                    Access::Read => RegisterOp::Read,
                    Access::Write => RegisterOp::Write(value),
                };
                let _ = next.world.history[*page as usize].on_invoke(*kernel, reg_op);
                next.world.in_flight[k] = Some(op);
                let mut host = ModelHost {
                    me: *kernel,
                    delivery,
                    forced_reads,
                    world: &mut next.world,
                };
                match next.engines[k].access(*page, *access, 0, u64::from(issued), &mut host) {
                    Ok(true) => {
                        host.world.in_flight[k] = None;
                        host.perform(op);
                        Ok(())
                    }
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Action::DeliverFifo { from, to } => {
                let msg = next
                    .world
                    .links
                    .get_mut(&(*from, *to))
                    .and_then(VecDeque::pop_front);
                if next
                    .world
                    .links
                    .get(&(*from, *to))
                    .is_some_and(VecDeque::is_empty)
                {
                    next.world.links.remove(&(*from, *to));
                }
                match msg {
                    Some(msg) => self.deliver(&mut next, *to, msg),
                    None => Ok(()),
                }
            }
            Action::DeliverAny { to, msg } => {
                let item = (*to, msg.clone());
                if let Ok(at) = next.world.bag.binary_search(&item) {
                    next.world.bag.remove(at);
                }
                self.deliver(&mut next, *to, msg.clone())
            }
            Action::Layout { change, page } => {
                let gen = match change {
                    LayoutChange::Reset => {
                        next.world.layout_issued += 1;
                        let _ = next.world.history[*page as usize]
                            .on_invoke(self.changer(), RegisterOp::Write(0));
                        1 + next.world.gens[0][*page as usize]
                    }
                    LayoutChange::Protect => {
                        next.world.layout_issued += 1;
                        next.world.unprotect_next = Some(*page);
                        0
                    }
                    LayoutChange::Unprotect => {
                        next.world.unprotect_next = None;
                        0
                    }
                };
                let all = coherency::KernelSet::first(self.kernels());
                next.world.layout = Some(LayoutInFlight {
                    change: *change,
                    page: *page,
                    gen,
                    pending: all,
                });
                // The origin applies it first, under its layout lock.
                self.apply_layout(&mut next, 0)
            }
            Action::ApplyLayout { to } => self.apply_layout(&mut next, *to),
            Action::Release { kernel, page } => {
                let k = *kernel as usize;
                let mut host = ModelHost {
                    me: *kernel,
                    delivery,
                    forced_reads,
                    world: &mut next.world,
                };
                next.engines[k].release(*page, &mut host);
                Ok(())
            }
            Action::Retry { kernel } => {
                let k = *kernel as usize;
                match next.world.in_flight[k] {
                    Some(mut op) if op.retry => {
                        op.retry = false;
                        next.world.in_flight[k] = Some(op);
                        let mut host = ModelHost {
                            me: *kernel,
                            delivery,
                            forced_reads,
                            world: &mut next.world,
                        };
                        match next.engines[k].access(op.page, op.access, 0, op.ts, &mut host) {
                            Ok(true) => {
                                host.world.in_flight[k] = None;
                                host.perform(op);
                                Ok(())
                            }
                            Ok(false) => Ok(()),
                            Err(e) => Err(e),
                        }
                    }
                    _ => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            if next.world.violation.is_none() {
                next.world.violation = Some(format!("protocol error: {e}"));
            }
        }
        if self.config.layout.mode == ResetMode::Generations && next.world.violation.is_none() {
            // The model follows the engines' generations; they must agree.
            for (k, engine) in next.engines.iter().enumerate() {
                for page in 0..self.config.pages {
                    let (model, real) = (next.world.gens[k][page], engine.gen(page as PageId));
                    if model != real {
                        next.world.violation = Some(format!(
                            "kernel {k} page {page}: generation {real}, the model expected {model}"
                        ));
                    }
                }
            }
        }
        next
    }

    /// The linearizability tester's client for the changer's resets.
    fn changer(&self) -> KernelId {
        self.kernels() as KernelId
    }

    /// Delivers `msg` to kernel `to`.
    fn deliver(
        &self,
        next: &mut ModelState,
        to: KernelId,
        msg: Message<u8>,
    ) -> Result<(), ProtocolError> {
        // A newer generation heard of resets the page first (decision 16): reads see it.
        let gen = &mut next.world.gens[to as usize][msg.page as usize];
        *gen = (*gen).max(msg.gen);
        let mut host = ModelHost {
            me: to,
            delivery: self.config.delivery,
            forced_reads: self.config.layout.forced_reads,
            world: &mut next.world,
        };
        next.engines[to as usize].handle(msg, &mut host)
    }

    /// Kernel `to` applies the layout change in progress (the origin at once, the others when
    /// its push arrives); the changer's call returns once every kernel has.
    fn apply_layout(&self, next: &mut ModelState, to: KernelId) -> Result<(), ProtocolError> {
        let Some(mut change) = next.world.layout else {
            return Ok(());
        };
        if !change.pending.contains(to) {
            return Ok(());
        }
        change.pending.remove(to);
        next.world.layout = Some(change);
        let (k, page) = (to as usize, change.page as usize);
        let result = match change.change {
            LayoutChange::Protect => {
                next.world.protected[k][page] = true;
                Ok(())
            }
            LayoutChange::Unprotect => {
                next.world.protected[k][page] = false;
                Ok(())
            }
            LayoutChange::Reset => match self.config.layout.mode {
                ResetMode::Forget => {
                    next.engines[k].forget(change.page);
                    next.world.memory[k][page] = None;
                    next.world.gens[k][page] = change.gen;
                    // The waiting access was dropped with the page: the thread faults again.
                    if let Some(op) = &mut next.world.in_flight[k] {
                        if op.page == change.page {
                            op.retry = true;
                        }
                    }
                    Ok(())
                }
                ResetMode::Generations => {
                    let gen = &mut next.world.gens[k][page];
                    *gen = (*gen).max(change.gen);
                    let mut host = ModelHost {
                        me: to,
                        delivery: self.config.delivery,
                        forced_reads: self.config.layout.forced_reads,
                        world: &mut next.world,
                    };
                    next.engines[k].reset(change.page..change.page + 1, change.gen, &mut host);
                    Ok(())
                }
            },
        };
        if change.pending.is_empty() {
            next.world.layout = None;
            if change.change == LayoutChange::Reset {
                let _ = next.world.history[page].on_return(self.changer(), RegisterRet::WriteOk);
            }
        }
        result
    }

    /// No message in flight, and no request held back by a holding window (decision 17: an
    /// answer still to come).
    pub fn network_empty(state: &ModelState) -> bool {
        state.world.links.is_empty()
            && state.world.bag.is_empty()
            && state.engines.iter().all(|e| {
                e.page_ids()
                    .into_iter()
                    .all(|p| e.view(p).held_until.is_none())
            })
    }

    /// Runs the checker and returns its report. With `progress`, prints the state counts to stderr
    /// every few seconds while it runs.
    pub fn check(self, threads: usize, progress: bool) -> CheckReport {
        let config = self.config;
        let started = std::time::Instant::now();
        let checker = self.checker().threads(threads).spawn_dfs();
        let checker = if progress {
            checker.join_and_report(&mut Progress)
        } else {
            checker.join()
        };
        let elapsed = started.elapsed();
        let model = checker.model().clone();
        let mut verdicts = Vec::new();
        let mut counterexample = None;
        for property in model.properties() {
            let discovery = checker.discovery(property.name);
            let holds = discovery.is_none();
            if let (Some(path), None) = (discovery, &counterexample) {
                counterexample = Some((property.name, model.describe_path(path.into_vec())));
            }
            verdicts.push((property.name, holds));
        }
        CheckReport {
            config,
            unique_states: checker.unique_state_count(),
            states: checker.state_count(),
            max_depth: checker.max_depth(),
            elapsed,
            verdicts,
            counterexample,
        }
    }

    /// A readable account of a path: each step's action, then what changed.
    pub fn describe_path(&self, path: Vec<(ModelState, Option<Action>)>) -> String {
        let mut out = String::new();
        for (i, (state, action)) in path.iter().enumerate() {
            let Some(action) = action else {
                continue;
            };
            let next = self.step(state, action);
            let _ = writeln!(
                out,
                "{:3}. {}",
                i + 1,
                describe_action(state, action, self.config.ops)
            );
            if std::env::var_os("POPVMM_DEBUG_PATH").is_some() {
                let _ = writeln!(
                    out,
                    "       links: {:?}",
                    state
                        .world
                        .links
                        .iter()
                        .map(|(k, q)| (k, q.iter().map(|m| m.to_string()).collect::<Vec<_>>()))
                        .collect::<Vec<_>>()
                );
            }
            for k in 0..self.kernels() {
                for page in 0..self.config.pages as PageId {
                    let before = state.engines[k].view(page);
                    let after = next.engines[k].view(page);
                    if before.state != after.state || before.mapping != after.mapping {
                        let _ = writeln!(
                            out,
                            "       kernel {k} page {page}: {} {} -> {} {}",
                            before.state,
                            mapping_name(before.mapping),
                            after.state,
                            mapping_name(after.mapping)
                        );
                    }
                }
            }
            if state.world.sent < next.world.sent {
                let sent = sent_messages(state, action, &next);
                for (from, to, msg) in sent {
                    let _ = writeln!(out, "       sends {from} -> {to}: {msg}");
                }
            }
            if let (None, Some(v)) = (&state.world.violation, &next.world.violation) {
                let _ = writeln!(out, "       VIOLATION: {v}");
            }
        }
        out
    }
}

fn mapping_name(m: Mapping) -> &'static str {
    match m {
        Mapping::None => "(unmapped)",
        Mapping::ReadOnly => "(ro)",
        Mapping::ReadWrite => "(rw)",
    }
}

fn describe_action(state: &ModelState, action: &Action, ops: usize) -> String {
    match action {
        Action::Access {
            kernel,
            page,
            access,
        } => {
            let k = *kernel as usize;
            match access {
                Access::Read => format!("kernel {kernel} reads page {page}"),
                Access::Write => format!(
                    "kernel {kernel} writes page {page} (value {}, ts {})",
                    1 + k * ops + state.world.issued[k] as usize,
                    state.world.issued[k]
                ),
            }
        }
        Action::DeliverFifo { from, to } => match state.world.links.get(&(*from, *to)) {
            Some(q) => match q.front() {
                Some(m) => format!("kernel {to} receives from {from}: {m}"),
                None => format!("deliver {from} -> {to} (empty)"),
            },
            None => format!("deliver {from} -> {to} (empty)"),
        },
        Action::DeliverAny { to, msg } => format!("kernel {to} receives from {}: {msg}", msg.from),
        Action::Layout { change, page } => {
            let what = match change {
                LayoutChange::Reset => "resets (DONTNEED, munmap, MAP_FIXED, ...)",
                LayoutChange::Protect => "makes PROT_NONE",
                LayoutChange::Unprotect => "makes read-write again",
            };
            format!("the changer {what} page {page}: the origin applies it and pushes it")
        }
        Action::ApplyLayout { to } => match &state.world.layout {
            Some(l) => format!(
                "kernel {to} applies the push ({:?} page {})",
                l.change, l.page
            ),
            None => format!("kernel {to} applies a push (none)"),
        },
        Action::Retry { kernel } => format!("kernel {kernel}'s thread faults again"),
        Action::Release { kernel, page } => {
            format!("kernel {kernel}'s holding window on page {page} ends")
        }
    }
}

/// The messages `next` has in flight that `state` did not (for the description).
fn sent_messages(
    state: &ModelState,
    action: &Action,
    next: &ModelState,
) -> Vec<(KernelId, KernelId, Message<u8>)> {
    let mut out = Vec::new();
    for (&(from, to), q) in &next.world.links {
        let before = state.world.links.get(&(from, to)).map_or(0, VecDeque::len);
        // Sends append at the back; a delivery on this link took one from the front.
        let delivered = usize::from(*action == Action::DeliverFifo { from, to });
        out.extend(
            q.iter()
                .skip(before - delivered)
                .map(|m| (from, to, m.clone())),
        );
    }
    let mut old_bag = state.world.bag.clone();
    for item in &next.world.bag {
        if let Some(at) = old_bag.iter().position(|x| x == item) {
            old_bag.remove(at);
        } else {
            out.push((item.1.from, item.0, item.1.clone()));
        }
    }
    out
}

impl Model for CoherencyModel {
    type State = ModelState;
    type Action = Action;

    fn init_states(&self) -> Vec<ModelState> {
        let k = self.kernels();
        let pages = self.config.pages;
        let engines = (0..k)
            .map(|i| Engine::new(i as KernelId, self.config.engine))
            .collect();
        vec![ModelState {
            engines,
            world: World {
                memory: vec![vec![None; pages]; k],
                links: BTreeMap::new(),
                bag: Vec::new(),
                issued: vec![0; k],
                in_flight: vec![None; k],
                latest: vec![vec![0; self.config.layout.changes + 1]; pages],
                gens: vec![vec![0; pages]; k],
                layout_issued: 0,
                layout: None,
                unprotect_next: None,
                protected: vec![vec![false; pages]; k],
                history: vec![LinearizabilityTester::new(Register(0)); pages],
                sent: 0,
                violation: None,
            },
        }]
    }

    fn actions(&self, state: &ModelState, actions: &mut Vec<Action>) {
        if state.world.violation.is_some() {
            return;
        }
        for k in 0..self.kernels() {
            if state.world.in_flight[k].is_some_and(|op| op.retry) {
                actions.push(Action::Retry {
                    kernel: k as KernelId,
                });
            }
            if state.world.in_flight[k].is_none()
                && (state.world.issued[k] as usize) < self.config.ops
            {
                for page in 0..self.config.pages as PageId {
                    // The program touches no page it made PROT_NONE.
                    if state.world.protected[k][page as usize] {
                        continue;
                    }
                    for access in [Access::Read, Access::Write] {
                        actions.push(Action::Access {
                            kernel: k as KernelId,
                            page,
                            access,
                        });
                    }
                }
            }
        }
        let layout = &self.config.layout;
        match (&state.world.layout, state.world.unprotect_next) {
            (Some(l), _) => {
                for to in l.pending.iter() {
                    actions.push(Action::ApplyLayout { to });
                }
            }
            (None, Some(page)) => actions.push(Action::Layout {
                change: LayoutChange::Unprotect,
                page,
            }),
            (None, None) if (state.world.layout_issued as usize) < layout.changes => {
                for page in 0..self.config.pages as PageId {
                    if layout.resets {
                        actions.push(Action::Layout {
                            change: LayoutChange::Reset,
                            page,
                        });
                    }
                    if layout.protects {
                        actions.push(Action::Layout {
                            change: LayoutChange::Protect,
                            page,
                        });
                    }
                }
            }
            (None, None) => {}
        }
        for &(from, to) in state.world.links.keys() {
            actions.push(Action::DeliverFifo { from, to });
        }
        for (k, engine) in state.engines.iter().enumerate() {
            for page in 0..self.config.pages as PageId {
                if engine.view(page).held_until.is_some() {
                    actions.push(Action::Release {
                        kernel: k as KernelId,
                        page,
                    });
                }
            }
        }
        let mut last: Option<&(KernelId, Message<u8>)> = None;
        for item in &state.world.bag {
            if last != Some(item) {
                actions.push(Action::DeliverAny {
                    to: item.0,
                    msg: item.1.clone(),
                });
            }
            last = Some(item);
        }
    }

    fn next_state(&self, state: &ModelState, action: Action) -> Option<ModelState> {
        Some(self.step(state, &action))
    }

    fn within_boundary(&self, state: &ModelState) -> bool {
        state.world.sent <= self.config.max_messages
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no protocol error or stale read", |_, s: &ModelState| {
                s.world.violation.is_none()
            }),
            Property::always("single writer, multiple readers", swmr),
            Property::always("valid copies hold the latest write", |m, s| {
                valid_copies_latest(m, s)
            }),
            Property::always("linearizable", |_, s: &ModelState| {
                s.world.history.iter().all(|h| h.is_consistent())
            }),
            Property::always("no wait state once the network is empty", |m, s| {
                !CoherencyModel::network_empty(s) || !layout_settled(s) || quiescent(m, s)
            }),
            Property::always("bounded messages", |m, s: &ModelState| {
                s.world.sent <= m.config.max_messages
            }),
            Property::eventually("every access completes", |m, s: &ModelState| {
                s.world.in_flight.iter().all(Option::is_none)
                    && s.world.issued.iter().all(|&n| n as usize == m.config.ops)
                    && s.world.layout_issued as usize == m.config.layout.changes
                    && layout_settled(s)
            }),
        ]
    }
}

/// At most one writable copy, and none readable beside it; at most one Modified or Not Replicated.
fn swmr(m: &CoherencyModel, s: &ModelState) -> bool {
    (0..m.config.pages as PageId).all(|page| {
        let views: Vec<_> = s.engines.iter().map(|e| e.view(page)).collect();
        let writers = views
            .iter()
            .filter(|v| v.mapping == Mapping::ReadWrite)
            .count();
        let readers = views
            .iter()
            .filter(|v| v.mapping == Mapping::ReadOnly)
            .count();
        let exclusive = views
            .iter()
            .filter(|v| matches!(v.state, State::Modified | State::NotReplicated))
            .count();
        writers <= 1 && (writers == 0 || readers == 0) && exclusive <= 1
    })
}

/// Every mapped copy holds the value of the latest write of its generation.
fn valid_copies_latest(m: &CoherencyModel, s: &ModelState) -> bool {
    (0..m.config.pages).all(|page| {
        s.world.memory.iter().enumerate().all(|(k, mem)| {
            let gen = s.world.gens[k][page] as usize;
            mem[page].is_none_or(|v| v == s.world.latest[page][gen])
        })
    })
}

/// No layout change in progress, and no thread about to fault again.
fn layout_settled(s: &ModelState) -> bool {
    s.world.layout.is_none()
        && s.world.unprotect_next.is_none()
        && !s.world.in_flight.iter().flatten().any(|op| op.retry)
}

/// Every copy stable and nothing waiting.
fn quiescent(m: &CoherencyModel, s: &ModelState) -> bool {
    s.world.in_flight.iter().all(Option::is_none)
        && s.engines.iter().all(|e| {
            (0..m.config.pages as PageId).all(|p| {
                let v = e.view(p);
                v.state.is_stable() && v.waiting == 0
            })
        })
}

/// Prints the checker's progress to stderr.
struct Progress;

impl stateright::report::Reporter<CoherencyModel> for Progress {
    fn report_checking(&mut self, data: stateright::report::ReportData) {
        // Quiet for short checks; every ten seconds for long ones.
        if !data.done && data.duration.as_secs() >= 10 && data.duration.as_millis() % 10_000 < 500 {
            eprintln!(
                "  ... {} states ({} unique), depth {}, {} s",
                data.total_states,
                data.unique_states,
                data.max_depth,
                data.duration.as_secs()
            );
        }
    }

    fn report_discoveries(
        &mut self,
        _model: &CoherencyModel,
        _discoveries: BTreeMap<&'static str, stateright::report::ReportDiscovery<CoherencyModel>>,
    ) {
        // The report prints the counterexample itself, in the protocol's terms.
    }

    fn delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(500)
    }
}

/// What a check found.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub config: ModelConfig,
    pub unique_states: usize,
    pub states: usize,
    pub max_depth: usize,
    pub elapsed: std::time::Duration,
    /// Each property and whether it holds.
    pub verdicts: Vec<(&'static str, bool)>,
    /// The first violated property and its counterexample.
    pub counterexample: Option<(&'static str, String)>,
}

impl CheckReport {
    pub fn holds(&self) -> bool {
        self.verdicts.iter().all(|(_, ok)| *ok)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        // The engine's settings (and its mutant, when the engine was built with them) describe
        // themselves.
        writeln!(
            f,
            "{}; {} pages x {} accesses each, delivery {}",
            c.engine,
            c.pages,
            c.ops,
            c.delivery.name()
        )?;
        writeln!(
            f,
            "  states: {} unique ({} generated), max depth {}, {:.1} s",
            self.unique_states,
            self.states,
            self.max_depth,
            self.elapsed.as_secs_f64()
        )?;
        for (name, ok) in &self.verdicts {
            writeln!(f, "  {:<6} {name}", if *ok { "ok" } else { "FAILED" })?;
        }
        if let Some((name, path)) = &self.counterexample {
            writeln!(f, "counterexample for \"{name}\":")?;
            write!(f, "{path}")?;
        }
        Ok(())
    }
}
