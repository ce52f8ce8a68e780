//! Ingest endpoints: Prometheus remote write 1.0, Influx line protocol (1.x and 2.x paths)
//! and agent heartbeats. Each request is decoded and validated whole before the engine sees
//! it, and the engine appends all-or-nothing, so a refused request stores nothing; a 2xx
//! answer means the samples are in the fsync'd write-ahead log.

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::params::{Params, now_ms};
use crate::backend::Backend;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use std::cell::RefCell;
use std::net::SocketAddr;
use tingzhen_core::inventory::Heartbeat;
use tingzhen_core::line_protocol::{self, Precision};
use tingzhen_core::remote_write::{self, DecodeBuffers};
use tingzhen_core::{SeriesBatch, TimeSeries};

fn body_bytes(state: &AppState, body: Result<Bytes, BytesRejection>, protocol: &'static str) -> ApiResult<Bytes> {
    body.map_err(|rej| {
        let e = ApiError::from_body_rejection(&rej, state.max_body_bytes);
        let reason = if matches!(e, ApiError::TooLarge { .. }) { "too_large" } else { "unreadable" };
        state.telemetry.rejected(protocol, reason);
        e
    })
}

/// Decodes on a blocking thread (snappy and protobuf of a large batch take milliseconds) and
/// writes there too (the write waits for fsync).
async fn decode_and_append<F>(state: &AppState, protocol: &'static str, decode: F) -> ApiResult<StatusCode>
where
    F: FnOnce() -> Result<Vec<TimeSeries>, String> + Send + 'static,
{
    let backend = state.backend.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let series = decode().map_err(ApiError::BadData)?;
        let samples: u64 = series.iter().map(|s| s.samples.len() as u64).sum();
        backend.write(&series).map_err(ApiError::from_write_error)?;
        Ok::<u64, ApiError>(samples)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("ingest task failed: {e}")))?;
    finish(state, protocol, outcome)
}

/// Counts the outcome of one ingest request and turns it into the answer.
fn finish(state: &AppState, protocol: &'static str, outcome: ApiResult<u64>) -> ApiResult<StatusCode> {
    match outcome {
        Ok(samples) => {
            state.telemetry.ingested(protocol, samples);
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            state.telemetry.rejected(protocol, if matches!(e, ApiError::BadData(_)) { "invalid" } else { "error" });
            Err(e)
        }
    }
}

fn reject_unsupported_encoding(headers: &HeaderMap, allowed: &[&str]) -> ApiResult<()> {
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if !enc.is_empty() && !allowed.contains(&enc.as_str()) {
            return Err(ApiError::BadData(format!(
                "unsupported Content-Encoding {enc:?}; expected {}",
                if allowed.is_empty() { "none".to_string() } else { allowed.join(" or ") }
            )));
        }
    }
    Ok(())
}

pub async fn remote_write(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    let body = body_bytes(&state, body, "remote_write")?;
    reject_unsupported_encoding(&headers, &["snappy"])?;
    let backend = state.backend.clone();
    let outcome = tokio::task::spawn_blocking(move || store_remote_write(&backend, &body))
        .await
        .map_err(|e| ApiError::Internal(format!("ingest task failed: {e}")))?;
    finish(&state, "remote_write", outcome)
}

/// Decodes a remote-write body (snappy, then protobuf with labels borrowed from the
/// decompressed buffer) and stores it, all or nothing. Blocking: runs on a blocking thread.
/// `tz-bench ingest --only inproc` runs the same steps in process.
fn store_remote_write(backend: &Backend, body: &[u8]) -> Result<u64, ApiError> {
    thread_local! {
        // Blocking threads outlive requests, so each keeps its decode buffers (bounded by
        // `DecodeBuffers::RETAIN_BYTES`) instead of faulting in fresh memory every time.
        static BUFFERS: RefCell<DecodeBuffers> = RefCell::new(DecodeBuffers::default());
    }
    BUFFERS.with_borrow_mut(|bufs| {
        let batch =
            bufs.decode(body, remote_write::DEFAULT_MAX_DECOMPRESSED).map_err(|e| ApiError::BadData(e.to_string()))?;
        let samples = batch.sample_total() as u64;
        let written = backend.write_batch(&batch).map_err(ApiError::from_write_error);
        let spare = batch.into_buffers();
        bufs.keep(spare);
        written.map(|_| samples)
    })
}

/// Influx line protocol, for both the 1.x `/write` and 2.x `/api/v2/write` paths: the
/// precision parser accepts either version's spellings, and `db`/`org`/`bucket` are ignored
/// (the token decides where data goes).
pub async fn influx(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(params): axum::extract::Query<Vec<(String, String)>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    let params = Params(params);
    let body = body_bytes(&state, body, "influx")?;
    reject_unsupported_encoding(&headers, &["identity"])?;
    let precision =
        Precision::parse(params.get("precision").unwrap_or("ns")).map_err(|e| ApiError::BadData(e.to_string()))?;
    let now = now_ms();
    decode_and_append(&state, "influx", move || line_protocol::parse(&body, precision, now).map_err(|e| e.to_string()))
        .await
}

pub async fn heartbeat(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    let body = body_bytes(&state, body, "heartbeat")?;
    let hb: Heartbeat =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadData(format!("invalid heartbeat JSON: {e}")))?;
    hb.validate().map_err(|e| ApiError::BadData(format!("invalid heartbeat: {e}")))?;
    let addr = peer.map(|p| p.0.0.ip().to_string()).unwrap_or_default();
    let inventory = state.inventory.clone();
    tokio::task::spawn_blocking(move || inventory.heartbeat(hb, addr, now_ms()))
        .await
        .map_err(|e| ApiError::Internal(format!("heartbeat task failed: {e}")))?
        .map_err(|e| ApiError::Internal(format!("cannot store heartbeat: {e}")))?;
    state.telemetry.heartbeat();
    Ok(StatusCode::NO_CONTENT)
}
