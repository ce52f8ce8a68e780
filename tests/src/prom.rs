//! The Prometheus HTTP API as a client sees it, for the collector and for real Prometheus
//! alike, plus a canonical form of query results so two servers' answers can be compared.

use crate::http::{Http, Resp};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Unix milliseconds as the API's float seconds.
pub fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// A Prometheus-API endpoint: base URL, optional bearer token, GET or POST-form requests.
#[derive(Clone)]
pub struct PromClient {
    pub base: String,
    pub token: Option<String>,
    pub http: Http,
    /// Send queries as POST forms instead of GET (the API must take both).
    pub use_post: bool,
}

impl PromClient {
    pub fn new(base: impl Into<String>, token: Option<String>, http: Http) -> Self {
        PromClient { base: base.into(), token, http, use_post: false }
    }

    pub fn call(&self, path: &str, params: &[(&str, &str)]) -> Resp {
        let url = format!("{}{path}", self.base);
        let res = if self.use_post {
            self.http.post_form(&url, self.token.as_deref(), params)
        } else {
            self.http.get(&url, self.token.as_deref(), params)
        };
        res.unwrap_or_else(|e| panic!("{url} {params:?}: {e}"))
    }

    /// `data` of a successful answer; panics naming the request otherwise.
    pub fn data(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let r = self.call(path, params);
        let v = r.json();
        assert!(
            r.status == 200 && v["status"] == "success",
            "{}{path} {params:?} -> {} {}",
            self.base,
            r.status,
            r.body
        );
        v["data"].clone()
    }

    pub fn query(&self, q: &str, time_ms: i64) -> QResult {
        let t = secs(time_ms);
        let d = self.data("/api/v1/query", &[("query", q), ("time", &t)]);
        QResult::parse(&d).unwrap_or_else(|e| panic!("{q}: {e}: {d}"))
    }

    pub fn query_range(&self, q: &str, start_ms: i64, end_ms: i64, step_ms: i64) -> QResult {
        let (s, e, st) = (secs(start_ms), secs(end_ms), secs(step_ms));
        let d = self.data("/api/v1/query_range", &[("query", q), ("start", &s), ("end", &e), ("step", &st)]);
        QResult::parse(&d).unwrap_or_else(|err| panic!("{q}: {err}: {d}"))
    }

    fn with_matches<'a>(matches: &'a [&'a str], start: &'a str, end: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut p: Vec<(&str, &str)> = matches.iter().map(|m| ("match[]", *m)).collect();
        p.push(("start", start));
        p.push(("end", end));
        p
    }

    /// `/api/v1/series` as a set of canonical label strings.
    pub fn series(&self, matches: &[&str], start_ms: i64, end_ms: i64) -> BTreeSet<String> {
        let (s, e) = (secs(start_ms), secs(end_ms));
        let d = self.data("/api/v1/series", &Self::with_matches(matches, &s, &e));
        d.as_array().expect("series data is an array").iter().map(labels_key).collect()
    }

    /// `/api/v1/labels`, sorted.
    pub fn labels(&self, matches: &[&str], start_ms: i64, end_ms: i64) -> Vec<String> {
        let (s, e) = (secs(start_ms), secs(end_ms));
        string_list(&self.data("/api/v1/labels", &Self::with_matches(matches, &s, &e)))
    }

    /// `/api/v1/label/{name}/values`, sorted.
    pub fn label_values(&self, name: &str, matches: &[&str], start_ms: i64, end_ms: i64) -> Vec<String> {
        let (s, e) = (secs(start_ms), secs(end_ms));
        string_list(&self.data(&format!("/api/v1/label/{name}/values"), &Self::with_matches(matches, &s, &e)))
    }
}

fn string_list(v: &Value) -> Vec<String> {
    let mut out: Vec<String> =
        v.as_array().expect("data is an array").iter().map(|s| s.as_str().expect("string").to_string()).collect();
    out.sort();
    out
}

