//! The signed-in person's own account page (every role): their roles per campus, validity and
//! password dates, TOTP state with the enrolment link, a password change (posted to identity's
//! `/api/v1/auth/password`), and their recent logins (session start/end).

use super::data::now_ms;
use super::users::{bindings_view, blocking, error_page};
use crate::Dashboard;
use crate::web::Viewer;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use tingzhen_identity::UserFilter;

/// How many of one's own sessions the page lists.
const RECENT_LOGINS: usize = 10;

pub fn routes() -> Router<Dashboard> {
    Router::new().route("/ui/account", get(account))
}

async fn account(State(d): State<Dashboard>, v: Viewer) -> Response {
    let lang = v.lang();
    let name = v.session.username.clone();
    // Reading one's own account needs no permission: the filter is the session's own name,
    // never a parameter, so nobody reads another account here.
    let got = blocking(&d, lang, move |id| {
        let f = UserFilter { q: Some(name.clone()), ..Default::default() };
        let me = id.search(&f)?.into_iter().find(|u| u.username.eq_ignore_ascii_case(&name));
        let mut logins = id.login_durations(Some(&name), None, None)?;
        logins.truncate(RECENT_LOGINS);
        Ok((me, logins))
    })
    .await;
    let (me, logins) = match got {
        Ok(r) => r,
        Err(e) => return error_page(&d, &v, e),
    };
    let now = now_ms();
    let me = me.map(|u| {
        json!({
            "display_name": u.display_name,
            "valid_until_ms": u.valid_until_ms,
            "expires_soon": u.valid_until_ms.is_some_and(|t| t - now <= 30 * 86_400_000),
            "password_changed_ms": u.password_changed_ms,
            "last_login_ms": u.last_login_ms,
            "login_count": u.login_count,
            "totp_enrolled": u.totp_enrolled,
        })
    });
    let sessions: Vec<Value> = logins
        .iter()
        .map(|r| {
            json!({"username": r.username, "source_ip": r.source_ip, "start_ms": r.start_ms, "end_ms": r.end_ms,
                   "end_reason": r.end_reason,
                   "duration": r.duration_ms.map(|ms| format!("{}m {:02}s", ms / 60_000, ms / 1000 % 60))})
        })
        .collect();
    let rules = tingzhen_identity::Msg::PasswordRules { min: d.identity.policy().min_length() }.text(lang);
    let data = json!({
        "me": me,
        "username": v.session.username,
        "roles": bindings_view(&d, lang, &v.session.bindings),
        "sessions": sessions,
        "rules": rules,
    });
    d.page(&v, "pages/account", "account_title", data)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{CHANGED, Kit};
    use axum::Router;
    use axum::http::{Method, StatusCode};
    use serde_json::json;

    #[tokio::test]
    async fn everyone_sees_their_own_account_and_no_one_elses() {
        let kit = Kit::new(Router::new());
        let nurse = kit.login("nurse1", &[("viewer", "east"), ("ops", "west")]);
        let aud = kit.login("aud", &[("auditor", "*")]);
        let page = kit.get("/ui/account", Some(&nurse)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("只读 · east") && page.body.contains("运维 · west"), "own roles per campus");
        for id in [
            "id=\"account-password-form\"",
            "id=\"account-totp-link\"",
            "id=\"audit-sessions\"",
            "data-user=\"nurse1\"",
        ] {
            assert!(page.body.contains(id), "{id} missing");
        }
        assert!(!page.body.contains("data-user=\"aud\""), "only one's own logins");
        let page = kit.get("/ui/account", Some(&aud)).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("审计员 · 全部院区") && !page.body.contains("data-user=\"nurse1\""));
        let anon = kit.get("/ui/account", None).await;
        assert_eq!(anon.status, StatusCode::SEE_OTHER);
    }

    #[tokio::test]
    async fn the_password_form_changes_the_password_through_identity() {
        let kit = Kit::new(Router::new());
        let nurse = kit.login("nurse1", &[("viewer", "east")]);
        let page = kit.get("/ui/account", Some(&nurse)).await;
        assert!(
            page.body.contains("data-api=\"/api/v1/auth/password\"") && page.body.contains("name=\"new_password\"")
        );
        let r = kit
            .send(
                Method::POST,
                "/api/v1/auth/password",
                &nurse,
                Some(json!({"old_password": CHANGED, "new_password": "Third#Pass3xyz"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let req = tingzhen_identity::LoginRequest {
            username: "nurse1".into(),
            password: "Third#Pass3xyz".into(),
            ..Default::default()
        };
        assert!(kit.dashboard.identity.login(&req, "127.0.0.1").is_ok());
    }
}
