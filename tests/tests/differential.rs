//! Differential test: the same synthetic fleet is remote-written to the collector and to a real
//! Prometheus, then a corpus of PromQL queries (instant and range) and the metadata endpoints
//! must answer the same from both. Prometheus is the reference; floats compare with a relative
//! tolerance of 1e-9, series sets and timestamps exactly.

use tingzhen_core::{Labels, Sample, TimeSeries, stale_nan};
use tingzhen_tests::prom::{QResult, compare};
use tingzhen_tests::synth::{Fleet, requests};
use tingzhen_tests::{Collector, PromClient, Prometheus, now_ms};

const STEP_MS: i64 = 15_000;
/// 40 minutes of data: inside Prometheus' 1 h head append window, so it accepts all of it.
const SAMPLES: usize = 160;

/// Series with the awkward cases on top of the fleet: a counter reset, a gap longer than the
/// lookback delta, an explicit staleness marker, negative values.
fn special_series(start: i64) -> Vec<TimeSeries> {
    let t = |i: usize| start + i as i64 * STEP_MS + 1 + (i as i64 * 7) % 23;
    let mut out = Vec::new();
    for (inst, reset_at) in [("a", 60usize), ("b", 100)] {
        let mut v = 0.0;
        let samples = (0..SAMPLES)
            .map(|i| {
                v = if i == reset_at { 3.0 } else { v + 10.0 + (i % 5) as f64 };
                Sample::new(t(i), v)
            })
            .collect();
        let labels = Labels::from_pairs([("__name__", "tz_requests_total"), ("instance", inst), ("code", "200")]);
        out.push(TimeSeries::new(labels, samples));
    }
    // 12.5 minutes without samples in the middle: longer than the 5 m lookback.
    let gappy = (0..SAMPLES).filter(|i| !(70..120).contains(i)).map(|i| Sample::new(t(i), (i as f64).sin())).collect();
    out.push(TimeSeries::new(Labels::from_pairs([("__name__", "tz_gappy"), ("instance", "a")]), gappy));
    // Ends with a staleness marker at sample 80, as Prometheus writes when a target vanishes.
    let mut stale: Vec<Sample> = (0..80).map(|i| Sample::new(t(i), -(i as f64) * 0.5)).collect();
    stale.push(Sample::new(t(80), stale_nan()));
    out.push(TimeSeries::new(Labels::from_pairs([("__name__", "tz_stale"), ("instance", "a")]), stale));
    out
}

