//! Several islands: every guest program of the island suite gives the same stdout, stderr (minus
//! popvmm's exit summary) and exit status as natively with `--islands 2` and `--islands 4` and
//! round-robin placement; shared-memory programs (lock-prefixed increments, Peterson's algorithm,
//! a mutex, false sharing, OpenMP, the demo) end exact with their threads spread over the islands.

use popvmm_tests::{
    assert_same_on_islands, compare_on_islands, faults_on, islands_run, islands_run_with_stats,
    native, split_summary, Run,
};

const LIBCS: [&str; 3] = ["glibc", "glibc-pie", "musl"];
const ISLANDS: [usize; 2] = [2, 4];

fn stdout(r: &Run) -> String {
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// Compares `prog args` with its native run on 2 and on 4 islands.
fn on_2_and_4(prog: &str, args: &[&str], env: &[(&str, &str)]) {
    for n in ISLANDS {
        compare_on_islands(prog, args, env, n);
    }
}

// (a) The island suite of `programs.rs`, on 2 and 4 islands.

#[test]
fn hello_with_arguments_environment_and_exit_code_on_islands() {
    for libc in LIBCS {
        let prog = format!("{libc}/hello");
        on_2_and_4(&prog, &[], &[]);
        on_2_and_4(
            &prog,
            &["one", "two words", ""],
            &[("POPVMM_TEST", "set by --env")],
        );
        on_2_and_4(&prog, &["fail"], &[]);
    }
}

#[test]
fn pthreads_atomics_mutex_condvar_tls_on_islands() {
    for libc in LIBCS {
        on_2_and_4(&format!("{libc}/threads"), &[], &[]);
    }
}

#[test]
fn malloc_heavy_brk_mmap_mremap_on_islands() {
    for libc in LIBCS {
        on_2_and_4(&format!("{libc}/malloc"), &[], &[]);
    }
}

#[test]
fn files_and_floating_point_on_islands() {
    for libc in LIBCS {
        on_2_and_4(&format!("{libc}/files"), &[], &[]);
        on_2_and_4(&format!("{libc}/fp"), &[], &[]);
    }
}

#[test]
fn bad_pointers_get_efault_on_islands() {
    for libc in LIBCS {
        on_2_and_4(&format!("{libc}/efault"), &[], &[]);
    }
}

#[test]
fn fatal_signals_on_islands() {
    for libc in LIBCS {
        on_2_and_4(&format!("{libc}/abort"), &[], &[]);
        for mode in ["null", "wild", "mprotect", "rodata", "munmap"] {
            on_2_and_4(&format!("{libc}/segv"), &[mode], &[]);
        }
        on_2_and_4(&format!("{libc}/divzero"), &[], &[]);
        on_2_and_4(&format!("{libc}/illegal"), &[], &[]);
    }
}

#[test]
fn signal_handlers_frames_altstack_masks_and_faults_on_islands() {
    for libc in LIBCS {
        on_2_and_4(&format!("{libc}/signals"), &[], &[]);
    }
}

#[test]
fn openmp_matmul_and_robust_mutex_on_islands() {
    on_2_and_4("glibc/omp", &[], &[]);
    on_2_and_4("glibc/matmul", &["64"], &[]);
    on_2_and_4("glibc/robust", &[], &[]);
}

#[test]
fn rust_std_threads_on_islands() {
    on_2_and_4("rust/hello", &["a", "b"], &[]);
}

#[test]
fn signals_between_threads_on_islands() {
    // Minimal: one pthread_kill to a thread on island 1 (natively: 0, and the handler runs).
    on_2_and_4("glibc/sigremote", &[], &[]);
    for libc in LIBCS {
        on_2_and_4(&format!("{libc}/sigthread"), &[], &[]);
    }
}

#[test]
fn threads_started_on_other_islands_while_others_allocate() {
    // threadstart starts 32 threads back to back; each mallocs at once, so glibc reserves an
    // arena for it (mmap 128 MiB, munmap of the unaligned head and tail, mprotect) while main maps
    // the next thread stacks (mmap, mprotect): memory calls from several islands at once, served
    // by the origin, whose mmap may reuse a range another thread's munmap has just freed. Before
    // the origin serialized each change with its push to the islands, two pushes could overtake
    // each other (an Unmap applied after the Map that reused its range, a Protect before its Map)
    // and a new thread stack or arena was lost on the island: "popvmm: thread N: memory fault at
    // rip R" (-v) and SIGSEGV, R being the first push on the new stack in __clone3 or the first
    // write into the arena in alloc_new_heap. That happened in about one run in 7 with every
    // thread on island 1, one in 50 with round-robin; rust/hello (std threads malloc as they
    // start) about one in 70.
    let n = native("glibc/threadstart", &[], &[]);
    assert_eq!(n.code, Some(0));
    let on_island_1 = format!("list:{}", ["1"; 32].join(","));
    for (runs, placement) in [(40, on_island_1.as_str()), (30, "round-robin")] {
        for i in 0..runs {
            let r = islands_run(
                "glibc/threadstart",
                &[],
                &[],
                2,
                &["--placement", placement],
            );
            assert_same_on_islands(
                &format!("threadstart --placement {placement}, run {i}"),
                &n,
                &r,
                2,
            );
        }
    }
    let n = native("rust/hello", &["a", "b"], &[]);
    for i in 0..40 {
        let r = islands_run("rust/hello", &["a", "b"], &[], 2, &[]);
        assert_same_on_islands(&format!("rust/hello, run {i}"), &n, &r, 2);
    }
}

#[test]
fn placements_origin_and_list_give_the_native_result() {
    let n = native("glibc/threads", &[], &[]);
    for placement in ["origin", "round-robin", "list:3,2,1,0", "list:1,1,1,1"] {
        let r = islands_run("glibc/threads", &[], &[], 4, &["--placement", placement]);
        assert_same_on_islands(&format!("threads --placement {placement}"), &n, &r, 4);
    }
}

// (b) to (f): shared memory across islands.

/// Asserts that each of `islands` islands resolved page faults in the run whose `--stats-json`
/// is `stats`: its threads really ran there (a run that kept every thread on one island would
/// pass the output checks without testing anything).
fn assert_every_island_worked(what: &str, stats: &serde_json::Value, islands: usize) {
    assert_eq!(stats["islands"], islands, "{what}: {stats}");
    for i in 0..islands {
        assert!(
            faults_on(stats, i) > 0,
            "{what}: no page fault resolved on island {i}: {stats}"
        );
    }
    assert!(
        stats["messages"]["total"].as_u64().unwrap_or(0) > 0,
        "{what}: {stats}"
    );
}

#[test]
fn lock_prefixed_increments_of_one_word_on_4_islands_are_exact() {
    // 4 threads on 4 islands (round-robin: islands 1, 2, 3, 0), 100 000 increments each.
    let (r, stats) = islands_run_with_stats("glibc/lockinc", &["4", "100000"], 4, &[]);
    let (rest, _) = split_summary(&r);
    assert_eq!(
        stdout(&rest),
        "lockinc: 4 threads x 100000 increments\ntotal: 400000 (expected 400000)\n",
        "{}",
        rest.stderr_text()
    );
    assert_eq!(rest.code, Some(0));
    assert_every_island_worked("lockinc", &stats, 4);
    // The same with the threads placed explicitly, one per island, and with musl.
    let n = native("glibc/lockinc", &["4", "100000"], &[]);
    let r = islands_run(
        "glibc/lockinc",
        &["4", "100000"],
        &[],
        4,
        &["--placement", "list:0,1,2,3"],
    );
    assert_same_on_islands("lockinc list:0,1,2,3", &n, &r, 4);
    on_2_and_4("musl/lockinc", &["4", "100000"], &[]);
    // More contention: 8 threads, two per island, a million increments each.
    let (r, stats) = islands_run_with_stats("glibc/lockinc", &["8", "1000000"], 4, &[]);
    let (rest, _) = split_summary(&r);
    assert_eq!(
        stdout(&rest),
        "lockinc: 8 threads x 1000000 increments\ntotal: 8000000 (expected 8000000)\n"
    );
    assert_every_island_worked("lockinc 8", &stats, 4);
}

/// The holding window against thrashing (on by default; decision 17 of `coherency`): a lock word
/// bounced between writers on 2 and 4 islands is held for a while by each new writer, and the
/// results stay exact, with the window on and off. Lock-prefixed increments mostly batch by
/// themselves (a vCPU runs many between two transfers); the producer/consumer's mutex page bounces
/// at every item or so, so requests do arrive inside windows there: the runs report some.
#[test]
fn contended_pages_end_exact_with_the_holding_window_on_and_off() {
    let native_prodcons = native("glibc/prodcons", &["4", "3000"], &[]);
    let mut windows_on = 0;
    for islands in ISLANDS {
        for window in ["on", "off"] {
            let what = format!("lockinc on {islands} islands, --hold-window {window}");
            let (r, stats) = islands_run_with_stats(
                "glibc/lockinc",
                &["4", "50000"],
                islands,
                &["--hold-window", window],
            );
            let (rest, _) = split_summary(&r);
            assert_eq!(
                stdout(&rest),
                "lockinc: 4 threads x 50000 increments\ntotal: 200000 (expected 200000)\n",
                "{what}: {}",
                rest.stderr_text()
            );
            assert_eq!(rest.code, Some(0), "{what}");
            assert_every_island_worked(&what, &stats, islands);
            let windows = stats["hold_windows"].as_u64().unwrap_or(0);
            if window == "on" {
                windows_on += windows;
            } else {
                assert_eq!(windows, 0, "{what}: {stats}");
            }
            // A producer/consumer around one contended mutex and two condition variables.
            let what = format!("prodcons on {islands} islands, --hold-window {window}");
            let (r, stats) = islands_run_with_stats(
                "glibc/prodcons",
                &["4", "3000"],
                islands,
                &["--hold-window", window],
            );
            assert_same_on_islands(&what, &native_prodcons, &r, islands);
            let windows = stats["hold_windows"].as_u64().unwrap_or(0);
            if window == "on" {
                windows_on += windows;
            } else {
                assert_eq!(windows, 0, "{what}: {stats}");
            }
        }
    }
    assert!(windows_on > 0, "no holding window in any run");
}

/// The result lines of `peterson K THREADS`, parsed: (section, violations, total, expected).
fn peterson_results(out: &str) -> Vec<(String, i64, i64, i64)> {
    out.lines()
        .map(|l| {
            let (name, rest) = l.split_once(':').expect("name: ...");
            let nums: Vec<i64> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().expect("number"))
                .collect();
            // "2 threads x K entries: violations V, total T (expected E)"
            assert_eq!(nums.len(), 5, "{l}");
            (name.to_string(), nums[2], nums[3], nums[4])
        })
        .collect()
}

