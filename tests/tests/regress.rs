//! Regressions of the island kernel's file, memory, futex and thread calls (`images/src/regress.c`):
//! each mode runs natively in a read-only root like popvmm's and on an island, gives the same
//! output, and the answers Linux gives are checked by name.

use popvmm_tests::{answer, compare_in_root, Run};

const PROG: &str = "glibc/regress";

fn run(mode: &str) -> String {
    let r: Run = compare_in_root(PROG, &[mode], &[]);
    String::from_utf8_lossy(&r.stdout).into_owned()
}

#[test]
fn readv_with_a_first_buffer_over_one_mib() {
    let out = run("readv");
    assert_eq!(answer(&out, "readv([2 MiB, 16 B])"), "2097168", "{out}");
}

#[test]
fn dotdot_after_a_symlink_is_the_parent_of_its_target() {
    let out = run("dotdot");
    assert_eq!(answer(&out, "open(data/tree/a/../x)"), "dir/x", "{out}");
    assert_eq!(answer(&out, "openat(a, ../x)"), "dir/x", "{out}");
    assert_eq!(answer(&out, "open(../x) from a"), "dir/x", "{out}");
    assert_eq!(answer(&out, "open(x) from a/.."), "dir/x", "{out}");
}

#[test]
fn readlink_of_a_file_that_is_no_symlink_is_einval() {
    let out = run("readlink");
    assert_eq!(
        answer(&out, "readlink(data/poem.txt)"),
        "-1 EINVAL",
        "{out}"
    );
    assert_eq!(
        answer(&out, "realpath(data/tree/a/../x)"),
        "/data/tree/dir/x",
        "{out}"
    );
}

#[test]
fn a_dirfd_that_is_a_file_is_enotdir() {
    let out = run("dirfd");
    assert_eq!(answer(&out, "openat(file, x)"), "-1 ENOTDIR", "{out}");
    assert_eq!(
        answer(&out, "openat(file, /data/poem.txt) (absolute)"),
        "0",
        "{out}"
    );
}

#[test]
fn writes_to_the_read_only_root_are_erofs() {
    let out = run("erofs");
    assert_eq!(answer(&out, "mkdir(data/new)"), "-1 EROFS", "{out}");
    assert_eq!(answer(&out, "mkdir(nope/new)"), "-1 ENOENT", "{out}");
    assert_eq!(answer(&out, "fchmod(999)"), "-1 EBADF", "{out}");
    assert_eq!(answer(&out, "unlink(data/poem.txt)"), "-1 EROFS", "{out}");
}

#[test]
fn madvise_dontneed_brings_back_the_file_bytes() {
    let out = run("madvise-data");
    assert!(out.contains(".data value after DONTNEED: 42"), "{out}");
    let out = run("madvise-text");
    assert!(
        out.contains("text_function(4) after DONTNEED = 13"),
        "{out}"
    );
    let out = run("madvise-file");
    assert_eq!(
        answer(&out, "madvise(file mapping, DONTNEED)"),
        "0",
        "{out}"
    );
    let mapped = out.lines().find_map(|l| l.strip_prefix("mapped: "));
    let after = out.lines().find_map(|l| l.strip_prefix("after DONTNEED: "));
    assert_eq!(after, mapped, "{out}");
}

#[test]
fn reads_into_a_buffer_cut_short_return_what_fits() {
    let out = run("shortread");
    assert_eq!(answer(&out, "read(10 into the last 4 bytes)"), "4", "{out}");
    assert_eq!(
        answer(&out, "read(10 into the unmapped page)"),
        "-1 EFAULT",
        "{out}"
    );
}

#[test]
fn futex_on_bad_addresses() {
    let out = run("futex");
    assert_eq!(answer(&out, "WAKE(unaligned)"), "-1 EINVAL", "{out}");
    assert_eq!(answer(&out, "WAKE(kernel)"), "-1 EFAULT", "{out}");
    assert_eq!(answer(&out, "WAKE(NULL)"), "-1 EFAULT", "{out}");
    assert_eq!(answer(&out, "WAKE_PRIVATE(NULL)"), "0", "{out}");
}

