//! The alert pages (MON-10, MON-12, MON-13): active alerts with filters and a live-refreshed
//! table, acknowledging and silencing from an alert, the history of a date range with its
//! summaries (counts by severity/campus/system/rule/host/receiver/channel/outcome, MTTA and
//! MTTR), and the notification log with retrying a dead letter.
//!
//! Summaries come from alerting's `/summary` for viewers of every campus; that answer is
//! group-wide, so for a viewer of some campuses the same figures are computed here from the
//! episodes and notifications they may see, never from another campus's data.

use super::config::{bad_request, local_date_ms, matcher_campus};
use super::data::{self, campus_of, str_of};
use crate::web::{Actor, Scope, Viewer, api_error, api_ok};
use crate::{Dashboard, i18n};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tingzhen_identity::Permission;

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/ui/alerts", get(active_page))
        .route("/ui/partials/alerts", get(active_partial))
        .route("/ui/alerts/history", get(history_page))
        .route("/ui/alerts/notifications", get(notifications_page))
        .route("/ui/alerts/silence/{fingerprint}", get(silence_page))
        .route("/ui/api/alerts/ack", post(ack))
        .route("/ui/api/alerts/dead-letters/{id}/retry", post(retry_dead_letter))
}

#[derive(Debug, Default, Deserialize)]
struct Filter {
    #[serde(default)]
    severity: String,
    #[serde(default)]
    campus: String,
    #[serde(default)]
    state: String,
}

fn refuse(d: &Dashboard, v: &Viewer) -> Response {
    d.message_page(v, StatusCode::FORBIDDEN, "forbidden_title", &i18n::text(v.lang(), "forbidden_text"))
}

fn sees_nothing(v: &Viewer) -> bool {
    matches!(v.scope(), Scope::Campuses(ref s) if s.is_empty())
}

fn severity_class(sev: &str) -> &'static str {
    data::severity_key(sev).trim_start_matches("severity_")
}

async fn active_page(State(d): State<Dashboard>, v: Viewer, Query(f): Query<Filter>) -> Response {
    if sees_nothing(&v) {
        return refuse(&d, &v);
    }
    let body = match active_body(&d, &v, &f).await {
        Ok(b) => b,
        Err(e) => return d.backend_page(&v, &e),
    };
    let qs = serde_urlencoded::to_string([("severity", &f.severity), ("campus", &f.campus), ("state", &f.state)])
        .unwrap_or_default();
    let seen = body["campus_ids"].as_array().into_iter().flatten().filter_map(|c| c.as_str().map(str::to_string));
    let campuses = data::campus_names(&d, seen.collect::<Vec<_>>())
        .into_iter()
        .filter(|c| data::visible(&v.scope(), str_of(c, "id")))
        .map(|c| {
            let id = str_of(&c, "id").to_string();
            json!({"id": id, "name": c["name"], "selected": id == f.campus})
        })
        .collect::<Vec<_>>();
    let severities: Vec<Value> = ["critical", "warning", "info"]
        .iter()
        .map(|s| json!({"id": s, "name": data::severity_text(&v, s), "selected": *s == f.severity}))
        .collect();
    let states: Vec<Value> = ["firing", "pending"]
        .iter()
        .map(
            |s| json!({"id": s, "name": i18n::text(v.lang(), &format!("alerts_state_{s}")), "selected": *s == f.state}),
        )
        .collect();
    let mut data = json!({
        "partial_url": format!("/ui/partials/alerts?{qs}"),
        "filter": {"severity": f.severity, "campus": f.campus, "state": f.state},
        "campuses": campuses,
        "severities": severities,
        "states": states,
    });
    merge(&mut data, body);
    d.page(&v, "pages/alerts", "alerts_title", data)
}

