//! Prometheus's own rules and alerts endpoints (`GET /api/v1/rules`, `GET /api/v1/alerts`) in
//! Prometheus's JSON shapes, so Grafana's alert list and rule views work against tingzhen as
//! they do against Prometheus.

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::ok_json;
use crate::model::AlertState;
use crate::rules::RuleSource;
use crate::rules::template::format_float;
use crate::state::machine::ActiveAlert;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, SecondsFormat};
use serde_json::{Value, json};
use std::collections::HashMap;

fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)).unwrap_or_default()
}

fn alert_json(a: &ActiveAlert) -> Value {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state,
        "activeAt": rfc3339(a.active_at_ms),
        "value": format_float(a.value),
    })
}

/// Resolved alerts are on their way out of the state; Prometheus does not list them.
fn listed(a: &ActiveAlert) -> bool {
    matches!(a.state, AlertState::Pending | AlertState::Firing)
}

pub async fn rules(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    match params.get("type").map(String::as_str) {
        None | Some("") | Some("alert") => {}
        // tingzhen has no recording rules: the answer is an empty list, as Prometheus gives.
        Some("record") => return Ok(ok_json(json!({ "groups": [] }))),
        Some(other) => {
            return Err(ApiError::BadData(format!("invalid parameter \"type\": {other:?}; use alert or record")));
        }
    }
    let active = state.state().active();
    let groups: Vec<Value> = state
        .groups()
        .iter()
        .map(|g| {
            let mut group_eval = 0.0;
            let mut group_last = 0;
            let rules: Vec<Value> = g
                .rules
                .iter()
                .map(|r| {
                    let alerts: Vec<&ActiveAlert> =
                        active.iter().filter(|a| a.rule_key == r.key && listed(a)).collect();
                    let rule_state = if alerts.iter().any(|a| a.state == AlertState::Firing) {
                        "firing"
                    } else if alerts.is_empty() {
                        "inactive"
                    } else {
                        "pending"
                    };
                    let health = state.evaluator().health(&r.key);
                    let (h, err, secs, last) = match &health {
                        Some(h) => (
                            h.health,
                            h.last_error.clone().unwrap_or_default(),
                            h.evaluation_seconds,
                            h.last_evaluation_ms,
                        ),
                        None => ("unknown", String::new(), 0.0, 0),
                    };
                    group_eval += secs;
                    group_last = group_last.max(last);
                    json!({
                        "type": "alerting",
                        "name": r.name,
                        "query": r.expr,
                        "duration": r.for_.as_secs_f64(),
                        "keepFiringFor": r.keep_firing_for.as_secs_f64(),
                        "labels": r.labels,
                        "annotations": r.annotations,
                        "alerts": alerts.iter().map(|a| alert_json(a)).collect::<Vec<_>>(),
                        "health": h,
                        "lastError": err,
                        "evaluationTime": secs,
                        "lastEvaluation": if last > 0 { rfc3339(last) } else { "0001-01-01T00:00:00Z".into() },
                        "state": rule_state,
                    })
                })
                .collect();
            json!({
                "name": g.name,
                "file": match &g.source { RuleSource::File(p) => p.as_str(), RuleSource::Api => "api" },
                "interval": g.interval.as_secs_f64(),
                "limit": g.limit,
                "rules": rules,
                "evaluationTime": group_eval,
                "lastEvaluation": if group_last > 0 { rfc3339(group_last) } else { "0001-01-01T00:00:00Z".into() },
            })
        })
        .collect();
    Ok(ok_json(json!({ "groups": groups })))
}

pub async fn alerts(State(state): State<AppState>) -> Response {
    let alerts: Vec<Value> = state.state().active().iter().filter(|a| listed(a)).map(alert_json).collect();
    ok_json(json!({ "alerts": alerts }))
}
