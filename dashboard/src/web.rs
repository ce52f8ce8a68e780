//! Who is asking and how to answer them. `Viewer` is the extractor for pages: it resolves the
//! session cookie through `identity` (redirecting to the login page when there is none, and to
//! the password or TOTP page while the session is restricted), and carries the language,
//! theme and campus scope. `Actor` is the extractor for `/ui/api/*` actions: the same session,
//! plus identity's CSRF and anti-replay checks, answering JSON errors instead of redirects.
//! `Page` builds the context every template sees.

use crate::Dashboard;
use crate::backend::BackendError;
use crate::i18n::{self, Lang};
use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use tingzhen_identity::api::{Ctx, session_for};
use tingzhen_identity::roles::{ALL_CAMPUSES, allowed};
use tingzhen_identity::{Msg, Permission, Restriction, Session};

pub const LANG_COOKIE: &str = "tz_lang";
pub const THEME_COOKIE: &str = "tz_theme";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    Light,
    Dark,
    Screen,
}

impl Theme {
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::Light => "light",
            Theme::Dark => "dark",
            Theme::Screen => "screen",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "light" => Some(Theme::Light),
            "dark" => Some(Theme::Dark),
            "screen" => Some(Theme::Screen),
            _ => None,
        }
    }
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// Language and theme: the console's own cookies first, then `Accept-Language`.
#[derive(Debug, Clone, Copy)]
pub struct Prefs {
    pub lang: Lang,
    pub theme: Theme,
}

impl Prefs {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let lang = match cookie(headers, LANG_COOKIE).as_deref() {
            Some("en") => Lang::En,
            Some("zh-CN") => Lang::ZhCn,
            _ => Lang::from_accept_language(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok())),
        };
        let theme = cookie(headers, THEME_COOKIE).as_deref().and_then(Theme::parse).unwrap_or(Theme::Light);
        Self { lang, theme }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Prefs {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_headers(&parts.headers))
    }
}

/// The campuses a session may see (`ViewMonitoring`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Campuses(BTreeSet<String>),
}

impl Scope {
    pub fn of(session: &Session, perm: Permission) -> Self {
        let mut set = BTreeSet::new();
        for b in session.bindings.iter().filter(|b| b.role.grants(perm)) {
            if b.campus == ALL_CAMPUSES {
                return Scope::All;
            }
            set.insert(b.campus.clone());
        }
        Scope::Campuses(set)
    }

    pub fn includes(&self, campus: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Campuses(set) => set.contains(campus),
        }
    }
}

/// A logged-in person looking at a page.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub session: Session,
    pub prefs: Prefs,
    pub ip: String,
}

impl Viewer {
    /// A pure check for showing or hiding things; use `Dashboard::require` to refuse (audited).
    pub fn can(&self, perm: Permission, campus: Option<&str>) -> bool {
        self.session.restriction.is_none() && allowed(&self.session.bindings, perm, campus)
    }

    /// The campuses whose monitoring data this viewer may see.
    pub fn scope(&self) -> Scope {
        Scope::of(&self.session, Permission::ViewMonitoring)
    }

    pub fn lang(&self) -> Lang {
        self.prefs.lang
    }
}

fn ctx_of(parts: &Parts) -> Ctx {
    Ctx::new(&parts.headers, parts.extensions.get::<ConnectInfo<SocketAddr>>())
}

/// Sent by `app.js` on live refreshes: such requests do not count as the user's activity.
pub const REFRESH_HEADER: &str = "x-tz-refresh";

