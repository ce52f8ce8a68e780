//! Health probes, self-metrics and the inventory listing.

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;
use tingzhen_core::Labels;
use tingzhen_core::exposition::{self, MetricFamily};

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once the state is built: the router only exists after storage opened and replayed.
pub async fn readyz() -> &'static str {
    "ready\n"
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut families = state.telemetry.families();
    families.extend(state.backend.families());
    families.push(
        MetricFamily::gauge("tingzhen_build_info", "Build information; the value is always 1.")
            .with(Labels::from_pairs([("version", env!("CARGO_PKG_VERSION")), ("target", "collector")]), 1.0),
    );
    ([(header::CONTENT_TYPE, exposition::CONTENT_TYPE)], exposition::render(&families))
}

pub async fn hosts(State(state): State<AppState>) -> impl IntoResponse {
    let now = super::params::now_ms();
    (StatusCode::OK, Json(json!({ "status": "success", "data": state.inventory.hosts(now) })))
}
