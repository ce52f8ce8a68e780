//! SMS against local servers that recompute the providers' signatures: Aliyun SendSms (RPC,
//! HMAC-SHA1) and Tencent Cloud SendSms (TC3-HMAC-SHA256), with template variables cut to the
//! per-variable limits; and a generic HTTP gateway filled from the configured body template.

mod notify_common;

use notify_common::fake::{self, ALI_ID, ALI_SECRET, SMS_GATEWAY_TOKEN, TC_APP, TC_ID, TC_KEY};
use notify_common::*;
use tingzhen_alerting::model::{AlertState, NotificationStatus};
use tingzhen_alerting::outbox::DeliveryState;

fn sms_config(base: &str, dir: &std::path::Path) -> String {
    let s = |n: &str, v: &str| secret(dir, n, v).file.unwrap();
    format!(
        r#"
[retry]
initial_backoff = "100ms"
max_attempts = 3

[aliyun_sms]
access_key_id = {{ file = "{ali_id}" }}
access_key_secret = {{ file = "{ali_secret}" }}
sign_name = "某某医院"
template_code = "SMS_465123"
endpoint = "{base}"

[tencent_sms]
secret_id = {{ file = "{tc_id}" }}
secret_key = {{ file = "{tc_key}" }}
sdk_app_id = "{TC_APP}"
sign_name = "某某医院"
template_id = "1234567"
endpoint = "{base}"

[http_sms]
url = "{base}/sms"
body = '{{"mobiles": {{{{json phones}}}}, "content": {{{{json text}}}}, "ref": {{{{json dedup_id}}}}}}'
auth_header = "X-Gateway-Token"
auth_secret = {{ file = "{gw}" }}
max_chars = 40

[[receivers]]
name = "ali"
channels = [{{ type = "sms", provider = "aliyun", phones = ["13800000000", "+85261234567"] }}]

[[receivers]]
name = "tc"
channels = [{{ type = "sms", provider = "tencent", phones = ["13800000000"] }}]

[[receivers]]
name = "gw"
channels = [{{ type = "sms", provider = "http", phones = ["13800000000", "13900000000"] }}]
"#,
        ali_id = s("ali.id", ALI_ID),
        ali_secret = s("ali.secret", ALI_SECRET),
        tc_id = s("tc.id", TC_ID),
        tc_key = s("tc.key", TC_KEY),
        gw = s("gw.token", SMS_GATEWAY_TOKEN),
    )
}

/// An alert name longer than every provider's variable limit, in Chinese.
const LONG_NAME: &str = "核心数据库主库连接池耗尽导致门诊挂号与住院收费接口大面积超时告警请值班人员立即处理";

fn long_notification(key: &str, receiver: &str) -> tingzhen_alerting::model::Notification {
    notification(
        key,
        receiver,
        NotificationStatus::Firing,
        vec![alert(LONG_NAME, "critical", "his-db-01", AlertState::Firing)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliyun_tencent_and_http_sms_are_signed_and_within_limits() {
    let fake = fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sms_config(&fake.url(), dir.path()));
    let run = Running::start(&cfg, test_db());
    for (k, r) in [("s1", "ali"), ("s2", "tc"), ("s3", "gw"), ("s4", "ali")] {
        assert!(run.outbox.enqueue(&long_notification(k, r)).unwrap());
    }
    wait_until("four SMS deliveries finished", || {
        let r = run.records();
        r.len() == 4 && r.iter().all(|d| matches!(d.outcome, DeliveryState::Sent | DeliveryState::Dead))
    })
    .await;
    let records = run.records();
    run.stop().await;
    fake.state.assert_clean();
    assert!(records.iter().all(|d| d.outcome == DeliveryState::Sent), "{records:#?}");

    let ali = fake.state.of("aliyun");
    assert_eq!(ali.len(), 2, "two Aliyun sends, each with its own nonce (the fake rejects reuse)");
    let q = &ali[0].query;
    assert_eq!(q["PhoneNumbers"], "13800000000,85261234567");
    assert_eq!(q["SignName"], "某某医院");
    assert_eq!(q["TemplateCode"], "SMS_465123");
    let alert_param = ali[0].body["alert"].as_str().unwrap();
    assert_eq!(alert_param.chars().count(), 35, "cut to Aliyun's 35-character limit: {alert_param}");
    assert!(alert_param.ends_with('…') && LONG_NAME.starts_with(alert_param.trim_end_matches('…')));
    assert_eq!(ali[0].body["status"], "告警");
    assert_eq!(ali[0].body["time"], "2025-11-26 09:01:00");
    let receipt = records.iter().find(|d| d.receiver == "ali").unwrap().receipt.clone().unwrap();
    assert!(receipt.contains("BizId 900619746936498440^0"), "{receipt}");

    let tc = fake.state.of("tencent");
    assert_eq!(tc.len(), 1);
    let b = &tc[0].body;
    assert_eq!(b["PhoneNumberSet"], serde_json::json!(["+8613800000000"]));
    assert_eq!(b["TemplateId"], "1234567");
    let params: Vec<&str> = b["TemplateParamSet"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(params[0].chars().count(), 12, "cut to the configured 12 characters: {}", params[0]);
    assert_eq!(params[1], "告警");
    assert!(b["SessionContext"].as_str().is_some_and(|s| s.len() == 32));

    let gw = fake.state.of("sms");
    assert_eq!(gw.len(), 1);
    assert_eq!(gw[0].body["mobiles"], serde_json::json!(["13800000000", "13900000000"]));
    let text = gw[0].body["content"].as_str().unwrap();
    assert_eq!(text.chars().count(), 40, "{text}");
    assert!(text.starts_with("【告警】严重 核心数据库"), "{text}");
}

/// The fake's checks can fail: signing with the wrong secrets is caught by both signature
/// recomputations, and the rejection ends the delivery as a dead letter at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_fail_the_signature_checks() {
    let fake = fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = sms_config(&fake.url(), dir.path());
    secret(dir.path(), "ali.secret", "not-the-secret");
    secret(dir.path(), "tc.key", "not-the-key");
    let run = Running::start(&config(&text), test_db());
    run.outbox.enqueue(&long_notification("bad1", "ali")).unwrap();
    run.outbox.enqueue(&long_notification("bad2", "tc")).unwrap();
    wait_until("both dead", || {
        let r = run.records();
        r.len() == 2 && r.iter().all(|d| d.outcome == DeliveryState::Dead)
    })
    .await;
    let records = run.records();
    run.stop().await;
    let v = fake.state.violations.lock().clone();
    assert!(v.iter().any(|m| m.starts_with("aliyun: signature")), "{v:?}");
    assert!(v.iter().any(|m| m.starts_with("tencent: signature")), "{v:?}");
    assert!(records.iter().all(|d| d.attempts == 1), "rejections are not retried: {records:#?}");
    assert!(fake.state.of("aliyun").is_empty() && fake.state.of("tencent").is_empty());
}
