//! Router tests without a socket (`oneshot`): access control, ingest validation, the query API
//! shapes and the error mapping, on the real engine in a temp directory.

use super::*;
use crate::config::{InventoryConfig, QueryConfig, StorageConfig};
use crate::{Collector, CollectorSettings};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use tingzhen_core::db::Db;
use tingzhen_core::token::parse_allow;
use tingzhen_core::{Labels, Sample, TimeSeries, remote_write};
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    router: Router,
    db: Arc<Db>,
    admin: String,
}

fn fixture(max_body_bytes: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(&dir.path().join("tingzhen.db")).unwrap());
    let settings = CollectorSettings {
        storage: StorageConfig { data_dir: dir.path().display().to_string(), ..StorageConfig::default() },
        query: QueryConfig::default(),
        inventory: InventoryConfig::default(),
        max_body_bytes,
    };
    let collector = Collector::open(&settings, db.clone()).unwrap();
    let admin = db.create_token("admin", &[Scope::Admin], &[]).unwrap().plaintext;
    Fixture { router: collector.router(), _dir: dir, db, admin }
}

fn peer() -> ConnectInfo<SocketAddr> {
    ConnectInfo("127.0.0.1:40000".parse().unwrap())
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let mut req = req;
    req.extensions_mut().insert(peer());
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec();
    (status, body)
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)))
}

fn get(path: &str, token: &str) -> Request<Body> {
    Request::get(path).header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap()
}

fn post(path: &str, token: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path).header("authorization", format!("Bearer {token}")).body(body.into()).unwrap()
}

fn sample_series(now: i64) -> Vec<TimeSeries> {
    vec![TimeSeries::new(
        Labels::from_pairs([("__name__", "node_load1"), ("host", "his-db-01"), ("campus", "main")]),
        vec![Sample::new(now - 1000, 0.5), Sample::new(now, 0.75)],
    )]
}

