//! What the coherency layer and the links did: per-page states (`/pages`), counters and
//! latencies (`/stats`, `/metrics`, and the summary `popvmm launch` prints at exit).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::dsm::{latency_quantile, DsmStats, PageTraffic, Quantile, PAGE_SIZE};
use crate::fabric::PAGE_MESSAGE_TYPES;
use crate::kernel::Island;

/// Counters of a whole run, summed over the islands.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub islands: usize,
    pub messages: BTreeMap<String, u64>,
    pub links: BTreeMap<(u8, u8), u64>,
    pub read_missing: u64,
    pub write_missing: u64,
    pub write_protect: u64,
    pub local: u64,
    pub resolved: u64,
    pub latency_ns_sum: u64,
    pub p50: Option<Quantile>,
    pub p99: Option<Quantile>,
    pub stale_messages: u64,
    /// Per island: (read_missing, write_missing, write_protect, resolved).
    pub per_island: Vec<[u64; 4]>,
}

/// The counters of `islands` (all islands of one program).
pub fn summary(islands: &[Arc<Island>]) -> Summary {
    let mut s = Summary {
        islands: islands.len(),
        ..Summary::default()
    };
    let mut buckets: Vec<u64> = Vec::new();
    for p in islands {
        let Some(st) = p.dsm.stats() else {
            s.per_island.push([0; 4]);
            continue;
        };
        let st: Arc<DsmStats> = st;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let island = [
            get(&st.read_missing),
            get(&st.write_missing),
            get(&st.write_protect),
            get(&st.resolved),
        ];
        s.read_missing += island[0];
        s.write_missing += island[1];
        s.write_protect += island[2];
        s.resolved += island[3];
        s.local += get(&st.local);
        s.latency_ns_sum += get(&st.latency_ns_sum);
        s.stale_messages += get(&st.stale_messages);
        if buckets.is_empty() {
            buckets = vec![0; st.latency_buckets.len()];
        }
        for (b, c) in buckets.iter_mut().zip(st.latency_buckets.iter()) {
            *b += get(c);
        }
        s.per_island.push(island);
    }
    if let Some(p) = islands.first() {
        let c = p.link.fabric().stats();
        s.messages = c
            .by_type
            .into_iter()
            .filter(|(_, t)| t.messages > 0)
            .map(|(k, t)| (k, t.messages))
            .collect();
        s.links = c
            .links
            .iter()
            .filter(|l| l.sent.messages > 0)
            .map(|l| ((l.from as u8, l.to as u8), l.sent.messages))
            .collect();
    }
    s.p50 = latency_quantile(&buckets, 0.5);
    s.p99 = latency_quantile(&buckets, 0.99);
    s
}

impl Summary {
    pub fn faults(&self) -> u64 {
        self.read_missing + self.write_missing + self.write_protect
    }

    pub fn mean_latency_us(&self) -> Option<f64> {
        (self.resolved > 0).then(|| self.latency_ns_sum as f64 / self.resolved as f64 / 1000.0)
    }

    pub fn total_messages(&self) -> u64 {
        self.messages.values().sum()
    }

    /// The summary popvmm prints on stderr at exit.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "popvmm: {} islands: {} messages ({})",
            self.islands,
            self.total_messages(),
            self.messages
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            out,
            "popvmm: page faults: {} ({} read, {} write on a missing page, {} write on a read-only \
             copy), mean latency {}",
            self.faults(),
            self.read_missing,
            self.write_missing,
            self.write_protect,
            match self.mean_latency_us() {
                Some(us) => format!("{us:.1} us (p50 {}, p99 {})",
                    self.p50.map_or("-".to_string(), |q| q.to_string()),
                    self.p99.map_or("-".to_string(), |q| q.to_string())),
                None => "-".to_string(),
            }
        );
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "islands": self.islands,
            "messages": {
                "total": self.total_messages(),
                "by_type": self.messages,
                "by_link": self.links.iter().map(|(&(f, t), &n)| json!({"from": f, "to": t, "messages": n})).collect::<Vec<_>>(),
            },
            "faults": {
                "total": self.faults(),
                "read_missing": self.read_missing,
                "write_missing": self.write_missing,
                "write_protect": self.write_protect,
                "resolved": self.resolved,
                "local": self.local,
                "by_island": self.per_island.iter().enumerate().map(|(i, c)| json!({
                    "island": i, "read_missing": c[0], "write_missing": c[1],
                    "write_protect": c[2], "resolved": c[3],
                })).collect::<Vec<_>>(),
            },
            "fault_latency_us": {
                "mean": self.mean_latency_us(),
                "p50": self.p50.and_then(Quantile::upper_us),
                "p99": self.p99.and_then(Quantile::upper_us),
            },
            "stale_messages": self.stale_messages,
        })
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
        let _ = writeln!(
            out,
            "# HELP popvmm_fault_latency_seconds_sum Sum of resolved fault latencies."
        );
        let _ = writeln!(out, "# TYPE popvmm_fault_latency_seconds_sum counter");
        let _ = writeln!(
            out,
            "popvmm_fault_latency_seconds_sum {}",
            self.latency_ns_sum as f64 / 1e9
        );
        let _ = writeln!(out, "# TYPE popvmm_fault_latency_seconds_count counter");
        let _ = writeln!(out, "popvmm_fault_latency_seconds_count {}", self.resolved);
        out
    }
}

