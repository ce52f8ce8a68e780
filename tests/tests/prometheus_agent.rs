//! Real Prometheus against the agent and the collector: `promtool check metrics` accepts the
//! agent's `/metrics`; Prometheus scrapes the agent and remote-writes (bearer token) into the
//! collector; what Prometheus scraped is then queryable from the collector, sample for sample.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use tingzhen_tests::agent::AgentOpts;
use tingzhen_tests::prom::compare;
use tingzhen_tests::{Agent, Collector, Http, NodeExporter, Prometheus, bins, now_ms, wait};

/// Runs `promtool check metrics` on `page`: (exit code, problem lines).
fn promtool(page: &str) -> (i32, BTreeSet<String>) {
    let mut child = Command::new(bins::peer("/usr/bin/promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text.lines().map(str::to_string).filter(|l| !l.trim().is_empty()).collect())
}

#[test]
fn promtool_accepts_the_agent_page() {
    let mut agent = Agent::start(AgentOpts { interval: Some("1s".into()), ..Default::default() });
    let page = agent.scrape_collected();
    assert!(page.contains("node_load1"), "agent page has no node_load1:\n{page}");
    let (code, problems) = promtool(&page);
    // promtool exits 1 on a page it cannot parse and 3 on lint findings. node_exporter's own
    // names (node_memory_MemTotal_bytes, ...) draw lint findings, and the agent uses those names
    // on purpose, so the findings node_exporter gets on this host are allowed; nothing else is.
    let ne = NodeExporter::start();
    let ne_page = Http::new().get(&ne.metrics_url(), None, &[]).unwrap().body;
    let (_, allowed) = promtool(&ne_page);
    // node_exporter copies kernel counter names verbatim into these families, camelCase
    // included; a newer node_exporter exposes more of them than Debian's, so the rule is allowed
    // for the family, not only for the names this node_exporter happens to print.
    let kernel_named = |l: &str| {
        ["node_netstat_", "node_memory_", "node_vmstat_"].iter().any(|p| l.starts_with(p))
            && l.ends_with("metric names should be written in 'snake_case' not 'camelCase'")
    };
    let extra: Vec<&String> = problems.difference(&allowed).filter(|l| !kernel_named(l)).collect();
    assert!(
        (code == 0 || code == 3) && extra.is_empty(),
        "promtool check metrics failed on the agent page (exit {code}); problems node_exporter does not have:\n{}",
        extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn prometheus_scrapes_agent_and_remote_writes_into_collector() {
    let coll = Collector::start_default();
    let ingest = coll.create_token("prometheus-rw", "ingest", None);
    let reader = coll.create_token("reader", "query", None);
    let agent = Agent::start(AgentOpts {
        collector: Some(coll.base_url()),
        token: Some(ingest.clone()),
        interval: Some("1s".into()),
        ..Default::default()
    });
    let prom = Prometheus::start(
        "  scrape_interval: 1s\n  scrape_timeout: 1s",
        &format!(
            "scrape_configs:\n  - job_name: tz-agent\n    static_configs:\n      - targets: ['{}']\n\
             remote_write:\n  - url: {}\n    authorization:\n      credentials: {ingest}\n    \
             queue_config:\n      batch_send_deadline: 1s\n",
            agent.listen,
            coll.url("/api/v1/write"),
        ),
    );
    let theirs = prom.client();
    let ours = coll.client(&reader);
    wait::until_60s("Prometheus to scrape the agent (up == 1)", |last| {
        let r = theirs.query(r#"up{job="tz-agent"}"#, now_ms());
        *last = format!("{r:?}");
        r.vector().values().any(|v| v.1 == 1.0).then_some(())
    });
    let start = now_ms();

    // Every metric name Prometheus scraped reaches the collector.
    let sel = [r#"{job="tz-agent"}"#];
    wait::until(
        "every scraped metric name in the collector",
        Duration::from_secs(90),
        Duration::from_secs(1),
        |last| {
            let now = now_ms();
            let want: BTreeSet<String> =
                theirs.label_values("__name__", &sel, start - 60_000, now).into_iter().collect();
            let have: BTreeSet<String> = ours.label_values("__name__", &sel, start - 60_000, now).into_iter().collect();
            let missing: Vec<&String> = want.difference(&have).collect();
            *last = format!("{} of {} missing, e.g. {:?}", missing.len(), want.len(), &missing[..missing.len().min(5)]);
            (want.len() > 10 && missing.is_empty()).then_some(())
        },
    );

    // Raw samples in a window that has certainly been shipped are identical in both.
    std::thread::sleep(Duration::from_secs(3));
    let at = now_ms() - 2_000;
    for q in [
        r#"node_load1{job="tz-agent"}[20s]"#,
        r#"up{job="tz-agent"}[20s]"#,
        r#"node_memory_MemTotal_bytes{job="tz-agent"}[20s]"#,
    ] {
        wait::until(&format!("{q} equal in both"), Duration::from_secs(60), Duration::from_secs(1), |last| {
            let (a, b) = (ours.query(q, at), theirs.query(q, at));
            let res = compare(&a, &b);
            *last = format!("{res:?}");
            (res.is_ok() && !b.is_empty()).then_some(())
        });
    }
}
