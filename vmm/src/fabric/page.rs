//! A worked example of [`Wire`]: the coherency protocol's messages, with 4 KiB pages.
//!
//! Layout (little-endian): page `u64` | from `u8` | generation `u32` (the page's incarnation,
//! decision 16 of `coherency`) | users `u64` | type `u8` (the position in `MessageType::ALL`) |
//! body. Bodies: Copy: version `u32`, then the 4096 bytes of the page; Copy Void: fetching `u8`
//! (0/1); Invalid: ts `u64`, version `u32`; Ack, Nack: voter `u8` (0 idle, 1 invalidating, 2
//! refetching); Fetch, Fetch Write, Reset: nothing. 22 bytes of header, 4122 at most.

use std::fmt;

use coherency::{KernelSet, Message, MessageKind, MessageType, Voter, MAX_KERNELS};

use super::wire::{Class, Wire, WireError, WireReader, WireWriter};
use super::PAGE_SIZE;

/// The content of one guest page, as a Copy carries it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageBuf(Box<[u8; PAGE_SIZE]>);

impl PageBuf {
    pub fn zeroed() -> PageBuf {
        PageBuf(Box::new([0; PAGE_SIZE]))
    }

    /// A page holding `bytes`, which must be exactly 4096 of them.
    pub fn from_slice(bytes: &[u8]) -> Option<PageBuf> {
        let mut p = PageBuf::zeroed();
        p.0.copy_from_slice(
            bytes
                .get(..PAGE_SIZE)
                .filter(|_| bytes.len() == PAGE_SIZE)?,
        );
        Some(p)
    }

    pub fn as_bytes(&self) -> &[u8; PAGE_SIZE] {
        &self.0
    }

    pub fn as_bytes_mut(&mut self) -> &mut [u8; PAGE_SIZE] {
        &mut self.0
    }
}

impl Default for PageBuf {
    fn default() -> Self {
        PageBuf::zeroed()
    }
}

impl fmt::Debug for PageBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nonzero = self.0.iter().filter(|&&b| b != 0).count();
        write!(
            f,
            "PageBuf({:02x?}.., {nonzero} non-zero bytes)",
            &self.0[..8]
        )
    }
}

/// A coherency protocol message carrying 4 KiB pages.
pub type PageMessage = Message<PageBuf>;

/// The counter names of [`PageMessage`]: the protocol's own (`MessageType::NAMES`).
pub const PAGE_MESSAGE_TYPES: [&str; 8] = MessageType::NAMES;

const HEADER: usize = 8 + 1 + 4 + 8 + 1;

fn voter_byte(v: Voter) -> u8 {
    match v {
        Voter::Idle => 0,
        Voter::Invalidating => 1,
        Voter::Refetching => 2,
    }
}

fn voter_from(b: u8) -> Result<Voter, WireError> {
    match b {
        0 => Ok(Voter::Idle),
        1 => Ok(Voter::Invalidating),
        2 => Ok(Voter::Refetching),
        v => Err(WireError::Invalid {
            what: "voter",
            value: u64::from(v),
        }),
    }
}

/// The fields every page message starts with on the wire: a single message's, or a range's (its
/// first page's), read and written in one place so that both formats stay the same.
pub(super) struct Head {
    pub page: u64,
    pub from: u8,
    pub gen: u32,
    pub users: KernelSet,
    pub ty: MessageType,
}

impl Head {
    pub(super) fn of(m: &PageMessage) -> Head {
        Head {
            page: m.page,
            from: m.from,
            gen: m.gen,
            users: m.users,
            ty: m.kind.message_type(),
        }
    }

    /// Writes the head; a sender decode would refuse is refused here (a frame no island could
    /// read), before anything is written.
    pub(super) fn put(&self, w: &mut WireWriter<'_>) -> Result<(), WireError> {
        if usize::from(self.from) >= MAX_KERNELS {
            return Err(WireError::Invalid {
                what: "sending kernel",
                value: u64::from(self.from),
            });
        }
        w.put_u64(self.page)?;
        w.put_u8(self.from)?;
        w.put_u32(self.gen)?;
        w.put_u64(self.users.0)?;
        w.put_u8(self.ty.index() as u8)
    }

