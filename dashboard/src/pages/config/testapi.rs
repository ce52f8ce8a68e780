//! A stand-in for alerting's API in the alert and config page tests: the real routes and JSON
//! shapes (copied from alerting's handlers: alerts, history, summary, acks, silences, rules,
//! rules-check, calendar, time windows, receivers, routing config, notifications, dead
//! letters), with state for what the pages change and a log of every write it received, so
//! a test can check that a change reached the backend. Two campuses: east and west.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// One write the API received: method, path, JSON body (Null when none).
pub(crate) type Call = (String, String, Value);

#[derive(Clone, Default)]
pub(crate) struct Api {
    pub calls: Arc<Mutex<Vec<Call>>>,
    silences: Arc<Mutex<Vec<Value>>>,
    groups: Arc<Mutex<Vec<Value>>>,
}

impl Api {
    pub fn writes(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn wrote(&self, method: &str, path: &str) -> Option<Value> {
        self.writes().into_iter().find(|(m, p, _)| m == method && p == path).map(|c| c.2)
    }
}

fn ok(v: Value) -> Response {
    Json(json!({"status": "success", "data": v})).into_response()
}

fn bad(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"status": "error", "errorType": "bad_data", "error": msg}))).into_response()
}

fn not_found(msg: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"status": "error", "errorType": "not_found", "error": msg}))).into_response()
}

fn record(api: &Api, method: &Method, uri: &Uri, body: &Bytes) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    api.calls.lock().unwrap().push((method.to_string(), uri.path().to_string(), v.clone()));
    v
}

fn alert(fp: &str, name: &str, campus: &str, sev: &str, summary: &str) -> Value {
    let now = tingzhen_core::now_ms();
    json!({"fingerprint": fp, "rule": format!("g/{name}"),
           "labels": {"alertname": name, "campus": campus, "severity": sev, "host": format!("{campus}-db-01")},
           "annotations": {"summary": summary}, "state": "firing", "active_at_ms": now - 120_000,
           "fired_at_ms": now - 60_000, "resolved_at_ms": null, "value": "93.5", "source": {"kind": "rule", "id": "g"}})
}

fn history_row(id: i64, name: &str, campus: &str, acked: bool) -> Value {
    let now = tingzhen_core::now_ms();
    json!({"id": id, "rule_key": format!("g/{name}"), "fingerprint": format!("fp-{campus}"), "alertname": name,
           "labels": {"alertname": name, "campus": campus, "severity": "critical", "host": format!("{campus}-db-01")},
           "source": "rule", "started_at_ms": now - 600_000, "ended_at_ms": now - 60_000,
           "acked_at_ms": if acked { json!(now - 540_000) } else { Value::Null }, "value": 1.0})
}

fn period(campus_counts: Value) -> Value {
    json!({"from_ms": 0, "to_ms": 1,
           "alerts": {"total": 2, "resolved": 2, "acknowledged": 1,
                      "by": {"campus": campus_counts, "severity": {"critical": 2}, "rule": {"PgDown": 1, "WestDiskFull": 1}}},
           "notifications": {"total": 2, "deliveries": 2, "by": {"receiver": {"ops": 2}, "channel": {"webhook": 2}, "outcome": {"dead": 2}}},
           "leaderboards": {"hosts": [], "rules": [], "systems": [], "campuses": []},
           "mtta_seconds": 60.0, "mttr_seconds": 540.0})
}

fn delivery(id: i64, campus: &str) -> Value {
    json!({"delivery_id": id, "notification_id": id, "idempotency_key": format!("k{id}"), "receiver": "ops",
           "group_key": "g", "status": "firing", "escalation_level": 0, "alert_count": 1,
           "labels": {"alertname": if campus == "east" { "PgDown" } else { "WestDiskFull" }, "campus": campus},
           "channel": "webhook:itsm", "kind": "webhook", "role": "primary", "outcome": "dead", "attempts": 8,
           "created_at_ms": tingzhen_core::now_ms() - 300_000, "finished_at_ms": tingzhen_core::now_ms() - 200_000,
           "last_error": "rejected: HTTP 400", "receipt": null, "notification_created_at_ms": tingzhen_core::now_ms() - 300_000})
}

