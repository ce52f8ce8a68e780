//! The quick search (MON-8): one box finds hosts, watched targets and interfaces by IP, server
//! name, interface name, middleware name, campus (id or configured display name), system name or
//! type. Every whitespace-separated term must match. Hosts and targets come from the collector's
//! `GET /api/v1/inventory?q=` (case-insensitive substring of each term over their fields); the
//! two things that API cannot know — campus display names and class words such as 数据库 or
//! middleware — are expanded here into alternative queries whose results are then narrowed to
//! that campus or class. Interfaces are matched here against the registry. Everything is cut to
//! the viewer's campuses before it is shown.

use super::data::{self, str_of};
use crate::web::Viewer;
use crate::{Dashboard, i18n};
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;

pub fn routes() -> Router<Dashboard> {
    Router::new().route("/ui/search", get(search))
}

/// Longest query accepted, in characters.
const MAX_QUERY_CHARS: usize = 200;
/// Most terms in one query.
const MAX_TERMS: usize = 8;
/// Most alternative inventory queries one search may expand into.
const MAX_QUERIES: usize = 16;

#[derive(Debug, Default, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// What one term of the query may stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Alt {
    /// Matched by the inventory API as is.
    Plain(String),
    /// A campus display name: the campus id, and the item must be of that campus.
    Campus(String),
    /// A class word: only targets of that class (the term itself is not sent).
    Class(&'static str),
}

/// Words for target classes in both languages (and the kinds' plural forms people type).
fn class_of_word(term: &str) -> Option<&'static str> {
    match term {
        "数据库" | "database" | "databases" | "db" => Some("database"),
        "中间件" | "middleware" => Some("middleware"),
        "探测" | "拨测" | "probe" | "probes" => Some("probe"),
        "进程" | "process" | "processes" => Some("process"),
        _ => None,
    }
}

fn is_interface_word(term: &str) -> bool {
    matches!(term, "接口" | "接口服务" | "interface" | "interfaces")
}

/// The alternatives of each term: itself, plus campuses whose configured display name contains
/// it, plus a target class it names.
fn alternatives(d: &Dashboard, terms: &[String]) -> Vec<Vec<Alt>> {
    terms
        .iter()
        .map(|t| {
            let mut alts = vec![Alt::Plain(t.clone())];
            for c in &d.config.campuses {
                if c.name.to_lowercase().contains(t.as_str()) && !c.id.to_lowercase().contains(t.as_str()) {
                    alts.push(Alt::Campus(c.id.clone()));
                }
            }
            if let Some(class) = class_of_word(t) {
                alts.push(Alt::Class(class));
            }
            alts
        })
        .collect()
}

/// Every choice of one alternative per term, the all-plain one first; at most `MAX_QUERIES`.
fn combinations(alts: &[Vec<Alt>]) -> Vec<Vec<Alt>> {
    let mut out: Vec<Vec<Alt>> = vec![Vec::new()];
    for options in alts {
        let mut next = Vec::new();
        for prefix in &out {
            for o in options {
                if next.len() >= MAX_QUERIES {
                    break;
                }
                let mut p = prefix.clone();
                p.push(o.clone());
                next.push(p);
            }
        }
        out = next;
    }
    out
}

