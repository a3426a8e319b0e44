//! The control socket during a run on 4 islands: `/pages` (read in full, page by page with
//! `from`/`next`) shows pages Shared on several islands and one Modified on exactly one island with
//! every other island Invalid, and what each page cost and why (the written page is
//! producer-consumer, the read one read-shared, the barriers' write-shared); `/stats` and
//! `/metrics` make sense; malformed queries get a 4xx; `popvmm ctl pages [--hot N]|stats|metrics`
//! print them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use serde_json::Value;

use popvmm_tests::{http, images, popvmm, scratch, symbol_address, HANG};

const PAGE: u64 = 4096;

/// popvmm running `glibc/pagewatch` (3 threads besides main) on 4 islands with a control socket.
struct Watch {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    sock: PathBuf,
}

impl Watch {
    fn start(name: &str) -> Watch {
        let sock = scratch(&format!("{name}.sock"));
        let mut child = popvmm_tests::tied(popvmm())
            .args(["launch", "--islands", "4", "--placement", "round-robin"])
            .arg("--api-sock")
            .arg(&sock)
            .arg("--")
            .arg(images().join("glibc/pagewatch"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn popvmm");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut w = Watch {
            child,
            stdin,
            lines,
            sock,
        };
        // Every thread has read both pages once and the writer is about to write.
        let first = w.lines.recv_timeout(HANG);
        if first.as_deref() != Ok("pagewatch: 3 threads running") {
            let _ = w.child.kill();
            panic!("pagewatch did not start: {first:?}");
        }
        w
    }

    /// Ends the program (end of file on its stdin) and returns (stdout after the first line,
    /// stderr, exit code).
    fn finish(mut self) -> (String, String, Option<i32>) {
        drop(self.stdin.take());
        let deadline = Instant::now() + HANG;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("pagewatch did not end after its stdin closed");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let rest: Vec<String> = self.lines.iter().collect();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (rest.join("\n"), err, status.code())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // A failed assertion must not leave popvmm running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every page of `/pages`, `count` at a time, following `next` from 0 until an empty answer.
/// Checks that the pages come in increasing order, each once, and `next` moves forward.
fn all_pages(sock: &Path, count: usize) -> Vec<Value> {
    let mut pages: Vec<Value> = Vec::new();
    let mut from = 0u64;
    let mut requests = 0;
    loop {
        let a = http(sock, "GET", &format!("/pages?from={from:#x}&count={count}"));
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.content_type.contains("application/json"), "{a:?}");
        let v = a.json();
        let list = v["pages"].as_array().expect("pages list").clone();
        assert!(
            list.len() <= count,
            "{} pages for count={count}",
            list.len()
        );
        if list.is_empty() {
            break;
        }
        let next = parse_hex(v["next"].as_str().expect("next with pages"));
        let last = parse_hex(list[list.len() - 1]["address"].as_str().expect("address"));
        assert!(next > last, "next {next:#x} after {last:#x}");
        pages.extend(list);
        from = next;
        requests += 1;
        assert!(requests < 100_000, "paging does not end");
    }
    let addrs: Vec<u64> = pages
        .iter()
        .map(|p| parse_hex(p["address"].as_str().expect("address")))
        .collect();
    assert!(
        addrs.windows(2).all(|w| w[0] < w[1]),
        "pages out of order or repeated: {addrs:x?}"
    );
    assert!(addrs.iter().all(|a| a % PAGE == 0), "{addrs:x?}");
    pages
}

fn parse_hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("not hex: {s}"))
}

/// The state of each island's copy of a page, in island order.
fn states(page: &Value) -> Vec<String> {
    let copies = page["copies"].as_array().expect("copies");
    copies
        .iter()
        .enumerate()
        .map(|(i, c)| {
            assert_eq!(c["island"], i, "{page}");
            c["state"].as_str().expect("state").to_string()
        })
        .collect()
}

