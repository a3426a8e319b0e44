//! What the control socket says, as types: the one definition of its JSON, used by the program's
//! owner to answer (`program.rs`), by `popvmm ctl` to read the answers (`cli/ctl.rs`), and by the
//! exit summary (`--stats-json`, the lines on stderr).
//!
//! The field names and nesting are the API: scripts read them, so a change here is a change of the
//! API. Unknown fields are ignored when reading, so a newer server's additions do not break an older
//! `ctl`. Names that another layer owns stay strings: a page copy's `state` is the coherency
//! protocol's (`coherency::State::name`), a thread's `state` the island kernel's
//! (`ThreadState::name`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::metrics::{Latencies, Quantile, BUCKETS};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A guest address, written `0x`-hex in JSON (`"0x4bb000"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub u64);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl Address {
    /// `0x`-hex (as the server writes it) or decimal.
    pub fn parse(s: &str) -> Option<Address> {
        let t = s.trim();
        let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(h) => u64::from_str_radix(h, 16),
            None => t.parse(),
        };
        parsed.ok().map(Address)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
        let s = String::deserialize(d)?;
        Address::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an address")))
    }
}

/// `GET /islands`: one island kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IslandInfo {
    pub id: usize,
    /// The program's path as it sees it.
    pub program: String,
    pub pid: u32,
    /// Threads running on this island.
    pub threads: usize,
    pub memory: IslandMemory,
    /// Since popvmm started.
    pub uptime_ms: u64,
}

/// An island's guest memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IslandMemory {
    /// The host reservation (the guest's whole physical address space).
    pub slot_bytes: u64,
    /// What of it is resident (null when /proc/self/smaps cannot say).
    pub resident_bytes: Option<u64>,
}

/// `GET /threads`: one thread of the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadInfo {
    pub tid: u32,
    pub island: usize,
    pub vcpu: u64,
    /// `running`, `syscall`, `blocked` or `exited` (the island kernel's `ThreadState::name`), or
    /// `migrating` (on its way to `island`: its other fields are then zero).
    pub state: String,
    /// rip at the thread's last exit to the island kernel.
    pub rip: u64,
    pub syscalls: u64,
    /// The island proposed for its next migration (popcorn_propose_migration, `ctl propose`).
    #[serde(default)]
    pub proposed: Option<usize>,
    /// Migrations so far.
    #[serde(default)]
    pub migrations: u32,
}

impl ThreadInfo {
    /// The state of a thread on its way between islands.
    pub const MIGRATING: &'static str = "migrating";

    /// A thread on its way to island `to`.
    pub fn migrating(tid: u32, to: usize) -> ThreadInfo {
        ThreadInfo {
            tid,
            island: to,
            vcpu: 0,
            state: ThreadInfo::MIGRATING.into(),
            rip: 0,
            syscalls: 0,
            proposed: None,
            migrations: 0,
        }
    }
}

/// How an island maps its copy of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mapping {
    None,
    ReadOnly,
    ReadWrite,
}

/// Why a page costs messages, from who faulted on it since the protocol started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SharingPattern {
    /// No fault since the protocol started.
    Untouched,
    /// Read on islands, written on none: one fetch per reader, then no traffic.
    ReadShared,
    /// Read and written on one island.
    Private,
    /// Written on one island, read on others: each write after a read invalidates the readers.
    ProducerConsumer,
    /// Written on several islands (true or false sharing): the page moves at every write.
    WriteShared,
}

impl SharingPattern {
    /// The pattern that follows from the islands that read and wrote a page.
    pub fn of(readers: &BTreeSet<usize>, writers: &BTreeSet<usize>) -> SharingPattern {
        match writers.len() {
            0 if readers.is_empty() => SharingPattern::Untouched,
            0 => SharingPattern::ReadShared,
            1 if readers.is_subset(writers) => SharingPattern::Private,
            1 => SharingPattern::ProducerConsumer,
            _ => SharingPattern::WriteShared,
        }
    }

