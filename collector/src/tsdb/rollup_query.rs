//! Answering `select_hinted` from rollups.
//!
//! Rollups are used when all of these hold (otherwise the answer is `select`'s raw samples):
//! - rollups are enabled and `hints.func` names an aggregate;
//! - `hints.step_ms` and `hints.range_ms` are both at least the rollup resolution;
//! - the query reaches below the oldest raw sample still kept (raw retention expired there), or
//!   spans more than `TsdbOptions::rollup_min_query_range` (2 days by default).
//!
//! The answer then has one sample per resolution window `[w, w + res)` whose stamp
//! `w + res - 1` lies in `[start, end]`: from rollup blocks below the rollup watermark, and
//! computed on the fly from raw data (blocks and head) above it — the newest, still-filling
//! window is stamped at its last raw sample instead, so nothing is stamped in the future.
//!
//! Error against raw evaluation: every window is whole, so a range `[t - r, t]` over rollups
//! covers the windows stamped inside it — it may take in up to `res - 1` ms of data before
//! `t - r` and leave out the up to `res - 1` ms of the window still open at `t`. Per window,
//! min/max/sum/count/last are exact (sum up to float rounding); `Avg` is `sum / count` per
//! window (a caller averaging several windows should combine `Sum` and `Count` for an exact
//! weighted mean); `Counter` is a reset-free counter built as `last - inc` of the first window
//! plus the running sum of `inc`, so increases between window stamps equal the raw ones;
//! rate's extrapolation sees window stamps instead of raw timestamps (off by up to `res`).
//! A series absent for longer than an hour loses the increase across that gap in `inc`.

use super::Tsdb;
use super::block::{Block, Page};
use super::query::{PARALLEL_MIN_CHUNKS, Part, Planned};
use super::rollup::{COL_COUNT, COL_INC, COL_LAST, COL_MAX, COL_MIN, COL_SUM, NCOLS, Window, aggregate};
use crate::storage::{Queryable, RollupFunc, SelectHints, SeriesSamples, StorageError};
use std::cmp::Ordering as CmpOrdering;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tingzhen_core::{Labels, Matcher, Sample};

/// One series of a rollup answer: its stored windows' places and its raw samples above the
/// watermark (either may be missing).
struct Job<'a> {
    labels: Labels,
    parts: Vec<Part>,
    raw: Option<&'a [Sample]>,
}

fn corrupt(e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(e.to_string())
}

fn columns(func: RollupFunc) -> &'static [usize] {
    match func {
        RollupFunc::Min => &[COL_COUNT, COL_MIN],
        RollupFunc::Max => &[COL_COUNT, COL_MAX],
        RollupFunc::Sum => &[COL_COUNT, COL_SUM],
        RollupFunc::Count => &[COL_COUNT],
        RollupFunc::Avg => &[COL_COUNT, COL_SUM],
        RollupFunc::Last => &[COL_COUNT, COL_LAST],
        RollupFunc::Counter => &[COL_COUNT, COL_LAST, COL_INC],
    }
}

/// The samples a caller sees for `func` from a series' windows (sorted by stamp).
fn render(func: RollupFunc, wins: &[Window]) -> Vec<Sample> {
    let mut out = Vec::with_capacity(wins.len());
    let mut acc: Option<f64> = None;
    for w in wins {
        let n = w.count();
        if func == RollupFunc::Last && n == 0.0 {
            // A window of stale markers only keeps the series' end visible.
            out.push(Sample::new(w.t, w.cols[COL_LAST]));
            continue;
        }
        if n == 0.0 {
            continue;
        }
        let v = match func {
            RollupFunc::Min => w.cols[COL_MIN],
            RollupFunc::Max => w.cols[COL_MAX],
            RollupFunc::Sum => w.cols[COL_SUM],
            RollupFunc::Count => n,
            RollupFunc::Avg => w.cols[COL_SUM] / n,
            RollupFunc::Last => w.cols[COL_LAST],
            RollupFunc::Counter => {
                let base = *acc.get_or_insert(w.cols[COL_LAST] - w.cols[COL_INC]);
                let next = base + w.cols[COL_INC];
                acc = Some(next);
                next
            }
        };
        out.push(Sample::new(w.t, v));
    }
    out
}

impl Tsdb {
    /// Whether `select_hinted` answers from rollups; see the module docs.
    pub fn rollups_apply(&self, start_ms: i64, end_ms: i64, hints: &SelectHints) -> bool {
        let res = self.rollup_ms;
        if res <= 0 || hints.func.is_none() || hints.step_ms < res || hints.range_ms < res || start_ms > end_ms {
            return false;
        }
        let long = end_ms.saturating_sub(start_ms) > super::dur_ms(self.opts.rollup_min_query_range);
        long || start_ms < self.oldest_raw()
    }

    /// The oldest raw sample still kept, or `i64::MIN` when nothing was ever dropped.
    fn oldest_raw(&self) -> i64 {
        if let Some(t) = self.blocks.read().iter().map(|b| b.meta.min_t).min() {
            return t;
        }
        if self.rollups.read().is_empty() { i64::MIN } else { self.persisted.load(Ordering::Acquire) }
    }

