//! Scale figures of the flow engine: ingest rate and resident memory per open key for 200,000
//! open orders (two events each, in batches of 1,000 like an interface engine would send).
//! Run in release for the figures (`cargo test --release -p tingzhen-collector --test
//! flows_scale -- --nocapture`); the assertions are loose bounds that still catch a state blow-up.

use std::sync::Arc;
use std::time::Instant;
use tingzhen_collector::backend::{Backend, Store};
use tingzhen_collector::flows::event::Event;
use tingzhen_collector::flows::{Flows, FlowsConfig};
use tingzhen_collector::tsdb::{Tsdb, TsdbOptions};

/// Debug builds (the default `cargo test`) use a tenth, so the suite stays quick.
const KEYS: usize = if cfg!(debug_assertions) { 20_000 } else { 200_000 };

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn two_hundred_thousand_open_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(tingzhen_core::db::testing::fresh_db());
    let tsdb = Arc::new(Tsdb::open(&dir.path().join("tsdb"), TsdbOptions::default()).unwrap());
    let flows =
        Flows::open(db, Backend::new(Store::Embedded(tsdb)), FlowsConfig::default(), Arc::new(tingzhen_core::now_ms))
            .unwrap();
    flows.load_toml(tingzhen_collector::flows::demo::DEMO_MODELS, "test").unwrap();
    let now = tingzhen_core::now_ms();
    let campuses = ["本院", "黄埔", "东院", "南沙"];
    let event = |i: usize, step: &str, t: i64| Event {
        flow: "检查申请单".into(),
        key: format!("SQ{:010}", i),
        step: step.into(),
        time_ms: t,
        campus: campuses[i % 4].into(),
        system: if step == "ordered" { "HIS" } else { "收费系统" }.into(),
        ok: true,
        interface: None,
        attrs: [("urgency".to_string(), if i.is_multiple_of(7) { "急" } else { "平" }.to_string())].into(),
    };
    let before = rss_bytes();
    let started = Instant::now();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let mut batch = Vec::with_capacity(1000);
        for &i in chunk {
            let t = now - 3_600_000 + (i as i64 % 3_000_000);
            batch.push(Ok(event(i, "ordered", t)));
            batch.push(Ok(event(i, "charged", t + 60_000)));
        }
        let r = flows.ingest(batch).unwrap();
        assert_eq!(r.accepted, chunk.len() * 2);
    }
    let secs = started.elapsed().as_secs_f64();
    let per_key = rss_bytes().saturating_sub(before) / KEYS;
    assert_eq!(flows.open_keys(), KEYS);
    let tick = Instant::now();
    flows.tick().unwrap();
    println!(
        "flows scale: {} events in {secs:.1} s = {:.0} events/s; resident memory +{per_key} bytes per open key; tick over {KEYS} keys {:.0} ms",
        KEYS * 2,
        (KEYS * 2) as f64 / secs,
        tick.elapsed().as_secs_f64() * 1000.0
    );
    assert!(per_key < 1024, "{per_key} bytes per open key");
}
