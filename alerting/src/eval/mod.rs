//! Rule evaluation. Each group has a task that evaluates its rules when samples of a metric
//! they read arrive (`wake`, debounced) and at least every group interval — the floor that
//! makes `for`, staleness and `absent()` advance when nothing is written. An evaluation
//! queries PromQL through `MetricsQuery` (in process or over HTTP), renders labels and
//! annotations, advances the alert state and hands changes to the [`AlertSink`] (routing).

pub mod wake;

use crate::model::{ALERTNAME, Alert, LabelMap};
use crate::rules::template::expand;
use crate::rules::{AlertRule, RuleGroup};
use crate::state::AlertStore;
use crate::state::machine::{Observed, Timing};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tingzhen_core::query::{InstantSample, MetricsQuery};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use wake::{GroupWake, RuleWaker, WakeIndex};

/// Milliseconds since the epoch; tests inject their own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn wall_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

/// Where state changes go: routing and the outbox in the service, a recorder in tests.
/// Called on a blocking thread; it may block.
pub trait AlertSink: Send + Sync {
    fn alerts_changed(&self, alerts: Vec<Alert>);
}

/// How a rule's last evaluation went (the rules API shows it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleHealth {
    /// `ok`, `err` or `unknown` (not evaluated yet).
    pub health: &'static str,
    pub last_error: Option<String>,
    pub last_evaluation_ms: i64,
    pub evaluation_seconds: f64,
}

#[derive(Debug, Default)]
pub struct EvalStats {
    pub evaluations: AtomicU64,
    pub failures: AtomicU64,
    pub woken: AtomicU64,
}

pub struct Evaluator {
    query: Arc<dyn MetricsQuery>,
    state: Arc<AlertStore>,
    sink: Arc<dyn AlertSink>,
    clock: Clock,
    health: Mutex<HashMap<String, RuleHealth>>,
    /// One evaluation of a group at a time, even across a rules reload (the old task may
    /// still be finishing), so state changes reach routing in the order they happened.
    group_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    pub stats: EvalStats,
}

/// Labels of an alert: the series' (without its name), then the rule's (templated over the
/// series' labels and value), then `alertname`.
fn alert_labels(rule: &AlertRule, series: &LabelMap, value: f64) -> LabelMap {
    let mut labels = series.clone();
    for (k, t) in &rule.labels {
        labels.insert(k.clone(), expand(t, series, value));
    }
    labels.insert(ALERTNAME.into(), rule.name.clone());
    labels
}

fn observe(rule: &AlertRule, samples: Vec<InstantSample>) -> Vec<Observed> {
    samples
        .into_iter()
        .map(|s| {
            let series: LabelMap =
                s.labels.iter().filter(|l| l.name != "__name__").map(|l| (l.name.clone(), l.value.clone())).collect();
            let annotations = rule.annotations.iter().map(|(k, t)| (k.clone(), expand(t, &series, s.value))).collect();
            Observed { labels: alert_labels(rule, &series, s.value), annotations, value: s.value }
        })
        .collect()
}

