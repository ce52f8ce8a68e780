//! Dead letters and fallback: a channel that keeps failing ends dead after `max_attempts`
//! and the receiver's fallback chain takes over; a rejection is dead at once; an exhausted
//! chain leaves a dead notification. Dead letters are listed and can be retried over the API.

mod notify_common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use notify_common::fake::{self, HOOK_TOKEN, SMS_GATEWAY_TOKEN};
use notify_common::*;
use serde_json::Value;
use std::sync::atomic::Ordering;
use tingzhen_alerting::outbox::{DeliveryState, OutboxError, api_router};
use tower::ServiceExt;

fn chain_config(base: &str, dir: &std::path::Path) -> String {
    let token = secret(dir, "hook.token", HOOK_TOKEN).file.unwrap();
    let gw = secret(dir, "gw.token", SMS_GATEWAY_TOKEN).file.unwrap();
    format!(
        r#"
[retry]
initial_backoff = "50ms"
max_backoff = "200ms"
max_attempts = 3

[webhooks.ops]
url = "{base}/hook"
bearer = {{ file = "{token}" }}

[webhooks.ops2]
url = "{base}/hook"
bearer = {{ file = "{token}" }}

[http_sms]
url = "{base}/sms"
body = '{{"to": {{{{json phones}}}}, "text": {{{{json text}}}}}}'
auth_header = "X-Gateway-Token"
auth_secret = {{ file = "{gw}" }}

[[receivers]]
name = "chain"
channels = [{{ type = "webhook", webhook = "ops" }}]
fallback = [{{ type = "sms", provider = "http", phones = ["13800000000"] }}]

[[receivers]]
name = "doomed"
channels = [{{ type = "webhook", webhook = "ops" }}]
fallback = [{{ type = "webhook", webhook = "ops2" }}]
"#
    )
}

async fn call(app: &axum::Router, method: &str, uri: &str) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_channel_dead_letters_then_fallback_then_api_retry() {
    let fake = fake::start().await;
    fake.state.webhook_broken.store(1, Ordering::SeqCst); // 503 forever
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&chain_config(&fake.url(), dir.path()));
    let run = Running::start(&cfg, test_db());
    let app = api_router(run.outbox.clone());

    assert!(run.outbox.enqueue(&firing("f1", "chain")).unwrap());
    assert!(!run.outbox.enqueue(&firing("f1", "chain")).unwrap(), "same key and receiver: stored once");
    assert!(matches!(run.outbox.enqueue(&firing("f2", "nobody")), Err(OutboxError::UnknownReceiver(_))));
    wait_until("fallback SMS sent", || fake.state.of("sms").len() == 1).await;
    wait_until("fallback recorded", || {
        run.records().iter().any(|d| d.role == "fallback" && d.outcome == DeliveryState::Sent)
    })
    .await;

    let recs = run.records();
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let primary = recs.iter().find(|d| d.role == "primary").unwrap();
    assert_eq!(primary.outcome, DeliveryState::Dead);
    assert_eq!(primary.attempts, 3, "max_attempts");
    assert!(primary.last_error.as_deref().unwrap().contains("503"), "{primary:?}");
    assert_eq!(primary.labels.get("severity").map(String::as_str), Some("critical"));
    assert_eq!(primary.labels.get("campus").map(String::as_str), Some("东院"));
    let fb = recs.iter().find(|d| d.role == "fallback").unwrap();
    assert_eq!((fb.kind.as_str(), fb.channel.as_str()), ("sms_http", "sms_http"));
    assert!(fake.state.of("sms")[0].body["text"].as_str().unwrap().contains("DiskFull"));

    let (s, dead) = call(&app, "GET", "/api/v1/alerting/dead-letters?from=0").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(dead["data"].as_array().unwrap().len(), 1);
    assert_eq!(dead["data"][0]["delivery_id"], primary.delivery_id);
    let (_, receipts) = call(&app, "GET", "/api/v1/alerting/receipts?from=0").await;
    assert_eq!(receipts["data"][0]["kind"], "sms_http");
    let (_, detail) = call(&app, "GET", &format!("/api/v1/alerting/notifications/{}", primary.notification_id)).await;
    assert_eq!(detail["data"]["state"], "delivered");
    assert_eq!(detail["data"]["deliveries"][0]["attempt_log"].as_array().unwrap().len(), 3);
    let (_, list) = call(&app, "GET", "/api/v1/alerting/notifications?from=0").await;
    assert_eq!(list["data"][0]["deliveries"].as_array().unwrap().len(), 2);

    // The webhook is back; an operator retries the dead letter.
    fake.state.webhook_broken.store(0, Ordering::SeqCst);
    let (s, _) = call(&app, "POST", &format!("/api/v1/alerting/dead-letters/{}/retry", primary.delivery_id)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&app, "POST", &format!("/api/v1/alerting/dead-letters/{}/retry", fb.delivery_id)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a sent delivery is not a dead letter");
    wait_until("retried dead letter delivered", || fake.state.of("hook").len() == 1).await;
    wait_until("all sent", || run.records().iter().all(|d| d.outcome == DeliveryState::Sent)).await;
    run.stop().await;
    fake.state.assert_clean();
    assert_eq!(fake.state.of("sms").len(), 1, "the fallback is not sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_everywhere_ends_as_a_dead_notification() {
    let fake = fake::start().await;
    fake.state.webhook_broken.store(2, Ordering::SeqCst); // 400: rejected, not retried
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&chain_config(&fake.url(), dir.path()));
    let run = Running::start(&cfg, test_db());
    let app = api_router(run.outbox.clone());
    run.outbox.enqueue(&firing("d1", "doomed")).unwrap();
    wait_until("both channels dead", || {
        let r = run.records();
        r.len() == 2 && r.iter().all(|d| d.outcome == DeliveryState::Dead)
    })
    .await;
    let recs = run.records();
    assert!(recs.iter().all(|d| d.attempts == 1), "a 400 is not retried: {recs:#?}");
    assert_eq!(recs[1].channel, "webhook:ops2");
    let (_, detail) = call(&app, "GET", &format!("/api/v1/alerting/notifications/{}", recs[0].notification_id)).await;
    assert_eq!(detail["data"]["state"], "dead");
    let (_, dead) = call(&app, "GET", "/api/v1/alerting/dead-letters?from=0").await;
    assert_eq!(dead["data"].as_array().unwrap().len(), 2);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_without_channels_records_the_notification_and_sends_nothing() {
    let cfg = config("[[receivers]]\nname = \"console\"\nchannels = []\n");
    let run = Running::start(&cfg, test_db());
    let app = api_router(run.outbox.clone());
    assert!(run.outbox.enqueue(&firing("n1", "console")).unwrap());
    assert!(!run.outbox.enqueue(&firing("n1", "console")).unwrap(), "stored once");
    let (s, detail) = call(&app, "GET", "/api/v1/alerting/notifications/1").await;
    assert_eq!(s, StatusCode::OK, "{detail}");
    assert_eq!(detail["data"]["state"], "recorded", "finished when stored: {detail}");
    assert_eq!(detail["data"]["deliveries"].as_array().unwrap().len(), 0);
    let (_, list) = call(&app, "GET", "/api/v1/alerting/notifications?from=0").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "listed although it has no deliveries: {list}");
    assert_eq!(list["data"][0]["state"], "recorded");
    assert_eq!(list["data"][0]["receiver"], "console");
    assert!(run.records().is_empty(), "no delivery, no dead letter");
    run.stop().await;
}
