//! The island kernel: the Linux system calls of the program's threads, served on the host.
//!
//! One `Process` per program on an island. Its parts are separate types with narrow interfaces so
//! that the multi-island design can move them to the origin island behind messages:
//! `vma::AddressSpace` (layout), `futex::FutexTable`, `fs::FdTable`, `signal::Signals`, and
//! `uaccess::UserMemory` (the only path to the program's memory).

pub mod cluster;
pub mod fs;
pub mod futex;
pub mod mm;
pub mod sigframe;
pub mod signal;
pub mod syscall;
pub mod thread;
pub mod uaccess;
pub mod vma;
pub mod wire;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use crate::kvm::{IslandVm, Vcpu};
use crate::memory::IslandMemory;

/// A Linux errno value, returned to the program as `-errno`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident),*) => { impl Errno { $(pub const $name: Errno = Errno(libc::$name);)* } };
}
errnos!(
    EPERM,
    ENOENT,
    ESRCH,
    EINTR,
    EIO,
    EBADF,
    EAGAIN,
    ENOMEM,
    EACCES,
    EFAULT,
    EEXIST,
    ENOTDIR,
    EISDIR,
    EINVAL,
    EMFILE,
    ENOTTY,
    ESPIPE,
    EROFS,
    ERANGE,
    ENAMETOOLONG,
    ENOSYS,
    ETIMEDOUT,
    EOPNOTSUPP,
    ENOTSUP,
    ELOOP,
    EXDEV,
    ECHILD,
    ENODEV,
    EPIPE
);

impl Errno {
    /// The errno of a failed host call.
    pub fn last() -> Errno {
        Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }

    pub fn from_io(e: &std::io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

pub type SysResult = Result<u64, Errno>;

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The status a shell would report: the code, or 128 + signal.
    pub fn shell_status(self) -> u8 {
        match self {
            ExitStatus::Code(c) => (c & 0xff) as u8,
            ExitStatus::Signal(s) => (128 + s) as u8,
        }
    }
}

/// Launch-time settings of the island kernel.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// Host directory served read-only as the program's `/`.
    pub rootfs: PathBuf,
    /// The executable's path as the program sees it (readlink /proc/self/exe, AT_EXECFN).
    pub exe_path: String,
    /// 0: silent; 1: unknown system calls and faults; 2: every system call.
    pub verbose: u8,
    /// Let the program execute port I/O as a no-op exit (the benchmark's raw exit floor).
    pub allow_port_io: bool,
    /// Do not make new writable anonymous memory resident up front (see `mm::POPULATE_MAX`).
    pub no_prefault: bool,
    pub island: u32,
}

/// What a thread is doing, for the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadState {
    Running = 0,
    InKernel = 1,
    Blocked = 2,
    Exited = 3,
}

impl ThreadState {
    pub fn name(self) -> &'static str {
        match self {
            ThreadState::Running => "running",
            ThreadState::InKernel => "syscall",
            ThreadState::Blocked => "blocked",
            ThreadState::Exited => "exited",
        }
    }
}

/// Per-thread status shared with the control socket (lock-free updates from the vCPU thread).
#[derive(Debug)]
pub struct ThreadStatus {
    pub tid: u32,
    pub vcpu: u64,
    state: AtomicU8,
    /// rip at the last exit to the island kernel.
    rip: AtomicU64,
    pub syscalls: AtomicU64,
    /// Signals sent to this thread and not delivered yet (bit n-1 for signal n).
    pub pending: AtomicU64,
    /// The host thread (pthread_t) running this thread's vCPU, to kick it; 0 before it starts.
    pub host_thread: AtomicU64,
}

impl ThreadStatus {
    pub fn new(tid: u32, vcpu: u64) -> Self {
        Self {
            tid,
            vcpu,
            state: AtomicU8::new(ThreadState::Running as u8),
            rip: AtomicU64::new(0),
            syscalls: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            host_thread: AtomicU64::new(0),
        }
    }

