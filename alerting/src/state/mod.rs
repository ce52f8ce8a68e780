//! Alert state: the state machine (`machine`) over every rule's alerts and the external
//! alerts from intake, kept in memory and persisted (`store`) before anything is routed, so
//! a restart neither re-pages nor forgets what is firing. Also the alert history.
//!
//! Order of effects for each change: persist the new state (one transaction per rule
//! evaluation) → hand firing/resolved alerts to routing → remove resolved rows. A crash
//! between any two steps repeats the later ones at the next start (`undelivered`), and
//! routing plus the outbox drop what they already have.

pub mod machine;
pub mod store;

use crate::model::{Alert, AlertSource, AlertState, LabelMap, fingerprint};
use machine::{ActiveAlert, Observed, Timing, Transition};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use store::HistoryRow;
use tingzhen_core::db::{Db, DbError};
use tingzhen_core::params;

/// The rule key external (intake) alerts are kept under.
pub const EXTERNAL_KEY: &str = "external";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("alert state store: {0}")]
    Db(#[from] DbError),
}

/// An alert received through intake, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalAlert {
    pub labels: LabelMap,
    pub annotations: LabelMap,
    pub starts_at_ms: i64,
    /// At or before now: resolved. Later: firing until then unless refreshed.
    pub ends_at_ms: i64,
    pub generator_url: String,
}

type RuleAlerts = BTreeMap<String, ActiveAlert>;

pub struct AlertStore {
    db: Arc<Db>,
    rules: Mutex<HashMap<String, RuleAlerts>>,
}

impl AlertStore {
    /// Migrates the state tables and loads what was pending or firing at the last stop.
    pub fn open(db: Arc<Db>) -> Result<Self, StateError> {
        db.migrate_component(store::COMPONENT, store::MIGRATIONS)?;
        let loaded = db.with_conn(store::load_active)?;
        let mut rules: HashMap<String, RuleAlerts> = HashMap::new();
        for a in loaded {
            rules.entry(a.rule_key.clone()).or_default().insert(a.fingerprint(), a);
        }
        Ok(Self { db, rules: Mutex::new(rules) })
    }

