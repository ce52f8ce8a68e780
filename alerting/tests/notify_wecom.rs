//! WeChat Work against a local server that checks the documented requests: the group robot
//! gets markdown split under 4,096 bytes plus the @-mention text; the application message uses
//! a cached access_token and fetches a new one when the server says it expired (42001).

mod notify_common;

use notify_common::fake::{self, AGENT_ID, CORP_ID, CORP_SECRET, ROBOT_KEY};
use notify_common::*;
use std::sync::atomic::Ordering;
use tingzhen_alerting::model::{AlertState, NotificationStatus};

fn wecom_config(base: &str, dir: &std::path::Path) -> String {
    let key = secret(dir, "robot.key", ROBOT_KEY);
    let corp = secret(dir, "corp.secret", CORP_SECRET);
    format!(
        r#"
[retry]
initial_backoff = "100ms"
max_backoff = "500ms"

[wecom_app]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = {{ file = "{corp}" }}
api_base = "{base}"

[wecom_robots.infra]
key = {{ file = "{key}" }}
api_base = "{base}"

[[receivers]]
name = "robot"
channels = [{{ type = "wecom_robot", robot = "infra", mention_mobiles = ["13800000000"] }}]

[[receivers]]
name = "app"
channels = [{{ type = "wecom_app", users = ["zhangsan", "lisi"], parties = ["2"] }}]
"#,
        corp = corp.file.unwrap(),
        key = key.file.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_markdown_over_4096_bytes_is_split_on_lines() {
    let fake = fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&wecom_config(&fake.url(), dir.path()));
    let run = Running::start(&cfg, test_db());

    let alerts: Vec<_> = (0..60)
        .map(|i| {
            let mut a = alert(&format!("Disk{i:02}"), "warning", &format!("his-app-{i:02}"), AlertState::Firing);
            a.annotations.insert("description".into(), "数据分区使用率持续上升，请尽快清理日志或扩容。".repeat(2));
            a
        })
        .collect();
    let n = notification("big", "robot", NotificationStatus::Firing, alerts);
    assert!(run.outbox.enqueue(&n).unwrap());
    wait_until("robot delivery", || {
        run.records().iter().any(|d| d.outcome == tingzhen_alerting::outbox::DeliveryState::Sent)
    })
    .await;
    run.stop().await;
    fake.state.assert_clean();

    let got = fake.state.of("robot");
    let parts: Vec<String> = got
        .iter()
        .filter(|r| r.body["msgtype"] == "markdown")
        .map(|r| r.body["markdown"]["content"].as_str().unwrap().to_string())
        .collect();
    let total: usize = parts.iter().map(|p| p.len()).sum();
    assert!(total > 4096, "the message must need splitting ({total} bytes)");
    assert!(parts.len() >= 2, "split into {} part(s)", parts.len());
    assert!(parts.iter().all(|p| p.len() <= 4096));
    // Cut on line boundaries: no part starts or ends inside a line of an alert block.
    for p in &parts[1..] {
        assert!(!p.starts_with(' '), "part starts mid-line: {:?}", &p[..40]);
    }
    let all = parts.join("\n");
    let mut last = 0;
    for i in 0..60 {
        let at = all.find(&format!("**Disk{i:02}**")).unwrap_or_else(|| panic!("Disk{i:02} missing"));
        assert!(at >= last, "alerts stay in order");
        last = at;
    }
    assert!(parts[0].starts_with("### <font color=\"warning\">【警告】"), "{}", &parts[0][..80]);
    let mention = got.iter().find(|r| r.body["msgtype"] == "text").expect("mention message");
    assert_eq!(mention.body["text"]["mentioned_mobile_list"], serde_json::json!(["13800000000"]));
}

/// The second piece is refused once (errcode -1, busy): the retry resumes there, so the
/// group never sees the first piece twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_retry_resumes_after_the_accepted_pieces() {
    let fake = fake::start().await;
    fake.state.robot_busy_at.store(2, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&wecom_config(&fake.url(), dir.path()));
    let run = Running::start(&cfg, test_db());
    let alerts: Vec<_> = (0..60)
        .map(|i| {
            alert(&format!("Mem{i:02}"), "critical", &format!("his-app-{i:02}-内存使用率持续过高"), AlertState::Firing)
        })
        .collect();
    run.outbox.enqueue(&notification("parts", "robot", NotificationStatus::Firing, alerts)).unwrap();
    wait_until("robot delivery", || {
        run.records().iter().any(|d| d.outcome == tingzhen_alerting::outbox::DeliveryState::Sent)
    })
    .await;
    let records = run.records();
    run.stop().await;
    fake.state.assert_clean();
    assert_eq!(records[0].attempts, 2, "{records:#?}");
    let got = fake.state.of("robot");
    let markdown: Vec<&str> = got.iter().filter_map(|r| r.body["markdown"]["content"].as_str()).collect();
    assert!(markdown.len() >= 2, "needs several pieces");
    let unique: std::collections::HashSet<&str> = markdown.iter().copied().collect();
    assert_eq!(unique.len(), markdown.len(), "a piece was sent twice");
    assert_eq!(got.iter().filter(|r| r.body["msgtype"] == "text").count(), 1, "one mention message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_message_token_is_cached_and_refreshed_after_expiry() {
    let fake = fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&wecom_config(&fake.url(), dir.path()));
    let run = Running::start(&cfg, test_db());
    let st = fake.state.clone();

    run.outbox.enqueue(&firing("a1", "app")).unwrap();
    wait_until("first app message", || st.of("app").len() == 1).await;
    run.outbox.enqueue(&firing("a2", "app")).unwrap();
    wait_until("second app message", || st.of("app").len() == 2).await;
    assert_eq!(st.gettoken_calls.load(Ordering::SeqCst), 1, "token cached between sends");

    st.expire_token();
    run.outbox.enqueue(&firing("a3", "app")).unwrap();
    wait_until("third app message", || st.of("app").len() == 3).await;
    run.stop().await;
    st.assert_clean();
    assert_eq!(st.gettoken_calls.load(Ordering::SeqCst), 2, "expired token fetched again once");

    let msgs = st.of("app");
    assert_eq!(msgs[0].query["access_token"], "token-1");
    assert_eq!(msgs[2].query["access_token"], "token-2");
    let b = &msgs[0].body;
    assert_eq!(b["touser"], "zhangsan|lisi");
    assert_eq!(b["toparty"], "2");
    assert_eq!(b["enable_duplicate_check"], 1);
    assert!(b["markdown"]["content"].as_str().unwrap().contains("DiskFull"));
    let recs = run_records_sent(&msgs);
    assert_eq!(recs, 3);
}

/// A token is fetched again when its announced lifetime (less the early-refresh margin) has
/// passed, before the server has to refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_token_is_refreshed_when_its_lifetime_ends() {
    let fake = fake::start().await;
    fake.state.token_ttl_s.store(301, Ordering::SeqCst); // 1 s after the 300 s margin
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&wecom_config(&fake.url(), dir.path()));
    let run = Running::start(&cfg, test_db());
    let st = fake.state.clone();
    run.outbox.enqueue(&firing("t1", "app")).unwrap();
    wait_until("first app message", || st.of("app").len() == 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    run.outbox.enqueue(&firing("t2", "app")).unwrap();
    wait_until("second app message", || st.of("app").len() == 2).await;
    run.stop().await;
    st.assert_clean();
    assert_eq!(st.gettoken_calls.load(Ordering::SeqCst), 2);
    assert_eq!(st.of("app")[1].query["access_token"], "token-2");
}

fn run_records_sent(msgs: &[fake::Received]) -> usize {
    msgs.iter().filter(|m| m.body["msgtype"] == "markdown").count()
}
