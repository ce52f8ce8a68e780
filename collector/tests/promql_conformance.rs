//! Differential conformance test: the same synthetic data goes into a real Prometheus (via
//! remote write) and into a `MemStorage`; every query of `tests/promql/queries.txt` runs
//! against both and the answers must agree (result type, label sets, timestamps, values
//! within a relative 1e-9, NaN equal to NaN, error types).
//!
//! Corpus format, one query per line (`#` starts a comment):
//!   `i <query>`  instant query at each of the standard instants
//!   `r <query>`  range query over each of the standard ranges
//!   `b <query>`  both
//!   `i@<offset-seconds> <query>`  one instant query at base+offset
//!   `r[<start>:<end>:<step>] <query>`  one range query, offsets and step in seconds
//! `{B}` in a query is the base time in seconds, `{B-600}` / `{B+60}` offsets from it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;
use tingzhen_collector::promql::{Engine, EngineOptions};
use tingzhen_collector::storage::MemStorage;
use tingzhen_core::testing::free_loopback_port as free_port;
use tingzhen_core::{Labels, Sample, TimeSeries, stale_nan};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const SCRAPE_MS: i64 = 15_000;
/// Number of scrape intervals in the dataset: 50 minutes of data ending at the base time.
const STEPS: i64 = 200;

