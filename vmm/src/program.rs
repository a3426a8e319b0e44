//! A program on its islands, as a library.
//!
//! [`LaunchConfig`] says what to run and how (islands, placement, root, environment, the program's
//! stdio, a control socket); [`LaunchConfig::build`] creates the islands (one VM, memory,
//! coherency layer and island kernel each, linked by the fabric, with their service threads),
//! loads the program on them and starts serving the control socket; [`Program::run`] starts its
//! first thread and is the program's controller until it ends: it answers the control socket's
//! actions ([`Event::Control`], see [`Program::answer`]), turns SIGTERM/SIGINT into the program's
//! end, and returns how the program ended. [`Program::summary`] then says what the run cost.
//! [`LaunchConfig::run_captured`] does all of it with the program's output captured, which is
//! what the demo ([`demo`]) runs. `popvmm launch` is a thin layer over this (`cli/launch.rs`).

pub mod demo;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::kvm_regs;

use crate::api::types::{ShutdownAnswer, Summary, ThreadOpAnswer};
use crate::api::{
    stats, ApiError, ApiServer, ControlAction, ControlAnswer, ControlError, ControlResult,
};
use crate::dsm::{Dsm, DsmPort, Outgoing, SendPage};
use crate::fabric::{
    FabricConfig, FaultCounters, FaultSpec, FaultTransport, RingTransport, FAULTS_VAR, MAX_ISLANDS,
};
use crate::kernel::fs::Files;
use crate::kernel::island::PopcornAbi;
use crate::kernel::link::{IslandFabric, Link};
use crate::kernel::messages::{IslandMessage, ThreadImage, ThreadOp};
use crate::kernel::vdso::{self, ClockThread};
use crate::kernel::vma::ExecImage;
use crate::kernel::{
    service_loop, vcpu_loop, ExitStatus, Island, IslandParts, KernelConfig, Member, Origin,
    Placement, Services, ThreadState, ORIGIN,
};
use crate::kvm::{FxSave, IslandVm};
use crate::loader::{read_executable, stack, ElfImage, LoaderError};
use crate::memory::layout::ISLAND_MEMORY_SIZE;
use crate::memory::IslandMemory;

/// The environment a program gets unless the configuration adds to it.
pub const DEFAULT_ENV: [&str; 2] = ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/"];

/// How many pages the exit summary names (the ones that cost the most messages).
pub const HOT_PAGES_AT_EXIT: usize = 3;

/// What to run, and how.
#[derive(Debug)]
pub struct LaunchConfig {
    /// Islands (KVM VMs that share no memory), 1 to [`MAX_ISLANDS`].
    pub islands: usize,
    /// Where new threads go.
    pub placement: Placement,
    /// Run the coherency protocol from the start, even on one island (a benchmark's floor).
    pub coherent_from_start: bool,
    /// The protocol's §5.2 optimizations (multicast groups, owner hint); off: §4's protocol alone.
    pub protocol_optimizations: bool,
    /// The holding window against thrashing (decision 17 of `coherency`, Mirage's Δ): a page
    /// that bounces between writers on different islands is kept by its new writer for 20 us to
    /// 100 us before another island takes it. None: off.
    pub hold_window: Option<coherency::HoldWindow>,
    /// The program's path (as popvmm finds it) and arguments; argv\[0\] is the path.
    pub argv: Vec<String>,
    /// Host directory served read-only as the program's root (default: the program's directory).
    pub rootfs: Option<PathBuf>,
    /// `K=V` added to (or replacing in) [`DEFAULT_ENV`].
    pub env: Vec<String>,
    /// Diagnostics on stderr (see `KernelConfig::verbose`).
    pub verbose: u8,
    pub allow_port_io: bool,
    pub no_prefault: bool,
    /// See `KernelConfig::stack_prefetch`.
    pub no_stack_prefetch: bool,
    /// See `KernelConfig::read_ahead`.
    pub read_ahead: bool,
    /// Consecutive page messages of one kind to one island go as one range message, installed in
    /// one UFFDIO_COPY (`fabric::PageRange`, `Dsm::on_range`).
    pub batch_ranges: bool,
    /// The sharing balancer (`balance.rs`): moves threads that write-share pages onto one island.
    pub balance_sharing: bool,
    /// The vDSO (`kernel/vdso.rs`): the time calls served in the program's user mode, without an
    /// exit. Left off (with a message) when the host's TSC is no clock to trust.
    pub vdso: bool,
    /// Where Popcorn's migration calls are numbered.
    pub popcorn_abi: PopcornAbi,
    /// Serve the control socket on this Unix socket path while the program runs.
    pub api_sock: Option<PathBuf>,
    /// The program's descriptors 0, 1 and 2 (default: popvmm's own).
    pub stdio: ProgramStdio,
}

