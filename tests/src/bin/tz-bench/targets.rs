//! One agent watching the host + PostgreSQL + Redis + MariaDB vs Debian's four exporters doing
//! the same (issue 4): node_exporter, postgres_exporter, redis_exporter, mysqld_exporter. Same
//! method as `agent.rs`: everything runs side by side for N collections at a 1 s interval; the
//! exporters collect when scraped, so the bench scrapes each once a second; the agent collects on
//! its own and ships to a collector. Compared: the agent's RSS and CPU against the exporters' SUM.

use crate::Flags;
use crate::report::{ratio, version};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tingzhen_tests::agent::AgentOpts;
use tingzhen_tests::process::Proc;
use tingzhen_tests::procstat::{ProcUsage, usage};
use tingzhen_tests::{Agent, Collector, Http, NodeExporter, bins, ports, wait};

/// The machine's services, as the e2e tests use them (see common test rules).
const PG_DSN: &str = "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable";
const REDIS_ADDR: &str = "redis://127.0.0.1:6379";
/// mysqld_exporter 0.14's `--config.my-cnf` parser refuses a `[client]` section without a
/// password, and the machine's MariaDB root has none, so the DSN goes by environment instead.
const MYSQL_DSN: &str = "root@tcp(127.0.0.1:3306)/";

/// One Debian exporter on a free loopback port, in its own temp dir.
struct Exporter {
    label: &'static str,
    package: &'static str,
    _root: TempDir,
    addr: SocketAddr,
    proc: Proc,
}

