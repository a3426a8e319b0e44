//! The exhaustive checks of the issue: every configuration passes, with the optimizations on and
//! off; every mutant is caught with a counterexample; the dependence on per-link FIFO is shown.

use coherency::{Config, Mutant};
use coherency_lab::model::{
    CheckReport, CoherencyModel, Delivery, LayoutConfig, ModelConfig, ResetMode,
};

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

/// The holding window (decision 17) on: a request for a page its writer got lately waits for a
/// Release, which the model lets happen at any later point (one window length, min = max, keeps
/// the state space small). `always`: every acquisition holds (`recent` = u64::MAX); otherwise
/// only a page lost and won back (the model's clock stands still, so that is every bounce).
fn assert_holds_with_window(
    kernels: usize,
    pages: usize,
    ops: usize,
    optimized: bool,
    always: bool,
) {
    let mut engine = if optimized {
        Config::new(kernels)
    } else {
        Config::unoptimized(kernels)
    };
    engine.hold = Some(coherency::HoldWindow {
        min: 1,
        max: 1,
        recent: if always { u64::MAX } else { 1 },
    });
    let report =
        CoherencyModel::new(ModelConfig::new(engine, pages, ops, Delivery::Fifo)).check(2, false);
    println!("{report}");
    assert!(report.holds(), "{report}");
    assert_eq!(report.verdicts.len(), 7);
}

#[test]
fn holding_window_two_kernels() {
    // 3 accesses each: a page must be lost and won back before an adaptive window starts.
    assert_holds_with_window(2, 1, 3, true, false);
    assert_holds_with_window(2, 1, 3, false, false);
    assert_holds_with_window(2, 2, 2, true, true);
}

#[test]
fn holding_window_three_kernels() {
    // Concurrent writers: the winner holds the losers' Fetch Writes of its round.
    assert_holds_with_window(3, 1, 1, true, true);
    assert_holds_with_window(3, 1, 1, false, true);
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

// -------------------------------------------------------------------------------------------------
// Layout changes (decision 16): a changer resets pages (DONTNEED, munmap, MAP_FIXED over, mremap,
// brk shrink) or makes them PROT_NONE and back while the kernels access them; the origin applies
// each change, pushes it, and every kernel applies it in any order with the coherency messages.

fn layout(changes: usize, resets: bool, protects: bool, mode: ResetMode) -> LayoutConfig {
    LayoutConfig {
        changes,
        resets,
        protects,
        mode,
        forced_reads: true,
    }
}

fn check_layout(
    kernels: usize,
    pages: usize,
    ops: usize,
    optimized: bool,
    layout: LayoutConfig,
) -> CheckReport {
    let engine = if optimized {
        Config::new(kernels)
    } else {
        Config::unoptimized(kernels)
    };
    let report = CoherencyModel::new(
        ModelConfig::new(engine, pages, ops, Delivery::Fifo).with_layout(layout),
    )
    .check(2, false);
    println!("{report}");
    report
}

fn assert_layout_holds(
    kernels: usize,
    pages: usize,
    ops: usize,
    layout: LayoutConfig,
    min_states: usize,
) {
    for optimized in [true, false] {
        let report = check_layout(kernels, pages, ops, optimized, layout);
        assert!(report.holds(), "{report}");
        assert!(
            report.unique_states >= min_states,
            "only {} states explored",
            report.unique_states
        );
        assert_eq!(report.verdicts.len(), 7);
    }
}

/// What popvmm did before generations: a reset forgot the page and started it over, so a
/// message of the old incarnation still in flight met the new one. The checker finds it with 2
/// kernels and one reset ("copy_void ... in state Shared"; the replay is
/// `coherency/tests/engine.rs`).
#[test]
fn resets_that_forget_the_page_break_the_protocol() {
    let report = check_layout(2, 1, 2, true, layout(1, true, false, ResetMode::Forget));
    assert!(!report.holds());
    let (property, path) = report.counterexample.as_ref().expect("a counterexample");
    assert_eq!(*property, "no protocol error or stale read");
    assert!(path.contains("copy_void"), "{path}");
    assert!(path.contains("the changer resets"), "{path}");
}

/// A host that reads a page for a Copy with a read that honours the program's protection
/// (process_vm_readv) cannot answer a Fetch while the program has the page PROT_NONE.
#[test]
fn copies_read_with_the_programs_protection_fail_under_prot_none() {
    let mut l = layout(1, false, true, ResetMode::Generations);
    l.forced_reads = false;
    let report = check_layout(2, 1, 2, true, l);
    assert!(!report.holds());
    let (_, path) = report.counterexample.as_ref().expect("a counterexample");
    assert!(path.contains("PROT_NONE"), "{path}");
}

#[test]
fn two_kernels_one_page_two_accesses_and_a_reset() {
    assert_layout_holds(
        2,
        1,
        2,
        layout(1, true, false, ResetMode::Generations),
        100_000,
    );
}

#[test]
fn two_kernels_one_page_two_accesses_and_a_protect_pair() {
    assert_layout_holds(
        2,
        1,
        2,
        layout(1, false, true, ResetMode::Generations),
        5_000,
    );
}

#[test]
fn two_kernels_two_pages_one_access_each_and_two_resets() {
    assert_layout_holds(
        2,
        2,
        1,
        layout(2, true, false, ResetMode::Generations),
        10_000,
    );
}

/// Too long for CI (see the README for its size): `cargo test --release -p coherency-lab --test
/// model_check -- --ignored --nocapture`.
#[test]
#[ignore]
fn three_kernels_one_page_one_access_each_and_a_reset() {
    let l = layout(1, true, false, ResetMode::Generations);
    let report =
        CoherencyModel::new(ModelConfig::new(Config::new(3), 1, 1, Delivery::Fifo).with_layout(l))
            .check(2, true);
    println!("{report}");
    assert!(report.holds(), "{report}");
}

#[test]
fn two_kernels_one_page_one_access_each_and_two_changes_of_either_kind() {
    assert_layout_holds(
        2,
        1,
        1,
        layout(2, true, true, ResetMode::Generations),
        5_000,
    );
}