/// Queries evaluated both as instant and (where they are instant vectors) as range queries.
const INSTANT_AND_RANGE: &[&str] = &[
    // selectors, every matcher kind
    "node_load1",
    r#"node_load1{host="his-db-001"}"#,
    r#"node_load1{host!="his-db-001"}"#,
    r#"node_cpu_seconds_total{mode=~"user|system", cpu="0"}"#,
    r#"node_cpu_seconds_total{mode!~"idle|iowait|irq|nice|softirq|steal", cpu="1"}"#,
    r#"{__name__=~"node_memory_.*_bytes", campus="pudong"}"#,
    r#"node_filesystem_avail_bytes{mountpoint=~"/.*", fstype!="xfs"}"#,
    r#"node_load1{host=~"his"}"#,
    r#"node_load1{nonexistent=""}"#,
    r#"node_load1{host=~"his-app-000|pacs-.*"}"#,
    r#"node_load1{role=~".+", campus!~"min.*"}"#,
    "node_load1 offset 10m",
    // rate family, including a counter reset
    "rate(node_cpu_seconds_total[1m])",
    "rate(node_network_receive_bytes_total[5m])",
    "irate(node_cpu_seconds_total[2m])",
    "increase(node_network_receive_bytes_total[5m])",
    "rate(tz_requests_total[3m])",
    "increase(tz_requests_total[10m])",
    "irate(tz_requests_total[1m])",
    "rate(node_disk_read_bytes_total[5m] offset 3m)",
    // *_over_time
    "avg_over_time(node_load1[5m])",
    "min_over_time(node_load1[3m])",
    "max_over_time(node_load1[3m])",
    "sum_over_time(node_procs_running[2m])",
    "count_over_time(node_load1[4m])",
    "last_over_time(node_load1[2m])",
    "stddev_over_time(node_load5[10m])",
    "stdvar_over_time(node_load5[10m])",
    "quantile_over_time(0.9, node_load1[10m])",
    "present_over_time(tz_gappy[1m])",
    "count_over_time(tz_gappy[10m])",
    // aggregations
    "sum(node_load1)",
    "sum by (campus) (node_load1)",
    "sum(node_load1) by (role)",
    "avg by (host) (rate(node_cpu_seconds_total[5m]))",
    "avg without (cpu) (rate(node_cpu_seconds_total[5m]))",
    "min by (mode) (rate(node_cpu_seconds_total[5m]))",
    "max without (host, instance, cpu) (rate(node_cpu_seconds_total[5m]))",
    "count by (host) (node_cpu_seconds_total)",
    "count(node_load1)",
    "count without (mode) (node_cpu_seconds_total)",
    "topk(3, node_load1)",
    "bottomk(2, node_load15)",
    "topk by (host) (2, node_filesystem_avail_bytes)",
    "bottomk without (mode) (1, rate(node_cpu_seconds_total[5m]))",
    "sum(rate(tz_requests_total[5m]))",
    // arithmetic
    "node_load1 * 2",
    "2 * node_load1 + 1",
    "-node_load1",
    "node_load1 % 0.3",
    "node_load1 ^ 2",
    "node_load1 / 0",
    "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes * 100",
    "node_load5 - node_load1",
    "node_memory_MemAvailable_bytes / on(host) node_memory_MemTotal_bytes",
    r#"node_filesystem_avail_bytes / ignoring(fstype) node_filesystem_size_bytes"#,
    "sum by (host) (rate(node_cpu_seconds_total[5m])) / count by (host) (node_cpu_seconds_total{mode=\"idle\"})",
    "1 - avg by (host) (rate(node_cpu_seconds_total{mode=\"idle\"}[5m]))",
    // comparisons
    "node_load1 > 2",
    "node_load1 > bool 2",
    "node_load1 <= node_load5",
    "node_load1 == node_load1",
    "node_load1 != 2",
    "sum(node_load1) > 1",
    "2 < node_load15",
    "rate(node_cpu_seconds_total[5m]) >= 0.1",
    // staleness and gaps
    "tz_stale",
    "tz_gappy",
    "tz_stale * 2",
];

/// Instant-only queries: range-vector results and scalars.
const INSTANT_ONLY: &[&str] = &[
    r#"node_load1{host="his-db-001"}[2m]"#,
    r#"node_load1{host="his-db-001"}[1m] offset 5m"#,
    r#"tz_requests_total[5m]"#,
    "tz_stale[10m]",
    "1 + 2",
    "2 * 3 - 1",
    "3 > bool 2",
    "2 ^ 10 / 4",
];

struct Fixture {
    _prom: Prometheus,
    _coll: Collector,
    theirs: PromClient,
    ours: PromClient,
    start: i64,
    end: i64,
}

fn fixture() -> Fixture {
    let prom = Prometheus::start("  scrape_interval: 15s", "");
    let coll = Collector::start_default();
    let token = coll.create_token("differential", "ingest,query", None);

    // Round to the minute, then leave the newest sample a minute in the past.
    let end = (now_ms() / 60_000) * 60_000 - 60_000;
    let start = end - (SAMPLES as i64 - 1) * STEP_MS;
    let fleet =
        Fleet { hosts: 4, cpus: 2, start_ms: start, step_ms: STEP_MS, samples: SAMPLES, jitter_ms: 40, seed: 7 };
    let mut series = fleet.generate();
    series.extend(special_series(start));

    let http = tingzhen_tests::Http::new();
    for req in requests(&series, 100, 20) {
        let body = tingzhen_core::remote_write::encode(&req);
        let r = http.remote_write(&prom.remote_write_url(), None, &body).expect("write to prometheus");
        assert!(r.is_success(), "prometheus refused our write: {} {}", r.status, r.body);
        coll.write_ok(&token, &req);
    }
    let theirs = prom.client();
    let ours = coll.client(&token);
    Fixture { _prom: prom, _coll: coll, theirs, ours, start, end }
}

