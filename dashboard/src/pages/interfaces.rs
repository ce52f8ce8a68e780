//! Interface services (MON-5, MON-14): the registry from the collector's flows module with each
//! interface's message count over the last hour, its last message and the zero-volume flag
//! (no message during clinic hours for its silence window), filtered by campus and system, with
//! totals per campus and per system over what the viewer may see.

use super::data::{self, str_of};
use crate::web::Viewer;
use crate::{Dashboard, i18n};
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn routes() -> Router<Dashboard> {
    Router::new().route("/ui/interfaces", get(list))
}

#[derive(Debug, Default, Deserialize)]
struct Filter {
    #[serde(default)]
    campus: String,
    #[serde(default)]
    system: String,
    /// `1`: only interfaces flagged zero volume.
    #[serde(default)]
    zero: String,
}

/// One interface as the table shows it.
pub(crate) fn interface_row(d: &Dashboard, i: &Value) -> Value {
    json!({
        "name": i["name"], "system": i["system"], "campus": str_of(i, "campus"),
        "campus_name": d.config.campus_name(str_of(i, "campus")), "type": i["type"], "vendor": i["vendor"],
        "endpoint": i["endpoint"], "messages": i["messages"].as_i64().unwrap_or(0),
        "last_message_ms": data::rfc3339_ms(&i["last_message"]),
        "zero_volume": i["zero_volume"].as_bool() == Some(true),
        "href": format!("/ui/interfaces?{}", serde_urlencoded::to_string([("campus", str_of(i, "campus")), ("system", str_of(i, "system"))]).unwrap_or_default()),
    })
}

