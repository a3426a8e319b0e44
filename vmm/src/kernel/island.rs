//! One island's kernel state: everything that belongs to this island alone.
//!
//! An [`Island`] owns its VM and memory, its view of the program's layout ([`UserMemory`]), its
//! coherency layer ([`DsmPort`]), its end of the links ([`Link`]), the threads that run on it and
//! the pool of vCPUs they run on. The program's process-wide state (files, signal actions, the
//! futex table, the thread directory, the exit status) is not here: the island reaches it through
//! its [`Services`] port (`services.rs`), which is the origin's own state on the origin and
//! messages to the origin everywhere else.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use vmm_sys_util::eventfd::EventFd;

use super::link::Link;
use super::messages::{IslandId, ThreadImage, ThreadOp};
use super::services::Services;
use super::thread::{ThreadState, ThreadStatus};
use super::uaccess::UserMemory;
use super::vma::ExecImage;
use crate::dsm::DsmPort;
use crate::kvm::{IslandVm, KvmError, Vcpu};
use crate::metrics::LatencyHistogram;
use crate::sync::lock;

/// Launch-time settings of the island kernels (the same on every island).
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// Host directory served read-only as the program's `/`.
    pub rootfs: PathBuf,
    /// The executable's path as the program sees it (readlink /proc/self/exe, AT_EXECFN).
    pub exe_path: String,
    /// 0: silent; 1: unknown system calls and faults; 2: every system call; 3: boot phases.
    pub verbose: u8,
    /// Let the program execute port I/O as a no-op exit (the benchmark's raw exit floor).
    pub allow_port_io: bool,
    /// Do not make new writable anonymous memory resident up front (see `mm::POPULATE_MAX`).
    pub no_prefault: bool,
    /// Where Popcorn's migration calls are numbered.
    pub popcorn_abi: PopcornAbi,
    /// Ask for the top of a migrating thread's stack before it starts on its new island
    /// (`vcpu_loop::prefetch_stack`).
    pub stack_prefetch: bool,
    /// Ask for the next pages of a sequential or strided pattern of faults along with the
    /// fault (`dsm::readahead`).
    pub read_ahead: bool,
}

/// Where the Popcorn calls are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PopcornAbi {
    /// 900-903: every Linux call keeps its number.
    #[default]
    Popvmm,
    /// 330-333, Popcorn's 4.4 kernel (hides pkey_alloc, pkey_free, statx, io_pgetevents).
    Linux44,
}

impl PopcornAbi {
    /// The number the table serves call `nr` of the program at.
    pub fn translate(self, nr: u64) -> u64 {
        match (self, nr) {
            (PopcornAbi::Linux44, 330..=333) => nr - 330 + POPCORN_CALLS,
            // In the 4.4 ABI, the default numbers are nothing.
            (PopcornAbi::Linux44, 900..=903) => u64::MAX,
            _ => nr,
        }
    }
}

/// Where popvmm numbers Popcorn's four calls by default (`syscall/popcorn.rs`).
pub const POPCORN_CALLS: u64 = 900;

/// A thread arriving on an island (new, or migrating): its image, and its status (already
/// registered on the island).
#[derive(Debug)]
pub struct Arrival {
    pub image: Box<ThreadImage>,
    pub status: Arc<ThreadStatus>,
}

/// Where a parked vCPU thread waits: Some(Some(arrival)) to run it, Some(None) to end.
#[derive(Debug, Default)]
pub struct Parked {
    slot: Mutex<Option<Option<Arrival>>>,
    cv: Condvar,
}

/// What an island is built from (see [`Island::new`]).
#[derive(Debug)]
pub struct IslandParts {
    pub id: IslandId,
    pub config: KernelConfig,
    pub vm: IslandVm,
    pub dsm: DsmPort,
    pub link: Arc<Link>,
    pub started: Instant,
}

