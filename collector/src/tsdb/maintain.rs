//! Background upkeep: cutting the head into blocks (and then shrinking head and WAL),
//! merging blocks into larger ones, building rollups (see `rollup`), and deleting blocks past
//! retention. One maintenance run
//! at a time; appends and queries continue meanwhile.

use super::block::{Block, BlockMeta, BlockWriter, META_FILE};
use super::encoding::put_uvarint;
use super::head::MemSeries;
use super::{Tsdb, TsdbError, io_err, wal};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tingzhen_core::{Labels, Sample};

pub(super) const TMP_PREFIX: &str = ".tmp-";
const DEL_PREFIX: &str = ".del-";
/// Series per checkpoint record, to keep records (and replay buffers) moderate.
const CHECKPOINT_SERIES_PER_RECORD: usize = 8192;

pub(super) fn align_down(t: i64, step: i64) -> i64 {
    t.div_euclid(step).saturating_mul(step)
}

pub(super) fn new_block_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    format!("{nanos:016x}{:04x}", SEQ.fetch_add(1, Ordering::Relaxed) & 0xffff)
}

pub(super) fn remove_dir(path: &Path) -> Result<(), TsdbError> {
    // Rename first so a crash midway never leaves a half-deleted block that looks loadable.
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return Ok(()) };
    let Some(parent) = path.parent() else { return Ok(()) };
    let doomed = parent.join(format!("{DEL_PREFIX}{name}"));
    fs::rename(path, &doomed).map_err(io_err(path))?;
    fs::remove_dir_all(&doomed).map_err(io_err(&doomed))
}

/// Loads every complete block, cleaning up leftovers of interrupted writes, deletions and
/// compactions.
pub(super) fn load_blocks(dir: &Path) -> Result<Vec<Block>, TsdbError> {
    let mut blocks = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(TMP_PREFIX) || name.starts_with(DEL_PREFIX) {
            fs::remove_dir_all(&path).map_err(io_err(&path))?;
            continue;
        }
        if !path.join(META_FILE).exists() {
            continue;
        }
        blocks.push(Block::open(&path)?);
    }
    // A compaction that crashed after publishing its result but before deleting its inputs
    // leaves both; the inputs are listed in the result's meta.
    let replaced: HashSet<String> = blocks.iter().flat_map(|b| b.meta.sources.iter().cloned()).collect();
    let mut kept = Vec::with_capacity(blocks.len());
    for b in blocks {
        if replaced.contains(&b.meta.id) {
            let dir = b.dir.clone();
            drop(b);
            remove_dir(&dir)?;
        } else {
            kept.push(b);
        }
    }
    kept.sort_by_key(|b| (b.meta.range_start, b.meta.range_end));
    Ok(kept)
}

impl Tsdb {
    /// Periodic upkeep: cut the head into blocks once data is older than the out-of-order
    /// window, compact, apply retention relative to `now_ms`.
    pub fn maintain(&self, now_ms: i64) -> Result<(), TsdbError> {
        let _m = self.maintain_lock.lock();
        let max = self.head.max_t.load(Ordering::Acquire);
        if max != i64::MIN {
            let target = align_down(max.saturating_sub(super::dur_ms(self.opts.out_of_order_window)), self.block_ms);
            self.cut(target)?;
        }
        self.compact()?;
        // Roll sealed data up before raw retention may delete it.
        self.maintain_rollups(now_ms)?;
        self.apply_retention(now_ms)
    }

    /// Persists everything in the head into blocks now. Afterwards samples older than the
    /// newest one stored so far are refused (the range is sealed).
    pub fn flush(&self) -> Result<(), TsdbError> {
        let _m = self.maintain_lock.lock();
        let max = self.head.max_t.load(Ordering::Acquire);
        if max != i64::MIN {
            self.cut(max.saturating_add(1))?;
        }
        Ok(())
    }

