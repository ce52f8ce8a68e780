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
    let mut out = Vec::with_capacity(24);
    write_float(&mut out, v);
    // Only ASCII digits, signs, '.', "NaN" and "Inf" are written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `v` as [`format_float`] formats it. Range answers print ~10^5 values, and Rust's
/// `Display` (Grisu, through `fmt`) was the largest cost of writing them; zmij finds the same
/// shortest round-trip digits several times faster.
pub(crate) fn write_float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v == f64::INFINITY {
        out.extend_from_slice(b"+Inf");
    } else if v == f64::NEG_INFINITY {
        out.extend_from_slice(b"-Inf");
    } else {
        let mut buf = zmij::Buffer::new();
        let s = buf.format_finite(v);
        if s.contains('e') {
            // Outside zmij's fixed-notation range (below 1e-5 or from 1e16 up): Rust's
            // Display is the shortest round-tripping digits without an exponent, as Go's 'f'
            // (except that it rounds an exact half up where Go rounds it to even).
            use std::io::Write;
            write!(out, "{v}").expect("writing into a Vec cannot fail");
        } else {
            // zmij writes whole numbers as "12.0"; Go writes "12".
            out.extend_from_slice(s.strip_suffix(".0").unwrap_or(s).as_bytes());
        }
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

#[cfg(test)]
mod tests {
    use super::format_float;

    /// The reference: Rust's `Display`, which prints the shortest round-tripping digits without
    /// an exponent, as Go's `strconv.FormatFloat(v, 'f', -1, 64)` does.
    fn display(v: f64) -> String {
        if v.is_nan() {
            "NaN".into()
        } else if v.is_infinite() {
            if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
        } else {
            format!("{v}")
        }
    }

    #[test]
    fn fast_float_formatting_equals_display() {
        let mut cases = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            12.0,
            0.1,
            0.5,
            1e-5,
            9.99e-6,
            1e15,
            1e16,
            123456789012345680.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::from_bits(0x7ff0_0000_0000_0002), // the staleness marker's NaN payload
        ];
        for e in -30..=30 {
            let p = 10f64.powi(e);
            cases.extend([p, -p, p * 1.5, p * 7.0, p - p / 3.0]);
        }
        // Counters, gauges in percent and bytes, rates: k / 10^d for assorted k and d.
        for k in [1i64, 7, 42, 99, 1234, 65536, 987_654_321, 4_294_967_296, 9_007_199_254_740_993] {
            for d in 0..12 {
                cases.push(k as f64 / 10f64.powi(d));
            }
        }
        // Every exponent, random mantissas (xorshift; deterministic).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push(f64::from_bits(x));
        }
        for v in cases {
            let (got, want) = (format_float(v), display(v));
            if got == want {
                continue;
            }
            // The one allowed difference: a value exactly halfway between two shortest
            // candidates (e.g. 900719925474099.25). Go's Ryu (strconv's ryuDigits32 rounds an
            // exact half to even), which Prometheus prints with, and zmij round such ties to
            // even; Rust's Display rounds them up. Both strings are then equally short, have
            // no exponent and read back as the same float.
            assert_eq!(got.len(), want.len(), "bits {:#x}: {got} vs {want}", v.to_bits());
            assert!(!got.contains('e'), "bits {:#x}: {got}", v.to_bits());
            assert_eq!(got.parse::<f64>().map(f64::to_bits), Ok(v.to_bits()), "bits {:#x}: {got}", v.to_bits());
            let last = |s: &str| s.bytes().last().map(|b| b - b'0');
            assert_eq!(last(&got).map(|d| d % 2), Some(0), "bits {:#x}: {got} is not the even candidate", v.to_bits());
            assert_eq!(last(&got).map(|d| d + 1), last(&want), "bits {:#x}: {got} vs {want}", v.to_bits());
        }
    }
}
