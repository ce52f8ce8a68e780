//! Collector ingest vs VictoriaMetrics: the same pre-encoded remote-write payloads, the same
//! client concurrency; samples/s, then disk bytes per sample after each has flushed (VM:
//! `/internal/force_flush`; tingzhen: clean shutdown, which flushes its storage).
//!
//! `--only inproc` skips the servers and runs the collector's own remote-write path (snappy,
//! decode, validate, WAL with fsync, head) in this process on the same bodies: the reproducer
//! for profiling ingest (`perf record`, `valgrind --tool=callgrind`) without HTTP or peers.

use crate::Flags;
use crate::loadgen::{self, LoadResult, Workload};
use crate::report::{ratio, version};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tingzhen_collector::backend::{Backend, Store};
use tingzhen_collector::tsdb::{Tsdb, TsdbOptions};
use tingzhen_core::SeriesBatch;
use tingzhen_core::remote_write::{self, DecodeBuffers};
use tingzhen_tests::peers::dir_bytes;
use tingzhen_tests::{Collector, PromClient, VictoriaMetrics, now_ms};

/// Samples a peer reports holding, by PromQL, one metric name at a time: a range function drops
/// the name, so `count_over_time({job="node"}[…])` over many names would collide (Prometheus
/// refuses that query, as it should).
fn stored_samples(client: &PromClient) -> Option<f64> {
    let now = now_ms();
    let names = client.label_values("__name__", &[r#"{job="node"}"#], now - 7_200_000, now);
    let t = tingzhen_tests::prom::secs(now);
    let mut total = 0.0;
    for name in names {
        let q = format!(r#"sum(count_over_time({name}{{job="node"}}[2h]))"#);
        let r = client.call("/api/v1/query", &[("query", &q), ("time", &t)]);
        let v = serde_json::from_str::<serde_json::Value>(&r.body).ok()?;
        total += tingzhen_tests::prom::QResult::parse(&v["data"]).ok()?.vector().values().next()?.1;
    }
    Some(total)
}

fn sqlite_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("tingzhen.db"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn problems(name: &str, r: &LoadResult, stored: Option<f64>, want: usize) -> Vec<String> {
    let mut p = Vec::new();
    if r.failed_requests > 0 {
        p.push(format!("{name}: {} requests failed, e.g. {:?}", r.failed_requests, r.errors));
    }
    if stored != Some(want as f64) {
        p.push(format!("{name}: holds {stored:?} samples by PromQL, {want} were sent"));
    }
    p
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rates(rs: &[LoadResult]) -> String {
    rs.iter().map(|r| format!("{:.0}", r.rate())).collect::<Vec<_>>().join(", ")
}

/// The collector's remote-write path for one body, the steps `api::ingest` runs on its
/// blocking thread; returns the samples stored.
fn store_remote_write(bufs: &mut DecodeBuffers, backend: &Backend, body: &[u8]) -> Result<u64, String> {
    let batch = bufs.decode(body, remote_write::DEFAULT_MAX_DECOMPRESSED).map_err(|e| e.to_string())?;
    let samples = batch.sample_total() as u64;
    let written = backend.write_batch(&batch).map_err(|e| e.to_string());
    let spare = batch.into_buffers();
    bufs.keep(spare);
    written.map(|_| samples)
}

/// One in-process round on a fresh engine: `concurrency` threads take bodies in turn. Returns
/// samples/s (wall) and samples per CPU second of this process.
fn inproc_round(w: &Workload, concurrency: usize) -> Result<(f64, f64), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let tsdb = Tsdb::open(dir.path(), TsdbOptions::default()).map_err(|e| format!("open tsdb: {e}"))?;
    let backend = Backend::new(Store::Embedded(Arc::new(tsdb)));
    let next = AtomicUsize::new(0);
    let cpu0 = tingzhen_tests::procstat::usage(std::process::id()).map(|u| u.cpu.as_secs_f64());
    let started = Instant::now();
    let stored: Result<Vec<u64>, String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                s.spawn(|| {
                    let mut bufs = DecodeBuffers::default();
                    let mut n = 0u64;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(b) = w.bodies.get(i) else { return Ok(n) };
                        n += store_remote_write(&mut bufs, &backend, &b.bytes)?;
                    }
                })
            })
            .collect();
        workers.into_iter().map(|h| h.join().map_err(|_| "ingest thread panicked".to_string())?).collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let cpu1 = tingzhen_tests::procstat::usage(std::process::id()).map(|u| u.cpu.as_secs_f64());
    let stored: u64 = stored?.iter().sum();
    if stored != w.samples() as u64 {
        return Err(format!("stored {stored} of {} samples", w.samples()));
    }
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    Ok((stored as f64 / secs, stored as f64 / cpu))
}

fn run_inproc(flags: &Flags, w: &Workload) -> String {
    let concurrency = flags.get("concurrency", 4usize);
    let rounds = flags.get("rounds", 3usize).max(1);
    let (mut wall, mut per_cpu, mut problems) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        match inproc_round(w, concurrency) {
            Ok((r, c)) => {
                eprintln!("round {round}: in process {r:.0} samples/s, {c:.0} samples per CPU second");
                wall.push(r);
                per_cpu.push(c);
            }
            Err(e) => problems.push(format!("round {round}: {e}")),
        }
    }
    if wall.is_empty() {
        return format!("### Collector ingest in process\n\n**Problems:** {}\n", problems.join("; "));
    }
    let notes = if problems.is_empty() { String::new() } else { format!("\n**Problems:** {}\n", problems.join("; ")) };
    format!(
        "### Collector ingest in process\n\n\
         Workload: {desc}; {concurrency} threads calling the collector's remote-write path (snappy, decode, \
         validation, WAL with fsync, head) on a fresh engine each round; no HTTP. Load average: {load}.\n\n\
         | | median of {rounds} | each round |\n|---|---|---|\n\
         | samples/s (wall) | {r:.0} | {rall} |\n\
         | samples per CPU second | {c:.0} | {call} |\n{notes}",
        desc = w.describe(),
        load = load_average(),
        r = median(wall.clone()),
        rall = wall.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
        c = median(per_cpu.clone()),
        call = per_cpu.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

pub fn run(flags: &Flags) -> String {
    let only = flags.str("only").unwrap_or("peers");
    if only == "inproc" {
        let w = Workload::from_flags(flags);
        eprintln!("ingest in process: {}", w.describe());
        return run_inproc(flags, &w);
    }
    let load_before = load_average();
    let concurrency = flags.get("concurrency", 4usize);
    let rounds = flags.get("rounds", 3usize).max(1);
    let w = Workload::from_flags(flags);
    let total = w.samples();
    eprintln!("ingest: {}", w.describe());

    // Rounds alternate between the peers, each round on a fresh instance and data dir; disk
    // use and stored-sample checks come from the last round.
    let (mut vm_rs, mut tz_rs) = (Vec::new(), Vec::new());
    let (mut vm_bytes, mut tz_bytes, mut vm_stored, mut tz_stored) = (0, 0, None, None);
    for round in 0..rounds {
        let vm = VictoriaMetrics::start();
        let r = loadgen::run(&vm.remote_write_url(), None, &w.bodies, concurrency);
        eprintln!("round {round}: VictoriaMetrics {:.0} samples/s", r.rate());
        vm_rs.push(r);
        if round + 1 == rounds {
            vm.force_flush();
            // VM merges parts in the background right after a flush; let it settle, flush again.
            std::thread::sleep(Duration::from_secs(10));
            vm.force_flush();
            vm_bytes = dir_bytes(&vm.data_dir());
            vm_stored = stored_samples(&vm.client());
        }
        drop(vm);

        let mut coll = Collector::start_default();
        let token = coll.create_token("bench", "ingest,query", None);
        let r = loadgen::run(&coll.url("/api/v1/write"), Some(&token), &w.bodies, concurrency);
        eprintln!("round {round}: tingzhen {:.0} samples/s", r.rate());
        tz_rs.push(r);
        if round + 1 == rounds {
            tz_stored = stored_samples(&coll.client(&token));
            coll.stop();
            tz_bytes = dir_bytes(&coll.data) - sqlite_bytes(&coll.data);
        }
    }
    let (vm_rate, tz_rate) =
        (median(vm_rs.iter().map(LoadResult::rate).collect()), median(tz_rs.iter().map(LoadResult::rate).collect()));
    let (vm_bps, tz_bps) = (vm_bytes as f64 / total as f64, tz_bytes as f64 / total as f64);
    let mut notes: Vec<String> = tz_rs.iter().flat_map(|r| problems("tingzhen", r, tz_stored, total)).collect();
    notes.extend(vm_rs.iter().flat_map(|r| problems("VictoriaMetrics", r, vm_stored, total)));
    notes.dedup();
    let notes = if notes.is_empty() {
        "Both hold every sample sent (checked by PromQL `sum(count_over_time(...))`).".to_string()
    } else {
        format!("**Problems:** {}", notes.join("; "))
    };
    format!(
        "### Collector ingest vs VictoriaMetrics\n\n\
         Workload: {desc}; host-metric shapes (node_exporter names, 105 series a host), \
         {concurrency} concurrent clients, loopback. Peer: {vmv}. tingzhen disk = data dir after a clean shutdown, \
         without the SQLite store; VictoriaMetrics disk = `-storageDataPath` after `/internal/force_flush`. \
         Load average before: {load_before}; after: {load_after}.\n\n\
         | | tingzhen | VictoriaMetrics | ratio | goal |\n|---|---|---|---|---|\n\
         | samples/s (median of {rounds}) | {tzr:.0} | {vmr:.0} | {rr} | ≥ 1.0× |\n\
         | samples/s, each round | {tzall} | {vmall} | | |\n\
         | disk bytes | {tzb} | {vmb} | | |\n\
         | bytes/sample | {tz_bps:.3} | {vm_bps:.3} | {br} | ≤ 1.0× |\n\n{notes}\n",
        desc = w.describe(),
        vmv = version("victoria-metrics"),
        tzr = tz_rate,
        vmr = vm_rate,
        rr = ratio(tz_rate, vm_rate),
        tzall = rates(&tz_rs),
        vmall = rates(&vm_rs),
        tzb = tz_bytes,
        vmb = vm_bytes,
        br = ratio(tz_bps, vm_bps),
        load_after = load_average(),
    )
}
