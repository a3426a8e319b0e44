//! Ranges of page messages: consecutive coherency messages of one kind, from one island to one
//! other, about consecutive pages, carried as one frame (`popvmm launch --batch-ranges`).
//!
//! Why this keeps the model-checked protocol: a range is only a way of carrying messages, never a
//! message of the protocol. The sender's engine queued the messages one by one, in this order, for
//! this one link; the receiver hands them to its engine one by one, in this order, before anything
//! that came after the range on the link. A link is FIFO, so the engine sees exactly the sequence
//! of messages it would have seen with one frame each: one Fetch and one Copy per page, in the
//! same order (what `coherency-lab` checks). The fabric's flow control counts a range as the
//! requests (or answers) it carries ([`Wire::weight`](super::Wire::weight)), so its contract (C1)
//! still holds message by message.
//!
//! Layout after the island message tag (little-endian): first page `u64` | from `u8` |
//! generation `u32` | users `u64` | type `u8` (the position in `MessageType::ALL`: Fetch, Fetch
//! Write, Copy or Copy Void) | count `u16` (1 to [`MAX_RANGE`]) | body. Bodies: Copy: per page,
//! version `u32` then the 4096 bytes of the page; Copy Void: fetching `u8` (0/1), once (every page
//! has the same); Fetch, Fetch Write: nothing. 23 bytes of header, 131,223 at most.

use coherency::{Message, MessageKind, MessageType, PageId};

use super::page::{get_copy, put_copy, Head, PageBuf, PageMessage};
use super::wire::{Class, WireError, WireReader, WireWriter};
use super::{MAX_RANGE, PAGE_SIZE};

/// The most bytes a range encodes to.
pub const RANGE_MAX_ENCODED: usize = RANGE_HEADER + MAX_RANGE * (4 + PAGE_SIZE);

const RANGE_HEADER: usize = 8 + 1 + 4 + 8 + 1 + 2 + 1;

/// The kinds of message a range carries: the requests for pages and their answers. Others
/// (votes, invalidations, resets) concern pages one at a time and are rare.
pub fn carried(kind: &MessageKind<PageBuf>) -> bool {
    matches!(
        kind,
        MessageKind::Fetch
            | MessageKind::FetchWrite
            | MessageKind::Copy { .. }
            | MessageKind::CopyVoid { .. }
    )
}

/// Whether `next` may follow `prev` in one range: a carried kind, the same type and flags (the
/// fetching flag of Copy Void), the same sender, generation and users, and the next page.
pub fn joins(prev: &PageMessage, next: &PageMessage) -> bool {
    let same_kind = match (&prev.kind, &next.kind) {
        (MessageKind::Fetch, MessageKind::Fetch)
        | (MessageKind::FetchWrite, MessageKind::FetchWrite)
        | (MessageKind::Copy { .. }, MessageKind::Copy { .. }) => true,
        (MessageKind::CopyVoid { fetching: a }, MessageKind::CopyVoid { fetching: b }) => a == b,
        _ => false,
    };
    same_kind
        && prev.page.checked_add(1) == Some(next.page)
        && prev.from == next.from
        && prev.gen == next.gen
        && prev.users == next.users
}

/// One range: 1 to [`MAX_RANGE`] messages, each joining the one before (see [`joins`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRange {
    msgs: Vec<PageMessage>,
}

/// Messages that make no range ([`PageRange::new`]): why, and the messages back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub why: WireError,
    pub msgs: Vec<PageMessage>,
}

impl PageRange {
    /// The range of `msgs`, if they make one (else they come back).
    pub fn new(msgs: Vec<PageMessage>) -> Result<PageRange, Rejected> {
        match Self::check(&msgs) {
            Ok(()) => Ok(PageRange { msgs }),
            Err(why) => Err(Rejected { why, msgs }),
        }
    }

    fn check(msgs: &[PageMessage]) -> Result<(), WireError> {
        let first = msgs.first().ok_or(WireError::Invalid {
            what: "page range count",
            value: 0,
        })?;
        if msgs.len() > MAX_RANGE {
            return Err(WireError::Invalid {
                what: "page range count",
                value: msgs.len() as u64,
            });
        }
        if !carried(&first.kind) {
            return Err(WireError::Invalid {
                what: "page range type",
                value: first.kind.message_type().index() as u64,
            });
        }
        if first
            .page
            .checked_add(msgs.len() as u64 - 1)
            .is_none_or(|last| last > u64::MAX / PAGE_SIZE as u64)
        {
            return Err(WireError::Invalid {
                what: "page range (past the end of the address space)",
                value: first.page,
            });
        }
        if let Some(i) = msgs.windows(2).position(|w| !joins(&w[0], &w[1])) {
            return Err(WireError::Invalid {
                what: "page range member (not the next page of the same kind)",
                value: i as u64 + 1,
            });
        }
        Ok(())
    }

