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
        }
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
    /// The value of the latest completed write to each page (0: the initial content).
    pub latest: Vec<u8>,
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
}

struct ModelHost<'a> {
    me: KernelId,
    delivery: Delivery,
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
        let Some(op) = self.world.in_flight[me].take() else {
            self.violate(format!("kernel {me}: completion with no access in flight"));
            return;
        };
        if op.page != page || op.access != access {
            self.violate(format!("kernel {me}: completion of the wrong access"));
        }
        self.perform(op);
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
        let tester = &mut self.world.history[page];
        match op.access {
            Access::Read => {
                let value = self.world.memory[me][page];
                let Some(value) = value else {
                    self.violate(format!("kernel {me} read unmapped page {page}"));
                    return;
                };
                let _ = tester.on_return(self.me, RegisterRet::ReadOk(value));
                if value != self.world.latest[page] {
                    let latest = self.world.latest[page];
                    self.violate(format!(
                        "kernel {me} read {value} from page {page}, the latest write stored {latest}"
                    ));
                }
            }
            Access::Write => {
                let _ = tester.on_return(self.me, RegisterRet::WriteOk);
                self.world.memory[me][page] = Some(op.value);
                self.world.latest[page] = op.value;
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
                    Some(msg) => {
                        let mut host = ModelHost {
                            me: *to,
                            delivery,
                            world: &mut next.world,
                        };
                        next.engines[*to as usize].handle(msg, &mut host)
                    }
                    None => Ok(()),
                }
            }
            Action::DeliverAny { to, msg } => {
                let item = (*to, msg.clone());
                if let Ok(at) = next.world.bag.binary_search(&item) {
                    next.world.bag.remove(at);
                }
                let mut host = ModelHost {
                    me: *to,
                    delivery,
                    world: &mut next.world,
                };
                next.engines[*to as usize].handle(msg.clone(), &mut host)
            }
        };
        if let Err(e) = result {
            if next.world.violation.is_none() {
                next.world.violation = Some(format!("protocol error: {e}"));
            }
        }
        next
    }

    /// No message in flight.
    pub fn network_empty(state: &ModelState) -> bool {
        state.world.links.is_empty() && state.world.bag.is_empty()
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
                latest: vec![0; pages],
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
            if state.world.in_flight[k].is_none()
                && (state.world.issued[k] as usize) < self.config.ops
            {
                for page in 0..self.config.pages as PageId {
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
        for &(from, to) in state.world.links.keys() {
            actions.push(Action::DeliverFifo { from, to });
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
                !CoherencyModel::network_empty(s) || quiescent(m, s)
            }),
            Property::always("bounded messages", |m, s: &ModelState| {
                s.world.sent <= m.config.max_messages
            }),
            Property::eventually("every access completes", |m, s: &ModelState| {
                s.world.in_flight.iter().all(Option::is_none)
                    && s.world.issued.iter().all(|&n| n as usize == m.config.ops)
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

/// Every mapped copy holds the value of the latest write.
fn valid_copies_latest(m: &CoherencyModel, s: &ModelState) -> bool {
    (0..m.config.pages).all(|page| {
        s.world
            .memory
            .iter()
            .all(|mem| mem[page].is_none_or(|v| v == s.world.latest[page]))
    })
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
