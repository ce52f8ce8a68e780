//! The collector's HTTP API as one axum `Router`: ingest (scope `ingest`), the Prometheus
//! query API and self-metrics (scope `query`), and unauthenticated health probes. Route
//! groups, their access scope and body limits are all visible in [`router`].

pub mod auth;
mod db;
pub mod error;
mod flows;
mod ingest;
mod inventory;
mod ops;
mod params;
mod query;

use crate::backend::Backend;
use crate::inventory::Inventory;
use crate::promql::Engine;
use crate::storage::Queryable;
use crate::telemetry::Telemetry;
use auth::{Auth, ScopeGuard, require_scope};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tingzhen_core::token::Scope;
use tokio::sync::Semaphore;

/// Everything a request handler may touch.
pub struct Services {
    /// Present with the embedded engine and `[storage.backup]`.
    pub backups: Option<Arc<crate::backup::Backups>>,
    pub flows: Arc<crate::flows::Flows>,
    pub backend: Backend,
    pub engine: Arc<Engine>,
    pub auth: Arc<Auth>,
    pub inventory: Arc<Inventory>,
    pub telemetry: Arc<Telemetry>,
    /// Bounds concurrent query evaluation so dashboards cannot starve ingest of CPU.
    pub query_slots: Arc<Semaphore>,
    pub query_timeout: Duration,
    pub max_body_bytes: usize,
}

impl Services {
    pub fn queryable(&self) -> Arc<dyn Queryable> {
        self.backend.queryable()
    }
}

pub type AppState = Arc<Services>;

pub fn router(state: AppState) -> Router {
    let guard = |scope| ScopeGuard { auth: state.auth.clone(), scope };
    let ingest = Router::new()
        .route("/api/v1/write", post(ingest::remote_write))
        .route("/write", post(ingest::influx))
        .route("/api/v2/write", post(ingest::influx))
        .route("/api/v1/agents/heartbeat", post(ingest::heartbeat))
        .route("/api/v1/db/top-sql", post(db::post_top_sql))
        .route_layer(middleware::from_fn_with_state(guard(Scope::Ingest), require_scope));
    let query = Router::new()
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route("/api/v1/series", get(query::series).post(query::series))
        .route("/api/v1/labels", get(query::labels).post(query::labels))
        .route("/api/v1/label/{name}/values", get(query::label_values))
        .route("/api/v1/inventory/hosts", get(ops::hosts))
        .route("/api/v1/inventory", get(inventory::search))
        .route("/api/v1/db/top-sql", get(db::get_top_sql))
        .route("/metrics", get(ops::metrics))
        .route_layer(middleware::from_fn_with_state(guard(Scope::Query), require_scope));
    let admin = Router::new()
        .route("/api/v1/admin/backups", get(ops::list_backups).post(ops::create_backup))
        .route_layer(middleware::from_fn_with_state(guard(Scope::Admin), require_scope));
    Router::new()
        .merge(ingest)
        .merge(query)
        .merge(admin)
        .merge(flows::routes(&state))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), record_request))
        .with_state(state)
}

/// Counts and times every answered request by its route template (never the raw path, whose
/// cardinality a client controls).
async fn record_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "other".into());
    let started = Instant::now();
    let resp = next.run(req).await;
    state.telemetry.http_request(&route, resp.status().as_u16(), started.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests;
