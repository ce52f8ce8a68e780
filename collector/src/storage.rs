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

/// Read access to stored series. Every method takes the time range it cares about (inclusive
/// Unix milliseconds) so a backend can skip blocks outside it. `matchers` must all match.
pub trait Queryable: Send + Sync {
    /// Series matching all `matchers` with their samples in `[start_ms, end_ms]`, sorted by labels.
    /// Series with no sample in the range are omitted.
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<Vec<SeriesSamples>, StorageError>;

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