async fn search(State(d): State<Dashboard>, v: Viewer, Query(sq): Query<SearchQuery>) -> Response {
    if let Some(r) = data::refuse_if_blind(&d, &v) {
        return r;
    }
    let q = sq.q.trim().to_string();
    if q.chars().count() > MAX_QUERY_CHARS {
        return data::bad_request(&d, &v, &format!("q: longer than {MAX_QUERY_CHARS} characters"));
    }
    let terms: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
    if terms.len() > MAX_TERMS {
        return data::bad_request(&d, &v, &format!("q: more than {MAX_TERMS} words"));
    }
    let mut ctx = json!({"q": q, "searched": !terms.is_empty(), "hosts": [], "targets": [], "interfaces": [],
                         "interfaces_error": "", "count": 0});
    if terms.is_empty() {
        return d.page(&v, "pages/search", "search_title", ctx);
    }

    let mut hosts: Vec<Value> = Vec::new();
    let mut targets: Vec<Value> = Vec::new();
    let (mut seen_hosts, mut seen_targets) = (BTreeSet::new(), BTreeSet::new());
    for combo in combinations(&alternatives(&d, &terms)) {
        let sent: Vec<&str> = combo
            .iter()
            .filter_map(|a| match a {
                Alt::Plain(t) | Alt::Campus(t) => Some(t.as_str()),
                Alt::Class(_) => None,
            })
            .collect();
        let inv = match data::inventory(&d, &v, &sent.join(" ")).await {
            Ok(i) => i,
            Err(e) => return d.backend_page(&v, &e),
        };
        let campus_ok = |campus: &str| combo.iter().all(|a| !matches!(a, Alt::Campus(id) if id != campus));
        let class_alt = combo.iter().find_map(|a| if let Alt::Class(c) = a { Some(*c) } else { None });
        if class_alt.is_none() {
            for h in inv.hosts {
                if campus_ok(str_of(&h, "campus")) && seen_hosts.insert(str_of(&h, "host").to_string()) {
                    hosts.push(h);
                }
            }
        }
        for t in inv.targets {
            let class_ok = combo.iter().all(|a| !matches!(a, Alt::Class(c) if *c != str_of(&t, "class")));
            let key = (str_of(&t, "host").to_string(), str_of(&t, "name").to_string());
            if campus_ok(str_of(&t, "campus")) && class_ok && seen_targets.insert(key) {
                targets.push(t);
            }
        }
    }
    hosts.sort_by(|a, b| str_of(a, "host").cmp(str_of(b, "host")));
    targets.sort_by(|a, b| (str_of(a, "host"), str_of(a, "name")).cmp(&(str_of(b, "host"), str_of(b, "name"))));

    // Interfaces belong to the flows module; without it the other groups still answer.
    let (interfaces, interfaces_error) = match data::interfaces(&d, &v).await {
        Ok(list) => (
            list.iter()
                .filter(|i| interface_matches(&d, i, &terms))
                .map(|i| super::interfaces::interface_row(&d, i))
                .collect::<Vec<_>>(),
            String::new(),
        ),
        Err(e) => (Vec::new(), e.to_string()),
    };

    let count = hosts.len() + targets.len() + interfaces.len();
    ctx["hosts_count"] = json!(hosts.len());
    ctx["targets_count"] = json!(targets.len());
    ctx["interfaces_count"] = json!(interfaces.len());
    ctx["hosts"] = json!(hosts.iter().map(|h| super::hosts::host_row(&d, h)).collect::<Vec<_>>());
    ctx["targets"] = json!(targets.iter().map(|t| super::targets::target_row(&d, &v, t)).collect::<Vec<_>>());
    ctx["interfaces"] = json!(interfaces);
    ctx["interfaces_error"] = json!(interfaces_error);
    ctx["count"] = json!(count);
    ctx["summary"] = json!(format!("{} {count}", i18n::text(v.lang(), "search_found")));
    d.page(&v, "pages/search", "search_title", ctx)
}

