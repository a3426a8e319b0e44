//! `popvmm protocol ...`: the coherency protocol without KVM (model checking, simulation, figure 7).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use coherency::model::{CoherencyModel, Delivery, ModelConfig};
use coherency::{Config, Mutant};

#[derive(Debug, Subcommand)]
pub enum ProtocolCommand {
    /// Exhaustively model-check the real protocol engine: every interleaving of the kernels'
    /// accesses and message deliveries. Exits non-zero on a violation and prints the counterexample.
    Check(CheckArgs),
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MutantArg {
    /// Answer a Fetch at once in a Writing state.
    FetchInWriting,
    /// Drop the round synchronization.
    NoRounds,
    /// Ack on equal timestamps whatever the kernel indices.
    TieAck,
    /// Skip the Invalid Read 2 re-fetch.
    NoReread,
}

impl From<MutantArg> for Mutant {
    fn from(m: MutantArg) -> Mutant {
        match m {
            MutantArg::FetchInWriting => Mutant::FetchInWriting,
            MutantArg::NoRounds => Mutant::NoRounds,
            MutantArg::TieAck => Mutant::TieAck,
            MutantArg::NoReread => Mutant::NoReread,
        }
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
    /// Message delivery order.
    #[arg(long, value_enum, default_value_t = DeliveryArg::Fifo)]
    pub delivery: DeliveryArg,
    /// Run a deliberately broken protocol (the check must then fail).
    #[arg(long, value_enum)]
    pub mutant: Option<MutantArg>,
    /// Checker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(cmd: ProtocolCommand) -> ExitCode {
    match cmd {
        ProtocolCommand::Check(args) => check(&args),
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    let mut engine = match args.optimizations {
        OnOff::On => Config::new(args.kernels as usize),
        OnOff::Off => Config::unoptimized(args.kernels as usize),
    };
    engine.mutant = args.mutant.map(Mutant::from);
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
