//! `popvmm launch`: runs one static Linux program on islands and exits as it does. This layer
//! only parses the arguments into a [`LaunchConfig`], runs it (`program.rs`) and prints what
//! comes back; without a program it runs the demo (`program/demo.rs`) and prints its report.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use crate::api::types::Summary;
use crate::kernel::island::PopcornAbi;
use crate::kernel::{signal, ExitStatus, Placement};
use crate::program::demo::{Demo, DemoError};
use crate::program::{LaunchConfig, ProgramStdio};
pub use crate::program::{LaunchError as ProgramError, DEFAULT_ENV};

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
    /// The coherency protocol's optimizations of §5.2 (multicast groups, owner hint): `on` (the
    /// default) or `off` (the protocol of §4 alone).
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_on_off,
          action = clap::ArgAction::Set)]
    pub protocol_optimizations: bool,
    /// Read-ahead (`on`, the default, or `off`): a fault that continues a sequential or strided
    /// pattern of faults also asks for the next pages of the pattern (up to 32, in the same
    /// mapping), so that the thread finds them installed instead of faulting on each.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_on_off,
          action = clap::ArgAction::Set)]
    pub read_ahead: bool,
    /// Ranges (`on`, the default, or `off`): consecutive page messages of one kind to one island
    /// (the Fetches of a read-ahead, the Copies answering them) go as one message, and the pages
    /// of a range are installed in one UFFDIO_COPY. The protocol still sees one message per page.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_on_off,
          action = clap::ArgAction::Set)]
    pub batch_ranges: bool,
    /// The holding window against thrashing: a page that bounces between writers on different
    /// islands (a lock word, a barrier counter) is kept by its new writer for a short adaptive
    /// time (20 to 100 us, 0 for a page nobody contends) before another island takes it:
    /// `on` (the default) or `off`.
    #[arg(long, visible_alias = "thrash-window", value_name = "on|off", default_value = "on",
          value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub hold_window: bool,
    /// The holding window's longest and shortest time, in microseconds (tuning; default 100
    /// and 20).
    #[arg(long, value_name = "US", hide = true)]
    pub hold_window_max_us: Option<u64>,
    #[arg(long, value_name = "US", hide = true)]
    pub hold_window_min_us: Option<u64>,
    /// The sharing balancer: `sharing` moves threads that write-share pages onto one island
    /// (every 50 ms, the pair of islands whose write-shared pages cost the most messages is
    /// merged); `off` (the default) leaves threads where they are placed or migrated.
    #[arg(long, value_name = "off|sharing", default_value = "off", value_parser = parse_balance,
          action = clap::ArgAction::Set)]
    pub balance: bool,
    /// The vDSO: `on` (the default, when KVM is PVM and the host's TSC is its clock) serves
    /// clock_gettime, gettimeofday, time, getcpu and clock_getres in the program's user mode,
    /// without an exit; `off` leaves them system calls (no AT_SYSINFO_EHDR).
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_on_off,
          action = clap::ArgAction::Set)]
    pub vdso: bool,
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
    /// Let a migrated thread fault in the top of its stack on its new island (a read fault, then
    /// a write fault) instead of having it brought writable before it starts.
    #[arg(long)]
    pub no_stack_prefetch: bool,
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

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{s:?}: expected on or off")),
    }
}

fn parse_balance(s: &str) -> Result<bool, String> {
    match s {
        "sharing" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{s:?}: expected off or sharing")),
    }
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
    #[error("--placement: {0}")]
    Placement(String),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Demo(#[from] DemoError),
}

impl LaunchError {
    /// The shell's convention: 127 for a missing program, 126 for one that cannot be run; 2 when
    /// the demo is not built.
    fn status(&self) -> u8 {
        match self {
            LaunchError::Program(e) => e.status(),
            LaunchError::Demo(e) => e.status(),
            LaunchError::Placement(_) => 1,
        }
    }
}

pub fn run(args: LaunchArgs) -> ExitCode {
    let started = Instant::now();
    let result = if args.program.is_empty() {
        demo(&args, started)
    } else {
        launch(&args, started)
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            crate::diag!("popvmm: {e}");
            ExitCode::from(e.status())
        }
    }
}

