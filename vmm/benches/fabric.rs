//! Fabric benchmarks, every figure measured side by side in this one run (these machines are
//! shared and noisy: compare the ratios, not the absolute times).
//!
//! 1. Link round trip, 2 islands, one thread each: a Fetch answered by a Copy Void (small both
//!    ways) and by a Copy (4 KiB back), with the receivers polling (poll = 1 s, they never sleep)
//!    against the receivers asleep on their doorbells (poll = 0), and with the default poll.
//! 2. One-way 4 KiB throughput: island 1 keeps `credits` Fetches in flight, island 0 answers each
//!    with a Copy of 4 KiB; messages/s and MB/s of page content, in the same three modes.
//! 3. Poll-time sweep, to choose `DEFAULT_POLL`: the requester computes for a gap G between calls
//!    (a vCPU between faults), and a third thread computes throughout (another vCPU): with 3
//!    busy threads on 2 cores, every microsecond a receive loop spins is taken from a vCPU.
//!
//! Usage: `cargo bench -p popvmm --bench fabric [-- --quick]` (or `scripts/bench-fabric`).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use coherency::{KernelSet, Message, MessageKind};
use popvmm::fabric::{
    Fabric, FabricConfig, FabricError, PageBuf, PageMessage, Receiver, DEFAULT_POLL, PAGE_SIZE,
};

const POLLED: Duration = Duration::from_secs(1);
const DOORBELL: Duration = Duration::ZERO;

fn fetch(page: u64) -> PageMessage {
    Message {
        page,
        from: 1,
        gen: 0,
        kind: MessageKind::Fetch,
        users: KernelSet(0b11),
    }
}

fn config(poll: Duration) -> FabricConfig {
    FabricConfig {
        poll,
        ..FabricConfig::default()
    }
}

/// Island 0's receive loop: answers every Fetch, with a Copy of 4 KiB if `copy`, else a Copy
/// Void. Returns when the fabric shuts down.
fn answerer(mut rx: Receiver<PageMessage>, copy: bool) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let tx = rx.sender();
        let mut data = PageBuf::zeroed();
        data.as_bytes_mut().fill(0x5a);
        let mut answer = Message {
            page: 0,
            from: 0,
            gen: 0,
            kind: if copy {
                MessageKind::Copy { data, version: 1 }
            } else {
                MessageKind::CopyVoid { fetching: false }
            },
            users: KernelSet(0b11),
        };
        loop {
            match rx.recv(None) {
                Ok(Some((from, m))) => {
                    answer.page = m.page;
                    match tx.post(from, &answer) {
                        Ok(()) => {}
                        Err(FabricError::Shutdown) => return,
                        Err(e) => {
                            eprintln!("answerer: {e}");
                            return;
                        }
                    }
                }
                Ok(None) => {}
                Err(FabricError::Shutdown) => return,
                Err(e) => {
                    eprintln!("answerer: {e}");
                    return;
                }
            }
        }
    })
}

fn recv_one(rx: &mut Receiver<PageMessage>) -> PageMessage {
    match rx.recv(None) {
        Ok(Some((_, m))) => m,
        r => panic!("bench: no answer: {r:?}"),
    }
}

/// Every round trip (µs) made in `dur`.
fn round_trip(poll: Duration, copy: bool, dur: Duration) -> Vec<f64> {
    let f = Fabric::<PageMessage>::new(2, config(poll)).expect("fabric");
    let server = answerer(f.receiver(0).expect("receiver"), copy);
    let tx = f.sender(1).expect("sender");
    let mut rx = f.receiver(1).expect("receiver");
    // Warm-up.
    for i in 0..1000 {
        tx.send(0, &fetch(i)).expect("send");
        black_box(recv_one(&mut rx));
    }
    let mut lat = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        let t = Instant::now();
        tx.send(0, &fetch(n)).expect("send");
        black_box(recv_one(&mut rx));
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        n += 1;
    }
    if std::env::var("DBG").is_ok() {
        eprintln!("poll {:?}: {:?} n={n}", poll, f.stats().receivers);
    }
    f.shutdown();
    server.join().expect("answerer");
    lat
}

/// Median and mean of latency samples.
fn p50_mean(mut v: Vec<f64>) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    (median(std::mem::take(&mut v)), mean)
}

