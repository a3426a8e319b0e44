//! `popvmm protocol ...`: the coherency protocol without KVM.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ProtocolCommand {
    /// Exhaustively model-check the protocol engine.
    Check,
}

pub fn run(cmd: ProtocolCommand) -> ExitCode {
    match cmd {
        ProtocolCommand::Check => {
            eprintln!("popvmm protocol check: not implemented yet");
            ExitCode::FAILURE
        }
    }
}