async fn list(State(d): State<Dashboard>, v: Viewer, Query(f): Query<Filter>) -> Response {
    if let Some(r) = data::refuse_if_blind(&d, &v) {
        return r;
    }
    if !matches!(f.zero.as_str(), "" | "0" | "1") {
        return data::bad_request(&d, &v, &format!("zero: {:?} is not 0 or 1", f.zero));
    }
    if !f.campus.is_empty()
        && let Err(r) = data::require_campus(&d, &v, &f.campus).await
    {
        return r;
    }
    let all = match data::interfaces(&d, &v).await {
        Ok(i) => i,
        Err(e) => return d.backend_page(&v, &e),
    };
    let total = all.len();
    let mut systems: Vec<String> = all.iter().map(|i| str_of(i, "system").to_string()).collect();
    systems.sort();
    systems.dedup();
    let campuses: Vec<Value> = data::campus_names(&d, all.iter().map(|i| str_of(i, "campus").to_string()))
        .into_iter()
        .filter(|c| data::visible(&v.scope(), str_of(c, "id")))
        .map(|mut c| {
            c["selected"] = json!(str_of(&c, "id") == f.campus);
            c
        })
        .collect();
    let rows: Vec<Value> = all
        .iter()
        .filter(|i| f.campus.is_empty() || str_of(i, "campus") == f.campus)
        .filter(|i| f.system.is_empty() || str_of(i, "system") == f.system)
        .filter(|i| f.zero != "1" || i["zero_volume"].as_bool() == Some(true))
        .map(|i| interface_row(&d, i))
        .collect();
    let sum = |key: &dyn Fn(&Value) -> String| {
        let mut m: BTreeMap<String, (i64, usize, usize)> = BTreeMap::new();
        for r in &rows {
            let e = m.entry(key(r)).or_default();
            e.0 += r["messages"].as_i64().unwrap_or(0);
            e.1 += 1;
            e.2 += usize::from(r["zero_volume"] == true);
        }
        m.into_iter()
            .map(|(k, (messages, count, zero))| json!({"key": k, "messages": messages, "count": count, "zero": zero}))
            .collect::<Vec<_>>()
    };
    let by_campus = sum(&|r| str_of(r, "campus_name").to_string());
    let by_system = sum(&|r| str_of(r, "system").to_string());
    let messages: i64 = rows.iter().map(|r| r["messages"].as_i64().unwrap_or(0)).sum();
    let zero = rows.iter().filter(|r| r["zero_volume"] == true).count();
    d.page(
        &v,
        "pages/interfaces",
        "ifaces_title",
        json!({
            "interfaces": rows,
            "shown": rows.len(),
            "total": total,
            "messages": messages,
            "zero_count": zero,
            "by_campus": by_campus,
            "by_system": by_system,
            "campuses": campuses,
            "systems": systems.into_iter().filter(|s| !s.is_empty()).map(|s| json!({"name": s, "selected": s == f.system})).collect::<Vec<_>>(),
            "filter": {"campus": f.campus, "system": f.system, "zero": f.zero == "1"},
            "window": i18n::text(v.lang(), "ifaces_last_hour"),
            "updated_ms": data::now_ms(),
        }),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::testkit::Kit;
    use axum::Json;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    use serde_json::json;

    /// `GET /api/v1/interfaces` as the flows module answers it (last hour), two campuses.
    pub(crate) fn backend() -> Router {
        Router::new().route(
            "/api/v1/interfaces",
            get(|| async {
                Json(json!({"status": "success", "data": {
                    "from": "2026-11-26T12:00:00+08:00", "to": "2026-11-26T13:00:00+08:00",
                    "interfaces": [
                        {"name": "his-pacs-orders", "system": "PACS", "campus": "east", "endpoint": "mllp://10.1.0.7:2575",
                         "type": "HL7", "vendor": "<i>Acme</i>", "messages": 1200,
                         "last_message": "2026-11-26T12:59:58+08:00", "zero_volume": false, "clinic_hours_now": true},
                        {"name": "lis-results", "system": "LIS", "campus": "east", "endpoint": "http://10.1.0.8/api",
                         "type": "HTTP", "vendor": "", "messages": 0, "last_message": null, "zero_volume": true,
                         "clinic_hours_now": true},
                        {"name": "west-emr-feed", "system": "EMR", "campus": "west", "endpoint": "mq://10.2.0.3",
                         "type": "MQ", "vendor": "", "messages": 77, "last_message": "2026-11-26T12:30:00+08:00",
                         "zero_volume": false, "clinic_hours_now": true}
                    ],
                    "by_campus": {"east": 1200, "west": 77}, "by_system": {"PACS": 1200, "LIS": 0, "EMR": 77}
                }}))
            }),
        )
    }

    #[tokio::test]
    async fn interfaces_show_volume_flags_and_totals_escaped() {
        let kit = Kit::new(backend());
        let admin = kit.login("admin1", &[("admin", "*")]);
        let a = kit.get("/ui/interfaces", Some(&admin)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.body.contains(r#"id="interfaces-table""#));
        assert!(a.body.contains("his-pacs-orders") && a.body.contains("west-emr-feed"));
        assert!(a.body.contains("2026-11-26 12:59:58"), "last message in Shanghai time");
        assert!(a.body.contains("&lt;i&gt;Acme&lt;/i&gt;") && !a.body.contains("<i>Acme"), "escaped");
        assert!(a.body.contains(r#"data-zero="true""#), "the silent interface is flagged");
        assert!(a.body.contains(r#"id="interfaces-by-campus""#) && a.body.contains(r#"id="interfaces-by-system""#));
        assert!(a.body.contains("1277"), "total messages over both campuses: {}", a.body);
        let zero = kit.get("/ui/interfaces?zero=1", Some(&admin)).await;
        assert!(zero.body.contains("lis-results") && !zero.body.contains("his-pacs-orders"));
        let pacs = kit.get("/ui/interfaces?system=PACS", Some(&admin)).await;
        assert!(pacs.body.contains("his-pacs-orders") && !pacs.body.contains("lis-results"));
        assert_eq!(kit.get("/ui/interfaces?zero=maybe", Some(&admin)).await.status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_campus_viewer_sees_only_its_interfaces_and_totals() {
        let kit = Kit::new(backend());
        let viewer = kit.login("east-viewer", &[("viewer", "east")]);
        let a = kit.get("/ui/interfaces", Some(&viewer)).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.body.contains("his-pacs-orders") && !a.body.contains("west-emr-feed"), "{}", a.body);
        assert!(!a.body.contains("EMR") && !a.body.contains("1277"), "west's totals are not leaked");
        assert_eq!(kit.get("/ui/interfaces?campus=west", Some(&viewer)).await.status, StatusCode::FORBIDDEN);
        let auditor = kit.login("aud", &[("auditor", "*")]);
        assert_eq!(kit.get("/ui/interfaces", Some(&auditor)).await.status, StatusCode::FORBIDDEN);
    }
}
