//! Downsampling: rollup blocks at `TsdbOptions::rollup_resolution` (5 min by default) built by
//! `maintain` from sealed raw data, merged into day-sized blocks, kept for `rollup_retention`.
//!
//! A rollup block is an ordinary block (same atomic write, same format) whose chunks carry
//! six value columns per window: min, max, sum, count, last, and `inc` — the reset-aware
//! increase from the last raw sample before the window to the last one in it (Thanos-style
//! counter downsampling: summing `inc` over windows gives exactly the raw increase, resets
//! included). Windows are aligned to multiples of the resolution, `[w, w + res)`, and stamped
//! at their last millisecond `w + res - 1`, so a rollup sample never claims data from its future.
//!
//! Stale markers are not values: they are left out of every aggregate, but a window whose last
//! raw sample is a stale marker has the stale marker as `last`, so series still end. NaN follows
//! Prometheus' `*_over_time`: min/max ignore it unless every value is NaN; sum and count include
//! it; `inc` skips it.
//!
//! Rollups cover `[.., watermark)`; the watermark only rises and never passes the raw
//! `persisted` floor, so rolled-up data can no longer change. After a restart it is the end of
//! the newest rollup block. Rollups of a range are built before raw retention can delete it.

use super::block::{BLOCK_VERSION, Block, BlockMeta, BlockWriter};
use super::maintain::{TMP_PREFIX, align_down, new_block_id, remove_dir};
use super::{Tsdb, TsdbError};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tingzhen_core::{Labels, STALE_NAN_BITS, Sample};

pub const COL_MIN: usize = 0;
pub const COL_MAX: usize = 1;
pub const COL_SUM: usize = 2;
pub const COL_COUNT: usize = 3;
pub const COL_LAST: usize = 4;
pub const COL_INC: usize = 5;
pub const NCOLS: usize = 6;
/// Rollup blocks are merged into blocks of this span once it is complete.
const ROLLUP_BLOCK_SPAN_MS: i64 = 86_400_000;
/// How far before a window the previous raw sample is looked for (the base of `inc`).
const MIN_LOOKBACK_MS: i64 = 3_600_000;

pub fn lookback(res: i64) -> i64 {
    res.max(MIN_LOOKBACK_MS)
}

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One window's aggregates. `t` is the stamp, `last_t` the time of the window's last raw sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub t: i64,
    pub last_t: i64,
    pub cols: [f64; NCOLS],
}

impl Window {
    pub fn count(&self) -> f64 {
        self.cols[COL_COUNT]
    }
}

struct Acc {
    w: i64,
    last_t: i64,
    min: f64,
    max: f64,
    sum: f64,
    count: u64,
    last: f64,
    last_stale: bool,
    inc: f64,
}

impl Acc {
    fn new(w: i64) -> Self {
        Acc {
            w,
            last_t: w,
            min: f64::NAN,
            max: f64::NAN,
            sum: 0.0,
            count: 0,
            last: f64::NAN,
            last_stale: false,
            inc: 0.0,
        }
    }

    fn finish(self, res: i64) -> Window {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let t = self.w.saturating_add(res - 1);
        if self.count == 0 {
            // Only stale markers: every value column says "gone".
            return Window { t, last_t: self.last_t, cols: [stale, stale, stale, 0.0, stale, 0.0] };
        }
        let last = if self.last_stale { stale } else { self.last };
        Window { t, last_t: self.last_t, cols: [self.min, self.max, self.sum, self.count as f64, last, self.inc] }
    }
}

/// Aggregates raw samples (sorted, unique) into windows of `res` starting in `[lo, hi)`
/// (`lo` aligned to `res`). Samples before `lo` only provide the base of `inc`.
pub fn aggregate(samples: &[Sample], lo: i64, hi: i64, res: i64, out: &mut Vec<Window>) {
    let start = samples.partition_point(|s| s.timestamp_ms < lo);
    let mut prev = samples[..start].iter().rev().map(|s| s.value).find(|v| !v.is_nan());
    let mut acc: Option<Acc> = None;
    for s in &samples[start..] {
        if s.timestamp_ms >= hi {
            break;
        }
        let w = align_down(s.timestamp_ms, res);
        if acc.as_ref().is_some_and(|a| a.w != w) {
            out.extend(acc.take().map(|a| a.finish(res)));
        }
        let a = acc.get_or_insert_with(|| Acc::new(w));
        a.last_t = s.timestamp_ms;
        let v = s.value;
        if is_stale(v) {
            a.last_stale = true;
            continue;
        }
        a.last_stale = false;
        a.count += 1;
        a.sum += v;
        if v < a.min || a.min.is_nan() {
            a.min = v;
        }
        if v > a.max || a.max.is_nan() {
            a.max = v;
        }
        a.last = v;
        if !v.is_nan() {
            if let Some(p) = prev {
                a.inc += if v >= p { v - p } else { v };
            }
            prev = Some(v);
        }
    }
    out.extend(acc.map(|a| a.finish(res)));
}

