//! Collector ingest vs VictoriaMetrics: the same pre-encoded remote-write payloads, the same
//! client concurrency; samples/s, then disk bytes per sample after each has flushed (VM:
//! `/internal/force_flush`; tingzhen: clean shutdown, which flushes its storage).

use crate::Flags;
use crate::loadgen::{self, LoadResult, Workload};
use crate::report::{ratio, version};
use std::time::Duration;
use tingzhen_tests::peers::dir_bytes;
use tingzhen_tests::{Collector, PromClient, VictoriaMetrics, now_ms};

/// Samples both peers report holding, by PromQL.
fn stored_samples(client: &PromClient) -> Option<f64> {
    let r = client.call(
        "/api/v1/query",
        &[("query", r#"sum(count_over_time({job="node"}[2h]))"#), ("time", &tingzhen_tests::prom::secs(now_ms()))],
    );
    let v = serde_json::from_str::<serde_json::Value>(&r.body).ok()?;
    tingzhen_tests::prom::QResult::parse(&v["data"]).ok()?.vector().values().next().map(|x| x.1)
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

pub fn run(flags: &Flags) -> String {
    let concurrency = flags.get("concurrency", 4usize);
    let w = Workload::from_flags(flags);
    let total = w.samples();
    eprintln!("ingest: {}", w.describe());

    let vm = VictoriaMetrics::start();
    let vm_r = loadgen::run(&vm.remote_write_url(), None, &w.bodies, concurrency);
    eprintln!("VictoriaMetrics: {:.0} samples/s", vm_r.rate());
    vm.force_flush();
    // VM merges parts in the background right after a flush; let it settle, flush again.
    std::thread::sleep(Duration::from_secs(10));
    vm.force_flush();
    let vm_bytes = dir_bytes(&vm.data_dir());
    let vm_stored = stored_samples(&vm.client());
    drop(vm);

    let mut coll = Collector::start_default();
    let token = coll.create_token("bench", "ingest,query", None);
    let tz_r = loadgen::run(&coll.url("/api/v1/write"), Some(&token), &w.bodies, concurrency);
    eprintln!("tingzhen: {:.0} samples/s", tz_r.rate());
    let tz_stored = stored_samples(&coll.client(&token));
    coll.stop();
    let tz_bytes = dir_bytes(&coll.data) - sqlite_bytes(&coll.data);

    let (vm_bps, tz_bps) = (vm_bytes as f64 / total as f64, tz_bytes as f64 / total as f64);
    let mut notes = problems("tingzhen", &tz_r, tz_stored, total);
    notes.extend(problems("VictoriaMetrics", &vm_r, vm_stored, total));
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
         | samples/s | {tzr:.0} | {vmr:.0} | {rr} | ≥ 1.0× |\n\
         | wall time | {tzs:.2} s | {vms:.2} s | | |\n\
         | disk bytes | {tzb} | {vmb} | | |\n\
         | bytes/sample | {tz_bps:.3} | {vm_bps:.3} | {br} | ≤ 1.0× |\n\n{notes}\n",
        desc = w.describe(),
        vmv = version("/usr/bin/victoria-metrics", "-version"),
        tzr = tz_r.rate(),
        vmr = vm_r.rate(),
        rr = ratio(tz_r.rate(), vm_r.rate()),
        tzs = tz_r.secs,
        vms = vm_r.secs,
        tzb = tz_bytes,
        vmb = vm_bytes,
        br = ratio(tz_bps, vm_bps),
    )
}
