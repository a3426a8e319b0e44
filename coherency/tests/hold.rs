//! The holding window (decision 17, Mirage's Δ): a page that bounces between writers is held by
//! its new writer for a while before a request takes it away; a page nobody contends never is.

use std::collections::VecDeque;

use coherency::{
    Access, Config, Engine, HoldWindow, Host, KernelId, MapChange, Message, PageId, State,
};

const WINDOW: HoldWindow = HoldWindow {
    min: 100,
    max: 400,
    recent: 1_000,
};

/// Two or more kernels on FIFO links, one page (0), with a clock the test sets.
struct Net {
    engines: Vec<Engine<u32>>,
    links: VecDeque<(KernelId, Message<u32>)>,
    memory: Vec<Option<u32>>,
    completed: Vec<(KernelId, u64)>,
    /// `Host::hold_until` calls: (kernel, page, at).
    holds: Vec<(KernelId, PageId, u64)>,
    now: u64,
}

struct NetHost<'a> {
    me: KernelId,
    now: u64,
    links: &'a mut VecDeque<(KernelId, Message<u32>)>,
    memory: &'a mut Vec<Option<u32>>,
    completed: &'a mut Vec<(KernelId, u64)>,
    holds: &'a mut Vec<(KernelId, PageId, u64)>,
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
            // Each write stores its token.
            self.memory[self.me as usize] = Some(token as u32);
        }
    }
    fn retry(&mut self, _page: PageId, _token: u64, _access: Access) {
        panic!("no reset in these tests");
    }
    fn now(&mut self) -> u64 {
        self.now
    }
    fn hold_until(&mut self, page: PageId, at: u64) {
        self.holds.push((self.me, page, at));
    }
}

impl Net {
    fn new(kernels: usize) -> Net {
        let mut config = Config::new(kernels);
        config.hold = Some(WINDOW);
        Net {
            engines: (0..kernels)
                .map(|k| Engine::new(k as KernelId, config))
                .collect(),
            links: VecDeque::new(),
            memory: vec![None; kernels],
            completed: Vec::new(),
            holds: Vec::new(),
            now: 0,
        }
    }

    fn with<R>(&mut self, k: KernelId, f: impl FnOnce(&mut Engine<u32>, &mut NetHost) -> R) -> R {
        let mut host = NetHost {
            me: k,
            now: self.now,
            links: &mut self.links,
            memory: &mut self.memory,
            completed: &mut self.completed,
            holds: &mut self.holds,
        };
        f(&mut self.engines[k as usize], &mut host)
    }

    /// Kernel `k` writes `token` at time `now` and the network runs until it is empty.
    fn write(&mut self, k: KernelId, token: u64, now: u64) {
        self.now = now;
        let done = self
            .with(k, |e, h| e.access(0, Access::Write, token, now, h))
            .expect("no protocol error");
        if done {
            self.completed.push((k, token));
            self.memory[k as usize] = Some(token as u32);
        }
        self.deliver_all();
    }

    fn deliver_all(&mut self) {
        while let Some((to, msg)) = self.links.pop_front() {
            self.with(to, |e, h| e.handle(msg, h))
                .expect("no protocol error");
        }
    }

    fn release(&mut self, k: KernelId, now: u64) -> bool {
        self.now = now;
        let r = self.with(k, |e, h| e.release(0, h));
        self.deliver_all();
        r
    }

    fn done(&self, k: KernelId, token: u64) -> bool {
        self.completed.contains(&(k, token))
    }
}

#[test]
fn a_page_that_bounces_is_held_then_answered_at_the_end_of_its_window() {
    let mut net = Net::new(2);
    net.write(0, 1, 0);
    net.write(1, 2, 10);
    net.write(0, 3, 20);
    assert!(
        net.done(0, 3) && net.holds.is_empty(),
        "first transfers are never held"
    );
    // Kernel 1 lost the page at 20 and gets it back at 30: it bounces, so kernel 1 holds it for
    // the shortest window (100) from its acquisition.
    net.write(1, 4, 30);
    assert!(net.done(1, 4));
    assert_eq!(net.engines[1].view(0).state, State::Modified);
    net.write(0, 5, 40);
    assert!(!net.done(0, 5), "kernel 0's write waits for the window");
    assert_eq!(net.holds, vec![(1, 0, 130)]);
    assert_eq!(net.engines[1].view(0).held_until, Some(130));
    assert_eq!(net.engines[1].view(0).state, State::Modified);
    // The timer fires: the request is answered, and kernel 0's write completes with kernel 1's
    // data under it.
    assert!(net.release(1, 130));
    assert!(net.done(0, 5));
    assert_eq!(net.engines[1].view(0).held_until, None);
    assert_eq!(net.engines[0].view(0).state, State::Modified);
    assert_eq!(net.memory[0], Some(5));
    // A second release (a late timer) does nothing.
    assert!(!net.release(1, 140));
    // Still bouncing: kernel 0 lost it at 40... and reacquired at 130; its window doubles from 0
    // to the minimum; kernel 1's next window doubles.
    net.write(1, 6, 150);
    assert!(!net.done(1, 6));
    assert_eq!(net.holds.last(), Some(&(0, 0, 230)));
    assert!(net.release(0, 230));
    assert!(net.done(1, 6));
    net.write(0, 7, 240);
    assert_eq!(
        net.holds.last(),
        Some(&(1, 0, 230 + 200)),
        "the window doubles"
    );
    assert!(net.release(1, 430));
    assert!(net.done(0, 7));
    assert_eq!(net.memory[0], Some(7));
}

#[test]
fn a_page_nobody_contends_is_never_held() {
    let mut net = Net::new(3);
    // Writers take turns, each long after the page was last taken from it.
    for round in 0..6u64 {
        let k = (round % 3) as KernelId;
        let token = round + 1;
        net.write(k, token, round * 10_000);
        assert!(net.done(k, token));
    }
    assert!(net.holds.is_empty());
    // Reads never start a window either.
    net.now = 100_000;
    assert!(!net
        .with(1, |e, h| e.access(0, Access::Read, 99, 100_000, h))
        .expect("no protocol error"));
    net.deliver_all();
    assert!(net.done(1, 99));
    assert!(net.holds.is_empty());
}

#[test]
fn the_window_is_bounded_and_drops_to_zero_without_bounces() {
    assert_eq!(WINDOW.next(0, None, 5), 0);
    assert_eq!(WINDOW.next(0, Some(0), 999), 100);
    assert_eq!(WINDOW.next(100, Some(0), 10), 200);
    assert_eq!(WINDOW.next(400, Some(0), 10), 400);
    assert_eq!(WINDOW.next(400, Some(0), 1_000), 0);
}
