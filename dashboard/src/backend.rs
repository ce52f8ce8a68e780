//! How the dashboard reaches the collector and alerting APIs: in the all-in-one server it calls
//! their router in process (no socket, no port), in a split deployment it calls them over HTTP.
//! Both go through the same JSON APIs with a bearer token, so pages see one code path and the
//! APIs' own validation and errors apply to what the console sends.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use std::time::Duration;
use tower::ServiceExt;

/// Largest API answer the dashboard reads (a week of a busy range query).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The API answered with an error; `message` is its own (already names the bad field).
    #[error("{message}")]
    Api { status: u16, message: String },
    #[error("the monitoring API is unreachable: {0}")]
    Unreachable(String),
    #[error("the monitoring API answered something that is not JSON: {0}")]
    BadAnswer(String),
}

impl BackendError {
    /// The HTTP status the console passes on to the browser for this failure.
    pub fn status(&self) -> StatusCode {
        match self {
            BackendError::Api { status, .. } => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

#[derive(Clone)]
pub enum Backend {
    /// The merged collector + alerting router of this process.
    InProcess { router: Router, token: String },
    /// Another process: `base` like `http://collector:8630`.
    Http { base: String, token: String, agent: ureq::Agent },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::InProcess { .. } => f.write_str("Backend::InProcess"),
            Backend::Http { base, .. } => write!(f, "Backend::Http({base})"),
        }
    }
}

impl Backend {
    pub fn in_process(router: Router, token: String) -> Self {
        Backend::InProcess { router, token }
    }

    pub fn http(base: &str, token: String) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .timeout_connect(Some(Duration::from_secs(5)))
            .build();
        Backend::Http {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// `GET path?params`; the `data` member of a `{"status":"success"}` answer.
    pub async fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, BackendError> {
        let uri = if params.is_empty() {
            path.to_string()
        } else {
            let qs = serde_urlencoded::to_string(params).map_err(|e| BackendError::BadAnswer(e.to_string()))?;
            format!("{path}?{qs}")
        };
        self.call(Method::GET, &uri, None).await
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, BackendError> {
        self.call(method, path, body.map(|b| b.to_string().into_bytes())).await
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Vec<u8>>) -> Result<Value, BackendError> {
        let (status, bytes) = match self {
            Backend::InProcess { router, token } => {
                let mut req =
                    Request::builder().method(method).uri(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
                if body.is_some() {
                    req = req.header(header::CONTENT_TYPE, "application/json");
                }
                let req = req
                    .body(body.map(Body::from).unwrap_or_else(Body::empty))
                    .map_err(|e| BackendError::Unreachable(e.to_string()))?;
                let res = router.clone().oneshot(req).await.map_err(|e| BackendError::Unreachable(e.to_string()))?;
                let status = res.status().as_u16();
                let bytes = axum::body::to_bytes(res.into_body(), BODY_LIMIT)
                    .await
                    .map_err(|e| BackendError::Unreachable(e.to_string()))?;
                (status, bytes.to_vec())
            }
            Backend::Http { base, token, agent } => {
                let (url, agent, auth) = (format!("{base}{uri}"), agent.clone(), format!("Bearer {token}"));
                tokio::task::spawn_blocking(move || http_call(&agent, method, &url, &auth, body))
                    .await
                    .map_err(|e| BackendError::Unreachable(e.to_string()))??
            }
        };
        decode(status, &bytes)
    }
}

fn http_call(
    agent: &ureq::Agent,
    method: Method,
    url: &str,
    auth: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Vec<u8>), BackendError> {
    let unreachable = |e: ureq::Error| BackendError::Unreachable(format!("{url}: {e}"));
    let mut req = ureq::http::Request::builder().method(method.as_str()).uri(url).header("Authorization", auth);
    if body.is_some() {
        req = req.header("Content-Type", "application/json");
    }
    let req = req.body(body.unwrap_or_default()).map_err(|e| BackendError::Unreachable(e.to_string()))?;
    let res = agent.run(req).map_err(unreachable)?;
    let status = res.status().as_u16();
    let bytes = res.into_body().with_config().limit(BODY_LIMIT as u64).read_to_vec().map_err(unreachable)?;
    Ok((status, bytes))
}

fn decode(status: u16, bytes: &[u8]) -> Result<Value, BackendError> {
    // 204 No Content (deletes, replaces) and other empty successes carry no envelope.
    if (200..300).contains(&status) && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|_| {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        if (200..300).contains(&status) {
            BackendError::BadAnswer(text)
        } else {
            BackendError::Api { status, message: text.trim().to_string() }
        }
    })?;
    if (200..300).contains(&status) && v["status"] != "error" {
        return Ok(v.get("data").cloned().unwrap_or(v));
    }
    let message = v["error"].as_str().or_else(|| v["message"].as_str()).unwrap_or("request refused").to_string();
    Err(BackendError::Api { status, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json;
    use axum::routing::get;
    use serde_json::json;

    fn api() -> Router {
        Router::new()
            .route(
                "/api/v1/echo",
                get(|headers: axum::http::HeaderMap, q: axum::extract::RawQuery| async move {
                    Json(json!({"status": "success", "data": {
                        "auth": headers.get("authorization").and_then(|v| v.to_str().ok()),
                        "query": q.0,
                    }}))
                }),
            )
            .route("/api/v1/gone", axum::routing::delete(|| async { StatusCode::NO_CONTENT }))
            .route(
                "/api/v1/bad",
                get(|| async {
                    (
                        StatusCode::BAD_REQUEST,
                        Json(json!({"status": "error", "errorType": "bad_data", "error": "x: bad"})),
                    )
                }),
            )
    }

    #[tokio::test]
    async fn in_process_calls_carry_the_token_and_unwrap_data() {
        let b = Backend::in_process(api(), "tok".into());
        let v = b.get("/api/v1/echo", &[("q", "10.0.0.1 东院")]).await.unwrap();
        assert_eq!(v["auth"], "Bearer tok");
        assert_eq!(v["query"], "q=10.0.0.1+%E4%B8%9C%E9%99%A2");
        assert_eq!(b.send(Method::DELETE, "/api/v1/gone", None).await.unwrap(), Value::Null, "204 is a success");
        match b.get("/api/v1/bad", &[]).await {
            Err(BackendError::Api { status: 400, message }) => assert_eq!(message, "x: bad"),
            other => panic!("want the API's error, got {other:?}"),
        }
    }
}
