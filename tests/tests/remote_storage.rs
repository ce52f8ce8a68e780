//! Remote storage mode against a real VictoriaMetrics (issue 3): two collectors share one VM
//! and give the same answers; writes acknowledged while VM is down are spooled and delivered
//! when it returns, none lost; the InfluxDB 2 write path lands the same data.

use tingzhen_core::{Labels, Sample, TimeSeries};
use tingzhen_tests::collector::{Collector, CollectorOpts};
use tingzhen_tests::peers::VictoriaMetrics;
use tingzhen_tests::prom::{PromClient, QResult};
use tingzhen_tests::{now_ms, wait};

fn remote_toml(kind: &str, vm: &VictoriaMetrics) -> String {
    // Appended inside the harness's `[storage]` table.
    let mut t =
        format!("mode = \"remote\"\n\n[storage.remote]\nkind = \"{kind}\"\nquery_url = \"{}\"\n", vm.base_url());
    match kind {
        "influxdb2" => {
            t.push_str(&format!("write_url = \"{}\"\norg = \"hospital\"\nbucket = \"ops\"\n", vm.base_url()))
        }
        _ => t.push_str(&format!("write_url = \"{}\"\n", vm.remote_write_url())),
    }
    t
}

fn start_remote_collector(kind: &str, vm: &VictoriaMetrics) -> (Collector, PromClient, String) {
    let mut c = Collector::new(CollectorOpts { extra_toml: remote_toml(kind, vm), ..CollectorOpts::default() });
    c.start();
    let token = c.admin_token();
    let client = c.client(&token);
    (c, client, token)
}

/// `n` series × `samples` samples, 10 s apart, ending at `end_ms`, distinguished by `batch`.
fn batch(batch: &str, n: usize, samples: usize, end_ms: i64) -> Vec<TimeSeries> {
    (0..n)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", "remote_e2e_value".to_string()),
                ("batch", batch.to_string()),
                ("host", format!("his-app-{i:02}")),
            ]);
            let pts = (0..samples)
                .map(|k| Sample::new(end_ms - (samples - 1 - k) as i64 * 10_000, (i * 1000 + k) as f64))
                .collect();
            TimeSeries::new(labels, pts)
        })
        .collect()
}

fn sample_count(client: &PromClient, at_ms: i64) -> f64 {
    let r = client.query("sum(count_over_time(remote_e2e_value[1h]))", at_ms);
    r.vector().values().next().map(|(_, v)| *v).unwrap_or(0.0)
}

fn wait_for_count(vm: &VictoriaMetrics, client: &PromClient, at_ms: i64, expected: f64) {
    wait::until_60s(&format!("{expected} samples visible through the collector"), |last| {
        vm.force_flush();
        let n = sample_count(client, at_ms);
        *last = format!("{n} samples so far");
        (n == expected).then_some(())
    });
}

#[test]
fn two_collectors_share_victoriametrics_and_lose_nothing_across_its_outage() {
    let mut vm = VictoriaMetrics::start();
    let (c1, q1, t1) = start_remote_collector("victoriametrics", &vm);
    let (c2, q2, t2) = start_remote_collector("victoriametrics", &vm);
    let now = now_ms() - 60_000;

    c1.write_ok(&t1, &batch("a", 20, 30, now));
    c2.write_ok(&t2, &batch("b", 20, 30, now));
    wait_for_count(&vm, &q1, now, 1200.0);

    // VictoriaMetrics goes away; both collectors keep acknowledging into their spools.
    vm.stop();
    c1.write_ok(&t1, &batch("c", 15, 30, now));
    c2.write_ok(&t2, &batch("d", 15, 30, now));
    let metrics = c1.http().get(&c1.url("/metrics"), Some(&t1), &[]).expect("GET /metrics").body;
    assert!(
        metrics.lines().any(|l| l.starts_with("tingzhen_remote_spool_samples{") && l.ends_with(" 450")),
        "collector 1 should hold the 450 samples it acknowledged in its spool:\n{metrics}"
    );

    vm.restart();
    wait_for_count(&vm, &q1, now, 2100.0);
    assert_eq!(sample_count(&q2, now), 2100.0, "the second collector must see the same data");

    // Same answers from both replicas, for instant and range queries.
    for q in [
        "sum by (batch) (remote_e2e_value)",
        "max_over_time(remote_e2e_value{batch=\"c\"}[10m])",
        "count(remote_e2e_value)",
    ] {
        assert_eq!(q1.query(q, now), q2.query(q, now), "{q}");
    }
    let r1 = q1.query_range("sum(remote_e2e_value)", now - 290_000, now, 10_000);
    assert_eq!(r1, q2.query_range("sum(remote_e2e_value)", now - 290_000, now, 10_000));
    let QResult::Matrix(m) = &r1 else { panic!("matrix expected") };
    assert_eq!(m.values().next().map(Vec::len), Some(30));
    assert_eq!(q1.series(&["remote_e2e_value"], now - 3_600_000, now).len(), 70);
    assert_eq!(q2.label_values("batch", &[], now - 3_600_000, now), vec!["a", "b", "c", "d"]);
    drop((c1, c2));
}

#[test]
fn influxdb2_write_path_lands_in_victoriametrics() {
    // VictoriaMetrics accepts the InfluxDB 2 write API; with this flag a single field keeps the
    // measurement's name, so the metric reads back under its own name.
    let vm = VictoriaMetrics::start_with_args(&["-influxSkipSingleField"]);
    let (c, q, t) = start_remote_collector("influxdb2", &vm);
    let now = now_ms() - 60_000;
    c.write_ok(&t, &batch("influx", 10, 30, now));
    wait_for_count(&vm, &q, now, 300.0);
    let last = q.query("remote_e2e_value{batch=\"influx\",host=\"his-app-03\"}", now);
    assert_eq!(last.vector().values().next().map(|(_, v)| *v), Some(3029.0));
    drop(c);
}
