//! tingzhen-agent: host collectors reading `/proc` and `/sys`, a remote-write shipper with an
//! on-disk buffer, inventory heartbeats and its own `/metrics` — on plain std threads, no async
//! runtime, so that it costs less than node_exporter on the hosts it watches.
//!
//! In-process use (the server's `tingzhen up`): build an [`AgentConfig`], [`spawn`] it, and call
//! [`AgentHandle::shutdown`] to stop; batches not yet sent are written to the disk buffer.

pub mod client;
pub mod config;
pub mod heartbeat;
pub mod host;
mod runtime;
pub mod server;
pub mod shipper;
pub mod stats;
pub mod targets;

pub use config::{AgentConfig, FileConfig, Overrides, StaticLabels};
pub use runtime::{AgentHandle, collect_once, spawn};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("config: {key}: {message}")]
    Config { key: &'static str, message: String },
    #[error("cannot read config file {path}: {source}")]
    ReadConfig { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    ParseConfig { path: PathBuf, message: String },
    #[error("config: targets[{index}].{key}: {message}")]
    Target { index: usize, key: &'static str, message: String },
    #[error("token: {0}")]
    Secret(#[from] tingzhen_core::config::SecretError),
    #[error("buffer: {0}")]
    Buffer(#[from] tingzhen_core::spool::BufferError),
    #[error("cannot listen on {addr} for /metrics: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot start the {name} thread: {source}")]
    Thread { name: &'static str, source: std::io::Error },
}

impl AgentConfig {
    /// Defaults for an agent that ships to `url` (used by `tingzhen up`).
    pub fn for_collector(url: &str) -> Self {
        Self { collector: Some(url.to_string()), ..Self::default() }
    }
}
