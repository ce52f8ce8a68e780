//! HTTPS channels verify the server certificate: a webhook behind a private CA is reached when
//! its `ca_file` names that CA and refused (retried, nothing sent) when it does not. The
//! server is Python's http.server wrapped in TLS, so the check is not our own TLS code.

mod notify_common;

use notify_common::fake::HOOK_TOKEN;
use notify_common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tingzhen_alerting::outbox::DeliveryState;

const SERVER: &str = r#"
import http.server, os, ssl, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(os.path.join(sys.argv[4], "req-%d" % time.time_ns()), "wb") as f:
            f.write(body)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;

struct HttpsServer(Child);

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn https_server(port: u16, p: &Pki, out: &Path) -> HttpsServer {
    std::fs::create_dir_all(out).unwrap();
    let child = Command::new(python())
        .args(["-c", SERVER, &port.to_string()])
        .args([&p.cert, &p.key])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "HTTPS server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    HttpsServer(child)
}

fn hook_config(port: u16, dir: &Path, ca: Option<&Path>) -> String {
    let token = secret(dir, "hook.token", HOOK_TOKEN).file.unwrap();
    let ca_line = ca.map(|p| format!("ca_file = \"{}\"\n", p.display())).unwrap_or_default();
    format!(
        r#"
[retry]
initial_backoff = "100ms"
max_backoff = "300ms"
max_attempts = 1000

[webhooks.ops]
url = "https://127.0.0.1:{port}/hook"
bearer = {{ file = "{token}" }}
{ca_line}
[[receivers]]
name = "hook"
channels = [{{ type = "webhook", webhook = "ops" }}]
"#
    )
}

fn received(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhook_with_the_private_ca_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let port = free_port();
    let out = dir.path().join("received");
    let _srv = https_server(port, &p, &out);
    let run = Running::start(&config(&hook_config(port, dir.path(), Some(&p.ca))), test_db());
    run.outbox.enqueue(&firing("h1", "hook")).unwrap();
    wait_until("delivered over HTTPS", || run.records().iter().all(|d| d.outcome == DeliveryState::Sent)).await;
    run.stop().await;
    assert_eq!(received(&out), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhook_with_an_unknown_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let port = free_port();
    let out = dir.path().join("received");
    let _srv = https_server(port, &p, &out);
    let run = Running::start(&config(&hook_config(port, dir.path(), None)), test_db());
    run.outbox.enqueue(&firing("h2", "hook")).unwrap();
    wait_until("several refused attempts", || run.records().iter().all(|d| d.attempts >= 3)).await;
    let r = run.records();
    run.stop().await;
    assert_ne!(r[0].outcome, DeliveryState::Sent);
    let err = r[0].last_error.clone().unwrap_or_default().to_lowercase();
    assert!(err.contains("certificate") || err.contains("issuer") || err.contains("tls"), "{err}");
    assert_eq!(received(&out), 0, "nothing may be posted over an unverified connection");
}