    /// The messages, in page order (the order the sender's engine queued them in).
    pub fn messages(&self) -> &[PageMessage] {
        &self.msgs
    }

    pub fn into_messages(self) -> Vec<PageMessage> {
        self.msgs
    }

    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    fn head(&self) -> &PageMessage {
        // `new` and `decode` never make an empty range.
        &self.msgs[0]
    }

    pub fn first_page(&self) -> PageId {
        self.head().page
    }

    /// The protocol type of every message of the range.
    pub fn message_type(&self) -> MessageType {
        self.head().kind.message_type()
    }

    pub fn class(&self) -> Class {
        if self.head().kind.is_answer() {
            Class::Answer
        } else {
            Class::Request
        }
    }

    /// The requests (or answers) it carries, for the fabric's credits.
    pub fn weight(&self) -> u8 {
        self.msgs.len() as u8
    }

    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let head = self.head();
        let mut w = WireWriter::new(buf);
        Head::of(head).put(&mut w)?;
        w.put_u16(self.msgs.len() as u16)?;
        match &head.kind {
            MessageKind::CopyVoid { fetching } => w.put_u8(u8::from(*fetching))?,
            MessageKind::Copy { .. } => {
                for m in &self.msgs {
                    if let MessageKind::Copy { data, version } = &m.kind {
                        put_copy(&mut w, data, *version)?;
                    }
                }
            }
            _ => {}
        }
        Ok(w.len())
    }

    /// Reads a range written by [`PageRange::encode`]. A count of 0 or over [`MAX_RANGE`], a
    /// range running past the last page of the address space, a type a range does not carry, or
    /// a body of the wrong length is an error.
    pub fn decode(buf: &[u8]) -> Result<PageRange, WireError> {
        let mut r = WireReader::new(buf);
        let Head {
            page: first,
            from,
            gen,
            users,
            ty,
        } = Head::get(&mut r)?;
        let count = r.get_u16()?;
        if count == 0 || usize::from(count) > MAX_RANGE {
            return Err(WireError::Invalid {
                what: "page range count",
                value: u64::from(count),
            });
        }
        // Every page of the range must have an address (page × 4096 fits 64 bits).
        let last_page = u64::MAX / PAGE_SIZE as u64;
        if first
            .checked_add(u64::from(count) - 1)
            .is_none_or(|last| last > last_page)
        {
            return Err(WireError::Invalid {
                what: "page range (past the end of the address space)",
                value: first,
            });
        }
        let fetching = match ty {
            MessageType::CopyVoid => r.get_bool("fetching flag")?,
            _ => false,
        };
        let mut msgs = Vec::with_capacity(usize::from(count));
        for page in first..first + u64::from(count) {
            let kind = match ty {
                MessageType::Fetch => MessageKind::Fetch,
                MessageType::FetchWrite => MessageKind::FetchWrite,
                MessageType::CopyVoid => MessageKind::CopyVoid { fetching },
                MessageType::Copy => get_copy(&mut r)?,
                other => {
                    return Err(WireError::Invalid {
                        what: "page range type",
                        value: other.index() as u64,
                    })
                }
            };
            msgs.push(Message {
                page,
                from,
                gen,
                kind,
                users,
            });
        }
        r.finish()?;
        Ok(PageRange { msgs })
    }
}

