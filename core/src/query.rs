//! The seams between targets: how one target asks another for metrics, and how it learns that
//! samples arrived. The collector implements both in process; a split deployment implements
//! `MetricsQuery` over the Prometheus HTTP API. Alerting depends on these, never on the
//! collector crate, so `--target all` and separate processes share one code path.

use crate::labels::Labels;

/// One element of an instant-vector answer.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsQueryError {
    /// The expression is wrong (parse or type error); retrying will not help.
    #[error("bad query: {0}")]
    BadQuery(String),
    /// The engine could not answer now (timeout, overload, unreachable); retrying may help.
    #[error("query failed: {0}")]
    Unavailable(String),
}

/// Evaluates PromQL at one instant. Blocking: callers on an async runtime use `spawn_blocking`.
pub trait MetricsQuery: Send + Sync {
    /// Evaluates `expr` at `at_ms`. A scalar answer comes back as one sample with no labels.
    fn instant(&self, expr: &str, at_ms: i64) -> Result<Vec<InstantSample>, MetricsQueryError>;
}

/// Told after every acknowledged write, with the metric names the write touched (each name
/// once). It must return quickly: it runs on the ingest path. Alerting uses it to evaluate the
/// rules that read those metrics as soon as their samples land, instead of waiting for a timer.
pub trait IngestObserver: Send + Sync {
    fn samples_written(&self, metric_names: &[&str]);
}