#[tokio::test]
async fn health_probes_need_no_token_and_unknown_routes_are_404() {
    let f = fixture(1 << 20);
    assert_eq!(send(&f.router, Request::get("/healthz").body(Body::empty()).unwrap()).await.0, StatusCode::OK);
    assert_eq!(send(&f.router, Request::get("/readyz").body(Body::empty()).unwrap()).await.0, StatusCode::OK);
    let (status, body) = send(&f.router, get("/api/v1/nope", &f.admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json(&body)["status"], "error");
}

#[tokio::test]
async fn access_control_refuses_missing_token_wrong_scope_and_foreign_address() {
    let f = fixture(1 << 20);
    let (status, body) = send(&f.router, Request::get("/api/v1/labels").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&body)["errorType"], "unauthorized");
    assert_eq!(send(&f.router, get("/api/v1/labels", "tz_not_a_token")).await.0, StatusCode::UNAUTHORIZED);

    let ingest_only = f.db.create_token("agent", &[Scope::Ingest], &[]).unwrap().plaintext;
    let (status, body) = send(&f.router, get("/api/v1/labels", &ingest_only)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(json(&body)["error"].as_str().unwrap().contains("query scope"));

    let elsewhere = f.db.create_token("lab", &[Scope::Query], &[parse_allow("10.0.0.0/8").unwrap()]).unwrap().plaintext;
    let (status, body) = send(&f.router, get("/api/v1/labels", &elsewhere)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(json(&body)["error"].as_str().unwrap().contains("allowlist"));

    let query = f.db.create_token("screen", &[Scope::Query], &[parse_allow("127.0.0.0/8").unwrap()]).unwrap().plaintext;
    assert_eq!(send(&f.router, get("/api/v1/labels", &query)).await.0, StatusCode::OK);
    f.db.revoke_token("screen").unwrap();
    assert_eq!(send(&f.router, get("/api/v1/labels", &query)).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn remote_write_then_query() {
    let f = fixture(1 << 20);
    let now = tingzhen_core::now_ms();
    let (status, body) =
        send(&f.router, post("/api/v1/write", &f.admin, remote_write::encode(&sample_series(now)))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{}", String::from_utf8_lossy(&body));

    let q = format!("/api/v1/query?query=node_load1%7Bhost%3D%22his-db-01%22%7D&time={}", now as f64 / 1000.0);
    let (status, body) = send(&f.router, get(&q, &f.admin)).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["value"][1], "0.75");
    assert_eq!(v["data"]["result"][0]["metric"]["campus"], "main");

    let (_, body) = send(&f.router, get("/api/v1/label/host/values", &f.admin)).await;
    assert_eq!(json(&body)["data"], serde_json::json!(["his-db-01"]));
    let (_, body) = send(&f.router, get("/api/v1/series?match[]=node_load1", &f.admin)).await;
    assert_eq!(json(&body)["data"][0]["host"], "his-db-01");

    let r = format!(
        "/api/v1/query_range?query=node_load1&start={}&end={}&step=1",
        (now - 1000) as f64 / 1000.0,
        now as f64 / 1000.0
    );
    let (status, body) = send(&f.router, get(&r, &f.admin)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["data"]["resultType"], "matrix");
}

#[tokio::test]
async fn bad_ingest_is_refused_whole_and_named() {
    let f = fixture(4096);
    let now = tingzhen_core::now_ms();
    let (status, body) = send(&f.router, post("/api/v1/write", &f.admin, b"definitely not snappy".to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json(&body)["error"].as_str().unwrap().contains("snappy"));

    // One good series and one with a bad label name: nothing of the request may be stored.
    let mut batch = sample_series(now);
    batch.push(TimeSeries::new(
        Labels::from_pairs([("__name__", "good_metric"), ("bad-label", "x")]),
        vec![Sample::new(now, 1.0)],
    ));
    let (status, body) = send(&f.router, post("/api/v1/write", &f.admin, remote_write::encode(&batch))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json(&body)["error"].as_str().unwrap().contains("bad-label"));
    let (_, body) = send(&f.router, get("/api/v1/series?match[]=%7B__name__%3D~%22.%2B%22%7D", &f.admin)).await;
    assert_eq!(json(&body)["data"], serde_json::json!([]));

    let (status, body) = send(&f.router, post("/write", &f.admin, "cpu value=1\ncpu value=oops")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json(&body)["error"].as_str().unwrap().contains("line 2"));

    let (status, _) = send(&f.router, post("/api/v1/write", &f.admin, vec![0u8; 8192])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, body) = send(&f.router, post("/write?precision=fortnights", &f.admin, "cpu value=1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json(&body)["error"].as_str().unwrap().contains("precision"));
}

#[tokio::test]
async fn influx_line_protocol_is_queryable() {
    let f = fixture(1 << 20);
    let now_s = tingzhen_core::now_ms() / 1000;
    let line = format!("disk,host=pacs-01,path=/data used_percent=81.5 {now_s}");
    let (status, _) = send(&f.router, post("/api/v2/write?precision=s&org=x&bucket=y", &f.admin, line)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) =
        send(&f.router, get(&format!("/api/v1/query?query=disk_used_percent&time={now_s}"), &f.admin)).await;
    assert_eq!(json(&body)["data"]["result"][0]["value"][1], "81.5");
}

#[tokio::test]
async fn heartbeats_fill_the_inventory() {
    let f = fixture(1 << 20);
    let hb = serde_json::json!({
        "host": "emr-app-01", "hostname": "emr-app-01", "ips": ["10.2.0.7"], "os": "Debian 12", "kernel": "6.1.0",
        "cpus": 8, "memory_bytes": 17179869184u64, "agent_version": "0.1.0", "campus": "huangpu", "role": "app",
        "system": "EMR", "interval_ms": 10000, "boot_time": 1700000000
    });
    let req = Request::post("/api/v1/agents/heartbeat")
        .header("authorization", format!("Bearer {}", f.admin))
        .header("content-type", "application/json")
        .body(Body::from(hb.to_string()))
        .unwrap();
    assert_eq!(send(&f.router, req).await.0, StatusCode::NO_CONTENT);
    let (_, body) = send(&f.router, get("/api/v1/inventory/hosts", &f.admin)).await;
    let hosts = json(&body);
    assert_eq!(hosts["data"][0]["host"], "emr-app-01");
    assert_eq!(hosts["data"][0]["up"], true);

    let mut bad = hb.clone();
    bad["ips"] = serde_json::json!(["not-an-ip"]);
    let (status, body) = send(&f.router, post("/api/v1/agents/heartbeat", &f.admin, bad.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json(&body)["error"].as_str().unwrap().contains("ips"));
}

#[tokio::test]
async fn query_parameter_errors_name_the_parameter() {
    let f = fixture(1 << 20);
    let (status, body) = send(&f.router, get("/api/v1/query_range?query=up&start=1&end=2", &f.admin)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json(&body)["error"].as_str().unwrap().contains("step"));
    let (status, body) = send(&f.router, get("/api/v1/query?query=sum(", &f.admin)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json(&body)["errorType"], "bad_data");
    let (status, body) = send(&f.router, get("/api/v1/series", &f.admin)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json(&body)["error"].as_str().unwrap().contains("match[]"));
    let (status, _) = send(&f.router, get("/api/v1/query?query=up&time=yesterday", &f.admin)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = send(&f.router, get("/metrics", &f.admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("tingzhen_http_requests_total"));
}