async fn active_partial(State(d): State<Dashboard>, v: Viewer, Query(f): Query<Filter>) -> Response {
    if sees_nothing(&v) {
        return refuse(&d, &v);
    }
    match active_body(&d, &v, &f).await {
        Ok(b) => d.fragment(&v, "partials/alerts_active", b),
        Err(e) => d.backend_page(&v, &e),
    }
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(m), Value::Object(b)) = (into, extra) {
        m.extend(b);
    }
}

async fn active_body(d: &Dashboard, v: &Viewer, f: &Filter) -> Result<Value, crate::BackendError> {
    let alerts = data::alerts(d, v).await?;
    // Routing knows which alerts are acknowledged, silenced or inhibited; without routing
    // configured there is no such state, and the list still shows.
    let mut muted: BTreeMap<String, (bool, bool, bool)> = BTreeMap::new();
    if let Ok(groups) = d.backend.get("/api/v1/alerting/groups", &[]).await {
        for a in groups.as_array().into_iter().flatten().flat_map(|g| g["alerts"].as_array().into_iter().flatten()) {
            let e = muted.entry(str_of(a, "fingerprint").to_string()).or_default();
            e.0 |= a["acked"] == true;
            e.1 |= a["silenced"] == true;
            e.2 |= a["inhibited"] == true;
        }
    }
    let mut campus_ids: Vec<&str> = alerts.iter().map(|a| campus_of(&a["labels"])).collect();
    campus_ids.sort_unstable();
    campus_ids.dedup();
    let rows: Vec<Value> = alerts
        .iter()
        .filter(|a| {
            f.severity.is_empty()
                || data::severity_key(str_of(&a["labels"], "severity")) == format!("severity_{}", f.severity)
        })
        .filter(|a| f.campus.is_empty() || campus_of(&a["labels"]) == f.campus)
        .filter(|a| f.state.is_empty() || str_of(a, "state") == f.state)
        .map(|a| {
            let l = &a["labels"];
            let sev = str_of(l, "severity");
            let campus = campus_of(l);
            let labels: Vec<Value> = l
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != "alertname")
                .map(|(k, v)| json!({"k": k, "v": v}))
                .collect();
            let fp = str_of(a, "fingerprint");
            let (acked, silenced, inhibited) = muted.get(fp).copied().unwrap_or_default();
            json!({
                "acked": acked, "silenced": silenced, "inhibited": inhibited,
                "fingerprint": fp,
                "alertname": l["alertname"],
                "severity_text": data::severity_text(v, sev),
                "severity_class": severity_class(sev),
                "state": a["state"],
                "state_text": i18n::text(v.lang(), &format!("alerts_state_{}", str_of(a, "state"))),
                "campus": d.config.campus_name(campus),
                "labels": labels,
                "summary": a["annotations"]["summary"],
                "value": a["value"],
                "since_ms": a["fired_at_ms"].as_i64().unwrap_or_else(|| a["active_at_ms"].as_i64().unwrap_or(0)),
                "can_operate": v.can(Permission::OperateAlerts, (!campus.is_empty()).then_some(campus)),
                "silence_url": format!("/ui/alerts/silence/{fp}"),
            })
        })
        .collect();
    Ok(json!({"alerts": rows, "count": rows.len(), "campus_ids": campus_ids, "updated_ms": data::now_ms()}))
}