/// The messages an engine queued, grouped for sending: per destination, each run of messages that
/// join (up to [`MAX_RANGE`]) becomes one group. Groups come in the order of their first message;
/// for each destination, its messages keep their order (links are FIFO, and there is no order
/// across links to keep). A group of one is sent as the plain message.
pub fn coalesce<I>(msgs: I) -> Vec<(coherency::KernelId, Vec<PageMessage>)>
where
    I: IntoIterator<Item = (coherency::KernelId, PageMessage)>,
{
    let mut groups: Vec<(coherency::KernelId, Vec<PageMessage>)> = Vec::new();
    // The open group of each destination (at most 64 of them: a small list beats a map).
    let mut open: Vec<(coherency::KernelId, usize)> = Vec::new();
    for (to, msg) in msgs {
        let slot = open.iter_mut().find(|(d, _)| *d == to);
        if let Some((_, g)) = slot {
            let group = &mut groups[*g].1;
            let joined = group.len() < MAX_RANGE
                && carried(&msg.kind)
                && group.last().is_some_and(|prev| joins(prev, &msg));
            if joined {
                group.push(msg);
            } else {
                *g = groups.len();
                groups.push((to, vec![msg]));
            }
        } else {
            open.push((to, groups.len()));
            groups.push((to, vec![msg]));
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use coherency::{KernelSet, Voter, MAX_KERNELS};

    fn msg(page: PageId, kind: MessageKind<PageBuf>) -> PageMessage {
        Message {
            page,
            from: 1,
            gen: 3,
            kind,
            users: KernelSet(0b11),
        }
    }

    fn page(seed: u8) -> PageBuf {
        let mut p = PageBuf::zeroed();
        for (i, b) in p.as_bytes_mut().iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(7).wrapping_add(seed);
        }
        p
    }

    fn copy(page_id: PageId) -> PageMessage {
        msg(
            page_id,
            MessageKind::Copy {
                data: page(page_id as u8),
                version: page_id as u32 * 3,
            },
        )
    }

    fn pages(groups: &[(u8, Vec<PageMessage>)]) -> Vec<(u8, Vec<PageId>)> {
        groups
            .iter()
            .map(|(to, g)| (*to, g.iter().map(|m| m.page).collect()))
            .collect()
    }

    #[test]
    fn consecutive_pages_of_one_kind_to_one_island_make_one_group() {
        let out = coalesce((10..14).map(|p| (2, msg(p, MessageKind::Fetch))));
        assert_eq!(pages(&out), vec![(2, vec![10, 11, 12, 13])]);
        let out = coalesce((10..14).map(|p| (2, copy(p))));
        assert_eq!(pages(&out), vec![(2, vec![10, 11, 12, 13])]);
    }

    #[test]
    fn what_differs_is_not_merged() {
        let f = |p| (2u8, msg(p, MessageKind::Fetch));
        // Not the next page, or going back.
        assert_eq!(
            pages(&coalesce([f(1), f(3), f(2)])),
            vec![(2, vec![1]), (2, vec![3]), (2, vec![2])]
        );
        // Another kind in between cuts the run (and is never merged itself).
        let out = coalesce([
            f(1),
            (2, msg(2, MessageKind::FetchWrite)),
            f(3),
            (2, msg(4, MessageKind::Invalid { ts: 1, version: 1 })),
            (2, msg(5, MessageKind::Invalid { ts: 1, version: 1 })),
        ]);
        assert_eq!(
            pages(&out),
            vec![
                (2, vec![1]),
                (2, vec![2]),
                (2, vec![3]),
                (2, vec![4]),
                (2, vec![5])
            ]
        );
        // Another generation, sender, users or Copy Void flag.
        let mut g = msg(2, MessageKind::Fetch);
        g.gen = 4;
        let mut s = msg(2, MessageKind::Fetch);
        s.from = 0;
        let mut u = msg(2, MessageKind::Fetch);
        u.users = KernelSet(0b111);
        for other in [g, s, u] {
            assert_eq!(coalesce([f(1), (2, other)]).len(), 2);
        }
        let v = |p, fetching| (2u8, msg(p, MessageKind::CopyVoid { fetching }));
        assert_eq!(
            pages(&coalesce([v(1, false), v(2, true), v(3, true)])),
            vec![(2, vec![1]), (2, vec![2, 3])]
        );
        // Acks never make a range, even of consecutive pages.
        let a = |p| (2u8, msg(p, MessageKind::Ack { voter: Voter::Idle }));
        assert_eq!(coalesce([a(1), a(2)]).len(), 2);
    }

    #[test]
    fn order_is_kept_per_destination() {
        // Interleaved destinations: each keeps its runs, in order; a message to another island
        // between two of a run does not cut it (there is no order across links).
        let out = coalesce([
            (1, msg(10, MessageKind::Fetch)),
            (2, msg(20, MessageKind::Fetch)),
            (1, msg(11, MessageKind::Fetch)),
            (2, msg(21, MessageKind::Fetch)),
            (1, msg(5, MessageKind::Fetch)),
            (1, msg(6, MessageKind::Fetch)),
        ]);
        assert_eq!(
            pages(&out),
            vec![(1, vec![10, 11]), (2, vec![20, 21]), (1, vec![5, 6])]
        );
        // Flattened per destination, the sequence is exactly what went in.
        for to in [1, 2] {
            let flat: Vec<PageId> = out
                .iter()
                .filter(|(d, _)| *d == to)
                .flat_map(|(_, g)| g.iter().map(|m| m.page))
                .collect();
            let want: Vec<PageId> = if to == 1 {
                vec![10, 11, 5, 6]
            } else {
                vec![20, 21]
            };
            assert_eq!(flat, want);
        }
    }

    #[test]
    fn runs_are_cut_at_max_range() {
        let out = coalesce((0..MAX_RANGE as u64 * 2 + 1).map(|p| (1, msg(p, MessageKind::Fetch))));
        let lens: Vec<usize> = out.iter().map(|(_, g)| g.len()).collect();
        assert_eq!(lens, vec![MAX_RANGE, MAX_RANGE, 1]);
    }

    #[test]
    fn ranges_round_trip_and_expand_in_order() {
        let mut buf = vec![0u8; RANGE_MAX_ENCODED];
        let ranges = [
            (0..MAX_RANGE as u64).map(copy).collect::<Vec<_>>(),
            (7..9).map(|p| msg(p, MessageKind::Fetch)).collect(),
            (7..8).map(|p| msg(p, MessageKind::FetchWrite)).collect(),
            (u64::MAX / 4096 - 1..=u64::MAX / 4096)
                .map(|p| msg(p, MessageKind::CopyVoid { fetching: true }))
                .collect(),
        ];
        for msgs in ranges {
            let r = PageRange::new(msgs.clone()).expect("range");
            let n = r.encode(&mut buf).expect("encode");
            assert!(n <= RANGE_MAX_ENCODED);
            let back = PageRange::decode(&buf[..n]).expect("decode");
            assert_eq!(back.into_messages(), msgs);
        }
        let full = PageRange::new((0..MAX_RANGE as u64).map(copy).collect()).expect("range");
        assert_eq!(
            full.encode(&mut buf).expect("encode"),
            RANGE_HEADER - 1 + MAX_RANGE * (4 + PAGE_SIZE)
        );
        const { assert!(RANGE_MAX_ENCODED < super::super::MAX_MESSAGE) };
    }

    #[test]
    fn malformed_ranges_are_errors() {
        assert!(PageRange::new(Vec::new()).is_err());
        assert!(PageRange::new((0..MAX_RANGE as u64 + 1).map(copy).collect()).is_err());
        assert!(PageRange::new(vec![copy(1), copy(3)]).is_err());
        assert!(PageRange::new(vec![msg(1, MessageKind::Reset)]).is_err());

        let mut buf = vec![0u8; RANGE_MAX_ENCODED + 1];
        let r = PageRange::new(vec![copy(4), copy(5)]).expect("range");
        let n = r.encode(&mut buf).expect("encode");
        // Count 0, and over the cap (bytes 22..24).
        let mut bad = buf[..n].to_vec();
        bad[22..24].copy_from_slice(&0u16.to_le_bytes());
        assert!(PageRange::decode(&bad).is_err());
        bad[22..24].copy_from_slice(&(MAX_RANGE as u16 + 1).to_le_bytes());
        assert!(PageRange::decode(&bad).is_err());
        // Count 3 with the data of 2, and count 1 with the data of 2.
        bad[22..24].copy_from_slice(&3u16.to_le_bytes());
        assert!(PageRange::decode(&bad).is_err());
        bad[22..24].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(
            PageRange::decode(&bad),
            Err(WireError::Trailing {
                extra: 4 + PAGE_SIZE
            })
        );
        // Past the end of the address space.
        let mut bad = buf[..n].to_vec();
        bad[..8].copy_from_slice(&(u64::MAX / 4096).to_le_bytes());
        assert!(PageRange::decode(&bad).is_err());
        bad[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(PageRange::decode(&bad).is_err());
        // A type ranges do not carry, a bad sender.
        let mut bad = buf[..n].to_vec();
        bad[21] = MessageType::Invalid.index() as u8;
        assert!(PageRange::decode(&bad).is_err());
        bad[21] = 8;
        assert!(PageRange::decode(&bad).is_err());
        let mut bad = buf[..n].to_vec();
        bad[8] = MAX_KERNELS as u8;
        assert!(PageRange::decode(&bad).is_err());
        // Every truncation.
        for cut in 0..n {
            assert!(PageRange::decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }
}