/// Kills Prometheus when the test ends, however it ends.
struct PrometheusGuard {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Drop for PrometheusGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn start_prometheus() -> PrometheusGuard {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: the PromQL conformance test needs a real Prometheus (apt-get install prometheus)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n  evaluation_interval: 1m\nscrape_configs: []\n")
        .expect("write config");
    let port = free_port();
    let log = dir.path().join("prometheus.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start prometheus");
    let guard = PrometheusGuard { child, url: format!("http://127.0.0.1:{port}"), _dir: dir, log };
    let agent = agent();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if agent.get(format!("{}/-/ready", guard.url)).call().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not become ready; log:\n{}",
            std::fs::read_to_string(&guard.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    guard
}

/// A small deterministic generator so the dataset is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn ts(base: i64, k: i64) -> i64 {
    base - STEPS * SCRAPE_MS + k * SCRAPE_MS
}

/// The synthetic dataset: counters with resets, gauges, histogram buckets, staleness
/// markers, gaps, irregular scrapes and special float values.
fn dataset(base: i64) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    let mut rng = Rng(42);
    let regular = |f: &mut dyn FnMut(i64) -> Option<f64>| -> Vec<Sample> {
        (0..=STEPS).filter_map(|k| f(k).map(|v| Sample::new(ts(base, k), v))).collect()
    };
    for instance in ["i1", "i2", "i3"] {
        for method in ["get", "post"] {
            for code in ["200", "500"] {
                let scale = if code == "200" { 10.0 } else { 0.5 };
                let mut v = (rng.next() * 1000.0).floor();
                let resets: &[i64] = match (instance, method, code) {
                    ("i2", "get", "200") => &[120],
                    ("i3", "post", "500") => &[60, 150],
                    ("i1", "post", "200") => &[199],
                    _ => &[],
                };
                let mut r = Rng(v as u64 + 7);
                let samples = regular(&mut |k| {
                    if resets.contains(&k) {
                        v = (r.next() * 3.0).floor();
                    } else {
                        v += (r.next() * scale * 4.0).floor();
                    }
                    Some(v)
                });
                out.push(TimeSeries::new(
                    labels(&[
                        ("__name__", "http_requests_total"),
                        ("job", "api"),
                        ("instance", instance),
                        ("method", method),
                        ("code", code),
                    ]),
                    samples,
                ));
            }
        }
    }
    for instance in ["i1", "i2"] {
        for cpu in ["0", "1"] {
            for mode in ["idle", "user", "system"] {
                let mut v = rng.next() * 10000.0;
                let rate = match mode {
                    "idle" => 0.8,
                    "user" => 0.15,
                    _ => 0.05,
                };
                let mut r = Rng((v * 1000.0) as u64);
                let samples = regular(&mut |_| {
                    v += 15.0 * rate * (0.5 + r.next());
                    Some(v)
                });
                out.push(TimeSeries::new(
                    labels(&[
                        ("__name__", "node_cpu_seconds_total"),
                        ("job", "node"),
                        ("instance", instance),
                        ("cpu", cpu),
                        ("mode", mode),
                    ]),
                    samples,
                ));
            }
        }
    }
    for (i, instance) in ["i1", "i2", "i3"].iter().enumerate() {
        let mut r = Rng(100 + i as u64);
        let samples = regular(&mut |k| Some(1e9 + (i as f64) * 2.5e8 + (k as f64 * 0.37).sin() * 1e8 + r.next() * 1e6));
        out.push(TimeSeries::new(
            labels(&[("__name__", "memory_used_bytes"), ("job", "node"), ("instance", instance)]),
            samples,
        ));
        let up = regular(&mut |k| Some(if *instance == "i3" && (90..120).contains(&k) { 0.0 } else { 1.0 }));
        out.push(TimeSeries::new(labels(&[("__name__", "up"), ("job", "node"), ("instance", instance)]), up));
        let version = ["1.0", "1.1", "2.0"][i];
        out.push(TimeSeries::new(
            labels(&[("__name__", "build_info"), ("job", "api"), ("instance", instance), ("version", version)]),
            regular(&mut |_| Some(1.0)),
        ));
    }
    for (i, room) in ["a", "b", "c"].iter().enumerate() {
        let mut r = Rng(200 + i as u64);
        let samples =
            regular(&mut |k| Some(((k as f64 / 13.0).cos() * 20.0 + i as f64 * 3.0 - 5.0 + r.next()).round() / 4.0));
        out.push(TimeSeries::new(
            labels(&[("__name__", "temperature_celsius"), ("building", "x"), ("room", room)]),
            samples,
        ));
    }
    // Histogram: cumulative bucket counters plus _sum and _count.
    let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];
    for instance in ["i1", "i2"] {
        let mut r = Rng(if instance == "i1" { 300 } else { 301 });
        let mut counts = [0.0f64; 6];
        let mut sum = 0.0;
        let mut per_k: Vec<([f64; 6], f64)> = Vec::new();
        for k in 0..=STEPS {
            if instance == "i2" && k == 140 {
                counts = [0.0; 6];
                sum = 0.0;
            }
            let n = (r.next() * 20.0).floor() as usize;
            for _ in 0..n {
                let obs = r.next().powi(3) * 1.5;
                sum += obs;
                for (b, bound) in bounds.iter().enumerate() {
                    let ub: f64 = if *bound == "+Inf" { f64::INFINITY } else { bound.parse().unwrap() };
                    if obs <= ub {
                        counts[b] += 1.0;
                    }
                }
            }
            per_k.push((counts, sum));
        }
        for (b, bound) in bounds.iter().enumerate() {
            out.push(TimeSeries::new(
                labels(&[
                    ("__name__", "request_duration_seconds_bucket"),
                    ("job", "api"),
                    ("instance", instance),
                    ("le", bound),
                ]),
                regular(&mut |k| Some(per_k[k as usize].0[b])),
            ));
        }
        out.push(TimeSeries::new(
            labels(&[("__name__", "request_duration_seconds_sum"), ("job", "api"), ("instance", instance)]),
            regular(&mut |k| Some(per_k[k as usize].1)),
        ));
        out.push(TimeSeries::new(
            labels(&[("__name__", "request_duration_seconds_count"), ("job", "api"), ("instance", instance)]),
            regular(&mut |k| Some(per_k[k as usize].0[5])),
        ));
    }
    // Staleness: one series is marked stale for a while, another ends with a marker.
    out.push(TimeSeries::new(
        labels(&[("__name__", "flappy_gauge"), ("instance", "i1")]),
        regular(&mut |k| match k {
            80 => Some(stale_nan()),
            81..=109 => None,
            _ => Some((k % 17) as f64),
        }),
    ));
    out.push(TimeSeries::new(
        labels(&[("__name__", "flappy_gauge"), ("instance", "i2")]),
        regular(&mut |k| Some((k % 5) as f64 * 1.5)),
    ));
    out.push(TimeSeries::new(
        labels(&[("__name__", "ended_series"), ("instance", "i1")]),
        regular(&mut |k| match k {
            0..=100 => Some(k as f64 * 2.0),
            101 => Some(stale_nan()),
            _ => None,
        }),
    ));
    // Gaps: one longer than the lookback, one shorter.
    out.push(TimeSeries::new(
        labels(&[("__name__", "gappy_gauge"), ("instance", "i1")]),
        regular(&mut |k| if (50..=90).contains(&k) || (130..=140).contains(&k) { None } else { Some(k as f64 * 0.5) }),
    ));
    // Irregular scrapes: jittered timestamps, some scrapes missing.
    {
        let mut r = Rng(400);
        let mut v = 0.0;
        let samples: Vec<Sample> = (0..=STEPS)
            .filter_map(|k| {
                let jitter = ((r.next() - 0.5) * 6000.0) as i64;
                v += (r.next() * 50.0).floor();
                (r.next() > 0.15 && k < STEPS).then(|| Sample::new(ts(base, k) + jitter, v))
            })
            .collect();
        out.push(TimeSeries::new(labels(&[("__name__", "irregular_counter"), ("instance", "i1")]), samples));
    }
    // Two series that differ only in their name, for duplicate-labelset errors.
    out.push(TimeSeries::new(labels(&[("__name__", "dup_a"), ("x", "1")]), regular(&mut |k| Some(k as f64))));
    out.push(TimeSeries::new(labels(&[("__name__", "dup_b"), ("x", "1")]), regular(&mut |k| Some(2.0 * k as f64))));
    out.push(TimeSeries::new(
        labels(&[("__name__", "dup_c"), ("x", "1")]),
        regular(&mut |k| if k < 100 { Some(k as f64) } else { None }),
    ));
    out.push(TimeSeries::new(
        labels(&[("__name__", "dup_d"), ("x", "1")]),
        regular(&mut |k| if k > 150 { Some(k as f64) } else { None }),
    ));
    // Special float values.
    type Gen = fn(i64) -> f64;
    let specials: [(&str, Gen); 4] = [
        ("nan", |k| if k % 3 == 0 { f64::NAN } else { k as f64 }),
        ("inf", |k| if k % 4 == 0 { f64::INFINITY } else { k as f64 }),
        ("neginf", |k| if k % 5 == 0 { f64::NEG_INFINITY } else { -(k as f64) }),
        ("mixed", |k| [0.0, -0.0, 1e-300, 1e300, -2.5, 0.1, 1.0 / 3.0][(k % 7) as usize]),
    ];
    for (kind, f) in specials {
        out.push(TimeSeries::new(
            labels(&[("__name__", "special_values"), ("kind", kind)]),
            regular(&mut |k| Some(f(k))),
        ));
    }
    out.push(TimeSeries::new(
        labels(&[("__name__", "label_test"), ("path", "/api/v1/users"), ("host", "web-01.example.com")]),
        regular(&mut |k| Some(k as f64)),
    ));
    out.push(TimeSeries::new(
        labels(&[("__name__", "label_test"), ("path", "/health"), ("host", "db-02.example.org")]),
        regular(&mut |k| Some(100.0 - k as f64)),
    ));
    // Sparse counter: three samples, far apart.
    out.push(TimeSeries::new(
        labels(&[("__name__", "sparse_counter"), ("instance", "i1")]),
        [20, 25, 160].iter().map(|&k| Sample::new(ts(base, k), (k * 3) as f64)).collect(),
    ));
    out.push(TimeSeries::new(labels(&[("__name__", "zero_counter"), ("instance", "i1")]), regular(&mut |_| Some(0.0))));
    out.push(TimeSeries::new(
        labels(&[("__name__", "late_start"), ("instance", "i1")]),
        regular(&mut |k| (k >= 150).then_some(k as f64 * 10.0)),
    ));
    // Timestamps off the 15s grid by a few milliseconds.
    out.push(TimeSeries::new(
        labels(&[("__name__", "offgrid_gauge"), ("instance", "i1")]),
        (0..STEPS).map(|k| Sample::new(ts(base, k) + 123 + (k % 3) * 7, (k as f64).sqrt())).collect(),
    ));
    out
}

