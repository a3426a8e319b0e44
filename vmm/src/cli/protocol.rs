//! `popvmm protocol ...`: the coherency protocol without KVM (model checking, simulation, figure 7).
//!
//! The tools are `coherency-lab`'s, behind popvmm's `lab` feature (on by default); none of them is
//! on the island's path. The engine's deliberate bugs (`--mutant`) exist only in a popvmm built
//! with the `mutants` feature: a plain build's engine has no mutant branch.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
#[cfg(feature = "lab")]
use coherency::Config;
#[cfg(feature = "lab")]
use coherency_lab::model::{CoherencyModel, Delivery, ModelConfig};
#[cfg(feature = "lab")]
use coherency_lab::sim::{Protocol, RandomWorkload, SimConfig};

#[derive(Debug, Subcommand)]
pub enum ProtocolCommand {
    /// Exhaustively model-check the real protocol engine: every interleaving of the kernels'
    /// accesses and message deliveries. Exits non-zero on a violation and prints the counterexample.
    Check(CheckArgs),
    /// Simulate a large system with random interleavings: counts messages by type and checks the
    /// invariants after every event.
    Simulate(SimulateArgs),
    /// The paper's evaluation (§6, figure 7) in simulation: two kernels streaming over a shared
    /// array, Popcorn beside IVY on the same traces.
    Figure7(Figure7Args),
}

#[derive(Debug, Args)]
pub struct Figure7Args {
    /// Mean one-way message latency, in units of one array element access.
    #[arg(long, default_value_t = 2048)]
    pub latency: u64,
    /// Seed of the message latencies.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The optimizations of §5.2 for the Popcorn protocol.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub optimizations: OnOff,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// The Popcorn page coherency protocol.
    Popcorn,
    /// IVY's centralized manager (Li and Hudak), the baseline.
    Ivy,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Number of kernels (islands), 1 to 64.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub kernels: u8,
    /// Number of pages.
    #[arg(long, default_value_t = 1024)]
    pub pages: u64,
    /// Accesses in all, shared evenly by the kernels.
    #[arg(long, default_value_t = 1_000_000)]
    pub accesses: u64,
    /// Seed of the random interleavings and of the access trace.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = ProtocolArg::Popcorn)]
    pub protocol: ProtocolArg,
    /// Fraction of accesses that are writes, 0 to 1.
    #[arg(long, default_value_t = 0.3)]
    pub write_ratio: f64,
    /// The optimizations of §5.2 (Popcorn only).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub optimizations: OnOff,
    /// Mean one-way message latency, in units of one memory access.
    #[arg(long, default_value_t = 100)]
    pub latency: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeliveryArg {
    /// FIFO on each ordered pair of kernels, no order across pairs.
    Fifo,
    /// Any message in flight may be delivered next.
    Unordered,
}

/// What `--mutant` names: one of the engine's deliberate bugs, whose names are the engine's own
/// ([`coherency::Mutant::name`]).
#[cfg(feature = "mutants")]
pub type MutantChoice = coherency::Mutant;

#[cfg(feature = "mutants")]
fn mutant_parser() -> impl clap::builder::TypedValueParser<Value = MutantChoice> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(coherency::Mutant::ALL.map(coherency::Mutant::name))
        .try_map(|name| coherency::Mutant::from_name(&name).ok_or("no such mutant"))
}

/// Without the `mutants` feature the engine has no mutant, so `--mutant` names nothing.
#[cfg(not(feature = "mutants"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MutantChoice {}

