//! The island kernels' messages as bytes, for the fabric (`crate::fabric::Wire`): every variant of
//! [`IslandMessage`], bounds-checked both ways. A malformed frame is an error, never a panic.

use kvm_bindings::kvm_regs;

use crate::kvm::FxSave;

use super::errno::{ExitStatus, ERRNO_RANGE};
use super::messages::{
    FileCall, FutexCall, IslandMessage, LayoutOp, MmCall, Reply, Request, ThreadImage, ThreadOp,
    REPLY_TYPE, SERVICE_TYPES,
};
use super::signal::SigAction;
use super::vma::{Prot, VmaKind};
use super::wait::Abandon;
use crate::fabric::{
    Class, PageMessage, PageRange, Wire, WireError, WireReader, WireWriter, MAX_ISLANDS,
    RANGE_MAX_ENCODED,
};
use coherency::MessageType;

/// The names of the ranges of coherency messages (`fabric::PageRange`), in the order of the
/// types they carry (the first four of `MessageType::ALL`). A range counts as one message of
/// these types (it is one frame on its link); the pages it carried are counted by the DSM.
pub const RANGE_TYPES: [&str; 4] = [
    "fetch_range",
    "fetch_write_range",
    "copy_range",
    "copy_void_range",
];

const TYPE_COUNT: usize = MessageType::NAMES.len() + SERVICE_TYPES.len() + RANGE_TYPES.len();

/// Message type names: the coherency protocol's, then the kernel services', then the ranges'.
pub const TYPE_NAMES: [&str; TYPE_COUNT] = {
    let mut names = [""; TYPE_COUNT];
    let mut i = 0;
    while i < MessageType::NAMES.len() {
        names[i] = MessageType::NAMES[i];
        i += 1;
    }
    let mut j = 0;
    while j < SERVICE_TYPES.len() {
        names[i + j] = SERVICE_TYPES[j];
        j += 1;
    }
    let mut k = 0;
    while k < RANGE_TYPES.len() {
        names[i + j + k] = RANGE_TYPES[k];
        k += 1;
    }
    names
};

/// The largest encoding of a message other than a range: a Copy (a page and its header); layout
/// pushes are cut to fit (see [`layout_chunks`]).
pub const MAX_ENCODED: usize = 4200;

/// The largest encoding of any message: a range of Copies.
pub const MAX_ENCODED_RANGE: usize = 1 + RANGE_MAX_ENCODED;

/// File paths in layout pushes are informational (`/pages`, reports): cut to this length.
const MAX_PATH: usize = 512;

const TAG_COHERENCY: u8 = 0;
const TAG_REQUEST: u8 = 1;
const TAG_REPLY: u8 = 3;
const TAG_COHERENCY_RANGE: u8 = 4;

fn invalid(what: &'static str, value: u64) -> WireError {
    WireError::Invalid { what, value }
}

impl IslandMessage {
    /// Index in [`TYPE_NAMES`].
    pub fn type_index(&self) -> usize {
        let services = MessageType::NAMES.len();
        match self {
            IslandMessage::Coherency(m) => m.kind.message_type().index(),
            IslandMessage::Request { body, .. } => services + body.type_index(),
            IslandMessage::Reply { .. } => services + REPLY_TYPE,
            IslandMessage::CoherencyRange(r) => {
                services + SERVICE_TYPES.len() + r.message_type().index()
            }
        }
    }
}

impl Wire for IslandMessage {
    const TYPE_NAMES: &'static [&'static str] = &TYPE_NAMES;
    const MAX_ENCODED: usize = MAX_ENCODED_RANGE;

    fn type_index(&self) -> usize {
        IslandMessage::type_index(self)
    }

    /// Every request gets exactly one reply, which returns its credit.
    fn class(&self) -> Class {
        match self {
            IslandMessage::Coherency(m) => m.class(),
            IslandMessage::CoherencyRange(r) => r.class(),
            IslandMessage::Request { .. } => Class::Request,
            IslandMessage::Reply { .. } => Class::Answer,
        }
    }

    /// A range carries several requests (or answers) of the protocol, each with its credit.
    fn weight(&self) -> u8 {
        match self {
            IslandMessage::CoherencyRange(r) => r.weight(),
            _ => 1,
        }
    }

    fn encode(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        match self {
            IslandMessage::Coherency(m) => {
                let (tag, rest) = buf.split_first_mut().ok_or(WireError::BufferTooSmall {
                    at: 0,
                    need: 1,
                    have: 0,
                })?;
                *tag = TAG_COHERENCY;
                Ok(1 + m.encode(rest)?)
            }
            IslandMessage::CoherencyRange(r) => {
                let (tag, rest) = buf.split_first_mut().ok_or(WireError::BufferTooSmall {
                    at: 0,
                    need: 1,
                    have: 0,
                })?;
                *tag = TAG_COHERENCY_RANGE;
                Ok(1 + r.encode(rest)?)
            }
            IslandMessage::Request { id, from, body } => {
                let mut w = WireWriter::new(buf);
                w.put_u8(TAG_REQUEST)?;
                w.put_u64(*id)?;
                put_island(&mut w, *from)?;
                put_request(&mut w, body)?;
                Ok(w.len())
            }
            IslandMessage::Reply { id, body } => {
                let mut w = WireWriter::new(buf);
                w.put_u8(TAG_REPLY)?;
                w.put_u64(*id)?;
                put_reply(&mut w, body)?;
                Ok(w.len())
            }
        }
    }

    fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let (&tag, rest) = buf.split_first().ok_or(WireError::Truncated {
            at: 0,
            need: 1,
            have: 0,
        })?;
        if tag == TAG_COHERENCY {
            return Ok(IslandMessage::Coherency(PageMessage::decode(rest)?));
        }
        if tag == TAG_COHERENCY_RANGE {
            return Ok(IslandMessage::CoherencyRange(PageRange::decode(rest)?));
        }
        let mut r = WireReader::new(rest);
        let msg = match tag {
            TAG_REQUEST => {
                let id = r.get_u64()?;
                let from = get_island(&mut r)?;
                IslandMessage::Request {
                    id,
                    from,
                    body: get_request(&mut r)?,
                }
            }
            TAG_REPLY => {
                let id = r.get_u64()?;
                IslandMessage::Reply {
                    id,
                    body: get_reply(&mut r)?,
                }
            }
            v => return Err(invalid("message tag", u64::from(v))),
        };
        r.finish()?;
        Ok(msg)
    }
}

