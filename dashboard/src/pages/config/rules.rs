//! Alert rule groups: the list, creating and editing one group as Prometheus rule YAML (or a
//! one-rule form), previewing each expression's current result before saving, deleting.
//! The YAML is parsed here only to send the group to the rules API as JSON (one group per
//! save); the API validates everything and its messages name the rule and field at fault.
//! A group belongs to a campus when its group labels, or every one of its rules, carry the
//! same `campus` label; any other group is group-wide and needs an all-campus role.

use super::bad_request;
use super::silences::enc;
use crate::pages::data::{self, str_of};
use crate::web::{Actor, Viewer, api_error, api_ok};
use crate::{Dashboard, i18n};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tingzhen_identity::Permission;

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/ui/config/rules", get(list))
        .route("/ui/config/rules/new", get(new_page))
        .route("/ui/config/rules/{group}/edit", get(edit_page))
        .route("/ui/api/config/rules", post(create))
        .route("/ui/api/config/rules/simple", post(create_simple))
        .route("/ui/api/config/rules/preview", post(preview))
        .route("/ui/api/config/rules/{group}", put(replace).delete(delete))
}

/// A rule file as written, in Prometheus's key order (for the editor).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query_offset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    #[serde(default)]
    expr: String,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keep_firing_for: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// The one group a YAML text holds, as the JSON the rules API takes.
fn parse_yaml(text: &str) -> Result<Value, String> {
    let file: RuleFile = serde_norway::from_str(text).map_err(|e| format!("yaml: {e}"))?;
    match file.groups.len() {
        1 => serde_json::to_value(&file.groups[0]).map_err(|e| format!("yaml: {e}")),
        0 => Err("yaml: the file has no groups".into()),
        n => Err(format!("yaml: {n} groups; save one group at a time")),
    }
}

/// The campus a group (API JSON or spec) belongs to, if it belongs to one.
fn group_campus(g: &Value) -> Option<String> {
    if let Some(c) = g["labels"]["campus"].as_str().filter(|c| !c.is_empty()) {
        return Some(c.to_string());
    }
    let rules = g["rules"].as_array()?;
    let first = rules.first()?["labels"]["campus"].as_str().filter(|c| !c.is_empty())?;
    rules.iter().all(|r| r["labels"]["campus"].as_str() == Some(first)).then(|| first.to_string())
}

fn group_yaml(spec: &Value) -> String {
    let Ok(g) = serde_json::from_value::<Group>(spec.clone()) else { return String::new() };
    serde_norway::to_string(&RuleFile { groups: vec![g] }).unwrap_or_default()
}

/// The campus of a group as the rules API lists it (its spec, else its compiled rules).
pub(super) fn campus_of_group(g: &Value) -> Option<String> {
    group_campus(&g["spec"]).or_else(|| group_campus(g))
}

fn is_file(g: &Value) -> bool {
    g["source"]["kind"] == "file"
}

async fn list(State(d): State<Dashboard>, v: Viewer) -> Response {
    if let Err(r) = super::require_config_page(&d, &v).await {
        return r;
    }
    let all = match d.backend.get("/api/v1/alerting/rules", &[]).await {
        Ok(g) => g,
        Err(e) => return d.backend_page(&v, &e),
    };
    let scope = crate::web::Scope::of(&v.session, Permission::ManageConfig);
    let groups: Vec<Value> = all["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| {
            let campus = campus_of_group(g);
            if !data::visible(&scope, campus.as_deref().unwrap_or("")) {
                return None;
            }
            let name = str_of(g, "name");
            let rules: Vec<Value> = g["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    json!({"alert": r["alert"], "expr": r["expr"], "for": r["for"], "health": r["health"],
                           "last_error": r["last_error"], "severity": r["labels"]["severity"]})
                })
                .collect();
            Some(json!({
                "name": name, "interval": g["interval"], "rules": rules,
                "campus": campus.as_deref().map(|c| d.config.campus_name(c)),
                "file": g["source"]["path"], "editable": !is_file(g),
                "edit_url": format!("/ui/config/rules/{}/edit", enc(name)),
                "api_url": format!("/ui/api/config/rules/{}", enc(name)),
                "confirm": i18n::text(v.lang(), "config_rules_delete_confirm").replace("{name}", name),
            }))
        })
        .collect();
    d.page(&v, "pages/config_rules", "config_rules_title", json!({"groups": groups}))
}

const EXAMPLE: &str = "groups:\n  - name: his-db\n    interval: 1m\n    rules:\n      - alert: HisDbCpuHigh\n        expr: 100 - avg by (host) (rate(node_cpu_seconds_total{mode=\"idle\",system=\"HIS\"}[5m])) * 100 > 90\n        for: 5m\n        labels:\n          severity: warning\n          campus: east\n        annotations:\n          summary: \"{{ $labels.host }} CPU 使用率 {{ $value }}%\"\n";