#[test]
fn peterson_and_a_mutex_never_let_two_threads_in() {
    // K = 300 entries per thread: when the two threads really alternate, every entry moves pages
    // between the islands (thousands of faults, a few seconds).
    for (prog, islands, placement) in [
        ("glibc/peterson", 2, "round-robin"),
        ("glibc/peterson", 4, "round-robin"),
        // Peterson's threads on islands 0 and 1 (both variants), the mutex's four on 0..3.
        ("glibc/peterson", 4, "list:0,1,0,1,0,1,2,3"),
        ("musl/peterson", 4, "round-robin"),
    ] {
        let what = format!("{prog} on {islands} islands, {placement}");
        let (r, stats) =
            islands_run_with_stats(prog, &["300", "4"], islands, &["--placement", placement]);
        let (rest, _) = split_summary(&r);
        let out = stdout(&rest);
        let results = peterson_results(&out);
        assert_eq!(
            results,
            [
                ("peterson".into(), 0, 600, 600),
                ("peterson, one page per variable".into(), 0, 600, 600),
                ("mutex".into(), 0, 1200, 1200)
            ],
            "{what}: {out}"
        );
        assert_eq!(rest.code, Some(0), "{what}: {}", rest.stderr_text());
        assert_every_island_worked(&what, &stats, islands);
        let n = native(prog, &["300", "4"], &[]);
        assert_same_on_islands(&what, &n, &r, islands);
    }
}

