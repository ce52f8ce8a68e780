//! Unit tests of the PromQL engine on `MemStorage`: semantics that the conformance corpus
//! cannot pin down on its own (limits, errors, JSON shape, robustness on odd input).

use super::*;
use crate::storage::MemStorage;
use serde_json::json;
use tingzhen_core::{Labels, Sample, stale_nan};

const M: i64 = 60_000;

fn store() -> MemStorage {
    let mut s = MemStorage::new();
    // A counter every 15s from t=0 to t=10m, +1.5 per scrape, reset at 5m.
    let counter = (0..=40).map(|k| {
        let v = if k < 20 { k as f64 * 1.5 } else { (k - 20) as f64 * 1.5 };
        Sample::new(k * 15_000, v)
    });
    s.add(Labels::from_pairs([("__name__", "c"), ("job", "a")]), counter);
    // A gauge that goes stale at 2m.
    s.add(
        Labels::from_pairs([("__name__", "g"), ("job", "a")]),
        [Sample::new(0, 1.0), Sample::new(M, 2.0), Sample::new(2 * M, stale_nan())],
    );
    s.add(Labels::from_pairs([("__name__", "g"), ("job", "b")]), [Sample::new(0, 5.0), Sample::new(M, 7.0)]);
    s
}

fn engine() -> Engine {
    Engine::new(EngineOptions::default())
}