impl Exporter {
    /// Starts the exporter and waits until its page reports `up_metric 1`, so wrong connection
    /// settings fail here, loudly, instead of producing a cheap idle exporter to compare with.
    fn start(
        label: &'static str,
        package: &'static str,
        up_metric: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Exporter {
        let bin = bins::peer(&format!("/usr/bin/{package}"), package);
        let root = tempfile::Builder::new().prefix(&format!("tz-{label}-")).tempdir().expect("tempdir");
        let addr = ports::free_addr();
        let mut cmd = Command::new(bin);
        cmd.current_dir(root.path()).arg(format!("--web.listen-address={addr}")).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = Proc::spawn(label, cmd, &root.path().join("logs"));
        let url = format!("http://{addr}/metrics");
        let http = Http::new();
        let want = format!("{up_metric} 1");
        wait::until_60s(&format!("{label} reporting {want}"), |last| {
            proc.assert_running();
            let r = http.get(&url, None, &[]).ok()?;
            *last = format!("{} {}", r.status, r.body.lines().find(|l| l.starts_with(up_metric)).unwrap_or(""));
            (r.status == 200 && r.body.lines().any(|l| l.trim() == want)).then_some(())
        });
        Exporter { label, package, _root: root, addr, proc }
    }

    fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

/// Sum of a counter's samples on the agent's own /metrics page.
fn agent_counter(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sample lines (series) on an exposition page.
fn series(page: &str) -> usize {
    page.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).count()
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

const AGENT_TARGETS: &str = r#"
[[targets]]
name = "bench-pg"
type = "postgres"
address = "127.0.0.1:5432"
username = "postgres"
database = "test"
interval = "1s"

[[targets]]
name = "bench-redis"
type = "redis"
address = "127.0.0.1:6379"
interval = "1s"

[[targets]]
name = "bench-mysql"
type = "mysql"
address = "127.0.0.1:3306"
username = "root"
interval = "1s"
"#;

pub fn run(flags: &Flags) -> String {
    let n = flags.get("collections", 60usize);
    let coll = Collector::start_default();
    let token = coll.create_token("bench-targets", "ingest", None);
    let ne = NodeExporter::start();
    let exporters = [
        Exporter::start(
            "postgres_exporter",
            "prometheus-postgres-exporter",
            "pg_up",
            &[],
            &[("DATA_SOURCE_NAME", PG_DSN)],
        ),
        Exporter::start(
            "redis_exporter",
            "prometheus-redis-exporter",
            "redis_up",
            &[format!("--redis.addr={REDIS_ADDR}")],
            &[],
        ),
        Exporter::start(
            "mysqld_exporter",
            "prometheus-mysqld-exporter",
            "mysql_up",
            &[],
            &[("DATA_SOURCE_NAME", MYSQL_DSN)],
        ),
    ];
    let mut agent = Agent::start(AgentOpts {
        collector: Some(coll.base_url()),
        token: Some(token),
        interval: Some("1s".into()),
        config_toml: Some(AGENT_TARGETS.into()),
        ..Default::default()
    });
    agent.scrape_collected();
    // Every target connected before the window opens: a refused login would be cheaper to run.
    wait::until_60s("the agent's pg_up, redis_up and mysql_up at 1", |last| {
        let page = agent.scrape();
        let up: Vec<bool> = [("pg_up", "bench-pg"), ("redis_up", "bench-redis"), ("mysql_up", "bench-mysql")]
            .iter()
            .map(|(m, t)| {
                page.lines().any(|l| {
                    l.starts_with(&format!("{m}{{")) && l.contains(&format!("target=\"{t}\"")) && l.ends_with(" 1")
                })
            })
            .collect();
        *last = format!("pg, redis, mysql up: {up:?}");
        up.iter().all(|u| *u).then_some(())
    });

    // (label, package, url, pid) of the four peers, node_exporter first.
    let mut peers: Vec<(&str, &str, String, u32)> =
        vec![("node_exporter", "prometheus-node-exporter", ne.metrics_url(), ne.proc.pid())];
    peers.extend(exporters.iter().map(|e| (e.label, e.package, e.metrics_url(), e.proc.pid())));
    let http = Http::new();
    // Warm-up: one scrape each before the window opens; the page sizes are reported.
    let peer_series: Vec<usize> = peers
        .iter()
        .map(|(label, _, url, _)| {
            series(&http.get(url, None, &[]).unwrap_or_else(|e| panic!("scrape {label}: {e}")).body)
        })
        .collect();

    let apid = agent.pid();
    let a0 = usage(apid).expect("agent alive");
    let p0: Vec<ProcUsage> =
        peers.iter().map(|(l, _, _, pid)| usage(*pid).unwrap_or_else(|| panic!("{l} died"))).collect();
    let c0 = agent_counter(&agent.scrape(), "tingzhen_agent_collections_total");

    let t0 = Instant::now();
    for i in 0..n {
        let due = t0 + Duration::from_secs(i as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        for (label, _, url, _) in &peers {
            let r = http.get(url, None, &[]).unwrap_or_else(|e| panic!("scrape {label}: {e}"));
            assert_eq!(r.status, 200, "{label}: {}", r.body);
        }
    }
    let c1 = wait::until(
        "the agent's N collections",
        Duration::from_secs(n as u64 + 30),
        Duration::from_millis(200),
        |last| {
            let c = agent_counter(&agent.scrape(), "tingzhen_agent_collections_total");
            *last = format!("{} collections", c - c0);
            (c - c0 >= n as f64).then_some(c)
        },
    );
    let a1 = usage(apid).expect("agent alive");
    let p1: Vec<ProcUsage> =
        peers.iter().map(|(l, _, _, pid)| usage(*pid).unwrap_or_else(|| panic!("{l} died"))).collect();
    let agent_series = series(&agent.scrape());
    let collections = (c1 - c0) as usize;

    let cpu = |a: &ProcUsage, b: &ProcUsage| b.cpu.saturating_sub(a.cpu).as_secs_f64();
    // The agent may have done a collection or two more than n; scale its CPU to n.
    let agent_cpu = cpu(&a0, &a1) * n as f64 / collections.max(1) as f64;
    let peer_cpu: Vec<f64> = p0.iter().zip(&p1).map(|(a, b)| cpu(a, b)).collect();
    let (sum_rss, sum_hwm) = (p1.iter().map(|u| u.rss).sum::<u64>(), p1.iter().map(|u| u.hwm).sum::<u64>());
    let sum_cpu: f64 = peer_cpu.iter().sum();

    let mut rows = format!(
        "| tingzhen-agent (host + 3 targets) | {} | {} | {agent_cpu:.2} s | {agent_series} |\n",
        mib(a1.rss),
        mib(a1.hwm)
    );
    for (i, (label, _, _, _)) in peers.iter().enumerate() {
        rows.push_str(&format!(
            "| {label} | {} | {} | {:.2} s | {} |\n",
            mib(p1[i].rss),
            mib(p1[i].hwm),
            peer_cpu[i],
            peer_series[i]
        ));
    }
    rows.push_str(&format!(
        "| **exporters' sum** | {} | {} | {sum_cpu:.2} s | {} |\n",
        mib(sum_rss),
        mib(sum_hwm),
        peer_series.iter().sum::<usize>()
    ));
    let versions: Vec<String> = peers.iter().map(|(_, pkg, _, _)| version(pkg)).collect();
    format!(
        "### Agent with targets vs four exporters\n\n\
         {n} collections at 1 s each, side by side on this host: one tingzhen-agent watching the host, \
         PostgreSQL (127.0.0.1:5432, db `test`), Redis (6379) and MariaDB (3306), shipping every \
         collection to a tingzhen collector by remote write; each exporter scraped once a second by the \
         bench. Peers: {peers}. Series = sample lines on each /metrics page.\n\n\
         | process | RSS at end (VmRSS) | peak RSS (VmHWM) | CPU for {n} collections | series |\n\
         |---|---|---|---|---|\n{rows}\n\
         | agent ÷ exporters' sum | ratio | goal |\n|---|---|---|\n\
         | RSS at end | {rr} | ≤ 0.3× |\n\
         | peak RSS | {hr} | |\n\
         | CPU time | {cr} | ≤ 0.3× |\n",
        peers = versions.join(", "),
        rr = ratio(a1.rss as f64, sum_rss as f64),
        hr = ratio(a1.hwm as f64, sum_hwm as f64),
        cr = ratio(agent_cpu, sum_cpu),
    )
}
