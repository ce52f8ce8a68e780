//! "Send test message" for a receiver (`POST /api/v1/alerting/receivers/{name}/test`): one real
//! message per channel through the same notifiers as alerts, each channel's outcome answered,
//! nothing queued in the outbox; plus the receivers and routing views the console reads.

mod notify_common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use notify_common::fake;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tingzhen_alerting::api::receivers::TEST_ALERTNAME;
use tingzhen_alerting::{Alerting, AlertingConfig};
use tingzhen_core::db::testing::fresh_db;
use tingzhen_core::query::{InstantSample, MetricsQuery, MetricsQueryError};
use tingzhen_core::token::Scope;
use tower::ServiceExt;

struct NoMetrics;

impl MetricsQuery for NoMetrics {
    fn instant(&self, _expr: &str, _at: i64) -> Result<Vec<InstantSample>, MetricsQueryError> {
        Ok(Vec::new())
    }
}

async fn call(a: &Arc<Alerting>, method: &str, uri: &str, token: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = tingzhen_alerting::api::router(a.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_message_reaches_every_channel_and_each_outcome_is_answered() {
    let good = fake::start().await;
    let broken = fake::start().await;
    broken.state.webhook_broken.store(2, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let token = notify_common::secret(dir.path(), "hook.token", fake::HOOK_TOKEN).file.unwrap();
    let config: AlertingConfig = toml::from_str(&format!(
        r#"
[routing.route]
receiver = "ops"

[[notify.receivers]]
name = "ops"
channels = [{{ type = "webhook", webhook = "itsm" }}]
fallback = [{{ type = "webhook", webhook = "backup" }}]

[notify.webhooks.itsm]
url = "{}/hook"
bearer = {{ file = "{token}" }}

[notify.webhooks.backup]
url = "{}/hook"
bearer = {{ file = "{token}" }}
"#,
        good.url(),
        broken.url()
    ))
    .unwrap();
    let db = Arc::new(fresh_db());
    let admin = db.create_token("admin", &[Scope::Admin], &[]).unwrap().plaintext;
    let reader = db.create_token("reader", &[Scope::Query], &[]).unwrap().plaintext;
    let alerting = Arc::new(Alerting::open(&config, db, Arc::new(NoMetrics)).unwrap());

    let (status, _) = call(&alerting, "POST", "/api/v1/alerting/receivers/ops/test", &reader, "{}").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "sending needs the admin scope");
    assert!(good.state.of("hook").is_empty());

    let (status, body) =
        call(&alerting, "POST", "/api/v1/alerting/receivers/ops/test", &admin, r#"{"by":"zhang.san"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let channels = body["data"]["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 2, "{body}");
    assert_eq!(channels[0]["channel"], "webhook:itsm");
    assert_eq!(channels[0]["role"], "primary");
    assert_eq!(channels[0]["ok"], true, "{body}");
    assert_eq!(channels[1]["channel"], "webhook:backup");
    assert_eq!(channels[1]["role"], "fallback");
    assert_eq!(channels[1]["ok"], false);
    assert!(channels[1]["error"].as_str().unwrap().contains("rejected"), "{body}");
    assert_eq!(body["data"]["ok"], false, "one channel failed");

    let got = good.state.of("hook");
    assert_eq!(got.len(), 1, "exactly one test message on the working channel");
    good.state.assert_clean();
    assert_eq!(got[0].body["receiver"], "ops");
    assert_eq!(got[0].body["alerts"][0]["labels"]["alertname"], TEST_ALERTNAME);
    let desc = got[0].body["alerts"][0]["annotations"]["description"].as_str().unwrap();
    assert!(desc.contains("zhang.san"), "{desc}");
    assert!(
        alerting.outbox().unwrap().deliveries(0, i64::MAX).unwrap().is_empty(),
        "a test is not an alert notification: nothing in the outbox"
    );

    let (status, body) = call(&alerting, "POST", "/api/v1/alerting/receivers/nobody/test", &admin, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("nobody"), "{body}");
    let (status, body) = call(&alerting, "POST", "/api/v1/alerting/receivers/ops/test", &admin, "{\"who\":1}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = call(&alerting, "GET", "/api/v1/alerting/receivers", &reader, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "contacts are personal data, not for a query token: {body}");
    let (status, body) = call(&alerting, "GET", "/api/v1/alerting/receivers", &admin, "").await;
    assert_eq!(status, StatusCode::OK);
    let r = &body["data"]["receivers"][0];
    assert_eq!(r["name"], "ops");
    assert_eq!(r["channels"][1]["role"], "fallback");
    assert_eq!(r["channels"][0]["to"][0], "itsm");
    assert_eq!(body["data"]["referenced"][0], "ops");
    let (status, body) = call(&alerting, "GET", "/api/v1/alerting/routing/config", &reader, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["routing"]["route"]["receiver"], "ops", "{body}");
}
