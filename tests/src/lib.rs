//! Helpers for the end-to-end tests: where the guest images and the popvmm binary are, and how to
//! run a program natively and on an island with the same arguments, environment and root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A command for `program` that dies with the test that started it: SIGKILL when the thread that
/// spawns it ends (the test, or the whole harness killed by a timeout), so that no popvmm or guest
/// program outlives its test and loads the machine for the ones after it.
pub fn tied(program: impl AsRef<std::ffi::OsStr>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl, which is
    // async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

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

/// The `popvmm-eval` binary of this build profile (the evaluation report), built on first use.
pub fn popvmm_eval() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let popvmm = popvmm();
        let release = popvmm
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "popvmm-eval", "--bin", "popvmm-eval"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(repo_root())
            .status()
            .expect("run cargo build -p popvmm-eval");
        assert!(status.success(), "cargo build -p popvmm-eval failed");
        popvmm.with_file_name("popvmm-eval")
    })
    .clone()
}

/// Asserts that `text` is one well-formed SVG document (XML whose root is `<svg>` with a size)
/// and returns its text, every `<text>` element's, one a line.
pub fn assert_svg(what: &str, text: &str) -> String {
    let doc = roxmltree::Document::parse(text)
        .unwrap_or_else(|e| panic!("{what}: not well-formed XML: {e}"));
    let root = doc.root_element();
    assert_eq!(
        root.tag_name().name(),
        "svg",
        "{what}: the root is not <svg>"
    );
    assert!(
        root.attribute("width").is_some() && root.attribute("height").is_some(),
        "{what}: no size"
    );
    root.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
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
    let mut cmd = tied(out.join(prog));
    cmd.args(args)
        .current_dir(&out)
        .env_clear()
        .envs(DEFAULT_ENV.iter().copied())
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd.output().expect("run natively").into()
}

/// Runs `images/out/<prog>` natively the way popvmm runs it: with `images/out` as the root (a
/// chroot), bind-mounted read-only, and as the working directory; the island's default environment
/// plus `env`, stdin empty, and the island's descriptor limit (1024). The mount and the chroot live in a user and mount namespace of the
/// child alone (`unshare(CLONE_NEWUSER | CLONE_NEWNS)`, as `unshare -r` does), so the test needs no
/// privilege beyond unprivileged user namespaces, and the host's mounts never change.
pub fn native_in_root(prog: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    native_in_dir(&images(), &format!("/{prog}"), args, env)
}

