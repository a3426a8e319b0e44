//! Distributed shared memory: the coherency protocol on real island memory.
//!
//! Each island has one [`Dsm`]: the island's [`coherency::Engine`] over the island's memory, with a
//! userfaultfd on the coherent ranges (every writable range of the program: .data, .bss, heap,
//! anonymous mmaps, stacks). A guest access to a page whose local copy is not valid faults in KVM;
//! KVM's `get_user_pages` on the host mapping raises a userfaultfd event (MISSING: no valid copy;
//! write-protect: a write to a Shared copy), which becomes an access submitted to the engine. The
//! engine's answers become `UFFDIO_COPY` (install, read-only for Shared), `UFFDIO_WRITEPROTECT`
//! (upgrade, downgrade) and `MADV_DONTNEED` (invalidate); KVM follows the host page tables. The
//! island kernel's own accesses to guest memory (system calls copying to and from the program)
//! fault the same way on their host threads, so they get the page through the protocol exactly as
//! a guest access does.
//!
//! The island kernel reaches its [`Dsm`] only through its [`DsmPort`] (`port.rs`), which sends
//! whatever the engine queued before it returns: faults and messages in (the island's service
//! thread), ranges registered and forgotten (the memory calls), snapshots out (the control
//! socket). The `Dsm` never blocks and never touches a page the engine does not hold mapped (that
//! would fault on itself).

mod hold;
pub mod port;
pub mod readahead;
pub mod uffd;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use coherency::{
    Access, Config, Engine, Host, KernelId, MapChange, Message, MessageType, PageId, PageView,
    ProtocolError, State,
};

use crate::memory::IslandMemory;
pub use port::{DsmPort, Outgoing, PageSnapshot, SendPage};
pub use readahead::{Ahead, Book, ReadAhead, Window};
pub use uffd::{Fault, Userfaultfd};

pub use crate::memory::layout::PAGE_SIZE;
use crate::metrics::LatencyHistogram;
use crate::sync::Wakeup;

/// The content of one page, as a Copy message carries it (the messaging layer's page buffer).
pub use crate::fabric::PageBuf;

/// A protocol message carrying page contents.
pub type PageMessage = Message<PageBuf>;

/// Errors of the DSM layer.
#[derive(Debug, thiserror::Error)]
pub enum DsmError {
    #[error("cannot open a userfaultfd (popvmm needs root for several islands): {0}")]
    Open(std::io::Error),
    #[error("userfaultfd {op} of {start:#x}+{len:#x} failed: {source}")]
    Uffd {
        op: &'static str,
        start: u64,
        len: u64,
        source: std::io::Error,
    },
    #[error("reading page {page:#x} for a Copy failed: {source}")]
    Read { page: u64, source: std::io::Error },
    #[error("coherency protocol: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("sending a coherency message: {0}")]
    Send(crate::fabric::FabricError),
    #[error("this program runs on one island: it has no coherency layer")]
    Disabled,
    #[error("island {island}: {source} (page {page:#x})")]
    Host {
        island: KernelId,
        page: u64,
        source: Box<DsmError>,
    },
}

/// Fault counters and latencies of one island, readable from other threads at any time.
#[derive(Debug, Default)]
pub struct DsmStats {
    /// Read faults on a page with no valid copy.
    pub read_missing: AtomicU64,
    /// Write faults on a page with no valid copy.
    pub write_missing: AtomicU64,
    /// Writes to a read-only (Shared) copy.
    pub write_protect: AtomicU64,
    /// Faults that needed no message (the page was already valid, or first touch on one island).
    pub local: AtomicU64,
    /// Faults resolved, by latency.
    pub latency: LatencyHistogram,
    /// Messages of an older generation of their page (sent before a layout change reset it,
    /// decision 16 of `coherency`): answers dropped, requests answered with Reset.
    pub stale_messages: AtomicU64,
    /// Pages asked for ahead of a thread (the top of an arriving thread's stack) that needed the
    /// protocol: each saves that thread one or two faults.
    pub prefetched: AtomicU64,
    /// Pages asked for by read-ahead (`readahead.rs`): each is a fault saved if the program
    /// reads it before another island writes it.
    pub read_ahead: AtomicU64,
    /// Read-ahead pages the program went through: the pattern's next fault came past them (or
    /// the program faulted on them while they were on their way). A read of an installed page
    /// takes no fault, so this is what can be seen of use.
    pub read_ahead_used: AtomicU64,
    /// Read-ahead pages the program faulted on while they were still on their way (used, but
    /// the thread waited for part of the exchange).
    pub read_ahead_late: AtomicU64,
    /// Read-ahead pages dropped here (another island wrote them) before they were seen used:
    /// an upper bound on the pages read ahead in vain (a page the program read without its
    /// pattern going past it, then lost, counts here).
    pub read_ahead_dropped: AtomicU64,
    /// Holding windows (decision 17 of `coherency`) that held back a request: each one lets
    /// this island keep a page it just got writable for a while.
    pub holds: AtomicU64,
    /// Time requests waited in those windows, in ns (from the first held request to the end).
    pub held_ns: AtomicU64,
    /// Range messages sent (`--batch-ranges`): each carries several page messages in one frame.
    pub ranges_sent: AtomicU64,
    /// Page messages those ranges carried (each would have been a frame of its own).
    pub range_pages: AtomicU64,
    /// `UFFDIO_COPY` calls saved by installing the consecutive pages of a range at once.
    pub copies_saved: AtomicU64,
}

