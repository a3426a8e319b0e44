//! What the program's owner reads from the islands to answer the control socket and to sum up a
//! run: the islands and threads (`/islands`, `/threads`), per-page states and costs (`/pages`),
//! counters and latencies (`/stats`, `/metrics`, the exit summary). Everything comes out as the
//! types of `types.rs`, except `/metrics`, which is Prometheus text.
//!
//! Only the owner calls these (`Program::answer`, `Program::summary`): the control socket's
//! threads never read island state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::types::{
    self, Address, FaultStats, IslandFaults, IslandInfo, IslandMemory, LatencyUs, LinkMessages,
    Mapping, MessageStats, PageCopy, PageList, PageRow, SharingPattern, Stats, Summary, ThreadInfo,
};
use crate::dsm::{DsmStats, PageTraffic, PAGE_SIZE};
use crate::fabric::PAGE_MESSAGE_TYPES;
use crate::kernel::Island;
use crate::metrics::Latencies;

/// Counters of a whole run, summed over the islands: what `/stats` and `/metrics` are made of.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub islands: usize,
    pub messages: BTreeMap<String, u64>,
    pub links: BTreeMap<(u8, u8), u64>,
    /// Bytes of every message sent (headers and page contents as framed on the links).
    pub bytes: u64,
    pub read_missing: u64,
    pub write_missing: u64,
    pub write_protect: u64,
    pub local: u64,
    /// Resolved faults, by latency.
    pub fault_latency: Latencies,
    /// Migrations, by latency.
    pub migrations: Latencies,
    pub stale_messages: u64,
    pub prefetched: u64,
    pub read_ahead: u64,
    pub read_ahead_used: u64,
    pub read_ahead_late: u64,
    pub read_ahead_dropped: u64,
    /// Holding windows that held a request back, and how long they held (ns).
    pub hold_windows: u64,
    pub held_ns: u64,
    /// Range messages sent, the page messages they carried, UFFDIO_COPY calls they saved.
    pub ranges_sent: u64,
    pub range_pages: u64,
    pub copies_saved: u64,
    /// Time calls the vDSO served without an exit, and time calls served as system calls.
    pub vdso_calls: u64,
    pub time_syscalls: u64,
    /// Per island: (read_missing, write_missing, write_protect, resolved).
    pub per_island: Vec<[u64; 4]>,
}

/// The counters of `islands` (all islands of one program).
pub fn counters(islands: &[Arc<Island>]) -> Counters {
    let mut s = Counters {
        islands: islands.len(),
        ..Counters::default()
    };
    for p in islands {
        s.migrations.add(&p.migration_latency.snapshot());
        // The counter page is the program's to write: any value, summed without overflow.
        s.vdso_calls = s
            .vdso_calls
            .saturating_add(crate::kernel::vdso::served(p.vm.memory()));
        s.time_syscalls += p.time_syscalls.load(Ordering::Relaxed);
        let Some(st) = p.dsm.stats() else {
            s.per_island.push([0; 4]);
            continue;
        };
        let st: Arc<DsmStats> = st;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let latency = st.latency.snapshot();
        let island = [
            get(&st.read_missing),
            get(&st.write_missing),
            get(&st.write_protect),
            latency.count,
        ];
        s.read_missing += island[0];
        s.write_missing += island[1];
        s.write_protect += island[2];
        s.local += get(&st.local);
        s.fault_latency.add(&latency);
        s.stale_messages += get(&st.stale_messages);
        s.prefetched += get(&st.prefetched);
        s.read_ahead += get(&st.read_ahead);
        s.read_ahead_used += get(&st.read_ahead_used);
        s.read_ahead_late += get(&st.read_ahead_late);
        s.read_ahead_dropped += get(&st.read_ahead_dropped);
        s.hold_windows += get(&st.holds);
        s.held_ns += get(&st.held_ns);
        s.ranges_sent += get(&st.ranges_sent);
        s.range_pages += get(&st.range_pages);
        s.copies_saved += get(&st.copies_saved);
        s.per_island.push(island);
    }
    if let Some(p) = islands.first() {
        let c = p.link.fabric().stats();
        s.messages = c
            .by_type
            .into_iter()
            .filter(|(_, t)| t.messages > 0)
            .map(|(k, t)| {
                s.bytes += t.bytes;
                (k, t.messages)
            })
            .collect();
        s.links = c
            .links
            .iter()
            .filter(|l| l.sent.messages > 0)
            .map(|l| ((l.from as u8, l.to as u8), l.sent.messages))
            .collect();
    }
    s
}

