//! The collector's sections of the server config file (`[storage]`, `[query]`, `[inventory]`).
//! Every key has a default, so an empty file is a working config; unknown keys are errors.

use serde::{Deserialize, Serialize};
use tingzhen_core::config::{HumanDuration, SecretRef};

/// Where samples live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageMode {
    /// The embedded engine under `data_dir/tsdb` (the default; one machine).
    #[default]
    Embedded,
    /// An existing distributed engine (`[storage.remote]`); collectors become stateless replicas.
    Remote,
}

/// The distributed engine written to in remote mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteKind {
    /// VictoriaMetrics, single node or cluster: Prometheus remote write in, Prometheus query API
    /// and `/api/v1/export` out.
    VictoriaMetrics,
    /// InfluxDB 2 write API (`/api/v2/write`) in; queries go to `query_url`, which must speak the
    /// Prometheus query API (e.g. VictoriaMetrics reading the same data).
    InfluxDb2,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    pub kind: RemoteKind,
    /// VictoriaMetrics: the remote-write URL (single node `http://vm:8428/api/v1/write`, cluster
    /// `http://vminsert:8480/insert/0/prometheus/api/v1/write`). InfluxDB 2: the server's base URL.
    pub write_url: String,
    /// Base URL of the Prometheus-compatible query API (single node `http://vm:8428`, cluster
    /// `http://vmselect:8481/select/0/prometheus`).
    pub query_url: String,
    /// InfluxDB 2 organisation and bucket.
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    /// Credential for the remote (bearer token; for InfluxDB 2 its API token). Never inline.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// Writes waiting for the remote are spooled on disk up to this many bytes. Default 1 GiB.
    #[serde(default = "default_spool_bytes")]
    pub spool_max_bytes: u64,
    /// Per-request timeout towards the remote. Default 30 s.
    #[serde(default = "default_remote_timeout")]
    pub timeout: HumanDuration,
}

fn default_spool_bytes() -> u64 {
    1 << 30
}

fn default_remote_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where the time-series engine and the SQLite store live. Default `./tingzhen-data`.
    pub data_dir: String,
    /// How long raw samples are kept. Default 15 days.
    pub retention: HumanDuration,
    /// How far behind the newest sample an out-of-order sample may arrive. Default 1 hour.
    pub out_of_order_window: HumanDuration,
    /// How long 5-minute rollups (used by long-range queries) are kept. Default 400 days.
    pub rollup_retention: HumanDuration,
    /// `embedded` (default) or `remote`.
    pub mode: StorageMode,
    /// Required when `mode = "remote"`.
    pub remote: Option<RemoteConfig>,
    /// Scheduled backups of the embedded engine and the SQLite store (see `crate::backup`).
    pub backup: Option<crate::backup::BackupConfig>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: "./tingzhen-data".into(),
            retention: HumanDuration::from_secs(15 * 86_400),
            out_of_order_window: HumanDuration::from_secs(3_600),
            rollup_retention: HumanDuration::from_secs(400 * 86_400),
            mode: StorageMode::Embedded,
            remote: None,
            backup: None,
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
        if self.rollup_retention.0 < self.retention.0 {
            return Err("storage.rollup_retention: must not be shorter than storage.retention".into());
        }
        match (self.mode, &self.remote) {
            (StorageMode::Remote, None) => {
                return Err("storage.remote: required when storage.mode = \"remote\"".into());
            }
            (StorageMode::Remote, Some(r)) => r.validate()?,
            (StorageMode::Embedded, _) => {}
        }
        if let Some(b) = &self.backup {
            if self.mode == StorageMode::Remote {
                return Err(
                    "storage.backup: only with the embedded engine; the remote engine has its own backups".into()
                );
            }
            b.validate()?;
        }
        Ok(())
    }
}

impl RemoteConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (key, url) in [("write_url", &self.write_url), ("query_url", &self.query_url)] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("storage.remote.{key}: {url:?} is not an http(s) URL"));
            }
        }
        if self.kind == RemoteKind::InfluxDb2 {
            if self.org.as_deref().unwrap_or("").is_empty() {
                return Err("storage.remote.org: required for kind = \"influxdb2\"".into());
            }
            if self.bucket.as_deref().unwrap_or("").is_empty() {
                return Err("storage.remote.bucket: required for kind = \"influxdb2\"".into());
            }
        }
        if self.spool_max_bytes < 1 << 20 {
            return Err("storage.remote.spool_max_bytes: must be at least 1 MiB".into());
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
