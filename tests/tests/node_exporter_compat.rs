//! The agent uses node_exporter's metric names and label names where the meaning is the same,
//! so existing "Node Exporter" dashboards work: both run on this host and the key series must
//! exist in both with the same label names (besides the agent's static labels).

use std::collections::{BTreeMap, BTreeSet};
use tingzhen_tests::agent::AgentOpts;
use tingzhen_tests::{Agent, Http, NodeExporter};

/// Labels the agent adds to everything from its config.
const STATIC_LABELS: [&str; 5] = ["host", "ip", "campus", "role", "system"];

/// metric name -> set of label-name sets, from a text exposition page.
fn shapes(page: &str) -> BTreeMap<String, BTreeSet<Vec<String>>> {
    let mut out: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
    for line in page.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (name, labels) = match line.find('{') {
            Some(i) => (&line[..i], &line[i + 1..line.rfind('}').unwrap_or(line.len())]),
            None => (line.split_whitespace().next().unwrap_or_default(), ""),
        };
        let mut names: Vec<String> = labels
            .split(',')
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.trim().to_string()))
            .filter(|k| !k.is_empty() && !STATIC_LABELS.contains(&k.as_str()))
            .collect();
        names.sort();
        out.entry(name.to_string()).or_default().insert(names);
    }
    out
}

#[test]
fn key_metrics_match_node_exporter_names_and_labels() {
    let mut agent = Agent::start(AgentOpts { interval: Some("1s".into()), ..Default::default() });
    let ne = NodeExporter::start();
    let ours = shapes(&agent.scrape_collected());
    let theirs = shapes(&Http::new().get(&ne.metrics_url(), None, &[]).unwrap().body);
    let key = [
        "node_cpu_seconds_total",
        "node_load1",
        "node_load5",
        "node_load15",
        "node_memory_MemTotal_bytes",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemFree_bytes",
        "node_memory_SwapTotal_bytes",
        "node_memory_SwapFree_bytes",
        "node_filesystem_size_bytes",
        "node_filesystem_free_bytes",
        "node_filesystem_avail_bytes",
        "node_network_receive_bytes_total",
        "node_network_transmit_bytes_total",
        "node_network_receive_packets_total",
        "node_network_transmit_packets_total",
        "node_network_receive_errs_total",
        "node_network_receive_drop_total",
        "node_disk_read_bytes_total",
        "node_disk_written_bytes_total",
        "node_boot_time_seconds",
        "node_procs_running",
        "node_filefd_allocated",
    ];
    let mut problems = Vec::new();
    for name in key {
        let Some(t) = theirs.get(name) else { continue }; // node_exporter has none here (e.g. no disks)
        match ours.get(name) {
            None => problems.push(format!("{name}: node_exporter has it, the agent does not")),
            Some(o) if o != t => problems.push(format!("{name}: label names {o:?}, node_exporter {t:?}")),
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "agent differs from node_exporter:\n{}", problems.join("\n"));
}
