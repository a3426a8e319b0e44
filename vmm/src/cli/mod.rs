//! Command-line interface: one submodule per subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod ctl;
pub mod launch;
pub mod protocol;

/// popvmm: run one multithreaded Linux program across KVM islands that share no memory.
#[derive(Debug, Parser)]
#[command(name = "popvmm", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The page coherency protocol on its own: model checking, simulation, the paper's figure 7.
    #[command(subcommand)]
    Protocol(protocol::ProtocolCommand),
    /// Run a static Linux program on islands: `popvmm launch --islands 1 -- PROGRAM [ARGS...]`.
    Launch(launch::LaunchArgs),
    /// Talk to a running popvmm's control socket.
    Ctl(ctl::CtlArgs),
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Protocol(cmd) => protocol::run(cmd),
        Command::Launch(args) => launch::run(args),
        Command::Ctl(args) => ctl::run(args),
    }
}
