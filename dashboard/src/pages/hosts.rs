//! Hosts (MON-2, MON-14): the list of every host whose agent reports, filtered by campus and
//! status and cut to the campuses the viewer may see, and one host's page: inventory facts, the
//! targets its agent watches, and SVG charts (CPU, memory, filesystems, disk I/O, network, load)
//! drawn on the server from the node_exporter-named series the agent ships with its `host` label.

use super::data::{self, ChartQuery, ChartSpec, Span, promql_str, str_of};
use crate::web::Viewer;
use crate::{Dashboard, i18n};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/ui/hosts", get(list))
        .route("/ui/hosts/{host}", get(detail))
        .route("/ui/partials/hosts", get(list_partial))
        .route("/ui/partials/host-charts/{host}", get(charts_partial))
}

/// Charts re-query a range per line, so they refresh less often than lists.
pub(crate) fn chart_refresh_seconds(d: &Dashboard) -> u64 {
    d.config.refresh_seconds.max(30)
}

#[derive(Debug, Default, Deserialize)]
struct ListFilter {
    #[serde(default)]
    campus: String,
    #[serde(default)]
    status: String,
}

async fn list(State(d): State<Dashboard>, v: Viewer, Query(f): Query<ListFilter>) -> Response {
    match list_data(&d, &v, f).await {
        Ok(data) => d.page(&v, "pages/hosts", "hosts_title", data),
        Err(r) => r,
    }
}

/// The live part of the list (counts and table), re-fetched by `app.js`.
async fn list_partial(State(d): State<Dashboard>, v: Viewer, Query(f): Query<ListFilter>) -> Response {
    match list_data(&d, &v, f).await {
        Ok(data) => d.fragment(&v, "partials/hosts_table", data),
        Err(r) => r,
    }
}

async fn list_data(d: &Dashboard, v: &Viewer, f: ListFilter) -> Result<Value, Response> {
    if let Some(r) = data::refuse_if_blind(d, v) {
        return Err(r);
    }
    if !matches!(f.status.as_str(), "" | "up" | "down") {
        return Err(data::bad_request(d, v, &format!("status: {:?} is not up or down", f.status)));
    }
    if !f.campus.is_empty() {
        data::require_campus(d, v, &f.campus).await?;
    }
    let inv = data::inventory(d, v, "").await.map_err(|e| d.backend_page(v, &e))?;
    let campuses = data::campus_names(d, inv.hosts.iter().map(|h| str_of(h, "campus").to_string()))
        .into_iter()
        .filter(|c| data::visible(&v.scope(), str_of(c, "id")))
        .map(|mut c| {
            c["selected"] = json!(str_of(&c, "id") == f.campus);
            c
        })
        .collect::<Vec<_>>();
    let total = inv.hosts.len();
    let rows: Vec<Value> = inv
        .hosts
        .iter()
        .filter(|h| f.campus.is_empty() || str_of(h, "campus") == f.campus)
        .filter(|h| match f.status.as_str() {
            "up" => h["up"].as_bool() == Some(true),
            "down" => h["up"].as_bool() != Some(true),
            _ => true,
        })
        .map(|h| host_row(d, h))
        .collect();
    let up = rows.iter().filter(|r| r["up"] == true).count();
    let params: Vec<(&str, &str)> = [("campus", f.campus.as_str()), ("status", f.status.as_str())]
        .into_iter()
        .filter(|p| !p.1.is_empty())
        .collect();
    let partial_url = format!("/ui/partials/hosts?{}", serde_urlencoded::to_string(&params).unwrap_or_default());
    Ok(json!({
            "partial_url": partial_url,
            "updated_ms": data::now_ms(),
            "hosts": rows,
            "shown": rows.len(),
            "up_count": up,
            "down_count": rows.len() - up,
            "total": total,
            "campuses": campuses,
            "filter": {"campus": f.campus, "status": f.status,
                       "up": f.status == "up", "down": f.status == "down"},
    }))
}

