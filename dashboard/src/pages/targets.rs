//! Databases, middleware, probes and processes (MON-3, MON-4, MON-14): the list of every target
//! the agents watch, filtered by class and campus and cut to the viewer's campuses, and one
//! target's page: its status history and availability, the key charts of its kind (series named
//! as the agent writes them, with `host` and `target` labels), and for databases the most
//! expensive SQL from the collector's top-SQL store. Statement text is sensitive: it is masked
//! unless the viewer holds `ViewSensitive` on the target's campus and asks for it, and every
//! unmasked view is audited.

use super::data::{self, ChartQuery, ChartSpec, Span, promql_str, str_of};
use super::hosts::path_segment;
use crate::web::Viewer;
use crate::{Dashboard, i18n};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tingzhen_identity::Permission;

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/ui/targets", get(list))
        .route("/ui/targets/{host}/{name}", get(detail))
        .route("/ui/partials/targets", get(list_partial))
        .route("/ui/partials/target-charts/{host}/{name}", get(charts_partial))
}

const CLASSES: [&str; 4] = ["database", "middleware", "probe", "process"];
/// Most statements shown in the top-SQL table.
const TOP_SQL_ROWS: usize = 20;
/// Most snapshots read for one page (the API's own maximum).
const TOP_SQL_SNAPSHOTS: &str = "1000";

#[derive(Debug, Default, Deserialize)]
struct ListFilter {
    #[serde(default)]
    class: String,
    #[serde(default)]
    campus: String,
    #[serde(default)]
    status: String,
}

/// The translated word for a target status (`up`, `down`, `pending`).
pub(crate) fn status_text(v: &Viewer, status: &str) -> String {
    let key = match status {
        "up" => "status_up",
        "down" => "targets_status_down",
        "pending" => "targets_status_pending",
        _ => "status_unknown",
    };
    i18n::text(v.lang(), key)
}

/// `/ui/targets/{host}/{name}?…`, both names percent-encoded as path segments.
pub(crate) fn link(host: &str, name: &str, params: &[(&str, &str)]) -> String {
    let params: Vec<(&str, &str)> = params.iter().copied().filter(|(_, v)| !v.is_empty()).collect();
    let qs = serde_urlencoded::to_string(&params).unwrap_or_default();
    let base = format!("/ui/targets/{}/{}", path_segment(host), path_segment(name));
    if qs.is_empty() { base } else { format!("{base}?{qs}") }
}

fn class_key(class: &str) -> &'static str {
    match class {
        "database" => "databases",
        "middleware" => "middleware",
        "probe" => "probes",
        _ => "targets_class_process",
    }
}

async fn list(State(d): State<Dashboard>, v: Viewer, Query(f): Query<ListFilter>) -> Response {
    match list_data(&d, &v, f).await {
        Ok(data) => d.page(&v, "pages/targets", "targets_title", data),
        Err(r) => r,
    }
}

/// The live part of the list (class counts and table), re-fetched by `app.js`.
async fn list_partial(State(d): State<Dashboard>, v: Viewer, Query(f): Query<ListFilter>) -> Response {
    match list_data(&d, &v, f).await {
        Ok(data) => d.fragment(&v, "partials/targets_table", data),
        Err(r) => r,
    }
}

async fn list_data(d: &Dashboard, v: &Viewer, f: ListFilter) -> Result<Value, Response> {
    if let Some(r) = data::refuse_if_blind(d, v) {
        return Err(r);
    }
    if !f.class.is_empty() && !CLASSES.contains(&f.class.as_str()) {
        return Err(data::bad_request(d, v, &format!("class: {:?} is not one of {}", f.class, CLASSES.join(", "))));
    }
    if !matches!(f.status.as_str(), "" | "up" | "down" | "pending") {
        return Err(data::bad_request(d, v, &format!("status: {:?} is not up, down or pending", f.status)));
    }
    if !f.campus.is_empty() {
        data::require_campus(d, v, &f.campus).await?;
    }
    let inv = data::inventory(d, v, "").await.map_err(|e| d.backend_page(v, &e))?;
    let total = inv.targets.len();
    let in_campus: Vec<&Value> =
        inv.targets.iter().filter(|t| f.campus.is_empty() || str_of(t, "campus") == f.campus).collect();
    let classes: Vec<Value> = CLASSES
        .iter()
        .map(|c| {
            let of: Vec<&&Value> = in_campus.iter().filter(|t| str_of(t, "class") == *c).collect();
            let failing = of.iter().filter(|t| str_of(t, "status") == "down" || t["agent_up"] == false).count();
            json!({"class": c, "label": i18n::text(v.lang(), class_key(c)), "count": of.len(), "failing": failing,
                   "selected": f.class == *c, "href": list_href(c, &f.campus, &f.status)})
        })
        .collect();
    let rows: Vec<Value> = in_campus
        .iter()
        .filter(|t| f.class.is_empty() || str_of(t, "class") == f.class)
        .filter(|t| f.status.is_empty() || str_of(t, "status") == f.status)
        .map(|t| target_row(d, v, t))
        .collect();
    let campuses: Vec<Value> = data::campus_names(d, inv.hosts.iter().map(|h| str_of(h, "campus").to_string()))
        .into_iter()
        .filter(|c| data::visible(&v.scope(), str_of(c, "id")))
        .map(|mut c| {
            c["selected"] = json!(str_of(&c, "id") == f.campus);
            c
        })
        .collect();
    let statuses: Vec<Value> = ["up", "down", "pending"]
        .iter()
        .map(|s| json!({"value": s, "label": status_text(v, s), "selected": f.status == *s}))
        .collect();
    let partial_url = list_href(&f.class, &f.campus, &f.status).replacen("/ui/targets", "/ui/partials/targets", 1);
    Ok(json!({
            "partial_url": partial_url,
            "updated_ms": data::now_ms(),
            "targets": rows,
            "shown": rows.len(),
            "total": total,
            "classes": classes,
            "campuses": campuses,
            "filter": {"class": f.class, "campus": f.campus, "status": f.status},
            "all_href": list_href("", &f.campus, &f.status),
            "statuses": statuses,
    }))
}

