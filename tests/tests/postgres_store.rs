//! The server on PostgreSQL (`[database] url`): the token CLI, the collector's auth, the agent
//! inventory and the alerting rules API all keep their rows in the machine's PostgreSQL
//! (127.0.0.1:5432, trust auth, database `test`), nothing in a local `tingzhen.db`, and a
//! `kill -9` and restart finds every row again.

use std::process::Command;
use tingzhen_tests::{Collector, CollectorOpts};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-Atc", sql])
        .output()
        .expect("psql (PostgreSQL client) must be installed");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Drops the test's schema however the test ends.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-Atc"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0))
            .output();
    }
}

#[test]
fn the_server_keeps_its_relational_state_in_postgresql() {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let schema = Schema(format!("tze2e_{}_{nanos}", std::process::id()));
    let mut coll = Collector::start_with(CollectorOpts {
        extra_toml: format!("\n[database]\nurl = {PG_URL:?}\nschema = {:?}\nmax_connections = 4\n", schema.0),
        all_targets: true,
        ..Default::default()
    });
    let admin = coll.create_token("pg-admin", "ingest,query,admin", None);
    let h = coll.http().clone();

    // The token the CLI created is a row in PostgreSQL, stored as a digest.
    let stored = psql(&format!("SELECT name, token_sha256 FROM {}.api_tokens WHERE name = 'pg-admin'", schema.0));
    assert!(stored.starts_with("pg-admin|"), "api_tokens in PostgreSQL: {stored:?}");
    assert!(!stored.contains(&admin), "the plaintext token must never be stored");
    assert!(!coll.data.join("tingzhen.db").exists(), "no SQLite store when [database] names PostgreSQL");

    // The collector authenticates against it, and the inventory lands in it.
    let hb = r#"{"host":"his-db-01","hostname":"his-db-01","os":"linux","cpus":8,"memory_bytes":1,"agent_version":"0","interval_ms":1000,"boot_time":0}"#;
    let r = h
        .post(
            &coll.url("/api/v1/agents/heartbeat"),
            Some(&admin),
            &[("Content-Type", "application/json")],
            hb.as_bytes(),
        )
        .unwrap();
    assert!(r.is_success(), "heartbeat: {} {}", r.status, r.body);
    assert_eq!(psql(&format!("SELECT host FROM {}.agents", schema.0)), "his-db-01");

    // The alerting target keeps API-made rule groups there too.
    let group = serde_json::json!({
        "name": "pg-store",
        "interval": "5s",
        "rules": [{"alert": "WardTooHot", "expr": "ward_temperature_celsius > 40", "labels": {"severity": "critical"}}]
    });
    let r = h
        .post(
            &coll.url("/api/v1/alerting/rules"),
            Some(&admin),
            &[("Content-Type", "application/json")],
            group.to_string().as_bytes(),
        )
        .unwrap();
    assert!(r.is_success(), "create rule group: {} {}", r.status, r.body);

    // Everything is still there after a kill -9 and restart.
    coll.kill9();
    coll.start();
    let hosts = h.get(&coll.url("/api/v1/inventory/hosts"), Some(&admin), &[]).unwrap();
    assert_eq!(hosts.status, 200, "{}", hosts.body);
    assert!(hosts.body.contains("his-db-01"), "inventory after restart: {}", hosts.body);
    let rules = h.get(&coll.url("/api/v1/alerting/rules"), Some(&admin), &[]).unwrap();
    assert_eq!(rules.status, 200, "{}", rules.body);
    assert!(rules.body.contains("WardTooHot"), "rules after restart: {}", rules.body);
    // A revoked token is refused at once: the collector reads PostgreSQL, not a stale copy.
    coll.revoke_token("pg-admin");
    let refused = h.get(&coll.url("/api/v1/inventory/hosts"), Some(&admin), &[]).unwrap();
    assert_eq!(refused.status, 401, "revoked token: {}", refused.body);
}

/// With `ca_file` the store connection is TLS with the server verified: the machine's
/// PostgreSQL serves Debian's self-signed `ssl-cert-snakeoil` certificate (CN localhost), which
/// is the CA here. A certificate from another CA is refused with the reason, and nothing falls
/// back to plain text.
#[test]
fn the_store_connection_is_tls_verified_against_the_configured_ca() {
    const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
    assert_eq!(psql("SHOW ssl"), "on", "the local PostgreSQL must have TLS on for this test");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let schema = Schema(format!("tztls_{}_{nanos}", std::process::id()));
    let app = format!("tz_tls_{nanos}");
    let root = tempfile::tempdir().unwrap();
    let config = |ca: &str| {
        let path = root.path().join(format!("tingzhen-{}.toml", ca.len()));
        std::fs::write(
            &path,
            format!(
                "[storage]\ndata_dir = {:?}\n[database]\nurl = \"postgres://postgres@localhost:5432/test?application_name={app}\"\n\
                 schema = {:?}\nca_file = {ca:?}\n",
                root.path().join("data").display().to_string(),
                schema.0
            ),
        )
        .unwrap();
        path
    };
    let token = |cfg: &std::path::Path| {
        Command::new(tingzhen_tests::bins::tingzhen())
            .args(["token", "create", "--name", "tls-check", "--scope", "query", "--config"])
            .arg(cfg)
            .output()
            .unwrap()
    };

    // Another CA: refused, and the reason names the certificate problem.
    let other = tingzhen_tests::tls::generate(&root.path().join("other-ca"));
    let refused = token(&config(&other.ca_path.display().to_string()));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a server outside the CA must be refused");
    assert!(stderr.contains("TLS") && stderr.to_lowercase().contains("certificate"), "reason: {stderr}");

    // The right CA: the token is stored, over a TLS session the server reports as such.
    let good = config(SNAKEOIL);
    let out = token(&good);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(psql(&format!("SELECT count(*) FROM {}.api_tokens", schema.0)), "1");
    // A held connection shows in pg_stat_ssl: keep one open with a server on the same store.
    let mut cmd = Command::new(tingzhen_tests::bins::tingzhen());
    cmd.args(["serve", "--target", "collector", "--config"])
        .arg(&good)
        .args(["--listen", &tingzhen_tests::ports::free_addr().to_string()]);
    let mut serve = tingzhen_tests::process::Proc::spawn("tingzhen-serve-tls", cmd, root.path());
    let ssl = tingzhen_tests::wait::until_60s("the server's store connection", |last| {
        let v = psql(&format!(
            "SELECT COALESCE(string_agg(s.ssl::text, ','), '') FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{app}'"
        ));
        last.clone_from(&v);
        (!v.is_empty()).then_some(v)
    });
    serve.kill9();
    assert!(ssl.split(',').all(|s| s == "true"), "every store connection must be TLS: {ssl}");
}