    pub(super) fn select_rollup(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        func: RollupFunc,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let res = self.rollup_ms;
        let cols = columns(func);
        let wm = self.rollup_watermark.load(Ordering::Acquire);
        // Stored windows (all below the watermark, stamped inside it).
        let blocks: Vec<Arc<Block>> = self
            .rollups
            .read()
            .iter()
            .filter(|b| b.meta.min_t <= end_ms && b.meta.max_t >= start_ms)
            .cloned()
            .collect();
        let stored_end = end_ms.min(wm.saturating_sub(1));
        let (planned, chunks) = self.plan(&blocks, matchers, start_ms, stored_end, false);
        // Windows above the watermark are aggregated from raw data the same way.
        let lo = align_down(start_ms.saturating_sub(res - 1), res).max(wm);
        let raw = if lo <= end_ms {
            self.select(matchers, lo.saturating_sub(super::rollup::lookback(res)), end_ms)?
        } else {
            Vec::new()
        };
        let jobs = merge_jobs(planned, &raw);
        let run = |jobs: &[Job<'_>]| -> Vec<Result<Vec<Sample>, StorageError>> {
            // The last page each block gave this thread (series of a block share pages).
            let mut last: Vec<Option<(u32, Arc<Page>)>> = vec![None; blocks.len()];
            let (mut ts, mut vals, mut wins) = (Vec::new(), vec![Vec::new(); cols.len()], Vec::new());
            jobs.iter()
                .map(|job| {
                    wins.clear();
                    for part in &job.parts {
                        let Part::Block(bi, id) = *part else { continue };
                        ts.clear();
                        vals.iter_mut().for_each(Vec::clear);
                        let b = &blocks[bi];
                        let last = &mut last[bi];
                        let page = |p: u32| match last {
                            Some((n, page)) if *n == p => Ok(page.clone()),
                            _ => {
                                let page = b.cached_page(p)?;
                                *last = Some((p, page.clone()));
                                Ok(page)
                            }
                        };
                        b.columns(id, cols, start_ms, stored_end, page, &mut ts, &mut vals).map_err(corrupt)?;
                        wins.extend(ts.iter().enumerate().map(|(i, &t)| {
                            let mut w = Window { t, last_t: t, cols: [f64::NAN; NCOLS] };
                            for (k, &c) in cols.iter().enumerate() {
                                w.cols[c] = vals[k][i];
                            }
                            w
                        }));
                    }
                    if let Some(samples) = job.raw {
                        let from = wins.len();
                        aggregate(samples, lo, end_ms.saturating_add(1), res, &mut wins);
                        // The newest, still-filling window is stamped at its last raw sample.
                        for w in &mut wins[from..] {
                            if w.t > end_ms {
                                w.t = w.last_t;
                            }
                        }
                        let mut k = from;
                        for r in from..wins.len() {
                            if wins[r].t >= start_ms && wins[r].t <= end_ms {
                                wins[k] = wins[r];
                                k += 1;
                            }
                        }
                        wins.truncate(k);
                    }
                    if !wins.is_sorted_by_key(|w| w.t) {
                        wins.sort_by_key(|w| w.t);
                    }
                    // During a rollup merge the old and new blocks may both be listed.
                    wins.dedup_by_key(|w| w.t);
                    Ok(render(func, &wins))
                })
                .collect()
        };
        let rendered =
            crate::promql::parallel::map_ranges(jobs.len(), chunks >= PARALLEL_MIN_CHUNKS, |r| run(&jobs[r]));
        let mut out = Vec::with_capacity(jobs.len());
        for (job, samples) in jobs.into_iter().zip(rendered) {
            let samples = samples?;
            if !samples.is_empty() {
                out.push(SeriesSamples { labels: job.labels, samples });
            }
        }
        Ok(out)
    }
}

/// Merges the stored series and the raw ones (both sorted by labels) into one job per series.
fn merge_jobs(planned: Vec<Planned>, raw: &[SeriesSamples]) -> Vec<Job<'_>> {
    let mut jobs = Vec::with_capacity(planned.len().max(raw.len()));
    let mut raw = raw.iter().peekable();
    for p in planned {
        while let Some(r) = raw.next_if(|r| r.labels < p.labels) {
            jobs.push(Job { labels: r.labels.clone(), parts: Vec::new(), raw: Some(&r.samples) });
        }
        let same = raw.next_if(|r| r.labels.cmp(&p.labels) == CmpOrdering::Equal);
        jobs.push(Job { labels: p.labels, parts: p.parts, raw: same.map(|r| r.samples.as_slice()) });
    }
    jobs.extend(raw.map(|r| Job { labels: r.labels.clone(), parts: Vec::new(), raw: Some(&r.samples) }));
    jobs
}

fn align_down(t: i64, step: i64) -> i64 {
    t.div_euclid(step).saturating_mul(step)
}

/// Entry point used by the `Queryable` impl.
pub(super) fn select_hinted(
    db: &Tsdb,
    matchers: &[Matcher],
    start_ms: i64,
    end_ms: i64,
    hints: &SelectHints,
) -> Result<Vec<SeriesSamples>, StorageError> {
    match hints.func {
        Some(func) if db.rollups_apply(start_ms, end_ms, hints) => db.select_rollup(matchers, start_ms, end_ms, func),
        _ => db.select(matchers, start_ms, end_ms),
    }
}
