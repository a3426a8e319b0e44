//! Messages handled per second by the protocol engine on one core (issue target: at least 2 million,
//! so that the engine costs under 1% of a ~33 µs page fault). A lean harness drives a few engines
//! in one thread: a FIFO queue per link, round-robin delivery, accesses from a seeded trace. Page
//! content is a u64 here: this measures the protocol, not the 4 KiB copy a Copy costs in the VMM.
//!
//! The bench lives with the engine, not in `coherency-lab`, so that it measures the engine as
//! production builds it: `cargo bench -p coherency` compiles it without the `mutants` feature
//! (the lab's tests turn that feature on, and it would reach a bench built beside them).

use std::collections::VecDeque;
use std::hint::black_box;

use coherency::{Access, Config, Engine, Host, KernelId, MapChange, Message, PageId};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The access trace's generator (splitmix64, the same sequence as the simulator's `Rng` in
/// `coherency-lab`, so the trace is the one the bench always measured). Kept here rather than
/// imported so that the bench does not depend on the lab.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Bench {
    engines: Vec<Engine<u64>>,
    links: Vec<VecDeque<Message<u64>>>,
    blocked: Vec<bool>,
    kernels: usize,
}

struct BenchHost<'a> {
    me: KernelId,
    kernels: usize,
    links: &'a mut [VecDeque<Message<u64>>],
    blocked: &'a mut [bool],
    sent: &'a mut u64,
}

impl Host<u64> for BenchHost<'_> {
    fn send(&mut self, to: KernelId, msg: Message<u64>) {
        *self.sent += 1;
        self.links[self.me as usize * self.kernels + to as usize].push_back(msg);
    }
    fn read_page(&mut self, page: PageId) -> u64 {
        page
    }
    fn map(&mut self, _page: PageId, change: MapChange<u64>) {
        black_box(change);
    }
    fn complete(&mut self, _page: PageId, _token: u64, _access: Access) {
        self.blocked[self.me as usize] = false;
    }
    fn retry(&mut self, _page: PageId, _token: u64, _access: Access) {
        unreachable!("the benchmark resets no page")
    }
}

impl Bench {
    fn new(kernels: usize, pages: u64) -> Self {
        let mut engines: Vec<Engine<u64>> = (0..kernels)
            .map(|k| Engine::new(k as KernelId, Config::new(kernels)))
            .collect();
        for page in 0..pages {
            engines[0].set_not_replicated(page);
        }
        Bench {
            engines,
            links: (0..kernels * kernels).map(|_| VecDeque::new()).collect(),
            blocked: vec![false; kernels],
            kernels,
        }
    }

    /// Runs `accesses` accesses; returns the number of messages handled.
    fn run(&mut self, rng: &mut Rng, accesses: u64, pages: u64, write_ratio: f64) -> u64 {
        let mut sent = 0u64;
        let mut handled = 0u64;
        let mut issued = 0u64;
        let mut now = 0u64;
        while issued < accesses || handled < sent {
            now += 1;
            for k in 0..self.kernels {
                if !self.blocked[k] && issued < accesses {
                    issued += 1;
                    let page = rng.below(pages);
                    let access = if rng.unit() < write_ratio {
                        Access::Write
                    } else {
                        Access::Read
                    };
                    let mut host = BenchHost {
                        me: k as KernelId,
                        kernels: self.kernels,
                        links: &mut self.links,
                        blocked: &mut self.blocked,
                        sent: &mut sent,
                    };
                    host.blocked[k] = true;
                    let ready = self.engines[k]
                        .access(page, access, k as u64, now, &mut host)
                        .expect("protocol error");
                    if ready {
                        self.blocked[k] = false;
                    }
                }
            }
            for link in 0..self.links.len() {
                if let Some(msg) = self.links[link].pop_front() {
                    let to = link % self.kernels;
                    let mut host = BenchHost {
                        me: to as KernelId,
                        kernels: self.kernels,
                        links: &mut self.links,
                        blocked: &mut self.blocked,
                        sent: &mut sent,
                    };
                    self.engines[to]
                        .handle(msg, &mut host)
                        .expect("protocol error");
                    handled += 1;
                }
            }
        }
        handled
    }
}

fn bench_trace(c: &mut Criterion, name: &str, kernels: usize, pages: u64, write_ratio: f64) {
    // Calibrate: how many messages one batch of accesses makes.
    let accesses = 20_000;
    let messages = Bench::new(kernels, pages).run(&mut Rng::new(7), accesses, pages, write_ratio);
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(messages));
    group.sample_size(20);
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut bench = Bench::new(kernels, pages);
            black_box(bench.run(&mut Rng::new(7), accesses, pages, write_ratio))
        })
    });
    group.finish();
}

fn engine(c: &mut Criterion) {
    bench_trace(
        c,
        "write-heavy (4 kernels, 64 pages, 50% writes)",
        4,
        64,
        0.5,
    );
    bench_trace(
        c,
        "read-heavy (8 kernels, 1024 pages, 5% writes)",
        8,
        1024,
        0.05,
    );
}

criterion_group!(benches, engine);
criterion_main!(benches);
