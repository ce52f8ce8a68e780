//! Data every page shares, already cut to what the viewer may see: hosts and targets from the
//! inventory, alerts, alert history, interfaces, PromQL results. Anything that carries no
//! campus is group-level and only shown to viewers of every campus.

use crate::backend::BackendError;
use crate::charts::Line;
use crate::web::{Scope, Viewer};
use crate::{Dashboard, i18n};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn now_ms() -> i64 {
    tingzhen_core::now_ms()
}

/// Midnight of today in Asia/Shanghai, in Unix ms.
pub fn today_start_ms(now: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    const OFFSET: i64 = 8 * 3_600_000;
    (now + OFFSET).div_euclid(DAY) * DAY - OFFSET
}

pub fn visible(scope: &Scope, campus: &str) -> bool {
    match scope {
        Scope::All => true,
        Scope::Campuses(_) if campus.is_empty() => false,
        s => s.includes(campus),
    }
}

/// The campus of a label set (`campus` label), or "".
pub fn campus_of(labels: &Value) -> &str {
    labels.get("campus").and_then(Value::as_str).unwrap_or("")
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// What kind of thing a watched target is, for grouping on screens.
pub fn target_class(kind: &str) -> &'static str {
    match kind {
        "postgres" | "mysql" | "oracle" => "database",
        "redis" | "rabbitmq" | "nats" | "mqtt" => "middleware",
        "http" | "tcp" => "probe",
        _ => "process",
    }
}

#[derive(Debug, Default)]
pub struct Inventory {
    /// `HostView` objects (heartbeat fields flattened, plus `up`, `last_seen_ms`).
    pub hosts: Vec<Value>,
    /// `TargetView` objects (target fields flattened, plus `host`, `host_ips`, `agent_up`),
    /// each with `campus` filled from its host when the target has none, and `class`.
    pub targets: Vec<Value>,
}

/// The hosts and targets matching `q` (every one for an empty `q`) the viewer may see.
pub async fn inventory(d: &Dashboard, v: &Viewer, q: &str) -> Result<Inventory, BackendError> {
    let all_hosts = d.backend.get("/api/v1/inventory/hosts", &[]).await?;
    let host_campus: BTreeMap<String, String> = all_hosts
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| (str_of(h, "host").to_string(), str_of(h, "campus").to_string()))
        .collect();
    let found = d.backend.get("/api/v1/inventory", &[("q", q)]).await?;
    let scope = v.scope();
    let hosts = found["hosts"].as_array().cloned().unwrap_or_default();
    let hosts: Vec<Value> = hosts.into_iter().filter(|h| visible(&scope, str_of(h, "campus"))).collect();
    let mut targets = Vec::new();
    for mut t in found["targets"].as_array().cloned().unwrap_or_default() {
        if str_of(&t, "campus").is_empty() {
            let c = host_campus.get(str_of(&t, "host")).cloned().unwrap_or_default();
            t["campus"] = json!(c);
        }
        if !visible(&scope, str_of(&t, "campus")) {
            continue;
        }
        let class = target_class(str_of(&t, "kind"));
        t["class"] = json!(class);
        targets.push(t);
    }
    Ok(Inventory { hosts, targets })
}

/// Active alerts (pending and firing) the viewer may see, most severe and oldest first.
pub async fn alerts(d: &Dashboard, v: &Viewer) -> Result<Vec<Value>, BackendError> {
    let data = d.backend.get("/api/v1/alerting/alerts", &[]).await?;
    let scope = v.scope();
    let mut list: Vec<Value> = data["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| visible(&scope, campus_of(&a["labels"])))
        .collect();
    list.sort_by_key(|a| (severity_rank(str_of(&a["labels"], "severity")), a["active_at_ms"].as_i64().unwrap_or(0)));
    Ok(list)
}

pub fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" | "disaster" | "emergency" => 0,
        "warning" | "major" => 1,
        "info" | "minor" => 2,
        _ => 3,
    }
}

/// The i18n key of a severity bucket.
pub fn severity_key(s: &str) -> &'static str {
    match severity_rank(s) {
        0 => "severity_critical",
        1 => "severity_warning",
        2 => "severity_info",
        _ => "severity_other",
    }
}

