//! Route handlers. Each one resolves the session (with CSRF and anti-replay checks for
//! writes), asks `Identity::authorize` for the permission, then calls the service off the
//! async threads. Views of the audit log are themselves audited.

use super::{AppState, Ctx, blocking, session_cookie, session_for};
use crate::audit::{AuditQuery, Outcome, events};
use crate::messages::Msg;
use crate::roles::{Permission, RoleBinding};
use crate::service::{BulkAction, LoginRequest, NewUser, ResetConfirm, ResetRequest, Session, UserFilter, UserUpdate};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

type Res = Result<Response, super::ApiError>;

fn ok(data: Value) -> Res {
    Ok((StatusCode::OK, Json(json!({"status": "success", "data": data}))).into_response())
}

fn warnings(s: &Session, ctx: &Ctx) -> Vec<Value> {
    s.warnings.iter().map(|m| json!({"code": m.code(), "message": m.text(ctx.lang)})).collect()
}

fn session_json(s: &Session, ctx: &Ctx) -> Value {
    json!({
        "username": s.username,
        "roles": s.bindings,
        "csrf_token": s.csrf_token,
        "restriction": s.restriction,
        "restriction_message": s.restriction.map(|r| r.message().text(ctx.lang)),
        "warnings": warnings(s, ctx),
    })
}

/// Session + permission, for the users and audit routes.
async fn authorized(
    st: &AppState,
    method: &Method,
    headers: &HeaderMap,
    ctx: &Ctx,
    p: Permission,
) -> Result<Session, super::ApiError> {
    let s = session_for(st, method, headers, ctx).await?;
    let (st2, s2) = (st.clone(), s.clone());
    blocking(ctx.lang, move || st2.authorize(&s2, p, None)).await?;
    Ok(s)
}

pub async fn captcha(State(st): State<AppState>, ctx: Ctx) -> Res {
    let (id, png) = blocking(ctx.lang, move || st.new_captcha()).await?;
    let image = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png));
    ok(json!({"id": id, "image": image}))
}

pub async fn password_rules(State(st): State<AppState>, ctx: Ctx) -> Res {
    ok(json!({"rules": Msg::PasswordRules { min: st.policy().min_length() }.text(ctx.lang)}))
}

pub async fn login(State(st): State<AppState>, ctx: Ctx, Json(req): Json<LoginRequest>) -> Res {
    let (st2, ip, name) = (st.clone(), ctx.ip.clone(), req.username.clone());
    match blocking(ctx.lang, move || st2.login(&req, &ip)).await {
        Ok(done) => {
            let cookie = session_cookie(Some(&done.session_id), st.config().cookie_secure);
            let body = json!({"status": "success", "data": session_json(&done.session, &ctx)});
            Ok((StatusCode::OK, [(header::SET_COOKIE, cookie)], Json(body)).into_response())
        }
        Err(mut e) => {
            // Tell the client whether to show the captcha on the next attempt.
            let st3 = st.clone();
            let need = blocking(ctx.lang, move || st3.captcha_required(&name)).await.unwrap_or(true);
            e.body["captcha_required"] = json!(need);
            Err(e)
        }
    }
}

/// Password reset, step 1 (no session): a code to the phone on record.
pub async fn reset_request(State(st): State<AppState>, ctx: Ctx, Json(req): Json<ResetRequest>) -> Res {
    let (ip, lang) = (ctx.ip.clone(), ctx.lang);
    let msg = blocking(ctx.lang, move || st.request_reset(&req, &ip, lang)).await?;
    ok(json!({"message": msg.text(ctx.lang)}))
}

/// Password reset, step 2 (no session): the code and the new password.
pub async fn reset_confirm(State(st): State<AppState>, ctx: Ctx, Json(req): Json<ResetConfirm>) -> Res {
    let ip = ctx.ip.clone();
    blocking(ctx.lang, move || st.confirm_reset(&req, &ip)).await?;
    ok(json!({"message": Msg::PasswordResetDone.text(ctx.lang)}))
}

pub async fn logout(State(st): State<AppState>, method: Method, headers: HeaderMap, ctx: Ctx) -> Res {
    let s = session_for(&st, &method, &headers, &ctx).await?;
    let st2 = st.clone();
    blocking(ctx.lang, move || st2.logout(&s)).await?;
    let cookie = session_cookie(None, st.config().cookie_secure);
    Ok((StatusCode::OK, [(header::SET_COOKIE, cookie)], Json(json!({"status": "success"}))).into_response())
}

pub async fn session_info(State(st): State<AppState>, method: Method, headers: HeaderMap, ctx: Ctx) -> Res {
    let s = session_for(&st, &method, &headers, &ctx).await?;
    ok(session_json(&s, &ctx))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    old_password: String,
    new_password: String,
}

pub async fn change_password(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ctx: Ctx,
    Json(b): Json<PasswordChange>,
) -> Res {
    let s = session_for(&st, &method, &headers, &ctx).await?;
    blocking(ctx.lang, move || st.change_password(&s, &b.old_password, &b.new_password)).await?;
    ok(json!({}))
}

