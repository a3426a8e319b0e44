//! The DSM on real memory, without KVM: several islands in this process, each with its own
//! memory and service thread, wired by channels; host threads stand for the guest's threads and
//! touch their island's memory directly. Needs root (userfaultfd for kernel-mode faults).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use coherency::{Config, KernelId, State};

use super::*;
use crate::memory::HostProt;

const REGION: u64 = 1 << 20;
const SIZE: u64 = 1 << 24;

struct Islands {
    memories: Vec<Arc<IslandMemory>>,
    stop: Arc<AtomicBool>,
    services: Vec<std::thread::JoinHandle<Dsm>>,
}

fn start(islands: usize, origin_data: Option<&[u8]>) -> Option<Islands> {
    let config = Config::new(islands);
    let mut memories = Vec::new();
    let mut dsms = Vec::new();
    for i in 0..islands {
        let mem = Arc::new(IslandMemory::new(SIZE).expect("reserve"));
        mem.protect(REGION, REGION, HostProt::ReadWrite)
            .expect("protect");
        if i == 0 {
            if let Some(data) = origin_data {
                use vm_memory::{Bytes, GuestAddress};
                mem.guest()
                    .write_slice(data, GuestAddress(REGION))
                    .expect("write");
            }
        }
        let mut dsm = match Dsm::new(i as KernelId, config, Arc::clone(&mem)) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("DSM unavailable here ({e}): skipped");
                return None;
            }
        };
        dsm.register(REGION, REGION).expect("register");
        if i == 0 && origin_data.is_some() {
            dsm.set_not_replicated(REGION, PAGE_SIZE);
        }
        memories.push(mem);
        dsms.push(dsm);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (senders, receivers): (Vec<Sender<PageMessage>>, Vec<Receiver<PageMessage>>) =
        (0..islands).map(|_| channel()).unzip();
    let mut services = Vec::new();
    for (dsm, rx) in dsms.into_iter().zip(receivers) {
        let senders = senders.clone();
        let stop = Arc::clone(&stop);
        services.push(std::thread::spawn(move || serve(dsm, rx, senders, stop)));
    }
    Some(Islands {
        memories,
        stop,
        services,
    })
}

fn serve(
    mut dsm: Dsm,
    rx: Receiver<PageMessage>,
    tx: Vec<Sender<PageMessage>>,
    stop: Arc<AtomicBool>,
) -> Dsm {
    while !stop.load(Ordering::Relaxed) {
        let mut busy = dsm.poll_faults().expect("faults") > 0;
        while let Ok(msg) = rx.try_recv() {
            dsm.on_message(msg).expect("message");
            busy = true;
        }
        for (to, msg) in dsm.take_outbox() {
            tx[to as usize].send(msg).expect("send");
        }
        if !busy {
            std::thread::yield_now();
        }
    }
    dsm
}

impl Islands {
    fn ptr(&self, island: usize, offset: u64) -> *mut u8 {
        (self.memories[island].host_base() + REGION + offset) as *mut u8
    }

    fn stop(self) -> Vec<Dsm> {
        self.stop.store(true, Ordering::Relaxed);
        self.services
            .into_iter()
            .map(|h| h.join().expect("service"))
            .collect()
    }
}

