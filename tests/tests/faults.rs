//! Fault injection in the links (`POPVMM_FAULTS`, `vmm/src/fabric/faults.rs`): frames held back,
//! links that refuse frames in bursts (they wait in the sender's outbox, in order), one island's
//! receive loop stalled now and then. The multi-island programs must still end exact and give
//! their native output, on 2 and 4 islands: the protocols see FIFO links that lose nothing, only
//! slower. Every run says what it injected (`popvmm: faults injected ...`), and the tests check
//! that something was.

use popvmm_tests::{assert_same, islands_run_with_faults, native, split_summary, Run};

/// Delays, bursts and a stall of island 1 every 120 ms.
const SPEC: &str = "7,delay=10:300us,burst=3:1ms,stall=1:15ms:120ms";
/// A random island stalls instead, more often, and longer delays.
const SPEC_ANY: &str = "23,delay=20:500us,burst=5:500us,stall=*:10ms:60ms";

/// The numbers of the `popvmm: faults injected` line: delays, bursts, stalls.
fn injected(run: &Run, what: &str) -> (u64, u64, u64) {
    let (_, summary) = split_summary(run);
    let line = summary
        .iter()
        .find(|l| l.starts_with("popvmm: faults injected (POPVMM_FAULTS="))
        .unwrap_or_else(|| panic!("{what}: no faults line in {summary:#?}"));
    let after = line.split_once("): ").map_or("", |x| x.1);
    let num = |key: &str| -> u64 {
        let at = after.find(key).unwrap_or_else(|| panic!("{what}: {line}"));
        after[..at]
            .trim_end()
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{what}: {line}"))
    };
    (num(" frames delayed"), num(" bursts"), num(" stalls"))
}

/// Runs `prog args` natively and under `spec` on `islands` islands, and compares.
fn same_under_faults(
    prog: &str,
    args: &[&str],
    islands: usize,
    placement: &str,
    spec: &str,
) -> Run {
    let what = format!("{prog} {args:?} on {islands} islands, {placement}, POPVMM_FAULTS={spec}");
    let n = native(prog, args, &[]);
    let r = islands_run_with_faults(prog, args, islands, &["--placement", placement], spec);
    let (rest, _) = split_summary(&r);
    assert_same(&what, &n, &rest);
    let (delays, bursts, stalls) = injected(&r, &what);
    assert!(delays + bursts + stalls > 0, "{what}: nothing was injected");
    r
}

#[test]
fn lock_prefixed_increments_end_exact_under_faults() {
    for (islands, spec) in [(2, SPEC), (4, SPEC), (4, SPEC_ANY)] {
        let r = same_under_faults(
            "glibc/lockinc",
            &["4", "20000"],
            islands,
            "round-robin",
            spec,
        );
        assert!(
            String::from_utf8_lossy(&r.stdout).contains("total: 80000 (expected 80000)"),
            "{}",
            r.stderr_text()
        );
    }
}

#[test]
fn the_demo_and_threads_give_the_native_output_under_faults() {
    for islands in [2, 4] {
        same_under_faults("glibc/demo", &[], islands, "round-robin", SPEC);
        same_under_faults("glibc/threads", &[], islands, "round-robin", SPEC_ANY);
    }
    same_under_faults("musl/threads", &[], 4, "list:3,2,1,0", SPEC);
}

#[test]
fn peterson_and_a_mutex_stay_exclusive_under_faults() {
    for (islands, placement) in [(2, "round-robin"), (4, "list:0,1,0,1,0,1,2,3")] {
        let r = same_under_faults(
            "glibc/peterson",
            &["100", "4"],
            islands,
            placement,
            SPEC_ANY,
        );
        let out = String::from_utf8_lossy(&r.stdout).into_owned();
        assert!(
            out.contains("violations 0, total 200 (expected 200)"),
            "{out}"
        );
        assert!(out.contains("mutex: 4 threads"), "{out}");
    }
}

#[test]
fn migrating_threads_keep_their_state_under_faults() {
    // A thread's registers, FPU state and stack across migrations, and threads that work while
    // others move, with the links misbehaving.
    same_under_faults("glibc/migtest", &["state", "20"], 2, "round-robin", SPEC);
    same_under_faults(
        "glibc/migtest",
        &["backwork", "16", "5"],
        4,
        "round-robin",
        SPEC_ANY,
    );
}

#[test]
fn a_long_stall_of_the_origin_only_slows_the_program() {
    // The origin (which serves every other island's memory, futex and file calls) takes nothing
    // for 20 ms out of every 30 ms: the program is slower, never wrong.
    let spec = "3,stall=0:20ms:30ms";
    let r = same_under_faults("glibc/peterson", &["100", "4"], 2, "round-robin", spec);
    let (_, _, stalls) = injected(&r, spec);
    assert!(stalls > 0, "{}", r.stderr_text());
}