/// `/ui/targets` with the given filters (empty ones left out).
fn list_href(class: &str, campus: &str, status: &str) -> String {
    let params: Vec<(&str, &str)> =
        [("class", class), ("campus", campus), ("status", status)].into_iter().filter(|(_, v)| !v.is_empty()).collect();
    if params.is_empty() {
        return "/ui/targets".into();
    }
    format!("/ui/targets?{}", serde_urlencoded::to_string(&params).unwrap_or_default())
}

pub(crate) fn target_row(d: &Dashboard, v: &Viewer, t: &Value) -> Value {
    let (host, name) = (str_of(t, "host"), str_of(t, "name"));
    let agent_up = t["agent_up"].as_bool() != Some(false);
    json!({
        "name": name, "href": link(host, name, &[]), "kind": t["kind"], "class": t["class"],
        "class_text": i18n::text(v.lang(), class_key(str_of(t, "class"))),
        "address": t["address"], "host": host, "host_href": format!("/ui/hosts/{}", path_segment(host)),
        "campus_name": d.config.campus_name(str_of(t, "campus")), "system": t["system"],
        "status": t["status"], "status_text": status_text(v, str_of(t, "status")), "agent_up": agent_up,
        "last_error": t["last_error"], "last_collect_ms": t["last_collect_ms"],
    })
}

#[derive(Debug, Default, Deserialize)]
struct DetailQuery {
    #[serde(default)]
    range: String,
    /// `1` asks for the statement text of top SQL (needs `ViewSensitive`, audited).
    #[serde(default)]
    sql: String,
}

async fn detail(
    State(d): State<Dashboard>,
    v: Viewer,
    Path((host_name, name)): Path<(String, String)>,
    Query(q): Query<DetailQuery>,
) -> Response {
    let span = match Span::parse(&q.range) {
        Ok(s) => s,
        Err(e) => return data::bad_request(&d, &v, &e),
    };
    if !matches!(q.sql.as_str(), "" | "0" | "1") {
        return data::bad_request(&d, &v, &format!("sql: {:?} is not 0 or 1", q.sql));
    }
    let (h, t, campus) = match lookup(&d, &v, &host_name, &name).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let campus_opt = (!campus.is_empty()).then_some(campus.as_str());
    let show_sql = q.sql == "1";
    if show_sql && let Err(r) = d.require_page(&v, Permission::ViewSensitive, campus_opt).await {
        return r;
    }
    let kind = str_of(&t, "kind");
    let class = data::target_class(kind);
    let lang = v.lang();
    let now = data::now_ms();
    let mut data = charts_data(&d, &v, &h, &t, span, now).await;

    let (top_sql, top_sql_error) = if class == "database" {
        match top_sql(&d, &host_name, &name, now - span.ms()).await {
            Ok(rows) => (rows, String::new()),
            Err(e) => (Vec::new(), e.to_string()),
        }
    } else {
        (Vec::new(), String::new())
    };
    let can_see_sql = v.can(Permission::ViewSensitive, campus_opt);
    if show_sql && !top_sql.is_empty() {
        d.audit(
            &v.session,
            "sensitive_view",
            format!(
                "top SQL text of {host_name}/{name} ({} statements, last {})",
                top_sql.len().min(TOP_SQL_ROWS),
                span.as_str()
            ),
        )
        .await;
    }
    let statements: Vec<Value> = top_sql
        .iter()
        .take(TOP_SQL_ROWS)
        .map(|s| {
            let text = if show_sql { s.query.clone() } else { crate::mask::sql(&s.query) };
            let mean = if s.calls > 0.0 { s.total_ms / s.calls } else { 0.0 };
            json!({
                "query_id": s.query_id, "query": text, "masked": !show_sql, "database": s.database, "user": s.user,
                "calls": s.calls, "total_ms": round2(s.total_ms), "mean_ms": round2(mean), "rows": s.rows,
            })
        })
        .collect();
    let ranges: Vec<Value> = Span::ALL
        .iter()
        .map(|s| {
            let href = link(&host_name, &name, &[("range", s.as_str()), ("sql", &q.sql)]);
            json!({"value": s.as_str(), "active": *s == span, "href": href})
        })
        .collect();
    let up = up_metric(kind);
    let page = json!({
        "target": {
            "name": name, "kind": kind, "class": class, "class_text": i18n::text(lang, class_key(class)),
            "address": t["address"], "system": t["system"], "campus_name": d.config.campus_name(&campus),
            "status": t["status"], "status_text": status_text(&v, str_of(&t, "status")),
            "last_error": t["last_error"], "last_collect_ms": t["last_collect_ms"],
            "host": host_name, "host_href": format!("/ui/hosts/{}", path_segment(&host_name)),
            "host_ips": h["ips"], "agent_up": h["up"].as_bool() == Some(true), "up_metric": up,
        },
        "charts_url": format!("/ui/partials/target-charts/{}/{}?range={}", path_segment(&host_name),
                              path_segment(&name), span.as_str()),
        "charts_every": super::hosts::chart_refresh_seconds(&d),
        "ranges": ranges,
        "range": span.as_str(),
        "is_database": class == "database",
        "top_sql": statements,
        "top_sql_error": top_sql_error,
        "sql_shown": show_sql,
        "can_see_sql": can_see_sql,
        "sql_show_href": link(&host_name, &name, &[("range", span.as_str()), ("sql", "1")]),
        "sql_hide_href": link(&host_name, &name, &[("range", span.as_str())]),
    });
    if let (Value::Object(m), Value::Object(p)) = (&mut data, page) {
        m.extend(p);
    }
    d.page(&v, "pages/target", "targets_detail_title", data)
}

