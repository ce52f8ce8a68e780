//! Where samples go and come from: the embedded engine or a remote store. One enum rather
//! than a trait object, because the two differ in what they need at maintenance and shutdown
//! and there are exactly two.

use crate::remote::{RemoteError, RemoteStore};
use crate::storage::Queryable;
use crate::tsdb::Tsdb;
use std::sync::Arc;
use tingzhen_core::exposition::MetricFamily;
use tingzhen_core::{Labels, TimeSeries};

#[derive(Clone)]
pub enum Backend {
    Embedded(Arc<Tsdb>),
    Remote(Arc<RemoteStore>),
}

/// Why a write was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The request's fault; the message names the series and sample.
    #[error("{0}")]
    Invalid(String),
    /// Temporarily cannot accept (spool full); the sender should retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

impl Backend {
    pub fn queryable(&self) -> Arc<dyn Queryable> {
        match self {
            Self::Embedded(t) => t.clone(),
            Self::Remote(r) => r.clone(),
        }
    }

    /// Stores a validated batch, all or nothing; `Ok` means durable. Blocking.
    pub fn write(&self, batch: &[TimeSeries]) -> Result<u64, WriteError> {
        match self {
            Self::Embedded(t) => match t.append(batch) {
                Ok(stats) => Ok(stats.samples_appended),
                Err(e) if e.is_client_error() => Err(WriteError::Invalid(e.to_string())),
                Err(e) => Err(WriteError::Failed(e.to_string())),
            },
            Self::Remote(r) => match r.write(batch) {
                Ok(n) => Ok(n),
                Err(e @ RemoteError::SpoolFull { .. }) => Err(WriteError::Unavailable(e.to_string())),
                Err(e) => Err(WriteError::Failed(e.to_string())),
            },
        }
    }

    /// Periodic upkeep. Blocking.
    pub fn maintain(&self, now_ms: i64) -> Result<(), String> {
        match self {
            Self::Embedded(t) => t.maintain(now_ms).map_err(|e| e.to_string()),
            Self::Remote(_) => Ok(()),
        }
    }

    /// Shutdown: the embedded engine flushes its head to blocks; the remote forwarder stops
    /// (its spool stays on disk for the next start). Blocking.
    pub fn close(&self) -> Result<(), String> {
        match self {
            Self::Embedded(t) => t.flush().map_err(|e| e.to_string()),
            Self::Remote(r) => {
                r.shutdown();
                Ok(())
            }
        }
    }

    pub fn families(&self) -> Vec<MetricFamily> {
        match self {
            Self::Embedded(t) => tsdb_families(t),
            Self::Remote(r) => r.families(),
        }
    }
}

fn tsdb_families(tsdb: &Tsdb) -> Vec<MetricFamily> {
    let s = tsdb.stats();
    let gauge = |name: &str, help: &str, v: f64| MetricFamily::gauge(name, help).with(Labels::new(), v);
    let counter = |name: &str, help: &str, v: f64| MetricFamily::counter(name, help).with(Labels::new(), v);
    vec![
        gauge("tingzhen_tsdb_series", "Series currently known to the time-series engine.", s.series as f64),
        counter(
            "tingzhen_tsdb_samples_appended_total",
            "Samples written to the time-series engine.",
            s.samples_appended as f64,
        ),
        counter(
            "tingzhen_tsdb_samples_duplicate_total",
            "Samples ignored because that series already had a sample at that timestamp.",
            s.samples_duplicate as f64,
        ),
        gauge("tingzhen_tsdb_blocks", "Immutable on-disk blocks.", s.blocks as f64),
        gauge("tingzhen_tsdb_wal_bytes", "Bytes in the write-ahead log.", s.wal_bytes as f64),
        gauge("tingzhen_tsdb_disk_bytes", "Bytes the time-series engine uses on disk.", s.disk_bytes as f64),
    ]
}
