//! Email through a real SMTP server (python3-aiosmtpd): the firing and the resolved message
//! arrive with the localised subject and body, and the Message-ID is the delivery's dedup id.

mod notify_common;

use notify_common::*;
use tingzhen_alerting::model::{AlertState, NotificationStatus};
use tingzhen_alerting::outbox::dedup_id;

fn smtp_config(port: u16) -> String {
    format!(
        r#"
[smtp]
host = "127.0.0.1"
port = {port}
security = "plain"
from = "听诊告警 <alerts@hospital.example>"

[retry]
initial_backoff = "100ms"
max_backoff = "1s"
max_attempts = 1000

[[receivers]]
name = "oncall"
channels = [{{ type = "email", to = ["ops@hospital.example"], cc = ["lead@hospital.example"] }}]

[[receivers]]
name = "oncall-en"
language = "en"
channels = [{{ type = "email", to = ["ops@hospital.example"] }}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_and_resolved_emails_arrive_with_subject_and_body() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let smtp = SmtpServer::start(free_port(), &maildir);
    let cfg = config(&smtp_config(smtp.port));
    let run = Running::start(&cfg, test_db());

    assert!(run.outbox.enqueue(&firing("k-fire", "oncall")).unwrap());
    let resolved = notification(
        "k-resolved",
        "oncall",
        NotificationStatus::Resolved,
        vec![alert("DiskFull", "critical", "his-db-01", AlertState::Resolved)],
    );
    assert!(run.outbox.enqueue(&resolved).unwrap());
    assert!(run.outbox.enqueue(&firing("k-en", "oncall-en")).unwrap());
    wait_until("three emails", || smtp.messages().len() >= 3).await;
    run.stop().await;

    let mails = smtp.messages();
    assert_eq!(mails.len(), 3, "{mails:#?}");
    let fire = mails.iter().find(|m| m.subject.starts_with("[严重]")).expect("firing email");
    assert_eq!(fire.subject, "[严重] DiskFull · 东院 · his-db-01");
    assert!(fire.body.contains("告警触发：DiskFull"), "{}", fire.body);
    assert!(fire.body.contains("时间：2025-11-26 09:01:00（北京时间）"), "{}", fire.body);
    assert!(fire.body.contains("摘要：磁盘使用率超过 90%"), "{}", fire.body);
    assert!(fire.body.contains("详情：/data 分区剩余不足 10%"), "{}", fire.body);
    assert!(fire.to.contains("ops@hospital.example"), "{}", fire.to);
    assert!(fire.from.contains("alerts@hospital.example"));
    assert_eq!(fire.message_id, format!("<{}@hospital.example>", dedup_id("k-fire", "oncall", "email")));

    let res = mails.iter().find(|m| m.subject.starts_with("[已恢复]")).expect("resolved email");
    assert_eq!(res.subject, "[已恢复] DiskFull · 东院 · his-db-01");
    assert!(res.body.contains("告警已恢复：DiskFull"), "{}", res.body);
    assert!(res.body.contains("结束：2025-11-26 09:05:00（持续 5分0秒）"), "{}", res.body);

    let en = mails.iter().find(|m| m.subject.starts_with("[CRITICAL]")).expect("English email");
    assert_eq!(en.subject, "[CRITICAL] DiskFull · 东院 · his-db-01");
    assert!(en.body.contains("Firing: DiskFull") && en.body.contains("(Asia/Shanghai)"), "{}", en.body);
}