/// `from`/`to` as `YYYY-MM-DD` (Asia/Shanghai); `to` is inclusive.
#[derive(Debug, Default, Deserialize)]
struct DateRange {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

impl DateRange {
    /// `[from, to)` in ms; default: the last 7 days including today.
    fn resolve(&self, now: i64) -> Result<(i64, i64, String, String), String> {
        let today = data::today_start_ms(now);
        let from = if self.from.is_empty() { today - 6 * 86_400_000 } else { local_date_ms("from", &self.from)? };
        let to = if self.to.is_empty() { today } else { local_date_ms("to", &self.to)? } + 86_400_000;
        if to <= from {
            return Err("to: is before from".into());
        }
        if to - from > 366 * 86_400_000 {
            return Err("from: a range is at most one year".into());
        }
        let day = |ms: i64| crate::render::format_ms(ms).get(..10).unwrap_or("").to_string();
        Ok((from, to, day(from), day(to - 86_400_000)))
    }
}

async fn history_page(State(d): State<Dashboard>, v: Viewer, Query(r): Query<DateRange>) -> Response {
    if sees_nothing(&v) {
        return refuse(&d, &v);
    }
    let now = data::now_ms();
    let (from, to, from_day, to_day) = match r.resolve(now) {
        Ok(x) => x,
        Err(e) => return d.message_page(&v, StatusCode::BAD_REQUEST, "error_title", &e),
    };
    let history = match data::history(&d, &v, from, to).await {
        Ok(h) => h,
        Err(e) => return d.backend_page(&v, &e),
    };
    let (today, range) = match summaries(&d, &v, from, to, now).await {
        Ok(x) => x,
        Err(e) => return d.backend_page(&v, &e),
    };
    let mut rows: Vec<Value> = history
        .iter()
        .map(|h| {
            let l = &h["labels"];
            let sev = str_of(l, "severity");
            let started = h["started_at_ms"].as_i64().unwrap_or(0);
            let ended = h["ended_at_ms"].as_i64();
            json!({
                "alertname": h["alertname"],
                "severity_text": data::severity_text(&v, sev),
                "severity_class": severity_class(sev),
                "campus": d.config.campus_name(campus_of(l)),
                "target": first_label(l, &["host", "instance", "target", "interface", "job"]),
                "started_ms": started,
                "ended_ms": ended,
                "acked_ms": h["acked_at_ms"],
                "duration": ended.map(|e| duration_text((e - started) as f64 / 1000.0)),
            })
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r["started_ms"].as_i64().unwrap_or(0)));
    d.page(
        &v,
        "pages/alerts_history",
        "alerts_history_title",
        json!({"from": from_day, "to": to_day, "history": rows, "today": today, "range": range}),
    )
}

fn first_label(labels: &Value, keys: &[&str]) -> String {
    keys.iter().find_map(|k| labels[*k].as_str().filter(|s| !s.is_empty())).unwrap_or("").to_string()
}

/// `1h 5m`, `42s`: a readable duration.
pub(crate) fn duration_text(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return String::new();
    }
    let s = secs.round() as u64;
    let (d, h, m, s) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

const ALERT_DIMS: [&str; 5] = ["severity", "campus", "system", "rule", "host"];
const NOTIFY_DIMS: [&str; 3] = ["receiver", "channel", "outcome"];

/// Today's and `[from, to)`'s summary, as template data.
async fn summaries(
    d: &Dashboard,
    v: &Viewer,
    from: i64,
    to: i64,
    now: i64,
) -> Result<(Value, Value), crate::BackendError> {
    let (today, range) = if v.scope() == Scope::All {
        let (f, t) = ((from as f64 / 1000.0).to_string(), (to as f64 / 1000.0).to_string());
        let s = d.backend.get("/api/v1/alerting/summary", &[("from", &f), ("to", &t)]).await?;
        (s["today"].clone(), s["range"].clone())
    } else {
        let day = data::today_start_ms(now);
        (local_summary(d, v, day, now + 1).await?, local_summary(d, v, from, to).await?)
    };
    Ok((summary_view(d, v, &today), summary_view(d, v, &range)))
}

/// The summary alerting would give, over what this viewer may see only.
async fn local_summary(d: &Dashboard, v: &Viewer, from: i64, to: i64) -> Result<Value, crate::BackendError> {
    let history = data::history(d, v, from, to).await?;
    let mut by: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    let (mut total, mut resolved, mut acked) = (0u64, 0u64, 0u64);
    let (mut tta, mut ttr) = (Vec::new(), Vec::new());
    let key = |v: Option<&str>| v.filter(|s| !s.is_empty()).unwrap_or("(none)").to_string();
    for h in &history {
        let l = &h["labels"];
        let started = h["started_at_ms"].as_i64().unwrap_or(0);
        if let Some(e) = h["ended_at_ms"].as_i64()
            && e >= from
            && e < to
        {
            ttr.push((e - started) as f64 / 1000.0);
        }
        if started < from || started >= to {
            continue;
        }
        total += 1;
        resolved += u64::from(h["ended_at_ms"].is_i64());
        if let Some(a) = h["acked_at_ms"].as_i64() {
            acked += 1;
            tta.push((a - started) as f64 / 1000.0);
        }
        let host = l["host"].as_str().or(l["instance"].as_str());
        for (dim, val) in [
            ("severity", l["severity"].as_str()),
            ("campus", l["campus"].as_str()),
            ("system", l["system"].as_str()),
            ("rule", h["alertname"].as_str()),
            ("host", host),
        ] {
            *by.entry(dim).or_default().entry(key(val)).or_default() += 1;
        }
    }
    let notes = notifications(d, v, from, to).await?;
    let mut nby: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    let mut deliveries = 0u64;
    for n in &notes {
        *nby.entry("receiver").or_default().entry(key(n["receiver"].as_str())).or_default() += 1;
        for dl in n["deliveries"].as_array().into_iter().flatten() {
            deliveries += 1;
            *nby.entry("channel").or_default().entry(key(dl["kind"].as_str())).or_default() += 1;
            *nby.entry("outcome").or_default().entry(key(dl["outcome"].as_str())).or_default() += 1;
        }
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    Ok(json!({
        "from_ms": from, "to_ms": to,
        "alerts": {"total": total, "resolved": resolved, "acknowledged": acked, "by": by},
        "notifications": {"total": notes.len(), "deliveries": deliveries, "by": nby},
        "mtta_seconds": mean(&tta), "mttr_seconds": mean(&ttr),
    }))
}

/// A summary as the template shows it: each breakdown as sorted rows with names and shares.
fn summary_view(d: &Dashboard, v: &Viewer, s: &Value) -> Value {
    let table = |by: &Value, dim: &str| -> Value {
        let mut rows: Vec<(String, u64)> =
            by[dim].as_object().into_iter().flatten().map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0))).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let total: u64 = rows.iter().map(|r| r.1).sum();
        let rows: Vec<Value> = rows
            .into_iter()
            .take(10)
            .map(|(k, n)| {
                let known = |key: String| {
                    let t = i18n::text(v.lang(), &key);
                    (t != key).then_some(t)
                };
                let name = match dim {
                    _ if k == "(none)" => i18n::text(v.lang(), "none"),
                    "campus" => d.config.campus_name(&k),
                    "channel" => known(format!("config_kind_{k}")).unwrap_or(k),
                    "severity" => format!("{} ({k})", data::severity_text(v, &k)),
                    "outcome" => i18n::text(v.lang(), &format!("alerts_outcome_{k}")),
                    _ => k,
                };
                json!({"key": name, "count": n, "share": if total > 0 { n as f64 / total as f64 } else { 0.0 }})
            })
            .collect();
        json!({"dim": dim, "title": i18n::text(v.lang(), &format!("alerts_by_{dim}")), "rows": rows})
    };
    let alerts = &s["alerts"];
    let notes = &s["notifications"];
    json!({
        "alerts_total": alerts["total"], "alerts_resolved": alerts["resolved"], "alerts_acked": alerts["acknowledged"],
        "notifications_total": notes["total"], "deliveries": notes["deliveries"],
        "mtta": s["mtta_seconds"].as_f64().map(duration_text),
        "mttr": s["mttr_seconds"].as_f64().map(duration_text),
        "alert_tables": ALERT_DIMS.iter().map(|dim| table(&alerts["by"], dim)).collect::<Vec<_>>(),
        "notify_tables": NOTIFY_DIMS.iter().map(|dim| table(&notes["by"], dim)).collect::<Vec<_>>(),
    })
}