    pub(super) fn get(r: &mut WireReader<'_>) -> Result<Head, WireError> {
        let page = r.get_u64()?;
        let from = r.get_u8()?;
        if usize::from(from) >= MAX_KERNELS {
            return Err(WireError::Invalid {
                what: "sending kernel",
                value: u64::from(from),
            });
        }
        let gen = r.get_u32()?;
        let users = KernelSet(r.get_u64()?);
        let tag = r.get_u8()?;
        let ty = *MessageType::ALL
            .get(usize::from(tag))
            .ok_or(WireError::Invalid {
                what: "coherency message type",
                value: u64::from(tag),
            })?;
        Ok(Head {
            page,
            from,
            gen,
            users,
            ty,
        })
    }
}

/// A Copy's body: its version, then the page.
pub(super) fn put_copy(
    w: &mut WireWriter<'_>,
    data: &PageBuf,
    version: u32,
) -> Result<(), WireError> {
    w.put_u32(version)?;
    w.put_bytes(data.as_bytes())
}

pub(super) fn get_copy(r: &mut WireReader<'_>) -> Result<MessageKind<PageBuf>, WireError> {
    let version = r.get_u32()?;
    let mut data = PageBuf::zeroed();
    data.0.copy_from_slice(r.get_bytes(PAGE_SIZE)?);
    Ok(MessageKind::Copy { data, version })
}

