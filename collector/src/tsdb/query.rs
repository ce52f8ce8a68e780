//! The read side: `Queryable` over blocks and head. Each source answers from its own index;
//! results are merged by label set, samples sorted and de-duplicated (the older source wins a
//! tie, so a block's sample beats a head copy left over during a cut).

use super::Tsdb;
use super::block::Block;
use super::head::MemSeries;
use crate::storage::{Queryable, SelectHints, SeriesSamples, StorageError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tingzhen_core::{Labels, Matcher, Sample};

fn corrupt(e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(e.to_string())
}

/// Sorted union of ids selected by any of the matcher sets (all ids when there are none).
fn select_sets(select: impl Fn(&[Matcher]) -> Vec<u32>, sets: &[Vec<Matcher>]) -> Vec<u32> {
    if sets.is_empty() {
        return select(&[]);
    }
    super::index::union(sets.iter().map(|m| select(m)).collect::<Vec<_>>().iter().map(|v| v.as_slice()))
}

impl Tsdb {
    fn blocks_in(&self, start_ms: i64, end_ms: i64) -> Vec<Arc<Block>> {
        self.blocks.read().iter().filter(|b| b.meta.min_t <= end_ms && b.meta.max_t >= start_ms).cloned().collect()
    }

    /// Calls `f` with the label set of every series matching any set that has data in range.
    fn for_each_series(
        &self,
        sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
        mut f: impl FnMut(Labels),
    ) -> Result<(), StorageError> {
        for b in self.blocks_in(start_ms, end_ms) {
            let ids = select_sets(|m| b.postings.select(m), sets);
            let covered = b.covered_by(start_ms, end_ms);
            let mut cache = None;
            for id in ids {
                if covered || b.has_data(id, start_ms, end_ms, &mut cache).map_err(corrupt)? {
                    f(b.labels(id));
                }
            }
        }
        let ids = select_sets(|m| self.head.select_ids(m), sets);
        for s in self.head.series_by_ids(&ids) {
            if s.has_data(start_ms, end_ms).map_err(corrupt)? {
                f(s.labels());
            }
        }
        Ok(())
    }

    fn head_has_any(&self, series: &[Arc<MemSeries>], start_ms: i64, end_ms: i64) -> Result<bool, StorageError> {
        for s in series {
            if s.has_data(start_ms, end_ms).map_err(corrupt)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Queryable for Tsdb {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<Vec<SeriesSamples>, StorageError> {
        if start_ms > end_ms {
            return Ok(Vec::new());
        }
        // Blocks and the head decode straight into each series' vector (they append), so a
        // sample is copied once on its way out; series with nothing in range are dropped last.
        let mut merged: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        for b in self.blocks_in(start_ms, end_ms) {
            let mut cache = None;
            for id in b.postings.select(matchers) {
                let out = merged.entry(b.labels(id)).or_default();
                b.samples(id, start_ms, end_ms, &mut cache, out).map_err(corrupt)?;
            }
        }
        for s in self.head.select(matchers) {
            let out = merged.entry(s.labels()).or_default();
            s.samples(start_ms, end_ms, out).map_err(corrupt)?;
        }
        Ok(merged
            .into_iter()
            .filter(|(_, samples)| !samples.is_empty())
            .map(|(labels, mut samples)| {
                if !samples.is_sorted_by_key(|s| s.timestamp_ms) {
                    samples.sort_by_key(|s| s.timestamp_ms);
                }
                samples.dedup_by_key(|s| s.timestamp_ms);
                SeriesSamples { labels, samples }
            })
            .collect())
    }

    fn select_hinted(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        hints: &SelectHints,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        super::rollup_query::select_hinted(self, matchers, start_ms, end_ms, hints)
    }

    fn series(&self, matcher_sets: &[Vec<Matcher>], start_ms: i64, end_ms: i64) -> Result<Vec<Labels>, StorageError> {
        let mut out = BTreeSet::new();
        self.for_each_series(matcher_sets, start_ms, end_ms, |l| {
            out.insert(l);
        })?;
        Ok(out.into_iter().collect())
    }

    fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut out = BTreeSet::new();
        if matcher_sets.is_empty() {
            // Common (Grafana) case: answer from the indexes where whole blocks are in range.
            for b in self.blocks_in(start_ms, end_ms) {
                if b.covered_by(start_ms, end_ms) {
                    out.extend(b.postings.names().map(str::to_string));
                    continue;
                }
                let mut cache = None;
                for id in b.postings.select(&[]) {
                    if b.has_data(id, start_ms, end_ms, &mut cache).map_err(corrupt)? {
                        out.extend(b.labels(id).into_vec().into_iter().map(|l| l.name));
                    }
                }
            }
            for name in self.head.label_names() {
                if out.contains(&name) {
                    continue;
                }
                let ids: Vec<u32> =
                    self.head.label_values(&name).into_iter().flat_map(|(_, ids)| ids.into_iter()).collect();
                if self.head_has_any(&self.head.series_by_ids(&ids), start_ms, end_ms)? {
                    out.insert(name);
                }
            }
            return Ok(out.into_iter().collect());
        }
        self.for_each_series(matcher_sets, start_ms, end_ms, |l| {
            for x in l.into_vec() {
                out.insert(x.name);
            }
        })?;
        Ok(out.into_iter().collect())
    }

    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut out = BTreeSet::new();
        if matcher_sets.is_empty() {
            for b in self.blocks_in(start_ms, end_ms) {
                let covered = b.covered_by(start_ms, end_ms);
                let mut cache = None;
                for (v, ids) in b.postings.values(name) {
                    if out.contains(v) {
                        continue;
                    }
                    let mut hit = covered;
                    for &id in ids {
                        if hit {
                            break;
                        }
                        hit = b.has_data(id, start_ms, end_ms, &mut cache).map_err(corrupt)?;
                    }
                    if hit {
                        out.insert(v.to_string());
                    }
                }
            }
            for (v, ids) in self.head.label_values(name) {
                if !out.contains(&v) && self.head_has_any(&self.head.series_by_ids(&ids), start_ms, end_ms)? {
                    out.insert(v);
                }
            }
            return Ok(out.into_iter().collect());
        }
        self.for_each_series(matcher_sets, start_ms, end_ms, |l| {
            if let Some(v) = l.get(name) {
                out.insert(v.to_string());
            }
        })?;
        Ok(out.into_iter().collect())
    }
}
