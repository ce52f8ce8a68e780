//! Login, forced password change, TOTP enrolment. The forms post to identity's own API
//! (`/api/v1/auth/*`) from `app.js`, which adds the CSRF token and the anti-replay headers;
//! these handlers only render the pages and keep the redirect target local.

use crate::Dashboard;
use crate::web::{Prefs, Viewer};
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<Dashboard> {
    Router::new().route("/ui/login", get(login)).route("/ui/password", get(password)).route("/ui/totp", get(totp))
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
    d.public_page(prefs, "pages/login", "login_title", json!({"next": safe_next(&q.next), "rules": rules}))
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
    use super::safe_next;

    #[test]
    fn redirects_stay_inside_the_console() {
        assert_eq!(safe_next("/ui/hosts?q=1"), "/ui/hosts?q=1");
        for bad in ["//evil.example/ui/", "https://evil.example/", "/ui/login?next=/ui/", "/ui/..\\x", "", "/api/v1/x"]
        {
            assert_eq!(safe_next(bad), "/ui/", "{bad}");
        }
    }
}
