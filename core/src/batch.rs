//! A batch of series on its way to storage, whatever it was decoded into: owned
//! [`TimeSeries`] (line protocol, self-metrics, tests) or label slices borrowed from a request
//! body ([`crate::remote_write::WriteBatch`]), so a remote-write request whose series the store
//! already knows allocates nothing per series on its way in.
//!
//! Every implementation hands out label sets that are already canonical (sorted by name, no
//! empty values, validated, UTF-8): storage keys series on that form and never re-checks it.
//! Labels are handed out as bytes because storage keys on bytes, and a decoder that has checked
//! UTF-8 cheaply (an ASCII test for nearly every value) need not build `&str`s nobody reads.

use crate::labels::{Label, Labels, METRIC_NAME};
use crate::sample::{Sample, TimeSeries};

pub trait SeriesBatch {
    /// Number of series in the batch.
    fn series_count(&self) -> usize;

    /// Number of labels of series `i`.
    fn label_count(&self, i: usize) -> usize;

    /// The labels of series `i` as `(name, value)` UTF-8 bytes, in canonical order.
    fn label_pairs(&self, i: usize) -> impl Iterator<Item = (&[u8], &[u8])>;

    /// The samples of series `i`, oldest first.
    fn samples(&self, i: usize) -> &[Sample];

    /// The batch as owned series when that is what it already is (no copy needed).
    fn as_series(&self) -> Option<&[TimeSeries]> {
        None
    }

    /// The metric name of series `i`.
    fn metric_name(&self, i: usize) -> Option<&str> {
        let (_, v) = self.label_pairs(i).find(|(n, _)| *n == METRIC_NAME.as_bytes())?;
        std::str::from_utf8(v).ok()
    }

    /// The labels of series `i` as an owned set (new series, error messages).
    fn labels(&self, i: usize) -> Labels {
        // Already canonical and UTF-8, so this only copies (the lossy conversion never replaces).
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Labels::from_unsorted(self.label_pairs(i).map(|(n, v)| Label::new(text(n), text(v))).collect())
    }

    /// Samples in the whole batch.
    fn sample_total(&self) -> usize {
        (0..self.series_count()).map(|i| self.samples(i).len()).sum()
    }

    /// The whole batch as owned series (for stores that need them, e.g. the remote spool).
    fn to_series(&self) -> Vec<TimeSeries> {
        match self.as_series() {
            Some(s) => s.to_vec(),
            None => {
                (0..self.series_count()).map(|i| TimeSeries::new(self.labels(i), self.samples(i).to_vec())).collect()
            }
        }
    }
}

impl SeriesBatch for [TimeSeries] {
    fn series_count(&self) -> usize {
        self.len()
    }

    fn label_count(&self, i: usize) -> usize {
        self[i].labels.len()
    }

    fn label_pairs(&self, i: usize) -> impl Iterator<Item = (&[u8], &[u8])> {
        self[i].labels.iter().map(|l| (l.name.as_bytes(), l.value.as_bytes()))
    }

    fn samples(&self, i: usize) -> &[Sample] {
        &self[i].samples
    }

    fn as_series(&self) -> Option<&[TimeSeries]> {
        Some(self)
    }

    fn metric_name(&self, i: usize) -> Option<&str> {
        self[i].labels.metric_name()
    }

    fn labels(&self, i: usize) -> Labels {
        self[i].labels.clone()
    }
}
