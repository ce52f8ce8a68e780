//! End-to-end test support: starting tingzhen binaries and real peers on free loopback ports.
//!
//! Every process a test starts is owned by a guard that kills it on drop, so a failing test
//! never leaves a server behind. Nothing here skips: a missing binary or peer is a loud failure.

pub mod agent;
pub mod bins;
pub mod browser;
pub mod collector;
pub mod http;
pub mod http_sink;
pub mod peers;
pub mod ports;
pub mod process;
pub mod procstat;
pub mod prom;
pub mod smtp;
pub mod synth;
pub mod tls;
pub mod wait;

pub use agent::Agent;
pub use collector::{Collector, CollectorOpts};
pub use http::{Http, Resp};
pub use http_sink::HttpSink;
pub use peers::{Alertmanager, NodeExporter, Prometheus, VictoriaMetrics};
pub use prom::PromClient;
pub use smtp::SmtpSink;

/// Milliseconds since the Unix epoch, as remote write wants them.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock before 1970").as_millis() as i64
}

/// This machine's hostname, as the agent is expected to report it in its `host` label.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}
