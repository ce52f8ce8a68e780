//! Where samples go and come from: the embedded engine or a remote store. One enum rather
//! than a trait object, because the two differ in what they need at maintenance and shutdown
//! and there are exactly two. After an acknowledged write the backend tells its
//! `IngestObserver`s (alerting) which metrics were written, so rules reading them evaluate at
//! once instead of at their next tick.

use crate::remote::{RemoteError, RemoteStore};
use crate::storage::Queryable;
use crate::tsdb::Tsdb;
use parking_lot::RwLock;
use std::collections::HashSet;
use std::sync::Arc;
use tingzhen_core::exposition::MetricFamily;
use tingzhen_core::query::IngestObserver;
use tingzhen_core::{Labels, SeriesBatch, TimeSeries};

/// The storage behind a collector.
#[derive(Clone)]
pub enum Store {
    Embedded(Arc<Tsdb>),
    Remote(Arc<RemoteStore>),
}

/// A store plus the observers told about each acknowledged write. Clones share both.
#[derive(Clone)]
pub struct Backend {
    store: Store,
    /// Registered at startup, read on every write: an uncontended read lock is two atomics,
    /// and an empty list costs one branch.
    observers: Arc<RwLock<Vec<Arc<dyn IngestObserver>>>>,
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
    pub fn new(store: Store) -> Self {
        Self { store, observers: Arc::new(RwLock::new(Vec::new())) }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Adds an observer told after every acknowledged write from now on.
    pub fn add_observer(&self, observer: Arc<dyn IngestObserver>) {
        self.observers.write().push(observer);
    }

    pub fn queryable(&self) -> Arc<dyn Queryable> {
        match &self.store {
            Store::Embedded(t) => t.clone(),
            Store::Remote(r) => r.clone(),
        }
    }

    /// Stores a validated batch, all or nothing; `Ok` means durable. Blocking. Observers are
    /// told only after success, so they never see samples a refused request carried.
    pub fn write(&self, batch: &[TimeSeries]) -> Result<u64, WriteError> {
        self.write_batch(batch)
    }

    /// [`Backend::write`] for any batch shape, e.g. a remote-write request decoded with
    /// borrowed labels, which the embedded engine stores without copying known series' labels.
    pub fn write_batch<B: SeriesBatch + ?Sized>(&self, batch: &B) -> Result<u64, WriteError> {
        let written = self.write_store(batch)?;
        self.notify_observers(batch);
        Ok(written)
    }

    fn notify_observers<B: SeriesBatch + ?Sized>(&self, batch: &B) {
        let observers = self.observers.read();
        if observers.is_empty() {
            return;
        }
        // Batches hold many series of few metrics, usually in runs: skipping a repeat of the
        // previous name avoids most hashing, and the set is per batch, never per sample.
        let mut seen: HashSet<&str> = HashSet::new();
        let mut names: Vec<&str> = Vec::new();
        let mut last: Option<&str> = None;
        for i in 0..batch.series_count() {
            let Some(name) = batch.metric_name(i) else { continue };
            if last == Some(name) {
                continue;
            }
            last = Some(name);
            if seen.insert(name) {
                names.push(name);
            }
        }
        if names.is_empty() {
            return;
        }
        for o in observers.iter() {
            o.samples_written(&names);
        }
    }

    fn write_store<B: SeriesBatch + ?Sized>(&self, batch: &B) -> Result<u64, WriteError> {
        match &self.store {
            Store::Embedded(t) => match t.append_batch(batch) {
                Ok(stats) => Ok(stats.samples_appended),
                Err(e) if e.is_client_error() => Err(WriteError::Invalid(e.to_string())),
                Err(e) => Err(WriteError::Failed(e.to_string())),
            },
            // The spool stores owned series; a borrowed batch is copied once here.
            Store::Remote(r) => match batch.as_series().map_or_else(|| r.write(&batch.to_series()), |s| r.write(s)) {
                Ok(n) => Ok(n),
                Err(e @ RemoteError::SpoolFull { .. }) => Err(WriteError::Unavailable(e.to_string())),
                Err(e) => Err(WriteError::Failed(e.to_string())),
            },
        }
    }

    /// Periodic upkeep. Blocking.
    pub fn maintain(&self, now_ms: i64) -> Result<(), String> {
        match &self.store {
            Store::Embedded(t) => t.maintain(now_ms).map_err(|e| e.to_string()),
            Store::Remote(_) => Ok(()),
        }
    }

    /// Shutdown: the embedded engine flushes its head to blocks; the remote forwarder stops
    /// (its spool stays on disk for the next start). Blocking.
    pub fn close(&self) -> Result<(), String> {
        match &self.store {
            Store::Embedded(t) => t.flush().map_err(|e| e.to_string()),
            Store::Remote(r) => {
                r.shutdown();
                Ok(())
            }
        }
    }

    pub fn families(&self) -> Vec<MetricFamily> {
        match &self.store {
            Store::Embedded(t) => tsdb_families(t),
            Store::Remote(r) => r.families(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::TsdbOptions;
    use parking_lot::Mutex;
    use tingzhen_core::Sample;

    #[derive(Default)]
    struct Seen(Mutex<Vec<Vec<String>>>);

    impl IngestObserver for Seen {
        fn samples_written(&self, names: &[&str]) {
            self.0.lock().push(names.iter().map(|n| n.to_string()).collect());
        }
    }

    fn series(name: &str, host: &str, t: i64) -> TimeSeries {
        TimeSeries::new(Labels::from_pairs([("__name__", name), ("host", host)]), vec![Sample::new(t, 1.0)])
    }

    #[test]
    fn observers_get_each_written_metric_once_and_only_after_success() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::new(Store::Embedded(Arc::new(Tsdb::open(dir.path(), TsdbOptions::default()).unwrap())));
        let seen = Arc::new(Seen::default());
        backend.add_observer(seen.clone());
        let now = tingzhen_core::now_ms();
        backend
            .write(&[series("a", "h1", now), series("a", "h2", now), series("b", "h1", now), series("a", "h3", now)])
            .unwrap();
        assert_eq!(*seen.0.lock(), vec![vec!["a".to_string(), "b".to_string()]]);
        // A batch the engine refuses whole (older than the out-of-order window allows) must
        // not wake anyone.
        let bad = series("c", "h1", now - 3 * 3_600_000);
        assert!(backend.write(&[bad]).is_err());
        assert_eq!(seen.0.lock().len(), 1);
    }
}
