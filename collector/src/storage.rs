//! The read side every time-series backend offers the query engine: the embedded engine
//! (`tsdb`) today, a remote engine (VictoriaMetrics) in scale-out mode. Samples come back
//! raw, oldest first, staleness markers included; PromQL semantics live in `promql`, not here.

use tingzhen_core::{Labels, Matcher, Sample};

#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    #[error("query would touch {count} series, over the limit of {limit}")]
    TooManySeries { count: usize, limit: usize },
    #[error("{0}")]
    Other(String),
}

/// The per-window aggregate a caller needs, so a backend with downsampled data (rollups) can
/// answer a long-range query from it. Mapping from PromQL: `min_over_time` → `Min`,
/// `max_over_time` → `Max`, `sum_over_time` → `Sum`, `count_over_time` → `Count`,
/// `avg_over_time` → `Avg`, `rate`/`increase`/`resets`-free counter functions → `Counter`,
/// `last_over_time` and plain selectors → `Last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollupFunc {
    Min,
    Max,
    Sum,
    Count,
    /// `sum / count` of each window.
    Avg,
    Last,
    /// A reset-free counter whose increase over any run of windows equals the raw
    /// (reset-aware) increase over them: feed it to rate/increase like a raw counter.
    Counter,
}

/// What the caller will do with a selection; lets a backend answer from rollups.
/// `Default` (no `func`) means "raw samples only".
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectHints {
    /// Query resolution step (range queries) in ms; 0 for instant queries.
    pub step_ms: i64,
    /// Range of the range-vector selector in ms (`[1h]` → 3_600_000); 0 for instant selectors.
    pub range_ms: i64,
    pub func: Option<RollupFunc>,
}

/// What [`SeriesSet::for_each`] calls with each series' index and samples.
pub type SeriesVisitor<'f> = dyn FnMut(usize, &[Sample]) -> Result<(), StorageError> + 'f;

/// A selection whose samples are decoded on demand, a run of series at a time, so a caller
/// that consumes series one by one (PromQL's range functions) never holds every sample of a
/// day-long selection at once. Series are sorted by labels; one may turn out to have no sample
/// in range (it then decodes to an empty slice).
pub trait SeriesSet: Send + Sync {
    /// Label sets of the series, sorted.
    fn labels(&self) -> &[Labels];

    /// Calls `f(i, samples)` for each series `i` in `range`, in order; `samples` are sorted,
    /// staleness markers included, and only valid during the call. Safe to call from several
    /// threads at once for disjoint ranges.
    fn for_each(&self, range: std::ops::Range<usize>, f: &mut SeriesVisitor<'_>) -> Result<(), StorageError>;

    /// Whether decoding is worth spreading over threads.
    fn is_large(&self) -> bool;
}

/// A [`SeriesSet`] over samples already in memory (backends without lazy decoding).
pub struct MaterializedSet {
    labels: Vec<Labels>,
    samples: Vec<Vec<Sample>>,
}

impl MaterializedSet {
    pub fn new(series: Vec<SeriesSamples>) -> Self {
        let (labels, samples) = series.into_iter().map(|s| (s.labels, s.samples)).unzip();
        Self { labels, samples }
    }
}

impl SeriesSet for MaterializedSet {
    fn labels(&self) -> &[Labels] {
        &self.labels
    }

    fn for_each(&self, range: std::ops::Range<usize>, f: &mut SeriesVisitor<'_>) -> Result<(), StorageError> {
        for i in range {
            f(i, self.samples.get(i).map_or(&[], |s| s.as_slice()))?;
        }
        Ok(())
    }

    fn is_large(&self) -> bool {
        // Threads pay off for many series or many samples (a month of rollup windows), not for
        // an alert rule's handful of short windows.
        self.samples.len() >= 64 || self.samples.iter().map(Vec::len).sum::<usize>() >= 1 << 16
    }
}

/// Read access to stored series. Every method takes the time range it cares about (inclusive
/// Unix milliseconds) so a backend can skip blocks outside it. `matchers` must all match.
pub trait Queryable: Send + Sync {
    /// Series matching all `matchers` with their samples in `[start_ms, end_ms]`, sorted by labels.
    /// Series with no sample in the range are omitted.
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<Vec<SeriesSamples>, StorageError>;

    /// Like `select`, but the backend may answer from rollups when `hints` allow: then each
    /// series carries one sample per rollup window holding `hints.func`'s aggregate instead of
    /// raw samples. Backends without rollups return raw samples (this default).
    fn select_hinted(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        hints: &SelectHints,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let _ = hints;
        self.select(matchers, start_ms, end_ms)
    }

    /// Like `select_hinted`, decoding lazily (see [`SeriesSet`]). Backends without lazy
    /// decoding return `select_hinted`'s answer (this default).
    fn select_lazy<'a>(
        &'a self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        hints: &SelectHints,
    ) -> Result<Box<dyn SeriesSet + 'a>, StorageError> {
        Ok(Box::new(MaterializedSet::new(self.select_hinted(matchers, start_ms, end_ms, hints)?)))
    }

    /// Label sets of series that match any one of `matcher_sets` and have data in the range.
    fn series(&self, matcher_sets: &[Vec<Matcher>], start_ms: i64, end_ms: i64) -> Result<Vec<Labels>, StorageError>;

    /// Label names in use (sorted); restricted to series matching any of `matcher_sets` when given.
    fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError>;

    /// Values of one label (sorted); restricted to series matching any of `matcher_sets` when given.
    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError>;
}

/// A plain in-memory store; the query engine's tests and examples run on it.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    pub series: Vec<SeriesSamples>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds samples to a series, creating it when new; samples are kept sorted.
    pub fn add(&mut self, labels: Labels, samples: impl IntoIterator<Item = Sample>) {
        let idx = match self.series.iter().position(|s| s.labels == labels) {
            Some(i) => i,
            None => {
                self.series.push(SeriesSamples { labels, samples: Vec::new() });
                self.series.len() - 1
            }
        };
        let s = &mut self.series[idx];
        s.samples.extend(samples);
        s.samples.sort_by_key(|x| x.timestamp_ms);
        s.samples.dedup_by_key(|x| x.timestamp_ms);
    }

    fn matching<'a>(
        &'a self,
        sets: &'a [Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> impl Iterator<Item = &'a SeriesSamples> + 'a {
        self.series.iter().filter(move |s| {
            (sets.is_empty() || sets.iter().any(|m| tingzhen_core::matcher::matches_all(m, &s.labels)))
                && s.samples.iter().any(|x| x.timestamp_ms >= start_ms && x.timestamp_ms <= end_ms)
        })
    }
}

impl Queryable for MemStorage {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<Vec<SeriesSamples>, StorageError> {
        let sets = [matchers.to_vec()];
        let mut out: Vec<SeriesSamples> = self
            .matching(&sets, start_ms, end_ms)
            .map(|s| SeriesSamples {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|x| x.timestamp_ms >= start_ms && x.timestamp_ms <= end_ms)
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    fn series(&self, matcher_sets: &[Vec<Matcher>], start_ms: i64, end_ms: i64) -> Result<Vec<Labels>, StorageError> {
        let mut out: Vec<Labels> = self.matching(matcher_sets, start_ms, end_ms).map(|s| s.labels.clone()).collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut out: Vec<String> = self
            .matching(matcher_sets, start_ms, end_ms)
            .flat_map(|s| s.labels.iter().map(|l| l.name.clone()))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut out: Vec<String> = self
            .matching(matcher_sets, start_ms, end_ms)
            .filter_map(|s| s.labels.get(name).map(str::to_string))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}