/// Reads columns `cols` of series `id` of a rollup block within [mint, maxt] as windows
/// (columns not asked for are NaN).
pub fn read_windows(
    b: &Block,
    id: u32,
    cols: &[usize],
    mint: i64,
    maxt: i64,
    cache: &mut Option<(u32, Vec<u8>)>,
    out: &mut Vec<Window>,
) -> Result<(), super::block::BlockError> {
    let base = out.len();
    let mut buf = Vec::new();
    for (k, &col) in cols.iter().enumerate() {
        buf.clear();
        b.column(id, col, mint, maxt, cache, &mut buf)?;
        if k == 0 {
            out.extend(buf.iter().map(|s| Window {
                t: s.timestamp_ms,
                last_t: s.timestamp_ms,
                cols: [f64::NAN; NCOLS],
            }));
        }
        if buf.len() != out.len() - base {
            return Err(super::block::BlockError::Corrupt {
                path: b.dir.clone(),
                reason: format!("rollup columns of series {id} differ in length"),
            });
        }
        for (w, s) in out[base..].iter_mut().zip(&buf) {
            w.cols[col] = s.value;
        }
    }
    Ok(())
}

impl Tsdb {
    /// Builds rollups for sealed raw data above the watermark, merges finished days and
    /// applies rollup retention. Part of `maintain`.
    pub(super) fn maintain_rollups(&self, now_ms: i64) -> Result<(), TsdbError> {
        if self.rollup_ms <= 0 {
            return Ok(());
        }
        self.build_rollups()?;
        self.compact_rollups()?;
        let cutoff = now_ms.saturating_sub(super::dur_ms(self.opts.rollup_retention));
        let doomed: Vec<Arc<Block>> = {
            let mut blocks = self.rollups.write();
            let (old, keep): (Vec<_>, Vec<_>) = blocks.drain(..).partition(|b| b.meta.max_t < cutoff);
            *blocks = keep;
            old
        };
        for b in doomed {
            remove_dir(&b.dir)?;
        }
        Ok(())
    }

