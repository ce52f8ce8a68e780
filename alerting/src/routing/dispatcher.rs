//! The `Dispatcher`: takes alert state changes, keeps the groups, and returns the
//! notifications due at `now_ms`. One lock around all routing state; every change is written
//! to the store (with the notifications it produced) before the notifications are returned.

use super::group::{Gate, Group};
use super::inhibit::InhibitIndex;
use super::silence::CompiledSilence;
use super::store::Store;
use super::tree::{Compiled, Route, compile};
use super::{RoutingConfig, RoutingError};
use crate::model::{Alert, AlertState, LabelMap, Notification};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tingzhen_core::db::Db;

/// What an acknowledgement names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckTarget {
    /// Every firing alert of a group.
    Group(String),
    /// One alert (by fingerprint) in every group that holds it.
    Alert(String),
}

/// One alert acknowledged by someone: what summaries need for MTTA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRecord {
    pub group_key: String,
    pub fingerprint: String,
    pub alertname: String,
    pub alert_starts_at_ms: i64,
    /// When the group first announced this alert firing (None if acknowledged before that).
    pub first_notified_ms: Option<i64>,
    pub acked_at_ms: i64,
    pub acked_by: String,
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    pub fingerprint: String,
    pub labels: LabelMap,
    pub state: AlertState,
    pub starts_at_ms: i64,
    pub silenced: bool,
    pub inhibited: bool,
    pub acked: bool,
}

/// An active group as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupView {
    pub group_key: String,
    pub route: String,
    pub receiver: String,
    pub group_labels: LabelMap,
    pub alerts: Vec<AlertView>,
    pub last_notified_ms: Option<i64>,
    pub next_flush_ms: i64,
    /// Held by a time window: `active` (will be delivered when it opens) or `mute`.
    pub held: Option<String>,
    pub escalation_level: u32,
    pub acked_at_ms: Option<i64>,
    pub acked_by: Option<String>,
}

pub(super) struct Inner {
    pub(super) compiled: Compiled,
    pub(super) groups: BTreeMap<String, Group>,
    pub(super) silences: BTreeMap<String, CompiledSilence>,
    /// The latest `now_ms` seen; `next_wake_ms` plans from it.
    pub(super) last_now_ms: i64,
    pub(super) id_seq: u64,
    /// Groups changed but not yet written because the store failed; retried on every save.
    pub(super) unsaved: BTreeSet<String>,
    /// Notifications whose save failed, retried with the next save so `replay` finds them.
    pub(super) unsaved_emitted: Vec<Notification>,
    pub(super) store_failures: u64,
}

pub struct Dispatcher {
    pub(super) inner: Mutex<Inner>,
    pub(super) store: Store,
    clock: Mutex<Arc<dyn Fn() -> i64 + Send + Sync>>,
    changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").field("groups", &self.inner.lock().groups.len()).finish()
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Inner {
    fn firing(&self) -> Vec<Alert> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for g in self.groups.values() {
            for (fp, a) in &g.alerts {
                if a.state == AlertState::Firing && seen.insert(fp.clone()) {
                    out.push(a.clone());
                }
            }
        }
        out
    }

    fn silenced(&self, labels: &LabelMap, now_ms: i64) -> bool {
        self.silences.values().any(|s| s.mutes(&self.compiled.calendar, labels, now_ms))
    }

    fn window_open(&self, name: &str, now_ms: i64) -> bool {
        self.compiled.windows.get(name).is_some_and(|w| w.contains(&self.compiled.calendar, now_ms))
    }

    /// Route windows (if any) and the receiver's own windows, combined.
    fn gate(&self, route: Option<&Route>, receiver: &str, now_ms: i64) -> Gate {
        let empty = (Vec::new(), Vec::new());
        let (r_active, r_mute) = self.compiled.receiver_windows.get(receiver).unwrap_or(&empty);
        let route_active: &[String] = route.map(|r| r.active_windows.as_slice()).unwrap_or(&[]);
        let route_mute: &[String] = route.map(|r| r.mute_windows.as_slice()).unwrap_or(&[]);
        if route_mute.iter().chain(r_mute).any(|w| self.window_open(w, now_ms)) {
            return Gate::Muted;
        }
        let closed = |ws: &[String]| !ws.is_empty() && !ws.iter().any(|w| self.window_open(w, now_ms));
        if closed(route_active) || closed(r_active) {
            return Gate::Closed;
        }
        Gate::Open
    }