fn put_island(w: &mut WireWriter<'_>, island: usize) -> Result<(), WireError> {
    if island >= MAX_ISLANDS {
        return Err(invalid("island", island as u64));
    }
    w.put_u8(island as u8)
}

fn get_island(r: &mut WireReader<'_>) -> Result<usize, WireError> {
    let v = usize::from(r.get_u8()?);
    if v >= MAX_ISLANDS {
        return Err(invalid("island", v as u64));
    }
    Ok(v)
}

fn put_status(w: &mut WireWriter<'_>, status: &ExitStatus) -> Result<(), WireError> {
    match status {
        ExitStatus::Code(c) => {
            w.put_u8(0)?;
            w.put_u32(*c as u32)
        }
        ExitStatus::Signal(s) => {
            w.put_u8(1)?;
            w.put_u32(*s as u32)
        }
    }
}

fn get_status(r: &mut WireReader<'_>) -> Result<ExitStatus, WireError> {
    let kind = r.get_u8()?;
    let v = r.get_u32()? as i32;
    Ok(match kind {
        0 => ExitStatus::Code(v),
        1 => ExitStatus::Signal(v),
        k => return Err(invalid("exit status", u64::from(k))),
    })
}

fn put_action(w: &mut WireWriter<'_>, a: &SigAction) -> Result<(), WireError> {
    [a.handler, a.flags, a.restorer, a.mask]
        .iter()
        .try_for_each(|&v| w.put_u64(v))
}

fn get_action(r: &mut WireReader<'_>) -> Result<SigAction, WireError> {
    Ok(SigAction {
        handler: r.get_u64()?,
        flags: r.get_u64()?,
        restorer: r.get_u64()?,
        mask: r.get_u64()?,
    })
}

/// An errno on the wire: [`ERRNO_RANGE`] (1 to 4095, Linux's), as a u16. Both directions
/// accept exactly that range, so that no island sends a frame its peer cannot read (the link
/// sends [`Reply::sendable`] replies, whose errnos are in it).
fn put_errno(w: &mut WireWriter<'_>, e: i32) -> Result<(), WireError> {
    match u16::try_from(e) {
        Ok(v) if ERRNO_RANGE.contains(&e) => w.put_u16(v),
        _ => Err(invalid("errno", e as u64)),
    }
}

fn get_errno(r: &mut WireReader<'_>) -> Result<i32, WireError> {
    let e = i32::from(r.get_u16()?);
    if !ERRNO_RANGE.contains(&e) {
        return Err(invalid("errno", e as u64));
    }
    Ok(e)
}

fn put_reply(w: &mut WireWriter<'_>, body: &Reply) -> Result<(), WireError> {
    match body {
        Reply::Done => w.put_u8(0),
        Reply::Value(Ok(v)) => {
            w.put_u8(1)?;
            w.put_u64(*v)
        }
        Reply::Action(Ok(a)) => {
            w.put_u8(2)?;
            put_action(w, a)
        }
        Reply::Value(Err(e)) => {
            w.put_u8(5)?;
            put_errno(w, *e)
        }
        Reply::Action(Err(e)) => {
            w.put_u8(6)?;
            put_errno(w, *e)
        }
        Reply::Queued => w.put_u8(7),
    }
}

fn get_reply(r: &mut WireReader<'_>) -> Result<Reply, WireError> {
    Ok(match r.get_u8()? {
        0 => Reply::Done,
        1 => Reply::Value(Ok(r.get_u64()?)),
        2 => Reply::Action(Ok(get_action(r)?)),
        5 => Reply::Value(Err(get_errno(r)?)),
        6 => Reply::Action(Err(get_errno(r)?)),
        7 => Reply::Queued,
        v => return Err(invalid("reply", u64::from(v))),
    })
}

