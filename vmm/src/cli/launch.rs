//! `popvmm launch`: runs one static Linux program on an island and exits as it does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use kvm_bindings::kvm_regs;
use serde_json::Value;

use crate::dsm::Dsm;
use crate::kernel::cluster::{
    service_loop, IslandFabric, IslandId, IslandLink, Placement, ProgramState,
};
use crate::kernel::thread::{spawn, Thread};
use crate::kernel::{signal, ExitStatus, KernelConfig, Process};
use crate::kvm::IslandVm;
use crate::loader::{stack, ElfImage, LoaderError};
use crate::memory::layout::ISLAND_MEMORY_SIZE;
use crate::memory::IslandMemory;

/// How many pages the exit summary names (the ones that cost the most messages).
const HOT_PAGES_AT_EXIT: usize = 3;

/// The environment a program gets unless `--env` adds to it.
pub const DEFAULT_ENV: [&str; 2] = ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/"];

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Number of islands (KVM VMs that share no memory), 1 to 64.
    #[arg(long, default_value_t = 1)]
    pub islands: u32,
    /// Where new threads go: origin, round-robin (islands 1, 2, ..., 0, 1, ...; the main thread
    /// stays on the origin, island 0) or list:I,J,... (the n-th new thread on the n-th island).
    #[arg(long, default_value = "round-robin")]
    pub placement: String,
    /// Run a single island through the coherency layer anyway (userfaultfd, no messages): the
    /// benchmark's local fault floor.
    #[arg(long, hide = true)]
    pub dsm: bool,
    /// Write the run's summary (messages, faults, latencies) as JSON to this file at exit.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Host directory served read-only as the program's root (default: the program's directory).
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Adds K=V to the program's environment (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Serve the control socket (HTTP/1.1 + JSON) on this Unix socket path.
    #[arg(long)]
    pub api_sock: Option<PathBuf>,
    /// Diagnostics on stderr: -v unsupported calls and faults, -vv every system call.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Let the program's own port I/O exit to popvmm and continue (the benchmark's exit floor).
    #[arg(long, hide = true)]
    pub allow_port_io: bool,
    /// Let anonymous memory fault in page by page as Linux does, instead of making new heap and
    /// mmap memory (up to 64 MiB a call) resident at once; slower on first touch under KVM.
    #[arg(long)]
    pub no_prefault: bool,
    /// Print start-up time and memory figures on stderr at exit.
    #[arg(long)]
    pub stats: bool,
    /// The program and its arguments. Without one, popvmm runs its demo (`images/out/glibc/demo`,
    /// one worker thread per island), checks its output against a native run, and prints the
    /// traffic it caused.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM [ARGS]..."
    )]
    pub program: Vec<String>,
}

/// Errors that stop a launch before the program runs.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("--islands {0}: must be between 1 and 64")]
    Islands(u32),
    #[error("--placement: {0}")]
    Placement(String),
    #[error("{0}: {1}")]
    Load(String, LoaderError),
    #[error("--env {0}: expected K=V")]
    Env(String),
    #[error("cannot create the island: {0}")]
    Island(String),
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
}

impl LaunchError {
    /// The shell's convention: 127 for a missing program, 126 for one that cannot be run.
    fn status(&self) -> u8 {
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

pub fn run(args: LaunchArgs) -> ExitCode {
    if args.program.is_empty() {
        return run_demo(&args);
    }
    let started = Instant::now();
    match launch(args, started) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("popvmm: {e}");
            ExitCode::from(e.status())
        }
    }
}

/// Where the guest images are: next to the repository popvmm was built in, or `POPVMM_IMAGES`.
fn images_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("POPVMM_IMAGES") {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    // target/{release,debug}/popvmm -> the repository's images/out
    let repo = exe.parent()?.parent()?.parent()?;
    let dir = repo.join("images/out");
    dir.is_dir().then_some(dir)
}