    pub fn set(&self, state: ThreadState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn set_rip(&self, rip: u64) {
        self.rip.store(rip, Ordering::Relaxed);
    }

    pub fn state(&self) -> ThreadState {
        match self.state.load(Ordering::Relaxed) {
            0 => ThreadState::Running,
            1 => ThreadState::InKernel,
            2 => ThreadState::Blocked,
            _ => ThreadState::Exited,
        }
    }

    pub fn rip(&self) -> u64 {
        self.rip.load(Ordering::Relaxed)
    }
}

/// Process-wide kernel state that is not guest memory, shared by the island kernels of one
/// program (see `cluster`): file descriptors, the exit status, the live thread count.
#[derive(Debug)]
pub struct Shared {
    files: Mutex<fs::FdTable>,
    live_threads: AtomicU32,
    exit: Mutex<Option<ExitStatus>>,
    exit_cv: Condvar,
    logged_unknown: Mutex<HashSet<u64>>,
}

/// The kernel of one island for one program (the whole program when it runs on one island).
#[derive(Debug)]
pub struct Process {
    pub pid: u32,
    pub config: KernelConfig,
    pub vm: IslandVm,
    pub user: uaccess::UserMemory,
    pub futexes: futex::FutexTable,
    pub signals: Arc<signal::Signals>,
    pub umask: Arc<AtomicU32>,
    shared: Arc<Shared>,
    /// The other islands, when the program spans several.
    pub cluster: Option<cluster::IslandLink>,
    threads: Mutex<BTreeMap<u32, Arc<ThreadStatus>>>,
    next_tid: AtomicU32,
    tid_stride: u32,
    /// vCPUs of exited threads, reused by clone (KVM cannot destroy a vCPU before its VM).
    idle_vcpus: Mutex<Vec<Vcpu>>,
    next_vcpu: AtomicU64,
    pub started: Instant,
    /// Nanoseconds from `started` to the first entry into the guest (0: not yet).
    pub first_entry_ns: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Process {
    /// The kernel of a program on one island. `started`: when popvmm started (for the start-up
    /// figure).
    pub fn new(
        vm: IslandVm,
        config: KernelConfig,
        config_started: Instant,
    ) -> Result<Arc<Self>, fs::FsError> {
        let files = fs::FdTable::new(&config.rootfs)?;
        let shared = Arc::new(Shared {
            files: Mutex::new(files),
            live_threads: AtomicU32::new(0),
            exit: Mutex::new(None),
            exit_cv: Condvar::new(),
            logged_unknown: Mutex::new(HashSet::new()),
        });
        Ok(Arc::new(Self::build(
            vm,
            config,
            config_started,
            shared,
            Arc::new(signal::Signals::default()),
            Arc::new(AtomicU32::new(0o022)),
            None,
        )))
    }

    /// The kernel of island `link.island` for the same program as `origin` (which shares its
    /// process-wide state).
    pub fn new_island(
        vm: IslandVm,
        config: KernelConfig,
        config_started: Instant,
        origin: Option<&Process>,
        link: cluster::IslandLink,
    ) -> Result<Arc<Self>, fs::FsError> {
        let (shared, signals, umask) = match origin {
            Some(o) => (
                Arc::clone(&o.shared),
                Arc::clone(&o.signals),
                Arc::clone(&o.umask),
            ),
            None => (
                Arc::new(Shared {
                    files: Mutex::new(fs::FdTable::new(&config.rootfs)?),
                    live_threads: AtomicU32::new(0),
                    exit: Mutex::new(None),
                    exit_cv: Condvar::new(),
                    logged_unknown: Mutex::new(HashSet::new()),
                }),
                Arc::new(signal::Signals::default()),
                Arc::new(AtomicU32::new(0o022)),
            ),
        };
        Ok(Arc::new(Self::build(
            vm,
            config,
            config_started,
            shared,
            signals,
            umask,
            Some(link),
        )))
    }

    fn build(
        vm: IslandVm,
        config: KernelConfig,
        config_started: Instant,
        shared: Arc<Shared>,
        signals: Arc<signal::Signals>,
        umask: Arc<AtomicU32>,
        cluster: Option<cluster::IslandLink>,
    ) -> Self {
        let memory: Arc<IslandMemory> = Arc::clone(vm.memory());
        let space = Arc::new(RwLock::new(vma::AddressSpace::new()));
        let pid = std::process::id();
        let (island, stride) = match &cluster {
            Some(l) => (l.island as u32, l.program.islands as u32),
            None => (0, 1),
        };
        Self {
            pid,
            config,
            vm,
            user: uaccess::UserMemory::new(memory, space),
            futexes: futex::FutexTable::default(),
            signals,
            umask,
            shared,
            cluster,
            threads: Mutex::new(BTreeMap::new()),
            next_tid: AtomicU32::new(pid + island),
            tid_stride: stride,
            idle_vcpus: Mutex::new(Vec::new()),
            next_vcpu: AtomicU64::new(0),
            started: config_started,
            first_entry_ns: AtomicU64::new(0),
        }
    }

    pub fn files(&self) -> MutexGuard<'_, fs::FdTable> {
        lock(&self.shared.files)
    }

    /// A vCPU for a new thread: an idle one, or a new one.
    pub fn take_vcpu(&self) -> Result<Vcpu, crate::kvm::KvmError> {
        if let Some(v) = lock(&self.idle_vcpus).pop() {
            return Ok(v);
        }
        let id = self.next_vcpu.fetch_add(1, Ordering::Relaxed);
        self.vm.create_vcpu(id)
    }

