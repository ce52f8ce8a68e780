//! Alerts as they stand (`/api/v1/alerting/alerts`), their history, summaries, and the
//! Alertmanager-compatible intake (`POST /api/v2/alerts`).

use super::error::{ApiError, ApiResult};
use super::{AppState, blocking, ok_json};
use crate::model::AlertState;
use crate::summary::Dimension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::DateTime;
use serde_json::{Value, json};
use std::collections::HashMap;

/// A time parameter: Unix seconds (fractions allowed, as Prometheus) or RFC 3339.
fn time_param(params: &HashMap<String, String>, name: &str) -> ApiResult<Option<i64>> {
    let Some(v) = params.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) else { return Ok(None) };
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
    {
        return Ok(Some((secs * 1000.0).round() as i64));
    }
    DateTime::parse_from_rfc3339(v).map(|d| Some(d.timestamp_millis())).map_err(|_| {
        ApiError::BadData(format!("invalid parameter {name:?}: {v:?} is neither Unix seconds nor RFC 3339"))
    })
}

fn range(params: &HashMap<String, String>) -> ApiResult<(Option<i64>, Option<i64>)> {
    let from = time_param(params, "from")?;
    let to = time_param(params, "to")?;
    if let (Some(f), Some(t)) = (from, to)
        && t < f
    {
        return Err(ApiError::BadData("invalid parameter \"to\": before \"from\"".into()));
    }
    Ok((from, to))
}

pub async fn list(State(state): State<AppState>, Query(params): Query<HashMap<String, String>>) -> ApiResult<Response> {
    let wanted = match params.get("state").map(String::as_str) {
        None | Some("") => None,
        Some("pending") => Some(AlertState::Pending),
        Some("firing") => Some(AlertState::Firing),
        Some("resolved") => Some(AlertState::Resolved),
        Some(other) => {
            return Err(ApiError::BadData(format!(
                "invalid parameter \"state\": {other:?}; use pending, firing or resolved"
            )));
        }
    };
    let alerts: Vec<Value> = state
        .state()
        .active()
        .into_iter()
        .filter(|a| wanted.is_none_or(|w| a.state == w))
        .map(|a| {
            json!({
                "fingerprint": a.fingerprint(),
                "rule": a.rule_key,
                "labels": a.labels,
                "annotations": a.annotations,
                "state": a.state,
                "active_at_ms": a.active_at_ms,
                "fired_at_ms": a.fired_at_ms,
                "resolved_at_ms": a.resolved_at_ms,
                "value": crate::rules::template::format_float(a.value),
                "source": a.source,
            })
        })
        .collect();
    Ok(ok_json(json!({ "alerts": alerts })))
}

pub async fn history(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let (from, to) = range(&params)?;
    let st = state.clone();
    let rows = blocking(move || {
        let now = st.now_ms();
        st.history(from.unwrap_or(now - 86_400_000), to.unwrap_or(now.saturating_add(1)))
    })
    .await??;
    Ok(ok_json(json!({ "history": rows })))
}

pub async fn summary(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let (from, to) = range(&params)?;
    let dims = Dimension::parse_list(params.get("by").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::BadData(format!("invalid parameter \"by\": {e}")))?;
    let st = state.clone();
    let view = blocking(move || st.summary(from, to, &dims)).await??;
    Ok(ok_json(serde_json::to_value(view).map_err(|e| ApiError::internal("summary encoding failed", e))?))
}

/// Alertmanager answers an accepted post with 200 and an empty body; clients only check the
/// status, so this answers 200 with the usual success envelope.
pub async fn intake(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let now = state.now_ms();
    let timeout = state.config().intake.resolve_timeout.0.as_millis() as i64;
    let alerts = crate::intake::parse(&body, now, timeout).map_err(|e| ApiError::BadData(e.to_string()))?;
    let st = state.clone();
    let n =
        blocking(move || st.intake(alerts)).await?.map_err(|e| ApiError::internal("cannot store intake alerts", e))?;
    Ok(ok_json(json!({ "accepted": n })))
}