    /// Applies transitions to the store in one transaction. On failure memory is restored by
    /// the caller, so memory never runs ahead of disk.
    fn persist(
        &self,
        alerts: &mut RuleAlerts,
        rule_key: &str,
        changes: &[(String, Transition)],
    ) -> Result<(), StateError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.db.with_conn(|c| {
            c.transaction(|tx| {
                for (fp, t) in changes {
                    match t {
                        Transition::Cleared => store::delete(tx, rule_key, fp)?,
                        Transition::Pending => {
                            if let Some(a) = alerts.get(fp) {
                                store::upsert(tx, a)?;
                            }
                        }
                        Transition::Firing => {
                            if let Some(a) = alerts.get_mut(fp) {
                                a.history_id = Some(store::open_history(tx, a)?);
                                store::upsert(tx, a)?;
                            }
                        }
                        Transition::Resolved => {
                            if let Some(a) = alerts.get(fp) {
                                if let Some(id) = a.history_id {
                                    store::close_history(tx, id, a.resolved_at_ms.unwrap_or_default(), a.value)?;
                                }
                                store::upsert(tx, a)?;
                            }
                        }
                    }
                }
                Ok::<_, DbError>(())
            })
        })?;
        Ok(())
    }

    /// One evaluation of a rule: advance its alerts and persist. Returns the alerts routing
    /// must hear about (became firing, or resolved).
    pub fn evaluate_rule(
        &self,
        rule_key: &str,
        timing: Timing,
        observed: Vec<Observed>,
        now_ms: i64,
    ) -> Result<Vec<Alert>, StateError> {
        let mut rules = self.rules.lock();
        let alerts = rules.entry(rule_key.to_string()).or_default();
        let before = alerts.clone();
        let source = AlertSource::Rule(rule_key.to_string());
        let changes = machine::step(rule_key, &source, timing, alerts, observed, now_ms);
        if let Err(e) = self.persist(alerts, rule_key, &changes) {
            *alerts = before;
            return Err(e);
        }
        Ok(routable(alerts, &changes))
    }

    /// Resolves every alert of rules not in `live` (the rule was deleted or changed its name).
    pub fn retire_rules(&self, live: &HashSet<String>, now_ms: i64) -> Result<Vec<Alert>, StateError> {
        let keys: Vec<String> = {
            let rules = self.rules.lock();
            rules.keys().filter(|k| k.as_str() != EXTERNAL_KEY && !live.contains(*k)).cloned().collect()
        };
        let mut out = Vec::new();
        for k in keys {
            out.extend(self.evaluate_rule(&k, Timing::default(), Vec::new(), now_ms)?);
        }
        Ok(out)
    }

    /// Takes alerts from intake. New firing ones fire at once (the sender applied its own
    /// `for`); known ones are refreshed; resolved ones resolve.
    pub fn external(&self, incoming: Vec<ExternalAlert>, now_ms: i64) -> Result<Vec<Alert>, StateError> {
        let mut rules = self.rules.lock();
        let alerts = rules.entry(EXTERNAL_KEY.to_string()).or_default();
        let before = alerts.clone();
        let mut changes = Vec::new();
        let mut refreshed = Vec::new();
        for x in incoming {
            let fp = fingerprint(&x.labels);
            let resolved = x.ends_at_ms <= now_ms;
            match alerts.get_mut(&fp) {
                Some(a) if a.state == AlertState::Firing => {
                    a.annotations = x.annotations;
                    if resolved {
                        a.state = AlertState::Resolved;
                        a.resolved_at_ms = Some(x.ends_at_ms.max(a.fired_at_ms.unwrap_or(i64::MIN)));
                        changes.push((fp, Transition::Resolved));
                    } else {
                        a.expires_at_ms = Some(x.ends_at_ms);
                        refreshed.push(fp);
                    }
                }
                // Resolved before we ever saw it fire, or already resolved: nothing to announce.
                _ if resolved => {}
                _ => {
                    let starts = x.starts_at_ms.min(now_ms);
                    alerts.insert(
                        fp.clone(),
                        ActiveAlert {
                            rule_key: EXTERNAL_KEY.into(),
                            labels: x.labels,
                            annotations: x.annotations,
                            state: AlertState::Firing,
                            active_at_ms: starts,
                            fired_at_ms: Some(starts),
                            resolved_at_ms: None,
                            value: f64::NAN,
                            source: AlertSource::External(x.generator_url),
                            missing_since_ms: None,
                            expires_at_ms: Some(x.ends_at_ms),
                            history_id: None,
                        },
                    );
                    changes.push((fp, Transition::Firing));
                }
            }
        }
        let result = self.persist(alerts, EXTERNAL_KEY, &changes).and_then(|()| {
            // Refreshed expiry times are saved too, so a restart does not resolve early.
            self.db.with_conn(|c| {
                c.transaction(|tx| {
                    for fp in &refreshed {
                        if let Some(a) = alerts.get(fp) {
                            store::upsert(tx, a)?;
                        }
                    }
                    Ok::<_, DbError>(())
                })
            })?;
            Ok(())
        });
        if let Err(e) = result {
            *alerts = before;
            return Err(e);
        }
        Ok(routable(alerts, &changes))
    }

    /// Resolves external alerts whose sender stopped refreshing them.
    pub fn expire_external(&self, now_ms: i64) -> Result<Vec<Alert>, StateError> {
        let mut rules = self.rules.lock();
        let Some(alerts) = rules.get_mut(EXTERNAL_KEY) else { return Ok(Vec::new()) };
        let before = alerts.clone();
        let mut changes = Vec::new();
        for (fp, a) in alerts.iter_mut() {
            if a.state == AlertState::Firing && a.expires_at_ms.is_some_and(|t| t <= now_ms) {
                a.state = AlertState::Resolved;
                a.resolved_at_ms = a.expires_at_ms;
                changes.push((fp.clone(), Transition::Resolved));
            }
        }
        if let Err(e) = self.persist(alerts, EXTERNAL_KEY, &changes) {
            *alerts = before;
            return Err(e);
        }
        Ok(routable(alerts, &changes))
    }

    /// The earliest time an external alert expires (the service's timer).
    pub fn next_expiry_ms(&self) -> Option<i64> {
        let rules = self.rules.lock();
        rules
            .get(EXTERNAL_KEY)?
            .values()
            .filter(|a| a.state == AlertState::Firing)
            .filter_map(|a| a.expires_at_ms)
            .min()
    }

    /// Routing has the resolved alerts among `alerts`: forget them.
    pub fn routed(&self, alerts: &[Alert]) -> Result<(), StateError> {
        let resolved: Vec<(String, String)> = alerts
            .iter()
            .filter(|a| a.state == AlertState::Resolved)
            .map(|a| (source_key(&a.source), a.fingerprint()))
            .collect();
        if resolved.is_empty() {
            return Ok(());
        }
        // The state condition makes this safe against an evaluation that re-fired the alert
        // meanwhile: its row is no longer 'resolved' and stays.
        self.db.with_conn(|c| {
            c.transaction(|tx| {
                for (k, fp) in &resolved {
                    tx.execute(
                        "DELETE FROM alert_active WHERE rule_key = ?1 AND fingerprint = ?2 AND state = 'resolved'",
                        &params![k, fp],
                    )?;
                }
                Ok::<_, DbError>(())
            })
        })?;
        let mut rules = self.rules.lock();
        for (k, fp) in resolved {
            if let Some(m) = rules.get_mut(&k)
                && m.get(&fp).is_some_and(|a| a.state == AlertState::Resolved)
            {
                m.remove(&fp);
            }
        }
        Ok(())
    }

    /// What routing may not have heard yet after a restart: every firing alert and every
    /// resolved one not yet removed. Routing ignores what it already has.
    pub fn undelivered(&self) -> Vec<Alert> {
        let rules = self.rules.lock();
        rules
            .values()
            .flat_map(|m| m.values())
            .filter(|a| matches!(a.state, AlertState::Firing | AlertState::Resolved))
            .map(ActiveAlert::to_alert)
            .collect()
    }

    /// Every alert held now (pending, firing, resolved awaiting routing), for the API.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let rules = self.rules.lock();
        let mut v: Vec<ActiveAlert> = rules.values().flat_map(|m| m.values().cloned()).collect();
        v.sort_by(|a, b| a.active_at_ms.cmp(&b.active_at_ms).then_with(|| a.labels.cmp(&b.labels)));
        v
    }

    pub fn history(&self, from_ms: i64, to_ms: i64) -> Result<Vec<HistoryRow>, StateError> {
        Ok(self.db.with_conn(|c| store::history(c, from_ms, to_ms))?)
    }

    /// Notes acknowledgements (from routing) on the history rows they belong to.
    pub fn record_acks(&self, acks: &[(String, i64)]) -> Result<(), StateError> {
        self.db.with_conn(|c| {
            c.transaction(|tx| {
                for (fp, at) in acks {
                    store::record_ack(tx, fp, *at)?;
                }
                Ok::<(), DbError>(())
            })
        })?;
        Ok(())
    }
}

fn source_key(source: &AlertSource) -> String {
    match source {
        AlertSource::Rule(k) => k.clone(),
        AlertSource::External(_) => EXTERNAL_KEY.to_string(),
    }
}

fn routable(alerts: &RuleAlerts, changes: &[(String, Transition)]) -> Vec<Alert> {
    changes
        .iter()
        .filter(|(_, t)| matches!(t, Transition::Firing | Transition::Resolved))
        .filter_map(|(fp, _)| alerts.get(fp).map(ActiveAlert::to_alert))
        .collect()
}

#[cfg(test)]
mod tests;
