//! Remote-storage mode (`[storage] mode = "remote"`): the collector keeps no time series of its
//! own. Every accepted write is appended to a durable on-disk spool (fsync'd) and acknowledged;
//! a forwarder thread drains the spool in order into VictoriaMetrics or InfluxDB 2, retrying
//! with backoff while the remote is down. Batches the remote refuses outright (4xx other than
//! 429) move to a dead-letter spool, logged and counted, never dropped silently. Queries go to
//! the remote's Prometheus-compatible API, so two collectors sharing one remote answer alike.
//!
//! When the spool is full the collector answers 503 instead of dropping old data: senders
//! (agents, Prometheus) keep their own buffers and retry.

mod read;
mod sink;

use crate::config::{RemoteConfig, RemoteKind};
use crate::storage::{Queryable, SeriesSamples, StorageError};
use parking_lot::{Condvar, Mutex};
use read::PromReader;
use sink::{SendError, Sink};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tingzhen_core::exposition::MetricFamily;
use tingzhen_core::spool::{BufferError, DiskBuffer, Record};
use tingzhen_core::{Labels, Matcher, TimeSeries, remote_write};

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Refused batches kept for inspection and manual replay.
const DEAD_LETTER_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("remote storage config: {0}")]
    Config(String),
    #[error("remote-write spool: {0}")]
    Spool(#[from] BufferError),
    #[error("the spool for the remote store is full ({bytes} of {max} bytes); retry later")]
    SpoolFull { bytes: u64, max: u64 },
    #[error("cannot start the forwarder thread: {0}")]
    Thread(std::io::Error),
}

#[derive(Default)]
struct Stats {
    forwarded_samples: AtomicU64,
    forwarded_batches: AtomicU64,
    refused_batches: AtomicU64,
    refused_samples: AtomicU64,
    send_failures: AtomicU64,
    skipped_nonfinite: AtomicU64,
}

pub struct RemoteStore {
    kind: RemoteKind,
    max_bytes: u64,
    spool: Mutex<DiskBuffer>,
    dead: Mutex<DiskBuffer>,
    /// Wakes the forwarder when a write lands or shutdown begins.
    wake: Condvar,
    wake_lock: Mutex<()>,
    stop: AtomicBool,
    sink: Sink,
    reader: PromReader,
    stats: Stats,
}

impl RemoteStore {
    /// Opens the spool under `spool_dir` (recovering what a previous run left) and starts the
    /// forwarder thread.
    pub fn open(config: &RemoteConfig, spool_dir: &Path) -> Result<Arc<Self>, RemoteError> {
        config.validate().map_err(RemoteError::Config)?;
        let token = match &config.token {
            Some(secret) => {
                Some(secret.resolve().map_err(|e| RemoteError::Config(format!("storage.remote.token: {e}")))?)
            }
            None => None,
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout.0))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let store = Arc::new(Self {
            kind: config.kind,
            max_bytes: config.spool_max_bytes,
            // The bound passed down is generous on purpose: `write` refuses before it is hit,
            // so the spool never has to drop acknowledged data to make room.
            spool: Mutex::new(DiskBuffer::open(spool_dir.join("pending"), config.spool_max_bytes.saturating_mul(2))?),
            dead: Mutex::new(DiskBuffer::open(spool_dir.join("refused"), DEAD_LETTER_BYTES)?),
            wake: Condvar::new(),
            wake_lock: Mutex::new(()),
            stop: AtomicBool::new(false),
            sink: Sink::new(config, token.clone(), agent.clone()),
            reader: PromReader::new(&config.query_url, token, agent),
            stats: Stats::default(),
        });
        let forwarder = store.clone();
        std::thread::Builder::new()
            .name("tz-remote-forward".into())
            .spawn(move || forwarder.forward_loop())
            .map_err(RemoteError::Thread)?;
        Ok(store)
    }

    /// Durably queues a batch for the remote. `Ok` means it is fsync'd in the spool.
    pub fn write(&self, batch: &[TimeSeries]) -> Result<u64, RemoteError> {
        let samples: u64 = batch.iter().map(|s| s.samples.len() as u64).sum();
        if samples == 0 {
            return Ok(0);
        }
        let payload = remote_write::encode(batch);
        let record = Record { samples: samples.min(u32::MAX as u64) as u32, payload };
        {
            let mut spool = self.spool.lock();
            let bytes = spool.bytes();
            if bytes + record.payload.len() as u64 > self.max_bytes {
                return Err(RemoteError::SpoolFull { bytes, max: self.max_bytes });
            }
            spool.append(&record)?;
        }
        self.wake.notify_one();
        Ok(samples)
    }

    /// Stops the forwarder after its current send. Spooled data stays on disk for next start.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_all();
    }

    pub fn pending_bytes(&self) -> u64 {
        self.spool.lock().bytes()
    }

    pub fn pending_samples(&self) -> u64 {
        self.spool.lock().samples()
    }

    fn sleep(&self, d: Duration) {
        let mut guard = self.wake_lock.lock();
        if !self.stop.load(Ordering::SeqCst) {
            self.wake.wait_for(&mut guard, d);
        }
    }

    fn forward_loop(&self) {
        let mut backoff = MIN_BACKOFF;
        while !self.stop.load(Ordering::SeqCst) {
            let next = self.spool.lock().peek();
            let record = match next {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.sleep(Duration::from_secs(1));
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the remote-write spool");
                    self.sleep(backoff);
                    continue;
                }
            };
            match self.sink.send(&record) {
                Ok(skipped) => {
                    self.spool.lock().ack();
                    self.stats.forwarded_batches.fetch_add(1, Ordering::Relaxed);
                    self.stats.forwarded_samples.fetch_add(record.samples as u64 - skipped, Ordering::Relaxed);
                    self.stats.skipped_nonfinite.fetch_add(skipped, Ordering::Relaxed);
                    backoff = MIN_BACKOFF;
                }
                Err(SendError::Refused { status, body }) => {
                    tracing::error!(
                        status,
                        response = %body,
                        samples = record.samples,
                        "remote store refused a batch; moved to the dead-letter spool"
                    );
                    if let Err(e) = self.dead.lock().append(&record) {
                        tracing::error!(error = %e, "cannot keep the refused batch in the dead-letter spool");
                    }
                    self.spool.lock().ack();
                    self.stats.refused_batches.fetch_add(1, Ordering::Relaxed);
                    self.stats.refused_samples.fetch_add(record.samples as u64, Ordering::Relaxed);
                }
                Err(SendError::Retry(reason)) => {
                    self.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%reason, retry_in = ?backoff, "remote store unavailable; keeping the batch spooled");
                    self.sleep(backoff + Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 4)));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    pub fn families(&self) -> Vec<MetricFamily> {
        let kind = match self.kind {
            RemoteKind::VictoriaMetrics => "victoriametrics",
            RemoteKind::InfluxDb2 => "influxdb2",
        };
        let l = || Labels::from_pairs([("remote", kind)]);
        let c =
            |n: &str, h: &str, v: &AtomicU64| MetricFamily::counter(n, h).with(l(), v.load(Ordering::Relaxed) as f64);
        let s = &self.stats;
        let (bytes, samples) = {
            let spool = self.spool.lock();
            (spool.bytes(), spool.samples())
        };
        vec![
            c(
                "tingzhen_remote_forwarded_samples_total",
                "Samples delivered to the remote store.",
                &s.forwarded_samples,
            ),
            c(
                "tingzhen_remote_forwarded_batches_total",
                "Batches delivered to the remote store.",
                &s.forwarded_batches,
            ),
            c(
                "tingzhen_remote_refused_batches_total",
                "Batches the remote store refused (kept in the dead-letter spool).",
                &s.refused_batches,
            ),
            c("tingzhen_remote_refused_samples_total", "Samples in refused batches.", &s.refused_samples),
            c("tingzhen_remote_send_failures_total", "Failed attempts that will be retried.", &s.send_failures),
            c(
                "tingzhen_remote_skipped_nonfinite_samples_total",
                "NaN/Inf samples not sent because the remote format cannot carry them (InfluxDB).",
                &s.skipped_nonfinite,
            ),
            MetricFamily::gauge("tingzhen_remote_spool_bytes", "Bytes waiting in the spool.").with(l(), bytes as f64),
            MetricFamily::gauge("tingzhen_remote_spool_samples", "Samples waiting in the spool.")
                .with(l(), samples as f64),
        ]
    }
}

