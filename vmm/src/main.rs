//! `popvmm`: the command line. All the work lives in the library; this only parses and dispatches.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = popvmm::cli::Cli::parse();
    popvmm::cli::run(cli)
}
