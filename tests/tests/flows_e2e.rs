//! Business flows end to end against the real `tingzhen serve` binary: models from
//! `deploy/flows/*.toml`, a mixed event batch (per-event errors, 207), a key's timeline and the
//! funnel, the overdue gauge through PromQL, a restart that forgets nothing and counts nothing
//! twice, spans from the real OpenTelemetry Python SDK (OTLP/HTTP protobuf exporter, from PyPI:
//! `pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http`), and
//! `tingzhen demo traffic` feeding a collector over HTTP.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tingzhen_tests::collector::CollectorOpts;
use tingzhen_tests::{Collector, bins, now_ms, wait};

fn models_dir() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/flows").canonicalize().unwrap().display().to_string()
}

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn get(coll: &Collector, token: &str, path: &str) -> Value {
    let r = coll.http().get(&coll.url(path), Some(token), &[]).unwrap();
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r.json()
}

fn post_events(coll: &Collector, token: &str, events: &Value) -> (u16, Value) {
    let r = coll
        .http()
        .post(
            &coll.url("/api/v1/flows/events"),
            Some(token),
            &[("Content-Type", "application/json")],
            events.to_string().as_bytes(),
        )
        .unwrap();
    (r.status, r.json())
}

fn start() -> Collector {
    Collector::start_with(CollectorOpts {
        extra_toml: format!("\n[flows]\nmodels_dir = {:?}\ntick = \"1s\"\n", models_dir()),
        ..Default::default()
    })
}

#[test]
fn events_timeline_funnel_overdue_restart_and_otel_sdk() {
    let mut coll = start();
    let token = coll.admin_token();
    let now = now_ms() as f64 / 1000.0;
    // SQ-E2E-1 stopped at charged 3 h ago (deadline for scheduled: 2 h) → overdue.
    let batch = json!([
        {"flow": "检查申请单", "key": "SQ-E2E-1", "step": "ordered", "time": now - 11_000.0, "campus": "本院", "system": "HIS"},
        {"flow": "检查申请单", "key": "SQ-E2E-1", "step": "charged", "time": now - 10_800.0, "campus": "本院", "system": "收费系统"},
        {"flow": "检查申请单", "key": "SQ-E2E-2", "step": "ordered", "time": "not a time"},
        {"flow": "检查申请单", "step": "ordered", "time": now},
        {"flow": "检查申请单", "key": "SQ-E2E-3", "step": "ordered", "time": now - 60.0, "campus": "南沙", "system": "HIS"}
    ]);
    let (status, body) = post_events(&coll, &token, &batch);
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["data"]["accepted"], 3, "{body}");
    let rejected: Vec<u64> =
        body["data"]["rejected"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(rejected, vec![2, 3]);

    let tl = get(&coll, &token, "/api/v1/flows/keys/SQ-E2E-1");
    assert_eq!(tl["data"][0]["overdue"], true, "{tl}");
    assert_eq!(tl["data"][0]["steps"][2]["state"], "overdue", "{tl}");
    let funnel = get(&coll, &token, &format!("/api/v1/flows/{}/funnel", enc("检查申请单")));
    assert_eq!(funnel["data"]["keys"], 2, "{funnel}");
    assert_eq!(funnel["data"]["steps"][1]["reached"], 1, "{funnel}");

    let client = coll.client(&token);
    let q = r#"tingzhen_flow_overdue{flow="检查申请单",step="scheduled",campus="本院"}"#;
    wait::until_60s(&format!("{q} == 1"), |last| {
        let r = client.query(q, now_ms());
        *last = format!("{r:?}");
        (r.vector().values().next().map(|v| v.1) == Some(1.0)).then_some(())
    });

    // Restart: the open keys are back, a resent batch is all duplicates.
    coll.stop();
    coll.start();
    let overdue = get(&coll, &token, "/api/v1/flows/overdue");
    assert_eq!(overdue["data"]["total"], 1, "{overdue}");
    assert_eq!(overdue["data"]["keys"][0]["key"], "SQ-E2E-1");
    let (status, body) = post_events(&coll, &token, &json!([batch[0], batch[1], batch[4]]));
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["data"]["accepted"].clone(), body["data"]["duplicates"].clone()), (json!(0), json!(3)));

    // kill -9 right after an acknowledged batch: the batch's key states are back after the
    // restart (SQ-E2E-3 moved on, SQ-E2E-4 is new), and resending it is all duplicates.
    let acked = json!([
        {"flow": "检查申请单", "key": "SQ-E2E-3", "step": "charged", "time": now - 30.0, "campus": "南沙", "system": "收费系统"},
        {"flow": "检查申请单", "key": "SQ-E2E-4", "step": "ordered", "time": now - 20.0, "campus": "黄埔", "system": "HIS"},
        {"flow": "检查申请单", "key": "SQ-E2E-4", "step": "charged", "time": now - 10.0, "campus": "黄埔", "system": "收费系统"}
    ]);
    let (status, body) = post_events(&coll, &token, &acked);
    assert_eq!((status, body["data"]["accepted"].clone()), (200, json!(3)), "{body}");
    coll.kill9();
    coll.start();
    for key in ["SQ-E2E-3", "SQ-E2E-4"] {
        let tl = get(&coll, &token, &format!("/api/v1/flows/keys/{key}"));
        let k = &tl["data"][0];
        assert_eq!((k["state"].clone(), k["steps"][1]["state"].clone()), (json!("open"), json!("reached")), "{tl}");
        assert_eq!(k["steps"][2]["state"], "awaited", "{tl}");
    }
    let (status, body) = post_events(&coll, &token, &acked);
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["data"]["accepted"].clone(), body["data"]["duplicates"].clone()), (json!(0), json!(3)));
    let funnel = get(&coll, &token, &format!("/api/v1/flows/{}/funnel", enc("检查申请单")));
    assert_eq!((funnel["data"]["keys"].clone(), funnel["data"]["steps"][1]["reached"].clone()), (json!(3), json!(3)));

    // Spans from the OpenTelemetry Python SDK with its OTLP/HTTP (protobuf) exporter.
    let script = r#"
