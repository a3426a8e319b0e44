//! A Rust guest: std threads, a Mutex, a channel, formatting, and a heap.
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

fn main() {
    let total = Arc::new(Mutex::new(0u64));
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..3u64)
        .map(|id| {
            let total = Arc::clone(&total);
            let tx = tx.clone();
            thread::spawn(move || {
                let local: u64 = (1..=100_000u64).map(|x| x * (id + 1) % 1000).sum();
                *total.lock().expect("lock") += local;
                tx.send((id, local)).expect("send");
            })
        })
        .collect();
    drop(tx);
    for h in handles {
        h.join().expect("join");
    }
    let mut got: Vec<(u64, u64)> = rx.iter().collect();
    got.sort();
    for (id, v) in &got {
        println!("thread {id}: {v}");
    }
    let words: Vec<String> = std::env::args().skip(1).collect();
    println!("args: {words:?}");
    println!("total: {}", *total.lock().expect("lock"));
    eprintln!("rust stderr line");
}
