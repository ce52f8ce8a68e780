//! Persistence for routing (relational store, SQLite or PostgreSQL): group state (so a restart
//! neither re-pages nor forgets), the notifications recently emitted (replayed to the outbox
//! after a restart), silences, acknowledgements (MTTA) and calendar overrides made through the
//! API.
//!
//! Concurrency: a dispatcher saves under its own lock, and every write here is one statement
//! that is atomic on both engines (upserts, `ON CONFLICT DO NOTHING`), so PostgreSQL's pooled
//! connections need no extra locking. A new silence is inserted, never upserted, so an id
//! taken meanwhile (another process on the same database) is reported, not overwritten.

use super::RoutingError;
use super::dispatcher::AckRecord;
use super::group::Group;
use super::silence::Silence;
use crate::calendar::DayKind;
use crate::model::Notification;
use chrono::NaiveDate;
use std::sync::Arc;
use tingzhen_core::db::{Db, DbError};
use tingzhen_core::params;

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
    // 2: emission order within one save. Replay hands notifications back in the order they were
    // emitted; SQLite's rowid used to give that, and PostgreSQL has no such column.
    "ALTER TABLE routing_emitted ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;",
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
            c.query_map("SELECT state_json FROM routing_groups ORDER BY group_key", &(), |r| r.get(0))
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
        // Serialized before the transaction, so it holds the connection only for the writes.
        let groups: Vec<(&String, Option<String>)> = groups
            .iter()
            .map(|(key, g)| {
                Ok((key, g.as_ref().map(serde_json::to_string).transpose().map_err(|e| corrupt("group", e))?))
            })
            .collect::<Result<_, RoutingError>>()?;
        let emitted: Vec<(&str, String)> = emitted
            .iter()
            .map(|n| {
                Ok((n.idempotency_key.as_str(), serde_json::to_string(n).map_err(|e| corrupt("notification", e))?))
            })
            .collect::<Result<_, RoutingError>>()?;
        self.db.with_conn(|c| {
            c.transaction(|tx| {
                for (key, json) in &groups {
                    match json {
                        Some(json) => {
                            tx.execute(
                                "INSERT INTO routing_groups (group_key, state_json, updated_ms) VALUES (?1, ?2, ?3)
                                 ON CONFLICT(group_key) DO UPDATE SET state_json = excluded.state_json,
                                 updated_ms = excluded.updated_ms",
                                &params![key, json, now_ms],
                            )?;
                        }
                        None => {
                            tx.execute("DELETE FROM routing_groups WHERE group_key = ?1", &[key])?;
                        }
                    }
                }
                // A key already stored (a re-flush after a crash) keeps its first row.
                for (seq, (key, json)) in emitted.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO routing_emitted (idempotency_key, notification_json, emitted_ms, seq)
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                        &params![key, json, now_ms, seq as i64],
                    )?;
                }
                tx.execute("DELETE FROM routing_emitted WHERE emitted_ms < ?1", &[prune_before_ms])?;
                Ok::<_, DbError>(())
            })
        })?;
        Ok(())
    }

    pub fn emitted_since(&self, since_ms: i64) -> Result<Vec<Notification>, RoutingError> {
        let rows: Vec<String> = self.db.with_conn(|c| {
            c.query_map(
                "SELECT notification_json FROM routing_emitted WHERE emitted_ms >= ?1
                 ORDER BY emitted_ms, seq, idempotency_key",
                &[since_ms],
                |r| r.get(0),
            )
        })?;
        rows.iter().map(|j| serde_json::from_str(j).map_err(|e| corrupt("notification", e))).collect()
    }

    pub fn load_silences(&self) -> Result<Vec<Silence>, RoutingError> {
        let rows: Vec<String> = self
            .db
            .with_conn(|c| c.query_map("SELECT silence_json FROM routing_silences ORDER BY id", &(), |r| r.get(0)))?;
        rows.iter().map(|j| serde_json::from_str(j).map_err(|e| corrupt("silence", e))).collect()
    }

    pub fn put_silence(&self, s: &Silence) -> Result<(), RoutingError> {
        let json = serde_json::to_string(s).map_err(|e| corrupt("silence", e))?;
        self.db.with_conn(|c| {
            c.execute(
                "INSERT INTO routing_silences (id, silence_json, ends_at_ms, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET silence_json = excluded.silence_json,
                 ends_at_ms = excluded.ends_at_ms, updated_ms = excluded.updated_ms",
                &params![s.id, json, s.ends_at_ms, s.updated_at_ms],
            )
        })?;
        Ok(())
    }

    /// Stores a new silence; false (and nothing written) if its id is already taken.
    pub fn insert_silence(&self, s: &Silence) -> Result<bool, RoutingError> {
        let json = serde_json::to_string(s).map_err(|e| corrupt("silence", e))?;
        let n = self.db.with_conn(|c| {
            c.execute(
                "INSERT INTO routing_silences (id, silence_json, ends_at_ms, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO NOTHING",
                &params![s.id, json, s.ends_at_ms, s.updated_at_ms],
            )
        })?;
        Ok(n > 0)
    }

    pub fn insert_acks(&self, acks: &[AckRecord]) -> Result<(), RoutingError> {
        self.db.with_conn(|c| {
            c.transaction(|tx| {
                for a in acks {
                    tx.execute(
                        "INSERT INTO routing_acks (group_key, fingerprint, alertname, alert_starts_at_ms,
                         first_notified_ms, acked_at_ms, acked_by, comment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        &params![
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
                Ok::<_, DbError>(())
            })
        })?;
        Ok(())
    }

    pub fn acks_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<AckRecord>, RoutingError> {
        let rows = self.db.with_conn(|c| {
            c.query_map(
                "SELECT group_key, fingerprint, alertname, alert_starts_at_ms, first_notified_ms, acked_at_ms,
                 acked_by, comment FROM routing_acks WHERE acked_at_ms >= ?1 AND acked_at_ms < ?2
                 ORDER BY acked_at_ms, id",
                &[from_ms, to_ms],
                |r| {
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
                },
            )
        })?;
        Ok(rows)
    }

    pub fn load_calendar_overrides(&self) -> Result<Vec<(NaiveDate, DayKind, String)>, RoutingError> {
        let rows: Vec<(String, String, String)> = self.db.with_conn(|c| {
            c.query_map("SELECT date, kind, name FROM routing_calendar_overrides ORDER BY date", &(), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
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
                &params![date.format("%Y-%m-%d").to_string(), kind, name, by, now_ms],
            )
        })?;
        Ok(())
    }

    /// Returns whether there was an override to delete.
    pub fn delete_calendar_override(&self, date: NaiveDate) -> Result<bool, RoutingError> {
        let n = self.db.with_conn(|c| {
            c.execute("DELETE FROM routing_calendar_overrides WHERE date = ?1", &[date.format("%Y-%m-%d").to_string()])
        })?;
        Ok(n > 0)
    }
}
