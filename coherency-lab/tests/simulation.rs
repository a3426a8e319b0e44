//! The randomized simulator on large systems, both protocols, and the paper's figure 7.

use coherency::{Config, MessageType};
use coherency_lab::figure7::{figure7, ArraySize, Pattern, ITERATIONS};
use coherency_lab::ivy::IvyType;
use coherency_lab::sim::{simulate, Protocol, RandomWorkload, SimConfig, SimError};

fn run(
    kernels: usize,
    pages: u64,
    accesses: u64,
    write_ratio: f64,
    seed: u64,
    protocol: Protocol,
) -> coherency_lab::sim::SimReport {
    let config = SimConfig::new(kernels, pages, seed, protocol);
    let mut workload = RandomWorkload::new(kernels, pages, accesses, write_ratio);
    let report = simulate(&config, &mut workload).expect("valid configuration");
    assert_eq!(report.violation, None, "{report}");
    assert_eq!(report.accesses, accesses, "every access completed");
    assert!(
        report.invariant_checks >= report.events / 2,
        "checked after the events"
    );
    report
}

#[test]
fn sixty_four_kernels_thousands_of_pages() {
    let r = run(
        64,
        4096,
        200_000,
        0.3,
        1,
        Protocol::Popcorn(Config::new(64)),
    );
    assert!(r.count(MessageType::Invalid.name()) > 0 && r.count(MessageType::Fetch.name()) > 0);
}

#[test]
fn heavy_contention_on_few_pages() {
    for seed in 1..=5 {
        for optimized in [true, false] {
            let engine = if optimized {
                Config::new(16)
            } else {
                Config::unoptimized(16)
            };
            let r = run(16, 4, 100_000, 0.6, seed, Protocol::Popcorn(engine));
            // Contention makes concurrent writers lose elections.
            assert!(
                r.count(MessageType::Nack.name()) > 0
                    && r.count(MessageType::FetchWrite.name()) > 0
            );
        }
    }
}

#[test]
fn ivy_on_the_same_trace() {
    let ivy = run(8, 64, 200_000, 0.3, 3, Protocol::Ivy);
    let popcorn = run(8, 64, 200_000, 0.3, 3, Protocol::Popcorn(Config::new(8)));
    assert!(ivy.count(IvyType::ReadRequest.name()) + ivy.count(IvyType::WriteRequest.name()) > 0);
    assert!(popcorn.total_messages > 0 && ivy.total_messages > 0);
}

#[test]
fn same_seed_same_run() {
    let a = run(8, 32, 50_000, 0.4, 9, Protocol::Popcorn(Config::new(8)));
    let b = run(8, 32, 50_000, 0.4, 9, Protocol::Popcorn(Config::new(8)));
    assert_eq!(a.messages, b.messages);
    assert_eq!(a.end_time, b.end_time);
    let c = run(8, 32, 50_000, 0.4, 10, Protocol::Popcorn(Config::new(8)));
    assert_ne!(a.end_time, c.end_time);
}

#[test]
fn multicast_sends_fewer_invalids_than_broadcast() {
    // Each kernel touches its own pages mostly: with users bitmaps, an Invalid goes to few kernels.
    let on = run(
        16,
        1024,
        100_000,
        0.3,
        4,
        Protocol::Popcorn(Config::new(16)),
    );
    let off = run(
        16,
        1024,
        100_000,
        0.3,
        4,
        Protocol::Popcorn(Config::unoptimized(16)),
    );
    assert!(
        on.count(MessageType::Invalid.name()) < off.count(MessageType::Invalid.name()),
        "on {on} off {off}"
    );
}

#[test]
fn bad_configurations_are_refused() {
    let mut w = RandomWorkload::new(1, 1, 1, 0.5);
    let err = simulate(&SimConfig::new(65, 1, 1, Protocol::Ivy), &mut w).unwrap_err();
    assert_eq!(err, SimError::Kernels(65));
    let err = simulate(&SimConfig::new(2, 0, 1, Protocol::Ivy), &mut w).unwrap_err();
    assert!(matches!(err, SimError::Pages { got: 0, .. }));
}

#[test]
fn figure7_has_the_papers_shape() {
    let rows = figure7(Config::new(2), 2048, 1).expect("runs");
    assert_eq!(
        rows.len(),
        ArraySize::ALL.len() * Pattern::ALL.len() * ITERATIONS.len()
    );
    for row in &rows {
        assert_eq!(row.popcorn.violation, None);
        assert_eq!(row.ivy.violation, None);
    }
    let cell = |size, pattern, iterations| {
        rows.iter()
            .find(|r| r.size == size && r.pattern == pattern && r.iterations == iterations)
            .expect("cell")
    };
    for size in ArraySize::ALL {
        // (b) concurrent readers: one request per page, whatever the iterations.
        for it in ITERATIONS {
            assert_eq!(
                cell(size, Pattern::ReadRead, it).popcorn_requests(),
                size.pages()
            );
            assert_eq!(cell(size, Pattern::ReadRead, it).popcorn_invalids(), 0);
        }
        // (c), (d): writing makes traffic grow with the iterations.
        for pattern in [Pattern::ReadWrite, Pattern::WriteWrite] {
            let first = cell(size, pattern, 1);
            let last = cell(size, pattern, 90);
            assert!(last.popcorn_requests() > first.popcorn_requests());
            assert!(last.popcorn_invalids() > first.popcorn_invalids());
        }
        // (d) writers on both sides send more Invalids than one writer.
        assert!(
            cell(size, Pattern::WriteWrite, 90).popcorn_invalids()
                > cell(size, Pattern::ReadWrite, 90).popcorn_invalids() / 2
        );
    }
}
