//! The group overview (MON-9), the big screen (the same in the big-screen theme, made to be read
//! from across a room at 1920×1080) and the campus view (MON-14). The body is one partial that
//! `app.js` re-fetches every `refresh_seconds`, so screens update without reloading.

use super::data::{self, Inventory, str_of};
use crate::charts;
use crate::web::{Prefs, Theme, Viewer};
use crate::{Dashboard, i18n};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tingzhen_identity::Permission;

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/ui/", get(overview))
        .route("/ui/screen", get(screen))
        .route("/ui/campus/{id}", get(campus))
        .route("/ui/partials/overview", get(partial))
}

#[derive(Debug, Default, Deserialize)]
struct Filter {
    #[serde(default)]
    campus: String,
}

async fn overview(State(d): State<Dashboard>, v: Viewer) -> Response {
    render(&d, &v, None, false).await
}

async fn screen(State(d): State<Dashboard>, mut v: Viewer, Query(f): Query<Filter>) -> Response {
    v.prefs = Prefs { theme: Theme::Screen, ..v.prefs };
    let campus = (!f.campus.is_empty()).then_some(f.campus);
    render(&d, &v, campus, true).await
}

async fn campus(State(d): State<Dashboard>, v: Viewer, Path(id): Path<String>) -> Response {
    render(&d, &v, Some(id), false).await
}

async fn partial(State(d): State<Dashboard>, v: Viewer, Query(f): Query<Filter>) -> Response {
    let campus = (!f.campus.is_empty()).then_some(f.campus);
    if let Some(c) = &campus
        && let Err(r) = d.require_page(&v, Permission::ViewMonitoring, Some(c)).await
    {
        return r;
    }
    match body(&d, &v, campus.as_deref()).await {
        Ok(b) => d.fragment(&v, "partials/overview_body", b),
        Err(e) => d.backend_page(&v, &e),
    }
}

async fn render(d: &Dashboard, v: &Viewer, campus: Option<String>, screen: bool) -> Response {
    if let Some(c) = &campus {
        // A campus the viewer has no role on is refused (and the refusal audited), whatever
        // the URL says.
        if let Err(r) = d.require_page(v, Permission::ViewMonitoring, Some(c)).await {
            return r;
        }
    } else if let Some(refused) = data::refuse_if_blind(d, v) {
        // The auditor's console is the audit log: land there rather than on a refusal.
        if !screen && v.can(Permission::ViewAudit, None) {
            return axum::response::Redirect::to("/ui/audit").into_response();
        }
        return refused;
    }
    let body = match body(d, v, campus.as_deref()).await {
        Ok(b) => b,
        Err(e) => return d.backend_page(v, &e),
    };
    let title = match (&campus, screen) {
        (_, true) => "screen_title",
        (Some(_), false) => "campus_title",
        (None, false) => "overview_title",
    };
    let qs = campus
        .as_deref()
        .map(|c| format!("?{}", serde_urlencoded::to_string([("campus", c)]).unwrap_or_default()))
        .unwrap_or_default();
    let mut data = json!({
        "screen": screen,
        "campus": campus.as_deref().map(|c| json!({"id": c, "name": d.config.campus_name(c)})),
        "partial_url": format!("/ui/partials/overview{qs}"),
    });
    if let (Value::Object(m), Value::Object(b)) = (&mut data, body) {
        m.extend(b);
    }
    d.page(v, "pages/overview", title, data)
}

/// Counts per campus card.
#[derive(Debug, Default, serde::Serialize)]
struct CampusCard {
    id: String,
    name: String,
    hosts: usize,
    up: usize,
    down: usize,
    targets: usize,
    failing: usize,
    alerts: usize,
}