/// Alert episodes overlapping `[from, to)` the viewer may see.
pub async fn history(d: &Dashboard, v: &Viewer, from_ms: i64, to_ms: i64) -> Result<Vec<Value>, BackendError> {
    let (from, to) = ((from_ms as f64 / 1000.0).to_string(), (to_ms as f64 / 1000.0).to_string());
    let data = d.backend.get("/api/v1/alerting/history", &[("from", &from), ("to", &to)]).await?;
    let scope = v.scope();
    Ok(data["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| visible(&scope, campus_of(&r["labels"])))
        .collect())
}

/// Registered interfaces (last hour's volume) the viewer may see.
pub async fn interfaces(d: &Dashboard, v: &Viewer) -> Result<Vec<Value>, BackendError> {
    let data = d.backend.get("/api/v1/interfaces", &[]).await?;
    let scope = v.scope();
    Ok(data["interfaces"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| visible(&scope, str_of(i, "campus")))
        .collect())
}

/// An instant PromQL query: (labels, value) per series.
pub async fn instant(d: &Dashboard, promql: &str) -> Result<Vec<(Value, f64)>, BackendError> {
    let data = d.backend.get("/api/v1/query", &[("query", promql)]).await?;
    Ok(data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let v = s["value"][1].as_str()?.parse::<f64>().ok()?;
            Some((s["metric"].clone(), v))
        })
        .collect())
}

/// A range query as chart lines, named by `legend` label values joined with `/`.
pub async fn range_lines(
    d: &Dashboard,
    promql: &str,
    from_ms: i64,
    to_ms: i64,
    legend: &[&str],
) -> Result<Vec<Line>, BackendError> {
    let step = ((to_ms - from_ms) / 1000 / 120).max(15);
    let (start, end, step) = ((from_ms / 1000).to_string(), (to_ms / 1000).to_string(), step.to_string());
    let data = d
        .backend
        .get("/api/v1/query_range", &[("query", promql), ("start", &start), ("end", &end), ("step", &step)])
        .await?;
    Ok(data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let name: Vec<&str> =
                legend.iter().map(|l| s["metric"][*l].as_str().unwrap_or("")).filter(|x| !x.is_empty()).collect();
            let points = s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let t = (p[0].as_f64()? * 1000.0) as i64;
                    Some((t, p[1].as_str()?.parse::<f64>().ok()?))
                })
                .collect();
            Line { name: if name.is_empty() { promql.to_string() } else { name.join("/") }, points }
        })
        .collect())
}

/// Campus id → display name, for every campus the viewer can see that appears in `ids`.
pub fn campus_names(d: &Dashboard, ids: impl IntoIterator<Item = String>) -> Vec<Value> {
    let mut seen: Vec<String> = ids.into_iter().filter(|c| !c.is_empty()).collect();
    for c in &d.config.campuses {
        seen.push(c.id.clone());
    }
    seen.sort();
    seen.dedup();
    seen.into_iter().map(|id| json!({"id": id, "name": d.config.campus_name(&id)})).collect()
}

/// A severity label's display text.
pub fn severity_text(v: &Viewer, s: &str) -> String {
    i18n::text(v.lang(), severity_key(s))
}

// ---- monitoring pages (hosts, targets, interfaces, search): shared query helpers ----