#[cfg(not(feature = "mutants"))]
fn mutant_parser() -> fn(&str) -> Result<MutantChoice, String> {
    |_| {
        Err(
            "this popvmm was built without the engine's mutants; build it with \
             `--features mutants` (cargo run --release -p popvmm --features mutants -- \
             protocol check ... --mutant NAME)"
                .to_string(),
        )
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Number of kernels (islands).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub kernels: u8,
    /// Number of pages.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub pages: u8,
    /// Accesses per kernel (each one a read or a write of any page).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub ops: u8,
    /// The optimizations of §5.2 (multicast groups and owner hint).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub optimizations: OnOff,
    /// The holding window against thrashing (decision 17): a request for a page its writer got
    /// lately waits for the end of the window, which the model lets come at any later point.
    #[arg(long, value_enum, default_value_t = OnOff::Off)]
    pub hold_window: OnOff,
    /// Message delivery order.
    #[arg(long, value_enum, default_value_t = DeliveryArg::Fifo)]
    pub delivery: DeliveryArg,
    /// Run a deliberately broken protocol (the check must then fail). Only in a popvmm built with
    /// `--features mutants`.
    #[arg(long, value_name = "NAME", value_parser = mutant_parser())]
    pub mutant: Option<MutantChoice>,
    /// Checker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[cfg(feature = "lab")]
pub fn run(cmd: ProtocolCommand) -> ExitCode {
    match cmd {
        ProtocolCommand::Check(args) => check(&args),
        ProtocolCommand::Simulate(args) => simulate(&args),
        ProtocolCommand::Figure7(args) => figure7(&args),
    }
}

#[cfg(not(feature = "lab"))]
pub fn run(cmd: ProtocolCommand) -> ExitCode {
    let _ = cmd;
    crate::diag!(
        "popvmm protocol: this popvmm was built without the protocol tools (the `lab` feature, \
         on by default; it was left out with --no-default-features)"
    );
    ExitCode::from(2)
}

#[cfg(feature = "lab")]
fn figure7(args: &Figure7Args) -> ExitCode {
    println!(
        "Figure 7 in simulation: 2 kernels, one thread on each, message latency ~{} element \
         accesses, seed {}",
        args.latency, args.seed
    );
    println!(
        "requests = Fetch + Fetch Write (IVY: read + write requests); invalids = Invalid \
         (IVY: invalidate)"
    );
    let engine = engine_config(2, args.optimizations);
    match coherency_lab::figure7::figure7(engine, args.latency, args.seed) {
        Ok(rows) => {
            print!("{}", coherency_lab::figure7::Figure7Table(&rows));
            let broken = rows
                .iter()
                .filter_map(|r| r.popcorn.violation.as_ref().or(r.ivy.violation.as_ref()))
                .next();
            match broken {
                Some(v) => {
                    crate::diag!("invariant violated: {v}");
                    ExitCode::FAILURE
                }
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            crate::diag!("popvmm protocol figure7: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(feature = "lab")]
fn engine_config(kernels: usize, optimizations: OnOff) -> Config {
    match optimizations {
        OnOff::On => Config::new(kernels),
        OnOff::Off => Config::unoptimized(kernels),
    }
}

#[cfg(feature = "lab")]
fn simulate(args: &SimulateArgs) -> ExitCode {
    if !(0.0..=1.0).contains(&args.write_ratio) {
        crate::diag!(
            "popvmm protocol simulate: --write-ratio must be between 0 and 1, got {}",
            args.write_ratio
        );
        return ExitCode::from(2);
    }
    let kernels = args.kernels as usize;
    let protocol = match args.protocol {
        ProtocolArg::Popcorn => Protocol::Popcorn(engine_config(kernels, args.optimizations)),
        ProtocolArg::Ivy => Protocol::Ivy,
    };
    let mut config = SimConfig::new(kernels, args.pages, args.seed, protocol);
    config.latency = args.latency;
    let mut workload = RandomWorkload::new(kernels, args.pages, args.accesses, args.write_ratio);
    println!(
        "{} kernels, {} pages, {} accesses ({:.0}% writes), seed {}, protocol {}",
        kernels,
        args.pages,
        args.accesses,
        args.write_ratio * 100.0,
        args.seed,
        match args.protocol {
            ProtocolArg::Popcorn => format!(
                "popcorn (optimizations {})",
                if args.optimizations == OnOff::On {
                    "on"
                } else {
                    "off"
                }
            ),
            ProtocolArg::Ivy => "ivy (centralized manager)".to_string(),
        }
    );
    let started = std::time::Instant::now();
    match coherency_lab::sim::simulate(&config, &mut workload) {
        Ok(report) => {
            print!("{report}");
            println!("simulated in {:.1} s", started.elapsed().as_secs_f64());
            if report.violation.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            crate::diag!("popvmm protocol simulate: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(feature = "lab")]
fn check(args: &CheckArgs) -> ExitCode {
    #[cfg_attr(not(feature = "mutants"), allow(unused_mut))]
    let mut engine = engine_config(args.kernels as usize, args.optimizations);
    #[cfg(feature = "mutants")]
    {
        engine.mutant = args.mutant;
    }
    #[cfg(not(feature = "mutants"))]
    if let Some(never) = args.mutant {
        match never {}
    }
    if args.hold_window == OnOff::On {
        // The model has no clock: one window length, on every acquisition, released at any
        // point (decision 17).
        engine.hold = Some(coherency::HoldWindow {
            min: 1,
            max: 1,
            recent: u64::MAX,
        });
    }
    let delivery = match args.delivery {
        DeliveryArg::Fifo => Delivery::Fifo,
        DeliveryArg::Unordered => Delivery::Unordered,
    };
    let config = ModelConfig::new(engine, args.pages as usize, args.ops as usize, delivery);
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let report = CoherencyModel::new(config).check(threads, true);
    print!("{report}");
    if report.holds() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
