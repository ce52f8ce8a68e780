//! SQLite persistence for routing: group state (so a restart neither re-pages nor forgets),
//! the notifications recently emitted (replayed to the outbox after a restart), silences,
//! acknowledgements (MTTA) and calendar overrides made through the API.

use super::RoutingError;
use super::dispatcher::AckRecord;
use super::group::Group;
use super::silence::Silence;
use crate::calendar::DayKind;
use crate::model::Notification;
use chrono::NaiveDate;
use std::sync::Arc;
use tingzhen_core::db::Db;
use tingzhen_core::db::rusqlite::{OptionalExtension, params};

const COMPONENT: &str = "alerting_routing";

const MIGRATIONS: &[&str] = &[
    // 1: groups, emitted notifications, silences, acknowledgements, calendar overrides
    "CREATE TABLE routing_groups (
        group_key TEXT PRIMARY KEY,
        state_json TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE routing_emitted (
        idempotency_key TEXT PRIMARY KEY,
        notification_json TEXT NOT NULL,
        emitted_ms INTEGER NOT NULL
    );
    CREATE INDEX routing_emitted_ms ON routing_emitted(emitted_ms);
    CREATE TABLE routing_silences (
        id TEXT PRIMARY KEY,
        silence_json TEXT NOT NULL,
        ends_at_ms INTEGER,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE routing_acks (
        id INTEGER PRIMARY KEY,
        group_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        alertname TEXT NOT NULL,
        alert_starts_at_ms INTEGER NOT NULL,
        first_notified_ms INTEGER,
        acked_at_ms INTEGER NOT NULL,
        acked_by TEXT NOT NULL,
        comment TEXT NOT NULL
    );
    CREATE INDEX routing_acks_at ON routing_acks(acked_at_ms);
    CREATE TABLE routing_calendar_overrides (
        date TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        updated_by TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );",
];

pub(crate) struct Store {
    db: Arc<Db>,
}

fn corrupt(what: &'static str, e: impl std::fmt::Display) -> RoutingError {
    RoutingError::Corrupt { what, message: e.to_string() }
}

impl Store {
    pub fn open(db: Arc<Db>) -> Result<Self, RoutingError> {
        db.migrate_component(COMPONENT, MIGRATIONS)?;
        Ok(Self { db })
    }

    pub fn load_groups(&self) -> Result<Vec<Group>, RoutingError> {
        let rows: Vec<String> = self.db.with_conn(|c| {
            let mut st = c.prepare("SELECT state_json FROM routing_groups ORDER BY group_key")?;
            let rows = st.query_map([], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
            Ok::<_, RoutingError>(rows)
        })?;
        rows.iter().map(|j| serde_json::from_str(j).map_err(|e| corrupt("group", e))).collect()
    }

    /// One transaction: changed groups (None = deleted), the notifications emitted with those
    /// changes, and pruning of emitted rows older than `prune_before_ms`.
    pub fn save(
        &self,
        groups: &[(String, Option<Group>)],
        emitted: &[Notification],
        now_ms: i64,
        prune_before_ms: i64,
    ) -> Result<(), RoutingError> {
        if groups.is_empty() && emitted.is_empty() {
            return Ok(());
        }
        self.db.with_conn(|c| {
            let tx = c.transaction()?;
            for (key, g) in groups {
                match g {
                    Some(g) => {
                        let json = serde_json::to_string(g).map_err(|e| corrupt("group", e))?;
                        tx.execute(
                            "INSERT INTO routing_groups (group_key, state_json, updated_ms) VALUES (?1, ?2, ?3)
                             ON CONFLICT(group_key) DO UPDATE SET state_json = excluded.state_json,
                             updated_ms = excluded.updated_ms",
                            params![key, json, now_ms],
                        )?;
                    }
                    None => {
                        tx.execute("DELETE FROM routing_groups WHERE group_key = ?1", [key])?;
                    }
                }
            }
            for n in emitted {
                let json = serde_json::to_string(n).map_err(|e| corrupt("notification", e))?;
                tx.execute(
                    "INSERT OR IGNORE INTO routing_emitted (idempotency_key, notification_json, emitted_ms)
                     VALUES (?1, ?2, ?3)",
                    params![n.idempotency_key, json, now_ms],
                )?;
            }
            tx.execute("DELETE FROM routing_emitted WHERE emitted_ms < ?1", [prune_before_ms])?;
            tx.commit()?;
            Ok(())
        })
    }

    pub fn emitted_since(&self, since_ms: i64) -> Result<Vec<Notification>, RoutingError> {
        let rows: Vec<String> = self.db.with_conn(|c| {
            let mut st = c.prepare(
                "SELECT notification_json FROM routing_emitted WHERE emitted_ms >= ?1 ORDER BY emitted_ms, rowid",
            )?;
            let rows = st.query_map([since_ms], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
            Ok::<_, RoutingError>(rows)
        })?;
        rows.iter().map(|j| serde_json::from_str(j).map_err(|e| corrupt("notification", e))).collect()
    }

    pub fn load_silences(&self) -> Result<Vec<Silence>, RoutingError> {
        let rows: Vec<String> = self.db.with_conn(|c| {
            let mut st = c.prepare("SELECT silence_json FROM routing_silences ORDER BY id")?;
            let rows = st.query_map([], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
            Ok::<_, RoutingError>(rows)
        })?;
        rows.iter().map(|j| serde_json::from_str(j).map_err(|e| corrupt("silence", e))).collect()
    }

    pub fn put_silence(&self, s: &Silence) -> Result<(), RoutingError> {
        let json = serde_json::to_string(s).map_err(|e| corrupt("silence", e))?;
        self.db.with_conn(|c| {
            c.execute(
                "INSERT INTO routing_silences (id, silence_json, ends_at_ms, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET silence_json = excluded.silence_json,
                 ends_at_ms = excluded.ends_at_ms, updated_ms = excluded.updated_ms",
                params![s.id, json, s.ends_at_ms, s.updated_at_ms],
            )
        })?;
        Ok(())
    }

    pub fn insert_acks(&self, acks: &[AckRecord]) -> Result<(), RoutingError> {
        self.db.with_conn(|c| {
            let tx = c.transaction()?;
            for a in acks {
                tx.execute(
                    "INSERT INTO routing_acks (group_key, fingerprint, alertname, alert_starts_at_ms,
                     first_notified_ms, acked_at_ms, acked_by, comment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        a.group_key,
                        a.fingerprint,
                        a.alertname,
                        a.alert_starts_at_ms,
                        a.first_notified_ms,
                        a.acked_at_ms,
                        a.acked_by,
                        a.comment
                    ],
                )?;
            }
            tx.commit()
        })?;
        Ok(())
    }

    pub fn acks_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<AckRecord>, RoutingError> {
        let rows = self.db.with_conn(|c| {
            let mut st = c.prepare(
                "SELECT group_key, fingerprint, alertname, alert_starts_at_ms, first_notified_ms, acked_at_ms,
                 acked_by, comment FROM routing_acks WHERE acked_at_ms >= ?1 AND acked_at_ms < ?2 ORDER BY acked_at_ms, id",
            )?;
            let rows = st
                .query_map([from_ms, to_ms], |r| {
                    Ok(AckRecord {
                        group_key: r.get(0)?,
                        fingerprint: r.get(1)?,
                        alertname: r.get(2)?,
                        alert_starts_at_ms: r.get(3)?,
                        first_notified_ms: r.get(4)?,
                        acked_at_ms: r.get(5)?,
                        acked_by: r.get(6)?,
                        comment: r.get(7)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, RoutingError>(rows)
        })?;
        Ok(rows)
    }

    pub fn load_calendar_overrides(&self) -> Result<Vec<(NaiveDate, DayKind, String)>, RoutingError> {
        let rows: Vec<(String, String, String)> = self.db.with_conn(|c| {
            let mut st = c.prepare("SELECT date, kind, name FROM routing_calendar_overrides ORDER BY date")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<Vec<_>, _>>()?;
            Ok::<_, RoutingError>(rows)
        })?;
        rows.into_iter()
            .map(|(d, k, n)| {
                let date = NaiveDate::parse_from_str(&d, "%Y-%m-%d").map_err(|e| corrupt("calendar override", e))?;
                let kind = match k.as_str() {
                    "holiday" => DayKind::Holiday,
                    "workday" => DayKind::Workday,
                    other => return Err(corrupt("calendar override", format!("kind {other:?}"))),
                };
                Ok((date, kind, n))
            })
            .collect()
    }

    pub fn put_calendar_override(
        &self,
        date: NaiveDate,
        kind: DayKind,
        name: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<(), RoutingError> {
        let kind = match kind {
            DayKind::Holiday => "holiday",
            DayKind::Workday => "workday",
        };
        self.db.with_conn(|c| {
            c.execute(
                "INSERT INTO routing_calendar_overrides (date, kind, name, updated_by, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(date) DO UPDATE SET kind = excluded.kind,
                 name = excluded.name, updated_by = excluded.updated_by, updated_ms = excluded.updated_ms",
                params![date.format("%Y-%m-%d").to_string(), kind, name, by, now_ms],
            )
        })?;
        Ok(())
    }

    /// Returns whether there was an override to delete.
    pub fn delete_calendar_override(&self, date: NaiveDate) -> Result<bool, RoutingError> {
        let n = self.db.with_conn(|c| {
            c.execute("DELETE FROM routing_calendar_overrides WHERE date = ?1", [date.format("%Y-%m-%d").to_string()])
        })?;
        Ok(n > 0)
    }

    pub fn silence_exists(&self, id: &str) -> Result<bool, RoutingError> {
        let found: Option<i64> = self.db.with_conn(|c| {
            c.query_row("SELECT 1 FROM routing_silences WHERE id = ?1", [id], |r| r.get(0)).optional()
        })?;
        Ok(found.is_some())
    }
}
