use super::*;
use crate::model::AlertState;
use crate::rules::{DEFAULT_INTERVAL, parse_file};
use std::sync::atomic::AtomicI64;
use tingzhen_core::Labels;
use tingzhen_core::db::testing::fresh_db;
use tingzhen_core::query::{IngestObserver, MetricsQueryError};
use tokio::sync::mpsc;

/// A query engine over one gauge (`temp{room="icu"}`), answering `temp > 40` style rules; it
/// reports each evaluation and can hold one until released.
struct Gauge {
    value: Mutex<Option<f64>>,
    calls: mpsc::UnboundedSender<()>,
    hold: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl MetricsQuery for Gauge {
    fn instant(&self, expr: &str, _at_ms: i64) -> Result<Vec<InstantSample>, MetricsQueryError> {
        let _ = self.calls.send(());
        if let Some(gate) = self.hold.lock().take() {
            let _ = gate.recv();
        }
        let threshold: f64 = expr
            .strip_prefix("temp > ")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| MetricsQueryError::BadQuery(format!("unexpected {expr}")))?;
        let labels = Labels::from_pairs([("__name__", "temp"), ("room", "icu")]);
        Ok(self
            .value
            .lock()
            .filter(|v| *v > threshold)
            .map(|value| InstantSample { labels, value })
            .into_iter()
            .collect())
    }
}

struct Recorder(mpsc::UnboundedSender<Vec<Alert>>);

impl AlertSink for Recorder {
    fn alerts_changed(&self, alerts: Vec<Alert>) {
        let _ = self.0.send(alerts);
    }
}

const RULES: &str = r#"
groups:
  - name: ward
    interval: 1h
    rules:
      - alert: TooHot
        expr: temp > 40
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.room }} is {{ $value }}°C"
"#;

struct Rig {
    scheduler: Scheduler,
    gauge: Arc<Gauge>,
    calls: mpsc::UnboundedReceiver<()>,
    alerts: mpsc::UnboundedReceiver<Vec<Alert>>,
}

fn rig(debounce: Duration) -> Rig {
    let (calls_tx, calls) = mpsc::unbounded_channel();
    let (alerts_tx, alerts) = mpsc::unbounded_channel();
    let gauge = Arc::new(Gauge { value: Mutex::new(None), calls: calls_tx, hold: Mutex::new(None) });
    let state = Arc::new(AlertStore::open(Arc::new(fresh_db())).unwrap());
    let now = Arc::new(AtomicI64::new(1_000_000));
    let clock: Clock = Arc::new(move || now.load(Ordering::SeqCst));
    let evaluator = Arc::new(Evaluator::new(gauge.clone(), state, Arc::new(Recorder(alerts_tx)), clock));
    Rig { scheduler: Scheduler::new(evaluator, debounce, 2), gauge, calls, alerts }
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    // A guard against a hang, not a latency assertion: the group interval is an hour, so
    // anything that arrives was caused by the write.
    tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("timed out").expect("channel closed")
}

fn groups() -> Vec<Arc<RuleGroup>> {
    parse_file(RULES, "t.yml", DEFAULT_INTERVAL).unwrap().into_iter().map(Arc::new).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_of_the_metric_wakes_evaluation_before_the_interval() {
    let mut r = rig(Duration::ZERO);
    r.scheduler.replace(groups());
    next(&mut r.calls).await; // the evaluation at start: nothing is hot
    *r.gauge.value.lock() = Some(41.5);
    r.scheduler.observer().samples_written(&["temp"]);
    next(&mut r.calls).await;
    let alerts = next(&mut r.alerts).await;
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a.state, AlertState::Firing);
    assert_eq!(a.labels["alertname"], "TooHot");
    assert_eq!(a.labels["room"], "icu");
    assert_eq!(a.labels["severity"], "critical");
    assert!(!a.labels.contains_key("__name__"));
    assert_eq!(a.annotations["summary"], "icu is 41.5°C");
    // Cooling down and writing again resolves it, again without waiting for the interval.
    *r.gauge.value.lock() = Some(20.0);
    r.scheduler.observer().samples_written(&["temp"]);
    let resolved = next(&mut r.alerts).await;
    assert_eq!(resolved[0].state, AlertState::Resolved);
    assert_eq!(r.scheduler.evaluator().health("ward/TooHot#0").unwrap().health, "ok");
    r.scheduler.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_during_an_evaluation_causes_one_more() {
    let mut r = rig(Duration::from_millis(10));
    let (release, gate) = std::sync::mpsc::channel();
    *r.gauge.hold.lock() = Some(gate);
    r.scheduler.replace(groups());
    next(&mut r.calls).await; // the first evaluation has started and is held
    let observer = r.scheduler.observer();
    for _ in 0..100 {
        observer.samples_written(&["temp", "other"]);
    }
    assert_eq!(observer.pokes.load(Ordering::SeqCst), 1, "100 writes ring the group once");
    release.send(()).unwrap();
    next(&mut r.calls).await; // exactly one follow-up evaluation starts
    assert_eq!(r.scheduler.evaluator().stats.woken.load(Ordering::SeqCst), 1);
    r.scheduler.shutdown().await;
}

#[test]
fn unrelated_metrics_do_not_ring() {
    let r = rig(Duration::ZERO);
    let groups = groups();
    let wake = Arc::new(wake::GroupWake::default());
    r.scheduler.observer().set_index(WakeIndex::build(groups.iter().map(|g| (g.as_ref(), wake.clone()))));
    let observer = r.scheduler.observer();
    observer.samples_written(&["node_load1", "up"]);
    assert_eq!(observer.pokes.load(Ordering::SeqCst), 0);
    observer.samples_written(&["node_load1", "temp"]);
    assert_eq!(observer.pokes.load(Ordering::SeqCst), 1);
    observer.samples_written(&["temp"]);
    assert_eq!(observer.pokes.load(Ordering::SeqCst), 1, "already rung, not yet evaluated");
    wake.take();
    observer.samples_written(&["temp"]);
    assert_eq!(observer.pokes.load(Ordering::SeqCst), 2);
}

#[test]
fn a_failing_query_keeps_state_and_reports_health() {
    let r = rig(Duration::ZERO);
    let mut g = parse_file(RULES, "t.yml", DEFAULT_INTERVAL).unwrap().remove(0);
    g.rules[0].expr = "sum(".into();
    r.scheduler.evaluator().evaluate_group(&g);
    let h = r.scheduler.evaluator().health("ward/TooHot#0").unwrap();
    assert_eq!(h.health, "err");
    assert!(h.last_error.unwrap().contains("unexpected"));
    assert_eq!(r.scheduler.evaluator().stats.failures.load(Ordering::SeqCst), 1);
}
