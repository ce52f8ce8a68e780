//! The identity HTTP API as one axum `Router` (`/api/v1/auth/*`, `/api/v1/users/*`,
//! `/api/v1/audit/*`), authenticated by the session cookie (`tz_session`: Secure, HttpOnly,
//! SameSite=Strict). Every state-changing request after login must carry `X-CSRF-Token` (the
//! session's token), `X-Request-Nonce` (16–128 printable characters, never reused) and
//! `X-Request-Timestamp` (Unix ms within `replay_window`). Messages follow `Accept-Language`
//! (zh-CN unless English is preferred).

mod error;
mod handlers;

pub use error::ApiError;

use crate::service::{Identity, Session};
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, header};
use axum::routing::{get, patch, post, put};
use std::net::SocketAddr;
use std::sync::Arc;

pub type AppState = Arc<Identity>;

pub const SESSION_COOKIE: &str = "tz_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const NONCE_HEADER: &str = "x-request-nonce";
pub const TIMESTAMP_HEADER: &str = "x-request-timestamp";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/auth/captcha", get(handlers::captcha))
        .route("/api/v1/auth/password-rules", get(handlers::password_rules))
        .route("/api/v1/auth/login", post(handlers::login))
        .route("/api/v1/auth/logout", post(handlers::logout))
        .route("/api/v1/auth/reset/request", post(handlers::reset_request))
        .route("/api/v1/auth/reset/confirm", post(handlers::reset_confirm))
        .route("/api/v1/auth/session", get(handlers::session_info))
        .route("/api/v1/auth/password", post(handlers::change_password))
        .route("/api/v1/auth/totp/enroll", post(handlers::totp_enroll))
        .route("/api/v1/auth/totp/confirm", post(handlers::totp_confirm))
        .route("/api/v1/users", get(handlers::users_search).post(handlers::users_create))
        .route("/api/v1/users/bulk", post(handlers::users_bulk))
        .route("/api/v1/users/reports/disabled", get(handlers::report_disabled))
        .route("/api/v1/users/reports/permissions", get(handlers::report_permissions))
        .route("/api/v1/users/{name}", patch(handlers::users_update))
        .route("/api/v1/users/{name}/roles", put(handlers::users_roles))
        .route("/api/v1/users/{name}/password", post(handlers::users_reset_password))
        .route("/api/v1/audit/records", get(handlers::audit_records))
        .route("/api/v1/audit/verify", get(handlers::audit_verify))
        .route("/api/v1/audit/login-durations", get(handlers::audit_login_durations))
        .with_state(state)
}

/// Language and source address of a request.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub lang: crate::Lang,
    pub ip: String,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::new(&parts.headers, parts.extensions.get::<ConnectInfo<SocketAddr>>()))
    }
}

impl Ctx {
    pub fn new(headers: &HeaderMap, conn: Option<&ConnectInfo<SocketAddr>>) -> Self {
        let lang =
            crate::Lang::from_accept_language(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()));
        let ip = conn.map(|c| c.0.ip().to_string()).unwrap_or_else(|| "-".into());
        Self { lang, ip }
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The session behind the request's cookie; for anything but GET/HEAD also the CSRF token
/// and the anti-replay nonce and timestamp. Other targets use this for their own routes.
pub async fn session_for(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    ctx: &Ctx,
) -> Result<Session, ApiError> {
    let id = cookie(headers, SESSION_COOKIE);
    let csrf = header_str(headers, CSRF_HEADER).map(str::to_string);
    let nonce = header_str(headers, NONCE_HEADER).map(str::to_string);
    let ts = header_str(headers, TIMESTAMP_HEADER).map(str::to_string);
    let state_change = !matches!(*method, Method::GET | Method::HEAD);
    let (st, ip, lang) = (state.clone(), ctx.ip.clone(), ctx.lang);
    blocking(lang, move || {
        let Some(id) = id else { return Err(crate::IdentityError::Denied(crate::Msg::NotLoggedIn)) };
        let s = st.check_session(&id, &ip)?;
        if state_change {
            st.check_state_change(&s, csrf.as_deref(), nonce.as_deref(), ts.as_deref())?;
        }
        Ok(s)
    })
    .await
}

/// Runs identity work (SQLite, Argon2) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    lang: crate::Lang,
    f: impl FnOnce() -> Result<T, crate::IdentityError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| ApiError::from_identity(e, lang)),
        Err(e) => Err(ApiError::internal("identity task failed", e)),
    }
}

/// `Set-Cookie` for a new session, or (with `None`) one that clears it.
pub fn session_cookie(id: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}
