//! Tests of the fabric as a whole: FIFO and no loss with many threads, backpressure without
//! deadlock, counters, errors, shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// A test protocol: requests and their answers, nested requests, and ways to lie.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TestMsg {
    /// A request from requester thread `thread`; with `forward`, the receiver first asks the
    /// requester's island a `Sub` question and answers only when that is answered.
    Req {
        thread: u32,
        seq: u64,
        forward: bool,
    },
    Ans {
        thread: u32,
        seq: u64,
    },
    Sub {
        id: u64,
    },
    SubAns {
        id: u64,
    },
    /// A request with a payload (up to a page).
    Blob(Vec<u8>),
    /// Encodes `bytes` as they are under the header of type `ty` and `class`: never decoded.
    Raw {
        ty: usize,
        class: Class,
        bytes: Vec<u8>,
    },
}

impl Wire for TestMsg {
    const TYPE_NAMES: &'static [&'static str] = &["req", "ans", "sub", "sub_ans", "blob"];
    const MAX_ENCODED: usize = 3 + PAGE_SIZE;

    fn type_index(&self) -> usize {
        match self {
            TestMsg::Req { .. } => 0,
            TestMsg::Ans { .. } => 1,
            TestMsg::Sub { .. } => 2,
            TestMsg::SubAns { .. } => 3,
            TestMsg::Blob(_) => 4,
            TestMsg::Raw { ty, .. } => *ty,
        }
    }

    fn class(&self) -> Class {
        match self {
            TestMsg::Req { .. } | TestMsg::Sub { .. } | TestMsg::Blob(_) => Class::Request,
            TestMsg::Ans { .. } | TestMsg::SubAns { .. } => Class::Answer,
            TestMsg::Raw { class, .. } => *class,
        }
    }

    fn encode(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let mut w = WireWriter::new(buf);
        match self {
            TestMsg::Req {
                thread,
                seq,
                forward,
            } => {
                w.put_u8(0)?;
                w.put_u32(*thread)?;
                w.put_u64(*seq)?;
                w.put_u8(u8::from(*forward))?;
            }
            TestMsg::Ans { thread, seq } => {
                w.put_u8(1)?;
                w.put_u32(*thread)?;
                w.put_u64(*seq)?;
            }
            TestMsg::Sub { id } => {
                w.put_u8(2)?;
                w.put_u64(*id)?;
            }
            TestMsg::SubAns { id } => {
                w.put_u8(3)?;
                w.put_u64(*id)?;
            }
            TestMsg::Blob(b) => {
                w.put_u8(4)?;
                w.put_u16(b.len() as u16)?;
                w.put_bytes(b)?;
            }
            TestMsg::Raw { bytes, .. } => w.put_bytes(bytes)?,
        }
        Ok(w.len())
    }

    fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = WireReader::new(buf);
        let m = match r.get_u8()? {
            0 => TestMsg::Req {
                thread: r.get_u32()?,
                seq: r.get_u64()?,
                forward: r.get_bool("forward")?,
            },
            1 => TestMsg::Ans {
                thread: r.get_u32()?,
                seq: r.get_u64()?,
            },
            2 => TestMsg::Sub { id: r.get_u64()? },
            3 => TestMsg::SubAns { id: r.get_u64()? },
            4 => {
                let n = r.get_u16()? as usize;
                TestMsg::Blob(r.get_bytes(n)?.to_vec())
            }
            v => {
                return Err(WireError::Invalid {
                    what: "test message tag",
                    value: u64::from(v),
                })
            }
        };
        r.finish()?;
        Ok(m)
    }
}

type TestFabric = Fabric<TestMsg>;

fn config(slots: u32, credits: u32, poll_us: u64) -> FabricConfig {
    FabricConfig {
        ring_slots: slots,
        credits,
        poll: Duration::from_micros(poll_us),
        max_outbox: 64,
    }
}

/// How long a test waits for progress before it declares a deadlock: a liveness watchdog (a
/// failure instead of a hang), not a performance check.
const WATCHDOG: Duration = Duration::from_secs(120);

/// Waits until `cond` holds.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WATCHDOG, "stuck waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Joins `handles`; if they do not all finish in time, shuts the fabric down (so that threads
/// blocked in it return) and fails.
fn join_all<M: Wire, X: Transport, T>(
    f: &Fabric<M, X>,
    handles: Vec<thread::JoinHandle<T>>,
    what: &str,
) -> Vec<T> {
    let start = Instant::now();
    while !handles.iter().all(|h| h.is_finished()) {
        if start.elapsed() > WATCHDOG {
            f.shutdown();
            panic!("{what}: stuck (deadlock?)");
        }
        thread::sleep(Duration::from_millis(1));
    }
    handles
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| panic!("{what} panicked")))
        .collect()
}

fn sent(s: &FabricStats, from: IslandId, to: IslandId, ty: &str) -> u64 {
    s.links
        .iter()
        .find(|l| (l.from, l.to) == (from, to))
        .and_then(|l| l.sent_by_type.get(ty))
        .map_or(0, |t| t.messages)
}

/// Every link's sender and receiver agree, and no credit is held.
fn check_quiescent<T: Transport>(f: &Fabric<TestMsg, T>) -> FabricStats {
    let s = f.stats();
    for l in &s.links {
        assert_eq!(l.sent, l.received, "link {}->{}", l.from, l.to);
        assert_eq!(l.sent_by_type, l.received_by_type);
        assert_eq!(l.malformed, 0);
    }
    for i in 0..f.islands() {
        let tx = f.sender(i).expect("sender");
        for j in (0..f.islands()).filter(|&j| j != i) {
            assert_eq!(tx.outstanding(j).expect("link"), 0, "credits {i}->{j}");
        }
    }
    s
}