pub async fn totp_enroll(State(st): State<AppState>, method: Method, headers: HeaderMap, ctx: Ctx) -> Res {
    let s = session_for(&st, &method, &headers, &ctx).await?;
    if s.restriction == Some(crate::Restriction::PasswordChange) {
        return Err(super::ApiError::msg(StatusCode::FORBIDDEN, &Msg::PasswordChangeRequired, ctx.lang));
    }
    let e = blocking(ctx.lang, move || st.totp_begin(&s)).await?;
    ok(json!(e))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    code: String,
}

pub async fn totp_confirm(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ctx: Ctx,
    Json(b): Json<TotpCode>,
) -> Res {
    let s = session_for(&st, &method, &headers, &ctx).await?;
    blocking(ctx.lang, move || st.totp_confirm(&s, &b.code)).await?;
    ok(json!({}))
}

pub async fn users_search(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ctx: Ctx,
    Query(f): Query<UserFilter>,
) -> Res {
    authorized(&st, &method, &headers, &ctx, Permission::ManageUsers).await?;
    let users = blocking(ctx.lang, move || st.search(&f)).await?;
    ok(json!(users))
}

pub async fn users_create(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ctx: Ctx,
    Json(u): Json<NewUser>,
) -> Res {
    let s = authorized(&st, &method, &headers, &ctx, Permission::ManageUsers).await?;
    blocking(ctx.lang, move || st.create_user(&s.actor(), &u)).await?;
    Ok((StatusCode::CREATED, Json(json!({"status": "success"}))).into_response())
}

pub async fn users_update(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ctx: Ctx,
    Path(name): Path<String>,
    Json(u): Json<UserUpdate>,
) -> Res {
    let s = authorized(&st, &method, &headers, &ctx, Permission::ManageUsers).await?;
    blocking(ctx.lang, move || st.update_user(&s.actor(), &name, &u)).await?;
    ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    roles: Vec<RoleBinding>,
}

pub async fn users_roles(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ctx: Ctx,
    Path(name): Path<String>,
    Json(r): Json<Roles>,
) -> Res {
    let s = authorized(&st, &method, &headers, &ctx, Permission::ManageUsers).await?;
    blocking(ctx.lang, move || {
        st.set_roles(&s.actor(), &name, &r.roles)?;
        st.end_sessions_of(&name, "roles changed")
    })
    .await?;
    ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    password: String,
}

pub async fn users_reset_password(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ctx: Ctx,
    Path(name): Path<String>,
    Json(r): Json<Reset>,
) -> Res {
    let s = authorized(&st, &method, &headers, &ctx, Permission::ManageUsers).await?;
    blocking(ctx.lang, move || st.reset_password(&s.actor(), &name, &r.password)).await?;
    ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bulk {
    action: BulkAction,
    usernames: Vec<String>,
}

pub async fn users_bulk(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ctx: Ctx,
    Json(b): Json<Bulk>,
) -> Res {
    let s = authorized(&st, &method, &headers, &ctx, Permission::ManageUsers).await?;
    if b.usernames.len() > 10_000 {
        return Err(super::ApiError::plain(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "usernames: at most 10000 per request",
        ));
    }
    let r = blocking(ctx.lang, move || st.bulk(&s.actor(), b.action, &b.usernames)).await?;
    ok(json!(r))
}

pub async fn report_disabled(State(st): State<AppState>, method: Method, headers: HeaderMap, ctx: Ctx) -> Res {
    let s = authorized(&st, &method, &headers, &ctx, Permission::ManageUsers).await?;
    let r = blocking(ctx.lang, move || st.report_disabled(&s.actor())).await?;
    ok(json!(r))
}

pub async fn report_permissions(State(st): State<AppState>, method: Method, headers: HeaderMap, ctx: Ctx) -> Res {
    let s = authorized(&st, &method, &headers, &ctx, Permission::ManageUsers).await?;
    let r = blocking(ctx.lang, move || st.report_permissions(&s.actor())).await?;
    ok(json!(r))
}

pub async fn audit_records(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ctx: Ctx,
    Query(q): Query<AuditQuery>,
) -> Res {
    let s = authorized(&st, &method, &headers, &ctx, Permission::ViewAudit).await?;
    let r = blocking(ctx.lang, move || {
        st.record(&s.actor(), events::AUDIT_VIEW, Outcome::Success, format!("query {q:?}"))?;
        Ok(st.audit_log().query(&q)?)
    })
    .await?;
    ok(json!(r))
}

pub async fn audit_verify(State(st): State<AppState>, method: Method, headers: HeaderMap, ctx: Ctx) -> Res {
    let s = authorized(&st, &method, &headers, &ctx, Permission::ViewAudit).await?;
    let r = blocking(ctx.lang, move || {
        let report = st.audit_log().verify()?;
        st.record(&s.actor(), events::AUDIT_VIEW, Outcome::Success, format!("chain verified: ok={}", report.ok))?;
        Ok(report)
    })
    .await?;
    ok(json!(r))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationQuery {
    username: Option<String>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
}

pub async fn audit_login_durations(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ctx: Ctx,
    Query(q): Query<DurationQuery>,
) -> Res {
    let s = authorized(&st, &method, &headers, &ctx, Permission::ViewAudit).await?;
    let r = blocking(ctx.lang, move || {
        st.record(&s.actor(), events::AUDIT_VIEW, Outcome::Success, "login-duration query")?;
        st.login_durations(q.username.as_deref(), q.from_ms, q.to_ms)
    })
    .await?;
    ok(json!(r))
}