fn vector(r: QueryResult) -> Vec<(String, f64)> {
    match r {
        QueryResult::Vector(v) => {
            let mut out: Vec<_> = v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        other => panic!("expected a vector, got {other:?}"),
    }
}

#[test]
fn lookback_and_staleness() {
    let (e, s) = (engine(), store());
    assert_eq!(
        vector(e.instant(&s, "g", M + 30_000).unwrap()),
        [(r#"g{job="a"}"#.into(), 2.0), (r#"g{job="b"}"#.into(), 7.0)]
    );
    // The stale marker ends job="a" at once; job="b" lives for the 5m lookback.
    assert_eq!(vector(e.instant(&s, "g", 2 * M).unwrap()), [(r#"g{job="b"}"#.into(), 7.0)]);
    assert_eq!(vector(e.instant(&s, "g", 6 * M).unwrap()), [(r#"g{job="b"}"#.into(), 7.0)]);
    assert!(vector(e.instant(&s, "g", 6 * M + 1).unwrap()).is_empty());
    let short = Engine::new(EngineOptions { lookback_delta_ms: 30_000, ..Default::default() });
    assert!(vector(short.instant(&s, "g", M + 31_000).unwrap()).is_empty());
}

#[test]
fn rate_extrapolates_and_handles_resets() {
    let (e, s) = (engine(), store());
    // Samples at 1m..2m inclusive: 5 samples covering the whole window, 0.1/s.
    let v = vector(e.instant(&s, "rate(c[1m])", 2 * M).unwrap());
    assert_eq!(v.len(), 1);
    assert!((v[0].1 - 0.1).abs() < 1e-12, "{v:?}");
    // Across the reset at 5m the increase keeps counting.
    let v = vector(e.instant(&s, "increase(c[2m])", 6 * M).unwrap());
    // 24→28.5 then reset 0→6: 4.5 + 28.5 - 28.5 + 6 = 10.5 over exactly the window.
    assert!((v[0].1 - 10.5).abs() < 1e-9, "{v:?}");
    assert_eq!(vector(e.instant(&s, "resets(c[10m])", 10 * M).unwrap())[0].1, 1.0);
    // Metric name dropped, one sample is not enough.
    assert_eq!(v[0].0, r#"{job="a"}"#);
    assert!(vector(e.instant(&s, "rate(c[10s])", 2 * M).unwrap()).is_empty());
}

#[test]
fn range_query_shape_and_limits() {
    let (e, s) = (engine(), store());
    let r = e.range(&s, "sum(g)", 0, 3 * M, M).unwrap();
    assert_eq!(
        r.to_prometheus_json(),
        json!({"resultType": "matrix", "result": [
            {"metric": {}, "values": [[0, "6"], [60, "9"], [120, "7"], [180, "7"]]}
        ]})
    );
    assert_eq!(e.range(&s, "g", 0, M, 0).unwrap_err().error_type(), "bad_data");
    assert_eq!(e.range(&s, "g", M, 0, 1).unwrap_err().error_type(), "bad_data");
    let err = e.range(&s, "g", 0, 11_001, 1).unwrap_err();
    assert!(err.to_string().contains("11,000 points"), "{err}");
    assert!(e.range(&s, "g", 0, 11_000, 1).is_ok());
    assert_eq!(e.range(&s, "g[5m]", 0, M, 1000).unwrap_err().error_type(), "bad_data");
    let scalar = e.range(&s, "time()", 0, 2000, 1000).unwrap();
    assert_eq!(scalar.to_prometheus_json()["result"][0]["values"], json!([[0, "0"], [1, "1"], [2, "2"]]));
}

#[test]
fn max_samples_and_timeout() {
    let s = store();
    let tight = Engine::new(EngineOptions { max_samples: 10, ..Default::default() });
    let err = tight.range(&s, "c", 0, 10 * M, 15_000).unwrap_err();
    assert!(matches!(err, QueryError::TooManySamples));
    assert_eq!(err.error_type(), "execution");
    assert_eq!(err.to_string(), "query processing would load too many samples into memory in query execution");
    let no_time = Engine::new(EngineOptions { timeout: Duration::ZERO, ..Default::default() });
    let err = no_time.instant(&s, "sum(rate(c[5m]))", 5 * M).unwrap_err();
    assert_eq!(err.error_type(), "timeout");
}

#[test]
fn prometheus_errors() {
    let (e, s) = (engine(), store());
    let err = e.instant(&s, "sum(", 0).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    let err = e.instant(&s, "rate({__name__=~\"c|g\"}[5m])", 2 * M).unwrap_err();
    assert_eq!(err.to_string(), "vector cannot contain metrics with the same labelset");
    let err = e.instant(&s, "g + on() g", M).unwrap_err();
    assert!(err.to_string().contains("many-to-many matching not allowed"), "{err}");
    let err = e.instant(&s, "label_replace(g, \"x\", \"y\", \"job\", \"(\")", M).unwrap_err();
    assert_eq!(err.error_type(), "execution");
}

#[test]
fn json_rendering() {
    let (e, s) = (engine(), store());
    assert_eq!(
        e.instant(&s, "1/0", 1500).unwrap().to_prometheus_json(),
        json!({"resultType": "scalar", "result": [1.5, "+Inf"]})
    );
    assert_eq!(e.instant(&s, "-1/0", 0).unwrap().to_prometheus_json()["result"][1], "-Inf");
    assert_eq!(e.instant(&s, "0/0", 0).unwrap().to_prometheus_json()["result"][1], "NaN");
    assert_eq!(
        e.instant(&s, "\"hi\"", 2000).unwrap().to_prometheus_json(),
        json!({"resultType": "string", "result": [2, "hi"]})
    );
    assert_eq!(
        e.instant(&s, "g{job=\"b\"} * 0.1", M).unwrap().to_prometheus_json(),
        json!({"resultType": "vector", "result": [{"metric": {"job": "b"}, "value": [60, "0.7000000000000001"]}]})
    );
    assert_eq!(format_float(1e21), "1000000000000000000000");
    assert_eq!(format_float(1e-7), "0.0000001");
    assert_eq!(format_float(-0.0), "-0");
    let m = e.instant(&s, "g[1m]", M).unwrap().to_prometheus_json();
    assert_eq!(m["resultType"], "matrix");
    assert_eq!(m["result"][0]["values"], json!([[0, "1"], [60, "2"]]));
}

#[test]
fn selectors_for_the_series_api() {
    let m = parse_selector(r#"up{job="node",instance=~"a.*"}"#).unwrap();
    assert_eq!(m.len(), 3);
    assert!(m.iter().any(|m| m.name == "__name__" && m.value == "up"));
    assert!(parse_selector("sum(up)").is_err());
    assert!(parse_selector("up{").is_err());
}

#[test]
fn odd_input_never_panics() {
    let (e, s) = (engine(), store());
    let queries = [
        "",
        " ",
        "{}",
        "c[0s]",
        "rate(c[1ms])",
        "c offset 1000000000000s",
        "c @ 1e15",
        "c @ -1e12",
        "topk(1e300, c)",
        "topk(-1e300, c)",
        "topk(NaN, c)",
        "quantile(NaN, c)",
        "histogram_quantile(NaN, c)",
        "round(c, 0)",
        "clamp(c, NaN, NaN)",
        "count_values(\"\", c)",
        "label_join(c, \"\", \"\")",
        "max_over_time(c[1m:0s])",
        "c[1m:1ms]",
        "day_of_week(c * 1e300)",
        "year(vector(-1e20))",
        "sum(c) by (__name__)",
        "-(-(-c))",
        "((((c))))",
        "absent(nonexistent{a=\"b\"})",
        "vector(time()) + c",
        "scalar(c) ^ scalar(g)",
        "c and on() g",
        "predict_linear(c[1m], NaN)",
        "quantile_over_time(2, c[1m])",
        "\u{0}",
        "c{job=~\"\\\\\"}",
        "1 + ",
        "sort_desc(-c)",
        "timestamp(timestamp(c))",
        "c offset 200000000y",
        "c offset -200000000y",
        "c @ 9e15",
        "c @ -9e15",
        "rate(c[200000000y])",
        "c[200000000y:1y]",
        "max_over_time(c[200000000y:1ms] offset 100000000y)",
        "c @ 9e15 offset -100000000y",
    ];
    for q in queries {
        let _ = e.instant(&s, q, 5 * M);
        let _ = e.range(&s, q, 0, 5 * M, 7_000);
        let _ = e.instant(&s, q, i64::MIN);
        let _ = e.range(&s, q, i64::MIN, i64::MAX, i64::MAX);
    }
}

/// Records the hints each select carried, answering from an inner store.
struct HintRecorder {
    inner: MemStorage,
    seen: parking_lot::Mutex<Vec<crate::storage::SelectHints>>,
}

impl crate::storage::Queryable for HintRecorder {
    fn select(
        &self,
        m: &[tingzhen_core::Matcher],
        s: i64,
        e: i64,
    ) -> std::result::Result<Vec<crate::storage::SeriesSamples>, crate::storage::StorageError> {
        self.inner.select(m, s, e)
    }
    fn select_hinted(
        &self,
        m: &[tingzhen_core::Matcher],
        s: i64,
        e: i64,
        h: &crate::storage::SelectHints,
    ) -> std::result::Result<Vec<crate::storage::SeriesSamples>, crate::storage::StorageError> {
        self.seen.lock().push(*h);
        self.inner.select(m, s, e)
    }
    fn series(
        &self,
        m: &[Vec<tingzhen_core::Matcher>],
        s: i64,
        e: i64,
    ) -> std::result::Result<Vec<Labels>, crate::storage::StorageError> {
        self.inner.series(m, s, e)
    }
    fn label_names(
        &self,
        m: &[Vec<tingzhen_core::Matcher>],
        s: i64,
        e: i64,
    ) -> std::result::Result<Vec<String>, crate::storage::StorageError> {
        self.inner.label_names(m, s, e)
    }
    fn label_values(
        &self,
        n: &str,
        m: &[Vec<tingzhen_core::Matcher>],
        s: i64,
        e: i64,
    ) -> std::result::Result<Vec<String>, crate::storage::StorageError> {
        self.inner.label_values(n, m, s, e)
    }
}

#[test]
fn selects_tell_storage_which_rollup_would_serve_them() {
    use crate::storage::RollupFunc;
    let rec = HintRecorder { inner: store(), seen: parking_lot::Mutex::new(Vec::new()) };
    let cases: [(&str, Option<RollupFunc>, i64); 6] = [
        ("max_over_time(g[1h])", Some(RollupFunc::Max), 3_600_000),
        ("rate(c[10m])", Some(RollupFunc::Counter), 600_000),
        ("sum_over_time(g[1h])", Some(RollupFunc::Sum), 3_600_000),
        // Counting or averaging individual samples is wrong on rollups: raw only.
        ("count_over_time(g[1h])", None, 3_600_000),
        ("avg_over_time(g[1h])", None, 3_600_000),
        ("g", Some(RollupFunc::Last), 300_000),
    ];
    for (q, func, range) in cases {
        rec.seen.lock().clear();
        engine().range(&rec, q, 0, 10 * M, 5 * M).unwrap();
        let seen = rec.seen.lock().clone();
        assert_eq!(seen.len(), 1, "{q}");
        assert_eq!((seen[0].func, seen[0].range_ms, seen[0].step_ms), (func, range, 5 * M), "{q}");
    }
    rec.seen.lock().clear();
    engine().range(&rec, "timestamp(g)", 0, 10 * M, 5 * M).unwrap();
    assert_eq!(rec.seen.lock()[0].func, None, "timestamp() needs raw sample times");
}

/// Range functions over many series run on several threads; the answer must equal the
/// sequential one series by series (asked one series at a time, below the parallel cutoff).
#[test]
fn range_functions_over_many_series_equal_each_series_alone() {
    let mut s = MemStorage::new();
    for h in 0..150 {
        let samples = (0..=80).map(|k| Sample::new(k * 15_000, ((k * (h + 1)) % 97) as f64 + k as f64 * 0.5));
        s.add(Labels::from_pairs([("__name__", "c"), ("host", &format!("h{h:03}"))]), samples);
    }
    let e = engine();
    for f in ["rate(c[2m])", "max_over_time(c[3m])", "quantile_over_time(0.9, c[2m])", "deriv(c[5m])"] {
        let all = match e.range(&s, f, 0, 20 * M, 30_000).unwrap() {
            QueryResult::Matrix(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(all.len(), 150, "{f}");
        for series in all.iter().step_by(7) {
            let host = series.labels.get("host").unwrap();
            let one = f.replace("c[", &format!("c{{host=\"{host}\"}}["));
            match e.range(&s, &one, 0, 20 * M, 30_000).unwrap() {
                QueryResult::Matrix(m) => assert_eq!(m, vec![series.clone()], "{one}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