pub(crate) fn host_row(d: &Dashboard, h: &Value) -> Value {
    json!({
        "host": h["host"], "href": link(str_of(h, "host"), &[]), "hostname": h["hostname"], "ips": h["ips"], "up": h["up"].as_bool() == Some(true),
        "campus": str_of(h, "campus"), "campus_name": d.config.campus_name(str_of(h, "campus")),
        "system": h["system"], "role": h["role"], "os": h["os"], "cpus": h["cpus"],
        "memory": human_bytes(h["memory_bytes"].as_f64().unwrap_or(0.0)),
        "targets": h["targets"].as_array().map(Vec::len).unwrap_or(0),
        "last_seen_ms": h["last_seen_ms"],
    })
}

fn human_bytes(v: f64) -> String {
    if v <= 0.0 { String::new() } else { crate::charts::axis_label(v, "B") }
}

#[derive(Debug, Default, Deserialize)]
struct DetailQuery {
    #[serde(default)]
    range: String,
    /// `total` draws one CPU busy line; anything else (the default) one line per mode.
    #[serde(default)]
    cpu: String,
}

async fn detail(
    State(d): State<Dashboard>,
    v: Viewer,
    Path(name): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Response {
    match detail_data(&d, &v, name, q).await {
        Ok(data) => d.page(&v, "pages/host", "hosts_detail_title", data),
        Err(r) => r,
    }
}

/// The host's charts alone, re-fetched by `app.js`.
async fn charts_partial(
    State(d): State<Dashboard>,
    v: Viewer,
    Path(name): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Response {
    match detail_data(&d, &v, name, q).await {
        Ok(data) => d.fragment(&v, "partials/hosts_charts", data),
        Err(r) => r,
    }
}

async fn detail_data(d: &Dashboard, v: &Viewer, name: String, q: DetailQuery) -> Result<Value, Response> {
    let span = Span::parse(&q.range).map_err(|e| data::bad_request(d, v, &e))?;
    if !matches!(q.cpu.as_str(), "" | "mode" | "total") {
        return Err(data::bad_request(d, v, &format!("cpu: {:?} is not mode or total", q.cpu)));
    }
    let hosts = data::all_hosts(d).await.map_err(|e| d.backend_page(v, &e))?;
    let Some(h) = hosts.into_iter().find(|h| str_of(h, "host") == name) else {
        if let Some(r) = data::refuse_if_blind(d, v) {
            return Err(r);
        }
        let text = format!("{}: {name}", i18n::text(v.lang(), "hosts_not_found"));
        return Err(d.message_page(v, StatusCode::NOT_FOUND, "not_found_title", &text));
    };
    // The campus comes from the inventory, never from the URL: a viewer of one campus cannot
    // read another's host by typing its name.
    data::require_campus(d, v, str_of(&h, "campus")).await?;
    let now = data::now_ms();
    let from = now - span.ms();
    let total_cpu = q.cpu == "total";
    let interval = h["interval_ms"].as_i64().unwrap_or(15_000);
    let specs = chart_specs(v, &name, span, interval, total_cpu);
    let charts = data::draw_charts(d, specs, from, now, &i18n::text(v.lang(), "mon_no_data")).await;

    let campus = str_of(&h, "campus");
    let targets: Vec<Value> = h["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let c = if str_of(t, "campus").is_empty() { campus } else { str_of(t, "campus") };
            json!({
                "name": t["name"], "href": super::targets::link(&name, str_of(t, "name"), &[]), "kind": t["kind"], "class": data::target_class(str_of(t, "kind")),
                "address": t["address"], "status": t["status"],
                "status_text": super::targets::status_text(v, str_of(t, "status")), "last_error": t["last_error"],
                "last_collect_ms": t["last_collect_ms"], "system": t["system"], "campus_name": d.config.campus_name(c),
            })
        })
        .collect();
    let ranges: Vec<Value> = Span::ALL
        .iter()
        .map(|s| {
            json!({"value": s.as_str(), "active": *s == span,
                   "href": link(&name, &[("range", s.as_str()), ("cpu", &q.cpu)])})
        })
        .collect();
    let boot_ms = h["boot_time"].as_i64().unwrap_or(0) * 1000;
    let partial_params = [("range", span.as_str()), ("cpu", q.cpu.as_str())];
    let partial_params: Vec<&(&str, &str)> = partial_params.iter().filter(|p| !p.1.is_empty()).collect();
    Ok(json!({
            "charts_url": format!("/ui/partials/host-charts/{}?{}", path_segment(&name),
                                  serde_urlencoded::to_string(&partial_params).unwrap_or_default()),
            "charts_every": chart_refresh_seconds(d),
            "host": {
                "name": name, "hostname": h["hostname"], "ips": h["ips"], "up": h["up"].as_bool() == Some(true),
                "campus": campus, "campus_name": d.config.campus_name(campus), "system": h["system"],
                "role": h["role"], "os": h["os"], "kernel": h["kernel"], "cpus": h["cpus"],
                "memory": human_bytes(h["memory_bytes"].as_f64().unwrap_or(0.0)),
                "agent_version": h["agent_version"], "interval_s": interval / 1000,
                "boot_ms": boot_ms, "first_seen_ms": h["first_seen_ms"], "last_seen_ms": h["last_seen_ms"],
                "remote_addr": h["remote_addr"],
            },
            "targets": targets,
            "charts": charts,
            "range": span.as_str(),
            "ranges": ranges,
            "cpu_total": total_cpu,
            "cpu_mode_href": link(&name, &[("range", span.as_str()), ("cpu", "mode")]),
            "cpu_total_href": link(&name, &[("range", span.as_str()), ("cpu", "total")]),
            "updated_ms": now,
    }))
}

/// `/ui/hosts/{host}?…` with the host name percent-encoded as one path segment.
fn link(host: &str, params: &[(&str, &str)]) -> String {
    let params: Vec<(&str, &str)> = params.iter().copied().filter(|(_, v)| !v.is_empty()).collect();
    let qs = serde_urlencoded::to_string(&params).unwrap_or_default();
    let base = format!("/ui/hosts/{}", path_segment(host));
    if qs.is_empty() { base } else { format!("{base}?{qs}") }
}

/// Percent-encodes everything but unreserved characters, so any name is one path segment.
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The host page's charts, in node_exporter names as the agent writes them.
fn chart_specs(v: &Viewer, host: &str, span: Span, interval_ms: i64, total_cpu: bool) -> Vec<ChartSpec> {
    let h = promql_str(host);
    let w = format!("{}s", data::rate_window_s(span.ms(), interval_ms));
    let t = |k: &str| i18n::text(v.lang(), k);
    let q = |promql: String, legend: &[&'static str], name: &str| ChartQuery {
        promql,
        legend: legend.to_vec(),
        name: name.to_string(),
    };
    let cpu = if total_cpu {
        vec![q(
            format!(r#"1 - avg(rate(node_cpu_seconds_total{{host={h},mode="idle"}}[{w}]))"#),
            &[],
            &t("hosts_cpu_busy"),
        )]
    } else {
        // Each CPU contributes one second per second, so the mean over CPUs of a mode's rate
        // is that mode's share of the whole machine.
        vec![q(format!(r#"avg by (mode) (rate(node_cpu_seconds_total{{host={h},mode!="idle"}}[{w}]))"#), &["mode"], "")]
    };
    // Pseudo and container filesystems are left out by the agent already.
    let fs = format!(r#"host={h},fstype!~"tmpfs|squashfs|overlay|nsfs""#);
    vec![
        ChartSpec { id: "chart-cpu".into(), title: t("hosts_chart_cpu"), unit: "%", queries: cpu },
        ChartSpec {
            id: "chart-memory".into(),
            title: t("hosts_chart_memory"),
            unit: "B",
            queries: vec![
                q(
                    format!("node_memory_MemTotal_bytes{{host={h}}} - node_memory_MemAvailable_bytes{{host={h}}}"),
                    &[],
                    &t("hosts_mem_used"),
                ),
                q(format!("node_memory_MemTotal_bytes{{host={h}}}"), &[], &t("hosts_mem_total")),
            ],
        },
        ChartSpec {
            id: "chart-filesystem".into(),
            title: t("hosts_chart_filesystem"),
            unit: "%",
            queries: vec![q(
                format!("1 - node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}}"),
                &["mountpoint"],
                "",
            )],
        },
        ChartSpec {
            id: "chart-disk".into(),
            title: t("hosts_chart_disk"),
            unit: "B/s",
            queries: vec![
                q(format!("rate(node_disk_read_bytes_total{{host={h}}}[{w}])"), &["device"], &t("hosts_read")),
                q(format!("rate(node_disk_written_bytes_total{{host={h}}}[{w}])"), &["device"], &t("hosts_write")),
            ],
        },
        ChartSpec {
            id: "chart-network".into(),
            title: t("hosts_chart_network"),
            unit: "B/s",
            queries: vec![
                q(
                    format!(r#"rate(node_network_receive_bytes_total{{host={h},device!="lo"}}[{w}])"#),
                    &["device"],
                    &t("hosts_rx"),
                ),
                q(
                    format!(r#"rate(node_network_transmit_bytes_total{{host={h},device!="lo"}}[{w}])"#),
                    &["device"],
                    &t("hosts_tx"),
                ),
            ],
        },
        ChartSpec {
            id: "chart-load".into(),
            title: t("hosts_chart_load"),
            unit: "",
            queries: vec![
                q(format!("node_load1{{host={h}}}"), &[], "1m"),
                q(format!("node_load5{{host={h}}}"), &[], "5m"),
                q(format!("node_load15{{host={h}}}"), &[], "15m"),
            ],
        },
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::testkit::Kit;
    use axum::Json;
    use axum::Router;
    use axum::extract::Query;
    use axum::http::StatusCode;
    use axum::routing::get;
    use serde_json::{Value, json};
    use std::sync::{Arc, Mutex};

    pub(crate) fn host(name: &str, ip: &str, campus: &str, up: bool, targets: Value) -> Value {
        json!({"host": name, "hostname": name, "ips": [ip], "os": "Debian 12", "kernel": "6.1", "cpus": 4,
               "memory_bytes": 8u64 << 30, "agent_version": "0.1.0", "campus": campus, "role": "db", "system": "HIS",
               "interval_ms": 10000, "boot_time": 1_700_000_000, "targets": targets, "remote_addr": ip,
               "first_seen_ms": 1, "last_seen_ms": tingzhen_core::now_ms(), "up": up})
    }

    /// The collector's inventory and query API over two campuses; records every PromQL query.
    fn backend(queries: Arc<Mutex<Vec<String>>>) -> Router {
        let pg = json!([{"name": "his-pg", "kind": "postgres", "address": "10.1.0.5:5432", "campus": "", "system": "HIS",
                          "status": "up", "last_error": "", "last_collect_ms": 1}]);
        let hosts = json!([
            host("his-db-01", "10.1.0.5", "east", true, pg),
            host("<b>west-app</b>", "10.2.0.9", "west", false, json!([])),
        ]);
        let ok = |v: Value| json!({"status": "success", "data": v});
        let (h1, h2) = (ok(hosts.clone()), ok(json!({"hosts": hosts, "targets": []})));
        Router::new()
            .route("/api/v1/inventory/hosts", get(move || async move { Json(h1) }))
            .route("/api/v1/inventory", get(move || async move { Json(h2) }))
            .route(
                "/api/v1/query_range",
                get(move |Query(p): Query<Vec<(String, String)>>| async move {
                    let query = p.iter().find(|(k, _)| k == "query").map(|(_, v)| v.clone()).unwrap_or_default();
                    queries.lock().unwrap().push(query.clone());
                    let start: f64 = p.iter().find(|(k, _)| k == "start").unwrap().1.parse().unwrap();
                    let metric = if query.contains("by (mode)") {
                        json!({"mode": "user"})
                    } else if query.contains("mountpoint") || query.contains("filesystem") {
                        json!({"mountpoint": "/<data>"})
                    } else {
                        json!({})
                    };
                    Json(json!({"status": "success", "data": {"resultType": "matrix", "result": [
                        {"metric": metric, "values": [[start, "0.25"], [start + 60.0, "0.5"]]}
                    ]}}))
                }),
            )
    }

    #[tokio::test]
    async fn the_list_shows_visible_hosts_with_filters_and_escapes_names() {
        let kit = Kit::new(backend(Arc::default()));
        let admin = kit.login("admin1", &[("admin", "*")]);
        let a = kit.get("/ui/hosts", Some(&admin)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.body.contains(r#"id="hosts-table""#));
        assert!(a.body.contains("his-db-01") && a.body.contains("10.1.0.5") && a.body.contains("8GiB"));
        assert!(a.body.contains("&lt;b&gt;west-app&lt;/b&gt;") && !a.body.contains("<b>west-app"), "escaped");
        let down = kit.get("/ui/hosts?status=down", Some(&admin)).await;
        assert!(!down.body.contains("his-db-01") && down.body.contains("west-app"), "{}", down.body);
        let east = kit.get("/ui/hosts?campus=east", Some(&admin)).await;
        assert!(east.body.contains("his-db-01") && !east.body.contains("west-app"));
        let live = kit.get("/ui/partials/hosts?status=down", Some(&admin)).await;
        assert_eq!(live.status, StatusCode::OK);
        assert!(!live.body.contains("<html") && live.body.contains(r#"id="hosts-table""#));
        assert!(live.body.contains("west-app") && !live.body.contains("his-db-01"), "the partial keeps the filter");
        let page = kit.get("/ui/hosts?status=down", Some(&admin)).await;
        assert!(page.body.contains(r#"data-refresh="/ui/partials/hosts?status&#x3D;down""#), "{}", page.body);
        let bad = kit.get("/ui/hosts?status=sideways", Some(&admin)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.body.contains("status"), "{}", bad.body);
    }

    #[tokio::test]
    async fn a_campus_viewer_lists_only_that_campus_and_is_refused_another() {
        let kit = Kit::new(backend(Arc::default()));
        let viewer = kit.login("east-viewer", &[("viewer", "east")]);
        let a = kit.get("/ui/hosts", Some(&viewer)).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.body.contains("his-db-01") && !a.body.contains("west-app"), "{}", a.body);
        assert!(!a.body.contains(r#"value="west""#), "no filter option for a hidden campus");
        assert_eq!(kit.get("/ui/partials/hosts?campus=west", Some(&viewer)).await.status, StatusCode::FORBIDDEN);
        let refused = kit.get("/ui/hosts?campus=west", Some(&viewer)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(!refused.body.contains("west-app"));
        let auditor = kit.login("aud", &[("auditor", "*")]);
        let none = kit.get("/ui/hosts", Some(&auditor)).await;
        assert_eq!(none.status, StatusCode::FORBIDDEN);
        assert!(!none.body.contains("his-db-01"));
    }

    #[tokio::test]
    async fn the_detail_page_draws_charts_from_queries_naming_the_host() {
        let queries = Arc::new(Mutex::new(Vec::new()));
        let kit = Kit::new(backend(queries.clone()));
        let viewer = kit.login("east-viewer", &[("viewer", "east")]);
        let a = kit.get("/ui/hosts/his-db-01", Some(&viewer)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.body.contains(r#"id="host-charts""#));
        for id in ["chart-cpu", "chart-memory", "chart-filesystem", "chart-disk", "chart-network", "chart-load"] {
            assert!(a.body.contains(&format!(r#"id="{id}""#)), "{id} missing");
        }
        assert!(a.body.matches("<path d=\"M").count() >= 6, "every chart has a line: {}", a.body);
        assert!(a.body.contains("/&lt;data&gt;") && !a.body.contains("/<data>"), "legend escaped");
        assert!(a.body.contains("/ui/targets/his-db-01/his-pg"), "watched targets are linked");
        assert!(a.body.contains("Debian 12") && a.body.contains("10.1.0.5"));
        let seen = queries.lock().unwrap().clone();
        assert!(seen.iter().all(|q| q.contains(r#"host="his-db-01""#)), "{seen:?}");
        assert!(seen.iter().any(|q| q.contains("node_cpu_seconds_total") && q.contains("by (mode)")));
        assert!(seen.iter().any(|q| q.contains("node_memory_MemAvailable_bytes")));

        let live = kit.get("/ui/partials/host-charts/his-db-01?range=6h", Some(&viewer)).await;
        assert_eq!(live.status, StatusCode::OK);
        assert!(!live.body.contains("<html") && live.body.contains(r#"id="host-charts""#));
        assert!(a.body.contains(r#"data-refresh="/ui/partials/host-charts/his-db-01?range&#x3D;1h""#));

        queries.lock().unwrap().clear();
        let week = kit.get("/ui/hosts/his-db-01?range=7d&cpu=total", Some(&viewer)).await;
        assert_eq!(week.status, StatusCode::OK);
        let seen = queries.lock().unwrap().clone();
        assert!(seen.iter().any(|q| q.starts_with("1 - avg(rate(node_cpu_seconds_total")), "{seen:?}");
        assert!(seen.iter().all(|q| !q.contains("[60s]")), "a week uses wider rate windows: {seen:?}");
        let bad = kit.get("/ui/hosts/his-db-01?range=3y", Some(&viewer)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.body.contains("range"));
    }

    #[tokio::test]
    async fn another_campus_host_is_refused_and_audited_not_shown() {
        let queries = Arc::new(Mutex::new(Vec::new()));
        let kit = Kit::new(backend(queries.clone()));
        let viewer = kit.login("east-viewer", &[("viewer", "east")]);
        let refused = kit.get("/ui/hosts/%3Cb%3Ewest-app%3C%2Fb%3E", Some(&viewer)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(!refused.body.contains("10.2.0.9"), "{}", refused.body);
        let refused = kit.get("/ui/partials/host-charts/%3Cb%3Ewest-app%3C%2Fb%3E", Some(&viewer)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(queries.lock().unwrap().is_empty(), "no data was queried for a refused host");
        let refusals = audit(&kit, "access_refused");
        assert!(refusals.iter().any(|r| r.actor == "east-viewer" && r.detail.contains("west")), "{refusals:?}");
        let missing = kit.get("/ui/hosts/nope", Some(&viewer)).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    }

    pub(crate) fn audit(kit: &Kit, event: &str) -> Vec<tingzhen_identity::audit::AuditRecord> {
        let q = tingzhen_identity::audit::AuditQuery { event: Some(event.into()), ..Default::default() };
        kit.dashboard.identity.audit_log().query(&q).unwrap()
    }

    #[test]
    fn path_segments_and_promql_strings_cannot_break_out() {
        assert_eq!(super::path_segment("a b/c?<"), "a%20b%2Fc%3F%3C");
        assert_eq!(super::super::data::promql_str(r#"x"}or vector(1)#\"#), r#""x\"}or vector(1)#\\""#);
    }
}
