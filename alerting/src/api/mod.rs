//! Alerting's HTTP API as one axum `Router`: rules CRUD, alerts, history and summaries
//! (`rules`, `alerts`), Prometheus's `/api/v1/rules` and `/api/v1/alerts` (`prom`, for
//! Grafana), Alertmanager-compatible intake, plus routing's and the outbox's
//! routers, all behind the same bearer tokens as the collector (`Db::authenticate`).
//! Scopes: `POST /api/v2/alerts` needs `ingest` (it is a write of monitoring data); other
//! reads need `query`; every other write needs `admin`.
//!
//! `router` has no fallback and no health routes so the all-in-one server can merge it with
//! the collector's; `standalone_router` adds them for `--target alerting`.

mod alerts;
pub mod error;
mod prom;
pub mod receivers;
mod rules;

use crate::service::Alerting;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use error::ApiError;
use std::net::SocketAddr;
use std::sync::Arc;
use tingzhen_core::db::AuthError;
use tingzhen_core::token::Scope;

pub type AppState = Arc<Alerting>;

/// Rule files and intake batches are small; this bounds what one request may make us parse.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

pub const INTAKE_PATH: &str = "/api/v2/alerts";

pub fn router(state: AppState) -> Router {
    build(state, false)
}

/// `router` plus health probes, `/metrics` and a JSON 404, for an alerting process of its own.
pub fn standalone_router(state: AppState) -> Router {
    build(state, true)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = tingzhen_core::exposition::render(&state.families());
    ([(axum::http::header::CONTENT_TYPE, tingzhen_core::exposition::CONTENT_TYPE)], body).into_response()
}

fn build(state: AppState, standalone: bool) -> Router {
    let mut api = Router::new()
        .route("/api/v1/alerting/rules", get(rules::list).post(rules::create))
        .route("/api/v1/alerting/rules/{group}", get(rules::get_one).put(rules::replace).delete(rules::delete))
        .route("/api/v1/alerting/rules-check", post(rules::check))
        .route("/api/v1/alerting/alerts", get(alerts::list))
        .route("/api/v1/alerting/history", get(alerts::history))
        .route("/api/v1/alerting/summary", get(alerts::summary))
        .route(INTAKE_PATH, post(alerts::intake))
        .route("/api/v1/alerting/metrics", get(metrics))
        .route(RECEIVERS_PATH, get(receivers::list))
        .route("/api/v1/alerting/receivers/{name}/test", post(receivers::test))
        .route("/api/v1/alerting/routing/config", get(receivers::routing_config))
        .route("/api/v1/rules", get(prom::rules))
        .route("/api/v1/alerts", get(prom::alerts));
    if standalone {
        api = api.route("/metrics", get(metrics));
    }
    let mut api = api.with_state(state.clone());
    if let Some(d) = state.dispatcher() {
        api = api.nest("/api/v1/alerting", crate::routing::api_router(d.clone()));
    }
    if let Some(o) = state.outbox() {
        api = api.merge(crate::outbox::api_router(o.clone()));
    }
    api.layer(DefaultBodyLimit::max(MAX_BODY_BYTES)).layer(middleware::from_fn_with_state(state, require_token))
}

const RECEIVERS_PATH: &str = "/api/v1/alerting/receivers";

fn scope_for(method: &Method, path: &str) -> Scope {
    if path == INTAKE_PATH {
        Scope::Ingest
    } else if path.starts_with(RECEIVERS_PATH) {
        // Who the channels reach is staff's mobiles and mail: personal data, not for the
        // read-only tokens of screens and Grafana.
        Scope::Admin
    } else if method == Method::GET || method == Method::HEAD {
        Scope::Query
    } else {
        Scope::Admin
    }
}

/// `Authorization: Bearer <token>` (or Influx-style `Token <token>`).
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    (matches!(scheme.to_ascii_lowercase().as_str(), "bearer" | "token") && !rest.is_empty()).then(|| rest.to_string())
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let scope = scope_for(req.method(), req.uri().path());
    let token = presented_token(req.headers());
    let db = state.db().clone();
    let checked = tokio::task::spawn_blocking(move || db.authenticate(token.as_deref(), peer, scope)).await;
    match checked {
        Ok(Ok(_)) => next.run(req).await,
        Ok(Err(AuthError::Db(e))) => ApiError::internal("token lookup failed", e).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(peer = ?peer, path = %req.uri().path(), %scope, reason = %e, "request refused");
            if e.is_unauthorized() {
                ApiError::Unauthorized(e.to_string()).into_response()
            } else {
                ApiError::Forbidden(e.to_string()).into_response()
            }
        }
        Err(e) => ApiError::internal("token lookup task failed", e).into_response(),
    }
}

/// Runs blocking service work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal("alerting task failed", e))
}

fn ok_json(data: serde_json::Value) -> Response {
    (StatusCode::OK, axum::Json(serde_json::json!({"status": "success", "data": data}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_method_and_path() {
        assert_eq!(scope_for(&Method::POST, INTAKE_PATH), Scope::Ingest);
        assert_eq!(scope_for(&Method::GET, "/api/v1/alerting/rules"), Scope::Query);
        assert_eq!(scope_for(&Method::GET, "/api/v1/alerting/receivers"), Scope::Admin);
        assert_eq!(scope_for(&Method::GET, "/api/v1/alerting/routing/config"), Scope::Query);
        assert_eq!(scope_for(&Method::POST, "/api/v1/alerting/rules"), Scope::Admin);
        assert_eq!(scope_for(&Method::DELETE, "/api/v1/alerting/silences/x"), Scope::Admin);
    }
}