    /// The next instant any window the route or receiver uses opens or closes.
    fn gate_change(&self, route: &Route, receiver: &str, now_ms: i64) -> Option<i64> {
        let empty = (Vec::new(), Vec::new());
        let (ra, rm) = self.compiled.receiver_windows.get(receiver).unwrap_or(&empty);
        route
            .active_windows
            .iter()
            .chain(&route.mute_windows)
            .chain(ra)
            .chain(rm)
            .filter_map(|n| self.compiled.windows.get(n))
            .filter_map(|w| w.next_change(&self.compiled.calendar, now_ms))
            .min()
    }

    /// Flushes due groups and sends due escalations. Returns the notifications and the keys of
    /// groups that changed (for persistence).
    fn evaluate(&mut self, now_ms: i64, dirty: &mut BTreeSet<String>) -> Vec<Notification> {
        self.last_now_ms = self.last_now_ms.max(now_ms);
        let mut orphans = Vec::new();
        let mut out = self.evaluate_groups(now_ms, dirty, &mut orphans);
        if !orphans.is_empty() {
            for a in &orphans {
                self.insert_firing(a, now_ms, dirty);
            }
            let mut none = Vec::new();
            out.extend(self.evaluate_groups(now_ms, dirty, &mut none));
        }
        out
    }

    /// Puts a firing alert into the group of every route that takes it.
    fn insert_firing(&mut self, a: &Alert, now_ms: i64, dirty: &mut BTreeSet<String>) {
        let fp = a.fingerprint();
        let routes: Vec<Route> = self.compiled.root.match_labels(&a.labels).into_iter().cloned().collect();
        for route in routes {
            let gl = route.group_labels(&a.labels);
            let key = route.group_key(&gl);
            let g = self.groups.entry(key.clone()).or_insert_with(|| Group::new(&route, key.clone(), gl, now_ms));
            g.alerts.insert(fp.clone(), a.clone());
            dirty.insert(key);
        }
    }

    fn evaluate_groups(
        &mut self,
        now_ms: i64,
        dirty: &mut BTreeSet<String>,
        orphans: &mut Vec<Alert>,
    ) -> Vec<Notification> {
        let firing = self.firing();
        let inhibit = InhibitIndex::build(&self.compiled.inhibit, &firing);
        let mut out = Vec::new();
        let keys: Vec<String> = self.groups.keys().cloned().collect();
        for key in keys {
            let Some(mut g) = self.groups.remove(&key) else { continue };
            let Some(route) = self.compiled.root.find(&g.route_key).cloned() else {
                // The configuration no longer has this route: its firing alerts are routed
                // afresh (new groups announce them), so nothing firing is forgotten.
                tracing::warn!(group = %key, "re-routing the alerts of a group whose route is no longer configured");
                dirty.insert(key);
                orphans.extend(g.alerts.into_values().filter(|a| a.state == AlertState::Firing));
                continue;
            };
            let muted: BTreeSet<String> = g
                .alerts
                .iter()
                .filter(|(_, a)| {
                    a.state == AlertState::Firing && (self.silenced(&a.labels, now_ms) || inhibit.inhibits(a))
                })
                .map(|(fp, _)| fp.clone())
                .collect();
            let muted_changed = muted != g.muted;
            if muted_changed {
                g.muted = muted;
                dirty.insert(key.clone());
            }
            let gate = self.gate(Some(&route), &route.receiver, now_ms);
            if g.due(now_ms, gate, muted_changed) {
                out.extend(g.flush(&route, gate, now_ms));
                dirty.insert(key.clone());
            }
            let esc = g.escalate(&route, |r| self.gate(Some(&route), r, now_ms), now_ms);
            if !esc.is_empty() {
                dirty.insert(key.clone());
                out.extend(esc);
            }
            if g.alerts.is_empty() {
                dirty.insert(key);
            } else {
                self.groups.insert(key, g);
            }
        }
        out
    }

    fn next_wake(&self) -> Option<i64> {
        let now = self.last_now_ms;
        let mut best: Option<i64> = None;
        // Anything at or before `now` was handled by the last evaluation (or is blocked by a
        // window, whose change is considered separately).
        let mut consider = |t: Option<i64>| {
            if let Some(t) = t.filter(|&t| t > now) {
                best = Some(best.map_or(t, |b| b.min(t)));
            }
        };
        for g in self.groups.values() {
            let Some(route) = self.compiled.root.find(&g.route_key) else { continue };
            consider(Some(g.next_flush_ms));
            let esc = g.escalation_due_ms(route);
            consider(esc);
            // Before the first evaluation there is no "now" to plan windows from; the group's
            // own flush time comes first anyway.
            if now != i64::MIN && (g.hold.is_some() || esc.is_some_and(|t| t <= now)) {
                consider(self.gate_change(route, &route.receiver, now));
                for s in &route.escalation {
                    consider(self.gate_change(route, &s.receiver, now));
                }
            }
        }
        if !self.groups.is_empty() {
            for s in self.silences.values() {
                consider(s.next_change(&self.compiled.calendar, now));
            }
        }
        best
    }
}