    /// Moves the floor to `target` (never down) and writes all head data below it to blocks.
    fn cut(&self, target: i64) -> Result<(), TsdbError> {
        let seg = {
            let _g = self.gate.write();
            self.floor.fetch_max(target, Ordering::AcqRel);
            self.wal.rotate()?
        };
        let floor = self.floor.load(Ordering::Acquire);
        let persisted = self.persisted.load(Ordering::Acquire);
        if persisted < floor {
            let mut series: Vec<(Labels, Arc<MemSeries>)> =
                self.head.all_series().into_iter().map(|s| (s.labels(), s)).collect();
            series.sort_by(|a, b| a.0.cmp(&b.0));
            let mut from = persisted;
            let mut buf: Vec<Sample> = Vec::new();
            // Each round starts at the oldest remaining data, skipping empty windows.
            while let Some(oldest) = series.iter().filter_map(|(_, s)| s.min_time(from)).min() {
                if oldest >= floor {
                    break;
                }
                let lo = from.max(align_down(oldest, self.block_ms));
                let hi = align_down(oldest, self.block_ms).saturating_add(self.block_ms).min(floor);
                let id = new_block_id();
                let mut w = BlockWriter::new(self.blocks_dir.join(format!("{TMP_PREFIX}{id}")))?;
                for (labels, s) in &series {
                    buf.clear();
                    s.samples(lo, hi - 1, &mut buf).map_err(|e| TsdbError::Corrupt(format!("head chunk: {e}")))?;
                    w.add_series(labels.clone(), &buf)?;
                }
                if !w.is_empty() {
                    let meta = BlockMeta {
                        version: super::block::BLOCK_VERSION,
                        id: id.clone(),
                        range_start: lo,
                        range_end: hi,
                        min_t: 0,
                        max_t: 0,
                        num_series: 0,
                        num_samples: 0,
                        num_chunks: 0,
                        floor: hi,
                        level: 1,
                        sources: Vec::new(),
                        resolution_ms: 0,
                    };
                    let dest = self.blocks_dir.join(&id);
                    w.finish(meta, &dest)?;
                    self.add_block(Block::open(&dest)?);
                    self.counters.blocks_cut.fetch_add(1, Ordering::Relaxed);
                }
                self.persisted.fetch_max(hi, Ordering::AcqRel);
                from = hi;
            }
            self.persisted.fetch_max(floor, Ordering::AcqRel);
        }
        let persisted = self.persisted.load(Ordering::Acquire);
        let checkpoint = {
            let _g = self.gate.write();
            let removed = self.head.truncate(persisted);
            self.series_count.fetch_sub(removed, Ordering::AcqRel);
            self.counters.series_removed.fetch_add(removed as u64, Ordering::Relaxed);
            let mut live = self.head.all_series();
            live.sort_by_key(|s| s.id);
            let mut buf = Vec::new();
            for part in live.chunks(CHECKPOINT_SERIES_PER_RECORD) {
                wal::frame(&mut buf, |b| {
                    b.push(wal::REC_SERIES);
                    for s in part {
                        put_uvarint(b, s.id as u64);
                        b.extend_from_slice(&s.labels_enc);
                    }
                });
            }
            buf
        };
        self.wal.truncate(seg, persisted, &checkpoint)?;
        Ok(())
    }

    fn add_block(&self, b: Block) {
        let mut blocks = self.blocks.write();
        blocks.push(Arc::new(b));
        blocks.sort_by_key(|b| (b.meta.range_start, b.meta.range_end));
    }