fn put_request(w: &mut WireWriter<'_>, body: &Request) -> Result<(), WireError> {
    w.put_u8(body.type_index() as u8)?;
    match body {
        Request::Mm(call) => put_mm(w, call),
        Request::Futex(call) => put_futex(w, call),
        Request::File(call) => {
            w.put_u64(call.nr)?;
            call.args.iter().try_for_each(|&a| w.put_u64(a))
        }
        Request::SigAction { sig, new } => {
            w.put_u64(*sig)?;
            match new {
                None => w.put_u8(0),
                Some(a) => {
                    w.put_u8(1)?;
                    put_action(w, a)
                }
            }
        }
        Request::SignalThread { tid, sig } | Request::PostSignal { tid, sig } => {
            w.put_u32(*tid)?;
            w.put_u32(*sig)
        }
        Request::Locate { tid } => w.put_u32(*tid),
        Request::Clone { tid } => w.put_u32(*tid),
        Request::StartThread(t) | Request::Migrate(t) => put_thread(w, t),
        Request::MoveThread { tid, to } => {
            w.put_u32(*tid)?;
            put_island(w, *to)
        }
        Request::MoveDone { tid, to, at } => {
            w.put_u32(*tid)?;
            put_island(w, *to)?;
            put_island(w, *at)
        }
        Request::ThreadControl { tid, op } => {
            w.put_u32(*tid)?;
            match op {
                ThreadOp::Migrate(to) => {
                    w.put_u8(0)?;
                    put_island(w, *to)
                }
                ThreadOp::Propose(None) => w.put_u8(1),
                ThreadOp::Propose(Some(to)) => {
                    w.put_u8(2)?;
                    put_island(w, *to)
                }
                ThreadOp::Affinity(mask) => {
                    w.put_u8(3)?;
                    w.put_u64(*mask)
                }
            }
        }
        Request::ThreadExited { tid, code } => {
            w.put_u32(*tid)?;
            w.put_u32(*code as u32)
        }
        Request::ExitGroup(status) | Request::Exit(status) => put_status(w, status),
        Request::Complete { request, reply } => {
            if *reply == Reply::Queued {
                return Err(invalid("completion", 7));
            }
            w.put_u64(*request)?;
            put_reply(w, reply)
        }
        Request::Cancel { request, why } => {
            w.put_u64(*request)?;
            w.put_u8(match why {
                Abandon::Interrupted => 0,
                Abandon::TimedOut => 1,
            })
        }
        Request::Layout(ops) => {
            w.put_u16(ops.len() as u16)?;
            ops.iter().try_for_each(|op| put_layout_op(w, op))
        }
        Request::Members { members } => w.put_u64(*members),
    }
}

fn get_request(r: &mut WireReader<'_>) -> Result<Request, WireError> {
    let index = r.get_u8()?;
    Ok(match index {
        0 => Request::Mm(get_mm(r)?),
        1 => Request::Futex(get_futex(r)?),
        2 => {
            let nr = r.get_u64()?;
            let mut args = [0u64; 6];
            for a in &mut args {
                *a = r.get_u64()?;
            }
            Request::File(FileCall { nr, args })
        }
        3 => {
            let sig = r.get_u64()?;
            let new = match r.get_u8()? {
                0 => None,
                1 => Some(get_action(r)?),
                v => return Err(invalid("sigaction", u64::from(v))),
            };
            Request::SigAction { sig, new }
        }
        4 => Request::SignalThread {
            tid: r.get_u32()?,
            sig: r.get_u32()?,
        },
        5 => Request::Locate { tid: r.get_u32()? },
        6 => Request::Clone { tid: r.get_u32()? },
        7 => Request::ThreadExited {
            tid: r.get_u32()?,
            code: r.get_u32()? as i32,
        },
        8 => Request::ExitGroup(get_status(r)?),
        9 => Request::Cancel {
            request: r.get_u64()?,
            why: match r.get_u8()? {
                0 => Abandon::Interrupted,
                1 => Abandon::TimedOut,
                v => return Err(invalid("cancel reason", u64::from(v))),
            },
        },
        10 => {
            let n = r.get_u16()?;
            let ops = (0..n)
                .map(|_| get_layout_op(r))
                .collect::<Result<Vec<_>, _>>()?;
            Request::Layout(ops)
        }
        11 => Request::Members {
            members: r.get_u64()?,
        },
        12 => Request::StartThread(Box::new(get_thread(r)?)),
        13 => Request::PostSignal {
            tid: r.get_u32()?,
            sig: r.get_u32()?,
        },
        14 => Request::Exit(get_status(r)?),
        15 => Request::MoveThread {
            tid: r.get_u32()?,
            to: get_island(r)?,
        },
        16 => Request::MoveDone {
            tid: r.get_u32()?,
            to: get_island(r)?,
            at: get_island(r)?,
        },
        17 => {
            let tid = r.get_u32()?;
            let op = match r.get_u8()? {
                0 => ThreadOp::Migrate(get_island(r)?),
                1 => ThreadOp::Propose(None),
                2 => ThreadOp::Propose(Some(get_island(r)?)),
                3 => ThreadOp::Affinity(r.get_u64()?),
                v => return Err(invalid("thread operation", u64::from(v))),
            };
            Request::ThreadControl { tid, op }
        }
        18 => Request::Migrate(Box::new(get_thread(r)?)),
        19 => {
            let request = r.get_u64()?;
            let reply = get_reply(r)?;
            if reply == Reply::Queued {
                return Err(invalid("completion", 7));
            }
            Request::Complete { request, reply }
        }
        v => return Err(invalid("request type", u64::from(v))),
    })
}