/// `{a="1", b="2"}` with names sorted: a label set as a comparable key.
pub fn labels_key(metric: &Value) -> String {
    let m = metric.as_object().expect("metric is an object");
    let sorted: BTreeMap<&String, &str> = m.iter().map(|(k, v)| (k, v.as_str().unwrap_or_default())).collect();
    let parts: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Parses the API's sample value strings, including `NaN` and `±Inf`.
pub fn parse_value(v: &Value) -> f64 {
    match v.as_str().expect("sample value is a string") {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap_or_else(|e| panic!("bad sample value {s:?}: {e}")),
    }
}

fn parse_point(p: &Value) -> (i64, f64) {
    let t = p[0].as_f64().expect("timestamp is a number");
    ((t * 1000.0).round() as i64, parse_value(&p[1]))
}

/// A query answer in canonical form: series keyed by their label sets, order ignored (the API
/// does not promise an order outside `sort()`).
#[derive(Debug, Clone, PartialEq)]
pub enum QResult {
    Vector(BTreeMap<String, (i64, f64)>),
    Matrix(BTreeMap<String, Vec<(i64, f64)>>),
    Scalar(i64, f64),
    Str(i64, String),
}

impl QResult {
    pub fn parse(data: &Value) -> Result<QResult, String> {
        let r = &data["result"];
        match data["resultType"].as_str() {
            Some("vector") => {
                let mut m = BTreeMap::new();
                for s in r.as_array().ok_or("vector result is not an array")? {
                    if m.insert(labels_key(&s["metric"]), parse_point(&s["value"])).is_some() {
                        return Err(format!("duplicate series {} in vector", labels_key(&s["metric"])));
                    }
                }
                Ok(QResult::Vector(m))
            }
            Some("matrix") => {
                let mut m = BTreeMap::new();
                for s in r.as_array().ok_or("matrix result is not an array")? {
                    let pts = s["values"].as_array().ok_or("matrix series without values")?;
                    let pts: Vec<(i64, f64)> = pts.iter().map(parse_point).collect();
                    if m.insert(labels_key(&s["metric"]), pts).is_some() {
                        return Err(format!("duplicate series {} in matrix", labels_key(&s["metric"])));
                    }
                }
                Ok(QResult::Matrix(m))
            }
            Some("scalar") => {
                let (t, v) = parse_point(r);
                Ok(QResult::Scalar(t, v))
            }
            Some("string") => {
                let t = (r[0].as_f64().ok_or("string result without time")? * 1000.0).round() as i64;
                Ok(QResult::Str(t, r[1].as_str().unwrap_or_default().into()))
            }
            other => Err(format!("unknown resultType {other:?}")),
        }
    }

    /// Number of series (1 for a scalar).
    pub fn len(&self) -> usize {
        match self {
            QResult::Vector(m) => m.len(),
            QResult::Matrix(m) => m.len(),
            _ => 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn vector(&self) -> &BTreeMap<String, (i64, f64)> {
        match self {
            QResult::Vector(m) => m,
            other => panic!("expected a vector, got {other:?}"),
        }
    }

    pub fn matrix(&self) -> &BTreeMap<String, Vec<(i64, f64)>> {
        match self {
            QResult::Matrix(m) => m,
            other => panic!("expected a matrix, got {other:?}"),
        }
    }
}

/// Equal within a relative tolerance; NaN equals NaN, infinities must match exactly.
pub fn float_eq(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) || (a - b).abs() <= 1e-12
}

/// Compares two answers; `Err` describes the first few differences, `ours` first.
pub fn compare(ours: &QResult, theirs: &QResult) -> Result<(), String> {
    fn keys<T>(a: &BTreeMap<String, T>, b: &BTreeMap<String, T>) -> Result<(), String> {
        let only_a: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).take(3).collect();
        let only_b: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).take(3).collect();
        if only_a.is_empty() && only_b.is_empty() {
            return Ok(());
        }
        Err(format!(
            "series differ: {} vs {} series; only ours e.g. {only_a:?}; only theirs e.g. {only_b:?}",
            a.len(),
            b.len()
        ))
    }
    match (ours, theirs) {
        (QResult::Vector(a), QResult::Vector(b)) => {
            keys(a, b)?;
            for (k, (ta, va)) in a {
                let (tb, vb) = b[k];
                if *ta != tb || !float_eq(*va, vb) {
                    return Err(format!("{k}: ours ({ta}, {va}) vs theirs ({tb}, {vb})"));
                }
            }
            Ok(())
        }
        (QResult::Matrix(a), QResult::Matrix(b)) => {
            keys(a, b)?;
            for (k, pa) in a {
                let pb = &b[k];
                let same = pa.len() == pb.len() && pa.iter().zip(pb).all(|(x, y)| x.0 == y.0 && float_eq(x.1, y.1));
                if !same {
                    let first = pa.iter().zip(pb).find(|(x, y)| x.0 != y.0 || !float_eq(x.1, y.1));
                    return Err(format!(
                        "{k}: {} points vs {}; first difference ours/theirs {first:?}",
                        pa.len(),
                        pb.len()
                    ));
                }
            }
            Ok(())
        }
        (QResult::Scalar(ta, va), QResult::Scalar(tb, vb)) if ta == tb && float_eq(*va, *vb) => Ok(()),
        (QResult::Str(ta, a), QResult::Str(tb, b)) if ta == tb && a == b => Ok(()),
        (a, b) => Err(format!("ours {a:?} vs theirs {b:?}")),
    }
}
