//! Agent vs node_exporter on this host: both run side by side for the same N collections at a
//! 1 s interval (node_exporter collects when scraped, so it is scraped once a second; the agent
//! collects on its own and ships to a collector, its normal deployment). Compared: resident
//! memory (VmRSS at the end, VmHWM peak) and CPU time (utime + stime) spent during the window.

use crate::Flags;
use crate::report::{ratio, version};
use std::time::{Duration, Instant};
use tingzhen_tests::agent::AgentOpts;
use tingzhen_tests::procstat::{ProcUsage, usage};
use tingzhen_tests::{Agent, Collector, Http, NodeExporter, wait};

/// A counter from the agent's own /metrics page.
fn agent_counter(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

pub fn run(flags: &Flags) -> String {
    let n = flags.get("collections", 120usize);
    let coll = Collector::start_default();
    let token = coll.create_token("bench-agent", "ingest", None);
    let ne = NodeExporter::start();
    let mut agent = Agent::start(AgentOpts {
        collector: Some(coll.base_url()),
        token: Some(token),
        interval: Some("1s".into()),
        ..Default::default()
    });
    let http = Http::new();
    // Warm-up: one collection each before the window opens.
    agent.scrape_collected();
    let ne_page = http.get(&ne.metrics_url(), None, &[]).expect("scrape node_exporter").body;
    let ne_series = ne_page.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();

    let (apid, npid) = (agent.pid(), ne.proc.pid());
    let a0 = usage(apid).expect("agent alive");
    let n0 = usage(npid).expect("node_exporter alive");
    let page0 = agent.scrape();
    let c0 = agent_counter(&page0, "tingzhen_agent_collections_total");
    let s0 = agent_counter(&page0, "tingzhen_agent_samples_collected_total");

    let t0 = Instant::now();
    for i in 0..n {
        let due = t0 + Duration::from_secs(i as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let r = http.get(&ne.metrics_url(), None, &[]).expect("scrape node_exporter");
        assert_eq!(r.status, 200);
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
    let n1 = usage(npid).expect("node_exporter alive");
    let s1 = agent_counter(&agent.scrape(), "tingzhen_agent_samples_collected_total");
    let collections = (c1 - c0) as usize;
    let per = if collections > 0 { (s1 - s0) / collections as f64 } else { 0.0 };
    // The agent may have done a collection or two more than n; scale its CPU to n.
    let cpu = |a: ProcUsage, b: ProcUsage| b.cpu.saturating_sub(a.cpu).as_secs_f64();
    let agent_cpu = cpu(a0, a1) * n as f64 / collections.max(1) as f64;
    let ne_cpu = cpu(n0, n1);
    format!(
        "### Agent vs node_exporter\n\n\
         {n} collections at 1 s each, side by side on this host. Peer: {nev}. The agent ships every \
         collection to a tingzhen collector by remote write (its normal mode); node_exporter is scraped \
         once a second. Series per collection: agent {per:.0}, node_exporter {ne_series}.\n\n\
         | | tingzhen-agent | node_exporter | ratio | goal |\n|---|---|---|---|---|\n\
         | RSS at end (VmRSS) | {ar} | {nr} | {rr} | ≤ 0.5× |\n\
         | peak RSS (VmHWM) | {ah} | {nh} | {hr} | |\n\
         | CPU time for {n} collections | {agent_cpu:.2} s | {ne_cpu:.2} s | {cr} | ≤ 0.5× |\n",
        nev = version("prometheus-node-exporter"),
        ar = mib(a1.rss),
        nr = mib(n1.rss),
        rr = ratio(a1.rss as f64, n1.rss as f64),
        ah = mib(a1.hwm),
        nh = mib(n1.hwm),
        hr = ratio(a1.hwm as f64, n1.hwm as f64),
        cr = ratio(agent_cpu, ne_cpu),
    )
}
