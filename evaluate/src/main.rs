//! `popvmm-eval`: popvmm's evaluation report (see the crate docs, and `scripts/evaluate`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};
use coherency_lab::figure7::{ArraySize, Pattern, ITERATIONS};

use popvmm_eval::data::{Evaluation, Meta};
use popvmm_eval::fig7::{self, Fig7Plan};
use popvmm_eval::npb::{self, NpbPlan, KERNELS};
use popvmm_eval::report;
use popvmm_eval::run::{load_average, Progress, Setup};

#[derive(Debug, Parser)]
#[command(
    name = "popvmm-eval",
    about = "popvmm's evaluation: a Markdown report with SVG plots"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// A minute or two: two figure-7 cells, two NPB kernels on 1 and 2 islands (the test suite's).
    Smoke,
    /// Under 10 minutes: figure 7 whole (3 runs a cell), every NPB kernel at class S once.
    Quick,
    /// Under an hour: figure 7 whole (5 runs a cell), the NPB kernels at classes S and W (3
    /// repetitions each; IS W takes ~2 minutes on 4 islands).
    Full,
}

#[derive(Debug, clap::Args)]
struct Where {
    /// The popvmm binary (default: the one beside popvmm-eval).
    #[arg(long)]
    popvmm: Option<PathBuf>,
    /// The guest images (default: images/out of the repository popvmm-eval was built in).
    #[arg(long)]
    images: Option<PathBuf>,
    /// The most one run may take, in seconds (then it is killed and reported).
    #[arg(long, default_value_t = 900)]
    limit: u64,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the evaluation and write DIR/report.md, its SVG figures, DIR/data.json and DIR/raw/.
    Run {
        #[arg(long, value_enum, default_value_t = Mode::Full)]
        mode: Mode,
        /// Where the report goes.
        #[arg(long, default_value = "eval")]
        out: PathBuf,
        /// scripts/bench-fabric's output, to put in the report.
        #[arg(long, value_name = "FILE")]
        fabric: Option<PathBuf>,
        /// The command line to print in the report (scripts/evaluate passes its own).
        #[arg(long)]
        command: Option<String>,
        #[command(flatten)]
        at: Where,
    },
    /// Figure 7 only: the simulator's table beside the counts measured on 2 real islands.
    Figure7 {
        /// Optimizations on only (half the runs).
        #[arg(long)]
        quick: bool,
        /// Runs of each cell and setting (the table shows their medians).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Also keep the runs' summaries and a report in this directory.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        at: Where,
    },
    /// Make the report and figures of DIR again from DIR/data.json and DIR/raw/.
    Render { dir: PathBuf },
    /// Two evaluations side by side: NPB times and messages, figure 7's measured counts.
    Compare { old: PathBuf, new: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("popvmm-eval: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The repository popvmm-eval was built in (target/<profile>/popvmm-eval -> the root).
fn repo_root() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let root = exe.parent()?.parent()?.parent()?.to_path_buf();
    root.join("images").is_dir().then_some(root)
}

fn setup(at: &Where, out: &Path) -> Result<Setup, String> {
    let popvmm = match &at.popvmm {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("popvmm"),
    };
    let images = match &at.images {
        Some(i) => i.clone(),
        None => repo_root()
            .map(|r| r.join("images/out"))
            .unwrap_or_else(|| PathBuf::from("images/out")),
    };
    if !popvmm.is_file() {
        return Err(format!(
            "{}: no popvmm binary (cargo build --release -p popvmm, or --popvmm)",
            popvmm.display()
        ));
    }
    if !images.join("glibc/fig7").is_file() {
        return Err(format!(
            "{}: no guest images (scripts/setup builds them, or --images)",
            images.display()
        ));
    }
    let raw = out.join("raw");
    std::fs::create_dir_all(&raw).map_err(|e| format!("{}: {e}", raw.display()))?;
    Ok(Setup {
        popvmm: std::fs::canonicalize(&popvmm).unwrap_or(popvmm),
        images: std::fs::canonicalize(&images).unwrap_or(images),
        raw: std::fs::canonicalize(&raw).unwrap_or(raw),
        limit: Duration::from_secs(at.limit),
    })
}

fn plans(mode: Mode) -> (Fig7Plan, NpbPlan) {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    match mode {
        Mode::Smoke => (
            Fig7Plan {
                sizes: vec![ArraySize::OnePage],
                patterns: vec![Pattern::ReadWrite],
                iterations: vec![1, 10],
                unoptimized: true,
                reps: 1,
            },
            NpbPlan {
                kernels: strings(&["ep", "is"]),
                classes: vec![("S".into(), 1)],
                islands: vec![1, 2],
            },
        ),
        Mode::Quick => (
            Fig7Plan::full(3),
            NpbPlan {
                kernels: strings(&KERNELS),
                classes: vec![("S".into(), 1)],
                islands: vec![1, 2, 4],
            },
        ),
        Mode::Full => (
            Fig7Plan::full(5),
            NpbPlan {
                kernels: strings(&KERNELS),
                classes: vec![("S".into(), 3), ("W".into(), 3)],
                islands: vec![1, 2, 4],
            },
        ),
    }
}

fn git_describe() -> Option<String> {
    let root = repo_root()?;
    let o = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(root)
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    popvmm_eval::utc(secs)
}

fn meta(mode: &str, command: String) -> Meta {
    Meta {
        date: now_utc(),
        mode: mode.into(),
        command,
        commit: git_describe(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_before: load_average(),
        load_after: None,
        seconds: 0.0,
    }
}

fn save(dir: &Path, eval: &Evaluation) -> Result<(), String> {
    let path = dir.join("data.json");
    let text = serde_json::to_string_pretty(eval).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn load(dir: &Path) -> Result<Evaluation, String> {
    let path = dir.join("data.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn execute(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Run {
            mode,
            out,
            fabric,
            command,
            at,
        } => {
            let started = Instant::now();
            let setup = setup(&at, &out)?;
            let (f7, np) = plans(mode);
            let mode_name = format!("{mode:?}").to_lowercase();
            let command = command.unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
            let mut eval = Evaluation {
                meta: meta(&mode_name, command),
                ..Evaluation::default()
            };
            let mut progress = Progress::new(f7.runs() + np.runs(), at.quiet);
            if !at.quiet {
                eprintln!(
                    "popvmm-eval: {mode_name}: {} figure-7 runs, {} NPB runs, into {}",
                    f7.runs(),
                    np.runs(),
                    out.display()
                );
            }
            // The smoke run simulates its own cells only; the others, every cell of the figure.
            let only = (mode == Mode::Smoke).then_some(&f7);
            let mut rows = fig7::simulate(only)?;
            fig7::run_plan(&setup, &f7, &mut rows, &mut progress).map_err(|e| e.to_string())?;
            eval.figure7 = rows;
            save(&out, &eval)?;
            eval.npb = npb::run_plan(&setup, &np, &mut progress).map_err(|e| e.to_string())?;
            if let Some(f) = fabric {
                eval.fabric =
                    Some(std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?);
            }
            eval.meta.load_after = load_average();
            eval.meta.seconds = started.elapsed().as_secs_f64();
            save(&out, &eval)?;
            let files = report::render(&out, &eval).map_err(|e| e.to_string())?;
            if !at.quiet {
                eprintln!(
                    "popvmm-eval: done in {:.0} s: {} files in {}",
                    eval.meta.seconds,
                    files.len() + 1,
                    out.display()
                );
            }
            print!("{}", fig7::table(&eval.figure7));
            Ok(())
        }
        Cmd::Figure7 {
            quick,
            reps,
            out,
            at,
        } => {
            let scratch;
            let dir = match &out {
                Some(d) => d.clone(),
                None => {
                    scratch =
                        std::env::temp_dir().join(format!("popvmm-fig7-{}", std::process::id()));
                    scratch.clone()
                }
            };
            let started = Instant::now();
            let setup = setup(&at, &dir)?;
            let plan = Fig7Plan {
                sizes: ArraySize::ALL.to_vec(),
                patterns: Pattern::ALL.to_vec(),
                iterations: ITERATIONS.to_vec(),
                unoptimized: !quick,
                reps: reps.max(1),
            };
            let mut rows = fig7::simulate(None)?;
            let mut progress = Progress::new(plan.runs(), at.quiet);
            fig7::run_plan(&setup, &plan, &mut rows, &mut progress).map_err(|e| e.to_string())?;
            println!(
                "Figure 7: simulated (coherency-lab, latency {} element accesses, seed {}) and \
                 measured on 2 islands (fig7, the array's pages alone)",
                fig7::SIM_LATENCY,
                fig7::SIM_SEED
            );
            print!("{}", fig7::table(&rows));
            if out.is_some() {
                let mut eval = Evaluation {
                    meta: meta("figure7", std::env::args().collect::<Vec<_>>().join(" ")),
                    figure7: rows,
                    ..Evaluation::default()
                };
                eval.meta.load_after = load_average();
                eval.meta.seconds = started.elapsed().as_secs_f64();
                save(&dir, &eval)?;
                report::render(&dir, &eval).map_err(|e| e.to_string())?;
            } else {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Ok(())
        }
        Cmd::Render { dir } => {
            let eval = load(&dir)?;
            let files = report::render(&dir, &eval).map_err(|e| e.to_string())?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
        Cmd::Compare { old, new } => {
            print!("{}", report::compare(&load(&old)?, &load(&new)?));
            Ok(())
        }
    }
}
