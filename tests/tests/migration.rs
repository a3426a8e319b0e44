//! Thread migration end to end: Popcorn's calls through libpopcorn (`guest-agent/`), CPU affinity
//! and OpenMP places, on 2, 4 and 64 islands.
//!
//! Two kinds of guest programs: `popcorn-migrate` (the helper: its output under popvmm is checked
//! line by line) and `migtest`, `rust/migrate`, `ompplaces` (their output does not depend on where
//! they run: natively Popcorn's calls fail with ENOSYS and nothing moves, so the island run must
//! print exactly what the native run prints; the migrations that really happened are counted
//! from `--stats-json`, messages of type `migrate`).
//! The sharing balancer's test is here too: it works by migrating threads.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use popvmm_tests::{
    assert_same_on_islands, faults_on, images, islands_run, islands_run_with_stats, native,
    output_within, popvmm, split_summary, Run,
};

fn stdout(r: &Run) -> String {
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// Successful migrations in a run (`migrate` messages: one per migration).
fn migrations(stats: &serde_json::Value) -> u64 {
    stats["messages"]["by_type"]["migrate"]
        .as_u64()
        .unwrap_or(0)
}

/// Runs `prog args` natively and on `islands` islands (`extra`: more launch options), asserts that
/// both give the same stdout, stderr and status, and returns the island run's statistics.
fn same_as_native(prog: &str, args: &[&str], islands: usize, extra: &[&str]) -> serde_json::Value {
    let n = native(prog, args, &[]);
    let (r, stats) = islands_run_with_stats(prog, args, islands, extra);
    assert_same_on_islands(
        &format!("{prog} {args:?} on {islands} islands {extra:?}"),
        &n,
        &r,
        islands,
    );
    stats
}

/// The program's own part of an island run: stdout, stderr without popvmm's summary, status.
fn island_output(
    prog: &str,
    args: &[&str],
    islands: usize,
    extra: &[&str],
) -> (String, String, Option<i32>) {
    let r = islands_run(prog, args, &[], islands, extra);
    let (rest, _) = split_summary(&r);
    (stdout(&rest), rest.stderr_text(), rest.code)
}

/// A run with its own hang limit (for the runs that show a hang: the suite's HANG is 3 minutes).
fn run_within(prog: &str, args: &[&str], islands: usize, extra: &[&str], limit: Duration) -> Run {
    let out = images();
    let mut cmd = popvmm_tests::tied(popvmm());
    cmd.arg("launch")
        .arg("--rootfs")
        .arg(&out)
        .args(["--islands", &islands.to_string()])
        .args(extra)
        .arg("--")
        .arg(out.join(prog))
        .args(args)
        .current_dir(&out);
    output_within(
        &mut cmd,
        limit,
        &format!("{prog} {args:?} on {islands} islands {extra:?}"),
    )
}

const LIBCS: [&str; 3] = ["glibc", "glibc-pie", "musl"];

// ---------------------------------------------------------------------------------------------
// libpopcorn and popcorn-migrate.

#[test]
fn node_info_and_thread_status_as_popcorn_gives_them() {
    let nodes = "nodes: 4 online, this thread on node 0\n\
                 node 0: status 1, arch 1, distance 0\n\
                 node 1: status 1, arch 1, distance 1\n\
                 node 2: status 1, arch 1, distance 1\n\
                 node 3: status 1, arch 1, distance 1\n\
                 nodes 4-31: offline (status 0, arch -1, distance -1)\n\
                 from node 1: my_nid 1, distances 1 0 1 1\n";
    let status = "status: current_nid 0, proposed_nid -1, peer_nid -1, peer_pid 0\n\
                  check_migrate with nothing proposed: 0\n\
                  popcorn_propose_migration(0, 1): ok\n\
                  status: current_nid 0, proposed_nid 1, peer_nid -1, peer_pid 0\n\
                  check_migrate: 1, now on node 1, callback ran on node 1\n\
                  status: current_nid 1, proposed_nid -1, peer_nid 0, peer_pid getpid()\n\
                  migrate(0): ok\n\
                  status: current_nid 0, proposed_nid -1, peer_nid -1, peer_pid 0\n\
                  popcorn_propose_migration(another thread, 3): ok\n\
                  that thread's check_migrate: 1, now on node 3\n";
    for libc in LIBCS {
        let prog = format!("{libc}/popcorn-migrate");
        let (out, err, code) = island_output(&prog, &["nodes"], 4, &[]);
        assert_eq!(
            (out.as_str(), err.as_str(), code),
            (nodes, "", Some(0)),
            "{prog} nodes"
        );
        let (out, err, code) = island_output(&prog, &["status"], 4, &[]);
        assert_eq!(
            (out.as_str(), err.as_str(), code),
            (status, "", Some(0)),
            "{prog} status"
        );
    }
    // Natively the calls are ENOSYS, and the helper says so.
    let n = native("glibc/popcorn-migrate", &["nodes"], &[]);
    assert_eq!(n.code, Some(1));
    assert_eq!(
        n.stderr_text(),
        "popcorn-migrate: popcorn_get_node_info: ENOSYS (not under popvmm?)\n"
    );
}

/// popcorn-migrate basic's lines but the FPU control ones (see
/// `rounding_mode_and_fpu_control_words_survive_migration`).
fn basic_lines(a: usize, b: usize) -> Vec<String> {
    vec![
        format!("basic: node {a} -> {b} -> {a}"),
        format!("migrate({b}) with a callback: the callback ran on node {b}"),
        format!("on node {b}: TLS, thread pointer, stack, heap: intact"),
        format!("popcorn_migrate({a}, NULL): general registers (all but rax, rcx, r11): intact"),
        format!(
            "popcorn_migrate({b}, regs): resumed at regs.rip, general registers and flags from regs: as set"
        ),
        format!("popcorn_migrate({a}, NULL): xmm0-15 live across it: intact"),
        format!("popcorn_migrate({b}, NULL): x87 st0-7 live across it: intact"),
        format!("back on node {a}: TLS, thread pointer, stack, heap: intact"),
        "basic: 6 migrations".to_string(),
    ]
}

#[test]
fn basic_moves_a_thread_and_back_with_its_registers_tls_stack_and_heap() {
    for libc in LIBCS {
        for islands in [2, 4] {
            let prog = format!("{libc}/popcorn-migrate");
            let (r, stats) = islands_run_with_stats(&prog, &["basic"], islands, &[]);
            let (rest, _) = split_summary(&r);
            let out = stdout(&rest);
            let lines: Vec<String> = out
                .lines()
                .filter(|l| !l.contains("rounding mode"))
                .map(String::from)
                .collect();
            assert_eq!(lines, basic_lines(0, 1), "{prog} on {islands}: {out}");
            assert_eq!(migrations(&stats), 6, "{prog}: {stats}");
        }
    }
}

#[test]
fn rounding_mode_and_fpu_control_words_survive_migration() {
    for islands in [2, 4] {
        let (out, err, code) = island_output("glibc/popcorn-migrate", &["basic"], islands, &[]);
        for node in [1, 0] {
            assert!(
                out.contains(&format!(
                    "node {node}: rounding mode (upward), x87 control word, MXCSR: intact\n"
                )),
                "{out}"
            );
        }
        assert_eq!((err.as_str(), code), ("", Some(0)));
    }
    for n in ["1", "8"] {
        let stats = same_as_native("glibc/migtest", &["fpctl", n], 2, &[]);
        assert_eq!(migrations(&stats).to_string(), n);
    }
}

#[test]
fn every_thread_migrating_back_and_forth_between_barriers() {
    // 32 threads x 100 round trips on 4 islands (about 7 s here: 3200 migrations, ~220,000
    // messages); musl and static-PIE with fewer.
    for (prog, threads, rounds, islands) in [
        ("glibc/popcorn-migrate", 32, 100, 4),
        ("glibc-pie/popcorn-migrate", 8, 20, 2),
        ("musl/popcorn-migrate", 8, 20, 4),
    ] {
        let (t, r) = (threads.to_string(), rounds.to_string());
        let (run, stats) = islands_run_with_stats(prog, &["mt", &t, &r], islands, &[]);
        let (rest, _) = split_summary(&run);
        let total = threads * rounds;
        assert_eq!(
            stdout(&rest),
            format!(
                "mt: {threads} threads x {rounds} rounds on {islands} nodes: {total} migrations\n\
                 shared data: ok (total {total}, expected {total})\n\
                 private data (stack, TLS, heap): ok\n\
                 each thread on the node it migrated to: yes\n"
            ),
            "{prog}: {}",
            rest.stderr_text()
        );
        assert_eq!(rest.code, Some(0));
        assert_eq!(migrations(&stats), total as u64, "{prog}: {stats}");
    }
}

#[test]
fn thirty_two_threads_x_100_round_trips_on_2_islands() {
    let r = run_within(
        "glibc/popcorn-migrate",
        &["mt", "32", "100"],
        2,
        &[],
        Duration::from_secs(60),
    );
    let (rest, _) = split_summary(&r);
    assert!(
        stdout(&rest).contains("shared data: ok (total 3200, expected 3200)"),
        "{}",
        stdout(&rest)
    );
    let list = vec!["1"; 18].join(",");
    let r = run_within(
        "glibc/migtest",
        &["meet", "18"],
        2,
        &["--placement", &format!("list:{list}")],
        Duration::from_secs(30),
    );
    assert_eq!(
        stdout(&split_summary(&r).0),
        "meet: 18 threads met 20 times\n"
    );
}

#[test]
fn one_thread_visits_every_island_of_64() {
    let (run, stats) = islands_run_with_stats("glibc/popcorn-migrate", &["tour"], 64, &[]);
    let (rest, _) = split_summary(&run);
    let mut want = String::from(
        "tour: 64 islands (Popcorn nodes 0-31, the others by CPU affinity), starting on node 0\n",
    );
    for i in (1..64).chain([0]) {
        let peer = if i == 0 { -1 } else { 0 };
        want.push_str(&format!(
            "node {i}: getcpu {i}, current_nid {i}, peer_nid {peer}\n"
        ));
    }
    want.push_str("tour: visited 63 islands, back on node 0: ok\n");
    assert_eq!(stdout(&rest), want, "{}", rest.stderr_text());
    assert_eq!(rest.code, Some(0));
    assert_eq!(migrations(&stats), 64, "{stats}");
    for i in 0..64 {
        assert!(faults_on(&stats, i) > 0, "island {i}: {stats}");
    }
    // On 4 islands: every node by migrate().
    let (out, _, code) = island_output("musl/popcorn-migrate", &["tour"], 4, &[]);
    assert_eq!(
        out,
        "tour: 4 islands, starting on node 0\n\
         node 1: getcpu 1, current_nid 1, peer_nid 0\n\
         node 2: getcpu 2, current_nid 2, peer_nid 0\n\
         node 3: getcpu 3, current_nid 3, peer_nid 0\n\
         node 0: getcpu 0, current_nid 0, peer_nid -1\n\
         tour: visited 3 islands, back on node 0: ok\n"
    );
    assert_eq!(code, Some(0));
}

#[test]
fn bad_input_gets_popcorns_errors_and_popvmm_keeps_running() {
    let block = |me: usize, other: usize| {
        format!(
            "on node {me}:\n\
             \x20 popcorn_propose_migration(unknown tid, 0): ESRCH\n\
             \x20 popcorn_propose_migration(0, 32): EINVAL\n\
             \x20 popcorn_propose_migration(0, -5): EINVAL\n\
             \x20 popcorn_propose_migration(0, 4) (no such island): EAGAIN\n\
             \x20 popcorn_migrate(32, NULL): EINVAL\n\
             \x20 popcorn_migrate(-2, NULL): EINVAL\n\
             \x20 popcorn_migrate(4, NULL) (no such island): EAGAIN\n\
             \x20 popcorn_migrate(-1, NULL) (nothing proposed): EINVAL\n\
             \x20 popcorn_migrate({me}, NULL) (the current node): EBUSY\n\
             \x20 popcorn_migrate({other}, (void *)8) (bad uregs): EINVAL\n\
             \x20 popcorn_migrate({other}, (void *)-4096) (bad uregs): EINVAL\n\
             \x20 popcorn_get_status((void *)8): EINVAL\n\
             \x20 popcorn_get_node_info(NULL, (void *)8): EINVAL\n"
        )
    };
    let want = format!(
        "errors: 4 nodes\n{}{}after the errors: migrate(1) and back: ok\n",
        block(0, 1),
        block(1, 0)
    );
    for libc in ["glibc", "musl"] {
        let prog = format!("{libc}/popcorn-migrate");
        let (run, stats) = islands_run_with_stats(&prog, &["errors"], 4, &[]);
        let (rest, _) = split_summary(&run);
        assert_eq!(stdout(&rest), want, "{prog}: {}", rest.stderr_text());
        assert_eq!(rest.code, Some(0));
        // Only the two good migrations moved the thread.
        assert_eq!(migrations(&stats), 2, "{stats}");
    }
}

/// The stack follows a migrating thread: the top of it is brought writable before the thread
/// starts on its new island, so `bench`'s round trips take (almost) no page faults; without the
/// prefetch each arrival costs a read fault and then a write fault on the stack. popvmm counts
/// each migration once, and times it.
#[test]
fn the_top_of_the_stack_follows_a_migrating_thread() {
    let run = |extra: &[&str]| {
        let (run, stats) =
            islands_run_with_stats("glibc/popcorn-migrate", &["bench", "40"], 2, extra);
        assert_eq!(run.code, Some(0), "{extra:?}: {}", run.stderr_text());
        // 10 warm-up round trips and 40 measured ones.
        assert_eq!(migrations(&stats), 100, "{extra:?}: {stats}");
        assert_eq!(stats["migrations"], 100, "{extra:?}: {stats}");
        assert!(
            stats["migration_latency_us"]["mean"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0,
            "{stats}"
        );
        stats
    };
    let with = run(&[]);
    let without = run(&["--no-stack-prefetch"]);
    let faults = |s: &serde_json::Value| s["faults"]["total"].as_u64().unwrap_or(u64::MAX);
    assert!(faults(&without) >= 200, "{without}");
    assert_eq!(without["faults"]["prefetched"], 0, "{without}");
    // A prefetch that outlasts its patience on a loaded machine leaves a fault or two.
    assert!(faults(&with) <= 10, "{with}");
    assert!(
        with["faults"]["prefetched"].as_u64().unwrap_or(0) >= 100,
        "{with}"
    );
}

#[test]
fn bench_measures_one_way_and_round_trip_latency() {
    // Figures are printed, never asserted (shared 2-core machine): only the report's shape.
    let (out, err, code) = island_output("glibc/popcorn-migrate", &["bench", "20"], 2, &[]);
    assert_eq!((err.as_str(), code), ("", Some(0)), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(
        lines[0],
        "bench: 20 round trips node 0 -> 1 -> 0 (migrate(), measured in the guest)"
    );
    for (line, what) in lines[1..4].iter().zip([
        "one way, node 0 -> 1: ",
        "one way, node 1 -> 0: ",
        "round trip: ",
    ]) {
        assert!(
            line.starts_with(what) && line.contains(" us, p99 "),
            "{line}"
        );
    }
}

#[test]
fn the_4_4_abi_moves_the_calls_to_330_333() {
    // libpopcorn44 (built with -DPOPCORN_ABI_4_4) under --popcorn-abi 4.4.
    let abi = ["--popcorn-abi", "4.4"];
    let (out, err, code) = island_output("glibc/popcorn-migrate-4.4", &["tour"], 4, &abi);
    assert!(
        out.ends_with("tour: visited 3 islands, back on node 0: ok\n"),
        "{out}{err}"
    );
    assert_eq!(code, Some(0));
    // The default library's numbers (900-903) are nothing there...
    let (out, err, code) = island_output("glibc/popcorn-migrate", &["nodes"], 4, &abi);
    assert_eq!(
        (out.as_str(), err.as_str(), code),
        (
            "",
            "popcorn-migrate: popcorn_get_node_info: ENOSYS (not under popvmm?)\n",
            Some(1)
        )
    );
    // ...unless POPCORN_ABI=4.4 switches it at run time.
    let r = islands_run(
        "glibc/popcorn-migrate",
        &["basic"],
        &[("POPCORN_ABI", "4.4")],
        2,
        &abi,
    );
    let out = stdout(&split_summary(&r).0);
    assert!(
        out.contains("popcorn_migrate(1, regs): resumed at regs.rip"),
        "{out}"
    );
    assert!(out.ends_with("basic: 6 migrations\n"), "{out}");
    // And the 4.4 library without --popcorn-abi 4.4 reaches Linux's pkey_alloc/statx numbers,
    // which popvmm does not serve as Popcorn's calls.
    let (_, err, code) = island_output("glibc/popcorn-migrate-4.4", &["nodes"], 2, &[]);
    assert_eq!(code, Some(1), "{err}");
}

// ---------------------------------------------------------------------------------------------
// A thread's state (migtest: same output natively).

#[test]
fn general_registers_tls_stack_and_heap_survive_1_2_and_100_migrations() {
    for (n, islands) in [(1, 2), (2, 2), (100, 2), (100, 4)] {
        let stats = same_as_native("glibc/migtest", &["state", &n.to_string()], islands, &[]);
        assert_eq!(migrations(&stats), n, "state {n} on {islands}: {stats}");
    }
    for prog in ["glibc-pie/migtest", "musl/migtest"] {
        let stats = same_as_native(prog, &["state", "10"], 4, &[]);
        assert_eq!(migrations(&stats), 10, "{prog}: {stats}");
    }
}

#[test]
fn live_xmm_and_x87_values_survive_migration() {
    for (n, islands) in [(1, 2), (2, 4), (100, 4)] {
        let stats = same_as_native("glibc/migtest", &["fpstate", &n.to_string()], islands, &[]);
        assert_eq!(migrations(&stats), n);
    }
    // -O2 vectorised SSE loops and an x87 recurrence, moved by another thread's
    // sched_setaffinity in the middle of the computation, over every island in turn.
    for islands in [2, 4] {
        let stats = same_as_native("glibc/migtest", &["vector", "20"], islands, &[]);
        assert!(migrations(&stats) >= 10, "{stats}");
    }
}

#[test]
fn signals_pending_and_blocked_travel_with_the_thread() {
    // A signal sent to a thread that blocks it (and one it raised) stays pending across the
    // migration, and its handler runs once on the destination when unblocked; 50 signals sent to
    // a thread migrating back and forth are each handled once.
    for (prog, islands) in [
        ("glibc/migtest", 2),
        ("glibc/migtest", 4),
        ("musl/migtest", 4),
    ] {
        let stats = same_as_native(prog, &["signals"], islands, &[]);
        assert!(migrations(&stats) >= 2, "{prog}: {stats}");
    }
}

// ---------------------------------------------------------------------------------------------
// Threads and pages around migrations.

#[test]
fn pthread_create_right_after_the_first_second_and_third_migration() {
    let stats = same_as_native("glibc/migtest", &["spawn", "4"], 4, &[]);
    // main: 1 -> 2 -> 3 -> 0, each of the 12 new threads once.
    assert_eq!(migrations(&stats), 16, "{stats}");
    same_as_native("musl/migtest", &["spawn", "2"], 4, &[]);
}

#[test]
fn back_migration_then_more_work_on_the_same_pages() {
    let stats = same_as_native("glibc/migtest", &["backwork", "64", "5"], 2, &[]);
    assert_eq!(migrations(&stats), 10, "{stats}");
    let stats = same_as_native("glibc/migtest", &["backwork", "16", "20"], 4, &[]);
    assert_eq!(migrations(&stats), 40, "{stats}");
}

#[test]
fn a_sigsegv_on_a_remote_island_ends_the_program_with_139() {
    for islands in [2, 4] {
        for args in [&["segv"][..], &["segv", "thread"][..]] {
            let n = native("glibc/migtest", args, &[]);
            assert_eq!(n.signal, Some(libc::SIGSEGV));
            let (r, stats) = islands_run_with_stats("glibc/migtest", args, islands, &[]);
            assert_same_on_islands(&format!("{args:?} on {islands}"), &n, &r, islands);
            assert_eq!(r.code, Some(139));
            // main: to island 1; the thread (placed on island 1): to 0, then to the last.
            let want = if args.len() == 1 { 1 } else { 2 };
            assert_eq!(migrations(&stats), want, "{args:?} on {islands}: {stats}");
        }
    }
}

#[test]
fn migration_to_an_island_where_the_program_has_no_thread() {
    // Every thread on the origin: island 3 has none until the main thread arrives (its first
    // thread: it gets the layout then), works there (memory, a file, a thread) and comes back.
    let stats = same_as_native(
        "glibc/migtest",
        &["noisland"],
        4,
        &["--placement", "origin"],
    );
    assert_eq!(migrations(&stats), 2, "{stats}");
    assert!(faults_on(&stats, 3) > 0, "{stats}");
    let n = native("glibc/migtest", &["noisland"], &[]);
    assert!(stdout(&n).contains("file lines 5"), "{}", stdout(&n));
}

#[test]
fn island_to_island_without_the_origin() {
    // The new thread starts on island 1 and hops 2, 3, 1, 2, 3, 1, 2, 3: never island 0.
    let stats = same_as_native("glibc/migtest", &["away"], 4, &[]);
    assert_eq!(migrations(&stats), 9, "{stats}");
}

#[test]
fn every_thread_leaves_the_origin_and_the_program_ends_from_island_1() {
    // main goes to island 1 first; 6 threads (placed round-robin) go to islands 1-3; they share a
    // mutex and barriers with no thread on the origin, which still serves files and futexes;
    // main returns on island 1.
    for libc in ["glibc", "musl"] {
        let stats = same_as_native(&format!("{libc}/migtest"), &["allaway", "6"], 4, &[]);
        assert!(migrations(&stats) >= 1, "{stats}");
        assert!(
            stats["messages"]["by_type"]["exit_group"].as_u64() == Some(1),
            "the program ends from another island: {stats}"
        );
    }
}

#[test]
fn a_contended_mutex_with_migrations_inside_and_outside_it_counts_exactly() {
    for (args, islands) in [
        (["mutex", "4", "200"], 4),
        (["mutex", "8", "100"], 4),
        (["mutex", "3", "200"], 2),
    ] {
        let stats = same_as_native("glibc/migtest", &args, islands, &[]);
        assert!(migrations(&stats) > 20, "{args:?}: {stats}");
    }
}

#[test]
fn exit_group_racing_migrations_ends_the_program_with_its_status() {
    // Two threads migrate back and forth while main (on the origin), or a thread on island 2,
    // calls exit_group(3): the program ends with status 3, at once, every time.
    for args in [&["exitrace"][..], &["exitrace", "remote"][..]] {
        let n = native("glibc/migtest", args, &[]);
        assert_eq!(n.code, Some(3));
        for i in 0..5 {
            let r = islands_run("glibc/migtest", args, &[], 4, &[]);
            assert_same_on_islands(&format!("{args:?}, run {i}"), &n, &r, 4);
        }
    }
}

#[test]
fn sched_setaffinity_moves_the_caller_and_other_threads() {
    let want = "sched_setaffinity(0, {1}): 0, getcpu 1\n\
                sched_getaffinity: 1 CPU(s), CPU 1 in it: yes\n\
                sched_setaffinity(0, {0}): 0, getcpu 0\n\
                pthread_setaffinity_np(another thread, {1}): 0, its getcpu then 1\n";
    for islands in [2, 4] {
        let (out, err, code) = island_output("glibc/migtest", &["affinity"], islands, &[]);
        assert_eq!((out.as_str(), err.as_str(), code), (want, "", Some(0)));
    }
    // Natively the same, on a machine with two CPUs or more.
    if std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2) {
        same_as_native("glibc/migtest", &["affinity"], 2, &[]);
    }
}

/// pthread_setaffinity_np on a thread that is between islands (300 calls in a row, each to the
/// next island, none waiting for the thread to arrive) always succeeds, as on Linux. Before, the
/// origin's directory sent the call to the island the thread was moving to (or had just left),
/// which answered ESRCH, or EINVAL when the request fell through to a member's services: 1 to
/// 93 of 300 calls failed on 4 islands.
#[test]
fn affinity_calls_on_a_thread_between_islands_never_fail() {
    let want = "affstorm: 300 calls, 0 failed (first error 0)\n";
    for islands in [2, 4] {
        for run in 0..3 {
            let (out, err, code) =
                island_output("glibc/migtest", &["affstorm", "300"], islands, &[]);
            assert_eq!(
                (out.as_str(), code),
                (want, Some(0)),
                "{islands} islands, run {run}: {err}"
            );
        }
    }
}

#[test]
fn rust_programs_migrate_with_the_popcorn_crate() {
    for islands in [2, 4] {
        let stats = same_as_native("rust/migrate", &[], islands, &[]);
        // main: there and back, 4 threads x 10, the proposal followed and back.
        assert_eq!(migrations(&stats), 44, "{stats}");
    }
}

#[test]
fn openmp_places_bind_the_team_to_islands_0_to_3() {
    // An unmodified OpenMP program: libgomp binds thread i to place i with
    // pthread_setaffinity_np / sched_setaffinity, which moves it to island i. Explicit places
    // need nothing from /sys. With --placement origin every thread starts on island 0, so the
    // binding is what moves them; reversed places move them the other way.
    let env = |places: &'static str| {
        [
            ("OMP_PLACES", places),
            ("OMP_PROC_BIND", "true"),
            ("OMP_NUM_THREADS", "4"),
        ]
    };
    let result = |out: &str| -> String {
        out.lines()
            .filter(|l| l.starts_with("result: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (places, cpus) in [
        ("{0},{1},{2},{3}", [0, 1, 2, 3]),
        ("{3},{2},{1},{0}", [3, 2, 1, 0]),
    ] {
        let n = native("glibc/ompplaces", &[], &env(places));
        assert_eq!(n.code, Some(0));
        for placement in ["origin", "round-robin"] {
            let r = islands_run(
                "glibc/ompplaces",
                &[],
                &env(places),
                4,
                &["--placement", placement],
            );
            let (rest, _) = split_summary(&r);
            let out = stdout(&rest);
            assert_eq!(result(&out), result(&stdout(&n)), "{places} {placement}");
            assert!(result(&out).starts_with("result: team 4,"), "{out}");
            let mut want = String::from("places: 4\n");
            for (i, c) in cpus.iter().enumerate() {
                want.push_str(&format!("thread {i}: cpu {c}, place {i}\n"));
            }
            assert!(out.ends_with(&want), "{places} {placement}:\n{out}");
            assert_eq!((rest.stderr_text().as_str(), rest.code), ("", Some(0)));
        }
    }
}

#[test]
fn openmp_places_cores_bind_the_team() {
    let env = [
        ("OMP_PLACES", "cores"),
        ("OMP_PROC_BIND", "close"),
        ("OMP_NUM_THREADS", "4"),
    ];
    let r = islands_run("glibc/ompplaces", &[], &env, 4, &["--placement", "origin"]);
    let (rest, _) = split_summary(&r);
    assert_eq!(rest.stderr_text(), "");
    assert!(stdout(&rest).contains("places: 4\n"), "{}", stdout(&rest));
}

// ---------------------------------------------------------------------------------------------
// The end from outside, and the popvmm problems.

#[test]
fn sigint_ends_a_program_whose_threads_are_on_remote_islands_at_once() {
    use std::io::{BufRead, BufReader};
    let out = images();
    let mut child = popvmm_tests::tied(popvmm())
        .arg("launch")
        .arg("--rootfs")
        .arg(&out)
        .args(["--islands", "4", "--"])
        .arg(out.join("glibc/migtest"))
        .arg("spin")
        .current_dir(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn popvmm");
    // "ready": three threads spin on islands 1-3 and main waits on island 1.
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    let reader = std::thread::spawn(move || {
        let _ = lines.read_line(&mut first);
        first
    });
    let started = Instant::now();
    while !reader.is_finished() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(reader.is_finished(), "no 'ready' within 60 s");
    assert_eq!(reader.join().expect("reader"), "ready\n");
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let Some(status) = popvmm_tests::wait_within(&mut child, Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("popvmm still running 30 s after SIGINT");
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
}

#[test]
fn back_to_back_migrations_never_get_ebusy() {
    for i in 0..5 {
        let r = run_within(
            "glibc/migtest",
            &["pingpong", "1000"],
            2,
            &[],
            Duration::from_secs(120),
        );
        assert_eq!(
            stdout(&split_summary(&r).0),
            "pingpong: 1000 migrations: ok\n",
            "run {i}"
        );
    }
}

/// The guest programs these tests need exist (a stale images/out would fail confusingly).
#[test]
fn the_migration_images_are_built() {
    for p in [
        "glibc/popcorn-migrate",
        "glibc-pie/popcorn-migrate",
        "musl/popcorn-migrate",
        "glibc/popcorn-migrate-4.4",
        "glibc/migtest",
        "glibc-pie/migtest",
        "musl/migtest",
        "glibc/ompplaces",
        "rust/migrate",
        "lib/glibc/libpopcorn.a",
        "lib/glibc/libpopcorn44.a",
        "lib/musl/libpopcorn.a",
        "lib/musl/libpopcorn44.a",
        "include/popcorn.h",
    ] {
        assert!(
            Path::new(&images().join(p)).exists(),
            "images/out/{p} missing: run images/build.sh"
        );
    }
}

/// The sharing balancer (`--balance sharing`): a producer/consumer whose four threads start on
/// four islands and share one mutex and two condition variables ends exact, its threads are moved
/// together by migrations nobody asked for, and the run costs far fewer messages than with the
/// threads left where they were placed (counts, never times).
#[test]
fn the_sharing_balancer_puts_write_sharers_on_one_island() {
    let native = native("glibc/prodcons", &["4", "10000"], &[]);
    let run = |balance: &str| {
        let (run, stats) = islands_run_with_stats(
            "glibc/prodcons",
            &["4", "10000"],
            4,
            &["--balance", balance],
        );
        let (island, _) = split_summary(&run);
        assert_eq!(island.stdout, native.stdout, "--balance {balance}");
        assert_eq!(island.code, Some(0), "{}", run.stderr_text());
        stats
    };
    let off = run("off");
    let on = run("sharing");
    assert_eq!(off["migrations"], 0, "{off}");
    assert!(on["migrations"].as_u64().unwrap_or(0) >= 1, "{on}");
    let messages = |s: &serde_json::Value| s["messages"]["total"].as_u64().unwrap_or(u64::MAX);
    assert!(
        messages(&on) * 4 < messages(&off),
        "balanced {} messages, unbalanced {}",
        messages(&on),
        messages(&off)
    );
}