import sys
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.trace import Status, StatusCode
url, token = sys.argv[1], sys.argv[2]
tp = TracerProvider(resource=Resource.create({"service.name": "RIS", "hospital.campus": "东院"}))
tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url + "/v1/traces", headers={"Authorization": "Bearer " + token})))
tr = tp.get_tracer("e2e")
with tr.start_as_current_span("ordered", attributes={"flow.name": "检查申请单", "flow.key": "OT-E2E-1", "flow.urgency": "急"}):
    pass
with tr.start_as_current_span("charge", attributes={"flow.name": "检查申请单", "flow.key": "OT-E2E-1", "flow.step": "charged"}) as s:
    s.set_status(Status(StatusCode.ERROR))
tp.shutdown()
"#;
    let out = Command::new("python3")
        .args(["-c", script, &coll.base_url(), &token])
        .output()
        .expect("python3 with opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http (pip) is required");
    assert!(out.status.success(), "OTel SDK script failed: {}", String::from_utf8_lossy(&out.stderr));
    let tl = get(&coll, &token, "/api/v1/flows/keys/OT-E2E-1");
    let k = &tl["data"][0];
    assert_eq!((k["campus"].as_str(), k["system"].as_str()), (Some("东院"), Some("RIS")), "{tl}");
    assert_eq!(k["steps"][0]["state"], "reached", "{tl}");
    assert_eq!(k["steps"][1]["state"], "error", "{tl}");
    assert_eq!(k["events"].as_array().unwrap().len(), 2, "{tl}");
}

#[test]
fn demo_traffic_feeds_a_collector_over_http() {
    let coll = start();
    let token = coll.admin_token();
    let mut child = Command::new(bins::tingzhen())
        .args(["demo", "traffic", "--url", &coll.base_url(), "--token", &token, "--rate", "120", "--backfill", "3h"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tingzhen demo traffic");
    let client = coll.client(&token);
    let q = "sum(tingzhen_flow_overdue)";
    let found = wait::until(
        &format!("{q} > 0 from demo traffic"),
        Duration::from_secs(90),
        Duration::from_millis(500),
        |last| {
            if let Ok(Some(st)) = child.try_wait() {
                *last = format!("demo traffic exited early: {st}");
                return Some(false);
            }
            let r = client.query(q, now_ms());
            *last = format!("{r:?}");
            r.vector().values().next().filter(|v| v.1 > 0.0).map(|_| true)
        },
    );
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(found, "demo traffic exited early: {}", String::from_utf8_lossy(&out.stderr));
    let map = get(&coll, &token, "/api/v1/flows/map?from=0");
    assert!(map["data"]["edges"].as_array().unwrap().len() >= 5, "{map}");
    let campuses = get(&coll, &token, "/api/v1/interfaces?from=0");
    assert_eq!(campuses["data"]["by_campus"].as_object().unwrap().len(), 4, "{campuses}");
}

/// The "flow step overdue" alert is a plain PromQL rule over `tingzhen_flow_overdue`: a key
/// stuck at "charged" past its deadline fires it, and the awaited step arriving resolves it.
#[test]
fn a_stuck_key_fires_the_overdue_rule_and_completing_it_resolves() {
    let rules = tempfile::tempdir().unwrap();
    let rule_file = rules.path().join("flows.yml");
    std::fs::write(
        &rule_file,
        "groups:\n  - name: flows\n    interval: 1s\n    rules:\n      - alert: FlowStepOverdue\n        expr: tingzhen_flow_overdue{flow=\"检查申请单\"} > 0\n        labels:\n          severity: warning\n",
    )
    .unwrap();
    let coll = Collector::start_with(CollectorOpts {
        all_targets: true,
        extra_toml: format!(
            "\n[flows]\nmodels_dir = {:?}\ntick = \"1s\"\n\n[alerting.rules]\nfiles = [{:?}]\ndefault_interval = \"1s\"\n",
            models_dir(),
            rule_file.display().to_string()
        ),
        ..Default::default()
    });
    let token = coll.admin_token();
    let now = now_ms() as f64 / 1000.0;
    let stuck = json!([
        {"flow": "检查申请单", "key": "SQ-ALERT-1", "step": "ordered", "time": now - 11_000.0, "campus": "东院", "system": "HIS"},
        {"flow": "检查申请单", "key": "SQ-ALERT-1", "step": "charged", "time": now - 10_800.0, "campus": "东院", "system": "收费系统"}
    ]);
    assert_eq!(post_events(&coll, &token, &stuck).0, 200);
    let firing = |last: &mut String| -> bool {
        let r = coll.http().get(&coll.url("/api/v1/alerts"), Some(&token), &[]).unwrap();
        *last = r.body.clone();
        r.json()["data"]["alerts"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["labels"]["alertname"] == "FlowStepOverdue"
                    && x["labels"]["step"] == "scheduled"
                    && x["labels"]["campus"] == "东院"
                    && x["state"] == "firing"
            })
        })
    };
    wait::until_60s("FlowStepOverdue firing for 东院/scheduled", |last| firing(last).then_some(()));
    let done = json!([
        {"flow": "检查申请单", "key": "SQ-ALERT-1", "step": "scheduled", "time": now, "campus": "东院", "system": "预约平台"}
    ]);
    assert_eq!(post_events(&coll, &token, &done).0, 200);
    wait::until_60s("FlowStepOverdue resolved", |last| (!firing(last)).then_some(()));
}
