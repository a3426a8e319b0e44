//! `popvmm launch`: runs one static Linux program on an island and exits as it does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use serde_json::Value;

use crate::fabric::MAX_ISLANDS;
use crate::kernel::island::PopcornAbi;
use crate::kernel::{signal, ExitStatus, Island, Placement, ORIGIN};
use crate::program::LaunchConfig;
pub use crate::program::{LaunchError as ProgramError, DEFAULT_ENV};

/// How many pages the exit summary names (the ones that cost the most messages).
const HOT_PAGES_AT_EXIT: usize = 3;

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
    /// Where Popcorn's migration calls are numbered: `popvmm` (900-903, the default) or `4.4`
    /// (Popcorn's 4.4 kernel, 330-333; hides pkey_alloc, pkey_free, statx and io_pgetevents).
    #[arg(long, value_name = "ABI", default_value = "popvmm", value_parser = parse_abi)]
    pub popcorn_abi: PopcornAbi,
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

fn parse_abi(s: &str) -> Result<PopcornAbi, String> {
    match s {
        "popvmm" | "900" => Ok(PopcornAbi::Popvmm),
        "4.4" => Ok(PopcornAbi::Linux44),
        _ => Err(format!(
            "{s:?}: expected popvmm (calls at 900-903) or 4.4 (Popcorn's 330-333)"
        )),
    }
}

/// Errors that stop a launch before the program runs.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("--islands {0}: must be between 1 and {MAX_ISLANDS}")]
    Islands(usize),
    #[error("--placement: {0}")]
    Placement(String),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
}

impl LaunchError {
    /// The shell's convention: 127 for a missing program, 126 for one that cannot be run.
    fn status(&self) -> u8 {
        match self {
            LaunchError::Program(e) => e.status(),
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

fn launch(args: LaunchArgs, started: Instant) -> Result<u8, LaunchError> {
    let islands = args.islands as usize;
    if !(1..=MAX_ISLANDS).contains(&islands) {
        return Err(LaunchError::Islands(islands));
    }
    let placement = Placement::parse(&args.placement, islands).map_err(LaunchError::Placement)?;
    let config = LaunchConfig {
        islands,
        placement,
        coherent_from_start: args.dsm,
        argv: args.program.clone(),
        rootfs: args.rootfs.clone(),
        env: args.env.clone(),
        verbose: args.verbose,
        allow_port_io: args.allow_port_io,
        no_prefault: args.no_prefault,
        popcorn_abi: args.popcorn_abi,
    };
    let mut program = config.build(started)?;
    let _api = match &args.api_sock {
        Some(path) => Some(crate::api::serve(path, program.islands().to_vec())?),
        None => None,
    };
    let status = program.run()?;
    let islands = program.islands();
    if args.stats {
        print_stats(&islands[ORIGIN]);
    }
    if islands.len() > 1 {
        let summary = crate::api::summary(islands);
        eprint!("{}", summary.text());
        let hot = crate::api::stats::hot_pages(islands, HOT_PAGES_AT_EXIT);
        if let Some(line) = crate::api::stats::hot_pages_text(&hot) {
            eprint!("{line}");
        }
        if let Some(path) = &args.stats_json {
            let mut json = summary.json();
            json["hot_pages"] = Value::Array(hot);
            json["pages"] = Value::Array(crate::api::stats::pages_with_traffic(islands));
            if let Err(e) = std::fs::write(path, json.to_string()) {
                eprintln!("popvmm: cannot write {}: {e}", path.display());
            }
        }
    } else if let Some(path) = &args.stats_json {
        let summary = crate::api::summary(islands);
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

fn print_stats(p: &Island) {
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