impl Counters {
    pub fn faults(&self) -> u64 {
        self.read_missing + self.write_missing + self.write_protect
    }

    pub fn total_messages(&self) -> u64 {
        self.messages.values().sum()
    }

    /// `/stats`.
    pub fn stats(&self) -> Stats {
        Stats {
            islands: self.islands,
            messages: MessageStats {
                total: self.total_messages(),
                bytes: self.bytes,
                by_type: self.messages.clone(),
                by_link: self
                    .links
                    .iter()
                    .map(|(&(from, to), &messages)| LinkMessages { from, to, messages })
                    .collect(),
            },
            faults: FaultStats {
                total: self.faults(),
                read_missing: self.read_missing,
                write_missing: self.write_missing,
                write_protect: self.write_protect,
                resolved: self.fault_latency.count,
                local: self.local,
                prefetched: self.prefetched,
                read_ahead: self.read_ahead,
                read_ahead_used: self.read_ahead_used,
                read_ahead_late: self.read_ahead_late,
                read_ahead_dropped: self.read_ahead_dropped,
                by_island: self
                    .per_island
                    .iter()
                    .enumerate()
                    .map(|(island, c)| IslandFaults {
                        island,
                        read_missing: c[0],
                        write_missing: c[1],
                        write_protect: c[2],
                        resolved: c[3],
                    })
                    .collect(),
            },
            fault_latency_us: LatencyUs::of(&self.fault_latency),
            stale_messages: self.stale_messages,
            hold_windows: self.hold_windows,
            held_us: self.held_ns / 1_000,
            ranges: types::RangeStats {
                sent: self.ranges_sent,
                pages: self.range_pages,
                copies_saved: self.copies_saved,
            },
            vdso_calls: self.vdso_calls,
            time_syscalls: self.time_syscalls,
            migrations: self.migrations.count,
            migration_latency_us: LatencyUs::of(&self.migrations),
            fault_latency_histogram: if self.fault_latency.count == 0 {
                Vec::new()
            } else {
                types::LatencyBucket::histogram(&self.fault_latency.buckets)
            },
        }
    }

    /// Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP popvmm_messages_total Messages between island kernels, by type."
        );
        let _ = writeln!(out, "# TYPE popvmm_messages_total counter");
        for (k, v) in &self.messages {
            let _ = writeln!(out, "popvmm_messages_total{{type=\"{k}\"}} {v}");
        }
        counter(
            &mut out,
            "popvmm_message_bytes_total",
            Some("Bytes of the messages between island kernels."),
            self.bytes,
        );
        let _ = writeln!(out, "# HELP popvmm_link_messages_total Messages by link.");
        let _ = writeln!(out, "# TYPE popvmm_link_messages_total counter");
        for ((f, t), v) in &self.links {
            let _ = writeln!(
                out,
                "popvmm_link_messages_total{{from=\"{f}\",to=\"{t}\"}} {v}"
            );
        }
        let _ = writeln!(out, "# HELP popvmm_page_faults_total Page faults that reached the coherency layer, by kind and island.");
        let _ = writeln!(out, "# TYPE popvmm_page_faults_total counter");
        for (i, c) in self.per_island.iter().enumerate() {
            for (kind, n) in [
                ("read_missing", c[0]),
                ("write_missing", c[1]),
                ("write_protect", c[2]),
            ] {
                let _ = writeln!(
                    out,
                    "popvmm_page_faults_total{{island=\"{i}\",kind=\"{kind}\"}} {n}"
                );
            }
        }
        let counters: [(&str, Option<&str>, &dyn std::fmt::Display); 16] = [
            (
                "popvmm_range_messages_total",
                Some("Range messages: consecutive page messages of one kind to one island sent as one."),
                &self.ranges_sent,
            ),
            (
                "popvmm_range_pages_total",
                Some("Page messages carried by range messages."),
                &self.range_pages,
            ),
            (
                "popvmm_range_copies_saved_total",
                Some("UFFDIO_COPY calls saved by installing the pages of a range together."),
                &self.copies_saved,
            ),
            (
                "popvmm_prefetched_pages_total",
                Some("Pages asked for ahead of the thread that needed them."),
                &self.prefetched,
            ),
            (
                "popvmm_read_ahead_pages_total",
                Some("Pages asked for by read-ahead."),
                &self.read_ahead,
            ),
            (
                "popvmm_read_ahead_used_pages_total",
                Some("Read-ahead pages the program went through (its pattern's next fault came past them)."),
                &self.read_ahead_used,
            ),
            (
                "popvmm_read_ahead_late_pages_total",
                Some("Read-ahead pages the program faulted on while they were on their way."),
                &self.read_ahead_late,
            ),
            (
                "popvmm_read_ahead_dropped_pages_total",
                Some("Read-ahead pages dropped before the program faulted on them."),
                &self.read_ahead_dropped,
            ),
            (
                "popvmm_hold_windows_total",
                Some("Holding windows that kept a contended page on its new writer's island while a request waited."),
                &self.hold_windows,
            ),
            (
                "popvmm_held_seconds_total",
                Some("Time requests waited in holding windows."),
                &(self.held_ns as f64 / 1e9),
            ),
            (
                "popvmm_vdso_calls_total",
                Some("Time calls served by the vDSO (exits avoided)."),
                &self.vdso_calls,
            ),
            (
                "popvmm_time_syscalls_total",
                Some("Time calls served as system calls (clock_gettime, clock_getres, gettimeofday, time, getcpu)."),
                &self.time_syscalls,
            ),
            (
                "popvmm_fault_latency_seconds_sum",
                Some("Sum of resolved fault latencies."),
                &(self.fault_latency.sum_ns as f64 / 1e9),
            ),
            (
                "popvmm_fault_latency_seconds_count",
                None,
                &self.fault_latency.count,
            ),
            (
                "popvmm_migration_latency_seconds_sum",
                Some("Sum of migration latencies (stop to start)."),
                &(self.migrations.sum_ns as f64 / 1e9),
            ),
            (
                "popvmm_migration_latency_seconds_count",
                None,
                &self.migrations.count,
            ),
        ];
        for (name, help, value) in counters {
            counter(&mut out, name, help, value);
        }
        out
    }
}