/// What one island saw of one page since the protocol started: the faults its threads (and its
/// kernel) took there, and the protocol messages it received about the page. Summed over the
/// islands, `received` counts every message the page cost; the faults say who read and who wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageTraffic {
    /// Read faults on a page with no valid copy.
    pub read_faults: u64,
    /// Write faults: on a page with no valid copy, or on a read-only (Shared) copy.
    pub write_faults: u64,
    /// Messages received about the page, by type (index: `MessageType::index`).
    pub received: [u64; MessageType::ALL.len()],
}

impl PageTraffic {
    /// Every message received about the page.
    pub fn messages(&self) -> u64 {
        self.received.iter().sum()
    }
}

/// One island's coherency layer.
pub struct Dsm {
    island: KernelId,
    engine: Engine<PageBuf>,
    uffd: Userfaultfd,
    memory: Arc<IslandMemory>,
    started: Instant,
    outbox: Vec<(KernelId, PageMessage)>,
    /// Faults waiting for the engine, by page: when each started (for the latency figures).
    waiting: HashMap<PageId, Vec<Instant>>,
    stats: Arc<DsmStats>,
    /// /proc/self/mem, to read a page for a Copy whatever its protection (see `read_page`).
    mem_file: std::fs::File,
    faults: Vec<Fault>,
    /// Per-page faults and messages (for `/pages`), dropped with the page on munmap.
    traffic: HashMap<PageId, PageTraffic>,
    /// Notified when a prefetch completes (see [`Dsm::prefetch_write`]).
    prefetch_done: Arc<Wakeup>,
    /// The read-ahead pattern detector (None: read-ahead is off).
    read_ahead: Option<ReadAhead>,
    /// What read-ahead proposed since the last [`Dsm::take_read_ahead`].
    ahead_requests: Vec<AheadRequest>,
    /// Pages asked for by read-ahead that were not seen used nor dropped yet, and how the recent
    /// ones fared.
    ahead: Book,
    /// Open holding windows (`hold.rs`).
    holds: hold::Holds,
    /// Whether consecutive page messages go as one range (`--batch-ranges`).
    batch_ranges: bool,
    /// Installs deferred while the messages of a range are handled (see [`Dsm::on_range`]).
    batch: Batch,
}

/// Installs of a range, deferred so that consecutive pages go in one `UFFDIO_COPY`.
#[derive(Debug, Default)]
struct Batch {
    /// Whether installs are deferred now (only while a range is handed to the engine).
    on: bool,
    /// The deferred installs, in the engine's order: page, content (None: zeros), writable.
    installs: Vec<(PageId, Option<PageBuf>, bool)>,
    /// Pages whose waiting threads are woken after the installs (completions meanwhile).
    wakes: Vec<PageId>,
    /// One contiguous buffer for a run of pages (reused).
    staging: Vec<u8>,
}

/// Pages read-ahead proposes after a fault, before the layout has a say (see
/// [`Dsm::take_read_ahead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AheadRequest {
    /// The page the thread faulted on: only pages of its mapping may be read ahead.
    pub fault: PageId,
    /// Whether that fault was a write: then only pages never held here are read ahead (a
    /// read-only copy of an Invalid page would not spare the write its fault).
    pub write: bool,
    pub window: Window,
}