#[test]
fn false_sharing_of_one_page_ends_exact() {
    let want: String = (0..4)
        .map(|i| format!("word {i}: 100000\n"))
        .chain(["untouched words still zero: yes\n".to_string()])
        .collect();
    for islands in ISLANDS {
        let (r, stats) = islands_run_with_stats("glibc/falseshare", &["4", "100000"], islands, &[]);
        let (rest, _) = split_summary(&r);
        assert_eq!(stdout(&rest), want, "{islands} islands");
        assert_eq!(rest.code, Some(0));
        assert_every_island_worked("falseshare", &stats, islands);
    }
    // Eight writers of one page on four islands, two per island.
    let r = islands_run("glibc/falseshare", &["8", "50000"], &[], 4, &[]);
    let n = native("glibc/falseshare", &["8", "50000"], &[]);
    assert!(stdout(&n).contains("word 7: 50000\n"));
    assert_same_on_islands("falseshare 8", &n, &r, 4);
    on_2_and_4("musl/falseshare", &[], &[]);
}

#[test]
fn openmp_with_4_threads_on_4_islands_prints_the_native_result() {
    let n = native("glibc/omp4", &["4"], &[]);
    assert!(
        stdout(&n).starts_with("team: 4 threads, all checked in: 1, atomics: 4000\n"),
        "{}",
        stdout(&n)
    );
    let (r, stats) = islands_run_with_stats("glibc/omp4", &["4"], 4, &[]);
    assert_same_on_islands("omp4 on 4 islands", &n, &r, 4);
    assert_every_island_worked("omp4", &stats, 4);
    // The team size from the environment (0: the program leaves it to OMP_NUM_THREADS).
    let env = [("OMP_NUM_THREADS", "4")];
    let n = native("glibc/omp4", &["0"], &env);
    assert!(stdout(&n).starts_with("team: 4 threads"), "{}", stdout(&n));
    let r = islands_run("glibc/omp4", &["0"], &env, 4, &[]);
    assert_same_on_islands("omp4 OMP_NUM_THREADS=4", &n, &r, 4);
    // The suite's own OpenMP program with 4 threads.
    compare_on_islands("glibc/omp", &[], &env, 4);
}

