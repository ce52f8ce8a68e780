//! The persisted side of alert state (relational store, SQLite or PostgreSQL, component
//! `alerting.state`): `alert_active` holds every pending, firing, and resolved-but-not-yet-routed
//! alert so a restart resumes exactly where it stopped; `alert_history` holds one row per firing
//! episode for summaries. The writers take a connection inside the caller's transaction
//! (`AlertStore` commits one per rule evaluation).

use super::machine::ActiveAlert;
use crate::model::{AlertSource, AlertState, LabelMap};
use tingzhen_core::db::{Conn, DbError};
use tingzhen_core::params;

pub const COMPONENT: &str = "alerting.state";

pub const MIGRATIONS: &[&str] = &["CREATE TABLE alert_active (
        rule_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL,
        labels_json TEXT NOT NULL,
        annotations_json TEXT NOT NULL,
        source_json TEXT NOT NULL,
        active_at_ms INTEGER NOT NULL,
        fired_at_ms INTEGER,
        resolved_at_ms INTEGER,
        value REAL,
        expires_at_ms INTEGER,
        history_id INTEGER,
        PRIMARY KEY (rule_key, fingerprint)
    );
    CREATE TABLE alert_history (
        id INTEGER PRIMARY KEY,
        rule_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        alertname TEXT NOT NULL,
        labels_json TEXT NOT NULL,
        source TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER,
        acked_at_ms INTEGER,
        value REAL
    );
    CREATE INDEX alert_history_started ON alert_history(started_at_ms);
    CREATE INDEX alert_history_fp ON alert_history(fingerprint, started_at_ms);"];

fn state_str(s: AlertState) -> &'static str {
    s.as_str()
}

fn parse_state(s: &str) -> AlertState {
    match s {
        "pending" => AlertState::Pending,
        "resolved" => AlertState::Resolved,
        "inactive" => AlertState::Inactive,
        _ => AlertState::Firing,
    }
}

pub fn upsert(tx: &Conn<'_>, a: &ActiveAlert) -> Result<(), DbError> {
    let json = |m: &LabelMap| serde_json::to_string(m).unwrap_or_else(|_| "{}".into());
    let source = serde_json::to_string(&a.source).unwrap_or_else(|_| "{}".into());
    tx.execute(
        "INSERT INTO alert_active (rule_key, fingerprint, state, labels_json, annotations_json, source_json,
             active_at_ms, fired_at_ms, resolved_at_ms, value, expires_at_ms, history_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT(rule_key, fingerprint) DO UPDATE SET state = excluded.state,
             labels_json = excluded.labels_json, annotations_json = excluded.annotations_json,
             source_json = excluded.source_json, active_at_ms = excluded.active_at_ms,
             fired_at_ms = excluded.fired_at_ms, resolved_at_ms = excluded.resolved_at_ms,
             value = excluded.value, expires_at_ms = excluded.expires_at_ms, history_id = excluded.history_id",
        &params![
            a.rule_key,
            a.fingerprint(),
            state_str(a.state),
            json(&a.labels),
            json(&a.annotations),
            source,
            a.active_at_ms,
            a.fired_at_ms,
            a.resolved_at_ms,
            a.value.is_finite().then_some(a.value),
            a.expires_at_ms,
            a.history_id,
        ],
    )?;
    Ok(())
}

pub fn delete(tx: &Conn<'_>, rule_key: &str, fingerprint: &str) -> Result<(), DbError> {
    tx.execute("DELETE FROM alert_active WHERE rule_key = ?1 AND fingerprint = ?2", &[rule_key, fingerprint])?;
    Ok(())
}

/// Opens a history row for a firing episode; returns its id.
pub fn open_history(tx: &Conn<'_>, a: &ActiveAlert) -> Result<i64, DbError> {
    let source = match a.source {
        AlertSource::Rule(_) => "rule",
        AlertSource::External(_) => "external",
    };
    tx.query_row(
        "INSERT INTO alert_history (rule_key, fingerprint, alertname, labels_json, source, started_at_ms, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
        &params![
            a.rule_key,
            a.fingerprint(),
            a.labels.get(crate::model::ALERTNAME).cloned().unwrap_or_default(),
            serde_json::to_string(&a.labels).unwrap_or_else(|_| "{}".into()),
            source,
            a.fired_at_ms.unwrap_or(a.active_at_ms),
            a.value.is_finite().then_some(a.value),
        ],
        |r| r.get(0),
    )
}

