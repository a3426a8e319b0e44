//! rust/migrate: a Rust guest program using the `popcorn` crate (guest-agent/popcorn). Its output
//! is the same natively (the calls fail with ENOSYS, nothing moves) and under popvmm (threads
//! move between islands), unless something is wrong.
//!
//! Main thread: to node 1 with a closure callback and back; thread-locals, stack, heap and f64
//! values checked. Four std threads: each migrates to another node and back 10 times, with its
//! own data. A proposal followed by check_migrate.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

thread_local! {
    static TLS: Cell<u64> = const { Cell::new(0) };
}

/// popvmm answers EBUSY to a migration asked right after the thread arrived while the origin
/// still records the previous one (a popvmm race, see the README); retry those.
fn go(nid: i32, under: bool) -> bool {
    for _ in 0..1_000_000 {
        match popcorn::migrate(nid) {
            Ok(()) => {
                assert_eq!(popcorn::getnid(), Ok(nid), "after migrate({nid})");
                return true;
            }
            Err(popcorn::Errno::ENOSYS) if !under => return false,
            Err(popcorn::Errno::EBUSY) if popcorn::getnid() != Ok(nid) => std::thread::yield_now(),
            Err(e) => panic!("migrate({nid}): {e}"),
        }
    }
    panic!("migrate({nid}): EBUSY for ever");
}

fn main() {
    let (under, nodes) = match popcorn::nodes() {
        Ok(n) => (true, n as i32),
        Err(popcorn::Errno::ENOSYS) => (false, 4),
        Err(e) => panic!("get_node_info: {e}"),
    };
    let other = if nodes > 1 { 1 } else { 0 };

    TLS.with(|t| t.set(0x5eed));
    let heap: Vec<u64> = (0..100_000).map(|i| i * 7).collect();
    let stack: [u32; 1024] = std::array::from_fn(|i| i as u32 ^ 0xabcd);
    let x = std::hint::black_box(1.0f64) / 3.0;
    let callbacks = AtomicU32::new(0);
    let ran_on = Cell::new(-1);
    match popcorn::migrate_with(other, || {
        callbacks.fetch_add(1, Ordering::SeqCst);
        ran_on.set(popcorn::getnid().unwrap_or(-1));
    }) {
        Ok(()) => assert!(under && ran_on.get() == other),
        Err(popcorn::Errno::ENOSYS) if !under => {}
        Err(e) => panic!("migrate_with: {e}"),
    }
    let ok = TLS.with(|t| t.get()) == 0x5eed
        && heap.iter().enumerate().all(|(i, &v)| v == i as u64 * 7)
        && stack.iter().enumerate().all(|(i, &v)| v == i as u32 ^ 0xabcd)
        && x == 1.0 / 3.0;
    println!(
        "main: migrate_with ran its callback {} time(s) where it arrived; state intact: {ok}",
        callbacks.load(Ordering::SeqCst) + u32::from(!under)
    );
    go(0, under);

    let total = Arc::new(AtomicU32::new(0));
    let handles: Vec<_> = (0..4)
        .map(|k: u64| {
            let total = Arc::clone(&total);
            std::thread::spawn(move || {
                TLS.with(|t| t.set(k));
                let mut v: Vec<u64> = (0..10_000).map(|i| i + k).collect();
                let home = popcorn::getnid().unwrap_or(0);
                let away = (home + 1 + k as i32 % (nodes - 1).max(1)) % nodes;
                for round in 0..10 {
                    go(if round % 2 == 0 { away } else { home }, under);
                    for e in v.iter_mut() {
                        *e += 1;
                    }
                    total.fetch_add(1, Ordering::SeqCst);
                }
                let sum: u64 = v.iter().sum();
                (TLS.with(|t| t.get()) == k, sum)
            })
        })
        .collect();
    for (k, h) in handles.into_iter().enumerate() {
        let (tls_ok, sum) = h.join().expect("thread");
        println!("thread {k}: 10 rounds away and back, thread-local ok: {tls_ok}, sum {sum}");
    }
    println!("rounds: {}", total.load(Ordering::SeqCst));

    match popcorn::propose_migration(0, other) {
        Ok(()) | Err(popcorn::Errno::ENOSYS) => {}
        Err(e) => panic!("propose: {e}"),
    }
    let moved = match popcorn::check_migrate() {
        Ok(m) => m,
        Err(popcorn::Errno::ENOSYS) if !under => true,
        Err(e) => panic!("check_migrate: {e}"),
    };
    println!("check_migrate after a proposal: moved {moved}");
    if under {
        go(0, under);
    }
    println!("done");
}