/// The kernel of one island for one program.
#[derive(Debug)]
pub struct Island {
    pub id: IslandId,
    pub pid: u32,
    pub config: KernelConfig,
    pub vm: IslandVm,
    pub user: UserMemory,
    pub dsm: DsmPort,
    pub link: Arc<Link>,
    pub services: Arc<dyn Services>,
    threads: Mutex<BTreeMap<u32, Arc<ThreadStatus>>>,
    /// vCPU threads with no program thread, waiting for the next one (see [`Island::park`]).
    parked: Mutex<Vec<Arc<Parked>>>,
    /// A spare parked vCPU thread is being made (see `vcpu_loop::keep_spare`).
    pub spare_coming: AtomicBool,
    next_vcpu: AtomicU64,
    next_tid: AtomicU32,
    tid_stride: u32,
    /// The program has ended: this island's threads stop.
    exiting: AtomicBool,
    /// Readable once `exiting` is set, for the service loop's wait.
    exit_event: EventFd,
    /// When popvmm started (for the start-up figure).
    pub started: Instant,
    /// Nanoseconds from `started` to the first entry into the guest (0: not yet).
    pub first_entry_ns: AtomicU64,
    /// Threads that migrated here, by latency (stopped on their island to started here).
    pub migration_latency: LatencyHistogram,
    /// Bytes made resident ahead of the program's touch (see `mm::PREFAULT_BUDGET`).
    pub prefaulted: AtomicU64,
    /// Time calls (clock_gettime, clock_getres, gettimeofday, time, getcpu) served here as
    /// system calls, each an exit; the ones the vDSO served are in its counter page.
    pub time_syscalls: AtomicU64,
    logged_unknown: Mutex<HashSet<u64>>,
    /// The executable as loaded (what a dropped page of its segments holds again).
    pub image: OnceLock<Arc<ExecImage>>,
}

impl Island {
    /// Builds island `parts.id`; `services` makes its services port, given the island it will
    /// serve (the origin's port keeps a weak reference to its own island).
    pub fn new(
        parts: IslandParts,
        services: impl FnOnce(&std::sync::Weak<Island>) -> Arc<dyn Services>,
    ) -> std::io::Result<Arc<Island>> {
        let exit_event = EventFd::new(libc::EFD_NONBLOCK)?;
        let IslandParts {
            id,
            config,
            vm,
            dsm,
            link,
            started,
        } = parts;
        let pid = std::process::id();
        let stride = link.islands() as u32;
        let memory = Arc::clone(vm.memory());
        Ok(Arc::new_cyclic(|me| Island {
            id,
            pid,
            config,
            user: UserMemory::new(memory),
            vm,
            dsm,
            services: services(me),
            link,
            threads: Mutex::new(BTreeMap::new()),
            parked: Mutex::new(Vec::new()),
            spare_coming: AtomicBool::new(false),
            next_vcpu: AtomicU64::new(0),
            next_tid: AtomicU32::new(pid + id as u32),
            tid_stride: stride,
            exiting: AtomicBool::new(false),
            exit_event,
            started,
            first_entry_ns: AtomicU64::new(0),
            prefaulted: AtomicU64::new(0),
            time_syscalls: AtomicU64::new(0),
            migration_latency: LatencyHistogram::default(),
            logged_unknown: Mutex::new(HashSet::new()),
            image: OnceLock::new(),
        }))
    }

    /// Whether the program may spread over several islands (then memory that a protocol may
    /// later cover is prepared for it).
    pub fn spans_islands(&self) -> bool {
        self.link.islands() > 1
    }

    /// A new vCPU (KVM cannot destroy one before its VM: vCPU threads keep theirs and park).
    pub fn new_vcpu(&self) -> Result<Vcpu, KvmError> {
        let id = self.next_vcpu.fetch_add(1, Ordering::Relaxed);
        self.vm.create_vcpu(id)
    }