async fn resolve(state: &Dashboard, parts: &Parts, method: &Method) -> Result<(Session, Prefs, String), Response> {
    let prefs = Prefs::from_headers(&parts.headers);
    let mut ctx = ctx_of(parts);
    ctx.lang = prefs.lang;
    if *method == Method::GET && parts.headers.contains_key(REFRESH_HEADER) {
        let Some(id) = cookie(&parts.headers, tingzhen_identity::api::SESSION_COOKIE) else {
            return Err(api_error(StatusCode::UNAUTHORIZED, "not_logged_in", Msg::NotLoggedIn.text(prefs.lang)));
        };
        let (identity, ip) = (state.identity.clone(), ctx.ip.clone());
        let checked = tokio::task::spawn_blocking(move || identity.check_session_background(&id, &ip)).await;
        return match checked {
            Ok(Ok(s)) => Ok((s, prefs, ctx.ip)),
            Ok(Err(e)) => {
                let e = tingzhen_identity::api::ApiError::from_identity(e, prefs.lang);
                Err((e.status, Json(e.body)).into_response())
            }
            Err(e) => Err(api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())),
        };
    }
    match session_for(&state.identity, method, &parts.headers, &ctx).await {
        Ok(s) => Ok((s, prefs, ctx.ip)),
        Err(e) => Err((e.status, Json(e.body)).into_response()),
    }
}

impl FromRequestParts<Dashboard> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Dashboard) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path().to_string();
        let (session, prefs, ip) = match resolve(state, parts, &Method::GET).await {
            Ok(v) => v,
            Err(_) => {
                let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/ui/");
                let qs = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
                return Err(Redirect::to(&format!("/ui/login?{qs}")).into_response());
            }
        };
        let must_visit = match session.restriction {
            Some(Restriction::PasswordChange) => Some("/ui/password"),
            Some(Restriction::TotpEnrolment) => Some("/ui/totp"),
            None => None,
        };
        if let Some(target) = must_visit
            && path != target
        {
            return Err(Redirect::to(target).into_response());
        }
        Ok(Viewer { session, prefs, ip })
    }
}

/// A logged-in person changing something: the session passed identity's CSRF and replay checks.
#[derive(Debug, Clone)]
pub struct Actor {
    pub session: Session,
    pub prefs: Prefs,
}

impl FromRequestParts<Dashboard> for Actor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Dashboard) -> Result<Self, Self::Rejection> {
        let method = parts.method.clone();
        let (session, prefs, _) = resolve(state, parts, &method).await?;
        Ok(Actor { session, prefs })
    }
}

/// A JSON error for `/ui/api/*`: `{"status":"error","error":code,"message":text}`.
pub fn api_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"status": "error", "error": code, "message": message.into()}))).into_response()
}