#[derive(Debug, Default, Deserialize)]
struct ChartsQuery {
    #[serde(default)]
    range: String,
}

/// The target's status history, availability and charts alone, re-fetched by `app.js` (never
/// its SQL, so a refresh is no sensitive view).
async fn charts_partial(
    State(d): State<Dashboard>,
    v: Viewer,
    Path((host_name, name)): Path<(String, String)>,
    Query(q): Query<ChartsQuery>,
) -> Response {
    let span = match Span::parse(&q.range) {
        Ok(s) => s,
        Err(e) => return data::bad_request(&d, &v, &e),
    };
    let (h, t, _) = match lookup(&d, &v, &host_name, &name).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let data = charts_data(&d, &v, &h, &t, span, data::now_ms()).await;
    d.fragment(&v, "partials/targets_charts", data)
}

/// The host and target of `host_name`/`name` and the target's campus (its own, else its host's,
/// never the URL's), once the viewer is allowed to see that campus (a refusal is audited).
async fn lookup(d: &Dashboard, v: &Viewer, host_name: &str, name: &str) -> Result<(Value, Value, String), Response> {
    let hosts = data::all_hosts(d).await.map_err(|e| d.backend_page(v, &e))?;
    let found = hosts.into_iter().find(|h| str_of(h, "host") == host_name).and_then(|h| {
        let t = h["targets"].as_array()?.iter().find(|t| str_of(t, "name") == name)?.clone();
        Some((h, t))
    });
    let Some((h, t)) = found else {
        if let Some(r) = data::refuse_if_blind(d, v) {
            return Err(r);
        }
        let text = format!("{}: {host_name}/{name}", i18n::text(v.lang(), "targets_not_found"));
        return Err(d.message_page(v, StatusCode::NOT_FOUND, "not_found_title", &text));
    };
    let campus = if str_of(&t, "campus").is_empty() { str_of(&h, "campus") } else { str_of(&t, "campus") }.to_string();
    data::require_campus(d, v, &campus).await?;
    Ok((h, t, campus))
}

