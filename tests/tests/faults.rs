//! Fault injection in the links (`POPVMM_FAULTS`, `vmm/src/fabric/faults.rs`): frames held back,
//! links that refuse frames in bursts as a full ring does (they wait in the sender's outbox, in
//! order), one island's receive loop stalled now and then. The multi-island programs must still
//! end exact and give their native output (stdout, stderr, exit status), on 2 and 4 islands: the
//! protocols see FIFO links that lose nothing, only slower. Every run says what it injected
//! (`popvmm: faults injected ...`), and the tests check that something was. That no frame is lost
//! or reordered under the same faults is checked at the fabric's level, where every frame can be
//! counted (`faults_keep_every_link_fifo_and_lose_nothing` in `vmm/src/fabric/tests.rs`).

use popvmm_tests::{
    assert_same_on_islands, images, islands_run_with_faults, launch_in, native, output_within,
    split_summary, Run, FAULTS_LINE, HANG,
};

/// Delays, bursts and a stall of island 1 every 120 ms.
const SPEC: &str = "7,delay=10:300us,burst=3:1ms,stall=1:15ms:120ms";
/// A random island stalls instead, more often, and longer delays.
const SPEC_ANY: &str = "23,delay=20:500us,burst=5:500us,stall=*:10ms:60ms";

/// What a run injected, from its `popvmm: faults injected` line.
#[derive(Debug, Clone, Copy)]
struct Injected {
    delays: u64,
    bursts: u64,
    stalls: u64,
}

/// The counts of the `popvmm: faults injected` line (which must be there).
fn injected(run: &Run, what: &str) -> Injected {
    let (_, summary) = split_summary(run);
    let line = summary
        .iter()
        .find(|l| l.starts_with(FAULTS_LINE))
        .unwrap_or_else(|| panic!("{what}: no faults line in {summary:#?}"));
    let after = line.split_once("): ").map_or("", |x| x.1);
    // "N frames delayed (...), N bursts (...), N stalls (...)": the number before each key.
    let num = |key: &str| -> u64 {
        let at = after
            .find(key)
            .unwrap_or_else(|| panic!("{what}: no {key:?} in {line}"));
        after[..at]
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{what}: no number before {key:?} in {line}"))
    };
    Injected {
        delays: num(" frames delayed"),
        bursts: num(" bursts"),
        stalls: num(" stalls"),
    }
}

/// Runs `prog args` natively and under `spec` on `islands` islands with `placement`, compares
/// them, and checks that faults were injected.
fn same_under_faults(
    prog: &str,
    args: &[&str],
    islands: usize,
    placement: &str,
    spec: &str,
) -> (Run, Injected) {
    let what = format!("{prog} {args:?} on {islands} islands, {placement}, POPVMM_FAULTS={spec}");
    let n = native(prog, args, &[]);
    let r = islands_run_with_faults(prog, args, islands, &["--placement", placement], spec);
    assert_same_on_islands(&what, &n, &r, islands);
    let got = injected(&r, &what);
    assert!(
        got.delays + got.bursts + got.stalls > 0,
        "{what}: nothing was injected"
    );
    (r, got)
}

fn stdout(r: &Run) -> String {
    String::from_utf8_lossy(&r.stdout).into_owned()
}

#[test]
fn lock_prefixed_increments_end_exact_under_faults() {
    for (islands, spec) in [(2, SPEC), (4, SPEC), (4, SPEC_ANY)] {
        let (r, _) = same_under_faults(
            "glibc/lockinc",
            &["4", "20000"],
            islands,
            "round-robin",
            spec,
        );
        assert!(
            stdout(&r).contains("total: 80000 (expected 80000)"),
            "{}",
            stdout(&r)
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
        let (r, _) = same_under_faults(
            "glibc/peterson",
            &["100", "4"],
            islands,
            placement,
            SPEC_ANY,
        );
        let out = stdout(&r);
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
fn bursts_alone_fill_the_links_and_the_program_still_ends_exact() {
    // One frame in four starts a burst of up to 2 ms during which its link takes nothing: the
    // frames wait in the sender's outbox and go in order when the burst ends.
    let spec = "11,burst=25:2ms";
    for islands in [2, 4] {
        let (_, got) = same_under_faults(
            "glibc/falseshare",
            &["4", "5000"],
            islands,
            "round-robin",
            spec,
        );
        assert!(got.bursts > 0, "{got:?}");
        assert_eq!((got.delays, got.stalls), (0, 0), "{got:?}");
    }
}

#[test]
fn a_long_stall_of_the_origin_only_slows_the_program() {
    // The origin (which serves every other island's memory, futex and file calls) takes nothing
    // for 20 ms out of every 30 ms: the program is slower, never wrong.
    let spec = "3,stall=0:20ms:30ms";
    let (_, got) = same_under_faults("glibc/peterson", &["100", "4"], 2, "round-robin", spec);
    assert!(got.stalls > 0, "{got:?}");
    assert_eq!((got.delays, got.bursts), (0, 0), "{got:?}");
}

#[test]
fn faults_are_off_by_default_and_a_bad_spec_is_refused() {
    // Unset or empty: no faults line (nothing injected, nothing reported).
    let mut cmd = launch_in(&images(), "glibc/threads", &[], &[], &["--islands", "2"]);
    cmd.env_remove("POPVMM_FAULTS");
    let unset = output_within(&mut cmd, HANG, "threads on 2 islands, POPVMM_FAULTS unset");
    let empty = islands_run_with_faults("glibc/threads", &[], 2, &[], "");
    let n = native("glibc/threads", &[], &[]);
    for r in [&unset, &empty] {
        assert_same_on_islands("threads without faults", &n, r, 2);
        let (_, summary) = split_summary(r);
        assert!(
            !summary.iter().any(|l| l.starts_with(FAULTS_LINE)),
            "{summary:#?}"
        );
    }
    // A spec popvmm cannot follow stops the launch with the reason, before the program runs.
    for (spec, why) in [
        ("x", "the spec starts with the seed"),
        ("7,delay=5", "expected delay=P:MAX"),
        ("7,delay=101:1ms", "a percentage"),
        (
            "7,stall=2:1ms:10ms",
            "stall of island 2, but the program has 2 islands",
        ),
        ("7,stall=1:10ms:10ms", "the period must exceed the stall"),
    ] {
        let r = islands_run_with_faults("glibc/hello", &[], 2, &[], spec);
        let err = r.stderr_text();
        assert_eq!(r.code, Some(1), "POPVMM_FAULTS={spec}: {err}");
        assert!(r.stdout.is_empty(), "POPVMM_FAULTS={spec}: the program ran");
        assert!(
            err.contains(&format!("POPVMM_FAULTS={spec}")) && err.contains(why),
            "POPVMM_FAULTS={spec}: {err}"
        );
    }
}
