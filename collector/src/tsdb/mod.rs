//! The embedded time-series engine: a write-ahead-logged in-memory head, cut into immutable
//! compressed blocks on disk, with an inverted index, retention, compaction and downsampling
//! (rollups, see `rollup`).
//!
//! Invariants (see also `docs/ARCHITECTURE.md`):
//! - `append` returns Ok only after the batch is fsync'd in the WAL; a batch is validated
//!   completely before anything is written, so a refused batch leaves nothing behind.
//! - `floor` only rises. Samples below it are refused, so once the head's data below a floor is
//!   written to blocks it can never change again; every block records the floor it completed,
//!   and WAL replay skips samples below the highest recorded floor.
//! - Blocks never overlap in time except transiently during compaction (the merged block lists
//!   its sources, which are deleted on the next open if a crash left them behind).

mod block;
mod chunk;
mod codec;
mod encoding;
mod head;
mod index;
mod maintain;
mod query;
mod rollup;
mod rollup_query;
mod snapshot;
mod wal;

#[cfg(test)]
mod measure_tests;
#[cfg(test)]
mod rollup_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;

use block::{Block, BlockError};
use encoding::{encode_labels, put_uvarint};
use head::{AppendOutcome, Head, MemSeries};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tingzhen_core::{SeriesBatch, TimeSeries};
use wal::{Wal, WalError};

pub use crate::storage::Queryable;
pub use snapshot::SnapshotStats;

/// Samples per WAL samples record; bounds the memory replay needs for one record.
const WAL_SAMPLES_PER_RECORD: usize = 32 * 1024;

#[derive(Debug, Clone)]
pub struct TsdbOptions {
    /// Blocks whose newest sample is older than this (relative to `maintain`'s clock) are deleted.
    pub retention: Duration,
    /// Time span of a freshly cut block; blocks and head chunks align to multiples of it.
    pub block_duration: Duration,
    /// How far behind the newest sample in the head an incoming sample may be.
    pub out_of_order_window: Duration,
    /// Upper bound on series in the head; new series beyond it are refused.
    pub max_series: usize,
    /// Samples further than this ahead of the wall clock are refused (a skewed agent clock
    /// would otherwise push the head forward and lock everyone else out). `None` disables.
    pub max_future: Option<Duration>,
    /// A WAL segment is closed once it would grow past this size.
    pub wal_segment_bytes: u64,
    /// Window length of rollups (downsampled min/max/sum/count/last/counter); zero disables them.
    pub rollup_resolution: Duration,
    /// Rollup blocks whose newest window is older than this are deleted (independent of
    /// `retention`, which governs raw data).
    pub rollup_retention: Duration,
    /// `select_hinted` answers from rollups for ranges longer than this (and for ranges that
    /// reach below the oldest raw data kept).
    pub rollup_min_query_range: Duration,
}

impl Default for TsdbOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(15 * 24 * 3600),
            block_duration: Duration::from_secs(2 * 3600),
            out_of_order_window: Duration::from_secs(3600),
            max_series: 5_000_000,
            max_future: Some(Duration::from_secs(3600)),
            wal_segment_bytes: 64 << 20,
            rollup_resolution: Duration::from_secs(300),
            rollup_retention: Duration::from_secs(400 * 24 * 3600),
            rollup_min_query_range: Duration::from_secs(2 * 24 * 3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    /// The caller sent a sample the engine may not accept; nothing of the batch was stored.
    #[error("series {series}: sample at {timestamp_ms} refused: {reason}")]
    OutOfBounds { series: String, timestamp_ms: i64, reason: String },
    #[error("series {series} is invalid: {reason}")]
    InvalidSeries { series: String, reason: String },
    #[error("series limit of {limit} reached; refusing {new} new series (first: {series})")]
    TooManySeries { limit: usize, new: usize, series: String },
    #[error("invalid tsdb options: {0}")]
    Config(String),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("tsdb I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tsdb data is corrupt: {0}")]
    Corrupt(String),
}

impl TsdbError {
    /// True when the request was at fault (HTTP 4xx); false for server-side failures (5xx).
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::OutOfBounds { .. } | Self::InvalidSeries { .. } | Self::TooManySeries { .. })
    }

    /// The offending series, rendered in Prometheus notation, for client errors.
    pub fn series(&self) -> Option<&str> {
        match self {
            Self::OutOfBounds { series, .. }
            | Self::InvalidSeries { series, .. }
            | Self::TooManySeries { series, .. } => Some(series),
            _ => None,
        }
    }
}