/// Every term is a case-insensitive substring of one of the interface's fields (its campus's
/// display name included), or a word for interfaces as such.
fn interface_matches(d: &Dashboard, i: &Value, terms: &[String]) -> bool {
    let campus = str_of(i, "campus");
    let fields: Vec<String> = [
        str_of(i, "name").to_string(),
        str_of(i, "system").to_string(),
        campus.to_string(),
        d.config.campus_name(campus),
        str_of(i, "type").to_string(),
        str_of(i, "vendor").to_string(),
        str_of(i, "endpoint").to_string(),
    ]
    .into_iter()
    .map(|f| f.to_lowercase())
    .collect();
    terms.iter().all(|t| is_interface_word(t) || fields.iter().any(|f| f.contains(t.as_str())))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use crate::DashboardConfig;
    use crate::config::CampusName;
    use axum::Json;
    use axum::Router;
    use axum::extract::Query;
    use axum::http::StatusCode;
    use axum::routing::get;
    use serde::Deserialize;
    use serde_json::{Value, json};
    use std::sync::{Arc, Mutex};

    fn host(name: &str, ip: &str, campus: &str, role: &str, targets: Value) -> Value {
        json!({"host": name, "hostname": name, "ips": [ip], "os": "Debian 12", "kernel": "6.1", "cpus": 4,
               "memory_bytes": 8u64 << 30, "agent_version": "0.1.0", "campus": campus, "role": role, "system": "HIS",
               "interval_ms": 10000, "boot_time": 1, "targets": targets, "remote_addr": ip,
               "first_seen_ms": 1, "last_seen_ms": tingzhen_core::now_ms(), "up": true})
    }

    fn target(name: &str, kind: &str, address: &str) -> Value {
        json!({"name": name, "kind": kind, "address": address, "campus": "", "system": "HIS", "status": "up",
               "last_error": "", "last_collect_ms": 1})
    }

    #[derive(Deserialize)]
    struct Q {
        #[serde(default)]
        q: String,
    }

    /// The collector's inventory search, implemented the way `Inventory::search` is (every term a
    /// case-folded substring of a host field, targets also of their own fields), over two
    /// campuses; records the `q` of every call.
    fn backend(calls: Arc<Mutex<Vec<String>>>) -> Router {
        let hosts = json!([
            host(
                "his-db-01",
                "10.1.0.5",
                "east",
                "db",
                json!([target("his-pg", "postgres", "10.1.0.5:5432"), target("his-redis", "redis", "10.1.0.5:6379")])
            ),
            host("west-mq-01", "10.2.0.9", "west", "mq", json!([target("west-rabbit", "rabbitmq", "10.2.0.9:5672")])),
        ]);
        let all = hosts.clone();
        Router::new()
            .route(
                "/api/v1/inventory/hosts",
                get(move || async move { Json(json!({"status": "success", "data": all})) }),
            )
            .route(
                "/api/v1/inventory",
                get(move |Query(p): Query<Q>| async move {
                    calls.lock().unwrap().push(p.q.clone());
                    let terms: Vec<String> = p.q.split_whitespace().map(str::to_lowercase).collect();
                    let m = |f: &[String]| terms.iter().all(|t| f.iter().any(|x| x.to_lowercase().contains(t)));
                    let (mut hs, mut ts) = (Vec::new(), Vec::new());
                    for h in hosts.as_array().unwrap() {
                        let mut hf: Vec<String> = ["host", "hostname", "os", "campus", "role", "system", "remote_addr"]
                            .iter()
                            .map(|k| h[*k].as_str().unwrap().to_string())
                            .collect();
                        hf.push(h["ips"][0].as_str().unwrap().to_string());
                        if m(&hf) {
                            hs.push(h.clone());
                        }
                        for t in h["targets"].as_array().unwrap() {
                            let mut tf = hf.clone();
                            tf.extend(
                                ["name", "kind", "address", "campus", "system"]
                                    .iter()
                                    .map(|k| t[*k].as_str().unwrap().to_string()),
                            );
                            if m(&tf) {
                                let mut tv = t.clone();
                                tv["host"] = h["host"].clone();
                                tv["host_ips"] = h["ips"].clone();
                                tv["agent_up"] = json!(true);
                                ts.push(tv);
                            }
                        }
                    }
                    Json(json!({"status": "success", "data": {"hosts": hs, "targets": ts}}))
                }),
            )
            .merge(super::super::interfaces::tests::backend())
    }

    fn kit(calls: Arc<Mutex<Vec<String>>>) -> Kit {
        let config = DashboardConfig {
            campuses: vec![
                CampusName { id: "east".into(), name: "东院区".into() },
                CampusName { id: "west".into(), name: "西院区".into() },
            ],
            ..DashboardConfig::default()
        };
        Kit::with_config(backend(calls), config)
    }

    #[tokio::test]
    async fn finds_hosts_targets_and_interfaces_grouped_with_links() {
        let kit = kit(Arc::default());
        let admin = kit.login("admin1", &[("admin", "*")]);
        let a = kit.get("/ui/search?q=10.1.0.5", Some(&admin)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        for id in ["search-results", "search-hosts", "search-targets", "search-interfaces"] {
            assert!(a.body.contains(&format!(r#"id="{id}""#)), "{id} missing");
        }
        assert!(a.body.contains("/ui/hosts/his-db-01") && a.body.contains("/ui/targets/his-db-01/his-pg"));
        assert!(a.body.contains("/ui/targets/his-db-01/his-redis") && !a.body.contains("west-rabbit"));
        assert!(a.body.contains(r#"value="10.1.0.5""#), "the box keeps the query");

        let by_iface = kit.get("/ui/search?q=PACS", Some(&admin)).await;
        assert!(by_iface.body.contains("his-pacs-orders") && !by_iface.body.contains("his-db-01"), "{}", by_iface.body);
        let middleware = kit.get("/ui/search?q=rabbitmq", Some(&admin)).await;
        assert!(middleware.body.contains("west-rabbit") && !middleware.body.contains("his-pg"));
    }

    #[tokio::test]
    async fn campus_display_names_and_class_words_narrow_the_results() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let kit = kit(calls.clone());
        let admin = kit.login("admin1", &[("admin", "*")]);
        let a = kit.get("/ui/search?q=%E4%B8%9C%E9%99%A2", Some(&admin)).await; // 东院
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.body.contains("/ui/hosts/his-db-01") && !a.body.contains("west-mq-01"), "{}", a.body);
        assert!(a.body.contains("his-pacs-orders") && !a.body.contains("west-emr-feed"), "interfaces by campus name");
        assert!(calls.lock().unwrap().iter().any(|q| q == "east"), "the display name was sent as the campus id");

        let db = kit.get("/ui/search?q=%E6%95%B0%E6%8D%AE%E5%BA%93+his", Some(&admin)).await; // 数据库 his
        assert!(db.body.contains("/ui/targets/his-db-01/his-pg"), "{}", db.body);
        assert!(!db.body.contains("his-redis") && !db.body.contains("west-rabbit"), "only databases");
        let both = kit.get("/ui/search?q=west+middleware", Some(&admin)).await;
        assert!(both.body.contains("west-rabbit") && !both.body.contains("his-redis"));

        let long = "x".repeat(201);
        let bad = kit.get(&format!("/ui/search?q={long}"), Some(&admin)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.body.contains("q:"));
    }

    #[tokio::test]
    async fn a_campus_viewer_finds_nothing_of_another_campus_and_data_is_escaped() {
        let kit = kit(Arc::default());
        let viewer = kit.login("east-viewer", &[("viewer", "east")]);
        let west = kit.get("/ui/search?q=10.2.0.9", Some(&viewer)).await;
        assert_eq!(west.status, StatusCode::OK);
        assert!(!west.body.contains("west-mq-01") && !west.body.contains("west-rabbit"), "{}", west.body);
        let by_name = kit.get("/ui/search?q=%E8%A5%BF%E9%99%A2", Some(&viewer)).await; // 西院
        assert!(!by_name.body.contains("west-mq-01") && !by_name.body.contains("west-emr-feed"));
        let xss = kit.get("/ui/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", Some(&viewer)).await;
        assert_eq!(xss.status, StatusCode::OK);
        assert!(!xss.body.contains("<script>alert(1)") && xss.body.contains("&lt;script&gt;"), "query echoed escaped");
        let auditor = kit.login("aud", &[("auditor", "*")]);
        assert_eq!(kit.get("/ui/search?q=his", Some(&auditor)).await.status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn combinations_are_bounded_and_start_plain() {
        use super::{Alt, MAX_QUERIES, combinations};
        let alts: Vec<Vec<Alt>> = (0..8)
            .map(|i| vec![Alt::Plain(format!("t{i}")), Alt::Campus("east".into()), Alt::Class("database")])
            .collect();
        let c = combinations(&alts);
        assert!(c.len() <= MAX_QUERIES && !c.is_empty());
        assert!(c[0].iter().all(|a| matches!(a, Alt::Plain(_))), "{:?}", c[0]);
        assert!(c.iter().all(|combo| combo.len() == 8));
    }
}