/// Notifications of `[from, to)` the viewer may see (by their common `campus` label).
async fn notifications(d: &Dashboard, v: &Viewer, from: i64, to: i64) -> Result<Vec<Value>, crate::BackendError> {
    let (f, t) = (from.to_string(), to.to_string());
    let list = d.backend.get("/api/v1/alerting/notifications", &[("from", &f), ("to", &t), ("limit", "10000")]).await?;
    let scope = v.scope();
    Ok(list
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| data::visible(&scope, campus_of(&n["labels"])))
        .collect())
}

async fn notifications_page(State(d): State<Dashboard>, v: Viewer, Query(r): Query<DateRange>) -> Response {
    if sees_nothing(&v) {
        return refuse(&d, &v);
    }
    let now = data::now_ms();
    let (from, to, from_day, to_day) = match r.resolve(now) {
        Ok(x) => x,
        Err(e) => return d.message_page(&v, StatusCode::BAD_REQUEST, "error_title", &e),
    };
    let notes = match notifications(&d, &v, from, to).await {
        Ok(n) => n,
        Err(e) => return d.backend_page(&v, &e),
    };
    let rows: Vec<Value> = notes
        .iter()
        .map(|n| {
            let l = &n["labels"];
            let campus = campus_of(l);
            let can_retry = v.can(Permission::OperateAlerts, (!campus.is_empty()).then_some(campus));
            let deliveries: Vec<Value> = n["deliveries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|dl| {
                    let outcome = str_of(dl, "outcome");
                    json!({
                        "id": dl["delivery_id"], "channel": dl["channel"], "kind": dl["kind"], "role": dl["role"],
                        "outcome": outcome, "outcome_text": i18n::text(v.lang(), &format!("alerts_outcome_{outcome}")),
                        "attempts": dl["attempts"], "error": dl["last_error"], "receipt": dl["receipt"],
                        "finished_ms": dl["finished_at_ms"],
                        "retry": can_retry && outcome == "dead",
                    })
                })
                .collect();
            json!({
                "id": n["id"], "receiver": n["receiver"], "status": n["status"], "alertname": l["alertname"],
                "campus": d.config.campus_name(campus), "alert_count": n["alert_count"],
                "escalation_level": n["escalation_level"], "created_ms": n["created_at_ms"], "deliveries": deliveries,
            })
        })
        .collect();
    d.page(
        &v,
        "pages/alerts_notifications",
        "alerts_notifications_title",
        json!({"from": from_day, "to": to_day, "notifications": rows}),
    )
}

