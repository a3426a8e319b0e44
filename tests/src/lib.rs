//! Helpers for the end-to-end tests: where the guest images and the popvmm binary are, and how to
//! run a program natively and on an island with the same arguments, environment and root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The environment popvmm gives a program by default (`cli::launch::DEFAULT_ENV`).
pub const DEFAULT_ENV: [(&str, &str); 2] =
    [("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", "/")];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `images/out`: the guest programs and the root file system they read.
pub fn images() -> PathBuf {
    let out = repo_root().join("images/out");
    assert!(
        out.join("glibc/hello").exists(),
        "guest images missing: run scripts/setup (it builds images/out)"
    );
    out
}

/// The popvmm binary of this build profile, built on first use so tests never run a stale one.
pub fn popvmm() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test binary> -> target/<profile>/popvmm
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary in target/<profile>/deps")
            .to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "popvmm", "--bin", "popvmm"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(repo_root())
            .status()
            .expect("run cargo build -p popvmm");
        assert!(status.success(), "cargo build -p popvmm failed");
        profile_dir.join("popvmm")
    })
}

/// A program's observable behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Exit code, or None when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Run {
            stdout: o.stdout,
            stderr: o.stderr,
            code: o.status.code(),
            signal: o.status.signal(),
        }
    }
}

impl Run {
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `images/out/<prog>` natively: cwd = images/out (the island's root), the island's default
/// environment plus `env`, stdin empty.
pub fn native(prog: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = images();
    let mut cmd = Command::new(out.join(prog));
    cmd.args(args)
        .current_dir(&out)
        .env_clear()
        .envs(DEFAULT_ENV.iter().copied())
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd.output().expect("run natively").into()
}

/// Runs the same program on an island with `--rootfs images/out`.
pub fn island(prog: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    island_with(prog, args, env, &[])
}

pub fn island_with(prog: &str, args: &[&str], env: &[(&str, &str)], extra: &[&str]) -> Run {
    let out = images();
    let mut cmd = Command::new(popvmm());
    cmd.arg("launch").arg("--rootfs").arg(&out);
    for (k, v) in env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    cmd.args(extra)
        .arg("--")
        .arg(out.join(prog))
        .args(args)
        .current_dir(&out)
        .stdin(Stdio::null());
    cmd.output().expect("run popvmm").into()
}

/// What bash prints for a job killed by `sig` (popvmm prints the same, see kernel::signal).
pub fn shell_message(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "Segmentation fault",
        libc::SIGFPE => "Floating point exception",
        libc::SIGILL => "Illegal instruction",
        libc::SIGABRT => "Aborted",
        libc::SIGBUS => "Bus error",
        libc::SIGTERM => "Terminated",
        _ => "",
    }
}

/// Asserts that the island run behaves exactly as the native one: same stdout, stderr and exit
/// status; for a death by signal N, popvmm exits 128+N and adds the shell's line to stderr.
pub fn assert_same(what: &str, native: &Run, island: &Run) {
    assert_eq!(
        String::from_utf8_lossy(&island.stdout),
        String::from_utf8_lossy(&native.stdout),
        "{what}: stdout differs"
    );
    match native.signal {
        None => {
            assert_eq!(
                island.stderr_text(),
                native.stderr_text(),
                "{what}: stderr differs"
            );
            assert_eq!(island.code, native.code, "{what}: exit status differs");
        }
        Some(sig) => {
            let mut want = native.stderr_text();
            want.push_str(shell_message(sig));
            want.push('\n');
            assert_eq!(island.stderr_text(), want, "{what}: stderr differs");
            assert_eq!(
                island.code,
                Some(128 + sig),
                "{what}: exit status differs (signal {sig})"
            );
        }
    }
}

/// Runs natively and on an island and compares.
pub fn compare(prog: &str, args: &[&str], env: &[(&str, &str)]) {
    let n = native(prog, args, env);
    let i = island(prog, args, env);
    assert_same(&format!("{prog} {args:?}"), &n, &i);
}
