//! The configuration pages against the stand-in alerting API: who may see and change what,
//! changes reaching the API and the audit log, the API's validation errors passed on.

use super::testapi::backend;
use crate::pages::testkit::Kit;
use axum::http::{Method, StatusCode};
use serde_json::json;
use tingzhen_identity::audit::{AuditQuery, AuditRecord};

fn audit(kit: &Kit, event: &str) -> Vec<AuditRecord> {
    let q = AuditQuery { event: Some(event.into()), ..Default::default() };
    kit.dashboard.identity.audit_log().query(&q).unwrap()
}

const YAML: &str = "groups:\n  - name: east-cpu\n    interval: 1m\n    rules:\n      - alert: CpuHigh\n        expr: cpu > 90\n        for: 5m\n        labels:\n          severity: warning\n          campus: east\n";

#[tokio::test]
async fn config_pages_render_for_ops_and_refuse_viewers() {
    let (api, _) = backend();
    let kit = Kit::new(api);
    let admin = kit.login("admin1", &[("admin", "*")]);
    for (path, marker) in [
        ("/ui/config", "config-link-rules"),
        ("/ui/config/rules", "rules-table"),
        ("/ui/config/rules/new", "rule-form"),
        ("/ui/config/silences", "silences-table"),
        ("/ui/config/silences/new", "silence-form"),
        ("/ui/config/calendar", "calendar-year"),
        ("/ui/config/receivers", "receiver-test-ops"),
        ("/ui/config/routes", "routes-table"),
    ] {
        let a = kit.get(path, Some(&admin)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        assert!(a.body.contains(marker), "{path} has {marker}: {}", a.body);
    }
    let viewer = kit.login("viewer1", &[("viewer", "*")]);
    for path in ["/ui/config", "/ui/config/rules", "/ui/config/calendar", "/ui/config/receivers", "/ui/config/routes"] {
        assert_eq!(kit.get(path, Some(&viewer)).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    let refusals = audit(&kit, "access_refused");
    assert!(refusals.iter().any(|r| r.actor == "viewer1"), "refusals are audited: {refusals:?}");
}

#[tokio::test]
async fn rules_are_listed_per_campus_previewed_saved_and_deleted() {
    let (api, rec) = backend();
    let kit = Kit::new(api);
    let east = kit.login("east-ops", &[("ops", "east")]);
    let list = kit.get("/ui/config/rules", Some(&east)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains(r#"data-group="east-db""#));
    assert!(!list.body.contains("west-db") && !list.body.contains(r#"data-group="base""#), "{}", list.body);

    let index = kit.get("/ui/config", Some(&east)).await;
    assert!(index.body.contains("<b>1</b> 个规则组"), "counts only what east may see: {}", index.body);
    assert!(index.body.contains("<b>1</b> 生效 / 1"), "one east silence: {}", index.body);

    let edit = kit.get("/ui/config/rules/east-db/edit", Some(&east)).await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.body);
    assert!(edit.body.contains(r#"id="rule-yaml""#) && edit.body.contains("pg_up &#x3D;&#x3D; 0"), "{}", edit.body);
    assert_eq!(kit.get("/ui/config/rules/west-db/edit", Some(&east)).await.status, StatusCode::NOT_FOUND);

    let preview = kit.send(Method::POST, "/ui/api/config/rules/preview", &east, Some(json!({"yaml": YAML}))).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(preview.body.contains("CpuHigh") && preview.body.contains("93.5"), "{}", preview.body);
    assert!(!preview.body.contains("west-db-01"), "another campus's series stay hidden: {}", preview.body);
    assert!(preview.body.contains("1 条其他院区"), "{}", preview.body);
    assert!(rec.wrote("POST", "/api/v1/alerting/rules-check").is_some(), "preview validates with the API");
    assert!(rec.wrote("POST", "/api/v1/alerting/rules").is_none(), "preview saves nothing");

    let broken = YAML.replace("expr: cpu > 90", "expr: \"\"");
    let refused = kit.send(Method::POST, "/ui/api/config/rules", &east, Some(json!({"yaml": broken}))).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("expr: must not be empty"), "the API's error is shown: {}", refused.body);
    let not_yaml = kit.send(Method::POST, "/ui/api/config/rules", &east, Some(json!({"yaml": "groups: ["}))).await;
    assert_eq!(not_yaml.status, StatusCode::BAD_REQUEST);
    assert!(not_yaml.body.contains("yaml"), "{}", not_yaml.body);
    let west_yaml = YAML.replace("campus: east", "campus: west");
    let refused = kit.send(Method::POST, "/ui/api/config/rules", &east, Some(json!({"yaml": west_yaml}))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "east ops cannot write a west rule");

    let saved = kit.send(Method::POST, "/ui/api/config/rules", &east, Some(json!({"yaml": YAML}))).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    let sent = rec.writes().into_iter().rev().find(|c| c.0 == "POST" && c.1 == "/api/v1/alerting/rules").unwrap().2;
    assert_eq!(sent["name"], "east-cpu");
    assert_eq!(sent["rules"][0]["for"], "5m");
    assert!(audit(&kit, "config_change").iter().any(|r| r.detail.contains("create rule group east-cpu")));

    let replaced = YAML.replace("cpu > 90", "cpu > 95");
    let put = kit.send(Method::PUT, "/ui/api/config/rules/east-cpu", &east, Some(json!({"yaml": replaced}))).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(rec.wrote("PUT", "/api/v1/alerting/rules/east-cpu").unwrap()["rules"][0]["expr"], "cpu > 95");

    let refused = kit.send(Method::DELETE, "/ui/api/config/rules/west-db", &east, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let deleted = kit.send(Method::DELETE, "/ui/api/config/rules/east-cpu", &east, None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(rec.wrote("DELETE", "/api/v1/alerting/rules/east-cpu").is_some());
    assert!(rec.wrote("DELETE", "/api/v1/alerting/rules/west-db").is_none());
    assert!(audit(&kit, "config_change").iter().any(|r| r.detail.contains("delete rule group east-cpu")));

    let viewer = kit.login("east-viewer", &[("viewer", "east")]);
    let refused = kit.send(Method::POST, "/ui/api/config/rules", &viewer, Some(json!({"yaml": YAML}))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let no_csrf = kit.call(Method::POST, "/ui/api/config/rules", None, Some(json!({"yaml": YAML}))).await;
    assert!(no_csrf.status == StatusCode::UNAUTHORIZED || no_csrf.status == StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_one_rule_form_creates_a_group() {
    let (api, rec) = backend();
    let kit = Kit::new(api);
    let admin = kit.login("admin1", &[("admin", "*")]);
    let form = json!({"group": "lis", "interval": "30s", "alert": "LisSlow", "expr": "lis_latency_seconds > 2",
                      "for": "2m", "severity": "warning", "campus": "", "summary": "LIS 响应慢"});
    let done = kit.send(Method::POST, "/ui/api/config/rules/simple", &admin, Some(form)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let sent = rec.wrote("POST", "/api/v1/alerting/rules").unwrap();
    assert_eq!(
        sent,
        json!({"name": "lis", "interval": "30s", "rules": [{"alert": "LisSlow", "expr": "lis_latency_seconds > 2",
               "for": "2m", "labels": {"severity": "warning"}, "annotations": {"summary": "LIS 响应慢"}}]})
    );
}

#[tokio::test]
async fn silences_are_scoped_edited_and_expired() {
    let (api, rec) = backend();
    let kit = Kit::new(api);
    let east = kit.login("east-ops", &[("ops", "east")]);
    let list = kit.get("/ui/config/silences", Some(&east)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains(r#"data-silence="sil-east""#) && !list.body.contains("sil-west"), "{}", list.body);
    assert!(list.body.contains("东院换盘"));
    assert_eq!(kit.get("/ui/config/silences/sil-west/edit", Some(&east)).await.status, StatusCode::NOT_FOUND);
    let edit = kit.get("/ui/config/silences/sil-east/edit", Some(&east)).await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.body);
    assert!(edit.body.contains("silence-form") && edit.body.contains("PUT"));

    let body =
        json!({"matchers": "campus=\"east\"\nhost=\"east-db-01\"", "ends": "2099-01-01T08:00", "comment": "延长"});
    let refused = kit.send(Method::PUT, "/ui/api/silences/sil-west", &east, Some(body.clone())).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "another campus's silence is not even found");
    let moved = json!({"matchers": "campus=\"west\"", "ends": "2099-01-01T08:00", "comment": "x"});
    let refused = kit.send(Method::PUT, "/ui/api/silences/sil-east", &east, Some(moved)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "cannot move a silence to another campus");
    let done = kit.send(Method::PUT, "/ui/api/silences/sil-east", &east, Some(body)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let sent = rec.wrote("PUT", "/api/v1/alerting/silences/sil-east").unwrap();
    assert_eq!(sent["ends_at_ms"], json!(4_070_908_800_000i64), "2099-01-01 08:00 Shanghai");
    assert_eq!(sent["created_by"], "east-ops");

    let refused = kit.send(Method::DELETE, "/ui/api/silences/sil-west", &east, None).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let expired = kit.send(Method::DELETE, "/ui/api/silences/sil-east", &east, None).await;
    assert_eq!(expired.status, StatusCode::OK, "{}", expired.body);
    assert!(rec.wrote("DELETE", "/api/v1/alerting/silences/sil-east").is_some());
    assert!(rec.wrote("DELETE", "/api/v1/alerting/silences/sil-west").is_none());
    let changes = audit(&kit, "config_change");
    assert!(changes.iter().any(|r| r.detail.contains("expire silence sil-east")), "{changes:?}");
    assert!(changes.iter().any(|r| r.detail.contains("edit silence sil-east")), "{changes:?}");

    let weekly = json!({"matchers": "campus=\"east\"\nsystem=\"HIS\"", "comment": "每周二例行维护",
                        "days": "workdays", "weekdays": "tue", "times": "02:00-04:00, 22:00-24:00"});
    let done = kit.send(Method::POST, "/ui/api/silences", &east, Some(weekly)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let sent = rec.writes().into_iter().rev().find(|c| c.0 == "POST" && c.1 == "/api/v1/alerting/silences").unwrap().2;
    assert_eq!(
        sent["recurrence"],
        json!({"days": "workdays", "weekdays": ["tue"], "times": ["02:00-04:00", "22:00-24:00"]})
    );
    assert!(
        sent.get("duration").is_none() && sent.get("ends_at_ms").is_none(),
        "a recurring silence may be open-ended"
    );

    let viewer = kit.login("east-viewer", &[("viewer", "east")]);
    assert_eq!(
        kit.send(Method::DELETE, "/ui/api/silences/sil-east", &viewer, None).await.status,
        StatusCode::FORBIDDEN
    );
    let bad_time = json!({"matchers": "campus=\"east\"", "ends": "tomorrow", "comment": "x"});
    let bad = kit.send(Method::POST, "/ui/api/silences", &east, Some(bad_time)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("ends"), "{}", bad.body);
}

#[tokio::test]
async fn the_calendar_shows_the_year_and_only_group_admins_override_days() {
    let (api, rec) = backend();
    let kit = Kit::new(api);
    let admin = kit.login("admin1", &[("admin", "*")]);
    let page = kit.get("/ui/config/calendar?year=2026", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(r#"class="cal-holiday" data-date="2026-10-01""#), "{}", page.body);
    assert!(page.body.contains(r#"class="cal-makeup" data-date="2026-10-10""#));
    assert!(page.body.contains(r#"class="cal-weekend" data-date="2026-10-04""#));
    assert!(page.body.contains("office-hours") && page.body.contains("calendar-form"));
    assert!(page.body.contains(r#"data-action="/ui/api/config/calendar/2026-11-20""#), "api overrides can be cleared");

    let east = kit.login("east-ops", &[("ops", "east")]);
    let body = json!({"date": "2026-12-01", "kind": "holiday", "name": "院庆"});
    let refused = kit.send(Method::PUT, "/ui/api/config/calendar/2026-12-01", &east, Some(body.clone())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "the calendar is group-wide");
    let bad = kit.send(Method::PUT, "/ui/api/config/calendar/2026-13-01", &admin, Some(body.clone())).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("date"), "{}", bad.body);
    let done = kit.send(Method::PUT, "/ui/api/config/calendar/2026-12-01", &admin, Some(body)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let sent = rec.wrote("PUT", "/api/v1/alerting/calendar/2026-12-01").unwrap();
    assert_eq!(sent, json!({"kind": "holiday", "name": "院庆", "by": "admin1"}));
    let cleared = kit.send(Method::DELETE, "/ui/api/config/calendar/2026-11-20", &admin, None).await;
    assert_eq!(cleared.status, StatusCode::OK);
    let changes = audit(&kit, "config_change");
    assert!(changes.iter().any(|r| r.detail.contains("calendar 2026-12-01 set to holiday")), "{changes:?}");
    assert!(changes.iter().any(|r| r.detail.contains("calendar 2026-11-20 override cleared")));
}

#[tokio::test]
async fn receivers_show_channels_and_a_test_send_answers_each_channel() {
    let (api, rec) = backend();
    let kit = Kit::new(api);
    let admin = kit.login("admin1", &[("admin", "*")]);
    let page = kit.get("/ui/config/receivers", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(r#"id="receiver-test-ops""#) && page.body.contains(r#"id="receiver-test-director""#));
    assert!(page.body.contains("o***@hospital.example") && page.body.contains("wecom_robot:infra"));
    assert!(!page.body.contains("ops@hospital.example") && !page.body.contains("13800000000"), "masked by default");
    assert!(page.body.contains("138****0000") && page.body.contains(r#"id="contacts-show""#));

    let east = kit.login("east-ops", &[("ops", "east")]);
    let refused = kit.send(Method::POST, "/ui/api/config/receivers/ops/test", &east, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "receivers are group-wide");
    let no_csrf = kit.call(Method::POST, "/ui/api/config/receivers/ops/test", None, None).await;
    assert!(no_csrf.status == StatusCode::UNAUTHORIZED || no_csrf.status == StatusCode::FORBIDDEN);
    assert!(rec.writes().is_empty());

    let done = kit.send(Method::POST, "/ui/api/config/receivers/ops/test", &admin, None).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("smtp: connection refused") && done.body.contains("wecom_robot:infra"), "{}", done.body);
    assert_eq!(rec.wrote("POST", "/api/v1/alerting/receivers/ops/test").unwrap(), json!({"by": "admin1"}));
    assert!(audit(&kit, "receiver_test").iter().any(|r| r.detail.contains("receiver ops")));
    let missing = kit.send(Method::POST, "/ui/api/config/receivers/nobody/test", &admin, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn contact_addresses_are_masked_unless_a_group_admin_asks_and_each_view_is_audited() {
    let (api, _) = backend();
    let kit = Kit::new(api);
    let admin = kit.login("admin1", &[("admin", "*")]);
    let shown = kit.get("/ui/config/receivers?contacts=1", Some(&admin)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert!(shown.body.contains("ops@hospital.example") && shown.body.contains("13900000000"));
    assert!(shown.body.contains(r#"id="contacts-hide""#));
    let views = audit(&kit, "sensitive_view");
    assert_eq!(views.len(), 1, "{views:?}");
    assert!(views[0].actor == "admin1" && views[0].detail.contains("2 receivers, 4 entries"), "{views:?}");

    // Ops may change configuration but not read personal data, on one campus or on all.
    for (user, campus) in [("east-ops", "east"), ("group-ops", "*")] {
        let ops = kit.login(user, &[("ops", campus)]);
        let page = kit.get("/ui/config/receivers", Some(&ops)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("o***@hospital.example") && !page.body.contains("ops@hospital.example"));
        assert!(!page.body.contains(r#"id="contacts-show""#), "{user} is offered what it may not see");
        let refused = kit.get("/ui/config/receivers?contacts=1", Some(&ops)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{user}: {}", refused.body);
        assert!(!refused.body.contains("ops@hospital.example") && !refused.body.contains("13900000000"));
    }
    assert_eq!(audit(&kit, "sensitive_view").len(), 1, "refusals and masked pages are not sensitive views");
    let bad = kit.get("/ui/config/receivers?contacts=yes", Some(&admin)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("contacts"), "{}", bad.body);
}

#[tokio::test]
async fn the_route_tree_is_shown_readably() {
    let (api, _) = backend();
    let kit = Kit::new(api);
    let admin = kit.login("admin1", &[("admin", "*")]);
    let page = kit.get("/ui/config/routes", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("route-depth-0") && page.body.contains("route-depth-1"));
    assert!(page.body.contains("campus&#x3D;&quot;east&quot;") && page.body.contains("15m → director"));
    assert!(page.body.contains("system&#x3D;~&quot;HIS|LIS&quot;") && page.body.contains("office-hours"));
    assert!(page.body.contains("alertname&#x3D;&quot;HostDown&quot;"), "inhibition rules listed");
}

#[test]
fn matchers_name_their_campus() {
    let m = |v: &[&str]| super::matcher_campus(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(m(&["host=\"a\"", "campus=\"east\""]).as_deref(), Some("east"));
    assert_eq!(m(&["campus = east"]).as_deref(), Some("east"));
    assert_eq!(m(&["campus=~\"east|west\""]), None, "a regex is not one campus");
    assert_eq!(m(&["campus!=\"east\""]), None);
    assert_eq!(m(&["campusx=\"east\""]), None);
    assert_eq!(super::local_datetime_ms("ends", "2099-01-01T08:00"), Ok(4_070_908_800_000));
    assert!(super::local_datetime_ms("ends", "soon").unwrap_err().starts_with("ends:"));
}
