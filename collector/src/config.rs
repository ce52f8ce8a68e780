//! The collector's sections of the server config file (`[storage]`, `[query]`, `[inventory]`).
//! Every key has a default, so an empty file is a working config; unknown keys are errors.

use serde::{Deserialize, Serialize};
use tingzhen_core::config::HumanDuration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where the time-series engine and the SQLite store live. Default `./tingzhen-data`.
    pub data_dir: String,
    /// How long raw samples are kept. Default 15 days.
    pub retention: HumanDuration,
    /// How far behind the newest sample an out-of-order sample may arrive. Default 1 hour.
    pub out_of_order_window: HumanDuration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: "./tingzhen-data".into(),
            retention: HumanDuration::from_secs(15 * 86_400),
            out_of_order_window: HumanDuration::from_secs(3_600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Longest a query may run before it is cancelled. Default 2 minutes.
    pub timeout: HumanDuration,
    /// Most samples one query may hold in memory. Default 50 million.
    pub max_samples: usize,
    /// How far back an instant selector looks for a sample. Default 5 minutes, as Prometheus.
    pub lookback_delta: HumanDuration,
    /// Queries evaluated at once; further ones wait, so dashboards cannot starve ingest. Default 4.
    pub max_concurrent: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout: HumanDuration::from_secs(120),
            max_samples: 50_000_000,
            lookback_delta: HumanDuration::from_secs(300),
            max_concurrent: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// A host is down after this many heartbeat intervals without one. Default 3.
    pub missed_heartbeats: u32,
    /// How often `tingzhen_agent_up` is evaluated and written. Default 5 seconds.
    pub evaluate_every: HumanDuration,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self { missed_heartbeats: 3, evaluate_every: HumanDuration::from_secs(5) }
    }
}

impl StorageConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.data_dir.trim().is_empty() {
            return Err("storage.data_dir: must not be empty".into());
        }
        if self.retention.0.as_secs() < 3_600 {
            return Err("storage.retention: must be at least 1h".into());
        }
        Ok(())
    }
}

impl QueryConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_concurrent == 0 {
            return Err("query.max_concurrent: must be at least 1".into());
        }
        if self.max_samples == 0 {
            return Err("query.max_samples: must be at least 1".into());
        }
        if self.timeout.0.is_zero() {
            return Err("query.timeout: must be positive".into());
        }
        Ok(())
    }
}

impl InventoryConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.missed_heartbeats == 0 {
            return Err("inventory.missed_heartbeats: must be at least 1".into());
        }
        if self.evaluate_every.0.as_millis() < 500 {
            return Err("inventory.evaluate_every: must be at least 500ms".into());
        }
        Ok(())
    }
}
