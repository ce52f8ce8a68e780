//! Email over STARTTLS and implicit TLS to a real aiosmtpd with a certificate from a private
//! CA: delivered when `ca_file` names that CA, refused (and retried, never sent in clear) when
//! it does not — certificate verification is always on.

mod notify_common;

use notify_common::*;
use std::path::Path;
use tingzhen_alerting::outbox::DeliveryState;

fn tls_config(port: u16, security: &str, ca: Option<&Path>) -> String {
    let ca_line = ca.map(|p| format!("ca_file = \"{}\"\n", p.display())).unwrap_or_default();
    format!(
        r#"
[smtp]
host = "127.0.0.1"
port = {port}
security = "{security}"
from = "tingzhen <alerts@hospital.example>"
{ca_line}
[retry]
initial_backoff = "100ms"
max_backoff = "300ms"
max_attempts = 1000

[[receivers]]
name = "oncall"
channels = [{{ type = "email", to = ["ops@hospital.example"] }}]
"#
    )
}

async fn deliver_one(cfg: &str, smtp: &SmtpServer) {
    let run = Running::start(&config(cfg), test_db());
    run.outbox.enqueue(&firing("tls1", "oncall")).unwrap();
    wait_until("email over TLS", || smtp.messages().len() == 1).await;
    wait_until("receipt", || run.records().iter().all(|d| d.outcome == DeliveryState::Sent)).await;
    run.stop().await;
    assert_eq!(smtp.messages()[0].subject, "[严重] DiskFull · 东院 · his-db-01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_the_intranet_ca_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let port = free_port();
    let (cert, key) = (p.cert.to_str().unwrap(), p.key.to_str().unwrap());
    let smtp = SmtpServer::start_with(port, &dir.path().join("mail"), &["--tlscert", cert, "--tlskey", key]);
    deliver_one(&tls_config(port, "starttls", Some(&p.ca)), &smtp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_with_the_intranet_ca_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let port = free_port();
    let (cert, key) = (p.cert.to_str().unwrap(), p.key.to_str().unwrap());
    let smtp = SmtpServer::start_with(port, &dir.path().join("mail"), &["--smtpscert", cert, "--smtpskey", key]);
    deliver_one(&tls_config(port, "tls", Some(&p.ca)), &smtp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_certificate_is_refused_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let port = free_port();
    let (cert, key) = (p.cert.to_str().unwrap(), p.key.to_str().unwrap());
    let smtp = SmtpServer::start_with(port, &dir.path().join("mail"), &["--tlscert", cert, "--tlskey", key]);
    let run = Running::start(&config(&tls_config(port, "starttls", None)), test_db());
    run.outbox.enqueue(&firing("tls2", "oncall")).unwrap();
    wait_until("several refused attempts", || run.records().iter().all(|d| d.attempts >= 3)).await;
    let r = run.records();
    run.stop().await;
    assert_ne!(r[0].outcome, DeliveryState::Sent);
    let err = r[0].last_error.clone().unwrap_or_default().to_lowercase();
    assert!(err.contains("certificate") || err.contains("issuer") || err.contains("tls"), "{err}");
    assert!(smtp.messages().is_empty(), "nothing may be delivered over an unverified connection");
}
