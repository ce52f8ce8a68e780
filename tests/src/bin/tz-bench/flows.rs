//! Business-flow engine (issue 7): events/s ingested over HTTP (`POST /api/v1/flows/events`
//! against a release `tingzhen serve`) and in process (`Flows::ingest` on a temp SQLite file,
//! no HTTP, no JSON), and resident memory per open key of the real server at 100k and 1M open
//! keys (RSS growth while the keys are loaded ÷ keys). The workload is the demo models'
//! 检查申请单: every order sends `ordered` and `charged` (so it stays open, awaiting
//! `scheduled`), four campuses, one order in seven urgent, 1,000 events a request.

use crate::Flags;
use crate::report::ratio;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tingzhen_collector::backend::{Backend, Store};
use tingzhen_collector::flows::event::Event;
use tingzhen_collector::flows::{Flows, FlowsConfig};
use tingzhen_collector::tsdb::{Tsdb, TsdbOptions};
use tingzhen_tests::collector::CollectorOpts;
use tingzhen_tests::procstat::usage;
use tingzhen_tests::{Collector, Http, now_ms, wait};

const FLOW: &str = "检查申请单";
const CAMPUSES: [&str; 4] = ["本院", "黄埔", "东院", "南沙"];
const GOAL_RATE: f64 = 100_000.0;
const GOAL_BYTES_PER_KEY: f64 = 300.0;

/// One order's two events: (key, step, unix ms, campus, system, urgent).
struct Order {
    key: String,
    t_ms: i64,
    campus: &'static str,
    urgent: bool,
}

fn order(prefix: &str, i: usize, now: i64) -> Order {
    Order {
        key: format!("{prefix}{i:010}"),
        // Spread over the last ~50 minutes, all in the past and inside every horizon.
        t_ms: now - 3_600_000 + (i as i64 % 3_000_000),
        campus: CAMPUSES[i % 4],
        urgent: i.is_multiple_of(7),
    }
}

const STEPS: [(&str, &str, i64); 2] = [("ordered", "HIS", 0), ("charged", "收费系统", 60_000)];

fn json_events(orders: &[Order]) -> Vec<u8> {
    let mut v = Vec::with_capacity(orders.len() * 2);
    for o in orders {
        for (step, system, dt) in STEPS {
            v.push(json!({
                "flow": FLOW, "key": o.key, "step": step, "time": (o.t_ms + dt) as f64 / 1000.0,
                "campus": o.campus, "system": system,
                "attributes": {"urgency": if o.urgent { "急" } else { "平" }, "exam_type": "CT"},
            }));
        }
    }
    serde_json::to_vec(&Value::Array(v)).expect("events serialise")
}

fn engine_events(orders: &[Order]) -> Vec<Result<Event, String>> {
    let mut v = Vec::with_capacity(orders.len() * 2);
    for o in orders {
        for (step, system, dt) in STEPS {
            v.push(Ok(Event {
                flow: FLOW.into(),
                key: o.key.clone(),
                step: step.into(),
                time_ms: o.t_ms + dt,
                campus: o.campus.into(),
                system: system.into(),
                ok: true,
                interface: None,
                attrs: [
                    ("urgency".to_string(), if o.urgent { "急" } else { "平" }.to_string()),
                    ("exam_type".to_string(), "CT".to_string()),
                ]
                .into(),
            }));
        }
    }
    v
}

fn models_dir() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/flows").display().to_string()
}

fn start_collector(tick: &str) -> (Collector, String) {
    let coll = Collector::start_with(CollectorOpts {
        extra_toml: format!("\n[flows]\nmodels_dir = {:?}\ntick = {tick:?}\n", models_dir()),
        ..Default::default()
    });
    let token = coll.create_token("bench-flows", "ingest,query", None);
    (coll, token)
}

/// Outcome of sending batches: events acknowledged as accepted, wall time, failures.
struct Sent {
    accepted: usize,
    secs: f64,
    errors: Vec<String>,
}

