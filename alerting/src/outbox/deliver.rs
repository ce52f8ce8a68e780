//! The delivery loop: claim due deliveries, send each on the blocking pool (bounded by
//! `retry.concurrency`), record the receipt or the failure (retry with backoff, or dead and
//! the next fallback queued), and sleep until the next due retry or the next enqueue.

use super::store::{self, Claimed};
use super::{Outbox, dedup_id, now_ms};
use crate::model::Notification;
use crate::notify::{Message, NotifyError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Without anything due, the loop still looks every so often (cheap, and it heals a missed
/// wake-up from a retried dead letter written by another process).
const IDLE: Duration = Duration::from_secs(60);
/// After a store error, wait before trying again rather than spinning.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

impl Outbox {
    /// Delivers until `shutdown` turns true (or its sender is dropped), then lets the sends in
    /// flight finish and record their outcome.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.retry.concurrency));
        let mut tasks = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            let free = slots.available_permits();
            let mut wait = IDLE;
            if free > 0 {
                match store::claim_due(&self.db, now_ms(), free) {
                    Ok(rows) => {
                        let full = rows.len() == free;
                        for row in rows {
                            let Ok(permit) = slots.clone().acquire_owned().await else { break };
                            let me = self.clone();
                            tasks.spawn(async move {
                                me.attempt(row).await;
                                drop(permit);
                                me.wake.notify_one();
                            });
                        }
                        if full {
                            // Maybe more are due; the next pass claims them as slots free up.
                            wait = Duration::ZERO;
                        } else {
                            match store::next_due_ms(&self.db) {
                                Ok(Some(t)) => {
                                    wait =
                                        Duration::from_millis((t - now_ms()).clamp(0, IDLE.as_millis() as i64) as u64)
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::error!(error = %e, "outbox: reading the queue");
                                    wait = ERROR_PAUSE;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "outbox: claiming due deliveries");
                        wait = ERROR_PAUSE;
                    }
                }
            }
            // With every slot busy, only a finishing send (which wakes us) can make progress.
            let sleep_for = if free == 0 { IDLE } else { wait };
            if sleep_for.is_zero() && free > 0 {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep_for) => {}
                r = shutdown.changed() => {
                    if r.is_err() {
                        break;
                    }
                }
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn attempt(self: &Arc<Self>, row: Claimed) {
        let receiver = self.receivers.get(&row.receiver);
        let parts = Arc::new(AtomicU32::new(row.parts_done));
        let channel = receiver.and_then(|r| r.channel(&row.channel)).cloned();
        let result = match (receiver, channel) {
            (Some(r), Some(ch)) => match serde_json::from_str::<Notification>(&row.payload_json) {
                Ok(n) => {
                    let templates = self.templates.clone();
                    let language = r.language;
                    let dedup = dedup_id(&row.idempotency_key, &row.receiver, &row.channel);
                    let progress = parts.clone();
                    tokio::task::spawn_blocking(move || {
                        ch.notifier.send(&Message {
                            notification: &n,
                            language,
                            templates: &templates,
                            dedup_id: &dedup,
                            parts_done: &progress,
                        })
                    })
                    .await
                    .unwrap_or_else(|e| Err(NotifyError::Transient(format!("notifier failed: {e}"))))
                }
                Err(e) => Err(NotifyError::Permanent(format!("stored notification unreadable: {e}"))),
            },
            _ => Err(NotifyError::Permanent(format!(
                "channel {:?} of receiver {:?} is no longer configured",
                row.channel, row.receiver
            ))),
        };
        let now = now_ms();
        let outcome = match &result {
            Ok(receipt) => {
                tracing::info!(receiver = %row.receiver, channel = %row.channel, attempt = row.attempts, "notification sent");
                store::record_success(&self.db, row.delivery_id, &receipt.0, now).map(|_| ())
            }
            Err(e) => {
                let retry_at = (!e.is_permanent() && row.attempts < self.retry.max_attempts)
                    .then(|| now + self.retry.backoff(row.attempts).as_millis() as i64);
                let fallback = |i: usize| receiver.and_then(|r| r.fallback.get(i)).map(|c| (c.name.clone(), c.kind));
                let done = parts.load(Ordering::SeqCst);
                match store::record_failure(&self.db, row.delivery_id, done, &e.to_string(), retry_at, now, &fallback) {
                    Ok(queued) => {
                        if retry_at.is_some() {
                            tracing::warn!(receiver = %row.receiver, channel = %row.channel, attempt = row.attempts,
                                error = %e, "notification attempt failed; will retry");
                        } else {
                            tracing::error!(receiver = %row.receiver, channel = %row.channel, attempt = row.attempts,
                                error = %e, fallback = ?queued, "notification dead-lettered");
                        }
                        Ok(())
                    }
                    Err(err) => Err(err),
                }
            }
        };
        if let Err(e) = outcome {
            // The row stays in flight in the store and is retried at the next start; never lost.
            tracing::error!(error = %e, delivery = row.delivery_id, "outbox: recording an attempt failed");
        }
    }
}
