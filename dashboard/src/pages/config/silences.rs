//! Silences: the list (`/ui/config/silences`), a new one, editing one that has not expired,
//! expiring one. A silence belongs to the campus its `campus="…"` matcher names; one without
//! such a matcher is group-wide. Creating, editing and expiring need `OperateAlerts` there.

use super::{bad_request, datetime_input, local_datetime_ms, matcher_campus};
use crate::pages::alerts::silence_visible;
use crate::pages::data::str_of;
use crate::web::{Actor, Viewer, api_ok};
use crate::{Dashboard, i18n};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tingzhen_identity::Permission;

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/ui/config/silences", get(list))
        .route("/ui/config/silences/new", get(new_page))
        .route("/ui/config/silences/{id}/edit", get(edit_page))
        .route("/ui/api/silences", post(create))
        .route("/ui/api/silences/{id}", put(update).delete(expire))
}

fn campus_opt(c: &Option<String>) -> Option<&str> {
    c.as_deref()
}

async fn require_silence_page(d: &Dashboard, v: &Viewer) -> Result<(), Response> {
    if v.session.bindings.iter().any(|b| b.role.grants(Permission::OperateAlerts)) && v.session.restriction.is_none() {
        return Ok(());
    }
    d.require_page(v, Permission::OperateAlerts, None).await
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|m| m.as_str().map(str::to_string)).collect()
}

pub(super) fn matchers_of(s: &Value) -> Vec<String> {
    strings(&s["matchers"])
}

async fn list(State(d): State<Dashboard>, v: Viewer) -> Response {
    if let Err(r) = require_silence_page(&d, &v).await {
        return r;
    }
    let all = match d.backend.get("/api/v1/alerting/silences", &[]).await {
        Ok(s) => s,
        Err(e) => return d.backend_page(&v, &e),
    };
    let scope = v.scope();
    let mut rows: Vec<Value> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| silence_visible(&scope, &matchers_of(s)))
        .map(|s| {
            let matchers = matchers_of(s);
            let campus = matcher_campus(&matchers);
            let status = str_of(s, "status");
            let can = v.can(Permission::OperateAlerts, campus_opt(&campus));
            json!({
                "id": s["id"], "matchers": matchers, "comment": s["comment"], "created_by": s["created_by"],
                "starts_ms": s["starts_at_ms"], "ends_ms": s["ends_at_ms"], "status": status,
                "status_text": i18n::text(v.lang(), &format!("config_silence_{status}")),
                "recurrence": s["recurrence"].as_object().map(|r| recurrence_text(&Value::Object(r.clone()))),
                "campus": campus.as_deref().map(|c| d.config.campus_name(c)),
                "editable": can && status != "expired",
                "expire_body": "{}",
            })
        })
        .collect();
    rows.sort_by_key(|r| (r["status"] == "expired", std::cmp::Reverse(r["starts_ms"].as_i64().unwrap_or(0))));
    d.page(&v, "pages/config_silences", "config_silences_title", json!({"silences": rows}))
}

fn recurrence_text(r: &Value) -> String {
    let list = |k: &str| r[k].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(",");
    let days = r["days"].as_str().unwrap_or("");
    [days.to_string(), list("weekdays"), list("times")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn new_page(State(d): State<Dashboard>, v: Viewer) -> Response {
    if let Err(r) = require_silence_page(&d, &v).await {
        return r;
    }
    d.page(
        &v,
        "pages/config_silence_edit",
        "config_silence_new",
        json!({"form": {"matchers": "", "duration": "2h", "comment": "", "api": "/ui/api/silences", "method": "POST",
                        "redirect": "/ui/config/silences"}}),
    )
}

async fn edit_page(State(d): State<Dashboard>, v: Viewer, Path(id): Path<String>) -> Response {
    let s = match d.backend.get(&format!("/api/v1/alerting/silences/{}", enc(&id)), &[]).await {
        Ok(s) => s,
        Err(e) => return d.backend_page(&v, &e),
    };
    let matchers = matchers_of(&s);
    let campus = matcher_campus(&matchers);
    if !silence_visible(&v.scope(), &matchers) {
        // Same answer as a missing id, so ids of other campuses cannot be probed.
        return d.message_page(&v, StatusCode::NOT_FOUND, "not_found_title", &i18n::text(v.lang(), "not_found_title"));
    }
    if let Err(r) = d.require_page(&v, Permission::OperateAlerts, campus_opt(&campus)).await {
        return r;
    }
    d.page(
        &v,
        "pages/config_silence_edit",
        "config_silence_edit",
        json!({"form": {
            "id": id, "matchers": matchers.join("\n"), "comment": s["comment"],
            "starts": datetime_input(s["starts_at_ms"].as_i64().unwrap_or(0)),
            "ends": s["ends_at_ms"].as_i64().map(datetime_input).unwrap_or_default(),
            "days": s["recurrence"]["days"], "weekdays": strings(&s["recurrence"]["weekdays"]).join(","),
            "times": strings(&s["recurrence"]["times"]).join(","),
            "duration": "", "api": format!("/ui/api/silences/{}", enc(&id)), "method": "PUT",
            "redirect": "/ui/config/silences",
        }}),
    )
}

pub(crate) fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap_or_default().trim_start_matches('=').replace('+', "%20")
}

/// The silence form: matchers one per line, an optional start, an end or a duration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceForm {
    matchers: String,
    #[serde(default)]
    starts: String,
    #[serde(default)]
    ends: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    comment: String,
    /// Recurring silences: `all`/`workdays`/`restdays`/`holidays` (empty = all) …
    #[serde(default)]
    days: String,
    /// … `mon-fri`, `sat,sun` (empty = every weekday) …
    #[serde(default)]
    weekdays: String,
    /// … and `02:00-04:00` ranges (empty = the whole day). All empty: a one-off silence.
    #[serde(default)]
    times: String,
}

