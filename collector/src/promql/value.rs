//! The engine's intermediate values: every expression is evaluated over all steps at once,
//! so an instant vector is a set of series holding one optional value per step.

use super::error::{DUPLICATE_LABELSET, QueryError, Result};
use std::collections::HashMap;
use tingzhen_core::Labels;

/// The evaluation timestamps `start, start+step, …, end` (an instant query is one step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Steps {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Steps {
    pub fn instant(t: i64) -> Self {
        Steps { start: t, end: t, step: 1 }
    }

    pub fn len(&self) -> usize {
        if self.end < self.start { 0 } else { (self.end.abs_diff(self.start) / self.step.max(1) as u64) as usize + 1 }
    }

    pub fn ts(&self, i: usize) -> i64 {
        (self.start as i128 + self.step as i128 * i as i128) as i64
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, i64)> + '_ {
        (0..self.len()).map(move |i| (i, self.ts(i)))
    }
}

/// One series of an instant vector evaluated over [`Steps`]: `vals[i]` is its value at step i.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub labels: Labels,
    pub vals: Vec<Option<f64>>,
}

impl Series {
    pub fn points(&self) -> usize {
        self.vals.iter().filter(|v| v.is_some()).count()
    }
}

/// A series of raw samples (a range vector), oldest first, staleness markers removed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawSeries {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// One value per step.
    Scalar(Vec<f64>),
    Vector(Vec<Series>),
    /// Only produced for a range-vector expression at the top of an instant query.
    Matrix(Vec<RawSeries>),
    String(String),
}

impl Value {
    pub fn points(&self) -> usize {
        match self {
            Value::Scalar(v) => v.len(),
            Value::Vector(s) => s.iter().map(Series::points).sum(),
            Value::Matrix(s) => s.iter().map(|s| s.points.len()).sum(),
            Value::String(_) => 1,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::Vector(_) => "instant vector",
            Value::Matrix(_) => "range vector",
            Value::String(_) => "string",
        }
    }
}

/// Builds a vector step by step from `(labels, value)` outputs, merging outputs with equal
/// labels into one series as Prometheus does, and failing when two outputs of the same
/// step share a label set.
pub(crate) struct VectorBuilder {
    n: usize,
    index: HashMap<Labels, usize>,
    out: Vec<Series>,
}

impl VectorBuilder {
    pub fn new(n: usize) -> Self {
        VectorBuilder { n, index: HashMap::new(), out: Vec::new() }
    }

    pub fn push(&mut self, step: usize, labels: Labels, v: f64) -> Result<()> {
        let idx = self.series_index(labels);
        self.push_at(step, idx, v)
    }

    /// The output series for `labels`, created on first use. Callers that emit the same label
    /// set at many steps resolve it once and then use [`VectorBuilder::push_at`].
    pub fn series_index(&mut self, labels: Labels) -> usize {
        match self.index.get(&labels) {
            Some(&i) => i,
            None => {
                self.out.push(Series { labels: labels.clone(), vals: vec![None; self.n] });
                self.index.insert(labels, self.out.len() - 1);
                self.out.len() - 1
            }
        }
    }

    pub fn push_at(&mut self, step: usize, idx: usize, v: f64) -> Result<()> {
        let slot = &mut self.out[idx].vals[step];
        if slot.is_some() {
            return Err(QueryError::exec(DUPLICATE_LABELSET));
        }
        *slot = Some(v);
        Ok(())
    }

    pub fn finish(self) -> Vec<Series> {
        self.out
    }
}

/// Merges series whose label sets became equal (after a label change), failing only when
/// two of them have a value at the same step.
pub(crate) fn merge_same_labels(series: Vec<Series>) -> Result<Vec<Series>> {
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(series.len());
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series {
        match index.get(&s.labels) {
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
            Some(&i) => {
                let target = &mut out[i];
                for (slot, v) in target.vals.iter_mut().zip(s.vals) {
                    if let Some(v) = v {
                        if slot.is_some() {
                            return Err(QueryError::exec(DUPLICATE_LABELSET));
                        }
                        *slot = Some(v);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Fails when two series have the same label set, whatever their steps (Prometheus checks
/// whole matrices this way after range-vector functions and unary minus).
pub(crate) fn check_unique_labels(series: &[Series]) -> Result<()> {
    let mut seen = std::collections::HashSet::with_capacity(series.len());
    for s in series {
        if !seen.insert(&s.labels) {
            return Err(QueryError::exec(DUPLICATE_LABELSET));
        }
    }
    Ok(())
}

/// Go's `math.Max`: +Inf wins over NaN, NaN wins over everything else, +0 over -0.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_positive() { a } else { b }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`: -Inf wins over NaN, NaN wins over everything else, -0 over +0.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else if a < b {
        a
    } else {
        b
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` plus Prometheus's spelling of the specials.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's Display is the shortest round-tripping digits without an exponent, as Go's.
        format!("{v}")
    }
}

/// Kahan–Babuška summation step, as Prometheus 2.x's `kahanSumInc` (an infinite sum makes
/// the compensation NaN there too, which is visible in stddev_over_time).
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() { c + ((sum - t) + inc) } else { c + ((inc - t) + sum) };
    (t, c)
}

/// Prometheus's `quantile`: linear interpolation between the closest ranks; NaN sorts first.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}