fn put_mm(w: &mut WireWriter<'_>, call: &MmCall) -> Result<(), WireError> {
    let (tag, args): (u8, [u64; 6]) = match *call {
        MmCall::Brk(want) => (0, [want, 0, 0, 0, 0, 0]),
        MmCall::Mmap {
            addr,
            len,
            prot,
            flags,
            fd,
            off,
        } => (1, [addr, len, prot, flags, fd, off]),
        MmCall::Munmap { addr, len } => (2, [addr, len, 0, 0, 0, 0]),
        MmCall::Mprotect { addr, len, prot } => (3, [addr, len, prot, 0, 0, 0]),
        MmCall::Madvise { addr, len, advice } => (4, [addr, len, advice, 0, 0, 0]),
        MmCall::Mremap {
            old,
            old_len,
            new_len,
            flags,
            new_addr,
        } => (5, [old, old_len, new_len, flags, new_addr, 0]),
    };
    w.put_u8(tag)?;
    args.iter().try_for_each(|&a| w.put_u64(a))
}

fn get_mm(r: &mut WireReader<'_>) -> Result<MmCall, WireError> {
    let tag = r.get_u8()?;
    let mut a = [0u64; 6];
    for x in &mut a {
        *x = r.get_u64()?;
    }
    Ok(match tag {
        0 => MmCall::Brk(a[0]),
        1 => MmCall::Mmap {
            addr: a[0],
            len: a[1],
            prot: a[2],
            flags: a[3],
            fd: a[4],
            off: a[5],
        },
        2 => MmCall::Munmap {
            addr: a[0],
            len: a[1],
        },
        3 => MmCall::Mprotect {
            addr: a[0],
            len: a[1],
            prot: a[2],
        },
        4 => MmCall::Madvise {
            addr: a[0],
            len: a[1],
            advice: a[2],
        },
        5 => MmCall::Mremap {
            old: a[0],
            old_len: a[1],
            new_len: a[2],
            flags: a[3],
            new_addr: a[4],
        },
        v => return Err(invalid("memory call", u64::from(v))),
    })
}

fn put_futex(w: &mut WireWriter<'_>, call: &FutexCall) -> Result<(), WireError> {
    match *call {
        FutexCall::Wait { addr, val, bitset } => {
            w.put_u8(0)?;
            w.put_u64(addr)?;
            w.put_u32(val)?;
            w.put_u32(bitset)
        }
        FutexCall::Wake { addr, n, bitset } => {
            w.put_u8(1)?;
            w.put_u64(addr)?;
            w.put_u32(n)?;
            w.put_u32(bitset)
        }
        FutexCall::Requeue {
            addr,
            addr2,
            n_wake,
            n_requeue,
            check,
        } => {
            w.put_u8(2)?;
            w.put_u64(addr)?;
            w.put_u64(addr2)?;
            w.put_u32(n_wake)?;
            w.put_u32(n_requeue)?;
            w.put_u8(u8::from(check.is_some()))?;
            w.put_u32(check.unwrap_or(0))
        }
        FutexCall::WakeOp {
            addr,
            addr2,
            n,
            n2,
            encoded,
        } => {
            w.put_u8(3)?;
            w.put_u64(addr)?;
            w.put_u64(addr2)?;
            w.put_u32(n)?;
            w.put_u32(n2)?;
            w.put_u32(encoded)
        }
    }
}

fn get_flag(r: &mut WireReader<'_>) -> Result<bool, WireError> {
    match r.get_u8()? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(invalid("flag", u64::from(v))),
    }
}

fn get_futex(r: &mut WireReader<'_>) -> Result<FutexCall, WireError> {
    Ok(match r.get_u8()? {
        0 => FutexCall::Wait {
            addr: r.get_u64()?,
            val: r.get_u32()?,
            bitset: r.get_u32()?,
        },
        1 => FutexCall::Wake {
            addr: r.get_u64()?,
            n: r.get_u32()?,
            bitset: r.get_u32()?,
        },
        2 => {
            let addr = r.get_u64()?;
            let addr2 = r.get_u64()?;
            let n_wake = r.get_u32()?;
            let n_requeue = r.get_u32()?;
            let has = get_flag(r)?;
            let v = r.get_u32()?;
            FutexCall::Requeue {
                addr,
                addr2,
                n_wake,
                n_requeue,
                check: has.then_some(v),
            }
        }
        3 => FutexCall::WakeOp {
            addr: r.get_u64()?,
            addr2: r.get_u64()?,
            n: r.get_u32()?,
            n2: r.get_u32()?,
            encoded: r.get_u32()?,
        },
        v => return Err(invalid("futex operation", u64::from(v))),
    })
}

fn put_kind(w: &mut WireWriter<'_>, kind: &VmaKind) -> Result<(), WireError> {
    match kind {
        VmaKind::Elf => w.put_u8(0),
        VmaKind::ElfCode => w.put_u8(1),
        VmaKind::Heap => w.put_u8(2),
        VmaKind::Stack => w.put_u8(3),
        VmaKind::Anon => w.put_u8(4),
        VmaKind::Reserved => w.put_u8(5),
        VmaKind::Shared => w.put_u8(7),
        VmaKind::File { path, delta } => {
            w.put_u8(6)?;
            w.put_u64(*delta)?;
            let bytes = path.as_bytes();
            let mut n = bytes.len().min(MAX_PATH);
            while !path.is_char_boundary(n) {
                n -= 1;
            }
            w.put_u16(n as u16)?;
            w.put_bytes(&bytes[..n])
        }
    }
}