/// Files the program gets as its descriptors 0, 1 and 2 instead of popvmm's own stdin, stdout
/// and stderr. The program owns them from then on, as files it opened: closing its descriptor
/// closes it.
#[derive(Debug, Default)]
pub struct ProgramStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl LaunchConfig {
    /// Runs `argv` on `islands` islands with the defaults.
    pub fn new(islands: usize, argv: Vec<String>) -> Self {
        Self {
            islands,
            placement: Placement::RoundRobin,
            coherent_from_start: false,
            protocol_optimizations: true,
            hold_window: Some(coherency::HoldWindow::DEFAULT),
            argv,
            rootfs: None,
            env: Vec::new(),
            verbose: 0,
            allow_port_io: false,
            no_prefault: false,
            no_stack_prefetch: false,
            read_ahead: true,
            batch_ranges: true,
            balance_sharing: false,
            vdso: true,
            popcorn_abi: PopcornAbi::default(),
            api_sock: None,
            stdio: ProgramStdio::default(),
        }
    }
}

/// Errors that stop a launch before the program runs (and the few of running it: a second `run`,
/// a captured output that cannot be read back).
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("--islands {0}: must be between 1 and {MAX_ISLANDS}")]
    Islands(usize),
    #[error("no program given")]
    NoProgram,
    #[error("{0}: {1}")]
    Load(String, LoaderError),
    #[error("--env {0}: expected K=V")]
    Env(String),
    #[error("--rootfs {0}: not a directory")]
    Rootfs(String),
    #[error("cannot create the island: {0}")]
    Island(String),
    /// A bad fault injection spec (`POPVMM_FAULTS`, see `fabric/faults.rs`).
    #[error("{0}")]
    Faults(String),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the program has already run")]
    AlreadyRun,
    #[error("cannot capture the program's {what}: {source}")]
    Capture {
        what: &'static str,
        source: std::io::Error,
    },
}

impl LaunchError {
    /// The shell's convention: 127 for a missing program, 126 for one that cannot be run.
    pub fn status(&self) -> u8 {
        match self {
            LaunchError::Load(_, LoaderError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                127
            }
            LaunchError::Load(..) => 126,
            _ => 1,
        }
    }
}

/// What the controller of a running program hears.
#[derive(Debug)]
pub enum Event {
    /// The program has ended.
    Exited(ExitStatus),
    /// popvmm received SIGTERM or SIGINT: the program ends as if it had received it.
    Signal(i32),
    /// A control socket request: the controller answers it on the sender (whose connection waits
    /// a bounded time, see `api::ask`). Requests still queued when the program ends are dropped
    /// unanswered, which their connections report as "the program has ended".
    Control(ControlAction, mpsc::Sender<ControlResult>),
}

/// A program loaded on its islands, ready to run.
#[derive(Debug)]
pub struct Program {
    islands: Vec<Arc<Island>>,
    origin: Arc<Origin>,
    fabric: Arc<IslandFabric>,
    /// The faults injected in the links (`POPVMM_FAULTS`), reported at the end.
    faults: Option<(FaultSpec, Arc<FaultCounters>)>,
    main: Option<ThreadImage>,
    /// The controller's events; taken by [`Program::run`] and dropped when the program ends, so
    /// that control requests made after the end fail at once.
    events: Option<mpsc::Receiver<Event>>,
    events_tx: mpsc::Sender<Event>,
    api: Option<ApiServer>,
    /// The sharing balancer runs (`LaunchConfig::balance_sharing`).
    balance_sharing: bool,
    /// Keeps the vDSO's clock pages current (None: the vDSO is off); ends with the program.
    _vdso_clock: Option<ClockThread>,
    verbose: u8,
}

