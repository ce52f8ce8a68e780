//! Access control end to end: bearer tokens with scopes, per-token IP allowlists, revocation,
//! unauthenticated health endpoints, and HTTPS with a CA generated in the test (the agent ships
//! over it; a client that does not trust the CA is refused at the TLS layer), and password reset
//! by SMS code through a local stand-in for the hospital's SMS gateway.

use tingzhen_core::{Labels, Sample, TimeSeries};
use tingzhen_tests::agent::AgentOpts;
use tingzhen_tests::{Agent, Collector, CollectorOpts, Http, Resp, now_ms, tls, wait};

fn series(name: &str) -> Vec<TimeSeries> {
    vec![TimeSeries::new(
        Labels::from_pairs([("__name__", name), ("host", "access-test")]),
        vec![Sample::new(now_ms(), 1.0)],
    )]
}

/// One request of each kind the API serves behind a token.
/// Writes carry `tag` in their metric names so a test can tell whose writes were stored.
fn every_endpoint(c: &Collector, token: Option<&str>, tag: &str) -> Vec<(String, Resp)> {
    let h = c.http();
    let rw = tingzhen_core::remote_write::encode(&series(&format!("tz_access_{tag}_rw")));
    let hb = r#"{"host":"h","hostname":"h","os":"linux","cpus":1,"memory_bytes":1,"agent_version":"0","interval_ms":1000,"boot_time":0}"#;
    let mut out = Vec::new();
    for path in [
        "/api/v1/query?query=1",
        "/api/v1/query_range?query=1&start=0&end=60&step=15",
        "/api/v1/series?match[]=up",
        "/api/v1/labels",
        "/api/v1/label/__name__/values",
        "/api/v1/inventory/hosts",
        "/metrics",
    ] {
        out.push((format!("GET {path}"), h.get(&c.url(path), token, &[]).expect(path)));
    }
    out.push(("POST /api/v1/query".into(), h.post_form(&c.url("/api/v1/query"), token, &[("query", "1")]).unwrap()));
    out.push(("POST /api/v1/write".into(), h.remote_write(&c.url("/api/v1/write"), token, &rw).unwrap()));
    let lp = format!("tz_access_{tag}_lp,host=access-test value=1 {}", now_ms());
    for path in ["/write?precision=ms", "/api/v2/write?precision=ms"] {
        let r = h.post(&c.url(path), token, &[("Content-Type", "text/plain")], lp.as_bytes()).unwrap();
        out.push((format!("POST {path}"), r));
    }
    let r = h.post(&c.url("/api/v1/agents/heartbeat"), token, &[("Content-Type", "application/json")], hb.as_bytes());
    out.push(("POST /api/v1/agents/heartbeat".into(), r.unwrap()));
    out
}

fn is_ingest(what: &str) -> bool {
    what.contains("write") || what.contains("heartbeat")
}

fn expect_status(results: &[(String, Resp)], want: impl Fn(&str) -> u16, who: &str) {
    let bad: Vec<String> = results
        .iter()
        .filter(|(what, r)| r.status != want(what))
        .map(|(what, r)| format!("{what}: want {} got {} {}", want(what), r.status, r.body))
        .collect();
    assert!(bad.is_empty(), "{who}:\n{}", bad.join("\n"));
}