impl From<TsdbError> for crate::storage::StorageError {
    fn from(e: TsdbError) -> Self {
        match e {
            TsdbError::Corrupt(m) => Self::Corrupt(m),
            TsdbError::Block(BlockError::Corrupt { path, reason }) => {
                Self::Corrupt(format!("{}: {reason}", path.display()))
            }
            TsdbError::Block(BlockError::Io { source, .. }) | TsdbError::Io { source, .. } => Self::Io(source),
            other => Self::Other(other.to_string()),
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TsdbError + '_ {
    move |source| TsdbError::Io { path: path.to_path_buf(), source }
}

/// What one `append` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendStats {
    /// Samples stored (in order or out of order).
    pub samples_appended: u64,
    /// Of those, samples older than their series' newest sample.
    pub out_of_order: u64,
    /// Samples whose timestamp was already stored; ignored.
    pub duplicates: u64,
    pub series_created: u64,
}

/// Engine figures for self-metrics.
#[derive(Debug, Clone, Default)]
pub struct TsdbStats {
    pub series: u64,
    pub head_chunks: u64,
    pub head_memory_bytes: u64,
    pub head_min_valid_ms: i64,
    pub head_max_time_ms: i64,
    pub samples_appended: u64,
    pub samples_out_of_order: u64,
    pub samples_duplicate: u64,
    pub samples_rejected: u64,
    pub batches_rejected: u64,
    pub series_created: u64,
    pub series_removed: u64,
    pub wal_bytes: u64,
    pub wal_segments: u64,
    pub wal_replay_records: u64,
    pub wal_corruptions_repaired: u64,
    pub blocks: u64,
    pub block_samples: u64,
    pub block_series: u64,
    pub block_index_memory_bytes: u64,
    pub blocks_cut: u64,
    pub compactions: u64,
    pub blocks_deleted_by_retention: u64,
    pub rollup_blocks: u64,
    pub rollup_samples: u64,
    pub disk_bytes: u64,
}

#[derive(Default)]
struct Counters {
    appended: AtomicU64,
    ooo: AtomicU64,
    duplicates: AtomicU64,
    rejected_samples: AtomicU64,
    rejected_batches: AtomicU64,
    series_created: AtomicU64,
    series_removed: AtomicU64,
    blocks_cut: AtomicU64,
    compactions: AtomicU64,
    retention_deleted: AtomicU64,
    replay_records: AtomicU64,
    corruptions_repaired: AtomicU64,
}

pub struct Tsdb {
    dir: PathBuf,
    blocks_dir: PathBuf,
    opts: TsdbOptions,
    block_ms: i64,
    head: Head,
    wal: Wal,
    blocks: RwLock<Vec<Arc<Block>>>,
    rollups_dir: PathBuf,
    /// Rollup resolution in ms (0: disabled).
    rollup_ms: i64,
    rollups: RwLock<Vec<Arc<Block>>>,
    /// Rollups cover everything below this (see `rollup`).
    rollup_watermark: AtomicI64,
    /// Appenders hold it shared from validation to applying; maintenance takes it exclusively
    /// to move the floor, rotate the WAL and drop series at a consistent point.
    gate: RwLock<()>,
    /// Samples below this are refused.
    floor: AtomicI64,
    /// Everything below this is in blocks.
    persisted: AtomicI64,
    series_count: AtomicUsize,
    maintain_lock: Mutex<()>,
    counters: Counters,
}

fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, dur_ms)
}

