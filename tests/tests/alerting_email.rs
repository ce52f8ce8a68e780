//! Alerting end to end with the real binary and a real SMTP server (python3-aiosmtpd): a
//! pushed gauge crosses a rule's threshold → an email arrives with the right subject and
//! body; the gauge drops back → a resolved email arrives. The rule group's interval is an
//! hour, so the alert can only come from evaluation on ingest. The time from push to mail is
//! printed (a figure for docs/benchmarks.md), never asserted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tingzhen_core::{Labels, Sample, TimeSeries};
use tingzhen_tests::process::Proc;
use tingzhen_tests::{Http, bins, now_ms, ports, wait};

struct Smtp {
    child: Child,
    maildir: PathBuf,
}

impl Smtp {
    fn start(port: u16, maildir: &Path) -> Smtp {
        let server = bins::peer("/usr/bin/aiosmtpd", "python3-aiosmtpd");
        let child = Command::new(server)
            .args(["-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting aiosmtpd");
        wait::until_60s("aiosmtpd listening", |_| std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()));
        Smtp { child, maildir: maildir.to_path_buf() }
    }

    /// (subject, text body) of every message, oldest first, decoded by Python's email package.
    fn messages(&self) -> Vec<(String, String)> {
        const DECODE: &str = r#"
import email, email.policy, json, os, sys
d = os.path.join(sys.argv[1], "new")
out = []
names = sorted(os.listdir(d), key=lambda n: os.path.getmtime(os.path.join(d, n))) if os.path.isdir(d) else []
for n in names:
    with open(os.path.join(d, n), "rb") as f:
        m = email.message_from_binary_file(f, policy=email.policy.default)
    body = m.get_body(preferencelist=("plain",))
    out.append([str(m["subject"]), body.get_content() if body else ""])
print(json.dumps(out))
"#;
        let out = Command::new("python3").args(["-c", DECODE]).arg(&self.maildir).output().expect("python3");
        assert!(out.status.success(), "maildir decode failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("decoded maildir")
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gauge(value: f64) -> TimeSeries {
    let labels = Labels::from_pairs([("__name__", "icu_temperature_celsius"), ("room", "icu-3"), ("campus", "east")]);
    TimeSeries::new(labels, vec![Sample::new(now_ms(), value)])
}

const RULES: &str = r#"
groups:
  - name: ward
    interval: 1h
    rules:
      - alert: ICUTooHot
        expr: icu_temperature_celsius > 40
        labels:
          severity: critical
        annotations:
          summary: "ICU room {{ $labels.room }} is at {{ $value }} degrees"
"#;

#[test]
fn a_threshold_crossing_is_emailed_and_its_resolution_too() {
    let root = tempfile::Builder::new().prefix("tz-alerting-").tempdir().unwrap();
    let maildir = root.path().join("mail");
    let smtp_port = ports::free_addr().port();
    let smtp = Smtp::start(smtp_port, &maildir);
    let data = root.path().join("data");
    let rules = root.path().join("ward.yml");
    std::fs::write(&rules, RULES).unwrap();
    let addr = ports::free_addr();
    let config = root.path().join("tingzhen.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "{addr}"
[storage]
data_dir = {data:?}
[alerting.rules]
files = [{rules:?}]
[alerting.routing.route]
receiver = "icu-oncall"
group_by = ["alertname"]
group_wait = "0s"
group_interval = "1s"
repeat_interval = "4h"
[[alerting.notify.receivers]]
name = "icu-oncall"
language = "en"
channels = [{{ type = "email", to = ["oncall@hospital.example"] }}]
[alerting.notify.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "plain"
from = "tingzhen <alerts@hospital.example>"
"#,
            data = data.display().to_string(),
            rules = rules.display().to_string(),
        ),
    )
    .unwrap();
    let token = Command::new(bins::tingzhen())
        .args(["token", "create", "--name", "e2e", "--scope", "admin", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();

    let mut cmd = Command::new(bins::tingzhen());
    cmd.args(["serve", "--target", "all", "--config"]).arg(&config);
    cmd.env("RUST_LOG", "info");
    let mut server = Proc::spawn("tingzhen-all", cmd, &root.path().join("logs"));
    let http = Http::new();
    let url = |p: &str| format!("http://{addr}{p}");
    wait::until_60s("server ready", |last| {
        server.assert_running();
        match http.get(&url("/readyz"), None, &[]) {
            Ok(r) if r.status == 200 => Some(()),
            other => {
                *last = format!("{other:?}");
                None
            }
        }
    });
    let rules_api = http.get(&url("/api/v1/alerting/rules"), Some(&token), &[]).unwrap().json();
    assert_eq!(rules_api["data"]["groups"][0]["rules"][0]["alert"], "ICUTooHot", "{rules_api}");

    let write = |v: f64| {
        let body = tingzhen_core::remote_write::encode(&[gauge(v)]);
        let r = http.remote_write(&url("/api/v1/write"), Some(&token), &body).unwrap();
        assert!(r.is_success(), "remote write refused: {} {}", r.status, r.body);
    };
    write(36.5);
    let pushed = Instant::now();
    write(41.5);
    let mails = wait::until_60s("the firing email", |last| {
        let m = smtp.messages();
        *last = format!("{m:?}");
        (!m.is_empty()).then_some(m)
    });
    let fired_after = pushed.elapsed();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let (subject, body) = &mails[0];
    assert!(subject.starts_with("[CRITICAL] ICUTooHot"), "subject: {subject}");
    assert!(subject.contains("east"), "the campus is in the subject: {subject}");
    assert!(body.starts_with("Firing: ICUTooHot"), "body: {body}");
    assert!(body.contains("ICU room icu-3 is at 41.5 degrees"), "body: {body}");
    let alerts = http.get(&url("/api/v1/alerting/alerts"), Some(&token), &[("state", "firing")]).unwrap().json();
    assert_eq!(alerts["data"]["alerts"].as_array().unwrap().len(), 1, "{alerts}");

    let cooled = Instant::now();
    write(22.0);
    let mails = wait::until_60s("the resolved email", |last| {
        let m = smtp.messages();
        *last = format!("{m:?}");
        (m.len() >= 2).then_some(m)
    });
    let resolved_after = cooled.elapsed();
    let (subject, body) = &mails[1];
    assert!(subject.starts_with("[RESOLVED] ICUTooHot"), "subject: {subject}");
    assert!(body.starts_with("Resolved: ICUTooHot"), "body: {body}");
    let summary = http.get(&url("/api/v1/alerting/summary"), Some(&token), &[]).unwrap().json();
    let today = &summary["data"]["today"];
    assert_eq!(today["alerts"]["total"], 1, "{summary}");
    assert_eq!(today["alerts"]["resolved"], 1, "{summary}");
    assert_eq!(today["notifications"]["by"]["channel"]["email"], 2, "{summary}");
    eprintln!(
        "alerting e2e: push → firing email {} ms; drop → resolved email {} ms (group_interval 1s)",
        fired_after.as_millis(),
        resolved_after.as_millis()
    );
    // Nothing more is sent while nothing changes.
    assert_eq!(smtp.messages().len(), 2);
    assert!(server.terminate(Duration::from_secs(30)).is_some(), "server did not stop on SIGTERM");
}
