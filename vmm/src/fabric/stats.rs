//! Counters of the fabric: per link and per message type, readable at any time (relaxed atomics:
//! each counter is exact, a snapshot of several is not a consistent cut), and their serializable
//! snapshot for the control socket.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use super::IslandId;

#[derive(Debug, Default)]
struct TypeCounter {
    messages: AtomicU64,
    bytes: AtomicU64,
}

/// One direction of one link, as seen by one of its ends (the sender counts what it sends, the
/// receiver what it takes).
#[derive(Debug)]
pub struct LinkCounters {
    by_type: Box<[TypeCounter]>,
    /// Frames whose type index was out of range (counted here instead of by type).
    other: TypeCounter,
    /// Sender: doorbell rings (the receiver was asleep with its doorbell armed).
    pub(crate) doorbells: AtomicU64,
    /// Sender: `send` calls that waited for a credit (backpressure on a requester).
    pub(crate) credit_waits: AtomicU64,
    /// Sender: requests posted with no credit free (see the module docs: overdraft).
    pub(crate) overdrafts: AtomicU64,
    /// Sender: frames parked in the outbox because the link had no room.
    pub(crate) parked: AtomicU64,
    /// Sender: the largest outbox seen.
    pub(crate) outbox_high_water: AtomicU64,
    /// Receiver: times it woke the sender because room appeared on a link the sender waited on.
    pub(crate) space_wakeups: AtomicU64,
    /// Receiver: frames rejected as malformed.
    pub(crate) malformed: AtomicU64,
}

impl LinkCounters {
    fn new(types: usize) -> LinkCounters {
        LinkCounters {
            by_type: (0..types).map(|_| TypeCounter::default()).collect(),
            other: TypeCounter::default(),
            doorbells: AtomicU64::new(0),
            credit_waits: AtomicU64::new(0),
            overdrafts: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            outbox_high_water: AtomicU64::new(0),
            space_wakeups: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
        }
    }

    pub(crate) fn count(&self, type_index: usize, bytes: usize) {
        let c = self.by_type.get(type_index).unwrap_or(&self.other);
        c.messages.fetch_add(1, Relaxed);
        c.bytes.fetch_add(bytes as u64, Relaxed);
    }

    fn totals(&self) -> TypeStats {
        let mut t = TypeStats::default();
        for c in self.by_type.iter().chain(std::iter::once(&self.other)) {
            t.messages += c.messages.load(Relaxed);
            t.bytes += c.bytes.load(Relaxed);
        }
        t
    }

    fn by_type(&self, names: &[&'static str]) -> BTreeMap<String, TypeStats> {
        let mut m = BTreeMap::new();
        for (c, name) in self.by_type.iter().zip(names) {
            let s = TypeStats {
                messages: c.messages.load(Relaxed),
                bytes: c.bytes.load(Relaxed),
            };
            if s.messages > 0 {
                m.insert((*name).to_string(), s);
            }
        }
        m
    }
}

/// Every counter of one island: its outbound links, its inbound links, its receive loop.
#[derive(Debug)]
pub struct IslandCounters {
    island: IslandId,
    names: &'static [&'static str],
    /// Indexed by destination island.
    out: Box<[LinkCounters]>,
    /// Indexed by source island.
    inb: Box<[LinkCounters]>,
    /// Times the receive loop went to sleep on its doorbell.
    pub(crate) sleeps: AtomicU64,
    /// Times it came back from a sleep.
    pub(crate) wakeups: AtomicU64,
    /// Wake-ups that found no frame (a doorbell rung for a frame already taken, or a timeout).
    pub(crate) empty_wakeups: AtomicU64,
    /// Frames taken while polling (no sleep since the previous frame).
    pub(crate) polled: AtomicU64,
    /// Frames taken right after a wake-up.
    pub(crate) woken: AtomicU64,
    /// The receive loop's current poll window, ns.
    pub(crate) poll_window_ns: AtomicU64,
}

