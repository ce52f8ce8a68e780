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
    families.extend(tsdb_families(&state));
    families.push(
        MetricFamily::gauge("tingzhen_build_info", "Build information; the value is always 1.")
            .with(Labels::from_pairs([("version", env!("CARGO_PKG_VERSION")), ("target", "collector")]), 1.0),
    );
    ([(header::CONTENT_TYPE, exposition::CONTENT_TYPE)], exposition::render(&families))
}

fn tsdb_families(state: &AppState) -> Vec<MetricFamily> {
    let s = state.tsdb.stats();
    let gauge = |name: &str, help: &str, v: f64| MetricFamily::gauge(name, help).with(Labels::new(), v);
    let counter = |name: &str, help: &str, v: f64| MetricFamily::counter(name, help).with(Labels::new(), v);
    vec![
        gauge("tingzhen_tsdb_series", "Series currently known to the time-series engine.", s.series as f64),
        counter(
            "tingzhen_tsdb_samples_appended_total",
            "Samples written to the time-series engine.",
            s.samples_appended as f64,
        ),
        counter(
            "tingzhen_tsdb_samples_duplicate_total",
            "Samples ignored because that series already had a sample at that timestamp.",
            s.samples_duplicate as f64,
        ),
        gauge("tingzhen_tsdb_blocks", "Immutable on-disk blocks.", s.blocks as f64),
        gauge("tingzhen_tsdb_wal_bytes", "Bytes in the write-ahead log.", s.wal_bytes as f64),
        gauge("tingzhen_tsdb_disk_bytes", "Bytes the time-series engine uses on disk.", s.disk_bytes as f64),
    ]
}

pub async fn hosts(State(state): State<AppState>) -> impl IntoResponse {
    let now = super::params::now_ms();
    (StatusCode::OK, Json(json!({ "status": "success", "data": state.inventory.hosts(now) })))
}
