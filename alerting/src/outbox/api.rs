//! The outbox's HTTP API (authentication is added by whoever mounts it): notifications with
//! their deliveries, one notification with its attempt log, receipts, dead letters, and
//! retrying a dead letter.

use super::{DeliveryState, Outbox, OutboxError, now_ms, store};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 10_000;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Milliseconds since the epoch; default 24 hours before `to`.
    from: Option<i64>,
    /// Default now.
    to: Option<i64>,
    limit: Option<usize>,
}

impl ListQuery {
    fn range(&self) -> (i64, i64, usize) {
        let to = self.to.unwrap_or_else(|| now_ms() + 1);
        let from = self.from.unwrap_or(to - DAY_MS);
        (from, to, self.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT))
    }
}

struct ApiError(StatusCode, String);

impl From<OutboxError> for ApiError {
    fn from(e: OutboxError) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"status": "error", "error": self.1}))).into_response()
    }
}

type ApiResult = Result<Json<serde_json::Value>, ApiError>;

/// Routes under `/api/v1/alerting/`:
/// - `GET notifications?from=&to=&limit=` — deliveries grouped by notification;
/// - `GET notifications/{id}` — one notification, its payload, deliveries and attempt log;
/// - `GET receipts?from=&to=&limit=` — sent deliveries with the provider's receipt;
/// - `GET dead-letters?from=&to=&limit=` — dead deliveries with their last error;
/// - `POST dead-letters/{delivery_id}/retry` — queue a dead letter again.
pub fn api_router(outbox: Arc<Outbox>) -> Router {
    Router::new()
        .route("/api/v1/alerting/notifications", get(list_notifications))
        .route("/api/v1/alerting/notifications/{id}", get(one_notification))
        .route("/api/v1/alerting/receipts", get(receipts))
        .route("/api/v1/alerting/dead-letters", get(dead_letters))
        .route("/api/v1/alerting/dead-letters/{id}/retry", post(retry))
        .with_state(outbox)
}

async fn list_notifications(State(o): State<Arc<Outbox>>, Query(q): Query<ListQuery>) -> ApiResult {
    let (from, to, limit) = q.range();
    let records = store::records(&o.db, from, to, None, limit)?;
    // Grouped in order of first appearance (fallback rows come later than their primaries).
    let mut groups: Vec<(i64, Vec<&super::DeliveryRecord>)> = Vec::new();
    let mut index: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    for r in &records {
        let i = *index.entry(r.notification_id).or_insert_with(|| {
            groups.push((r.notification_id, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(r);
    }
    let mut out: Vec<(i64, serde_json::Value)> = groups
        .into_iter()
        .map(|(id, ds)| {
            let first = ds[0];
            (
                id,
                json!({
                    "id": id,
                    "idempotency_key": first.idempotency_key,
                    "receiver": first.receiver,
                    "group_key": first.group_key,
                    "status": first.status,
                    "escalation_level": first.escalation_level,
                    "alert_count": first.alert_count,
                    "labels": first.labels,
                    "created_at_ms": first.notification_created_at_ms,
                    "deliveries": ds,
                }),
            )
        })
        .collect();
    // Channel-less receivers' notifications have no deliveries to be found by; list them too.
    out.extend(store::recorded_only(&o.db, from, to, limit)?);
    out.sort_by_key(|(id, _)| *id);
    out.truncate(limit);
    let out: Vec<serde_json::Value> = out.into_iter().map(|(_, v)| v).collect();
    Ok(Json(json!({"status": "success", "data": out})))
}

async fn one_notification(State(o): State<Arc<Outbox>>, Path(id): Path<i64>) -> ApiResult {
    let Some((state, payload)) = store::notification(&o.db, id)? else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("notification {id} not found")));
    };
    let payload: serde_json::Value = serde_json::from_str(&payload).map_err(OutboxError::from)?;
    let mut deliveries = Vec::new();
    for d in store::records_of(&o.db, id)? {
        let attempts: Vec<_> = store::attempts(&o.db, d.delivery_id)?
            .into_iter()
            .map(|(n, at, ok, detail)| json!({"attempt": n, "at_ms": at, "ok": ok, "detail": detail}))
            .collect();
        let mut v = serde_json::to_value(&d).map_err(OutboxError::from)?;
        v["attempt_log"] = json!(attempts);
        deliveries.push(v);
    }
    Ok(Json(json!({"status": "success", "data": {
        "id": id, "state": state, "notification": payload, "deliveries": deliveries,
    }})))
}

async fn by_state(o: &Outbox, q: &ListQuery, state: DeliveryState) -> ApiResult {
    let (from, to, limit) = q.range();
    let records = store::records(&o.db, from, to, Some(state), limit)?;
    Ok(Json(json!({"status": "success", "data": records})))
}

async fn receipts(State(o): State<Arc<Outbox>>, Query(q): Query<ListQuery>) -> ApiResult {
    by_state(&o, &q, DeliveryState::Sent).await
}

async fn dead_letters(State(o): State<Arc<Outbox>>, Query(q): Query<ListQuery>) -> ApiResult {
    by_state(&o, &q, DeliveryState::Dead).await
}

async fn retry(State(o): State<Arc<Outbox>>, Path(id): Path<i64>) -> ApiResult {
    if o.retry_dead_letter(id)? {
        Ok(Json(json!({"status": "success", "data": {"delivery_id": id, "queued": true}})))
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("delivery {id} is not a dead letter")))
    }
}
