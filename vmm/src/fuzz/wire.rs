//! The island messages on the wire (`kernel/wire.rs`, `fabric/page.rs`): any bytes through
//! `decode` (an error or a message whose encoding is exactly those bytes: one encoding per
//! message), and arbitrary messages through `encode` and back (`decode(encode(x)) == x`, every
//! shorter frame refused, and `encode` refuses only what `decode` would).

use arbitrary::{Result as Arb, Unstructured};
use coherency::{KernelSet, Message, MessageKind, Voter, MAX_KERNELS};
use kvm_bindings::kvm_regs;

use crate::fabric::{PageBuf, PageMessage, PageRange, Wire, WireError, MAX_ISLANDS, MAX_RANGE};
use crate::kernel::errno::{ExitStatus, ERRNO_RANGE};
use crate::kernel::messages::{
    FileCall, FutexCall, IslandMessage, LayoutOp, MmCall, Reply, Request, ThreadImage, ThreadOp,
};
use crate::kernel::signal::SigAction;
use crate::kernel::vma::{Prot, VmaKind};
use crate::kernel::wait::Abandon;
use crate::kernel::wire::{self as kwire, TYPE_NAMES};
use crate::kvm::FxSave;

pub const DICT: &[&[u8]] = &[
    b"\x00",
    b"\x01",
    b"\x03",
    b"\x0a\x00",
    b"\x3f",
    b"\x40",
    b"\xff\xff",
    b"\x00\x10\x00\x00",
];

/// Seeds: the encodings of one message of every kind.
pub fn island_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..64u8 {
        // Deterministic "arbitrary" bytes that steer the generator through its choices.
        let bytes: Vec<u8> = (0..600u32)
            .map(|k| (k as u8).wrapping_mul(31).wrapping_add(i.wrapping_mul(17)) ^ i)
            .collect();
        let mut u = Unstructured::new(&bytes);
        if let Ok(m) = island_message(&mut u) {
            let mut buf = vec![0u8; kwire::MAX_ENCODED_RANGE];
            if let Ok(n) = m.encode(&mut buf) {
                out.push(buf[..n].to_vec());
            }
        }
    }
    out
}

/// Seeds: the encodings of ranges of every kind.
pub fn range_seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = island_seeds()
        .into_iter()
        .filter(|b| b.first() == Some(&4))
        .map(|b| b[1..].to_vec())
        .collect();
    for i in 0..16u8 {
        let bytes: Vec<u8> = (0..300u32)
            .map(|k| (k as u8).wrapping_mul(13).wrapping_add(i.wrapping_mul(29)) ^ i)
            .collect();
        if let Ok(r) = page_range(&mut Unstructured::new(&bytes)) {
            let mut buf = vec![0u8; crate::fabric::RANGE_MAX_ENCODED];
            if let Ok(n) = r.encode(&mut buf) {
                out.push(buf[..n].to_vec());
            }
        }
    }
    out
}

pub fn page_seeds() -> Vec<Vec<u8>> {
    island_seeds()
        .into_iter()
        .filter(|b| b.first() == Some(&0))
        .map(|b| b[1..].to_vec())
        .collect()
}

fn island(u: &mut Unstructured<'_>) -> Arb<usize> {
    // Mostly valid, sometimes not (encode must refuse those).
    Ok(if u.ratio(1, 32)? {
        u.int_in_range(MAX_ISLANDS..=255)?
    } else {
        u.int_in_range(0..=MAX_ISLANDS - 1)?
    })
}

fn errno(u: &mut Unstructured<'_>) -> Arb<i32> {
    Ok(if u.ratio(1, 32)? {
        u.arbitrary()?
    } else {
        u.int_in_range(1..=4095)?
    })
}