/// One counter of the Prometheus text: its HELP line (when it has one), TYPE and value.
fn counter(out: &mut String, name: &str, help: Option<&str>, value: impl std::fmt::Display) {
    if let Some(help) = help {
        let _ = writeln!(out, "# HELP {name} {help}");
    }
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

/// What popvmm gives at the end of a run on `islands`: the counters and, on several islands, the
/// `hot` pages that cost the most messages and every page that cost one.
pub fn summary(islands: &[Arc<Island>], hot: usize) -> Summary {
    let stats = counters(islands).stats();
    if islands.len() < 2 {
        return Summary {
            stats,
            hot_pages: None,
            pages: None,
        };
    }
    let mut pages = pages(islands, 0, usize::MAX).pages;
    pages.retain(|p| p.messages > 0);
    Summary {
        stats,
        hot_pages: Some(types::hottest(&pages, hot)),
        pages: Some(pages),
    }
}

/// `/islands`.
pub fn island_list(islands: &[Arc<Island>]) -> Vec<IslandInfo> {
    islands
        .iter()
        .map(|p| {
            let mem = p.vm.memory();
            IslandInfo {
                id: p.id,
                program: p.config.exe_path.clone(),
                pid: p.pid,
                threads: p.threads().len(),
                memory: IslandMemory {
                    slot_bytes: mem.size(),
                    resident_bytes: mem.resident_bytes(),
                },
                uptime_ms: u64::try_from(p.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            }
        })
        .collect()
}

/// `/threads`: every thread, island by island.
pub fn thread_list(islands: &[Arc<Island>]) -> Vec<ThreadInfo> {
    islands
        .iter()
        .flat_map(|p| {
            p.threads()
                .iter()
                .map(|t| ThreadInfo {
                    tid: t.tid,
                    island: p.id,
                    vcpu: t.vcpu.load(std::sync::atomic::Ordering::Relaxed),
                    state: t.state().name().to_string(),
                    rip: t.rip(),
                    syscalls: t.syscalls.load(Ordering::Relaxed),
                    proposed: t.proposed(),
                    migrations: t.migrations.load(Ordering::Relaxed),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One island's pages: the engine's view of each and what it cost there.
pub type IslandPages = BTreeMap<u64, (coherency::PageView, PageTraffic)>;

/// `/pages`: up to `count` pages from the page holding `from` on, every island's view of each.
pub fn pages(islands: &[Arc<Island>], from: u64, count: usize) -> PageList {
    let first = from / PAGE_SIZE;
    let per_island: Vec<IslandPages> = islands
        .iter()
        .map(|p| {
            p.dsm
                .snapshot(first, count)
                .into_iter()
                .map(|s| (s.page, (s.view, s.traffic)))
                .collect()
        })
        .collect();
    page_list(&per_island, count)
}

/// The first `count` pages known to any island, each with every island's copy and what it cost:
/// each island's faults and the messages it received about the page, who read and who wrote it,
/// and the sharing pattern that follows.
pub fn page_list(per_island: &[IslandPages], count: usize) -> PageList {
    let all: BTreeSet<u64> = per_island
        .iter()
        .flat_map(|views| views.keys().take(count).copied())
        .collect();
    let listed: Vec<u64> = all.into_iter().take(count).collect();
    let next = listed.last().map(|&p| Address((p + 1) * PAGE_SIZE));
    let pages = listed
        .iter()
        .map(|&page| page_row(per_island, page))
        .collect();
    PageList { pages, next }
}

fn page_row(per_island: &[IslandPages], page: u64) -> PageRow {
    let mut owner = None;
    let mut users = BTreeSet::new();
    let mut readers = BTreeSet::new();
    let mut writers = BTreeSet::new();
    let mut received = [0u64; coherency::MessageType::ALL.len()];
    let copies: Vec<PageCopy> = per_island
        .iter()
        .enumerate()
        .map(|(i, views)| {
            let v = views.get(&page).copied();
            if let Some((v, t)) = v {
                owner = owner.or(v.owner);
                users.extend(v.users.iter());
                // The island whose copy is the only writable one owns the page, whatever the
                // others last heard.
                if matches!(
                    v.state,
                    coherency::State::Modified | coherency::State::NotReplicated
                ) {
                    owner = u8::try_from(i).ok();
                }
                if t.read_faults > 0 {
                    readers.insert(i);
                }
                if t.write_faults > 0 {
                    writers.insert(i);
                }
                for (sum, n) in received.iter_mut().zip(t.received) {
                    *sum += n;
                }
            }
            let t = v.map(|(_, t)| t).unwrap_or_default();
            PageCopy {
                island: i,
                state: v.map_or("Unmapped", |(v, _)| v.state.name()).to_string(),
                mapping: v.map_or(Mapping::None, |(v, _)| match v.mapping {
                    coherency::Mapping::None => Mapping::None,
                    coherency::Mapping::ReadOnly => Mapping::ReadOnly,
                    coherency::Mapping::ReadWrite => Mapping::ReadWrite,
                }),
                waiting: v.map_or(0, |(v, _)| v.waiting),
                read_faults: t.read_faults,
                write_faults: t.write_faults,
                messages_received: t.messages(),
            }
        })
        .collect();
    let messages_by_type: BTreeMap<String, u64> = coherency::MessageType::ALL
        .iter()
        .map(|ty| (PAGE_MESSAGE_TYPES[ty.index()], received[ty.index()]))
        .filter(|&(_, n)| n > 0)
        .map(|(name, n)| (name.to_string(), n))
        .collect();
    PageRow {
        address: Address(page * PAGE_SIZE),
        copies,
        owner,
        users: users.into_iter().collect(),
        messages: received.iter().sum(),
        messages_by_type,
        pattern: SharingPattern::of(&readers, &writers),
        readers: readers.into_iter().collect(),
        writers: writers.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::action::ControlAnswer;
    use crate::metrics::BUCKETS;
    use coherency::{KernelSet, MessageType, PageView, State};
    use serde_json::{json, Value};

    fn view(state: State, mapping: coherency::Mapping, users: u64) -> PageView {
        PageView {
            state,
            mapping,
            owner: None,
            users: KernelSet(users),
            waiting: 0,
            gen: 0,
            held_until: None,
        }
    }

    fn traffic(read_faults: u64, write_faults: u64, fetches: u64) -> PageTraffic {
        let mut t = PageTraffic {
            read_faults,
            write_faults,
            ..PageTraffic::default()
        };
        t.received[MessageType::Fetch.index()] = fetches;
        t
    }

    /// Two islands' views of three pages, as the engines would give them.
    fn two_islands() -> Vec<IslandPages> {
        use coherency::Mapping as M;
        let island0 = IslandPages::from([
            (
                0x4bb,
                (view(State::Invalid, M::None, 0b11), traffic(1, 0, 2)),
            ),
            (
                0x4bc,
                (view(State::Shared, M::ReadOnly, 0b11), traffic(1, 0, 0)),
            ),
        ]);
        let island1 = IslandPages::from([
            (
                0x4bb,
                (view(State::Modified, M::ReadWrite, 0b11), traffic(0, 3, 1)),
            ),
            (
                0x4bc,
                (view(State::Shared, M::ReadOnly, 0b11), traffic(1, 0, 1)),
            ),
            (
                0xfbf7fe,
                (view(State::Modified, M::ReadWrite, 0b10), traffic(0, 0, 0)),
            ),
        ]);
        vec![island0, island1]
    }

    /// What the server sends for `answer`, read back as JSON.
    fn served(answer: ControlAnswer) -> Value {
        let r = answer.into_http();
        assert_eq!((r.status, r.content_type), (200, "application/json"));
        serde_json::from_slice(&r.body).expect("the server's body is JSON")
    }

    #[test]
    fn page_list_as_served_reads_back_into_the_types() {
        let list = page_list(&two_islands(), 2);
        let body = served(ControlAnswer::Pages(list.clone()));
        // The shape scripts read (see README "/pages").
        assert_eq!(body["next"], "0x4bd000");
        let hot = &body["pages"][0];
        assert_eq!(hot["address"], "0x4bb000");
        assert_eq!(hot["owner"], 1);
        assert_eq!(hot["users"], json!([0, 1]));
        assert_eq!(hot["messages"], 3);
        assert_eq!(hot["messages_by_type"], json!({"fetch": 3}));
        assert_eq!(hot["readers"], json!([0]));
        assert_eq!(hot["writers"], json!([1]));
        assert_eq!(hot["pattern"], "producer-consumer");
        assert_eq!(
            hot["copies"][1],
            json!({"island": 1, "state": "Modified", "mapping": "read-write", "waiting": 0,
                   "read_faults": 0, "write_faults": 3, "messages_received": 1})
        );
        assert_eq!(body["pages"][1]["pattern"], "read-shared");
        assert_eq!(body["pages"][1]["owner"], Value::Null);
        // ctl reads the same bytes with the same types.
        let back: PageList = serde_json::from_value(body).expect("PageList");
        assert_eq!(back, list);

        // A page one island never saw is Unmapped there; the list ends with null.
        let rest = page_list(&two_islands()[..], 10);
        assert_eq!(rest.pages.len(), 3);
        let stack = &rest.pages[2];
        assert_eq!(stack.address, Address(0xfbf7fe000));
        assert_eq!(stack.copies[0].state, "Unmapped");
        assert_eq!(stack.copies[0].mapping, Mapping::None);
        assert_eq!(stack.pattern, SharingPattern::Untouched);
        assert_eq!(stack.owner, Some(1));
        let empty = page_list(&[IslandPages::new(), IslandPages::new()], 10);
        assert_eq!(
            served(ControlAnswer::Pages(empty)),
            json!({"pages": [], "next": null})
        );
    }

    fn latencies(count: u64, sum_ns: u64, buckets: &[(usize, u64)]) -> Latencies {
        let mut l = Latencies {
            count,
            sum_ns,
            ..Latencies::default()
        };
        for &(b, n) in buckets {
            l.buckets[b] = n;
        }
        l
    }

    fn counters() -> Counters {
        Counters {
            islands: 2,
            messages: BTreeMap::from([
                ("copy".into(), 10),
                ("fetch".into(), 16),
                ("ack".into(), 4),
            ]),
            links: BTreeMap::from([((0, 1), 18), ((1, 0), 12)]),
            bytes: 45_000,
            read_missing: 5,
            write_missing: 3,
            write_protect: 1,
            local: 2,
            // Mean 412.25 us; the median in [128, 256) us, the 99th percentile in the last bucket.
            fault_latency: latencies(8, 3_298_000, &[(7, 5), (BUCKETS - 1, 3)]),
            // Two migrations of ~150 us.
            migrations: latencies(2, 300_000, &[(7, 2)]),
            stale_messages: 0,
            prefetched: 3,
            read_ahead: 0,
            read_ahead_used: 0,
            read_ahead_late: 0,
            read_ahead_dropped: 0,
            hold_windows: 2,
            held_ns: 1_500_000,
            ranges_sent: 3,
            range_pages: 40,
            copies_saved: 37,
            vdso_calls: 70_000,
            time_syscalls: 12,
            per_island: vec![[1, 3, 0, 4], [4, 0, 1, 4]],
        }
    }

    #[test]
    fn stats_as_served_reads_back_into_the_types() {
        let stats = counters().stats();
        let mut body = served(ControlAnswer::Stats(Box::new(stats.clone())));
        // The histogram: every bucket in order, 5 faults in [128, 256) us, 3 in the open last one.
        let histogram = body
            .as_object_mut()
            .and_then(|b| b.remove("fault_latency_histogram"))
            .expect("fault_latency_histogram");
        let buckets = histogram.as_array().expect("an array");
        assert_eq!(buckets.len(), BUCKETS);
        assert_eq!(
            buckets[7],
            json!({"from_us": 128, "below_us": 256, "faults": 5})
        );
        assert_eq!(
            buckets[BUCKETS - 1],
            json!({"from_us": 1u64 << (BUCKETS - 1), "below_us": null, "faults": 3})
        );
        let counted: u64 = buckets.iter().filter_map(|b| b["faults"].as_u64()).sum();
        assert_eq!(counted, 8);
        assert_eq!(
            body,
            json!({
                "islands": 2,
                "messages": {"total": 30, "bytes": 45_000, "by_type": {"ack": 4, "copy": 10, "fetch": 16},
                    "by_link": [{"from": 0, "to": 1, "messages": 18},
                                {"from": 1, "to": 0, "messages": 12}]},
                "faults": {"total": 9, "read_missing": 5, "write_missing": 3, "write_protect": 1,
                    "resolved": 8, "local": 2, "prefetched": 3, "read_ahead": 0,
                    "read_ahead_used": 0, "read_ahead_late": 0, "read_ahead_dropped": 0,
                    "by_island": [
                        {"island": 0, "read_missing": 1, "write_missing": 3, "write_protect": 0,
                         "resolved": 4},
                        {"island": 1, "read_missing": 4, "write_missing": 0, "write_protect": 1,
                         "resolved": 4}]},
                "fault_latency_us": {"mean": 412.25, "p50": 256, "p99": null},
                "stale_messages": 0,
                "hold_windows": 2,
                "held_us": 1500,
                "ranges": {"sent": 3, "pages": 40, "copies_saved": 37},
                "vdso_calls": 70_000,
                "time_syscalls": 12,
                "migrations": 2,
                "migration_latency_us": {"mean": 150.0, "p50": 256, "p99": 256},
            })
        );
        body["fault_latency_histogram"] = histogram;
        let back: Stats = serde_json::from_value(body).expect("Stats");
        assert_eq!(back, stats);
        // The exit summary's text says what the counters say, the open-ended bucket included.
        let text = Summary {
            stats,
            hot_pages: None,
            pages: None,
        }
        .text();
        assert!(
            text.contains("mean latency 412.2 us (p50 < 256 us, p99 >= 1048576 us)"),
            "{text}"
        );
        assert!(
            text.contains("; 2 holding windows (requests held 1.5 ms in all)"),
            "{text}"
        );
        assert!(
            text.contains(
                "; 70000 time calls served by the vDSO (exits avoided), 12 as system calls"
            ),
            "{text}"
        );
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let text = counters().prometheus();
        let r = ControlAnswer::Metrics(text.clone()).into_http();
        assert!(text.contains("popvmm_hold_windows_total 2\n"), "{text}");
        assert!(text.contains("popvmm_range_pages_total 40\n"), "{text}");
        assert!(
            text.contains("popvmm_range_copies_saved_total 37\n"),
            "{text}"
        );
        assert!(text.contains("popvmm_vdso_calls_total 70000\n"), "{text}");
        assert!(text.contains("popvmm_time_syscalls_total 12\n"), "{text}");
        assert!(r.content_type.starts_with("text/plain"));
        assert!(
            text.contains("popvmm_messages_total{type=\"fetch\"} 16\n"),
            "{text}"
        );
        assert!(text.contains("popvmm_link_messages_total{from=\"1\",to=\"0\"} 12\n"));
        assert!(text.contains("popvmm_message_bytes_total 45000\n"));
        assert!(text.contains("popvmm_fault_latency_seconds_count 8\n"));
        assert!(text.contains("popvmm_migration_latency_seconds_count 2\n"));
        assert!(text.contains("popvmm_prefetched_pages_total 3\n"));
        assert!(text.contains("popvmm_migration_latency_seconds_sum 0.0003\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            assert!(name.starts_with("popvmm_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
