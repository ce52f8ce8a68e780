//! The one place alerting errors become HTTP answers, in Prometheus's error shape
//! (`{"status":"error","errorType":…,"error":…}`); invalid rules also list every problem
//! under `errors`. Internal details go to the log, not to the client.

use crate::rules::RuleErrors;
use crate::service::{AlertingError, RulesApiError};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    BadData(String),
    InvalidRules(RuleErrors),
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{what}");
        Self::Internal(what.to_string())
    }
}

impl From<RulesApiError> for ApiError {
    fn from(e: RulesApiError) -> Self {
        match e {
            RulesApiError::Invalid(errs) => Self::InvalidRules(errs),
            RulesApiError::Conflict(_) => Self::Conflict(e.to_string()),
            RulesApiError::ReadOnly(_) => Self::Forbidden(e.to_string()),
            RulesApiError::NotFound(_) => Self::NotFound(e.to_string()),
            RulesApiError::Store(_) | RulesApiError::State(_) => Self::internal("cannot save the rule group", e),
        }
    }
}

impl From<AlertingError> for ApiError {
    fn from(e: AlertingError) -> Self {
        Self::internal("alerting store failed", e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, message, errors) = match self {
            Self::BadData(m) => (StatusCode::BAD_REQUEST, "bad_data", m, None),
            Self::InvalidRules(e) => (StatusCode::BAD_REQUEST, "bad_data", e.to_string(), Some(e.0)),
            Self::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m, None),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m, None),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m, None),
            Self::Conflict(m) => (StatusCode::CONFLICT, "conflict", m, None),
            Self::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m, None),
        };
        let mut body = json!({"status": "error", "errorType": kind, "error": message});
        if let Some(errors) = errors {
            body["errors"] = json!(errors);
        }
        (status, Json(body)).into_response()
    }
}