fn remote_write(url: &str, series: &[TimeSeries]) {
    let body = tingzhen_core::remote_write::encode(series);
    let mut resp = agent()
        .post(format!("{url}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .send(&body[..])
        .expect("remote write to Prometheus");
    let status = resp.status();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    assert!(status.is_success(), "Prometheus refused the remote write: {status} {text}");
}

#[derive(Debug, Clone)]
enum Kind {
    Instant(i64),
    Range(i64, i64, i64),
}

#[derive(Debug, Clone)]
struct Case {
    line: usize,
    query: String,
    kind: Kind,
}

/// Standard evaluation points, in milliseconds relative to the base time.
const INSTANTS: [i64; 5] = [-2_990_000, -1_800_000, -1_213_500, 0, 200_000];
const RANGES: [(i64, i64, i64); 2] = [(-3_300_000, 420_000, 60_000), (-1_500_500, -300_000, 17_000)];

fn substitute(q: &str, base_ms: i64) -> String {
    let re = regex::Regex::new(r"\{B([+-]\d+)?\}").unwrap();
    re.replace_all(q, |c: &regex::Captures<'_>| {
        let off: i64 = c.get(1).map_or(0, |m| m.as_str().parse().unwrap());
        (base_ms / 1000 + off).to_string()
    })
    .into_owned()
}

fn parse_corpus(text: &str, base_ms: i64) -> (Vec<Case>, usize) {
    let mut cases = Vec::new();
    let mut lines = 0;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        lines += 1;
        let (marker, query) = line.split_once(' ').unwrap_or_else(|| panic!("line {}: no query", n + 1));
        let query = substitute(query.trim(), base_ms);
        let mut push = |kind| cases.push(Case { line: n + 1, query: query.clone(), kind });
        match marker {
            "i" => INSTANTS.iter().for_each(|&t| push(Kind::Instant(base_ms + t))),
            "r" => RANGES.iter().for_each(|&(s, e, st)| push(Kind::Range(base_ms + s, base_ms + e, st))),
            "b" => {
                INSTANTS.iter().for_each(|&t| push(Kind::Instant(base_ms + t)));
                RANGES.iter().for_each(|&(s, e, st)| push(Kind::Range(base_ms + s, base_ms + e, st)));
            }
            m if m.starts_with("i@") => {
                let off: f64 = m[2..].parse().unwrap_or_else(|_| panic!("line {}: bad offset", n + 1));
                push(Kind::Instant(base_ms + (off * 1000.0) as i64));
            }
            m if m.starts_with("r[") && m.ends_with(']') => {
                let parts: Vec<f64> = m[2..m.len() - 1]
                    .split(':')
                    .map(|p| p.parse().unwrap_or_else(|_| panic!("line {}: bad range", n + 1)))
                    .collect();
                assert_eq!(parts.len(), 3, "line {}: range needs start:end:step", n + 1);
                push(Kind::Range(
                    base_ms + (parts[0] * 1000.0) as i64,
                    base_ms + (parts[1] * 1000.0) as i64,
                    (parts[2] * 1000.0) as i64,
                ));
            }
            m => panic!("line {}: unknown marker {m:?}", n + 1),
        }
    }
    (cases, lines)
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// What one side answered: the `data` object, or the error type and message.
#[derive(Debug)]
enum Answer {
    Data(Json),
    Error(String, String),
}

fn ask_prometheus(agent: &ureq::Agent, url: &str, case: &Case) -> Answer {
    let req = match case.kind {
        Kind::Instant(t) => agent.get(format!("{url}/api/v1/query")).query("query", &case.query).query("time", secs(t)),
        Kind::Range(s, e, st) => agent
            .get(format!("{url}/api/v1/query_range"))
            .query("query", &case.query)
            .query("start", secs(s))
            .query("end", secs(e))
            .query("step", secs(st)),
    };
    let mut resp = req.call().expect("query Prometheus");
    let body: Json = serde_json::from_str(&resp.body_mut().read_to_string().expect("read body")).expect("JSON");
    if body["status"] == "success" {
        Answer::Data(body["data"].clone())
    } else {
        Answer::Error(
            body["errorType"].as_str().unwrap_or("").to_string(),
            body["error"].as_str().unwrap_or("").to_string(),
        )
    }
}

fn ask_engine(engine: &Engine, store: &MemStorage, case: &Case) -> Answer {
    let r = match case.kind {
        Kind::Instant(t) => engine.instant(store, &case.query, t),
        Kind::Range(s, e, st) => engine.range(store, &case.query, s, e, st),
    };
    match r {
        Ok(r) => Answer::Data(r.to_prometheus_json()),
        Err(e) => Answer::Error(e.error_type().to_string(), e.to_string()),
    }
}

fn parse_value(v: &Json) -> f64 {
    match v.as_str().unwrap_or("") {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap_or(f64::NAN),
    }
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    let d = (a - b).abs();
    d <= 1e-9 * a.abs().max(b.abs()) || d <= 1e-12
}

fn point(p: &Json) -> (f64, f64) {
    (p[0].as_f64().unwrap_or(f64::NAN), parse_value(&p[1]))
}

fn points_match(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x.0 - y.0).abs() < 1e-6 && close(x.1, y.1))
}