    pub fn park_vcpu(&self, vcpu: Vcpu) {
        lock(&self.idle_vcpus).push(vcpu);
    }

    /// A thread id unique in the program without asking anyone: island `i` of `n` hands out
    /// `pid + i + k * n`.
    pub fn alloc_tid(&self) -> u32 {
        self.next_tid.fetch_add(self.tid_stride, Ordering::Relaxed)
    }

    pub fn register_thread(&self, status: Arc<ThreadStatus>) {
        self.shared.live_threads.fetch_add(1, Ordering::SeqCst);
        if let Some(l) = &self.cluster {
            l.program.set_island(status.tid, l.island);
        }
        lock(&self.threads).insert(status.tid, status);
    }

    /// Marks a thread exited; the last one to leave (on any island) ends the program with `code`.
    pub fn thread_exited(&self, tid: u32, code: i32) {
        if let Some(t) = lock(&self.threads).remove(&tid) {
            t.set(ThreadState::Exited);
        }
        if let Some(l) = &self.cluster {
            l.program.forget_thread(tid);
        }
        if self.shared.live_threads.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.exit(ExitStatus::Code(code));
        }
    }

    pub fn threads(&self) -> Vec<Arc<ThreadStatus>> {
        lock(&self.threads).values().cloned().collect()
    }

    /// Interrupts thread `tid` wherever it is (guest code, KVM_RUN, a blocking host call) so that
    /// it looks at its pending signals. Under the thread table's lock: a thread leaves the table
    /// before its host thread ends, so the pthread_t is alive while we signal it.
    pub fn kick(&self, tid: u32) {
        let threads = lock(&self.threads);
        if let Some(t) = threads.get(&tid) {
            let host = t.host_thread.load(Ordering::SeqCst);
            if host != 0 {
                // SAFETY: `host` is the pthread_t of a live thread (see above); the signal's
                // handler only sets the vCPU's immediate_exit flag.
                unsafe { libc::pthread_kill(host as libc::pthread_t, thread::kick_signal()) };
            }
        }
    }

    pub fn thread(&self, tid: u32) -> Option<Arc<ThreadStatus>> {
        lock(&self.threads).get(&tid).cloned()
    }

    /// Whether `tid` is a live thread of the program (on any island).
    pub fn has_thread(&self, tid: u32) -> bool {
        match &self.cluster {
            Some(l) => l.program.island_of(tid).is_some(),
            None => lock(&self.threads).contains_key(&tid),
        }
    }

    /// Ends the program (the first caller decides the status), on every island.
    pub fn exit(&self, status: ExitStatus) {
        let first = self.exit_local(status);
        if let (true, Some(l)) = (first, &self.cluster) {
            for i in 0..l.program.islands as cluster::IslandId {
                if i != l.island {
                    l.notify(i, cluster::Request::Exit(status));
                }
            }
        }
    }

    /// Records the end of the program and stops this island's threads. Returns whether this call
    /// decided the status.
    pub fn exit_local(&self, status: ExitStatus) -> bool {
        let first = {
            let mut e = lock(&self.shared.exit);
            let first = e.is_none();
            if first {
                *e = Some(status);
            }
            first
        };
        self.shared.exit_cv.notify_all();
        first
    }

    pub fn exiting(&self) -> bool {
        lock(&self.shared.exit).is_some()
    }

    /// Blocks until the program has ended.
    pub fn wait_exit(&self) -> ExitStatus {
        let mut e = lock(&self.shared.exit);
        loop {
            if let Some(s) = *e {
                return s;
            }
            e = self
                .shared
                .exit_cv
                .wait(e)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A signal for thread `tid` of this island: pending, then kicked.
    pub fn signal_local_thread(&self, tid: u32, sig: u32) {
        if let Some(t) = self.thread(tid) {
            if (1..=64).contains(&sig) {
                t.pending.fetch_or(1 << (sig - 1), Ordering::SeqCst);
                self.kick(tid);
            }
        }
    }

    /// Logs a message to popvmm's stderr at verbosity >= `level`.
    pub fn log(&self, level: u8, msg: std::fmt::Arguments<'_>) {
        if self.config.verbose >= level {
            eprintln!("popvmm: {msg}");
        }
    }

    /// Logs an unsupported system call once (with -v).
    pub fn log_unknown_once(&self, nr: u64, what: &str) {
        if self.config.verbose >= 1 && lock(&self.shared.logged_unknown).insert(nr) {
            eprintln!("popvmm: unsupported system call {nr} ({what}): ENOSYS");
        }
    }
}
