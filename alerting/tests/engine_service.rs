//! The alerting service end to end in process: rules API with authentication, intake into
//! routing and the outbox, summaries, and a restart that does not page again. The query
//! engine is a stand-in for one gauge; routing and the outbox are the real ones.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tingzhen_alerting::eval::Clock;
use tingzhen_alerting::{Alerting, AlertingConfig};
use tingzhen_core::Labels;
use tingzhen_core::db::Db;
use tingzhen_core::db::testing::{TestStore, fresh_db};
use tingzhen_core::query::{InstantSample, MetricsQuery, MetricsQueryError};
use tingzhen_core::token::Scope;
use tower::ServiceExt;

/// `temp{room="icu"}` with a settable value; answers `temp > N`. Like the real engine it
/// refuses a function it does not implement (here: `predict_linear`).
struct Gauge(Mutex<f64>);

impl MetricsQuery for Gauge {
    fn instant(&self, expr: &str, _at: i64) -> Result<Vec<InstantSample>, MetricsQueryError> {
        if expr.contains("predict_linear") {
            return Err(MetricsQueryError::BadQuery("function predict_linear is not supported".into()));
        }
        let Some(threshold) = expr.strip_prefix("temp > ").and_then(|t| t.trim().parse::<f64>().ok()) else {
            return Ok(Vec::new());
        };
        let v = *self.0.lock();
        let labels = Labels::from_pairs([("__name__", "temp"), ("room", "icu")]);
        Ok(if v > threshold { vec![InstantSample { labels, value: v }] } else { Vec::new() })
    }
}

const CONFIG: &str = r#"
[routing.route]
receiver = "ops"
group_by = ["alertname"]
group_wait = "0s"
group_interval = "1m"

[[notify.receivers]]
name = "ops"
channels = [{ type = "webhook", webhook = "itsm" }]

[notify.webhooks.itsm]
url = "http://127.0.0.1:9/hook"
"#;

struct Rig {
    alerting: Arc<Alerting>,
    gauge: Arc<Gauge>,
    now: Arc<AtomicI64>,
    admin: String,
    reader: String,
    pusher: String,
}

fn open(db: Arc<Db>, now: Arc<AtomicI64>, gauge: Arc<Gauge>) -> Arc<Alerting> {
    let config: AlertingConfig = toml::from_str(CONFIG).unwrap();
    let n = now.clone();
    let clock: Clock = Arc::new(move || n.load(Ordering::SeqCst));
    Arc::new(Alerting::open_with_clock(&config, db, gauge, clock).unwrap())
}

fn rig(db: Arc<Db>) -> Rig {
    let now = Arc::new(AtomicI64::new(1_767_225_600_000));
    let gauge = Arc::new(Gauge(Mutex::new(20.0)));
    let token = |name: &str, s: Scope| db.create_token(name, &[s], &[]).unwrap().plaintext;
    let (admin, reader, pusher) =
        (token("admin", Scope::Admin), token("reader", Scope::Query), token("prom", Scope::Ingest));
    Rig { alerting: open(db, now.clone(), gauge.clone()), gauge, now, admin, reader, pusher }
}

async fn call(
    r: &Rig,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<(&str, String)>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some((ctype, text)) => {
            req = req.header("content-type", ctype);
            Body::from(text)
        }
        None => Body::empty(),
    };
    let resp = tingzhen_alerting::api::router(r.alerting.clone()).oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn json_body(v: Value) -> Option<(&'static str, String)> {
    Some(("application/json", v.to_string()))
}

