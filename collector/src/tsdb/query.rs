//! The read side: `Queryable` over blocks and head. Each source answers from its own index;
//! results are merged by label set, samples sorted and de-duplicated (the older source wins a
//! tie, so a block's sample beats a head copy left over during a cut).
//!
//! A selection works in two passes. Planning merges the sources' id lists by label set
//! without decoding anything or building a `Labels` per block (blocks list their series sorted
//! by labels, so this is a k-way merge comparing symbol strings in place); the result is a
//! [`RawSet`], whose series are decoded on demand — by `select` into vectors, on all cores when
//! there is enough work, or by the query engine one series at a time straight into its window
//! loops (`select_lazy`), so a day of samples is never materialised whole. Pages are
//! decompressed once per selection into a table the decoding threads share.

use super::Tsdb;
use super::block::{Block, Page};
use super::head::MemSeries;
use crate::storage::{MaterializedSet, Queryable, SelectHints, SeriesSamples, SeriesSet, SeriesVisitor, StorageError};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use tingzhen_core::{Labels, Matcher, Sample};

/// Below this many chunks to decode, a selection is decoded on the calling thread (threads
/// cost more than they save on a dashboard's instant query).
pub(super) const PARALLEL_MIN_CHUNKS: usize = 64;

/// Where one planned series' data is: a block's series id, or a head series.
pub(super) enum Part {
    Block(usize, u32),
    Head(Arc<MemSeries>),
}

/// One series of a selection: its labels (built once) and its parts, oldest source first.
pub(super) struct Planned {
    pub labels: Labels,
    pub parts: Vec<Part>,
}

/// A planned raw selection, decoded on demand (see the module docs).
pub(super) struct RawSet {
    blocks: Vec<Arc<Block>>,
    /// Per block, per page: the decompressed page once a series needed it (so the threads of
    /// one selection decompress it once even when the page cache is too small to keep it).
    pages: Vec<Vec<OnceLock<Arc<Page>>>>,
    labels: Vec<Labels>,
    parts: Vec<Vec<Part>>,
    start_ms: i64,
    end_ms: i64,
    /// Chunks to decode (block chunks in range plus one per head series).
    chunks: usize,
}

impl RawSet {
    fn page(&self, bi: usize, page: u32) -> Result<Arc<Page>, super::block::BlockError> {
        let b = &self.blocks[bi];
        let Some(slot) = self.pages[bi].get(page as usize) else {
            return Err(super::block::BlockError::Corrupt {
                path: b.dir.clone(),
                reason: format!("page {page} missing"),
            });
        };
        if let Some(p) = slot.get() {
            return Ok(p.clone());
        }
        // Two threads may both miss here; the page cache usually answers the second.
        let p = b.cached_page(page)?;
        Ok(slot.get_or_init(|| p).clone())
    }

    /// Series `i`'s samples in range, into `out` (cleared first): sorted, unique timestamps.
    fn decode(&self, i: usize, out: &mut Vec<Sample>) -> Result<(), StorageError> {
        out.clear();
        for part in &self.parts[i] {
            match part {
                Part::Block(bi, id) => self.blocks[*bi]
                    .samples_paged(*id, self.start_ms, self.end_ms, |p| self.page(*bi, p), out)
                    .map_err(corrupt)?,
                Part::Head(s) => s.samples(self.start_ms, self.end_ms, out).map_err(corrupt)?,
            }
        }
        if self.parts[i].len() > 1 {
            if !out.is_sorted_by_key(|s| s.timestamp_ms) {
                // Stable: on equal timestamps the older source's sample stays first.
                out.sort_by_key(|s| s.timestamp_ms);
            }
            out.dedup_by_key(|s| s.timestamp_ms);
        }
        Ok(())
    }
}

impl SeriesSet for RawSet {
    fn labels(&self) -> &[Labels] {
        &self.labels
    }

    fn for_each(&self, range: Range<usize>, f: &mut SeriesVisitor<'_>) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        for i in range {
            self.decode(i, &mut buf)?;
            f(i, &buf)?;
        }
        Ok(())
    }

    fn is_large(&self) -> bool {
        self.chunks >= PARALLEL_MIN_CHUNKS
    }
}

/// One source's matching series during planning, in label order.
enum Source<'a> {
    Block { bi: usize, block: &'a Block, ids: Vec<u32>, pos: usize },
    Head { series: Vec<(Labels, Arc<MemSeries>)>, pos: usize },
}

