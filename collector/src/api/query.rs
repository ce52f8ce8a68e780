//! The Prometheus HTTP query API (`/api/v1/query`, `query_range`, `series`, `labels`,
//! `label/{name}/values`), answering in Prometheus's JSON shapes so Grafana and promtool work
//! unchanged. Evaluation runs on blocking threads behind a concurrency limit and a timeout.

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::params::{MAX_TIME_MS, MIN_TIME_MS, Params, now_ms};
use crate::promql::parse_selector;
use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tingzhen_core::Matcher;
use tingzhen_core::labels::is_valid_label_name;

fn success(data: Value) -> Json<Value> {
    Json(json!({ "status": "success", "data": data }))
}

/// A query answer as a ready JSON body, written on the query's blocking thread (see
/// `promql::json` for why it skips the value tree).
fn query_success(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Runs `work` on a blocking thread once a query slot is free, bounded by the query timeout.
async fn run_query<T, F>(state: &AppState, work: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> ApiResult<T> + Send + 'static,
{
    let wait = tokio::time::timeout(state.query_timeout, state.query_slots.clone().acquire_owned()).await;
    let permit = match wait {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => return Err(ApiError::Unavailable("query engine is shutting down".into())),
        Err(_) => return Err(ApiError::Timeout("query timed out waiting for a free query slot".into())),
    };
    state.telemetry.query();
    let handle = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    });
    handle.await.map_err(|e| ApiError::Internal(format!("query task failed: {e}")))?
}

fn matcher_sets(params: &Params) -> ApiResult<Vec<Vec<Matcher>>> {
    params
        .all("match[]")
        .into_iter()
        .map(|m| parse_selector(m).map_err(|e| ApiError::BadData(format!("invalid parameter \"match[]\": {e}"))))
        .collect()
}

pub async fn instant(State(state): State<AppState>, Form(params): Form<Vec<(String, String)>>) -> ApiResult<Response> {
    let params = Params(params);
    let query = params.required("query")?.to_string();
    let time = params.time_or("time", now_ms())?;
    let engine = state.engine.clone();
    let store = state.queryable();
    let result = run_query(&state, move || {
        engine
            .instant(store.as_ref(), &query, time)
            .map(|r| r.to_success_body())
            .map_err(|e| ApiError::from_query_error(&e))
    })
    .await?;
    Ok(query_success(result))
}

pub async fn range(State(state): State<AppState>, Form(params): Form<Vec<(String, String)>>) -> ApiResult<Response> {
    let params = Params(params);
    let query = params.required("query")?.to_string();
    let start = params.time_or("start", i64::MIN).and_then(|t| {
        if t == i64::MIN { Err(ApiError::BadData("missing parameter \"start\"".into())) } else { Ok(t) }
    })?;
    let end = params
        .time_or("end", i64::MIN)
        .and_then(|t| if t == i64::MIN { Err(ApiError::BadData("missing parameter \"end\"".into())) } else { Ok(t) })?;
    if end < start {
        return Err(ApiError::BadData("invalid parameter \"end\": end timestamp must not be before start time".into()));
    }
    let step = params.duration_ms("step")?.ok_or_else(|| ApiError::BadData("missing parameter \"step\"".into()))?;
    if step <= 0 {
        return Err(ApiError::BadData(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    let engine = state.engine.clone();
    let store = state.queryable();
    let result = run_query(&state, move || {
        engine
            .range(store.as_ref(), &query, start, end, step)
            .map(|r| r.to_success_body())
            .map_err(|e| ApiError::from_query_error(&e))
    })
    .await?;
    Ok(query_success(result))
}

pub async fn series(
    State(state): State<AppState>,
    Form(params): Form<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let params = Params(params);
    let sets = matcher_sets(&params)?;
    if sets.is_empty() {
        return Err(ApiError::BadData("no match[] parameter provided".into()));
    }
    let start = params.time_or("start", MIN_TIME_MS)?;
    let end = params.time_or("end", MAX_TIME_MS)?;
    let store = state.queryable();
    let series =
        run_query(&state, move || store.series(&sets, start, end).map_err(|e| ApiError::Internal(e.to_string())))
            .await?;
    let data: Vec<Value> = series
        .iter()
        .map(|labels| Value::Object(labels.iter().map(|l| (l.name.clone(), Value::String(l.value.clone()))).collect()))
        .collect();
    Ok(success(Value::Array(data)))
}

pub async fn labels(
    State(state): State<AppState>,
    Form(params): Form<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let params = Params(params);
    let sets = matcher_sets(&params)?;
    let start = params.time_or("start", MIN_TIME_MS)?;
    let end = params.time_or("end", MAX_TIME_MS)?;
    let store = state.queryable();
    let names =
        run_query(&state, move || store.label_names(&sets, start, end).map_err(|e| ApiError::Internal(e.to_string())))
            .await?;
    Ok(success(json!(names)))
}

pub async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Form(params): Form<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    if !is_valid_label_name(&name) {
        return Err(ApiError::BadData(format!("invalid label name: {name:?}")));
    }
    let params = Params(params);
    let sets = matcher_sets(&params)?;
    let start = params.time_or("start", MIN_TIME_MS)?;
    let end = params.time_or("end", MAX_TIME_MS)?;
    let store = state.queryable();
    let values = run_query(&state, move || {
        store.label_values(&name, &sets, start, end).map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    Ok(success(json!(values)))
}
