//! `popvmm ctl`: the control socket's client. It sends the control socket's typed actions
//! (`api::action`) and reads the answers into the API's own types (`api::types`): `islands`,
//! `threads` and `shutdown` print them as JSON; `pages` and `stats` print tables (JSON with
//! `--json`); `metrics` prints the Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::action::{ControlAction, ControlError, MAX_PAGES_PER_REQUEST};
use crate::api::client::{self, ClientError};
use crate::api::types::{
    self, Address, ErrorBody, IslandInfo, MigrateRequest, PageList, ProposalRequest,
    ShutdownAnswer, ShutdownRequest, Stats, ThreadInfo, ThreadOpAnswer,
};

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
        /// Draw the pages' heat map into this SVG file instead of printing them: every page that
        /// cost a message, in address order, coloured by sharing pattern, darker the more it
        /// cost, and the pages that cost the most.
        #[arg(long, value_name = "FILE", conflicts_with = "json")]
        svg: Option<PathBuf>,
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
    /// POST /threads/TID/migrate: move thread TID to ISLAND wherever it is in its code (it moves
    /// at once from its own code or a call that restarts, after its call from nanosleep or poll).
    Migrate {
        tid: u32,
        island: usize,
        /// Wait (up to this many seconds) until /threads shows the thread on ISLAND.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// PUT /threads/TID/proposal: propose ISLAND for thread TID's next migration (libpopcorn's
    /// check_migrate, popcorn_migrate(-1, ...)); `none` withdraws the proposal.
    Propose {
        tid: u32,
        #[arg(value_parser = parse_island_or_none)]
        island: ProposedIsland,
    },
}

/// `ctl propose`'s island: a number, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposedIsland(pub Option<usize>);

