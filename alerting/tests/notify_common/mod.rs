//! Shared helpers for the notifier and outbox tests: a real SMTP server (python3-aiosmtpd,
//! storing into a Maildir), a local HTTP server that checks the documented WeChat Work,
//! Aliyun SMS, Tencent Cloud SMS, webhook and HTTP SMS request formats — recomputing the
//! signatures with its own code, written from the providers' documents — and sample alerts.
#![allow(dead_code)]

pub mod fake;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tingzhen_alerting::model::{Alert, AlertSource, AlertState, LabelMap, Notification, NotificationStatus};
use tingzhen_alerting::notify::NotifyConfig;
use tingzhen_alerting::outbox::{DeliveryRecord, Outbox};
use tingzhen_core::config::SecretRef;
use tingzhen_core::db::Db;
use tingzhen_core::db::testing::{TestStore, fresh_db};
use tokio::sync::watch;

/// A python3 that has aiosmtpd. Fails the test loudly when there is none.
pub fn python() -> String {
    for p in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return p.to_string();
        }
    }
    panic!("python3 with aiosmtpd is required (apt-get install -y python3-aiosmtpd)");
}

/// A free loopback port (see `tingzhen_core::testing`).
pub fn free_port() -> u16 {
    tingzhen_core::testing::free_loopback_port()
}

/// `python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Mailbox DIR`.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
}

impl SmtpServer {
    pub fn start(port: u16, maildir: &Path) -> Self {
        Self::start_with(port, maildir, &[])
    }

    /// With extra aiosmtpd options (`--tlscert`/`--tlskey` for STARTTLS, `--smtpscert`/
    /// `--smtpskey` for implicit TLS).
    pub fn start_with(port: u16, maildir: &Path, extra: &[&str]) -> Self {
        let py = python();
        let child = Command::new(&py)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(extra)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, maildir: maildir.to_path_buf() }
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every message received so far, decoded by Python's email package.
    pub fn messages(&self) -> Vec<Mail> {
        read_maildir(&self.maildir)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Mail {
    pub subject: String,
    pub body: String,
    pub message_id: String,
    pub to: String,
    pub from: String,
}

const DECODE: &str = r#"
import email, email.policy, json, os, sys
out = []
d = os.path.join(sys.argv[1], "new")
for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
    with open(os.path.join(d, name), "rb") as f:
        m = email.message_from_binary_file(f, policy=email.policy.default)
    out.append({"subject": str(m["subject"]), "body": m.get_content(), "message_id": str(m["message-id"]),
                "to": str(m["to"]), "from": str(m["from"])})
print(json.dumps(out))
"#;

pub fn read_maildir(dir: &Path) -> Vec<Mail> {
    let out = Command::new(python()).args(["-c", DECODE]).arg(dir).output().expect("python decode");
    assert!(out.status.success(), "decoding mail: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls `f` until true; panics naming `what` after two minutes (generous: no timing claims).
pub async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> LabelMap {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn alert(name: &str, severity: &str, instance: &str, state: AlertState) -> Alert {
    Alert {
        labels: labels(&[("alertname", name), ("severity", severity), ("instance", instance), ("campus", "东院")]),
        annotations: labels(&[("summary", "磁盘使用率超过 90%"), ("description", "/data 分区剩余不足 10%")]),
        state,
        starts_at_ms: 1_764_118_800_000,
        ends_at_ms: (state == AlertState::Resolved).then_some(1_764_119_100_000),
        value: 93.5,
        source: AlertSource::Rule("disk".into()),
    }
}

pub fn notification(key: &str, receiver: &str, status: NotificationStatus, alerts: Vec<Alert>) -> Notification {
    Notification {
        idempotency_key: key.to_string(),
        receiver: receiver.to_string(),
        group_key: "{}/{severity=\"critical\"}:{alertname=\"DiskFull\"}".into(),
        group_labels: labels(&[("alertname", "DiskFull")]),
        status,
        alerts,
        created_at_ms: 1_764_118_860_000,
        escalation_level: 0,
    }
}

pub fn firing(key: &str, receiver: &str) -> Notification {
    notification(
        key,
        receiver,
        NotificationStatus::Firing,
        vec![alert("DiskFull", "critical", "his-db-01", AlertState::Firing)],
    )
}

/// A secret in a file (tests cannot set environment variables safely).
pub fn secret(dir: &Path, name: &str, value: &str) -> SecretRef {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    SecretRef::file(p.to_str().unwrap())
}

pub fn config(toml_text: &str) -> NotifyConfig {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("test config: {e}\n{toml_text}"))
}

/// A running outbox: stop it with `stop().await`.
pub struct Running {
    pub outbox: Arc<Outbox>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn start(cfg: &NotifyConfig, db: Arc<Db>) -> Self {
        let outbox = Arc::new(Outbox::open(cfg, db).expect("outbox opens"));
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(outbox.clone().run(rx));
        Self { outbox, stop, task }
    }

    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }

    /// Simulates the process dying: the loop and its in-flight sends are dropped without
    /// recording anything, as after a kill.
    pub fn crash(self) {
        self.task.abort();
    }

    pub fn records(&self) -> Vec<DeliveryRecord> {
        self.outbox.deliveries(0, i64::MAX).unwrap()
    }
}

/// A fresh store for one test: SQLite in memory, or a PostgreSQL schema of its own when
/// `TINGZHEN_TEST_DATABASE_URL` is set.
pub fn test_db() -> Arc<Db> {
    Arc::new(fresh_db())
}

/// Opens (again) a store that outlives its handles, for restart tests.
pub fn open_db(store: &TestStore) -> Arc<Db> {
    Arc::new(store.open())
}

/// A private CA and a leaf for 127.0.0.1/localhost, as PEM files.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "hospital intranet test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "mail relay");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let p = Pki { ca: dir.join("ca.pem"), cert: dir.join("smtp.pem"), key: dir.join("smtp.key") };
    std::fs::write(&p.ca, ca_cert.pem()).unwrap();
    std::fs::write(&p.cert, leaf_cert.pem()).unwrap();
    std::fs::write(&p.key, leaf_key.serialize_pem()).unwrap();
    p
}
