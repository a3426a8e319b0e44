//! The control socket during a run: GET /islands, GET /threads, malformed requests, shutdown; and
//! what the server must survive (hostile or slow clients) and refuse (taking over another file).

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use popvmm_tests::{http_raw, images, output_within, popvmm, HANG};

/// How long a test waits for something that takes milliseconds when the machine is idle: the
/// machine is shared, so this only catches hangs, it never measures speed.
const PATIENCE: Duration = Duration::from_secs(60);

fn sock_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("popvmm-test-{name}-{}.sock", std::process::id()))
}

/// `popvmm launch --api-sock SOCK -- glibc/wait` (blocked on stdin, two threads).
fn launch_wait(sock: &Path) -> Command {
    let mut cmd = popvmm_tests::tied(popvmm());
    cmd.args(["launch", "--api-sock"])
        .arg(sock)
        .arg("--")
        .arg(images().join("glibc/wait"));
    cmd
}

/// A running popvmm: the child (its stdin held open, so the program waits) and the reader of its
/// stdout.
struct Running {
    child: Child,
    stdout: std::thread::JoinHandle<Vec<u8>>,
}

/// Starts glibc/wait with a control socket.
fn start(sock: &Path) -> Running {
    start_cmd(&mut launch_wait(sock), sock)
}