impl IslandCounters {
    pub(crate) fn new(
        island: IslandId,
        islands: usize,
        names: &'static [&'static str],
    ) -> IslandCounters {
        IslandCounters {
            island,
            names,
            out: (0..islands)
                .map(|_| LinkCounters::new(names.len()))
                .collect(),
            inb: (0..islands)
                .map(|_| LinkCounters::new(names.len()))
                .collect(),
            sleeps: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
            empty_wakeups: AtomicU64::new(0),
            polled: AtomicU64::new(0),
            woken: AtomicU64::new(0),
            poll_window_ns: AtomicU64::new(0),
        }
    }

    /// The island these counters belong to.
    pub fn island(&self) -> IslandId {
        self.island
    }

    /// Counters of the link from this island to `to` (the sender's half). Out-of-range islands
    /// get a shared dummy (never happens: links are validated before use).
    pub(crate) fn out(&self, to: IslandId) -> &LinkCounters {
        self.out.get(to).unwrap_or(&self.out[self.island])
    }

    /// Counters of the link from `from` to this island (the receiver's half).
    pub(crate) fn inb(&self, from: IslandId) -> &LinkCounters {
        self.inb.get(from).unwrap_or(&self.inb[self.island])
    }

    /// This island's half of every link it uses, and its receive loop.
    pub fn snapshot(&self) -> IslandStats {
        let mut out = Vec::new();
        let mut inb = Vec::new();
        for (peer, c) in self.out.iter().enumerate() {
            let sent = c.totals();
            if sent.messages > 0 || c.overdrafts.load(Relaxed) > 0 {
                out.push(LinkStats {
                    from: self.island,
                    to: peer,
                    sent,
                    sent_by_type: c.by_type(self.names),
                    doorbells: c.doorbells.load(Relaxed),
                    credit_waits: c.credit_waits.load(Relaxed),
                    overdrafts: c.overdrafts.load(Relaxed),
                    parked: c.parked.load(Relaxed),
                    outbox_high_water: c.outbox_high_water.load(Relaxed),
                    ..LinkStats::default()
                });
            }
        }
        for (peer, c) in self.inb.iter().enumerate() {
            let received = c.totals();
            let malformed = c.malformed.load(Relaxed);
            if received.messages > 0 || malformed > 0 {
                inb.push(LinkStats {
                    from: peer,
                    to: self.island,
                    received,
                    received_by_type: c.by_type(self.names),
                    space_wakeups: c.space_wakeups.load(Relaxed),
                    malformed,
                    ..LinkStats::default()
                });
            }
        }
        IslandStats {
            island: self.island,
            outbound: out,
            inbound: inb,
            receiver: ReceiverStats {
                island: self.island,
                sleeps: self.sleeps.load(Relaxed),
                wakeups: self.wakeups.load(Relaxed),
                empty_wakeups: self.empty_wakeups.load(Relaxed),
                polled: self.polled.load(Relaxed),
                woken: self.woken.load(Relaxed),
                poll_window_ns: self.poll_window_ns.load(Relaxed),
            },
        }
    }
}

/// Messages and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeStats {
    pub messages: u64,
    pub bytes: u64,
}

impl TypeStats {
    fn add(&mut self, o: TypeStats) {
        self.messages += o.messages;
        self.bytes += o.bytes;
    }
}

/// One link (from → to). In a [`FabricStats`] both halves are filled; in an [`IslandStats`] only
/// the half that island keeps (sender: `sent`..`outbox_high_water`; receiver: the rest).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStats {
    pub from: IslandId,
    pub to: IslandId,
    pub sent: TypeStats,
    pub received: TypeStats,
    pub sent_by_type: BTreeMap<String, TypeStats>,
    pub received_by_type: BTreeMap<String, TypeStats>,
    pub doorbells: u64,
    pub credit_waits: u64,
    pub overdrafts: u64,
    pub parked: u64,
    pub outbox_high_water: u64,
    pub space_wakeups: u64,
    pub malformed: u64,
}

