//! Evaluation throughput: R alerting rules over S series (default 10,000 over 100,000) in one
//! `tingzhen serve --target all`; the time one evaluation round of every rule takes.
//!
//! Shape: 100 metrics (`bench_eval_000` … `_099`), each on S/100 hosts; every host carries a
//! `shard` label (host mod R/100). Each metric is one rule group of R/100 rules, one per shard
//! (`bench_eval_007{shard="s0042"} > 99`), so together the rules read every series exactly once
//! — per-system thresholds as a hospital writes them, not one rule over everything. Values are
//! uniform in [0, 100), so about 1 % of the series fire. Groups have a 1 h interval: a round
//! is started by writing one fresh sample of each metric (what a scrape round does), which
//! wakes every group at once; the round ends when the evaluation counter
//! (`tingzhen_alerting_rule_evaluations_total` on `/api/v1/alerting/metrics`) has grown by R.
//! Prometheus then evaluates the same rules over the same series on its own (`prom_eval`).

use crate::Flags;
use crate::loadgen::{self, Body};
use crate::report::{ratio, version};
use std::time::{Duration, Instant};
use tingzhen_core::{Labels, Sample, TimeSeries};
use tingzhen_tests::synth::{Rng, requests, sample_count};
use tingzhen_tests::{Collector, CollectorOpts, Http, now_ms, procstat};

pub const METRICS: usize = 100;
const THRESHOLD: f64 = 99.0;
/// The instant selector's lookback is 5 min; data older than this is written again first.
const REFRESH_AFTER: Duration = Duration::from_secs(180);

pub struct Shape {
    series: usize,
    rules: usize,
    hosts: usize,
    shards: usize,
}

impl Shape {
    fn from_flags(flags: &Flags) -> Shape {
        let series = flags.get("eval-series", 100_000usize);
        let rules = flags.get("eval-rules", 10_000usize);
        if series == 0 || !series.is_multiple_of(METRICS) {
            crate::usage(&format!("--eval-series: {series} is not a positive multiple of {METRICS}"));
        }
        if rules == 0 || !rules.is_multiple_of(METRICS) {
            crate::usage(&format!("--eval-rules: {rules} is not a positive multiple of {METRICS}"));
        }
        if rules > series {
            crate::usage(&format!(
                "--eval-rules: {rules} rules over {series} series would leave rules reading nothing"
            ));
        }
        Shape { series, rules, hosts: series / METRICS, shards: rules / METRICS }
    }

    /// Every rule, one group per metric, each group evaluated every `interval`.
    pub fn rule_file(&self, interval: &str) -> String {
        let mut y = String::from("groups:\n");
        for m in 0..METRICS {
            y.push_str(&format!("  - name: bench-eval-{m:03}\n    interval: {interval}\n    rules:\n"));
            for s in 0..self.shards {
                y.push_str(&format!(
                    "      - alert: BenchEval{m:03}s{s:04}\n        expr: 'bench_eval_{m:03}{{shard=\"s{s:04}\"}} > {THRESHOLD}'\n"
                ));
            }
        }
        y
    }

    /// Every series with one sample at `at_ms`, metric-major (host 0 of metric m is at m × hosts).
    fn series(&self, at_ms: i64) -> Vec<TimeSeries> {
        let mut rng = Rng::new(11);
        let mut out = Vec::with_capacity(self.series);
        for m in 0..METRICS {
            let name = format!("bench_eval_{m:03}");
            for h in 0..self.hosts {
                let labels = Labels::from_pairs([
                    ("__name__", name.as_str()),
                    ("job", "bench"),
                    ("host", &format!("h{h:06}")),
                    ("shard", &format!("s{:04}", h % self.shards)),
                ]);
                out.push(TimeSeries::new(labels, vec![Sample::new(at_ms, rng.f64() * 100.0)]));
            }
        }
        out
    }
}

pub fn bodies(series: &[TimeSeries]) -> Vec<Body> {
    requests(series, 2000, 1)
        .iter()
        .map(|r| Body { bytes: tingzhen_core::remote_write::encode(r), samples: sample_count(r) })
        .collect()
}

/// The same series (and values) at a new timestamp.
fn restamp(series: &[TimeSeries], at_ms: i64) -> Vec<TimeSeries> {
    series.iter().map(|s| TimeSeries::new(s.labels.clone(), vec![Sample::new(at_ms, s.samples[0].value)])).collect()
}

struct Metrics<'a> {
    http: &'a Http,
    url: String,
    token: &'a str,
}

