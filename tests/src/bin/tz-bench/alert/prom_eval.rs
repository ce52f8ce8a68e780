//! The Prometheus side of the evaluation-throughput benchmark: the same series (remote write)
//! and the same rules, evaluated on Prometheus' own schedule. Prometheus has no "evaluate now",
//! so its round time is what it reports itself: the sum over groups of
//! `prometheus_rule_group_last_duration_seconds` (the serial evaluation time of one round,
//! comparable to the sum of tingzhen's per-rule evaluation times), sampled once an interval.

use super::eval::{METRICS, Shape};
use crate::loadgen::{self, Body};
use std::time::Duration;
use tingzhen_tests::{Http, Prometheus, procstat};

/// Prometheus' group interval here: long enough that a round never overlaps the next.
pub const INTERVAL: Duration = Duration::from_secs(10);

pub struct PromFigures {
    /// Serial evaluation time of a round (s), one per sampled interval.
    pub serial: Vec<f64>,
    pub cpu_per_round: f64,
    pub firing: usize,
    pub failures: f64,
    pub rss: u64,
}

/// Sum of the values of every sample line of the metric family `name`.
fn family_sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn self_metrics(prom: &Prometheus) -> String {
    let r = Http::new().get(&format!("{}/metrics", prom.base_url()), None, &[]).expect("GET Prometheus /metrics");
    assert_eq!(r.status, 200, "Prometheus /metrics: {}", r.body);
    r.body
}

pub fn run(shape: &Shape, bodies: &[Body], rounds: usize, dir: &std::path::Path) -> PromFigures {
    let rule_path = dir.join("bench-eval-prometheus.yml");
    std::fs::write(&rule_path, shape.rule_file(&format!("{}s", INTERVAL.as_secs()))).expect("write rule file");
    let prom = Prometheus::start(
        &format!("  evaluation_interval: {}s", INTERVAL.as_secs()),
        &format!("rule_files: [{:?}]\n", rule_path.display().to_string()),
    );
    let r = loadgen::run(&prom.remote_write_url(), None, bodies, 2);
    assert_eq!(r.failed_requests, 0, "loading Prometheus: {} requests failed: {:?}", r.failed_requests, r.errors);
    eprintln!("eval: Prometheus loaded {} series at {:.0} samples/s", r.samples, r.rate());
    // Three intervals: every group has run over all of the data, and the first rounds after
    // the load (which also pay for head series creation and GC) are not sampled.
    std::thread::sleep(3 * INTERVAL + Duration::from_secs(1));

    let pid = prom.proc.pid();
    let cpu0 = procstat::usage(pid).map(|u| u.cpu).unwrap_or_default();
    let iterations0 = family_sum(&self_metrics(&prom), "prometheus_rule_group_iterations_total");
    let mut serial = Vec::new();
    for round in 0..rounds {
        std::thread::sleep(INTERVAL);
        let s = family_sum(&self_metrics(&prom), "prometheus_rule_group_last_duration_seconds");
        eprintln!("eval: Prometheus round {round}: {s:.3} s serial");
        serial.push(s);
    }
    let body = self_metrics(&prom);
    let cpu = procstat::usage(pid).map(|u| u.cpu).unwrap_or_default().saturating_sub(cpu0);
    let group_runs = family_sum(&body, "prometheus_rule_group_iterations_total") - iterations0;
    let rounds_done = (group_runs / METRICS as f64).max(1.0);
    let firing = prom
        .client()
        .query(r#"count(ALERTS{alertstate="firing"})"#, tingzhen_tests::now_ms())
        .vector()
        .values()
        .next()
        .map_or(0, |v| v.1 as usize);
    PromFigures {
        serial,
        cpu_per_round: cpu.as_secs_f64() / rounds_done,
        firing,
        failures: family_sum(&body, "prometheus_rule_evaluation_failures_total"),
        rss: procstat::usage(pid).map(|u| u.rss).unwrap_or(0),
    }
}