impl Source<'_> {
    fn done(&self) -> bool {
        match self {
            Source::Block { ids, pos, .. } => *pos >= ids.len(),
            Source::Head { series, pos } => *pos >= series.len(),
        }
    }

    /// Compares the current series of two unfinished sources by label set.
    fn cmp_current(&self, other: &Source<'_>) -> Ordering {
        fn pairs(l: &Labels) -> impl Iterator<Item = (&str, &str)> {
            l.iter().map(|l| (l.name.as_str(), l.value.as_str()))
        }
        match (self, other) {
            (Source::Block { block: a, ids: ia, pos: pa, .. }, Source::Block { block: b, ids: ib, pos: pb, .. }) => {
                a.label_pairs(ia[*pa]).cmp(b.label_pairs(ib[*pb]))
            }
            (Source::Block { block, ids, pos, .. }, Source::Head { series, pos: ph }) => {
                block.label_pairs(ids[*pos]).cmp(pairs(&series[*ph].0))
            }
            (Source::Head { series, pos: ph }, Source::Block { block, ids, pos, .. }) => {
                pairs(&series[*ph].0).cmp(block.label_pairs(ids[*pos]))
            }
            (Source::Head { series: a, pos: pa }, Source::Head { series: b, pos: pb }) => a[*pa].0.cmp(&b[*pb].0),
        }
    }

    /// Takes the current series as a part (and its labels when `want_labels`), advancing.
    fn take(&mut self, want_labels: bool) -> (Part, Option<Labels>) {
        match self {
            Source::Block { bi, block, ids, pos } => {
                let id = ids[*pos];
                *pos += 1;
                (Part::Block(*bi, id), want_labels.then(|| block.labels(id)))
            }
            Source::Head { series, pos } => {
                let (l, s) = &series[*pos];
                *pos += 1;
                (Part::Head(s.clone()), want_labels.then(|| l.clone()))
            }
        }
    }
}

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

    /// Plans a raw selection (blocks and head) for decoding on demand.
    fn raw_set(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> RawSet {
        let blocks = self.blocks_in(start_ms, end_ms);
        let (planned, chunks) = self.plan(&blocks, matchers, start_ms, end_ms, true);
        let pages = blocks.iter().map(|b| (0..b.page_count()).map(|_| OnceLock::new()).collect()).collect();
        let (labels, parts) = planned.into_iter().map(|p| (p.labels, p.parts)).unzip();
        RawSet { blocks, pages, labels, parts, start_ms, end_ms, chunks }
    }

    /// The series a selection reads from `blocks` (and the head, when `with_head`), sorted by
    /// labels, each with where its data is; and how many chunks overlap the range (the
    /// decoding work ahead).
    pub(super) fn plan(
        &self,
        blocks: &[Arc<Block>],
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        with_head: bool,
    ) -> (Vec<Planned>, usize) {
        let mut chunks = 0usize;
        let mut sources: Vec<Source<'_>> = Vec::with_capacity(blocks.len() + 1);
        for (bi, b) in blocks.iter().enumerate() {
            let mut ids = b.postings.select(matchers);
            // A series whose chunks all lie outside the range has nothing to give.
            ids.retain(|&id| {
                let n = b.chunks_in(id, start_ms, end_ms);
                chunks += n;
                n > 0
            });
            if !ids.is_empty() {
                sources.push(Source::Block { bi, block: b, ids, pos: 0 });
            }
        }
        let mut head: Vec<(Labels, Arc<MemSeries>)> = if with_head {
            self.head.select(matchers).into_iter().map(|s| (s.labels(), s)).collect()
        } else {
            Vec::new()
        };
        if !head.is_empty() {
            head.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            chunks += head.len();
            sources.push(Source::Head { series: head, pos: 0 });
        }
        let mut planned = Vec::new();
        let mut equal: Vec<usize> = Vec::with_capacity(sources.len());
        loop {
            // The smallest current label set, and every source currently at it.
            equal.clear();
            for (i, s) in sources.iter().enumerate() {
                if s.done() {
                    continue;
                }
                match equal.first().map(|&m| s.cmp_current(&sources[m])) {
                    None => equal.push(i),
                    Some(Ordering::Less) => {
                        equal.clear();
                        equal.push(i);
                    }
                    Some(Ordering::Equal) => equal.push(i),
                    Some(Ordering::Greater) => {}
                }
            }
            if equal.is_empty() {
                break;
            }
            let mut labels = None;
            let mut parts = Vec::with_capacity(equal.len());
            // Sources are in read order (blocks oldest first, then the head), and so are parts.
            for &i in &equal {
                let (part, l) = sources[i].take(labels.is_none());
                parts.push(part);
                labels = labels.or(l);
            }
            planned.push(Planned { labels: labels.unwrap_or_default(), parts });
        }
        (planned, chunks)
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
        let set = self.raw_set(matchers, start_ms, end_ms);
        let n = set.labels.len();
        let decoded = crate::promql::parallel::map_ranges(n, set.is_large(), |r| {
            r.map(|i| {
                let mut v = Vec::new();
                set.decode(i, &mut v).map(|_| v)
            })
            .collect()
        });
        let mut out = Vec::with_capacity(n);
        for (labels, samples) in set.labels.into_iter().zip(decoded) {
            let samples = samples?;
            if !samples.is_empty() {
                out.push(SeriesSamples { labels, samples });
            }
        }
        Ok(out)
    }

    fn select_lazy<'a>(
        &'a self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        hints: &SelectHints,
    ) -> Result<Box<dyn SeriesSet + 'a>, StorageError> {
        match hints.func {
            Some(func) if self.rollups_apply(start_ms, end_ms, hints) => {
                Ok(Box::new(MaterializedSet::new(self.select_rollup(matchers, start_ms, end_ms, func)?)))
            }
            _ if start_ms > end_ms => Ok(Box::new(MaterializedSet::new(Vec::new()))),
            _ => Ok(Box::new(self.raw_set(matchers, start_ms, end_ms))),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use crate::tsdb::TsdbOptions;
    use tingzhen_core::{MatchOp, STALE_NAN_BITS, TimeSeries};

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;

    /// 120 series over 7 hours: blocks and head, more chunks than the parallel threshold, a
    /// staleness marker and a series that starts late.
    fn data() -> Vec<TimeSeries> {
        (0..120)
            .map(|i| {
                let labels = Labels::from_pairs([
                    ("__name__", if i % 3 == 0 { "a" } else { "b" }.to_string()),
                    ("i", format!("{i:03}")),
                ]);
                let from = if i == 7 { 5 * HOUR } else { 0 };
                let samples = (from / MIN..7 * HOUR / MIN)
                    .map(|k| {
                        let v = if i == 5 && k == 200 { f64::from_bits(STALE_NAN_BITS) } else { (k * i) as f64 / 4.0 };
                        Sample::new(k * MIN + i, v)
                    })
                    .collect();
                TimeSeries::new(labels, samples)
            })
            .collect()
    }

    fn bits(s: &[Sample]) -> Vec<(i64, u64)> {
        s.iter().map(|x| (x.timestamp_ms, x.value.to_bits())).collect()
    }

    #[test]
    fn lazy_and_parallel_selections_equal_the_oracle() {
        let dir = tempfile::tempdir().unwrap();
        let opts = TsdbOptions { max_future: None, ..TsdbOptions::default() };
        let db = Tsdb::open(dir.path(), opts).unwrap();
        let data = data();
        let mut oracle = MemStorage::new();
        for s in &data {
            oracle.add(s.labels.clone(), s.samples.iter().copied());
        }
        db.append(&data).unwrap();
        db.maintain(7 * HOUR).unwrap();
        assert!(db.stats().blocks >= 2, "{:?}", db.stats());
        let cases = [
            (vec![], 0, 7 * HOUR),
            (vec![Matcher::new(MatchOp::Equal, "__name__", "a").unwrap()], HOUR + 17, 6 * HOUR),
            (vec![Matcher::new(MatchOp::RegexMatch, "i", "00.|11.").unwrap()], 4 * HOUR, 8 * HOUR),
        ];
        for (ms, s, e) in cases {
            let want = oracle.select(&ms, s, e).unwrap();
            let got = db.select(&ms, s, e).unwrap();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.labels, w.labels);
                assert_eq!(bits(&g.samples), bits(&w.samples), "{}", g.labels);
            }
            // Lazily, in uneven runs from two threads at once (sharing the page table).
            let set = db.select_lazy(&ms, s, e, &SelectHints::default()).unwrap();
            let labels: Vec<Labels> =
                set.labels().iter().filter(|l| want.iter().any(|w| &w.labels == *l)).cloned().collect();
            assert_eq!(labels.len(), want.len());
            let n = set.labels().len();
            let cut = n / 3;
            let walk = |r: Range<usize>| {
                let mut out = Vec::new();
                set.for_each(r, &mut |i, samples| {
                    out.push((i, samples.to_vec()));
                    Ok(())
                })
                .unwrap();
                out
            };
            let (a, b) = std::thread::scope(|sc| {
                let a = sc.spawn(|| walk(0..cut));
                let b = sc.spawn(|| walk(cut..n));
                (a.join().unwrap(), b.join().unwrap())
            });
            let lazy: Vec<(usize, Vec<Sample>)> = a.into_iter().chain(b).filter(|(_, s)| !s.is_empty()).collect();
            assert_eq!(lazy.len(), want.len());
            for ((i, samples), w) in lazy.iter().zip(&want) {
                assert_eq!(set.labels()[*i], w.labels);
                assert_eq!(bits(samples), bits(&w.samples));
            }
        }
    }
}