#[test]
fn the_demo_matches_native_on_4_islands() {
    let n = native("glibc/demo", &[], &[]);
    let out = stdout(&n);
    assert!(out.starts_with("demo: 4 threads"), "{out}");
    assert!(out.ends_with("serial check: ok\n"), "{out}");
    let (r, stats) = islands_run_with_stats("glibc/demo", &[], 4, &[]);
    assert_same_on_islands("demo on 4 islands", &n, &r, 4);
    assert_every_island_worked("demo", &stats, 4);
    // Its summary on stderr says what the JSON says.
    let (_, summary) = split_summary(&r);
    let total = stats["messages"]["total"].as_u64().expect("total");
    assert!(
        summary[0].starts_with(&format!("popvmm: 4 islands: {total} messages (")),
        "{summary:?} vs {stats}"
    );
    let faults = stats["faults"]["total"].as_u64().expect("faults");
    assert!(
        summary[1].starts_with(&format!("popvmm: page faults: {faults} (")),
        "{summary:?} vs {stats}"
    );
    // The pages that cost the most: in the JSON most first, named by the summary's third line.
    let hot = stats["hot_pages"].as_array().expect("hot_pages");
    assert!(!hot.is_empty() && hot.len() <= 3, "{stats}");
    let costs: Vec<u64> = hot.iter().filter_map(|p| p["messages"].as_u64()).collect();
    assert_eq!(costs.len(), hot.len(), "{stats}");
    assert!(
        costs.windows(2).all(|w| w[0] >= w[1]) && costs[0] > 0,
        "{stats}"
    );
    let first = format!(
        "popvmm: messages by page, most first: {} {} (",
        hot[0]["address"].as_str().expect("address"),
        costs[0]
    );
    assert!(summary[2].starts_with(&first), "{summary:?} vs {stats}");
    // The demo's workers meet under one mutex: some page is written on several islands.
    assert!(
        hot.iter().any(|p| p["pattern"] == "write-shared"),
        "{stats}"
    );
    // The JSON adds up: messages by type and by link, faults by kind and by island.
    let by_type: u64 = stats["messages"]["by_type"]
        .as_object()
        .expect("by_type")
        .values()
        .filter_map(|v| v.as_u64())
        .sum();
    assert_eq!(by_type, total, "{stats}");
    let by_link = stats["messages"]["by_link"].as_array().expect("by_link");
    let mut link_sum = 0;
    for l in by_link {
        let (f, t) = (
            l["from"].as_u64().expect("from"),
            l["to"].as_u64().expect("to"),
        );
        assert!(f < 4 && t < 4 && f != t, "{l}");
        link_sum += l["messages"].as_u64().expect("messages");
    }
    assert_eq!(link_sum, total, "{stats}");
    let kinds: u64 = ["read_missing", "write_missing", "write_protect"]
        .iter()
        .map(|k| stats["faults"][k].as_u64().expect("kind"))
        .sum();
    assert_eq!(kinds, faults, "{stats}");
    // Other sizes: 8 threads on 4 islands, 2 threads on 2, and musl.
    on_2_and_4("glibc/demo", &["8", "4096"], &[]);
    compare_on_islands("glibc/demo", &["2"], &[], 2);
    compare_on_islands("musl/demo", &[], &[], 4);
}