/// Spawns `cmd` (a popvmm launch of glibc/wait serving `sock`), waits until the program has
/// printed its first line (the socket is served before the program starts, so a shutdown right
/// after the socket appears could come before it) and until the socket answers.
fn start_cmd(cmd: &mut Command, sock: &Path) -> Running {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn popvmm");
    let mut out = child.stdout.take().expect("stdout");
    let (first_line, seen) = std::sync::mpsc::channel();
    let stdout = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut byte = [0u8; 1];
        while let Ok(1) = out.read(&mut byte) {
            all.push(byte[0]);
            if byte[0] == b'\n' {
                let _ = first_line.send(());
            }
        }
        all
    });
    if seen.recv_timeout(PATIENCE).is_err() {
        let _ = child.kill();
        let out = child.wait_with_output().expect("output");
        panic!(
            "the program never started ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let deadline = Instant::now() + PATIENCE;
    while UnixStream::connect(sock).is_err() {
        assert!(Instant::now() < deadline, "control socket never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    Running { child, stdout }
}

/// Waits (at most PATIENCE) for popvmm to exit and returns its output.
fn wait_exit(p: Running, what: &str) -> std::process::Output {
    let Running { mut child, stdout } = p;
    let deadline = Instant::now() + PATIENCE;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            let mut out = child.wait_with_output().expect("output");
            out.stdout = stdout.join().expect("stdout reader");
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("popvmm did not exit after {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ctl shutdown`, then the program must end as SIGTERM would end it and the socket file be gone.
fn shut_down(p: Running, sock: &Path) {
    let (code, v) = ctl(sock, "shutdown");
    assert_eq!(code, Some(0), "ctl shutdown: {v}");
    let out = wait_exit(p, "shutdown");
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "waiting\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Terminated\n");
    assert!(!sock.exists(), "socket file left behind");
}

/// Sends `bytes` on a new connection and leaves it open, sending nothing more: a slow client.
fn slow_client(sock: &Path, bytes: &[u8]) -> UnixStream {
    let mut s = UnixStream::connect(sock).expect("connect to the socket");
    s.write_all(bytes).expect("write");
    s
}

/// Everything the server sends on `s` until it closes (or PATIENCE passes), as an HTTP status.
fn status_of(mut s: UnixStream) -> Option<u16> {
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&buf) {
        Ok(httparse::Status::Complete(_)) => resp.code,
        _ => None,
    }
}

fn request(sock: &Path, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = http_raw(sock, req.as_bytes(), Duration::from_secs(10));
    (answer.status, answer.json())
}

fn ctl(sock: &Path, what: &str) -> (Option<i32>, serde_json::Value) {
    let o = popvmm_tests::tied(popvmm())
        .args(["ctl", "--api-sock"])
        .arg(sock)
        .arg(what)
        .output()
        .expect("run popvmm ctl");
    let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o.status.code(), v)
}

#[test]
fn threads_islands_malformed_and_shutdown() {
    let sock = sock_path("main");
    let p = start(&sock);

    // Both threads show up (the second one may take a moment to be created).
    let deadline = Instant::now() + Duration::from_secs(10);
    let threads = loop {
        let (code, v) = ctl(&sock, "threads");
        assert_eq!(code, Some(0));
        let list = v.as_array().cloned().unwrap_or_default();
        if list.len() == 2 || Instant::now() > deadline {
            break list;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(threads.len(), 2, "{threads:?}");
    for t in &threads {
        assert_eq!(t["island"], 0);
        assert!(t["tid"].as_u64().is_some_and(|x| x > 0));
        assert!(t["rip"].as_u64().is_some_and(|x| x >= 0x400000), "{t}");
        assert!(
            ["running", "syscall", "blocked"].contains(&t["state"].as_str().unwrap_or("")),
            "{t}"
        );
    }
    let (code, islands) = ctl(&sock, "islands");
    assert_eq!(code, Some(0));
    assert_eq!(islands[0]["id"], 0);
    assert_eq!(islands[0]["threads"], 2);

    // Malformed requests get a 4xx and the server keeps serving.
    let code = http_raw(&sock, b"THIS IS NOT HTTP\r\n\r\n", Duration::from_secs(10)).status;
    assert!((400..500).contains(&code), "garbage -> {code}");
    let (code, v) = request(&sock, "GET", "/no-such-thing", "");
    assert_eq!(code, 404);
    assert!(v["error"].is_string());
    let (code, v) = request(&sock, "DELETE", "/threads", "");
    assert_eq!(code, 405);
    assert!(v["error"].is_string());
    let (code, v) = request(&sock, "PUT", "/shutdown", "{not json");
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap_or("").contains("JSON"), "{v}");
    let (code, v) = request(&sock, "GET", "/threads", "");
    assert_eq!(code, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(2));

    // Shutdown ends the program as SIGTERM would.
    shut_down(p, &sock);
}

#[test]
fn ctl_without_server_fails_cleanly() {
    let (code, _) = ctl(&sock_path("none"), "threads");
    assert_eq!(code, Some(1));
}

/// Regression: a request declaring a huge body whose client then leaves made the server allocate
/// the declared size and abort, killing the program with it.
#[test]
fn huge_content_length_then_close_keeps_serving() {
    let sock = sock_path("huge");
    let mut p = start(&sock);
    let huge = slow_client(
        &sock,
        b"GET /islands HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
    );
    let _ = huge.shutdown(std::net::Shutdown::Write);
    let huge_status = status_of(huge);

    let (code, v) = request(&sock, "GET", "/threads", "");
    assert_eq!(code, 200, "{v}");
    assert!(
        p.child.try_wait().expect("try_wait").is_none(),
        "popvmm died"
    );
    assert_eq!(huge_status, Some(413));
    let (code, v) = request(&sock, "GET", "/islands", "");
    assert_eq!(code, 200, "{v}");
    shut_down(p, &sock);
}

/// Regression: one client that declared a body and sent one byte of it held the only API thread,
/// so nobody else (`ctl shutdown` included) was answered until it left.
#[test]
fn slow_clients_do_not_block_others() {
    let sock = sock_path("slow");
    let mut p = start(&sock);
    let head = |len: usize| {
        format!("PUT /shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n{{")
    };
    let over_limit = slow_client(&sock, head(100_000).as_bytes());
    let in_limit = slow_client(&sock, head(1000).as_bytes());
    let half_head = slow_client(&sock, b"GET /thre");

    let answer = http_raw(
        &sock,
        b"GET /threads HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        PATIENCE,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json().as_array().map(Vec::len), Some(2));
    // The slow ones get their answers too: too large at once, and a timeout when their time to
    // send a whole request (seconds) is over; the program never saw their bodies.
    assert_eq!(status_of(over_limit), Some(413));
    assert_eq!(status_of(in_limit), Some(408));
    assert_eq!(status_of(half_head), Some(408));
    assert!(
        p.child.try_wait().expect("try_wait").is_none(),
        "popvmm died"
    );

    // And a slow client still connected does not delay shutdown.
    let _slow = slow_client(&sock, head(1000).as_bytes());
    shut_down(p, &sock);
}

/// Regression: the socket file's mode followed the umask (0777 at umask 000: any local user could
/// stop the program).
#[test]
fn socket_is_private_whatever_the_umask() {
    let sock = sock_path("umask");
    let launch = launch_wait(&sock);
    let mut cmd = popvmm_tests::tied("sh");
    cmd.arg("-c")
        .arg("umask 000 && exec \"$@\"")
        .arg("sh")
        .arg(launch.get_program())
        .args(launch.get_args());
    let p = start_cmd(&mut cmd, &sock);
    let meta = std::fs::symlink_metadata(&sock).expect("stat the socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    let (code, _) = request(&sock, "GET", "/threads", "");
    assert_eq!(code, 200);
    shut_down(p, &sock);
}

/// Regression: a regular file at the socket path was deleted without a word.
#[test]
fn refuses_a_file_that_is_not_a_socket() {
    let sock = sock_path("file");
    std::fs::write(&sock, "precious\n").expect("write the file");
    let run = output_within(&mut launch_wait(&sock), HANG, "popvmm on a regular file");
    let err = run.stderr_text();
    let text = std::fs::read_to_string(&sock);
    let _ = std::fs::remove_file(&sock);
    assert_eq!(
        text.ok().as_deref(),
        Some("precious\n"),
        "the file was not kept"
    );
    assert_eq!(run.code, Some(1), "{err}");
    assert!(run.stdout.is_empty(), "the program ran");
    assert!(
        err.contains(&sock.display().to_string()) && err.contains("not a socket"),
        "{err}"
    );
}

/// Regression: a second popvmm given the path of a running one took the path over (and removed it
/// when it exited), leaving the first unreachable.
#[test]
fn second_server_on_a_live_socket_refuses() {
    let sock = sock_path("live");
    let first = start(&sock);
    let run = output_within(&mut launch_wait(&sock), HANG, "a second popvmm");
    let err = run.stderr_text();
    assert_eq!(run.code, Some(1), "{err}");
    assert!(run.stdout.is_empty(), "the second program ran");
    assert!(
        err.contains(&format!("a running popvmm is serving {}", sock.display())),
        "{err}"
    );
    let (code, v) = request(&sock, "GET", "/threads", "");
    assert_eq!(code, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    shut_down(first, &sock);
}

/// A socket file left by a popvmm that is gone (nothing accepts on it) is replaced.
#[test]
fn stale_socket_is_replaced() {
    let sock = sock_path("stale");
    let _ = std::fs::remove_file(&sock);
    drop(UnixListener::bind(&sock).expect("bind"));
    assert!(sock.exists(), "a dropped listener leaves its socket file");
    let p = start(&sock);
    let (code, _) = request(&sock, "GET", "/threads", "");
    assert_eq!(code, 200);
    shut_down(p, &sock);
}

/// `popvmm ctl ARGS...`: exit code, stdout as JSON (Null if it is not), stderr.
fn ctl_args(sock: &Path, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let o = popvmm_tests::tied(popvmm())
        .args(["ctl", "--api-sock"])
        .arg(sock)
        .args(args)
        .output()
        .expect("run popvmm ctl");
    let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (
        o.status.code(),
        v,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Transparent migration from outside: a thread in a tight arithmetic loop and one blocked in a
/// futex (a condition variable) are moved by `ctl migrate` with no cooperation from the program;
/// the arithmetic survives, the blocked one wakes on its new island; `/threads` shows islands,
/// proposals and migration counts; bad requests get 400, 404 and 409 and popvmm goes on.
#[test]
fn ctl_migrate_moves_a_spinning_thread_and_a_blocked_one() {
    let sock = sock_path("migrate");
    let _ = std::fs::remove_file(&sock);
    let mut child = popvmm_tests::tied(popvmm())
        .args(["launch", "--islands", "4", "--api-sock"])
        .arg(&sock)
        .arg("--")
        .arg(images().join("glibc/migratee"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn popvmm");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match std::io::BufRead::read_line(&mut out, &mut line) {
                Ok(0) | Err(_) => return all,
                Ok(_) => {
                    all.push_str(&line);
                    let _ = lines_tx.send(line.trim_end().to_string());
                }
            }
        }
    });
    let next_line = |what: &str| -> String {
        lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no line from the program while waiting for {what}"))
    };
    let tid_of = |line: String, who: &str| -> u32 {
        let (name, tid) = line.split_once(' ').expect("NAME TID");
        assert_eq!(name, who, "{line}");
        tid.parse().expect("a tid")
    };
    let waiter = tid_of(next_line("the waiter"), "waiter");
    let spinner = tid_of(next_line("the spinner"), "spinner");
    let (w, s) = (waiter.to_string(), spinner.to_string());

    // Bad requests first: the program and popvmm go on.
    let (code, _, err) = ctl_args(&sock, &["migrate", &s, "9"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("400") && err.contains("island 9 does not exist"),
        "{err}"
    );
    let (code, _, err) = ctl_args(&sock, &["migrate", "1", "2"]);
    assert!(code == Some(1) && err.contains("404"), "{err}");
    let (_, threads, _) = ctl_args(&sock, &["threads"]);
    let on = |threads: &serde_json::Value, tid: u32| -> u64 {
        threads
            .as_array()
            .and_then(|a| a.iter().find(|t| t["tid"] == tid))
            .and_then(|t| t["island"].as_u64())
            .unwrap_or_else(|| panic!("thread {tid} not in {threads}"))
    };
    let here = on(&threads, spinner).to_string();
    let (code, _, err) = ctl_args(&sock, &["migrate", &s, &here]);
    assert!(code == Some(1) && err.contains("409"), "{err}");

    // The blocked one moves and stays blocked; a proposal shows.
    let (code, v, err) = ctl_args(&sock, &["migrate", &w, "3", "--wait", "60"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["status"], "migration requested");
    let (code, _, err) = ctl_args(&sock, &["propose", &w, "2"]);
    assert_eq!(code, Some(0), "{err}");
    // The spinner moves twice, wherever it is in its loop.
    let (code, _, err) = ctl_args(&sock, &["migrate", &s, "3", "--wait", "60"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        next_line("the spinner on island 3"),
        "spinner sees island 3"
    );
    let (_, threads, _) = ctl_args(&sock, &["threads"]);
    let waiter_row = threads
        .as_array()
        .and_then(|a| a.iter().find(|t| t["tid"] == waiter))
        .cloned()
        .expect("waiter listed");
    assert_eq!(waiter_row["island"], 3);
    assert_eq!(waiter_row["proposed"], 2);
    assert_eq!(waiter_row["migrations"], 1);
    let (code, _, err) = ctl_args(&sock, &["migrate", &s, "0", "--wait", "60"]);
    assert_eq!(code, Some(0), "{err}");

    let code = popvmm_tests::wait_within(&mut child, Duration::from_secs(120))
        .expect("the program did not end")
        .code();
    let all = reader.join().expect("reader");
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("spinner sees island 0\n"), "{all}");
    assert!(
        all.contains("spinner ends on island 0, arithmetic intact\n"),
        "{all}"
    );
    assert!(all.contains("waiter woke on island 3\n"), "{all}");
}
