//! Engine-level tests of the flows over a real SQLite file and the embedded time-series
//! engine, with an injected clock.

use super::*;
use crate::backend::Store;
use crate::tsdb::{Tsdb, TsdbOptions};
use event::Event;
use std::sync::atomic::{AtomicI64, Ordering};
use tingzhen_core::db::testing::TestStore;
use tingzhen_core::matcher::Matcher;

const MODELS: &str = r#"
[[flow]]
name = "检查申请单"
[[flow.steps]]
name = "ordered"
[[flow.steps]]
name = "charged"
deadline = "30m"
[[flow.steps]]
name = "scheduled"
deadline = "1h"
[[flow.steps.deadline_rules]]
when = { urgency = "急" }
deadline = "10m"
[[flow.steps]]
name = "reported"
deadline = "1d"

[[interface]]
name = "本院-收费"
system = "收费系统"
campus = "本院"
"#;

struct Fixture {
    dir: tempfile::TempDir,
    /// The relational store (SQLite or, under TINGZHEN_TEST_DATABASE_URL, PostgreSQL).
    store: TestStore,
    clock: Arc<AtomicI64>,
    tsdb: Arc<Tsdb>,
    flows: Flows,
}

fn open_in(dir: tempfile::TempDir, store: TestStore, clock: Arc<AtomicI64>, tsdb: Option<Arc<Tsdb>>) -> Fixture {
    let db = Arc::new(store.open());
    let tsdb = tsdb.unwrap_or_else(|| Arc::new(Tsdb::open(&dir.path().join("tsdb"), TsdbOptions::default()).unwrap()));
    let c = clock.clone();
    let flows = Flows::open(
        db,
        Backend::new(Store::Embedded(tsdb.clone())),
        FlowsConfig::default(),
        Arc::new(move || c.load(Ordering::SeqCst)),
    )
    .unwrap();
    Fixture { dir, store, clock, tsdb, flows }
}

fn fixture() -> Fixture {
    let f = open_in(
        tempfile::tempdir().unwrap(),
        TestStore::new(),
        Arc::new(AtomicI64::new(tingzhen_core::now_ms())),
        None,
    );
    f.flows.load_toml(MODELS, "test").unwrap();
    f
}

fn ev(key: &str, step: &str, t: i64) -> Event {
    Event {
        flow: "检查申请单".into(),
        key: key.into(),
        step: step.into(),
        time_ms: t,
        campus: "本院".into(),
        system: "收费系统".into(),
        ok: true,
        interface: None,
        attrs: Default::default(),
    }
}

fn latest(tsdb: &Tsdb, name: &str, extra: &[(&str, &str)]) -> Vec<(tingzhen_core::Labels, f64)> {
    use crate::storage::Queryable;
    let mut m = vec![Matcher::equal("__name__", name)];
    m.extend(extra.iter().map(|(k, v)| Matcher::equal(*k, *v)));
    let now = tingzhen_core::now_ms();
    tsdb.select(&m, now - 3_600_000, now + 3_600_000)
        .unwrap()
        .into_iter()
        .map(|s| (s.labels, s.samples.last().unwrap().value))
        .collect()
}

#[test]
fn duplicates_are_idempotent_and_out_of_order_events_are_placed_by_the_model() {
    let f = fixture();
    let t0 = f.clock.load(Ordering::SeqCst) - 3_600_000;
    let batch =
        vec![Ok(ev("A1", "charged", t0 + 60_000)), Ok(ev("A1", "ordered", t0)), Ok(ev("A1", "charged", t0 + 60_000))];
    let r = f.flows.ingest(batch).unwrap();
    assert_eq!((r.accepted, r.duplicates), (2, 1));
    let r = f.flows.ingest(vec![Ok(ev("A1", "ordered", t0))]).unwrap();
    assert_eq!((r.accepted, r.duplicates), (0, 1));
    let tl = f.flows.timeline("A1").unwrap();
    let steps = &tl[0]["steps"];
    assert_eq!(steps[0]["state"], "reached");
    assert_eq!(steps[1]["state"], "reached");
    assert_eq!(steps[1]["duration_seconds"], 60.0);
    assert_eq!(tl[0]["events"].as_array().unwrap().len(), 2);
    assert_eq!(f.flows.open_keys(), 1);
}