fn page_message(u: &mut Unstructured<'_>) -> Arb<PageMessage> {
    let voter = |u: &mut Unstructured<'_>| -> Arb<Voter> {
        Ok(*u.choose(&[Voter::Idle, Voter::Invalidating, Voter::Refetching])?)
    };
    let kind = match u.int_in_range(0..=7)? {
        7 => MessageKind::Reset,
        0 => MessageKind::Fetch,
        1 => MessageKind::FetchWrite,
        2 => {
            let mut data = PageBuf::zeroed();
            let n = u.int_in_range(0..=64)?;
            let fill = u.bytes(n)?;
            for (i, b) in data.as_bytes_mut().iter_mut().enumerate() {
                *b = fill.get(i % n.max(1)).copied().unwrap_or(0);
            }
            MessageKind::Copy {
                data,
                version: u.arbitrary()?,
            }
        }
        3 => MessageKind::CopyVoid {
            fetching: u.arbitrary()?,
        },
        4 => MessageKind::Invalid {
            ts: u.arbitrary()?,
            version: u.arbitrary()?,
        },
        5 => MessageKind::Ack { voter: voter(u)? },
        _ => MessageKind::Nack { voter: voter(u)? },
    };
    Ok(Message {
        page: u.arbitrary()?,
        from: if u.ratio(1, 32)? {
            u.arbitrary()?
        } else {
            u.int_in_range(0..=MAX_KERNELS as u8 - 1)?
        },
        kind,
        users: KernelSet(u.arbitrary()?),
        gen: u.arbitrary()?,
    })
}

/// A range of 1 to 4 consecutive page messages (sometimes up to 32) of a kind ranges carry,
/// sometimes from a sender `encode` must refuse.
fn page_range(u: &mut Unstructured<'_>) -> Arb<PageRange> {
    let count = if u.ratio(1, 16)? {
        u.int_in_range(1..=MAX_RANGE)?
    } else {
        u.int_in_range(1..=4)?
    };
    let mut head = page_message(u)?;
    if !crate::fabric::range_carries(&head.kind) {
        head.kind = MessageKind::Fetch;
    }
    // Mostly pages anywhere in the address space, sometimes at its very end.
    let last = u64::MAX / 4096;
    head.page = if u.ratio(1, 8)? {
        last + 1 - count as u64
    } else {
        head.page % (last + 2 - count as u64)
    };
    let mut msgs = vec![head];
    for _ in 1..count {
        let prev = &msgs[msgs.len() - 1];
        let kind = match &prev.kind {
            MessageKind::Copy { data, .. } => {
                let mut data = data.clone();
                data.as_bytes_mut()[0] = u.arbitrary()?;
                MessageKind::Copy {
                    data,
                    version: u.arbitrary()?,
                }
            }
            k => k.clone(),
        };
        msgs.push(Message {
            page: prev.page + 1,
            kind,
            ..prev.clone()
        });
    }
    PageRange::new(msgs).map_err(|_| arbitrary::Error::IncorrectFormat)
}

fn action(u: &mut Unstructured<'_>) -> Arb<SigAction> {
    Ok(SigAction {
        handler: u.arbitrary()?,
        flags: u.arbitrary()?,
        restorer: u.arbitrary()?,
        mask: u.arbitrary()?,
    })
}

fn reply(u: &mut Unstructured<'_>) -> Arb<Reply> {
    Ok(match u.int_in_range(0..=5)? {
        0 => Reply::Done,
        1 => Reply::Value(Ok(u.arbitrary()?)),
        2 => Reply::Value(Err(errno(u)?)),
        3 => Reply::Action(Ok(action(u)?)),
        4 => Reply::Action(Err(errno(u)?)),
        _ => Reply::Queued,
    })
}

fn status(u: &mut Unstructured<'_>) -> Arb<ExitStatus> {
    Ok(if u.arbitrary()? {
        ExitStatus::Code(u.arbitrary()?)
    } else {
        ExitStatus::Signal(u.arbitrary()?)
    })
}

fn path(u: &mut Unstructured<'_>) -> Arb<String> {
    let most = if u.ratio(1, 16)? { 700 } else { 40 };
    let n = u.int_in_range(0..=most)?;
    let mut s = String::new();
    for _ in 0..n {
        let c: char = if u.ratio(1, 8)? {
            u.arbitrary()?
        } else {
            char::from(u.int_in_range(b' '..=b'~')?)
        };
        s.push(c);
    }
    Ok(s)
}