/// `popvmm launch --islands N` with no program: the demo, natively then on the islands, compared.
fn run_demo(args: &LaunchArgs) -> ExitCode {
    use std::process::{Command, Stdio};
    let Some(images) = images_dir() else {
        eprintln!(
            "popvmm: no program given, and the demo is not built: run scripts/setup (or set \
             POPVMM_IMAGES to a directory holding glibc/demo)"
        );
        return ExitCode::from(2);
    };
    let demo = images.join("glibc/demo");
    if !demo.is_file() {
        eprintln!(
            "popvmm: no program given, and {} is missing: run scripts/setup",
            demo.display()
        );
        return ExitCode::from(2);
    }
    let threads = args.islands.max(2).to_string();
    println!(
        "popvmm: no program given: the demo ({} {threads}: one worker thread per island on shared \
         arrays) on {} island(s), placement {}",
        demo.display(),
        args.islands,
        args.placement
    );
    let native = match Command::new(&demo)
        .arg(&threads)
        .current_dir(&images)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("popvmm: cannot run the demo natively: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(me) = std::env::current_exe() else {
        eprintln!("popvmm: cannot find my own executable");
        return ExitCode::FAILURE;
    };
    let mut cmd = Command::new(me);
    cmd.arg("launch")
        .arg("--islands")
        .arg(args.islands.to_string())
        .arg("--placement")
        .arg(&args.placement)
        .arg("--rootfs")
        .arg(&images);
    if let Some(sock) = &args.api_sock {
        cmd.arg("--api-sock").arg(sock);
    }
    if let Some(json) = &args.stats_json {
        cmd.arg("--stats-json").arg(json);
    }
    let island = match cmd
        .arg("--")
        .arg(&demo)
        .arg(&threads)
        .current_dir(&images)
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("popvmm: cannot run the demo on the islands: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", String::from_utf8_lossy(&island.stdout));
    let stderr = String::from_utf8_lossy(&island.stderr);
    let (summary, program_err): (Vec<&str>, Vec<&str>) =
        stderr.lines().partition(|l| l.starts_with("popvmm: "));
    for l in &program_err {
        eprintln!("{l}");
    }
    let same = island.stdout == native.stdout
        && program_err.join("\n").trim_end() == String::from_utf8_lossy(&native.stderr).trim_end()
        && island.status.code() == native.status.code();
    println!(
        "popvmm: output and exit status {} the native run's",
        if same { "identical to" } else { "DIFFER from" }
    );
    println!("popvmm: traffic:");
    for l in summary {
        println!("  {}", l.trim_start_matches("popvmm: "));
    }
    if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The program's path as it sees it: relative to the root when inside it.
fn guest_exe_path(exe: &Path, root: &Path) -> String {
    match exe.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => exe.display().to_string(),
    }
}

fn launch(args: LaunchArgs, started: Instant) -> Result<u8, LaunchError> {
    if !(1..=64).contains(&args.islands) {
        return Err(LaunchError::Islands(args.islands));
    }
    let placement =
        Placement::parse(&args.placement, args.islands as usize).map_err(LaunchError::Placement)?;
    let program = args.program[0].clone();
    let file = std::fs::read(&program).map_err(|source| {
        LaunchError::Load(
            program.clone(),
            LoaderError::Read {
                path: program.clone(),
                source,
            },
        )
    })?;
    let image = ElfImage::parse(&file).map_err(|e| LaunchError::Load(program.clone(), e))?;
    let exe = std::fs::canonicalize(&program).unwrap_or_else(|_| PathBuf::from(&program));
    let rootfs = match &args.rootfs {
        Some(r) => std::fs::canonicalize(r).unwrap_or_else(|_| r.clone()),
        None => exe
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/")),
    };
    let mut env: Vec<String> = DEFAULT_ENV.iter().map(|s| s.to_string()).collect();
    for kv in &args.env {
        let Some((k, _)) = kv.split_once('=') else {
            return Err(LaunchError::Env(kv.clone()));
        };
        env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k));
        env.push(kv.clone());
    }
    let config = KernelConfig {
        rootfs: rootfs.clone(),
        exe_path: guest_exe_path(&exe, &rootfs),
        verbose: args.verbose,
        allow_port_io: args.allow_port_io,
        no_prefault: args.no_prefault,
        island: 0,
    };

    let island_err = |e: &dyn std::fmt::Display| LaunchError::Island(e.to_string());
    let phase = |what: &str| {
        if args.verbose >= 3 {
            eprintln!("popvmm: {:>8} us {what}", started.elapsed().as_micros());
        }
    };
    phase("parsed");
    crate::kernel::thread::install_kick_handler().map_err(|e| {
        island_err(&format!(
            "cannot install the vCPU kick handler: errno {}",
            e.0
        ))
    })?;
    let islands = if args.islands == 1 && !args.dsm {
        let memory = Arc::new(IslandMemory::new(ISLAND_MEMORY_SIZE).map_err(|e| island_err(&e))?);
        phase("memory reserved");
        let vm = IslandVm::new(memory).map_err(|e| island_err(&e))?;
        phase("vm created");
        let p = Process::new(vm, config, started).map_err(|e| island_err(&e))?;
        image
            .load(&p, &file)
            .map_err(|e| LaunchError::Load(program.clone(), e))?;
        vec![p]
    } else {
        let islands = build_islands(args.islands as usize, placement, &config, started, args.dsm)?;
        phase("islands created");
        image
            .load(&islands[0], &file)
            .map_err(|e| LaunchError::Load(program.clone(), e))?;
        for p in &islands[1..] {
            image
                .load_local(p, &file)
                .map_err(|e| LaunchError::Load(program.clone(), e))?;
        }
        islands
    };
    let p = Arc::clone(&islands[0]);
    drop(file);
    phase("loaded");
    let rsp = stack::build(&p, &image, &args.program, &env, &program)
        .map_err(|e| LaunchError::Load(program.clone(), e))?;

    let mut vcpu = p.take_vcpu().map_err(|e| island_err(&e))?;
    let regs = kvm_regs {
        rip: image.entry,
        rsp,
        rflags: 0x202,
        ..Default::default()
    };
    vcpu.start_user(&regs, 0, None)
        .map_err(|e| island_err(&e))?;
    phase("vcpu ready");
    let main = Thread::new(p.alloc_tid(), vcpu);
    main.status.set_rip(image.entry);
    p.register_thread(Arc::clone(&main.status));

    let _api = match &args.api_sock {
        Some(path) => Some(crate::api::serve(path, islands.clone())?),
        None => None,
    };
    spawn(&p, main)
        .map_err(|e| island_err(&format!("cannot start the vCPU thread: errno {}", e.0)))?;
    let status = p.wait_exit();
    // Let a system call already under way on another thread (a write, typically) finish before
    // popvmm exits and adds its own last line: Linux would not cut it in half either.
    let deadline = Instant::now() + std::time::Duration::from_millis(200);
    while Instant::now() < deadline
        && p.threads()
            .iter()
            .any(|t| t.state() == crate::kernel::ThreadState::InKernel)
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }

    if args.stats {
        print_stats(&p);
    }
    if islands[0].distributed() {
        let summary = crate::api::summary(&islands);
        eprint!("{}", summary.text());
        let hot = crate::api::stats::hot_pages(&islands, HOT_PAGES_AT_EXIT);
        if let Some(line) = crate::api::stats::hot_pages_text(&hot) {
            eprint!("{line}");
        }
        if let Some(path) = &args.stats_json {
            let mut json = summary.json();
            json["hot_pages"] = Value::Array(hot);
            if let Err(e) = std::fs::write(path, json.to_string()) {
                eprintln!("popvmm: cannot write {}: {e}", path.display());
            }
        }
    } else if let Some(path) = &args.stats_json {
        let summary = crate::api::summary(&islands);
        if let Err(e) = std::fs::write(path, summary.json().to_string()) {
            eprintln!("popvmm: cannot write {}: {e}", path.display());
        }
    }
    if let ExitStatus::Signal(sig) = status {
        if let Some(msg) = signal::shell_message(sig) {
            eprintln!("{msg}");
        }
    }
    Ok(status.shell_status())
}