/// When the program reached its first instruction, and what memory popvmm holds (`--stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartupFigures {
    /// From popvmm's start to the first entry into the guest (0: never entered).
    pub first_entry_us: u64,
    /// popvmm's whole resident set, and the program's resident pages on the origin (None when
    /// /proc cannot say).
    pub rss_bytes: Option<u64>,
    pub program_bytes: Option<u64>,
}

fn island_err(e: &dyn std::fmt::Display) -> LaunchError {
    LaunchError::Island(e.to_string())
}

/// The program's path as it sees it: relative to the root when inside it.
fn guest_exe_path(exe: &Path, root: &Path) -> String {
    match exe.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => exe.display().to_string(),
    }
}

impl LaunchConfig {
    /// Creates the islands, loads the program and serves the control socket (if asked);
    /// `started` is when popvmm started (for the start-up figure).
    pub fn build(self, started: Instant) -> Result<Program, LaunchError> {
        let n = self.islands;
        if !(1..=MAX_ISLANDS).contains(&n) {
            return Err(LaunchError::Islands(n));
        }
        let path = self.argv.first().ok_or(LaunchError::NoProgram)?.clone();
        let load_err = |e| LaunchError::Load(path.clone(), e);
        let file: Arc<[u8]> = read_executable(&path).map_err(load_err)?.into();
        let image = ElfImage::parse(&file).map_err(load_err)?;
        let exe = std::fs::canonicalize(&path).unwrap_or_else(|_| PathBuf::from(&path));
        let rootfs = match &self.rootfs {
            Some(r) => std::fs::canonicalize(r).unwrap_or_else(|_| r.clone()),
            None => exe
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/")),
        };
        if !rootfs.is_dir() {
            return Err(LaunchError::Rootfs(rootfs.display().to_string()));
        }
        let mut env: Vec<String> = DEFAULT_ENV.iter().map(|s| s.to_string()).collect();
        for kv in &self.env {
            let Some((k, _)) = kv.split_once('=') else {
                return Err(LaunchError::Env(kv.clone()));
            };
            env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k));
            env.push(kv.clone());
        }
        let config = KernelConfig {
            rootfs: rootfs.clone(),
            exe_path: guest_exe_path(&exe, &rootfs),
            verbose: self.verbose,
            allow_port_io: self.allow_port_io,
            no_prefault: self.no_prefault,
            stack_prefetch: !self.no_stack_prefetch,
            read_ahead: self.read_ahead,
            popcorn_abi: self.popcorn_abi,
        };
        let phase = |what: &str| {
            if self.verbose >= 3 {
                crate::diag!("popvmm: {:>8} us {what}", started.elapsed().as_micros());
            }
        };
        phase("parsed");
        // SIGTERM and SIGINT end the program (as if it got them) through its controller, so that
        // popvmm still prints its summary and removes its socket: no thread takes them but the
        // one `run` starts (threads inherit the mask).
        block_exit_signals()
            .map_err(|e| island_err(&format!("cannot block SIGTERM/SIGINT: {e}")))?;
        vcpu_loop::install_kick_handler().map_err(|e| {
            island_err(&format!(
                "cannot install the vCPU kick handler: errno {}",
                e.0
            ))
        })?;
        let mut files = Files::new(&rootfs, std::process::id(), config.exe_path.clone(), n)
            .map_err(|e| island_err(&e))?;
        // The vDSO needs a TSC the host trusts as its clock; without one, the program makes
        // system calls for the time as it would with --vdso off.
        let vdso = self.vdso
            && match vdso::tsc_usable() {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("popvmm: the vDSO is off: {e}");
                    false
                }
            };
        files.vdso = vdso;
        let ProgramStdio {
            stdin,
            stdout,
            stderr,
        } = self.stdio;
        files.table().set_stdio([stdin, stdout, stderr]);
        let (events_tx, events) = mpsc::channel();
        // The links, with the faults POPVMM_FAULTS asks for (tests and soak runs; none by default).
        let links = FabricConfig::default();
        let rings =
            RingTransport::new(n, links.ring_slots, links.poll).map_err(|e| island_err(&e))?;
        let spec = FaultSpec::from_env().map_err(LaunchError::Faults)?;
        if let Some(spec) = &spec {
            spec.check(n).map_err(LaunchError::Faults)?;
        }
        let transport = FaultTransport::new(rings, spec);
        let faults = transport.spec().cloned().zip(transport.counters());
        let fabric: Arc<IslandFabric> =
            Arc::new(IslandFabric::with_transport(transport, links).map_err(|e| island_err(&e))?);
        // A program on one island never runs the protocol (unless asked to): no coherency layer.
        let with_dsm = n > 1 || self.coherent_from_start;
        let mut engine = if self.protocol_optimizations {
            coherency::Config::new(n)
        } else {
            coherency::Config::unoptimized(n)
        };
        engine.hold = self.hold_window;
        let mut islands: Vec<Arc<Island>> = Vec::with_capacity(n);
        let mut origin: Option<Arc<Origin>> = None;
        let mut files = Some(files);
        for id in 0..n {
            let memory =
                Arc::new(IslandMemory::new(ISLAND_MEMORY_SIZE).map_err(|e| island_err(&e))?);
            let vm = IslandVm::new(Arc::clone(&memory)).map_err(|e| island_err(&e))?;
            let link = Arc::new(Link::new(id, Arc::clone(&fabric)).map_err(|e| island_err(&e))?);
            let dsm = if with_dsm {
                let mut dsm = Dsm::new(id as u8, engine, memory).map_err(|e| island_err(&e))?;
                // Only the origin runs a thread at first; islands join the protocol with their
                // first thread (`Origin::sync_layout_to`).
                dsm.set_members(coherency::KernelSet::only(0));
                dsm.set_read_ahead(self.read_ahead);
                dsm.set_batch_ranges(self.batch_ranges);
                Some(dsm)
            } else {
                None
            };
            let tx = link.sender();
            let send: SendPage = Box::new(move |to, out| {
                let msg = match out {
                    Outgoing::One(m) => IslandMessage::Coherency(m),
                    Outgoing::Range(r) => IslandMessage::CoherencyRange(r),
                };
                tx.post(usize::from(to), &msg)
            });
            // Islands other than the origin only get memory through the protocol.
            let port = DsmPort::new(dsm, self.coherent_from_start || id != ORIGIN, send);
            let parts = IslandParts {
                id,
                config: config.clone(),
                vm,
                dsm: port,
                link: Arc::clone(&link),
                started,
            };
            let island = if id == ORIGIN {
                let files = files
                    .take()
                    .ok_or_else(|| island_err(&"files taken twice"))?;
                let tx = events_tx.clone();
                let placement = self.placement.clone();
                Island::new(parts, |me| {
                    let o = Arc::new(Origin::new(
                        me.clone(),
                        n,
                        files,
                        placement,
                        Box::new(move |status| {
                            let _ = tx.send(Event::Exited(status));
                        }),
                    ));
                    origin = Some(Arc::clone(&o));
                    o
                })
            } else {
                Island::new(parts, |_| Arc::new(Member::new(link)))
            }
            .map_err(|e| island_err(&e))?;
            islands.push(island);
        }
        let origin = origin.ok_or_else(|| island_err(&"no origin"))?;
        let vdso_clock = if vdso {
            for island in &islands {
                vdso::install(island.vm.memory(), island.id).map_err(|e| island_err(&e))?;
            }
            let pages = islands.iter().map(|i| Arc::clone(i.vm.memory())).collect();
            // Installed but never published, the vDSO takes the system calls.
            Some(ClockThread::start(pages).map_err(|e| island_err(&e))?)
        } else {
            None
        };
        for island in &islands {
            service_loop::start(island, &fabric).map_err(|e| island_err(&e))?;
        }
        phase("islands created");
        image.load(&islands[ORIGIN], &file).map_err(load_err)?;
        for island in &islands[1..] {
            image.load_local(island, &file).map_err(load_err)?;
        }
        // Kept: a page of a segment the program drops (MADV_DONTNEED) is read from it again.
        let exec = Arc::new(ExecImage::new(
            Arc::clone(&file),
            image
                .segments
                .iter()
                .map(|s| (s.vaddr, s.memsz, s.offset, s.filesz))
                .collect(),
        ));
        for island in &islands {
            let _ = island.image.set(Arc::clone(&exec));
        }
        drop(file);
        phase("loaded");
        let o = &islands[ORIGIN];
        let vdso_at = vdso.then_some(crate::memory::layout::VDSO_ADDR);
        let rsp = stack::build(o, &image, &self.argv, &env, &path, vdso_at).map_err(load_err)?;
        let regs = kvm_regs {
            rip: image.entry,
            rsp,
            rflags: 0x202,
            ..Default::default()
        };
        let main = ThreadImage::new(o.alloc_tid(), regs, 0, FxSave::fresh());
        // A parked vCPU thread on every island, made while the program starts: the first thread
        // to arrive on an island (the main one on the origin) finds one.
        for island in &islands {
            vcpu_loop::keep_spare(island);
        }
        let mut program = Program {
            islands,
            origin,
            fabric,
            faults,
            main: Some(main),
            events: Some(events),
            events_tx,
            api: None,
            balance_sharing: self.balance_sharing,
            _vdso_clock: vdso_clock,
            verbose: self.verbose,
        };
        // Served before the program starts, so that a client sees its first instructions; the
        // requests wait in the controller's queue until `run`. A failure drops the program.
        if let Some(path) = &self.api_sock {
            program.api = Some(crate::api::serve(path, program.events())?);
        }
        Ok(program)
    }

    /// Builds and runs the program with its stdin empty (/dev/null) and its stdout and stderr
    /// captured; returns what it printed, how it ended and what the run cost. Any stdio in the
    /// configuration is replaced.
    pub fn run_captured(mut self, started: Instant) -> Result<Captured, LaunchError> {
        let capture = |what| move |source| LaunchError::Capture { what, source };
        let stdin = File::open("/dev/null").map_err(capture("stdin"))?;
        let stdout = CaptureFile::new(c"popvmm-stdout").map_err(capture("stdout"))?;
        let stderr = CaptureFile::new(c"popvmm-stderr").map_err(capture("stderr"))?;
        self.stdio = ProgramStdio {
            stdin: Some(stdin.into()),
            stdout: Some(stdout.writer().map_err(capture("stdout"))?),
            stderr: Some(stderr.writer().map_err(capture("stderr"))?),
        };
        let mut program = self.build(started)?;
        let status = program.run()?;
        let summary = program.summary();
        drop(program);
        Ok(Captured {
            stdout: stdout.contents().map_err(capture("stdout"))?,
            stderr: stderr.contents().map_err(capture("stderr"))?,
            status,
            summary,
        })
    }
}

