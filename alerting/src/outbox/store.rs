//! The outbox tables (relational store, component `alerting_outbox`): a notification row per
//! (idempotency key, receiver), a delivery row per channel it goes out on (fallbacks added as
//! they are needed), and an attempt log. Every state change is one transaction, so a crash
//! leaves each delivery either pending, in flight (retried at the next start) or finished.
//!
//! Concurrency: SQLite is one connection behind a mutex, so every transaction here is
//! serialized. PostgreSQL runs several pooled connections at READ COMMITTED, so the
//! read-then-write steps lock what they read: claiming takes due rows `FOR UPDATE SKIP LOCKED`
//! (two claimers never get the same delivery), and every change to a delivery's outcome first
//! locks its notification row, so finishing the notification, counting its open deliveries and
//! choosing the next fallback see every sibling delivery's committed state.

use super::{DeliveryRecord, DeliveryState, OutboxError};
use crate::model::{LabelMap, Notification};
use tingzhen_core::db::{Conn, Db, DbError, Dialect, Row};
use tingzhen_core::params;

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

/// `FOR UPDATE` where the engine has row locks (PostgreSQL); SQLite's single connection is
/// already exclusive for the whole transaction and has no such clause.
fn row_lock(c: &Conn<'_>) -> &'static str {
    match c.dialect() {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    }
}

/// Stores `n` with its primary deliveries; false if (key, receiver) was already stored.
pub(crate) fn insert(db: &Db, n: &Notification, channels: &[(String, &str)], now: i64) -> Result<bool, OutboxError> {
    let payload = serde_json::to_string(n)?;
    let labels = serde_json::to_string(&summary_labels(n))?;
    let status = serde_json::to_value(n.status)?.as_str().unwrap_or("").to_string();
    // A receiver without channels (the null receiver) only records: the notification is
    // finished as soon as it is stored.
    let (state, finished) = if channels.is_empty() { ("recorded", Some(now)) } else { ("pending", None) };
    Ok(db.with_conn(|c| {
        c.transaction(|tx| {
            // ON CONFLICT DO NOTHING makes a concurrent insert of the same (key, receiver) wait
            // for the first and then add nothing: RETURNING gives no row, so no second set of
            // deliveries and no unique-violation error.
            let id: Option<i64> = tx.query_opt(
                "INSERT INTO outbox_notifications (idempotency_key, receiver, group_key, status, escalation_level,
                     alert_count, labels_json, payload_json, state, created_at_ms, finished_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?10, ?9, ?11)
                 ON CONFLICT (idempotency_key, receiver) DO NOTHING
                 RETURNING id",
                &params![
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
                |r| r.get(0),
            )?;
            let Some(id) = id else { return Ok(false) };
            for (name, kind) in channels {
                tx.execute(
                    "INSERT INTO outbox_deliveries (notification_id, channel, kind, role, state, next_attempt_ms,
                         created_at_ms)
                     VALUES (?1, ?2, ?3, 'primary', 'pending', ?4, ?4)",
                    &params![id, name, kind, now],
                )?;
            }
            Ok::<_, DbError>(true)
        })
    })?)
}

/// Deliveries that were in flight when the process stopped go back to pending: the at-least-once
/// half of the contract. It assumes one sending process per database: a second live outbox on
/// the same PostgreSQL tables would have its in-flight deliveries re-queued (and maybe resent
/// with the same dedup id) when this one starts.
pub(crate) fn recover_in_flight(db: &Db) -> Result<usize, OutboxError> {
    let n =
        db.with_conn(|c| c.execute("UPDATE outbox_deliveries SET state = 'pending' WHERE state = 'sending'", &()))?;
    Ok(n as usize)
}

