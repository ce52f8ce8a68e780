//! The one place where failures become HTTP answers. Prometheus's JSON error shape
//! (`{"status":"error","errorType":…,"error":…}`) is used for every API, so Grafana and
//! promtool show our messages as they show Prometheus's. Internal details are logged, not sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message names the parameter, series or line at fault.
    #[error("{0}")]
    BadData(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    NotFound(String),
    /// A well-formed query that cannot be evaluated (too many samples, many-to-many matching…).
    #[error("{0}")]
    Execution(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Unavailable(String),
    /// Our fault. The message goes to the log; the client gets a generic one.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadData(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Execution(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Timeout(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            Self::BadData(_) | Self::TooLarge { .. } => "bad_data",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Execution(_) => "execution",
            Self::Timeout(_) => "timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// Maps a query-engine failure by its Prometheus error type.
    pub fn from_query_error(e: &crate::promql::QueryError) -> Self {
        let msg = e.to_string();
        match e.error_type() {
            "bad_data" => Self::BadData(msg),
            "timeout" => Self::Timeout(msg),
            "execution" => Self::Execution(msg),
            _ => Self::Internal(msg),
        }
    }

    /// A request body that could not be read: over `limit` bytes, or cut off mid-way.
    pub fn from_body_rejection(rej: &axum::extract::rejection::BytesRejection, limit: usize) -> Self {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge { limit }
        } else {
            Self::BadData(format!("cannot read request body: {rej}"))
        }
    }

    pub fn from_write_error(e: crate::backend::WriteError) -> Self {
        use crate::backend::WriteError;
        match e {
            WriteError::Invalid(m) => Self::BadData(m),
            WriteError::Unavailable(m) => Self::Unavailable(m),
            WriteError::Failed(m) => Self::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error answering a request");
                "internal server error; see the collector log".to_string()
            }
            other => other.to_string(),
        };
        let body = json!({ "status": "error", "errorType": self.error_type(), "error": message });
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert("WWW-Authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