fn metric_key(m: &Json) -> String {
    let map: BTreeMap<String, String> = m
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default();
    let inner: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Label set → points, for vectors and matrices alike.
fn by_series(data: &Json) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out = BTreeMap::new();
    for s in data["result"].as_array().into_iter().flatten() {
        let pts = match (s.get("value"), s.get("values")) {
            (Some(v), _) => vec![point(v)],
            (_, Some(vs)) => vs.as_array().into_iter().flatten().map(point).collect(),
            _ => Vec::new(),
        };
        out.insert(metric_key(&s["metric"]), pts);
    }
    out
}

/// `None` when the answers agree, else a short description of the difference.
fn compare(query: &str, want: &Answer, got: &Answer) -> Option<String> {
    match (want, got) {
        (Answer::Error(wt, _), Answer::Error(gt, _)) if wt == gt => None,
        (Answer::Error(wt, wm), Answer::Error(gt, gm)) => {
            Some(format!("error types differ: prometheus {wt} ({wm}), engine {gt} ({gm})"))
        }
        (Answer::Error(wt, wm), Answer::Data(d)) => {
            Some(format!("prometheus failed with {wt}: {wm}\n      engine answered {}", truncate(&d.to_string())))
        }
        (Answer::Data(d), Answer::Error(gt, gm)) => {
            Some(format!("engine failed with {gt}: {gm}\n      prometheus answered {}", truncate(&d.to_string())))
        }
        (Answer::Data(w), Answer::Data(g)) => {
            if w["resultType"] != g["resultType"] {
                return Some(format!(
                    "result types differ: prometheus {}, engine {}",
                    w["resultType"], g["resultType"]
                ));
            }
            match w["resultType"].as_str() {
                Some("scalar") | Some("string") => {
                    let same = if w["resultType"] == "scalar" {
                        points_match(&[point(&w["result"])], &[point(&g["result"])])
                    } else {
                        w["result"] == g["result"]
                    };
                    (!same).then(|| format!("prometheus {}\n      engine     {}", w["result"], g["result"]))
                }
                _ => {
                    let (ws, gs) = (by_series(w), by_series(g));
                    let mut diff = String::new();
                    for (k, wp) in &ws {
                        match gs.get(k) {
                            None => writeln!(diff, "      missing  {k} {}", fmt_points(wp)).unwrap(),
                            Some(gp) if !points_match(wp, gp) => writeln!(
                                diff,
                                "      differs  {k}\n        prometheus {}\n        engine     {}",
                                fmt_points(wp),
                                fmt_points(gp)
                            )
                            .unwrap(),
                            _ => {}
                        }
                    }
                    for (k, gp) in &gs {
                        if !ws.contains_key(k) {
                            writeln!(diff, "      extra    {k} {}", fmt_points(gp)).unwrap();
                        }
                    }
                    let (wn, gn) =
                        (w["result"].as_array().map_or(0, Vec::len), g["result"].as_array().map_or(0, Vec::len));
                    if wn != gn {
                        writeln!(diff, "      series count: prometheus {wn}, engine {gn}").unwrap();
                    }
                    // sort() and sort_desc() promise an order; compare the value sequence.
                    let q = query.trim_start();
                    if diff.is_empty() && (q.starts_with("sort(") || q.starts_with("sort_desc(")) {
                        let seq = |d: &Json| -> Vec<f64> {
                            d["result"].as_array().into_iter().flatten().map(|s| parse_value(&s["value"][1])).collect()
                        };
                        let (a, b) = (seq(w), seq(g));
                        if !(a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| close(*x, *y))) {
                            writeln!(diff, "      order differs: prometheus {a:?}, engine {b:?}").unwrap();
                        }
                    }
                    (!diff.is_empty()).then_some(diff.trim_start().to_string())
                }
            }
        }
    }
}