fn deliveries(r: &Rig) -> Vec<String> {
    let o = r.alerting.outbox().unwrap();
    o.deliveries(0, i64::MAX).unwrap().into_iter().map(|d| d.status).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_api_validates_before_saving_and_checks_scopes() {
    let r = rig(Arc::new(fresh_db()));
    let (admin, reader) = (r.admin.clone(), r.reader.clone());
    let group = json!({"name": "ward", "interval": "10s", "rules": [
        {"alert": "TooHot", "expr": "temp > 40", "for": "1m", "labels": {"severity": "critical"},
         "annotations": {"summary": "{{ $labels.room }} {{ $value }}"}},
        {"builtin": {"kind": "host_down", "matchers": "campus=\"east\""}}
    ]});
    assert_eq!(call(&r, "GET", "/api/v1/alerting/rules", None, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(&r, "POST", "/api/v1/alerting/rules", Some(&reader), json_body(group.clone())).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&r, "POST", "/api/v1/alerting/rules", Some(&r.pusher), json_body(group.clone())).await.0,
        StatusCode::FORBIDDEN
    );

    // Bad rules: every problem named, nothing saved.
    let bad = json!({"name": "bad", "rules": [
        {"alert": "A", "expr": "rate(temp[5m]"},
        {"alert": "B", "expr": "nosuch(temp)"},
        {"alert": "C", "expr": "temp", "for": "10 minutes"},
        {"alert": "D", "expr": "predict_linear(temp[1h], 3600) > 40"}
    ]});
    let (status, body) = call(&r, "POST", "/api/v1/alerting/rules", Some(&admin), json_body(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let fields: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["expr", "expr", "for"], "{body}");
    // The engine's own refusal is checked once the syntax is right.
    let engine_bad = json!({"name": "bad", "rules": [{"alert": "D", "expr": "predict_linear(temp[1h], 3600) > 40"}]});
    let (status, body) = call(&r, "POST", "/api/v1/alerting/rules", Some(&admin), json_body(engine_bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("predict_linear"), "{body}");
    let unknown_key = json!({"name": "bad", "rules": [{"alert": "A", "expr": "up", "fore": "1m"}]});
    let (status, body) = call(&r, "POST", "/api/v1/alerting/rules", Some(&admin), json_body(unknown_key)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("fore"), "{body}");
    let (_, list) = call(&r, "GET", "/api/v1/alerting/rules", Some(&reader), None).await;
    assert_eq!(list["data"]["groups"], json!([]), "nothing was saved");

    let (status, body) = call(&r, "POST", "/api/v1/alerting/rules", Some(&admin), json_body(group.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let rules = &body["data"]["groups"][0]["rules"];
    assert_eq!(rules[1]["expr"], "tingzhen_agent_up{campus=\"east\"} == 0");
    assert_eq!(rules[0]["for"], "1m");
    assert_eq!(
        call(&r, "POST", "/api/v1/alerting/rules", Some(&admin), json_body(group)).await.0,
        StatusCode::CONFLICT
    );

    // Replace through a Prometheus rule file (YAML); the path names the group.
    let yaml = "groups:\n  - name: ward\n    rules:\n      - alert: TooHot\n        expr: temp > 45\n".to_string();
    let (status, body) =
        call(&r, "PUT", "/api/v1/alerting/rules/ward", Some(&admin), Some(("application/yaml", yaml.clone()))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["rules"][0]["expr"], "temp > 45");
    let other = yaml.replace("name: ward", "name: other");
    assert_eq!(
        call(&r, "PUT", "/api/v1/alerting/rules/ward", Some(&admin), Some(("application/yaml", other))).await.0,
        StatusCode::BAD_REQUEST
    );
    let (_, one) = call(&r, "GET", "/api/v1/alerting/rules/ward", Some(&reader), None).await;
    assert_eq!(one["data"]["source"]["kind"], "api");
    assert_eq!(call(&r, "DELETE", "/api/v1/alerting/rules/ward", Some(&admin), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&r, "GET", "/api/v1/alerting/rules/ward", Some(&reader), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&r, "DELETE", "/api/v1/alerting/rules/ward", Some(&admin), None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_reaches_the_outbox_once_and_summaries_count_it() {
    let r = rig(Arc::new(fresh_db()));
    let firing = json!([{"labels": {"alertname": "PromDiskFull", "host": "db-1", "severity": "warning", "campus": "east"},
                         "annotations": {"summary": "disk"}, "generatorURL": "http://prom:9090/graph"}]);
    assert_eq!(
        call(&r, "POST", "/api/v2/alerts", Some(&r.reader), json_body(firing.clone())).await.0,
        StatusCode::FORBIDDEN,
        "intake needs the ingest scope"
    );
    let (status, body) = call(&r, "POST", "/api/v2/alerts", Some(&r.pusher), json_body(firing.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(deliveries(&r), ["firing"]);
    // Prometheus repeats firing alerts every minute: no second notification.
    r.now.fetch_add(60_000, Ordering::SeqCst);
    call(&r, "POST", "/api/v2/alerts", Some(&r.pusher), json_body(firing)).await;
    assert_eq!(deliveries(&r), ["firing"]);
    let (_, alerts) = call(&r, "GET", "/api/v1/alerting/alerts?state=firing", Some(&r.reader), None).await;
    assert_eq!(alerts["data"]["alerts"][0]["source"]["kind"], "external");
    let req = Request::get("/api/v1/alerting/metrics").header("authorization", format!("Bearer {}", r.reader));
    let resp =
        tingzhen_alerting::api::router(r.alerting.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    assert!(text.contains("tingzhen_alerting_alerts{state=\"firing\"} 1"), "{text}");
    // Acknowledged through routing's API a minute after it started: MTTA 60 s.
    let fp = alerts["data"]["alerts"][0]["fingerprint"].as_str().unwrap().to_string();
    let (status, body) =
        call(&r, "POST", "/api/v1/alerting/acks", Some(&r.admin), json_body(json!({"fingerprint": fp, "by": "zhang"})))
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(&r, "POST", "/api/v2/alerts", Some(&r.pusher), json_body(json!([{"labels": {}}]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Resolved by the sender (endsAt in the past) → a resolved notification once the group
    // interval allows it (routing's timer, driven here by the service's resume/tick path).
    r.now.fetch_add(120_000, Ordering::SeqCst);
    let resolved = json!([{"labels": {"alertname": "PromDiskFull", "host": "db-1", "severity": "warning", "campus": "east"},
                           "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T00:02:00Z"}]);
    call(&r, "POST", "/api/v2/alerts", Some(&r.pusher), json_body(resolved)).await;
    assert_eq!(deliveries(&r), ["firing", "resolved"]);

    let (status, s) = call(
        &r,
        "GET",
        "/api/v1/alerting/summary?from=0&to=4102444800&by=host,receiver,severity",
        Some(&r.reader),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    // The outbox stamps deliveries with the wall clock, so the range reaches 2100.
    let range = &s["data"]["range"];
    assert_eq!(range["alerts"]["total"], 1);
    assert_eq!(range["alerts"]["by"]["host"]["db-1"], 1);
    assert_eq!(range["notifications"]["total"], 2);
    assert_eq!(range["notifications"]["by"]["receiver"]["ops"], 2);
    assert_eq!(range["leaderboards"]["campuses"][0]["key"], "east");
    assert_eq!(range["mttr_seconds"], 120.0);
    assert_eq!(range["mtta_seconds"], 60.0);
    assert_eq!(range["alerts"]["acknowledged"], 1);
    let (_, history) = call(&r, "GET", "/api/v1/alerting/history?from=0", Some(&r.reader), None).await;
    let episode = &history["data"]["history"][0];
    assert_eq!(episode["acked_at_ms"].as_i64().unwrap() - episode["started_at_ms"].as_i64().unwrap(), 60_000);
    assert_eq!(s["data"]["today"]["alerts"]["total"], 1);
    let (status, _) = call(&r, "GET", "/api/v1/alerting/summary?by=colour", Some(&r.reader), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_neither_repages_nor_forgets() {
    let store = TestStore::new();
    let r = rig(Arc::new(store.open()));
    let group = json!({"name": "ward", "interval": "1h", "rules": [{"alert": "TooHot", "expr": "temp > 40"}]});
    assert_eq!(
        call(&r, "POST", "/api/v1/alerting/rules", Some(&r.admin), json_body(group)).await.0,
        StatusCode::CREATED
    );
    let evaluate = |a: &Arc<Alerting>| {
        let a = a.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                for g in a.groups() {
                    a.evaluator().evaluate_group(&g);
                }
            })
            .await
            .unwrap()
        }
    };
    *r.gauge.0.lock() = 41.0;
    evaluate(&r.alerting).await;
    assert_eq!(deliveries(&r), ["firing"]);
    // Prometheus's shapes, for Grafana.
    let (status, rules) = call(&r, "GET", "/api/v1/rules", Some(&r.reader), None).await;
    assert_eq!(status, StatusCode::OK);
    let rule = &rules["data"]["groups"][0]["rules"][0];
    assert_eq!(
        (rule["type"].as_str(), rule["state"].as_str(), rule["health"].as_str()),
        (Some("alerting"), Some("firing"), Some("ok"))
    );
    assert_eq!(rule["alerts"][0]["value"], "41");
    assert_eq!(rules["data"]["groups"][0]["file"], "api");
    let (_, alerts) = call(&r, "GET", "/api/v1/alerts", Some(&r.reader), None).await;
    assert_eq!(alerts["data"]["alerts"][0]["labels"]["alertname"], "TooHot");
    assert!(alerts["data"]["alerts"][0]["activeAt"].as_str().unwrap().ends_with('Z'));
    let (now, gauge) = (r.now.clone(), r.gauge.clone());
    drop(r);

    now.fetch_add(30_000, Ordering::SeqCst);
    let again = open(Arc::new(store.open()), now.clone(), gauge.clone());
    let a2 = again.clone();
    tokio::task::spawn_blocking(move || a2.resume().unwrap()).await.unwrap();
    evaluate(&again).await;
    let statuses = |a: &Alerting| -> Vec<String> {
        a.outbox().unwrap().deliveries(0, i64::MAX).unwrap().into_iter().map(|d| d.status).collect()
    };
    assert_eq!(statuses(&again), ["firing"], "still firing after the restart, not paged again");
    assert_eq!(again.state().active().len(), 1, "the firing alert was remembered");
    *gauge.0.lock() = 20.0;
    now.fetch_add(60_000, Ordering::SeqCst);
    evaluate(&again).await;
    assert_eq!(statuses(&again), ["firing", "resolved"]);
    // resume() also started the group's own task, whose evaluation may be the one that
    // resolved it and may still be handing it to routing: wait for that, do not race it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !again.state().active().is_empty() {
        assert!(std::time::Instant::now() < deadline, "resolved alert never left the state");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(statuses(&again), ["firing", "resolved"], "resolved once, whichever evaluation saw it");
}