fn layout_op(u: &mut Unstructured<'_>) -> Arb<LayoutOp> {
    Ok(match u.int_in_range(0..=3)? {
        0 => LayoutOp::Map {
            start: u.arbitrary()?,
            len: u.arbitrary()?,
            prot: Prot(u.arbitrary()?),
            gen: u.arbitrary()?,
            kind: match u.int_in_range(0..=7)? {
                0 => VmaKind::Elf,
                1 => VmaKind::ElfCode,
                2 => VmaKind::Heap,
                3 => VmaKind::Stack,
                4 => VmaKind::Anon,
                5 => VmaKind::Reserved,
                6 => VmaKind::Shared,
                _ => VmaKind::File {
                    path: path(u)?,
                    delta: u.arbitrary()?,
                },
            },
        },
        1 => LayoutOp::Unmap {
            start: u.arbitrary()?,
            len: u.arbitrary()?,
            gen: u.arbitrary()?,
        },
        3 => LayoutOp::Discard {
            start: u.arbitrary()?,
            len: u.arbitrary()?,
            gen: u.arbitrary()?,
        },
        _ => LayoutOp::Protect {
            start: u.arbitrary()?,
            len: u.arbitrary()?,
            prot: Prot(u.arbitrary()?),
        },
    })
}

fn thread(u: &mut Unstructured<'_>) -> Arb<Box<ThreadImage>> {
    let mut r = [0u64; 18];
    for x in &mut r {
        *x = u.arbitrary()?;
    }
    let regs = kvm_regs {
        rax: r[0],
        rbx: r[1],
        rcx: r[2],
        rdx: r[3],
        rsi: r[4],
        rdi: r[5],
        rsp: r[6],
        rbp: r[7],
        r8: r[8],
        r9: r[9],
        r10: r[10],
        r11: r[11],
        r12: r[12],
        r13: r[13],
        r14: r[14],
        r15: r[15],
        rip: r[16],
        rflags: r[17],
    };
    let mut fpu = FxSave::fresh();
    let n = u.int_in_range(0..=32)?;
    let at = u.int_in_range(0..=FxSave::SIZE - 32)?;
    fpu.0[at..at + n].copy_from_slice(u.bytes(n)?);
    Ok(Box::new(ThreadImage {
        tid: u.arbitrary()?,
        regs,
        fs_base: u.arbitrary()?,
        gs_base: u.arbitrary()?,
        fpu,
        sigmask: u.arbitrary()?,
        pending: u.arbitrary()?,
        altstack: (u.arbitrary()?, u.arbitrary()?, u.arbitrary()?),
        clear_child_tid: u.arbitrary()?,
        robust_list: u.arbitrary()?,
        affinity: u.arbitrary()?,
        proposed: if u.arbitrary()? {
            Some(island(u)?)
        } else {
            None
        },
        migrations: u.arbitrary()?,
        departed_ns: u.arbitrary()?,
    }))
}