/// The access token of popvmm's own accesses (prefetches), told apart from the faulting threads'
/// ids (host thread ids, below 2^32).
const PREFETCH: u64 = u64::MAX;

impl fmt::Debug for Dsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dsm")
            .field("island", &self.island)
            .field("pages", &self.engine.page_count())
            .finish()
    }
}

/// The engine's host on an island: what the engine asks is done at once, on the host mapping.
struct IslandHost<'a> {
    island: KernelId,
    uffd: &'a Userfaultfd,
    memory: &'a IslandMemory,
    mem_file: &'a std::fs::File,
    outbox: &'a mut Vec<(KernelId, PageMessage)>,
    waiting: &'a mut HashMap<PageId, Vec<Instant>>,
    stats: &'a DsmStats,
    prefetch_done: &'a Wakeup,
    ahead: &'a mut Book,
    started: Instant,
    holds: &'a mut hold::Holds,
    batch: &'a mut Batch,
    error: Option<DsmError>,
}

impl IslandHost<'_> {
    fn addr(&self, page: PageId) -> u64 {
        self.memory.host_base() + page * PAGE_SIZE
    }

    fn fail(&mut self, page: PageId, e: DsmError) {
        if self.error.is_none() {
            self.error = Some(DsmError::Host {
                island: self.island,
                page: page * PAGE_SIZE,
                source: Box::new(e),
            });
        }
    }

    /// Installs what a range deferred: each run of consecutive pages with the same protection in
    /// one `UFFDIO_COPY` (from a staging buffer: the pages came through the engine as separate
    /// buffers), then the wakes of the completions that came meanwhile. A run the kernel copies
    /// only part of (a page already there, EEXIST; a layout change under way, EAGAIN) goes on
    /// page by page from the first page not copied, exactly as without ranges (so errors are
    /// today's). Called before anything else touches memory or wakes a thread, so the engine's
    /// actions take effect in their order.
    fn flush_installs(&mut self) {
        if self.batch.installs.is_empty() && self.batch.wakes.is_empty() {
            return;
        }
        let installs = std::mem::take(&mut self.batch.installs);
        let mut i = 0;
        while i < installs.len() {
            let (first, _, writable) = installs[i];
            let mut end = i + 1;
            while end < installs.len()
                && installs[end].0 == first + (end - i) as u64
                && installs[end].2 == writable
            {
                end += 1;
            }
            let run = &installs[i..end];
            let mut done = 0;
            if run.len() > 1 {
                let mut staging = std::mem::take(&mut self.batch.staging);
                staging.clear();
                for (_, data, _) in run {
                    staging.extend_from_slice(match data {
                        Some(d) => d.as_bytes(),
                        None => &ZERO_PAGE,
                    });
                }
                // SAFETY: `staging` holds run.len() pages of readable bytes.
                let copied = unsafe {
                    self.uffd.copy_run(
                        self.addr(first),
                        staging.as_ptr(),
                        run.len() as u64 * PAGE_SIZE,
                        writable,
                    )
                };
                self.batch.staging = staging;
                done = ((copied / PAGE_SIZE) as usize).min(run.len());
                if done > 1 {
                    self.stats
                        .copies_saved
                        .fetch_add(done as u64 - 1, Ordering::Relaxed);
                }
            }
            for (page, data, writable) in &run[done..] {
                let src = match data {
                    Some(d) => d.as_bytes().as_ptr(),
                    None => ZERO_PAGE.as_ptr(),
                };
                // SAFETY: `src` is one page of readable bytes.
                let r = unsafe { self.uffd.copy(self.addr(*page), src, PAGE_SIZE, *writable) };
                self.uffd_result(*page, "copy", r);
            }
            i = end;
        }
        for page in std::mem::take(&mut self.batch.wakes) {
            let r = self.uffd.wake(self.addr(page), PAGE_SIZE);
            self.uffd_result(page, "wake", r);
        }
    }

    fn uffd_result(&mut self, page: PageId, op: &'static str, r: std::io::Result<()>) {
        if let Err(source) = r {
            let start = page * PAGE_SIZE;
            self.fail(
                page,
                DsmError::Uffd {
                    op,
                    start,
                    len: PAGE_SIZE,
                    source,
                },
            );
        }
    }
}

static ZERO_PAGE: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