    fn build_rollups(&self) -> Result<(), TsdbError> {
        let res = self.rollup_ms;
        let target = align_down(self.persisted.load(Ordering::Acquire), res);
        // Build in steps of about one raw block so memory stays bounded.
        let step = self.block_ms.div_euclid(res).max(1).saturating_mul(res);
        let mut lo = self.rollup_watermark.load(Ordering::Acquire);
        loop {
            let raw = self.blocks.read().clone();
            // Skip ranges with no raw data at all (before the first block, or gaps).
            let Some(first) =
                raw.iter().filter(|b| b.meta.max_t >= lo && b.meta.min_t < target).map(|b| b.meta.min_t).min()
            else {
                break;
            };
            lo = lo.max(align_down(first, res));
            if lo >= target {
                break;
            }
            let hi = align_down(lo, step).saturating_add(step).min(target);
            self.build_rollup_range(&raw, lo, hi)?;
            self.rollup_watermark.fetch_max(hi, Ordering::AcqRel);
            lo = hi;
        }
        self.rollup_watermark.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    fn build_rollup_range(&self, raw: &[Arc<Block>], lo: i64, hi: i64) -> Result<(), TsdbError> {
        let res = self.rollup_ms;
        let from = lo.saturating_sub(lookback(res));
        let group: Vec<&Arc<Block>> = raw.iter().filter(|b| b.meta.max_t >= from && b.meta.min_t < hi).collect();
        let mut by_labels: BTreeMap<Labels, Vec<(usize, u32)>> = BTreeMap::new();
        for (bi, b) in group.iter().enumerate() {
            for id in 0..b.num_series() as u32 {
                by_labels.entry(b.labels(id)).or_default().push((bi, id));
            }
        }
        let id = new_block_id();
        let mut w = BlockWriter::new(self.rollups_dir.join(format!("{TMP_PREFIX}{id}")))?;
        let mut caches: Vec<Option<(u32, Vec<u8>)>> = vec![None; group.len()];
        let (mut buf, mut wins) = (Vec::new(), Vec::new());
        for (labels, parts) in by_labels {
            buf.clear();
            for (bi, sid) in parts {
                group[bi].samples(sid, from, hi - 1, &mut caches[bi], &mut buf)?;
            }
            buf.sort_by_key(|s| s.timestamp_ms);
            buf.dedup_by_key(|s| s.timestamp_ms);
            wins.clear();
            aggregate(&buf, lo, hi, res, &mut wins);
            write_windows(&mut w, labels, &wins)?;
        }
        self.publish_rollup(w, &id, lo, hi, 1, Vec::new())
    }

    fn publish_rollup(
        &self,
        w: BlockWriter,
        id: &str,
        lo: i64,
        hi: i64,
        level: u32,
        sources: Vec<String>,
    ) -> Result<(), TsdbError> {
        if w.is_empty() {
            return Ok(());
        }
        let meta = BlockMeta {
            version: BLOCK_VERSION,
            id: id.to_string(),
            range_start: lo,
            range_end: hi,
            min_t: 0,
            max_t: 0,
            num_series: 0,
            num_samples: 0,
            num_chunks: 0,
            floor: hi,
            level,
            sources,
            resolution_ms: self.rollup_ms,
        };
        let dest = self.rollups_dir.join(id);
        w.finish(meta, &dest)?;
        let b = Arc::new(Block::open(&dest)?);
        let mut blocks = self.rollups.write();
        blocks.push(b);
        blocks.sort_by_key(|b| (b.meta.range_start, b.meta.range_end));
        Ok(())
    }

    /// Merges the rollup blocks of each finished day into one.
    fn compact_rollups(&self) -> Result<(), TsdbError> {
        let wm = self.rollup_watermark.load(Ordering::Acquire);
        loop {
            let blocks = self.rollups.read().clone();
            let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
            for b in blocks {
                let d = align_down(b.meta.range_start, ROLLUP_BLOCK_SPAN_MS);
                if b.meta.range_end <= d.saturating_add(ROLLUP_BLOCK_SPAN_MS) {
                    groups.entry(d).or_default().push(b);
                }
            }
            let ready = groups.into_iter().find(|(d, g)| g.len() > 1 && d.saturating_add(ROLLUP_BLOCK_SPAN_MS) <= wm);
            let Some((_, group)) = ready else { return Ok(()) };
            self.merge_rollups(group)?;
        }
    }

    fn merge_rollups(&self, group: Vec<Arc<Block>>) -> Result<(), TsdbError> {
        let mut by_labels: BTreeMap<Labels, Vec<(usize, u32)>> = BTreeMap::new();
        for (bi, b) in group.iter().enumerate() {
            for id in 0..b.num_series() as u32 {
                by_labels.entry(b.labels(id)).or_default().push((bi, id));
            }
        }
        let id = new_block_id();
        let mut w = BlockWriter::new(self.rollups_dir.join(format!("{TMP_PREFIX}{id}")))?;
        let mut caches: Vec<Option<(u32, Vec<u8>)>> = vec![None; group.len()];
        let all: Vec<usize> = (0..NCOLS).collect();
        let mut wins = Vec::new();
        for (labels, parts) in by_labels {
            wins.clear();
            // Blocks are sorted by range and do not overlap, so windows stay in order.
            for (bi, sid) in parts {
                read_windows(&group[bi], sid, &all, i64::MIN, i64::MAX, &mut caches[bi], &mut wins)?;
            }
            wins.dedup_by_key(|w| w.t);
            write_windows(&mut w, labels, &wins)?;
        }
        let lo = group.iter().map(|b| b.meta.range_start).min().unwrap_or(0);
        let hi = group.iter().map(|b| b.meta.range_end).max().unwrap_or(0);
        let level = group.iter().map(|b| b.meta.level).max().unwrap_or(1) + 1;
        let sources: Vec<String> = group.iter().map(|b| b.meta.id.clone()).collect();
        let old: HashSet<String> = sources.iter().cloned().collect();
        self.publish_rollup(w, &id, lo, hi, level, sources)?;
        self.rollups.write().retain(|b| !old.contains(&b.meta.id));
        let dirs: Vec<_> = group.iter().map(|b| b.dir.clone()).collect();
        drop(group);
        for d in dirs {
            remove_dir(&d)?;
        }
        Ok(())
    }
}

fn write_windows(w: &mut BlockWriter, labels: Labels, wins: &[Window]) -> Result<(), TsdbError> {
    if wins.is_empty() {
        return Ok(());
    }
    let ts: Vec<i64> = wins.iter().map(|w| w.t).collect();
    let cols: Vec<Vec<f64>> = (0..NCOLS).map(|c| wins.iter().map(|w| w.cols[c]).collect()).collect();
    let refs: Vec<&[f64]> = cols.iter().map(|c| c.as_slice()).collect();
    w.add_series_columns(labels, &ts, &refs)?;
    Ok(())
}
