//! Query latency and memory per active series vs VictoriaMetrics (issue 3): the same data in
//! both — a 24 h fleet at 15 s (node_exporter shapes plus a request-latency histogram) and a
//! 30-day archive at 60 s ending before it — then typical dashboard queries, alternating
//! between the peers, timed from the client. VictoriaMetrics runs with `-search.disableCache`
//! so both compute every answer (its result cache would otherwise answer repeats from memory;
//! tingzhen has no result cache yet). Memory per series = RSS growth from the empty process to
//! the loaded one, divided by the series loaded.

use crate::Flags;
use crate::loadgen::{self, Body};
use crate::report::{ratio, version};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tingzhen_collector::promql::{Engine, EngineOptions};
use tingzhen_collector::tsdb::{Tsdb, TsdbOptions};
use tingzhen_core::{Labels, Sample, TimeSeries};
use tingzhen_tests::procstat;
use tingzhen_tests::synth::{Fleet, Rng, requests, sample_count};
use tingzhen_tests::{Collector, CollectorOpts, PromClient, VictoriaMetrics, now_ms};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

struct Query {
    name: &'static str,
    expr: &'static str,
    range_ms: i64,
    step_ms: i64,
}

/// What a Grafana host dashboard and the big screen ask, at Grafana's usual resolution.
const QUERIES: &[Query] = &[
    Query {
        name: "CPU busy by host (rate + sum by), 24 h",
        expr: r#"sum by (host) (rate(node_cpu_seconds_total{mode!="idle",dc=""}[5m]))"#,
        range_ms: DAY,
        step_ms: MIN,
    },
    Query {
        name: "top 5 interfaces by receive rate, 24 h",
        expr: r#"topk(5, rate(node_network_receive_bytes_total{dc=""}[5m]))"#,
        range_ms: DAY,
        step_ms: MIN,
    },
    Query {
        name: "p95 request latency (histogram_quantile), 24 h",
        expr: "histogram_quantile(0.95, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))",
        range_ms: DAY,
        step_ms: MIN,
    },
    Query {
        name: "memory used % by host, 24 h",
        expr: r#"100 * (1 - node_memory_MemAvailable_bytes{dc=""} / node_memory_MemTotal_bytes{dc=""})"#,
        range_ms: DAY,
        step_ms: MIN,
    },
    Query { name: "load1 now, all hosts (instant)", expr: r#"node_load1{dc=""}"#, range_ms: 0, step_ms: 0 },
    Query {
        name: "30-day max memory available, hourly (rollups)",
        expr: r#"max_over_time(node_memory_MemAvailable_bytes{dc="archive"}[1h])"#,
        range_ms: 30 * DAY,
        step_ms: HOUR,
    },
    Query {
        name: "30-day CPU busy by host, hourly (rollups)",
        expr: r#"sum by (host) (rate(node_cpu_seconds_total{mode!="idle",dc="archive"}[1h]))"#,
        range_ms: 30 * DAY,
        step_ms: HOUR,
    },
];

/// Idle time between the last timed query and the "loaded" RSS reading.
const AFTER_QUERIES_SETTLE: Duration = Duration::from_secs(5);

const HISTOGRAM_LE: [&str; 11] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"];
const HANDLERS: [&str; 3] = ["/api/emr", "/api/lis", "/api/pacs"];

/// Cumulative request-latency buckets per host and handler: counters whose increments follow a
/// skewed latency distribution, so quantiles are non-trivial.
fn histograms(hosts: usize, start_ms: i64, step_ms: i64, samples: usize) -> Vec<TimeSeries> {
    let mut rng = Rng::new(7);
    let mut out = Vec::new();
    for h in 0..hosts {
        for handler in HANDLERS {
            let mut counts = [0f64; HISTOGRAM_LE.len()];
            let mut series: Vec<Vec<Sample>> = vec![Vec::with_capacity(samples); HISTOGRAM_LE.len()];
            for i in 0..samples {
                let requests = 20 + rng.below(40);
                for _ in 0..requests {
                    // Latency ~ exponential-ish around 80 ms with a slow tail.
                    let lat = -0.08 * (1.0 - rng.f64()).ln() * if rng.below(50) == 0 { 20.0 } else { 1.0 };
                    for (b, le) in HISTOGRAM_LE.iter().enumerate() {
                        if *le == "+Inf" || lat <= le.parse::<f64>().unwrap() {
                            counts[b] += 1.0;
                        }
                    }
                }
                let t = start_ms + i as i64 * step_ms;
                for b in 0..HISTOGRAM_LE.len() {
                    series[b].push(Sample::new(t, counts[b]));
                }
            }
            for (b, samples) in series.into_iter().enumerate() {
                let labels = Labels::from_pairs([
                    ("__name__", "http_request_duration_seconds_bucket"),
                    ("job", "his-api"),
                    ("host", &format!("his-app-{h:03}")),
                    ("handler", handler),
                    ("le", HISTOGRAM_LE[b]),
                ]);
                out.push(TimeSeries::new(labels, samples));
            }
        }
    }
    out
}

/// Backfill as a catching-up sender would: `per_req` samples a series a request, in time order.
/// Requests must stay within tingzhen's out-of-order window (1 h) of each other, so the span a
/// request covers times the senders in flight is kept well under it.
fn bodies(series: &[TimeSeries], per_req: usize) -> Vec<Body> {
    requests(series, 2000, per_req)
        .iter()
        .map(|r| Body { bytes: tingzhen_core::remote_write::encode(r), samples: sample_count(r) })
        .collect()
}

/// The dataset: `hosts` hosts × 24 h at 15 s, their histograms, and an archive of `archive_hosts`
/// hosts × 30 days at 60 s (label `dc="archive"`) that ends an hour before the 24 h part starts,
/// so both stores take it in time order.
struct Dataset {
    recent: Vec<TimeSeries>,
    archive: Vec<TimeSeries>,
    archive_end_ms: i64,
    end_ms: i64,
}

impl Dataset {
    fn build(hosts: usize, archive_hosts: usize) -> Dataset {
        let end_ms = now_ms() - MIN;
        let step = 15_000;
        let samples = (DAY / step) as usize;
        let start_ms = end_ms - DAY;
        let fleet = Fleet { hosts, cpus: 2, start_ms, step_ms: step, samples, jitter_ms: 0, seed: 42 };
        let mut recent = fleet.generate();
        recent.extend(histograms(hosts, start_ms, step, samples));
        let archive_end_ms = start_ms - HOUR;
        let archive_samples = (30 * DAY / MIN) as usize;
        let archive_fleet = Fleet {
            hosts: archive_hosts,
            cpus: 2,
            start_ms: archive_end_ms - 30 * DAY,
            step_ms: MIN,
            samples: archive_samples,
            jitter_ms: 0,
            seed: 43,
        };
        let mut archive = archive_fleet.generate();
        for s in &mut archive {
            s.labels.set("dc", "archive");
        }
        Dataset { recent, archive, archive_end_ms, end_ms }
    }
}

fn load(url: &str, token: Option<&str>, set: &[Body], concurrency: usize, what: &str) {
    let r = loadgen::run(url, token, set, concurrency);
    assert_eq!(r.failed_requests, 0, "{what}: {} requests failed: {:?}", r.failed_requests, r.errors);
    eprintln!("  {what}: {} samples at {:.0} samples/s", r.samples, r.rate());
}

/// Newest rollup window end in a tingzhen data dir (0 when none is built yet). Rollup blocks
/// live under `tsdb/rollups/<resolution>ms/<block>/meta.json`.
fn rollup_watermark(data: &Path) -> i64 {
    let Ok(resolutions) = std::fs::read_dir(data.join("tsdb").join("rollups")) else { return 0 };
    resolutions
        .flatten()
        .filter_map(|r| std::fs::read_dir(r.path()).ok())
        .flat_map(|blocks| blocks.flatten())
        .filter_map(|e| std::fs::read(e.path().join("meta.json")).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter_map(|m| m["max_t"].as_i64())
        .max()
        .unwrap_or(0)
}

fn time_query(client: &PromClient, q: &Query, end_ms: i64) -> (Duration, usize) {
    let t = Instant::now();
    let r = if q.range_ms == 0 {
        client.query(q.expr, end_ms)
    } else {
        client.query_range(q.expr, end_ms - q.range_ms, end_ms, q.step_ms)
    };
    (t.elapsed(), r.len())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rss(pid: u32) -> u64 {
    procstat::usage(pid).map(|u| u.rss).unwrap_or(0)
}

/// The dataset's times, saved beside a kept in-process data dir so a reopened dir is queried at
/// the times it was loaded for.
const INPROC_TIMES: &str = "bench-times.json";

/// Loads the dataset into an embedded engine in `dir` the way the server would (requests of 20
/// samples a series, maintenance between them, then until the archive is rolled up).
fn inproc_load(dir: &Path, hosts: usize, archive_hosts: usize) -> (Tsdb, i64) {
    let d = Dataset::build(hosts, archive_hosts);
    let db = Tsdb::open(dir, inproc_options()).expect("open tsdb");
    for (what, set) in [("archive", &d.archive), ("24 h", &d.recent)] {
        let t = Instant::now();
        for (i, req) in requests(set, 2000, 20).iter().enumerate() {
            db.append(req).unwrap_or_else(|e| panic!("{what}: append refused: {e}"));
            // The server maintains every 30 s; at the load rate that is every few hundred requests.
            if i % 500 == 499 {
                db.maintain(now_ms()).expect("maintain");
            }
        }
        eprintln!("  {what}: {} samples in {:.1} s", sample_count(set), t.elapsed().as_secs_f64());
    }
    db.maintain(now_ms()).expect("maintain");
    let times = serde_json::json!({ "end_ms": d.end_ms, "hosts": hosts, "archive_hosts": archive_hosts });
    std::fs::write(dir.join(INPROC_TIMES), times.to_string()).expect("write dataset times");
    (db, d.end_ms)
}

fn inproc_options() -> TsdbOptions {
    // As the bench's server: `retention = "40d"`, every other option at its default.
    TsdbOptions { retention: Duration::from_secs(40 * 24 * 3600), ..TsdbOptions::default() }
}

/// Every query once untimed, then `reps` times; median ms each. Not inlined, so
/// `valgrind --tool=callgrind --toggle-collect='*inproc_queries*'` counts only the queries.
#[inline(never)]
fn inproc_queries(engine: &Engine, db: &Tsdb, end_ms: i64, reps: usize, only: &str) -> Vec<(usize, f64, u64)> {
    let mut out = Vec::new();
    for (qi, q) in QUERIES.iter().enumerate() {
        if !q.name.contains(only) {
            continue;
        }
        let run = || {
            let r = if q.range_ms == 0 {
                engine.instant(db, q.expr, end_ms)
            } else {
                engine.range(db, q.expr, end_ms - q.range_ms, end_ms, q.step_ms)
            };
            // The HTTP handler renders the body too; it is part of the answer's cost.
            r.unwrap_or_else(|e| panic!("{}: {e}", q.name)).to_success_body()
        };
        // FNV-1a of the body: a change that alters any answer shows in the printed digest.
        let digest = run().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        let mut times: Vec<Duration> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(run());
                t.elapsed()
            })
            .collect();
        times.sort();
        out.push((qi, times[times.len() / 2].as_secs_f64() * 1e3, digest));
    }
    out
}

/// `--only inproc [--data DIR] [--reps N] [--query TEXT]`: the same dataset and queries on the embedded engine
/// in this process (no HTTP, no peer), for profiling and A/B of query-path changes (add
/// `--out -` to print without appending to the benchmarks file). `--data DIR` keeps the loaded engine in DIR and
/// reopens it on later runs (loading takes minutes; reopening seconds). A digest of each answer
/// is printed so a change that alters answers shows. `--query TEXT` runs only the queries whose
/// name contains TEXT, to profile one.
fn inproc(flags: &Flags) -> String {
    let reps = flags.get("reps", 9usize).max(1);
    let tmp;
    let dir = match flags.str("data") {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir().expect("temp dir");
            tmp.path().to_path_buf()
        }
    };
    let saved = std::fs::read(dir.join(INPROC_TIMES)).ok();
    let (db, end_ms) = match saved.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()) {
        Some(v) => {
            let t = Instant::now();
            let db = Tsdb::open(&dir, inproc_options()).expect("reopen tsdb");
            eprintln!("reopened {} in {:.1} s", dir.display(), t.elapsed().as_secs_f64());
            (db, v["end_ms"].as_i64().expect("end_ms in dataset times"))
        }
        None => inproc_load(&dir, flags.get("hosts", 10usize), flags.get("archive-hosts", 2usize)),
    };
    let engine = Engine::new(EngineOptions::default());
    let only = flags.str("query").unwrap_or("");
    let rows: Vec<String> = inproc_queries(&engine, &db, end_ms, reps, only)
        .into_iter()
        .map(|(i, ms, digest)| format!("| {} | {ms:.2} | {digest:016x} |", QUERIES[i].name))
        .collect();
    format!(
        "### Query latency in process (embedded engine, no HTTP)\n\n| query | ms (median of {reps}) | answer digest |\n\
         |---|---|---|\n{}\n",
        rows.join("\n")
    )
}

