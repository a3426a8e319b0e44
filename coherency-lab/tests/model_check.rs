//! The exhaustive checks of the issue: every configuration passes, with the optimizations on and
//! off; every mutant is caught with a counterexample; the dependence on per-link FIFO is shown.

use coherency::{Config, Mutant};
use coherency_lab::model::{CheckReport, CoherencyModel, Delivery, ModelConfig};

fn check(
    kernels: usize,
    pages: usize,
    ops: usize,
    optimized: bool,
    delivery: Delivery,
    mutant: Option<Mutant>,
) -> CheckReport {
    let mut engine = if optimized {
        Config::new(kernels)
    } else {
        Config::unoptimized(kernels)
    };
    engine.mutant = mutant;
    let report =
        CoherencyModel::new(ModelConfig::new(engine, pages, ops, delivery)).check(2, false);
    println!("{report}");
    report
}

fn assert_holds(kernels: usize, pages: usize, ops: usize, optimized: bool, min_states: usize) {
    let report = check(kernels, pages, ops, optimized, Delivery::Fifo, None);
    assert!(report.holds(), "{report}");
    assert!(report.counterexample.is_none());
    // The checker really explored the space (a broken model that stops early would not).
    assert!(
        report.unique_states >= min_states,
        "only {} states explored",
        report.unique_states
    );
    assert_eq!(report.verdicts.len(), 7);
}

#[test]
fn two_kernels_one_page_two_accesses_each() {
    assert_holds(2, 1, 2, true, 2_000);
    assert_holds(2, 1, 2, false, 2_000);
}

#[test]
fn two_kernels_two_pages_two_accesses_each() {
    assert_holds(2, 2, 2, true, 15_000);
    assert_holds(2, 2, 2, false, 15_000);
}

#[test]
fn three_kernels_one_page() {
    assert_holds(3, 1, 1, true, 100_000);
    assert_holds(3, 1, 1, false, 100_000);
}

/// Each mutant must be caught, and the counterexample must end in a violation.
fn assert_caught(mutant: Mutant) {
    for optimized in [true, false] {
        let report = check(3, 1, 1, optimized, Delivery::Fifo, Some(mutant));
        assert!(!report.holds(), "mutant {} not caught", mutant.name());
        let (property, path) = report
            .counterexample
            .as_ref()
            .expect("a violated property comes with a counterexample");
        assert!(!property.is_empty());
        assert!(path.lines().count() > 3, "counterexample too short: {path}");
        assert!(path.contains("receives from"), "no message in: {path}");
    }
}

#[test]
fn mutant_fetch_in_writing_is_caught() {
    assert_caught(Mutant::FetchInWriting);
}

#[test]
fn mutant_no_rounds_is_caught() {
    assert_caught(Mutant::NoRounds);
}

#[test]
fn mutant_tie_ack_is_caught() {
    assert_caught(Mutant::TieAck);
}

#[test]
fn mutant_no_reread_is_caught() {
    assert_caught(Mutant::NoReread);
}

/// The protocol relies on per-link FIFO (a vote must reach its writer before the sender's next
/// Fetch Write; see the crate docs): without it the checker finds a violation even with 2 kernels.
#[test]
fn unordered_delivery_breaks_the_protocol() {
    let report = check(2, 1, 2, true, Delivery::Unordered, None);
    assert!(!report.holds());
    assert!(report.counterexample.is_some());
}

#[test]
fn tmp_forget_mode() {
    use coherency_lab::model::{LayoutConfig, ResetMode};
    let k: usize = std::env::var("K").unwrap().parse().unwrap();
    let ops: usize = std::env::var("OPS").unwrap().parse().unwrap();
    let pages: usize = std::env::var("PAGES").unwrap().parse().unwrap();
    let changes: usize = std::env::var("CHANGES").unwrap().parse().unwrap();
    let layout = LayoutConfig {
        changes,
        resets: std::env::var("RESETS").is_ok(),
        protects: std::env::var("PROTECTS").is_ok(),
        mode: if std::env::var("FORGET").is_ok() {
            ResetMode::Forget
        } else {
            ResetMode::Generations
        },
        forced_reads: std::env::var("UNFORCED").is_err(),
    };
    let report = CoherencyModel::new(
        ModelConfig::new(Config::new(k), pages, ops, Delivery::Fifo).with_layout(layout),
    )
    .check(2, true);
    println!("{report}");
}
