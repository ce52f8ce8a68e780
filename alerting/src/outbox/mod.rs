//! The durable outbox: every notification is stored (relational store: SQLite or PostgreSQL)
//! before any send, delivered at least once per channel with retry and exponential backoff,
//! deduplicated by idempotency key and receiver, moved along the receiver's fallback chain
//! when a channel ends dead, and finished as a receipt or a dead letter. The delivery loop
//! wakes on enqueue, so the happy path has no polling delay; timers only drive retries.
//!
//! Crash window: a delivery is marked in flight (and its attempt counted) before the send. If
//! the process dies after the provider accepted the message but before the receipt is stored,
//! the delivery is sent again at the next start. Channels narrow this where they can: email
//! keeps the same Message-ID, WeChat Work app messages use the server's duplicate check,
//! webhooks carry an `Idempotency-Key` header, Tencent SMS a `SessionContext` and Aliyun an
//! `OutId` equal to that id. The robot webhook and the SMS gateways cannot deduplicate, so
//! there a crash in that window can repeat one message. Multi-part sends store how many parts
//! were accepted, so an ordinary retry resumes after them.

mod api;
mod deliver;
mod store;

pub use api::api_router;

use crate::model::{LabelMap, Notification};
use crate::notify::{self, BuildError, NotifyConfig, Receiver, RetryConfig};
use crate::templates::{TemplateError, Templates};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use tingzhen_core::db::{Db, DbError};
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("outbox store: {0}")]
    Db(#[from] DbError),
    #[error("outbox payload: {0}")]
    Json(#[from] serde_json::Error),
    #[error("notification for receiver {0:?}, which is not configured in [alerting.notify]")]
    UnknownReceiver(String),
    #[error("notification has an empty idempotency_key")]
    EmptyKey,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    /// In flight (or in flight when the process stopped; retried at the next start).
    Sending,
    /// A receipt is recorded.
    Sent,
    /// Attempts exhausted or rejected: a dead letter.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "dead" => Self::Dead,
            _ => Self::Pending,
        }
    }
}

/// One delivery (a notification on one channel) as summaries and the API see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRecord {
    pub delivery_id: i64,
    pub notification_id: i64,
    pub idempotency_key: String,
    pub receiver: String,
    pub group_key: String,
    /// `firing` or `resolved`.
    pub status: String,
    pub escalation_level: u32,
    pub alert_count: u32,
    /// Labels every alert of the notification shares (severity, campus, system, alertname …).
    pub labels: LabelMap,
    /// The channel's name within the receiver (`email`, `wecom_robot:infra`, …).
    pub channel: String,
    /// `email`, `wecom_robot`, `wecom_app`, `sms_aliyun`, `sms_tencent`, `sms_http`, `webhook`.
    pub kind: String,
    /// `primary` or `fallback`.
    pub role: String,
    pub outcome: DeliveryState,
    pub attempts: u32,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub receipt: Option<String>,
    pub notification_created_at_ms: i64,
}

pub struct Outbox {
    db: Arc<Db>,
    receivers: HashMap<String, Receiver>,
    templates: Arc<Templates>,
    retry: RetryConfig,
    wake: Notify,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("receivers", &self.receivers.len()).finish_non_exhaustive()
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The stable id of (notification, receiver, channel) that channels use to deduplicate.
pub fn dedup_id(idempotency_key: &str, receiver: &str, channel: &str) -> String {
    let mut h = Sha256::new();
    for part in [idempotency_key, receiver, channel] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

impl Outbox {
    /// Builds the notifiers (resolving secrets, loading CA files), migrates the outbox tables
    /// and puts deliveries that were in flight at the last stop back in the queue.
    pub fn open(cfg: &NotifyConfig, db: Arc<Db>) -> Result<Self, OutboxError> {
        let receivers = notify::build_receivers(cfg)?;
        let templates = Arc::new(Templates::new()?);
        db.migrate_component(store::COMPONENT, store::MIGRATIONS)?;
        let resumed = store::recover_in_flight(&db)?;
        if resumed > 0 {
            tracing::warn!(resumed, "outbox: deliveries in flight at the last stop will be sent again");
        }
        Ok(Self { db, receivers, templates, retry: cfg.retry.clone(), wake: Notify::new() })
    }

    /// Configured receiver names, sorted.
    pub fn receiver_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.receivers.keys().cloned().collect();
        v.sort();
        v
    }

    /// Stores `n` durably (committed before this returns) and wakes the delivery loop. False
    /// when the same idempotency key was already stored for this receiver.
    pub fn enqueue(&self, n: &Notification) -> Result<bool, OutboxError> {
        if n.idempotency_key.is_empty() {
            return Err(OutboxError::EmptyKey);
        }
        let r = self.receivers.get(&n.receiver).ok_or_else(|| OutboxError::UnknownReceiver(n.receiver.clone()))?;
        let channels: Vec<(String, &str)> = r.channels.iter().map(|c| (c.name.clone(), c.kind)).collect();
        let added = store::insert(&self.db, n, &channels, now_ms())?;
        if added {
            self.wake.notify_one();
        }
        Ok(added)
    }

    /// Deliveries created in [from_ms, to_ms), for summaries.
    pub fn deliveries(&self, from_ms: i64, to_ms: i64) -> Result<Vec<DeliveryRecord>, OutboxError> {
        store::records(&self.db, from_ms, to_ms, None, usize::MAX >> 1)
    }

    /// Puts a dead letter back in the queue with fresh attempts; false if `delivery_id` is not
    /// a dead letter.
    pub fn retry_dead_letter(&self, delivery_id: i64) -> Result<bool, OutboxError> {
        let ok = store::retry_dead(&self.db, delivery_id, now_ms())?;
        if ok {
            self.wake.notify_one();
        }
        Ok(ok)
    }
}