    /// Its name in JSON and in the tables.
    pub fn name(self) -> &'static str {
        match self {
            SharingPattern::Untouched => "untouched",
            SharingPattern::ReadShared => "read-shared",
            SharingPattern::Private => "private",
            SharingPattern::ProducerConsumer => "producer-consumer",
            SharingPattern::WriteShared => "write-shared",
        }
    }
}

impl fmt::Display for SharingPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One island's copy of a page, and what the page cost on that island.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageCopy {
    pub island: usize,
    /// The copy's protocol state (`coherency::State::name`: `Shared`, `Modified`, `Invalid`, ...).
    pub state: String,
    pub mapping: Mapping,
    /// Accesses waiting on this copy.
    pub waiting: usize,
    pub read_faults: u64,
    pub write_faults: u64,
    pub messages_received: u64,
}

/// `GET /pages`: one page on every island.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRow {
    pub address: Address,
    /// One per island, in island order.
    pub copies: Vec<PageCopy>,
    /// The island holding the only writable copy (Modified or Not Replicated), if any.
    pub owner: Option<u8>,
    pub users: Vec<u8>,
    /// Messages received about the page, on every island.
    pub messages: u64,
    /// The same by message type (types with none left out).
    pub messages_by_type: BTreeMap<String, u64>,
    pub readers: Vec<usize>,
    pub writers: Vec<usize>,
    pub pattern: SharingPattern,
}

/// `GET /pages`: a page list, and where the next one starts (null: no page after these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageList {
    pub pages: Vec<PageRow>,
    pub next: Option<Address>,
}

/// The `n` pages that cost the most messages, most first (ties keep the list's order); pages
/// that cost none are left out.
pub fn hottest(pages: &[PageRow], n: usize) -> Vec<PageRow> {
    let mut hot: Vec<&PageRow> = pages.iter().filter(|p| p.messages > 0).collect();
    hot.sort_by_key(|p| std::cmp::Reverse(p.messages));
    hot.into_iter().take(n).cloned().collect()
}

/// `GET /stats`: the counters of the whole run so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub islands: usize,
    pub messages: MessageStats,
    pub faults: FaultStats,
    pub fault_latency_us: LatencyUs,
    /// Messages for pages an island no longer maps (after munmap), dropped.
    pub stale_messages: u64,
    /// Holding windows (against thrashing) that kept a contended page on its new writer's island
    /// while a request for it waited, and the time requests waited in them (absent in runs of
    /// older popvmm versions, or with `--hold-window off`: 0).
    #[serde(default)]
    pub hold_windows: u64,
    #[serde(default)]
    pub held_us: u64,
    /// Range messages (`--batch-ranges`; absent in older runs: 0): each is one message in
    /// `messages` (one frame on its link, under its own type, e.g. `copy_range`).
    #[serde(default)]
    pub ranges: RangeStats,
    /// Time calls (clock_gettime, clock_getres, gettimeofday, time, getcpu) the vDSO served
    /// without an exit, and the ones served as system calls, each an exit (absent in runs of older
    /// popvmm versions; `vdso_calls` is 0 with `--vdso off`).
    #[serde(default)]
    pub vdso_calls: u64,
    #[serde(default)]
    pub time_syscalls: u64,
    /// Threads that migrated, and how long each took: from its island stopping it to its new
    /// island starting it (absent in runs of older popvmm versions).
    #[serde(default)]
    pub migrations: u64,
    #[serde(default)]
    pub migration_latency_us: LatencyUs,
    /// The resolved faults by latency, every bucket of the histogram in order (empty: no
    /// fault was resolved).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fault_latency_histogram: Vec<LatencyBucket>,
}

/// One bucket of the fault-latency histogram: faults that took `from_us` microseconds or more
/// and less than `below_us` (null: the last, open-ended bucket). Buckets are powers of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBucket {
    pub from_us: u64,
    pub below_us: Option<u64>,
    pub faults: u64,
}

impl LatencyBucket {
    /// The histogram's buckets from their counts (bucket b: [2^b, 2^(b+1)) microseconds, the
    /// first one from 0, the last one open-ended).
    pub fn histogram(counts: &[u64]) -> Vec<LatencyBucket> {
        counts
            .iter()
            .enumerate()
            .map(|(b, &faults)| LatencyBucket {
                from_us: if b == 0 { 0 } else { 1 << b },
                below_us: (b + 1 < counts.len()).then(|| 1 << (b + 1)),
                faults,
            })
            .collect()
    }
}

