//! The hand-driven network of engines the engine tests use: FIFO links, each host's memory and
//! completions recorded, a clock the tests set. Shared by `coherency/tests/engine.rs`,
//! `coherency/tests/hold.rs` and by the mutant tests of
//! `coherency-lab` (`coherency-lab/tests/mutants.rs` includes this file), so that it has one home;
//! each uses part of it.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};

use coherency::{Access, Config, Engine, Host, KernelId, MapChange, Message, PageId, State};

/// Kernels wired by FIFO links, with each host's memory and completions recorded.
pub struct Net {
    pub engines: Vec<Engine<u32>>,
    pub links: VecDeque<(KernelId, Message<u32>)>,
    pub memory: Vec<Option<u32>>,
    pub completed: Vec<(KernelId, u64)>,
    /// Writes whose token says what they store, stored when they complete (tests that set
    /// `memory` by hand leave this empty).
    pub write_values: HashMap<u64, u32>,
    /// Accesses handed back by a reset (`Host::retry`).
    pub retried: Vec<(KernelId, u64)>,
    /// Every host's clock (`Host::now`), which the tests set; read only with the holding window.
    pub now: u64,
    /// `Host::hold_until` calls: (kernel, page, at).
    pub holds: Vec<(KernelId, PageId, u64)>,
}

pub struct NetHost<'a> {
    pub me: KernelId,
    pub links: &'a mut VecDeque<(KernelId, Message<u32>)>,
    pub memory: &'a mut Vec<Option<u32>>,
    pub completed: &'a mut Vec<(KernelId, u64)>,
    pub write_values: &'a HashMap<u64, u32>,
    pub retried: &'a mut Vec<(KernelId, u64)>,
    pub now: u64,
    pub holds: &'a mut Vec<(KernelId, PageId, u64)>,
}

impl Host<u32> for NetHost<'_> {
    fn send(&mut self, to: KernelId, msg: Message<u32>) {
        self.links.push_back((to, msg));
    }
    fn read_page(&mut self, _page: PageId) -> u32 {
        self.memory[self.me as usize].expect("read of a mapped copy")
    }
    fn map(&mut self, _page: PageId, change: MapChange<u32>) {
        let slot = &mut self.memory[self.me as usize];
        match change {
            MapChange::Install { data, .. } => *slot = Some(data),
            MapChange::InstallInitial { .. } => *slot = Some(0),
            MapChange::Drop => *slot = None,
            MapChange::Upgrade | MapChange::Downgrade => assert!(slot.is_some()),
        }
    }
    fn complete(&mut self, _page: PageId, token: u64, access: Access) {
        self.completed.push((self.me, token));
        if access == Access::Write {
            if let Some(&v) = self.write_values.get(&token) {
                self.memory[self.me as usize] = Some(v);
            }
        }
    }
    fn retry(&mut self, _page: PageId, token: u64, _access: Access) {
        self.retried.push((self.me, token));
    }
    fn now(&mut self) -> u64 {
        self.now
    }
    fn hold_until(&mut self, page: PageId, at: u64) {
        self.holds.push((self.me, page, at));
    }
}

impl Net {
    pub fn new(config: Config) -> Self {
        Net {
            engines: (0..config.kernels)
                .map(|k| Engine::new(k as KernelId, config))
                .collect(),
            links: VecDeque::new(),
            memory: vec![None; config.kernels],
            completed: Vec::new(),
            write_values: HashMap::new(),
            retried: Vec::new(),
            now: 0,
            holds: Vec::new(),
        }
    }

    /// Runs `f` on kernel `k`'s engine with its host.
    pub fn with<R>(
        &mut self,
        k: KernelId,
        f: impl FnOnce(&mut Engine<u32>, &mut NetHost) -> R,
    ) -> R {
        let mut host = NetHost {
            me: k,
            links: &mut self.links,
            memory: &mut self.memory,
            completed: &mut self.completed,
            write_values: &self.write_values,
            retried: &mut self.retried,
            now: self.now,
            holds: &mut self.holds,
        };
        f(&mut self.engines[k as usize], &mut host)
    }

    pub fn access(&mut self, k: KernelId, access: Access, token: u64, now: u64) -> bool {
        self.with(k, |e, h| e.access(0, access, token, now, h))
            .expect("no protocol error")
    }

    pub fn deliver_all(&mut self) -> usize {
        let mut n = 0;
        while let Some((to, msg)) = self.links.front() {
            let (from, to) = (msg.from, *to);
            self.deliver(from, to);
            n += 1;
        }
        n
    }

    /// Delivers the oldest message on the link `from` -> `to` (links are FIFO; there is no order
    /// across links) and returns it.
    pub fn deliver(&mut self, from: KernelId, to: KernelId) -> Message<u32> {
        let at = self
            .links
            .iter()
            .position(|(t, m)| *t == to && m.from == from)
            .unwrap_or_else(|| panic!("nothing on the link {from} -> {to}"));
        let (_, msg) = self.links.remove(at).expect("position is in range");
        self.with(to, |e, h| e.handle(msg.clone(), h))
            .expect("no protocol error");
        msg
    }

    /// Kernel `k` resets page 0 to generation `gen` (a layout change: the origin first, then
    /// each kernel when the push arrives).
    pub fn reset(&mut self, k: KernelId, gen: u32) {
        self.with(k, |e, h| e.reset(0..1, gen, h));
    }

    pub fn state(&self, k: usize) -> State {
        self.engines[k].view(0).state
    }
}
