//! The PromQL engine: parses with `promql-parser` and evaluates against any [`Queryable`]
//! with Prometheus 2.x semantics (lookback, staleness, extrapolation, matching rules, errors).
//!
//! Shape: [`Engine`] validates the request and runs `eval::Evaluator`, which evaluates every
//! node over all steps at once; `functions`, `range_functions`, `aggregations` and `binary`
//! implement the operators; `json` renders results as Prometheus's HTTP API does.

mod aggregations;
mod binary;
mod error;
mod eval;
mod functions;
mod json;
pub(crate) mod parallel;
mod range_functions;
mod selector;
mod value;

#[cfg(test)]
mod tests;

pub use error::QueryError;
pub use selector::parse_selector;
pub use value::format_float;

use crate::storage::Queryable;
use eval::Evaluator;
use promql_parser::parser::Expr;
use promql_parser::parser::value::ValueType;
use std::time::{Duration, Instant};
use tingzhen_core::{Labels, Sample};
use value::{Steps, Value};

/// Prometheus's limit on points per series in a range query.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_delta_ms: i64,
    /// Most samples a query may hold in memory at once.
    pub max_samples: usize,
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { lookback_delta_ms: 300_000, max_samples: 50_000_000, timeout: Duration::from_secs(120) }
    }
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    pub t_ms: i64,
    pub v: f64,
}

/// One series of a matrix, samples oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    Scalar { t_ms: i64, v: f64 },
    String { t_ms: i64, v: String },
    Vector(Vec<VectorSample>),
    Matrix(Vec<RangeSeries>),
}

impl QueryResult {
    /// The `data` object of a Prometheus query API response.
    pub fn to_prometheus_json(&self) -> serde_json::Value {
        json::to_json(self)
    }

    /// The whole `{"status":"success","data":…}` response body, written without a value tree.
    pub fn to_success_body(&self) -> Vec<u8> {
        json::write_success_body(self)
    }
}

/// The query engine. Stateless apart from its options, so one instance serves all requests.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

fn parse(query: &str) -> Result<Expr, QueryError> {
    promql_parser::parser::parse(query).map_err(|e| QueryError::Parse(format!("parse error: {e}")))
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    fn evaluator<'a>(&self, store: &'a dyn Queryable, start: i64, end: i64) -> Evaluator<'a> {
        Evaluator::new(
            store,
            self.opts.lookback_delta_ms,
            self.opts.max_samples,
            Instant::now() + self.opts.timeout,
            start,
            end,
        )
    }

    /// Evaluates `query` at one instant (`/api/v1/query`).
    pub fn instant(&self, store: &dyn Queryable, query: &str, time_ms: i64) -> Result<QueryResult, QueryError> {
        let expr = parse(query)?;
        let mut ev = self.evaluator(store, time_ms, time_ms);
        let steps = Steps::instant(time_ms);
        Ok(match ev.eval(&expr, &steps)? {
            Value::Scalar(v) => QueryResult::Scalar { t_ms: time_ms, v: v.first().copied().unwrap_or(f64::NAN) },
            Value::String(v) => QueryResult::String { t_ms: time_ms, v },
            Value::Vector(series) => QueryResult::Vector(
                series
                    .into_iter()
                    .filter_map(|s| s.vals[0].map(|v| VectorSample { labels: s.labels, t_ms: time_ms, v }))
                    .collect(),
            ),
            Value::Matrix(mut series) => {
                series.sort_by(|a, b| a.labels.cmp(&b.labels));
                QueryResult::Matrix(
                    series
                        .into_iter()
                        .map(|s| RangeSeries {
                            labels: s.labels,
                            samples: s.points.into_iter().map(|(t, v)| Sample::new(t, v)).collect(),
                        })
                        .collect(),
                )
            }
        })
    }

    /// Evaluates `query` at `start, start+step, …, end` (`/api/v1/query_range`).
    pub fn range(
        &self,
        store: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        if end_ms < start_ms {
            return Err(QueryError::BadData("end timestamp must not be before start time".into()));
        }
        if step_ms <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms.abs_diff(start_ms) / step_ms as u64 > MAX_POINTS_PER_SERIES as u64 {
            return Err(QueryError::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                    .into(),
            ));
        }
        let expr = parse(query)?;
        let ty = expr.value_type();
        if ty != ValueType::Vector && ty != ValueType::Scalar {
            let name = match ty {
                ValueType::Matrix => "range vector",
                _ => "string",
            };
            return Err(QueryError::BadData(format!(
                "invalid expression type {name:?} for range query, must be Scalar or instant Vector"
            )));
        }
        let steps = Steps { start: start_ms, end: end_ms, step: step_ms };
        let mut ev = self.evaluator(store, start_ms, end_ms);
        let series = match ev.eval(&expr, &steps)? {
            Value::Scalar(v) => vec![value::Series { labels: Labels::new(), vals: v.into_iter().map(Some).collect() }],
            Value::Vector(s) => s,
            other => {
                return Err(QueryError::BadData(format!(
                    "invalid expression type {:?} for range query, must be Scalar or instant Vector",
                    other.type_name()
                )));
            }
        };
        let mut out: Vec<RangeSeries> = series
            .into_iter()
            .filter_map(|s| {
                let samples: Vec<Sample> =
                    s.vals.iter().enumerate().filter_map(|(i, v)| v.map(|v| Sample::new(steps.ts(i), v))).collect();
                (!samples.is_empty()).then_some(RangeSeries { labels: s.labels, samples })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryResult::Matrix(out))
    }
}