    /// A vCPU thread whose program thread is gone waits here for the next thread to run on this
    /// island (a migration or a clone then pays no vCPU creation, no host thread start). None:
    /// the program has ended.
    pub fn park(&self) -> Option<Arrival> {
        let me = Arc::new(Parked::default());
        {
            let mut parked = lock(&self.parked);
            if self.exiting() {
                return None;
            }
            parked.push(Arc::clone(&me));
        }
        let mut slot = lock(&me.slot);
        loop {
            match slot.take() {
                Some(Some(a)) => return Some(a),
                Some(None) => return None,
                None => slot = me.cv.wait(slot).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    /// Hands a thread to a parked vCPU thread; gives it back if none is parked.
    pub fn hand_to_parked(&self, arrival: Arrival) -> Result<(), Arrival> {
        let Some(p) = lock(&self.parked).pop() else {
            return Err(arrival);
        };
        *lock(&p.slot) = Some(Some(arrival));
        p.cv.notify_one();
        Ok(())
    }

    /// vCPU threads parked here.
    pub fn parked(&self) -> usize {
        lock(&self.parked).len()
    }

    /// A thread id unique in the program without asking anyone: island `i` of `n` hands out
    /// `pid + i + k * n`.
    pub fn alloc_tid(&self) -> u32 {
        self.next_tid.fetch_add(self.tid_stride, Ordering::Relaxed)
    }

    /// A thread starts running on this island.
    pub fn register_thread(&self, status: Arc<ThreadStatus>) {
        lock(&self.threads).insert(status.tid, status);
        // A thread that arrives after the end stops at once.
        if self.exiting() {
            self.kick_all();
        }
    }

    /// A thread leaves this island (it migrates): out of the table, not ended.
    pub fn release_thread(&self, tid: u32) -> Option<Arc<ThreadStatus>> {
        lock(&self.threads).remove(&tid)
    }

    /// Does `op` to thread `tid` if it runs here (false: it does not).
    pub fn thread_control(&self, tid: u32, op: ThreadOp) -> bool {
        let Some(t) = self.thread(tid) else {
            return false;
        };
        match op {
            ThreadOp::Migrate(to) => {
                t.request_migration(to);
                self.kick(tid);
            }
            ThreadOp::Propose(to) => t.set_proposed(to),
            ThreadOp::Affinity(mask) => {
                t.affinity.store(mask, Ordering::SeqCst);
                if let Some(to) = outside_of(mask, self.id) {
                    t.request_migration(to);
                    self.kick(tid);
                }
            }
        }
        true
    }

    /// Every island of the program, as an affinity mask.
    pub fn all_islands(&self) -> u64 {
        all_islands(self.link.islands())
    }

    /// A thread of this island has ended.
    pub fn forget_thread(&self, tid: u32) {
        if let Some(t) = lock(&self.threads).remove(&tid) {
            t.set(ThreadState::Exited);
        }
    }

    /// The threads running on this island.
    pub fn threads(&self) -> Vec<Arc<ThreadStatus>> {
        lock(&self.threads).values().cloned().collect()
    }

    pub fn thread(&self, tid: u32) -> Option<Arc<ThreadStatus>> {
        lock(&self.threads).get(&tid).cloned()
    }

    /// Interrupts thread `tid` wherever it is (guest code, KVM_RUN, a wait in the island kernel,
    /// a blocking host call) so that it looks at its pending signals and at the program's end.
    pub fn kick(&self, tid: u32) {
        let threads = lock(&self.threads);
        if let Some(t) = threads.get(&tid) {
            kick_status(t);
        }
    }

    fn kick_all(&self) {
        for t in lock(&self.threads).values() {
            kick_status(t);
        }
    }

    /// Signal `sig` for thread `tid` of this island: pending, then the thread is kicked.
    pub fn post_signal(&self, tid: u32, sig: u32) -> bool {
        match self.thread(tid) {
            Some(t) if (1..=64).contains(&sig) => {
                t.pending.fetch_or(1 << (sig - 1), Ordering::SeqCst);
                self.kick(tid);
                true
            }
            _ => false,
        }
    }

    /// The program has ended: every thread of this island stops, every wait ends.
    pub fn stop(&self) {
        if self.exiting.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.exit_event.write(1);
        self.link.shutdown();
        self.kick_all();
        for p in lock(&self.parked).drain(..) {
            *lock(&p.slot) = Some(None);
            p.cv.notify_one();
        }
    }

    pub fn exiting(&self) -> bool {
        self.exiting.load(Ordering::SeqCst)
    }

    /// Readable once the island stops (for the service loop's wait).
    pub fn exit_event(&self) -> &EventFd {
        &self.exit_event
    }

    /// Logs a message to popvmm's stderr at verbosity >= `level`.
    pub fn log(&self, level: u8, msg: std::fmt::Arguments<'_>) {
        if self.config.verbose >= level {
            crate::diag!("popvmm: {msg}");
        }
    }

    /// Logs an unsupported system call once (with -v).
    pub fn log_unknown_once(&self, nr: u64, what: &str) {
        if self.config.verbose >= 1 && lock(&self.logged_unknown).insert(nr) {
            crate::diag!("popvmm: unsupported system call {nr} ({what}): ENOSYS");
        }
    }
}

/// The mask of `n` islands (island i = CPU i).
pub fn all_islands(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Where a thread on island `at` must go to honour affinity `mask`: the first island of the mask,
/// unless `at` is in it.
pub fn outside_of(mask: u64, at: IslandId) -> Option<IslandId> {
    (mask != 0 && mask & (1u64 << at) == 0).then(|| mask.trailing_zeros() as IslandId)
}

/// Wakes a thread from a wait in the island kernel and kicks its host thread out of KVM_RUN or a
/// blocking host call (the caller holds the thread table, so the pthread_t is alive).
fn kick_status(t: &ThreadStatus) {
    t.wakeup.notify();
    let host = t.host_thread.load(Ordering::SeqCst);
    if host != 0 {
        // SAFETY: `host` is the pthread_t of a live thread: a thread leaves the table before its
        // host thread ends, and the caller holds the table. The signal's handler only sets the
        // vCPU's immediate_exit flag.
        unsafe { libc::pthread_kill(host as libc::pthread_t, kick_signal()) };
    }
}

/// The host signal that kicks a vCPU thread (or a worker) out of KVM_RUN or a blocking host call.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}
