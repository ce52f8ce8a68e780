//! Receivers and their channels (`/ui/config/receivers`) with a "send test message" button
//! each, and the routing tree (`/ui/config/routes`), both as configured in the server's TOML
//! (read-only here: they change with the configuration file). Receivers and routes are
//! group-wide, so a test send needs `ManageConfig` on every campus. Contact addresses (mail,
//! mobiles, WeCom user ids) are personal: they are masked unless someone with `ViewSensitive`
//! on every campus asks for them (`?contacts=1`), and each such view is audited.

use super::silences::enc;
use crate::pages::data::str_of;
use crate::web::{Actor, Viewer, api_ok};
use crate::{Dashboard, i18n};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tingzhen_identity::Permission;
use tingzhen_identity::audit::events;

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/ui/config/receivers", get(receivers_page))
        .route("/ui/config/routes", get(routes_page))
        .route("/ui/api/config/receivers/{name}/test", post(test_send))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

#[derive(Debug, Default, Deserialize)]
struct ReceiversQuery {
    /// `1` shows contact addresses unmasked (needs `ViewSensitive` on every campus, audited).
    #[serde(default)]
    contacts: String,
}

async fn receivers_page(State(d): State<Dashboard>, v: Viewer, Query(q): Query<ReceiversQuery>) -> Response {
    if let Err(r) = super::require_config_page(&d, &v).await {
        return r;
    }
    if !matches!(q.contacts.as_str(), "" | "0" | "1") {
        return crate::pages::data::bad_request(&d, &v, &format!("contacts: {:?} is not 0 or 1", q.contacts));
    }
    let show_contacts = q.contacts == "1";
    if show_contacts && let Err(r) = d.require_page(&v, Permission::ViewSensitive, None).await {
        return r;
    }
    let data = match d.backend.get("/api/v1/alerting/receivers", &[]).await {
        Ok(x) => x,
        Err(e) => return d.backend_page(&v, &e),
    };
    let referenced = strings(&data["referenced"]);
    let can_test = v.can(Permission::ManageConfig, None);
    let mut contacts_shown = 0;
    let receivers: Vec<Value> = data["receivers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let name = str_of(r, "name");
            let channels: Vec<Value> = r["channels"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let kind = str_of(c, "kind");
                    let to = strings(&c["to"]);
                    contacts_shown += to.len();
                    let to: Vec<String> = if show_contacts {
                        to
                    } else {
                        to.iter().map(|entry| crate::mask::contact(kind, entry)).collect()
                    };
                    json!({"name": c["name"], "kind": i18n::text(v.lang(), &format!("config_kind_{kind}")),
                           "role": i18n::text(v.lang(), &format!("config_role_{}", str_of(c, "role"))),
                           "to": to.join(", ")})
                })
                .collect();
            json!({
                "name": name, "language": r["language"], "channels": channels,
                "used": referenced.iter().any(|x| x == name),
                "test_id": format!("receiver-test-{name}"),
                "test_url": format!("/ui/api/config/receivers/{}/test", enc(name)),
                "result_id": format!("receiver-result-{name}"),
            })
        })
        .collect();
    let unknown: Vec<&String> =
        referenced.iter().filter(|n| !receivers.iter().any(|r| r["name"].as_str() == Some(n.as_str()))).collect();
    if show_contacts {
        let detail = format!("receiver contact addresses ({} receivers, {contacts_shown} entries)", receivers.len());
        d.audit(&v.session, events::SENSITIVE_VIEW, detail).await;
    }
    d.page(
        &v,
        "pages/config_receivers",
        "config_receivers_title",
        json!({"receivers": receivers, "unknown": unknown, "can_test": can_test,
               "contacts_shown": show_contacts, "can_see_contacts": v.can(Permission::ViewSensitive, None)}),
    )
}