#[test]
fn a_mixed_batch_keeps_the_good_events_and_names_the_bad_ones() {
    let f = fixture();
    let now = f.clock.load(Ordering::SeqCst);
    let mut unknown_flow = ev("B1", "ordered", now);
    unknown_flow.flow = "无此流程".into();
    let r = f
        .flows
        .ingest(vec![
            Ok(ev("B1", "ordered", now)),
            Err("key: missing".into()),
            Ok(unknown_flow),
            Ok(ev("B1", "paid", now)),
            Ok(ev("B1", "charged", now + 3_600_000)),
        ])
        .unwrap();
    assert_eq!(r.accepted, 1);
    let idx: Vec<usize> = r.rejected.iter().map(|x| x.index).collect();
    assert_eq!(idx, vec![1, 2, 3, 4]);
    assert!(r.rejected[1].error.starts_with("flow:"), "{:?}", r.rejected);
    assert!(r.rejected[2].error.contains("not a step"), "{:?}", r.rejected);
    assert!(r.rejected[3].error.contains("future"), "{:?}", r.rejected);
}

#[test]
fn a_key_stuck_at_charged_turns_overdue_at_its_deadline_and_completing_clears_it() {
    let f = fixture();
    let t0 = f.clock.load(Ordering::SeqCst);
    let mut charged = ev("C1", "charged", t0 + 60_000);
    charged.attrs.insert("urgency".into(), "急".into());
    f.flows.ingest(vec![Ok(ev("C1", "ordered", t0)), Ok(charged)]).unwrap();
    // Due 10 minutes (urgent rule) after charged.
    let due = t0 + 60_000 + 600_000;
    f.clock.store(due, Ordering::SeqCst);
    f.flows.tick().unwrap();
    assert_eq!(f.flows.overdue(None, None, 10)["total"], 0);
    assert!(latest(&f.tsdb, "tingzhen_flow_overdue", &[]).iter().all(|(_, v)| *v == 0.0));
    f.clock.store(due + 1_000, Ordering::SeqCst);
    f.flows.tick().unwrap();
    let o = f.flows.overdue(None, None, 10);
    assert_eq!(o["total"], 1);
    assert_eq!(o["keys"][0]["awaited_step"], "scheduled");
    let g = latest(&f.tsdb, "tingzhen_flow_overdue", &[("step", "scheduled"), ("campus", "本院")]);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].1, 1.0);
    assert_eq!(g[0].0.get("system"), Some("收费系统"));
    f.clock.store(due + 30_000, Ordering::SeqCst);
    f.flows.ingest(vec![Ok(ev("C1", "scheduled", due + 20_000)), Ok(ev("C1", "reported", due + 25_000))]).unwrap();
    f.flows.tick().unwrap();
    assert_eq!(f.flows.overdue(None, None, 10)["total"], 0);
    assert_eq!(latest(&f.tsdb, "tingzhen_flow_overdue", &[("step", "scheduled")])[0].1, 0.0);
    assert_eq!(latest(&f.tsdb, "tingzhen_flow_completions_total", &[])[0].1, 1.0);
    assert_eq!(f.flows.open_keys(), 0);
    let tl = f.flows.timeline("C1").unwrap();
    assert_eq!(tl[0]["state"], "completed");
    assert_eq!(latest(&f.tsdb, "tingzhen_interface_messages_total", &[("interface", "本院-收费")])[0].1, 4.0);
}

#[test]
fn a_restart_keeps_open_keys_and_does_not_count_replayed_events_twice() {
    let f = fixture();
    let t0 = f.clock.load(Ordering::SeqCst) - 7_200_000;
    f.flows.ingest(vec![Ok(ev("D1", "ordered", t0)), Ok(ev("D1", "charged", t0 + 1_000))]).unwrap();
    f.flows.ingest(vec![Ok(ev("D2", "ordered", t0))]).unwrap();
    let Fixture { dir, store, clock, tsdb, flows } = f;
    drop(flows);
    let f = open_in(dir, store, clock, Some(tsdb));
    assert_eq!(f.flows.open_keys(), 2);
    assert_eq!(f.flows.model("检查申请单").unwrap().version, 1);
    // D2 waits for charged (30 min), D1 for scheduled (1 h): both overdue straight after the
    // restart, the longer overdue first.
    let o = f.flows.overdue(None, None, 10);
    assert_eq!(o["total"], 2);
    assert_eq!(o["keys"][0]["key"], "D2");
    assert_eq!(o["keys"][1]["awaited_step"], "scheduled");
    // A sender retrying its whole batch after the restart adds nothing.
    let r = f.flows.ingest(vec![Ok(ev("D1", "ordered", t0)), Ok(ev("D1", "charged", t0 + 1_000))]).unwrap();
    assert_eq!((r.accepted, r.duplicates), (0, 2));
    let funnel =
        f.flows.funnel("检查申请单", &TimeRange { from_ms: t0 - 1, to_ms: t0 + 1, campus: None, flow: None }).unwrap();
    assert_eq!(funnel["keys"], 2);
    assert_eq!(funnel["steps"][1]["reached"], 1);
    // Loading the same file again is not a new version.
    f.flows.load_toml(MODELS, "test").unwrap();
    assert_eq!(f.flows.model("检查申请单").unwrap().version, 1);
}