fn fmt_points(p: &[(f64, f64)]) -> String {
    truncate(&format!("{p:?}"))
}

fn truncate(s: &str) -> String {
    if s.len() > 400 {
        format!("{}…", &s[..s.char_indices().take(400).last().map_or(0, |(i, _)| i)])
    } else {
        s.to_string()
    }
}

#[test]
fn promql_answers_like_prometheus() {
    let prom = start_prometheus();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let base = now_ms / 60_000 * 60_000;
    let mut data = dataset(base);
    // Prometheus selects series in creation order, which decides ties in topk/bottomk; create
    // them in label order, which is the order our storage returns.
    data.sort_by(|a, b| a.labels.cmp(&b.labels));
    remote_write(&prom.url, &data);
    // Load exactly what Prometheus received (the wire format normalises e.g. -0 to 0).
    let wire = tingzhen_core::remote_write::encode(&data);
    let data = tingzhen_core::remote_write::decode(&wire, usize::MAX).expect("decode our own payload");
    let mut store = MemStorage::new();
    for s in &data {
        store.add(s.labels.clone(), s.samples.iter().copied());
    }

    let corpus_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql/queries.txt");
    let text = std::fs::read_to_string(&corpus_path).expect("read the query corpus");
    let (cases, query_lines) = parse_corpus(&text, base);
    let engine = Engine::new(EngineOptions::default());
    let agent = agent();

    let mut failed_lines = BTreeMap::new();
    for case in &cases {
        let want = ask_prometheus(&agent, &prom.url, case);
        let got = ask_engine(&engine, &store, case);
        if let Some(d) = compare(&case.query, &want, &got) {
            let when = match case.kind {
                Kind::Instant(t) => format!("instant at base{:+}s", (t - base) as f64 / 1000.0),
                Kind::Range(s, e, st) => format!(
                    "range base{:+}s..base{:+}s step {}s",
                    (s - base) as f64 / 1000.0,
                    (e - base) as f64 / 1000.0,
                    st as f64 / 1000.0
                ),
            };
            failed_lines
                .entry(case.line)
                .or_insert_with(Vec::new)
                .push(format!("  line {} `{}` ({when}):\n    {d}", case.line, case.query));
        }
    }
    let matched = query_lines - failed_lines.len();
    eprintln!(
        "PromQL conformance: {matched}/{query_lines} corpus queries match Prometheus ({} evaluations)",
        cases.len()
    );
    if !failed_lines.is_empty() {
        let mut report = String::new();
        for msgs in failed_lines.values() {
            for m in msgs.iter().take(2) {
                writeln!(report, "{m}").unwrap();
            }
            if msgs.len() > 2 {
                writeln!(report, "    … and {} more evaluations of this query", msgs.len() - 2).unwrap();
            }
        }
        panic!("{} of {query_lines} corpus queries differ from Prometheus:\n{report}", failed_lines.len());
    }
}