/// Messages between island kernels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStats {
    pub total: u64,
    /// Bytes of all those messages as framed on the links (absent in runs of older versions).
    #[serde(default)]
    pub bytes: u64,
    /// By message type (types never sent left out).
    pub by_type: BTreeMap<String, u64>,
    /// By link (links never used left out).
    pub by_link: Vec<LinkMessages>,
}

/// Messages sent on one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkMessages {
    pub from: u8,
    pub to: u8,
    pub messages: u64,
}

/// Page faults that reached the coherency layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStats {
    /// read_missing + write_missing + write_protect.
    pub total: u64,
    pub read_missing: u64,
    pub write_missing: u64,
    pub write_protect: u64,
    pub resolved: u64,
    /// Faults that needed no message.
    pub local: u64,
    /// Pages asked for ahead of the thread that needed them (the top of a migrated thread's
    /// stack), each sparing it a fault or two (absent in runs of older popvmm versions).
    #[serde(default)]
    pub prefetched: u64,
    /// Pages asked for by read-ahead after faults that continued a sequential or strided pattern
    /// (absent in older runs).
    #[serde(default)]
    pub read_ahead: u64,
    /// Read-ahead pages the program went through: the next fault of their pattern came past
    /// them, or it faulted on them while they were on their way (a read of an installed page
    /// takes no fault: this is what can be seen of use).
    #[serde(default)]
    pub read_ahead_used: u64,
    /// Read-ahead pages the program faulted on while they were still on their way.
    #[serde(default)]
    pub read_ahead_late: u64,
    /// Read-ahead pages dropped (written by another island) before they were seen used: an upper
    /// bound on the pages read ahead in vain.
    #[serde(default)]
    pub read_ahead_dropped: u64,
    pub by_island: Vec<IslandFaults>,
}

/// Ranges of page messages: consecutive messages of one kind to one island carried as one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeStats {
    /// Range messages sent.
    pub sent: u64,
    /// Page messages they carried (each would have been a message of its own).
    pub pages: u64,
    /// `UFFDIO_COPY` calls saved by installing the pages of a range together.
    pub copies_saved: u64,
}

/// One island's page faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IslandFaults {
    pub island: usize,
    pub read_missing: u64,
    pub write_missing: u64,
    pub write_protect: u64,
    pub resolved: u64,
}

/// A latency in microseconds (of page faults, of migrations): the mean, and the upper bounds of
/// the histogram buckets that hold the median and the 99th percentile (null: nothing measured, or
/// the quantile is in the last, open-ended bucket; see [`LatencyUs::quantile_text`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyUs {
    pub mean: Option<f64>,
    pub p50: Option<u64>,
    pub p99: Option<u64>,
}

impl LatencyUs {
    /// A quantile as the exit summary writes it: `< 128 us`, `>= N us` for the last bucket (where
    /// there were faults but no upper bound), `-` without faults.
    pub fn quantile_text(&self, q: Option<u64>) -> String {
        match (q, self.mean) {
            (Some(us), _) => format!("< {us} us"),
            (None, Some(_)) => format!("{}", Quantile::AtLeast(LAST_BUCKET_US)),
            (None, None) => "-".to_string(),
        }
    }
}

/// The lower bound of the latency histograms' last, open-ended bucket.
const LAST_BUCKET_US: u64 = 1 << (BUCKETS - 1);

impl LatencyUs {
    /// As the exit summary writes it: `mean 180.2 us (p50 < 128 us, p99 < 4096 us)`, or `-`.
    pub fn text(&self) -> String {
        match self.mean {
            Some(us) => format!(
                "{us:.1} us (p50 {}, p99 {})",
                self.quantile_text(self.p50),
                self.quantile_text(self.p99)
            ),
            None => "-".to_string(),
        }
    }