impl Tsdb {
    /// Opens (or creates) the engine in `dir`: loads blocks, replays the WAL into the head.
    pub fn open(dir: &Path, opts: TsdbOptions) -> Result<Tsdb, TsdbError> {
        let block_ms = dur_ms(opts.block_duration);
        if block_ms <= 0 {
            return Err(TsdbError::Config("block_duration must be at least 1ms".into()));
        }
        if opts.retention < opts.block_duration {
            return Err(TsdbError::Config("retention must be at least one block_duration".into()));
        }
        if opts.wal_segment_bytes < 4096 {
            return Err(TsdbError::Config("wal_segment_bytes must be at least 4096".into()));
        }
        let blocks_dir = dir.join("blocks");
        std::fs::create_dir_all(&blocks_dir).map_err(io_err(&blocks_dir))?;
        let blocks = maintain::load_blocks(&blocks_dir)?;
        let persisted = blocks.iter().map(|b| b.meta.floor).max().unwrap_or(i64::MIN);
        let rollup_ms = dur_ms(opts.rollup_resolution);
        let rollups_dir = dir.join("rollups").join(format!("{rollup_ms}ms"));
        let rollups = if rollup_ms > 0 {
            std::fs::create_dir_all(&rollups_dir).map_err(io_err(&rollups_dir))?;
            maintain::load_blocks(&rollups_dir)?
        } else {
            Vec::new()
        };
        let rollup_watermark = rollups.iter().map(|b| b.meta.range_end).max().unwrap_or(i64::MIN);

        let head = Head::new();
        let mut refs: HashMap<u64, Arc<MemSeries>> = HashMap::new();
        let mut seg_max: HashMap<u64, i64> = HashMap::new();
        let mut last: Option<(u64, Arc<MemSeries>)> = None;
        let mut unknown_refs = 0u64;
        let mut head_max = i64::MIN;
        let (wal, info) = Wal::open(&dir.join("wal"), opts.wal_segment_bytes, |seg, payload| match payload.first() {
            Some(&wal::REC_SERIES) => wal::decode_series(payload, |r, c| {
                let labels = encoding::decode_labels(c)?;
                let mut enc = Vec::new();
                encode_labels(&labels, &mut enc);
                let hash = Head::hash(&enc);
                let s = match head.lookup(hash, &enc) {
                    Some(s) => s,
                    None => {
                        let id = u32::try_from(r).map_err(|_| encoding::DecodeError("series ref out of range"))?;
                        head.bump_next_id(id);
                        head.publish(id, hash, enc.into_boxed_slice())
                    }
                };
                refs.insert(r, s);
                Ok(())
            }),
            Some(&wal::REC_SAMPLES) => {
                let m = seg_max.entry(seg).or_insert(i64::MIN);
                wal::decode_samples(payload, |r, t, v| {
                    *m = (*m).max(t);
                    if t < persisted {
                        return;
                    }
                    let s = match &last {
                        Some((lr, s)) if *lr == r => s.clone(),
                        _ => match refs.get(&r) {
                            Some(s) => {
                                last = Some((r, s.clone()));
                                s.clone()
                            }
                            None => {
                                unknown_refs += 1;
                                return;
                            }
                        },
                    };
                    s.append(t, v, block_ms);
                    head_max = head_max.max(t);
                })
            }
            _ => Err(encoding::DecodeError("unknown WAL record type")),
        })?;
        drop(refs);
        drop(last);
        for (seg, m) in seg_max {
            wal.note_replayed(seg, m);
        }
        if unknown_refs > 0 {
            tracing::warn!(unknown_refs, "WAL samples referred to series with no record; skipped");
        }
        head.max_t.store(head_max, Ordering::Relaxed);
        let series_count = head.num_series();
        let counters = Counters::default();
        counters.replay_records.store(info.records, Ordering::Relaxed);
        counters.corruptions_repaired.store(info.corruptions_repaired, Ordering::Relaxed);
        tracing::info!(
            dir = %dir.display(),
            blocks = blocks.len(),
            series = series_count,
            wal_records = info.records,
            torn_tail = info.torn_tail_truncated,
            "tsdb opened"
        );
        Ok(Tsdb {
            dir: dir.to_path_buf(),
            blocks_dir,
            block_ms,
            head,
            wal,
            blocks: RwLock::new(blocks.into_iter().map(Arc::new).collect()),
            rollups_dir,
            rollup_ms,
            rollups: RwLock::new(rollups.into_iter().map(Arc::new).collect()),
            rollup_watermark: AtomicI64::new(rollup_watermark),
            gate: RwLock::new(()),
            floor: AtomicI64::new(persisted),
            persisted: AtomicI64::new(persisted),
            series_count: AtomicUsize::new(series_count),
            maintain_lock: Mutex::new(()),
            counters,
            opts,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &TsdbOptions {
        &self.opts
    }

    /// The oldest timestamp an append may carry right now.
    fn min_valid(&self) -> i64 {
        let floor = self.floor.load(Ordering::Acquire);
        let max = self.head.max_t.load(Ordering::Acquire);
        if max == i64::MIN {
            return floor;
        }
        let ooo = max.saturating_sub(dur_ms(self.opts.out_of_order_window));
        let ret = max.saturating_sub(dur_ms(self.opts.retention));
        floor.max(ooo).max(ret)
    }

    fn reject(&self, samples: usize, err: TsdbError) -> TsdbError {
        self.counters.rejected_samples.fetch_add(samples as u64, Ordering::Relaxed);
        self.counters.rejected_batches.fetch_add(1, Ordering::Relaxed);
        err
    }

    /// Stores a batch durably, all or nothing.
    pub fn append(&self, batch: &[TimeSeries]) -> Result<AppendStats, TsdbError> {
        self.append_batch(batch)
    }

    /// Stores a batch durably, all or nothing. Generic so a remote-write request decoded with
    /// borrowed labels (`remote_write::WriteBatch`) is looked up by its label bytes directly:
    /// only series the head has never seen are copied into owned form.
    pub fn append_batch<B: SeriesBatch + ?Sized>(&self, batch: &B) -> Result<AppendStats, TsdbError> {
        let n = batch.series_count();
        let total = batch.sample_total();
        if total == 0 {
            return Ok(AppendStats::default());
        }
        let _gate = self.gate.read();
        let min_valid = self.min_valid();
        let max_valid = self.opts.max_future.map_or(i64::MAX, |d| now_ms().saturating_add(dur_ms(d)));

        // 1. Validate everything and resolve known series, writing nothing.
        let mut resolved: Vec<Option<Arc<MemSeries>>> = Vec::with_capacity(n);
        let mut missing: Vec<(usize, u64, Box<[u8]>)> = Vec::new();
        let mut enc = Vec::with_capacity(256);
        let mut batch_max = i64::MIN;
        for i in 0..n {
            let samples = batch.samples(i);
            if samples.is_empty() {
                resolved.push(None);
                continue;
            }
            if batch.label_count(i) == 0 {
                let e = TsdbError::InvalidSeries { series: batch.labels(i).to_string(), reason: "no labels".into() };
                return Err(self.reject(total, e));
            }
            for s in samples {
                let reason = if s.timestamp_ms < min_valid {
                    Some(format!("older than the oldest accepted time {min_valid} (out-of-order window or retention)"))
                } else if s.timestamp_ms > max_valid {
                    Some(format!("more than the allowed skew ahead of the clock (latest accepted {max_valid})"))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let e = TsdbError::OutOfBounds {
                        series: batch.labels(i).to_string(),
                        timestamp_ms: s.timestamp_ms,
                        reason,
                    };
                    return Err(self.reject(total, e));
                }
                batch_max = batch_max.max(s.timestamp_ms);
            }
            enc.clear();
            head::encode_label_pairs(batch.label_count(i), batch.label_pairs(i), &mut enc);
            let hash = Head::hash(&enc);
            let found = self.head.lookup(hash, &enc);
            if found.is_none() {
                missing.push((resolved.len(), hash, enc.as_slice().into()));
            }
            resolved.push(found);
        }

        // 2. Create new series: log them first so any sample referring to them is behind
        //    their record in the WAL, then publish.
        let mut created = 0u64;
        if !missing.is_empty() {
            let mut uniq: HashMap<&[u8], usize> = HashMap::new();
            for (i, (_, _, e)) in missing.iter().enumerate() {
                uniq.entry(&e[..]).or_insert(i);
            }
            let new = uniq.len();
            let before = self.series_count.fetch_add(new, Ordering::AcqRel);
            if before + new > self.opts.max_series {
                self.series_count.fetch_sub(new, Ordering::AcqRel);
                let first = batch.labels(missing[0].0).to_string();
                let e = TsdbError::TooManySeries { limit: self.opts.max_series, new, series: first };
                return Err(self.reject(total, e));
            }
            let mut ids: Vec<u32> = Vec::with_capacity(new);
            for _ in 0..new {
                match self.head.alloc_id() {
                    Some(id) => ids.push(id),
                    None => {
                        self.series_count.fetch_sub(new, Ordering::AcqRel);
                        return Err(TsdbError::Corrupt("series id space exhausted".into()));
                    }
                }
            }
            let mut firsts: Vec<usize> = uniq.into_values().collect();
            firsts.sort_unstable();
            let mut frames = Vec::with_capacity(firsts.len() * 128);
            wal::frame(&mut frames, |b| {
                b.push(wal::REC_SERIES);
                for (k, &mi) in firsts.iter().enumerate() {
                    put_uvarint(b, ids[k] as u64);
                    b.extend_from_slice(&missing[mi].2);
                }
            });
            if let Err(e) = self.wal.write(&frames, i64::MIN) {
                self.series_count.fetch_sub(new, Ordering::AcqRel);
                return Err(e.into());
            }
            let mut by_enc: HashMap<&[u8], Arc<MemSeries>> = HashMap::with_capacity(new);
            for (k, &mi) in firsts.iter().enumerate() {
                let (_, hash, ref e) = missing[mi];
                let s = self.head.publish(ids[k], hash, e.clone());
                if s.id == ids[k] {
                    created += 1;
                } else {
                    self.series_count.fetch_sub(1, Ordering::AcqRel);
                }
                by_enc.insert(&e[..], s);
            }
            for (pos, _, e) in &missing {
                resolved[*pos] = by_enc.get(&e[..]).cloned();
            }
        }

        // 3. Log the samples and wait for the (shared) fsync.
        let mut frames = Vec::with_capacity(total * 14 + 64);
        let mut rec: Vec<(u64, i64, f64)> = Vec::with_capacity(total.min(WAL_SAMPLES_PER_RECORD));
        for (i, s) in resolved.iter().enumerate() {
            let Some(s) = s else { continue };
            for x in batch.samples(i) {
                rec.push((s.id as u64, x.timestamp_ms, x.value));
                if rec.len() == WAL_SAMPLES_PER_RECORD {
                    wal::frame(&mut frames, |b| wal::encode_samples(b, &rec));
                    rec.clear();
                }
            }
        }
        if !rec.is_empty() {
            wal::frame(&mut frames, |b| wal::encode_samples(b, &rec));
        }
        let lsn = self.wal.write(&frames, batch_max)?;
        drop(frames);
        self.wal.sync_to(lsn)?;

        // 4. Apply to the head.
        let mut stats = AppendStats { series_created: created, ..Default::default() };
        for (i, s) in resolved.iter().enumerate() {
            let Some(s) = s else { continue };
            for x in batch.samples(i) {
                match s.append(x.timestamp_ms, x.value, self.block_ms) {
                    AppendOutcome::InOrder => stats.samples_appended += 1,
                    AppendOutcome::OutOfOrder => {
                        stats.samples_appended += 1;
                        stats.out_of_order += 1;
                    }
                    AppendOutcome::Duplicate => stats.duplicates += 1,
                }
            }
        }
        self.head.max_t.fetch_max(batch_max, Ordering::AcqRel);
        let c = &self.counters;
        c.appended.fetch_add(stats.samples_appended, Ordering::Relaxed);
        c.ooo.fetch_add(stats.out_of_order, Ordering::Relaxed);
        c.duplicates.fetch_add(stats.duplicates, Ordering::Relaxed);
        c.series_created.fetch_add(created, Ordering::Relaxed);
        Ok(stats)
    }

    pub fn stats(&self) -> TsdbStats {
        let hs = self.head.stats();
        let blocks = self.blocks.read().clone();
        let c = &self.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TsdbStats {
            series: hs.series as u64,
            head_chunks: hs.chunks as u64,
            head_memory_bytes: (hs.chunk_bytes + hs.index_bytes) as u64,
            head_min_valid_ms: self.min_valid(),
            head_max_time_ms: self.head.max_t.load(Ordering::Relaxed),
            samples_appended: r(&c.appended),
            samples_out_of_order: r(&c.ooo),
            samples_duplicate: r(&c.duplicates),
            samples_rejected: r(&c.rejected_samples),
            batches_rejected: r(&c.rejected_batches),
            series_created: r(&c.series_created),
            series_removed: r(&c.series_removed),
            wal_bytes: self.wal.size_bytes(),
            wal_segments: self.wal.segment_count() as u64,
            wal_replay_records: r(&c.replay_records),
            wal_corruptions_repaired: r(&c.corruptions_repaired),
            blocks: blocks.len() as u64,
            block_samples: blocks.iter().map(|b| b.meta.num_samples).sum(),
            block_series: blocks.iter().map(|b| b.meta.num_series).sum(),
            block_index_memory_bytes: blocks.iter().map(|b| b.memory_bytes() as u64).sum(),
            blocks_cut: r(&c.blocks_cut),
            compactions: r(&c.compactions),
            blocks_deleted_by_retention: r(&c.retention_deleted),
            rollup_blocks: self.rollups.read().len() as u64,
            rollup_samples: self.rollups.read().iter().map(|b| b.meta.num_samples).sum(),
            disk_bytes: self.disk_usage_bytes(),
        }
    }

    /// Bytes on disk: blocks, rollup blocks and WAL.
    pub fn disk_usage_bytes(&self) -> u64 {
        self.blocks.read().iter().map(|b| b.disk_bytes).sum::<u64>() + self.rollup_bytes() + self.wal.size_bytes()
    }

    /// Bytes of rollup blocks.
    pub fn rollup_bytes(&self) -> u64 {
        self.rollups.read().iter().map(|b| b.disk_bytes).sum()
    }

    /// Bytes of block files only (what compression achieves; excludes the WAL).
    pub fn block_bytes(&self) -> u64 {
        self.blocks.read().iter().map(|b| b.disk_bytes).sum()
    }
}
