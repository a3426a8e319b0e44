//! Messages as bytes: the [`Wire`] trait every message type of the fabric implements, and a small
//! bounds-checked cursor pair ([`WireWriter`], [`WireReader`]) to write those implementations with.
//!
//! Nothing here assumes shared memory: a message crosses a link as a frame of bytes, so that a
//! socket transport can carry the same messages as the ring transport.

use serde::{Deserialize, Serialize};

/// Whether a message asks for something or answers a request. The flow control of the fabric
/// rests on it (see the module docs): every request gets exactly one answer, from the island it was
/// sent to, back to the island that sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Class {
    Request,
    Answer,
}

impl Class {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Class::Request => 1,
            Class::Answer => 2,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Result<Class, WireError> {
        match b {
            1 => Ok(Class::Request),
            2 => Ok(Class::Answer),
            v => Err(WireError::Invalid {
                what: "message class",
                value: u64::from(v),
            }),
        }
    }
}

/// A message type the fabric can carry.
///
/// `encode` and `decode` must be inverses; `decode` gets bytes another island (one day another
/// host) produced, so it must reject anything malformed with an error and never panic.
pub trait Wire: Sized + Send + 'static {
    /// Names of the message types, indexed by [`Wire::type_index`]: the keys of the counters.
    const TYPE_NAMES: &'static [&'static str];

    /// The most bytes [`Wire::encode`] ever writes. The fabric refuses a message type whose bound
    /// does not fit a frame of its transport (a range of 32 pages with their versions and a header
    /// of up to 116 bytes on the ring transport, see [`crate::fabric::MAX_MESSAGE`]).
    const MAX_ENCODED: usize;

    /// Position of this message's type in [`Wire::TYPE_NAMES`].
    fn type_index(&self) -> usize;

    /// Request or answer (see [`Class`]).
    fn class(&self) -> Class;

    /// How many requests (or answers) of the protocol this message carries, 1 to 255: the
    /// credits a request takes and an answer gives back. More than 1 for a message that stands
    /// for several (a range of page messages, `page.rs`): the contract (C1) holds message by
    /// message of the protocol, so a range of N requests may be answered by N answers in any
    /// grouping, and the credits still balance.
    fn weight(&self) -> u8 {
        1
    }

    /// Writes the message into `buf` (at least [`Wire::MAX_ENCODED`] bytes long) and returns the
    /// number of bytes written.
    fn encode(&self, buf: &mut [u8]) -> Result<usize, WireError>;

    /// Reads a message written by [`Wire::encode`]; `buf` is exactly the bytes it wrote.
    fn decode(buf: &[u8]) -> Result<Self, WireError>;
}

/// What is wrong with the bytes of a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("encoding needs {need} bytes at offset {at}, the buffer has {have}")]
    BufferTooSmall { at: usize, need: usize, have: usize },
    #[error("truncated: {need} more bytes needed at offset {at}, {have} left")]
    Truncated { at: usize, need: usize, have: usize },
    #[error("invalid {what}: {value}")]
    Invalid { what: &'static str, value: u64 },
    #[error("{extra} bytes left over after the message")]
    Trailing { extra: usize },
}

/// Writes little-endian fields into a byte buffer, checking bounds.
#[derive(Debug)]
pub struct WireWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> WireWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> WireWriter<'a> {
        WireWriter { buf, pos: 0 }
    }

    pub fn put_bytes(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let have = self.buf.len() - self.pos;
        let dst = self.buf.get_mut(self.pos..self.pos + bytes.len()).ok_or(
            WireError::BufferTooSmall {
                at: self.pos,
                need: bytes.len(),
                have,
            },
        )?;
        dst.copy_from_slice(bytes);
        self.pos += bytes.len();
        Ok(())
    }

    pub fn put_u8(&mut self, v: u8) -> Result<(), WireError> {
        self.put_bytes(&[v])
    }

    pub fn put_u16(&mut self, v: u16) -> Result<(), WireError> {
        self.put_bytes(&v.to_le_bytes())
    }

    pub fn put_u32(&mut self, v: u32) -> Result<(), WireError> {
        self.put_bytes(&v.to_le_bytes())
    }

    pub fn put_u64(&mut self, v: u64) -> Result<(), WireError> {
        self.put_bytes(&v.to_le_bytes())
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }
}

/// Reads little-endian fields from a byte buffer, checking bounds.
#[derive(Debug)]
pub struct WireReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> WireReader<'a> {
    pub fn new(buf: &'a [u8]) -> WireReader<'a> {
        WireReader { buf, pos: 0 }
    }

    pub fn get_bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let have = self.buf.len() - self.pos;
        let bytes =
            self.buf
                .get(self.pos..self.pos.saturating_add(n))
                .ok_or(WireError::Truncated {
                    at: self.pos,
                    need: n,
                    have,
                })?;
        self.pos += n;
        Ok(bytes)
    }

    pub fn get_array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.get_bytes(N)?);
        Ok(a)
    }

    pub fn get_u8(&mut self) -> Result<u8, WireError> {
        Ok(self.get_array::<1>()?[0])
    }

    pub fn get_u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.get_array()?))
    }

    pub fn get_u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.get_array()?))
    }

    pub fn get_u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.get_array()?))
    }

    /// A byte that must be 0 or 1.
    pub fn get_bool(&mut self, what: &'static str) -> Result<bool, WireError> {
        match self.get_u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(WireError::Invalid {
                what,
                value: u64::from(v),
            }),
        }
    }

    /// Ends the message: every byte must have been read.
    pub fn finish(self) -> Result<(), WireError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            extra => Err(WireError::Trailing { extra }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_reader_round_trip_and_check_bounds() {
        let mut buf = [0u8; 15];
        let mut w = WireWriter::new(&mut buf);
        w.put_u8(7).expect("ok");
        w.put_u16(0xbeef).expect("ok");
        w.put_u32(0xdead_beef).expect("ok");
        w.put_u64(u64::MAX - 1).expect("ok");
        assert_eq!(w.len(), 15);
        assert_eq!(
            w.put_u8(1),
            Err(WireError::BufferTooSmall {
                at: 15,
                need: 1,
                have: 0
            })
        );
        let mut r = WireReader::new(&buf);
        assert_eq!(r.get_u8().expect("ok"), 7);
        assert_eq!(r.get_u16().expect("ok"), 0xbeef);
        assert_eq!(r.get_u32().expect("ok"), 0xdead_beef);
        assert_eq!(r.get_u64().expect("ok"), u64::MAX - 1);
        assert!(matches!(r.get_u8(), Err(WireError::Truncated { .. })));
        r.finish().expect("ok");

        let mut r = WireReader::new(&buf[..3]);
        assert!(matches!(r.get_u32(), Err(WireError::Truncated { .. })));
        let mut r = WireReader::new(&buf[..3]);
        r.get_u8().expect("ok");
        assert_eq!(r.finish(), Err(WireError::Trailing { extra: 2 }));
        let mut r = WireReader::new(&[2u8]);
        assert!(matches!(
            r.get_bool("flag"),
            Err(WireError::Invalid { what: "flag", .. })
        ));
        // A huge length does not overflow the cursor.
        let mut r = WireReader::new(&buf);
        r.get_u8().expect("ok");
        assert!(r.get_bytes(usize::MAX).is_err());
    }

    #[test]
    fn class_bytes() {
        for c in [Class::Request, Class::Answer] {
            assert_eq!(Class::from_byte(c.to_byte()), Ok(c));
        }
        assert!(Class::from_byte(0).is_err());
        assert!(Class::from_byte(3).is_err());
    }
}
