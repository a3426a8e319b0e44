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

/// Two islands driven by hand (no service threads: read-ahead asks with no thread waiting), to
/// follow one exchange of ranges: island 1 reads 8 pages ahead from the origin.
/// Each island's memory, each island's DSM, and the origin's data.
type Pair = (Vec<Arc<IslandMemory>>, Vec<Dsm>, Vec<u8>);

fn two_islands(pages: u64, batch: bool) -> Option<Pair> {
    let data: Vec<u8> = (0..pages * PAGE_SIZE)
        .map(|i| (i / PAGE_SIZE * 7 + i % 251) as u8)
        .collect();
    let mut memories = Vec::new();
    let mut dsms = Vec::new();
    for i in 0..2 {
        let mem = Arc::new(IslandMemory::new(SIZE).expect("reserve"));
        mem.protect(REGION, REGION, HostProt::ReadWrite)
            .expect("protect");
        if i == 0 {
            use vm_memory::{Bytes, GuestAddress};
            mem.guest()
                .write_slice(&data, GuestAddress(REGION))
                .expect("write");
        }
        let mut dsm = match Dsm::new(i as KernelId, Config::new(2), Arc::clone(&mem)) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("DSM unavailable here ({e}): skipped");
                return None;
            }
        };
        dsm.register(REGION, REGION).expect("register");
        if i == 0 {
            dsm.set_not_replicated(REGION, pages * PAGE_SIZE);
        }
        dsm.set_batch_ranges(batch);
        memories.push(mem);
        dsms.push(dsm);
    }
    Some((memories, dsms, data))
}

/// Delivers what each island queued until nothing is left; returns the frames sent.
fn deliver(dsms: &mut [Dsm]) -> Vec<(KernelId, Outgoing)> {
    let mut log = Vec::new();
    loop {
        let mut sent = Vec::new();
        for d in dsms.iter_mut() {
            sent.extend(d.take_outgoing());
        }
        if sent.is_empty() {
            return log;
        }
        for (to, out) in &sent {
            let r = match out.clone() {
                Outgoing::One(m) => dsms[*to as usize].on_message(m),
                Outgoing::Range(r) => dsms[*to as usize].on_range(r.into_messages()),
            };
            r.expect("handle");
        }
        log.extend(sent);
    }
}

fn read_ahead_pages(pages: u64) -> Vec<(PageId, bool)> {
    (0..pages)
        .map(|p| (REGION / PAGE_SIZE + p, false))
        .collect()
}

#[test]
fn a_range_is_one_exchange_and_one_copy() {
    const PAGES: u64 = 8;
    let Some((memories, mut dsms, data)) = two_islands(PAGES, true) else {
        return;
    };
    assert_eq!(
        dsms[1].read_ahead(&read_ahead_pages(PAGES)).expect("ahead"),
        PAGES
    );
    let log = deliver(&mut dsms);
    // One range of Fetches there, one range of Copies back.
    let kinds: Vec<(KernelId, coherency::MessageType, usize)> = log
        .iter()
        .map(|(to, out)| match out {
            Outgoing::One(m) => (*to, m.kind.message_type(), 1),
            Outgoing::Range(r) => (*to, r.message_type(), r.len()),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (0, coherency::MessageType::Fetch, PAGES as usize),
            (1, coherency::MessageType::Copy, PAGES as usize)
        ]
    );
    let st = dsms[1].stats();
    assert_eq!(st.copies_saved.load(Ordering::Relaxed), PAGES - 1);
    assert_eq!(dsms[0].stats().ranges_sent.load(Ordering::Relaxed), 1);
    assert_eq!(st.range_pages.load(Ordering::Relaxed), PAGES);
    for p in 0..PAGES {
        let page = REGION / PAGE_SIZE + p;
        assert_eq!(dsms[1].view(page).state, State::Shared, "page {p}");
        // Installed read-only: reading it takes no fault (nobody serves faults here).
        let at = (memories[1].host_base() + REGION + p * PAGE_SIZE) as *const u8;
        // SAFETY: an installed page of island 1's registered region.
        let got = unsafe { std::slice::from_raw_parts(at, PAGE_SIZE as usize) };
        let want = &data[(p * PAGE_SIZE) as usize..((p + 1) * PAGE_SIZE) as usize];
        assert!(got == want, "page {p} differs");
    }
}

#[test]
fn without_ranges_the_same_exchange_takes_a_message_a_page() {
    const PAGES: u64 = 8;
    let Some((_memories, mut dsms, _)) = two_islands(PAGES, false) else {
        return;
    };
    dsms[1].read_ahead(&read_ahead_pages(PAGES)).expect("ahead");
    let log = deliver(&mut dsms);
    assert_eq!(log.len(), 2 * PAGES as usize);
    assert!(log.iter().all(|(_, o)| matches!(o, Outgoing::One(_))));
    assert_eq!(dsms[1].stats().copies_saved.load(Ordering::Relaxed), 0);
    for p in 0..PAGES {
        assert_eq!(
            dsms[1].view(REGION / PAGE_SIZE + p).state,
            State::Shared,
            "page {p}"
        );
    }
}

/// A page of the run is there already (another fault raced us): the run's UFFDIO_COPY stops
/// there and the rest goes page by page, as without ranges.
#[test]
fn a_run_cut_by_a_present_page_goes_on_page_by_page() {
    const PAGES: u64 = 8;
    let Some((memories, mut dsms, data)) = two_islands(PAGES, true) else {
        return;
    };
    dsms[1].read_ahead(&read_ahead_pages(PAGES)).expect("ahead");
    let fetches = dsms[1].take_outgoing();
    for (to, out) in fetches {
        match out {
            Outgoing::Range(r) => dsms[to as usize].on_range(r.into_messages()),
            Outgoing::One(m) => dsms[to as usize].on_message(m),
        }
        .expect("fetch");
    }
    let copies = dsms[0].take_outgoing();
    // Page 3 gets there first, with other bytes.
    let marker = [0xa5u8; PAGE_SIZE as usize];
    let at3 = memories[1].host_base() + REGION + 3 * PAGE_SIZE;
    // SAFETY: `marker` is one page of readable bytes.
    unsafe { dsms[1].uffd.copy(at3, marker.as_ptr(), PAGE_SIZE, true) }.expect("copy");
    for (_, out) in copies {
        match out {
            Outgoing::Range(r) => dsms[1].on_range(r.into_messages()),
            Outgoing::One(m) => dsms[1].on_message(m),
        }
        .expect("copy");
    }
    // Pages 0..3 in one call (2 saved), 3 already there, 4..8 one by one.
    assert_eq!(dsms[1].stats().copies_saved.load(Ordering::Relaxed), 2);
    for p in 0..PAGES {
        let at = (memories[1].host_base() + REGION + p * PAGE_SIZE) as *const u8;
        // SAFETY: an installed page of island 1's registered region.
        let got = unsafe { std::slice::from_raw_parts(at, PAGE_SIZE as usize) };
        let want = if p == 3 {
            &marker[..]
        } else {
            &data[(p * PAGE_SIZE) as usize..((p + 1) * PAGE_SIZE) as usize]
        };
        assert!(got == want, "page {p}");
    }
}