/// One node of the route tree, flattened for display with its depth.
fn flatten(route: &Value, depth: usize, inherited: &str, out: &mut Vec<Value>, lang: crate::i18n::Lang) {
    let receiver = route["receiver"].as_str().filter(|s| !s.is_empty()).unwrap_or(inherited).to_string();
    let dur = |k: &str| route[k].as_str().map(str::to_string);
    let list = |k: &str| strings(&route[k]).join(", ");
    let group_by = match route.get("group_by") {
        Some(Value::Array(a)) if a.is_empty() => i18n::text(lang, "config_routes_one_group"),
        Some(Value::Array(_)) => list("group_by"),
        _ => String::new(),
    };
    out.push(json!({
        "depth": depth.min(8),
        "indent": "│  ".repeat(depth.saturating_sub(1)) + if depth > 0 { "└─ " } else { "" },
        "matchers": strings(&route["matchers"]),
        "receiver": receiver,
        "own_receiver": route["receiver"].as_str().is_some(),
        "group_by": group_by,
        "group_wait": dur("group_wait"), "group_interval": dur("group_interval"), "repeat_interval": dur("repeat_interval"),
        "continue": route["continue"].as_bool() == Some(true),
        "active": list("active_time_windows"), "mute": list("mute_time_windows"),
        "escalation": route["escalation"].as_array().map(|steps| steps.iter().map(|s| {
            format!("{} → {}", s["after"].as_str().unwrap_or(""), s["receiver"].as_str().unwrap_or(""))
        }).collect::<Vec<_>>().join("; ")),
    }));
    for child in route["routes"].as_array().into_iter().flatten() {
        flatten(child, depth + 1, &receiver, out, lang);
    }
}

async fn routes_page(State(d): State<Dashboard>, v: Viewer) -> Response {
    if let Err(r) = super::require_config_page(&d, &v).await {
        return r;
    }
    let data = match d.backend.get("/api/v1/alerting/routing/config", &[]).await {
        Ok(x) => x,
        Err(e) => return d.backend_page(&v, &e),
    };
    let routing = &data["routing"];
    let mut nodes = Vec::new();
    if routing.is_object() {
        flatten(&routing["route"], 0, "", &mut nodes, v.lang());
    }
    let inhibit: Vec<Value> = routing["inhibit_rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            json!({"source": strings(&r["source_matchers"]).join(", "), "target": strings(&r["target_matchers"]).join(", "),
                   "equal": strings(&r["equal"]).join(", ")})
        })
        .collect();
    let receiver_windows: Vec<Value> = routing["receiver_windows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            json!({"receiver": w["receiver"], "active": strings(&w["active_time_windows"]).join(", "),
                   "mute": strings(&w["mute_time_windows"]).join(", ")})
        })
        .collect();
    d.page(
        &v,
        "pages/config_routes",
        "config_routes_title",
        json!({"configured": routing.is_object(), "nodes": nodes, "inhibit": inhibit, "receiver_windows": receiver_windows}),
    )
}

/// Sends a real test message on every channel of a receiver and answers each outcome.
async fn test_send(State(d): State<Dashboard>, actor: Actor, Path(name): Path<String>) -> Response {
    if let Err(r) = d.require(&actor.session, actor.prefs.lang, Permission::ManageConfig, None).await {
        return r;
    }
    let body = json!({"by": actor.session.username});
    match d.backend.send(Method::POST, &format!("/api/v1/alerting/receivers/{}/test", enc(&name)), Some(&body)).await {
        Ok(result) => {
            let outcome: Vec<String> = result["channels"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let what = if c["ok"] == true { "ok".to_string() } else { str_of(c, "error").to_string() };
                    format!("{}: {what}", str_of(c, "channel"))
                })
                .collect();
            d.audit(
                &actor.session,
                "receiver_test",
                format!("test message to receiver {name}: {}", outcome.join("; ")),
            )
            .await;
            let lines: Vec<String> = result["channels"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let mark = if c["ok"] == true {
                        i18n::text(actor.prefs.lang, "config_test_ok")
                    } else {
                        format!("{}: {}", i18n::text(actor.prefs.lang, "config_test_failed"), str_of(c, "error"))
                    };
                    format!("{} ({}) — {mark}", str_of(c, "channel"), str_of(c, "role"))
                })
                .collect();
            api_ok(json!({"ok": result["ok"], "text": lines.join("\n"), "channels": result["channels"]}))
        }
        Err(e) => e.into(),
    }
}
