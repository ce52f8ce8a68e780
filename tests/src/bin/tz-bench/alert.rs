//! Alerting benchmarks (issue 5). Latency: the moment a value crosses a threshold → the email
//! is in a real SMTP server (aiosmtpd), tingzhen (`serve --target all`, the value pushed by
//! remote write) side by side with Prometheus + Alertmanager tuned for speed (1 s scrape and
//! evaluation, `group_wait: 0s`, the value flipped in an exposition endpoint the bench
//! serves), trial by trial in the same run. Throughput: `eval` (10,000 rules over 100,000
//! series, time per evaluation round).

mod eval;
mod expo;
mod prom_eval;

use crate::Flags;
use crate::report::{ratio, version};
use expo::Exposition;
use std::time::{Duration, Instant};
use tingzhen_core::{Labels, Sample, TimeSeries};
use tingzhen_tests::smtp::{Mail, SmtpSink};
use tingzhen_tests::synth::Rng;
use tingzhen_tests::{Alertmanager, Collector, CollectorOpts, Prometheus};

const THRESHOLD_RULES: &str = r#"groups:
  - name: bench
    rules:
      - alert: HighTemp
        expr: bench_temp > 50
        for: 0s
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.trial }} is at {{ $value }}"
"#;

/// How long one trial may take before it counts as lost.
const TRIAL_LIMIT: Duration = Duration::from_secs(60);

/// Wall clock in fractional milliseconds, the same clock the SMTP sink stamps arrivals with.
fn wall_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock before 1970").as_secs_f64() * 1e3
}