    /// The summary of a histogram's counts.
    pub fn of(l: &Latencies) -> LatencyUs {
        LatencyUs {
            mean: l.mean_us(),
            p50: l.quantile(0.5).and_then(Quantile::upper_us),
            p99: l.quantile(0.99).and_then(Quantile::upper_us),
        }
    }
}

/// `PUT /shutdown`'s body: an optional JSON object, no fields yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownRequest {}

/// `PUT /shutdown`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownAnswer {
    pub status: String,
}

impl ShutdownAnswer {
    pub fn shutting_down() -> ShutdownAnswer {
        ShutdownAnswer {
            status: "shutting down".into(),
        }
    }
}

/// `POST /threads/{tid}/migrate`'s body: the island to move the thread to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    pub to: usize,
}

/// `PUT /threads/{tid}/proposal`'s body: the island proposed for the thread's next migration
/// (null: withdraw the proposal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalRequest {
    pub to: Option<usize>,
}

/// The answer to a migration or a proposal: what was asked of which thread. A migration is done
/// when the thread reaches a clean point (at once for a thread in its own code or in a call that
/// restarts; after its call for one in nanosleep or poll): `/threads` shows where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadOpAnswer {
    pub tid: u32,
    /// The island it was on when asked.
    pub from: usize,
    pub to: Option<usize>,
    /// `migration requested` or `proposal set`.
    pub status: String,
}

/// Every error answer's body (4xx, 5xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// What a run cost, as popvmm gives it at exit: `--stats-json` writes it, and [`Summary::text`]
/// is the lines on stderr. On several islands it adds the pages that cost the most messages and
/// every page that cost one (as `/pages` lists them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(flatten)]
    pub stats: Stats,
    /// Most first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_pages: Option<Vec<PageRow>>,
    /// In address order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<Vec<PageRow>>,
}

impl Summary {
    /// The summary's lines, without popvmm's `popvmm: ` prefix: messages by type, page faults by
    /// kind with their latency, and the pages that cost the most messages (when any did).
    pub fn lines(&self) -> Vec<String> {
        let s = &self.stats;
        let by_type: Vec<String> = s
            .messages
            .by_type
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let latency = s.fault_latency_us.text();
        let migrations = if s.migrations > 0 {
            format!(
                "; {} migrations, latency {}",
                s.migrations,
                s.migration_latency_us.text()
            )
        } else {
            String::new()
        };
        let read_ahead = if s.faults.read_ahead > 0 {
            format!(
                "; read ahead {} pages ({} seen used, {} of them late; {} dropped unseen)",
                s.faults.read_ahead,
                s.faults.read_ahead_used,
                s.faults.read_ahead_late,
                s.faults.read_ahead_dropped
            )
        } else {
            String::new()
        };
        let ranges = if s.ranges.sent > 0 {
            format!(
                "; {} range messages carried {} pages ({} UFFDIO_COPY calls saved)",
                s.ranges.sent, s.ranges.pages, s.ranges.copies_saved
            )
        } else {
            String::new()
        };
        let holds = if s.hold_windows > 0 {
            format!(
                "; {} holding windows (requests held {:.1} ms in all)",
                s.hold_windows,
                s.held_us as f64 / 1e3
            )
        } else {
            String::new()
        };
        let vdso = if s.vdso_calls > 0 {
            format!(
                "; {} time calls served by the vDSO (exits avoided), {} as system calls",
                s.vdso_calls, s.time_syscalls
            )
        } else {
            String::new()
        };
        let mut lines = vec![
            format!(
                "{} islands: {} messages ({}){ranges}{migrations}{holds}{vdso}",
                s.islands,
                s.messages.total,
                by_type.join(", ")
            ),
            format!(
                "page faults: {} ({} read, {} write on a missing page, {} write on a read-only \
                 copy), mean latency {latency}{read_ahead}",
                s.faults.total,
                s.faults.read_missing,
                s.faults.write_missing,
                s.faults.write_protect,
            ),
        ];
        let hot = self.hot_pages.as_deref().unwrap_or(&[]);
        if !hot.is_empty() {
            let each: Vec<String> = hot
                .iter()
                .map(|p| {
                    let by = if p.writers.is_empty() {
                        String::new()
                    } else {
                        let w: Vec<String> = p.writers.iter().map(usize::to_string).collect();
                        format!(", written on {}", w.join(","))
                    };
                    format!("{} {} ({}{by})", p.address, p.messages, p.pattern)
                })
                .collect();
            lines.push(format!("messages by page, most first: {}", each.join("; ")));
        }
        lines
    }