/// The `n` pages of a `/pages` list that cost the most messages, most first (ties keep the list's
/// address order); pages that cost none are left out.
pub fn hottest(pages: &[Value], n: usize) -> Vec<Value> {
    let cost = |p: &Value| p.get("messages").and_then(Value::as_u64).unwrap_or(0);
    let mut hot: Vec<&Value> = pages.iter().filter(|p| cost(p) > 0).collect();
    hot.sort_by_key(|p| std::cmp::Reverse(cost(p)));
    hot.into_iter().take(n).cloned().collect()
}

/// The `n` pages of the program that cost the most messages so far (see [`pages`]).
pub fn hot_pages(islands: &[Arc<Island>], n: usize) -> Vec<Value> {
    let all = pages(islands, 0, usize::MAX);
    hottest(all["pages"].as_array().map_or(&[], Vec::as_slice), n)
}

/// Every page of the program that cost a message, in address order (as `/pages` gives them).
pub fn pages_with_traffic(islands: &[Arc<Island>]) -> Vec<Value> {
    let all = pages(islands, 0, usize::MAX);
    all["pages"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter(|p| p["messages"].as_u64().is_some_and(|n| n > 0))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The exit summary's line about the pages that bounced most (None when no page cost a message).
pub fn hot_pages_text(hot: &[Value]) -> Option<String> {
    if hot.is_empty() {
        return None;
    }
    let each: Vec<String> = hot
        .iter()
        .map(|p| {
            let writers: Vec<String> = p["writers"]
                .as_array()
                .map(|w| w.iter().map(|i| i.to_string()).collect())
                .unwrap_or_default();
            let by = if writers.is_empty() {
                String::new()
            } else {
                format!(", written on {}", writers.join(","))
            };
            format!(
                "{} {} ({}{by})",
                p["address"].as_str().unwrap_or("?"),
                p["messages"].as_u64().unwrap_or(0),
                p["pattern"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    Some(format!(
        "popvmm: messages by page, most first: {}\n",
        each.join("; ")
    ))
}

/// Why a page costs messages, from who faulted on it: the access pattern the protocol saw.
pub fn sharing_pattern(readers: &BTreeSet<usize>, writers: &BTreeSet<usize>) -> &'static str {
    match writers.len() {
        0 if readers.is_empty() => "untouched",
        0 => "read-shared",
        1 if readers.is_subset(writers) => "private",
        1 => "producer-consumer",
        _ => "write-shared",
    }
}

/// One page, every island's view of it, and what it cost: each island's faults and the messages
/// it received about the page, who read and who wrote it, and the sharing pattern that follows.
pub fn pages(islands: &[Arc<Island>], from: u64, count: usize) -> Value {
    let first = from / PAGE_SIZE;
    let mut per_island: Vec<BTreeMap<u64, (coherency::PageView, PageTraffic)>> = Vec::new();
    let mut all: BTreeSet<u64> = BTreeSet::new();
    for p in islands {
        let views: BTreeMap<u64, (coherency::PageView, PageTraffic)> = p
            .dsm
            .snapshot(first, count)
            .into_iter()
            .map(|s| (s.page, (s.view, s.traffic)))
            .collect();
        all.extend(views.keys().take(count).copied());
        per_island.push(views);
    }
    let listed: Vec<u64> = all.into_iter().take(count).collect();
    let next = listed.last().map(|&p| (p + 1) * PAGE_SIZE);
    let rows: Vec<Value> = listed
        .iter()
        .map(|page| {
            let mut owner = None;
            let mut users = BTreeSet::new();
            let mut readers = BTreeSet::new();
            let mut writers = BTreeSet::new();
            let mut received = [0u64; coherency::MessageType::ALL.len()];
            let copies: Vec<Value> = per_island
                .iter()
                .enumerate()
                .map(|(i, views)| {
                    let v = views.get(page).copied();
                    if let Some((v, t)) = v {
                        owner = owner.or(v.owner);
                        users.extend(v.users.iter());
                        if matches!(
                            v.state,
                            coherency::State::Modified | coherency::State::NotReplicated
                        ) {
                            owner = Some(i as u8);
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
                    json!({
                        "island": i,
                        "state": v.map_or("Unmapped", |(v, _)| v.state.name()),
                        "mapping": v.map_or("none", |(v, _)| match v.mapping {
                            coherency::Mapping::None => "none",
                            coherency::Mapping::ReadOnly => "read-only",
                            coherency::Mapping::ReadWrite => "read-write",
                        }),
                        "waiting": v.map_or(0, |(v, _)| v.waiting),
                        "read_faults": t.read_faults,
                        "write_faults": t.write_faults,
                        "messages_received": t.messages(),
                    })
                })
                .collect();
            let by_type: BTreeMap<&str, u64> = coherency::MessageType::ALL
                .iter()
                .map(|ty| (PAGE_MESSAGE_TYPES[ty.index()], received[ty.index()]))
                .filter(|&(_, n)| n > 0)
                .collect();
            json!({
                "address": format!("{:#x}", page * PAGE_SIZE),
                "copies": copies,
                "owner": owner,
                "users": users.into_iter().collect::<Vec<_>>(),
                "messages": received.iter().sum::<u64>(),
                "messages_by_type": by_type,
                "readers": readers.iter().collect::<Vec<_>>(),
                "writers": writers.iter().collect::<Vec<_>>(),
                "pattern": sharing_pattern(&readers, &writers),
            })
        })
        .collect();
    json!({ "pages": rows, "next": next.map(|n| format!("{n:#x}")) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hottest_pages_first_quiet_ones_left_out_and_one_summary_line() {
        let pages = vec![
            json!({"address": "0x1000", "messages": 3, "writers": [], "pattern": "read-shared"}),
            json!({"address": "0x2000", "messages": 0, "writers": [], "pattern": "untouched"}),
            json!({"address": "0x3000", "messages": 40, "writers": [1, 2], "pattern": "write-shared"}),
            json!({"address": "0x4000", "messages": 3, "writers": [0], "pattern": "private"}),
        ];
        let hot = hottest(&pages, 10);
        let addresses: Vec<&str> = hot.iter().filter_map(|p| p["address"].as_str()).collect();
        assert_eq!(addresses, ["0x3000", "0x1000", "0x4000"]);
        assert_eq!(hottest(&pages, 1).len(), 1);
        assert_eq!(
            hot_pages_text(&hot[..2]).as_deref(),
            Some(
                "popvmm: messages by page, most first: 0x3000 40 (write-shared, written on 1,2); \
                 0x1000 3 (read-shared)\n"
            )
        );
        assert_eq!(hot_pages_text(&[]), None);
    }

    #[test]
    fn sharing_patterns_follow_who_read_and_who_wrote() {
        let set = |v: &[usize]| v.iter().copied().collect::<BTreeSet<usize>>();
        assert_eq!(sharing_pattern(&set(&[]), &set(&[])), "untouched");
        assert_eq!(sharing_pattern(&set(&[1, 2]), &set(&[])), "read-shared");
        assert_eq!(sharing_pattern(&set(&[2]), &set(&[2])), "private");
        assert_eq!(sharing_pattern(&set(&[]), &set(&[3])), "private");
        assert_eq!(
            sharing_pattern(&set(&[0, 2]), &set(&[2])),
            "producer-consumer"
        );
        assert_eq!(sharing_pattern(&set(&[]), &set(&[0, 1])), "write-shared");
        assert_eq!(
            sharing_pattern(&set(&[0, 1, 2]), &set(&[0, 1])),
            "write-shared"
        );
    }
}
