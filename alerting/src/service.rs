//! The `Alerting` service: opens rules, state, routing and the outbox, wires evaluation →
//! state → routing → outbox, and runs the loops (group evaluation, routing timers, intake
//! expiry, delivery). The HTTP surface is `api`; the binary only calls `open`, `observer`,
//! `router` and `run`.

use crate::config::AlertingConfig;
use crate::eval::{AlertSink, Clock, Evaluator, Scheduler, wall_clock};
use crate::model::Alert;
use crate::outbox::{Outbox, OutboxError};
use crate::routing::{Dispatcher, RoutingError};
use crate::rules::store::{self as rule_store, RuleStoreError};
use crate::rules::{GroupSpec, RuleError, RuleErrors, RuleGroup, RuleSource, compile_group, load_file};
use crate::state::{AlertStore, ExternalAlert, StateError};
use crate::summary::{Dimension, Period, shanghai_day_start, summarize};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tingzhen_core::db::Db;
use tingzhen_core::query::{IngestObserver, MetricsQuery, MetricsQueryError};
use tokio::sync::{Notify, watch};

/// The routing loop wakes at least this often, so an overlooked timer costs at most this.
const MAX_IDLE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AlertingError {
    #[error("{0}")]
    Config(String),
    #[error("rules: {0}")]
    Rules(#[from] RuleErrors),
    #[error(transparent)]
    RuleStore(#[from] RuleStoreError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Routing(#[from] RoutingError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// Why a rules API request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesApiError {
    #[error("{0}")]
    Invalid(RuleErrors),
    #[error("rule group {0:?} already exists")]
    Conflict(String),
    #[error("rule group {0:?} comes from a rule file and is read-only here; edit the file")]
    ReadOnly(String),
    #[error("rule group {0:?} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] RuleStoreError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Hands state changes to routing and the durable outbox, then lets the state forget
/// resolved alerts. If the outbox cannot store a notification the alerts stay unrouted in the
/// state and are handed over again at the next start.
struct RoutingSink {
    state: Arc<AlertStore>,
    routing: Option<(Arc<Dispatcher>, Arc<Outbox>)>,
    kick: Arc<Notify>,
    clock: Clock,
}

impl RoutingSink {
    fn enqueue(outbox: &Outbox, notes: &[crate::model::Notification]) -> bool {
        let mut ok = true;
        for n in notes {
            if let Err(e) = outbox.enqueue(n) {
                ok = false;
                tracing::error!(receiver = %n.receiver, key = %n.idempotency_key, error = %e, "cannot store notification");
            }
        }
        ok
    }
}

impl AlertSink for RoutingSink {
    fn alerts_changed(&self, alerts: Vec<Alert>) {
        let mut ok = true;
        if let Some((dispatcher, outbox)) = &self.routing {
            let notes = dispatcher.process(&alerts, (self.clock)());
            ok = Self::enqueue(outbox, &notes);
            // process() may have planned a group_wait timer: the routing loop must re-plan.
            self.kick.notify_one();
        }
        if ok && let Err(e) = self.state.routed(&alerts) {
            tracing::error!(error = %e, "cannot clear routed alerts; they will be routed again at the next start");
        }
    }
}

/// Today's and the requested range's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryView {
    pub today: Period,
    pub range: Period,
}

pub struct Alerting {
    config: AlertingConfig,
    db: Arc<Db>,
    query: Arc<dyn MetricsQuery>,
    scheduler: Scheduler,
    state: Arc<AlertStore>,
    dispatcher: Option<Arc<Dispatcher>>,
    outbox: Option<Arc<Outbox>>,
    sink: Arc<RoutingSink>,
    file_groups: Vec<Arc<RuleGroup>>,
    api_groups: Mutex<BTreeMap<String, Arc<RuleGroup>>>,
    /// Serialises rule changes so two API writers cannot interleave store and schedule.
    rules_write: Mutex<()>,
    kick: Arc<Notify>,
    clock: Clock,
}

impl Alerting {
    /// Opens everything (blocking: reads rule files, migrates tables, restores state).
    pub fn open(config: &AlertingConfig, db: Arc<Db>, query: Arc<dyn MetricsQuery>) -> Result<Self, AlertingError> {
        Self::open_with_clock(config, db, query, wall_clock())
    }

    /// As `open`, with the clock every stage uses (tests inject one).
    pub fn open_with_clock(
        config: &AlertingConfig,
        db: Arc<Db>,
        query: Arc<dyn MetricsQuery>,
        clock: Clock,
    ) -> Result<Self, AlertingError> {
        config.validate().map_err(AlertingError::Config)?;
        let default_interval = config.rules.default_interval.0;
        let mut file_groups = Vec::new();
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut errors = Vec::new();
        let files = crate::rules::expand_files(&config.rules.files).map_err(|e| RuleErrors(vec![e]))?;
        for path in &files {
            let f = path.display().to_string();
            match load_file(path, default_interval) {
                Ok(groups) => {
                    for g in groups {
                        if let Some(other) = names.insert(g.name.clone(), f.clone()) {
                            errors.push(RuleError {
                                location: f.clone(),
                                field: "groups.name".into(),
                                message: format!("group {:?} is also defined in {other}", g.name),
                            });
                        }
                        file_groups.push(Arc::new(g));
                    }
                }
                Err(RuleErrors(mut e)) => errors.append(&mut e),
            }
        }
        rule_store::migrate(&db)?;
        let mut api_groups = BTreeMap::new();
        for spec in rule_store::load_all(&db)? {
            if let Some(file) = names.get(&spec.name) {
                errors.push(RuleError {
                    location: format!("stored group {:?}", spec.name),
                    field: "name".into(),
                    message: format!("a rule file ({file}) now defines a group of the same name; rename or delete one"),
                });
                continue;
            }
            match compile_group(spec, RuleSource::Api, default_interval) {
                Ok(g) => {
                    api_groups.insert(g.name.clone(), Arc::new(g));
                }
                Err(RuleErrors(mut e)) => errors.append(&mut e),
            }
        }
        if !errors.is_empty() {
            return Err(RuleErrors(errors).into());
        }
        let state = Arc::new(AlertStore::open(db.clone())?);
        let (dispatcher, outbox) = match &config.routing {
            Some(r) => {
                let d = Arc::new(Dispatcher::open(r, db.clone())?);
                let o = Arc::new(Outbox::open(&config.notify, db.clone())?);
                let known: HashSet<String> = o.receiver_names().into_iter().collect();
                for name in d.receivers_referenced() {
                    if !known.contains(&name) {
                        return Err(AlertingError::Config(format!(
                            "alerting.routing names receiver {name:?}, which alerting.notify.receivers does not define"
                        )));
                    }
                }
                let c = clock.clone();
                d.set_clock(move || c());
                (Some(d), Some(o))
            }
            None => {
                if !config.notify.receivers.is_empty() {
                    tracing::warn!(
                        "alerting.notify defines receivers but there is no [alerting.routing]: alerts are evaluated \
                         and listed, nobody is notified"
                    );
                }
                (None, None)
            }
        };
        let kick = Arc::new(Notify::new());
        let sink = Arc::new(RoutingSink {
            state: state.clone(),
            routing: dispatcher.clone().zip(outbox.clone()),
            kick: kick.clone(),
            clock: clock.clone(),
        });
        let evaluator = Arc::new(Evaluator::new(query.clone(), state.clone(), sink.clone(), clock.clone()));
        let scheduler = Scheduler::new(evaluator, config.rules.debounce.0, config.rules.max_concurrent);
        Ok(Self {
            config: config.clone(),
            db,
            query,
            scheduler,
            state,
            dispatcher,
            outbox,
            sink,
            file_groups,
            api_groups: Mutex::new(api_groups),
            rules_write: Mutex::new(()),
            kick,
            clock,
        })
    }

    /// Register with the collector in the same process: writes wake the rules that read them.
    pub fn observer(&self) -> Arc<dyn IngestObserver> {
        self.scheduler.observer()
    }

    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    pub fn state(&self) -> &Arc<AlertStore> {
        &self.state
    }

    pub fn dispatcher(&self) -> Option<&Arc<Dispatcher>> {
        self.dispatcher.as_ref()
    }

    pub fn outbox(&self) -> Option<&Arc<Outbox>> {
        self.outbox.as_ref()
    }

    pub fn evaluator(&self) -> &Arc<Evaluator> {
        self.scheduler.evaluator()
    }

    pub fn config(&self) -> &AlertingConfig {
        &self.config
    }

    /// Alerting's self-metrics (served on `/metrics` when it runs alone and on
    /// `/api/v1/alerting/metrics` always).
    pub fn families(&self) -> Vec<tingzhen_core::exposition::MetricFamily> {
        use std::sync::atomic::Ordering::Relaxed;
        use tingzhen_core::Labels;
        use tingzhen_core::exposition::MetricFamily;
        let stats = &self.evaluator().stats;
        let counter = |name: &str, help: &str, v: u64| MetricFamily::counter(name, help).with(Labels::new(), v as f64);
        let groups = self.groups();
        let mut by_state: BTreeMap<&'static str, f64> =
            ["pending", "firing", "resolved"].into_iter().map(|s| (s, 0.0)).collect();
        for a in self.state.active() {
            *by_state.entry(a.state.as_str()).or_default() += 1.0;
        }
        let mut alerts = MetricFamily::gauge("tingzhen_alerting_alerts", "Alerts held now, by state.");
        for (state, n) in by_state {
            alerts.push(Labels::from_pairs([("state", state)]), n);
        }
        let mut out = vec![
            counter("tingzhen_alerting_rule_evaluations_total", "Rule evaluations.", stats.evaluations.load(Relaxed)),
            counter(
                "tingzhen_alerting_rule_evaluation_failures_total",
                "Rule evaluations that failed (the rule's alerts kept their state).",
                stats.failures.load(Relaxed),
            ),
            counter(
                "tingzhen_alerting_ingest_wakeups_total",
                "Group evaluations started because samples of a metric they read arrived.",
                stats.woken.load(Relaxed),
            ),
            MetricFamily::gauge("tingzhen_alerting_rule_groups", "Rule groups loaded.")
                .with(Labels::new(), groups.len() as f64),
            MetricFamily::gauge("tingzhen_alerting_rules", "Alerting rules loaded.")
                .with(Labels::new(), groups.iter().map(|g| g.rules.len()).sum::<usize>() as f64),
            alerts,
            MetricFamily::gauge("tingzhen_build_info", "Build information; the value is always 1.")
                .with(Labels::from_pairs([("version", env!("CARGO_PKG_VERSION")), ("target", "alerting")]), 1.0),
        ];
        if let Some(d) = &self.dispatcher {
            out.push(counter(
                "tingzhen_alerting_routing_store_failures_total",
                "Failed saves of routing state (retried with the next change).",
                d.store_failures(),
            ));
        }
        out
    }

    /// Every group: files first, then API groups, each sorted by name.
    pub fn groups(&self) -> Vec<Arc<RuleGroup>> {
        let mut v = self.file_groups.clone();
        v.extend(self.api_groups.lock().values().cloned());
        v
    }

    /// Hands `alerts` to routing and the outbox (blocking).
    fn route(&self, alerts: Vec<Alert>) {
        if !alerts.is_empty() {
            self.sink.alerts_changed(alerts);
        }
    }

    /// Restarts the group tasks and resolves alerts of rules that no longer exist. The tasks
    /// start even if the state store fails here: evaluation must not stop over it.
    fn reschedule(&self) -> Result<(), StateError> {
        let groups = self.groups();
        let live: HashSet<String> = groups.iter().flat_map(|g| g.rules.iter().map(|r| r.key.clone())).collect();
        self.scheduler.replace(groups);
        let retired = self.state.retire_rules(&live, self.now_ms())?;
        self.route(retired);
        Ok(())
    }

    /// Validates a group for the API: the same checks as rule files, plus one evaluation of
    /// every expression so functions the engine lacks are refused before saving. Blocking.
    pub fn validate_group(&self, spec: GroupSpec) -> Result<RuleGroup, RulesApiError> {
        let group = compile_group(spec, RuleSource::Api, self.config.rules.default_interval.0)
            .map_err(RulesApiError::Invalid)?;
        let now = self.now_ms();
        let mut errors = Vec::new();
        for (i, r) in group.rules.iter().enumerate() {
            match self.query.instant(&r.expr, now) {
                Err(MetricsQueryError::BadQuery(e)) => errors.push(RuleError {
                    location: format!("group {:?}, rule {} (alert {:?})", group.name, i + 1, r.name),
                    field: "expr".into(),
                    message: format!("the query engine refuses it: {e}"),
                }),
                // The engine is unreachable (split deployment, collector restarting): the
                // syntax was checked; evaluation will report anything else as rule health.
                Err(MetricsQueryError::Unavailable(e)) => {
                    tracing::warn!(group = %group.name, error = %e, "rule saved without a trial evaluation")
                }
                Ok(_) => {}
            }
        }
        if !errors.is_empty() {
            return Err(RulesApiError::Invalid(RuleErrors(errors)));
        }
        Ok(group)
    }

    /// Creates (`replace = false`, refused if it exists) or replaces an API group. Blocking.
    pub fn save_group(&self, spec: GroupSpec, replace: bool) -> Result<Arc<RuleGroup>, RulesApiError> {
        let _w = self.rules_write.lock();
        let name = spec.name.clone();
        if self.file_groups.iter().any(|g| g.name == name) {
            return Err(RulesApiError::ReadOnly(name));
        }
        let exists = self.api_groups.lock().contains_key(&name);
        if exists && !replace {
            return Err(RulesApiError::Conflict(name));
        }
        if !exists && replace {
            return Err(RulesApiError::NotFound(name));
        }
        let group = Arc::new(self.validate_group(spec)?);
        rule_store::upsert(&self.db, &group.spec, self.now_ms())?;
        self.api_groups.lock().insert(name, group.clone());
        self.reschedule()?;
        Ok(group)
    }

    /// Deletes an API group; its firing alerts resolve. Blocking.
    pub fn delete_group(&self, name: &str) -> Result<(), RulesApiError> {
        let _w = self.rules_write.lock();
        if self.file_groups.iter().any(|g| g.name == name) {
            return Err(RulesApiError::ReadOnly(name.into()));
        }
        if !rule_store::delete(&self.db, name)? {
            return Err(RulesApiError::NotFound(name.into()));
        }
        self.api_groups.lock().remove(name);
        self.reschedule()?;
        Ok(())
    }

    /// Alerts from intake (blocking).
    pub fn intake(&self, alerts: Vec<ExternalAlert>) -> Result<usize, StateError> {
        let n = alerts.len();
        let changed = self.state.external(alerts, self.now_ms())?;
        self.route(changed);
        self.kick.notify_one();
        Ok(n)
    }

    /// Firing episodes overlapping `[from_ms, to_ms)`, with the acknowledgements routing
    /// recorded for them (blocking).
    pub fn history(&self, from_ms: i64, to_ms: i64) -> Result<Vec<crate::state::store::HistoryRow>, AlertingError> {
        if let Some(d) = &self.dispatcher {
            // Acks are made through routing's API; they are copied onto history rows here,
            // where they are read, rather than on every acknowledgement.
            let acks: Vec<(String, i64)> =
                d.acks_between(from_ms, i64::MAX)?.into_iter().map(|a| (a.fingerprint, a.acked_at_ms)).collect();
            self.state.record_acks(&acks)?;
        }
        Ok(self.state.history(from_ms, to_ms)?)
    }

    /// Today's (Asia/Shanghai) and `[from, to)`'s summary (blocking).
    pub fn summary(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        dims: &[Dimension],
    ) -> Result<SummaryView, AlertingError> {
        let now = self.now_ms();
        let to = to_ms.unwrap_or(now);
        let from = from_ms.unwrap_or(0);
        let today = shanghai_day_start(now);
        let (lo, hi) = (from.min(today), to.max(now.saturating_add(1)));
        let history = self.history(lo, hi)?;
        let deliveries = match &self.outbox {
            Some(o) => o.deliveries(lo, hi)?,
            None => Vec::new(),
        };
        Ok(SummaryView {
            today: summarize(&history, &deliveries, today, now.saturating_add(1), dims),
            range: summarize(&history, &deliveries, from, to, dims),
        })
    }

    /// Runs until `shutdown` turns true: first hands routing whatever it may have missed at
    /// the last stop, then evaluates rules, runs routing timers, expires intake alerts and
    /// delivers notifications.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let this = self.clone();
        let resumed = tokio::task::spawn_blocking(move || this.resume()).await;
        match resumed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "alerting: resuming after restart failed"),
            Err(e) => tracing::error!(error = %e, "alerting: resume task panicked"),
        }
        let delivery = self.outbox.clone().map(|o| tokio::spawn(o.run(shutdown.clone())));
        loop {
            let now = self.now_ms();
            let next = [self.dispatcher.as_ref().and_then(|d| d.next_wake_ms()), self.state.next_expiry_ms()]
                .into_iter()
                .flatten()
                .min();
            let wait =
                next.map_or(MAX_IDLE, |t| Duration::from_millis(t.saturating_sub(now).max(0) as u64).min(MAX_IDLE));
            let changed = async {
                match &self.dispatcher {
                    Some(d) => d.changed().notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.kick.notified() => {}
                _ = changed => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            let this = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || this.timers()).await {
                tracing::error!(error = %e, "alerting: timer task panicked");
            }
        }
        self.scheduler.shutdown().await;
        if let Some(d) = delivery {
            let _ = d.await;
        }
    }

    /// What `run` does first: hand routing every alert it may have missed at the last stop,
    /// re-offer routing's recent notifications to the outbox (it drops the ones it has),
    /// resolve alerts of rules that no longer exist and start the group tasks. Needs a tokio
    /// runtime; blocking.
    pub fn resume(&self) -> Result<(), AlertingError> {
        self.route(self.state.undelivered());
        let replayed = match (&self.dispatcher, &self.outbox) {
            (Some(d), Some(o)) => d.replay(self.now_ms()).map(|again| {
                RoutingSink::enqueue(o, &again);
            }),
            _ => Ok(()),
        };
        // Rules run whatever happened above: a replay problem must not stop alerting.
        let scheduled = self.reschedule();
        replayed?;
        scheduled?;
        Ok(())
    }

    /// Intake expiry and routing timers (group_interval, repeat, escalation, windows).
    fn timers(&self) {
        match self.state.expire_external(self.now_ms()) {
            Ok(expired) => self.route(expired),
            Err(e) => tracing::error!(error = %e, "alerting: cannot expire intake alerts"),
        }
        if let (Some(d), Some(o)) = (&self.dispatcher, &self.outbox) {
            let due = d.tick(self.now_ms());
            RoutingSink::enqueue(o, &due);
        }
    }
}