async fn body(d: &Dashboard, v: &Viewer, campus: Option<&str>) -> Result<Value, crate::BackendError> {
    let now = data::now_ms();
    let Inventory { mut hosts, mut targets } = data::inventory(d, v, "").await?;
    let mut alerts = data::alerts(d, v).await?;
    let mut history = data::history(d, v, data::today_start_ms(now), now + 1).await?;
    // A failing interface registry must not blank the whole screen: the rest still shows,
    // and the failure is logged rather than shown as "0 interfaces" silently.
    let mut interfaces = data::interfaces(d, v).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "overview: interface list unavailable");
        Vec::new()
    });
    if let Some(c) = campus {
        hosts.retain(|h| str_of(h, "campus") == c);
        targets.retain(|t| str_of(t, "campus") == c);
        alerts.retain(|a| data::campus_of(&a["labels"]) == c);
        history.retain(|r| data::campus_of(&r["labels"]) == c);
        interfaces.retain(|i| str_of(i, "campus") == c);
    }

    let up = hosts.iter().filter(|h| h["up"].as_bool() == Some(true)).count();
    let class_counts = |class: &str| {
        let of: Vec<&Value> = targets.iter().filter(|t| str_of(t, "class") == class).collect();
        let failing = of.iter().filter(|t| !target_ok(t)).count();
        json!({"total": of.len(), "failing": failing})
    };
    let firing: Vec<&Value> = alerts.iter().filter(|a| a["state"] == "firing").collect();
    let mut by_severity: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &firing {
        *by_severity.entry(data::severity_key(str_of(&a["labels"], "severity"))).or_default() += 1;
    }

    let mut cards: BTreeMap<String, CampusCard> = BTreeMap::new();
    if campus.is_none() {
        for c in data::campus_names(d, hosts.iter().map(|h| str_of(h, "campus").to_string())) {
            let id = str_of(&c, "id").to_string();
            if !data::visible(&v.scope(), &id) {
                continue;
            }
            cards.insert(id.clone(), CampusCard { id, name: str_of(&c, "name").to_string(), ..Default::default() });
        }
        for h in &hosts {
            if let Some(card) = cards.get_mut(str_of(h, "campus")) {
                card.hosts += 1;
                if h["up"].as_bool() == Some(true) {
                    card.up += 1;
                } else {
                    card.down += 1;
                }
            }
        }
        for t in &targets {
            if let Some(card) = cards.get_mut(str_of(t, "campus")) {
                card.targets += 1;
                card.failing += usize::from(!target_ok(t));
            }
        }
        for a in &firing {
            if let Some(card) = cards.get_mut(data::campus_of(&a["labels"])) {
                card.alerts += 1;
            }
        }
    }

    let down_hosts: Vec<Value> = hosts
        .iter()
        .filter(|h| h["up"].as_bool() != Some(true))
        .map(|h| {
            json!({"host": h["host"], "ips": h["ips"], "campus": d.config.campus_name(str_of(h, "campus")),
                   "last_seen_ms": h["last_seen_ms"]})
        })
        .collect();
    let firing_rows: Vec<Value> = firing
        .iter()
        .take(12)
        .map(|a| {
            let l = &a["labels"];
            let sev = str_of(l, "severity");
            json!({
                "alertname": l["alertname"], "severity": sev, "severity_text": data::severity_text(v, sev),
                "severity_class": data::severity_key(sev).trim_start_matches("severity_"),
                "target": first_of(l, &["host", "instance", "target", "interface", "job"]),
                "campus": d.config.campus_name(data::campus_of(l)),
                "summary": a["annotations"]["summary"], "since_ms": a["fired_at_ms"],
            })
        })
        .collect();

    // Today's alerts per hour (Asia/Shanghai) and the leaderboards, from today's episodes.
    let day = data::today_start_ms(now);
    let hours_so_far = ((now - day) / 3_600_000 + 1).clamp(1, 24) as usize;
    let mut per_hour = vec![0.0; hours_so_far];
    let mut by_host: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_rule: BTreeMap<String, u64> = BTreeMap::new();
    let mut today = 0;
    for r in &history {
        let started = r["started_at_ms"].as_i64().unwrap_or(0);
        if started < day {
            continue;
        }
        today += 1;
        if let Some(slot) = per_hour.get_mut(((started - day) / 3_600_000) as usize) {
            *slot += 1.0;
        }
        let target = first_of(&r["labels"], &["host", "instance", "target", "interface"]);
        if !target.is_empty() {
            *by_host.entry(target).or_default() += 1;
        }
        *by_rule.entry(str_of(r, "alertname").to_string()).or_default() += 1;
    }
    let bars: Vec<(String, f64)> = per_hour.iter().enumerate().map(|(h, n)| (format!("{h:02}"), *n)).collect();
    let empty = i18n::text(v.lang(), "no_alerts");

    Ok(json!({
        "hosts": {"total": hosts.len(), "up": up, "down": hosts.len() - up},
        "databases": class_counts("database"),
        "middleware": class_counts("middleware"),
        "probes": class_counts("probe"),
        "interfaces": {
            "total": interfaces.len(),
            "failing": interfaces.iter().filter(|i| i["zero_volume"].as_bool() == Some(true)).count(),
        },
        "alerts": {
            "active": firing.len(),
            "critical": by_severity.get("severity_critical").copied().unwrap_or(0),
            "warning": by_severity.get("severity_warning").copied().unwrap_or(0),
            "info": by_severity.get("severity_info").copied().unwrap_or(0) + by_severity.get("severity_other").copied().unwrap_or(0),
            "today": today,
        },
        "cards": cards.into_values().collect::<Vec<_>>(),
        "down_hosts": down_hosts,
        "firing": firing_rows,
        "trend_svg": charts::bar_chart(&bars, &empty),
        "top_hosts": top(by_host, 5),
        "top_rules": top(by_rule, 5),
        "updated_ms": now,
    }))
}

