//! HTTP routes of the flows and interface services, each group behind its scope: ingest
//! (`POST /api/v1/flows/events`, OTLP `POST /v1/traces`, pushed interface volume), query
//! (models, funnel, overdue keys, a key's timeline, the data-flow map, interfaces) and admin
//! (model and interface changes). A batch of events is answered per event: 200 when every
//! event was stored (or already was), 207 with the refused ones' index and reason otherwise.

use super::AppState;
use super::auth::{ScopeGuard, require_scope};
use super::error::{ApiError, ApiResult};
use super::params::{Params, now_ms, parse_time};
use crate::flows::model::FlowModel;
use crate::flows::{FlowError, IngestReport, TimeRange, interfaces::InterfaceDef, otlp};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, middleware};
use prost::Message;
use serde_json::{Value, json};
use tingzhen_core::token::Scope;

pub(super) fn routes(state: &AppState) -> Router<AppState> {
    let guard = |scope| ScopeGuard { auth: state.auth.clone(), scope };
    let ingest = Router::new()
        .route("/api/v1/flows/events", post(events))
        .route("/v1/traces", post(traces))
        .route("/api/v1/interfaces/volume", post(interface_volume))
        .route_layer(middleware::from_fn_with_state(guard(Scope::Ingest), require_scope));
    let query = Router::new()
        .route("/api/v1/flows/models", get(list_models))
        .route("/api/v1/flows/models/{name}", get(get_model))
        .route("/api/v1/flows/overdue", get(overdue))
        .route("/api/v1/flows/map", get(map))
        .route("/api/v1/flows/keys/{key}", get(timeline))
        .route("/api/v1/flows/{flow}/funnel", get(funnel))
        .route("/api/v1/interfaces", get(list_interfaces))
        .route_layer(middleware::from_fn_with_state(guard(Scope::Query), require_scope));
    let admin = Router::new()
        .route("/api/v1/flows/models", post(create_model))
        .route("/api/v1/flows/models/{name}", put(replace_model).delete(delete_model))
        .route("/api/v1/interfaces/{name}", put(put_interface).delete(delete_interface))
        .route_layer(middleware::from_fn_with_state(guard(Scope::Admin), require_scope));
    Router::new().merge(ingest).merge(query).merge(admin)
}

fn flow_error(e: FlowError) -> ApiError {
    match e {
        FlowError::Model(_) | FlowError::Invalid(_) | FlowError::File { .. } => ApiError::BadData(e.to_string()),
        FlowError::NotFound { .. } => ApiError::NotFound(e.to_string()),
        FlowError::Db(_) => ApiError::Internal(e.to_string()),
    }
}

fn read_body(state: &AppState, body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|rej| ApiError::from_body_rejection(&rej, state.max_body_bytes))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, FlowError> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("flows task failed: {e}")))?
        .map_err(flow_error)
}

fn batch_answer(report: IngestReport) -> Response {
    let status = if report.rejected.is_empty() { StatusCode::OK } else { StatusCode::MULTI_STATUS };
    let word = if report.rejected.is_empty() { "success" } else { "partial" };
    (status, Json(json!({ "status": word, "data": report }))).into_response()
}

async fn events(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> ApiResult<Response> {
    let body = read_body(&state, body)?;
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadData(format!("invalid events JSON: {e}")))?;
    let items = match value {
        Value::Array(a) => a,
        obj @ Value::Object(_) => vec![obj],
        _ => return Err(ApiError::BadData("expected a JSON array of events".into())),
    };
    let now = now_ms();
    let batch = items.into_iter().map(|v| crate::flows::event::Event::from_json(v, now)).collect();
    let flows = state.flows.clone();
    Ok(batch_answer(blocking(move || flows.ingest(batch)).await?))
}

