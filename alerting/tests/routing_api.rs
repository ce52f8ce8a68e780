//! The routing HTTP API without a socket (tower `oneshot`), with the dispatcher's clock
//! injected: silences (create, validate, recurring, expire), acknowledgement, groups,
//! calendar view and edits, time windows.

mod routing_common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use routing_common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tingzhen_alerting::routing::{Dispatcher, api_router};
use tower::ServiceExt;

const CFG: &str = r#"
[route]
receiver = "ops"
group_by = ["host"]
group_wait = "0s"
escalation = [{ after = "10m", receiver = "manager" }]

[[time_windows]]
name = "office"
intervals = [{ days = "workdays", times = ["08:00-18:00"] }]
"#;

async fn call(d: &Arc<Dispatcher>, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty))
        .unwrap();
    let resp = api_router(d.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn setup() -> (Arc<Dispatcher>, Arc<AtomicI64>) {
    let d = Arc::new(open(CFG));
    let now = Arc::new(AtomicI64::new(at("2025-03-04 10:00")));
    let clock = now.clone();
    d.set_clock(move || clock.load(Ordering::SeqCst));
    (d, now)
}

#[tokio::test]
async fn routing_api_silences_lifecycle_and_validation() {
    let (d, now) = setup();
    let (st, body) =
        call(&d, Method::POST, "/silences", Some(json!({"matchers": ["host=\"his-db1\""], "created_by": "li.na"})))
            .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("comment"), "{body}");
    let (st, body) = call(
        &d,
        Method::POST,
        "/silences",
        Some(json!({"matchers": ["host=\"his-db1\""], "created_by": "li.na", "comment": "c", "duraton": "1h"})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("duraton"), "unknown field is named: {body}");
    let (st, body) = call(
        &d,
        Method::POST,
        "/silences",
        Some(json!({"matchers": ["host=~\".*\""], "created_by": "li.na", "comment": "c", "duration": "1h"})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");

    let (st, body) = call(
        &d,
        Method::POST,
        "/silences",
        Some(json!({
            "matchers": ["host=\"his-db1\""], "created_by": "li.na", "comment": "weekly patching",
            "recurrence": {"weekdays": ["tue"], "times": ["02:00-04:00"]}
        })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["data"]["status"], "waiting", "Tuesday 10:00 is outside 02:00–04:00");
    now.store(at("2025-03-11 03:00"), Ordering::SeqCst);
    let (st, body) = call(&d, Method::GET, &format!("/silences/{id}"), None).await;
    assert_eq!((st, body["data"]["status"].as_str()), (StatusCode::OK, Some("active")));

    // An alert on the host is silenced right now.
    let t = at("2025-03-11 03:00");
    assert!(d.process(&[firing(&[("alertname", "PgDown"), ("host", "his-db1")], t)], t).is_empty());

    let (st, body) = call(&d, Method::DELETE, &format!("/silences/{id}"), None).await;
    assert_eq!((st, body["data"]["status"].as_str()), (StatusCode::OK, Some("expired")));
    assert_eq!(d.tick(t + MIN).len(), 1, "expiring the silence releases the alert");
    let (_, body) = call(&d, Method::GET, "/silences", None).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let (st, _) = call(&d, Method::GET, "/silences/nope", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, body) = call(
        &d,
        Method::PUT,
        &format!("/silences/{id}"),
        Some(json!({"matchers": ["host=\"x\""], "created_by": "a", "comment": "b", "duration": "1h"})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "expired silences cannot be edited: {body}");
}

#[tokio::test]
async fn routing_api_acknowledges_and_lists_groups() {
    let (d, now) = setup();
    let t = at("2025-03-04 10:00");
    let sent = d.process(&[firing(&[("alertname", "HisDown"), ("host", "his-app1")], t - MIN)], t);
    assert_eq!(sent.len(), 1);
    let (st, body) = call(&d, Method::GET, "/groups", None).await;
    assert_eq!(st, StatusCode::OK);
    let group_key = body["data"][0]["group_key"].as_str().unwrap().to_string();
    assert_eq!(group_key, sent[0].group_key);

    now.store(t + 3 * MIN, Ordering::SeqCst);
    let (st, body) = call(&d, Method::POST, "/acks", Some(json!({"by": "wang.fang"}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, body) = call(&d, Method::POST, "/acks", Some(json!({"group_key": "nope", "by": "wang.fang"}))).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    let (st, body) =
        call(&d, Method::POST, "/acks", Some(json!({"group_key": group_key, "by": "wang.fang", "comment": "on it"})))
            .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["data"][0]["acked_at_ms"], json!(t + 3 * MIN));
    assert_eq!(body["data"][0]["first_notified_ms"], json!(t));
    assert!(run_until(&d, t + 30 * MIN).is_empty(), "acknowledged: no escalation");
    let (_, body) = call(&d, Method::GET, &format!("/acks?from={}&to={}", t, t + 60 * MIN), None).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let (st, _) = call(&d, Method::GET, "/acks?from=yesterday", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn routing_api_calendar_and_windows() {
    let (d, _) = setup();
    let (st, body) = call(&d, Method::GET, "/calendar?year=2025", None).await;
    assert_eq!(st, StatusCode::OK);
    let days = body["data"]["days"].as_array().unwrap();
    let feb8 = days.iter().find(|x| x["date"] == "2025-02-08").unwrap();
    assert_eq!((feb8["workday"].as_bool(), feb8["makeup_workday"].as_bool()), (Some(true), Some(true)));
    let (_, body) = call(&d, Method::GET, "/calendar/2025-01-29", None).await;
    assert_eq!((body["data"]["workday"].as_bool(), body["data"]["name"].as_str()), (Some(false), Some("春节")));

    let (st, body) =
        call(&d, Method::PUT, "/calendar/2025-03-12", Some(json!({"kind": "holiday", "name": "院庆", "by": "admin"})))
            .await;
    assert_eq!((st, body["data"]["source"].as_str()), (StatusCode::OK, Some("api")), "{body}");
    let (st, body) =
        call(&d, Method::PUT, "/calendar/2025-03-12", Some(json!({"kind": "someday", "by": "admin"}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, _) = call(&d, Method::PUT, "/calendar/12-03-2025", Some(json!({"kind": "holiday", "by": "admin"}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, body) = call(&d, Method::DELETE, "/calendar/2025-03-12", None).await;
    assert_eq!((st, body["data"]["workday"].as_bool()), (StatusCode::OK, Some(true)));

    let (_, body) = call(&d, Method::GET, "/time-windows", None).await;
    assert_eq!(body["data"][0]["window"]["name"], "office");
    assert_eq!(body["data"][0]["open"], true, "Tuesday 10:00");
    assert_eq!(body["data"][0]["next_change_ms"], json!(at("2025-03-04 18:00")));
}
