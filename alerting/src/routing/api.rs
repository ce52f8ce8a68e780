//! The routing HTTP API (mounted under `/api/v1/alerting`, authentication added by the
//! caller): silences (incl. recurring) CRUD, acknowledgements, active groups, calendar view
//! and edits, time windows. Bodies answer in Prometheus's `{"status":…,"data":…}` shape;
//! errors name the field at fault.

use super::RoutingError;
use super::dispatcher::{AckTarget, Dispatcher};
use super::silence::SilenceSpec;
use crate::calendar::DayKind;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

type Shared = Arc<Dispatcher>;

struct ApiError(RoutingError);

impl From<RoutingError> for ApiError {
    fn from(e: RoutingError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, msg) = match &self.0 {
            RoutingError::Invalid { .. } | RoutingError::Config { .. } => {
                (StatusCode::BAD_REQUEST, "bad_data", self.0.to_string())
            }
            RoutingError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", self.0.to_string()),
            other => {
                tracing::error!(error = %other, "routing API failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log".to_string())
            }
        };
        (status, Json(json!({"status": "error", "errorType": kind, "error": msg}))).into_response()
    }
}

fn ok(data: Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError(RoutingError::invalid(field, message))
}

/// Parses a JSON body ourselves so a malformed one gets our error shape, naming the problem.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| bad("body", e.to_string()))
}

/// The routes, relative to `/api/v1/alerting`.
pub fn api_router(dispatcher: Arc<Dispatcher>) -> Router {
    Router::new()
        .route("/silences", get(list_silences).post(create_silence))
        .route("/silences/{id}", get(get_silence).put(update_silence).delete(expire_silence))
        .route("/acks", get(list_acks).post(ack))
        .route("/groups", get(groups))
        .route("/calendar", get(calendar_year))
        .route("/calendar/{date}", get(calendar_day).put(set_calendar_day).delete(clear_calendar_day))
        .route("/time-windows", get(time_windows))
        .route("/routing/receivers", get(receivers))
        .with_state(dispatcher)
}

fn silence_json(s: &super::Silence, status: super::SilenceStatus) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("status".into(), json!(status));
    }
    v
}

async fn list_silences(State(d): State<Shared>) -> Response {
    let now = d.now_ms();
    ok(Value::Array(d.silences(now).iter().map(|(s, st)| silence_json(s, *st)).collect()))
}

async fn create_silence(State(d): State<Shared>, bytes: axum::body::Bytes) -> Result<Response, ApiError> {
    let spec: SilenceSpec = body(&bytes)?;
    let now = d.now_ms();
    let s = d.create_silence(&spec, now)?;
    let (s, st) = d.silence(&s.id, now)?;
    d.changed().notify_one();
    Ok((StatusCode::CREATED, Json(json!({"status": "success", "data": silence_json(&s, st)}))).into_response())
}

async fn get_silence(State(d): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (s, st) = d.silence(&id, d.now_ms())?;
    Ok(ok(silence_json(&s, st)))
}

async fn update_silence(
    State(d): State<Shared>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let spec: SilenceSpec = body(&bytes)?;
    let now = d.now_ms();
    d.update_silence(&id, &spec, now)?;
    let (s, st) = d.silence(&id, now)?;
    d.changed().notify_one();
    Ok(ok(silence_json(&s, st)))
}

async fn expire_silence(State(d): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let now = d.now_ms();
    d.expire_silence(&id, now)?;
    let (s, st) = d.silence(&id, now)?;
    d.changed().notify_one();
    Ok(ok(silence_json(&s, st)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    #[serde(default)]
    group_key: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
    by: String,
    #[serde(default)]
    comment: String,
}

async fn ack(State(d): State<Shared>, bytes: axum::body::Bytes) -> Result<Response, ApiError> {
    let b: AckBody = body(&bytes)?;
    let target = match (b.group_key, b.fingerprint) {
        (Some(g), None) => AckTarget::Group(g),
        (None, Some(f)) => AckTarget::Alert(f),
        _ => return Err(bad("group_key", "give exactly one of group_key or fingerprint")),
    };
    let records = d.ack(&target, &b.by, &b.comment, d.now_ms())?;
    d.changed().notify_one();
    Ok(ok(json!(records)))
}

#[derive(Deserialize)]
struct Range {
    from: Option<String>,
    to: Option<String>,
}

/// Accepts Unix milliseconds or RFC 3339.
fn parse_time(field: &str, s: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| bad(field, format!("{s:?} is neither Unix milliseconds nor RFC 3339")))
}

async fn list_acks(State(d): State<Shared>, Query(r): Query<Range>) -> Result<Response, ApiError> {
    let to = r.to.as_deref().map(|s| parse_time("to", s)).transpose()?.unwrap_or(i64::MAX);
    let from = r.from.as_deref().map(|s| parse_time("from", s)).transpose()?.unwrap_or(0);
    Ok(ok(json!(d.acks_between(from, to)?)))
}

async fn groups(State(d): State<Shared>) -> Response {
    ok(json!(d.groups(d.now_ms())))
}

#[derive(Deserialize)]
struct YearQuery {
    year: Option<i32>,
}

async fn calendar_year(State(d): State<Shared>, Query(q): Query<YearQuery>) -> Result<Response, ApiError> {
    let year = match q.year {
        Some(y) if (1970..=9999).contains(&y) => y,
        Some(y) => return Err(bad("year", format!("{y} is out of range"))),
        None => crate::calendar::local_date(d.now_ms()).format("%Y").to_string().parse().unwrap_or(1970),
    };
    Ok(ok(json!({"year": year, "days": d.calendar_year(year)})))
}

async fn calendar_day(State(d): State<Shared>, Path(date): Path<String>) -> Result<Response, ApiError> {
    Ok(ok(json!(d.calendar_day(&date)?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DayBody {
    kind: DayKind,
    #[serde(default)]
    name: String,
    by: String,
}

async fn set_calendar_day(
    State(d): State<Shared>,
    Path(date): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: DayBody = body(&bytes)?;
    let day = d.set_calendar_day(&date, b.kind, &b.name, &b.by, d.now_ms())?;
    d.changed().notify_one();
    Ok(ok(json!(day)))
}

async fn clear_calendar_day(State(d): State<Shared>, Path(date): Path<String>) -> Result<Response, ApiError> {
    let day = d.clear_calendar_day(&date)?;
    d.changed().notify_one();
    Ok(ok(json!(day)))
}

async fn time_windows(State(d): State<Shared>) -> Response {
    let now = d.now_ms();
    let list: Vec<Value> = d
        .time_windows(now)
        .into_iter()
        .map(|(cfg, open, next)| json!({"window": cfg, "open": open, "next_change_ms": next}))
        .collect();
    ok(Value::Array(list))
}

async fn receivers(State(d): State<Shared>) -> Response {
    ok(json!(d.receivers_referenced()))
}