/// Many requester threads per island send pipelined requests (no waiting for answers beyond
/// the credits) to every other island; receive loops answer each. Checks FIFO per link (the
/// requests of one thread arrive in order, and the answers on a link come back in the order
/// of its requests) and that nothing is lost or duplicated.
#[test]
fn fifo_and_no_loss_many_threads() {
    const N: usize = 4;
    const THREADS: u32 = 3;
    const PER_DEST: u64 = 1500;
    let f = Arc::new(TestFabric::new(N, config(4, 2, 2)).expect("fabric"));
    let s = fifo_and_no_loss(&f, THREADS, PER_DEST);
    // Credits never allow more than 2R frames in a link: nothing was ever parked.
    assert!(s.links.iter().all(|l| l.parked == 0 && l.overdrafts == 0));
}

/// The body of `fifo_and_no_loss_many_threads`, over any transport.
fn fifo_and_no_loss<T: Transport>(
    f: &Arc<Fabric<TestMsg, T>>,
    threads: u32,
    per_dest: u64,
) -> FabricStats {
    let n = f.islands();
    let expected_total = n as u64 * threads as u64 * (n as u64 - 1) * per_dest * 2;
    let received = Arc::new(AtomicU64::new(0));

    let mut loops = Vec::new();
    for me in 0..n {
        let mut rx = f.receiver(me).expect("receiver");
        let tx = f.sender(me).expect("sender");
        let received = Arc::clone(&received);
        loops.push(thread::spawn(move || {
            // next_req[from][thread], next_ans[from][thread]
            let mut next_req = vec![vec![0u64; threads as usize]; n];
            let mut next_ans = vec![vec![0u64; threads as usize]; n];
            loop {
                let (from, msg) = match rx.recv(None) {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(FabricError::Shutdown) => break,
                    Err(e) => panic!("island {me}: {e}"),
                };
                received.fetch_add(1, Ordering::Relaxed);
                match msg {
                    TestMsg::Req { thread, seq, .. } => {
                        let next = &mut next_req[from][thread as usize];
                        assert_eq!(seq, *next, "request order on link {from}->{me}");
                        *next += 1;
                        tx.post(from, &TestMsg::Ans { thread, seq })
                            .expect("answer");
                    }
                    TestMsg::Ans { thread, seq } => {
                        let next = &mut next_ans[from][thread as usize];
                        assert_eq!(seq, *next, "answer order on link {from}->{me}");
                        *next += 1;
                    }
                    m => panic!("unexpected {m:?}"),
                }
            }
            (next_req, next_ans)
        }));
    }
    let mut requesters = Vec::new();
    for me in 0..n {
        for t in 0..threads {
            let tx = f.sender(me).expect("sender");
            requesters.push(thread::spawn(move || {
                for seq in 0..per_dest {
                    for k in 1..n {
                        let dest = (me + k) % n;
                        tx.send(
                            dest,
                            &TestMsg::Req {
                                thread: t,
                                seq,
                                forward: false,
                            },
                        )
                        .expect("send");
                    }
                }
            }));
        }
    }
    join_all(f, requesters, "requesters");
    wait_until("every answer", || {
        received.load(Ordering::Relaxed) == expected_total
    });
    f.shutdown();
    for (me, l) in loops.into_iter().enumerate() {
        let (next_req, next_ans) = l.join().expect("receive loop");
        for from in (0..n).filter(|&from| from != me) {
            for t in 0..threads as usize {
                assert_eq!(next_req[from][t], per_dest);
                assert_eq!(next_ans[from][t], per_dest);
            }
        }
    }
    let s = check_quiescent(f);
    assert_eq!(s.total.messages, expected_total);
    assert_eq!(s.by_type["req"].messages, expected_total / 2);
    assert_eq!(s.by_type["ans"].messages, expected_total / 2);
    for from in 0..n {
        for to in (0..n).filter(|&to| to != from) {
            assert_eq!(sent(&s, from, to, "req"), threads as u64 * per_dest);
        }
    }
    s
}

/// Nested requests a forwarded call makes.
const SUBS: u32 = 3;

/// One island's receive loop for the RPC tests: answers requests (after a nested `Sub` round
/// trip for `forward` ones) and routes answers to the requester threads.
fn rpc_loop<T: Transport>(
    mut rx: Receiver<TestMsg, T>,
    routes: Vec<mpsc::Sender<(IslandId, u64)>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let me = rx.island();
        let tx = rx.sender();
        // Per forwarded call: the caller, its thread and seq, and the Subs still unanswered.
        let mut pending: HashMap<u64, (IslandId, u32, u64, u32)> = HashMap::new();
        let mut next_call = 0;
        loop {
            let (from, msg) = match rx.recv(None) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(FabricError::Shutdown) => break,
                Err(e) => panic!("island {me}: {e}"),
            };
            match msg {
                TestMsg::Req {
                    thread,
                    seq,
                    forward: false,
                } => tx.post(from, &TestMsg::Ans { thread, seq }),
                TestMsg::Req {
                    thread,
                    seq,
                    forward: true,
                } => {
                    // Requests born of handling a message (SUBS of them, so that they overdraw
                    // the credit and fill the ring): posted, never waiting.
                    pending.insert(next_call, (from, thread, seq, SUBS));
                    next_call += 1;
                    (0..SUBS).try_for_each(|_| tx.post(from, &TestMsg::Sub { id: next_call - 1 }))
                }
                TestMsg::Sub { id } => tx.post(from, &TestMsg::SubAns { id }),
                TestMsg::SubAns { id } => {
                    let call = pending.get_mut(&id).expect("sub answer for a call");
                    assert_eq!(call.0, from);
                    call.3 -= 1;
                    if call.3 == 0 {
                        let (orig, thread, seq, _) = *call;
                        pending.remove(&id);
                        tx.post(orig, &TestMsg::Ans { thread, seq })
                    } else {
                        Ok(())
                    }
                }
                TestMsg::Ans { thread, seq } => {
                    routes[thread as usize]
                        .send((from, seq))
                        .expect("requester alive");
                    Ok(())
                }
                m => panic!("unexpected {m:?}"),
            }
            .expect("post");
        }
        assert!(pending.is_empty());
    })
}

