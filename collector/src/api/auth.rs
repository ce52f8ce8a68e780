//! Bearer-token access control for every API but `/healthz` and `/readyz` (SEC: open
//! interfaces need identity and source authorisation). A request must carry a live token that
//! has the route's scope and, when the token has an allowlist, come from an allowed address.
//! Every refusal is logged with its reason and counted.

use super::error::ApiError;
use crate::telemetry::Telemetry;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tingzhen_core::db::{Db, TokenRecord};
use tingzhen_core::now_ms;
use tingzhen_core::token::Scope;

/// How often at most a token's `last_used` is written; every request would mean an fsync each.
const TOUCH_EVERY_MS: i64 = 60_000;

pub struct Auth {
    db: Arc<Db>,
    last_touch: Mutex<HashMap<i64, i64>>,
    telemetry: Arc<Telemetry>,
}

impl Auth {
    pub fn new(db: Arc<Db>, telemetry: Arc<Telemetry>) -> Self {
        Self { db, last_touch: Mutex::new(HashMap::new()), telemetry }
    }

    /// Checks a presented token for `scope` from `peer`; `Ok` carries the token's record.
    pub async fn check(
        &self,
        token: Option<String>,
        scope: Scope,
        peer: Option<SocketAddr>,
    ) -> Result<TokenRecord, ApiError> {
        let Some(token) = token else {
            return Err(ApiError::Unauthorized("missing bearer token (Authorization: Bearer <token>)".into()));
        };
        let db = self.db.clone();
        let found = tokio::task::spawn_blocking(move || db.find_token(&token))
            .await
            .map_err(|e| ApiError::Internal(format!("token lookup task failed: {e}")))?
            .map_err(|e| ApiError::Internal(format!("token lookup failed: {e}")))?;
        let Some(record) = found else {
            return Err(ApiError::Unauthorized("unknown or revoked token".into()));
        };
        if !record.has_scope(scope) {
            return Err(ApiError::Forbidden(format!("token {:?} lacks the {scope} scope", record.name)));
        }
        match peer {
            Some(addr) if record.allows(addr.ip()) => {}
            Some(addr) => {
                return Err(ApiError::Forbidden(format!(
                    "token {:?} may not be used from {}: outside its address allowlist",
                    record.name,
                    addr.ip()
                )));
            }
            None if record.allow.is_empty() => {}
            None => return Err(ApiError::Forbidden("client address unknown; token has an allowlist".into())),
        }
        self.touch(&record);
        Ok(record)
    }

    fn touch(&self, record: &TokenRecord) {
        let now = now_ms();
        {
            let mut map = self.last_touch.lock();
            let last = map.entry(record.id).or_insert(0);
            if now - *last < TOUCH_EVERY_MS {
                return;
            }
            *last = now;
        }
        let db = self.db.clone();
        let id = record.id;
        tokio::task::spawn_blocking(move || {
            if let Err(e) = db.touch_token(id, now) {
                tracing::warn!(error = %e, "could not record token use");
            }
        });
    }
}

/// Reads the credential: `Bearer <t>`, Influx's `Token <t>`, or HTTP Basic with the token as
/// the password (what Prometheus `basic_auth` and Influx 1.x clients send).
pub fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "token" if !rest.is_empty() => Some(rest.to_string()),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (_, password) = text.split_once(':')?;
            (!password.is_empty()).then(|| password.to_string())
        }
        _ => None,
    }
}

/// State for the scope-checking middleware of one group of routes.
#[derive(Clone)]
pub struct ScopeGuard {
    pub auth: Arc<Auth>,
    pub scope: Scope,
}

pub async fn require_scope(State(guard): State<ScopeGuard>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let token = presented_token(req.headers());
    match guard.auth.check(token, guard.scope, peer).await {
        Ok(record) => {
            req.extensions_mut().insert(record);
            next.run(req).await
        }
        Err(e) => {
            let reason = if matches!(e, ApiError::Unauthorized(_)) { "unauthorized" } else { "forbidden" };
            guard.auth.telemetry.auth_refused(reason);
            tracing::warn!(
                peer = ?peer,
                path = %req.uri().path(),
                scope = %guard.scope,
                reason = %e,
                "request refused"
            );
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_token_and_basic() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer tz_abc".parse().unwrap());
        assert_eq!(presented_token(&h).as_deref(), Some("tz_abc"));
        h.insert("authorization", "Token tz_abc".parse().unwrap());
        assert_eq!(presented_token(&h).as_deref(), Some("tz_abc"));
        // "prom:tz_abc"
        h.insert("authorization", "Basic cHJvbTp0el9hYmM=".parse().unwrap());
        assert_eq!(presented_token(&h).as_deref(), Some("tz_abc"));
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(presented_token(&h), None);
        h.insert("authorization", "Digest x".parse().unwrap());
        assert_eq!(presented_token(&h), None);
    }
}