fn check(failures: &mut Vec<String>, what: &str, ours: &QResult, theirs: &QResult) {
    if let Err(e) = compare(ours, theirs) {
        failures.push(format!("{what}\n    {e}"));
    }
}

#[test]
fn promql_answers_equal_prometheus() {
    let mut f = fixture();
    // Evaluation instants never on the sample grid (see synth::Fleet::jitter_ms): late, middle,
    // and early enough that windows reach before the first sample.
    let times = [f.end - 12_345, f.start + 20 * 60_000 + 7_700, f.start + 3 * 60_000 + 1_100];
    let mut failures = Vec::new();
    let mut non_empty = 0;
    for q in INSTANT_AND_RANGE.iter().chain(INSTANT_ONLY) {
        for t in times {
            let theirs = f.theirs.query(q, t);
            non_empty += usize::from(!theirs.is_empty());
            check(&mut failures, &format!("instant {q} @ {t}"), &f.ours.query(q, t), &theirs);
        }
    }
    // Range queries go to the collector as POST forms, so both request styles are covered.
    f.ours.use_post = true;
    for q in INSTANT_AND_RANGE {
        for (s, e, step) in [(f.start + 5 * 60_000 + 500, f.end, 60_000), (f.start, f.end + 120_000, 37_000)] {
            let theirs = f.theirs.query_range(q, s, e, step);
            check(&mut failures, &format!("range {q} [{s},{e},{step}]"), &f.ours.query_range(q, s, e, step), &theirs);
        }
    }
    assert!(non_empty > INSTANT_AND_RANGE.len(), "the reference returned almost nothing: fixture is broken");
    assert!(failures.is_empty(), "{} of the corpus differ from Prometheus:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn metadata_endpoints_equal_prometheus() {
    let f = fixture();
    let (s, e) = (f.start - 60_000, f.end + 60_000);
    let mut failures = Vec::new();
    for m in [
        vec!["node_load1"],
        vec![r#"{__name__=~"node_load.*", host="his-db-001"}"#],
        vec!["node_load1", r#"node_filesystem_size_bytes{mountpoint="/boot"}"#],
        vec![r#"{__name__=~"tz_.*"}"#],
        vec![r#"node_cpu_seconds_total{mode!="idle", cpu=~"1"}"#],
    ] {
        let (ours, theirs) = (f.ours.series(&m, s, e), f.theirs.series(&m, s, e));
        if ours != theirs || ours.is_empty() {
            failures.push(format!("/series {m:?}: ours {} series, theirs {}", ours.len(), theirs.len()));
        }
    }
    let all = [r#"{__name__=~"node_.+|tz_.+"}"#];
    let (ours, theirs) = (f.ours.labels(&all, s, e), f.theirs.labels(&all, s, e));
    if ours != theirs {
        failures.push(format!("/labels: ours {ours:?} theirs {theirs:?}"));
    }
    let only_gappy = ["tz_gappy"];
    let (ours, theirs) = (f.ours.labels(&only_gappy, s, e), f.theirs.labels(&only_gappy, s, e));
    if ours != theirs {
        failures.push(format!("/labels tz_gappy: ours {ours:?} theirs {theirs:?}"));
    }
    for (name, m) in [
        ("host", all[0]),
        ("__name__", all[0]),
        ("mode", "node_cpu_seconds_total"),
        ("mountpoint", r#"node_filesystem_size_bytes{fstype="ext4"}"#),
        ("instance", "tz_requests_total"),
    ] {
        let (ours, theirs) = (f.ours.label_values(name, &[m], s, e), f.theirs.label_values(name, &[m], s, e));
        if ours != theirs || ours.is_empty() {
            failures.push(format!("/label/{name}/values {m}: ours {ours:?} theirs {theirs:?}"));
        }
    }
    assert!(failures.is_empty(), "metadata endpoints differ from Prometheus:\n{}", failures.join("\n"));
}