/// Sends `batches` batches from `concurrency` keep-alive clients; `body(i)` makes batch i
/// (pre-encoded bodies are looked up, on-the-fly ones generated in the sending thread).
fn send(url: &str, token: &str, batches: usize, concurrency: usize, body: &(dyn Fn(usize) -> Vec<u8> + Sync)) -> Sent {
    let next = AtomicUsize::new(0);
    let accepted = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| {
                let http = Http::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= batches {
                        break;
                    }
                    let b = body(i);
                    match http.post(url, Some(token), &[("Content-Type", "application/json")], &b) {
                        Ok(r) if r.status == 200 => {
                            let n = r.json()["data"]["accepted"].as_u64().unwrap_or(0) as usize;
                            accepted.fetch_add(n, Ordering::Relaxed);
                        }
                        other => {
                            let mut e = errors.lock().unwrap();
                            if e.len() < 5 {
                                e.push(match other {
                                    Ok(r) => format!("batch {i}: {} {}", r.status, r.body),
                                    Err(err) => format!("batch {i}: {err}"),
                                });
                            }
                        }
                    }
                }
            });
        }
    });
    Sent {
        accepted: accepted.into_inner(),
        secs: started.elapsed().as_secs_f64(),
        errors: errors.into_inner().unwrap(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU seconds (user + system) a process has used.
fn cpu_secs(pid: u32) -> f64 {
    usage(pid).map(|u| u.cpu.as_secs_f64()).unwrap_or(0.0)
}

/// One HTTP round on a fresh server: events/s (wall) and events per server CPU second.
fn http_round(
    round: usize,
    orders_n: usize,
    per_batch: usize,
    concurrency: usize,
    problems: &mut Vec<String>,
) -> (f64, f64) {
    let (mut coll, token) = start_collector("15s");
    let pid = coll.proc_mut().pid();
    let now = now_ms();
    let prefix = format!("H{round}-");
    let orders_per_batch = (per_batch / 2).max(1);
    let bodies: Vec<Vec<u8>> = (0..orders_n)
        .collect::<Vec<_>>()
        .chunks(orders_per_batch)
        .map(|c| json_events(&c.iter().map(|&i| order(&prefix, i, now)).collect::<Vec<_>>()))
        .collect();
    let url = coll.url("/api/v1/flows/events");
    let cpu0 = cpu_secs(pid);
    let r = send(&url, &token, bodies.len(), concurrency, &|i| bodies[i].clone());
    let cpu = cpu_secs(pid) - cpu0;
    if r.accepted != orders_n * 2 || !r.errors.is_empty() {
        problems.push(format!("HTTP round {round}: {} of {} accepted; {:?}", r.accepted, orders_n * 2, r.errors));
    }
    drop(coll);
    (r.accepted as f64 / r.secs, r.accepted as f64 / cpu.max(1e-9))
}

/// One in-process round: `Flows::ingest` on prepared batches, one thread (ingest is serialised).
/// Events/s (wall) and events per CPU second of this process.
fn inproc_round(round: usize, orders_n: usize, per_batch: usize, problems: &mut Vec<String>) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(tingzhen_core::db::Db::open(&dir.path().join("t.db")).expect("open SQLite"));
    let tsdb = Arc::new(Tsdb::open(&dir.path().join("tsdb"), TsdbOptions::default()).expect("open tsdb"));
    let flows = Flows::open(db, Backend::new(Store::Embedded(tsdb)), FlowsConfig::default(), Arc::new(now_ms))
        .expect("open flows");
    flows.load_toml(tingzhen_collector::flows::demo::DEMO_MODELS, "bench").expect("demo models");
    let now = now_ms();
    let prefix = format!("P{round}-");
    let batches: Vec<_> = (0..orders_n)
        .collect::<Vec<_>>()
        .chunks((per_batch / 2).max(1))
        .map(|c| engine_events(&c.iter().map(|&i| order(&prefix, i, now)).collect::<Vec<_>>()))
        .collect();
    let cpu0 = cpu_secs(std::process::id());
    let started = Instant::now();
    let mut accepted = 0;
    for b in batches {
        match flows.ingest(b) {
            Ok(r) => accepted += r.accepted,
            Err(e) => problems.push(format!("in-process round {round}: {e}")),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs(std::process::id()) - cpu0;
    if accepted != orders_n * 2 {
        problems.push(format!("in-process round {round}: {accepted} of {} accepted", orders_n * 2));
    }
    (accepted as f64 / secs, accepted as f64 / cpu.max(1e-9))
}

/// Open keys the server reports through its own gauge (after a tick).
fn open_gauge(coll: &Collector, token: &str) -> f64 {
    let r = coll.client(token).query(&format!("sum(tingzhen_flow_open{{flow=\"{FLOW}\"}})"), now_ms());
    r.vector().values().next().map(|v| v.1).unwrap_or(0.0)
}

/// Resident memory per open key: a fresh server, a warm-up of 10,000 keys sent like the load
/// (same clients, so lazy structures, connection buffers and every request thread's allocator
/// heap exist before the first reading), RSS, then `keys` more open keys, ticks, RSS again.
fn memory_round(keys: usize, per_batch: usize, concurrency: usize, problems: &mut Vec<String>) -> (f64, f64, u64) {
    let (mut coll, token) = start_collector("2s");
    let pid = coll.proc_mut().pid();
    let url = coll.url("/api/v1/flows/events");
    let now = now_ms();
    let orders_per_batch = (per_batch / 2).max(1);
    let warm: usize = 10_000;
    let batch_of = |prefix: &'static str, from: usize, to: usize, i: usize| {
        let lo = from + i * orders_per_batch;
        let hi = (lo + orders_per_batch).min(to);
        json_events(&(lo..hi).map(|j| order(prefix, j, now)).collect::<Vec<_>>())
    };
    let w = send(&url, &token, warm.div_ceil(orders_per_batch), concurrency, &|i| batch_of("W-", 0, warm, i));
    problems.extend(w.errors);
    std::thread::sleep(Duration::from_secs(5));
    let before = usage(pid).expect("server alive").rss;
    let r = send(&url, &token, keys.div_ceil(orders_per_batch), concurrency, &|i| batch_of("M-", 0, keys, i));
    if r.accepted != keys * 2 || !r.errors.is_empty() {
        problems.push(format!("memory run {keys}: {} of {} accepted; {:?}", r.accepted, keys * 2, r.errors));
    }
    let want = (keys + warm) as f64;
    let seen = wait::until(
        &format!("tingzhen_flow_open = {want}"),
        Duration::from_secs(120),
        Duration::from_millis(500),
        |last| {
            let v = open_gauge(&coll, &token);
            *last = format!("{v}");
            (v == want).then_some(v)
        },
    );
    std::thread::sleep(Duration::from_secs(5));
    let after = usage(pid).expect("server alive");
    coll.stop();
    (after.rss.saturating_sub(before) as f64 / keys as f64, seen, after.hwm)
}

pub fn run(flags: &Flags) -> String {
    let orders_n = flags.get("events", 400_000usize) / 2;
    let per_batch = flags.get("batch", 1_000usize);
    let concurrency = flags.get("concurrency", 2usize);
    let rounds = flags.get("rounds", 3usize).max(1);
    let only = flags.str("only").unwrap_or("all").to_string();
    let keys_list: Vec<usize> = flags
        .str("keys")
        .unwrap_or("100000,1000000")
        .split(',')
        .map(|s| s.trim().parse().unwrap_or_else(|_| crate::usage(&format!("--keys: cannot parse {s:?}"))))
        .collect();
    let mut problems = Vec::new();
    let load_before = load_avg();
    let mut rows = String::new();
    let wants = |what: &str| only == "all" || only == what || (only == "rate" && what != "memory");
    let each = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    let (mut http, mut http_cpu, mut inproc, mut inproc_cpu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        if wants("http") {
            let (h, c) = http_round(round, orders_n, per_batch, concurrency, &mut problems);
            eprintln!("flows round {round}: HTTP {h:.0} events/s, {c:.0} events per server CPU second");
            http.push(h);
            http_cpu.push(c);
        }
        if wants("inproc") {
            let (p, c) = inproc_round(round, orders_n, per_batch, &mut problems);
            eprintln!("flows round {round}: in process {p:.0} events/s, {c:.0} events per CPU second");
            inproc.push(p);
            inproc_cpu.push(c);
        }
    }
    for (what, wall, cpu) in [("over HTTP", &http, &http_cpu), ("in process", &inproc, &inproc_cpu)] {
        if wall.is_empty() {
            continue;
        }
        let m = median(wall.clone());
        rows.push_str(&format!(
            "| events/s {what} (median of {rounds}) | {m:.0} | {} | ≥ 100,000 ({}) |\n\
             | events per CPU second {what}{cpu_of} (median) | {:.0} | {} | |\n",
            each(wall),
            ratio(m, GOAL_RATE),
            median(cpu.clone()),
            each(cpu),
            cpu_of = if what == "over HTTP" { " (server process)" } else { "" },
        ));
    }
    if wants("memory") {
        for &keys in &keys_list {
            let (mut per_key, mut peak) = (Vec::new(), 0u64);
            for round in 0..rounds {
                let (b, seen, hwm) = memory_round(keys, per_batch, concurrency, &mut problems);
                eprintln!("flows memory round {round}: {keys} open keys: {b:.0} bytes/key (gauge says {seen})");
                per_key.push(b);
                peak = peak.max(hwm);
            }
            let m = median(per_key.clone());
            rows.push_str(&format!(
                "| resident bytes per open key at {keys} keys (median of {rounds}) | {m:.0} | {}; peak RSS {:.0} MiB | ≤ 300 ({}) |\n",
                each(&per_key),
                peak as f64 / 1048576.0,
                ratio(m, GOAL_BYTES_PER_KEY),
            ));
        }
    }
    let notes = if problems.is_empty() {
        "Every event was acknowledged as accepted; the open-key gauge matched the keys sent.".to_string()
    } else {
        format!("**Problems:** {}", problems.join("; "))
    };
    format!(
        "### Business flows (issue 7)\n\n\
         Workload: {FLOW} orders from `deploy/flows/hospital.toml`, two events each (`ordered`, `charged`; \
         each key stays open), four campuses, {per_batch} events a request, {events} events a rate round, \
         each round on a fresh server / SQLite file. HTTP: `POST /api/v1/flows/events` to a release \
         `tingzhen serve` from {concurrency} keep-alive clients, bodies JSON-encoded before the clock starts. In process: `Flows::ingest` \
         (SQLite fsync'd per batch, no HTTP/JSON). Memory: the server's VmRSS growth while the keys \
         are loaded (after a 10,000-key warm-up) ÷ keys. Command: `tz-bench flows --events {events} --batch {per_batch} \
         --concurrency {concurrency} --rounds {rounds} --keys {keys} --only {only}`. Load average before: {load_before}; \
         after: {load_after}.\n\n\
         | | value | each round / note | goal (ratio) |\n|---|---|---|---|\n{rows}\n{notes}\n",
        events = orders_n * 2,
        keys = keys_list.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        load_after = load_avg(),
    )
}
