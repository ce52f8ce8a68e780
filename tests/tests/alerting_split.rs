//! The microservice deployment: `tingzhen serve --target alerting` in its own process,
//! evaluating rules through a separate collector's Prometheus API (`[alerting.collector]`)
//! with a query-scope token. Without that section the alerting target refuses to start and
//! says why.

use std::process::Command;
use tingzhen_core::{Labels, Sample, TimeSeries};
use tingzhen_tests::process::Proc;
use tingzhen_tests::{Collector, Http, bins, now_ms, ports, wait};

const RULES: &str = r#"
groups:
  - name: ward
    interval: 1s
    rules:
      - alert: ICUTooHot
        expr: icu_temperature_celsius > 40
        labels:
          severity: critical
"#;

fn token(data: &std::path::Path, name: &str, scope: &str) -> String {
    let out = Command::new(bins::tingzhen())
        .args(["token", "create", "--name", name, "--scope", scope, "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn alerting_alone_queries_the_collector_over_http() {
    let coll = Collector::start_default();
    let push = coll.create_token("push", "ingest", None);
    let query = coll.create_token("alerting", "query", None);

    let root = tempfile::Builder::new().prefix("tz-alerting-split-").tempdir().unwrap();
    let data = root.path().join("data");
    let rules = root.path().join("ward.yml");
    std::fs::write(&rules, RULES).unwrap();
    let token_file = root.path().join("query.token");
    std::fs::write(&token_file, format!("{query}\n")).unwrap();
    let addr = ports::free_addr();
    let config = root.path().join("alerting.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[storage]\ndata_dir = {:?}\n[alerting.rules]\nfiles = [{:?}]\n\
             [alerting.collector]\nurl = {:?}\ntoken = {{ file = {:?} }}\n",
            data.display().to_string(),
            rules.display().to_string(),
            coll.base_url(),
            token_file.display().to_string(),
        ),
    )
    .unwrap();
    let admin = token(&data, "ops", "admin");
    let mut cmd = Command::new(bins::tingzhen());
    cmd.args(["serve", "--target", "alerting", "--config"]).arg(&config);
    let mut server = Proc::spawn("tingzhen-alerting", cmd, &root.path().join("logs"));
    let http = Http::new();
    let url = |p: &str| format!("http://{addr}{p}");
    wait::until_60s("alerting ready", |last| {
        server.assert_running();
        match http.get(&url("/readyz"), None, &[]) {
            Ok(r) if r.status == 200 => Some(()),
            other => {
                *last = format!("{other:?}");
                None
            }
        }
    });
    // The alerting process serves only alerting: the query API is the collector's.
    assert_eq!(http.get(&url("/api/v1/query"), Some(&admin), &[("query", "1")]).unwrap().status, 404);

    let labels = Labels::from_pairs([("__name__", "icu_temperature_celsius"), ("room", "icu-3")]);
    coll.write_ok(&push, &[TimeSeries::new(labels, vec![Sample::new(now_ms(), 41.5)])]);
    let firing = wait::until_60s("the alert firing in the alerting process", |last| {
        let r = http.get(&url("/api/v1/alerting/alerts"), Some(&admin), &[("state", "firing")]).unwrap().json();
        *last = r.to_string();
        let alerts = r["data"]["alerts"].as_array().cloned().unwrap_or_default();
        (!alerts.is_empty()).then_some(alerts)
    });
    assert_eq!(firing[0]["labels"]["room"], "icu-3");
    assert_eq!(firing[0]["value"], "41.5");
    let rules = http.get(&url("/api/v1/alerting/rules"), Some(&admin), &[]).unwrap().json();
    assert_eq!(rules["data"]["groups"][0]["rules"][0]["health"], "ok", "{rules}");
    assert!(server.terminate(std::time::Duration::from_secs(30)).is_some(), "alerting did not stop on SIGTERM");
}

#[test]
fn alerting_alone_without_a_collector_refuses_to_start() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(bins::tingzhen())
        .args(["serve", "--target", "alerting", "--listen", &ports::free_addr().to_string(), "--data"])
        .arg(root.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[alerting.collector]"), "{err}");
}

#[test]
fn config_check_validates_rule_files() {
    let root = tempfile::tempdir().unwrap();
    let rules = root.path().join("bad.yml");
    std::fs::write(&rules, "groups:\n  - name: ward\n    rules:\n      - alert: A\n        expr: rate(x[5m]\n")
        .unwrap();
    let config = root.path().join("t.toml");
    std::fs::write(&config, format!("[alerting.rules]\nfiles = [{:?}]\n", rules.display().to_string())).unwrap();
    let out = Command::new(bins::tingzhen()).args(["config", "check"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("group \"ward\", rule 1 (alert \"A\"): expr: PromQL"), "{err}");
    std::fs::write(&rules, RULES).unwrap();
    let out = Command::new(bins::tingzhen()).args(["config", "check"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(1 rule groups)"));
}
