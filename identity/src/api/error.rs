//! The one place identity errors become HTTP answers: `{"status":"error","error":code,
//! "message":text}` in the request's language; a refused password lists every broken rule
//! and the full rule text. Internal details go to the log, not to the client.

use crate::messages::{Lang, Msg};
use crate::service::IdentityError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiError {
    pub fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{what}");
        Self::plain(StatusCode::INTERNAL_SERVER_ERROR, "internal", what)
    }

    pub fn plain(status: StatusCode, code: &str, message: &str) -> Self {
        Self { status, body: json!({"status": "error", "error": code, "message": message}) }
    }

    pub fn msg(status: StatusCode, m: &Msg, lang: Lang) -> Self {
        Self { status, body: json!({"status": "error", "error": m.code(), "message": m.text(lang)}) }
    }

    pub fn from_identity(e: IdentityError, lang: Lang) -> Self {
        match e {
            IdentityError::Denied(m) => {
                let status = match m {
                    Msg::CsrfMissing
                    | Msg::ReplayRefused
                    | Msg::Forbidden
                    | Msg::PasswordChangeRequired
                    | Msg::TotpEnrolmentRequired
                    | Msg::WrongOldPassword => StatusCode::FORBIDDEN,
                    Msg::TotpNotPending => StatusCode::CONFLICT,
                    Msg::SessionLimitReached | Msg::SmsSendFailed => StatusCode::SERVICE_UNAVAILABLE,
                    Msg::ResetUnavailable => StatusCode::NOT_FOUND,
                    Msg::ResetTooSoon { .. } | Msg::ResetTooMany => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::UNAUTHORIZED,
                };
                Self::msg(status, &m, lang)
            }
            IdentityError::Policy { violations: rules, min_length: min } => {
                let messages: Vec<Value> =
                    rules.iter().map(|m| json!({"code": m.code(), "message": m.text(lang)})).collect();
                let first = rules.first().map(|m| m.code()).unwrap_or_default();
                Self {
                    status: StatusCode::BAD_REQUEST,
                    body: json!({
                        "status": "error", "error": first,
                        "message": rules.iter().map(|m| m.text(lang)).collect::<Vec<_>>().join(" "),
                        "violations": messages,
                        "rules": Msg::PasswordRules { min }.text(lang),
                    }),
                }
            }
            IdentityError::Invalid { .. } => Self::plain(StatusCode::BAD_REQUEST, "bad_data", &e.to_string()),
            IdentityError::NotFound(_) => Self::plain(StatusCode::NOT_FOUND, "not_found", &e.to_string()),
            IdentityError::Exists(_) => Self::plain(StatusCode::CONFLICT, "conflict", &e.to_string()),
            other => Self::internal("identity store failed", other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