/// One island's receive loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverStats {
    pub island: IslandId,
    pub sleeps: u64,
    pub wakeups: u64,
    pub empty_wakeups: u64,
    pub polled: u64,
    pub woken: u64,
    /// The current adaptive poll window (as last updated), ns.
    pub poll_window_ns: u64,
}

/// What one island knows (a multi-process transport has only this per process).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IslandStats {
    pub island: IslandId,
    pub outbound: Vec<LinkStats>,
    pub inbound: Vec<LinkStats>,
    pub receiver: ReceiverStats,
}

/// The whole fabric: every link that carried something, both halves merged; every receive loop;
/// totals by message type (as sent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FabricStats {
    pub islands: usize,
    pub links: Vec<LinkStats>,
    pub receivers: Vec<ReceiverStats>,
    pub by_type: BTreeMap<String, TypeStats>,
    pub total: TypeStats,
}

impl FabricStats {
    /// Merges the halves the islands keep.
    pub fn merge(islands: usize, parts: impl IntoIterator<Item = IslandStats>) -> FabricStats {
        let mut links: BTreeMap<(IslandId, IslandId), LinkStats> = BTreeMap::new();
        let mut receivers = Vec::new();
        for part in parts {
            receivers.push(part.receiver);
            for o in part.outbound {
                let l = links.entry((o.from, o.to)).or_default();
                l.from = o.from;
                l.to = o.to;
                l.sent = o.sent;
                l.sent_by_type = o.sent_by_type;
                l.doorbells = o.doorbells;
                l.credit_waits = o.credit_waits;
                l.overdrafts = o.overdrafts;
                l.parked = o.parked;
                l.outbox_high_water = o.outbox_high_water;
            }
            for i in part.inbound {
                let l = links.entry((i.from, i.to)).or_default();
                l.from = i.from;
                l.to = i.to;
                l.received = i.received;
                l.received_by_type = i.received_by_type;
                l.space_wakeups = i.space_wakeups;
                l.malformed = i.malformed;
            }
        }
        let mut by_type: BTreeMap<String, TypeStats> = BTreeMap::new();
        let mut total = TypeStats::default();
        for l in links.values() {
            total.add(l.sent);
            for (name, s) in &l.sent_by_type {
                by_type.entry(name.clone()).or_default().add(*s);
            }
        }
        FabricStats {
            islands,
            links: links.into_values().collect(),
            receivers,
            by_type,
            total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["ping", "pong"];

    #[test]
    fn snapshot_and_merge() {
        let a = IslandCounters::new(0, 2, NAMES);
        let b = IslandCounters::new(1, 2, NAMES);
        a.out(1).count(0, 100);
        a.out(1).count(0, 50);
        a.out(1).doorbells.fetch_add(1, Relaxed);
        b.inb(0).count(0, 100);
        b.out(0).count(1, 8);
        b.out(0).count(7, 3); // out-of-range type: counted in the total only
        a.inb(1).count(1, 8);
        b.sleeps.fetch_add(2, Relaxed);
        let s = FabricStats::merge(2, [a.snapshot(), b.snapshot()]);
        assert_eq!(s.links.len(), 2);
        let ab = &s.links[0];
        assert_eq!((ab.from, ab.to), (0, 1));
        assert_eq!(
            ab.sent,
            TypeStats {
                messages: 2,
                bytes: 150
            }
        );
        assert_eq!(ab.received.messages, 1);
        assert_eq!(ab.doorbells, 1);
        assert_eq!(ab.sent_by_type["ping"].bytes, 150);
        let ba = &s.links[1];
        assert_eq!(ba.sent.messages, 2);
        assert_eq!(ba.sent_by_type.len(), 1);
        assert_eq!(s.by_type["pong"].messages, 1);
        assert_eq!(s.total.messages, 4);
        assert_eq!(s.receivers[1].sleeps, 2);
        let json = serde_json::to_string(&s).expect("serialize");
        assert!(json.contains("\"ping\""), "{json}");
        let back: FabricStats = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, s);
    }
}
