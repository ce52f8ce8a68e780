//! The flows' HTTP API through the real router (oneshot): scopes, model validation errors and
//! versions, a mixed event batch answered per event, OTLP protobuf and JSON, a key's timeline,
//! the funnel, the map, interfaces, and the flow metrics read back through PromQL.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use prost::Message;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use tingzhen_collector::config::{InventoryConfig, QueryConfig, StorageConfig};
use tingzhen_collector::flows::otlp;
use tingzhen_collector::{Collector, CollectorSettings};
use tingzhen_core::token::Scope;
use tower::ServiceExt;

struct Fx {
    _dir: tempfile::TempDir,
    collector: Collector,
    router: Router,
    admin: String,
    ingest: String,
    query: String,
}

fn fixture() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(tingzhen_core::db::testing::fresh_db());
    let settings = CollectorSettings {
        storage: StorageConfig { data_dir: dir.path().display().to_string(), ..StorageConfig::default() },
        query: QueryConfig::default(),
        inventory: InventoryConfig::default(),
        max_body_bytes: 1 << 20,
    };
    let collector = Collector::open(&settings, db.clone()).unwrap();
    let admin = db.create_token("a", &[Scope::Admin], &[]).unwrap().plaintext;
    let ingest = db.create_token("i", &[Scope::Ingest], &[]).unwrap().plaintext;
    let query = db.create_token("q", &[Scope::Query], &[]).unwrap().plaintext;
    Fx { router: collector.router(), collector, _dir: dir, admin, ingest, query }
}

async fn call(fx: &Fx, method: &str, uri: &str, token: &str, ctype: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", ctype)
        .body(Body::from(body))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo::<SocketAddr>("127.0.0.1:40000".parse().unwrap()));
    let resp = fx.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    (status, axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec())
}