impl Wire for PageMessage {
    const TYPE_NAMES: &'static [&'static str] = &PAGE_MESSAGE_TYPES;
    const MAX_ENCODED: usize = HEADER + 4 + PAGE_SIZE;

    fn type_index(&self) -> usize {
        self.kind.message_type().index()
    }

    fn class(&self) -> Class {
        if self.kind.is_answer() {
            Class::Answer
        } else {
            Class::Request
        }
    }

    fn encode(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let mut w = WireWriter::new(buf);
        Head::of(self).put(&mut w)?;
        match &self.kind {
            MessageKind::Fetch | MessageKind::FetchWrite | MessageKind::Reset => {}
            MessageKind::Copy { data, version } => put_copy(&mut w, data, *version)?,
            MessageKind::CopyVoid { fetching } => w.put_u8(u8::from(*fetching))?,
            MessageKind::Invalid { ts, version } => {
                w.put_u64(*ts)?;
                w.put_u32(*version)?
            }
            MessageKind::Ack { voter } | MessageKind::Nack { voter } => {
                w.put_u8(voter_byte(*voter))?
            }
        }
        Ok(w.len())
    }

    fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = WireReader::new(buf);
        let Head {
            page,
            from,
            gen,
            users,
            ty,
        } = Head::get(&mut r)?;
        let kind = match ty {
            MessageType::Fetch => MessageKind::Fetch,
            MessageType::FetchWrite => MessageKind::FetchWrite,
            MessageType::Copy => get_copy(&mut r)?,
            MessageType::CopyVoid => MessageKind::CopyVoid {
                fetching: r.get_bool("fetching flag")?,
            },
            MessageType::Invalid => MessageKind::Invalid {
                ts: r.get_u64()?,
                version: r.get_u32()?,
            },
            MessageType::Ack => MessageKind::Ack {
                voter: voter_from(r.get_u8()?)?,
            },
            MessageType::Nack => MessageKind::Nack {
                voter: voter_from(r.get_u8()?)?,
            },
            MessageType::Reset => MessageKind::Reset,
        };
        r.finish()?;
        Ok(Message {
            page,
            from,
            gen,
            kind,
            users,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(seed: u8) -> PageBuf {
        let mut p = PageBuf::zeroed();
        for (i, b) in p.as_bytes_mut().iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
        p
    }

    fn every_kind() -> Vec<PageMessage> {
        let kinds = vec![
            MessageKind::Fetch,
            MessageKind::FetchWrite,
            MessageKind::Copy {
                data: page(3),
                version: 0xdead_beef,
            },
            MessageKind::CopyVoid { fetching: false },
            MessageKind::CopyVoid { fetching: true },
            MessageKind::Invalid {
                ts: u64::MAX - 5,
                version: u32::MAX - 1,
            },
            MessageKind::Ack { voter: Voter::Idle },
            MessageKind::Ack {
                voter: Voter::Invalidating,
            },
            MessageKind::Nack {
                voter: Voter::Refetching,
            },
            MessageKind::Nack { voter: Voter::Idle },
            MessageKind::Reset,
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Message {
                page: 0x7fff_0000_1234 + i as u64,
                from: 63 - i as u8,
                // Every byte of the generation matters, and 0 (never reset) too.
                gen: if i == 0 {
                    0
                } else {
                    0x8100_0000 | (i as u32) << 8 | i as u32
                },
                kind,
                users: KernelSet(0x8000_0000_0000_0001 | (1 << i)),
            })
            .collect()
    }

    #[test]
    fn type_names_follow_the_coherency_crate() {
        for t in MessageType::ALL {
            assert_eq!(PAGE_MESSAGE_TYPES[t.index()], t.name());
        }
        assert_eq!(PAGE_MESSAGE_TYPES.len(), MessageType::ALL.len());
        const { assert!(<PageMessage as Wire>::MAX_ENCODED <= super::super::MAX_MESSAGE) };
    }

    #[test]
    fn round_trip_every_kind() {
        let mut buf = vec![0u8; PageMessage::MAX_ENCODED];
        for m in every_kind() {
            let n = m.encode(&mut buf).expect("encode");
            assert!(n <= PageMessage::MAX_ENCODED);
            let back = PageMessage::decode(&buf[..n]).expect("decode");
            assert_eq!(back, m);
            assert_eq!(
                m.class() == Class::Answer,
                m.kind.is_answer(),
                "{m}: class follows the protocol"
            );
            assert_eq!(m.type_index(), m.kind.message_type().index());
        }
        let copy = &every_kind()[2];
        assert_eq!(copy.encode(&mut buf).expect("encode"), 4122);
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        let mut buf = vec![0u8; PageMessage::MAX_ENCODED + 1];
        for m in every_kind() {
            let n = m.encode(&mut buf).expect("encode");
            // Every truncation fails, and so does a trailing byte.
            for cut in 0..n {
                assert!(
                    PageMessage::decode(&buf[..cut]).is_err(),
                    "{m} cut at {cut}"
                );
            }
            assert_eq!(
                PageMessage::decode(&buf[..n + 1]),
                Err(WireError::Trailing { extra: 1 })
            );
            // A buffer too small to encode into is an error too.
            assert!(m.encode(&mut vec![0u8; n - 1]).is_err());
        }
        let fetch = &every_kind()[0];
        let n = fetch.encode(&mut buf).expect("encode");
        let mut bad = buf[..n].to_vec();
        bad[21] = 8; // type tag
        assert!(matches!(
            PageMessage::decode(&bad),
            Err(WireError::Invalid { value: 8, .. })
        ));
        bad[21] = 0;
        bad[8] = 64; // from
        assert!(PageMessage::decode(&bad).is_err());
        let ack = &every_kind()[6];
        let n = ack.encode(&mut buf).expect("encode");
        buf[n - 1] = 3; // voter
        assert!(PageMessage::decode(&buf[..n]).is_err());
        let void = &every_kind()[3];
        let n = void.encode(&mut buf).expect("encode");
        buf[n - 1] = 2; // fetching flag
        assert!(PageMessage::decode(&buf[..n]).is_err());

        // Random bytes: never a panic, and anything accepted re-encodes to the same bytes.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = vec![0u8; PageMessage::MAX_ENCODED];
        for _ in 0..20_000 {
            let len = (rnd() % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    // Mostly-valid headers, so that bodies get exercised too.
                    if i == 21 {
                        (rnd() % 9) as u8
                    } else if i == 8 {
                        (rnd() % 70) as u8
                    } else {
                        rnd() as u8
                    }
                })
                .collect();
            if let Ok(m) = PageMessage::decode(&bytes) {
                let n = m.encode(&mut out).expect("encode");
                assert_eq!(&out[..n], &bytes[..]);
            }
        }
    }

    #[test]
    fn page_buf_helpers() {
        assert!(PageBuf::from_slice(&[0u8; 4095]).is_none());
        assert!(PageBuf::from_slice(&[0u8; 4097]).is_none());
        let p = PageBuf::from_slice(page(9).as_bytes()).expect("page");
        assert_eq!(p, page(9));
        assert!(format!("{p:?}").contains("non-zero"));
    }
}