impl Host<PageBuf> for IslandHost<'_> {
    fn now(&mut self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn hold_until(&mut self, page: PageId, at: u64) {
        self.stats.holds.fetch_add(1, Ordering::Relaxed);
        let now = self.now();
        self.holds.add(page, at, now);
    }

    fn send(&mut self, to: KernelId, msg: PageMessage) {
        self.outbox.push((to, msg));
    }

    fn read_page(&mut self, page: PageId) -> PageBuf {
        use std::os::unix::fs::FileExt;
        self.flush_installs();
        let mut buf = PageBuf::zeroed();
        // Through /proc/self/mem, not a plain copy nor process_vm_readv: the program may have
        // made the page PROT_NONE (mprotect) while another island still needs its content, and
        // the protocol must answer that island's Fetch all the same. Reads of /proc/self/mem
        // are forced (FOLL_FORCE): they read a PROT_NONE page of a mapping that may be made
        // readable (ours: private anonymous, VM_MAYREAD), where process_vm_readv fails with
        // EFAULT. The engine only asks for mapped pages, so the read never waits on our own
        // userfaultfd.
        let r = self
            .mem_file
            .read_exact_at(buf.as_bytes_mut(), self.addr(page));
        if let Err(source) = r {
            self.fail(
                page,
                DsmError::Read {
                    page: page * PAGE_SIZE,
                    source,
                },
            );
        }
        buf
    }

    fn map(&mut self, page: PageId, change: MapChange<PageBuf>) {
        let addr = self.addr(page);
        if self.batch.on {
            match change {
                MapChange::Install { data, writable } => {
                    self.batch.installs.push((page, Some(data), writable));
                    return;
                }
                MapChange::InstallInitial { writable } => {
                    self.batch.installs.push((page, None, writable));
                    return;
                }
                // Anything else takes effect after the installs before it.
                _ => self.flush_installs(),
            }
        }
        match change {
            MapChange::Install { data, writable } => {
                // SAFETY: `data` is one page of readable bytes.
                let r = unsafe {
                    self.uffd
                        .copy(addr, data.as_bytes().as_ptr(), PAGE_SIZE, writable)
                };
                self.uffd_result(page, "copy", r);
            }
            MapChange::InstallInitial { writable } => {
                // A copy of zeros rather than UFFDIO_ZEROPAGE: the shared zero page cannot carry
                // the write protection a read-only copy needs.
                // SAFETY: ZERO_PAGE is one page of readable bytes.
                let r = unsafe {
                    self.uffd
                        .copy(addr, ZERO_PAGE.as_ptr(), PAGE_SIZE, writable)
                };
                self.uffd_result(page, "copy", r);
            }
            MapChange::Upgrade => {
                let r = self.uffd.write_protect(addr, PAGE_SIZE, false);
                self.uffd_result(page, "unprotect", r);
            }
            MapChange::Downgrade => {
                let r = self.uffd.write_protect(addr, PAGE_SIZE, true);
                self.uffd_result(page, "write-protect", r);
            }
            MapChange::Drop => {
                if self.ahead.dropped(page) {
                    self.stats
                        .read_ahead_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
                if let Err(source) = self.memory.discard(page * PAGE_SIZE, PAGE_SIZE) {
                    let e = DsmError::Uffd {
                        op: "discard",
                        start: page * PAGE_SIZE,
                        len: PAGE_SIZE,
                        source: std::io::Error::other(source.to_string()),
                    };
                    self.fail(page, e);
                }
            }
        }
    }

    fn complete(&mut self, page: PageId, token: u64, _access: Access) {
        if token == PREFETCH {
            // No thread waits in the userfaultfd for this one, and it is no fault to time.
            self.prefetch_done.notify();
            return;
        }
        // Installing or unprotecting already woke the faulting threads; a completion without a
        // mapping change (the page became valid meanwhile) needs the wake. In a range, after the
        // deferred installs (a thread woken before its page is there would only fault again).
        if self.batch.on {
            self.batch.wakes.push(page);
        } else {
            let r = self.uffd.wake(self.addr(page), PAGE_SIZE);
            self.uffd_result(page, "wake", r);
        }
        if let Some(started) = self.waiting.get_mut(&page).and_then(|v| v.pop()) {
            self.stats
                .latency
                .record(started.elapsed().as_nanos().min(u64::MAX as u128) as u64);
        }
    }

    fn retry(&mut self, page: PageId, token: u64, _access: Access) {
        if token == PREFETCH {
            // Nobody waits for it: the page is simply not fetched.
            return;
        }
        // The page was reset under the fault: the thread faults again and meets the new layout
        // (a fresh page of the new generation, or PROT_NONE after munmap). A wake of a range no
        // longer registered is harmless: unregistering woke it already.
        self.flush_installs();
        let _ = self.uffd.wake(self.addr(page), PAGE_SIZE);
        if let Some(w) = self.waiting.get_mut(&page) {
            w.pop();
        }
    }
}

impl Dsm {
    /// The coherency layer of island `island` of `islands`, over `memory`.
    pub fn new(
        island: KernelId,
        config: Config,
        memory: Arc<IslandMemory>,
    ) -> Result<Self, DsmError> {
        let uffd = Userfaultfd::new().map_err(DsmError::Open)?;
        let mem_file = std::fs::File::open("/proc/self/mem")
            .map_err(|source| DsmError::Read { page: 0, source })?;
        Ok(Self {
            island,
            engine: Engine::new(island, config),
            uffd,
            memory,
            started: Instant::now(),
            outbox: Vec::new(),
            waiting: HashMap::new(),
            stats: Arc::new(DsmStats::default()),
            mem_file,
            traffic: HashMap::new(),
            faults: Vec::new(),
            prefetch_done: Arc::new(Wakeup::new()),
            read_ahead: None,
            ahead_requests: Vec::new(),
            ahead: Book::default(),
            holds: hold::Holds::default(),
            batch_ranges: false,
            batch: Batch::default(),
        })
    }

    /// Turns the batching of page messages into ranges on or off (off at first): see
    /// [`Dsm::take_outgoing`] and [`Dsm::on_range`].
    pub fn set_batch_ranges(&mut self, on: bool) {
        self.batch_ranges = on;
    }

    /// Turns read-ahead on or off (off at first).
    pub fn set_read_ahead(&mut self, on: bool) {
        self.read_ahead = on.then(ReadAhead::new);
        self.ahead_requests.clear();
    }

    pub fn island(&self) -> KernelId {
        self.island
    }

    pub fn stats(&self) -> Arc<DsmStats> {
        Arc::clone(&self.stats)
    }

    /// The userfaultfd, to wait for faults (it is readable when faults are pending).
    pub fn fault_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.uffd.as_raw_fd()
    }

    fn host_range(&self, start: u64, len: u64) -> (u64, u64) {
        (self.memory.host_base() + start, len)
    }

    /// Makes `[start, start+len)` (guest addresses, page aligned) coherent: its pages fault into
    /// the protocol from now on. Huge pages are refused there (the protocol works on 4 KiB pages).
    pub fn register(&mut self, start: u64, len: u64) -> Result<(), DsmError> {
        if len == 0 {
            return Ok(());
        }
        let (host, len) = self.host_range(start, len);
        // SAFETY: advice on a range of our own island memory; it changes no contents.
        unsafe {
            libc::madvise(
                host as *mut libc::c_void,
                len as usize,
                libc::MADV_NOHUGEPAGE,
            )
        };
        self.uffd
            .register(host, len)
            .map_err(|source| DsmError::Uffd {
                op: "register",
                start,
                len,
                source,
            })
    }

    /// Declares the pages of `[start, start+len)` Not Replicated here: this island holds their
    /// only copy, already written (the program's initial data on the origin).
    pub fn set_not_replicated(&mut self, start: u64, len: u64) {
        for page in start / PAGE_SIZE..(start + len).div_ceil(PAGE_SIZE) {
            // A copy the engine holds (fetched at this generation already) is its own.
            if self.engine.view(page).mapping == coherency::Mapping::None {
                self.engine.set_not_replicated(page);
            }
        }
    }

    /// Resets the pages of `[start, start+len)` to generation `gen` (a layout change dropped
    /// them: DONTNEED, munmap, MAP_FIXED over, mremap, brk shrink; decision 16 of `coherency`):
    /// the local copies are dropped, the faults waiting there fault again, and the pages read
    /// back as zeros. The range stays registered (`unregister` takes it out).
    pub fn reset(&mut self, start: u64, len: u64, gen: u32) -> Result<(), DsmError> {
        if len == 0 {
            return Ok(());
        }
        let pages = start / PAGE_SIZE..(start + len).div_ceil(PAGE_SIZE);
        // Copies already of this generation or newer (this island heard of the reset from
        // another one first, and may have fetched the new content since) are kept, by the
        // engine and here.
        let mut kept: Vec<PageId> = self
            .engine
            .page_ids()
            .into_iter()
            .filter(|p| pages.contains(p) && self.engine.gen(*p) >= gen)
            .collect();
        kept.sort_unstable();
        // A layout change drops these pages: no read-ahead of them was in vain.
        self.ahead.retain(|p| !pages.contains(&p));
        let (engine, mut host) = self.engine_and_host();
        engine.reset(pages.clone(), gen, &mut host);
        if let Some(e) = host.error.take() {
            return Err(e);
        }
        // The rest reads back as zeros (the engine dropped its copies; a range outside the
        // protocol, or a page it never held, may still have host pages).
        let mut from = pages.start;
        for to in kept.into_iter().chain(std::iter::once(pages.end)) {
            if to > from {
                self.memory
                    .discard(from * PAGE_SIZE, (to - from) * PAGE_SIZE)
                    .map_err(|source| DsmError::Uffd {
                        op: "discard",
                        start: from * PAGE_SIZE,
                        len: (to - from) * PAGE_SIZE,
                        source: std::io::Error::other(source.to_string()),
                    })?;
            }
            from = to + 1;
        }
        Ok(())
    }

    /// The engine, and the host it acts through (borrowing the rest of `self`).
    fn engine_and_host(&mut self) -> (&mut Engine<PageBuf>, IslandHost<'_>) {
        let host = IslandHost {
            island: self.island,
            uffd: &self.uffd,
            memory: &self.memory,
            mem_file: &self.mem_file,
            outbox: &mut self.outbox,
            waiting: &mut self.waiting,
            stats: &self.stats,
            prefetch_done: &self.prefetch_done,
            ahead: &mut self.ahead,
            started: self.started,
            holds: &mut self.holds,
            batch: &mut self.batch,
            error: None,
        };
        (&mut self.engine, host)
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Serves the pending faults. Returns how many there were.
    pub fn poll_faults(&mut self) -> Result<usize, DsmError> {
        let mut faults = std::mem::take(&mut self.faults);
        let r = self.uffd.read_faults(&mut faults);
        let n = faults.len();
        let result = match r {
            Err(source) => Err(DsmError::Uffd {
                op: "read",
                start: 0,
                len: 0,
                source,
            }),
            Ok(()) => faults.iter().try_for_each(|&f| self.on_fault(f)),
        };
        self.faults = faults;
        result.map(|()| n)
    }

    /// One fault: the access goes to the engine.
    pub fn on_fault(&mut self, fault: Fault) -> Result<(), DsmError> {
        let base = self.memory.host_base();
        let Some(guest) = fault.addr.checked_sub(base) else {
            return Ok(());
        };
        let page = guest / PAGE_SIZE;
        let access = if fault.write {
            Access::Write
        } else {
            Access::Read
        };
        let counter = match (fault.write_protected, fault.write) {
            (true, _) => &self.stats.write_protect,
            (false, true) => &self.stats.write_missing,
            (false, false) => &self.stats.read_missing,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let traffic = self.traffic.entry(page).or_default();
        if fault.write {
            traffic.write_faults += 1;
        } else {
            traffic.read_faults += 1;
        }
        let view = self.engine.view(page);
        if self.ahead.used(page) {
            self.stats.read_ahead_used.fetch_add(1, Ordering::Relaxed);
            if !view.state.is_stable() {
                self.stats.read_ahead_late.fetch_add(1, Ordering::Relaxed);
            }
        }
        if view.mapping == coherency::Mapping::None {
            // No valid copy here: the protocol brings it (or a read-ahead of it is on its way).
            let ahead = self
                .read_ahead
                .as_mut()
                .and_then(|r| r.on_fault_passing(page));
            if let Some(Ahead { window, passed }) = ahead {
                let used = passed.pages().filter(|&p| self.ahead.used(p)).count();
                self.stats
                    .read_ahead_used
                    .fetch_add(used as u64, Ordering::Relaxed);
                self.ahead_requests.push(AheadRequest {
                    fault: page,
                    write: fault.write,
                    window,
                });
            }
        }
        let now = self.now();
        self.waiting.entry(page).or_default().push(Instant::now());
        let (engine, mut host) = self.engine_and_host();
        let ready = engine.access(page, access, u64::from(fault.tid), now, &mut host)?;
        if let Some(e) = host.error.take() {
            return Err(e);
        }
        if ready {
            // Valid already (a stale fault, or the race of two threads on one page): retry it.
            host.stats.local.fetch_add(1, Ordering::Relaxed);
            host.complete(page, u64::from(fault.tid), access);
            if let Some(e) = host.error.take() {
                return Err(e);
            }
        } else if self.outbox.is_empty() && self.waiting.get(&page).is_none_or(|w| w.is_empty()) {
            // Completed without a message (first touch with one island, or all-local).
            self.stats.local.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Asks the protocol for the page at guest address `addr` writable, as a write of this island
    /// would, but with no thread waiting in a fault: a thread about to write there (one arriving
    /// by migration, at the top of its stack) then finds it ready instead of taking a read fault
    /// and a write fault in turn. Returns whether the page is writable here already. The caller
    /// checks that the program may write there; the thread's own faults stay correct whatever
    /// becomes of the prefetch.
    pub fn prefetch_write(&mut self, addr: u64) -> Result<bool, DsmError> {
        let page = addr / PAGE_SIZE;
        if self.writable(addr) {
            return Ok(true);
        }
        self.stats.prefetched.fetch_add(1, Ordering::Relaxed);
        let now = self.now();
        let (engine, mut host) = self.engine_and_host();
        let ready = engine.access(page, Access::Write, PREFETCH, now, &mut host)?;
        if let Some(e) = host.error.take() {
            return Err(e);
        }
        Ok(ready || self.writable(addr))
    }

    /// What read-ahead proposed since the last call: windows of pages after faults that
    /// continue a pattern. The caller keeps the pages of each fault's own mapping, if that
    /// mapping is coherent and readable, and passes them to [`Dsm::read_ahead`].
    pub fn take_read_ahead(&mut self) -> Vec<AheadRequest> {
        std::mem::take(&mut self.ahead_requests)
    }

    /// Asks the protocol for `pages` (guest page numbers; with each, whether its pattern is one
    /// of writes) as reads of this island, with no thread waiting: a thread that reads there
    /// later finds the page installed instead of faulting (and one that writes a page no other
    /// island holds finds it writable: it comes Not Replicated). Only pages with no copy here and
    /// no access of the engine under way are asked for: Unmapped ones, and Invalid ones for a
    /// read pattern while few read-ahead pages are dropped unused ([`Book::invalid_ok`]).
    /// These are ordinary reads (the program could have made them), so the protocol stays the
    /// checked one. The caller checks that the program may read there. Returns how many were
    /// asked for.
    pub fn read_ahead(&mut self, pages: &[(PageId, bool)]) -> Result<u64, DsmError> {
        let mut asked = 0;
        // With ranges, in ascending order: a backward pattern's window then goes as one range
        // too. The order of these reads is free (no thread waits for them, and any order is one
        // the program could have read in), and the whole window comes in one answer anyway.
        let mut sorted;
        let pages = if self.batch_ranges {
            sorted = pages.to_vec();
            sorted.sort_by_key(|&(p, _)| p);
            &sorted[..]
        } else {
            pages
        };
        for &(page, write) in pages {
            let view = self.engine.view(page);
            let idle = view.waiting == 0 && view.mapping == coherency::Mapping::None;
            // An Invalid copy means another island wrote the page since this one read it, and
            // may write it again: reading it ahead may take it from a writer still at work.
            let wanted = match view.state {
                State::Unmapped => true,
                State::Invalid => !write && self.ahead.invalid_ok(),
                _ => false,
            };
            if !idle || !wanted {
                continue;
            }
            asked += 1;
            self.stats.read_ahead.fetch_add(1, Ordering::Relaxed);
            let now = self.now();
            let (engine, mut host) = self.engine_and_host();
            let ready = engine.access(page, Access::Read, PREFETCH, now, &mut host)?;
            if let Some(e) = host.error.take() {
                return Err(e);
            }
            if !ready {
                // On its way (or installed already: a first touch with no other island).
                self.ahead.asked(page);
            }
        }
        Ok(asked)
    }

    /// Whether the page at guest address `addr` is mapped writable here.
    pub fn writable(&self, addr: u64) -> bool {
        self.engine
            .view(addr / PAGE_SIZE)
            .mapping
            .permits(Access::Write)
    }

    /// Notified whenever a prefetch completes.
    pub fn prefetch_done(&self) -> Arc<Wakeup> {
        self.prefetch_done.clone()
    }

    /// One message from another island.
    pub fn on_message(&mut self, msg: PageMessage) -> Result<(), DsmError> {
        let page = msg.page;
        if self.engine.is_stale(&msg) {
            // Sent before a layout change reset the page (the engine drops it, or answers Reset).
            self.stats.stale_messages.fetch_add(1, Ordering::Relaxed);
        } else {
            self.traffic.entry(page).or_default().received[msg.kind.message_type().index()] += 1;
        }
        let (engine, mut host) = self.engine_and_host();
        engine.handle(msg, &mut host)?;
        match host.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Several messages from one island, carried as one range (`fabric::PageRange`): handed to
    /// the engine one by one, in order, exactly as if each had come alone (so the engine sees
    /// the sequence the model checker checks). Only the installs they cause are deferred to the
    /// end, where consecutive pages go in one `UFFDIO_COPY` (`IslandHost::flush_installs`);
    /// anything else the engine does meanwhile (a read for a Copy, a drop, a wake) first
    /// installs what came before it.
    pub fn on_range(&mut self, msgs: Vec<PageMessage>) -> Result<(), DsmError> {
        self.batch.on = true;
        let mut result = Ok(());
        for msg in msgs {
            result = self.on_message(msg);
            if result.is_err() {
                break;
            }
        }
        self.batch.on = false;
        let (_, mut host) = self.engine_and_host();
        host.flush_installs();
        let flushed = host.error.take();
        result?;
        flushed.map_or(Ok(()), Err)
    }

    /// The messages to send, in order (per destination, the order matters: links are FIFO).
    pub fn take_outbox(&mut self) -> std::vec::Drain<'_, (KernelId, PageMessage)> {
        self.outbox.drain(..)
    }

    /// The messages to send, as the links carry them: with `--batch-ranges`, each run of
    /// consecutive page messages of one kind to one island as one range
    /// ([`crate::fabric::coalesce`] says which), the rest one by one. Per destination the order
    /// is the engine's.
    pub fn take_outgoing(&mut self) -> Vec<(KernelId, Outgoing)> {
        if !self.batch_ranges {
            return self
                .outbox
                .drain(..)
                .map(|(to, m)| (to, Outgoing::One(m)))
                .collect();
        }
        let groups = crate::fabric::coalesce(self.outbox.drain(..));
        let mut out = Vec::with_capacity(groups.len());
        for (to, group) in groups {
            if group.len() == 1 {
                out.extend(group.into_iter().map(|m| (to, Outgoing::One(m))));
                continue;
            }
            let pages = group.len() as u64;
            match crate::fabric::PageRange::new(group) {
                Ok(r) => {
                    self.stats.ranges_sent.fetch_add(1, Ordering::Relaxed);
                    self.stats.range_pages.fetch_add(pages, Ordering::Relaxed);
                    out.push((to, Outgoing::Range(r)));
                }
                // `coalesce` only groups messages that make a range; were it wrong, the messages
                // still go, one by one.
                Err(rejected) => {
                    out.extend(rejected.msgs.into_iter().map(|m| (to, Outgoing::One(m))))
                }
            }
        }
        out
    }

    /// The islands that take part in the protocol (see `coherency::Engine::set_members`).
    pub fn set_members(&mut self, members: coherency::KernelSet) {
        self.engine.set_members(members);
    }

    pub fn members(&self) -> coherency::KernelSet {
        self.engine.members()
    }

    /// Whether a fault of this island waits for the protocol (answers from other islands).
    pub fn awaiting(&self) -> bool {
        self.waiting.values().any(|w| !w.is_empty())
    }

    /// The state of one page here.
    pub fn view(&self, page: PageId) -> PageView {
        self.engine.view(page)
    }

    /// Every page this island knows something about, in page order.
    pub fn pages(&self) -> Vec<(PageId, PageView)> {
        self.engine.pages()
    }

    /// The pages this island knows something about, in no particular order.
    pub fn page_ids(&self) -> Vec<PageId> {
        self.engine.page_ids()
    }

    /// Every page this island faulted on or heard of, with what it saw of each (for the sharing
    /// balancer: a copy, so the caller holds nothing).
    pub fn traffic_all(&self) -> Vec<(PageId, PageTraffic)> {
        self.traffic.iter().map(|(&p, &t)| (p, t)).collect()
    }

    /// What this island saw of `page` (zeros for a page it never faulted on nor heard of).
    pub fn traffic(&self, page: PageId) -> PageTraffic {
        self.traffic.get(&page).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