/// Takes up to `limit` due deliveries, marking them in flight and counting the attempt before
/// any byte is sent. Never hands one delivery to two claimers: on PostgreSQL the due rows are
/// locked as they are read and rows another claimer holds are skipped (it marks them in
/// flight), and the mark itself only changes a row still pending.
pub(crate) fn claim_due(db: &Db, now: i64, limit: usize) -> Result<Vec<Claimed>, OutboxError> {
    Ok(db.with_conn(|c| {
        c.transaction(|tx| {
            let lock = match tx.dialect() {
                Dialect::Postgres => " FOR UPDATE OF d SKIP LOCKED",
                Dialect::Sqlite => "",
            };
            let rows = tx.query_map(
                &format!(
                    "SELECT d.id, n.receiver, d.channel, n.idempotency_key, d.attempts, n.payload_json, d.parts_done
                     FROM outbox_deliveries d JOIN outbox_notifications n ON n.id = d.notification_id
                     WHERE d.state = 'pending' AND d.next_attempt_ms <= ?1
                     ORDER BY d.next_attempt_ms, d.id LIMIT ?2{lock}"
                ),
                &[now, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok(Claimed {
                        delivery_id: r.get(0)?,
                        receiver: r.get(1)?,
                        channel: r.get(2)?,
                        idempotency_key: r.get(3)?,
                        attempts: r.get::<u32>(4)?.saturating_add(1),
                        payload_json: r.get(5)?,
                        parts_done: r.get(6)?,
                    })
                },
            )?;
            let mut claimed = Vec::with_capacity(rows.len());
            for row in rows {
                let n = tx.execute(
                    "UPDATE outbox_deliveries SET state = 'sending', attempts = ?2 WHERE id = ?1 AND state = 'pending'",
                    &params![row.delivery_id, row.attempts],
                )?;
                if n == 1 {
                    claimed.push(row);
                }
            }
            Ok::<_, DbError>(claimed)
        })
    })?)
}

/// The earliest `next_attempt_ms` of a pending delivery.
pub(crate) fn next_due_ms(db: &Db) -> Result<Option<i64>, OutboxError> {
    Ok(db.with_conn(|c| {
        c.query_row("SELECT MIN(next_attempt_ms) FROM outbox_deliveries WHERE state = 'pending'", &(), |r| r.get(0))
    })?)
}