async fn json_call(fx: &Fx, method: &str, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let (s, b) = call(fx, method, uri, token, "application/json", body.to_string().into_bytes()).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn model() -> Value {
    json!({"name": "检验申请单", "steps": [
        {"name": "ordered"},
        {"name": "charged", "deadline": "30m"},
        {"name": "reported", "deadline": "4h", "deadline_rules": [{"when": {"urgency": "急"}, "deadline": "1h"}]}
    ]})
}

#[tokio::test]
async fn models_are_validated_versioned_and_guarded_by_scope() {
    let fx = fixture();
    let (s, _) = json_call(&fx, "POST", "/api/v1/flows/models", &fx.query, model()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let mut bad = model();
    bad["steps"][0]["deadline"] = json!("5m");
    let (s, b) = json_call(&fx, "POST", "/api/v1/flows/models", &fx.admin, bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["error"].as_str().unwrap().contains("steps[0].deadline"), "{b}");
    let (s, b) = json_call(&fx, "POST", "/api/v1/flows/models", &fx.admin, json!({"name": "x", "stepz": []})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["error"].as_str().unwrap().contains("stepz"), "{b}");
    let (s, b) = json_call(&fx, "POST", "/api/v1/flows/models", &fx.admin, model()).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["data"]["version"], 1);
    // The same definition again is not a new version; a change is.
    let (s, _) = json_call(&fx, "POST", "/api/v1/flows/models", &fx.admin, model()).await;
    assert_eq!(s, StatusCode::OK);
    let mut m2 = model();
    m2["steps"][1]["deadline"] = json!("20m");
    let uri = format!("/api/v1/flows/models/{}", enc("检验申请单"));
    let (s, b) = json_call(&fx, "PUT", &uri, &fx.admin, m2).await;
    assert_eq!((s, b["data"]["version"].clone()), (StatusCode::CREATED, json!(2)));
    let (s, b) = json_call(&fx, "GET", &format!("{uri}?history=true"), &fx.query, Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["data"].as_array().unwrap().len(), 2);
    let (s, _) = json_call(&fx, "DELETE", &uri, &fx.admin, Value::Null).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = json_call(&fx, "GET", &uri, &fx.query, Value::Null).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn events_otlp_timeline_funnel_map_and_metrics() {
    let fx = fixture();
    json_call(&fx, "POST", "/api/v1/flows/models", &fx.admin, model()).await;
    let iface = json!({"name": "本院-LIS", "system": "LIS", "campus": "本院", "endpoint": "tcp://10.1.0.41:2575", "type": "HL7", "vendor": "杏和"});
    let (s, _) = json_call(&fx, "PUT", &format!("/api/v1/interfaces/{}", enc("本院-LIS")), &fx.admin, iface).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let now = tingzhen_core::now_ms() as f64 / 1000.0;
    let batch = json!([
        {"flow": "检验申请单", "key": "JY001", "step": "ordered", "time": now - 7200.0, "campus": "本院", "system": "HIS", "attributes": {"urgency": "急"}},
        {"flow": "检验申请单", "step": "ordered", "time": now},
        {"flow": "无此流程", "key": "JY002", "step": "ordered", "time": now},
        {"flow": "检验申请单", "key": "JY003", "step": "ordered", "time": "昨天"},
        {"flow": "检验申请单", "key": "JY001", "step": "charged", "time": now - 7000.0, "campus": "本院", "system": "LIS"},
        {"flow": "检验申请单", "key": "JY001", "step": "ordered", "time": now - 7200.0, "campus": "本院", "system": "HIS"}
    ]);
    let (s, b) = json_call(&fx, "POST", "/api/v1/flows/events", &fx.ingest, batch).await;
    assert_eq!(s, StatusCode::MULTI_STATUS, "{b}");
    assert_eq!(b["data"]["accepted"], 2);
    assert_eq!(b["data"]["duplicates"], 1);
    let rejected = b["data"]["rejected"].as_array().unwrap();
    assert_eq!(rejected.iter().map(|r| r["index"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(rejected[0]["error"], "key: missing");
    assert!(rejected[1]["error"].as_str().unwrap().starts_with("flow:"));
    assert!(rejected[2]["error"].as_str().unwrap().starts_with("time:"));
    // A query token may not ingest.
    let (s, _) = json_call(&fx, "POST", "/api/v1/flows/events", &fx.query, json!([])).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // OTLP protobuf: JY004 ordered; OTLP JSON: JY004 charged.
    let ns = (tingzhen_core::now_ms() as u64 - 60_000) * 1_000_000;
    let kv = |k: &str, v: &str| otlp::KeyValue {
        key: k.into(),
        value: Some(otlp::AnyValue { value: Some(otlp::any_value::Value::StringValue(v.into())) }),
    };
    let req = otlp::ExportTraceServiceRequest {
        resource_spans: vec![otlp::ResourceSpans {
            resource: Some(otlp::Resource {
                attributes: vec![kv("service.name", "HIS"), kv("hospital.campus", "黄埔")],
            }),
            scope_spans: vec![otlp::ScopeSpans {
                spans: vec![otlp::Span {
                    name: "ordered".into(),
                    end_time_unix_nano: ns,
                    attributes: vec![kv("flow.name", "检验申请单"), kv("flow.key", "JY004")],
                    ..Default::default()
                }],
            }],
        }],
    };
    let (s, body) = call(&fx, "POST", "/v1/traces", &fx.ingest, "application/x-protobuf", req.encode_to_vec()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(otlp::ExportTraceServiceResponse::decode(body.as_slice()).unwrap().partial_success, None);
    let j = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "LIS"}}]},
        "scopeSpans": [{"spans": [
            {"name": "charge", "endTimeUnixNano": (ns + 1_000_000_000).to_string(), "attributes": [
                {"key": "flow.name", "value": {"stringValue": "检验申请单"}}, {"key": "flow.key", "value": {"stringValue": "JY004"}},
                {"key": "flow.step", "value": {"stringValue": "charged"}}, {"key": "flow.campus", "value": {"stringValue": "黄埔"}}]},
            {"name": "bad", "endTimeUnixNano": ns.to_string(), "attributes": [
                {"key": "flow.name", "value": {"stringValue": "检验申请单"}}, {"key": "flow.key", "value": {"stringValue": "JY005"}},
                {"key": "flow.step", "value": {"stringValue": "nope"}}]}]}]}]});
    let (s, b) = json_call(&fx, "POST", "/v1/traces", &fx.ingest, j).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["partialSuccess"]["rejectedSpans"], "1", "{b}");

    let (s, b) = json_call(&fx, "GET", "/api/v1/flows/keys/JY004", &fx.query, Value::Null).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let k = &b["data"][0];
    assert_eq!((k["campus"].as_str(), k["steps"][1]["state"].as_str()), (Some("黄埔"), Some("reached")));
    assert_eq!(k["steps"][2]["state"], "awaited");
    let (s, _) = json_call(&fx, "GET", "/api/v1/flows/keys/NOPE", &fx.query, Value::Null).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // JY001 (urgent) waits for reported since 7000 s ago with a 1 h deadline: overdue.
    let (_, b) = json_call(&fx, "GET", "/api/v1/flows/overdue", &fx.query, Value::Null).await;
    assert_eq!(b["data"]["total"], 1, "{b}");
    assert_eq!(b["data"]["keys"][0]["key"], "JY001");
    assert_eq!(b["data"]["keys"][0]["awaited_step"], "reported");

    let uri = format!("/api/v1/flows/{}/funnel?from={}&to={}", enc("检验申请单"), now - 86400.0, now);
    let (s, b) = json_call(&fx, "GET", &uri, &fx.query, Value::Null).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["keys"], 2);
    assert_eq!(b["data"]["steps"][1]["reached"], 2);
    let (_, b) = json_call(&fx, "GET", &format!("{uri}&campus={}", enc("黄埔")), &fx.query, Value::Null).await;
    assert_eq!(b["data"]["keys"], 1);

    let (_, b) = json_call(&fx, "GET", "/api/v1/flows/map?from=0", &fx.query, Value::Null).await;
    let edges = b["data"]["edges"].as_array().unwrap();
    assert!(edges.iter().any(|e| e["from"] == "HIS" && e["to"] == "LIS" && e["messages"] == 2), "{b}");

    let (s, _) = json_call(
        &fx,
        "POST",
        "/api/v1/interfaces/volume",
        &fx.ingest,
        json!([{"interface": "本院-LIS", "messages": 40}]),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) =
        json_call(&fx, "POST", "/api/v1/interfaces/volume", &fx.ingest, json!([{"interface": "无", "messages": 1}]))
            .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (_, b) = json_call(&fx, "GET", "/api/v1/interfaces?from=0", &fx.query, Value::Null).await;
    // JY001's charged event went through LIS at 本院 (1) plus 40 pushed.
    assert_eq!(b["data"]["interfaces"][0]["messages"], 41, "{b}");
    assert_eq!(b["data"]["by_campus"]["本院"], 41);

    // Metrics reach the time-series store and PromQL.
    let flows = fx.collector.flows().clone();
    tokio::task::spawn_blocking(move || flows.tick()).await.unwrap().unwrap();
    let q = |expr: &str| format!("/api/v1/query?query={}", enc(expr));
    let (_, b) = json_call(&fx, "GET", &q("sum(tingzhen_flow_events_total)"), &fx.query, Value::Null).await;
    assert_eq!(b["data"]["result"][0]["value"][1], "4", "{b}");
    let (_, b) = json_call(&fx, "GET", &q("tingzhen_flow_overdue > 0"), &fx.query, Value::Null).await;
    let r = &b["data"]["result"][0];
    assert_eq!(r["metric"]["step"], "reported", "{b}");
    assert_eq!(r["metric"]["campus"], "本院");
    assert_eq!(r["metric"]["system"], "LIS");
    let (_, b) =
        json_call(&fx, "GET", &q("sum(tingzhen_flow_step_duration_seconds_count)"), &fx.query, Value::Null).await;
    assert_eq!(b["data"]["result"][0]["value"][1], "2", "{b}");
}