    /// Merges blocks that share an aligned window once nothing more can land in it: first
    /// the pieces of one block window (left by `flush`), then 3× and 9× windows while they stay
    /// within a tenth of retention, so old data lives in few, well-compressed blocks.
    fn compact(&self) -> Result<(), TsdbError> {
        let persisted = self.persisted.load(Ordering::Acquire);
        let limit = super::dur_ms(self.opts.retention) / 10;
        let mut levels = vec![self.block_ms];
        for f in [3, 9] {
            let r = self.block_ms.saturating_mul(f);
            if r <= limit {
                levels.push(r);
            }
        }
        for range in levels {
            loop {
                let blocks = self.blocks.read().clone();
                let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
                for b in blocks {
                    let w = align_down(b.meta.range_start, range);
                    if b.meta.range_end <= w.saturating_add(range) {
                        groups.entry(w).or_default().push(b);
                    }
                }
                let ready = groups.into_iter().find(|(w, g)| {
                    let end = w.saturating_add(range);
                    g.len() > 1 && end <= persisted
                });
                let Some((_, group)) = ready else { break };
                self.merge(group)?;
            }
        }
        Ok(())
    }

    fn merge(&self, group: Vec<Arc<Block>>) -> Result<(), TsdbError> {
        let mut by_labels: BTreeMap<Labels, Vec<(usize, u32)>> = BTreeMap::new();
        for (bi, b) in group.iter().enumerate() {
            for id in 0..b.num_series() as u32 {
                by_labels.entry(b.labels(id)).or_default().push((bi, id));
            }
        }
        let id = new_block_id();
        let mut w = BlockWriter::new(self.blocks_dir.join(format!("{TMP_PREFIX}{id}")))?;
        let mut caches: Vec<Option<(u32, Vec<u8>)>> = vec![None; group.len()];
        let mut buf = Vec::new();
        for (labels, parts) in by_labels {
            buf.clear();
            for (bi, sid) in parts {
                group[bi].samples(sid, i64::MIN, i64::MAX, &mut caches[bi], &mut buf)?;
            }
            if !buf.is_sorted_by_key(|s| s.timestamp_ms) {
                buf.sort_by_key(|s| s.timestamp_ms);
            }
            buf.dedup_by_key(|s| s.timestamp_ms);
            w.add_series(labels, &buf)?;
        }
        let meta = BlockMeta {
            version: super::block::BLOCK_VERSION,
            id: id.clone(),
            range_start: group.iter().map(|b| b.meta.range_start).min().unwrap_or(0),
            range_end: group.iter().map(|b| b.meta.range_end).max().unwrap_or(0),
            min_t: 0,
            max_t: 0,
            num_series: 0,
            num_samples: 0,
            num_chunks: 0,
            floor: group.iter().map(|b| b.meta.floor).max().unwrap_or(i64::MIN),
            level: group.iter().map(|b| b.meta.level).max().unwrap_or(1) + 1,
            sources: group.iter().map(|b| b.meta.id.clone()).collect(),
            resolution_ms: group.first().map_or(0, |b| b.meta.resolution_ms),
        };
        let dest = self.blocks_dir.join(&id);
        w.finish(meta, &dest)?;
        let merged = Arc::new(Block::open(&dest)?);
        let old: HashSet<&str> = group.iter().map(|b| b.meta.id.as_str()).collect();
        {
            let mut blocks = self.blocks.write();
            blocks.retain(|b| !old.contains(b.meta.id.as_str()));
            blocks.push(merged);
            blocks.sort_by_key(|b| (b.meta.range_start, b.meta.range_end));
        }
        let dirs: Vec<PathBuf> = group.iter().map(|b| b.dir.clone()).collect();
        drop(group);
        for d in dirs {
            remove_dir(&d)?;
        }
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn apply_retention(&self, now_ms: i64) -> Result<(), TsdbError> {
        let cutoff = now_ms.saturating_sub(super::dur_ms(self.opts.retention));
        let doomed: Vec<Arc<Block>> = {
            let mut blocks = self.blocks.write();
            let (old, keep): (Vec<_>, Vec<_>) = blocks.drain(..).partition(|b| b.meta.max_t < cutoff);
            *blocks = keep;
            old
        };
        for b in doomed {
            // Queries still holding the block keep reading through their open file handle.
            remove_dir(&b.dir)?;
            self.counters.retention_deleted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}
