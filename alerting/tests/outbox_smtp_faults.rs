//! SMTP down for a while: every notification is stored, retried with backoff while the server
//! is away, and delivered exactly once when it is back — none lost, none duplicated.

mod notify_common;

use notify_common::*;
use std::collections::HashSet;
use tingzhen_alerting::outbox::DeliveryState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_outage_is_retried_and_each_notification_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(&format!(
        r#"
[smtp]
host = "127.0.0.1"
port = {port}
security = "plain"
from = "tingzhen <alerts@hospital.example>"
timeout = "5s"

[retry]
initial_backoff = "100ms"
max_backoff = "400ms"
max_attempts = 10000

[[receivers]]
name = "oncall"
channels = [{{ type = "email", to = ["ops@hospital.example"] }}]
"#
    ));
    let run = Running::start(&cfg, test_db());
    const N: usize = 8;
    for i in 0..N {
        assert!(run.outbox.enqueue(&firing(&format!("k{i}"), "oncall")).unwrap());
    }
    // Nothing listens: every delivery fails and is retried, none is dropped.
    wait_until("every delivery retried at least twice", || {
        let r = run.records();
        r.len() == N && r.iter().all(|d| d.attempts >= 2 && d.outcome != DeliveryState::Sent)
    })
    .await;
    let r = run.records();
    assert!(r.iter().all(|d| d.last_error.as_deref().unwrap_or("").contains("SMTP")), "{r:#?}");

    let smtp = SmtpServer::start(port, &dir.path().join("mail"));
    wait_until("all delivered", || run.records().iter().all(|d| d.outcome == DeliveryState::Sent)).await;
    run.stop().await;

    let mails = smtp.messages();
    assert_eq!(mails.len(), N, "exactly one email per notification");
    let ids: HashSet<_> = mails.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(ids.len(), N, "no duplicates");
}
