//! The auditor's console (SEC logs 3.5/3.6, 5.6/5.7): the audit records with filters (user,
//! event, outcome, time range, source address) and paging, the chain check (naming the first
//! broken record), and the login-duration query. Only `ViewAudit` (the auditor, a `*` binding)
//! gets here; the administrator does not (separation of duties). The pages read the `Identity`
//! service directly, so each view is recorded here as `audit_view`, as identity's API does.

use super::users::{blocking, error_page, list_link, local_ms, page_number};
use crate::web::Viewer;
use crate::{Dashboard, i18n};
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tingzhen_identity::Permission;
use tingzhen_identity::audit::{AuditQuery, Outcome, TamperKind, events};

/// Records per page.
const PAGE: i64 = 50;

pub fn routes() -> Router<Dashboard> {
    Router::new().route("/ui/audit", get(records)).route("/ui/audit/logins", get(logins))
}

/// The event names identity and the other targets record, offered by the event filter (which
/// also takes any other name).
const EVENTS: &[&str] = &[
    events::LOGIN,
    events::LOGOUT,
    events::SESSION_EXPIRED,
    events::LOCKOUT,
    events::UNLOCK,
    events::ACCESS_REFUSED,
    events::PASSWORD_CHANGE,
    events::USER_CREATE,
    events::USER_UPDATE,
    events::USER_STATUS,
    events::PERMISSION_CHANGE,
    events::TOTP_ENROL,
    events::AUDIT_VIEW,
    events::REPORT_VIEW,
    events::CONFIG_CHANGE,
    events::START,
    events::STOP,
    events::SENSITIVE_VIEW,
];

const OUTCOMES: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Refused];

/// The filter form as sent (strings: empty means "any").
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
struct RecordsQuery {
    actor: String,
    event: String,
    outcome: String,
    from: String,
    to: String,
    source_ip: String,
    page: String,
    /// `1` runs the chain check.
    verify: String,
}

impl RecordsQuery {
    fn page(&self) -> Result<i64, String> {
        page_number(&self.page)
    }

    fn query(&self) -> Result<AuditQuery, String> {
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let outcome = self.outcome.trim();
        if !outcome.is_empty() && !OUTCOMES.iter().any(|o| o.as_str() == outcome) {
            return Err(format!("outcome: {outcome:?} is not success, failure or refused"));
        }
        let source_ip = opt(&self.source_ip);
        if let Some(ip) = &source_ip
            && ip.parse::<std::net::IpAddr>().is_err()
            && ip != "-"
        {
            return Err(format!("source_ip: {ip:?} is not an IP address"));
        }
        Ok(AuditQuery {
            from_ms: local_ms("from", &self.from, false)?,
            to_ms: local_ms("to", &self.to, true)?,
            actor: opt(&self.actor),
            event: opt(&self.event),
            outcome: opt(outcome),
            source_ip,
            limit: Some(PAGE + 1),
            offset: Some((self.page()? - 1) * PAGE),
        })
    }

    /// This query's URL on another page (the filters kept, the check not re-run).
    fn url(&self, page: i64) -> String {
        let q = RecordsQuery { page: page.to_string(), verify: String::new(), ..self.clone() };
        let pairs = [
            ("actor", q.actor.as_str()),
            ("event", q.event.as_str()),
            ("outcome", q.outcome.as_str()),
            ("from", q.from.as_str()),
            ("to", q.to.as_str()),
            ("source_ip", q.source_ip.as_str()),
            ("page", q.page.as_str()),
        ];
        list_link("/ui/audit", &pairs)
    }
}

fn tamper_key(k: TamperKind) -> &'static str {
    match k {
        TamperKind::Modified => "audit_tamper_modified",
        TamperKind::ChainBroken => "audit_tamper_chain_broken",
        TamperKind::Missing => "audit_tamper_missing",
        TamperKind::Truncated => "audit_tamper_truncated",
    }
}