/// The configuration the arguments describe.
fn config(args: &LaunchArgs) -> Result<LaunchConfig, LaunchError> {
    let islands = args.islands as usize;
    Ok(LaunchConfig {
        islands,
        placement: Placement::parse(&args.placement, islands).map_err(LaunchError::Placement)?,
        coherent_from_start: args.dsm,
        protocol_optimizations: args.protocol_optimizations,
        hold_window: args.hold_window.then(|| {
            let mut w = coherency::HoldWindow::DEFAULT;
            if let Some(us) = args.hold_window_max_us {
                w.max = us.saturating_mul(1_000);
            }
            if let Some(us) = args.hold_window_min_us {
                w.min = us.saturating_mul(1_000);
            }
            w.min = w.min.min(w.max);
            w
        }),
        argv: args.program.clone(),
        rootfs: args.rootfs.clone(),
        env: args.env.clone(),
        verbose: args.verbose,
        allow_port_io: args.allow_port_io,
        no_prefault: args.no_prefault,
        no_stack_prefetch: args.no_stack_prefetch,
        balance_sharing: args.balance,
        read_ahead: args.read_ahead,
        batch_ranges: args.batch_ranges,
        vdso: args.vdso,
        popcorn_abi: args.popcorn_abi,
        api_sock: args.api_sock.clone(),
        stdio: ProgramStdio::default(),
    })
}

fn launch(args: &LaunchArgs, started: Instant) -> Result<u8, LaunchError> {
    let mut program = config(args)?.build(started)?;
    let status = program.run()?;
    if args.stats {
        let f = program.startup_figures();
        crate::diag!(
            "popvmm: stats: startup_to_first_guest_entry_us={}",
            f.first_entry_us
        );
        if let (Some(total), Some(guest)) = (f.rss_bytes, f.program_bytes) {
            crate::diag!(
                "popvmm: stats: rss_total_kib={} program_pages_kib={} popvmm_overhead_kib={}",
                total / 1024,
                guest / 1024,
                total.saturating_sub(guest) / 1024
            );
        }
    }
    let summary = program.summary();
    if summary.stats.islands > 1 {
        // As `diag!`: a closed stderr must not turn the end of the run into a panic.
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), summary.text().as_bytes());
    }
    // After the summary, whose lines tests find by position.
    if let Some(line) = program.faults_report() {
        crate::diag!("{line}");
    }
    write_stats_json(args.stats_json.as_deref(), &summary);
    if let ExitStatus::Signal(sig) = status {
        if let Some(msg) = signal::shell_message(sig) {
            crate::diag!("{msg}");
        }
    }
    Ok(status.shell_status())
}

/// `--stats-json FILE`: the summary as JSON (a failure to write it is reported, not fatal).
fn write_stats_json(path: Option<&Path>, summary: &Summary) {
    let Some(path) = path else { return };
    let written = serde_json::to_vec(summary)
        .map_err(std::io::Error::from)
        .and_then(|json| std::fs::write(path, json));
    if let Err(e) = written {
        crate::diag!("popvmm: cannot write {}: {e}", path.display());
    }
}

/// `popvmm launch --islands N` with no program: the demo, natively then on the islands, compared;
/// then the island run's output, the verdict and the traffic.
fn demo(args: &LaunchArgs, started: Instant) -> Result<u8, LaunchError> {
    let config = config(args)?;
    let demo = Demo::find(config.islands)?;
    println!(
        "popvmm: no program given: the demo ({} {}: one worker thread per island on shared \
         arrays) on {} island(s), placement {}",
        demo.exe.display(),
        demo.threads,
        args.islands,
        args.placement
    );
    let run = demo.run(config, started)?;
    let island = &run.islands;
    // Broken pipes are not worth a panic: the verdict is the exit status.
    let _ = std::io::stdout().write_all(&island.stdout);
    let _ = std::io::stderr().write_all(&island.stderr);
    let same = run.same();
    println!(
        "popvmm: output and exit status {} the native run's",
        if same { "identical to" } else { "DIFFER from" }
    );
    println!("popvmm: traffic:");
    for line in island.summary.lines() {
        println!("  {line}");
    }
    write_stats_json(args.stats_json.as_deref(), &island.summary);
    Ok(if same { 0 } else { 1 })
}