#[test]
fn launch_without_a_program_runs_the_demo() {
    let r = popvmm_tests::output_within(
        popvmm_tests::tied(popvmm_tests::popvmm()).args(["launch", "--islands", "4"]),
        popvmm_tests::HANG,
        "launch --islands 4",
    );
    // popvmm runs the demo natively and on the islands itself, then prints the island run's
    // output, the comparison and the traffic.
    let n = native("glibc/demo", &["4"], &[]);
    assert_eq!(n.code, Some(0));
    let out = stdout(&r);
    assert_eq!(
        r.code,
        Some(0),
        "{out}\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        out.contains(&stdout(&n)),
        "the demo's output is not the native one:\n{out}"
    );
    assert!(
        out.contains("popvmm: output and exit status identical to the native run's"),
        "{out}"
    );
    assert!(
        out.contains("messages (") && out.contains("page faults:"),
        "{out}"
    );
}

/// Island kernels share nothing: threads on islands 1-3 open, read, lseek, dup, fcntl, chdir and
/// close files, change the umask, install and run signal handlers, and end the program with
/// exit_group; the output is the native one, and the calls travelled to the origin as messages.
#[test]
fn files_signals_and_exit_are_served_by_the_origin_for_other_islands() {
    for libc in LIBCS {
        let prog = format!("{libc}/sharenothing");
        let n = native(&prog, &[], &[]);
        assert_eq!(n.code, Some(7), "{prog} natively: {}", n.stderr_text());
        let (run, stats) = islands_run_with_stats(&prog, &[], 4, &["--placement", "round-robin"]);
        assert_same_on_islands(&format!("{prog} on 4 islands"), &n, &run, 4);
        let by_type = &stats["messages"]["by_type"];
        for ty in ["file_request", "sigaction_request", "exit_group", "exit"] {
            assert!(
                by_type[ty].as_u64().is_some_and(|c| c > 0),
                "{prog}: no {ty} message travelled: {by_type}"
            );
        }
    }
}

/// Ranges (`--batch-ranges`): the Fetches of a read-ahead window and the Copies answering them go
/// as one message each way (and the pages in one UFFDIO_COPY). seqread gives the native output
/// on 2 and 4 islands with ranges on and off; on 2 islands the messages that carry pages (Fetch,
/// Copy, Copy Void, and their ranges) drop below a quarter with ranges, all messages together
/// below 1/2.5 (the Invalid and Ack of each page the program rewrites are votes about one page,
/// which ranges do not carry), while the faults stay about the same. Counts only, never times.
#[test]
fn ranges_cut_the_messages_of_sequential_reads() {
    let args = ["2048"];
    let n = native("glibc/seqread", &args, &[]);
    assert_eq!(n.code, Some(0), "{}", n.stderr_text());
    let count = |s: &serde_json::Value, types: &[&str]| -> u64 {
        types
            .iter()
            .map(|t| s["messages"]["by_type"][t].as_u64().unwrap_or(0))
            .sum()
    };
    const PAGE_TYPES: [&str; 6] = [
        "fetch",
        "copy",
        "copy_void",
        "fetch_range",
        "copy_range",
        "copy_void_range",
    ];
    let total = |s: &serde_json::Value| s["messages"]["total"].as_u64().unwrap_or(0);
    let faults = |s: &serde_json::Value| s["faults"]["total"].as_u64().unwrap_or(0);
    for islands in [2, 4] {
        let mut stats = Vec::new();
        for batch in ["off", "on"] {
            let (run, s) =
                islands_run_with_stats("glibc/seqread", &args, islands, &["--batch-ranges", batch]);
            let what = format!("seqread on {islands} islands, ranges {batch}");
            assert_same_on_islands(&what, &n, &run, islands);
            stats.push(s);
        }
        let (off, on) = (&stats[0], &stats[1]);
        assert_eq!(off["ranges"]["sent"], 0, "{off}");
        assert_eq!(count(off, &PAGE_TYPES[3..]), 0, "{off}");
        let sent = on["ranges"]["sent"].as_u64().unwrap_or(0);
        let pages = on["ranges"]["pages"].as_u64().unwrap_or(0);
        assert!(sent > 0 && pages >= 4 * sent, "{on}");
        assert!(on["ranges"]["copies_saved"].as_u64() > Some(0), "{on}");
        // A range is one message, under its own type: the totals still add up.
        assert_eq!(
            count(on, &PAGE_TYPES[3..]),
            sent,
            "every range sent is counted once: {on}"
        );
        if islands == 2 {
            assert!(
                count(on, &PAGE_TYPES) * 4 < count(off, &PAGE_TYPES),
                "page messages: {} with ranges, {} without",
                count(on, &PAGE_TYPES),
                count(off, &PAGE_TYPES)
            );
            assert!(
                total(on) * 5 < total(off) * 2,
                "messages: {} with ranges, {} without",
                total(on),
                total(off)
            );
        }
        assert!(
            faults(on) * 4 <= faults(off) * 5 && faults(on) * 2 >= faults(off),
            "{islands} islands: {} faults with ranges, {} without",
            faults(on),
            faults(off)
        );
    }
}

