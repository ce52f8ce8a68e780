//! `tingzhen-agent`: the command line over the agent library — `run` (collect, ship, serve
//! `/metrics` until SIGTERM/SIGINT) and `once` (one collection in the Prometheus text format).

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use tingzhen_agent::{AgentConfig, FileConfig, Overrides};
use tingzhen_core::config::HumanDuration;

#[derive(Parser)]
#[command(name = "tingzhen-agent", version, about = "tingzhen (听诊) host agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Common {
    /// TOML config file (see deploy/agent.example.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Collect every interval, ship to the collector, serve /metrics.
    Run {
        #[command(flatten)]
        common: Common,
        /// Collector base URL, e.g. https://collector:8630.
        #[arg(long, value_name = "URL")]
        collector: Option<String>,
        /// Collection interval, e.g. 10s (at least 1s).
        #[arg(long, value_name = "DURATION")]
        interval: Option<HumanDuration>,
        /// Address for /metrics, or "off".
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Bearer token for the collector.
        #[arg(long, value_name = "TOKEN", env = "TINGZHEN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// PEM file of the CA that signed the collector's certificate.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Collect once and print it in the Prometheus text format.
    Once {
        #[command(flatten)]
        common: Common,
    },
}

fn load(config: Option<&PathBuf>, ov: &Overrides) -> anyhow::Result<AgentConfig> {
    let file = match config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    Ok(AgentConfig::resolve(file, ov)?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Once { common } => {
            let mut file = match &common.config {
                Some(p) => FileConfig::load(p)?,
                None => FileConfig::default(),
            };
            // `once` sends nothing, so it needs no token (and must not fail on a missing one).
            file.token = None;
            let config = AgentConfig::resolve(file, &Overrides::default())?;
            print!("{}", tingzhen_agent::collect_once(&config));
            Ok(())
        }
        Command::Run { common, collector, interval, listen, token, ca_file } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                // Colour codes only for a person at a terminal, not in journald or a log file.
                .with_ansi(std::io::stderr().is_terminal())
                .init();
            let ov = Overrides { collector, interval, listen, token, ca_file };
            let config = load(common.config.as_ref(), &ov)?;
            let mut signals =
                signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
                    .context("cannot install signal handlers")?;
            let agent = tingzhen_agent::spawn(config.clone())?;
            tracing::info!(
                collector = config.collector.as_deref().unwrap_or("(none: scrape-only)"),
                listen = ?agent.local_addr(),
                interval = ?config.interval,
                "tingzhen-agent running"
            );
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "stopping");
            }
            agent.shutdown();
            Ok(())
        }
    }
}
