//! `popvmm ctl`: the control socket's client.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::api::client;

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The control socket given to `popvmm launch --api-sock`.
    #[arg(long, default_value = "/tmp/popvmm.sock")]
    pub api_sock: PathBuf,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// GET /islands: the islands and their memory.
    Islands,
    /// GET /threads: every thread with its island, state and rip.
    Threads,
    /// PUT /shutdown: end the program (as SIGTERM would).
    Shutdown,
}

pub fn run(args: CtlArgs) -> ExitCode {
    let (method, path) = match args.command {
        CtlCommand::Islands => ("GET", "/islands"),
        CtlCommand::Threads => ("GET", "/threads"),
        CtlCommand::Shutdown => ("PUT", "/shutdown"),
    };
    match client::request(&args.api_sock, method, path, "") {
        Ok(r) => {
            let pretty = serde_json::from_str::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(r.body);
            println!("{pretty}");
            if r.status < 400 {
                ExitCode::SUCCESS
            } else {
                eprintln!("popvmm ctl: HTTP {}", r.status);
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("popvmm ctl: {e}");
            ExitCode::FAILURE
        }
    }
}