pub fn run(flags: &Flags) -> String {
    if flags.str("only") == Some("inproc") {
        return inproc(flags);
    }
    let hosts = flags.get("hosts", 10usize);
    let archive_hosts = flags.get("archive-hosts", 2usize);
    let reps = flags.get("reps", 9usize).max(1);
    let d = Dataset::build(hosts, archive_hosts);
    let (recent_bodies, archive_bodies) = (bodies(&d.recent, 20), bodies(&d.archive, 20));
    let series = d.recent.len() + d.archive.len();
    let samples = sample_count(&d.recent) + sample_count(&d.archive);
    eprintln!("query: {} recent + {} archive series, {samples} samples", d.recent.len(), d.archive.len());

    let vm = VictoriaMetrics::start_with_args(&["-search.disableCache", "-retentionPeriod=3"]);
    std::thread::sleep(Duration::from_secs(1));
    let vm_rss0 = rss(vm.pid());
    eprintln!("VictoriaMetrics:");
    load(&vm.remote_write_url(), None, &archive_bodies, 1, "archive");
    load(&vm.remote_write_url(), None, &recent_bodies, 4, "24 h");
    vm.force_flush();

    let mut coll = Collector::start_with(CollectorOpts {
        // Appended right after the harness's own `[storage] data_dir`, so it lands in that table.
        extra_toml: "retention = \"40d\"\n".into(),
        ..CollectorOpts::default()
    });
    let token = coll.create_token("bench", "ingest,query", None);
    std::thread::sleep(Duration::from_secs(1));
    let tz_pid = coll.proc_mut().pid();
    let tz_rss0 = rss(tz_pid);
    eprintln!("tingzhen:");
    load(&coll.url("/api/v1/write"), Some(&token), &archive_bodies, 1, "archive");
    load(&coll.url("/api/v1/write"), Some(&token), &recent_bodies, 4, "24 h");

    // Background maintenance (every 30 s) seals the archive and rolls it up; wait for it, as
    // a real 30-day screen would find it.
    let want = d.archive_end_ms - 10 * MIN;
    let deadline = Instant::now() + Duration::from_secs(600);
    while rollup_watermark(&coll.data) < want {
        assert!(Instant::now() < deadline, "tingzhen built no rollups for the archive within 10 minutes");
        std::thread::sleep(Duration::from_secs(2));
    }
    // Both settle (VM merges parts after its flush) before anything is timed.
    std::thread::sleep(Duration::from_secs(10));

    // `--hold SECS`: keep both loaded peers up before timing, to attach a profiler by hand.
    let hold = flags.get("hold", 0u64);
    if hold > 0 {
        eprintln!(
            "holding {hold} s: tingzhen {} (pid {tz_pid}, token {token}), VictoriaMetrics {}",
            coll.base_url(),
            vm.base_url()
        );
        std::thread::sleep(Duration::from_secs(hold));
    }
    // Loaded and settled, before any query: what the stored series alone cost.
    let (vm_rss_settled, tz_rss_settled) = (rss(vm.pid()), rss(tz_pid));
    let (vm_client, tz_client) = (vm.client(), coll.client(&token));
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for q in QUERIES {
        let (mut vm_t, mut tz_t) = (Vec::new(), Vec::new());
        let (mut vm_n, mut tz_n) = (0, 0);
        // One untimed warm-up each (first-touch page faults), then alternate.
        time_query(&vm_client, q, d.end_ms);
        time_query(&tz_client, q, d.end_ms);
        for _ in 0..reps {
            let (t, n) = time_query(&vm_client, q, d.end_ms);
            vm_t.push(t);
            vm_n = n;
            let (t, n) = time_query(&tz_client, q, d.end_ms);
            tz_t.push(t);
            tz_n = n;
        }
        let (vm_m, tz_m) = (median(vm_t), median(tz_t));
        ratios.push(tz_m.as_secs_f64() / vm_m.as_secs_f64());
        let note = if vm_n == tz_n { String::new() } else { format!(" (series: tingzhen {tz_n}, VM {vm_n})") };
        rows.push(format!(
            "| {}{note} | {:.1} | {:.1} | {} |",
            q.name,
            tz_m.as_secs_f64() * 1e3,
            vm_m.as_secs_f64() * 1e3,
            ratio(tz_m.as_secs_f64(), vm_m.as_secs_f64())
        ));
    }
    ratios.sort_by(f64::total_cmp);
    let median_ratio = ratios[ratios.len() / 2];

    // What the processes keep once queried, not the last query's buffers in flight: both get
    // a few idle seconds (tingzhen's allocator purges freed memory within ~1.5 s; Go's
    // scavenger works on its own schedule) before the reading.
    std::thread::sleep(AFTER_QUERIES_SETTLE);
    let (vm_rss1, tz_rss1) = (rss(vm.pid()), rss(tz_pid));
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / series as f64;
    let (vm_per, tz_per) = (per(vm_rss0, vm_rss1), per(tz_rss0, tz_rss1));
    drop(vm);
    coll.stop();

    format!(
        "### Query latency and memory per series vs VictoriaMetrics\n\n\
         Data: {recent} series × 24 h at 15 s ({hosts} hosts of node_exporter shapes and a 11-bucket latency \
         histogram) plus {arch} archive series × 30 days at 60 s, {samples} samples in all, loaded into both. \
         Range queries at Grafana's usual step; each query once untimed, then {reps} times alternating, \
         median wall time at the client (HTTP on loopback included). Peer: {vmv} with `-search.disableCache`.\n\n\
         | query | tingzhen ms | VictoriaMetrics ms | ratio |\n|---|---|---|---|\n{rows}\n\n\
         Median ratio over the queries: **{median_ratio:.2}×** (goal ≤ 1.0×).\n\n\
         | memory | tingzhen | VictoriaMetrics | ratio | goal |\n|---|---|---|---|---|\n\
         | RSS empty → loaded (MiB) | {tr0:.0} → {tr1:.0} | {vr0:.0} → {vr1:.0} | | |\n\
         | bytes per active series | {tz_per:.0} | {vm_per:.0} | {mr} | ≤ 1.0× |\n\
         | RSS growth, loaded before the queries (MiB) | {trs:.0} | {vrs:.0} | {rs} | |\n\n\
         RSS \"loaded\" is read {settle} s after the timed queries (memory the processes keep once queried); \
         the last row is read before any query.\n",
        recent = d.recent.len(),
        arch = d.archive.len(),
        vmv = version("victoria-metrics"),
        rows = rows.join("\n"),
        tr0 = tz_rss0 as f64 / 1048576.0,
        tr1 = tz_rss1 as f64 / 1048576.0,
        vr0 = vm_rss0 as f64 / 1048576.0,
        vr1 = vm_rss1 as f64 / 1048576.0,
        mr = ratio(tz_per, vm_per),
        trs = tz_rss_settled.saturating_sub(tz_rss0) as f64 / 1048576.0,
        vrs = vm_rss_settled.saturating_sub(vm_rss0) as f64 / 1048576.0,
        settle = AFTER_QUERIES_SETTLE.as_secs(),
        rs = ratio(tz_rss_settled.saturating_sub(tz_rss0) as f64, vm_rss_settled.saturating_sub(vm_rss0) as f64),
    )
}