fn split_list(s: &str) -> Vec<String> {
    s.split([',', ' ', '\n', '，']).map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
}

impl SilenceForm {
    /// The weekly pattern the form describes (the API validates it), if any.
    fn recurrence(&self) -> Option<Value> {
        let (weekdays, times) = (split_list(&self.weekdays), split_list(&self.times));
        let days = self.days.trim();
        if weekdays.is_empty() && times.is_empty() && (days.is_empty() || days == "all") {
            return None;
        }
        let mut r = json!({"weekdays": weekdays, "times": times});
        if !days.is_empty() {
            r["days"] = json!(days);
        }
        Some(r)
    }

    /// The API's `SilenceSpec`; the API validates matchers, times and the comment.
    fn spec(&self, by: &str) -> Result<(Value, Vec<String>), String> {
        let matchers: Vec<String> =
            self.matchers.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
        if matchers.is_empty() {
            return Err("matchers: give at least one matcher, e.g. host=\"his-db-01\"".into());
        }
        let mut spec = json!({"matchers": matchers, "created_by": by, "comment": self.comment.trim()});
        if !self.starts.trim().is_empty() {
            spec["starts_at_ms"] = json!(local_datetime_ms("starts", &self.starts)?);
        }
        if !self.ends.trim().is_empty() {
            spec["ends_at_ms"] = json!(local_datetime_ms("ends", &self.ends)?);
        }
        if !self.duration.trim().is_empty() {
            spec["duration"] = json!(self.duration.trim());
        }
        if let Some(r) = self.recurrence() {
            spec["recurrence"] = r;
        }
        Ok((spec, matchers))
    }
}

async fn create(State(d): State<Dashboard>, actor: Actor, body: Result<Json<SilenceForm>, JsonRejection>) -> Response {
    let Ok(Json(f)) = body else { return bad_request("body: expected the silence form's fields") };
    let (spec, matchers) = match f.spec(&actor.session.username) {
        Ok(x) => x,
        Err(e) => return bad_request(e),
    };
    let campus = matcher_campus(&matchers);
    if let Err(r) = d.require(&actor.session, actor.prefs.lang, Permission::OperateAlerts, campus_opt(&campus)).await {
        return r;
    }
    match d.backend.send(Method::POST, "/api/v1/alerting/silences", Some(&spec)).await {
        Ok(s) => {
            let detail = format!(
                "create silence {} matchers={:?} ends={} comment={:?}",
                str_of(&s, "id"),
                matchers,
                crate::render::format_ms(s["ends_at_ms"].as_i64().unwrap_or(0)),
                f.comment.trim()
            );
            d.audit(&actor.session, "silence_create", detail).await;
            api_ok(s)
        }
        Err(e) => e.into(),
    }
}

/// The stored silence, refused (as not found) outside the actor's scope, plus its campus.
async fn existing(d: &Dashboard, actor: &Actor, id: &str) -> Result<(Value, Option<String>), Response> {
    let s = d.backend.get(&format!("/api/v1/alerting/silences/{}", enc(id)), &[]).await.map_err(Response::from)?;
    let matchers = matchers_of(&s);
    let scope = crate::web::Scope::of(&actor.session, Permission::ViewMonitoring);
    if !silence_visible(&scope, &matchers) {
        return Err(crate::web::api_error(StatusCode::NOT_FOUND, "not_found", format!("silence {id:?} not found")));
    }
    let campus = matcher_campus(&matchers);
    d.require(&actor.session, actor.prefs.lang, Permission::OperateAlerts, campus_opt(&campus)).await?;
    Ok((s, campus))
}

async fn update(
    State(d): State<Dashboard>,
    actor: Actor,
    Path(id): Path<String>,
    body: Result<Json<SilenceForm>, JsonRejection>,
) -> Response {
    let Ok(Json(f)) = body else { return bad_request("body: expected the silence form's fields") };
    let (old, _) = match existing(&d, &actor, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (spec, matchers) = match f.spec(&actor.session.username) {
        Ok(x) => x,
        Err(e) => return bad_request(e),
    };
    // The new matchers must also be inside the actor's campus (no moving a silence out of it).
    let campus = matcher_campus(&matchers);
    if let Err(r) = d.require(&actor.session, actor.prefs.lang, Permission::OperateAlerts, campus_opt(&campus)).await {
        return r;
    }
    match d.backend.send(Method::PUT, &format!("/api/v1/alerting/silences/{}", enc(&id)), Some(&spec)).await {
        Ok(s) => {
            let detail = format!(
                "edit silence {id} matchers={:?} (was {:?}) comment={:?}",
                matchers,
                matchers_of(&old),
                f.comment.trim()
            );
            d.audit(&actor.session, "config_change", detail).await;
            api_ok(s)
        }
        Err(e) => e.into(),
    }
}

async fn expire(State(d): State<Dashboard>, actor: Actor, Path(id): Path<String>) -> Response {
    let (old, _) = match existing(&d, &actor, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match d.backend.send(Method::DELETE, &format!("/api/v1/alerting/silences/{}", enc(&id)), None).await {
        Ok(s) => {
            d.audit(&actor.session, "config_change", format!("expire silence {id} matchers={:?}", matchers_of(&old)))
                .await;
            api_ok(s)
        }
        Err(e) => e.into(),
    }
}
