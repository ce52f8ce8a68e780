//! The built binary's text output checked by the real `promtool check metrics`: `once`, and the
//! `/metrics` of a running `run` (host metrics plus self-metrics).
//!
//! promtool 2.x lints names for camelCase. node_exporter's own meminfo and netstat names
//! (`node_memory_MemTotal_bytes`, `node_netstat_Tcp_CurrEstab`) fail that lint, in
//! node_exporter too, and the agent keeps them on purpose so existing dashboards work. So the
//! check is: promtool parses everything (a format error fails), and its only complaints are
//! camelCase ones about exactly those node_exporter-compatible families.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

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

#[test]
fn run_serves_metrics_that_pass_promtool_and_stops_on_sigterm() {
    let port = common::free_port();
    let child = Command::new(BIN)
        .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--interval", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut body = String::new();
    common::wait_for("/metrics with a collection", || {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        let Some((head, b)) = resp.split_once("\r\n\r\n") else { return false };
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        body = b.to_string();
        body.contains("node_load1{")
    });
    for name in ["tingzhen_agent_collections_total", "tingzhen_agent_build_info", "process_resident_memory_bytes"] {
        assert!(body.contains(name), "{name} missing from /metrics");
    }
    promtool_check(&body);
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "agent did not exit cleanly: {}", String::from_utf8_lossy(&out.stderr));
}
