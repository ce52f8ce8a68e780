//! Login, forced password change, TOTP enrolment, and self-service password reset by SMS code
//! (`/ui/reset`, public like the login page; offered only when identity has reset configured).
//! The forms post to identity's own API (`/api/v1/auth/*`) from `app.js`, which adds the CSRF
//! token and the anti-replay headers; these handlers only render the pages and keep the
//! redirect target local.

use crate::Dashboard;
use crate::web::{Prefs, Viewer};
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/ui/login", get(login))
        .route("/ui/reset", get(reset))
        .route("/ui/password", get(password))
        .route("/ui/totp", get(totp))
}

#[derive(Debug, Deserialize)]
struct Next {
    #[serde(default)]
    next: String,
}

/// Only a path inside the console: never another host (`//evil`, `https://…`) after login.
pub(crate) fn safe_next(next: &str) -> String {
    let ok = next.starts_with("/ui/") && !next.starts_with("//") && !next.contains('\\') && !next.contains("://");
    if ok && !next.starts_with("/ui/login") { next.to_string() } else { "/ui/".to_string() }
}

async fn login(State(d): State<Dashboard>, prefs: Prefs, Query(q): Query<Next>) -> Response {
    let rules = tingzhen_identity::Msg::PasswordRules { min: d.identity.policy().min_length() }.text(prefs.lang);
    let data = json!({"next": safe_next(&q.next), "rules": rules, "reset": d.identity.password_reset_enabled()});
    d.public_page(prefs, "pages/login", "login_title", data)
}

/// "Forgot password": the two steps (code by SMS, then code and new password) when reset is
/// configured, otherwise only the advice to ask an administrator.
async fn reset(State(d): State<Dashboard>, prefs: Prefs) -> Response {
    let rules = tingzhen_identity::Msg::PasswordRules { min: d.identity.policy().min_length() }.text(prefs.lang);
    d.public_page(
        prefs,
        "pages/reset",
        "reset_title",
        json!({"enabled": d.identity.password_reset_enabled(), "rules": rules}),
    )
}

async fn password(State(d): State<Dashboard>, v: Viewer) -> Response {
    let forced = v.session.restriction == Some(tingzhen_identity::Restriction::PasswordChange);
    let rules = tingzhen_identity::Msg::PasswordRules { min: d.identity.policy().min_length() }.text(v.lang());
    d.page(&v, "pages/password", "password_title", json!({"forced": forced, "rules": rules}))
}