/// Locks the notification `delivery_id` belongs to (PostgreSQL; SQLite's transaction is
/// already exclusive) and returns its id and next fallback index. Every outcome change takes
/// this lock first, so two deliveries of one notification finishing at once are serialized.
fn lock_notification_of(tx: &Conn<'_>, delivery_id: i64) -> Result<Option<(i64, i64)>, DbError> {
    tx.query_opt(
        &format!(
            "SELECT id, next_fallback FROM outbox_notifications
             WHERE id = (SELECT notification_id FROM outbox_deliveries WHERE id = ?1){}",
            row_lock(tx)
        ),
        &[delivery_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

fn log_attempt(tx: &Conn<'_>, id: i64, now: i64, ok: bool, detail: &str) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO outbox_attempts (delivery_id, attempt, at_ms, ok, detail)
         SELECT id, attempts, ?2, ?3, ?4 FROM outbox_deliveries WHERE id = ?1",
        &params![id, now, i64::from(ok), detail],
    )?;
    Ok(())
}

/// A notification is finished once none of its deliveries is pending or in flight: delivered
/// if any channel got through, a dead letter otherwise. The caller holds the notification's
/// lock ([`lock_notification_of`]).
fn finalize(tx: &Conn<'_>, nid: i64, now: i64) -> Result<(), DbError> {
    let (open, sent): (Option<i64>, Option<i64>) = tx.query_row(
        "SELECT SUM(CASE WHEN state IN ('pending', 'sending') THEN 1 ELSE 0 END),
                SUM(CASE WHEN state = 'sent' THEN 1 ELSE 0 END)
         FROM outbox_deliveries WHERE notification_id = ?1",
        &[nid],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if open.unwrap_or(0) == 0 {
        let state = if sent.unwrap_or(0) > 0 { "delivered" } else { "dead" };
        tx.execute(
            "UPDATE outbox_notifications SET state = ?2, finished_at_ms = ?3 WHERE id = ?1",
            &params![nid, state, now],
        )?;
    }
    Ok(())
}

pub(crate) fn record_success(db: &Db, id: i64, receipt: &str, now: i64) -> Result<(), OutboxError> {
    db.with_conn(|c| {
        c.transaction(|tx| {
            let Some((nid, _)) = lock_notification_of(tx, id)? else { return Ok(()) };
            tx.execute(
                "UPDATE outbox_deliveries SET state = 'sent', receipt = ?2, finished_at_ms = ?3 WHERE id = ?1",
                &params![id, receipt, now],
            )?;
            log_attempt(tx, id, now, true, receipt)?;
            finalize(tx, nid, now)
        })
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
    Ok(db.with_conn(|c| {
        c.transaction(|tx| {
            let Some((nid, mut next)) = lock_notification_of(tx, id)? else { return Ok(None) };
            log_attempt(tx, id, now, false, error)?;
            tx.execute("UPDATE outbox_deliveries SET parts_done = ?2 WHERE id = ?1", &params![id, parts_done])?;
            let mut queued = None;
            if let Some(at) = retry_at {
                tx.execute(
                    "UPDATE outbox_deliveries SET state = 'pending', next_attempt_ms = ?2, last_error = ?3 WHERE id = ?1",
                    &params![id, at, error],
                )?;
            } else {
                tx.execute(
                    "UPDATE outbox_deliveries SET state = 'dead', last_error = ?2, finished_at_ms = ?3 WHERE id = ?1",
                    &params![id, error, now],
                )?;
                while let Some((name, kind)) = fallback(usize::try_from(next).unwrap_or(usize::MAX)) {
                    next += 1;
                    let added = tx.execute(
                        "INSERT INTO outbox_deliveries (notification_id, channel, kind, role, state, next_attempt_ms,
                             created_at_ms)
                         VALUES (?1, ?2, ?3, 'fallback', 'pending', ?4, ?4)
                         ON CONFLICT (notification_id, channel) DO NOTHING",
                        &params![nid, name, kind, now],
                    )?;
                    if added > 0 {
                        queued = Some(name);
                        break;
                    }
                }
                tx.execute("UPDATE outbox_notifications SET next_fallback = ?2 WHERE id = ?1", &params![nid, next])?;
                finalize(tx, nid, now)?;
            }
            Ok::<_, DbError>(queued)
        })
    })?)
}

/// Puts a dead delivery back in the queue with fresh attempts; false if it is not dead.
pub(crate) fn retry_dead(db: &Db, id: i64, now: i64) -> Result<bool, OutboxError> {
    Ok(db.with_conn(|c| {
        c.transaction(|tx| {
            // Same lock order as recording an outcome (notification, then delivery).
            let Some((nid, _)) = lock_notification_of(tx, id)? else { return Ok(false) };
            let n = tx.execute(
                "UPDATE outbox_deliveries SET state = 'pending', attempts = 0, next_attempt_ms = ?2,
                     finished_at_ms = NULL
                 WHERE id = ?1 AND state = 'dead'",
                &params![id, now],
            )?;
            if n > 0 {
                tx.execute(
                    "UPDATE outbox_notifications SET state = 'pending', finished_at_ms = NULL WHERE id = ?1",
                    &[nid],
                )?;
            }
            Ok::<_, DbError>(n > 0)
        })
    })?)
}

const RECORD_SELECT: &str = "SELECT d.id, n.id, n.idempotency_key, n.receiver, n.group_key, n.status,
        n.escalation_level, n.alert_count, n.labels_json, d.channel, d.kind, d.role, d.state, d.attempts,
        d.created_at_ms, d.finished_at_ms, d.last_error, d.receipt, n.created_at_ms
    FROM outbox_deliveries d JOIN outbox_notifications n ON n.id = d.notification_id";

fn record(r: &Row<'_>) -> Result<DeliveryRecord, DbError> {
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
    Ok(db.with_conn(|c| {
        c.query_map(
            &format!(
                "{RECORD_SELECT} WHERE d.created_at_ms >= ?1 AND d.created_at_ms < ?2
                 AND (?3 IS NULL OR d.state = ?3) ORDER BY d.id LIMIT ?4"
            ),
            &params![from_ms, to_ms, state.map(|s| s.as_str()), i64::try_from(limit).unwrap_or(i64::MAX)],
            record,
        )
    })?)
}

/// Notifications of channel-less receivers created in [from_ms, to_ms): they have no delivery
/// rows, so `records` cannot list them. As JSON objects shaped like the notification list's.
pub(crate) fn recorded_only(
    db: &Db,
    from_ms: i64,
    to_ms: i64,
    limit: usize,
) -> Result<Vec<(i64, serde_json::Value)>, OutboxError> {
    Ok(db.with_conn(|c| {
        c.query_map(
            "SELECT id, idempotency_key, receiver, group_key, status, escalation_level, alert_count, labels_json,
                    created_at_ms
             FROM outbox_notifications
             WHERE state = 'recorded' AND created_at_ms >= ?1 AND created_at_ms < ?2 ORDER BY id LIMIT ?3",
            &[from_ms, to_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                let labels: String = r.get(7)?;
                let labels: serde_json::Value = serde_json::from_str(&labels).unwrap_or_default();
                let id: i64 = r.get(0)?;
                Ok((
                    id,
                    serde_json::json!({
                        "id": id,
                        "idempotency_key": r.get::<String>(1)?,
                        "receiver": r.get::<String>(2)?,
                        "group_key": r.get::<String>(3)?,
                        "status": r.get::<String>(4)?,
                        "escalation_level": r.get::<i64>(5)?,
                        "alert_count": r.get::<i64>(6)?,
                        "labels": labels,
                        "created_at_ms": r.get::<i64>(8)?,
                        "state": "recorded",
                        "deliveries": [],
                    }),
                ))
            },
        )
    })?)
}

/// Deliveries of one notification.
pub(crate) fn records_of(db: &Db, notification_id: i64) -> Result<Vec<DeliveryRecord>, OutboxError> {
    Ok(db.with_conn(|c| {
        c.query_map(&format!("{RECORD_SELECT} WHERE n.id = ?1 ORDER BY d.id"), &[notification_id], record)
    })?)
}

/// One notification's stored payload and state.
pub(crate) fn notification(db: &Db, id: i64) -> Result<Option<(String, String)>, OutboxError> {
    Ok(db.with_conn(|c| {
        c.query_opt("SELECT state, payload_json FROM outbox_notifications WHERE id = ?1", &[id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    })?)
}

/// The attempt log of one delivery: (attempt, at_ms, ok, detail).
pub(crate) fn attempts(db: &Db, delivery_id: i64) -> Result<Vec<(u32, i64, bool, String)>, OutboxError> {
    Ok(db.with_conn(|c| {
        c.query_map(
            "SELECT attempt, at_ms, ok, detail FROM outbox_attempts WHERE delivery_id = ?1 ORDER BY id",
            &[delivery_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get::<i64>(2)? != 0, r.get(3)?)),
        )
    })?)
}

#[cfg(test)]
mod tests {
    //! The store's concurrency contract, on whichever engine the run selects (PostgreSQL with
    //! `TINGZHEN_TEST_DATABASE_URL`): several senders claiming and finishing at once.

    use super::*;
    use crate::model::NotificationStatus;
    use std::collections::HashSet;
    use std::sync::Arc;
    use tingzhen_core::db::testing::{TEST_DATABASE_URL, fresh_db};

    fn note(key: &str) -> Notification {
        Notification {
            idempotency_key: key.into(),
            receiver: "ops".into(),
            group_key: "{}:{alertname=\"DiskFull\"}".into(),
            group_labels: LabelMap::new(),
            status: NotificationStatus::Firing,
            alerts: Vec::new(),
            created_at_ms: 0,
            escalation_level: 0,
        }
    }

    fn open() -> Arc<Db> {
        let db = Arc::new(fresh_db());
        let expected = if std::env::var(TEST_DATABASE_URL).is_ok() { Dialect::Postgres } else { Dialect::Sqlite };
        assert_eq!(db.dialect(), expected, "the run tests the engine it says it does");
        db.migrate_component(COMPONENT, MIGRATIONS).unwrap();
        db
    }

    const CHANNELS: [&str; 2] = ["email", "sms"];

    fn channels() -> Vec<(String, &'static str)> {
        CHANNELS.iter().map(|c| (c.to_string(), *c)).collect()
    }

    #[test]
    fn concurrent_senders_never_share_a_delivery_and_every_notification_finishes() {
        const NOTES: usize = 60;
        let db = open();
        for i in 0..NOTES {
            assert!(insert(&db, &note(&format!("k{i}")), &channels(), 1_000).unwrap());
        }
        // Four senders claim small batches until the queue is empty. Each finishes what it
        // claimed at once: the email channel succeeds, the SMS channel dies (no fallback), so
        // the two deliveries of one notification often finish in different threads at the same
        // time, and the notification must still end as delivered.
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let batch = claim_due(&db, 2_000, 3).unwrap();
                        if batch.is_empty() {
                            break;
                        }
                        for c in batch {
                            if c.channel == "email" {
                                record_success(&db, c.delivery_id, "250 ok", 3_000).unwrap();
                            } else {
                                record_failure(&db, c.delivery_id, 0, "rejected", None, 3_000, &|_| None).unwrap();
                            }
                            mine.push(c.delivery_id);
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for s in senders {
            all.extend(s.join().unwrap());
        }
        let distinct: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "a delivery was handed to two senders");
        assert_eq!(all.len(), NOTES * CHANNELS.len(), "every delivery was claimed");
        let recs = records(&db, 0, i64::MAX, None, usize::MAX >> 1).unwrap();
        assert!(recs.iter().all(|r| r.attempts == 1), "each delivery was attempted once");
        let states: Vec<String> = db
            .with_conn(|c| c.query_map("SELECT state FROM outbox_notifications ORDER BY id", &(), |r| r.get(0)))
            .unwrap();
        assert_eq!(states.len(), NOTES);
        assert!(states.iter().all(|s| s == "delivered"), "{states:?}");
        assert_eq!(next_due_ms(&db).unwrap(), None);
    }

    #[test]
    fn concurrent_enqueues_of_one_key_store_it_once() {
        let db = open();
        let inserted: Vec<bool> = (0..6)
            .map(|_| {
                let db = db.clone();
                std::thread::spawn(move || insert(&db, &note("same"), &channels(), 1_000).unwrap())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(inserted.iter().filter(|i| **i).count(), 1, "{inserted:?}");
        let recs = records(&db, 0, i64::MAX, None, 100).unwrap();
        assert_eq!(recs.len(), CHANNELS.len(), "one set of deliveries");
    }

    #[test]
    fn a_dead_channel_queues_each_fallback_once() {
        let db = open();
        assert!(insert(&db, &note("f"), &channels(), 1_000).unwrap());
        let claimed = claim_due(&db, 1_000, 10).unwrap();
        assert_eq!(claimed.len(), 2);
        let chain = |i: usize| [("phone".to_string(), "sms_http"), ("webhook".to_string(), "webhook")].get(i).cloned();
        // Both primaries die at once; each queues the next unused step, never the same one.
        let queued: Vec<Option<String>> = claimed
            .into_iter()
            .map(|c| {
                let db = db.clone();
                std::thread::spawn(move || record_failure(&db, c.delivery_id, 0, "down", None, 2_000, &chain).unwrap())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let mut queued: Vec<String> = queued.into_iter().flatten().collect();
        queued.sort();
        assert_eq!(queued, ["phone", "webhook"]);
        let open_state: Option<String> =
            db.with_conn(|c| c.query_opt("SELECT state FROM outbox_notifications", &(), |r| r.get(0))).unwrap();
        assert_eq!(open_state.as_deref(), Some("pending"), "fallbacks are still to be tried");
    }
}