fn notification(id: i64, campus: &str) -> Value {
    let d = delivery(id, campus);
    json!({"id": id, "idempotency_key": d["idempotency_key"], "receiver": "ops", "group_key": "g", "status": "firing",
           "escalation_level": 0, "alert_count": 1, "labels": d["labels"], "created_at_ms": d["created_at_ms"],
           "deliveries": [d]})
}

fn group_json(spec: &Value, file: bool) -> Value {
    let rules: Vec<Value> = spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            json!({"key": "k", "alert": r["alert"], "expr": r["expr"], "for": r["for"].as_str().unwrap_or("0s"),
                   "keep_firing_for": "0s", "labels": r["labels"], "annotations": r["annotations"], "health": "ok",
                   "last_error": null, "last_evaluation_ms": 1, "evaluation_seconds": 0.001})
        })
        .collect();
    let source =
        if file { json!({"kind": "file", "path": "/etc/tingzhen/rules/base.yml"}) } else { json!({"kind": "api"}) };
    json!({"name": spec["name"], "source": source, "interval": spec["interval"].as_str().unwrap_or("1m"),
           "query_offset": "0s", "limit": null, "rules": rules, "spec": spec})
}

/// What alerting's validation would refuse, with its kind of message.
fn invalid_group(g: &Value) -> Option<String> {
    for (i, r) in g["rules"].as_array().into_iter().flatten().enumerate() {
        if r["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
            return Some(format!(
                "group {:?}, rule {}: expr: must not be empty",
                g["name"].as_str().unwrap_or(""),
                i + 1
            ));
        }
    }
    None
}

fn silence_of(id: &str, spec: &Value) -> Value {
    let now = tingzhen_core::now_ms();
    let starts = spec["starts_at_ms"].as_i64().unwrap_or(now);
    let ends = spec["ends_at_ms"].as_i64().unwrap_or(starts + 7_200_000);
    json!({"id": id, "matchers": spec["matchers"], "starts_at_ms": starts, "ends_at_ms": ends,
           "created_by": spec["created_by"], "comment": spec["comment"], "recurrence": spec["recurrence"],
           "created_at_ms": now, "updated_at_ms": now, "status": "active"})
}