/// A run whose output was captured ([`LaunchConfig::run_captured`]).
#[derive(Debug, Clone)]
pub struct Captured {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
    pub summary: Summary,
}

/// An anonymous in-memory file (memfd) that collects what a program writes: the program gets a
/// duplicate of its descriptor, which shares its offset, and the whole content is read from the
/// start once the program is done. Unlike a pipe it needs no reader while the program runs and no
/// end of file, so copies of the descriptor that outlive the program cannot make the read hang.
#[derive(Debug)]
pub(crate) struct CaptureFile {
    file: File,
}

impl CaptureFile {
    pub(crate) fn new(name: &std::ffi::CStr) -> std::io::Result<CaptureFile> {
        // SAFETY: `name` is a NUL-terminated string that memfd_create only reads.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor returned by memfd_create, owned by nobody else.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(CaptureFile { file })
    }

    /// A descriptor for the writer (close-on-exec, as every descriptor popvmm holds).
    pub(crate) fn writer(&self) -> std::io::Result<OwnedFd> {
        Ok(self.file.try_clone()?.into())
    }

    /// Everything written so far.
    pub(crate) fn contents(&self) -> std::io::Result<Vec<u8>> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(0))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)?;
        Ok(out)
    }
}

impl Program {
    /// The island kernels, origin first.
    pub fn islands(&self) -> &[Arc<Island>] {
        &self.islands
    }