/// Read-ahead: a thread on island 1 reads large arrays written on island 0 (sequentially, with a
/// stride of 3 pages, backwards), writes a fresh buffer from start to end, and reads an array
/// again after island 0 rewrote it. With read-ahead each fault that continues the pattern brings
/// the next pages too (up to 32), so the faults on missing pages drop by a large factor; the
/// output is the native one either way. Counts only, never times.
#[test]
fn read_ahead_cuts_the_faults_of_sequential_reads() {
    let args = ["2048"];
    let n = native("glibc/seqread", &args, &[]);
    assert_eq!(n.code, Some(0), "{}", n.stderr_text());
    let missing = |s: &serde_json::Value| {
        s["faults"]["read_missing"].as_u64().unwrap_or(0)
            + s["faults"]["write_missing"].as_u64().unwrap_or(0)
    };
    let (off, off_stats) =
        islands_run_with_stats("glibc/seqread", &args, 2, &["--read-ahead", "off"]);
    assert_same_on_islands("seqread, read-ahead off", &n, &off, 2);
    assert_eq!(off_stats["faults"]["read_ahead"], 0, "{off_stats}");
    // 2048 pages read in order, 682 with a stride, 2048 backwards, 2048 written, 2048 read
    // again: one fault each.
    assert!(missing(&off_stats) >= 8000, "{off_stats}");
    for islands in [2, 4] {
        let (on, on_stats) =
            islands_run_with_stats("glibc/seqread", &args, islands, &["--read-ahead", "on"]);
        let what = format!("seqread on {islands} islands, read-ahead on");
        assert_same_on_islands(&what, &n, &on, islands);
        let f = &on_stats["faults"];
        assert!(
            missing(&on_stats) * 5 <= missing(&off_stats),
            "{what}: {} faults on missing pages, {} without read-ahead: {on_stats}",
            missing(&on_stats),
            missing(&off_stats)
        );
        let asked = f["read_ahead"].as_u64().unwrap_or(0);
        assert!(asked >= 6000, "{what}: {on_stats}");
        // Nearly every page brought was seen used (the pattern went past it).
        let used = f["read_ahead_used"].as_u64().unwrap_or(0);
        assert!(used * 10 >= asked * 9, "{what}: {on_stats}");
    }
}

/// `popvmm launch -vv ... 2>&1 | head`: once the reader of stderr is gone, the diagnostics are
/// dropped and the program runs to its end. Before, the first failed write panicked in an island
/// kernel thread, the handler that ends the program panicked on its own message, and the run hung
/// forever with every thread asleep.
#[test]
fn a_closed_stderr_never_hangs_a_verbose_run() {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::Duration;
    let mut child = popvmm_tests::tied(popvmm_tests::popvmm())
        .args(["launch", "--islands", "2", "-vv", "--", "glibc/demo", "2"])
        .current_dir(popvmm_tests::images())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn popvmm");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let mut first = [0u8; 256];
    let n = stderr.read(&mut first).expect("read the first diagnostics");
    assert!(n > 0, "-vv printed nothing");
    drop(stderr);
    let Some(status) = popvmm_tests::wait_within(&mut child, Duration::from_secs(120)) else {
        let _ = child.kill();
        panic!("popvmm still running 120 s after its stderr closed: hung");
    };
    // The demo's own exit status: it ran to its end (its stdout was discarded, not closed).
    assert_eq!(status.code(), Some(0), "popvmm ended with {status}");
}
