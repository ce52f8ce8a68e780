//! The outbox tables (SQLite, component `alerting_outbox`): a notification row per
//! (idempotency key, receiver), a delivery row per channel it goes out on (fallbacks added as
//! they are needed), and an attempt log. Every state change is one transaction, so a crash
//! leaves each delivery either pending, in flight (retried at the next start) or finished.

use super::{DeliveryRecord, DeliveryState, OutboxError};
use crate::model::{LabelMap, Notification};
use rusqlite::{OptionalExtension, params};
use tingzhen_core::db::{Db, rusqlite};

pub(crate) const COMPONENT: &str = "alerting_outbox";

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: notifications, deliveries, attempts
    "CREATE TABLE outbox_notifications (
        id INTEGER PRIMARY KEY,
        idempotency_key TEXT NOT NULL,
        receiver TEXT NOT NULL,
        group_key TEXT NOT NULL,
        status TEXT NOT NULL,
        escalation_level INTEGER NOT NULL,
        alert_count INTEGER NOT NULL,
        labels_json TEXT NOT NULL,
        payload_json TEXT NOT NULL,
        state TEXT NOT NULL,
        next_fallback INTEGER NOT NULL DEFAULT 0,
        created_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER,
        UNIQUE (idempotency_key, receiver)
    );
    CREATE INDEX outbox_notifications_created ON outbox_notifications(created_at_ms);
    CREATE TABLE outbox_deliveries (
        id INTEGER PRIMARY KEY,
        notification_id INTEGER NOT NULL REFERENCES outbox_notifications(id),
        channel TEXT NOT NULL,
        kind TEXT NOT NULL,
        role TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT,
        receipt TEXT,
        created_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER,
        UNIQUE (notification_id, channel)
    );
    CREATE INDEX outbox_deliveries_due ON outbox_deliveries(state, next_attempt_ms);
    CREATE INDEX outbox_deliveries_created ON outbox_deliveries(created_at_ms);
    CREATE TABLE outbox_attempts (
        id INTEGER PRIMARY KEY,
        delivery_id INTEGER NOT NULL REFERENCES outbox_deliveries(id),
        attempt INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX outbox_attempts_delivery ON outbox_attempts(delivery_id);",
    // 2: parts of a multi-part send already accepted (robot pieces, per-phone requests)
    "ALTER TABLE outbox_deliveries ADD COLUMN parts_done INTEGER NOT NULL DEFAULT 0;",
];

/// A delivery taken for sending.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub delivery_id: i64,
    pub receiver: String,
    pub channel: String,
    pub idempotency_key: String,
    pub attempts: u32,
    pub parts_done: u32,
    pub payload_json: String,
}

/// The labels a summary groups by: those every alert of the notification shares.
fn summary_labels(n: &Notification) -> LabelMap {
    crate::templates::common(n.alerts.iter().map(|a| &a.labels))
}

/// Stores `n` with its primary deliveries; false if (key, receiver) was already stored.
pub(crate) fn insert(db: &Db, n: &Notification, channels: &[(String, &str)], now: i64) -> Result<bool, OutboxError> {
    let payload = serde_json::to_string(n)?;
    let labels = serde_json::to_string(&summary_labels(n))?;
    let status = serde_json::to_value(n.status)?.as_str().unwrap_or("").to_string();
    db.with_conn(|c| {
        let tx = c.transaction()?;
        // A receiver without channels (the null receiver) only records: the notification is
        // finished as soon as it is stored.
        let (state, finished) = if channels.is_empty() { ("recorded", Some(now)) } else { ("pending", None) };
        let inserted = tx.execute(
            "INSERT INTO outbox_notifications (idempotency_key, receiver, group_key, status, escalation_level,
                 alert_count, labels_json, payload_json, state, created_at_ms, finished_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?10, ?9, ?11)
             ON CONFLICT (idempotency_key, receiver) DO NOTHING",
            params![
                n.idempotency_key,
                n.receiver,
                n.group_key,
                status,
                n.escalation_level,
                n.alerts.len() as i64,
                labels,
                payload,
                now,
                state,
                finished
            ],
        )?;
        if inserted == 0 {
            return Ok(false);
        }
        let id = tx.last_insert_rowid();
        for (name, kind) in channels {
            tx.execute(
                "INSERT INTO outbox_deliveries (notification_id, channel, kind, role, state, next_attempt_ms, created_at_ms)
                 VALUES (?1, ?2, ?3, 'primary', 'pending', ?4, ?4)",
                params![id, name, kind, now],
            )?;
        }
        tx.commit()?;
        Ok(true)
    })
}