pub(crate) fn backend() -> (Router, Api) {
    let api = Api::default();
    {
        let mut s = api.silences.lock().unwrap();
        s.push(silence_of(
            "sil-east",
            &json!({"matchers": ["campus=\"east\"", "host=\"east-db-01\""], "created_by": "li", "comment": "东院换盘"}),
        ));
        s.push(silence_of(
            "sil-west",
            &json!({"matchers": ["campus=\"west\""], "created_by": "wang", "comment": "西院机房搬迁"}),
        ));
        let mut g = api.groups.lock().unwrap();
        g.push(json!({"name": "east-db", "interval": "1m", "labels": {"campus": "east"},
                      "rules": [{"alert": "PgDown", "expr": "pg_up == 0", "for": "1m", "labels": {"severity": "critical"}}]}));
        g.push(json!({"name": "west-db", "rules": [{"alert": "WestDiskFull", "expr": "disk_used > 0.9",
                      "labels": {"severity": "warning", "campus": "west"}}]}));
    }
    let router = Router::new()
        .route(
            "/api/v1/alerting/alerts",
            get(|| async {
                ok(json!({"alerts": [
                    alert("fp-east", "PgDown", "east", "critical", "<script>alert(1)</script>"),
                    alert("fp-west", "WestDiskFull", "west", "warning", "西院磁盘满"),
                ]}))
            }),
        )
        .route(
            "/api/v1/alerting/groups",
            get(|| async {
                ok(json!([{"group_key": "{}:{alertname=\"WestDiskFull\"}", "route": "{}", "receiver": "ops",
                           "group_labels": {"alertname": "WestDiskFull"},
                           "alerts": [{"fingerprint": "fp-west", "labels": {"alertname": "WestDiskFull"}, "state": "firing",
                                       "starts_at_ms": 1, "silenced": true, "inhibited": false, "acked": true}],
                           "last_notified_ms": null, "next_flush_ms": 0, "held": null, "escalation_level": 0,
                           "acked_at_ms": 2, "acked_by": "wang"}]))
            }),
        )
        .route(
            "/api/v1/alerting/history",
            get(|| async {
                ok(json!({"history": [history_row(1, "PgDown", "east", true), history_row(2, "WestDiskFull", "west", false)]}))
            }),
        )
        .route(
            "/api/v1/alerting/summary",
            get(|| async { ok(json!({"today": period(json!({"east": 1, "west": 1})), "range": period(json!({"east": 1, "west": 1}))})) }),
        )
        .route(
            "/api/v1/alerting/notifications",
            get(|| async { Json(json!({"status": "success", "data": [notification(7, "east"), notification(8, "west")]})) }),
        )
        .route(
            "/api/v1/alerting/dead-letters",
            get(|| async { Json(json!({"status": "success", "data": [delivery(7, "east"), delivery(8, "west")]})) }),
        )
        .route(
            "/api/v1/alerting/dead-letters/{id}/retry",
            post(|State(api): State<Api>, m: Method, u: Uri, Path(id): Path<i64>, b: Bytes| async move {
                record(&api, &m, &u, &b);
                Json(json!({"status": "success", "data": {"delivery_id": id, "queued": true}}))
            }),
        )
        .route(
            "/api/v1/alerting/acks",
            post(|State(api): State<Api>, m: Method, u: Uri, b: Bytes| async move {
                let v = record(&api, &m, &u, &b);
                if v["by"].as_str().is_none_or(str::is_empty) {
                    return bad("by: say who acknowledges");
                }
                ok(json!([{"group_key": "g", "fingerprint": v["fingerprint"], "alertname": "PgDown",
                           "alert_starts_at_ms": 1, "first_notified_ms": 2, "acked_at_ms": 3, "acked_by": v["by"],
                           "comment": v["comment"]}]))
            }),
        )
        .route(
            "/api/v1/alerting/silences",
            get(|State(api): State<Api>| async move { ok(json!(api.silences.lock().unwrap().clone())) }).post(
                |State(api): State<Api>, m: Method, u: Uri, b: Bytes| async move {
                    let v = record(&api, &m, &u, &b);
                    if v["comment"].as_str().is_none_or(|c| c.trim().is_empty()) {
                        return bad("comment: say why (e.g. the change ticket)");
                    }
                    let s = silence_of("sil-new", &v);
                    api.silences.lock().unwrap().push(s.clone());
                    (StatusCode::CREATED, Json(json!({"status": "success", "data": s}))).into_response()
                },
            ),
        )
        .route(
            "/api/v1/alerting/silences/{id}",
            get(|State(api): State<Api>, Path(id): Path<String>| async move {
                let found = api.silences.lock().unwrap().iter().find(|s| s["id"] == id.as_str()).cloned();
                found.map(ok).unwrap_or_else(|| not_found(&format!("silence {id:?} not found")))
            })
            .put(|State(api): State<Api>, m: Method, u: Uri, Path(id): Path<String>, b: Bytes| async move {
                let v = record(&api, &m, &u, &b);
                let s = silence_of(&id, &v);
                let mut all = api.silences.lock().unwrap();
                all.retain(|x| x["id"] != id.as_str());
                all.push(s.clone());
                ok(s)
            })
            .delete(|State(api): State<Api>, m: Method, u: Uri, Path(id): Path<String>, b: Bytes| async move {
                record(&api, &m, &u, &b);
                let mut all = api.silences.lock().unwrap();
                match all.iter_mut().find(|x| x["id"] == id.as_str()) {
                    Some(s) => {
                        s["status"] = json!("expired");
                        ok(s.clone())
                    }
                    None => not_found(&format!("silence {id:?} not found")),
                }
            }),
        )
        .route(
            "/api/v1/alerting/rules",
            get(|State(api): State<Api>| async move {
                let mut groups: Vec<Value> = api.groups.lock().unwrap().iter().map(|g| group_json(g, false)).collect();
                groups.push(group_json(
                    &json!({"name": "base", "rules": [{"alert": "HostDown", "expr": "up == 0", "labels": {"severity": "critical"}}]}),
                    true,
                ));
                ok(json!({"groups": groups}))
            })
            .post(|State(api): State<Api>, m: Method, u: Uri, b: Bytes| async move {
                let v = record(&api, &m, &u, &b);
                if let Some(e) = invalid_group(&v) {
                    return bad(&e);
                }
                api.groups.lock().unwrap().push(v.clone());
                (StatusCode::CREATED, Json(json!({"status": "success", "data": {"groups": [group_json(&v, false)]}})))
                    .into_response()
            }),
        )
        .route(
            "/api/v1/alerting/rules/{group}",
            get(|State(api): State<Api>, Path(name): Path<String>| async move {
                if name == "base" {
                    return ok(group_json(&json!({"name": "base", "rules": [{"alert": "HostDown", "expr": "up == 0"}]}), true));
                }
                let found = api.groups.lock().unwrap().iter().find(|g| g["name"] == name.as_str()).cloned();
                found.map(|g| ok(group_json(&g, false))).unwrap_or_else(|| not_found(&format!("rule group {name:?} not found")))
            })
            .put(|State(api): State<Api>, m: Method, u: Uri, Path(name): Path<String>, b: Bytes| async move {
                let v = record(&api, &m, &u, &b);
                if let Some(e) = invalid_group(&v) {
                    return bad(&e);
                }
                let mut all = api.groups.lock().unwrap();
                all.retain(|g| g["name"] != name.as_str());
                all.push(v.clone());
                ok(group_json(&v, false))
            })
            .delete(|State(api): State<Api>, m: Method, u: Uri, Path(name): Path<String>, b: Bytes| async move {
                record(&api, &m, &u, &b);
                api.groups.lock().unwrap().retain(|g| g["name"] != name.as_str());
                StatusCode::NO_CONTENT.into_response()
            }),
        )
        .route(
            "/api/v1/alerting/rules-check",
            post(|State(api): State<Api>, m: Method, u: Uri, b: Bytes| async move {
                let v = record(&api, &m, &u, &b);
                match invalid_group(&v) {
                    Some(e) => bad(&e),
                    None => ok(json!({"groups": [group_json(&v, false)]})),
                }
            }),
        )
        .route(
            "/api/v1/query",
            get(|| async {
                ok(json!({"resultType": "vector", "result": [
                    {"metric": {"host": "east-db-01", "campus": "east"}, "value": [1764115200.0, "93.5"]},
                    {"metric": {"host": "west-db-01", "campus": "west"}, "value": [1764115200.0, "97"]}
                ]}))
            }),
        )
        .route(
            "/api/v1/alerting/calendar",
            get(|| async {
                ok(json!({"year": 2026, "days": [
                    {"date": "2026-10-01", "weekday": 4, "workday": false, "holiday": true, "makeup_workday": false, "name": "国庆节", "source": "statutory"},
                    {"date": "2026-10-10", "weekday": 6, "workday": true, "holiday": false, "makeup_workday": true, "name": "国庆节调休", "source": "statutory"},
                    {"date": "2026-11-20", "weekday": 5, "workday": false, "holiday": true, "makeup_workday": false, "name": "院庆", "source": "api"},
                ]}))
            }),
        )
        .route(
            "/api/v1/alerting/calendar/{date}",
            get(|Path(date): Path<String>| async move { ok(json!({"date": date})) })
                .put(|State(api): State<Api>, m: Method, u: Uri, Path(date): Path<String>, b: Bytes| async move {
                    let v = record(&api, &m, &u, &b);
                    if chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").is_err() {
                        return bad(&format!("date: invalid date {date:?}: expected YYYY-MM-DD"));
                    }
                    if !matches!(v["kind"].as_str(), Some("holiday" | "workday")) {
                        return bad("body: unknown variant, expected `holiday` or `workday`");
                    }
                    ok(json!({"date": date, "weekday": 1, "workday": v["kind"] == "workday", "holiday": v["kind"] == "holiday",
                              "makeup_workday": false, "name": v["name"], "source": "api"}))
                })
                .delete(|State(api): State<Api>, m: Method, u: Uri, Path(date): Path<String>, b: Bytes| async move {
                    record(&api, &m, &u, &b);
                    ok(json!({"date": date, "weekday": 5, "workday": true, "holiday": false, "makeup_workday": false,
                              "name": "", "source": "weekday"}))
                }),
        )
        .route(
            "/api/v1/alerting/time-windows",
            get(|| async {
                ok(json!([{"window": {"name": "office-hours", "intervals": [{"days": "workdays", "weekdays": [], "times": ["08:00-18:00"]}]},
                           "open": true, "next_change_ms": tingzhen_core::now_ms() + 3_600_000}]))
            }),
        )
        .route(
            "/api/v1/alerting/receivers",
            get(|| async {
                ok(json!({"receivers": [
                    {"name": "ops", "language": "zh-CN", "channels": [
                        {"name": "wecom_robot:infra", "kind": "wecom_robot", "role": "primary", "to": ["infra"]},
                        {"name": "email", "kind": "email", "role": "primary", "to": ["ops@hospital.example"]},
                        {"name": "sms_aliyun", "kind": "sms_aliyun", "role": "fallback", "to": ["13800000000"]}]},
                    {"name": "director", "language": "zh-CN", "channels": [
                        {"name": "sms_tencent", "kind": "sms_tencent", "role": "primary", "to": ["13900000000"]}]}],
                    "referenced": ["director", "ops"]}))
            }),
        )
        .route(
            "/api/v1/alerting/receivers/{name}/test",
            post(|State(api): State<Api>, m: Method, u: Uri, Path(name): Path<String>, b: Bytes| async move {
                record(&api, &m, &u, &b);
                if name != "ops" && name != "director" {
                    return not_found(&format!("receiver {name:?} is not configured in [alerting.notify]"));
                }
                ok(json!({"receiver": name, "ok": false, "channels": [
                    {"channel": "wecom_robot:infra", "kind": "wecom_robot", "role": "primary", "ok": true, "receipt": "msgid 1", "error": null},
                    {"channel": "email", "kind": "email", "role": "primary", "ok": false, "receipt": null, "error": "smtp: connection refused"}]}))
            }),
        )
        .route(
            "/api/v1/alerting/routing/config",
            get(|| async {
                ok(json!({"routing": {
                    "route": {"receiver": "ops", "matchers": [], "group_by": ["alertname", "campus"], "group_wait": "30s",
                              "continue": false, "active_time_windows": [], "mute_time_windows": [],
                              "routes": [{"matchers": ["campus=\"east\"", "severity=\"critical\""], "receiver": "director",
                                          "continue": true, "active_time_windows": [], "mute_time_windows": ["night"],
                                          "escalation": [{"after": "15m", "receiver": "director"}], "routes": []},
                                         {"matchers": ["system=~\"HIS|LIS\""], "continue": false,
                                          "active_time_windows": ["office-hours"], "mute_time_windows": [], "routes": []}]},
                    "inhibit_rules": [{"source_matchers": ["alertname=\"HostDown\""], "target_matchers": ["severity=\"warning\""], "equal": ["host"]}],
                    "time_windows": [], "receiver_windows": [{"receiver": "director", "active_time_windows": ["office-hours"], "mute_time_windows": []}],
                    "calendar": {"disable_statutory": false, "overrides": []}, "replay_window": null}}))
            }),
        );
    (router.with_state(api.clone()), api)
}
