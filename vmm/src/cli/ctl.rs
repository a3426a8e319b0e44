//! `popvmm ctl`: the control socket's client. `islands`, `threads` and `shutdown` print the server's
//! JSON; `pages` and `stats` print tables (JSON with `--json`); `metrics` prints the Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::api::client::{self, ClientError};

/// The most pages the server lists in one answer (`count` of `GET /pages`).
const MAX_PAGES_PER_REQUEST: u64 = 4096;

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The control socket given to `popvmm launch --api-sock`.
    #[arg(long, default_value = "/tmp/popvmm.sock")]
    pub api_sock: PathBuf,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// GET /islands: the islands and their memory.
    Islands,
    /// GET /threads: every thread with its island, state and rip.
    Threads,
    /// GET /pages: every coherent page, its state on each island, its owner and its users, the
    /// messages it cost, the islands that wrote it and its sharing pattern.
    ///
    /// States in the table: U Unmapped, NR Not Replicated, S Shared, M Modified, I Invalid,
    /// IR1/IR2 Invalid Read, WP1/WP2 Writing Pend, WR Writing Read, FNR/FV/FI Fetching; +N: N
    /// faults waiting on that island. Patterns (from who faulted on the page since the protocol
    /// started): untouched (no fault yet), read-shared (read on islands, written on none: one
    /// fetch per reader),
    /// private (read and written on one island), producer-consumer (written on one island, read
    /// on others: every write invalidates the readers, who fetch again), write-shared (written on
    /// several islands, true or false sharing: the page moves at every write).
    Pages {
        /// First address (hex with 0x, or decimal); the page that holds it is the first listed.
        #[arg(long, value_parser = parse_address)]
        from: Option<u64>,
        /// At most this many pages (default: every page from --from on).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// Only the N pages that cost the most messages, most first (the pages that bounce).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        hot: Option<u64>,
        /// Print the server's JSON (pages and next) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// GET /stats: messages by type and link, faults by kind and island, fault latency.
    Stats {
        /// Print the server's JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// GET /metrics: the same counters as Prometheus text.
    Metrics,
    /// PUT /shutdown: end the program (as SIGTERM would).
    Shutdown,
}

/// Errors of a `popvmm ctl` command.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("unexpected answer from the control socket: {0}")]
    Malformed(String),
}

/// `--from`: an address, `0x`-hex or decimal.
pub fn parse_address(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    parsed.map_err(|_| format!("{s:?} is not an address (0x-hex or decimal)"))
}

