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