    /// The origin's services (the program's process-wide state).
    pub fn origin(&self) -> &Arc<Origin> {
        &self.origin
    }

    /// A sender of events to this program's controller (SIGTERM/SIGINT forwarding, the control
    /// socket).
    pub fn events(&self) -> mpsc::Sender<Event> {
        self.events_tx.clone()
    }

    /// The control socket, if the configuration asked for one.
    pub fn api(&self) -> Option<&ApiServer> {
        self.api.as_ref()
    }

    /// Starts the program's first thread and is its controller until it ends: answers control
    /// requests, ends the program on SIGTERM/SIGINT. Returns how the program ended.
    pub fn run(&mut self) -> Result<ExitStatus, LaunchError> {
        let events = self.events.take().ok_or(LaunchError::AlreadyRun)?;
        forward_exit_signals(self.events_tx.clone()).map_err(|e| island_err(&e))?;
        let o = Arc::clone(&self.islands[ORIGIN]);
        if let Some(main) = self.main.take() {
            self.origin.thread_started(main.tid, ORIGIN);
            vcpu_loop::start_thread(&o, main).map_err(|e| {
                island_err(&format!(
                    "cannot start the program's first thread: errno {}",
                    e.0
                ))
            })?;
        }
        let mut balancer = (self.balance_sharing && self.islands.len() > 1)
            .then(crate::balance::Balancer::default);
        let status = loop {
            let event = match &mut balancer {
                Some(b) => match events.recv_timeout(crate::balance::PERIOD) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        self.balance(b);
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        Err(std::sync::mpsc::RecvError)
                    }
                    Ok(e) => Ok(e),
                },
                None => events.recv(),
            };
            match event {
                Ok(Event::Exited(status)) => break status,
                Ok(Event::Signal(sig)) => {
                    self.origin.exit_group(ExitStatus::Signal(sig));
                }
                Ok(Event::Control(action, reply)) => {
                    // A connection that gave up waiting has dropped its receiver: nothing to do.
                    let _ = reply.send(self.answer(action));
                }
                // Every sender gone: cannot happen while `self` holds one.
                Err(_) => break self.origin.exit_status().unwrap_or(ExitStatus::Code(0)),
            }
        };
        // No controller from here on: requests still queued, and any made later, fail at once
        // with "the program has ended" instead of waiting for an answer that will not come.
        drop(events);
        // Let a system call already under way on another thread (a write, typically) finish
        // before popvmm exits and adds its own last line: Linux would not cut it in half either.
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline
            && self
                .islands
                .iter()
                .flat_map(|i| i.threads())
                .any(|t| t.state() == ThreadState::InKernel)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(status)
    }

    /// The controller's answer to a control socket action.
    pub fn answer(&self, action: ControlAction) -> ControlResult {
        let islands = &self.islands;
        Ok(match action {
            ControlAction::Islands => ControlAnswer::Islands(stats::island_list(islands)),
            ControlAction::Threads => {
                let mut list = stats::thread_list(islands);
                // A thread on its way between islands is in no island's table: list it where the
                // directory says it goes, as migrating (a listing never loses a live thread).
                for (tid, to, _) in self.origin.directory() {
                    if !list.iter().any(|t| t.tid == tid) {
                        list.push(crate::api::types::ThreadInfo::migrating(tid, to));
                    }
                }
                list.sort_by_key(|t| t.tid);
                ControlAnswer::Threads(list)
            }
            ControlAction::Pages { from, count } => {
                ControlAnswer::Pages(stats::pages(islands, from, count))
            }
            ControlAction::Stats => {
                ControlAnswer::Stats(Box::new(stats::counters(islands).stats()))
            }
            ControlAction::Metrics => ControlAnswer::Metrics(stats::counters(islands).prometheus()),
            ControlAction::Shutdown(_) => {
                // The program ends as if killed by SIGTERM (status 143 for the shell).
                self.origin.exit_group(ExitStatus::Signal(libc::SIGTERM));
                ControlAnswer::Shutdown(ShutdownAnswer::shutting_down())
            }
            ControlAction::Migrate { tid, request } => {
                let from = self.thread_island(tid, Some(request.to))?;
                if from == request.to {
                    return Err(ControlError::AlreadyThere {
                        tid,
                        to: request.to,
                    });
                }
                self.thread_op(tid, ThreadOp::Migrate(request.to))?;
                ControlAnswer::ThreadOp(ThreadOpAnswer {
                    tid,
                    from,
                    to: Some(request.to),
                    status: "migration requested".into(),
                })
            }
            ControlAction::Propose { tid, request } => {
                let from = self.thread_island(tid, request.to)?;
                self.thread_op(tid, ThreadOp::Propose(request.to))?;
                ControlAnswer::ThreadOp(ThreadOpAnswer {
                    tid,
                    from,
                    to: request.to,
                    status: "proposal set".into(),
                })
            }
        })
    }

    /// The island thread `tid` runs on, after checking that `to` (if any) is an island.
    /// One look of the sharing balancer: the pages each island faulted on, the threads on each
    /// island, and the migrations it decides.
    fn balance(&self, balancer: &mut crate::balance::Balancer) {
        let counts = self
            .islands
            .iter()
            .map(|i| {
                i.dsm
                    .traffic_all()
                    .iter()
                    .map(|(p, t)| (*p, crate::balance::PageCost::from(t)))
                    .collect()
            })
            .collect();
        let threads: Vec<Vec<u32>> = self
            .islands
            .iter()
            .map(|i| {
                i.threads()
                    .iter()
                    .filter(|t| t.state() != ThreadState::Exited)
                    .map(|t| t.tid)
                    .collect()
            })
            .collect();
        if let Some(m) = balancer.tick(Instant::now(), counts, &threads) {
            for tid in m.tids {
                // A thread that ended or is already moving meanwhile is skipped.
                let _ = self.origin.thread_control(tid, ThreadOp::Migrate(m.to));
                if self.verbose > 0 {
                    crate::diag!("popvmm: balance: thread {tid} -> island {}", m.to);
                }
            }
        }
    }

    fn thread_island(&self, tid: u32, to: Option<usize>) -> Result<usize, ControlError> {
        let islands = self.islands.len();
        if let Some(to) = to.filter(|&to| to >= islands) {
            return Err(ControlError::NoSuchIsland { to, islands });
        }
        self.origin
            .locate(tid)
            .ok_or(ControlError::NoSuchThread(tid))
    }

    fn thread_op(&self, tid: u32, op: ThreadOp) -> Result<(), ControlError> {
        self.origin
            .thread_control(tid, op)
            .map(|_| ())
            .map_err(|_| ControlError::NoSuchThread(tid))
    }

    /// What the run cost so far: the counters and, on several islands, the pages that cost the
    /// most messages ([`HOT_PAGES_AT_EXIT`]) and every page that cost one.
    pub fn summary(&self) -> Summary {
        stats::summary(&self.islands, HOT_PAGES_AT_EXIT)
    }

    /// The faults injected in the links so far, as the line popvmm prints after its exit
    /// summary; `None` when `POPVMM_FAULTS` asked for none (or the program has one island, so no
    /// links).
    pub fn faults_report(&self) -> Option<String> {
        let (spec, counters) = self.faults.as_ref().filter(|_| self.islands.len() > 1)?;
        Some(format!(
            "popvmm: faults injected ({FAULTS_VAR}={spec}): {}",
            counters.snapshot()
        ))
    }

    /// Start-up time and memory figures.
    pub fn startup_figures(&self) -> StartupFigures {
        let origin = &self.islands[ORIGIN];
        StartupFigures {
            first_entry_us: origin
                .first_entry_ns
                .load(std::sync::atomic::Ordering::Relaxed)
                / 1000,
            rss_bytes: vm_rss_bytes(),
            program_bytes: origin.vm.memory().resident_bytes(),
        }
    }
}

/// popvmm's resident set (VmRSS of /proc/self/status).
fn vm_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// SIGTERM and SIGINT, the signals that end a program from outside.
fn exit_signals() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is a valid argument for sigemptyset, which initializes it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; these calls only write to it.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
    }
    set
}

/// Blocks SIGTERM and SIGINT in the calling thread (and the threads it starts from now on).
fn block_exit_signals() -> std::io::Result<()> {
    let set = exit_signals();
    // SAFETY: `set` is a valid signal set; the old mask is not asked for.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// A thread that waits for SIGTERM and SIGINT (blocked everywhere else) and tells the controller.
fn forward_exit_signals(tx: mpsc::Sender<Event>) -> Result<(), String> {
    std::thread::Builder::new()
        .name("exit-signals".into())
        .stack_size(64 << 10)
        .spawn(move || {
            let set = exit_signals();
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is a valid signal set and `sig` a valid place for the result.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    return;
                }
                if tx.send(Event::Signal(sig)).is_err() {
                    return;
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the signal thread: {e}"))
}

impl Drop for Program {
    fn drop(&mut self) {
        // The socket first: no request should find the islands half stopped.
        drop(self.api.take());
        for island in &self.islands {
            island.stop();
        }
        self.fabric.shutdown();
    }
}