/// Deliveries that were in flight when the process stopped go back to pending: the at-least-once
/// half of the contract.
pub(crate) fn recover_in_flight(db: &Db) -> Result<usize, OutboxError> {
    Ok(db.with_conn(|c| c.execute("UPDATE outbox_deliveries SET state = 'pending' WHERE state = 'sending'", []))?)
}

/// Takes up to `limit` due deliveries, marking them in flight and counting the attempt before
/// any byte is sent.
pub(crate) fn claim_due(db: &Db, now: i64, limit: usize) -> Result<Vec<Claimed>, OutboxError> {
    db.with_conn(|c| {
        let tx = c.transaction()?;
        let rows = {
            let mut st = tx.prepare(
                "SELECT d.id, n.receiver, d.channel, n.idempotency_key, d.attempts, n.payload_json, d.parts_done
                 FROM outbox_deliveries d JOIN outbox_notifications n ON n.id = d.notification_id
                 WHERE d.state = 'pending' AND d.next_attempt_ms <= ?1
                 ORDER BY d.next_attempt_ms, d.id LIMIT ?2",
            )?;
            st.query_map(params![now, limit as i64], |r| {
                Ok(Claimed {
                    delivery_id: r.get(0)?,
                    receiver: r.get(1)?,
                    channel: r.get(2)?,
                    idempotency_key: r.get(3)?,
                    attempts: r.get::<_, u32>(4)? + 1,
                    payload_json: r.get(5)?,
                    parts_done: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        for row in &rows {
            tx.execute(
                "UPDATE outbox_deliveries SET state = 'sending', attempts = ?2 WHERE id = ?1",
                params![row.delivery_id, row.attempts],
            )?;
        }
        tx.commit()?;
        Ok(rows)
    })
}

/// The earliest `next_attempt_ms` of a pending delivery.
pub(crate) fn next_due_ms(db: &Db) -> Result<Option<i64>, OutboxError> {
    Ok(db.with_conn(|c| {
        c.query_row("SELECT MIN(next_attempt_ms) FROM outbox_deliveries WHERE state = 'pending'", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
    })?)
}

fn log_attempt(tx: &rusqlite::Transaction<'_>, id: i64, now: i64, ok: bool, detail: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO outbox_attempts (delivery_id, attempt, at_ms, ok, detail)
         SELECT id, attempts, ?2, ?3, ?4 FROM outbox_deliveries WHERE id = ?1",
        params![id, now, ok as i64, detail],
    )?;
    Ok(())
}

/// A notification is finished once none of its deliveries is pending or in flight: delivered
/// if any channel got through, a dead letter otherwise.
fn finalize(tx: &rusqlite::Transaction<'_>, delivery_id: i64, now: i64) -> rusqlite::Result<()> {
    let nid: i64 =
        tx.query_row("SELECT notification_id FROM outbox_deliveries WHERE id = ?1", [delivery_id], |r| r.get(0))?;
    let (open, sent): (i64, i64) = tx.query_row(
        "SELECT SUM(state IN ('pending', 'sending')), SUM(state = 'sent') FROM outbox_deliveries WHERE notification_id = ?1",
        [nid],
        |r| Ok((r.get::<_, Option<i64>>(0)?.unwrap_or(0), r.get::<_, Option<i64>>(1)?.unwrap_or(0))),
    )?;
    if open == 0 {
        let state = if sent > 0 { "delivered" } else { "dead" };
        tx.execute(
            "UPDATE outbox_notifications SET state = ?2, finished_at_ms = ?3 WHERE id = ?1",
            params![nid, state, now],
        )?;
    }
    Ok(())
}

pub(crate) fn record_success(db: &Db, id: i64, receipt: &str, now: i64) -> Result<(), OutboxError> {
    db.with_conn(|c| {
        let tx = c.transaction()?;
        tx.execute(
            "UPDATE outbox_deliveries SET state = 'sent', receipt = ?2, finished_at_ms = ?3 WHERE id = ?1",
            params![id, receipt, now],
        )?;
        log_attempt(&tx, id, now, true, receipt)?;
        finalize(&tx, id, now)?;
        tx.commit()
    })?;
    Ok(())
}

/// Records a failed attempt. With `retry_at`, the delivery waits; without, it is dead and the
/// next unused step of the receiver's fallback chain (`fallback(i)` → name, kind) is queued.
pub(crate) fn record_failure(
    db: &Db,
    id: i64,
    parts_done: u32,
    error: &str,
    retry_at: Option<i64>,
    now: i64,
    fallback: &dyn Fn(usize) -> Option<(String, &'static str)>,
) -> Result<Option<String>, OutboxError> {
    db.with_conn(|c| {
        let tx = c.transaction()?;
        log_attempt(&tx, id, now, false, error)?;
        tx.execute("UPDATE outbox_deliveries SET parts_done = ?2 WHERE id = ?1", params![id, parts_done])?;
        let mut queued = None;
        if let Some(at) = retry_at {
            tx.execute(
                "UPDATE outbox_deliveries SET state = 'pending', next_attempt_ms = ?2, last_error = ?3 WHERE id = ?1",
                params![id, at, error],
            )?;
        } else {
            tx.execute(
                "UPDATE outbox_deliveries SET state = 'dead', last_error = ?2, finished_at_ms = ?3 WHERE id = ?1",
                params![id, error, now],
            )?;
            let (nid, mut next): (i64, i64) = tx.query_row(
                "SELECT n.id, n.next_fallback FROM outbox_deliveries d JOIN outbox_notifications n
                 ON n.id = d.notification_id WHERE d.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            while let Some((name, kind)) = fallback(next as usize) {
                next += 1;
                let added = tx.execute(
                    "INSERT INTO outbox_deliveries (notification_id, channel, kind, role, state, next_attempt_ms, created_at_ms)
                     VALUES (?1, ?2, ?3, 'fallback', 'pending', ?4, ?4)
                     ON CONFLICT (notification_id, channel) DO NOTHING",
                    params![nid, name, kind, now],
                )?;
                if added > 0 {
                    queued = Some(name);
                    break;
                }
            }
            tx.execute("UPDATE outbox_notifications SET next_fallback = ?2 WHERE id = ?1", params![nid, next])?;
            finalize(&tx, id, now)?;
        }
        tx.commit()?;
        Ok(queued)
    })
}

/// Puts a dead delivery back in the queue with fresh attempts; false if it is not dead.
pub(crate) fn retry_dead(db: &Db, id: i64, now: i64) -> Result<bool, OutboxError> {
    db.with_conn(|c| {
        let tx = c.transaction()?;
        let n = tx.execute(
            "UPDATE outbox_deliveries SET state = 'pending', attempts = 0, next_attempt_ms = ?2, finished_at_ms = NULL
             WHERE id = ?1 AND state = 'dead'",
            params![id, now],
        )?;
        if n > 0 {
            tx.execute(
                "UPDATE outbox_notifications SET state = 'pending', finished_at_ms = NULL
                 WHERE id = (SELECT notification_id FROM outbox_deliveries WHERE id = ?1)",
                [id],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    })
}

const RECORD_SELECT: &str = "SELECT d.id, n.id, n.idempotency_key, n.receiver, n.group_key, n.status,
        n.escalation_level, n.alert_count, n.labels_json, d.channel, d.kind, d.role, d.state, d.attempts,
        d.created_at_ms, d.finished_at_ms, d.last_error, d.receipt, n.created_at_ms
    FROM outbox_deliveries d JOIN outbox_notifications n ON n.id = d.notification_id";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let labels: String = r.get(8)?;
    let state: String = r.get(12)?;
    Ok(DeliveryRecord {
        delivery_id: r.get(0)?,
        notification_id: r.get(1)?,
        idempotency_key: r.get(2)?,
        receiver: r.get(3)?,
        group_key: r.get(4)?,
        status: r.get(5)?,
        escalation_level: r.get(6)?,
        alert_count: r.get(7)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        channel: r.get(9)?,
        kind: r.get(10)?,
        role: r.get(11)?,
        outcome: DeliveryState::parse(&state),
        attempts: r.get(13)?,
        created_at_ms: r.get(14)?,
        finished_at_ms: r.get(15)?,
        last_error: r.get(16)?,
        receipt: r.get(17)?,
        notification_created_at_ms: r.get(18)?,
    })
}

/// Deliveries created in [from, to), optionally of one state, oldest first, at most `limit`.
pub(crate) fn records(
    db: &Db,
    from_ms: i64,
    to_ms: i64,
    state: Option<DeliveryState>,
    limit: usize,
) -> Result<Vec<DeliveryRecord>, OutboxError> {
    db.with_conn(|c| {
        let sql = format!(
            "{RECORD_SELECT} WHERE d.created_at_ms >= ?1 AND d.created_at_ms < ?2 AND (?3 IS NULL OR d.state = ?3)
             ORDER BY d.id LIMIT ?4"
        );
        let mut st = c.prepare(&sql)?;
        let rows = st.query_map(params![from_ms, to_ms, state.map(|s| s.as_str()), limit as i64], record)?;
        rows.collect::<Result<Vec<_>, _>>()
    })
    .map_err(Into::into)
}

/// Notifications of channel-less receivers created in [from_ms, to_ms): they have no delivery
/// rows, so `records` cannot list them. As JSON objects shaped like the notification list's.
pub(crate) fn recorded_only(
    db: &Db,
    from_ms: i64,
    to_ms: i64,
    limit: usize,
) -> Result<Vec<(i64, serde_json::Value)>, OutboxError> {
    db.with_conn(|c| {
        let mut st = c.prepare(
            "SELECT id, idempotency_key, receiver, group_key, status, escalation_level, alert_count, labels_json,
                    created_at_ms
             FROM outbox_notifications
             WHERE state = 'recorded' AND created_at_ms >= ?1 AND created_at_ms < ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = st.query_map(params![from_ms, to_ms, limit as i64], |r| {
            let labels: String = r.get(7)?;
            let labels: serde_json::Value = serde_json::from_str(&labels).unwrap_or_default();
            Ok((
                r.get::<_, i64>(0)?,
                serde_json::json!({
                    "id": r.get::<_, i64>(0)?,
                    "idempotency_key": r.get::<_, String>(1)?,
                    "receiver": r.get::<_, String>(2)?,
                    "group_key": r.get::<_, String>(3)?,
                    "status": r.get::<_, String>(4)?,
                    "escalation_level": r.get::<_, i64>(5)?,
                    "alert_count": r.get::<_, i64>(6)?,
                    "labels": labels,
                    "created_at_ms": r.get::<_, i64>(8)?,
                    "state": "recorded",
                    "deliveries": [],
                }),
            ))
        })?;
        rows.collect::<Result<Vec<_>, _>>()
    })
    .map_err(Into::into)
}

/// Deliveries of one notification.
pub(crate) fn records_of(db: &Db, notification_id: i64) -> Result<Vec<DeliveryRecord>, OutboxError> {
    db.with_conn(|c| {
        let mut st = c.prepare(&format!("{RECORD_SELECT} WHERE n.id = ?1 ORDER BY d.id"))?;
        let rows = st.query_map([notification_id], record)?;
        rows.collect::<Result<Vec<_>, _>>()
    })
    .map_err(Into::into)
}

/// One notification's stored payload and state.
pub(crate) fn notification(db: &Db, id: i64) -> Result<Option<(String, String)>, OutboxError> {
    Ok(db.with_conn(|c| {
        c.query_row("SELECT state, payload_json FROM outbox_notifications WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
    })?)
}

/// The attempt log of one delivery: (attempt, at_ms, ok, detail).
pub(crate) fn attempts(db: &Db, delivery_id: i64) -> Result<Vec<(u32, i64, bool, String)>, OutboxError> {
    db.with_conn(|c| {
        let mut st =
            c.prepare("SELECT attempt, at_ms, ok, detail FROM outbox_attempts WHERE delivery_id = ?1 ORDER BY id")?;
        let rows = st.query_map([delivery_id], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0, r.get(3)?)))?;
        rows.collect::<Result<Vec<_>, _>>()
    })
    .map_err(Into::into)
}