impl Queryable for RemoteStore {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<Vec<SeriesSamples>, StorageError> {
        self.reader.select(matchers, start_ms, end_ms)
    }

    fn series(&self, matcher_sets: &[Vec<Matcher>], start_ms: i64, end_ms: i64) -> Result<Vec<Labels>, StorageError> {
        self.reader.series(matcher_sets, start_ms, end_ms)
    }

    fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.reader.label_names(matcher_sets, start_ms, end_ms)
    }

    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.reader.label_values(name, matcher_sets, start_ms, end_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tingzhen_core::Sample;

    fn unreachable_config() -> RemoteConfig {
        // Port 1 on loopback refuses connections: the remote is "down".
        RemoteConfig {
            kind: RemoteKind::VictoriaMetrics,
            write_url: "http://127.0.0.1:1/api/v1/write".into(),
            query_url: "http://127.0.0.1:1".into(),
            org: None,
            bucket: None,
            token: None,
            spool_max_bytes: 1 << 20,
            timeout: tingzhen_core::config::HumanDuration::from_secs(1),
        }
    }

    fn batch(n: usize, salt: u64) -> Vec<TimeSeries> {
        (0..n)
            .map(|i| {
                TimeSeries::new(
                    Labels::from_pairs([
                        ("__name__", "spool_test".to_string()),
                        ("series", format!("{salt}-{i}-{:x}", fastrand::u64(..))),
                    ]),
                    vec![Sample::new(1_000 + i as i64, fastrand::f64())],
                )
            })
            .collect()
    }

    #[test]
    fn writes_are_spooled_while_the_remote_is_down_and_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = RemoteStore::open(&unreachable_config(), dir.path()).unwrap();
        assert_eq!(store.write(&batch(10, 1)).unwrap(), 10);
        assert_eq!(store.write(&batch(5, 2)).unwrap(), 5);
        assert_eq!(store.pending_samples(), 15);
        store.shutdown();
        drop(store);
        let reopened = RemoteStore::open(&unreachable_config(), dir.path()).unwrap();
        assert_eq!(reopened.pending_samples(), 15, "acknowledged writes must survive a restart");
        reopened.shutdown();
    }

    #[test]
    fn a_full_spool_refuses_instead_of_dropping() {
        let dir = tempfile::tempdir().unwrap();
        let store = RemoteStore::open(&unreachable_config(), dir.path()).unwrap();
        let mut accepted = 0u64;
        let refused = loop {
            match store.write(&batch(2_000, accepted)) {
                Ok(n) => accepted += n,
                Err(e) => break e,
            }
            assert!(accepted < 10_000_000, "a 1 MiB spool should fill long before this");
        };
        assert!(matches!(refused, RemoteError::SpoolFull { .. }), "{refused}");
        assert_eq!(store.pending_samples(), accepted, "nothing acknowledged may be dropped");
        store.shutdown();
    }
}