/// tingzhen in one process with the rule file, a route that sends at once (`group_wait = 0s`,
/// every alert its own group, as Alertmanager's `['...']` below) and an email receiver.
fn start_tingzhen(rules: &std::path::Path, smtp_port: u16) -> Collector {
    let extra_toml = format!(
        r#"
[alerting.rules]
files = [{rules:?}]

[alerting.routing.route]
receiver = "bench"
group_by = ["..."]
group_wait = "0s"
group_interval = "1s"
repeat_interval = "4h"

[[alerting.notify.receivers]]
name = "bench"
language = "en"
channels = [{{ type = "email", to = ["oncall@bench.example"] }}]

[alerting.notify.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "plain"
from = "tingzhen <alerts@bench.example>"
"#,
        rules = rules.display().to_string()
    );
    Collector::start_with(CollectorOpts { extra_toml, all_targets: true, ..CollectorOpts::default() })
}

fn start_alertmanager(smtp_port: u16) -> Alertmanager {
    Alertmanager::start(&format!(
        r#"global:
  smtp_smarthost: "127.0.0.1:{smtp_port}"
  smtp_from: "alertmanager@bench.example"
  smtp_require_tls: false
route:
  receiver: bench
  group_by: ["..."]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 4h
receivers:
  - name: bench
    email_configs:
      - to: oncall@bench.example
        send_resolved: false
"#
    ))
}

fn start_prometheus(rules: &std::path::Path, expo: &Exposition, am: &Alertmanager) -> Prometheus {
    Prometheus::start(
        "  scrape_interval: 1s\n  evaluation_interval: 1s",
        &format!(
            "rule_files: [{rules:?}]\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{am}\"]\n\
             scrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: [\"{expo}\"]\n",
            rules = rules.display().to_string(),
            am = am.addr,
            expo = expo.addr,
        ),
    )
}

fn temp_series(trial: &str, value: f64, at_ms: f64) -> TimeSeries {
    let labels = Labels::from_pairs([("__name__", "bench_temp"), ("job", "bench"), ("trial", trial)]);
    TimeSeries::new(labels, vec![Sample::new(at_ms as i64, value)])
}

/// Waits for the first message about `trial` that arrived after `since_ms`; its delay, or
/// `None` after [`TRIAL_LIMIT`]. Each trial has its own label value, so its message names it
/// (tingzhen's body lists the labels; Alertmanager's subject lists the group's labels).
fn wait_mail(sink: &SmtpSink, trial: &str, since_ms: f64) -> Option<f64> {
    let deadline = Instant::now() + TRIAL_LIMIT;
    let about = |m: &Mail| m.arrived_ms >= since_ms && (m.subject.contains(trial) || m.text.contains(trial));
    while Instant::now() < deadline {
        if let Some(m) = sink.mails().iter().find(|m| about(m)) {
            return Some(m.arrived_ms - since_ms);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// (median, p90) in milliseconds; nearest-rank p90.
fn median_p90(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let p90 = s[((s.len() as f64 * 0.9).ceil() as usize).clamp(1, s.len()) - 1];
    (s[s.len() / 2], p90)
}

fn fmt_all(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ")
}

/// A 0–1 s random pause, so a flip lands at a random phase of Prometheus' scrape and
/// evaluation cycles (and of anything periodic in tingzhen).
fn jitter(rng: &mut Rng) -> Duration {
    Duration::from_millis(rng.below(1000))
}

fn latency(flags: &Flags) -> String {
    let trials = flags.get("trials", 20usize).max(1);
    let dir = tempfile::Builder::new().prefix("tz-bench-alert-").tempdir().expect("tempdir");
    let rules = dir.path().join("bench-rules.yml");
    std::fs::write(&rules, THRESHOLD_RULES).expect("write rule file");

    let (tz_sink, am_sink) = (SmtpSink::start(), SmtpSink::start());
    let coll = start_tingzhen(&rules, tz_sink.port);
    let token = coll.create_token("bench", "ingest", None);
    let expo = Exposition::start();
    let am = start_alertmanager(am_sink.port);
    let prom = start_prometheus(&rules, &expo, &am);
    let http = coll.http().clone();
    let write_url = coll.url("/api/v1/write");
    let push = |series: TimeSeries| {
        let body = tingzhen_core::remote_write::encode(&[series]);
        let r = http.remote_write(&write_url, Some(&token), &body).expect("remote write to tingzhen");
        assert!(r.is_success(), "tingzhen refused the push: {} {}", r.status, r.body);
    };
    // Prometheus' first scrapes and evaluations, and tingzhen's first round, happen before trials.
    std::thread::sleep(Duration::from_secs(3));

    let mut rng = Rng::new(5);
    let (mut tz, mut pm) = (Vec::new(), Vec::new());
    let (mut tz_lost, mut pm_lost) = (0, 0);
    for i in 0..trials {
        // A new label value per trial: each trial is a new alert (and a new group) in both.
        let trial = format!("trial-{i:03}");
        push(temp_series(&trial, 20.0, wall_ms()));
        expo.set(&trial, 20.0);
        // Long enough for Prometheus to scrape and evaluate the value below the threshold.
        std::thread::sleep(Duration::from_millis(2200) + jitter(&mut rng));

        let t0 = wall_ms();
        push(temp_series(&trial, 60.0, t0));
        match wait_mail(&tz_sink, &trial, t0) {
            Some(ms) => tz.push(ms),
            None => tz_lost += 1,
        }
        std::thread::sleep(jitter(&mut rng));
        let t0 = wall_ms();
        expo.set(&trial, 60.0);
        match wait_mail(&am_sink, &trial, t0) {
            Some(ms) => pm.push(ms),
            None => pm_lost += 1,
        }
        eprintln!(
            "trial {i}: tingzhen {} ms, Prometheus+Alertmanager {} ms",
            tz.last().map_or("lost".into(), |v| format!("{v:.0}")),
            pm.last().map_or("lost".into(), |v| format!("{v:.0}"))
        );
    }
    drop(prom);
    drop(am);
    drop(coll);

    let ((tz_med, tz_p90), (pm_med, pm_p90)) = (median_p90(&tz), median_p90(&pm));
    let mut notes = Vec::new();
    if tz_lost + pm_lost > 0 {
        notes.push(format!(
            "**Lost** (no email within {}s): tingzhen {tz_lost}, Prometheus + Alertmanager {pm_lost}.",
            TRIAL_LIMIT.as_secs()
        ));
    }
    let met = tz_med <= 3000.0 && tz_med <= 0.5 * pm_med;
    notes.push(format!("Goal (median ≤ 3 s and ≤ 0.5× theirs): **{}**.", if met { "met" } else { "not met" }));
    format!(
        "### Alert latency: threshold crossed → email received\n\n\
         {trials} trials, each a new alert (`bench_temp{{trial=…}} > 50`, `for: 0s`): the value is first \
         set below the threshold, then, after 2.2–3.2 s, above it. tingzhen: `serve --target all`, the \
         sample pushed by remote write, the clock started just before the push (rule group interval left \
         at its 5 s default: evaluation is woken by the write). Prometheus + Alertmanager: scrape and \
         evaluation every 1 s, the value flipped in an exposition endpoint the bench serves, the clock \
         started at the flip, after a 0–1 s random pause so the flip falls at a random phase of their \
         cycles. Both routes: every alert its own group, `group_wait` 0s, `group_interval` 1s. The clock \
         stops when aiosmtpd has received the whole message (one sink each). Peers: {pv}, {av}.\n\n\
         | ms | tingzhen | Prometheus + Alertmanager | ratio | goal |\n|---|---|---|---|---|\n\
         | median | {tz_med:.0} | {pm_med:.0} | {rm} | ≤ 3000 ms and ≤ 0.5× |\n\
         | p90 | {tz_p90:.0} | {pm_p90:.0} | {rp} | |\n\n\
         Each trial, ms — tingzhen: {tzall}; Prometheus + Alertmanager: {pmall}.\n\n{notes}\n",
        pv = version("prometheus"),
        av = version("prometheus-alertmanager"),
        rm = ratio(tz_med, pm_med),
        rp = ratio(tz_p90, pm_p90),
        tzall = fmt_all(&tz),
        pmall = fmt_all(&pm),
        notes = notes.join(" "),
    )
}

/// `tz-bench alert [--only latency|eval]`: both parts by default.
pub fn run(flags: &Flags) -> String {
    match flags.str("only") {
        None => format!("{}\n{}", latency(flags), eval::run(flags)),
        Some("latency") => latency(flags),
        Some("eval") => eval::run(flags),
        Some(other) => crate::usage(&format!("--only: {other:?} is not latency or eval")),
    }
}
