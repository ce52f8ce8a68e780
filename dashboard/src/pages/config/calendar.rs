//! The workday calendar and time windows (`/ui/config/calendar`): a year view of the Chinese
//! holiday calendar (statutory holidays, 调休 make-up workdays, configured and console
//! overrides), overriding one day and clearing an override, and the configured time windows
//! with whether each is open now. The calendar is group-wide: changing it needs
//! `ManageConfig` on every campus.

use super::bad_request;
use crate::pages::data::str_of;
use crate::web::{Actor, Viewer, api_ok};
use crate::{Dashboard, i18n};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, put};
use axum::{Json, Router};
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tingzhen_identity::Permission;

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/ui/config/calendar", get(page))
        .route("/ui/api/config/calendar/{date}", put(set_day).delete(clear_day))
}

#[derive(Debug, Default, Deserialize)]
struct YearQuery {
    year: Option<i32>,
}

async fn page(State(d): State<Dashboard>, v: Viewer, Query(q): Query<YearQuery>) -> Response {
    if let Err(r) = super::require_config_page(&d, &v).await {
        return r;
    }
    let mut params = Vec::new();
    let y;
    if let Some(year) = q.year {
        y = year.to_string();
        params.push(("year", y.as_str()));
    }
    let (cal, windows) = tokio::join!(
        d.backend.get("/api/v1/alerting/calendar", &params),
        d.backend.get("/api/v1/alerting/time-windows", &[])
    );
    let cal = match cal {
        Ok(c) => c,
        Err(e) => return d.backend_page(&v, &e),
    };
    let year = cal["year"].as_i64().unwrap_or(2026) as i32;
    let special: BTreeMap<String, &Value> =
        cal["days"].as_array().into_iter().flatten().map(|day| (str_of(day, "date").to_string(), day)).collect();
    let months: Vec<Value> = (1..=12).filter_map(|m| month(&v, year, m, &special)).collect();
    let days: Vec<Value> = special
        .values()
        .map(|day| {
            let source = str_of(day, "source");
            json!({
                "date": day["date"], "name": day["name"],
                "kind": i18n::text(v.lang(), if day["workday"] == true { "config_cal_workday" } else { "config_cal_holiday" }),
                "source": i18n::text(v.lang(), &format!("config_cal_source_{source}")),
                "clearable": source == "api",
            })
        })
        .collect();
    let windows: Vec<Value> = windows
        .ok()
        .and_then(|w| w.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|w| {
            let intervals: Vec<String> = w["window"]["intervals"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    let list =
                        |k: &str| i[k].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(",");
                    [i["days"].as_str().unwrap_or("").to_string(), list("weekdays"), list("times")]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            json!({"name": w["window"]["name"], "intervals": intervals, "open": w["open"], "next_ms": w["next_change_ms"]})
        })
        .collect();
    d.page(
        &v,
        "pages/config_calendar",
        "config_calendar_title",
        json!({"year": year, "prev": year - 1, "next": year + 1, "months": months, "days": days, "windows": windows,
               "can_edit": v.can(Permission::ManageConfig, None)}),
    )
}

/// One month as weeks of seven cells (Monday first); empty cells pad the first and last week.
fn month(v: &Viewer, year: i32, m: u32, special: &BTreeMap<String, &Value>) -> Option<Value> {
    let first = NaiveDate::from_ymd_opt(year, m, 1)?;
    let next =
        if m == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1)? } else { NaiveDate::from_ymd_opt(year, m + 1, 1)? };
    let mut cells: Vec<Value> = vec![json!({"empty": true}); first.weekday().num_days_from_monday() as usize];
    let mut day = first;
    while day < next {
        let date = day.format("%Y-%m-%d").to_string();
        let weekend = day.weekday().num_days_from_monday() >= 5;
        let (class, title) = match special.get(&date) {
            Some(s) if s["makeup_workday"] == true => ("makeup", str_of(s, "name").to_string()),
            Some(s) if s["holiday"] == true => ("holiday", str_of(s, "name").to_string()),
            Some(s) if s["workday"] == true => ("workday", str_of(s, "name").to_string()),
            Some(s) => ("off", str_of(s, "name").to_string()),
            None if weekend => ("weekend", String::new()),
            None => ("workday", String::new()),
        };
        cells.push(json!({"day": day.day(), "date": date, "class": class, "title": title}));
        day = day.succ_opt()?;
    }
    while !cells.len().is_multiple_of(7) {
        cells.push(json!({"empty": true}));
    }
    let weeks: Vec<Value> = cells.chunks(7).map(|w| json!(w)).collect();
    Some(json!({"name": i18n::text(v.lang(), &format!("config_cal_month_{m}")), "weeks": weeks}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DayForm {
    /// The form also posts the date it put in the path; the path is what counts.
    #[serde(default, rename = "date")]
    _date: String,
    kind: String,
    #[serde(default)]
    name: String,
}

async fn set_day(
    State(d): State<Dashboard>,
    actor: Actor,
    Path(date): Path<String>,
    body: Result<Json<DayForm>, JsonRejection>,
) -> Response {
    let Ok(Json(f)) = body else {
        return bad_request("body: expected {\"kind\": \"holiday\"|\"workday\", \"name\": …}");
    };
    if let Err(r) = d.require(&actor.session, actor.prefs.lang, Permission::ManageConfig, None).await {
        return r;
    }
    let req = json!({"kind": f.kind, "name": f.name.trim(), "by": actor.session.username});
    let path = format!("/api/v1/alerting/calendar/{}", super::silences::enc(date.trim()));
    match d.backend.send(Method::PUT, &path, Some(&req)).await {
        Ok(day) => {
            let detail = format!("calendar {date} set to {} {:?}", f.kind, f.name.trim());
            d.audit(&actor.session, "config_change", detail).await;
            api_ok(day)
        }
        Err(e) => e.into(),
    }
}

async fn clear_day(State(d): State<Dashboard>, actor: Actor, Path(date): Path<String>) -> Response {
    if let Err(r) = d.require(&actor.session, actor.prefs.lang, Permission::ManageConfig, None).await {
        return r;
    }
    let path = format!("/api/v1/alerting/calendar/{}", super::silences::enc(date.trim()));
    match d.backend.send(Method::DELETE, &path, None).await {
        Ok(day) => {
            d.audit(&actor.session, "config_change", format!("calendar {date} override cleared")).await;
            api_ok(day)
        }
        Err(e) => e.into(),
    }
}