/// Creates the islands of a program spanning several: one VM, memory and coherency layer each,
/// linked to each other, with their service threads running.
fn build_islands(
    n: usize,
    placement: Placement,
    config: &KernelConfig,
    started: Instant,
    coherent: bool,
) -> Result<Vec<Arc<Process>>, LaunchError> {
    let island_err = |e: &dyn std::fmt::Display| LaunchError::Island(e.to_string());
    let program = Arc::new(ProgramState::new(n, placement));
    let fabric: Arc<IslandFabric> = Arc::new(
        IslandFabric::new(n, crate::fabric::FabricConfig::default()).map_err(|e| island_err(&e))?,
    );
    let engine = coherency::Config::new(n);
    let mut islands: Vec<Arc<Process>> = Vec::with_capacity(n);
    for i in 0..n {
        let memory = Arc::new(IslandMemory::new(ISLAND_MEMORY_SIZE).map_err(|e| island_err(&e))?);
        let vm = IslandVm::new(Arc::clone(&memory)).map_err(|e| island_err(&e))?;
        let mut dsm = Dsm::new(i as IslandId, engine, memory).map_err(|e| island_err(&e))?;
        // Only the origin runs a thread at first; islands join the protocol with their first
        // thread (`Process::sync_layout_to`).
        dsm.set_members(coherency::KernelSet::only(0));
        let link = IslandLink::new(
            i as IslandId,
            Arc::clone(&fabric),
            dsm,
            Arc::clone(&program),
            coherent,
        )
        .map_err(|e| island_err(&e))?;
        let mut cfg = config.clone();
        cfg.island = i as u32;
        let p = Process::new_island(vm, cfg, started, islands.first().map(|o| &**o), link)
            .map_err(|e| island_err(&e))?;
        islands.push(p);
    }
    for p in &islands {
        let p2 = Arc::clone(p);
        let rx = fabric
            .receiver(p.island() as usize)
            .map_err(|e| island_err(&e))?;
        std::thread::Builder::new()
            .name(format!("island{}-service", p.island()))
            .spawn(move || service_loop(p2, rx))
            .map_err(|e| island_err(&e))?;
    }
    Ok(islands)
}

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

fn print_stats(p: &Process) {
    let first = p.first_entry_ns.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "popvmm: stats: startup_to_first_guest_entry_us={}",
        first / 1000
    );
    if let (Some(total), Some(guest)) = (vm_rss_bytes(), p.vm.memory().resident_bytes()) {
        eprintln!(
            "popvmm: stats: rss_total_kib={} program_pages_kib={} popvmm_overhead_kib={}",
            total / 1024,
            guest / 1024,
            total.saturating_sub(guest) / 1024
        );
    }
}