/// Runs `exe` (a path inside `root`) natively with `root` as its read-only root and working
/// directory (see [`native_in_root`]).
pub fn native_in_dir(root: &Path, exe: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let cstr = |b: &[u8]| CString::new(b).expect("no NUL in paths");
    let root_c = cstr(root.as_os_str().as_bytes());
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let uid_map = format!("0 {uid} 1\n");
    let gid_map = format!("0 {gid} 1\n");
    let files = [
        (cstr(b"/proc/self/setgroups"), b"deny\n".to_vec()),
        (cstr(b"/proc/self/uid_map"), uid_map.into_bytes()),
        (cstr(b"/proc/self/gid_map"), gid_map.into_bytes()),
    ];
    let mut cmd = tied(exe);
    cmd.args(args)
        .current_dir(root)
        .env_clear()
        .envs(DEFAULT_ENV.iter().copied())
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let setup = move || -> std::io::Result<()> {
        let fail = |r: libc::c_int| {
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        // Only async-signal-safe calls from here on (this runs between fork and exec), on data
        // prepared before the fork.
        // SAFETY: plain system calls on NUL-terminated strings and buffers that outlive them.
        unsafe {
            // The island's descriptor limit (RLIMIT_NOFILE 1024, soft and hard).
            let nofile = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            fail(libc::setrlimit(libc::RLIMIT_NOFILE, &nofile))?;
            fail(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS))?;
            for (path, data) in &files {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                fail(fd)?;
                let n = libc::write(fd, data.as_ptr().cast(), data.len());
                libc::close(fd);
                if n != data.len() as isize {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let none = std::ptr::null::<libc::c_char>();
            fail(libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            fail(libc::mount(
                root_c.as_ptr(),
                root_c.as_ptr(),
                none,
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            fail(libc::mount(
                none,
                root_c.as_ptr(),
                none,
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                std::ptr::null(),
            ))?;
            fail(libc::chroot(root_c.as_ptr()))?;
            fail(libc::chdir(c"/".as_ptr()))?;
        }
        Ok(())
    };
    // SAFETY: `setup` only makes async-signal-safe system calls (see above).
    unsafe { cmd.pre_exec(setup) };
    cmd.output()
        .unwrap_or_else(|e| {
            panic!(
                "run {exe} natively in a read-only root {}: {e} (the tests need unprivileged \
                 user namespaces)",
                root.display()
            )
        })
        .into()
}

/// Runs the same program on an island with `--rootfs images/out`.
pub fn island(prog: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    island_with(prog, args, env, &[])
}

pub fn island_with(prog: &str, args: &[&str], env: &[(&str, &str)], extra: &[&str]) -> Run {
    let mut cmd = launch_command(prog, args, env, extra);
    cmd.stdin(Stdio::null());
    cmd.output().expect("run popvmm").into()
}

/// `popvmm launch --rootfs images/out [--env K=V...] [extra...] -- images/out/<prog> args`, run
/// from images/out.
fn launch_command(prog: &str, args: &[&str], env: &[(&str, &str)], extra: &[&str]) -> Command {
    launch_in(&images(), prog, args, env, extra)
}

/// `popvmm launch --rootfs ROOTFS [--env K=V...] [extra...] -- images/out/<prog> args`, run from
/// `rootfs`.
pub fn launch_in(
    rootfs: &Path,
    prog: &str,
    args: &[&str],
    env: &[(&str, &str)],
    extra: &[&str],
) -> Command {
    let mut cmd = tied(popvmm());
    cmd.arg("launch").arg("--rootfs").arg(rootfs);
    for (k, v) in env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    cmd.args(extra)
        .arg("--")
        .arg(images().join(prog))
        .args(args)
        .current_dir(rootfs);
    cmd
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

/// Runs natively in the read-only root ([`native_in_root`]) and on an island, and compares.
pub fn compare_in_root(prog: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let n = native_in_root(prog, args, env);
    let i = island(prog, args, env);
    assert_same(&format!("{prog} {args:?}"), &n, &i);
    i
}

/// The answer printed for call `what` on a line `what   = answer` (the regress and difftest
/// programs' format).
pub fn answer<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find_map(|l| {
            let (call, value) = l.split_once(" = ")?;
            (call.trim_end() == what).then_some(value.trim())
        })
        .unwrap_or_else(|| panic!("no line for {what:?} in:\n{out}"))
}

// ---------------------------------------------------------------------------------------------
// Several islands.

/// How long a multi-island run may take before the test calls it a hang (and kills it). Not a
/// performance assertion: every run of the suite takes a few seconds at most.
pub const HANG: std::time::Duration = std::time::Duration::from_secs(180);

/// Waits for `child` to exit, at most `limit`: its status, or None (still running; not killed).
pub fn wait_within(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Runs `cmd` (stdin empty) to completion; panics, after killing it, if it outlives `limit`.
pub fn output_within(cmd: &mut Command, limit: std::time::Duration, what: &str) -> Run {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let Some(status) = wait_within(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        let stdout = t_out.join().unwrap_or_default();
        let stderr = t_err.join().unwrap_or_default();
        panic!(
            "{what}: still running after {limit:?} (hung?), killed.\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
    .into()
}

/// A multi-island run: `popvmm launch --islands N [extra...] -- images/out/<prog> args`, with a
/// hang guard. Its stderr still holds popvmm's exit summary (see [`split_summary`]).
pub fn islands_run(
    prog: &str,
    args: &[&str],
    env: &[(&str, &str)],
    islands: usize,
    extra: &[&str],
) -> Run {
    let islands_arg = islands.to_string();
    let mut options = vec!["--islands", islands_arg.as_str()];
    options.extend_from_slice(extra);
    let mut cmd = launch_command(prog, args, env, &options);
    output_within(
        &mut cmd,
        HANG,
        &format!("{prog} {args:?} on {islands} islands {extra:?}"),
    )
}

/// [`islands_run`] with faults injected in the links: `POPVMM_FAULTS=spec` for popvmm (see
/// `vmm/src/fabric/faults.rs`).
pub fn islands_run_with_faults(
    prog: &str,
    args: &[&str],
    islands: usize,
    extra: &[&str],
    spec: &str,
) -> Run {
    let islands_arg = islands.to_string();
    let mut options = vec!["--islands", islands_arg.as_str()];
    options.extend_from_slice(extra);
    let mut cmd = launch_command(prog, args, &[], &options);
    cmd.env("POPVMM_FAULTS", spec);
    output_within(
        &mut cmd,
        HANG,
        &format!("{prog} {args:?} on {islands} islands {extra:?}, POPVMM_FAULTS={spec}"),
    )
}

/// Splits popvmm's exit summary (the lines `popvmm: N islands: ...`, `popvmm: page faults: ...` and,
/// when pages cost messages, `popvmm: messages by page, most first: ...`) from the program's own
/// stderr. Returns the run without them and the summary lines.
pub fn split_summary(run: &Run) -> (Run, Vec<String>) {
    let text = run.stderr_text();
    let mut rest = String::new();
    let mut summary = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with("popvmm: ") {
            summary.push(line.trim_end().to_string());
        } else {
            rest.push_str(line);
        }
    }
    let mut r = run.clone();
    r.stderr = rest.into_bytes();
    (r, summary)
}

/// The line popvmm adds to its exit summary when faults are injected in the links
/// (`POPVMM_FAULTS`, see `vmm/src/fabric/faults.rs`).
pub const FAULTS_LINE: &str = "popvmm: faults injected (POPVMM_FAULTS=";

/// Asserts that a multi-island run behaves exactly as the native one, apart from popvmm's exit
/// summary, which must be there: one line of messages, one of page faults, and one naming the
/// pages that cost the most messages when some did (and the faults line, under `POPVMM_FAULTS`).
pub fn assert_same_on_islands(what: &str, native: &Run, island: &Run, islands: usize) {
    let (rest, mut summary) = split_summary(island);
    summary.retain(|l| !l.starts_with(FAULTS_LINE));
    assert!(
        summary.len() == 2
            || summary.len() == 3
                && summary[2].starts_with("popvmm: messages by page, most first: 0x"),
        "{what}: exit summary: {summary:#?}"
    );
    assert!(
        summary[0].starts_with(&format!("popvmm: {islands} islands: ")),
        "{what}: {}",
        summary[0]
    );
    assert!(
        summary[1].starts_with("popvmm: page faults: "),
        "{what}: {}",
        summary[1]
    );
    assert_same(what, native, &rest);
}

/// Runs natively and on `islands` islands (round-robin placement: the main thread on island 0,
/// new threads on islands 1, 2, ..., 0, 1, ...) and compares.
pub fn compare_on_islands(prog: &str, args: &[&str], env: &[(&str, &str)], islands: usize) {
    let n = native(prog, args, env);
    let i = islands_run(prog, args, env, islands, &["--placement", "round-robin"]);
    assert_same_on_islands(
        &format!("{prog} {args:?} on {islands} islands"),
        &n,
        &i,
        islands,
    );
}

/// A scratch file path unique to this test process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("popvmm-test-{}-{name}", std::process::id()))
}

/// A multi-island run with `--stats-json`: the run and the summary JSON it wrote.
pub fn islands_run_with_stats(
    prog: &str,
    args: &[&str],
    islands: usize,
    extra: &[&str],
) -> (Run, serde_json::Value) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run_id = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = scratch(&format!(
        "stats-{run_id}-{}-{islands}.json",
        prog.replace('/', "-")
    ));
    let _ = std::fs::remove_file(&file);
    let path = file.to_str().expect("utf-8 temp path").to_string();
    let mut all = vec!["--stats-json", path.as_str()];
    all.extend_from_slice(extra);
    let run = islands_run(prog, args, &[], islands, &all);
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{prog}: --stats-json {path}: {e}; {}", run.stderr_text()));
    let _ = std::fs::remove_file(&file);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    (run, v)
}

/// Page faults resolved on `island`, from a `--stats-json` or `/stats` document.
pub fn faults_on(stats: &serde_json::Value, island: usize) -> u64 {
    stats["faults"]["by_island"][island]["resolved"]
        .as_u64()
        .unwrap_or(0)
}

/// An HTTP answer from the control socket.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl HttpAnswer {
    /// The body as JSON (Null when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `METHOD PATH` to the control socket at `sock` and reads the whole answer.
pub fn http(sock: &Path, method: &str, path: &str) -> HttpAnswer {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    http_raw(sock, req.as_bytes(), Duration::from_secs(30))
}

/// Sends raw bytes (a request, or garbage) to the control socket at `sock` and parses the answer,
/// which must be HTTP whatever was sent.
pub fn http_raw(sock: &Path, req: &[u8], timeout: Duration) -> HttpAnswer {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).expect("connect to the socket");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s.write_all(req).expect("write");
    // Nothing more is coming: a server that waits for the rest of a malformed request sees the
    // end of the stream and closes instead of waiting for our read timeout.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(&buf) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "{:?}: bad response {other:?}: {:?}",
            String::from_utf8_lossy(&req[..req.len().min(60)]),
            String::from_utf8_lossy(&buf)
        ),
    };
    let content_type = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
        .unwrap_or_default();
    HttpAnswer {
        status: resp.code.expect("status"),
        content_type,
        body: String::from_utf8_lossy(&buf[n..]).into_owned(),
    }
}

/// The address of a symbol of a non-PIE guest program (`nm`, from binutils, which the images'
/// build needs anyway).
pub fn symbol_address(prog: &str, symbol: &str) -> u64 {
    let o = Command::new("nm")
        .arg(images().join(prog))
        .output()
        .expect("run nm (binutils)");
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, _kind, name) = (f.next()?, f.next()?, f.next()?);
            (name == symbol).then(|| u64::from_str_radix(addr, 16).ok())?
        })
        .unwrap_or_else(|| panic!("{symbol} not in nm {prog}"))
}
