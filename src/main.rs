//! `tingzhen`: the server binary. Parses the command line and hands off; the work lives in the
//! target crates (`tingzhen-collector`, …) and in `serve`/`quickstart` here.

mod alloc;
mod cli;
mod config;
mod console;
mod identity_cli;
mod quickstart;
mod serve;

use clap::Parser;
use std::io::IsTerminal;

/// See the workspace Cargo.toml for why the server does not use the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,hyper=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in journald or a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