    /// The summary popvmm prints on stderr at exit (each line `popvmm: `-prefixed).
    pub fn text(&self) -> String {
        self.lines()
            .iter()
            .map(|l| format!("popvmm: {l}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(address: u64, messages: u64, writers: &[usize]) -> PageRow {
        let readers: BTreeSet<usize> = BTreeSet::new();
        let w: BTreeSet<usize> = writers.iter().copied().collect();
        PageRow {
            address: Address(address),
            copies: vec![PageCopy {
                island: 0,
                state: "Shared".into(),
                mapping: Mapping::ReadOnly,
                waiting: 0,
                read_faults: 1,
                write_faults: 0,
                messages_received: messages,
            }],
            owner: None,
            users: vec![0, 1],
            messages,
            messages_by_type: BTreeMap::from([("fetch".to_string(), messages)]),
            readers: vec![],
            writers: writers.to_vec(),
            pattern: SharingPattern::of(&readers, &w),
        }
    }

    /// The JSON of each type, field by field, as the server wrote it with `json!` before the types
    /// existed: scripts and the end-to-end tests read these names.
    #[test]
    fn json_shape_is_the_api() {
        let island = IslandInfo {
            id: 1,
            program: "/glibc/demo".into(),
            pid: 42,
            threads: 2,
            memory: IslandMemory {
                slot_bytes: 1 << 36,
                resident_bytes: None,
            },
            uptime_ms: 7,
        };
        assert_eq!(
            serde_json::to_value(&island).expect("island"),
            json!({"id": 1, "program": "/glibc/demo", "pid": 42, "threads": 2,
                   "memory": {"slot_bytes": 1u64 << 36, "resident_bytes": null}, "uptime_ms": 7})
        );
        let thread = ThreadInfo {
            tid: 43,
            island: 0,
            vcpu: 1,
            state: "blocked".into(),
            rip: 0x401000,
            syscalls: 9,
            proposed: Some(2),
            migrations: 3,
        };
        assert_eq!(
            serde_json::to_value(&thread).expect("thread"),
            json!({"tid": 43, "island": 0, "vcpu": 1, "state": "blocked", "rip": 0x401000,
                   "syscalls": 9, "proposed": 2, "migrations": 3})
        );
        let list = PageList {
            pages: vec![page(0x4bb000, 3, &[1, 2])],
            next: Some(Address(0x4bc000)),
        };
        assert_eq!(
            serde_json::to_value(&list).expect("pages"),
            json!({"pages": [{
                "address": "0x4bb000",
                "copies": [{"island": 0, "state": "Shared", "mapping": "read-only", "waiting": 0,
                            "read_faults": 1, "write_faults": 0, "messages_received": 3}],
                "owner": null, "users": [0, 1], "messages": 3, "messages_by_type": {"fetch": 3},
                "readers": [], "writers": [1, 2], "pattern": "write-shared"}],
                "next": "0x4bc000"})
        );
        let empty = PageList {
            pages: vec![],
            next: None,
        };
        assert_eq!(
            serde_json::to_value(&empty).expect("pages"),
            json!({"pages": [], "next": null})
        );
        assert_eq!(
            serde_json::to_value(ShutdownAnswer::shutting_down()).expect("shutdown"),
            json!({"status": "shutting down"})
        );
        assert_eq!(
            serde_json::to_value(ErrorBody { error: "x".into() }).expect("error"),
            json!({"error": "x"})
        );
    }

    fn stats() -> Stats {
        Stats {
            islands: 2,
            messages: MessageStats {
                total: 30,
                bytes: 45_000,
                by_type: BTreeMap::from([("copy".into(), 10), ("fetch".into(), 20)]),
                by_link: vec![LinkMessages {
                    from: 0,
                    to: 1,
                    messages: 30,
                }],
            },
            faults: FaultStats {
                total: 9,
                read_missing: 5,
                write_missing: 3,
                write_protect: 1,
                resolved: 8,
                local: 2,
                prefetched: 0,
                read_ahead: 0,
                read_ahead_used: 0,
                read_ahead_late: 0,
                read_ahead_dropped: 0,
                by_island: vec![IslandFaults {
                    island: 0,
                    read_missing: 5,
                    write_missing: 3,
                    write_protect: 1,
                    resolved: 8,
                }],
            },
            fault_latency_us: LatencyUs {
                mean: Some(412.25),
                p50: Some(256),
                p99: None,
            },
            stale_messages: 0,
            hold_windows: 0,
            held_us: 0,
            ranges: RangeStats::default(),
            vdso_calls: 0,
            time_syscalls: 0,
            migrations: 0,
            migration_latency_us: LatencyUs::default(),
            fault_latency_histogram: vec![],
        }
    }

    #[test]
    fn the_latency_histogram_has_every_bucket_in_order() {
        let h = LatencyBucket::histogram(&[1, 0, 5, 2]);
        assert_eq!(
            serde_json::to_value(&h).expect("histogram"),
            json!([{"from_us": 0, "below_us": 2, "faults": 1},
                   {"from_us": 2, "below_us": 4, "faults": 0},
                   {"from_us": 4, "below_us": 8, "faults": 5},
                   {"from_us": 8, "below_us": null, "faults": 2}])
        );
        let mut s = stats();
        s.fault_latency_histogram = h.clone();
        let v = serde_json::to_value(&s).expect("stats");
        assert_eq!(v["fault_latency_histogram"][2]["faults"], 5);
        let back: Stats = serde_json::from_value(v).expect("read back");
        assert_eq!(back.fault_latency_histogram, h);
    }

    #[test]
    fn stats_and_summary_json_shape() {
        let want = json!({
            "islands": 2,
            "messages": {"total": 30, "bytes": 45_000, "by_type": {"copy": 10, "fetch": 20},
                         "by_link": [{"from": 0, "to": 1, "messages": 30}]},
            "faults": {"total": 9, "read_missing": 5, "write_missing": 3, "write_protect": 1,
                       "resolved": 8, "local": 2, "prefetched": 0, "read_ahead": 0,
                       "read_ahead_used": 0, "read_ahead_late": 0, "read_ahead_dropped": 0,
                       "by_island": [{"island": 0, "read_missing": 5, "write_missing": 3,
                                      "write_protect": 1, "resolved": 8}]},
            "fault_latency_us": {"mean": 412.25, "p50": 256, "p99": null},
            "stale_messages": 0,
            "hold_windows": 0,
            "held_us": 0,
            "ranges": {"sent": 0, "pages": 0, "copies_saved": 0},
            "vdso_calls": 0,
            "time_syscalls": 0,
            "migrations": 0,
            "migration_latency_us": {"mean": null, "p50": null, "p99": null},
        });
        assert_eq!(serde_json::to_value(stats()).expect("stats"), want);
        // A summary written before migrations and holding windows were counted still reads.
        let mut old = want.clone();
        let fields = old.as_object_mut().expect("object");
        fields.remove("migrations");
        fields.remove("migration_latency_us");
        fields.remove("hold_windows");
        fields.remove("held_us");
        fields.remove("ranges");
        fields.remove("vdso_calls");
        fields.remove("time_syscalls");
        assert_eq!(
            serde_json::from_value::<Stats>(old).expect("old stats"),
            stats()
        );
        // One island: the summary is the stats alone; several: the pages are added.
        let mut one = Summary {
            stats: stats(),
            hot_pages: None,
            pages: None,
        };
        assert_eq!(serde_json::to_value(&one).expect("summary"), want);
        one.hot_pages = Some(vec![page(0x1000, 4, &[])]);
        one.pages = Some(vec![page(0x1000, 4, &[])]);
        let v = serde_json::to_value(&one).expect("summary");
        assert_eq!(v["hot_pages"][0]["address"], "0x1000");
        assert_eq!(v["pages"][0]["pattern"], "untouched");
        assert_eq!(v["faults"], want["faults"]);
        let back: Summary = serde_json::from_value(v).expect("read back");
        assert_eq!(back, one);
    }

    #[test]
    fn summary_lines() {
        let mut s = Summary {
            stats: stats(),
            hot_pages: Some(vec![page(0x3000, 40, &[1, 2]), page(0x1000, 3, &[])]),
            pages: None,
        };
        assert_eq!(
            s.text(),
            "popvmm: 2 islands: 30 messages (copy 10, fetch 20)\n\
             popvmm: page faults: 9 (5 read, 3 write on a missing page, 1 write on a read-only \
             copy), mean latency 412.2 us (p50 < 256 us, p99 >= 1048576 us)\n\
             popvmm: messages by page, most first: 0x3000 40 (write-shared, written on 1,2); \
             0x1000 3 (untouched)\n"
        );
        s.hot_pages = Some(vec![]);
        s.stats.fault_latency_us = LatencyUs {
            mean: None,
            p50: None,
            p99: None,
        };
        let lines = s.lines();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with("mean latency -"), "{lines:?}");
        // Migrations, when there were any, join the first line.
        s.stats.migrations = 3;
        s.stats.migration_latency_us = LatencyUs {
            mean: Some(95.5),
            p50: Some(128),
            p99: Some(256),
        };
        assert!(
            s.lines()[0].ends_with(
                "(copy 10, fetch 20); 3 migrations, latency 95.5 us (p50 < 128 us, p99 < 256 us)"
            ),
            "{:?}",
            s.lines()
        );
    }

    #[test]
    fn hottest_pages_first_quiet_ones_left_out() {
        let pages = vec![
            page(0x1000, 3, &[]),
            page(0x2000, 0, &[]),
            page(0x3000, 40, &[1, 2]),
            page(0x4000, 3, &[0]),
        ];
        let hot: Vec<u64> = hottest(&pages, 10).iter().map(|p| p.address.0).collect();
        assert_eq!(hot, [0x3000, 0x1000, 0x4000]);
        assert_eq!(hottest(&pages, 1).len(), 1);
        assert!(hottest(&pages, 0).is_empty());
    }

    #[test]
    fn sharing_patterns_follow_who_read_and_who_wrote() {
        let set = |v: &[usize]| v.iter().copied().collect::<BTreeSet<usize>>();
        let of = |r: &[usize], w: &[usize]| SharingPattern::of(&set(r), &set(w)).name();
        assert_eq!(of(&[], &[]), "untouched");
        assert_eq!(of(&[1, 2], &[]), "read-shared");
        assert_eq!(of(&[2], &[2]), "private");
        assert_eq!(of(&[], &[3]), "private");
        assert_eq!(of(&[0, 2], &[2]), "producer-consumer");
        assert_eq!(of(&[], &[0, 1]), "write-shared");
        assert_eq!(of(&[0, 1, 2], &[0, 1]), "write-shared");
        // The names are the JSON's.
        for p in [
            SharingPattern::Untouched,
            SharingPattern::ReadShared,
            SharingPattern::Private,
            SharingPattern::ProducerConsumer,
            SharingPattern::WriteShared,
        ] {
            assert_eq!(serde_json::to_value(p).expect("pattern"), json!(p.name()));
        }
    }

    #[test]
    fn addresses_are_hex_strings() {
        assert_eq!(serde_json::to_value(Address(0)).expect("a"), json!("0x0"));
        let a: Address = serde_json::from_value(json!("0xfbf7fe000")).expect("hex");
        assert_eq!(a, Address(0xfbf7fe000));
        assert_eq!(Address::parse("4096"), Some(Address(4096)));
        assert_eq!(Address::parse("0X10"), Some(Address(16)));
        assert!(serde_json::from_value::<Address>(json!("zz")).is_err());
        assert!(serde_json::from_value::<Address>(json!(4096)).is_err());
        assert_eq!(Address::parse("0x1ffffffffffffffff"), None);
        assert_eq!(Address::parse("-1"), None);
    }
}
