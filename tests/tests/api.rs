//! The control socket during a run: GET /islands, GET /threads, malformed requests, shutdown.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use popvmm_tests::{http_raw, images, popvmm};

fn sock_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("popvmm-test-{name}-{}.sock", std::process::id()))
}

/// Starts glibc/wait (blocked on stdin, two threads) with a control socket.
fn start(sock: &Path) -> Child {
    let child = Command::new(popvmm())
        .args(["launch", "--api-sock"])
        .arg(sock)
        .arg("--")
        .arg(images().join("glibc/wait"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn popvmm");
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(sock).is_err() {
        assert!(Instant::now() < deadline, "control socket never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
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
    let o = Command::new(popvmm())
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
    let mut child = start(&sock);

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
    let (code, _) = ctl(&sock, "shutdown");
    assert_eq!(code, Some(0));
    let out = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(_s) = child.try_wait().expect("try_wait") {
                break child.wait_with_output().expect("output");
            }
            assert!(
                Instant::now() < deadline,
                "popvmm did not exit after shutdown"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "waiting\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Terminated\n");
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn ctl_without_server_fails_cleanly() {
    let (code, _) = ctl(&sock_path("none"), "threads");
    assert_eq!(code, Some(1));
}