/// Backpressure stress: tiny rings (2 slots, 1 credit), many requester threads on every island
/// making synchronous calls in every direction, and receive loops that answer half the calls
/// only after three nested requests of their own back to the caller (requests sent by handlers:
/// overdrafts, parked frames). A scheme in which a full ring makes the handler wait deadlocks
/// here (see `naive_blocking_handlers_deadlock`); this one must finish every call.
#[test]
fn no_deadlock_under_pressure() {
    for islands in [2usize, 3] {
        let f = Arc::new(TestFabric::new(islands, config(2, 1, 1)).expect("fabric"));
        pressure(&f, 6, 1500);
    }
}

/// The body of `no_deadlock_under_pressure`, over any transport: `threads` requester threads per
/// island, `calls` calls each.
fn pressure<T: Transport>(f: &Arc<Fabric<TestMsg, T>>, threads: u32, calls: u64) -> FabricStats {
    let islands = f.islands();
    let mut loops = Vec::new();
    let mut requesters = Vec::new();
    for me in 0..islands {
        let mut routes = Vec::new();
        for t in 0..threads {
            let (route, answers) = mpsc::channel();
            routes.push(route);
            let tx = f.sender(me).expect("sender");
            requesters.push(thread::spawn(move || {
                for seq in 0..calls {
                    let to = (me + 1 + (seq as usize + t as usize) % (islands - 1)) % islands;
                    let forward = seq % 2 == 0;
                    tx.send(
                        to,
                        &TestMsg::Req {
                            thread: t,
                            seq,
                            forward,
                        },
                    )
                    .expect("send");
                    // A liveness watchdog, not a performance check.
                    let got = answers
                        .recv_timeout(WATCHDOG)
                        .expect("an answer (deadlock?)");
                    assert_eq!(got, (to, seq));
                }
            }));
        }
        loops.push(rpc_loop(f.receiver(me).expect("receiver"), routes));
    }
    join_all(f, requesters, "requesters");
    f.shutdown();
    for l in loops {
        l.join().expect("receive loop");
    }
    let s = check_quiescent(f);
    let all = islands as u64 * threads as u64 * calls;
    assert_eq!(s.by_type["req"].messages, all);
    assert_eq!(s.by_type["ans"].messages, all);
    assert_eq!(s.by_type["sub"].messages, all / 2 * SUBS as u64);
    assert_eq!(s.by_type["sub_ans"].messages, all / 2 * SUBS as u64);
    let waits: u64 = s.links.iter().map(|l| l.credit_waits).sum();
    let overdrafts: u64 = s.links.iter().map(|l| l.overdrafts).sum();
    let parked: u64 = s.links.iter().map(|l| l.parked).sum();
    let high = s.links.iter().map(|l| l.outbox_high_water).max();
    // The bound of the module docs: a link's outbox holds at most the overdrafts outstanding
    // both ways, here at most SUBS per call in flight, one call per requester thread.
    assert!(
        high.unwrap_or(0) <= u64::from(2 * SUBS * threads),
        "{high:?}"
    );
    eprintln!(
        "{islands} islands: {all} calls, {waits} credit waits, {overdrafts} overdrafts, \
         {parked} parked frames, outbox high water {high:?}"
    );
    s
}

/// The deadlock that the scheme prevents, reproduced step by step on bare rings (2 slots) with
/// handlers that must send their answer before they take another frame: both handlers end up
/// waiting on full rings that only the other could drain.
#[test]
fn naive_blocking_handlers_deadlock() {
    let t = RingTransport::new(2, 2, Duration::ZERO).expect("transport");
    let mut att: Vec<_> = (0..2)
        .map(|i| {
            t.attach(i, Arc::new(IslandCounters::new(i, 2, TestMsg::TYPE_NAMES)))
                .expect("attach")
        })
        .collect();
    let mut ab = att[0].links[1].take().expect("link");
    let mut ba = att[1].links[0].take().expect("link");
    let frame = |buf: &mut [u8]| -> Result<usize, FabricError> {
        buf[0] = 1;
        Ok(1)
    };
    // Requesters of both islands fill both rings with requests.
    while ab.try_send(&mut { frame }).expect("send") {}
    while ba.try_send(&mut { frame }).expect("send") {}
    // Each handler takes one request...
    for a in &mut att {
        let got = a
            .inbox
            .recv(Some(Instant::now()), &mut |_, _| Ok(()))
            .expect("recv");
        assert_eq!(got, Wake::Frame);
    }
    // ...and a blocked requester of the other island wins the freed slot before the answer.
    assert!(ab.try_send(&mut { frame }).expect("send"));
    assert!(ba.try_send(&mut { frame }).expect("send"));
    // Now neither answer fits, and neither handler takes a frame until its answer is out.
    assert!(!ab.try_send(&mut { frame }).expect("send"));
    assert!(!ba.try_send(&mut { frame }).expect("send"));
}