#[test]
fn open_keys_expire_after_the_horizon() {
    let f = fixture();
    let t0 = f.clock.load(Ordering::SeqCst);
    f.flows.ingest(vec![Ok(ev("E1", "ordered", t0))]).unwrap();
    f.clock.store(t0 + 8 * 86_400_000, Ordering::SeqCst);
    f.flows.tick().ok();
    assert_eq!(f.flows.open_keys(), 0);
    assert_eq!(f.flows.timeline("E1").unwrap()[0]["state"], "expired");
    // Past the retention closed keys and their events are gone.
    f.clock.store(t0 + 39 * 86_400_000, Ordering::SeqCst);
    f.flows.state.lock().last_prune_ms = 0;
    f.flows.tick().ok();
    assert!(matches!(f.flows.timeline("E1"), Err(FlowError::NotFound { .. })));
}

#[test]
fn otlp_protobuf_and_json_spans_become_events() {
    use otlp::*;
    use prost::Message;
    let now_ns = (tingzhen_core::now_ms() as u64) * 1_000_000;
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", "RIS"), kv("hospital.campus", "东院")] }),
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    Span {
                        name: "report".into(),
                        start_time_unix_nano: now_ns,
                        end_time_unix_nano: now_ns,
                        attributes: vec![
                            kv("flow.name", "检查申请单"),
                            kv("flow.key", "SQ1"),
                            kv("flow.step", "reported"),
                            kv("flow.urgency", "急"),
                        ],
                        status: Some(Status { message: String::new(), code: 2 }),
                    },
                    Span { name: "unrelated".into(), end_time_unix_nano: now_ns, ..Default::default() },
                ],
            }],
        }],
    };
    let events = decode_protobuf(&req.encode_to_vec()).unwrap();
    assert_eq!(events.len(), 1);
    let e = events[0].as_ref().unwrap();
    assert_eq!((e.step.as_str(), e.campus.as_str(), e.system.as_str(), e.ok), ("reported", "东院", "RIS", false));
    assert_eq!(e.attrs["urgency"], "急");
    let json = serde_json::json!({"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"LIS"}}]},
        "scopeSpans":[{"spans":[{"name":"ordered","endTimeUnixNano": now_ns.to_string(),
        "attributes":[{"key":"flow.name","value":{"stringValue":"检查申请单"}},{"key":"flow.key","value":{"intValue":"42"}}]},
        {"name":"x","endTimeUnixNano":"1","attributes":[{"key":"flow.name","value":{"stringValue":"检查申请单"}}]}]}]}]});
    let events = decode_json(json.to_string().as_bytes()).unwrap();
    assert_eq!(events.len(), 2);
    let e = events[0].as_ref().unwrap();
    assert_eq!((e.key.as_str(), e.step.as_str(), e.system.as_str(), e.ok), ("42", "ordered", "LIS", true));
    assert!(events[1].as_ref().unwrap_err().contains("flow.key"));
}

#[test]
fn config_validation_names_a_bad_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FlowsConfig { models_dir: Some(dir.path().display().to_string()), ..FlowsConfig::default() };
    cfg.validate().unwrap();
    std::fs::write(dir.path().join("a.toml"), MODELS).unwrap();
    cfg.validate().unwrap();
    std::fs::write(dir.path().join("b.toml"), "[[flow]]\nname = \"x\"\nsteps = []\n").unwrap();
    let e = cfg.validate().unwrap_err();
    assert!(e.contains("b.toml") && e.contains("steps"), "{e}");
    let hospital = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/flows");
    FlowsConfig { models_dir: Some(hospital.into()), ..FlowsConfig::default() }.validate().unwrap();
}