async fn records(State(d): State<Dashboard>, v: Viewer, Query(q): Query<RecordsQuery>) -> Response {
    if let Err(r) = d.require_page(&v, Permission::ViewAudit, None).await {
        return r;
    }
    let lang = v.lang();
    let actor = v.session.actor();
    let verify = q.verify == "1";
    let (query, error) = match q.query() {
        Ok(a) => (Some(a), None),
        Err(e) => (None, Some(e)),
    };
    let got = blocking(&d, lang, move |id| {
        // The check runs before this view is recorded, so its own record does not hide a
        // truncated tail.
        let report = if verify { Some(id.audit_log().verify()?) } else { None };
        let detail = match (&query, &report) {
            (_, Some(r)) => format!("console: chain verified: ok={}", r.ok),
            (Some(q), None) => format!("console: query {q:?}"),
            (None, None) => "console: audit page (bad filter)".to_string(),
        };
        id.record(&actor, events::AUDIT_VIEW, Outcome::Success, detail)?;
        let rows = match &query {
            Some(q) => id.audit_log().query(q)?,
            None => Vec::new(),
        };
        Ok((report, rows))
    })
    .await;
    let (report, mut rows) = match got {
        Ok(r) => r,
        Err(e) => return error_page(&d, &v, e),
    };
    let page = q.page().unwrap_or(1);
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let verify_view = report.map(|r| {
        json!({
            "ok": r.ok,
            "records": r.records,
            "problem": r.problem.map(|p| json!({
                "seq": p.seq,
                "kind": serde_json::to_value(p.kind).unwrap_or(Value::Null),
                "text": i18n::text(lang, tamper_key(p.kind)),
                "message": p.message,
            })),
        })
    });
    let outcome_text = |o: &str| i18n::text(lang, &format!("audit_outcome_{o}"));
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({"seq": r.seq, "ts_ms": r.ts_ms, "actor": r.actor, "source_ip": r.source_ip, "event": r.event,
                   "outcome": r.outcome, "outcome_text": outcome_text(&r.outcome), "detail": r.detail})
        })
        .collect();
    let data = json!({
        "f": q,
        "error": error,
        "records": rows,
        "events": EVENTS,
        "outcomes": OUTCOMES.iter().map(|o| json!({"value": o.as_str(), "text": outcome_text(o.as_str()),
                                                   "selected": q.outcome == o.as_str()})).collect::<Vec<_>>(),
        "verify": verify_view,
        "page": page,
        "prev_url": (page > 1).then(|| q.url(page - 1)),
        "next_url": more.then(|| q.url(page + 1)),
    });
    d.page(&v, "pages/audit", "audit_title", data)
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct LoginsQuery {
    username: String,
    from: String,
    to: String,
}

async fn logins(State(d): State<Dashboard>, v: Viewer, Query(q): Query<LoginsQuery>) -> Response {
    if let Err(r) = d.require_page(&v, Permission::ViewAudit, None).await {
        return r;
    }
    let lang = v.lang();
    let actor = v.session.actor();
    let parsed = (|| -> Result<_, String> { Ok((local_ms("from", &q.from, false)?, local_ms("to", &q.to, true)?)) })();
    let username = Some(q.username.trim().to_string()).filter(|u| !u.is_empty());
    let (rows, error) = match parsed {
        Ok((from, to)) => {
            let got = blocking(&d, lang, move |id| {
                id.record(&actor, events::AUDIT_VIEW, Outcome::Success, "console: login-duration query")?;
                id.login_durations(username.as_deref(), from, to)
            })
            .await;
            match got {
                Ok(r) => (r, None),
                Err(e) => return error_page(&d, &v, e),
            }
        }
        Err(e) => (Vec::new(), Some(e)),
    };
    let total: i64 = rows.iter().filter_map(|r| r.duration_ms).sum();
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"username": r.username, "source_ip": r.source_ip, "start_ms": r.start_ms, "end_ms": r.end_ms,
                   "end_reason": r.end_reason, "duration": r.duration_ms.map(duration_text)})
        })
        .collect();
    let data = json!({"f": q, "error": error, "count": rows.len(), "sessions": rows, "total": duration_text(total)});
    d.page(&v, "pages/audit_logins", "audit_logins_title", data)
}