#[test]
fn clone_settls_with_a_non_canonical_address_is_eperm() {
    let out = run("settls");
    assert_eq!(
        answer(&out, "clone(CLONE_SETTLS, 0x8000000000000000)"),
        "-1 EPERM",
        "{out}"
    );
}

/// A thread blocked opening a FIFO: the other thread's file calls go on, then it opens the FIFO
/// for writing and the reader gets what it wrote. With the descriptor table locked across the
/// blocking open, the run hangs (and the hang guard fails the test).
#[test]
fn a_thread_blocked_opening_a_fifo_does_not_stop_the_others() {
    use popvmm_tests::{assert_same, launch_in, output_within, scratch};
    let root = scratch("fifo-root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(root.join("file"), "some bytes\n").expect("write");
    let fifo = std::ffi::CString::new(root.join("fifo").to_str().expect("utf-8").as_bytes())
        .expect("path");
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
    let mut cmd = popvmm_tests::tied(popvmm_tests::images().join(PROG));
    cmd.arg("fifo").current_dir(&root);
    let n = output_within(
        &mut cmd,
        std::time::Duration::from_secs(60),
        "fifo natively",
    );
    let i = output_within(
        &mut launch_in(&root, PROG, &["fifo"], &[], &[]),
        std::time::Duration::from_secs(60),
        "fifo on an island",
    );
    let _ = std::fs::remove_dir_all(&root);
    assert_same("regress fifo", &n, &i);
    let out = String::from_utf8_lossy(&i.stdout);
    assert!(out.contains("reader: open ok, read 5: hello"), "{out}");
}

/// Runs `regress MODE` under popvmm with nobody reading its stdout; returns its stdout-less
/// status, stderr and popvmm's peak RSS in MB (from wait4's rusage).
// The child is reaped with wait4 (for its rusage), which clippy does not see.
#[allow(clippy::zombie_processes)]
fn peak_rss_mb(mode: &str) -> (String, i64) {
    use std::process::Stdio;
    let mut cmd = popvmm_tests::launch_in(&popvmm_tests::images(), PROG, &[mode], &[], &[]);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn popvmm");
    // Nobody reads stdout; stderr gets one line (it fits the pipe).
    let _stdout = child.stdout.take();
    let pid = child.id() as libc::pid_t;
    let deadline = std::time::Instant::now() + popvmm_tests::HANG;
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 writes it and the status.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child, with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break (status, usage);
        }
        assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "regress {mode}: still running after {:?}",
                popvmm_tests::HANG
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "regress {mode}: {err}"
    );
    (err, usage.ru_maxrss / 1024)
}

/// 40 threads each writev 16 iovecs of one 1 MiB buffer to a pipe nobody reads: popvmm's host
/// memory stays bounded (it used to gather 16 MiB per call: 640 MB).
#[test]
fn writev_to_a_full_pipe_holds_bounded_host_memory() {
    let (err, max_rss_mb) = peak_rss_mb("writev-mem");
    assert!(err.contains("writers started"), "{err}");
    assert!(
        max_rss_mb < 256,
        "popvmm's peak RSS was {max_rss_mb} MB with 40 writers blocked on a full pipe"
    );
}

/// 16 anonymous 64 MiB mmaps with one page written in each: resident memory follows what the
/// program touches (the prefault made all of them resident: about 1 GB; now at most
/// `PREFAULT_BUDGET`, 64 MiB, ahead of the program).
#[test]
fn untouched_mappings_do_not_become_resident() {
    let out = run("untouched");
    assert_eq!(out, "16 x 64 MiB mapped, one page written in each\n");
    let (_, max_rss_mb) = peak_rss_mb("untouched");
    assert!(
        max_rss_mb < 256,
        "popvmm's peak RSS was {max_rss_mb} MB for 16 untouched 64 MiB mappings"
    );
}