async fn totp(State(d): State<Dashboard>, v: Viewer) -> Response {
    d.page(&v, "pages/totp", "totp_title", json!({}))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{CHANGED, Kit};
    use super::safe_next;
    use axum::Router;
    use axum::http::{Method, StatusCode};
    use serde_json::{Value, json};
    use tingzhen_identity::{LoginRequest, UserUpdate};

    fn json_of(body: &str) -> Value {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    #[tokio::test]
    async fn the_login_page_offers_reset_only_when_it_is_configured() {
        let off = Kit::new(Router::new());
        let page = off.get("/ui/login", None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("id=\"login-form\""));
        assert!(!page.body.contains("/ui/reset") && !page.body.contains("忘记密码"), "{}", page.body);

        let (on, _) = Kit::with_password_reset(Router::new());
        let page = on.get("/ui/login", None).await;
        assert!(page.body.contains(r#"<a href="/ui/reset" id="login-forgot">忘记密码？</a>"#), "{}", page.body);
    }

    #[tokio::test]
    async fn the_reset_page_is_public_and_shows_the_steps_or_the_advice() {
        let off = Kit::new(Router::new());
        let page = off.get("/ui/reset", None).await;
        assert_eq!(page.status, StatusCode::OK, "no session needed: {:?}", page.location);
        assert!(page.body.contains("id=\"reset-unavailable\"") && page.body.contains("请联系管理员"), "{}", page.body);
        assert!(!page.body.contains("<form") && !page.body.contains("reset-captcha"), "no form without reset");
        assert!(page.body.contains(r#"href="/ui/login""#));

        let (on, _) = Kit::with_password_reset(Router::new());
        let page = on.get("/ui/reset", None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for id in ["reset-request-form", "reset-username", "reset-phone", "reset-captcha-img", "reset-confirm-form"] {
            assert!(page.body.contains(&format!("id=\"{id}\"")), "{id} missing");
        }
        assert!(page.body.contains("<div id=\"reset-step2\" hidden>"), "step 2 waits for step 1");
        assert!(!page.body.contains("reset-unavailable"));
        let rules = tingzhen_identity::Msg::PasswordRules { min: on.dashboard.identity.policy().min_length() }
            .text(tingzhen_identity::Lang::ZhCn);
        assert!(page.body.contains(&rules), "the password rules are shown");
        // The CSP allows no inline script: the only script is app.js.
        assert_eq!(page.body.matches("<script").count(), 1);
        assert!(page.body.contains(r#"<script src="/ui/assets/app.js" defer></script>"#));
    }

    #[tokio::test]
    async fn the_reset_page_speaks_english_too() {
        use tower::ServiceExt;
        for (kit, want) in [
            (Kit::new(Router::new()), "Ask an administrator to reset your password."),
            (Kit::with_password_reset(Router::new()).0, "Send the code"),
        ] {
            let req = axum::http::Request::builder()
                .uri("/ui/reset")
                .header(axum::http::header::ACCEPT_LANGUAGE, "en-US,en;q=0.9")
                .body(axum::body::Body::empty())
                .unwrap();
            let res = kit.router.clone().oneshot(req).await.unwrap();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
            let body = String::from_utf8_lossy(&bytes);
            assert!(body.contains(want) && !body.contains("找回密码"), "{body}");
        }
    }

    /// `app.js` finds the reset page's elements by id: every one it names must be on the page.
    #[tokio::test]
    async fn every_element_the_reset_script_uses_is_on_the_page() {
        let script = include_str!("../assets/app.js");
        let ids: Vec<&str> = script
            .split("getElementById('")
            .skip(1)
            .filter_map(|rest| rest.split_once('\'').map(|(id, _)| id))
            .filter(|id| id.starts_with("reset-"))
            .collect();
        assert!(ids.len() >= 10, "{ids:?}");
        let (kit, _) = Kit::with_password_reset(Router::new());
        let page = kit.get("/ui/reset", None).await;
        for id in ids {
            assert!(page.body.contains(&format!("id=\"{id}\"")), "app.js uses #{id}, the page lacks it");
        }
    }

    /// The two calls the reset page makes, as `app.js` makes them: a code goes only to the
    /// number on record, a weak password is refused with the rules, and the code resets.
    #[tokio::test]
    async fn a_password_is_reset_with_the_code_sent_to_the_phone_on_record() {
        let (kit, sender) = Kit::with_password_reset(Router::new());
        kit.login("nurse1", &[("viewer", "east")]);
        let who = tingzhen_identity::Actor::new("test", "127.0.0.1");
        let upd = UserUpdate { phone: Some(Some("138 1234 5678".into())), ..Default::default() };
        kit.dashboard.identity.update_user(&who, "nurse1", &upd).unwrap();
        let post = |path: &'static str, body: Value| kit.call(Method::POST, path, None, Some(body));

        let r = post("/api/v1/auth/reset/request", json!({"username": "nurse1", "phone": "13812345678"})).await;
        assert_eq!(json_of(&r.body)["error"], "captcha_required", "{}", r.body);

        let (id, answer) = kit.solved_captcha().await;
        let r = post(
            "/api/v1/auth/reset/request",
            json!({"username": "nurse1", "phone": "13812345678", "captcha_id": id, "captcha_answer": answer}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let sent_message = json_of(&r.body)["data"]["message"].as_str().unwrap().to_string();
        let code = {
            let sent = sender.sent.lock().unwrap();
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].phone, "13812345678");
            sent[0].code.clone()
        };
        // Another name or number gets the same answer, and no code.
        let (id, answer) = kit.solved_captcha().await;
        let r = post(
            "/api/v1/auth/reset/request",
            json!({"username": "ghost", "phone": "13812345678", "captcha_id": id, "captcha_answer": answer}),
        )
        .await;
        assert_eq!(json_of(&r.body)["data"]["message"].as_str(), Some(sent_message.as_str()), "{}", r.body);
        assert_eq!(sender.sent.lock().unwrap().len(), 1);

        let r =
            post("/api/v1/auth/reset/confirm", json!({"username": "nurse1", "code": code, "new_password": "short"}))
                .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        let refused = json_of(&r.body);
        assert!(
            refused["violations"].is_array() && refused["rules"].is_string(),
            "the page shows the rules: {refused}"
        );
        let wrong = if code == "000000" { "111111" } else { "000000" };
        let r = post(
            "/api/v1/auth/reset/confirm",
            json!({"username": "nurse1", "code": wrong, "new_password": "Reset#Pass3xyz"}),
        )
        .await;
        assert_eq!(json_of(&r.body)["error"], "reset_code_invalid", "{}", r.body);
        let r = post(
            "/api/v1/auth/reset/confirm",
            json!({"username": "nurse1", "code": code, "new_password": "Reset#Pass3xyz"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(json_of(&r.body)["data"]["message"].is_string());
        let login = |p: &str| LoginRequest { username: "nurse1".into(), password: p.into(), ..Default::default() };
        assert!(kit.dashboard.identity.login(&login("Reset#Pass3xyz"), "127.0.0.1").is_ok());
        assert!(kit.dashboard.identity.login(&login(CHANGED), "127.0.0.1").is_err());
    }

    #[test]
    fn redirects_stay_inside_the_console() {
        assert_eq!(safe_next("/ui/hosts?q=1"), "/ui/hosts?q=1");
        for bad in ["//evil.example/ui/", "https://evil.example/", "/ui/login?next=/ui/", "/ui/..\\x", "", "/api/v1/x"]
        {
            assert_eq!(safe_next(bad), "/ui/", "{bad}");
        }
    }
}