/// Interface liveness comes from the agent's probes: the registry's endpoint matched to a
/// `probe_success` series' `instance` (or probe name in `target`) gives `tingzhen_interface_up`
/// and `alive` in the interface list; an interface no probe watches has neither.
#[test]
fn interfaces_are_alive_from_probe_results() {
    use tingzhen_core::{Labels, Sample, TimeSeries};
    let f = fixture();
    let def = |name: &str, endpoint: &str| InterfaceDef {
        name: name.into(),
        system: "LIS".into(),
        campus: "东院".into(),
        endpoint: endpoint.into(),
        kind: "HL7".into(),
        vendor: String::new(),
        clinic_hours: false,
        silence: None,
    };
    f.flows.put_interface(def("东院-LIS", "10.8.0.21:2575"), "test").unwrap();
    f.flows.put_interface(def("东院-PACS", "pacs-ws"), "test").unwrap();
    f.flows.put_interface(def("东院-EMR", "10.8.0.99:80"), "test").unwrap();
    let probe = |instance: &str, target: &str, t: i64, v: f64| {
        let l = Labels::from_pairs([("__name__", "probe_success"), ("instance", instance), ("target", target)]);
        TimeSeries::new(l, vec![Sample::new(t, v)])
    };
    let now = f.clock.load(Ordering::SeqCst);
    f.flows
        .backend
        .write(&[
            probe("10.8.0.21:2575", "lis-mllp", now - 20_000, 0.0),
            probe("http://10.8.0.30/ws", "pacs-ws", now - 20_000, 1.0),
        ])
        .unwrap();
    f.flows.tick().unwrap();
    let up = |name: &str| latest(&f.tsdb, "tingzhen_interface_up", &[("interface", name)]);
    assert_eq!(up("东院-LIS")[0].1, 0.0);
    assert_eq!(up("东院-PACS")[0].1, 1.0, "matched by the probe's name");
    assert!(up("东院-EMR").is_empty(), "no probe watches it");
    let range = TimeRange { from_ms: now - 3_600_000, to_ms: now, campus: None, flow: None };
    let list = f.flows.interfaces(&range).unwrap();
    let alive = |name: &str| {
        list["interfaces"].as_array().unwrap().iter().find(|i| i["name"] == name).unwrap()["alive"].clone()
    };
    assert_eq!(
        (alive("东院-LIS"), alive("东院-PACS"), alive("东院-EMR")),
        (false.into(), true.into(), serde_json::Value::Null)
    );
    // The endpoint comes back: the next probe result and tick say so.
    f.clock.store(now + 15_000, Ordering::SeqCst);
    f.flows.backend.write(&[probe("10.8.0.21:2575", "lis-mllp", now + 10_000, 1.0)]).unwrap();
    f.flows.tick().unwrap();
    assert_eq!(up("东院-LIS")[0].1, 1.0);
}

/// A store written by the first schema (flow-first keys, separate key indexes) is carried over
/// by the key-first migration: its open key reloads, its events still make the timeline.
#[test]
fn the_key_first_migration_keeps_open_keys_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let test_store = TestStore::new();
    let db = test_store.open();
    db.migrate_component(store::COMPONENT, &store::MIGRATIONS[..1]).unwrap();
    let t0 = tingzhen_core::now_ms() - 600_000;
    db.with_conn(|c| {
        c.execute_batch(&format!(
            "INSERT INTO flow_events VALUES ('检查申请单', 'OLD1', 'ordered', {t0}, 1, '本院', 'HIS', '{{}}', {t0});
             INSERT INTO flow_keys VALUES ('检查申请单', 'OLD1', 'open', 1, '本院', 'HIS', {t0}, {t0}, 1, 0,
               '[{t0},null,null,null]', '{{}}', NULL);"
        ))
    })
    .unwrap();
    drop(db);
    let f = open_in(dir, test_store, Arc::new(AtomicI64::new(tingzhen_core::now_ms())), None);
    f.flows.load_toml(MODELS, "test").unwrap();
    assert_eq!(f.flows.open_keys(), 1);
    let tl = f.flows.timeline("OLD1").unwrap();
    assert_eq!(tl[0]["steps"][0]["state"], "reached", "{tl}");
    assert_eq!(tl[0]["events"].as_array().unwrap().len(), 1, "{tl}");
    let r = f.flows.ingest(vec![Ok(ev("OLD1", "ordered", t0)), Ok(ev("OLD1", "charged", t0 + 1_000))]).unwrap();
    assert_eq!((r.accepted, r.duplicates), (1, 1));
}