/// OTLP/HTTP: protobuf (`application/x-protobuf`) or JSON (`application/json`), uncompressed.
/// The answer mirrors the request's encoding, with `partial_success` naming refused spans.
async fn traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = read_body(&state, body)?;
    if let Some(enc) = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok())
        && !enc.is_empty()
        && enc != "identity"
    {
        return Err(ApiError::BadData(format!(
            "unsupported Content-Encoding {enc:?}; send OTLP uncompressed (the exporter's compression = none)"
        )));
    }
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json_body = ctype.starts_with("application/json");
    if !json_body && !ctype.starts_with("application/x-protobuf") && !ctype.starts_with("application/protobuf") {
        return Err(ApiError::BadData(format!(
            "unsupported Content-Type {ctype:?}; expected application/x-protobuf or application/json"
        )));
    }
    let batch =
        if json_body { otlp::decode_json(&body) } else { otlp::decode_protobuf(&body) }.map_err(ApiError::BadData)?;
    let flows = state.flows.clone();
    let report = blocking(move || flows.ingest(batch)).await?;
    let rejected = report.rejected.len() as i64;
    let message =
        report.rejected.iter().map(|r| format!("span {}: {}", r.index, r.error)).collect::<Vec<_>>().join("; ");
    if json_body {
        let body = if rejected == 0 {
            json!({})
        } else {
            json!({ "partialSuccess": { "rejectedSpans": rejected.to_string(), "errorMessage": message } })
        };
        return Ok(Json(body).into_response());
    }
    let resp = otlp::ExportTraceServiceResponse {
        partial_success: (rejected > 0)
            .then_some(otlp::PartialSuccess { rejected_spans: rejected, error_message: message }),
    };
    Ok(([(header::CONTENT_TYPE, "application/x-protobuf")], resp.encode_to_vec()).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeIn {
    interface: String,
    messages: u64,
    #[serde(default)]
    time: Option<Value>,
}

/// Counts pushed by interface engines: `[{"interface": …, "messages": n, "time": …}]`,
/// `messages` being the number since the previous push.
async fn interface_volume(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> ApiResult<StatusCode> {
    let body = read_body(&state, body)?;
    let items: Vec<VolumeIn> =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadData(format!("invalid volume JSON: {e}")))?;
    let now = now_ms();
    let mut parsed = Vec::with_capacity(items.len());
    for (i, it) in items.into_iter().enumerate() {
        let t = match &it.time {
            None => now,
            Some(v) => crate::flows::event::parse_time(v).map_err(|e| ApiError::BadData(format!("[{i}].{e}")))?,
        };
        parsed.push((it.interface, it.messages, t));
    }
    let flows = state.flows.clone();
    blocking(move || flows.add_interface_messages(&parsed)).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn model_json(m: &FlowModel, version: u32) -> Value {
    json!({ "name": m.name, "version": version, "model": m })
}

async fn list_models(State(state): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = state.flows.models().iter().map(|c| model_json(&c.model, c.version)).collect();
    Json(json!({ "status": "success", "data": models }))
}

/// `?history=true` lists every stored version.
async fn get_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(p): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    if Params(p).get("history").is_some_and(|v| v == "true" || v == "1") {
        let flows = state.flows.clone();
        let n = name.clone();
        let versions = blocking(move || flows.model_history(&n)).await?;
        let data: Vec<Value> = versions
            .into_iter()
            .map(|(m, v, source, created)| {
                json!({"name": m.name, "version": v, "source": source,
                       "created": crate::flows::query_time(created), "model": m})
            })
            .collect();
        return Ok(Json(json!({ "status": "success", "data": data })));
    }
    let c = state.flows.model(&name).ok_or_else(|| ApiError::NotFound(format!("flow model {name:?} not found")))?;
    Ok(Json(json!({ "status": "success", "data": model_json(&c.model, c.version) })))
}

fn parse_model(body: &Bytes, headers: &HeaderMap) -> ApiResult<FlowModel> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ctype.contains("toml") {
        let text = std::str::from_utf8(body).map_err(|_| ApiError::BadData("model TOML is not UTF-8".into()))?;
        toml::from_str(text).map_err(|e| ApiError::BadData(format!("invalid flow model TOML: {e}")))
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::BadData(format!("invalid flow model JSON: {e}")))
    }
}