/// The silence form, prefilled with matchers for every label of one active alert.
async fn silence_page(State(d): State<Dashboard>, v: Viewer, Path(fp): Path<String>) -> Response {
    let alerts = match data::alerts(&d, &v).await {
        Ok(a) => a,
        Err(e) => return d.backend_page(&v, &e),
    };
    let Some(a) = alerts.iter().find(|a| str_of(a, "fingerprint") == fp) else {
        return d.message_page(&v, StatusCode::NOT_FOUND, "not_found_title", &i18n::text(v.lang(), "alerts_gone"));
    };
    let campus = campus_of(&a["labels"]);
    if let Err(r) = d.require_page(&v, Permission::OperateAlerts, (!campus.is_empty()).then_some(campus)).await {
        return r;
    }
    let matchers: Vec<String> = a["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, val)| format!("{k}={}", Value::String(val.as_str().unwrap_or("").to_string())))
        .collect();
    d.page(
        &v,
        "pages/alerts_silence",
        "alerts_silence_title",
        json!({
            "alertname": a["labels"]["alertname"],
            "form": {"matchers": matchers.join("\n"), "duration": "2h", "comment": "", "api": "/ui/api/silences",
                     "method": "POST", "redirect": "/ui/alerts"},
        }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckForm {
    fingerprint: String,
    #[serde(default)]
    comment: String,
}

/// Acknowledges one active alert through routing's acks API (stops its escalation).
async fn ack(
    State(d): State<Dashboard>,
    actor: Actor,
    body: Result<Json<AckForm>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(f)) = body else { return bad_request("body: expected {\"fingerprint\": …, \"comment\": …}") };
    let lang = actor.prefs.lang;
    let all = match d.backend.get("/api/v1/alerting/alerts", &[]).await {
        Ok(a) => a,
        Err(e) => return e.into(),
    };
    let Some(alert) =
        all["alerts"].as_array().into_iter().flatten().find(|a| str_of(a, "fingerprint") == f.fingerprint)
    else {
        return api_error(StatusCode::NOT_FOUND, "not_found", i18n::text(lang, "alerts_gone"));
    };
    let campus = campus_of(&alert["labels"]).to_string();
    if let Err(r) =
        d.require(&actor.session, lang, Permission::OperateAlerts, (!campus.is_empty()).then_some(&campus)).await
    {
        return r;
    }
    let req = json!({"fingerprint": f.fingerprint, "by": actor.session.username, "comment": f.comment.trim()});
    match d.backend.send(Method::POST, "/api/v1/alerting/acks", Some(&req)).await {
        Ok(records) => {
            let detail = format!(
                "ack alert {} fingerprint={} campus={} comment={:?}",
                str_of(&alert["labels"], "alertname"),
                f.fingerprint,
                campus,
                f.comment.trim()
            );
            d.audit(&actor.session, "alert_ack", detail).await;
            api_ok(records)
        }
        Err(e) => e.into(),
    }
}

async fn retry_dead_letter(State(d): State<Dashboard>, actor: Actor, Path(id): Path<i64>) -> Response {
    let lang = actor.prefs.lang;
    let dead = match d.backend.get("/api/v1/alerting/dead-letters", &[("from", "0"), ("limit", "10000")]).await {
        Ok(x) => x,
        Err(e) => return e.into(),
    };
    let Some(rec) = dead.as_array().into_iter().flatten().find(|r| r["delivery_id"].as_i64() == Some(id)) else {
        return api_error(StatusCode::NOT_FOUND, "not_found", i18n::text(lang, "alerts_no_dead_letter"));
    };
    let campus = campus_of(&rec["labels"]).to_string();
    if let Err(r) =
        d.require(&actor.session, lang, Permission::OperateAlerts, (!campus.is_empty()).then_some(&campus)).await
    {
        return r;
    }
    match d.backend.send(Method::POST, &format!("/api/v1/alerting/dead-letters/{id}/retry"), None).await {
        Ok(v) => {
            let detail = format!(
                "retry dead letter {id} receiver={} channel={} campus={campus}",
                str_of(rec, "receiver"),
                str_of(rec, "channel")
            );
            d.audit(&actor.session, "notification_retry", detail).await;
            api_ok(v)
        }
        Err(e) => e.into(),
    }
}

/// Whether a silence (its matchers) belongs to a campus the viewer may see.
pub(crate) fn silence_visible(scope: &Scope, matchers: &[String]) -> bool {
    data::visible(scope, matcher_campus(matchers).as_deref().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::super::config::testapi::backend;
    use super::super::testkit::Kit;
    use axum::http::{Method, StatusCode};
    use serde_json::json;
    use tingzhen_identity::audit::{AuditQuery, AuditRecord};

    pub(crate) fn audit(kit: &Kit, event: &str) -> Vec<AuditRecord> {
        let q = AuditQuery { event: Some(event.into()), ..Default::default() };
        kit.dashboard.identity.audit_log().query(&q).unwrap()
    }

    #[tokio::test]
    async fn active_alerts_are_scoped_filtered_escaped_and_refresh() {
        let (api, _) = backend();
        let kit = Kit::new(api);
        let east = kit.login("east-viewer", &[("viewer", "east")]);
        let page = kit.get("/ui/alerts", Some(&east)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains(r#"id="alerts-table""#) && page.body.contains(r#"data-fingerprint="fp-east""#));
        assert!(!page.body.contains("fp-west") && !page.body.contains("WestDiskFull"), "west is hidden");
        assert!(page.body.contains("&lt;script&gt;alert(1)") && !page.body.contains("<script>alert(1)"));
        assert!(!page.body.contains("ack-button"), "a viewer gets no acknowledge button");
        let frag = kit.get("/ui/partials/alerts?severity=warning", Some(&east)).await;
        assert_eq!(frag.status, StatusCode::OK);
        assert!(!frag.body.contains("<html") && !frag.body.contains("fp-east"), "filtered out: {}", frag.body);

        let ops = kit.login("ops-all", &[("ops", "*")]);
        let all = kit.get("/ui/alerts?campus=west", Some(&ops)).await;
        assert!(all.body.contains("fp-west") && !all.body.contains(r#"data-fingerprint="fp-east""#));
        assert!(!all.body.contains("ack-button"), "west's alert is already acknowledged: {}", all.body);
        assert!(all.body.contains("badge acked") && all.body.contains("badge silenced"));
        assert!(all.body.contains("silence-button"));
        let east_row = kit.get("/ui/alerts?campus=east", Some(&ops)).await;
        assert!(east_row.body.contains("ack-button") && !east_row.body.contains("badge acked"));
        assert!(all.body.contains(r#"<option value="west" selected>"#), "campus filter lists alert campuses");
        let auditor = kit.login("aud", &[("auditor", "*")]);
        assert_eq!(kit.get("/ui/alerts", Some(&auditor)).await.status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn acknowledging_reaches_routing_is_audited_and_needs_rights_and_csrf() {
        let (api, rec) = backend();
        let kit = Kit::new(api);
        let ops = kit.login("east-ops", &[("ops", "east")]);
        let viewer = kit.login("east-viewer", &[("viewer", "east")]);
        let body = json!({"fingerprint": "fp-east", "comment": "DBA 处理中"});

        let no_csrf = kit.call(Method::POST, "/ui/api/alerts/ack", None, Some(body.clone())).await;
        assert!(no_csrf.status == StatusCode::UNAUTHORIZED || no_csrf.status == StatusCode::FORBIDDEN);
        let mut forged = ops.clone();
        forged.csrf = "wrong".into();
        let refused = kit.send(Method::POST, "/ui/api/alerts/ack", &forged, Some(body.clone())).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
        let refused = kit.send(Method::POST, "/ui/api/alerts/ack", &viewer, Some(body.clone())).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "a viewer cannot acknowledge");
        let west = json!({"fingerprint": "fp-west"});
        let refused = kit.send(Method::POST, "/ui/api/alerts/ack", &ops, Some(west)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "east ops cannot acknowledge a west alert");
        assert!(rec.writes().is_empty(), "nothing reached the backend: {:?}", rec.writes());

        let done = kit.send(Method::POST, "/ui/api/alerts/ack", &ops, Some(body)).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
        let sent = rec.wrote("POST", "/api/v1/alerting/acks").expect("ack reached routing");
        assert_eq!(sent, json!({"fingerprint": "fp-east", "by": "east-ops", "comment": "DBA 处理中"}));
        let acks = audit(&kit, "alert_ack");
        assert!(acks.iter().any(|r| r.actor == "east-ops" && r.detail.contains("fp-east")), "{acks:?}");
        let gone = kit.send(Method::POST, "/ui/api/alerts/ack", &ops, Some(json!({"fingerprint": "nope"}))).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn silencing_from_an_alert_prefills_its_labels_and_creates_the_silence() {
        let (api, rec) = backend();
        let kit = Kit::new(api);
        let ops = kit.login("east-ops", &[("ops", "east")]);
        let form = kit.get("/ui/alerts/silence/fp-east", Some(&ops)).await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        assert!(form.body.contains(r#"id="silence-form""#));
        assert!(
            form.body.contains("campus&#x3D;&quot;east&quot;")
                && form.body.contains("host&#x3D;&quot;east-db-01&quot;"),
            "{}",
            form.body
        );
        let viewer = kit.login("east-viewer", &[("viewer", "east")]);
        assert_eq!(kit.get("/ui/alerts/silence/fp-east", Some(&viewer)).await.status, StatusCode::FORBIDDEN);

        let body = json!({"matchers": "alertname=\"PgDown\"\ncampus=\"east\"\n", "duration": "2h", "comment": "换盘",
                          "starts": "", "ends": ""});
        let refused = kit.send(Method::POST, "/ui/api/silences", &viewer, Some(body.clone())).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let group_wide = json!({"matchers": "alertname=\"PgDown\"", "duration": "2h", "comment": "x"});
        let refused = kit.send(Method::POST, "/ui/api/silences", &ops, Some(group_wide)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "a silence without campus matcher is group-wide");
        let no_reason = json!({"matchers": "campus=\"east\"", "duration": "2h", "comment": " "});
        let bad = kit.send(Method::POST, "/ui/api/silences", &ops, Some(no_reason)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.body.contains("comment"), "the API's message names the field: {}", bad.body);

        let done = kit.send(Method::POST, "/ui/api/silences", &ops, Some(body)).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
        let spec = rec.writes().into_iter().rev().find(|c| c.1 == "/api/v1/alerting/silences").unwrap().2;
        assert_eq!(spec["matchers"], json!(["alertname=\"PgDown\"", "campus=\"east\""]));
        assert_eq!(spec["duration"], "2h");
        assert_eq!(spec["created_by"], "east-ops");
        assert!(audit(&kit, "silence_create").iter().any(|r| r.actor == "east-ops" && r.detail.contains("PgDown")));
    }

    #[tokio::test]
    async fn history_and_summaries_are_cut_to_the_viewers_campuses() {
        let (api, _) = backend();
        let kit = Kit::new(api);
        let admin = kit.login("admin1", &[("admin", "*")]);
        let page = kit.get("/ui/alerts/history?from=2026-01-01&to=2026-12-31", Some(&admin)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("summary-today") && page.body.contains("summary-range"));
        assert!(page.body.contains("PgDown") && page.body.contains("WestDiskFull"));
        assert!(page.body.contains("1m 0s"), "MTTA from the API summary: {}", page.body);

        let east = kit.login("east-viewer", &[("viewer", "east")]);
        let page = kit.get("/ui/alerts/history", Some(&east)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("PgDown") && !page.body.contains("WestDiskFull"), "{}", page.body);
        assert!(!page.body.contains(">west<"), "no west row in any breakdown");
        let bad = kit.get("/ui/alerts/history?from=2026-13-01", Some(&east)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.body.contains("from"));
    }

    #[tokio::test]
    async fn notification_log_shows_outcomes_and_retries_a_dead_letter() {
        let (api, rec) = backend();
        let kit = Kit::new(api);
        let ops = kit.login("east-ops", &[("ops", "east")]);
        let page = kit.get("/ui/alerts/notifications", Some(&ops)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains(r#"id="retry-7""#) && !page.body.contains("retry-8"), "{}", page.body);
        assert!(page.body.contains("rejected: HTTP 400"));

        let refused = kit.send(Method::POST, "/ui/api/alerts/dead-letters/8/retry", &ops, None).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "west's dead letter");
        let viewer = kit.login("east-viewer", &[("viewer", "east")]);
        let refused = kit.send(Method::POST, "/ui/api/alerts/dead-letters/7/retry", &viewer, None).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let done = kit.send(Method::POST, "/ui/api/alerts/dead-letters/7/retry", &ops, None).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
        assert!(rec.wrote("POST", "/api/v1/alerting/dead-letters/7/retry").is_some());
        assert!(rec.wrote("POST", "/api/v1/alerting/dead-letters/8/retry").is_none());
        assert!(audit(&kit, "notification_retry").iter().any(|r| r.detail.contains("dead letter 7")));
    }
}