/// Status history, availability over the span and the kind's charts of one target.
async fn charts_data(d: &Dashboard, v: &Viewer, h: &Value, t: &Value, span: Span, now: i64) -> Value {
    let kind = str_of(t, "kind");
    let interval = h["interval_ms"].as_i64().unwrap_or(15_000);
    let sel = format!("host={},target={}", promql_str(str_of(h, "host")), promql_str(str_of(t, "name")));
    let w = format!("{}s", data::rate_window_s(span.ms(), interval));
    let lang = v.lang();
    let up = up_metric(kind);
    let mut specs = vec![ChartSpec {
        id: "chart-status".into(),
        title: i18n::text(lang, "targets_chart_status"),
        unit: "",
        queries: vec![ChartQuery { promql: format!("{up}{{{sel}}}"), legend: vec![], name: up.to_string() }],
    }];
    specs.extend(kind_charts(kind, &sel, &w, |k| i18n::text(lang, k)));
    let empty = i18n::text(lang, "mon_no_data");
    let mut charts = data::draw_charts(d, specs, now - span.ms(), now, &empty).await;
    let status = charts.remove(0);
    let availability = match data::instant(d, &format!("avg_over_time({up}{{{sel}}}[{}s])", span.ms() / 1000)).await {
        Ok(r) => r.first().map(|(_, x)| *x),
        Err(e) => {
            tracing::warn!(error = %e, "availability query failed");
            None
        }
    };
    json!({
        "status_chart": status,
        "up_metric": up,
        "availability_text": availability
            .filter(|a| a.is_finite())
            .map(|a| format!("{:.2}%", a * 100.0))
            .unwrap_or_else(|| "—".to_string()),
        "range": span.as_str(),
        "charts": charts,
        "updated_ms": now,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The liveness series of each kind (the well-known exporter's name, as the agent writes it).
fn up_metric(kind: &str) -> &'static str {
    match kind {
        "postgres" => "pg_up",
        "mysql" => "mysql_up",
        "oracle" => "oracledb_up",
        "redis" => "redis_up",
        "rabbitmq" => "rabbitmq_up",
        "nats" => "nats_up",
        "mqtt" => "mqtt_up",
        "http" | "tcp" => "probe_success",
        _ => "namedprocess_up",
    }
}

/// One statement's cost summed over the snapshots of the range.
#[derive(Debug, Default, Clone)]
struct Statement {
    query_id: String,
    query: String,
    database: String,
    user: String,
    calls: f64,
    total_ms: f64,
    rows: f64,
}

/// Top SQL of one target since `from_ms`: the snapshots' statements summed per (id, database,
/// user), most total time first.
async fn top_sql(d: &Dashboard, host: &str, target: &str, from_ms: i64) -> Result<Vec<Statement>, crate::BackendError> {
    let since = (from_ms / 1000).to_string();
    let snaps = d
        .backend
        .get(
            "/api/v1/db/top-sql",
            &[("host", host), ("target", target), ("since", &since), ("limit", TOP_SQL_SNAPSHOTS)],
        )
        .await?;
    let mut by_key: BTreeMap<(String, String, String), Statement> = BTreeMap::new();
    // Snapshots come newest first, so the first text seen for a statement is the latest.
    for snap in snaps.as_array().into_iter().flatten() {
        for s in snap["statements"].as_array().into_iter().flatten() {
            let key =
                (str_of(s, "query_id").to_string(), str_of(s, "database").to_string(), str_of(s, "user").to_string());
            let e = by_key.entry(key.clone()).or_insert_with(|| Statement {
                query_id: key.0,
                query: str_of(s, "query").to_string(),
                database: key.1,
                user: key.2,
                ..Default::default()
            });
            e.calls += s["calls"].as_f64().unwrap_or(0.0);
            e.total_ms += s["total_time_ms"].as_f64().unwrap_or(0.0);
            e.rows += s["rows"].as_f64().unwrap_or(0.0);
        }
    }
    let mut out: Vec<Statement> = by_key.into_values().collect();
    out.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then_with(|| a.query_id.cmp(&b.query_id)));
    Ok(out)
}

/// The charts of a target's kind. `sel` selects its series, `w` is the rate window.
fn kind_charts(kind: &str, sel: &str, w: &str, t: impl Fn(&str) -> String) -> Vec<ChartSpec> {
    let q = |promql: String, legend: &[&'static str], name: &str| ChartQuery {
        promql,
        legend: legend.to_vec(),
        name: name.to_string(),
    };
    let chart = |id: &str, title: &str, unit: &'static str, queries: Vec<ChartQuery>| ChartSpec {
        id: format!("chart-{id}"),
        title: t(title),
        unit,
        queries,
    };
    match kind {
        "postgres" => vec![
            chart(
                "connections",
                "targets_chart_connections",
                "",
                vec![
                    q(format!("pg_stat_activity_connections{{{sel}}}"), &[], &t("targets_connections")),
                    q(format!("pg_settings_max_connections{{{sel}}}"), &[], &t("targets_max")),
                ],
            ),
            chart(
                "connections-state",
                "targets_chart_connections_state",
                "",
                vec![q(format!("sum by (state) (pg_stat_activity_count{{{sel}}})"), &["state"], "")],
            ),
            chart(
                "database-size",
                "targets_chart_database_size",
                "B",
                vec![q(format!("pg_database_size_bytes{{{sel}}}"), &["datname"], "")],
            ),
            chart(
                "tablespace-size",
                "targets_chart_tablespace_size",
                "B",
                vec![q(format!("pg_tablespace_size_bytes{{{sel}}}"), &["tablespace"], "")],
            ),
            chart(
                "cache-hit",
                "targets_chart_cache_hit",
                "%",
                vec![q(format!("pg_stat_database_cache_hit_ratio{{{sel}}}"), &["datname"], "")],
            ),
            chart(
                "transactions",
                "targets_chart_transactions",
                "",
                vec![
                    q(format!("sum(rate(pg_stat_database_xact_commit{{{sel}}}[{w}]))"), &[], &t("targets_commits")),
                    q(format!("sum(rate(pg_stat_database_xact_rollback{{{sel}}}[{w}]))"), &[], &t("targets_rollbacks")),
                ],
            ),
            chart(
                "replication-lag",
                "targets_chart_replication_lag",
                "",
                vec![
                    q(format!("pg_replication_lag_seconds{{{sel}}}"), &[], &t("targets_standby")),
                    q(format!("pg_stat_replication_replay_lag_seconds{{{sel}}}"), &["application_name"], ""),
                ],
            ),
            chart(
                "locks",
                "targets_chart_locks",
                "",
                vec![q(format!("pg_locks_waiting{{{sel}}}"), &[], &t("targets_waiting"))],
            ),
        ],
        "mysql" => vec![
            chart(
                "connections",
                "targets_chart_connections",
                "",
                vec![
                    q(format!("mysql_global_status_threads_connected{{{sel}}}"), &[], &t("targets_connections")),
                    q(format!("mysql_global_status_threads_running{{{sel}}}"), &[], &t("targets_running")),
                    q(format!("mysql_global_variables_max_connections{{{sel}}}"), &[], &t("targets_max")),
                ],
            ),
            chart(
                "commands",
                "targets_chart_commands",
                "",
                vec![q(
                    format!("sum by (command) (rate(mysql_global_status_commands_total{{{sel}}}[{w}]))"),
                    &["command"],
                    "",
                )],
            ),
            chart(
                "slow-queries",
                "targets_chart_slow_queries",
                "",
                vec![q(format!("rate(mysql_global_status_slow_queries{{{sel}}}[{w}])"), &[], &t("targets_per_second"))],
            ),
            chart(
                "cache-hit",
                "targets_chart_cache_hit",
                "%",
                vec![q(format!("mysql_innodb_buffer_pool_hit_ratio{{{sel}}}"), &[], "InnoDB buffer pool")],
            ),
            chart(
                "database-size",
                "targets_chart_database_size",
                "B",
                vec![q(format!("sum by (schema) (mysql_info_schema_table_size{{{sel}}})"), &["schema"], "")],
            ),
            chart(
                "locks",
                "targets_chart_locks",
                "",
                vec![q(
                    format!("mysql_global_status_innodb_row_lock_current_waits{{{sel}}}"),
                    &[],
                    &t("targets_waiting"),
                )],
            ),
        ],
        "oracle" => vec![
            chart(
                "sessions",
                "targets_chart_sessions",
                "",
                vec![q(format!("sum by (status) (oracledb_sessions_value{{{sel}}})"), &["status"], "")],
            ),
            chart(
                "tablespace-used",
                "targets_chart_tablespace_used",
                "%",
                vec![q(format!("oracledb_tablespace_used_percent{{{sel}}} / 100"), &["tablespace"], "")],
            ),
            chart(
                "tablespace-size",
                "targets_chart_tablespace_size",
                "B",
                vec![q(format!("oracledb_tablespace_bytes{{{sel}}}"), &["tablespace"], "")],
            ),
            chart(
                "activity",
                "targets_chart_activity",
                "",
                vec![
                    q(format!("rate(oracledb_activity_execute_count{{{sel}}}[{w}])"), &[], &t("targets_executes")),
                    q(format!("rate(oracledb_activity_user_commits{{{sel}}}[{w}])"), &[], &t("targets_commits")),
                ],
            ),
            chart(
                "waits",
                "targets_chart_waits",
                "",
                vec![q(
                    format!("rate(oracledb_wait_class_time_waited_seconds_total{{{sel}}}[{w}])"),
                    &["wait_class"],
                    "",
                )],
            ),
        ],
        "redis" => vec![
            chart(
                "connections",
                "targets_chart_connections",
                "",
                vec![
                    q(format!("redis_connected_clients{{{sel}}}"), &[], &t("targets_connections")),
                    q(format!("redis_blocked_clients{{{sel}}}"), &[], &t("targets_blocked")),
                ],
            ),
            chart(
                "memory",
                "targets_chart_memory",
                "B",
                vec![
                    q(format!("redis_memory_used_bytes{{{sel}}}"), &[], &t("hosts_mem_used")),
                    q(format!("redis_memory_max_bytes{{{sel}}} > 0"), &[], &t("targets_max")),
                ],
            ),
            chart(
                "cache-hit",
                "targets_chart_cache_hit",
                "%",
                vec![q(format!("redis_keyspace_hit_ratio{{{sel}}}"), &[], &t("targets_hit_ratio"))],
            ),
            chart(
                "ops",
                "targets_chart_ops",
                "",
                vec![q(format!("redis_instantaneous_ops_per_sec{{{sel}}}"), &[], &t("targets_per_second"))],
            ),
            chart("keys", "targets_chart_keys", "", vec![q(format!("redis_db_keys{{{sel}}}"), &["db"], "")]),
            chart(
                "replication-lag",
                "targets_chart_replication_lag",
                "",
                vec![q(format!("redis_connected_slave_lag_seconds{{{sel}}}"), &["slave_ip"], "")],
            ),
        ],
        "rabbitmq" => vec![
            chart(
                "queue-depth",
                "targets_chart_queue_depth",
                "",
                vec![
                    q(format!("rabbitmq_queue_messages_ready_global{{{sel}}}"), &[], &t("targets_ready")),
                    q(format!("rabbitmq_queue_messages_unacknowledged_global{{{sel}}}"), &[], &t("targets_unacked")),
                ],
            ),
            chart(
                "queues",
                "targets_chart_deepest_queues",
                "",
                vec![q(format!("topk(8, rabbitmq_queue_messages{{{sel}}})"), &["vhost", "queue"], "")],
            ),
            chart(
                "message-rates",
                "targets_chart_message_rates",
                "",
                vec![
                    q(
                        format!("rate(rabbitmq_global_messages_published_total{{{sel}}}[{w}])"),
                        &[],
                        &t("targets_published"),
                    ),
                    q(
                        format!("rate(rabbitmq_global_messages_delivered_total{{{sel}}}[{w}])"),
                        &[],
                        &t("targets_delivered"),
                    ),
                ],
            ),
            chart(
                "connections",
                "targets_chart_connections",
                "",
                vec![
                    q(format!("rabbitmq_connections{{{sel}}}"), &[], &t("targets_connections")),
                    q(format!("rabbitmq_channels{{{sel}}}"), &[], &t("targets_channels")),
                    q(format!("rabbitmq_consumers{{{sel}}}"), &[], &t("targets_consumers")),
                ],
            ),
        ],
        "nats" => vec![
            chart(
                "connections",
                "targets_chart_connections",
                "",
                vec![
                    q(format!("gnatsd_varz_connections{{{sel}}}"), &[], &t("targets_connections")),
                    q(format!("gnatsd_varz_subscriptions{{{sel}}}"), &[], &t("targets_subscriptions")),
                ],
            ),
            chart(
                "message-rates",
                "targets_chart_message_rates",
                "",
                vec![
                    q(format!("rate(gnatsd_varz_in_msgs{{{sel}}}[{w}])"), &[], &t("targets_in")),
                    q(format!("rate(gnatsd_varz_out_msgs{{{sel}}}[{w}])"), &[], &t("targets_out")),
                ],
            ),
            chart(
                "bytes",
                "targets_chart_bytes",
                "B/s",
                vec![
                    q(format!("rate(gnatsd_varz_in_bytes{{{sel}}}[{w}])"), &[], &t("targets_in")),
                    q(format!("rate(gnatsd_varz_out_bytes{{{sel}}}[{w}])"), &[], &t("targets_out")),
                ],
            ),
            chart(
                "slow-consumers",
                "targets_chart_slow_consumers",
                "",
                vec![q(format!("increase(gnatsd_varz_slow_consumers{{{sel}}}[{w}])"), &[], "")],
            ),
            chart("memory", "targets_chart_memory", "B", vec![q(format!("gnatsd_varz_mem{{{sel}}}"), &[], "")]),
        ],
        "mqtt" => vec![
            chart(
                "connections",
                "targets_chart_connections",
                "",
                vec![q(format!("broker_clients_connected{{{sel}}}"), &[], &t("targets_connections"))],
            ),
            chart(
                "message-rates",
                "targets_chart_message_rates",
                "",
                vec![
                    q(format!("rate(broker_messages_received{{{sel}}}[{w}])"), &[], &t("targets_in")),
                    q(format!("rate(broker_messages_sent{{{sel}}}[{w}])"), &[], &t("targets_out")),
                ],
            ),
            chart(
                "latency",
                "targets_chart_latency",
                "",
                vec![q(format!("mqtt_ping_seconds{{{sel}}}"), &[], "PINGREQ")],
            ),
        ],
        "http" | "tcp" => {
            let mut v = vec![chart(
                "latency",
                "targets_chart_latency",
                "",
                vec![q(format!("probe_duration_seconds{{{sel}}}"), &[], &t("targets_seconds"))],
            )];
            if kind == "http" {
                v.push(chart(
                    "http-status",
                    "targets_chart_http_status",
                    "",
                    vec![q(format!("probe_http_status_code{{{sel}}}"), &[], "HTTP")],
                ));
                v.push(chart(
                    "cert-days",
                    "targets_chart_cert_days",
                    "",
                    vec![q(format!("probe_ssl_cert_days_left{{{sel}}}"), &[], "TLS")],
                ));
            }
            v
        }
        _ => vec![
            chart(
                "processes",
                "targets_chart_processes",
                "",
                vec![
                    q(format!("namedprocess_namegroup_num_procs{{{sel}}}"), &[], &t("targets_processes")),
                    q(format!("namedprocess_namegroup_num_threads{{{sel}}}"), &[], &t("targets_threads")),
                ],
            ),
            chart(
                "cpu",
                "hosts_chart_cpu",
                "",
                vec![q(
                    format!("sum(rate(namedprocess_namegroup_cpu_seconds_total{{{sel}}}[{w}]))"),
                    &[],
                    &t("targets_cores"),
                )],
            ),
            chart(
                "memory",
                "targets_chart_memory",
                "B",
                vec![q(format!(r#"namedprocess_namegroup_memory_bytes{{{sel},memtype="resident"}}"#), &[], "RSS")],
            ),
            chart(
                "restarts",
                "targets_chart_restarts",
                "",
                vec![q(format!("increase(namedprocess_namegroup_restarts_total{{{sel}}}[{w}])"), &[], "")],
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::super::hosts::tests::{audit, host};
    use super::super::testkit::Kit;
    use axum::Json;
    use axum::Router;
    use axum::extract::Query;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use serde_json::{Value, json};
    use std::sync::{Arc, Mutex};

    fn target(name: &str, kind: &str, address: &str, status: &str, error: &str) -> Value {
        json!({"name": name, "kind": kind, "address": address, "campus": "", "system": "HIS", "status": status,
               "last_error": error, "last_collect_ms": 1})
    }

    #[derive(Default)]
    struct Seen {
        ranges: Vec<String>,
        instants: Vec<String>,
        top_sql: Vec<Vec<(String, String)>>,
    }

    /// Inventory, query and top-SQL APIs in the collector's shapes over two campuses. A range
    /// query for `pg_locks_waiting` fails the way the API refuses a bad query.
    fn backend(seen: Arc<Mutex<Seen>>) -> Router {
        let east = json!([
            target("his-pg", "postgres", "10.1.0.5:5432", "up", ""),
            target("<i>cache</i>", "redis", "10.1.0.5:6379", "down", "connection <refused>"),
        ]);
        let west = json!([target("west-mysql", "mysql", "10.2.0.9:3306", "up", "")]);
        let hosts =
            json!([host("his-db-01", "10.1.0.5", "east", true, east), host("west-db", "10.2.0.9", "west", true, west)]);
        let mut targets = Vec::new();
        for h in hosts.as_array().unwrap() {
            for t in h["targets"].as_array().unwrap() {
                let mut t = t.clone();
                t["host"] = h["host"].clone();
                t["host_ips"] = h["ips"].clone();
                t["agent_up"] = json!(true);
                targets.push(t);
            }
        }
        let ok = |v: Value| json!({"status": "success", "data": v});
        let (h1, h2) = (ok(hosts.clone()), ok(json!({"hosts": hosts, "targets": targets})));
        let (s1, s2, s3) = (seen.clone(), seen.clone(), seen);
        let now = tingzhen_core::now_ms();
        let stmt = |id: &str, q: &str, calls: u64, ms: f64| {
            json!({"query_id": id, "query": q, "database": "his", "user": "app", "calls": calls,
                   "total_time_ms": ms, "mean_time_ms": ms / calls as f64, "rows": calls})
        };
        let snaps = json!([
            {"host": "his-db-01", "target": "his-pg", "kind": "postgres", "address": "10.1.0.5:5432", "ts_ms": now - 1000,
             "interval_ms": 10000, "statements": [stmt("7", "SELECT name FROM patients WHERE id = $1", 3, 30.0),
                                                  stmt("9", "update <script>orders</script> set x = $1", 1, 5.0)]},
            {"host": "his-db-01", "target": "his-pg", "kind": "postgres", "address": "10.1.0.5:5432", "ts_ms": now - 11000,
             "interval_ms": 10000, "statements": [stmt("7", "SELECT name FROM patients WHERE id = $1", 2, 20.0)]},
        ]);
        Router::new()
            .route("/api/v1/inventory/hosts", get(move || async move { Json(h1) }))
            .route("/api/v1/inventory", get(move || async move { Json(h2) }))
            .route(
                "/api/v1/query_range",
                get(move |Query(p): Query<Vec<(String, String)>>| async move {
                    let query = p.iter().find(|(k, _)| k == "query").map(|(_, v)| v.clone()).unwrap_or_default();
                    s1.lock().unwrap().ranges.push(query.clone());
                    if query.contains("pg_locks_waiting") {
                        let body = json!({"status": "error", "errorType": "bad_data", "error": "unknown metric pg_locks_waiting"});
                        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
                    }
                    let start: f64 = p.iter().find(|(k, _)| k == "start").unwrap().1.parse().unwrap();
                    Json(json!({"status": "success", "data": {"resultType": "matrix", "result": [
                        {"metric": {"datname": "his", "db": "db0"}, "values": [[start, "1"], [start + 60.0, "1"]]}
                    ]}}))
                    .into_response()
                }),
            )
            .route(
                "/api/v1/query",
                get(move |Query(p): Query<Vec<(String, String)>>| async move {
                    let query = p.iter().find(|(k, _)| k == "query").map(|(_, v)| v.clone()).unwrap_or_default();
                    s2.lock().unwrap().instants.push(query);
                    Json(json!({"status": "success", "data": {"resultType": "vector", "result": [
                        {"metric": {}, "value": [1.0, "0.995"]}
                    ]}}))
                }),
            )
            .route(
                "/api/v1/db/top-sql",
                get(move |Query(p): Query<Vec<(String, String)>>| async move {
                    s3.lock().unwrap().top_sql.push(p);
                    Json(json!({"status": "success", "data": snaps}))
                }),
            )
    }

    #[tokio::test]
    async fn the_list_filters_by_class_campus_and_status_and_escapes() {
        let kit = Kit::new(backend(Arc::default()));
        let admin = kit.login("admin1", &[("admin", "*")]);
        let a = kit.get("/ui/targets", Some(&admin)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.body.contains(r#"id="targets-table""#));
        assert!(a.body.contains("his-pg") && a.body.contains("west-mysql"));
        assert!(a.body.contains("&lt;i&gt;cache&lt;/i&gt;") && !a.body.contains("<i>cache"), "names escaped");
        assert!(a.body.contains("connection &lt;refused&gt;"), "last error shown, escaped");
        assert!(a.body.contains("/ui/targets/his-db-01/%3Ci%3Ecache%3C%2Fi%3E"), "links encode the name");
        let dbs = kit.get("/ui/targets?class=database", Some(&admin)).await;
        assert!(dbs.body.contains("his-pg") && dbs.body.contains("west-mysql") && !dbs.body.contains("cache</"));
        assert!(!dbs.body.contains("10.1.0.5:6379"), "redis is middleware: {}", dbs.body);
        let east_mw = kit.get("/ui/targets?class=middleware&campus=east", Some(&admin)).await;
        assert!(east_mw.body.contains("10.1.0.5:6379") && !east_mw.body.contains("west-mysql"));
        let down = kit.get("/ui/targets?status=down", Some(&admin)).await;
        assert!(down.body.contains("10.1.0.5:6379") && !down.body.contains("10.1.0.5:5432"));
        let live = kit.get("/ui/partials/targets?class=middleware&campus=east", Some(&admin)).await;
        assert_eq!(live.status, StatusCode::OK);
        assert!(
            !live.body.contains("<html") && live.body.contains("10.1.0.5:6379") && !live.body.contains("west-mysql")
        );
        assert!(
            east_mw.body.contains(r#"data-refresh="/ui/partials/targets?class&#x3D;middleware&amp;campus&#x3D;east""#)
        );
        let bad = kit.get("/ui/targets?class=toaster", Some(&admin)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.body.contains("class"));
    }

    #[tokio::test]
    async fn a_campus_viewer_sees_its_targets_only_and_another_campus_is_refused() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let kit = Kit::new(backend(seen.clone()));
        let viewer = kit.login("east-viewer", &[("viewer", "east")]);
        let a = kit.get("/ui/targets", Some(&viewer)).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.body.contains("his-pg") && !a.body.contains("west-mysql"), "{}", a.body);
        assert_eq!(kit.get("/ui/targets?campus=west", Some(&viewer)).await.status, StatusCode::FORBIDDEN);
        let refused = kit.get("/ui/targets/west-db/west-mysql", Some(&viewer)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(!refused.body.contains("10.2.0.9"));
        let live = kit.get("/ui/partials/target-charts/west-db/west-mysql", Some(&viewer)).await;
        assert_eq!(live.status, StatusCode::FORBIDDEN);
        assert_eq!(kit.get("/ui/partials/targets?campus=west", Some(&viewer)).await.status, StatusCode::FORBIDDEN);
        assert!(seen.lock().unwrap().ranges.is_empty(), "nothing was queried for the refused target");
        assert!(audit(&kit, "access_refused").iter().any(|r| r.actor == "east-viewer" && r.detail.contains("west")));
        assert_eq!(kit.get("/ui/targets/his-db-01/nope", Some(&viewer)).await.status, StatusCode::NOT_FOUND);
        let auditor = kit.login("aud", &[("auditor", "*")]);
        assert_eq!(kit.get("/ui/targets", Some(&auditor)).await.status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn a_database_page_has_its_charts_and_masked_top_sql_for_a_viewer() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let kit = Kit::new(backend(seen.clone()));
        let viewer = kit.login("east-viewer", &[("viewer", "east")]);
        let a = kit.get("/ui/targets/his-db-01/his-pg", Some(&viewer)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        for id in
            ["chart-status", "chart-connections", "chart-database-size", "chart-cache-hit", "chart-replication-lag"]
        {
            assert!(a.body.contains(&format!(r#"id="{id}""#)), "{id} missing");
        }
        assert!(a.body.contains("unknown metric pg_locks_waiting"), "a failed chart says why, the page stands");
        assert!(a.body.contains("99.50%"), "availability over the range");
        {
            let s = seen.lock().unwrap();
            assert!(s.ranges.iter().all(|q| q.contains(r#"host="his-db-01",target="his-pg""#)), "{:?}", s.ranges);
            assert!(s.ranges.iter().any(|q| q.starts_with("pg_up{")));
            assert!(s.ranges.iter().any(|q| q.contains("pg_database_size_bytes")));
            assert!(s.instants.iter().any(|q| q.starts_with("avg_over_time(pg_up{")));
            let p = &s.top_sql[0];
            assert!(
                p.contains(&("host".into(), "his-db-01".into())) && p.contains(&("target".into(), "his-pg".into()))
            );
        }
        assert!(a.body.contains(r#"id="top-sql-table""#));
        assert!(a.body.contains("SELECT ******") && a.body.contains("UPDATE ******"), "{}", a.body);
        assert!(!a.body.contains("patients") && !a.body.contains("orders"), "statement text is masked");
        assert!(!a.body.contains(r#"id="top-sql-show""#), "no way to ask for text without the permission");
        assert!(a.body.contains(">5<") && a.body.contains(">50<"), "snapshots summed: 5 calls, 50 ms");
        let refused = kit.get("/ui/targets/his-db-01/his-pg?sql=1", Some(&viewer)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(!refused.body.contains("patients"));
        assert!(audit(&kit, "access_refused").iter().any(|r| r.detail.contains("ViewSensitive")));
        assert!(audit(&kit, "sensitive_view").is_empty());
    }

    #[tokio::test]
    async fn sql_text_is_shown_to_a_sensitive_role_on_request_and_every_view_is_audited() {
        let kit = Kit::new(backend(Arc::default()));
        let admin = kit.login("admin1", &[("admin", "east")]);
        let masked = kit.get("/ui/targets/his-db-01/his-pg", Some(&admin)).await;
        assert!(masked.body.contains(r#"id="top-sql-show""#) && !masked.body.contains("patients"));
        assert!(audit(&kit, "sensitive_view").is_empty(), "a masked page is not a sensitive view");
        let shown = kit.get("/ui/targets/his-db-01/his-pg?sql=1", Some(&admin)).await;
        assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
        assert!(shown.body.contains("SELECT name FROM patients WHERE id &#x3D; $1"), "{}", shown.body);
        assert!(shown.body.contains("&lt;script&gt;orders&lt;/script&gt;") && !shown.body.contains("<script>orders"));
        kit.get("/ui/targets/his-db-01/his-pg?sql=1&range=6h", Some(&admin)).await;
        let live = kit.get("/ui/partials/target-charts/his-db-01/his-pg?range=6h", Some(&admin)).await;
        assert_eq!(live.status, StatusCode::OK);
        assert!(!live.body.contains("<html") && live.body.contains(r#"id="chart-status""#));
        assert!(!live.body.contains("patients"), "the live charts never carry SQL");
        let views = audit(&kit, "sensitive_view");
        assert_eq!(views.len(), 2, "{views:?}");
        assert!(views.iter().all(|r| r.actor == "admin1" && r.detail.contains("his-db-01/his-pg")));
        assert_eq!(kit.get("/ui/targets/his-db-01/his-pg?sql=yes", Some(&admin)).await.status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_middleware_page_has_its_kind_charts_and_no_top_sql() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let kit = Kit::new(backend(seen.clone()));
        let admin = kit.login("admin1", &[("admin", "*")]);
        let a = kit.get("/ui/targets/his-db-01/%3Ci%3Ecache%3C%2Fi%3E?range=24h", Some(&admin)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.body.contains(r#"id="chart-memory""#) && a.body.contains(r#"id="chart-keys""#));
        assert!(!a.body.contains(r#"id="top-sql""#));
        assert!(a.body.contains("&lt;i&gt;cache&lt;/i&gt;") && !a.body.contains("<i>cache"));
        let s = seen.lock().unwrap();
        assert!(s.ranges.iter().any(|q| q.starts_with("redis_up{")));
        assert!(s.ranges.iter().any(|q| q.contains("redis_keyspace_hit_ratio")));
        assert!(s.top_sql.is_empty());
    }
}