async fn save_model(state: &AppState, model: FlowModel) -> ApiResult<Response> {
    let flows = state.flows.clone();
    let m = model.clone();
    let (version, created) = blocking(move || flows.put_model(m, "api")).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "status": "success", "data": model_json(&model, version) }))).into_response())
}

/// Creates a model or a new version of it (JSON, or TOML with a `toml` content type).
async fn create_model(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = read_body(&state, body)?;
    let model = parse_model(&body, &headers)?;
    save_model(&state, model).await
}

async fn replace_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = read_body(&state, body)?;
    let model = parse_model(&body, &headers)?;
    if model.name != name {
        return Err(ApiError::BadData(format!("name: {:?} differs from the path's {name:?}", model.name)));
    }
    save_model(&state, model).await
}

async fn delete_model(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let flows = state.flows.clone();
    blocking(move || flows.delete_model(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn range(p: &Params, default_span_ms: i64) -> ApiResult<TimeRange> {
    let time = |name: &str, default: i64| match p.get(name) {
        None | Some("") => Ok(default),
        Some(v) => parse_time(v).map_err(|e| ApiError::BadData(format!("invalid parameter {name:?}: {e}"))),
    };
    let to_ms = time("to", now_ms())?;
    let from_ms = time("from", to_ms - default_span_ms)?;
    if from_ms > to_ms {
        return Err(ApiError::BadData("invalid parameter \"from\": later than \"to\"".into()));
    }
    let opt = |n: &str| p.get(n).filter(|v| !v.is_empty()).map(str::to_string);
    Ok(TimeRange { from_ms, to_ms, campus: opt("campus"), flow: opt("flow") })
}

async fn funnel(
    State(state): State<AppState>,
    Path(flow): Path<String>,
    Query(p): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let r = range(&Params(p), 86_400_000)?;
    let flows = state.flows.clone();
    let data = blocking(move || flows.funnel(&flow, &r)).await?;
    Ok(Json(json!({ "status": "success", "data": data })))
}

async fn overdue(State(state): State<AppState>, Query(p): Query<Vec<(String, String)>>) -> ApiResult<Json<Value>> {
    let p = Params(p);
    let limit = match p.get("limit") {
        None | Some("") => 100,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::BadData(format!("invalid parameter \"limit\": {v:?} is not 1–10000")))?,
    };
    let data = state.flows.overdue(p.get("flow"), p.get("campus"), limit);
    Ok(Json(json!({ "status": "success", "data": data })))
}

async fn timeline(State(state): State<AppState>, Path(key): Path<String>) -> ApiResult<Json<Value>> {
    let flows = state.flows.clone();
    let data = blocking(move || flows.timeline(&key)).await?;
    Ok(Json(json!({ "status": "success", "data": data })))
}

async fn map(State(state): State<AppState>, Query(p): Query<Vec<(String, String)>>) -> ApiResult<Json<Value>> {
    let r = range(&Params(p), 3_600_000)?;
    let flows = state.flows.clone();
    let data = blocking(move || flows.map(&r)).await?;
    Ok(Json(json!({ "status": "success", "data": data })))
}

async fn list_interfaces(
    State(state): State<AppState>,
    Query(p): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let r = range(&Params(p), 3_600_000)?;
    let flows = state.flows.clone();
    let data = blocking(move || flows.interfaces(&r)).await?;
    Ok(Json(json!({ "status": "success", "data": data })))
}

async fn put_interface(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    let body = read_body(&state, body)?;
    let def: InterfaceDef =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadData(format!("invalid interface JSON: {e}")))?;
    if def.name != name {
        return Err(ApiError::BadData(format!("name: {:?} differs from the path's {name:?}", def.name)));
    }
    let flows = state.flows.clone();
    blocking(move || flows.put_interface(def, "api")).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_interface(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let flows = state.flows.clone();
    blocking(move || flows.delete_interface(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}