impl Metrics<'_> {
    /// The value of the sample line that starts with `series` (name plus labels as printed).
    fn value(&self, series: &str) -> f64 {
        let r = self.http.get(&self.url, Some(self.token), &[]).expect("GET /api/v1/alerting/metrics");
        assert_eq!(r.status, 200, "alerting metrics: {}", r.body);
        r.body
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from the alerting metrics:\n{}", r.body))
    }

    fn evaluations(&self) -> u64 {
        self.value("tingzhen_alerting_rule_evaluations_total") as u64
    }

    /// Waits until no evaluation has started for 2 s (rounds woken by earlier writes are done).
    fn wait_quiet(&self) -> u64 {
        let mut last = self.evaluations();
        let mut still = Instant::now();
        while still.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(250));
            let now = self.evaluations();
            if now != last {
                last = now;
                still = Instant::now();
            }
        }
        last
    }
}

#[derive(Default)]
struct RuleTimes {
    count: usize,
    /// Sum of the per-rule evaluation times of the latest evaluation of each rule (s).
    serial: f64,
    unhealthy: usize,
}

/// Per-rule evaluation times as the engine measured them, and rule health, from the rules API.
fn rule_times(http: &Http, url: &str, token: &str) -> RuleTimes {
    let json = http.get(url, Some(token), &[]).expect("GET /api/v1/alerting/rules").json();
    let rules: Vec<&serde_json::Value> = json["data"]["groups"]
        .as_array()
        .expect("rules API: data.groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules API: group.rules").iter())
        .collect();
    RuleTimes {
        count: rules.len(),
        serial: rules.iter().filter_map(|r| r["evaluation_seconds"].as_f64()).sum(),
        unhealthy: rules.iter().filter(|r| r["health"] != "ok").count(),
    }
}

