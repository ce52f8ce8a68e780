//! Watched targets (MON-3, MON-4, MON-5 alive): databases, middleware, probes and processes
//! named in `[[targets]]`. Each target runs on its own thread and schedule ([`runner`]), so a
//! slow or failing one never delays the others or the host collection. A collection that
//! fails yields only `<kind>_up 0` (the well-known exporter's name), a log line with the
//! reason, and the reason in the inventory heartbeat; repeated failures back off.
//!
//! One module per kind implements [`Collect`]; each keeps its connection open between
//! collections and drops it on any error, so the next attempt starts clean.

pub mod config;
pub mod mqtt;
pub mod mysql;
pub mod nats;
#[cfg(feature = "oracle")]
pub mod oracle;
pub mod oracle_sql;
pub mod postgres;
mod postgres_sql;
pub mod probe;
pub mod process;
pub mod rabbitmq;
pub mod redis;
mod runner;
mod sql;
mod state;

pub use config::{TargetConfig, TargetKind};
pub(crate) use runner::{RunContext, spawn_target};
pub use runner::{collect_into, push_labels};
pub use state::{Slot, Targets};

use crate::host::Out;
use tingzhen_core::Labels;
use tingzhen_core::topsql::TopSqlEntry;

/// A target's slot with its labels: the agent's static labels, `campus` and `system`
/// replaced by the target's own when it has them, and `target` = its name.
pub fn slot_for(cfg: &TargetConfig, agent: &Labels) -> Slot {
    let mut base = agent.clone();
    for (k, v) in [("campus", &cfg.campus), ("system", &cfg.system)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            base.set(k, v);
        }
    }
    base.set("target", cfg.name.as_str());
    Slot::new(cfg.clone(), base)
}

/// Why one collection of a target failed. The message is what the log and inventory show.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    #[error("cannot connect to {address}: {message}")]
    Connect { address: String, message: String },
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("query failed: {0}")]
    Query(String),
    #[error("unexpected answer: {0}")]
    Protocol(String),
    #[error("probe failed: {0}")]
    Probe(String),
}

impl TargetError {
    /// Wrong credentials: retried much more slowly, since every attempt is logged by the
    /// target (and MySQL blocks a host after `max_connect_errors`).
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Auth(_))
    }
}

/// What one collection writes to: metric families (the target's labels already on) and,
/// for databases, the interval's most expensive statements.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub out: Out<'a>,
    pub top_sql: Vec<TopSqlEntry>,
    /// Parts that failed while the target itself answered (e.g. pg_stat_statements missing):
    /// logged at debug level and counted, without marking the target down.
    pub partial_errors: Vec<String>,
    /// The target answered but failed its check (an HTTP probe's status or keyword): it is
    /// down with this reason, and the metrics gathered (status code, latency) are kept.
    pub failed: Option<TargetError>,
}

/// One target kind's collection.
pub trait Collect: Send {
    fn collect(&mut self, cx: &mut Ctx<'_>) -> Result<(), TargetError>;
}

/// The collector module for a target's kind.
pub fn collector_for(cfg: &TargetConfig) -> Box<dyn Collect> {
    match cfg.kind {
        TargetKind::Postgres => Box::new(postgres::Postgres::new(cfg)),
        TargetKind::Mysql => Box::new(mysql::Mysql::new(cfg)),
        TargetKind::Redis => Box::new(redis::Redis::new(cfg)),
        TargetKind::Http => Box::new(probe::Http::new(cfg)),
        TargetKind::Tcp => Box::new(probe::Tcp::new(cfg)),
        TargetKind::Nats => Box::new(nats::Nats::new(cfg)),
        TargetKind::Rabbitmq => Box::new(rabbitmq::Rabbitmq::new(cfg)),
        TargetKind::Mqtt => Box::new(mqtt::Mqtt::new(cfg)),
        TargetKind::Process => Box::new(process::Process::new(cfg)),
        #[cfg(feature = "oracle")]
        TargetKind::Oracle => Box::new(oracle::Oracle::new(cfg)),
        // Config validation refuses oracle targets in builds without the feature, and
        // `spawn` validates every target before any thread starts.
        #[cfg(not(feature = "oracle"))]
        TargetKind::Oracle => unreachable!("oracle targets are refused at config time without the `oracle` feature"),
    }
}