pub fn run(args: CtlArgs) -> ExitCode {
    match execute(&args.api_sock, &args.command) {
        Ok(mut out) => {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            // `popvmm ctl pages | head` closes the pipe early: not an error worth a panic.
            use std::io::Write as _;
            let _ = std::io::stdout().lock().write_all(out.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("popvmm ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command and returns what it prints.
fn execute(sock: &Path, command: &CtlCommand) -> Result<String, CtlError> {
    match command {
        CtlCommand::Islands => call(sock, "GET", "/islands").map(|b| pretty_or_raw(&b)),
        CtlCommand::Threads => call(sock, "GET", "/threads").map(|b| pretty_or_raw(&b)),
        CtlCommand::Shutdown => call(sock, "PUT", "/shutdown").map(|b| pretty_or_raw(&b)),
        CtlCommand::Metrics => call(sock, "GET", "/metrics"),
        CtlCommand::Stats { json } => {
            let v = get_json(sock, "GET", "/stats")?;
            if *json {
                Ok(pretty(&v))
            } else {
                render_stats(&v)
            }
        }
        CtlCommand::Pages {
            from,
            count,
            hot,
            json,
        } => {
            let mut v = fetch_pages(sock, from.unwrap_or(0), *count)?;
            if let Some(n) = hot {
                v = hottest(&v, *n)?;
            }
            if *json {
                Ok(pretty(&v))
            } else {
                render_pages(&v)
            }
        }
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A JSON body indented, any other body as it came.
fn pretty_or_raw(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => pretty(&v),
        Err(_) => body.to_string(),
    }
}

/// One request; a 4xx/5xx answer becomes an error carrying the server's message.
fn call(sock: &Path, method: &str, path: &str) -> Result<String, CtlError> {
    let r = client::request(sock, method, path, "")?;
    if r.status >= 400 {
        let message = serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| r.body.trim().to_owned());
        return Err(CtlError::Http {
            status: r.status,
            message,
        });
    }
    Ok(r.body)
}

fn get_json(sock: &Path, method: &str, path: &str) -> Result<Value, CtlError> {
    let body = call(sock, method, path)?;
    serde_json::from_str(&body).map_err(|e| CtlError::Malformed(format!("{path}: {e}")))
}

/// Follows `next` from `from` until `count` pages (or every page) are listed. Returns the same
/// shape as one `GET /pages`: `{"pages": [...], "next": ADDR or null}`.
fn fetch_pages(sock: &Path, from: u64, count: Option<u64>) -> Result<Value, CtlError> {
    let mut rows: Vec<Value> = Vec::new();
    let mut cursor = Some(from);
    while let Some(at) = cursor {
        let want = match count {
            Some(c) => c.saturating_sub(rows.len() as u64),
            None => MAX_PAGES_PER_REQUEST,
        };
        if want == 0 {
            break;
        }
        let n = want.min(MAX_PAGES_PER_REQUEST);
        let v = get_json(sock, "GET", &format!("/pages?from={at:#x}&count={n}"))?;
        let page = v
            .get("pages")
            .and_then(Value::as_array)
            .ok_or_else(|| CtlError::Malformed("/pages: no \"pages\" list".into()))?;
        if page.is_empty() {
            cursor = None;
            break;
        }
        rows.extend(page.iter().cloned());
        let next = match v.get("next").and_then(Value::as_str) {
            Some(s) => Some(parse_address(s).map_err(CtlError::Malformed)?),
            None => None,
        };
        // A server that does not move forward would make us loop for ever.
        if next.is_some_and(|n| n <= at) {
            return Err(CtlError::Malformed(format!(
                "/pages: next {next:?} does not advance past {at:#x}"
            )));
        }
        cursor = next;
    }
    Ok(json!({
        "pages": rows,
        "next": cursor.map(|n| format!("{n:#x}")),
    }))
}

/// The `n` pages of a `/pages` answer that cost the most messages, most first (ties in address
/// order); pages that cost none are left out.
pub fn hottest(v: &Value, n: u64) -> Result<Value, CtlError> {
    let pages = v
        .get("pages")
        .and_then(Value::as_array)
        .ok_or_else(|| CtlError::Malformed("/pages: no \"pages\" list".into()))?;
    let hot = crate::api::stats::hottest(pages, usize::try_from(n).unwrap_or(usize::MAX));
    Ok(json!({ "pages": hot, "next": null }))
}

/// The short name of a page state in the tables (see `coherency::State::name`).
pub fn short_state(name: &str) -> &str {
    match name {
        "Unmapped" => "U",
        "NotReplicated" => "NR",
        "FetchingNotReplicated" => "FNR",
        "FetchingValid" => "FV",
        "FetchingInvalid" => "FI",
        "Shared" => "S",
        "Modified" => "M",
        "Invalid" => "I",
        "InvalidRead1" => "IR1",
        "InvalidRead2" => "IR2",
        "WritingPend1" => "WP1",
        "WritingPend2" => "WP2",
        "WritingRead" => "WR",
        other => other,
    }
}

/// `[0, 1, 2, 3, 5]` -> `0-3,5`.
pub fn island_ranges(ids: &[u64]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while i + 1 < ids.len() && ids[i + 1] == end + 1 {
            i += 1;
            end = ids[i];
        }
        parts.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

/// Left-aligned columns separated by two spaces, without trailing blanks.
fn columns(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(x) => *x = (*x).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let w = widths.get(i).copied().unwrap_or(0);
            let _ = write!(line, "{cell:<w$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `/pages` table: one row per page, one column per island.
pub fn render_pages(v: &Value) -> Result<String, CtlError> {
    let pages = v
        .get("pages")
        .and_then(Value::as_array)
        .ok_or_else(|| CtlError::Malformed("/pages: no \"pages\" list".into()))?;
    let islands = pages
        .iter()
        .filter_map(|p| p.get("copies").and_then(Value::as_array).map(Vec::len))
        .max()
        .unwrap_or(0);
    let mut header = vec!["address".to_string()];
    header.extend((0..islands).map(|i| format!("i{i}")));
    header.extend(
        ["owner", "users", "msgs", "writers", "pattern"]
            .iter()
            .map(|h| h.to_string()),
    );
    let mut rows = vec![header];
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in pages {
        let address = p.get("address").and_then(Value::as_str).unwrap_or("?");
        let mut row = vec![address.to_string()];
        let copies = p
            .get("copies")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut cells = vec!["?".to_string(); islands];
        for (pos, c) in copies.iter().enumerate() {
            let island = c
                .get("island")
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok())
                .unwrap_or(pos);
            let state = c.get("state").and_then(Value::as_str).unwrap_or("?");
            *counts.entry(short_state(state)).or_default() += 1;
            let mut cell = short_state(state).to_string();
            if let Some(w) = c.get("waiting").and_then(Value::as_u64).filter(|&w| w > 0) {
                let _ = write!(cell, "+{w}");
            }
            if let Some(slot) = cells.get_mut(island) {
                *slot = cell;
            }
        }
        row.extend(cells);
        row.push(
            p.get("owner")
                .and_then(Value::as_u64)
                .map_or("-".to_string(), |o| o.to_string()),
        );
        row.push(island_ranges(&islands_of(p, "users")));
        row.push(
            p.get("messages")
                .and_then(Value::as_u64)
                .map_or("-".to_string(), |m| m.to_string()),
        );
        row.push(island_ranges(&islands_of(p, "writers")));
        row.push(
            p.get("pattern")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string(),
        );
        rows.push(row);
    }
    let mut out = columns(&rows);
    let _ = write!(
        out,
        "{} page{} on {islands} island{}",
        pages.len(),
        if pages.len() == 1 { "" } else { "s" },
        if islands == 1 { "" } else { "s" }
    );
    if !counts.is_empty() {
        let tally: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
        let _ = write!(out, " (copies: {})", tally.join(", "));
    }
    out.push('\n');
    if let Some(next) = v.get("next").and_then(Value::as_str) {
        let _ = writeln!(out, "next: --from {next}");
    }
    out.push_str(
        "states: U Unmapped, NR Not Replicated, S Shared, M Modified, I Invalid, IR1/IR2 Invalid \
         Read, WP1/WP2 Writing Pend, WR Writing Read, FNR/FV/FI Fetching; +N: N faults waiting\n",
    );
    Ok(out)
}

/// A list of island numbers in a JSON object (empty when absent).
fn islands_of(v: &Value, key: &str) -> Vec<u64> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|u| u.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn opt_us(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(u) => format!("{u} us"),
            None => n.as_f64().map_or("-".into(), |f| format!("{f:.1} us")),
        },
        _ => "-".into(),
    }
}

/// The `/stats` tables: messages by type and by link, faults by kind and island, latency.
pub fn render_stats(v: &Value) -> Result<String, CtlError> {
    let messages = v
        .get("messages")
        .filter(|m| m.is_object())
        .ok_or_else(|| CtlError::Malformed("/stats: no \"messages\"".into()))?;
    let faults = v
        .get("faults")
        .filter(|f| f.is_object())
        .ok_or_else(|| CtlError::Malformed("/stats: no \"faults\"".into()))?;
    let mut out = String::new();
    let _ = writeln!(out, "islands: {}", num(v, "islands"));

    let _ = writeln!(out, "\nmessages: {}", num(messages, "total"));
    let mut rows = vec![vec!["type".to_string(), "count".to_string()]];
    if let Some(types) = messages.get("by_type").and_then(Value::as_object) {
        rows.extend(
            types
                .iter()
                .map(|(k, n)| vec![k.clone(), n.as_u64().map_or("?".into(), |n| n.to_string())]),
        );
    }
    out.push_str(&indent(&columns(&rows)));

    let mut links: Vec<(u64, u64, u64)> = messages
        .get("by_link")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|e| (num(e, "from"), num(e, "to"), num(e, "messages")))
                .collect()
        })
        .unwrap_or_default();
    links.sort_unstable();
    let _ = writeln!(out, "\nmessages by link:");
    let mut rows = vec![vec![
        "from".to_string(),
        "to".to_string(),
        "messages".to_string(),
    ]];
    rows.extend(
        links
            .iter()
            .map(|(f, t, n)| vec![f.to_string(), t.to_string(), n.to_string()]),
    );
    out.push_str(&indent(&columns(&rows)));

    let _ = writeln!(
        out,
        "\npage faults: {} (resolved {}, served locally {})",
        num(faults, "total"),
        num(faults, "resolved"),
        num(faults, "local")
    );
    const KINDS: [&str; 4] = ["read_missing", "write_missing", "write_protect", "resolved"];
    let mut rows = vec![vec!["island".to_string()]];
    rows[0].extend(KINDS.iter().map(|k| k.to_string()));
    if let Some(by) = faults.get("by_island").and_then(Value::as_array) {
        for e in by {
            let mut row = vec![num(e, "island").to_string()];
            row.extend(KINDS.iter().map(|k| num(e, k).to_string()));
            rows.push(row);
        }
    }
    let mut total = vec!["all".to_string()];
    total.extend(KINDS.iter().map(|k| num(faults, k).to_string()));
    rows.push(total);
    out.push_str(&indent(&columns(&rows)));

    let lat = v.get("fault_latency_us");
    let _ = writeln!(
        out,
        "\nfault latency: mean {}, p50 < {}, p99 < {}",
        opt_us(lat.and_then(|l| l.get("mean"))),
        opt_us(lat.and_then(|l| l.get("p50"))),
        opt_us(lat.and_then(|l| l.get("p99"))),
    );
    if let Some(stale) = v.get("stale_messages").and_then(Value::as_u64) {
        let _ = writeln!(out, "stale messages: {stale}");
    }
    Ok(out)
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canned_pages() -> Value {
        serde_json::from_str(
            r#"{"pages": [
                {"address": "0x4bb000", "owner": 1, "users": [0, 1, 2, 3], "messages": 12,
                 "writers": [1, 2, 3], "pattern": "write-shared", "copies": [
                    {"island": 0, "state": "Invalid", "mapping": "none", "waiting": 0},
                    {"island": 1, "state": "Modified", "mapping": "read-write", "waiting": 0},
                    {"island": 2, "state": "Invalid", "mapping": "none", "waiting": 0},
                    {"island": 3, "state": "Invalid", "mapping": "none", "waiting": 0}]},
                {"address": "0x4bc000", "owner": null, "users": [0, 1, 2, 3], "messages": 40,
                 "writers": [0], "pattern": "producer-consumer", "copies": [
                    {"island": 0, "state": "Shared", "mapping": "read-only", "waiting": 0},
                    {"island": 1, "state": "Shared", "mapping": "read-only", "waiting": 0},
                    {"island": 2, "state": "InvalidRead1", "mapping": "none", "waiting": 2},
                    {"island": 3, "state": "Shared", "mapping": "read-only", "waiting": 0}]},
                {"address": "0xfbffff000", "owner": 0, "users": [0, 2], "messages": 0,
                 "writers": [], "pattern": "untouched", "copies": [
                    {"island": 0, "state": "NotReplicated", "mapping": "read-write", "waiting": 0},
                    {"island": 1, "state": "Unmapped", "mapping": "none", "waiting": 0},
                    {"island": 2, "state": "WritingPend1", "mapping": "none", "waiting": 0},
                    {"island": 3, "state": "FetchingValid", "mapping": "none", "waiting": 0}]}
            ], "next": "0xfc0000000"}"#,
        )
        .expect("canned JSON")
    }

    #[test]
    fn pages_table_has_a_row_per_page_and_a_column_per_island() {
        let out = render_pages(&canned_pages()).expect("render");
        let lines: Vec<&str> = out.lines().collect();
        let cells = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            cells(lines[0]),
            ["address", "i0", "i1", "i2", "i3", "owner", "users", "msgs", "writers", "pattern"]
        );
        assert_eq!(
            cells(lines[1]),
            [
                "0x4bb000",
                "I",
                "M",
                "I",
                "I",
                "1",
                "0-3",
                "12",
                "1-3",
                "write-shared"
            ]
        );
        assert_eq!(
            cells(lines[2]),
            [
                "0x4bc000",
                "S",
                "S",
                "IR1+2",
                "S",
                "-",
                "0-3",
                "40",
                "0",
                "producer-consumer"
            ]
        );
        assert_eq!(
            cells(lines[3]),
            [
                "0xfbffff000",
                "NR",
                "U",
                "WP1",
                "FV",
                "0",
                "0,2",
                "0",
                "-",
                "untouched"
            ]
        );
        assert_eq!(
            lines[4],
            "3 pages on 4 islands (copies: FV 1, I 3, IR1 1, M 1, NR 1, S 3, U 1, WP1 1)"
        );
        assert_eq!(lines[5], "next: --from 0xfc0000000");
        assert!(lines[6].starts_with("states: U Unmapped"));
        // Columns line up: every island column starts at the same offset on every row.
        let col = lines[0].find("i1").expect("i1");
        assert_eq!(&lines[1][col..col + 1], "M");
        assert_eq!(&lines[3][col..col + 1], "U");
        assert!(out.lines().all(|l| l == l.trim_end()));
    }

    #[test]
    fn pages_table_without_pages_and_with_odd_rows() {
        let out = render_pages(&json!({"pages": [], "next": null})).expect("render");
        assert_eq!(
            out.lines().next(),
            Some("address  owner  users  msgs  writers  pattern")
        );
        assert!(out.contains("0 pages on 0 islands\n"), "{out}");
        assert!(!out.contains("next:"));
        // Missing fields and unknown states do not panic; an unknown state prints as given.
        let odd = json!({"pages": [{"copies": [{"state": "Weird"}, {}]}, {"address": 5}]});
        let out = render_pages(&odd).expect("render");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["?", "Weird", "?", "-", "-", "-", "-", "-"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["?", "?", "?", "-", "-", "-", "-", "-"]
        );
        assert!(render_pages(&json!({"error": "x"})).is_err());
        assert!(render_pages(&json!([1, 2])).is_err());
    }

    #[test]
    fn hottest_pages_come_first_and_quiet_ones_are_left_out() {
        let hot = hottest(&canned_pages(), 10).expect("hottest");
        let addresses: Vec<&str> = hot["pages"]
            .as_array()
            .expect("pages")
            .iter()
            .filter_map(|p| p["address"].as_str())
            .collect();
        assert_eq!(addresses, ["0x4bc000", "0x4bb000"]);
        assert!(hot["next"].is_null());
        let one = hottest(&canned_pages(), 1).expect("hottest");
        assert_eq!(one["pages"].as_array().map(Vec::len), Some(1));
        assert!(hottest(&json!({"error": "x"}), 1).is_err());
    }

    #[test]
    fn every_state_has_a_short_name() {
        for s in coherency::State::ALL {
            let short = short_state(s.name());
            assert!(short.len() <= 3, "{} -> {short}", s.name());
        }
        let names: std::collections::BTreeSet<&str> = coherency::State::ALL
            .iter()
            .map(|s| short_state(s.name()))
            .collect();
        assert_eq!(
            names.len(),
            coherency::State::ALL.len(),
            "short names clash"
        );
    }

    #[test]
    fn island_ranges_are_compact() {
        assert_eq!(island_ranges(&[]), "-");
        assert_eq!(island_ranges(&[3]), "3");
        assert_eq!(island_ranges(&[0, 1, 2, 3]), "0-3");
        assert_eq!(island_ranges(&[5, 0, 2, 1, 7, 6, 2]), "0-2,5-7");
        assert_eq!(island_ranges(&[0, 2, 4]), "0,2,4");
    }

    #[test]
    fn bodies_print_as_indented_json_or_as_they_came() {
        assert_eq!(
            pretty_or_raw(r#"{"a":[1]}"#),
            "{\n  \"a\": [\n    1\n  ]\n}"
        );
        assert_eq!(pretty_or_raw("plain text\n"), "plain text\n");
        assert_eq!(pretty_or_raw(""), "");
    }

    #[test]
    fn addresses_parse_as_hex_or_decimal() {
        assert_eq!(parse_address("0x4bb000"), Ok(0x4bb000));
        assert_eq!(parse_address("0X10"), Ok(16));
        assert_eq!(parse_address("4096"), Ok(4096));
        assert!(parse_address("0xzz").is_err());
        assert!(parse_address("").is_err());
        assert!(parse_address("-1").is_err());
        assert!(parse_address("0x1ffffffffffffffff").is_err());
    }

    fn canned_stats() -> Value {
        serde_json::from_str(
            r#"{"islands": 2,
                "messages": {"total": 30, "by_type": {"ack": 4, "copy": 10, "fetch": 16},
                    "by_link": [{"from": 1, "to": 0, "messages": 12}, {"from": 0, "to": 1, "messages": 18}]},
                "faults": {"total": 9, "read_missing": 5, "write_missing": 3, "write_protect": 1,
                    "resolved": 8, "local": 2,
                    "by_island": [
                        {"island": 0, "read_missing": 1, "write_missing": 3, "write_protect": 0, "resolved": 4},
                        {"island": 1, "read_missing": 4, "write_missing": 0, "write_protect": 1, "resolved": 4}]},
                "fault_latency_us": {"mean": 412.25, "p50": 256, "p99": 4096},
                "stale_messages": 0}"#,
        )
        .expect("canned JSON")
    }

    #[test]
    fn stats_tables() {
        let out = render_stats(&canned_stats()).expect("render");
        let want = "\
islands: 2

messages: 30
  type   count
  ack    4
  copy   10
  fetch  16

messages by link:
  from  to  messages
  0     1   18
  1     0   12

page faults: 9 (resolved 8, served locally 2)
  island  read_missing  write_missing  write_protect  resolved
  0       1             3              0              4
  1       4             0              1              4
  all     5             3              1              8

fault latency: mean 412.2 us, p50 < 256 us, p99 < 4096 us
stale messages: 0
";
        assert_eq!(out, want);
    }

    #[test]
    fn stats_without_faults_or_latency() {
        let v = json!({"islands": 1, "messages": {"total": 0, "by_type": {}, "by_link": []},
            "faults": {"total": 0, "by_island": []},
            "fault_latency_us": {"mean": null, "p50": null, "p99": null}});
        let out = render_stats(&v).expect("render");
        assert!(
            out.contains("fault latency: mean -, p50 < -, p99 < -"),
            "{out}"
        );
        assert!(out.contains("  all     0"), "{out}");
        assert!(render_stats(&json!({"faults": {}})).is_err());
        assert!(render_stats(&json!({"messages": {}})).is_err());
        assert!(render_stats(&Value::Null).is_err());
    }
}