fn request(u: &mut Unstructured<'_>) -> Arb<Request> {
    Ok(match u.int_in_range(0..=19)? {
        0 => Request::Mm(match u.int_in_range(0..=5)? {
            0 => MmCall::Brk(u.arbitrary()?),
            1 => MmCall::Mmap {
                addr: u.arbitrary()?,
                len: u.arbitrary()?,
                prot: u.arbitrary()?,
                flags: u.arbitrary()?,
                fd: u.arbitrary()?,
                off: u.arbitrary()?,
            },
            2 => MmCall::Munmap {
                addr: u.arbitrary()?,
                len: u.arbitrary()?,
            },
            3 => MmCall::Mprotect {
                addr: u.arbitrary()?,
                len: u.arbitrary()?,
                prot: u.arbitrary()?,
            },
            4 => MmCall::Madvise {
                addr: u.arbitrary()?,
                len: u.arbitrary()?,
                advice: u.arbitrary()?,
            },
            _ => MmCall::Mremap {
                old: u.arbitrary()?,
                old_len: u.arbitrary()?,
                new_len: u.arbitrary()?,
                flags: u.arbitrary()?,
                new_addr: u.arbitrary()?,
            },
        }),
        1 => Request::Futex(match u.int_in_range(0..=3)? {
            0 => FutexCall::Wait {
                addr: u.arbitrary()?,
                val: u.arbitrary()?,
                bitset: u.arbitrary()?,
            },
            1 => FutexCall::Wake {
                addr: u.arbitrary()?,
                n: u.arbitrary()?,
                bitset: u.arbitrary()?,
            },
            2 => FutexCall::Requeue {
                addr: u.arbitrary()?,
                addr2: u.arbitrary()?,
                n_wake: u.arbitrary()?,
                n_requeue: u.arbitrary()?,
                check: u.arbitrary()?,
            },
            _ => FutexCall::WakeOp {
                addr: u.arbitrary()?,
                addr2: u.arbitrary()?,
                n: u.arbitrary()?,
                n2: u.arbitrary()?,
                encoded: u.arbitrary()?,
            },
        }),
        2 => Request::File(FileCall {
            nr: u.arbitrary()?,
            args: u.arbitrary()?,
        }),
        3 => Request::SigAction {
            sig: u.arbitrary()?,
            new: if u.arbitrary()? {
                Some(action(u)?)
            } else {
                None
            },
        },
        4 => Request::SignalThread {
            tid: u.arbitrary()?,
            sig: u.arbitrary()?,
        },
        5 => Request::Locate {
            tid: u.arbitrary()?,
        },
        6 => Request::Clone {
            tid: u.arbitrary()?,
        },
        7 => Request::ThreadExited {
            tid: u.arbitrary()?,
            code: u.arbitrary()?,
        },
        8 => Request::ExitGroup(status(u)?),
        9 => Request::Cancel {
            request: u.arbitrary()?,
            why: if u.arbitrary()? {
                Abandon::Interrupted
            } else {
                Abandon::TimedOut
            },
        },
        10 => {
            let most = if u.ratio(1, 32)? { 300 } else { 6 };
            let n = u.int_in_range(0..=most)?;
            Request::Layout((0..n).map(|_| layout_op(u)).collect::<Arb<_>>()?)
        }
        11 => Request::Members {
            members: u.arbitrary()?,
        },
        12 => Request::StartThread(thread(u)?),
        13 => Request::PostSignal {
            tid: u.arbitrary()?,
            sig: u.arbitrary()?,
        },
        14 => Request::Exit(status(u)?),
        15 => Request::MoveThread {
            tid: u.arbitrary()?,
            to: island(u)?,
        },
        16 => Request::MoveDone {
            tid: u.arbitrary()?,
            to: island(u)?,
            at: island(u)?,
        },
        17 => Request::ThreadControl {
            tid: u.arbitrary()?,
            op: match u.int_in_range(0..=3)? {
                0 => ThreadOp::Migrate(island(u)?),
                1 => ThreadOp::Propose(None),
                2 => ThreadOp::Propose(Some(island(u)?)),
                _ => ThreadOp::Affinity(u.arbitrary()?),
            },
        },
        18 => Request::Migrate(thread(u)?),
        _ => Request::Complete {
            request: u.arbitrary()?,
            reply: reply(u)?,
        },
    })
}

/// Any island message (sometimes one that `encode` must refuse).
pub fn island_message(u: &mut Unstructured<'_>) -> Arb<IslandMessage> {
    Ok(match u.int_in_range(0..=5)? {
        0 => IslandMessage::Coherency(page_message(u)?),
        5 => IslandMessage::CoherencyRange(page_range(u)?),
        1 => IslandMessage::Reply {
            id: u.arbitrary()?,
            body: reply(u)?,
        },
        _ => IslandMessage::Request {
            id: u.arbitrary()?,
            from: island(u)?,
            body: request(u)?,
        },
    })
}

