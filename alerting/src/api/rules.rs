//! `/api/v1/alerting/rules`: list, read, create, replace and delete rule groups. A body is a
//! JSON group (`{"name":…, "interval":…, "rules":[…]}`, where a rule may be
//! `{"builtin": {"kind": "host_down", …}}`) or, with a YAML content type, a Prometheus rule
//! file. Everything is validated before anything is saved; `rules-check` validates only.

use super::error::{ApiError, ApiResult};
use super::{AppState, blocking, ok_json};
use crate::rules::builtin::Builtin;
use crate::rules::{GroupSpec, RuleError, RuleErrors, RuleFile, RuleGroup, RuleSpec, duration};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A group as the API accepts it: like a rule file's, plus built-in rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiGroup {
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    query_offset: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<Value>,
}

fn invalid(location: String, field: &str, message: String) -> ApiError {
    ApiError::InvalidRules(RuleErrors(vec![RuleError { location, field: field.into(), message }]))
}

fn from_json(body: &[u8]) -> ApiResult<GroupSpec> {
    let g: ApiGroup = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadData(format!("body: not a rule group ({e}); send JSON or a YAML rule file")))?;
    let mut rules = Vec::new();
    for (i, v) in g.rules.into_iter().enumerate() {
        let loc = format!("group {:?}, rule {}", g.name, i + 1);
        if let Some(b) = v.get("builtin") {
            if v.as_object().is_some_and(|o| o.len() > 1) {
                return Err(invalid(loc, "builtin", "a built-in rule has only the \"builtin\" object".into()));
            }
            let b: Builtin =
                serde_json::from_value(b.clone()).map_err(|e| invalid(loc.clone(), "builtin", e.to_string()))?;
            rules.push(b.expand().map_err(|e| invalid(loc, "builtin", e))?);
        } else {
            rules.push(serde_json::from_value::<RuleSpec>(v).map_err(|e| invalid(loc, "rule", e.to_string()))?);
        }
    }
    Ok(GroupSpec {
        name: g.name,
        interval: g.interval,
        query_offset: g.query_offset,
        limit: g.limit,
        labels: g.labels,
        rules,
    })
}

fn is_yaml(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("yaml"))
}

/// The groups a body carries: one JSON group, or every group of a YAML rule file.
fn groups_of(headers: &HeaderMap, body: &[u8]) -> ApiResult<Vec<GroupSpec>> {
    if is_yaml(headers) {
        let text = std::str::from_utf8(body).map_err(|_| ApiError::BadData("body: not UTF-8".into()))?;
        let file: RuleFile = serde_norway::from_str(text).map_err(|e| invalid("body".into(), "yaml", e.to_string()))?;
        if file.groups.is_empty() {
            return Err(ApiError::BadData("body: the rule file has no groups".into()));
        }
        Ok(file.groups)
    } else {
        Ok(vec![from_json(body)?])
    }
}

fn rule_json(state: &AppState, g: &RuleGroup) -> Value {
    let rules: Vec<Value> = g
        .rules
        .iter()
        .map(|r| {
            let health = state.evaluator().health(&r.key);
            json!({
                "key": r.key,
                "alert": r.name,
                "expr": r.expr,
                "for": duration::format(r.for_),
                "keep_firing_for": duration::format(r.keep_firing_for),
                "labels": r.labels,
                "annotations": r.annotations,
                "health": health.as_ref().map_or("unknown", |h| h.health),
                "last_error": health.as_ref().and_then(|h| h.last_error.clone()),
                "last_evaluation_ms": health.as_ref().map(|h| h.last_evaluation_ms),
                "evaluation_seconds": health.as_ref().map(|h| h.evaluation_seconds),
            })
        })
        .collect();
    json!({
        "name": g.name,
        "source": g.source,
        "interval": duration::format(g.interval),
        "query_offset": duration::format(g.query_offset),
        "limit": g.limit,
        "rules": rules,
        "spec": g.spec,
    })
}

pub async fn list(State(state): State<AppState>) -> Response {
    let groups: Vec<Value> = state.groups().iter().map(|g| rule_json(&state, g)).collect();
    ok_json(json!({ "groups": groups }))
}

pub async fn get_one(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let g = state
        .groups()
        .into_iter()
        .find(|g| g.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("rule group {name:?} not found")))?;
    Ok(ok_json(rule_json(&state, &g)))
}

/// Creates every group of the body, all or nothing: all are validated before the first is saved.
pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let specs = groups_of(&headers, &body)?;
    let st = state.clone();
    let created = blocking(move || {
        let mut errors = Vec::new();
        for s in &specs {
            if st.groups().iter().any(|g| g.name == s.name) {
                return Err(ApiError::Conflict(format!("rule group {:?} already exists", s.name)));
            }
            if let Err(crate::service::RulesApiError::Invalid(RuleErrors(mut e))) = st.validate_group(s.clone()) {
                errors.append(&mut e);
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::InvalidRules(RuleErrors(errors)));
        }
        specs.into_iter().map(|s| st.save_group(s, false).map_err(ApiError::from)).collect::<ApiResult<Vec<_>>>()
    })
    .await??;
    let groups: Vec<Value> = created.iter().map(|g| rule_json(&state, g)).collect();
    Ok((StatusCode::CREATED, axum::Json(json!({"status": "success", "data": {"groups": groups}}))).into_response())
}

pub async fn replace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let mut specs = groups_of(&headers, &body)?;
    if specs.len() != 1 {
        return Err(ApiError::BadData("body: send exactly one group to replace one".into()));
    }
    let spec = specs.remove(0);
    if spec.name != name {
        return Err(invalid(
            format!("group {:?}", spec.name),
            "name",
            format!("does not match the group in the path ({name:?}); renaming is delete + create"),
        ));
    }
    let st = state.clone();
    let g = blocking(move || st.save_group(spec, true)).await??;
    Ok(ok_json(rule_json(&state, &g)))
}

pub async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let st = state.clone();
    blocking(move || st.delete_group(&name)).await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Validates without saving (for editors): the same answer `create` would give.
pub async fn check(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let specs = groups_of(&headers, &body)?;
    let st = state.clone();
    let checked = blocking(move || {
        let mut errors = Vec::new();
        let mut ok = Vec::new();
        for s in specs {
            match st.validate_group(s) {
                Ok(g) => ok.push(g),
                Err(crate::service::RulesApiError::Invalid(RuleErrors(mut e))) => errors.append(&mut e),
                Err(e) => return Err(ApiError::from(e)),
            }
        }
        if errors.is_empty() { Ok(ok) } else { Err(ApiError::InvalidRules(RuleErrors(errors))) }
    })
    .await??;
    let groups: Vec<Value> = checked.iter().map(|g| rule_json(&state, g)).collect();
    Ok(ok_json(json!({ "groups": groups })))
}