#[test]
fn the_origin_data_reaches_every_island() {
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let Some(islands) = start(3, Some(&data)) else {
        return;
    };
    for i in 1..3 {
        for off in [0u64, 100, 4095] {
            // SAFETY: inside the island's registered region; faults are served by its DSM.
            let v = unsafe { std::ptr::read_volatile(islands.ptr(i, off)) };
            assert_eq!(v, data[off as usize]);
        }
    }
    // A fresh page nobody wrote reads zero everywhere.
    // SAFETY: as above.
    let fresh = unsafe { std::ptr::read_volatile(islands.ptr(2, 3 * PAGE_SIZE + 8)) };
    assert_eq!(fresh, 0);
    let dsms = islands.stop();
    let page = REGION / PAGE_SIZE;
    assert_eq!(dsms[0].view(page).state, State::Shared);
    assert_eq!(dsms[1].view(page).state, State::Shared);
    // Per-page traffic: each reader faulted once (its later reads hit its copy) and the origin
    // answered its Fetches; nobody wrote.
    let fetch = coherency::MessageType::Fetch.index();
    let copy = coherency::MessageType::Copy.index();
    for (i, dsm) in dsms.iter().enumerate().skip(1) {
        let t = dsm.traffic(page);
        assert_eq!((t.read_faults, t.write_faults), (1, 0), "island {i}: {t:?}");
        assert!(t.received[copy] >= 1, "island {i}: {t:?}");
    }
    let origin = dsms[0].traffic(page);
    assert_eq!((origin.read_faults, origin.write_faults), (0, 0));
    assert!(origin.received[fetch] >= 1, "{origin:?}");
    let total: u64 = dsms.iter().map(|d| d.traffic(page).messages()).sum();
    assert!(
        total >= 4,
        "two fetches and their answers at least: {total}"
    );
    assert_eq!(dsms[0].traffic(page + 100), PageTraffic::default());
}

#[test]
fn atomic_increments_from_every_island_end_exact() {
    const ISLANDS: usize = 4;
    const PER_THREAD: u64 = 20_000;
    let Some(islands) = start(ISLANDS, None) else {
        return;
    };
    let islands = Arc::new(islands);
    let done = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(std::sync::Barrier::new(ISLANDS));
    let workers: Vec<_> = (0..ISLANDS)
        .map(|i| {
            let islands = Arc::clone(&islands);
            let done = Arc::clone(&done);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                // SAFETY: an aligned word inside the island's registered region, only ever
                // accessed atomically by the test threads.
                let word = unsafe { &*(islands.ptr(i, 64) as *const AtomicU64) };
                for n in 0..PER_THREAD {
                    word.fetch_add(1, Ordering::SeqCst);
                    if n % 256 == 0 {
                        // Let the others in: the page must bounce between islands.
                        std::thread::yield_now();
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    // Read the total on every island.
    for i in 0..ISLANDS {
        // SAFETY: as above.
        let word = unsafe { &*(islands.ptr(i, 64) as *const AtomicU64) };
        assert_eq!(word.load(Ordering::SeqCst), ISLANDS as u64 * PER_THREAD);
    }
    let islands = Arc::into_inner(islands).expect("workers done");
    let dsms = islands.stop();
    let writes: u64 = dsms
        .iter()
        .map(|d| d.stats().write_protect.load(Ordering::Relaxed))
        .sum();
    let missing: u64 = dsms
        .iter()
        .map(|d| d.stats().write_missing.load(Ordering::Relaxed))
        .sum();
    eprintln!("write-protect faults {writes}, write-missing faults {missing}");
    assert!(
        writes + missing > ISLANDS as u64,
        "the page moved between islands"
    );
}

/// The program made a page PROT_NONE on the origin (mprotect) while another island still needs
/// it: the origin reads it for the Copy all the same (/proc/self/mem; process_vm_readv failed
/// with "Bad address" and the program was killed).
#[test]
fn a_prot_none_page_still_answers_a_fetch() {
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 241) as u8 + 1).collect();
    let Some(islands) = start(2, Some(&data)) else {
        return;
    };
    islands.memories[0]
        .protect(REGION, PAGE_SIZE, HostProt::None)
        .expect("protect");
    // The read waits for the origin's Copy; with a read that honours the protection the origin's
    // service thread fails and the read would wait forever, so it runs on a thread of its own.
    let at = islands.ptr(1, 77) as usize;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        // SAFETY: inside island 1's registered region; faults are served by its DSM.
        let v = unsafe { std::ptr::read_volatile(at as *const u8) };
        let _ = tx.send(v);
    });
    let v = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("no Copy: the origin could not read its PROT_NONE page");
    assert_eq!(v, data[77]);
    let dsms = islands.stop();
    assert_eq!(dsms[1].view(REGION / PAGE_SIZE).state, State::Shared);
}
