//! The vDSO (`vmm/src/kernel/vdso.rs`): the time calls a program makes through glibc or musl are
//! served in its own user mode, without an exit, and give what the kernel gives.
//!
//! `timecalls` checks every answer of libc against the raw system call and its own earlier
//! answers, and prints only counts: its output must be the native one on 1, 2 and 4 islands, with
//! `--vdso on` and `off`. The counters of `--stats-json` then say who served the calls: with the
//! vDSO on, most by the vDSO (`vdso_calls`) and the rest as system calls (`time_syscalls`), which
//! add up to the system calls the same run makes with it off, where `vdso_calls` is 0.

use popvmm_tests::{
    assert_same, assert_same_on_islands, islands_run_with_stats, native, split_summary,
};

const LIBCS: [&str; 2] = ["glibc", "musl"];
const THREADS: u64 = 4;
const ITERATIONS: u64 = 500;

fn counter(stats: &serde_json::Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}

#[test]
fn time_calls_give_the_kernels_answers_and_skip_the_exit_with_the_vdso_on() {
    let args = [THREADS.to_string(), ITERATIONS.to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for libc in LIBCS {
        let prog = format!("{libc}/timecalls");
        let n = native(&prog, &args, &[]);
        assert_eq!(n.code, Some(0), "{prog} natively: {}", n.stderr_text());
        for islands in [1, 2, 4] {
            let mut served = [0u64; 2];
            for (i, vdso) in ["on", "off"].into_iter().enumerate() {
                let what = format!("{prog} on {islands} island(s), --vdso {vdso}");
                let (r, stats) = islands_run_with_stats(&prog, &args, islands, &["--vdso", vdso]);
                if islands == 1 {
                    assert_same(&what, &n, &r);
                } else {
                    assert_same_on_islands(&what, &n, &r, islands);
                    let (_, summary) = split_summary(&r);
                    assert_eq!(
                        summary[0].contains("time calls served by the vDSO (exits avoided)"),
                        vdso == "on",
                        "{what}: {}",
                        summary[0]
                    );
                }
                let (by_vdso, by_syscall) = (
                    counter(&stats, "vdso_calls"),
                    counter(&stats, "time_syscalls"),
                );
                if vdso == "on" {
                    // Each iteration of each thread reads the six clocks the vDSO serves; the
                    // first ~2 ms (calibration) and the CPU-time clock are system calls.
                    assert!(
                        by_vdso >= THREADS * ITERATIONS * 6,
                        "{what}: {by_vdso} calls served by the vDSO"
                    );
                    assert!(
                        by_syscall * 2 < by_vdso,
                        "{what}: {by_syscall} time system calls, {by_vdso} by the vDSO"
                    );
                } else {
                    assert_eq!(by_vdso, 0, "{what}");
                }
                served[i] = by_vdso + by_syscall;
            }
            // The same calls, served one way or the other.
            assert_eq!(
                served[0], served[1],
                "{prog} on {islands} island(s): time calls with the vDSO on and off"
            );
        }
    }
}

/// A thread that loops on clock_gettime and sched_getcpu (so that it is mostly inside the vDSO
/// when popvmm stops it) is moved from island to island: its clock never goes backwards, stays on
/// the kernel's, and getcpu follows it.
#[test]
fn a_thread_migrating_while_it_reads_the_clock_stays_correct() {
    for libc in LIBCS {
        let prog = format!("{libc}/timecalls");
        let args = ["migrate", "12"];
        let n = native(&prog, &args, &[]);
        assert_eq!(n.code, Some(0), "{prog} natively: {:?}", n);
        for islands in [2, 4] {
            let what = format!("{prog} migrate on {islands} islands");
            let (r, stats) = islands_run_with_stats(&prog, &args, islands, &[]);
            assert_same_on_islands(&what, &n, &r, islands);
            let migrations = stats["messages"]["by_type"]["migrate"]
                .as_u64()
                .unwrap_or(0);
            assert!(migrations >= 6, "{what}: {migrations} migrations: {stats}");
            assert!(counter(&stats, "vdso_calls") > 1000, "{what}: {stats}");
        }
    }
}

/// With `--vdso on` the program finds the vDSO as it does natively (AT_SYSINFO_EHDR at an ELF
/// header that /proc/self/maps names `[vdso]`); with `off` there is none.
#[test]
fn the_program_finds_the_vdso_only_with_it_on() {
    for libc in LIBCS {
        let prog = format!("{libc}/timecalls");
        let n = native(&prog, &["vdso"], &[]);
        assert_eq!(String::from_utf8_lossy(&n.stdout), "vdso: yes\n");
        let (r, _) = islands_run_with_stats(&prog, &["vdso"], 1, &["--vdso", "on"]);
        assert_same(&format!("{prog} vdso, --vdso on"), &n, &r);
        let (r, _) = islands_run_with_stats(&prog, &["vdso"], 1, &["--vdso", "off"]);
        assert_eq!(
            (String::from_utf8_lossy(&r.stdout).as_ref(), r.code),
            ("vdso: no\n", Some(0)),
            "{prog} vdso, --vdso off: {}",
            r.stderr_text()
        );
    }
}