pub fn api_ok(data: Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

impl From<BackendError> for Response {
    fn from(e: BackendError) -> Self {
        api_error(e.status(), "backend", e.to_string())
    }
}

impl Dashboard {
    /// Refuses (and audits the refusal) unless `session` holds `perm` on `campus`.
    pub async fn require(
        &self,
        session: &Session,
        lang: Lang,
        perm: Permission,
        campus: Option<&str>,
    ) -> Result<(), Response> {
        let (id, s, c) = (self.identity.clone(), session.clone(), campus.map(str::to_string));
        let outcome = tokio::task::spawn_blocking(move || id.authorize(&s, perm, c.as_deref())).await;
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(tingzhen_identity::IdentityError::Denied(m))) => {
                Err(api_error(StatusCode::FORBIDDEN, &m.code(), m.text(lang)))
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "permission check failed");
                Err(api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "permission check failed"))
            }
            Err(e) => {
                tracing::error!(error = %e, "permission check task failed");
                Err(api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "permission check failed"))
            }
        }
    }

    /// Like `require`, for pages: a refusal is the forbidden page.
    pub async fn require_page(&self, v: &Viewer, perm: Permission, campus: Option<&str>) -> Result<(), Response> {
        match self.require(&v.session, v.lang(), perm, campus).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.message_page(
                v,
                StatusCode::FORBIDDEN,
                "forbidden_title",
                &i18n::text(v.lang(), "forbidden_text"),
            )),
        }
    }

    /// Records a configuration change or a view of sensitive data in the audit log.
    pub async fn audit(&self, session: &Session, event: &str, detail: String) {
        let (id, actor, event) = (self.identity.clone(), session.actor(), event.to_string());
        let res = tokio::task::spawn_blocking(move || {
            id.record(&actor, &event, tingzhen_identity::audit::Outcome::Success, detail)
        })
        .await;
        if !matches!(res, Ok(Ok(()))) {
            tracing::error!(?res, "could not append to the audit log");
        }
    }

    /// A full page: `template` inside the layout, with `data` merged into the common context.
    pub fn page(&self, v: &Viewer, template: &str, title_key: &str, data: Value) -> Response {
        let ctx = self.page_context(Some(v), v.prefs, title_key, data);
        self.render_html(StatusCode::OK, template, &ctx)
    }

    /// A page for someone not logged in (login).
    pub fn public_page(&self, prefs: Prefs, template: &str, title_key: &str, data: Value) -> Response {
        let ctx = self.page_context(None, prefs, title_key, data);
        self.render_html(StatusCode::OK, template, &ctx)
    }

    /// A fragment for live refresh: no layout, same context.
    pub fn fragment(&self, v: &Viewer, template: &str, data: Value) -> Response {
        let ctx = self.page_context(Some(v), v.prefs, "", data);
        self.render_html(StatusCode::OK, template, &ctx)
    }

    pub fn message_page(&self, v: &Viewer, status: StatusCode, title_key: &str, text: &str) -> Response {
        let ctx = self.page_context(Some(v), v.prefs, title_key, json!({"message": text}));
        self.render_html(status, "pages/message", &ctx)
    }

    /// An error page for a failed backend call while building a page.
    pub fn backend_page(&self, v: &Viewer, e: &BackendError) -> Response {
        tracing::warn!(error = %e, "backend call for a page failed");
        self.message_page(v, e.status(), "error_title", &e.to_string())
    }

    fn render_html(&self, status: StatusCode, template: &str, ctx: &Value) -> Response {
        match self.views.render(template, ctx) {
            Ok(html) => {
                let headers = [
                    (header::CACHE_CONTROL, "no-store"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    (header::X_FRAME_OPTIONS, "DENY"),
                    (
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
                    ),
                ];
                (status, headers, Html(html)).into_response()
            }
            Err(e) => {
                tracing::error!(error = %e, "template failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
            }
        }
    }

    fn page_context(&self, v: Option<&Viewer>, prefs: Prefs, title_key: &str, data: Value) -> Value {
        let t = i18n::table(prefs.lang);
        let mut ctx = Map::new();
        ctx.insert("t".into(), Value::Object(t.clone()));
        ctx.insert("lang".into(), json!(i18n::tag(prefs.lang)));
        ctx.insert("theme".into(), json!(prefs.theme.as_str()));
        ctx.insert("title".into(), json!(t.get(title_key).cloned().unwrap_or_default()));
        ctx.insert("refresh_seconds".into(), json!(self.config.refresh_seconds));
        if let Some(v) = v {
            let s = &v.session;
            ctx.insert(
                "user".into(),
                json!({
                    "name": s.username,
                    "csrf": s.csrf_token,
                    "restricted": s.restriction.is_some(),
                    "warnings": s.warnings.iter().map(|m: &Msg| m.text(prefs.lang)).collect::<Vec<_>>(),
                }),
            );
            ctx.insert(
                "nav".into(),
                json!({
                    "monitoring": v.can(Permission::ViewMonitoring, None) || matches!(v.scope(), crate::web::Scope::Campuses(ref c) if !c.is_empty()),
                    "config": v.session.bindings.iter().any(|b| b.role.grants(Permission::ManageConfig)) && s.restriction.is_none(),
                    "users": v.can(Permission::ManageUsers, None),
                    "audit": v.can(Permission::ViewAudit, None),
                }),
            );
        }
        if let Value::Object(extra) = data {
            ctx.extend(extra);
        }
        Value::Object(ctx)
    }
}