fn load(coll: &Collector, token: &str, series: &[TimeSeries]) {
    let r = loadgen::run(&coll.url("/api/v1/write"), Some(token), &bodies(series), 2);
    assert_eq!(r.failed_requests, 0, "loading series: {} requests failed: {:?}", r.failed_requests, r.errors);
    eprintln!("eval: loaded {} series at {:.0} samples/s", r.samples, r.rate());
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(flags: &Flags) -> String {
    let shape = Shape::from_flags(flags);
    let rounds = flags.get("eval-rounds", 5usize).max(1);
    let dir = tempfile::Builder::new().prefix("tz-bench-eval-").tempdir().expect("tempdir");
    let rule_path = dir.path().join("bench-eval.yml");
    std::fs::write(&rule_path, shape.rule_file("1h")).expect("write rule file");
    eprintln!("eval: {} rules in {METRICS} groups over {} series", shape.rules, shape.series);

    let extra_toml = format!("\n[alerting.rules]\nfiles = [{:?}]\n", rule_path.display().to_string());
    let mut coll = Collector::start_with(CollectorOpts { extra_toml, all_targets: true, ..CollectorOpts::default() });
    let token = coll.admin_token();
    let http = coll.http().clone();
    let m = Metrics { http: &http, url: coll.url("/api/v1/alerting/metrics"), token: &token };
    let pid = coll.proc_mut().pid();

    let mut series = shape.series(now_ms());
    let want_firing = series.iter().filter(|s| s.samples[0].value > THRESHOLD).count();
    load(&coll, &token, &series);
    let mut loaded_at = Instant::now();
    m.wait_quiet();

    let mut times = Vec::new();
    let mut notes = Vec::new();
    let cpu0 = procstat::usage(pid).map(|u| u.cpu).unwrap_or_default();
    let mut cpu_rounds = Duration::ZERO;
    let (mut serials, mut last_rules) = (Vec::new(), RuleTimes::default());
    for round in 0..rounds {
        if loaded_at.elapsed() > REFRESH_AFTER {
            // Keeps every series inside the 5 min lookback (untimed; its own rounds settle first).
            series = restamp(&series, now_ms());
            load(&coll, &token, &series);
            loaded_at = Instant::now();
            m.wait_quiet();
        }
        let ticks: Vec<TimeSeries> =
            restamp(&(0..METRICS).map(|k| series[k * shape.hosts].clone()).collect::<Vec<_>>(), now_ms());
        let body = tingzhen_core::remote_write::encode(&ticks);
        let before = m.evaluations();
        let cpu_before = procstat::usage(pid).map(|u| u.cpu).unwrap_or_default();
        let t0 = Instant::now();
        let r = http.remote_write(&coll.url("/api/v1/write"), Some(&token), &body).expect("round write");
        assert!(r.is_success(), "round write refused: {} {}", r.status, r.body);
        let target = before + shape.rules as u64;
        while m.evaluations() < target {
            assert!(t0.elapsed() < Duration::from_secs(600), "round {round} did not finish within 10 minutes");
            std::thread::sleep(Duration::from_millis(20));
        }
        let secs = t0.elapsed().as_secs_f64();
        cpu_rounds += procstat::usage(pid).map(|u| u.cpu).unwrap_or_default().saturating_sub(cpu_before);
        let after = m.wait_quiet();
        if after != target {
            notes.push(format!("round {round}: {} rule evaluations, {} expected", after - before, shape.rules));
        }
        let rules_now = rule_times(&http, &coll.url("/api/v1/alerting/rules"), &token);
        eprintln!("eval: round {round}: {secs:.3} s wall, {:.3} s serial", rules_now.serial);
        times.push(secs);
        serials.push(rules_now.serial);
        last_rules = rules_now;
    }
    let cpu_total = procstat::usage(pid).map(|u| u.cpu).unwrap_or_default().saturating_sub(cpu0);
    let rss = procstat::usage(pid).map(|u| u.rss).unwrap_or(0);

    let (listed, unhealthy) = (last_rules.count, last_rules.unhealthy);
    if listed != shape.rules {
        notes.push(format!("the rules API lists {listed} rules, {} were configured", shape.rules));
    }
    if unhealthy > 0 {
        notes.push(format!("{unhealthy} rules not healthy after the last round"));
    }
    let firing = m.value(r#"tingzhen_alerting_alerts{state="firing"}"#) as usize;
    if firing != want_firing {
        notes.push(format!("{firing} alerts firing, {want_firing} series are above the threshold"));
    }
    coll.stop();

    // Prometheus afterwards, alone on the machine, over the same series and values.
    let prom = super::prom_eval::run(&shape, &bodies(&restamp(&series, now_ms())), rounds, dir.path());
    if prom.firing != want_firing {
        notes.push(format!("Prometheus: {} alerts firing, {want_firing} series are above the threshold", prom.firing));
    }
    if prom.failures > 0.0 {
        notes.push(format!("Prometheus: {} rule evaluations failed", prom.failures));
    }

    let med = median(times.clone());
    let prom_serial = median(prom.serial.clone());
    let serial = median(serials.clone());
    let notes = if notes.is_empty() {
        format!(
            "Checks: every tingzhen round evaluated each rule exactly once; all rules healthy; {firing} alerts \
             firing in both = the series above the threshold."
        )
    } else {
        format!("**Problems:** {}", notes.join("; "))
    };
    format!(
        "### Alert rule evaluation throughput\n\n\
         {rules} alerting rules in {METRICS} groups over {series} series (`--eval-rules {rules} --eval-series {series}`), \
         each rule a threshold on one metric's shard of about {per} series (`bench_eval_007{{shard=\"s0042\"}} > 99`), \
         so the rules read every series once; about 1 % fire. tingzhen: `serve --target all`, default \
         `max_concurrent = 4` group evaluations at once; a round = one write of a fresh sample of each metric \
         (waking all groups) → its evaluation counter has grown by {rules}; {rounds} rounds, wall time at the \
         client, polled every 20 ms (the 50 ms wake debounce included). Prometheus ({pv}), run afterwards \
         alone: the same series by remote write and the same rules with a {pint} s group interval; it cannot be \
         told to evaluate now, so its figure is the serial time it reports (sum over groups of \
         `prometheus_rule_group_last_duration_seconds`), sampled once an interval, {rounds} times — compare it \
         with tingzhen's sum of per-rule evaluation times.\n\n\
         | | tingzhen | Prometheus | ratio |\n|---|---|---|---|\n\
         | round wall time, median of {rounds} (s) | {med:.3} | | |\n\
         | rounds (s) | {all} | | |\n\
         | rules evaluated per second (wall) | {rate:.0} | | |\n\
         | serial evaluation time of a round, median (s) | {serial:.3} ({sall}) | {prom_serial:.3} ({pall}) | {sr} |\n\
         | server CPU per round (s) | {cpu:.2} | {pcpu:.2} | {cr} |\n\
         | server CPU, tingzhen's whole measurement incl. settling and rules API reads (s) | {cpu_total:.2} | | |\n\
         | server RSS at the end (MiB) | {rss:.0} | {prss:.0} | |\n\n\
         {notes}\n",
        rules = shape.rules,
        series = shape.series,
        per = shape.hosts / shape.shards,
        pv = version("prometheus"),
        pint = super::prom_eval::INTERVAL.as_secs(),
        all = times.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>().join(", "),
        sall = serials.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>().join(", "),
        pall = prom.serial.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>().join(", "),
        rate = shape.rules as f64 / med,
        sr = ratio(serial, prom_serial),
        cpu = cpu_rounds.as_secs_f64() / rounds as f64,
        pcpu = prom.cpu_per_round,
        cr = ratio(cpu_rounds.as_secs_f64() / rounds as f64, prom.cpu_per_round),
        cpu_total = cpu_total.as_secs_f64(),
        rss = rss as f64 / 1048576.0,
        prss = prom.rss as f64 / 1048576.0,
    )
}