impl Evaluator {
    pub fn new(query: Arc<dyn MetricsQuery>, state: Arc<AlertStore>, sink: Arc<dyn AlertSink>, clock: Clock) -> Self {
        Self {
            query,
            state,
            sink,
            clock,
            health: Mutex::new(HashMap::new()),
            group_locks: Mutex::new(HashMap::new()),
            stats: EvalStats::default(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    pub fn state(&self) -> &Arc<AlertStore> {
        &self.state
    }

    pub fn sink(&self) -> &Arc<dyn AlertSink> {
        &self.sink
    }

    pub fn health(&self, rule_key: &str) -> Option<RuleHealth> {
        self.health.lock().get(rule_key).cloned()
    }

    /// Evaluates every rule of `group` once at the clock's now. Blocking.
    pub fn evaluate_group(&self, group: &RuleGroup) {
        let lock = self.group_locks.lock().entry(group.name.clone()).or_default().clone();
        let _one_at_a_time = lock.lock();
        let now = self.now_ms();
        let at = now.saturating_sub(group.query_offset.as_millis() as i64);
        let mut changed = Vec::new();
        for rule in &group.rules {
            let started = std::time::Instant::now();
            self.stats.evaluations.fetch_add(1, Ordering::Relaxed);
            let outcome = match self.query.instant(&rule.expr, at) {
                Err(e) => Err(e.to_string()),
                Ok(samples) if group.limit > 0 && samples.len() > group.limit => {
                    Err(format!("{} alerts exceed the group limit of {}", samples.len(), group.limit))
                }
                Ok(samples) => {
                    let timing = Timing {
                        for_ms: rule.for_.as_millis() as i64,
                        keep_firing_for_ms: rule.keep_firing_for.as_millis() as i64,
                    };
                    self.state.evaluate_rule(&rule.key, timing, observe(rule, samples), now).map_err(|e| e.to_string())
                }
            };
            let health = match outcome {
                Ok(alerts) => {
                    changed.extend(alerts);
                    RuleHealth { health: "ok", last_error: None, last_evaluation_ms: now, evaluation_seconds: 0.0 }
                }
                Err(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(rule = %rule.key, error = %e, "rule evaluation failed; its alerts keep their state");
                    RuleHealth { health: "err", last_error: Some(e), last_evaluation_ms: now, evaluation_seconds: 0.0 }
                }
            };
            let health = RuleHealth { evaluation_seconds: started.elapsed().as_secs_f64(), ..health };
            self.health.lock().insert(rule.key.clone(), health);
        }
        if !changed.is_empty() {
            self.sink.alerts_changed(changed);
        }
    }
}

/// Runs one task per group; `replace` swaps the rule set without losing alert state.
pub struct Scheduler {
    evaluator: Arc<Evaluator>,
    waker: Arc<RuleWaker>,
    debounce: Duration,
    permits: Arc<Semaphore>,
    current: Mutex<Generation>,
}

struct Generation {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    groups: Vec<Arc<RuleGroup>>,
}

impl Scheduler {
    /// `max_concurrent` bounds evaluations running at once (each holds a blocking thread).
    pub fn new(evaluator: Arc<Evaluator>, debounce: Duration, max_concurrent: usize) -> Self {
        let (stop, _) = watch::channel(false);
        Self {
            evaluator,
            waker: Arc::new(RuleWaker::default()),
            debounce,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            current: Mutex::new(Generation { stop, tasks: Vec::new(), groups: Vec::new() }),
        }
    }

    /// The observer to register with the collector (in-process deployments).
    pub fn observer(&self) -> Arc<RuleWaker> {
        self.waker.clone()
    }

    pub fn evaluator(&self) -> &Arc<Evaluator> {
        &self.evaluator
    }

    pub fn groups(&self) -> Vec<Arc<RuleGroup>> {
        self.current.lock().groups.clone()
    }

    /// Stops the current group tasks (an evaluation in progress finishes and is routed) and
    /// starts tasks for `groups`. Must run inside a tokio runtime.
    pub fn replace(&self, groups: Vec<Arc<RuleGroup>>) {
        let wakes: Vec<Arc<GroupWake>> = groups.iter().map(|_| Arc::new(GroupWake::default())).collect();
        self.waker.set_index(WakeIndex::build(groups.iter().map(|g| g.as_ref()).zip(wakes.iter().cloned())));
        let (stop, stop_rx) = watch::channel(false);
        let tasks = groups
            .iter()
            .zip(wakes)
            .map(|(g, w)| {
                let task = GroupTask {
                    group: g.clone(),
                    wake: w,
                    evaluator: self.evaluator.clone(),
                    permits: self.permits.clone(),
                    debounce: self.debounce,
                };
                tokio::spawn(task.run(stop_rx.clone()))
            })
            .collect();
        let old = std::mem::replace(&mut *self.current.lock(), Generation { stop, tasks, groups });
        let _ = old.stop.send(true);
    }

    /// Stops every task and waits for evaluations in progress to finish.
    pub async fn shutdown(&self) {
        let tasks = {
            let mut cur = self.current.lock();
            let _ = cur.stop.send(true);
            std::mem::take(&mut cur.tasks)
        };
        for t in tasks {
            let _ = t.await;
        }
    }
}

struct GroupTask {
    group: Arc<RuleGroup>,
    wake: Arc<GroupWake>,
    evaluator: Arc<Evaluator>,
    permits: Arc<Semaphore>,
    debounce: Duration,
}

impl GroupTask {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let interval = self.group.interval.max(Duration::from_millis(100));
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    next += interval;
                    let now = tokio::time::Instant::now();
                    if next <= now {
                        next = now + interval;
                    }
                }
                _ = self.wake.notify.notified() => {
                    self.evaluator.stats.woken.fetch_add(1, Ordering::Relaxed);
                    if !self.debounce.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(self.debounce) => {}
                            _ = stop.changed() => {}
                        }
                    }
                }
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
            self.wake.take();
            let Ok(permit) = self.permits.clone().acquire_owned().await else { break };
            let evaluator = self.evaluator.clone();
            let group = self.group.clone();
            let done = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                evaluator.evaluate_group(&group);
            })
            .await;
            if let Err(e) = done {
                tracing::error!(group = %self.group.name, error = %e, "rule evaluation task panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests;