fn get_kind(r: &mut WireReader<'_>) -> Result<VmaKind, WireError> {
    Ok(match r.get_u8()? {
        0 => VmaKind::Elf,
        1 => VmaKind::ElfCode,
        2 => VmaKind::Heap,
        3 => VmaKind::Stack,
        4 => VmaKind::Anon,
        5 => VmaKind::Reserved,
        7 => VmaKind::Shared,
        6 => {
            let delta = r.get_u64()?;
            let n = r.get_u16()? as usize;
            let bytes = r.get_bytes(n)?;
            VmaKind::File {
                path: String::from_utf8_lossy(bytes).into_owned(),
                delta,
            }
        }
        v => return Err(invalid("mapping kind", u64::from(v))),
    })
}

fn put_layout_op(w: &mut WireWriter<'_>, op: &LayoutOp) -> Result<(), WireError> {
    match op {
        LayoutOp::Map {
            start,
            len,
            prot,
            kind,
            gen,
        } => {
            w.put_u8(0)?;
            w.put_u64(*start)?;
            w.put_u64(*len)?;
            w.put_u32(prot.0)?;
            w.put_u32(*gen)?;
            put_kind(w, kind)
        }
        LayoutOp::Unmap { start, len, gen } => {
            w.put_u8(1)?;
            w.put_u64(*start)?;
            w.put_u64(*len)?;
            w.put_u32(*gen)
        }
        LayoutOp::Discard { start, len, gen } => {
            w.put_u8(3)?;
            w.put_u64(*start)?;
            w.put_u64(*len)?;
            w.put_u32(*gen)
        }
        LayoutOp::Protect { start, len, prot } => {
            w.put_u8(2)?;
            w.put_u64(*start)?;
            w.put_u64(*len)?;
            w.put_u32(prot.0)
        }
    }
}

fn get_layout_op(r: &mut WireReader<'_>) -> Result<LayoutOp, WireError> {
    Ok(match r.get_u8()? {
        0 => LayoutOp::Map {
            start: r.get_u64()?,
            len: r.get_u64()?,
            prot: Prot(r.get_u32()?),
            gen: r.get_u32()?,
            kind: get_kind(r)?,
        },
        1 => LayoutOp::Unmap {
            start: r.get_u64()?,
            len: r.get_u64()?,
            gen: r.get_u32()?,
        },
        3 => LayoutOp::Discard {
            start: r.get_u64()?,
            len: r.get_u64()?,
            gen: r.get_u32()?,
        },
        2 => LayoutOp::Protect {
            start: r.get_u64()?,
            len: r.get_u64()?,
            prot: Prot(r.get_u32()?),
        },
        v => return Err(invalid("layout change", u64::from(v))),
    })
}

/// Bytes one layout change takes on the wire.
fn layout_op_size(op: &LayoutOp) -> usize {
    match op {
        LayoutOp::Map {
            kind: VmaKind::File { path, .. },
            ..
        } => 1 + 8 + 8 + 4 + 4 + 1 + 8 + 2 + path.len().min(MAX_PATH),
        LayoutOp::Map { .. } => 1 + 8 + 8 + 4 + 4 + 1,
        LayoutOp::Unmap { .. } | LayoutOp::Discard { .. } => 1 + 8 + 8 + 4,
        LayoutOp::Protect { .. } => 1 + 8 + 8 + 4,
    }
}

