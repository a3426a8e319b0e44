//! popvmm launch itself: bad input, stdin, options.

use std::io::Write;
use std::process::{Command, Stdio};

use popvmm_tests::{images, island_with, popvmm, scratch};

fn launch(args: &[&str]) -> std::process::Output {
    popvmm_tests::tied(popvmm())
        .arg("launch")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run popvmm")
}

#[test]
fn not_an_elf_is_a_clear_error() {
    let f = images().join("not-elf");
    let o = launch(&["--", f.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(126));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not an ELF file"), "{err}");
}

#[test]
fn a_program_that_is_not_a_runnable_regular_file_is_refused_at_once() {
    let dir = scratch("not-runnable");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    // Not executable: Permission denied, as execve says.
    let plain = dir.join("hello-no-x");
    std::fs::copy(images().join("glibc/hello"), &plain).expect("copy");
    std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("path");
    // SAFETY: mkfifo reads the NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o755) }, 0, "mkfifo");
    for (prog, why) in [
        (plain.to_str().expect("utf-8"), "Permission denied"),
        // A FIFO nobody writes to must not hang popvmm; a device must not be read forever.
        (fifo.to_str().expect("utf-8"), "a FIFO"),
        ("/dev/zero", "a character device"),
        (dir.to_str().expect("utf-8"), "a directory"),
    ] {
        let o = launch(&["--", prog]);
        assert_eq!(o.status.code(), Some(126), "{prog}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why), "{prog}: {err}");
    }
    // A root that is not a directory.
    let hello = images().join("glibc/hello");
    let o = launch(&[
        "--rootfs",
        plain.to_str().expect("utf-8"),
        "--",
        hello.to_str().expect("utf-8"),
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a directory"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_program_is_127() {
    let o = launch(&["--", "/nonexistent/program"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/program"));
}

#[test]
fn dynamically_linked_program_is_refused() {
    // popvmm itself is a dynamically linked executable.
    let o = launch(&["--", popvmm().to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(126));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("dynamically linked"), "{err}");
}

#[test]
fn truncated_elf_is_refused() {
    let dir = std::env::temp_dir().join(format!("popvmm-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let bytes = std::fs::read(images().join("glibc/hello")).expect("read hello");
    for len in [3usize, 20, 64, 100, 4096] {
        let f = dir.join(format!("t{len}"));
        std::fs::write(&f, &bytes[..len]).expect("write");
        let o = launch(&["--", f.to_str().expect("utf-8 path")]);
        assert_eq!(o.status.code(), Some(126), "truncated at {len}");
        assert!(!o.stderr.is_empty());
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn island_count_and_placement_are_checked() {
    let f = images().join("glibc/hello");
    let f = f.to_str().expect("utf-8 path");
    for bad in [
        vec!["--islands", "0", "--", f],
        vec!["--islands", "65", "--", f],
        vec!["--islands", "2", "--placement", "list:0,2", "--", f],
        vec!["--islands", "2", "--placement", "sideways", "--", f],
    ] {
        let o = launch(&bad);
        assert_eq!(o.status.code(), Some(1), "{bad:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("--islands") || err.contains("--placement"),
            "{err}"
        );
    }
}

#[test]
fn stdin_is_popvmms_stdin() {
    let f = images().join("glibc/wait");
    let mut child = popvmm_tests::tied(popvmm())
        .args(["launch", "--"])
        .arg(&f)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&[b'x'; 10_000]).expect("write");
    drop(stdin);
    let o = child.wait_with_output().expect("wait");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "waiting\nread 10000 bytes\n"
    );
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn user_port_io_faults_unless_allowed() {
    let r = island_with("glibc/outloop", &["10"], &[], &[]);
    assert_eq!(r.code, Some(139));
    let r = island_with("glibc/outloop", &["10"], &[], &["--allow-port-io"]);
    assert_eq!(r.code, Some(0));
    assert_eq!(String::from_utf8_lossy(&r.stdout), "10 exits\n");
}

#[test]
fn verbose_logs_unknown_syscalls_once_and_only_with_v() {
    let quiet = island_with("glibc/efault", &[], &[], &[]);
    assert!(!quiet.stderr_text().contains("popvmm:"));
    let loud = island_with("glibc/efault", &[], &[], &["-v"]);
    let err = loud.stderr_text();
    assert_eq!(
        err.matches("unsupported system call 999").count(),
        1,
        "{err}"
    );
}

#[test]
fn hostile_system_calls_cannot_hurt_popvmm() {
    // Every system call number with hostile arguments (bad pointers, kernel-area and non-canonical
    // addresses, huge lengths), then memory calls on a scratch area. The program reports reaching
    // its end with status 42 (its stdout/stderr may have been closed by its own calls).
    for prog in ["glibc/fuzz", "musl/fuzz"] {
        let r = island_with(prog, &[], &[], &[]);
        assert_eq!(r.code, Some(42), "{prog}: {}", r.stderr_text());
        assert!(!r.stderr_text().contains("panicked"), "{prog}");
    }
}

#[test]
fn write_to_a_closed_pipe_is_sigpipe() {
    use std::os::unix::process::ExitStatusExt;
    let prog = images().join("glibc/malloc");
    let run = |cmd: &mut Command| {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        child.wait_with_output().expect("wait")
    };
    let native = run(&mut popvmm_tests::tied(&prog));
    assert_eq!(native.status.signal(), Some(libc::SIGPIPE));
    let island = run(popvmm_tests::tied(popvmm())
        .arg("launch")
        .arg("--")
        .arg(&prog));
    assert_eq!(island.status.code(), Some(128 + libc::SIGPIPE));
    // bash reports nothing for SIGPIPE; neither does popvmm.
    assert!(
        island.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&island.stderr)
    );
}

#[test]
fn launch_without_a_program_and_without_the_demo_says_how_to_build_it() {
    let empty = std::env::temp_dir().join(format!("popvmm-no-images-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("mkdir");
    let o = popvmm_tests::tied(popvmm())
        .args(["launch", "--islands", "2"])
        .env("POPVMM_IMAGES", &empty)
        .stdin(Stdio::null())
        .output()
        .expect("run popvmm");
    let _ = std::fs::remove_dir_all(&empty);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("glibc/demo is missing: run scripts/setup"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}

/// /proc and /sys: the program sees its own machine (island i is CPU i), served by popvmm; with a
/// root that holds the host's /proc and /sys (`--rootfs /`), those stay out of reach, so the
/// guest cannot read popvmm's memory through /proc/self/mem.
#[test]
fn the_guest_sees_its_islands_in_proc_and_sys_and_never_the_hosts() {
    let prog = images().join("glibc/procview");
    let prog = prog.to_str().expect("utf-8 path");
    for (args, islands) in [
        (vec!["--islands", "4", "--", prog], 4),
        (vec!["--islands", "2", "--rootfs", "/", "--", prog], 2),
    ] {
        let o = launch(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        let out = String::from_utf8_lossy(&o.stdout);
        let last = islands - 1;
        for want in [
            format!("sysconf(_SC_NPROCESSORS_ONLN): {islands}\n"),
            format!("/sys/devices/system/cpu/online: 0-{last}\n"),
            "/sys/devices/system/cpu/cpu1/topology/thread_siblings_list: 1\n".to_string(),
            format!("/sys/devices/system/cpu/cpu1/topology/core_siblings_list: 0-{last}\n"),
            format!("/proc/cpuinfo processors: {islands}\n"),
            "/proc/self/maps [stack] lines: 1\n".to_string(),
        ] {
            assert!(out.contains(&want), "{args:?}: missing {want:?} in\n{out}");
        }
        // Not served; with the host's /proc in the root, refused.
        let absent = if args.contains(&"/") {
            "Permission denied"
        } else {
            "No such file or directory"
        };
        for path in [
            "/proc/self/mem",
            "/proc/self/environ",
            "/sys/kernel/mm/transparent_hugepage/enabled",
        ] {
            let want = format!("{path}: {absent}\n");
            assert!(out.contains(&want), "{args:?}: missing {want:?} in\n{out}");
        }
    }
}

/// The system-call stub is the one page of the kernel area a program reaches besides the vDSO's
/// (`tests/vdso.rs`): read-only and executable at user level (PVM runs `syscall`'s target at CPL3). Calling it directly is a
/// system call with the caller's own return address, nothing more; writing to it, or touching
/// the rest of the kernel area, faults.
#[test]
fn calling_the_syscall_stub_directly_gains_nothing() {
    let prog = images().join("glibc/stubcall");
    let o = launch(&["--", prog.to_str().expect("utf-8 path")]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(
        out,
        "stub page readable: e6 10\n\
         getpid through the stub equals getpid\n\
         a write to the stub page faults\n\
         the rest of the kernel area faults\n"
    );
}
