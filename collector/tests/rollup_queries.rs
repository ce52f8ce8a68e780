//! Long-range PromQL over rollups (issue 3): the same queries answered by the engine on the
//! embedded store (which uses 5-minute rollups for multi-day ranges at coarse steps) and on a
//! raw in-memory copy of the data must agree within the rollup's error.

use tingzhen_collector::promql::{Engine, EngineOptions, QueryResult};
use tingzhen_collector::storage::{MemStorage, Queryable, RollupFunc, SelectHints};
use tingzhen_collector::tsdb::{Tsdb, TsdbOptions};
use tingzhen_core::{Labels, Matcher, Sample, TimeSeries};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// Three days at a 60 s interval, 7 s off the minute so no sample sits on a window edge: a
/// steady counter with a reset each day, and a wandering gauge.
fn data() -> Vec<TimeSeries> {
    let (mut c, mut g) = (Vec::new(), Vec::new());
    let mut counter = 0.0;
    for k in 0..(3 * DAY / MIN) {
        let t = k * MIN + 7_000;
        counter = if t % DAY < MIN { 0.0 } else { counter + 120.0 };
        c.push(Sample::new(t, counter));
        g.push(Sample::new(t, ((k * 37) % 1000) as f64 / 10.0));
    }
    vec![
        TimeSeries::new(Labels::from_pairs([("__name__", "http_requests_total"), ("host", "his-app-01")]), c),
        TimeSeries::new(Labels::from_pairs([("__name__", "disk_used_percent"), ("host", "his-app-01")]), g),
    ]
}

fn points(r: QueryResult) -> Vec<(i64, f64)> {
    let json = r.to_prometheus_json();
    let values = json["result"][0]["values"].as_array().expect("one matrix series").clone();
    values
        .iter()
        .map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, p[1].as_str().unwrap().parse().unwrap()))
        .collect()
}

#[test]
fn long_range_queries_over_rollups_agree_with_raw() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(dir.path(), TsdbOptions { max_future: None, ..TsdbOptions::default() }).unwrap();
    let series = data();
    // Written in time order across both series, as agents would send them.
    for i in (0..series[0].samples.len()).step_by(500) {
        let batch: Vec<TimeSeries> = series
            .iter()
            .map(|s| TimeSeries::new(s.labels.clone(), s.samples[i..(i + 500).min(s.samples.len())].to_vec()))
            .collect();
        tsdb.append(&batch).unwrap();
    }
    tsdb.maintain(3 * DAY + HOUR).unwrap();
    let mut raw = MemStorage::new();
    for s in &series {
        raw.add(s.labels.clone(), s.samples.iter().copied());
    }

    // The engine's selects really are answered from rollups: one sample per 5-minute window.
    let hinted = tsdb
        .select_hinted(
            &[Matcher::equal("__name__", "disk_used_percent")],
            0,
            3 * DAY,
            &SelectHints { step_ms: HOUR, range_ms: HOUR, func: Some(RollupFunc::Max) },
        )
        .unwrap();
    let n = hinted[0].samples.len() as i64;
    assert!((3 * DAY / (5 * MIN) - 2..=3 * DAY / (5 * MIN) + 1).contains(&n), "{n} rollup samples");

    let engine = Engine::new(EngineOptions::default());
    let (start, end, step) = (2 * HOUR, 3 * DAY - HOUR, HOUR);
    let both = |q: &str| {
        let a = points(engine.range(&tsdb, q, start, end, step).unwrap());
        let b = points(engine.range(&raw, q, start, end, step).unwrap());
        assert_eq!(a.len(), b.len(), "{q}: step count");
        a.into_iter().zip(b).map(|((ta, va), (tb, vb))| (ta, va, tb, vb)).collect::<Vec<_>>()
    };
    // Max, sum and the plain selector (last value) are exact when no sample sits on a window edge.
    for q in ["max_over_time(disk_used_percent[1h])", "sum_over_time(disk_used_percent[1h])", "disk_used_percent"] {
        for (ta, va, tb, vb) in both(q) {
            assert_eq!(ta, tb);
            assert!((va - vb).abs() <= 1e-9 * vb.abs().max(1.0), "{q} at {ta}: rollups {va} vs raw {vb}");
        }
    }
    // rate() sees window stamps instead of raw times: within a few percent on a steady counter,
    // resets included.
    for (ta, va, _, vb) in both("rate(http_requests_total[1h])") {
        assert!((va - vb).abs() <= 0.05 * vb.abs().max(1e-9), "rate at {ta}: rollups {va} vs raw {vb}");
    }
}