/// Cuts a list of layout changes into pushes that each fit one message, in order.
pub fn layout_chunks(ops: Vec<LayoutOp>) -> Vec<Vec<LayoutOp>> {
    // Room for the message, request and count headers.
    const BUDGET: usize = MAX_ENCODED - 32;
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for op in ops {
        let s = layout_op_size(&op);
        if size + s > BUDGET && !current.is_empty() {
            chunks.push(std::mem::take(&mut current));
            size = 0;
        }
        size += s;
        current.push(op);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

const REG_COUNT: usize = 18;

fn regs_array(r: &kvm_regs) -> [u64; REG_COUNT] {
    [
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15, r.rip, r.rflags,
    ]
}

fn regs_from(a: [u64; REG_COUNT]) -> kvm_regs {
    kvm_regs {
        rax: a[0],
        rbx: a[1],
        rcx: a[2],
        rdx: a[3],
        rsi: a[4],
        rdi: a[5],
        rsp: a[6],
        rbp: a[7],
        r8: a[8],
        r9: a[9],
        r10: a[10],
        r11: a[11],
        r12: a[12],
        r13: a[13],
        r14: a[14],
        r15: a[15],
        rip: a[16],
        rflags: a[17],
    }
}

fn put_fpu(w: &mut WireWriter<'_>, f: &FxSave) -> Result<(), WireError> {
    w.put_bytes(&f.0)
}

fn get_fpu(r: &mut WireReader<'_>) -> Result<FxSave, WireError> {
    Ok(FxSave(r.get_array()?))
}

fn put_thread(w: &mut WireWriter<'_>, t: &ThreadImage) -> Result<(), WireError> {
    w.put_u32(t.tid)?;
    regs_array(&t.regs).iter().try_for_each(|&v| w.put_u64(v))?;
    w.put_u64(t.fs_base)?;
    w.put_u64(t.gs_base)?;
    put_fpu(w, &t.fpu)?;
    w.put_u64(t.sigmask)?;
    w.put_u64(t.pending)?;
    w.put_u64(t.altstack.0)?;
    w.put_u32(t.altstack.1)?;
    w.put_u64(t.altstack.2)?;
    w.put_u64(t.clear_child_tid)?;
    w.put_u64(t.robust_list)?;
    w.put_u64(t.affinity)?;
    match t.proposed {
        None => w.put_u8(0)?,
        Some(i) => {
            w.put_u8(1)?;
            put_island(w, i)?;
        }
    }
    w.put_u32(t.migrations)?;
    w.put_u64(t.departed_ns)
}

fn get_thread(r: &mut WireReader<'_>) -> Result<ThreadImage, WireError> {
    let tid = r.get_u32()?;
    let mut a = [0u64; REG_COUNT];
    for x in &mut a {
        *x = r.get_u64()?;
    }
    Ok(ThreadImage {
        tid,
        regs: regs_from(a),
        fs_base: r.get_u64()?,
        gs_base: r.get_u64()?,
        fpu: get_fpu(r)?,
        sigmask: r.get_u64()?,
        pending: r.get_u64()?,
        altstack: (r.get_u64()?, r.get_u32()?, r.get_u64()?),
        clear_child_tid: r.get_u64()?,
        robust_list: r.get_u64()?,
        affinity: r.get_u64()?,
        proposed: match r.get_u8()? {
            0 => None,
            1 => Some(get_island(r)?),
            v => return Err(invalid("proposed island", u64::from(v))),
        },
        migrations: r.get_u32()?,
        departed_ns: r.get_u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::PAGE_MESSAGE_TYPES;
    use coherency::{KernelSet, Message, MessageKind};

    fn round_trip(m: IslandMessage) -> IslandMessage {
        let mut buf = vec![0u8; MAX_ENCODED_RANGE];
        let n = m.encode(&mut buf).expect("encode");
        assert!(n <= MAX_ENCODED_RANGE);
        assert!(n <= MAX_ENCODED || matches!(m, IslandMessage::CoherencyRange(_)));
        let back = IslandMessage::decode(&buf[..n]).expect("decode");
        // Every shorter frame is refused, not misread.
        for cut in 0..n {
            assert!(
                IslandMessage::decode(&buf[..cut]).is_err(),
                "cut at {cut} of {n}"
            );
        }
        back
    }

    fn samples() -> Vec<IslandMessage> {
        let mut fpu = FxSave::fresh();
        fpu.0[160 + 3 * 16..160 + 4 * 16].copy_from_slice(&[7; 16]);
        let regs = kvm_regs {
            rip: 0x401000,
            rsp: 0x7fff0000,
            rflags: 0x202,
            r15: 15,
            ..Default::default()
        };
        let copy = |page: u64| Message {
            page,
            from: 1,
            gen: 2,
            kind: MessageKind::Copy {
                data: crate::fabric::PageBuf::from_slice(&[page as u8; 4096]).expect("page"),
                version: page as u32,
            },
            users: KernelSet(0b11),
        };
        let fetch = |page: u64| Message {
            page,
            from: 0,
            gen: 0,
            kind: MessageKind::Fetch,
            users: KernelSet(0b1),
        };
        let ranges = [
            IslandMessage::CoherencyRange(PageRange::new(vec![copy(7), copy(8)]).expect("range")),
            IslandMessage::CoherencyRange(
                PageRange::new((100..103).map(fetch).collect()).expect("range"),
            ),
        ];
        let mut samples = vec![
            IslandMessage::Coherency(Message {
                page: 42,
                from: 3,
                gen: 5,
                kind: MessageKind::Invalid { ts: 99, version: 7 },
                users: KernelSet(0b1011),
            }),
            IslandMessage::Request {
                id: 7,
                from: 2,
                body: Request::Mm(MmCall::Mmap {
                    addr: 0,
                    len: 8192,
                    prot: 3,
                    flags: 0x22,
                    fd: u64::MAX,
                    off: 0,
                }),
            },
            IslandMessage::Request {
                id: 8,
                from: 1,
                body: Request::Futex(FutexCall::Wait {
                    addr: 0x1000,
                    val: 5,
                    bitset: u32::MAX,
                }),
            },
            IslandMessage::Request {
                id: 9,
                from: 0,
                body: Request::Futex(FutexCall::Requeue {
                    addr: 1,
                    addr2: 2,
                    n_wake: 1,
                    n_requeue: 9,
                    check: None,
                }),
            },
            IslandMessage::Request {
                id: 10,
                from: 0,
                body: Request::Layout(vec![
                    LayoutOp::Map {
                        start: 0x10000,
                        len: 0x2000,
                        prot: Prot::RW,
                        kind: VmaKind::file("/data/poem.txt".into(), 0x10000, 0x3000),
                        gen: 0,
                    },
                    LayoutOp::Protect {
                        start: 0x10000,
                        len: 0x1000,
                        prot: Prot::R,
                    },
                    LayoutOp::Unmap {
                        start: 0x11000,
                        len: 0x1000,
                        gen: 7,
                    },
                    LayoutOp::Discard {
                        start: 0x12000,
                        len: 0x3000,
                        gen: u32::MAX,
                    },
                    LayoutOp::Map {
                        start: 0x20000,
                        len: 0x1000,
                        prot: Prot::R,
                        kind: VmaKind::Anon,
                        gen: 0x1234_5678,
                    },
                ]),
            },
            IslandMessage::Request {
                id: 11,
                from: 1,
                body: Request::StartThread(Box::new(ThreadImage {
                    sigmask: 1 << 9,
                    clear_child_tid: 0x4ad650,
                    ..ThreadImage::new(1234, regs, 0x4ad380, fpu)
                })),
            },
            IslandMessage::Request {
                id: 13,
                from: 1,
                body: Request::Cancel {
                    request: 8,
                    why: Abandon::TimedOut,
                },
            },
            IslandMessage::Request {
                id: 15,
                from: 3,
                body: Request::File(FileCall {
                    nr: 1,
                    args: [1, 0x4000, 12, 0, 0, 0],
                }),
            },
            IslandMessage::Request {
                id: 16,
                from: 2,
                body: Request::SigAction {
                    sig: 10,
                    new: Some(SigAction {
                        handler: 0x401234,
                        flags: 0x0400_0000,
                        restorer: 0x401000,
                        mask: 1 << 9,
                    }),
                },
            },
            IslandMessage::Request {
                id: 17,
                from: 2,
                body: Request::SignalThread { tid: 77, sig: 10 },
            },
            IslandMessage::Request {
                id: 18,
                from: 1,
                body: Request::ThreadExited { tid: 77, code: 3 },
            },
            IslandMessage::Request {
                id: 19,
                from: 1,
                body: Request::ExitGroup(ExitStatus::Code(2)),
            },
            IslandMessage::Request {
                id: 20,
                from: 1,
                body: Request::Locate { tid: 9 },
            },
            IslandMessage::Request {
                id: 14,
                from: 0,
                body: Request::Exit(ExitStatus::Signal(11)),
            },
            IslandMessage::Request {
                id: 12,
                from: 0,
                body: Request::Members { members: 0b111 },
            },
            IslandMessage::Reply {
                id: 7,
                body: Reply::Value(Err(12)),
            },
            IslandMessage::Reply {
                id: 8,
                body: Reply::Value(Ok(0x7fff_0000)),
            },
            IslandMessage::Request {
                id: 21,
                from: 3,
                body: Request::Clone { tid: 4242 },
            },
            IslandMessage::Request {
                id: 22,
                from: 2,
                body: Request::Migrate(Box::new(ThreadImage {
                    gs_base: 0x77,
                    pending: 1 << 11,
                    altstack: (0x7000_0000, 0, 8192),
                    robust_list: 0x4ad6e0,
                    affinity: 0b1010,
                    proposed: Some(3),
                    migrations: 5,
                    ..ThreadImage::new(77, regs, 0x4ad380, fpu)
                })),
            },
            IslandMessage::Request {
                id: 23,
                from: 2,
                body: Request::MoveThread { tid: 77, to: 3 },
            },
            IslandMessage::Request {
                id: 24,
                from: 3,
                body: Request::MoveDone {
                    tid: 77,
                    to: 3,
                    at: 3,
                },
            },
            IslandMessage::Request {
                id: 25,
                from: 0,
                body: Request::ThreadControl {
                    tid: 77,
                    op: ThreadOp::Migrate(1),
                },
            },
            IslandMessage::Request {
                id: 26,
                from: 0,
                body: Request::ThreadControl {
                    tid: 77,
                    op: ThreadOp::Propose(None),
                },
            },
            IslandMessage::Request {
                id: 27,
                from: 1,
                body: Request::ThreadControl {
                    tid: 77,
                    op: ThreadOp::Affinity(0b1100),
                },
            },
            IslandMessage::Reply {
                id: 12,
                body: Reply::Action(Ok(SigAction::default())),
            },
            IslandMessage::Reply {
                id: 13,
                body: Reply::Queued,
            },
            IslandMessage::Request {
                id: 28,
                from: 0,
                body: Request::Complete {
                    request: 13,
                    reply: Reply::Value(Err(4)),
                },
            },
            IslandMessage::Reply {
                id: 9,
                body: Reply::Done,
            },
        ];
        samples.extend(ranges);
        samples
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let back = round_trip(m.clone());
            assert_eq!(format!("{m:?}"), format!("{back:?}"));
            assert_eq!(m.type_index(), back.type_index());
            assert!(m.type_index() < TYPE_NAMES.len());
        }
    }

    #[test]
    fn thread_state_survives() {
        let Some(IslandMessage::Request {
            body: Request::StartThread(t),
            ..
        }) = samples().into_iter().nth(5).map(round_trip)
        else {
            panic!("sample 5 is a thread start");
        };
        assert_eq!(t.regs.rip, 0x401000);
        assert_eq!(t.regs.r15, 15);
        assert_eq!(t.fpu.fcw(), 0x37f);
        assert_eq!(t.fpu.xmm(3), [7; 16]);
        assert_eq!(t.fpu.mxcsr(), 0x1f80);
        let migrating = samples()
            .into_iter()
            .map(round_trip)
            .find_map(|m| match m {
                IslandMessage::Request {
                    body: Request::Migrate(t),
                    ..
                } => Some(t),
                _ => None,
            })
            .expect("a migration sample");
        assert_eq!(
            (
                migrating.gs_base,
                migrating.pending,
                migrating.altstack,
                migrating.robust_list,
                migrating.affinity,
                migrating.proposed,
                migrating.migrations
            ),
            (
                0x77,
                1 << 11,
                (0x7000_0000, 0, 8192),
                0x4ad6e0,
                0b1010,
                Some(3),
                5
            )
        );
        assert_eq!(migrating.fpu.xmm(3), [7; 16]);
    }

    #[test]
    fn coherency_names_are_the_fabrics() {
        assert_eq!(
            &TYPE_NAMES[..PAGE_MESSAGE_TYPES.len()],
            &PAGE_MESSAGE_TYPES[..]
        );
        let services = PAGE_MESSAGE_TYPES.len() + SERVICE_TYPES.len();
        assert_eq!(
            &TYPE_NAMES[PAGE_MESSAGE_TYPES.len()..services],
            &SERVICE_TYPES[..]
        );
        assert_eq!(&TYPE_NAMES[services..], &RANGE_TYPES[..]);
        for (i, name) in RANGE_TYPES.iter().enumerate() {
            assert_eq!(*name, format!("{}_range", MessageType::ALL[i].name()));
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(IslandMessage::decode(&[]).is_err());
        assert!(IslandMessage::decode(&[9]).is_err());
        assert!(IslandMessage::decode(&[TAG_REQUEST, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200]).is_err());
        // An island number out of range, and an errno out of Linux's range.
        assert!(
            IslandMessage::decode(&[TAG_REQUEST, 0, 0, 0, 0, 0, 0, 0, 0, 64, 5, 1, 0, 0, 0])
                .is_err()
        );
        assert!(IslandMessage::decode(&[TAG_REPLY, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0]).is_err());
        let mut rng = 12345u64;
        for _ in 0..2000 {
            let len = (rng % 200) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect();
            let _ = IslandMessage::decode(&bytes);
        }
    }

    #[test]
    fn both_sides_take_the_same_errnos() {
        // Regression: put_errno wrote 0 and errnos of 4096 and above, which get_errno refuses (a
        // frame the peer could not read). Now both take exactly ERRNO_RANGE.
        let mut buf = vec![0u8; MAX_ENCODED];
        let errnos = (-70_000..70_000).chain([i32::MIN, i32::MIN + 1, i32::MAX]);
        for e in errnos {
            for body in [Reply::Value(Err(e)), Reply::Action(Err(e))] {
                let sent = IslandMessage::Reply { id: 9, body }.encode(&mut buf);
                assert_eq!(sent.is_ok(), ERRNO_RANGE.contains(&e), "encode errno {e}");
                if let Ok(n) = sent {
                    match IslandMessage::decode(&buf[..n]) {
                        Ok(IslandMessage::Reply { id: 9, body: back }) => assert_eq!(back, body),
                        other => panic!("errno {e}: {other:?}"),
                    }
                }
                // What the link sends instead: always encodable, EIO for an errno out of range.
                let fixed = body.sendable();
                let n = IslandMessage::Reply { id: 9, body: fixed }
                    .encode(&mut buf)
                    .unwrap_or_else(|err| panic!("errno {e} made sendable: {err}"));
                assert!(n > 0);
                let want = if ERRNO_RANGE.contains(&e) {
                    e
                } else {
                    libc::EIO
                };
                assert!(
                    matches!(fixed, Reply::Value(Err(x)) | Reply::Action(Err(x)) if x == want),
                    "{e}: {fixed:?}"
                );
            }
        }
        // Every errno the wire can hold, decoded: accepted exactly when encode accepts it.
        for raw in 0..=u16::MAX {
            for kind in [5u8, 6] {
                let mut frame = vec![TAG_REPLY];
                frame.extend_from_slice(&9u64.to_le_bytes());
                frame.push(kind);
                frame.extend_from_slice(&raw.to_le_bytes());
                assert_eq!(
                    IslandMessage::decode(&frame).is_ok(),
                    ERRNO_RANGE.contains(&i32::from(raw)),
                    "decode errno {raw} (reply kind {kind})"
                );
            }
        }
    }

    #[test]
    fn long_layouts_are_cut_to_fit() {
        let ops: Vec<LayoutOp> = (0..500)
            .map(|i| LayoutOp::Map {
                start: i * 0x1000,
                len: 0x1000,
                prot: Prot::RW,
                kind: VmaKind::file("x".repeat(600), i * 0x1000, 0),
                gen: 3,
            })
            .collect();
        let chunks = layout_chunks(ops.clone());
        assert!(chunks.len() > 1);
        assert_eq!(chunks.concat(), ops);
        for c in chunks {
            let m = IslandMessage::Request {
                id: 1,
                from: 0,
                body: Request::Layout(c),
            };
            let mut buf = vec![0u8; MAX_ENCODED];
            assert!(m.encode(&mut buf).is_ok());
        }
    }
}