/// What `encode` may refuse: values `decode` would refuse, and messages too long for a frame.
fn refusable(m: &IslandMessage) -> bool {
    let bad_island = |i: usize| i >= MAX_ISLANDS;
    let bad_errno = |e: i32| !ERRNO_RANGE.contains(&e);
    let bad_reply = |r: &Reply| match r {
        Reply::Value(Err(e)) | Reply::Action(Err(e)) => bad_errno(*e),
        _ => false,
    };
    match m {
        IslandMessage::Coherency(p) => usize::from(p.from) >= MAX_KERNELS,
        IslandMessage::CoherencyRange(r) => usize::from(r.messages()[0].from) >= MAX_KERNELS,
        IslandMessage::Reply { body, .. } => bad_reply(body),
        IslandMessage::Request { from, body, .. } => {
            bad_island(*from)
                || match body {
                    Request::MoveThread { to, .. } => bad_island(*to),
                    Request::MoveDone { to, at, .. } => bad_island(*to) || bad_island(*at),
                    Request::ThreadControl {
                        op: ThreadOp::Migrate(i) | ThreadOp::Propose(Some(i)),
                        ..
                    } => bad_island(*i),
                    Request::StartThread(t) | Request::Migrate(t) => {
                        t.proposed.is_some_and(bad_island)
                    }
                    Request::Complete { reply, .. } => *reply == Reply::Queued || bad_reply(reply),
                    // Too many changes for one message (the origin cuts them: `layout_chunks`).
                    Request::Layout(ops) => kwire::layout_chunks(ops.clone()).len() > 1,
                    _ => false,
                }
        }
    }
}

/// A path as the wire carries it: at most 512 bytes, cut at a character boundary.
fn wire_path(p: &str) -> &str {
    let mut n = p.len().min(512);
    while !p.is_char_boundary(n) {
        n -= 1;
    }
    &p[..n]
}

/// `x` as it must come back from the wire (paths cut to what the wire carries).
fn expected(m: &IslandMessage) -> String {
    let mut m = m.clone();
    if let IslandMessage::Request {
        body: Request::Layout(ops),
        ..
    } = &mut m
    {
        for op in ops {
            if let LayoutOp::Map {
                kind: VmaKind::File { path, .. },
                ..
            } = op
            {
                *path = wire_path(path).to_string();
            }
        }
    }
    full_debug(&m)
}

/// Debug of every field (ThreadImage's own Debug shows a few).
fn full_debug(m: &IslandMessage) -> String {
    let thread = |t: &ThreadImage| {
        format!(
            "{} {:?} {} {} {:?} {} {} {:?} {} {} {} {:?} {}",
            t.tid,
            t.regs,
            t.fs_base,
            t.gs_base,
            t.fpu.0,
            t.sigmask,
            t.pending,
            t.altstack,
            t.clear_child_tid,
            t.robust_list,
            t.affinity,
            t.proposed,
            t.migrations
        )
    };
    match m {
        IslandMessage::Request {
            id,
            from,
            body: Request::StartThread(t) | Request::Migrate(t),
        } => format!("{id} {from} {} {}", m.type_index(), thread(t)),
        other => format!("{other:?}"),
    }
}

/// Arbitrary messages through encode and decode.
pub fn island_round_trip(data: &[u8]) -> bool {
    let mut u = Unstructured::new(data);
    let Ok(m) = island_message(&mut u) else {
        return false;
    };
    let mut buf = vec![0u8; kwire::MAX_ENCODED_RANGE];
    let n = match m.encode(&mut buf) {
        Ok(n) => n,
        Err(e) => {
            assert!(refusable(&m), "encode refused a valid message ({e}): {m:?}");
            return false;
        }
    };
    assert!(n <= kwire::MAX_ENCODED_RANGE);
    assert!(m.type_index() < TYPE_NAMES.len());
    assert_eq!(back_weight(&m), m.weight());
    let back = IslandMessage::decode(&buf[..n])
        .unwrap_or_else(|e| panic!("decode(encode(x)) failed: {e}; x = {m:?}"));
    assert_eq!(full_debug(&back), expected(&m), "decode(encode(x)) != x");
    assert_eq!(back.type_index(), m.type_index());
    // Any shorter frame is refused, not misread (a few cuts: every one is the unit tests' job).
    for _ in 0..4 {
        let cut = u.int_in_range(0..=n - 1).unwrap_or(0);
        assert!(
            IslandMessage::decode(&buf[..cut]).is_err(),
            "a frame cut at {cut} of {n} decodes"
        );
    }
    true
}