#[test]
fn health_needs_no_token_everything_else_does() {
    let c = Collector::start_default();
    for p in ["/healthz", "/readyz"] {
        let r = c.http().get(&c.url(p), None, &[]).unwrap();
        assert_eq!(r.status, 200, "{p} without a token: {}", r.body);
    }
    expect_status(&every_endpoint(&c, None, "anon"), |_| 401, "no token");
    let admin = c.admin_token();
    let q = c.client(&admin).query(r#"{__name__=~"tz_access_.*"}"#, now_ms());
    assert!(q.is_empty(), "series from unauthenticated writes are queryable: {q:?}");
    expect_status(&every_endpoint(&c, Some("tz_not_a_real_token"), "unknown"), |_| 401, "unknown token");
    let r = c.http().get(&c.url("/api/v1/labels"), None, &[]).unwrap();
    assert!(!r.body.trim().is_empty(), "a 401 must say why");
}

#[test]
fn scopes_are_enforced() {
    let c = Collector::start_default();
    let ingest = c.create_token("ingest-only", "ingest", None);
    let query = c.create_token("query-only", "query", None);
    let both = c.create_token("both", "ingest,query", None);

    let ok_ingest = |w: &str| if is_ingest(w) { 204 } else { 403 };
    let got = every_endpoint(&c, Some(&ingest), "ingest");
    // Remote write may answer 200 or 204; line protocol must be 204.
    let norm: Vec<(String, Resp)> = got
        .into_iter()
        .map(|(w, mut r)| {
            if is_ingest(&w) && (200..300).contains(&r.status) {
                r.status = 204;
            }
            (w, r)
        })
        .collect();
    expect_status(&norm, ok_ingest, "ingest-only token");

    let got = every_endpoint(&c, Some(&query), "query");
    expect_status(&got, |w| if is_ingest(w) { 403 } else { 200 }, "query-only token");

    // The accepted writes are there; nothing a refused (403) write carried was stored.
    let client = c.client(&both);
    let stored = client.query(r#"{__name__=~"tz_access_ingest_.*"}"#, now_ms());
    assert_eq!(stored.len(), 2, "accepted remote write + line protocol series: {stored:?}");
    let q = client.query(r#"{__name__=~"tz_access_query_.*"}"#, now_ms());
    assert!(q.is_empty(), "series from refused writes are queryable: {q:?}");
}

#[test]
fn allowlist_and_revocation() {
    let c = Collector::start_default();
    let outside = c.create_token("only-10-net", "ingest,query,admin", Some("10.0.0.0/8"));
    let inside = c.create_token("loopback", "ingest,query", Some("10.0.0.0/8,127.0.0.0/8"));
    expect_status(
        &every_endpoint(&c, Some(&outside), "outside"),
        |_| 403,
        "token allowed only from 10.0.0.0/8, used from 127.0.0.1",
    );
    let r = c.client(&inside).call("/api/v1/query", &[("query", "1")]);
    assert_eq!(r.status, 200, "token whose allowlist includes 127.0.0.0/8: {}", r.body);

    // Revocation takes effect on the running server.
    c.revoke_token("loopback");
    let r = c.client(&inside).call("/api/v1/query", &[("query", "1")]);
    assert_eq!(r.status, 401, "revoked token: {}", r.body);
    let r = c.write(&inside, &series("tz_access_revoked"));
    assert_eq!(r.status, 401, "revoked token writing: {}", r.body);
}

#[test]
fn tls_end_to_end_with_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tls::generate(dir.path());
    let c = Collector::start_with(CollectorOpts { tls: Some(certs.clone()), ..Default::default() });
    assert!(c.base_url().starts_with("https://"));
    let token = c.create_token("tls", "ingest,query", None);

    let _agent = Agent::start(AgentOpts {
        collector: Some(c.base_url()),
        token: Some(token.clone()),
        interval: Some("1s".into()),
        ca_file: Some(certs.ca_path.clone()),
        ..Default::default()
    });
    let client = c.client(&token);
    wait::until_60s("node_load1 from the agent over HTTPS", |last| {
        let r = client.query("node_load1", now_ms());
        *last = format!("{r:?}");
        (!r.is_empty()).then_some(())
    });

    // A client that does not trust our CA fails the handshake: no HTTP status at all.
    match Http::new().get(&c.url("/healthz"), None, &[]) {
        Ok(r) => panic!("a client without the CA got an HTTP answer: {} {}", r.status, r.body),
        Err(e) => {
            let s = format!("{e:?} {e}");
            assert!(
                s.contains("Rustls") || s.contains("certificate") || s.contains("Certificate") || s.contains("Tls"),
                "expected a TLS certificate error, got {s}"
            );
        }
    }
    // Plain HTTP to the HTTPS port is not served.
    let plain = format!("http://{}/api/v1/query?query=1", c.addr);
    if let Ok(r) = Http::new().get(&plain, Some(&token), &[]) {
        assert_ne!(r.status, 200, "plain HTTP answered on the TLS port: {}", r.body);
    }
}

/// Self-service password reset (MLPS 1.2, 1.5) through the real server: the code goes out over
/// the `[alerting.notify.http_sms]` gateway (a local HTTP receiver standing in for the
/// hospital's SMS gateway), only to the number on record, and resets the password.
#[test]
fn password_reset_by_sms_code_through_the_http_gateway() {
    let gateway = tingzhen_tests::HttpSink::start();
    let extra_toml = format!(
        "\n[identity]\ncookie_secure = false\n\n[identity.password_reset]\nsms_provider = \"http_sms\"\n\n\
         [alerting.notify.http_sms]\nurl = \"{}\"\nbody = '{{\"mobile\": {{{{json phone}}}}, \"content\": {{{{json text}}}}}}'\n\
         per_phone = true\n",
        gateway.url("/sms/send")
    );
    let server = Collector::start_with(CollectorOpts { extra_toml, all_targets: true, ..Default::default() });
    let out = server.cli(&["user", "create", "--name", "nina", "--role", "viewer", "--phone", "138 1234 5678"]);
    assert!(out.status.success(), "user create: {}", String::from_utf8_lossy(&out.stderr));
    let h = server.http();
    let json = [("Content-Type", "application/json")];
    let post = |path: &str, body: serde_json::Value| {
        h.post(&server.url(path), None, &json, body.to_string().as_bytes()).expect("POST")
    };
    // The captcha's answer, read from the store as only the server can.
    let captcha = || {
        let id = h.get(&server.url("/api/v1/auth/captcha"), None, &[]).expect("GET captcha").json()["data"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let db = tingzhen_core::db::Db::open(&server.data.join("tingzhen.db")).expect("open the server's store");
        let hash = hex_sha256(&id);
        let answer: String = db
            .with_conn(|c| {
                c.query_row("SELECT answer FROM identity_captchas WHERE id_sha256 = ?1", &[hash], |r| r.get(0))
            })
            .expect("captcha answer");
        (id, answer)
    };
    let (id, answer) = captcha();
    let wrong = post(
        "/api/v1/auth/reset/request",
        serde_json::json!({"username": "nina", "phone": "13900000000", "captcha_id": id, "captcha_answer": answer}),
    );
    assert_eq!(wrong.status, 200, "{}", wrong.body);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(gateway.received().is_empty(), "a number that does not match gets no text: {:?}", gateway.received());
    // Past the 60 s resend interval would take a minute: the limit counts per account name, and
    // the same name is what a real user retries with, so the right number comes from a new
    // account here instead.
    let out = server.cli(&["user", "create", "--name", "omar", "--role", "viewer", "--phone", "+86 139 8765 4321"]);
    assert!(out.status.success(), "user create: {}", String::from_utf8_lossy(&out.stderr));
    let (id, answer) = captcha();
    let asked = post(
        "/api/v1/auth/reset/request",
        serde_json::json!({"username": "omar", "phone": "+8613987654321", "captcha_id": id, "captcha_answer": answer}),
    );
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert_eq!(asked.json()["data"], wrong.json()["data"], "both answers are the same");
    let texts = gateway.wait_for(1);
    assert_eq!((texts[0].method.as_str(), texts[0].path.as_str()), ("POST", "/sms/send"));
    let sms: serde_json::Value = serde_json::from_str(&texts[0].body).expect("gateway body is the configured JSON");
    assert_eq!(sms["mobile"], "+8613987654321");
    let content = sms["content"].as_str().unwrap();
    assert!(content.contains("验证码") && content.contains("5 分钟"), "{content}");
    let code = content
        .split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .unwrap_or_else(|| panic!("no six-digit code in {content:?}"))
        .to_string();
    let done = post(
        "/api/v1/auth/reset/confirm",
        serde_json::json!({"username": "omar", "code": code, "new_password": "Harbour-lamp-9051"}),
    );
    assert_eq!(done.status, 200, "{}", done.body);
    let login = post("/api/v1/auth/login", serde_json::json!({"username": "omar", "password": "Harbour-lamp-9051"}));
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(
        login.json()["data"]["restriction"],
        serde_json::Value::Null,
        "no forced change after a self-service reset"
    );
}

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
