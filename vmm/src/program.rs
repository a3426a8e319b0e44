//! A program on its islands, as a library.
//!
//! [`LaunchConfig`] says what to run and how; [`LaunchConfig::build`] creates the islands (one VM,
//! memory, coherency layer and island kernel each, linked by the fabric, with their service
//! threads) and loads the program on them; [`Program::run`] starts its first thread and waits for
//! its end, serving the control socket's actions meanwhile (the controller owns the program: the
//! socket's thread only forwards requests to it). `popvmm launch` and the demo are thin layers
//! over this (`cli/launch.rs`).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::kvm_regs;

use crate::dsm::{Dsm, DsmPort, SendPage};
use crate::fabric::{FabricConfig, MAX_ISLANDS};
use crate::kernel::fs::Files;
use crate::kernel::link::{IslandFabric, Link};
use crate::kernel::messages::IslandMessage;
use crate::kernel::thread::Thread;
use crate::kernel::vma::ExecImage;
use crate::kernel::{
    service_loop, vcpu_loop, ExitStatus, Island, IslandParts, KernelConfig, Member, Origin,
    Placement, ThreadState, ORIGIN,
};
use crate::kvm::IslandVm;
use crate::loader::{stack, ElfImage, LoaderError};
use crate::memory::layout::ISLAND_MEMORY_SIZE;
use crate::memory::IslandMemory;

/// The environment a program gets unless the configuration adds to it.
pub const DEFAULT_ENV: [&str; 2] = ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/"];

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    /// Islands (KVM VMs that share no memory), 1 to [`MAX_ISLANDS`].
    pub islands: usize,
    /// Where new threads go.
    pub placement: Placement,
    /// Run the coherency protocol from the start, even on one island (a benchmark's floor).
    pub coherent_from_start: bool,
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
}

impl LaunchConfig {
    /// Runs `argv` on `islands` islands with the defaults.
    pub fn new(islands: usize, argv: Vec<String>) -> Self {
        Self {
            islands,
            placement: Placement::RoundRobin,
            coherent_from_start: false,
            argv,
            rootfs: None,
            env: Vec::new(),
            verbose: 0,
            allow_port_io: false,
            no_prefault: false,
        }
    }
}

/// Errors that stop a launch before the program runs.
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
    #[error("cannot create the island: {0}")]
    Island(String),
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
}

/// A program loaded on its islands, ready to run.
#[derive(Debug)]
pub struct Program {
    islands: Vec<Arc<Island>>,
    origin: Arc<Origin>,
    fabric: Arc<IslandFabric>,
    main: Option<Thread>,
    events: mpsc::Receiver<Event>,
    events_tx: mpsc::Sender<Event>,
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
    /// Creates the islands and loads the program; `started` is when popvmm started (for the
    /// start-up figure).
    pub fn build(&self, started: Instant) -> Result<Program, LaunchError> {
        let n = self.islands;
        if !(1..=MAX_ISLANDS).contains(&n) {
            return Err(LaunchError::Islands(n));
        }
        let path = self.argv.first().ok_or(LaunchError::NoProgram)?.clone();
        let load_err = |e| LaunchError::Load(path.clone(), e);
        let file: Arc<[u8]> = std::fs::read(&path)
            .map_err(|source| {
                load_err(LoaderError::Read {
                    path: path.clone(),
                    source,
                })
            })?
            .into();
        let image = ElfImage::parse(&file).map_err(load_err)?;
        let exe = std::fs::canonicalize(&path).unwrap_or_else(|_| PathBuf::from(&path));
        let rootfs = match &self.rootfs {
            Some(r) => std::fs::canonicalize(r).unwrap_or_else(|_| r.clone()),
            None => exe
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/")),
        };
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
        };
        let phase = |what: &str| {
            if self.verbose >= 3 {
                eprintln!("popvmm: {:>8} us {what}", started.elapsed().as_micros());
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
        let files = Files::new(&rootfs, std::process::id(), config.exe_path.clone())
            .map_err(|e| island_err(&e))?;
        let (events_tx, events) = mpsc::channel();
        let fabric: Arc<IslandFabric> =
            Arc::new(IslandFabric::new(n, FabricConfig::default()).map_err(|e| island_err(&e))?);
        // A program on one island never runs the protocol (unless asked to): no coherency layer.
        let with_dsm = n > 1 || self.coherent_from_start;
        let engine = coherency::Config::new(n);
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
                Some(dsm)
            } else {
                None
            };
            let tx = link.sender();
            let send: SendPage = Box::new(move |to, msg| {
                tx.post(usize::from(to), &IslandMessage::Coherency(msg.clone()))
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
        let rsp = stack::build(o, &image, &self.argv, &env, &path).map_err(load_err)?;
        let mut vcpu = o.take_vcpu().map_err(|e| island_err(&e))?;
        let regs = kvm_regs {
            rip: image.entry,
            rsp,
            rflags: 0x202,
            ..Default::default()
        };
        vcpu.start_user(&regs, 0, None)
            .map_err(|e| island_err(&e))?;
        phase("vcpu ready");
        let main = Thread::new(o.alloc_tid(), vcpu);
        main.status.set_rip(image.entry);
        Ok(Program {
            islands,
            origin,
            fabric,
            main: Some(main),
            events,
            events_tx,
        })
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

    /// A sender of events to this program's controller (SIGTERM/SIGINT forwarding).
    pub fn events(&self) -> mpsc::Sender<Event> {
        self.events_tx.clone()
    }

    /// Starts the program's first thread and waits for the program's end; returns how it ended.
    pub fn run(&mut self) -> Result<ExitStatus, LaunchError> {
        forward_exit_signals(self.events_tx.clone()).map_err(|e| island_err(&e))?;
        let o = Arc::clone(&self.islands[ORIGIN]);
        if let Some(main) = self.main.take() {
            let tid = main.tid;
            self.origin.thread_started(tid, ORIGIN);
            o.register_thread(Arc::clone(&main.status));
            vcpu_loop::spawn(&o, main)
                .map_err(|e| island_err(&format!("cannot start the vCPU thread: errno {}", e.0)))?;
        }
        let status = loop {
            match self.events.recv() {
                Ok(Event::Exited(status)) => break status,
                Ok(Event::Signal(sig)) => {
                    use crate::kernel::Services;
                    self.origin.exit_group(ExitStatus::Signal(sig));
                }
                // Every sender gone: cannot happen while `self` holds one.
                Err(_) => break self.origin.exit_status().unwrap_or(ExitStatus::Code(0)),
            }
        };
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
        for island in &self.islands {
            island.stop();
        }
        self.fabric.shutdown();
    }
}