/// `2h 05m 09s` style, language-neutral.
fn duration_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 { format!("{h}h {m:02}m {s:02}s") } else { format!("{m}m {s:02}s") }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use crate::{Backend, Dashboard, DashboardConfig};
    use axum::Router;
    use axum::http::StatusCode;
    use std::sync::Arc;
    use tingzhen_core::db::testing::fresh_db;
    use tingzhen_core::db::{Db, Dialect};
    use tingzhen_identity::audit::{AuditQuery, Outcome, events};
    use tingzhen_identity::{Actor, Identity, IdentityConfig, SystemClock};

    /// A kit whose store the test can also reach, to tamper with it as a DBA could.
    fn kit_with_db() -> (Kit, Arc<Db>) {
        let db = Arc::new(fresh_db());
        let mut cfg = IdentityConfig::default();
        cfg.argon2.memory_kib = 64;
        cfg.argon2.iterations = 1;
        cfg.cookie_secure = false;
        let identity = Arc::new(Identity::new(db.clone(), cfg, Arc::new(SystemClock)).unwrap());
        let dashboard =
            Dashboard::new(identity, Backend::in_process(Router::new(), "t".into()), DashboardConfig::default())
                .unwrap();
        let router = crate::router(dashboard.clone()).merge(tingzhen_identity::api::router(dashboard.identity.clone()));
        (Kit { dashboard, router, db: db.clone() }, db)
    }

    fn views_by(kit: &Kit, actor: &str) -> usize {
        let q = AuditQuery { event: Some(events::AUDIT_VIEW.into()), actor: Some(actor.into()), ..Default::default() };
        kit.dashboard.identity.audit_log().query(&q).unwrap().len()
    }

    #[tokio::test]
    async fn the_auditor_reads_and_filters_the_log_and_the_admin_is_refused() {
        let (kit, _) = kit_with_db();
        let aud = kit.login("aud", &[("auditor", "*")]);
        let admin = kit.login("admin1", &[("admin", "*")]);
        let id = &kit.dashboard.identity;
        id.record(
            &Actor::new("ops1", "10.9.9.9"),
            events::CONFIG_CHANGE,
            Outcome::Success,
            "<img src=x onerror=alert(1)>",
        )
        .unwrap();

        let refused = kit.get("/ui/audit", Some(&admin)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(!refused.body.contains("audit-table") && !refused.body.contains("ops1"));
        assert_eq!(kit.get("/ui/audit/logins", Some(&admin)).await.status, StatusCode::FORBIDDEN);
        assert_eq!(kit.get("/api/v1/audit/records", Some(&admin)).await.status, StatusCode::FORBIDDEN);
        let home = kit.get("/ui/account", Some(&admin)).await;
        assert!(!home.body.contains("href=\"/ui/audit\""), "no audit link for the admin");

        let page = kit.get("/ui/audit", Some(&aud)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for id in ["id=\"audit-table\"", "id=\"audit-verify\"", "data-seq=\"1\"", "ops1", "10.9.9.9"] {
            assert!(page.body.contains(id), "{id} missing");
        }
        assert!(page.body.contains("&lt;img src&#x3D;x onerror&#x3D;alert(1)&gt;"), "detail escaped");
        assert!(!page.body.contains("<img src=x"));
        assert!(!page.body.contains("audit-verify-result"), "the check runs only when asked");
        assert_eq!(views_by(&kit, "aud"), 1, "the view itself is audited");

        let by_ip = kit.get("/ui/audit?source_ip=10.9.9.9", Some(&aud)).await;
        assert!(by_ip.body.contains("ops1") && !by_ip.body.contains(">admin1<"), "{}", by_ip.body);
        let by_event = kit.get("/ui/audit?event=login&outcome=success&actor=admin1", Some(&aud)).await;
        assert!(by_event.body.contains(">admin1<") && !by_event.body.contains("ops1"));
        let refusals = kit.get("/ui/audit?outcome=refused", Some(&aud)).await;
        assert!(
            refusals.body.contains("access_refused") && refusals.body.contains(">admin1<"),
            "admin's refusal logged"
        );
        let future = kit.get("/ui/audit?from=2099-01-01T00:00", Some(&aud)).await;
        assert!(!future.body.contains("ops1") && future.body.contains("没有记录"));
        let bad = kit.get("/ui/audit?outcome=maybe&source_ip=nowhere", Some(&aud)).await;
        assert!(bad.body.contains("audit-filter-error") && bad.body.contains("outcome"), "{}", bad.body);
        assert_eq!(views_by(&kit, "aud"), 6);
    }

    #[tokio::test]
    async fn records_are_paged() {
        let (kit, _) = kit_with_db();
        let aud = kit.login("aud", &[("auditor", "*")]);
        for i in 0..60 {
            kit.dashboard
                .identity
                .record(&Actor::new("ops1", "10.1.1.1"), events::CONFIG_CHANGE, Outcome::Success, format!("change {i}"))
                .unwrap();
        }
        let first = kit.get("/ui/audit?actor=ops1", Some(&aud)).await;
        assert!(
            first.body.contains("change 59") && first.body.contains("change 10") && !first.body.contains("change 9<")
        );
        assert!(first.body.contains("href=\"/ui/audit?actor&#x3D;ops1&amp;page&#x3D;2\""), "{}", first.body);
        let second = kit.get("/ui/audit?actor=ops1&page=2", Some(&aud)).await;
        assert!(
            second.body.contains("change 9<")
                && second.body.contains("change 0<")
                && !second.body.contains("change 10<")
        );
        assert!(second.body.contains("rel=\"prev\"") && !second.body.contains("rel=\"next\""));
        let bad = kit.get("/ui/audit?page=0", Some(&aud)).await;
        assert!(bad.body.contains("page"), "{}", bad.body);
    }

    #[tokio::test]
    async fn verify_shows_an_intact_chain_then_names_a_modified_record() {
        let (kit, db) = kit_with_db();
        let aud = kit.login("aud", &[("auditor", "*")]);
        let ok = kit.get("/ui/audit?verify=1", Some(&aud)).await;
        assert_eq!(ok.status, StatusCode::OK);
        assert!(ok.body.contains("id=\"audit-verify-result\"") && ok.body.contains("data-ok=\"true\""), "{}", ok.body);

        let drop_trigger = match db.dialect() {
            Dialect::Sqlite => "DROP TRIGGER identity_audit_no_update",
            Dialect::Postgres => "DROP TRIGGER identity_audit_no_update ON identity_audit",
        };
        db.with_conn(|c| {
            c.execute_batch(drop_trigger)?;
            c.execute("UPDATE identity_audit SET detail = 'nothing happened' WHERE seq = 2", &())
        })
        .unwrap();
        let bad = kit.get("/ui/audit?verify=1", Some(&aud)).await;
        assert_eq!(bad.status, StatusCode::OK);
        assert!(bad.body.contains("data-ok=\"false\""), "{}", bad.body);
        assert!(bad.body.contains("data-seq=\"2\" data-kind=\"modified\""), "{}", bad.body);
        assert!(bad.body.contains("审计日志已被篡改") && bad.body.contains("#2"));
        assert!(bad.body.contains("<tr data-seq=\"2\" class=\"tampered\">"), "the broken row is marked");
        let q = AuditQuery { event: Some(events::AUDIT_VIEW.into()), ..Default::default() };
        let views = kit.dashboard.identity.audit_log().query(&q).unwrap();
        assert!(views.iter().any(|r| r.detail.contains("ok=false")), "the failed check is on record");
    }

    #[tokio::test]
    async fn login_durations_per_user() {
        let (kit, _) = kit_with_db();
        let aud = kit.login("aud", &[("auditor", "*")]);
        let nurse = kit.login("nurse1", &[("viewer", "east")]);
        let out = kit.send(axum::http::Method::POST, "/api/v1/auth/logout", &nurse, None).await;
        assert_eq!(out.status, StatusCode::OK, "{}", out.body);
        let page = kit.get("/ui/audit/logins?username=nurse1", Some(&aud)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("id=\"audit-sessions\"") && page.body.contains("data-user=\"nurse1\""));
        assert!(!page.body.contains("data-user=\"aud\""));
        assert!(
            page.body.contains("<td>0m 00s</td><td>logout</td>"),
            "the ended session has a duration: {}",
            page.body
        );
        assert!(page.body.contains("会话数 2"), "{}", page.body);
        let all = kit.get("/ui/audit/logins", Some(&aud)).await;
        assert!(all.body.contains("data-user=\"aud\"") && all.body.contains("data-user=\"nurse1\""));
        let bad = kit.get("/ui/audit/logins?from=tomorrow", Some(&aud)).await;
        assert!(bad.body.contains("from: &quot;tomorrow&quot; is not a date"), "{}", bad.body);
        assert!(views_by(&kit, "aud") >= 2);
    }
}