impl Dispatcher {
    /// Validates the configuration, migrates the routing tables and restores groups,
    /// silences and calendar overrides from the store.
    pub fn open(config: &RoutingConfig, db: Arc<Db>) -> Result<Dispatcher, RoutingError> {
        let mut compiled = compile(config)?;
        let store = Store::open(db)?;
        compiled.calendar.set_api_overrides(store.load_calendar_overrides()?);
        let groups = store.load_groups()?.into_iter().map(|g| (g.group_key.clone(), g)).collect();
        let mut silences = BTreeMap::new();
        for s in store.load_silences()? {
            silences.insert(s.id.clone(), CompiledSilence::compile(s)?);
        }
        let inner = Inner {
            compiled,
            groups,
            silences,
            last_now_ms: i64::MIN,
            id_seq: 0,
            unsaved: BTreeSet::new(),
            unsaved_emitted: Vec::new(),
            store_failures: 0,
        };
        Ok(Dispatcher {
            inner: Mutex::new(inner),
            store,
            clock: Mutex::new(Arc::new(wall_clock_ms)),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// Replaces the configuration (groups, silences and acknowledgements are kept; groups of
    /// routes that no longer exist are dropped at the next evaluation).
    pub fn reconfigure(&self, config: &RoutingConfig) -> Result<(), RoutingError> {
        let mut compiled = compile(config)?;
        compiled.calendar.set_api_overrides(self.store.load_calendar_overrides()?);
        self.inner.lock().compiled = compiled;
        Ok(())
    }

    /// Signalled when the API changed something that may make a notification due (a silence
    /// expired, an acknowledgement, a calendar edit): the caller's loop should `tick` then.
    pub fn changed(&self) -> &tokio::sync::Notify {
        &self.changed
    }

    /// Every receiver the routing configuration names (routes, escalation steps, receiver
    /// windows), for validation against the configured notifiers.
    pub fn receivers_referenced(&self) -> Vec<String> {
        self.inner.lock().compiled.receivers()
    }

    /// Replaces the clock the HTTP API uses (tests inject one; logic always takes `now_ms`).
    pub fn set_clock(&self, clock: impl Fn() -> i64 + Send + Sync + 'static) {
        *self.clock.lock() = Arc::new(clock);
    }

    pub fn now_ms(&self) -> i64 {
        let clock = self.clock.lock().clone();
        clock()
    }

    fn persist(
        &self,
        inner: &mut Inner,
        mut dirty: BTreeSet<String>,
        emitted: &[Notification],
        now_ms: i64,
    ) -> Result<(), RoutingError> {
        dirty.append(&mut inner.unsaved);
        let mut all_emitted = std::mem::take(&mut inner.unsaved_emitted);
        all_emitted.extend_from_slice(emitted);
        let groups: Vec<(String, Option<Group>)> =
            dirty.iter().map(|k| (k.clone(), inner.groups.get(k).cloned())).collect();
        let prune = now_ms.saturating_sub(inner.compiled.replay_window_ms.saturating_mul(2));
        let result = self.store.save(&groups, &all_emitted, now_ms, prune);
        if result.is_err() {
            inner.unsaved = dirty;
            inner.unsaved_emitted = all_emitted;
            inner.store_failures += 1;
        }
        result
    }

    /// Evaluates with the lock held and saves. A failed save does not withhold the
    /// notifications: their keys are deterministic, so if the process restarts from the older
    /// stored state and flushes again, the outbox drops the duplicates.
    fn run(&self, inner: &mut Inner, mut dirty: BTreeSet<String>, now_ms: i64) -> Vec<Notification> {
        let out = inner.evaluate(now_ms, &mut dirty);
        if let Err(e) = self.persist(inner, dirty, &out, now_ms) {
            tracing::error!(error = %e, "cannot save routing state; will retry with the next change");
        }
        out
    }

    /// How many saves of routing state have failed since open (exported as a self-metric).
    pub fn store_failures(&self) -> u64 {
        self.inner.lock().store_failures
    }

    /// Takes alert state changes (firing and resolved; others are ignored) and returns the
    /// notifications due right now — with `group_wait = 0` a new group is announced at once.
    /// State is persisted before returning (see `store_failures` for when that fails).
    pub fn process(&self, alerts: &[Alert], now_ms: i64) -> Vec<Notification> {
        let mut inner = self.inner.lock();
        let mut dirty = BTreeSet::new();
        for a in alerts {
            let fp = a.fingerprint();
            match a.state {
                AlertState::Firing => inner.insert_firing(a, now_ms, &mut dirty),
                AlertState::Resolved => {
                    for (key, g) in inner.groups.iter_mut() {
                        if let Some(existing) = g.alerts.get_mut(&fp) {
                            *existing = a.clone();
                            dirty.insert(key.clone());
                        }
                    }
                }
                AlertState::Pending | AlertState::Inactive => {}
            }
        }
        self.run(&mut inner, dirty, now_ms)
    }

    /// Runs the timers: group_interval and repeat_interval flushes, escalation steps,
    /// silences ending, time windows opening (held notifications are delivered then).
    pub fn tick(&self, now_ms: i64) -> Vec<Notification> {
        let mut inner = self.inner.lock();
        self.run(&mut inner, BTreeSet::new(), now_ms)
    }

    /// When `tick` next has something to do (planned from the latest `now_ms` seen).
    pub fn next_wake_ms(&self) -> Option<i64> {
        self.inner.lock().next_wake()
    }

    /// Notifications emitted within the replay window before `now_ms`. Call once after
    /// `open` and hand them to the outbox again: one may have been emitted but not yet
    /// stored when the process stopped; the outbox drops the ones it has (same key).
    pub fn replay(&self, now_ms: i64) -> Result<Vec<Notification>, RoutingError> {
        let window = self.inner.lock().compiled.replay_window_ms;
        self.store.emitted_since(now_ms.saturating_sub(window))
    }

    /// Acknowledges firing alerts: stops their escalation and records who and when.
    pub fn ack(
        &self,
        target: &AckTarget,
        by: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<Vec<AckRecord>, RoutingError> {
        if by.trim().is_empty() {
            return Err(RoutingError::invalid("by", "say who acknowledges"));
        }
        let mut inner = self.inner.lock();
        let mut records = Vec::new();
        let mut dirty = BTreeSet::new();
        let mut found = false;
        for (key, g) in inner.groups.iter_mut() {
            let only = match target {
                AckTarget::Group(k) if k == key => None,
                AckTarget::Alert(fp) if g.alerts.contains_key(fp) => Some(fp.as_str()),
                _ => continue,
            };
            found = true;
            for fp in g.ack(only, by.trim(), now_ms) {
                let Some(a) = g.alerts.get(&fp) else { continue };
                records.push(AckRecord {
                    group_key: key.clone(),
                    fingerprint: fp.clone(),
                    alertname: a.name().to_string(),
                    alert_starts_at_ms: a.starts_at_ms,
                    first_notified_ms: g.first_announced_ms.get(&fp).copied(),
                    acked_at_ms: now_ms,
                    acked_by: by.trim().to_string(),
                    comment: comment.to_string(),
                });
            }
            dirty.insert(key.clone());
        }
        if !found {
            let (what, id) = match target {
                AckTarget::Group(k) => ("alert group", k.clone()),
                AckTarget::Alert(fp) => ("firing alert", fp.clone()),
            };
            return Err(RoutingError::NotFound { what, id });
        }
        self.store.insert_acks(&records)?;
        self.persist(&mut inner, dirty, &[], now_ms)?;
        Ok(records)
    }

    /// Acknowledgements made in `[from_ms, to_ms)`, for MTTA.
    pub fn acks_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<AckRecord>, RoutingError> {
        self.store.acks_between(from_ms, to_ms)
    }

    pub fn groups(&self, now_ms: i64) -> Vec<GroupView> {
        let inner = self.inner.lock();
        let firing = inner.firing();
        let inhibit = InhibitIndex::build(&inner.compiled.inhibit, &firing);
        inner
            .groups
            .values()
            .map(|g| {
                let receiver = inner.compiled.root.find(&g.route_key).map(|r| r.receiver.clone()).unwrap_or_default();
                let alerts = g
                    .alerts
                    .iter()
                    .map(|(fp, a)| AlertView {
                        fingerprint: fp.clone(),
                        labels: a.labels.clone(),
                        state: a.state,
                        starts_at_ms: a.starts_at_ms,
                        silenced: inner.silenced(&a.labels, now_ms),
                        inhibited: inhibit.inhibits(a),
                        acked: g.acked.contains(fp),
                    })
                    .collect();
                GroupView {
                    group_key: g.group_key.clone(),
                    route: g.route_key.clone(),
                    receiver,
                    group_labels: g.group_labels.clone(),
                    alerts,
                    last_notified_ms: g.last_notified_ms,
                    next_flush_ms: g.next_flush_ms,
                    held: g.hold.map(|h| format!("{h:?}").to_lowercase()),
                    escalation_level: g.esc_level,
                    acked_at_ms: g.acked_at_ms,
                    acked_by: g.acked_by.clone(),
                }
            })
            .collect()
    }
}