/// `s` as a PromQL string literal, so a host or target name from the inventory (or a URL) can
/// never change the shape of a query.
pub fn promql_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The time spans monitoring charts offer (`?range=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    H1,
    H6,
    H24,
    D7,
}

impl Span {
    pub const ALL: [Span; 4] = [Span::H1, Span::H6, Span::H24, Span::D7];

    /// An empty value is the default hour; anything else unknown is refused by name.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" | "1h" => Ok(Span::H1),
            "6h" => Ok(Span::H6),
            "24h" => Ok(Span::H24),
            "7d" => Ok(Span::D7),
            other => Err(format!("range: {other:?} is not one of 1h, 6h, 24h, 7d")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Span::H1 => "1h",
            Span::H6 => "6h",
            Span::H24 => "24h",
            Span::D7 => "7d",
        }
    }

    pub fn ms(self) -> i64 {
        match self {
            Span::H1 => 3_600_000,
            Span::H6 => 6 * 3_600_000,
            Span::H24 => 24 * 3_600_000,
            Span::D7 => 7 * 24 * 3_600_000,
        }
    }
}

/// The window for `rate()`/`increase()` on a chart of `span_ms`: at least one step of
/// `range_lines` (so no sample falls between steps) and four of the agent's intervals (so a
/// late or missed report does not open gaps), in whole seconds.
pub fn rate_window_s(span_ms: i64, interval_ms: i64) -> i64 {
    let step = (span_ms / 1000 / 120).max(15);
    let four = (interval_ms.max(1000) / 1000) * 4;
    step.max(four).max(60)
}

/// One query of a chart: `promql`, lines named by `legend` labels, prefixed with `name` (the
/// chart's title when both are empty).
#[derive(Debug, Clone)]
pub struct ChartQuery {
    pub promql: String,
    pub legend: Vec<&'static str>,
    pub name: String,
}

/// A chart to draw: an element id, a title, the axis unit (`charts::axis_label`) and its queries.
#[derive(Debug, Clone)]
pub struct ChartSpec {
    pub id: String,
    pub title: String,
    pub unit: &'static str,
    pub queries: Vec<ChartQuery>,
}

/// Draws `specs` over `[from, to]`, their queries run concurrently. A failed query shows its
/// error inside its chart instead of failing the page: one missing metric must not hide the rest.
/// Each result is `{"id", "title", "svg", "lines", "error"}`; `lines` counts drawn series.
pub async fn draw_charts(d: &Dashboard, specs: Vec<ChartSpec>, from_ms: i64, to_ms: i64, empty: &str) -> Vec<Value> {
    let mut set = tokio::task::JoinSet::new();
    for (ci, spec) in specs.iter().enumerate() {
        for (qi, q) in spec.queries.iter().enumerate() {
            let (d, q, title) = (d.clone(), q.clone(), spec.title.clone());
            set.spawn(async move {
                let res = range_lines(&d, &q.promql, from_ms, to_ms, &q.legend).await.map(|lines| {
                    lines
                        .into_iter()
                        .map(|mut l| {
                            let labels = if l.name == q.promql { String::new() } else { l.name.clone() };
                            l.name = match (q.name.is_empty(), labels.is_empty()) {
                                (true, true) => title.clone(),
                                (true, false) => labels,
                                (false, true) => q.name.clone(),
                                (false, false) => format!("{} {labels}", q.name),
                            };
                            l
                        })
                        .collect::<Vec<Line>>()
                });
                (ci, qi, res)
            });
        }
    }
    let mut got: BTreeMap<(usize, usize), Result<Vec<Line>, String>> = BTreeMap::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((ci, qi, res)) => {
                got.insert((ci, qi), res.map_err(|e| e.to_string()));
            }
            Err(e) => tracing::error!(error = %e, "chart query task failed"),
        }
    }
    specs
        .into_iter()
        .enumerate()
        .map(|(ci, spec)| {
            let mut lines = Vec::new();
            let mut errors = Vec::new();
            for qi in 0..spec.queries.len() {
                match got.remove(&(ci, qi)) {
                    Some(Ok(l)) => lines.extend(l),
                    Some(Err(e)) => errors.push(e),
                    None => errors.push("query did not finish".to_string()),
                }
            }
            let shown = if lines.is_empty() && !errors.is_empty() { errors.join("; ") } else { empty.to_string() };
            json!({
                "id": spec.id,
                "title": spec.title,
                "svg": crate::charts::line_chart(&lines, spec.unit, &shown),
                "lines": lines.len(),
                "error": errors.join("; "),
            })
        })
        .collect()
}

/// Every host of the inventory, not cut to the viewer: detail pages look a host up here first
/// so that one of a campus the viewer cannot see is refused (and the refusal audited) rather
/// than reported missing.
pub async fn all_hosts(d: &Dashboard) -> Result<Vec<Value>, BackendError> {
    Ok(d.backend.get("/api/v1/inventory/hosts", &[]).await?.as_array().cloned().unwrap_or_default())
}

/// Refuses (audited, as the forbidden page) unless the viewer may see monitoring data of
/// `campus`; a campus-less item is group-level and needs a binding on every campus.
pub async fn require_campus(d: &Dashboard, v: &Viewer, campus: &str) -> Result<(), axum::response::Response> {
    let campus = (!campus.is_empty()).then_some(campus);
    d.require_page(v, tingzhen_identity::Permission::ViewMonitoring, campus).await
}

/// The forbidden page for a viewer whose roles show no campus's monitoring at all, if so.
pub fn refuse_if_blind(d: &Dashboard, v: &Viewer) -> Option<axum::response::Response> {
    matches!(v.scope(), Scope::Campuses(ref s) if s.is_empty()).then(|| {
        d.message_page(v, axum::http::StatusCode::FORBIDDEN, "forbidden_title", &i18n::text(v.lang(), "forbidden_text"))
    })
}

/// A 400 page naming the bad parameter.
pub fn bad_request(d: &Dashboard, v: &Viewer, message: &str) -> axum::response::Response {
    d.message_page(v, axum::http::StatusCode::BAD_REQUEST, "error_title", message)
}

/// Unix ms of an RFC 3339 time (as the flows API writes them), 0 when missing or unreadable.
pub fn rfc3339_ms(v: &Value) -> i64 {
    v.as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()).map(|t| t.timestamp_millis()).unwrap_or(0)
}

// ---- end of monitoring pages' helpers ----

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_starts_at_shanghai_midnight() {
        // 2026-11-26 01:00 +08:00 = 2026-11-25 17:00 UTC.
        let t = 1_764_090_000_000 + 86_400_000 * 365;
        let start = today_start_ms(t);
        assert_eq!(crate::render::format_ms(start).get(11..), Some("00:00:00"));
        assert!(t - start < 86_400_000 && t >= start);
    }

    #[test]
    fn campus_less_items_are_group_level() {
        let a = Scope::Campuses(["east".to_string()].into());
        assert!(visible(&a, "east") && !visible(&a, "north") && !visible(&a, ""));
        assert!(visible(&Scope::All, ""));
    }
}