fn parse_island_or_none(s: &str) -> Result<ProposedIsland, String> {
    if s == "none" {
        return Ok(ProposedIsland(None));
    }
    s.parse()
        .map(|i| ProposedIsland(Some(i)))
        .map_err(|_| format!("{s:?}: expected an island number or none"))
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
    #[error("cannot make the request: {0}")]
    Request(#[from] ControlError),
    #[error("{0}")]
    Output(String),
}

/// `--from`: an address, `0x`-hex or decimal.
pub fn parse_address(s: &str) -> Result<u64, String> {
    Address::parse(s)
        .map(|a| a.0)
        .ok_or_else(|| format!("{s:?} is not an address (0x-hex or decimal)"))
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
            crate::diag!("popvmm ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command and returns what it prints.
fn execute(sock: &Path, command: &CtlCommand) -> Result<String, CtlError> {
    match command {
        CtlCommand::Islands => pretty(&call::<Vec<IslandInfo>>(sock, &ControlAction::Islands)?),
        CtlCommand::Threads => pretty(&call::<Vec<ThreadInfo>>(sock, &ControlAction::Threads)?),
        CtlCommand::Shutdown => pretty(&call::<ShutdownAnswer>(
            sock,
            &ControlAction::Shutdown(ShutdownRequest {}),
        )?),
        CtlCommand::Metrics => call_text(sock, &ControlAction::Metrics),
        CtlCommand::Migrate { tid, island, wait } => {
            let answer: ThreadOpAnswer = call(
                sock,
                &ControlAction::Migrate {
                    tid: *tid,
                    request: MigrateRequest { to: *island },
                },
            )?;
            if let Some(secs) = wait {
                wait_until_on(sock, *tid, *island, std::time::Duration::from_secs(*secs))?;
            }
            pretty(&answer)
        }
        CtlCommand::Propose { tid, island } => pretty(&call::<ThreadOpAnswer>(
            sock,
            &ControlAction::Propose {
                tid: *tid,
                request: ProposalRequest { to: island.0 },
            },
        )?),
        CtlCommand::Stats { json } => {
            let stats: Stats = call(sock, &ControlAction::Stats)?;
            if *json {
                pretty(&stats)
            } else {
                Ok(render_stats(&stats))
            }
        }
        CtlCommand::Pages {
            from,
            count,
            hot,
            json,
            svg,
        } => {
            let mut list = fetch_pages(sock, from.unwrap_or(0), *count)?;
            if let Some(n) = hot {
                list = hottest(&list, *n);
            }
            if let Some(file) = svg {
                return write_heatmap(sock, &list, file);
            }
            if *json {
                pretty(&list)
            } else {
                Ok(render_pages(&list))
            }
        }
    }
}

/// `ctl pages --svg FILE`: the heat map of `list` into `file`; says what it drew.
#[cfg(feature = "plots")]
fn write_heatmap(sock: &Path, list: &PageList, file: &Path) -> Result<String, CtlError> {
    let costly = list.pages.iter().filter(|p| p.messages > 0).count();
    let title = format!("pages of the program at {}", sock.display());
    let svg = crate::plot::page_heatmap(&title, &list.pages)
        .map_err(|e| CtlError::Output(e.to_string()))?;
    std::fs::write(file, svg).map_err(|e| CtlError::Output(format!("{}: {e}", file.display())))?;
    Ok(format!(
        "{}: heat map of {costly} pages that cost messages ({} listed)",
        file.display(),
        list.pages.len()
    ))
}

#[cfg(not(feature = "plots"))]
fn write_heatmap(_: &Path, _: &PageList, _: &Path) -> Result<String, CtlError> {
    Err(CtlError::Output(
        "this popvmm was built without plots (the `plots` feature, on by default)".into(),
    ))
}

/// Polls /threads until thread `tid` runs on `island`, for at most `limit`.
fn wait_until_on(
    sock: &Path,
    tid: u32,
    island: usize,
    limit: std::time::Duration,
) -> Result<(), CtlError> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let threads: Vec<ThreadInfo> = call(sock, &ControlAction::Threads)?;
        match threads.iter().find(|t| t.tid == tid) {
            Some(t) if t.island == island && t.state != ThreadInfo::MIGRATING => return Ok(()),
            None => return Err(CtlError::Malformed(format!("thread {tid} has ended"))),
            Some(_) if std::time::Instant::now() >= deadline => {
                return Err(CtlError::Malformed(format!(
                    "thread {tid} is not on island {island} after {} s",
                    limit.as_secs()
                )))
            }
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}

/// A typed answer as indented JSON.
fn pretty<T: Serialize>(v: &T) -> Result<String, CtlError> {
    serde_json::to_string_pretty(v).map_err(|e| CtlError::Malformed(e.to_string()))
}

/// Sends `action`; a 4xx/5xx answer becomes an error carrying the server's message.
fn call_text(sock: &Path, action: &ControlAction) -> Result<String, CtlError> {
    let req = action.to_http()?;
    let r = client::request(sock, &req.method.to_string(), &req.target, &req.body)?;
    if r.status >= 400 {
        let message = serde_json::from_str::<ErrorBody>(&r.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| r.body.trim().to_owned());
        return Err(CtlError::Http {
            status: r.status,
            message,
        });
    }
    Ok(r.body)
}

/// Sends `action` and reads its answer as `T`.
fn call<T: DeserializeOwned>(sock: &Path, action: &ControlAction) -> Result<T, CtlError> {
    let body = call_text(sock, action)?;
    serde_json::from_str(&body).map_err(|e| {
        let target = action.to_http().map(|r| r.target).unwrap_or_default();
        CtlError::Malformed(format!("{target}: {e}"))
    })
}

/// Follows `next` from `from` until `count` pages (or every page) are listed. Returns the same
/// shape as one `GET /pages`: the pages, and where the next one starts (null: no page after).
fn fetch_pages(sock: &Path, from: u64, count: Option<u64>) -> Result<PageList, CtlError> {
    let per_request = MAX_PAGES_PER_REQUEST as u64;
    let mut pages = Vec::new();
    let mut cursor = Some(from);
    while let Some(at) = cursor {
        let want = match count {
            Some(c) => c.saturating_sub(pages.len() as u64),
            None => per_request,
        };
        if want == 0 {
            break;
        }
        let n = usize::try_from(want.min(per_request)).unwrap_or(MAX_PAGES_PER_REQUEST);
        let list: PageList = call(sock, &ControlAction::Pages { from: at, count: n })?;
        if list.pages.is_empty() {
            cursor = None;
            break;
        }
        pages.extend(list.pages);
        let next = list.next.map(|a| a.0);
        // A server that does not move forward would make us loop for ever.
        if next.is_some_and(|n| n <= at) {
            return Err(CtlError::Malformed(format!(
                "/pages: next {next:?} does not advance past {at:#x}"
            )));
        }
        cursor = next;
    }
    Ok(PageList {
        pages,
        next: cursor.map(Address),
    })
}

/// The `n` pages of a page list that cost the most messages, most first (ties in address order);
/// pages that cost none are left out.
pub fn hottest(list: &PageList, n: u64) -> PageList {
    PageList {
        pages: types::hottest(&list.pages, usize::try_from(n).unwrap_or(usize::MAX)),
        next: None,
    }
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
pub fn island_ranges<I: Copy + Into<u64>>(ids: &[I]) -> String {
    let mut ids: Vec<u64> = ids.iter().map(|&i| i.into()).collect();
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
pub fn render_pages(list: &PageList) -> String {
    let pages = &list.pages;
    let islands = pages.iter().map(|p| p.copies.len()).max().unwrap_or(0);
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
        let mut row = vec![p.address.to_string()];
        let mut cells = vec!["?".to_string(); islands];
        for c in &p.copies {
            let short = short_state(&c.state);
            *counts.entry(short).or_default() += 1;
            let mut cell = short.to_string();
            if c.waiting > 0 {
                let _ = write!(cell, "+{}", c.waiting);
            }
            if let Some(slot) = cells.get_mut(c.island) {
                *slot = cell;
            }
        }
        row.extend(cells);
        row.push(p.owner.map_or("-".to_string(), |o| o.to_string()));
        row.push(island_ranges(&p.users));
        row.push(p.messages.to_string());
        let writers: Vec<u64> = p.writers.iter().map(|&w| w as u64).collect();
        row.push(island_ranges(&writers));
        row.push(p.pattern.to_string());
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
    if let Some(next) = list.next {
        let _ = writeln!(out, "next: --from {next}");
    }
    out.push_str(
        "states: U Unmapped, NR Not Replicated, S Shared, M Modified, I Invalid, IR1/IR2 Invalid \
         Read, WP1/WP2 Writing Pend, WR Writing Read, FNR/FV/FI Fetching; +N: N faults waiting\n",
    );
    out
}

fn opt_us(v: Option<u64>) -> String {
    v.map_or("-".into(), |us| format!("{us} us"))
}

/// The `/stats` tables: messages by type and by link, faults by kind and island, latency.
pub fn render_stats(s: &Stats) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "islands: {}", s.islands);

    let _ = writeln!(out, "\nmessages: {}", s.messages.total);
    let mut rows = vec![vec!["type".to_string(), "count".to_string()]];
    rows.extend(
        s.messages
            .by_type
            .iter()
            .map(|(k, n)| vec![k.clone(), n.to_string()]),
    );
    out.push_str(&indent(&columns(&rows)));

    let mut links: Vec<(u8, u8, u64)> = s
        .messages
        .by_link
        .iter()
        .map(|l| (l.from, l.to, l.messages))
        .collect();
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

    let f = &s.faults;
    let _ = writeln!(
        out,
        "\npage faults: {} (resolved {}, served locally {})",
        f.total, f.resolved, f.local
    );
    let mut rows = vec![vec![
        "island".to_string(),
        "read_missing".to_string(),
        "write_missing".to_string(),
        "write_protect".to_string(),
        "resolved".to_string(),
    ]];
    let row = |name: String, c: [u64; 4]| {
        let mut r = vec![name];
        r.extend(c.iter().map(u64::to_string));
        r
    };
    for e in &f.by_island {
        rows.push(row(
            e.island.to_string(),
            [e.read_missing, e.write_missing, e.write_protect, e.resolved],
        ));
    }
    rows.push(row(
        "all".to_string(),
        [f.read_missing, f.write_missing, f.write_protect, f.resolved],
    ));
    out.push_str(&indent(&columns(&rows)));

    let lat = &s.fault_latency_us;
    let _ = writeln!(
        out,
        "\nfault latency: mean {}, p50 < {}, p99 < {}",
        lat.mean.map_or("-".into(), |m| format!("{m:.1} us")),
        opt_us(lat.p50),
        opt_us(lat.p99),
    );
    let _ = writeln!(out, "stale messages: {}", s.stale_messages);
    let _ = writeln!(out, "prefetched pages: {}", f.prefetched);
    let _ = writeln!(
        out,
        "read-ahead pages: {} ({} seen used, {} of them late; {} dropped unseen)",
        f.read_ahead, f.read_ahead_used, f.read_ahead_late, f.read_ahead_dropped
    );
    let _ = writeln!(
        out,
        "range messages: {} ({} pages carried, {} UFFDIO_COPY calls saved)",
        s.ranges.sent, s.ranges.pages, s.ranges.copies_saved
    );
    let _ = writeln!(
        out,
        "holding windows: {}, requests held {:.1} ms",
        s.hold_windows,
        s.held_us as f64 / 1e3
    );
    let _ = writeln!(
        out,
        "time calls served by the vDSO (exits avoided): {}, as system calls: {}",
        s.vdso_calls, s.time_syscalls
    );
    let _ = writeln!(
        out,
        "migrations: {}, latency {}",
        s.migrations,
        s.migration_latency_us.text()
    );
    out
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A copy of a page as the server writes it.
    fn copy(island: usize, state: &str, mapping: &str, waiting: usize) -> Value {
        json!({"island": island, "state": state, "mapping": mapping, "waiting": waiting,
               "read_faults": 0, "write_faults": 0, "messages_received": 0})
    }

    /// Three pages of a 4-island run, in the server's JSON (what `GET /pages` sends).
    fn canned_pages() -> PageList {
        let v = json!({"pages": [
            {"address": "0x4bb000", "owner": 1, "users": [0, 1, 2, 3], "messages": 12,
             "messages_by_type": {"fetch": 12}, "readers": [0], "writers": [1, 2, 3],
             "pattern": "write-shared", "copies": [
                copy(0, "Invalid", "none", 0), copy(1, "Modified", "read-write", 0),
                copy(2, "Invalid", "none", 0), copy(3, "Invalid", "none", 0)]},
            {"address": "0x4bc000", "owner": null, "users": [0, 1, 2, 3], "messages": 40,
             "messages_by_type": {"copy": 40}, "readers": [1, 2, 3], "writers": [0],
             "pattern": "producer-consumer", "copies": [
                copy(0, "Shared", "read-only", 0), copy(1, "Shared", "read-only", 0),
                copy(2, "InvalidRead1", "none", 2), copy(3, "Shared", "read-only", 0)]},
            {"address": "0xfbffff000", "owner": 0, "users": [0, 2], "messages": 0,
             "messages_by_type": {}, "readers": [], "writers": [], "pattern": "untouched",
             "copies": [
                copy(0, "NotReplicated", "read-write", 0), copy(1, "Unmapped", "none", 0),
                copy(2, "WritingPend1", "none", 0), copy(3, "FetchingValid", "none", 0)]}
        ], "next": "0xfc0000000"});
        serde_json::from_value(v).expect("the server's JSON reads into PageList")
    }

    #[test]
    fn pages_table_has_a_row_per_page_and_a_column_per_island() {
        let out = render_pages(&canned_pages());
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
        let empty = PageList {
            pages: vec![],
            next: None,
        };
        let out = render_pages(&empty);
        assert_eq!(
            out.lines().next(),
            Some("address  owner  users  msgs  writers  pattern")
        );
        assert!(out.contains("0 pages on 0 islands\n"), "{out}");
        assert!(!out.contains("next:"));
        // An unknown state prints as given; an island a row does not cover is a '?'.
        let mut odd = canned_pages();
        odd.pages.truncate(2);
        odd.pages[0].copies[1].state = "Weird".into();
        odd.pages[1].copies.truncate(1);
        let out = render_pages(&odd);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>()[..5],
            ["0x4bb000", "I", "Weird", "I", "I"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>()[..5],
            ["0x4bc000", "S", "?", "?", "?"]
        );
        // What is not a page list is an error, not a table of question marks.
        for bad in [
            json!({"error": "x"}),
            json!([1, 2]),
            json!({"pages": [{"address": 5}]}),
        ] {
            assert!(serde_json::from_value::<PageList>(bad).is_err());
        }
    }

    #[test]
    fn hottest_pages_come_first_and_quiet_ones_are_left_out() {
        let hot = hottest(&canned_pages(), 10);
        let addresses: Vec<u64> = hot.pages.iter().map(|p| p.address.0).collect();
        assert_eq!(addresses, [0x4bc000, 0x4bb000]);
        assert_eq!(hot.next, None);
        assert_eq!(hottest(&canned_pages(), 1).pages.len(), 1);
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
        assert_eq!(island_ranges::<u64>(&[]), "-");
        assert_eq!(island_ranges(&[3u8]), "3");
        assert_eq!(island_ranges(&[0u8, 1, 2, 3]), "0-3");
        assert_eq!(island_ranges(&[5u64, 0, 2, 1, 7, 6, 2]), "0-2,5-7");
        assert_eq!(island_ranges(&[0u64, 2, 4]), "0,2,4");
    }

    #[test]
    fn answers_print_as_indented_json() {
        let s = ShutdownAnswer::shutting_down();
        assert_eq!(
            pretty(&s).expect("pretty"),
            "{\n  \"status\": \"shutting down\"\n}"
        );
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

    /// `/stats` of a 2-island run, in the server's JSON.
    fn canned_stats() -> Stats {
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
        .expect("the server's JSON reads into Stats")
    }

    #[test]
    fn stats_tables() {
        let out = render_stats(&canned_stats());
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
prefetched pages: 0
read-ahead pages: 0 (0 seen used, 0 of them late; 0 dropped unseen)
range messages: 0 (0 pages carried, 0 UFFDIO_COPY calls saved)
holding windows: 0, requests held 0.0 ms
time calls served by the vDSO (exits avoided): 0, as system calls: 0
migrations: 0, latency -
";
        assert_eq!(out, want);
    }

    #[test]
    fn stats_without_faults_or_latency() {
        let mut s = canned_stats();
        s.faults = types::FaultStats {
            total: 0,
            read_missing: 0,
            write_missing: 0,
            write_protect: 0,
            resolved: 0,
            local: 0,
            prefetched: 0,
            read_ahead: 0,
            read_ahead_used: 0,
            read_ahead_late: 0,
            read_ahead_dropped: 0,
            by_island: vec![],
        };
        s.fault_latency_us = types::LatencyUs {
            mean: None,
            p50: None,
            p99: None,
        };
        let out = render_stats(&s);
        assert!(
            out.contains("fault latency: mean -, p50 < -, p99 < -"),
            "{out}"
        );
        assert!(out.contains("  all     0"), "{out}");
        for bad in [json!({"faults": {}}), json!({"messages": {}}), Value::Null] {
            assert!(serde_json::from_value::<Stats>(bad).is_err());
        }
    }
}
