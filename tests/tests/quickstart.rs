//! `tingzhen up` smoke test: on a fresh data dir it starts, prints the URL and a one-time admin
//! token, and within a few collection intervals this host's `node_load1` is queryable with it.

use std::process::Command;
use std::time::Duration;
use tingzhen_tests::process::Proc;
use tingzhen_tests::{Http, PromClient, bins, hostname, now_ms, ports, wait};

#[test]
fn up_prints_url_and_token_and_collects_this_host() {
    let dir = tempfile::tempdir().unwrap();
    let addr = ports::free_addr();
    let mut cmd = Command::new(bins::tingzhen());
    cmd.current_dir(dir.path()).args(["up", "--listen", &addr.to_string(), "--data"]).arg(dir.path().join("data"));
    let mut up = Proc::spawn("tingzhen-up", cmd, &dir.path().join("logs"));

    let (url, token) = wait::until_60s("`tingzhen up` to print URL and admin token", |last| {
        up.assert_running();
        let out = up.stdout();
        *last = out.clone();
        let find = |key: &str| {
            out.lines()
                .find_map(|l| l.split_once(key).map(|(_, rest)| rest.trim().to_string()))
                .filter(|s| !s.is_empty())
        };
        Some((find("URL:")?, find("Admin token:")?))
    });
    assert_eq!(url.trim_end_matches('/'), format!("http://{addr}"), "printed URL");
    assert!(token.starts_with("tz_") && !token.contains(' '), "printed token {token:?}");

    let client = PromClient::new(url.trim_end_matches('/'), Some(token.clone()), Http::new());
    let host = hostname();
    let q = format!("node_load1{{host={host:?}}}");
    let v = wait::until(&format!("{q} via the quickstart"), Duration::from_secs(120), Duration::from_secs(1), |last| {
        up.assert_running();
        let r = client.call("/api/v1/query", &[("query", &q)]);
        *last = format!("{} {}", r.status, r.body);
        if r.status != 200 {
            return None;
        }
        let res = tingzhen_tests::prom::QResult::parse(&r.json()["data"]).ok()?;
        res.vector().values().next().map(|x| x.1)
    });
    assert!(v.is_finite() && v >= 0.0, "node_load1 = {v}");
    // The whole host is there, not just one metric.
    let names = client.label_values("__name__", &[&format!("{{host={host:?}}}")], now_ms() - 600_000, now_ms());
    for want in ["node_cpu_seconds_total", "node_memory_MemTotal_bytes", "node_filesystem_size_bytes"] {
        assert!(names.iter().any(|n| n == want), "{want} missing for {host}; have {names:?}");
    }
    let st = up.terminate(Duration::from_secs(30)).expect("`tingzhen up` exits on SIGTERM");
    assert!(st.success(), "`tingzhen up` exit status on SIGTERM: {st}\n{}", up.logs());
}