pub fn close_history(tx: &Conn<'_>, id: i64, ended_at_ms: i64, value: f64) -> Result<(), DbError> {
    tx.execute(
        "UPDATE alert_history SET ended_at_ms = ?2, value = COALESCE(?3, value) WHERE id = ?1",
        &params![id, ended_at_ms, value.is_finite().then_some(value)],
    )?;
    Ok(())
}

/// Every stored alert, in key order (so a reload builds the same maps on both engines).
pub fn load_active(conn: &Conn<'_>) -> Result<Vec<ActiveAlert>, DbError> {
    conn.query_map(
        "SELECT rule_key, state, labels_json, annotations_json, source_json, active_at_ms, fired_at_ms,
                resolved_at_ms, value, expires_at_ms, history_id FROM alert_active ORDER BY rule_key, fingerprint",
        &(),
        |r| {
            let labels: String = r.get(2)?;
            let annotations: String = r.get(3)?;
            let source: String = r.get(4)?;
            Ok(ActiveAlert {
                rule_key: r.get(0)?,
                state: parse_state(&r.get::<String>(1)?),
                labels: serde_json::from_str(&labels).unwrap_or_default(),
                annotations: serde_json::from_str(&annotations).unwrap_or_default(),
                source: serde_json::from_str(&source).unwrap_or(AlertSource::External(String::new())),
                active_at_ms: r.get(5)?,
                fired_at_ms: r.get(6)?,
                resolved_at_ms: r.get(7)?,
                value: r.get::<Option<f64>>(8)?.unwrap_or(f64::NAN),
                expires_at_ms: r.get(9)?,
                history_id: r.get(10)?,
                missing_since_ms: None,
            })
        },
    )
}

/// One firing episode, for summaries and the history API.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryRow {
    pub id: i64,
    pub rule_key: String,
    pub fingerprint: String,
    pub alertname: String,
    pub labels: LabelMap,
    /// `rule` or `external`.
    pub source: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub acked_at_ms: Option<i64>,
    pub value: Option<f64>,
}

/// Episodes that overlap [from_ms, to_ms): started before `to` and not ended before `from`.
pub fn history(conn: &Conn<'_>, from_ms: i64, to_ms: i64) -> Result<Vec<HistoryRow>, DbError> {
    conn.query_map(
        "SELECT id, rule_key, fingerprint, alertname, labels_json, source, started_at_ms, ended_at_ms, acked_at_ms, value
         FROM alert_history WHERE started_at_ms < ?2 AND (ended_at_ms IS NULL OR ended_at_ms >= ?1)
         ORDER BY started_at_ms, id",
        &[from_ms, to_ms],
        |r| {
        let labels: String = r.get(4)?;
        Ok(HistoryRow {
            id: r.get(0)?,
            rule_key: r.get(1)?,
            fingerprint: r.get(2)?,
            alertname: r.get(3)?,
            labels: serde_json::from_str(&labels).unwrap_or_default(),
            source: r.get(5)?,
            started_at_ms: r.get(6)?,
            ended_at_ms: r.get(7)?,
            acked_at_ms: r.get(8)?,
            value: r.get(9)?,
        })
    },
    )
}

/// Records the first acknowledgement of the episode of `fingerprint` that was firing at
/// `acked_at_ms`. Idempotent: an earlier recorded ack is kept.
pub fn record_ack(conn: &Conn<'_>, fingerprint: &str, acked_at_ms: i64) -> Result<(), DbError> {
    // One statement, so it is atomic on both engines; the earlier of the stored and the new
    // time is kept (CASE: two-argument MIN is SQLite only).
    conn.execute(
        "UPDATE alert_history
         SET acked_at_ms = CASE WHEN acked_at_ms IS NOT NULL AND acked_at_ms < ?2 THEN acked_at_ms ELSE ?2 END
         WHERE id = (SELECT id FROM alert_history WHERE fingerprint = ?1 AND started_at_ms <= ?2
                     ORDER BY started_at_ms DESC, id DESC LIMIT 1)",
        &params![fingerprint, acked_at_ms],
    )?;
    Ok(())
}