/// Any bytes as an island message: an error, or a message that encodes back to those bytes.
pub fn island_decode(data: &[u8]) -> bool {
    match IslandMessage::decode(data) {
        Err(e) => {
            assert!(!matches!(e, WireError::BufferTooSmall { .. }), "{e}");
            false
        }
        Ok(m) => {
            assert!(m.type_index() < TYPE_NAMES.len());
            let mut buf = vec![0u8; kwire::MAX_ENCODED_RANGE];
            let n = m
                .encode(&mut buf)
                .unwrap_or_else(|e| panic!("a decoded message does not encode: {e}: {m:?}"));
            assert_eq!(&buf[..n], data, "two encodings of one message: {m:?}");
            true
        }
    }
}

/// The weight a message must have: the protocol messages it carries.
fn back_weight(m: &IslandMessage) -> u8 {
    match m {
        IslandMessage::CoherencyRange(r) => r.messages().len() as u8,
        _ => 1,
    }
}

/// Any bytes as a range of coherency messages: an error, or a range of consecutive pages of one
/// kind that encodes back to those bytes.
pub fn range_decode(data: &[u8]) -> bool {
    match PageRange::decode(data) {
        Err(_) => false,
        Ok(r) => {
            let msgs = r.messages();
            assert!(
                !msgs.is_empty() && msgs.len() <= MAX_RANGE,
                "{} pages",
                msgs.len()
            );
            for w in msgs.windows(2) {
                assert!(crate::fabric::range_joins(&w[0], &w[1]), "{w:?}");
            }
            assert!(msgs[msgs.len() - 1].page <= u64::MAX / 4096);
            let mut buf = vec![0u8; crate::fabric::RANGE_MAX_ENCODED];
            let n = r.encode(&mut buf).expect("a decoded range encodes");
            assert_eq!(&buf[..n], data, "two encodings of one range");
            true
        }
    }
}

/// Arbitrary ranges through encode and decode.
pub fn range_round_trip(data: &[u8]) -> bool {
    let mut u = Unstructured::new(data);
    let Ok(r) = page_range(&mut u) else {
        return false;
    };
    let mut buf = vec![0u8; crate::fabric::RANGE_MAX_ENCODED];
    match r.encode(&mut buf) {
        Ok(n) => {
            let back = PageRange::decode(&buf[..n])
                .unwrap_or_else(|e| panic!("decode(encode(x)) failed: {e}; x = {r:?}"));
            assert_eq!(back, r);
            for _ in 0..4 {
                let cut = u.int_in_range(0..=n - 1).unwrap_or(0);
                assert!(
                    PageRange::decode(&buf[..cut]).is_err(),
                    "cut at {cut} of {n}"
                );
            }
            true
        }
        Err(e) => {
            assert!(
                usize::from(r.messages()[0].from) >= MAX_KERNELS,
                "encode refused a valid range ({e}): {r:?}"
            );
            false
        }
    }
}

/// Any bytes as a coherency message.
pub fn page_decode(data: &[u8]) -> bool {
    match PageMessage::decode(data) {
        Err(_) => false,
        Ok(m) => {
            let mut buf = vec![0u8; PageMessage::MAX_ENCODED];
            let n = m.encode(&mut buf).expect("a decoded message encodes");
            assert_eq!(&buf[..n], data, "two encodings of one message: {m}");
            true
        }
    }
}

/// Arbitrary coherency messages through encode and decode.
pub fn page_round_trip(data: &[u8]) -> bool {
    let mut u = Unstructured::new(data);
    let Ok(m) = page_message(&mut u) else {
        return false;
    };
    let mut buf = vec![0u8; PageMessage::MAX_ENCODED];
    match m.encode(&mut buf) {
        Ok(n) => {
            let back = PageMessage::decode(&buf[..n])
                .unwrap_or_else(|e| panic!("decode(encode(x)) failed: {e}; x = {m}"));
            assert_eq!(back, m);
            true
        }
        Err(e) => {
            assert!(
                usize::from(m.from) >= MAX_KERNELS,
                "encode refused a valid message ({e}): {m}"
            );
            false
        }
    }
}
