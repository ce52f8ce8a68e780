//! Collector ingest vs VictoriaMetrics: the same pre-encoded remote-write payloads, the same
//! client concurrency; samples/s, then disk bytes per sample after each has flushed (VM:
//! `/internal/force_flush`; tingzhen: clean shutdown, which flushes its storage).

use crate::Flags;
use crate::loadgen::{self, LoadResult, Workload};
use crate::report::{ratio, version};
use std::time::Duration;
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

pub fn run(flags: &Flags) -> String {
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
         without the SQLite store; VictoriaMetrics disk = `-storageDataPath` after `/internal/force_flush`.\n\n\
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
    )
}
