//! The built binary's text output checked by the real `promtool check metrics`: `once`, and the
//! `/metrics` of a running `run` (host metrics plus self-metrics).
//!
//! promtool 2.x lints names for camelCase. node_exporter's own meminfo and netstat names
//! (`node_memory_MemTotal_bytes`, `node_netstat_Tcp_CurrEstab`) fail that lint, in
//! node_exporter too, and the agent keeps them on purpose so existing dashboards work. So the
//! check is: promtool parses everything (a format error fails), and its only complaints are
//! camelCase ones about exactly those node_exporter-compatible families.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tingzhen-agent");

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (apt-get install prometheus); this test never skips");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let code = out.status.code();
    assert!(matches!(code, Some(0) | Some(3)), "promtool failed ({code:?}):\n{report}");
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        let name = line.split_whitespace().next().unwrap_or("");
        let inherited = name.starts_with("node_memory_") || name.starts_with("node_netstat_");
        assert!(
            inherited && line.contains("camelCase"),
            "promtool complaint beyond node_exporter's inherited names: {line}\n(full report:\n{report})"
        );
    }
}

#[test]
fn once_output_passes_promtool() {
    let out = Command::new(BIN).arg("once").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for name in ["node_cpu_seconds_total{", "node_load1{", "node_memory_MemAvailable_bytes{", "node_uname_info{"] {
        assert!(text.contains(name), "{name} missing from once output");
    }
    promtool_check(&text);
}

#[test]
fn once_reads_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/agent.example.toml");
    let out = Command::new(BIN).args(["once", "--config", example]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(r#"node_load1{campus="east",host="his-db-01","#), "static labels from the config");
}

/// The agent's stderr, read as it comes (an unread pipe would stall a chatty agent), kept for
/// finding its start-up line and for failure messages.
struct StderrLog(Arc<Mutex<String>>);

impl StderrLog {
    fn capture(stderr: ChildStderr) -> Self {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut t = sink.lock().unwrap();
                t.push_str(&line);
                t.push('\n');
            }
        });
        StderrLog(text)
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// The address from `tingzhen-agent running … listen=Some(127.0.0.1:PORT)`.
    fn listen_addr(&self) -> Option<SocketAddr> {
        let text = self.text();
        let line = text.lines().find(|l| l.contains("tingzhen-agent running"))?;
        let rest = &line[line.find("listen=Some(")? + "listen=Some(".len()..];
        rest[..rest.find(')')?].parse().ok()
    }
}

/// One GET /metrics; the body of a 200 in the text format, else what went wrong.
fn scrape(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let (head, body) = resp.split_once("\r\n\r\n").ok_or_else(|| format!("not an HTTP answer: {resp:?}"))?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    Ok(body.to_string())
}

/// Panics with the agent's log when it has exited: waiting on would only end in a timeout
/// that hides why.
fn assert_running(child: &mut Child, log: &StderrLog) {
    if let Some(status) = child.try_wait().unwrap() {
        panic!("the agent exited ({status}):\n{}", log.text());
    }
}

#[test]
fn run_serves_metrics_that_pass_promtool_and_stops_on_sigterm() {
    // Port 0, read back from the agent's log: a port probed free and then handed over could be
    // taken by another process's connection in between.
    let mut child = Command::new(BIN)
        .args(["run", "--listen", "127.0.0.1:0", "--interval", "1s"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = StderrLog::capture(child.stderr.take().unwrap());
    let mut addr = None;
    common::wait_for("the agent's start-up line with its listen address", || {
        assert_running(&mut child, &log);
        addr = log.listen_addr();
        addr.is_some()
    });
    let addr = addr.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let body = loop {
        assert_running(&mut child, &log);
        let last = match scrape(addr) {
            Ok(body) if body.contains("node_load1{") => break body,
            Ok(body) => format!("an answer without node_load1 yet ({} bytes)", body.len()),
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "no /metrics with a collection from {addr} in 90 s; last: {last}\nagent log:\n{}",
            log.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for name in ["tingzhen_agent_collections_total", "tingzhen_agent_build_info", "process_resident_memory_bytes"] {
        assert!(body.contains(name), "{name} missing from /metrics");
    }
    promtool_check(&body);
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "agent did not exit cleanly ({status}):\n{}", log.text());
}