/// Copies of 4 KiB received per second over `dur`, with `credits` Fetches in flight.
fn throughput(poll: Duration, dur: Duration) -> f64 {
    let f = Fabric::<PageMessage>::new(2, config(poll)).expect("fabric");
    let server = answerer(f.receiver(0).expect("receiver"), true);
    let tx = f.sender(1).expect("sender");
    let mut rx = f.receiver(1).expect("receiver");
    let mut sent = 0u64;
    let mut got = 0u64;
    let mut run = |until: Instant, got: &mut u64| {
        while Instant::now() < until {
            for _ in 0..64 {
                while tx.try_send(0, &fetch(sent)).expect("send") {
                    sent += 1;
                }
                let m = recv_one(&mut rx);
                if let MessageKind::Copy { data, .. } = &m.kind {
                    black_box(data.as_bytes()[PAGE_SIZE - 1]);
                }
                *got += 1;
            }
        }
    };
    let mut warm = 0;
    run(Instant::now() + dur / 10, &mut warm);
    let start = Instant::now();
    run(start + dur, &mut got);
    let rate = got as f64 / start.elapsed().as_secs_f64();
    f.shutdown();
    server.join().expect("answerer");
    rate
}

/// Busy work: about `iters` iterations of a dependent integer chain.
fn compute(iters: u64) -> u64 {
    let mut x = 0x9e37_79b9_u64;
    for i in 0..iters {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// Iterations of `compute` per µs, measured.
fn calibrate() -> f64 {
    let n = 20_000_000;
    let start = Instant::now();
    black_box(compute(n));
    n as f64 / (start.elapsed().as_secs_f64() * 1e6)
}

/// A vCPU: computes until `stop`, counting work done.
fn vcpu(stop: Arc<AtomicBool>, work: Arc<AtomicU64>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            black_box(compute(10_000));
            work.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Work units per second of a lone vCPU thread.
fn vcpu_alone(dur: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let work = Arc::new(AtomicU64::new(0));
    let h = vcpu(Arc::clone(&stop), Arc::clone(&work));
    thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    h.join().expect("vcpu");
    work.load(Ordering::Relaxed) as f64 / dur.as_secs_f64()
}

struct SweepPoint {
    /// Every call's latency, the gap excluded, µs.
    calls: Vec<f64>,
    /// The competing vCPU's work per second.
    vcpu: f64,
}

fn sweep_point(poll: Duration, gap_iters: u64, dur: Duration) -> SweepPoint {
    let f = Fabric::<PageMessage>::new(2, config(poll)).expect("fabric");
    let server = answerer(f.receiver(0).expect("receiver"), false);
    let tx = f.sender(1).expect("sender");
    let mut rx = f.receiver(1).expect("receiver");
    let stop = Arc::new(AtomicBool::new(false));
    let work = Arc::new(AtomicU64::new(0));
    let other = vcpu(Arc::clone(&stop), Arc::clone(&work));
    thread::sleep(Duration::from_millis(20));
    let w0 = work.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut n = 0u64;
    let mut calls = Vec::with_capacity(1 << 16);
    while start.elapsed() < dur {
        black_box(compute(gap_iters));
        let t = Instant::now();
        tx.send(0, &fetch(n)).expect("send");
        black_box(recv_one(&mut rx));
        calls.push(t.elapsed().as_secs_f64() * 1e6);
        n += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let w = work.load(Ordering::Relaxed) - w0;
    stop.store(true, Ordering::Relaxed);
    other.join().expect("vcpu");
    f.shutdown();
    server.join().expect("answerer");
    SweepPoint {
        calls,
        vcpu: w as f64 / elapsed,
    }
}

/// `reps` runs of each of `modes`, interleaved (mode 1, mode 2, ..., mode 1, ...) so that a burst
/// of load on the shared host hits every mode alike: the samples of each mode.
fn samples<M: Copy, R>(modes: &[M], reps: usize, mut run: impl FnMut(M) -> R) -> Vec<Vec<R>> {
    let mut out: Vec<Vec<R>> = modes.iter().map(|_| Vec::with_capacity(reps)).collect();
    for _ in 0..reps {
        for (i, &m) in modes.iter().enumerate() {
            out[i].push(run(m));
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median of each mode's samples.
fn interleaved<M: Copy>(modes: &[M], reps: usize, run: impl FnMut(M) -> f64) -> Vec<f64> {
    samples(modes, reps, run).into_iter().map(median).collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 3 } else { 7 };
    let dur = Duration::from_millis(if quick { 150 } else { 250 });
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "== popvmm fabric benchmarks ({cores} cores, load {}, default poll {} µs; medians of {reps} \
         interleaved runs of {} ms)",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        DEFAULT_POLL.as_micros(),
        dur.as_millis()
    );
    let modes = [POLLED, DOORBELL, DEFAULT_POLL];

    println!(
        "\n1. Link round trip, 2 islands, one thread each (µs per call, median / mean of every \
         call; ratio = doorbell / polled)"
    );
    println!(
        "   {:<28} {:>15} {:>15} {:>15} {:>13}",
        "", "polled", "doorbell", "default", "ratio"
    );
    for (name, copy) in [
        ("Fetch -> Copy Void (small)", false),
        ("Fetch -> Copy (4 KiB back)", true),
    ] {
        let r: Vec<(f64, f64)> = samples(&modes, reps, |poll| round_trip(poll, copy, dur))
            .into_iter()
            .map(|runs| p50_mean(runs.concat()))
            .collect();
        let cell = |(p50, mean): (f64, f64)| format!("{p50:.2} / {mean:.2}");
        println!(
            "   {name:<28} {:>15} {:>15} {:>15} {:>5.1}x /{:>5.1}x",
            cell(r[0]),
            cell(r[1]),
            cell(r[2]),
            r[1].0 / r[0].0,
            r[1].1 / r[0].1
        );
    }

    println!(
        "\n2. One-way 4 KiB throughput ({} Fetches in flight, each answered by a 4 KiB Copy; \
         ratio = polled / doorbell)",
        FabricConfig::default().credits
    );
    println!(
        "   {:<32} {:>10} {:>10} {:>10} {:>8}",
        "", "polled", "doorbell", "default", "ratio"
    );
    let r = interleaved(&modes, reps, |poll| throughput(poll, dur));
    let mb = |r: f64| r * PAGE_SIZE as f64 / 1e6;
    println!(
        "   {:<32} {:>10.0} {:>10.0} {:>10.0} {:>7.1}x",
        "Copies/s",
        r[0],
        r[1],
        r[2],
        r[0] / r[1]
    );
    println!(
        "   {:<32} {:>10.0} {:>10.0} {:>10.0} {:>7.1}x",
        "MB/s of page content",
        mb(r[0]),
        mb(r[1]),
        mb(r[2]),
        r[0] / r[1]
    );

    println!(
        "\n3. Poll-time sweep: a requester computes G µs between small calls while another vCPU \
         computes throughout (3 busy threads on {cores} cores)"
    );
    println!(
        "   call: median µs per call (gap excluded); vCPU: the other vCPU's work against it alone"
    );
    let per_us = calibrate();
    let polls = [0u64, 2, 5, 10, 20, 50, 200];
    let gaps = [5.0f64, 20.0, 100.0];
    print!("   {:>8}", "poll µs");
    for g in gaps {
        print!(" | G={g:<3} µs: call  vCPU");
    }
    println!();
    let sweep_reps = reps.min(5);
    let mut rows = vec![Vec::new(); polls.len()];
    for g in gaps {
        let alone = interleaved(&[()], sweep_reps, |()| vcpu_alone(dur))[0];
        let points = samples(&polls, sweep_reps, |poll| {
            sweep_point(Duration::from_micros(poll), (g * per_us) as u64, dur)
        });
        for (row, pts) in rows.iter_mut().zip(points) {
            let vcpu = median(pts.iter().map(|p| 100.0 * p.vcpu / alone).collect());
            let call = median(pts.into_iter().flat_map(|p| p.calls).collect());
            row.push((call, vcpu));
        }
    }
    for (poll, row) in polls.iter().zip(rows) {
        print!("   {poll:>8}");
        for (call, vcpu) in row {
            print!(" | {call:>12.2} {vcpu:>4.0}%");
        }
        println!();
    }
}