async fn new_page(State(d): State<Dashboard>, v: Viewer) -> Response {
    if let Err(r) = super::require_config_page(&d, &v).await {
        return r;
    }
    d.page(
        &v,
        "pages/config_rule_edit",
        "config_rules_new",
        json!({"new": true, "yaml": EXAMPLE, "api": "/ui/api/config/rules", "method": "POST"}),
    )
}

async fn edit_page(State(d): State<Dashboard>, v: Viewer, Path(name): Path<String>) -> Response {
    let g = match d.backend.get(&format!("/api/v1/alerting/rules/{}", enc(&name)), &[]).await {
        Ok(g) => g,
        Err(e) => return d.backend_page(&v, &e),
    };
    let campus = group_campus(&g["spec"]);
    let scope = crate::web::Scope::of(&v.session, Permission::ManageConfig);
    if !data::visible(&scope, campus.as_deref().unwrap_or("")) {
        return d.message_page(&v, StatusCode::NOT_FOUND, "not_found_title", &i18n::text(v.lang(), "not_found_title"));
    }
    if let Err(r) = d.require_page(&v, Permission::ManageConfig, campus.as_deref()).await {
        return r;
    }
    d.page(
        &v,
        "pages/config_rule_edit",
        "config_rules_edit",
        json!({"new": false, "name": name, "yaml": group_yaml(&g["spec"]), "read_only": is_file(&g),
               "api": format!("/ui/api/config/rules/{}", enc(&name)), "method": "PUT"}),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlForm {
    yaml: String,
}

fn yaml_body(body: Result<Json<YamlForm>, JsonRejection>) -> Result<Value, String> {
    let Ok(Json(f)) = body else { return Err("body: expected {\"yaml\": …}".into()) };
    parse_yaml(&f.yaml)
}

async fn require_group(d: &Dashboard, actor: &Actor, g: &Value) -> Result<(), Response> {
    let campus = group_campus(g);
    d.require(&actor.session, actor.prefs.lang, Permission::ManageConfig, campus.as_deref()).await
}

async fn create(State(d): State<Dashboard>, actor: Actor, body: Result<Json<YamlForm>, JsonRejection>) -> Response {
    let group = match yaml_body(body) {
        Ok(g) => g,
        Err(e) => return bad_request(e),
    };
    save_new(&d, &actor, group).await
}

async fn save_new(d: &Dashboard, actor: &Actor, group: Value) -> Response {
    if let Err(r) = require_group(d, actor, &group).await {
        return r;
    }
    match d.backend.send(Method::POST, "/api/v1/alerting/rules", Some(&group)).await {
        Ok(saved) => {
            let detail = format!("create rule group {} {}", str_of(&group, "name"), group);
            d.audit(&actor.session, "config_change", detail).await;
            api_ok(json!({"id": group["name"], "groups": saved["groups"]}))
        }
        Err(e) => e.into(),
    }
}

/// The one-rule form: a group holding one alerting rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimpleForm {
    group: String,
    #[serde(default)]
    interval: String,
    alert: String,
    expr: String,
    #[serde(default, rename = "for")]
    for_: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    campus: String,
    #[serde(default)]
    summary: String,
}

async fn create_simple(
    State(d): State<Dashboard>,
    actor: Actor,
    body: Result<Json<SimpleForm>, JsonRejection>,
) -> Response {
    let Ok(Json(f)) = body else { return bad_request("body: expected the rule form's fields") };
    let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let mut labels = BTreeMap::new();
    for (k, v) in [("severity", &f.severity), ("campus", &f.campus)] {
        if let Some(v) = some(v) {
            labels.insert(k.to_string(), v);
        }
    }
    let annotations: BTreeMap<String, String> =
        some(&f.summary).map(|s| ("summary".to_string(), s)).into_iter().collect();
    let group = Group {
        name: f.group.trim().to_string(),
        interval: some(&f.interval),
        query_offset: None,
        limit: None,
        labels: BTreeMap::new(),
        rules: vec![Rule {
            alert: Some(f.alert.trim().to_string()),
            record: None,
            expr: f.expr.trim().to_string(),
            for_: some(&f.for_),
            keep_firing_for: None,
            labels,
            annotations,
        }],
    };
    match serde_json::to_value(&group) {
        Ok(g) => save_new(&d, &actor, g).await,
        Err(e) => bad_request(format!("body: {e}")),
    }
}

async fn replace(
    State(d): State<Dashboard>,
    actor: Actor,
    Path(name): Path<String>,
    body: Result<Json<YamlForm>, JsonRejection>,
) -> Response {
    let group = match yaml_body(body) {
        Ok(g) => g,
        Err(e) => return bad_request(e),
    };
    let old = match d.backend.get(&format!("/api/v1/alerting/rules/{}", enc(&name)), &[]).await {
        Ok(g) => g,
        Err(e) => return e.into(),
    };
    // Both the group as it is and as it will be must be inside the actor's campus.
    for g in [&old["spec"], &group] {
        if let Err(r) = require_group(&d, &actor, g).await {
            return r;
        }
    }
    match d.backend.send(Method::PUT, &format!("/api/v1/alerting/rules/{}", enc(&name)), Some(&group)).await {
        Ok(saved) => {
            d.audit(&actor.session, "config_change", format!("replace rule group {name} {group}")).await;
            api_ok(json!({"id": name, "group": saved}))
        }
        Err(e) => e.into(),
    }
}

async fn delete(State(d): State<Dashboard>, actor: Actor, Path(name): Path<String>) -> Response {
    let old = match d.backend.get(&format!("/api/v1/alerting/rules/{}", enc(&name)), &[]).await {
        Ok(g) => g,
        Err(e) => return e.into(),
    };
    if let Err(r) = require_group(&d, &actor, &old["spec"]).await {
        return r;
    }
    // The rules API answers a delete with 204 and no body, which the backend client reports
    // as an empty "not JSON" answer: that is the success case here.
    match d.backend.send(Method::DELETE, &format!("/api/v1/alerting/rules/{}", enc(&name)), None).await {
        Ok(_) => {}
        Err(crate::BackendError::BadAnswer(text)) if text.is_empty() => {}
        Err(e) => return e.into(),
    }
    d.audit(&actor.session, "config_change", format!("delete rule group {name} {}", old["spec"])).await;
    api_ok(json!({"deleted": name}))
}

/// Most series listed per rule in a preview.
const PREVIEW_SERIES: usize = 20;

/// Validates the YAML with the rules API (nothing saved) and runs each rule's expression now:
/// plain text, one block per rule, for the editor's result box.
async fn preview(State(d): State<Dashboard>, actor: Actor, body: Result<Json<YamlForm>, JsonRejection>) -> Response {
    let group = match yaml_body(body) {
        Ok(g) => g,
        Err(e) => return bad_request(e),
    };
    if let Err(r) = require_group(&d, &actor, &group).await {
        return r;
    }
    let lang = actor.prefs.lang;
    let scope = crate::web::Scope::of(&actor.session, Permission::ViewMonitoring);
    if let Err(e) = d.backend.send(Method::POST, "/api/v1/alerting/rules-check", Some(&group)).await {
        return e.into();
    }
    let mut out = String::new();
    for r in group["rules"].as_array().into_iter().flatten() {
        let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("");
        let expr = str_of(r, "expr");
        out.push_str(&format!("{name}: {expr}\n"));
        // Only series of campuses the actor may see: an expression can read any campus's data.
        let rule_campus = r["labels"]["campus"].as_str().or(group["labels"]["campus"].as_str()).unwrap_or("");
        let visible = |labels: &Value| data::visible(&scope, labels["campus"].as_str().unwrap_or(rule_campus));
        let result = data::instant(&d, expr).await.map(|all| {
            let hidden = all.iter().filter(|(l, _)| !visible(l)).count();
            (all.into_iter().filter(|(l, _)| visible(l)).collect::<Vec<_>>(), hidden)
        });
        if let Ok((_, hidden)) = &result
            && *hidden > 0
        {
            let note = i18n::text(lang, "config_rules_preview_hidden").replace("{n}", &hidden.to_string());
            out.push_str(&format!("  {note}\n"));
        }
        match result.map(|(series, _)| series) {
            Ok(series) if series.is_empty() => {
                out.push_str(&format!("  {}\n", i18n::text(lang, "config_rules_preview_none")));
            }
            Ok(series) => {
                out.push_str(&format!(
                    "  {}\n",
                    i18n::text(lang, "config_rules_preview_fires").replace("{n}", &series.len().to_string())
                ));
                for (labels, value) in series.iter().take(PREVIEW_SERIES) {
                    let l: Vec<String> =
                        labels.as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", v)).collect();
                    out.push_str(&format!("  {{{}}} = {}\n", l.join(", "), crate::render::human_number(*value)));
                }
            }
            Err(e) => out.push_str(&format!("  {}: {e}\n", i18n::text(lang, "config_rules_preview_error"))),
        }
    }
    if out.is_empty() {
        return api_error(StatusCode::BAD_REQUEST, "bad_data", "rules: the group has no rules");
    }
    api_ok(json!(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_round_trips_and_campus_is_found() {
        let g = parse_yaml(EXAMPLE).unwrap();
        assert_eq!(g["name"], "his-db");
        assert_eq!(g["rules"][0]["for"], "5m");
        assert_eq!(group_campus(&g).as_deref(), Some("east"));
        let back = group_yaml(&g);
        assert_eq!(parse_yaml(&back).unwrap(), g, "{back}");
        assert!(parse_yaml("groups: []").unwrap_err().contains("no groups"));
        let e = parse_yaml("groups:\n  - name: a\n    rulez: []\n").unwrap_err();
        assert!(e.contains("rulez"), "{e}");
        let two = json!({"rules": [{"labels": {"campus": "east"}}, {"labels": {"campus": "west"}}]});
        assert_eq!(group_campus(&two), None, "mixed campuses are group-wide");
    }
}