fn shared_on_several(page: &Value) -> bool {
    states(page).iter().filter(|s| *s == "Shared").count() >= 2
}

fn modified_on_one_invalid_elsewhere(page: &Value) -> bool {
    let s = states(page);
    s.iter().filter(|s| *s == "Modified").count() == 1
        && s.iter().all(|s| s == "Modified" || s == "Invalid")
}

#[test]
fn pages_stats_and_metrics_during_a_run_on_4_islands() {
    let w = Watch::start("pages");
    let sock = w.sock.clone();
    let hot = symbol_address("glibc/pagewatch", "hot_page");
    let shared = symbol_address("glibc/pagewatch", "shared_page");

    // The writer's first write may still be on its way: read the pages until both patterns show
    // (the program holds them until its stdin closes).
    let deadline = Instant::now() + HANG;
    let pages = loop {
        let pages = all_pages(&sock, 7);
        let found = pages.iter().any(shared_on_several)
            && pages.iter().any(modified_on_one_invalid_elsewhere);
        if found || Instant::now() > deadline {
            break pages;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let by_addr: BTreeMap<u64, &Value> = pages
        .iter()
        .map(|p| (parse_hex(p["address"].as_str().expect("address")), p))
        .collect();
    let dump = || {
        pages
            .iter()
            .map(|p| format!("{} {:?} owner {}", p["address"], states(p), p["owner"]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(pages.iter().any(shared_on_several), "{}", dump());
    assert!(
        pages.iter().any(modified_on_one_invalid_elsewhere),
        "{}",
        dump()
    );
    // And they are the program's pages: shared_page read by every thread, hot_page written by
    // the first thread (island 1) after every thread read it.
    let hp = by_addr
        .get(&hot)
        .unwrap_or_else(|| panic!("no hot_page: {}", dump()));
    assert_eq!(
        states(hp),
        ["Invalid", "Modified", "Invalid", "Invalid"],
        "{hp}"
    );
    assert_eq!(hp["owner"], 1, "{hp}");
    assert_eq!(hp["copies"][1]["mapping"], "read-write", "{hp}");
    assert_eq!(hp["users"], serde_json::json!([0, 1, 2, 3]), "{hp}");
    let sp = by_addr
        .get(&shared)
        .unwrap_or_else(|| panic!("no shared_page: {}", dump()));
    assert_eq!(states(sp), ["Shared"; 4], "{sp}");
    for c in sp["copies"].as_array().expect("copies") {
        assert_eq!(c["mapping"], "read-only", "{sp}");
    }
    // What each page cost and why: hot_page is written on island 1 and read on the others
    // (every write invalidates the readers); shared_page is only read (one fetch per reader);
    // the barriers' page is written by the threads of several islands.
    assert_eq!(hp["pattern"], "producer-consumer", "{hp}");
    assert_eq!(hp["writers"], serde_json::json!([1]), "{hp}");
    assert!(hp["copies"][1]["write_faults"].as_u64() > Some(0), "{hp}");
    for t in ["fetch", "copy", "invalid", "ack"] {
        assert!(hp["messages_by_type"][t].as_u64() > Some(0), "{t}: {hp}");
    }
    let by_type_sum: u64 = hp["messages_by_type"]
        .as_object()
        .expect("messages_by_type")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(hp["messages"].as_u64(), Some(by_type_sum), "{hp}");
    let received_sum: u64 = hp["copies"]
        .as_array()
        .expect("copies")
        .iter()
        .filter_map(|c| c["messages_received"].as_u64())
        .sum();
    assert_eq!(received_sum, by_type_sum, "{hp}");
    assert_eq!(sp["pattern"], "read-shared", "{sp}");
    assert_eq!(sp["writers"], serde_json::json!([]), "{sp}");
    for i in 1..4 {
        assert!(sp["copies"][i]["read_faults"].as_u64() > Some(0), "{sp}");
    }
    assert!(
        pages.iter().any(|p| p["pattern"] == "write-shared"
            && p["writers"].as_array().is_some_and(|w| w.len() >= 2)),
        "no page written on several islands (the barriers'): {}",
        dump()
    );
    // One page at a time from the hot page's address (or any address inside it).
    for from in [hot, hot + 100] {
        let a = http(&sock, "GET", &format!("/pages?from={from}&count=1"));
        assert_eq!(a.status, 200);
        let v = a.json();
        assert_eq!(v["pages"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(
            parse_hex(v["pages"][0]["address"].as_str().expect("a")),
            hot
        );
        assert_eq!(parse_hex(v["next"].as_str().expect("next")), hot + PAGE);
    }
    // Past the last page: nothing.
    let a = http(&sock, "GET", "/pages?from=0xffffffffffff000");
    assert_eq!(a.json()["pages"], serde_json::json!([]), "{}", a.body);

    // /stats
    let a = http(&sock, "GET", "/stats");
    assert_eq!(a.status, 200);
    let s = a.json();
    assert_eq!(s["islands"], 4, "{s}");
    assert!(
        s["messages"]["total"].as_u64().is_some_and(|n| n > 0),
        "{s}"
    );
    for t in ["fetch", "copy", "invalid", "ack"] {
        assert!(
            s["messages"]["by_type"][t].as_u64().is_some_and(|n| n > 0),
            "no {t} messages: {s}"
        );
    }
    for l in s["messages"]["by_link"].as_array().expect("by_link") {
        let (f, t) = (
            l["from"].as_u64().expect("from"),
            l["to"].as_u64().expect("to"),
        );
        assert!(f < 4 && t < 4 && f != t, "{l}");
    }
    let by_island = s["faults"]["by_island"].as_array().expect("by_island");
    assert_eq!(by_island.len(), 4, "{s}");
    for (i, f) in by_island.iter().enumerate() {
        assert_eq!(f["island"], i);
        assert!(f["resolved"].as_u64().is_some_and(|n| n > 0), "{f}");
    }
    let lat = &s["fault_latency_us"];
    let (p50, p99) = (lat["p50"].as_u64(), lat["p99"].as_u64());
    assert!(p50.is_some_and(|a| p99.is_some_and(|b| a <= b)), "{lat}");
    assert!(lat["mean"].as_f64().is_some_and(|m| m > 0.0), "{lat}");

    // /metrics: Prometheus text, one sample per line.
    let a = http(&sock, "GET", "/metrics");
    assert_eq!(a.status, 200);
    assert!(a.content_type.starts_with("text/plain"), "{a:?}");
    assert!(a.body.contains("# TYPE popvmm_messages_total counter\n"));
    assert!(a
        .body
        .contains("popvmm_page_faults_total{island=\"3\",kind=\"read_missing\"} "));
    let mut samples = 0;
    for line in a.body.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').expect("name value");
        assert!(name.starts_with("popvmm_"), "{line}");
        assert!(value.parse::<f64>().is_ok(), "{line}");
        samples += 1;
    }
    assert!(samples > 10, "{}", a.body);
    let fetches = a
        .body
        .lines()
        .find_map(|l| l.strip_prefix("popvmm_messages_total{type=\"fetch\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("fetch counter");
    assert!(fetches > 0);

    // Malformed queries: 4xx with a JSON error, and the server goes on.
    for q in [
        "count=0",
        "count=abc",
        "count=4097",
        "count=-1",
        "from=zz",
        "from=0xzz",
        "from=",
        "bogus=1",
    ] {
        let a = http(&sock, "GET", &format!("/pages?{q}"));
        assert!((400..500).contains(&a.status), "/pages?{q} -> {a:?}");
        assert!(a.json()["error"].is_string(), "/pages?{q} -> {a:?}");
    }
    let a = http(&sock, "POST", "/pages");
    assert_eq!(a.status, 405, "{a:?}");
    assert_eq!(http(&sock, "GET", "/pages?count=1").status, 200);

    let (out, err, code) = w.finish();
    assert_eq!(out, "pagewatch: done");
    assert_eq!(code, Some(0), "{err}");
    // Only popvmm's summary on stderr, which names the page that cost the most: the barriers'.
    assert_eq!(err.lines().count(), 3, "{err}");
    assert!(err.lines().all(|l| l.starts_with("popvmm: ")), "{err}");
    assert!(
        err.contains("popvmm: messages by page, most first: 0x"),
        "{err}"
    );
    assert!(!sock.exists(), "socket file left behind");
}

fn ctl(sock: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = popvmm_tests::tied(popvmm())
        .args(["ctl", "--api-sock"])
        .arg(sock)
        .args(args)
        .output()
        .expect("run popvmm ctl");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn ctl_pages_stats_and_metrics() {
    let mut w = Watch::start("ctl");
    let sock = w.sock.clone();
    let hot = symbol_address("glibc/pagewatch", "hot_page");
    let shared = symbol_address("glibc/pagewatch", "shared_page");
    let hot_row = |out: &str| -> Option<Vec<String>> {
        out.lines()
            .find(|l| l.starts_with(&format!("{hot:#x} ")))
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
    };

    // The table: header, then the hot page's row once the writer has written.
    let deadline = Instant::now() + HANG;
    let out = loop {
        let (code, out, err) = ctl(&sock, &["pages"]);
        assert_eq!(code, Some(0), "{err}");
        if hot_row(&out).is_some_and(|r| r[2] == "M") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let header: Vec<&str> = out
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["address", "i0", "i1", "i2", "i3", "owner", "users", "msgs", "writers", "pattern"],
        "{out}"
    );
    let row = hot_row(&out).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        row[..7],
        [&format!("{hot:#x}"), "I", "M", "I", "I", "1", "0-3"],
        "{out}"
    );
    assert!(row[7].parse::<u64>().is_ok_and(|m| m > 0), "{out}");
    assert_eq!(row[8..], ["1", "producer-consumer"], "{out}");

    // ctl reads the server's JSON into the API's types and prints them back: nothing is lost,
    // renamed or added on the way (the hot and the shared page no longer change: the writer's
    // writes hit its Modified copy, the readers' their Shared ones).
    for page in [hot, shared] {
        let raw = http(&sock, "GET", &format!("/pages?from={page:#x}&count=1"));
        assert_eq!(raw.status, 200, "{}", raw.body);
        let (code, out, err) = ctl(
            &sock,
            &[
                "pages",
                "--json",
                "--from",
                &format!("{page:#x}"),
                "--count",
                "1",
            ],
        );
        assert_eq!(code, Some(0), "{err}");
        let typed: Value = serde_json::from_str(&out).expect("ctl pages --json is JSON");
        assert_eq!(typed, raw.json(), "{page:#x}");
    }

    // --hot: the pages that cost the most messages, most first.
    let (code, hot_out, err) = ctl(&sock, &["pages", "--hot", "3"]);
    assert_eq!(code, Some(0), "{err}");
    let msgs: Vec<u64> = hot_out
        .lines()
        .filter(|l| l.starts_with("0x"))
        .map(|l| {
            l.split_whitespace()
                .nth(7)
                .and_then(|m| m.parse().ok())
                .unwrap_or_else(|| panic!("{hot_out}"))
        })
        .collect();
    assert_eq!(msgs.len(), 3, "{hot_out}");
    assert!(msgs.windows(2).all(|w| w[0] >= w[1]), "{hot_out}");
    assert!(hot_out.contains("3 pages on 4 islands"), "{hot_out}");
    let (code, _, err) = ctl(&sock, &["pages", "--hot", "0"]);
    assert_eq!(code, Some(2), "{err}");
    let shared_row = out
        .lines()
        .find(|l| l.starts_with(&format!("{shared:#x} ")))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        shared_row.split_whitespace().collect::<Vec<_>>()[1..5],
        ["S", "S", "S", "S"],
        "{out}"
    );
    assert!(out.contains(" pages on 4 islands"), "{out}");

    // --from/--count: exactly the hot page.
    let (code, out, _) = ctl(
        &sock,
        &["pages", "--from", &format!("{hot:#x}"), "--count", "1"],
    );
    assert_eq!(code, Some(0));
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("0x")).collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].starts_with(&format!("{hot:#x} ")), "{out}");
    assert!(
        out.contains(&format!("next: --from {:#x}", hot + PAGE)),
        "{out}"
    );
    // --json: the server's shape; a page listing that crosses several requests matches /pages.
    let (code, out, _) = ctl(
        &sock,
        &[
            "pages",
            "--json",
            "--from",
            &hot.to_string(),
            "--count",
            "2",
        ],
    );
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).expect("ctl pages --json is JSON");
    assert_eq!(v["pages"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(
        parse_hex(v["pages"][0]["address"].as_str().expect("a")),
        hot
    );
    assert_eq!(v["pages"][0]["copies"][1]["state"], "Modified");
    let (code, out, _) = ctl(&sock, &["pages", "--json"]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).expect("ctl pages --json is JSON");
    assert!(v["next"].is_null(), "{}", v["next"]);
    let listed: Vec<u64> = v["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .map(|p| parse_hex(p["address"].as_str().expect("a")))
        .collect();
    assert!(
        listed.contains(&hot) && listed.contains(&shared),
        "{listed:x?}"
    );
    assert!(listed.windows(2).all(|w| w[0] < w[1]));

    // stats: tables, and JSON with --json.
    let (code, out, _) = ctl(&sock, &["stats"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("islands: 4\n"), "{out}");
    for want in [
        "\nmessages: ",
        "\nmessages by link:\n",
        "\npage faults: ",
        "\nfault latency: mean ",
    ] {
        assert!(out.contains(want), "{want:?} in {out}");
    }
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..].starts_with(&["fetch"])),
        "{out}"
    );
    let (code, out, _) = ctl(&sock, &["stats", "--json"]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).expect("ctl stats --json is JSON");
    assert_eq!(v["islands"], 4);
    assert_eq!(v["faults"]["by_island"].as_array().map(Vec::len), Some(4));

    // metrics: the Prometheus text as is.
    let (code, out, _) = ctl(&sock, &["metrics"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("# TYPE popvmm_messages_total counter\n"),
        "{out}"
    );

    // Bad arguments are refused before any request; islands and threads still work.
    for bad in [
        &["pages", "--count", "0"][..],
        &["pages", "--from", "zz"],
        &["pages", "--count", "x"],
    ] {
        let (code, _, err) = ctl(&sock, bad);
        assert_ne!(code, Some(0), "{bad:?}");
        assert!(err.contains("invalid value"), "{bad:?}: {err}");
    }
    let (code, out, _) = ctl(&sock, &["islands"]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).expect("islands JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(4), "{v}");
    let (code, out, _) = ctl(&sock, &["threads"]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).expect("threads JSON");
    let mut on: Vec<u64> = v
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| t["island"].as_u64().expect("island"))
        .collect();
    on.sort_unstable();
    assert_eq!(on, [0, 1, 2, 3], "one thread per island: {v}");

    // End the program through its stdin.
    if let Some(mut stdin) = w.stdin.take() {
        let _ = stdin.write_all(b"bye\n");
    }
    let (out, err, code) = w.finish();
    assert_eq!(out, "pagewatch: done");
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn ctl_reports_errors_without_a_server() {
    let sock = scratch("nobody.sock");
    for cmd in [
        &["pages"][..],
        &["stats"],
        &["metrics"],
        &["pages", "--json"],
    ] {
        let (code, out, err) = ctl(&sock, cmd);
        assert_eq!(code, Some(1), "{cmd:?}");
        assert!(out.is_empty(), "{out}");
        assert!(err.starts_with("popvmm ctl: cannot connect"), "{err}");
    }
}
