//! The inventory quick search (MON-8): `GET /api/v1/inventory?q=` over hosts and the
//! databases, middleware, probes and processes their agents watch.

use super::AppState;
use super::params::now_ms;
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
pub struct SearchParams {
    #[serde(default)]
    pub q: String,
}

pub async fn search(State(state): State<AppState>, Query(p): Query<SearchParams>) -> Json<Value> {
    Json(json!({ "status": "success", "data": state.inventory.search(&p.q, now_ms()) }))
}