/// The same steps on the fabric: the third requester of each island waits for a credit instead
/// of taking a slot, answers always fit, and handler-born requests over the credit go out as
/// overdrafts (parked when the ring is full) without blocking anyone.
#[test]
fn credits_prevent_that_deadlock() {
    let f = Arc::new(TestFabric::new(2, config(2, 1, 0)).expect("fabric"));
    let req = |thread, seq| TestMsg::Req {
        thread,
        seq,
        forward: false,
    };
    // Three requester threads per island, receive loops not running yet.
    let mut requesters = Vec::new();
    for me in 0..2 {
        for t in 0..3 {
            let tx = f.sender(me).expect("sender");
            requesters.push(thread::spawn(move || tx.send(1 - me, &req(t, 0))));
        }
    }
    // One request per island goes (R = 1); the other two wait for a credit.
    wait_until("two credit waits per island", || {
        let s = f.stats();
        s.links.iter().filter(|l| l.sent.messages == 1).count() == 2
            && s.links.iter().all(|l| l.credit_waits == 2)
    });
    // Handler-born requests (posts) over the credit: one fills the ring, the next two park.
    // (On another thread, so that a post that waited would fail the test rather than hang it.)
    let tx0 = f.sender(0).expect("sender");
    let tx1 = f.sender(1).expect("sender");
    let poster = thread::spawn(move || {
        for id in 0..3 {
            tx0.post(1, &TestMsg::Sub { id }).expect("post");
            tx1.post(0, &TestMsg::Sub { id }).expect("post");
        }
    });
    join_all(&f, vec![poster], "posts");
    let s = f.stats();
    for l in &s.links {
        assert_eq!(l.overdrafts, 3);
        assert_eq!(l.parked, 2);
        assert_eq!(l.outbox_high_water, 2);
        assert_eq!(l.sent.messages, 2, "ring full: one request, one sub");
    }
    // Now run the receive loops: everything drains, every request gets its answer.
    let answered = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    for me in 0..2 {
        let mut rx = f.receiver(me).expect("receiver");
        let answered = Arc::clone(&answered);
        loops.push(thread::spawn(move || {
            let tx = rx.sender();
            loop {
                match rx.recv(None) {
                    Ok(Some((from, TestMsg::Req { thread, seq, .. }))) => {
                        tx.post(from, &TestMsg::Ans { thread, seq }).expect("post")
                    }
                    Ok(Some((from, TestMsg::Sub { id }))) => {
                        tx.post(from, &TestMsg::SubAns { id }).expect("post")
                    }
                    Ok(Some(_)) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) => {}
                    Err(FabricError::Shutdown) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for r in join_all(&f, requesters, "requesters") {
        r.expect("send");
    }
    wait_until("every answer", || answered.load(Ordering::Relaxed) == 12);
    f.shutdown();
    for l in loops {
        l.join().expect("loop");
    }
    let s = check_quiescent(&f);
    assert_eq!(s.total.messages, 24);
    assert!(s.links.iter().all(|l| l.space_wakeups >= 1));
}

/// Parked frames keep their place: a later message on the link goes after them even when the
/// ring has room again, and the receiver's room notification gets them flushed.
#[test]
fn fifo_through_the_outbox() {
    let f = TestFabric::new(2, config(2, 1, 0)).expect("fabric");
    let tx = f.sender(0).expect("sender");
    let mut rx0 = f.receiver(0).expect("receiver");
    let mut rx1 = f.receiver(1).expect("receiver");
    for id in 0..6 {
        tx.post(1, &TestMsg::Sub { id }).expect("post");
    }
    assert_eq!(tx.stats().outbound[0].parked, 4);
    let mut got = Vec::new();
    let mut take = |rx1: &mut Receiver<TestMsg>| match rx1.recv(Some(Duration::ZERO)) {
        Ok(Some((0, TestMsg::Sub { id }))) => got.push(id),
        r => panic!("{r:?}"),
    };
    take(&mut rx1);
    // The ring has room now, but 2..5 are parked: 6 goes behind them.
    tx.post(1, &TestMsg::Sub { id: 6 }).expect("post");
    take(&mut rx1);
    take(&mut rx1);
    // Island 1 freed slots of a link island 0 waits on: island 0's loop is woken and flushes.
    assert_eq!(rx0.recv(Some(Duration::ZERO)).expect("recv"), None);
    for _ in 0..4 {
        take(&mut rx1);
        assert_eq!(rx0.recv(Some(Duration::ZERO)).expect("recv"), None);
    }
    assert_eq!(got, (0..7).collect::<Vec<_>>());
    let s = f.stats();
    assert_eq!(s.links[0].sent.messages, 7);
    assert!(s.links[0].space_wakeups >= 1);
    assert_eq!(rx1.recv(Some(Duration::ZERO)).expect("recv"), None);
}

/// A receive loop that also serves another descriptor (as the island's userfaultfd).
#[test]
fn watched_descriptor_wakes_the_receive_loop() {
    use std::os::fd::AsRawFd;
    use vmm_sys_util::eventfd::EventFd;
    // Rings of 64 slots: the 40 messages below all fit, so nothing makes the loop sleep.
    let f = Arc::new(TestFabric::new(2, config(64, 32, 0)).expect("fabric"));
    let mut rx = f.receiver(1).expect("receiver");
    let other = Arc::new(EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"));
    rx.watch(other.as_raw_fd()).expect("watch");
    let counters_f = Arc::clone(&f);
    let ev = Arc::clone(&other);
    let h = thread::spawn(move || {
        wait_until("a sleeping receiver", || {
            counters_f.stats().receivers[1].sleeps >= 1
        });
        ev.write(1).expect("write");
    });
    // Asleep, woken by the descriptor: Ok(None), not a timeout.
    let start = Instant::now();
    assert_eq!(rx.recv(Some(WATCHDOG)).expect("recv"), None);
    assert!(start.elapsed() < WATCHDOG);
    h.join().expect("join");
    // Level-triggered: still readable, so recv returns at once; drained, it waits for messages.
    assert_eq!(rx.recv(None).expect("recv"), None);
    other.read().expect("read");
    let tx = f.sender(0).expect("sender");
    tx.send(1, &TestMsg::Sub { id: 1 }).expect("send");
    assert_eq!(
        rx.recv(None).expect("recv"),
        Some((0, TestMsg::Sub { id: 1 }))
    );
    // A steady stream that never lets the loop sleep does not starve the descriptor: it is
    // reported within 32 messages.
    other.write(1).expect("write");
    for id in 0..40 {
        tx.post(1, &TestMsg::Sub { id }).expect("post");
    }
    let mut before = 0;
    while rx.recv(None).expect("recv").is_some() {
        before += 1;
    }
    assert!(before <= 32, "{before} messages before the descriptor");
    assert_eq!(f.stats().links[0].parked, 0);
}

#[test]
fn counters_count_by_type_and_link() {
    let f = TestFabric::new(3, config(8, 4, 0)).expect("fabric");
    let tx0 = f.sender(0).expect("sender");
    let tx2 = f.sender(2).expect("sender");
    let mut rx0 = f.receiver(0).expect("receiver");
    let mut rx2 = f.receiver(2).expect("receiver");
    for seq in 0..3 {
        let r = TestMsg::Req {
            thread: 0,
            seq,
            forward: false,
        };
        tx0.send(2, &r).expect("send");
    }
    tx0.send(2, &TestMsg::Blob(vec![7; PAGE_SIZE]))
        .expect("send");
    for seq in 0..3 {
        let got = rx2.recv(Some(Duration::ZERO)).expect("recv");
        let expected = TestMsg::Req {
            thread: 0,
            seq,
            forward: false,
        };
        assert_eq!(got, Some((0, expected)));
        tx2.post(0, &TestMsg::Ans { thread: 0, seq }).expect("post");
    }
    assert_eq!(
        rx2.recv(None).expect("recv"),
        Some((0, TestMsg::Blob(vec![7; PAGE_SIZE])))
    );
    tx2.post(0, &TestMsg::SubAns { id: 1 }).expect("post");
    assert_eq!(tx0.outstanding(2).expect("link"), 4);
    for _ in 0..4 {
        assert!(rx0.recv(Some(Duration::ZERO)).expect("recv").is_some());
    }
    assert_eq!(tx0.outstanding(2).expect("link"), 0);
    let s = check_quiescent(&f);
    assert_eq!(s.links.len(), 2);
    let l02 = &s.links[0];
    assert_eq!((l02.from, l02.to), (0, 2));
    // Frame header 4 + Req 14 bytes; Blob 4 + 3 + 4096.
    assert_eq!(
        l02.sent_by_type["req"],
        TypeStats {
            messages: 3,
            bytes: 3 * 18
        }
    );
    assert_eq!(l02.sent_by_type["blob"].bytes, 4103);
    assert_eq!(l02.sent.messages, 4);
    let l20 = &s.links[1];
    assert_eq!(l20.sent_by_type["ans"].messages, 3);
    assert_eq!(l20.sent_by_type["sub_ans"].messages, 1);
    assert_eq!(l20.doorbells, 0, "no receiver was asleep");
    let json = serde_json::to_value(&s).expect("json");
    assert_eq!(json["by_type"]["req"]["messages"], 3);
    assert_eq!(json["links"][0]["sent_by_type"]["blob"]["bytes"], 4103);
    // An island's own view has its halves only.
    let own = tx0.stats();
    assert_eq!(own.outbound.len(), 1);
    assert_eq!(own.inbound.len(), 1);
    assert_eq!(own.inbound[0].received.messages, 4);
}

#[test]
fn malformed_frames_and_stray_answers_are_errors() {
    let f = TestFabric::new(2, config(8, 2, 0)).expect("fabric");
    let tx = f.sender(0).expect("sender");
    let mut rx = f.receiver(1).expect("receiver");
    let raw = |ty, class, bytes: Vec<u8>| TestMsg::Raw { ty, class, bytes };
    let ans = {
        let mut b = vec![0u8; 64];
        let n = TestMsg::Ans { thread: 1, seq: 2 }
            .encode(&mut b)
            .expect("encode");
        b.truncate(n);
        b
    };
    tx.post(1, &raw(0, Class::Request, vec![9, 9]))
        .expect("post"); // bad tag
    tx.post(1, &raw(0, Class::Request, vec![0, 1]))
        .expect("post"); // truncated
    tx.post(1, &raw(0, Class::Request, ans.clone()))
        .expect("post"); // body is an answer
    tx.post(1, &raw(1, Class::Answer, ans.clone()))
        .expect("post"); // no request outstanding
    tx.post(1, &TestMsg::Sub { id: 5 }).expect("post");
    for _ in 0..3 {
        match rx.recv(Some(Duration::ZERO)) {
            Err(FabricError::Malformed { from: 0, to: 1, .. }) => {}
            r => panic!("expected a malformed frame, got {r:?}"),
        }
    }
    assert!(matches!(
        rx.recv(Some(Duration::ZERO)),
        Err(FabricError::UnexpectedAnswer { island: 1, from: 0 })
    ));
    // The link goes on.
    assert_eq!(
        rx.recv(Some(Duration::ZERO)).expect("recv"),
        Some((0, TestMsg::Sub { id: 5 }))
    );
    let s = f.stats();
    assert_eq!(s.links[0].malformed, 3);
    assert_eq!(
        s.links[0].received.messages, 2,
        "the stray answer and the Sub"
    );
    // A type index out of range is refused at the sender.
    assert!(matches!(
        tx.post(1, &raw(9, Class::Request, vec![])),
        Err(FabricError::BadType { type_index: 9, .. })
    ));
    // A message that does not fit the buffer is an encode error, and takes no credit.
    let huge = TestMsg::Blob(vec![0; PAGE_SIZE + 10]);
    // Outstanding: the three malformed requests (never answered) and the Sub.
    assert_eq!(tx.outstanding(1).expect("link"), 4);
    assert!(matches!(
        tx.post(1, &huge),
        Err(FabricError::Encode { from: 0, to: 1, .. })
    ));
    assert_eq!(tx.outstanding(1).expect("link"), 4);
}

#[test]
fn try_send_and_receive_loop_sends_never_wait() {
    let f = TestFabric::new(2, config(4, 2, 0)).expect("fabric");
    let tx = f.sender(0).expect("sender");
    let req = TestMsg::Sub { id: 0 };
    assert!(tx.try_send(1, &req).expect("try"));
    assert!(tx.try_send(1, &req).expect("try"));
    assert!(!tx.try_send(1, &req).expect("try"), "no credit left");
    // Answers need no credit.
    assert!(tx.try_send(1, &TestMsg::SubAns { id: 0 }).expect("try"));
    // On island 0's receive-loop thread, a request with no credit does not wait.
    let mut rx0 = f.receiver(0).expect("receiver");
    assert_eq!(rx0.recv(Some(Duration::ZERO)).expect("recv"), None);
    tx.send(1, &req).expect("send from the receive loop");
    let s = tx.stats();
    assert_eq!(s.outbound[0].overdrafts, 1);
    assert_eq!(s.outbound[0].credit_waits, 0);
    assert_eq!(tx.outstanding(1).expect("link"), 3);
}

#[test]
fn shutdown_wakes_receivers_and_waiting_senders() {
    let f = Arc::new(TestFabric::new(2, config(2, 1, 0)).expect("fabric"));
    let tx = f.sender(0).expect("sender");
    tx.send(1, &TestMsg::Sub { id: 0 }).expect("send");
    let waiter = thread::spawn(move || tx.send(1, &TestMsg::Sub { id: 1 }));
    let mut rx = f.receiver(0).expect("receiver");
    let receiver = thread::spawn(move || rx.recv(None));
    wait_until("a credit wait", || {
        f.stats().links.first().is_some_and(|l| l.credit_waits == 1)
    });
    wait_until("a sleeping receiver", || f.stats().receivers[0].sleeps >= 1);
    f.shutdown();
    assert!(matches!(
        waiter.join().expect("join"),
        Err(FabricError::Shutdown)
    ));
    assert!(matches!(
        receiver.join().expect("join"),
        Err(FabricError::Shutdown)
    ));
    assert!(matches!(
        f.sender(1)
            .expect("sender")
            .post(0, &TestMsg::Sub { id: 2 }),
        Err(FabricError::Shutdown)
    ));
}

#[test]
fn configuration_and_addressing_errors() {
    assert!(matches!(
        TestFabric::new(0, FabricConfig::default()),
        Err(FabricError::IslandCount(0))
    ));
    assert!(matches!(
        TestFabric::new(65, FabricConfig::default()),
        Err(FabricError::IslandCount(65))
    ));
    for (slots, credits) in [(4, 0), (4, 3), (8, 5)] {
        assert!(
            matches!(
                TestFabric::new(2, config(slots, credits, 0)),
                Err(FabricError::Config(_))
            ),
            "{slots} slots, {credits} credits"
        );
    }
    let mut c = config(4, 2, 0);
    c.max_outbox = 0;
    assert!(TestFabric::new(2, c).is_err());

    #[derive(Debug)]
    struct Huge;
    impl Wire for Huge {
        const TYPE_NAMES: &'static [&'static str] = &["huge"];
        const MAX_ENCODED: usize = MAX_MESSAGE + 1;
        fn type_index(&self) -> usize {
            0
        }
        fn class(&self) -> Class {
            Class::Request
        }
        fn encode(&self, _: &mut [u8]) -> Result<usize, WireError> {
            Ok(0)
        }
        fn decode(_: &[u8]) -> Result<Self, WireError> {
            Ok(Huge)
        }
    }
    assert!(matches!(
        Fabric::<Huge>::new(2, FabricConfig::default()),
        Err(FabricError::Config(_))
    ));

    let f = TestFabric::new(2, FabricConfig::default()).expect("fabric");
    let tx = f.sender(0).expect("sender");
    let m = TestMsg::Sub { id: 0 };
    assert!(matches!(tx.send(0, &m), Err(FabricError::SelfSend(0))));
    assert!(matches!(
        tx.send(2, &m),
        Err(FabricError::NoSuchIsland { island: 2, .. })
    ));
    assert!(f.sender(2).is_err());
    f.receiver(1).expect("receiver");
    assert!(matches!(f.receiver(1), Err(FabricError::ReceiverTaken(1))));

    // One island: no links at all, and a receive loop that only times out.
    let one = TestFabric::new(1, FabricConfig::default()).expect("fabric");
    assert!(matches!(
        one.sender(0).expect("sender").send(0, &m),
        Err(FabricError::SelfSend(0))
    ));
    let mut rx = one.receiver(0).expect("receiver");
    assert_eq!(rx.recv(Some(Duration::from_millis(2))).expect("recv"), None);
    assert_eq!(one.stats().links.len(), 0);
}

/// 64 islands (4032 links): every island reaches island 0 and island 63, with one eventfd and
/// one epoll per island.
#[test]
fn sixty_four_islands() {
    let f = Arc::new(TestFabric::new(64, FabricConfig::default()).expect("fabric"));
    let mut rx0 = f.receiver(0).expect("receiver");
    let mut rx63 = f.receiver(63).expect("receiver");
    for i in 1..63 {
        let tx = f.sender(i).expect("sender");
        tx.send(0, &TestMsg::Sub { id: i as u64 }).expect("send");
        tx.send(63, &TestMsg::Sub { id: i as u64 }).expect("send");
    }
    f.sender(0)
        .expect("sender")
        .send(63, &TestMsg::Sub { id: 0 })
        .expect("send");
    let mut from0 = Vec::new();
    let mut from63 = Vec::new();
    for _ in 1..63 {
        from0.push(rx0.recv(Some(Duration::ZERO)).expect("recv").expect("msg"));
    }
    for _ in 0..63 {
        from63.push(rx63.recv(Some(Duration::ZERO)).expect("recv").expect("msg"));
    }
    from0.sort_by_key(|(f, _)| *f);
    from63.sort_by_key(|(f, _)| *f);
    assert_eq!(
        from0,
        (1..63)
            .map(|i| (i, TestMsg::Sub { id: i as u64 }))
            .collect::<Vec<_>>()
    );
    assert_eq!(from63.len(), 63);
    assert_eq!(from63[0], (0, TestMsg::Sub { id: 0 }));
    assert_eq!(rx0.recv(Some(Duration::ZERO)).expect("recv"), None);
}

/// The coherency protocol's messages cross the fabric intact, 4 KiB pages included.
#[test]
fn page_messages_cross_the_fabric() {
    use coherency::{KernelSet, Message, MessageKind, Voter};
    let f = Fabric::<PageMessage>::new(2, FabricConfig::default()).expect("fabric");
    let tx = f.sender(1).expect("sender");
    let back = f.sender(0).expect("sender");
    let mut rx0 = f.receiver(0).expect("receiver");
    let mut rx1 = f.receiver(1).expect("receiver");
    let mut data = PageBuf::zeroed();
    data.as_bytes_mut()[4095] = 0xaa;
    let fetch = Message {
        page: 0x1234,
        from: 0,
        gen: 0,
        kind: MessageKind::Fetch,
        users: KernelSet::only(0),
    };
    back.send(1, &fetch).expect("send");
    assert_eq!(rx1.recv(None).expect("recv"), Some((0, fetch)));
    let copy = Message {
        page: 0x1234,
        from: 1,
        gen: 0,
        kind: MessageKind::Copy { data, version: 3 },
        users: KernelSet(0b11),
    };
    tx.post(0, &copy).expect("post");
    let invalid = Message {
        page: 9,
        from: 1,
        gen: 0,
        kind: MessageKind::Invalid { ts: 77, version: 3 },
        users: KernelSet(0b11),
    };
    tx.send(0, &invalid).expect("send");
    assert_eq!(rx0.recv(None).expect("recv"), Some((1, copy)));
    assert_eq!(rx0.recv(None).expect("recv"), Some((1, invalid)));
    let nack = Message {
        page: 9,
        from: 0,
        gen: 0,
        kind: MessageKind::Nack {
            voter: Voter::Invalidating,
        },
        users: KernelSet(0b11),
    };
    back.post(1, &nack).expect("post");
    assert_eq!(rx1.recv(None).expect("recv"), Some((0, nack)));
    let s = check_quiescent_pages(&f);
    assert_eq!(s.by_type["copy"].bytes, 4 + 4122);
}

fn check_quiescent_pages(f: &Fabric<PageMessage>) -> FabricStats {
    let s = f.stats();
    for l in &s.links {
        assert_eq!(l.sent, l.received);
    }
    s
}

// Fault injection (`faults.rs`): the same protocols over links that delay frames, refuse them in
// bursts and stall receive loops must still see FIFO links that lose nothing.

fn faulty(
    islands: usize,
    slots: u32,
    credits: u32,
    spec: &str,
) -> (Arc<Fabric<TestMsg, FaultTransport>>, Arc<FaultCounters>) {
    let rings = RingTransport::new(islands, slots, Duration::from_micros(2)).expect("rings");
    let t = FaultTransport::new(rings, Some(spec.parse().expect("spec")));
    let counters = t.counters().expect("counters");
    let f = Fabric::with_transport(t, config(slots, credits, 2)).expect("fabric");
    (Arc::new(f), counters)
}

#[test]
fn faults_keep_every_link_fifo_and_lose_nothing() {
    // Delays, bursts and stalls of a random island, on 4 islands with small rings.
    let (f, counters) = faulty(4, 4, 2, "11,delay=10:300us,burst=5:1ms,stall=*:3ms:15ms");
    let s = fifo_and_no_loss(&f, 3, 200);
    let injected = counters.snapshot();
    eprintln!(
        "faults: {injected}; parked frames {}",
        s.links.iter().map(|l| l.parked).sum::<u64>()
    );
    assert!(injected.delays > 0 && injected.bursts > 0, "{injected}");
    // Bursts made frames wait in the outboxes (and come out in order: the test checks FIFO).
    assert!(s.links.iter().any(|l| l.parked > 0));
}

#[test]
fn faults_under_backpressure_never_deadlock() {
    // The pressure test's tiny rings and nested requests, with every fault at once and one island
    // stalled now and then.
    let (f, counters) = faulty(3, 2, 1, "5,delay=5:200us,burst=5:500us,stall=1:2ms:10ms");
    pressure(&f, 4, 300);
    let injected = counters.snapshot();
    eprintln!("faults: {injected}");
    assert!(
        injected.delays > 0 && injected.bursts > 0 && injected.stalls > 0,
        "{injected}"
    );
}

#[test]
fn fault_specs_parse_and_print() {
    let s: FaultSpec = "7,delay=20:500us,burst=5:2ms,stall=1:30ms:300ms"
        .parse()
        .expect("spec");
    assert_eq!(s.seed, 7);
    assert_eq!(s.delay, Some((20, Duration::from_micros(500))));
    assert_eq!(s.burst, Some((5, Duration::from_millis(2))));
    assert_eq!(
        s.stall,
        Some((
            StallTarget::Island(1),
            Duration::from_millis(30),
            Duration::from_millis(300)
        ))
    );
    assert_eq!(
        s.to_string(),
        "7,delay=20:500us,burst=5:2ms,stall=1:30ms:300ms"
    );
    assert_eq!(s.to_string().parse::<FaultSpec>(), Ok(s.clone()));
    assert!(s.check(2).is_ok());
    assert!(s.check(1).is_err(), "island 1 of a program on 1 island");
    let any: FaultSpec = "seed=3 stall=*:1ms:2ms".parse().expect("spec");
    assert!(any.check(1).is_ok());
    assert_eq!(any.stall.map(|x| x.0), Some(StallTarget::Any));
    assert_eq!("9".parse::<FaultSpec>().map(|s| s.delay), Ok(None));
    for bad in [
        "",
        "x",
        "1,delay=101:1ms",
        "1,delay=5",
        "1,burst=5:1h",
        "1,stall=1:2ms:1ms",
        "1,stall=x:1ms:2ms",
        "1,jitter=5:1ms",
        "1,delay=5:11s",
    ] {
        assert!(bad.parse::<FaultSpec>().is_err(), "{bad:?}");
    }
    // Without a spec the wrapper passes everything through.
    let t = FaultTransport::new(
        RingTransport::new(2, 4, Duration::ZERO).expect("rings"),
        None,
    );
    assert!(t.counters().is_none());
    let f = Arc::new(Fabric::<TestMsg, _>::with_transport(t, config(4, 2, 0)).expect("fabric"));
    fifo_and_no_loss(&f, 1, 50);
}

#[test]
fn the_end_of_a_burst_wakes_a_sleeping_sender() {
    // Every frame starts a burst: a request sent by a thread while its island's receive loop is
    // asleep with no deadline waits in the outbox, and only the end of the burst can get it out
    // (no other traffic, no ring slot freed). Found by the fault tests under load: the demo hung
    // before the link woke the sender's loop.
    let (f, counters) = faulty(2, 4, 2, "1,burst=100:2ms");
    let mut loops = Vec::new();
    let got = Arc::new(AtomicU64::new(0));
    for me in 0..2 {
        let mut rx = f.receiver(me).expect("receiver");
        let got = Arc::clone(&got);
        loops.push(thread::spawn(move || {
            let tx = rx.sender();
            loop {
                match rx.recv(None) {
                    Ok(Some((from, TestMsg::Req { thread, seq, .. }))) => tx
                        .post(from, &TestMsg::Ans { thread, seq })
                        .expect("answer"),
                    Ok(Some((_, TestMsg::Ans { .. }))) => {
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(FabricError::Shutdown) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    let tx = f.sender(0).expect("sender");
    for seq in 0..20 {
        // Let the loops fall asleep first.
        thread::sleep(Duration::from_millis(3));
        let req = TestMsg::Req {
            thread: 0,
            seq,
            forward: false,
        };
        tx.send(1, &req).expect("send");
        wait_until("the answer", || got.load(Ordering::Relaxed) == seq + 1);
    }
    f.shutdown();
    for l in loops {
        l.join().expect("loop");
    }
    assert!(counters.snapshot().bursts >= 20, "{}", counters.snapshot());
}

/// A message that stands for `weight` requests or answers (as a range of page messages does);
/// with `lie`, its body says one less than its header.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Weighted {
    class: Class,
    weight: u8,
    lie: bool,
}

impl Wire for Weighted {
    const TYPE_NAMES: &'static [&'static str] = &["weighted_request", "weighted_answer"];
    const MAX_ENCODED: usize = 2;

    fn type_index(&self) -> usize {
        usize::from(self.class == Class::Answer)
    }

    fn class(&self) -> Class {
        self.class
    }

    fn weight(&self) -> u8 {
        self.weight
    }

    fn encode(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let mut w = WireWriter::new(buf);
        w.put_u8(self.class.to_byte())?;
        w.put_u8(self.weight - u8::from(self.lie))?;
        Ok(w.len())
    }

    fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = WireReader::new(buf);
        let class = Class::from_byte(r.get_u8()?)?;
        let weight = r.get_u8()?;
        r.finish()?;
        Ok(Weighted {
            class,
            weight,
            lie: false,
        })
    }
}

#[test]
fn a_message_carrying_several_takes_and_returns_as_many_credits() {
    let f = Fabric::<Weighted>::new(2, config(8, 4, 0)).expect("fabric");
    let (tx0, tx1) = (f.sender(0).expect("sender"), f.sender(1).expect("sender"));
    let (mut rx0, mut rx1) = (
        f.receiver(0).expect("receiver"),
        f.receiver(1).expect("receiver"),
    );
    let msg = |class, weight| Weighted {
        class,
        weight,
        lie: false,
    };
    tx0.send(1, &msg(Class::Request, 3)).expect("send");
    assert_eq!(tx0.outstanding(1).expect("link"), 3);
    // 3 + 2 > 4 credits: no room for a request of 2, room for one of 1.
    assert!(!tx0.try_send(1, &msg(Class::Request, 2)).expect("try"));
    assert!(tx0.try_send(1, &msg(Class::Request, 1)).expect("try"));
    for w in [3, 1] {
        assert_eq!(
            rx1.recv(Some(Duration::ZERO)).expect("recv"),
            Some((0, msg(Class::Request, w)))
        );
    }
    // The four answers come as one of 3 and one of 1: each returns its weight.
    tx1.post(0, &msg(Class::Answer, 3)).expect("post");
    rx0.recv(Some(Duration::ZERO)).expect("recv");
    assert_eq!(tx0.outstanding(1).expect("link"), 1);
    tx1.post(0, &msg(Class::Answer, 1)).expect("post");
    rx0.recv(Some(Duration::ZERO)).expect("recv");
    assert_eq!(tx0.outstanding(1).expect("link"), 0);
    // One heavier than every credit goes when none is outstanding (it would never go else).
    tx0.send(1, &msg(Class::Request, 6)).expect("send");
    assert_eq!(tx0.outstanding(1).expect("link"), 6);
    rx1.recv(Some(Duration::ZERO)).expect("recv");
    // More answers than requests outstanding: an error, as a stray answer is.
    tx1.post(0, &msg(Class::Answer, 7)).expect("post");
    assert!(matches!(
        rx0.recv(Some(Duration::ZERO)),
        Err(FabricError::UnexpectedAnswer { island: 0, from: 1 })
    ));
    // A body that says another weight than its header is malformed; the header's credits come
    // back all the same (the frame was consumed).
    tx1.post(
        0,
        &Weighted {
            class: Class::Answer,
            weight: 6,
            lie: true,
        },
    )
    .expect("post");
    assert!(matches!(
        rx0.recv(Some(Duration::ZERO)),
        Err(FabricError::Malformed { from: 1, to: 0, .. })
    ));
    assert_eq!(tx0.outstanding(1).expect("link"), 0);
    // Weight 0 is refused at the sender.
    assert!(matches!(
        tx0.post(1, &msg(Class::Request, 0)),
        Err(FabricError::Encode { .. })
    ));
    assert_eq!(tx0.outstanding(1).expect("link"), 0);
}
