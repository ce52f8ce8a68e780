//! Health probes, self-metrics and the inventory listing.

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;
use std::sync::Arc;
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
    if let Some(b) = &state.backups {
        families.push(
            MetricFamily::gauge(
                "tingzhen_backup_last_success_timestamp_seconds",
                "When this process last finished a backup (0: not yet since start).",
            )
            .with(Labels::new(), b.last_success_ms() as f64 / 1000.0),
        );
        families.push(
            MetricFamily::counter("tingzhen_backup_failures_total", "Backups that failed since start.")
                .with(Labels::new(), b.failures() as f64),
        );
    }
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

fn backups(state: &AppState) -> Result<Arc<crate::backup::Backups>, ApiError> {
    state.backups.clone().ok_or_else(|| {
        ApiError::NotFound("no [storage.backup] configured (backups need the embedded engine and a dir)".into())
    })
}

/// `POST /api/v1/admin/backups`: a backup now (as the schedule takes them), answered when it
/// is complete.
pub async fn create_backup(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let backups = backups(&state)?;
    let info = tokio::task::spawn_blocking(move || backups.run(super::params::now_ms()))
        .await
        .map_err(|e| ApiError::Internal(format!("backup task: {e}")))?
        .map_err(|e| ApiError::Unavailable(format!("backup failed: {e}")))?;
    Ok((StatusCode::OK, Json(json!({ "status": "success", "data": info }))))
}

/// `GET /api/v1/admin/backups`: the finished backups, oldest first, from their manifests.
pub async fn list_backups(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let backups = backups(&state)?;
    let root = std::path::PathBuf::from(&backups.config().dir);
    let listed = tokio::task::spawn_blocking(move || -> Result<Vec<serde_json::Value>, crate::backup::BackupError> {
        if !root.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for dir in crate::backup::list(&root)? {
            let text = std::fs::read(dir.join("manifest.json")).unwrap_or_default();
            let m: Option<crate::backup::Manifest> = serde_json::from_slice(&text).ok();
            out.push(json!({
                "path": dir.display().to_string(),
                "created_ms": m.as_ref().map(|m| m.created_ms),
                "files": m.as_ref().map(|m| m.files.len()),
                "bytes": m.as_ref().map(|m| m.files.iter().map(|f| f.bytes).sum::<u64>()),
                "relational_store": m.as_ref().map(|m| m.relational_store),
            }));
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("backup listing task: {e}")))?
    .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok((StatusCode::OK, Json(json!({ "status": "success", "data": listed }))))
}
