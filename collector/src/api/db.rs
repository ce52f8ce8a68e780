//! Top SQL of watched databases: agents POST snapshots (`ingest` scope), screens GET them
//! (`query` scope) filtered by host, target and time.

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::params::{Params, now_ms};
use crate::topsql::{MAX_LIMIT, TopSqlFilter};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tingzhen_core::topsql::TopSqlReport;

/// Default look-back of a query without `since`: one hour.
const DEFAULT_SINCE_MS: i64 = 3_600_000;
const DEFAULT_LIMIT: usize = 100;

pub async fn post_top_sql(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> ApiResult<StatusCode> {
    let body = body.map_err(|rej| ApiError::from_body_rejection(&rej, state.max_body_bytes))?;
    let report: TopSqlReport =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadData(format!("invalid top-SQL JSON: {e}")))?;
    report.validate().map_err(|e| ApiError::BadData(format!("invalid top-SQL snapshot: {e}")))?;
    let inventory = state.inventory.clone();
    tokio::task::spawn_blocking(move || inventory.top_sql().insert(&report, now_ms()))
        .await
        .map_err(|e| ApiError::Internal(format!("top-SQL task failed: {e}")))?
        .map_err(|e| ApiError::Internal(format!("cannot store top-SQL snapshot: {e}")))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get_top_sql(
    State(state): State<AppState>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let p = Params(params);
    let now = now_ms();
    let limit = match p.get("limit") {
        None | Some("") => DEFAULT_LIMIT,
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
            ApiError::BadData(format!("invalid parameter \"limit\": {v:?} is not a number in 1..={MAX_LIMIT}"))
        })?,
    };
    let filter = TopSqlFilter {
        host: p.get("host").unwrap_or("").to_string(),
        target: p.get("target").unwrap_or("").to_string(),
        since_ms: p.time_or("since", now - DEFAULT_SINCE_MS)?,
        until_ms: p.time_or("until", i64::MAX)?,
        limit,
    };
    if filter.since_ms > filter.until_ms {
        return Err(ApiError::BadData("invalid parameter \"until\": before \"since\"".into()));
    }
    let inventory = state.inventory.clone();
    let data = tokio::task::spawn_blocking(move || inventory.top_sql().query(&filter))
        .await
        .map_err(|e| ApiError::Internal(format!("top-SQL task failed: {e}")))?
        .map_err(|e| ApiError::Internal(format!("cannot read top SQL: {e}")))?;
    Ok(Json(json!({ "status": "success", "data": data })))
}

#[cfg(test)]
mod tests {
    use crate::config::{InventoryConfig, QueryConfig, StorageConfig};
    use crate::{Collector, CollectorSettings};
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Request, StatusCode};
    use std::net::SocketAddr;
    use std::sync::Arc;
    use tingzhen_core::token::Scope;
    use tower::ServiceExt;

    async fn send(router: &axum::Router, method: &str, uri: &str, token: &str, body: String) -> (StatusCode, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body))
            .unwrap();
        req.extensions_mut().insert(ConnectInfo("127.0.0.1:40000".parse::<SocketAddr>().unwrap()));
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn top_sql_is_stored_by_ingest_and_served_to_query_with_scopes_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(tingzhen_core::db::testing::fresh_db());
        let settings = CollectorSettings {
            storage: StorageConfig { data_dir: dir.path().display().to_string(), ..StorageConfig::default() },
            query: QueryConfig::default(),
            inventory: InventoryConfig::default(),
            max_body_bytes: 1 << 20,
        };
        let router = Collector::open(&settings, db.clone()).unwrap().router();
        let ingest = db.create_token("i", &[Scope::Ingest], &[]).unwrap().plaintext;
        let query = db.create_token("q", &[Scope::Query], &[]).unwrap().plaintext;
        let now = tingzhen_core::now_ms();
        let snap = serde_json::json!({
            "host": "db01", "target": "his-pg", "kind": "postgres", "address": "127.0.0.1:5432",
            "ts_ms": now, "interval_ms": 10000,
            "statements": [{"query_id": "7", "query": "SELECT pg_sleep($1)", "database": "his", "user": "app",
                            "calls": 1, "total_time_ms": 1500.0, "mean_time_ms": 1500.0, "rows": 1}]
        })
        .to_string();
        let (s, b) = send(&router, "POST", "/api/v1/db/top-sql", &ingest, snap.clone()).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
        let (s, _) = send(&router, "POST", "/api/v1/db/top-sql", &query, snap.clone()).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = send(&router, "GET", "/api/v1/db/top-sql", &ingest, String::new()).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, b) = send(&router, "POST", "/api/v1/db/top-sql", &ingest, snap.replace("\"his-pg\"", "\"\"")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(b.contains("target"), "{b}");

        let (s, b) = send(&router, "GET", "/api/v1/db/top-sql?host=db01&target=his-pg", &query, String::new()).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["data"][0]["statements"][0]["query"], "SELECT pg_sleep($1)");
        let (_, b) = send(&router, "GET", "/api/v1/db/top-sql?target=other", &query, String::new()).await;
        assert_eq!(serde_json::from_str::<serde_json::Value>(&b).unwrap()["data"], serde_json::json!([]));
        let later = format!("/api/v1/db/top-sql?since={}", now / 1000 + 60);
        let (_, b) = send(&router, "GET", &later, &query, String::new()).await;
        assert_eq!(serde_json::from_str::<serde_json::Value>(&b).unwrap()["data"], serde_json::json!([]));
        let (s, b) = send(&router, "GET", "/api/v1/db/top-sql?limit=0", &query, String::new()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(b.contains("limit"), "{b}");
        let (s, b) = send(&router, "GET", "/api/v1/inventory?q=db01", &query, String::new()).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert!(b.contains("\"targets\""), "{b}");
    }
}