/// A target is fine when its agent is up and its last collection succeeded.
fn target_ok(t: &Value) -> bool {
    t["agent_up"].as_bool() == Some(true) && str_of(t, "status") != "down"
}

fn first_of(labels: &Value, keys: &[&str]) -> String {
    keys.iter().find_map(|k| labels[*k].as_str().filter(|s| !s.is_empty())).unwrap_or("").to_string()
}

fn top(counts: BTreeMap<String, u64>, n: usize) -> Vec<Value> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter().take(n).map(|(k, c)| json!({"key": k, "count": c})).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::testkit::Kit;
    use axum::Json;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    use serde_json::{Value, json};

    fn host(name: &str, ip: &str, campus: &str, up: bool, targets: Value) -> Value {
        json!({"host": name, "hostname": name, "ips": [ip], "os": "Debian 12", "kernel": "6.1", "cpus": 4,
               "memory_bytes": 8u64 << 30, "agent_version": "0.1.0", "campus": campus, "role": "db", "system": "HIS",
               "interval_ms": 10000, "boot_time": 1, "targets": targets, "remote_addr": ip,
               "first_seen_ms": 1, "last_seen_ms": tingzhen_core::now_ms(), "up": up})
    }

    /// A collector + alerting API with two campuses: east (a host with a down PostgreSQL and a
    /// critical alert) and west (a host that stopped heartbeating).
    pub(crate) fn backend() -> Router {
        let pg = json!([{"name": "his-pg", "kind": "postgres", "address": "10.1.0.5:5432", "campus": "", "system": "HIS",
                          "status": "down", "last_error": "connection refused", "last_collect_ms": 1}]);
        let hosts = json!([
            host("his-db-01", "10.1.0.5", "east", true, pg),
            host("<script>alert(1)</script>", "10.2.0.9", "west", false, json!([])),
        ]);
        let targets: Vec<Value> = vec![json!({"name": "his-pg", "kind": "postgres", "address": "10.1.0.5:5432",
            "campus": "", "system": "HIS", "status": "down", "last_error": "connection refused", "last_collect_ms": 1,
            "host": "his-db-01", "host_ips": ["10.1.0.5"], "agent_up": true})];
        let now = tingzhen_core::now_ms();
        let alert = |name: &str, campus: &str, sev: &str| {
            json!({"fingerprint": name, "rule": "g/r", "labels": {"alertname": name, "campus": campus, "severity": sev, "host": "his-db-01"},
                   "annotations": {"summary": format!("{name} summary")}, "state": "firing", "active_at_ms": now - 60_000,
                   "fired_at_ms": now - 30_000, "resolved_at_ms": null, "value": "1", "source": "rule"})
        };
        let alerts = json!({"alerts": [alert("PgDown", "east", "critical"), alert("WestDiskFull", "west", "warning")]});
        let history = json!({"history": [
            {"id": 1, "rule_key": "g/r", "fingerprint": "a", "alertname": "PgDown", "labels": {"campus": "east", "host": "his-db-01"},
             "source": "rule", "started_at_ms": now - 1000, "ended_at_ms": null, "acked_at_ms": null, "value": 1.0}
        ]});
        let ok = |v: Value| json!({"status": "success", "data": v});
        let (h1, h2, a, hi) =
            (ok(hosts.clone()), ok(json!({"hosts": hosts, "targets": targets})), ok(alerts), ok(history));
        Router::new()
            .route("/api/v1/inventory/hosts", get(move || async move { Json(h1) }))
            .route("/api/v1/inventory", get(move || async move { Json(h2) }))
            .route("/api/v1/alerting/alerts", get(move || async move { Json(a) }))
            .route("/api/v1/alerting/history", get(move || async move { Json(hi) }))
            .route(
                "/api/v1/interfaces",
                get(|| async {
                    Json(json!({"status": "success", "data": {"interfaces": [
                        {"name": "HIS→PACS", "system": "PACS", "campus": "east", "messages": 0, "zero_volume": true}
                    ]}}))
                }),
            )
    }

    #[tokio::test]
    async fn without_a_session_pages_redirect_to_login() {
        let kit = Kit::new(backend());
        let a = kit.get("/ui/", None).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        assert_eq!(a.location.as_deref(), Some("/ui/login?next=%2Fui%2F"));
        let login = kit.get("/ui/login?next=/ui/hosts", None).await;
        assert_eq!(login.status, StatusCode::OK);
        assert!(login.body.contains("login-form") && login.body.contains("data-next=\"/ui/hosts\""));
    }

    #[tokio::test]
    async fn admin_sees_the_whole_group_and_names_are_escaped() {
        let kit = Kit::new(backend());
        let admin = kit.login("admin1", &[("admin", "*")]);
        let a = kit.get("/ui/", Some(&admin)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.body.contains("his-db-01") || a.body.contains("/ui/campus/east"), "{}", a.body);
        assert!(a.body.contains("/ui/campus/east") && a.body.contains("/ui/campus/west"));
        assert!(a.body.contains("PgDown") && a.body.contains("WestDiskFull"));
        assert!(a.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "down host listed, escaped");
        assert!(!a.body.contains("<script>alert(1)"), "no raw markup from data");
        let frag = kit.refresh("/ui/partials/overview", Some(&admin)).await;
        assert_eq!(frag.status, StatusCode::OK, "{}", frag.body);
        assert_eq!(kit.refresh("/ui/partials/overview", None).await.status, StatusCode::SEE_OTHER, "to the login page");
        assert!(!frag.body.contains("<html") && frag.body.contains("kpi-hosts"));
        let screen = kit.get("/ui/screen", Some(&admin)).await;
        assert!(screen.body.contains(r#"data-theme="screen""#));
    }

    #[tokio::test]
    async fn a_campus_viewer_sees_only_that_campus_and_is_refused_another() {
        let kit = Kit::new(backend());
        let viewer = kit.login("east-viewer", &[("viewer", "east")]);
        let a = kit.get("/ui/", Some(&viewer)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.body.contains("PgDown"));
        assert!(!a.body.contains("WestDiskFull") && !a.body.contains("alert(1)"), "west is hidden: {}", a.body);
        assert!(!a.body.contains("/ui/campus/west"));
        assert_eq!(kit.get("/ui/campus/east", Some(&viewer)).await.status, StatusCode::OK);
        let refused = kit.get("/ui/campus/west", Some(&viewer)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(!refused.body.contains("WestDiskFull"));
        let refused = kit.get("/ui/partials/overview?campus=west", Some(&viewer)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let audit = kit.dashboard.identity.audit_log().verify().unwrap();
        assert!(audit.ok, "audit chain intact");
    }

    #[tokio::test]
    async fn an_auditor_sees_no_monitoring() {
        let kit = Kit::new(backend());
        let auditor = kit.login("aud", &[("auditor", "*")]);
        let a = kit.get("/ui/", Some(&auditor)).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "the auditor lands on the audit log");
        assert_eq!(a.location.as_deref(), Some("/ui/audit"));
        let a = kit.get("/ui/campus/east", Some(&auditor)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert!(!a.body.contains("PgDown"));
        let a = kit.get("/ui/screen", Some(&auditor)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
    }
}
