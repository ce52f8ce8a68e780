//! The generic webhook sends an Alertmanager-compatible (version 4) JSON body with the bearer
//! token and an Idempotency-Key header.

mod notify_common;

use notify_common::fake::{self, HOOK_TOKEN};
use notify_common::*;
use tingzhen_alerting::model::{AlertState, NotificationStatus};
use tingzhen_alerting::outbox::dedup_id;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_body_is_alertmanager_compatible() {
    let fake = fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = secret(dir.path(), "hook.token", HOOK_TOKEN).file.unwrap();
    let cfg = config(&format!(
        r#"
[webhooks.ops]
url = "{}/hook"
bearer = {{ file = "{token}" }}
external_url = "https://tingzhen.hospital.example"
max_alerts = 2

[[receivers]]
name = "hook"
channels = [{{ type = "webhook", webhook = "ops" }}]
"#,
        fake.url()
    ));
    let run = Running::start(&cfg, test_db());
    let alerts = vec![
        alert("DiskFull", "critical", "his-db-01", AlertState::Resolved),
        alert("DiskFull", "critical", "his-db-02", AlertState::Resolved),
        alert("DiskFull", "critical", "his-db-03", AlertState::Resolved),
    ];
    let n = notification("wh1", "hook", NotificationStatus::Resolved, alerts);
    run.outbox.enqueue(&n).unwrap();
    wait_until("webhook delivery", || fake.state.of("hook").len() == 1).await;
    run.stop().await;
    fake.state.assert_clean();

    let got = &fake.state.of("hook")[0];
    assert_eq!(got.headers["idempotency-key"], dedup_id("wh1", "hook", "webhook:ops"));
    assert_eq!(got.headers["content-type"], "application/json");
    let b = &got.body;
    assert_eq!(b["version"], "4");
    assert_eq!(b["status"], "resolved");
    assert_eq!(b["receiver"], "hook");
    assert_eq!(b["groupKey"], n.group_key);
    assert_eq!(b["groupLabels"], serde_json::json!({"alertname": "DiskFull"}));
    assert_eq!(
        b["commonLabels"],
        serde_json::json!({"alertname": "DiskFull", "campus": "东院", "severity": "critical"}),
        "instance differs, so it is not common"
    );
    assert_eq!(b["commonAnnotations"]["summary"], "磁盘使用率超过 90%");
    assert_eq!(b["externalURL"], "https://tingzhen.hospital.example");
    assert_eq!(b["truncatedAlerts"], 1);
    let a = &b["alerts"][0];
    assert_eq!(b["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(a["status"], "resolved");
    assert_eq!(a["labels"]["instance"], "his-db-01");
    assert_eq!(a["startsAt"], "2025-11-26T01:00:00.000Z");
    assert_eq!(a["endsAt"], "2025-11-26T01:05:00.000Z");
    assert_eq!(a["fingerprint"], n.alerts[0].fingerprint());
    assert!(a["generatorURL"].is_string());
}
