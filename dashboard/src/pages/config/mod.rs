//! The configuration pages (`/ui/config/*`): alert rules, silences, the workday calendar and
//! time windows, receivers with a test send, and the routing tree. Every change goes to the
//! alerting API (which validates it), is refused without `ManageConfig` (or `OperateAlerts`
//! for silences) on the campus it concerns, and is audited. Helpers shared with the alert
//! pages live here.

mod calendar;
mod receivers;
mod rules;
mod silences;

use super::data::now_ms;
use crate::web::{Viewer, api_error};
use crate::{Dashboard, i18n};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use serde_json::json;
use tingzhen_identity::Permission;

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/ui/config", get(index))
        .merge(rules::routes())
        .merge(silences::routes())
        .merge(calendar::routes())
        .merge(receivers::routes())
}

/// A 400 for `/ui/api/*` naming what is wrong.
pub(crate) fn bad_request(message: impl Into<String>) -> Response {
    api_error(StatusCode::BAD_REQUEST, "bad_data", message)
}

/// The campus a set of matchers is limited to: the value of an equality matcher on `campus`.
pub(crate) fn matcher_campus(matchers: &[String]) -> Option<String> {
    matchers.iter().find_map(|m| {
        let rest = m.trim().strip_prefix("campus")?.trim_start();
        let value = rest.strip_prefix('=')?;
        if value.starts_with('~') {
            return None;
        }
        let value = value.trim();
        let unquoted = serde_json::from_str::<String>(value).unwrap_or_else(|_| value.to_string());
        (!unquoted.is_empty()).then_some(unquoted)
    })
}

/// `YYYY-MM-DD` as the Unix ms of its midnight in Asia/Shanghai.
pub(crate) fn local_date_ms(field: &str, s: &str) -> Result<i64, String> {
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{field}: {s:?} is not a date (YYYY-MM-DD)"))?;
    local_ms(field, d.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// `YYYY-MM-DDTHH:MM` (an `<input type=datetime-local>`) in Asia/Shanghai, as Unix ms.
pub(crate) fn local_datetime_ms(field: &str, s: &str) -> Result<i64, String> {
    let s = s.trim();
    let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M"))
        .map_err(|_| format!("{field}: {s:?} is not a date and time (YYYY-MM-DD HH:MM)"))?;
    local_ms(field, t)
}

fn local_ms(field: &str, t: NaiveDateTime) -> Result<i64, String> {
    crate::render::shanghai()
        .from_local_datetime(&t)
        .single()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| format!("{field}: not a valid time"))
}

/// Unix ms as the value of an `<input type=datetime-local>` (Asia/Shanghai).
pub(crate) fn datetime_input(ms: i64) -> String {
    crate::render::shanghai()
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
        .unwrap_or_default()
}

/// Config pages are for people who may change configuration on at least one campus.
pub(crate) async fn require_config_page(d: &Dashboard, v: &Viewer) -> Result<(), Response> {
    let any = v.session.bindings.iter().any(|b| b.role.grants(Permission::ManageConfig));
    if any && v.session.restriction.is_none() {
        return Ok(());
    }
    // Audited refusal through identity (campus None needs an all-campus binding).
    d.require_page(v, Permission::ManageConfig, None).await
}

async fn index(State(d): State<Dashboard>, v: Viewer) -> Response {
    if let Err(r) = require_config_page(&d, &v).await {
        return r;
    }
    let (rules, silences, receivers) = tokio::join!(
        d.backend.get("/api/v1/alerting/rules", &[]),
        d.backend.get("/api/v1/alerting/silences", &[]),
        d.backend.get("/api/v1/alerting/receivers", &[]),
    );
    // Counts of what this person may see on the pages behind the links, nothing more.
    let unavailable = || i18n::text(v.lang(), "config_unavailable");
    let config_scope = crate::web::Scope::of(&v.session, Permission::ManageConfig);
    let rules = match &rules {
        Ok(r) => r["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| super::data::visible(&config_scope, rules::campus_of_group(g).as_deref().unwrap_or("")))
            .count()
            .to_string(),
        Err(_) => unavailable(),
    };
    let (silences, active_silences) = match &silences {
        Ok(s) => {
            let scope = v.scope();
            let mine: Vec<&serde_json::Value> = s
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| super::alerts::silence_visible(&scope, &silences::matchers_of(s)))
                .collect();
            let active = mine.iter().filter(|s| s["status"] == "active").count();
            (mine.len().to_string(), active.to_string())
        }
        Err(_) => (unavailable(), unavailable()),
    };
    let receivers = match &receivers {
        Ok(r) => r["receivers"].as_array().map(|a| a.len()).unwrap_or(0).to_string(),
        Err(_) => unavailable(),
    };
    d.page(
        &v,
        "pages/config_index",
        "config_title",
        json!({
            "rules": rules,
            "silences": silences,
            "active_silences": active_silences,
            "receivers": receivers,
            "now_ms": now_ms(),
        }),
    )
}

#[cfg(test)]
pub(crate) mod testapi;
#[cfg(test)]
mod tests;
