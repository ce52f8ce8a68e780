//! Account administration (MON-1; SEC account rules 1.17–1.19): the user list with identity's
//! search filters, account details (display name, mobile number — only ever shown masked —,
//! validity period, access-time windows, role bindings per campus, password reset), bulk
//! disable / enable / cancel / unfreeze, and the disabled-user and permission reports with their
//! CSV exports. Everything is read from and written through the `Identity` service, which audits
//! each change; only holders of `ManageUsers` (a `*` admin binding) get here.
//!
//! The console's own actions (`/ui/api/users*`) exist because the forms speak in form terms
//! (dates, `role@campus`, one access window per line) and because a created or reset account
//! gets a generated initial password shown once in the answer; bulk actions post straight to
//! identity's `/api/v1/users/bulk`.

use super::data::now_ms;
use crate::render::shanghai;
use crate::web::{Actor, Viewer, api_error, api_ok};
use crate::{Dashboard, i18n};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tingzhen_identity::api::ApiError;
use tingzhen_identity::audit::events;
use tingzhen_identity::roles::ALL_CAMPUSES;
use tingzhen_identity::{
    AccessWindow, IdentityError, Lang, Permission, Role, RoleBinding, UserFilter, UserSummary, UserUpdate,
};

/// A validity period ending within this many days is flagged (SEC 1.17: warn a month before).
const EXPIRY_WARNING_MS: i64 = 30 * 86_400_000;

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/ui/users", get(list))
        .route("/ui/users/reports", get(reports))
        .route("/ui/users/reports/disabled.csv", get(disabled_csv))
        .route("/ui/users/reports/permissions.csv", get(permissions_csv))
        .route("/ui/users/edit/{name}", get(edit))
        .route("/ui/api/users", post(create))
        .route("/ui/api/users/{name}", patch(update))
        .route("/ui/api/users/{name}/roles", put(set_roles))
        .route("/ui/api/users/{name}/password", post(reset_password))
}

/// Runs identity work (SQLite, Argon2) off the async threads; errors come back as identity's
/// own JSON answers in the viewer's language.
pub(super) async fn blocking<T: Send + 'static>(
    d: &Dashboard,
    lang: Lang,
    f: impl FnOnce(&tingzhen_identity::Identity) -> Result<T, IdentityError> + Send + 'static,
) -> Result<T, ApiError> {
    let id = d.identity.clone();
    match tokio::task::spawn_blocking(move || f(&id)).await {
        Ok(r) => r.map_err(|e| ApiError::from_identity(e, lang)),
        Err(e) => Err(ApiError::internal("identity task failed", e)),
    }
}

/// An identity failure while building a page: the message page with identity's text.
pub(super) fn error_page(d: &Dashboard, v: &Viewer, e: ApiError) -> Response {
    let text = e.body["message"].as_str().unwrap_or("identity error").to_string();
    d.message_page(v, e.status, "error_title", &text)
}

/// A link to a list page with its filters: empty ones are left out, so links stay short.
pub(super) fn list_link(path: &str, params: &[(&str, &str)]) -> String {
    let set: Vec<&(&str, &str)> = params.iter().filter(|(_, v)| !v.is_empty()).collect();
    format!("{path}?{}", serde_urlencoded::to_string(set).unwrap_or_default())
}

/// A list's `page` parameter: 1-based, empty meaning the first.
pub(super) fn page_number(raw: &str) -> Result<i64, String> {
    let p = raw.trim();
    if p.is_empty() {
        return Ok(1);
    }
    p.parse::<i64>()
        .ok()
        .filter(|n| (1..=1_000_000).contains(n))
        .ok_or_else(|| format!("page: {p:?} is not a page number"))
}

/// A date (`2026-11-26`) or a `datetime-local` value (`2026-11-26T08:30`) in Asia/Shanghai as
/// Unix ms; an empty value is no bound. A bare date used as an upper bound means the end of
/// that day, so "to 26 Nov" includes the 26th.
pub(super) fn local_ms(field: &str, s: &str, upper: bool) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let naive = if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let day = if upper { d.succ_opt().unwrap_or(d) } else { d };
        day.and_hms_opt(0, 0, 0).expect("midnight exists")
    } else {
        ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .ok_or_else(|| format!("{field}: {s:?} is not a date (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM)"))?
    };
    shanghai()
        .from_local_datetime(&naive)
        .single()
        .map(|t| Some(t.timestamp_millis()))
        .ok_or_else(|| format!("{field}: {s:?} is not a valid local time"))
}

/// `YYYY-MM-DD` of a Unix ms time in Asia/Shanghai (for date inputs).
fn local_date(ms: i64) -> String {
    shanghai().timestamp_millis_opt(ms).single().map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

fn role_key(r: Role) -> &'static str {
    match r {
        Role::Admin => "users_role_admin",
        Role::Ops => "users_role_ops",
        Role::Auditor => "users_role_auditor",
        Role::Viewer => "users_role_viewer",
    }
}

fn campus_text(d: &Dashboard, lang: Lang, campus: &str) -> String {
    if campus == ALL_CAMPUSES { i18n::text(lang, "all_campuses") } else { d.config.campus_name(campus) }
}

/// Role bindings as the templates show them.
pub(super) fn bindings_view(d: &Dashboard, lang: Lang, roles: &[RoleBinding]) -> Vec<Value> {
    roles
        .iter()
        .map(|b| {
            json!({"role": b.role.as_str(), "role_text": i18n::text(lang, role_key(b.role)),
                   "campus": b.campus, "campus_text": campus_text(d, lang, &b.campus)})
        })
        .collect()
}

/// The `role@campus` choices of the role selects: every role on every campus, on each campus
/// the console knows and on those the given bindings name.
fn role_options(d: &Dashboard, lang: Lang, current: &[RoleBinding]) -> Vec<Value> {
    let mut campuses = vec![ALL_CAMPUSES.to_string()];
    campuses.extend(d.config.campuses.iter().map(|c| c.id.clone()));
    campuses.extend(current.iter().map(|b| b.campus.clone()));
    let mut seen = std::collections::BTreeSet::new();
    campuses.retain(|c| seen.insert(c.clone()));
    let mut out = Vec::new();
    for c in &campuses {
        for r in Role::ALL {
            let selected = current.iter().any(|b| b.role == r && &b.campus == c);
            out.push(json!({
                "value": format!("{}@{c}", r.as_str()),
                "text": format!("{} · {}", i18n::text(lang, role_key(r)), campus_text(d, lang, c)),
                "selected": selected,
            }));
        }
    }
    out
}

/// `viewer@east`, `admin@*` or `auditor` (every campus) into a binding.
fn parse_binding(s: &str) -> Result<RoleBinding, String> {
    let s = s.trim();
    let (role, campus) = s.split_once('@').unwrap_or((s, ALL_CAMPUSES));
    let role = Role::parse(role.trim())
        .ok_or_else(|| format!("roles: {s:?} names no role (admin, ops, auditor, viewer; written role@campus)"))?;
    let campus = campus.trim();
    if campus.is_empty() {
        return Err(format!("roles: {s:?} names no campus (role@campus, or role@* for every campus)"));
    }
    Ok(RoleBinding { role, campus: campus.to_string() })
}

fn parse_bindings(lists: &[&[String]]) -> Result<Vec<RoleBinding>, String> {
    let mut out: Vec<RoleBinding> = Vec::new();
    for s in lists.iter().flat_map(|l| l.iter()).filter(|s| !s.trim().is_empty()) {
        let b = parse_binding(s)?;
        if !out.contains(&b) {
            out.push(b);
        }
    }
    Ok(out)
}

/// One access window per line: `1-5 08:00-18:00` (weekdays 1 = Monday … 7 = Sunday, ranges and
/// commas allowed; an end before the start runs past midnight).
fn parse_windows(text: &str) -> Result<Vec<AccessWindow>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()) {
        let bad = |why: &str| format!("access_windows line {n} ({line:?}): {why}; write e.g. 1-5 08:00-18:00");
        let (days, times) = line.split_once(char::is_whitespace).ok_or_else(|| bad("days and times are needed"))?;
        let mut list = Vec::new();
        for part in days.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b): (u8, u8) = match (a.trim().parse(), b.trim().parse()) {
                (Ok(a), Ok(b)) if (1..=7).contains(&a) && (1..=7).contains(&b) && a <= b => (a, b),
                _ => return Err(bad("weekdays are 1 (Monday) to 7 (Sunday)")),
            };
            list.extend(a..=b);
        }
        list.sort_unstable();
        list.dedup();
        let (start, end) = times.trim().split_once('-').ok_or_else(|| bad("times are HH:MM-HH:MM"))?;
        let w = AccessWindow { days: list, start: start.trim().to_string(), end: end.trim().to_string() };
        w.validate().map_err(|e| bad(&e.to_string()))?;
        out.push(w);
    }
    Ok(out)
}

/// The editable text of access windows (the inverse of `parse_windows`).
fn windows_text(ws: &[AccessWindow]) -> String {
    ws.iter()
        .map(|w| {
            // Runs of consecutive days as ranges: 1,2,3,5 -> 1-3,5.
            let mut runs: Vec<(u8, u8)> = Vec::new();
            for &d in &w.days {
                match runs.last_mut() {
                    Some((_, end)) if *end + 1 == d => *end = d,
                    _ => runs.push((d, d)),
                }
            }
            let days: Vec<String> =
                runs.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
            format!("{} {}-{}", days.join(","), w.start, w.end)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn status_of(u: &UserSummary) -> &'static str {
    match u.status.as_str() {
        "disabled" => "disabled",
        "cancelled" => "cancelled",
        _ if u.locked_until_ms.is_some() => "locked",
        _ => "active",
    }
}

/// A user as the list, the reports and the edit page show it.
fn user_view(d: &Dashboard, lang: Lang, u: &UserSummary, now: i64) -> Value {
    let status = status_of(u);
    let validity = match u.valid_until_ms {
        Some(v) if v <= now => "expired",
        Some(v) if v - now <= EXPIRY_WARNING_MS => "soon",
        Some(_) => "ok",
        None => "",
    };
    json!({
        "username": u.username,
        "display_name": u.display_name,
        "status": status,
        "status_text": i18n::text(lang, &format!("users_status_{status}")),
        "locked_until_ms": u.locked_until_ms,
        "roles": bindings_view(d, lang, &u.roles),
        "valid_until_ms": u.valid_until_ms,
        "validity": validity,
        "last_login_ms": u.last_login_ms,
        "login_count": u.login_count,
        "created_ms": u.created_ms,
        "updated_ms": u.updated_ms,
        "password_changed_ms": u.password_changed_ms,
        "totp_enrolled": u.totp_enrolled,
        "windows": windows_text(&u.access_windows),
        // Already masked by identity (`138****5678`): the full number never reaches a page.
        "phone": u.phone,
    })
}

/// The list's filters as the form sends them (every field a string: empty means "any").
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(default)]
struct ListQuery {
    q: String,
    status: String,
    created_from: String,
    created_to: String,
    last_login_from: String,
    last_login_to: String,
    changed_from: String,
    changed_to: String,
    min_logins: String,
    max_logins: String,
    page: String,
}

/// Accounts per page of the list. The search is still one query over every match (cheap at a
/// hospital group's thousands of accounts), so the count stays exact; paging limits the render.
const USERS_PAGE: usize = 50;

impl ListQuery {
    /// This list's URL on another page, its filters kept.
    fn url(&self, page: usize) -> String {
        let q = ListQuery { page: page.to_string(), ..self.clone() };
        let pairs = [
            ("q", q.q.as_str()),
            ("status", q.status.as_str()),
            ("created_from", q.created_from.as_str()),
            ("created_to", q.created_to.as_str()),
            ("last_login_from", q.last_login_from.as_str()),
            ("last_login_to", q.last_login_to.as_str()),
            ("changed_from", q.changed_from.as_str()),
            ("changed_to", q.changed_to.as_str()),
            ("min_logins", q.min_logins.as_str()),
            ("max_logins", q.max_logins.as_str()),
            ("page", q.page.as_str()),
        ];
        list_link("/ui/users", &pairs)
    }

    fn filter(&self) -> Result<UserFilter, String> {
        let count = |field: &str, s: &str| -> Result<Option<i64>, String> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Some)
                .ok_or_else(|| format!("{field}: {s:?} is not a whole number ≥ 0"))
        };
        let status = self.status.trim();
        if !matches!(status, "" | "active" | "disabled" | "cancelled" | "locked") {
            return Err(format!("status: {status:?} is not active, disabled, cancelled or locked"));
        }
        Ok(UserFilter {
            q: Some(self.q.trim().to_string()).filter(|q| !q.is_empty()),
            status: Some(status.to_string()).filter(|s| !s.is_empty()),
            created_from_ms: local_ms("created_from", &self.created_from, false)?,
            created_to_ms: local_ms("created_to", &self.created_to, true)?,
            last_login_from_ms: local_ms("last_login_from", &self.last_login_from, false)?,
            last_login_to_ms: local_ms("last_login_to", &self.last_login_to, true)?,
            changed_from_ms: local_ms("changed_from", &self.changed_from, false)?,
            changed_to_ms: local_ms("changed_to", &self.changed_to, true)?,
            min_logins: count("min_logins", &self.min_logins)?,
            max_logins: count("max_logins", &self.max_logins)?,
        })
    }
}

async fn list(State(d): State<Dashboard>, v: Viewer, Query(q): Query<ListQuery>) -> Response {
    if let Err(r) = d.require_page(&v, Permission::ManageUsers, None).await {
        return r;
    }
    let lang = v.lang();
    let wanted = q.filter().and_then(|f| Ok((f, page_number(&q.page)? as usize)));
    let (users, page, error) = match wanted {
        Ok((f, page)) => match blocking(&d, lang, move |id| id.search(&f)).await {
            Ok(u) => (u, page, None),
            Err(e) => return error_page(&d, &v, e),
        },
        Err(e) => (Vec::new(), 1, Some(e)),
    };
    let pages = users.len().div_ceil(USERS_PAGE).max(1);
    let page = page.min(pages);
    let now = now_ms();
    let rows: Vec<Value> =
        users.iter().skip((page - 1) * USERS_PAGE).take(USERS_PAGE).map(|u| user_view(&d, lang, u, now)).collect();
    let statuses: Vec<Value> = ["active", "disabled", "cancelled", "locked"]
        .iter()
        .map(
            |s| json!({"value": s, "text": i18n::text(lang, &format!("users_status_{s}")), "selected": q.status == *s}),
        )
        .collect();
    let data = json!({
        "f": q,
        "error": error,
        "users": rows,
        "count": users.len(),
        "page": page,
        "pages": pages,
        "paged": pages > 1,
        "prev_url": (page > 1).then(|| q.url(page - 1)),
        "next_url": (page < pages).then(|| q.url(page + 1)),
        "statuses": statuses,
        "role_options": role_options(&d, lang, &[]),
    });
    d.page(&v, "pages/users", "users_title", data)
}

async fn edit(State(d): State<Dashboard>, v: Viewer, Path(name): Path<String>) -> Response {
    if let Err(r) = d.require_page(&v, Permission::ManageUsers, None).await {
        return r;
    }
    let lang = v.lang();
    let wanted = name.clone();
    let found = blocking(&d, lang, move |id| {
        let f = UserFilter { q: Some(wanted.clone()), ..Default::default() };
        Ok(id.search(&f)?.into_iter().find(|u| u.username.eq_ignore_ascii_case(&wanted)))
    })
    .await;
    let user = match found {
        Ok(Some(u)) => u,
        Ok(None) => {
            let text = format!("{}: {name}", i18n::text(lang, "users_not_found"));
            return d.message_page(&v, StatusCode::NOT_FOUND, "not_found_title", &text);
        }
        Err(e) => return error_page(&d, &v, e),
    };
    let mut view = user_view(&d, lang, &user, now_ms());
    view["valid_until_date"] = json!(user.valid_until_ms.map(local_date).unwrap_or_default());
    let base = format!("/ui/api/users/{}", user.username);
    let data = json!({
        "u": view,
        "api": base,
        "role_options": role_options(&d, lang, &user.roles),
    });
    d.page(&v, "pages/users_edit", "users_edit_title", data)
}

async fn reports(State(d): State<Dashboard>, v: Viewer) -> Response {
    if let Err(r) = d.require_page(&v, Permission::ManageUsers, None).await {
        return r;
    }
    let (lang, actor) = (v.lang(), v.session.actor());
    // Each report view is audited by identity (`report_view`).
    let got = blocking(&d, lang, move |id| Ok((id.report_disabled(&actor)?, id.report_permissions(&actor)?))).await;
    let (disabled, perms) = match got {
        Ok(r) => r,
        Err(e) => return error_page(&d, &v, e),
    };
    let now = now_ms();
    let disabled: Vec<Value> = disabled.iter().map(|u| user_view(&d, lang, u, now)).collect();
    let perms: Vec<Value> = perms
        .iter()
        .map(|p| {
            json!({
                "username": p.username,
                "status_text": i18n::text(lang, &format!("users_status_{}", p.status)),
                "roles": bindings_view(&d, lang, &p.roles),
                "permissions": p.permissions.iter().map(|(perm, campuses)| json!({
                    "name": permission_text(lang, perm),
                    "campuses": campuses.iter().map(|c| campus_text(&d, lang, c)).collect::<Vec<_>>().join("、"),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    d.page(&v, "pages/users_reports", "users_reports_title", json!({"disabled": disabled, "perms": perms}))
}

/// A permission's display name from its identity name (`ViewMonitoring`).
fn permission_text(lang: Lang, name: &str) -> String {
    let key = match name {
        "ViewMonitoring" => "users_perm_view_monitoring",
        "OperateAlerts" => "users_perm_operate_alerts",
        "ManageConfig" => "users_perm_manage_config",
        "ManageUsers" => "users_perm_manage_users",
        "ViewAudit" => "users_perm_view_audit",
        "ViewSensitive" => "users_perm_view_sensitive",
        other => return other.to_string(),
    };
    i18n::text(lang, key)
}

/// One CSV field: quoted when needed, and a leading `= + - @` (a spreadsheet formula) made
/// inert, since display names are typed by people.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

fn csv(rows: impl IntoIterator<Item = Vec<String>>) -> String {
    // The BOM makes spreadsheet programs read the file as UTF-8 (Chinese names).
    let mut out = String::from("\u{feff}");
    for r in rows {
        out.push_str(&r.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_answer(file: &str, body: String) -> Response {
    let disposition = format!("attachment; filename=\"{file}\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        body,
    )
        .into_response()
}

fn roles_csv(roles: &[RoleBinding]) -> String {
    roles.iter().map(|b| format!("{}@{}", b.role.as_str(), b.campus)).collect::<Vec<_>>().join(" ")
}

async fn disabled_csv(State(d): State<Dashboard>, v: Viewer) -> Response {
    if let Err(r) = d.require_page(&v, Permission::ManageUsers, None).await {
        return r;
    }
    let (lang, actor) = (v.lang(), v.session.actor());
    let users = match blocking(&d, lang, move |id| id.report_disabled(&actor)).await {
        Ok(u) => u,
        Err(e) => return error_page(&d, &v, e),
    };
    d.audit(
        &v.session,
        events::SENSITIVE_VIEW,
        format!("exported the disabled-user report as CSV ({} users)", users.len()),
    )
    .await;
    let now = now_ms();
    let t = |k: &str| i18n::text(lang, k);
    let head =
        ["users_username", "users_display_name", "status", "users_roles", "users_valid_until", "users_last_login"];
    let rows = std::iter::once(head.iter().map(|k| t(k)).collect()).chain(users.iter().map(|u| {
        let status = match u.valid_until_ms {
            Some(v) if v <= now && u.status == "active" => t("users_validity_expired"),
            _ => t(&format!("users_status_{}", status_of(u))),
        };
        vec![
            u.username.clone(),
            u.display_name.clone(),
            status,
            roles_csv(&u.roles),
            u.valid_until_ms.map(crate::render::format_ms).unwrap_or_default(),
            u.last_login_ms.map(crate::render::format_ms).unwrap_or_default(),
        ]
    }));
    csv_answer("disabled-users.csv", csv(rows))
}

async fn permissions_csv(State(d): State<Dashboard>, v: Viewer) -> Response {
    if let Err(r) = d.require_page(&v, Permission::ManageUsers, None).await {
        return r;
    }
    let (lang, actor) = (v.lang(), v.session.actor());
    let report = match blocking(&d, lang, move |id| id.report_permissions(&actor)).await {
        Ok(r) => r,
        Err(e) => return error_page(&d, &v, e),
    };
    d.audit(
        &v.session,
        events::SENSITIVE_VIEW,
        format!("exported the permission report as CSV ({} users)", report.len()),
    )
    .await;
    let t = |k: &str| i18n::text(lang, k);
    let head = ["users_username", "status", "users_roles", "users_permission", "campus"];
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|k| t(k)).collect()];
    for p in &report {
        let status = t(&format!("users_status_{}", p.status));
        if p.permissions.is_empty() {
            rows.push(vec![p.username.clone(), status.clone(), roles_csv(&p.roles), String::new(), String::new()]);
        }
        for (perm, campuses) in &p.permissions {
            rows.push(vec![
                p.username.clone(),
                status.clone(),
                roles_csv(&p.roles),
                permission_text(lang, perm),
                campuses.join(" "),
            ]);
        }
    }
    csv_answer("user-permissions.csv", csv(rows))
}

/// Reads an action's JSON body into `T`; the error names the bad field.
fn body<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

fn bad(msg: String) -> Response {
    api_error(StatusCode::BAD_REQUEST, "bad_data", msg)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateForm {
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    roles_extra: Vec<String>,
    #[serde(default)]
    valid_until: String,
    #[serde(default)]
    access_windows: String,
    /// A mobile number (for password reset by SMS code); empty for none. Identity checks it.
    #[serde(default)]
    phone: String,
}

/// Creates an account with a generated initial password, answered this once; the user must
/// change it at first login (identity sets `must_change`).
async fn create(State(d): State<Dashboard>, actor: Actor, axum::Json(raw): axum::Json<Value>) -> Response {
    let lang = actor.prefs.lang;
    if let Err(r) = d.require(&actor.session, lang, Permission::ManageUsers, None).await {
        return r;
    }
    let f: CreateForm = match body(raw) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let parsed = (|| -> Result<_, String> {
        Ok((
            parse_bindings(&[&f.roles, &f.roles_extra])?,
            local_ms("valid_until", &f.valid_until, true)?.map(|t| t - 1),
            parse_windows(&f.access_windows)?,
        ))
    })();
    let (roles, valid_until_ms, access_windows) = match parsed {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let who = actor.session.actor();
    let username = f.username.trim().to_string();
    let res = blocking(&d, lang, move |id| {
        let password = id.policy().generate(&username);
        let user = tingzhen_identity::NewUser {
            username: username.clone(),
            display_name: f.display_name,
            password: password.clone(),
            roles,
            valid_until_ms,
            access_windows,
            phone: Some(f.phone.trim().to_string()).filter(|p| !p.is_empty()),
        };
        id.create_user(&who, &user)?;
        Ok(password)
    })
    .await;
    match res {
        Ok(password) => api_ok(json!(password)),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateForm {
    display_name: Option<String>,
    /// A date; empty removes the limit.
    valid_until: Option<String>,
    /// One window per line; empty removes the restriction.
    access_windows: Option<String>,
    /// A mobile number; empty removes it. Identity checks and normalizes it.
    phone: Option<String>,
}

async fn update(
    State(d): State<Dashboard>,
    actor: Actor,
    Path(name): Path<String>,
    axum::Json(raw): axum::Json<Value>,
) -> Response {
    let lang = actor.prefs.lang;
    if let Err(r) = d.require(&actor.session, lang, Permission::ManageUsers, None).await {
        return r;
    }
    let f: UpdateForm = match body(raw) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let parsed = (|| -> Result<UserUpdate, String> {
        let valid_until_ms = match &f.valid_until {
            Some(s) => Some(local_ms("valid_until", s, true)?.map(|t| t - 1)),
            None => None,
        };
        let access_windows = match &f.access_windows {
            Some(s) => Some(parse_windows(s)?),
            None => None,
        };
        let phone = f.phone.as_deref().map(|p| Some(p.trim().to_string()).filter(|p| !p.is_empty()));
        Ok(UserUpdate { display_name: f.display_name.clone(), valid_until_ms, access_windows, phone })
    })();
    let u = match parsed {
        Ok(u) => u,
        Err(e) => return bad(e),
    };
    let who = actor.session.actor();
    match blocking(&d, lang, move |id| id.update_user(&who, &name, &u)).await {
        Ok(()) => api_ok(json!({})),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesForm {
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    roles_extra: Vec<String>,
}

/// Replaces a user's role bindings (identity audits old → new and who did it) and ends the
/// user's sessions so the new rights apply at once, as identity's own API does.
async fn set_roles(
    State(d): State<Dashboard>,
    actor: Actor,
    Path(name): Path<String>,
    axum::Json(raw): axum::Json<Value>,
) -> Response {
    let lang = actor.prefs.lang;
    if let Err(r) = d.require(&actor.session, lang, Permission::ManageUsers, None).await {
        return r;
    }
    let f: RolesForm = match body(raw) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let roles = match parse_bindings(&[&f.roles, &f.roles_extra]) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let who = actor.session.actor();
    let res = blocking(&d, lang, move |id| {
        id.set_roles(&who, &name, &roles)?;
        id.end_sessions_of(&name, "roles changed")
    })
    .await;
    match res {
        Ok(()) => api_ok(json!({})),
        Err(e) => e.into_response(),
    }
}

/// Sets a generated initial password (answered this once); the user must change it at next login.
async fn reset_password(State(d): State<Dashboard>, actor: Actor, Path(name): Path<String>) -> Response {
    let lang = actor.prefs.lang;
    if let Err(r) = d.require(&actor.session, lang, Permission::ManageUsers, None).await {
        return r;
    }
    let who = actor.session.actor();
    let res = blocking(&d, lang, move |id| {
        let password = id.policy().generate(&name);
        id.reset_password(&who, &name, &password)?;
        Ok(password)
    })
    .await;
    match res {
        Ok(password) => api_ok(json!(password)),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Kit, Login};
    use axum::Router;
    use axum::http::{Method, StatusCode};
    use serde_json::{Value, json};
    use tingzhen_identity::audit::{AuditQuery, events};
    use tingzhen_identity::{LoginRequest, Permission, Restriction, UserUpdate};

    fn kit() -> Kit {
        // These pages never call the monitoring APIs: an empty backend proves it.
        Kit::new(Router::new())
    }

    fn data(body: &str) -> Value {
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        v["data"].clone()
    }

    fn events_of(kit: &Kit, event: &str) -> Vec<tingzhen_identity::audit::AuditRecord> {
        let q = AuditQuery { event: Some(event.into()), ..Default::default() };
        kit.dashboard.identity.audit_log().query(&q).unwrap()
    }

    fn first_login(kit: &Kit, name: &str, password: &str) -> Option<Restriction> {
        let req = LoginRequest { username: name.into(), password: password.into(), ..Default::default() };
        kit.dashboard.identity.login(&req, "127.0.0.1").unwrap().session.restriction
    }

    #[tokio::test]
    async fn admin_lists_searches_creates_and_bulk_disables() {
        let kit = kit();
        let admin = kit.login("admin1", &[("admin", "*")]);
        kit.login("nurse1", &[("viewer", "east")]);

        let page = kit.get("/ui/users", Some(&admin)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for id in [
            "id=\"users-table\"",
            "data-user=\"nurse1\"",
            "data-user=\"admin1\"",
            "id=\"users-bulk-disable\"",
            "id=\"user-create-form\"",
        ] {
            assert!(page.body.contains(id), "{id} missing");
        }
        let found = kit.get("/ui/users?q=URS&status=active&min_logins=1", Some(&admin)).await;
        assert!(
            found.body.contains("data-user=\"nurse1\"") && !found.body.contains("data-user=\"admin1\""),
            "{}",
            found.body
        );
        let none = kit.get("/ui/users?min_logins=99", Some(&admin)).await;
        assert!(!none.body.contains("data-user=\"nurse1\""));
        let bad = kit.get("/ui/users?min_logins=lots&created_from=yesterday", Some(&admin)).await;
        assert!(bad.body.contains("users-filter-error") && bad.body.contains("created_from"), "{}", bad.body);

        let created = kit
            .send(
                Method::POST,
                "/ui/api/users",
                &admin,
                Some(json!({
                "username": "doc2", "display_name": "王医生", "roles": ["viewer@east"], "roles_extra": ["ops@west"],
                "valid_until": "", "access_windows": "1-7 00:00-24:00"})),
            )
            .await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.body);
        let password = data(&created.body).as_str().expect("the initial password is answered").to_string();
        assert_eq!(
            first_login(&kit, "doc2", &password),
            Some(Restriction::PasswordChange),
            "must change at first login"
        );
        let made = events_of(&kit, events::USER_CREATE);
        assert!(made.iter().any(|r| r.actor == "admin1" && r.detail.contains("doc2") && r.detail.contains("ops@west")));
        assert!(!made.iter().any(|r| r.detail.contains(&password)), "the password is never logged");
        let again = kit.send(Method::POST, "/ui/api/users", &admin, Some(json!({"username": "doc2"}))).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
        let bad = kit
            .send(Method::POST, "/ui/api/users", &admin, Some(json!({"username": "x", "roles": ["boss@east"]})))
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.body.contains("boss@east"), "{}", bad.body);

        let bulk = kit
            .send(
                Method::POST,
                "/api/v1/users/bulk",
                &admin,
                Some(json!({"action": "disable", "usernames": ["nurse1", "doc2", "ghost"]})),
            )
            .await;
        assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.body);
        let results = data(&bulk.body);
        assert_eq!(results.as_array().unwrap().iter().filter(|r| r["ok"] == true).count(), 2, "{results}");
        let disabled = kit.get("/ui/users?status=disabled", Some(&admin)).await;
        assert!(disabled.body.contains("data-user=\"nurse1\"") && disabled.body.contains("data-user=\"doc2\""));
        assert!(!disabled.body.contains("data-user=\"admin1\""));
        assert_eq!(events_of(&kit, events::USER_STATUS).len(), 2);
    }

    #[tokio::test]
    async fn a_long_list_is_paged_with_its_filters_kept() {
        let kit = kit();
        let admin = kit.login("admin1", &[("admin", "*")]);
        let actor = tingzhen_identity::Actor::new("test", "127.0.0.1");
        for i in 0..120 {
            let user = tingzhen_identity::NewUser {
                username: format!("nurse{i:03}"),
                display_name: String::new(),
                password: "Ward-7-Night!".into(),
                roles: vec![tingzhen_identity::RoleBinding {
                    role: tingzhen_identity::Role::Viewer,
                    campus: "east".into(),
                }],
                valid_until_ms: None,
                access_windows: Vec::new(),
                phone: None,
            };
            kit.dashboard.identity.create_user(&actor, &user).unwrap();
        }
        let rows = |body: &str| body.matches("data-user=\"").count();
        let first = kit.get("/ui/users?q=nurse", Some(&admin)).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
        assert_eq!(rows(&first.body), super::USERS_PAGE, "one page of rows");
        assert!(first.body.contains("data-user=\"nurse000\"") && !first.body.contains("data-user=\"nurse050\""));
        assert!(first.body.contains("120") && first.body.contains("1 / 3"), "the count is of every match");
        assert!(first.body.contains(r#"href="/ui/users?q&#x3D;nurse&amp;page&#x3D;2" rel="next""#), "{}", first.body);
        assert!(!first.body.contains(r#"rel="prev""#));

        let last = kit.get("/ui/users?q=nurse&page=3", Some(&admin)).await;
        assert_eq!(rows(&last.body), 20);
        assert!(last.body.contains("data-user=\"nurse119\"") && last.body.contains("3 / 3"));
        assert!(
            last.body.contains(r#"href="/ui/users?q&#x3D;nurse&amp;page&#x3D;2" rel="prev""#)
                && !last.body.contains(r#"rel="next""#)
        );
        let beyond = kit.get("/ui/users?q=nurse&page=9", Some(&admin)).await;
        assert!(beyond.body.contains("data-user=\"nurse119\""), "a page past the end shows the last");

        let few = kit.get("/ui/users?q=nurse11", Some(&admin)).await;
        assert_eq!(rows(&few.body), 10);
        assert!(!few.body.contains(r#"id="users-pager""#), "one page needs no pager");
        let bad = kit.get("/ui/users?page=zero", Some(&admin)).await;
        assert!(bad.body.contains("users-filter-error") && bad.body.contains("page"), "{}", bad.body);
    }

    #[tokio::test]
    async fn actions_without_the_csrf_token_are_refused() {
        let kit = kit();
        let admin = kit.login("admin1", &[("admin", "*")]);
        let forged = Login { cookie: admin.cookie.clone(), csrf: "not-the-token".into() };
        let r = kit.send(Method::POST, "/ui/api/users", &forged, Some(json!({"username": "evil"}))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        let r =
            kit.send(Method::PUT, "/ui/api/users/admin1/roles", &forged, Some(json!({"roles": ["viewer@*"]}))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let list = kit.get("/ui/users?q=evil", Some(&admin)).await;
        assert!(!list.body.contains("data-user=\"evil\""));
    }

    #[tokio::test]
    async fn viewers_ops_and_campus_admins_are_refused() {
        let kit = kit();
        for (name, role, campus) in [("v1", "viewer", "east"), ("o1", "ops", "*"), ("ea", "admin", "east")] {
            let who = kit.login(name, &[(role, campus)]);
            for path in ["/ui/users", "/ui/users/edit/v1", "/ui/users/reports", "/ui/users/reports/permissions.csv"] {
                let r = kit.get(path, Some(&who)).await;
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{name} on {path}");
                assert!(!r.body.contains("users-table"));
            }
            let r = kit.send(Method::POST, "/ui/api/users", &who, Some(json!({"username": format!("{name}x")}))).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{name}: {}", r.body);
        }
        assert!(events_of(&kit, events::ACCESS_REFUSED).len() >= 15, "refusals are audited");
        let admin = kit.login("admin1", &[("admin", "*")]);
        assert!(!kit.get("/ui/users", Some(&admin)).await.body.contains("data-user=\"v1x\""));
    }

    #[tokio::test]
    async fn the_auditor_cannot_change_users_or_configuration() {
        let kit = kit();
        let aud = kit.login("aud", &[("auditor", "*")]);
        kit.login("nurse1", &[("viewer", "east")]);
        assert_eq!(kit.get("/ui/users", Some(&aud)).await.status, StatusCode::FORBIDDEN);
        let writes = [
            (Method::POST, "/api/v1/users", json!({"username": "x1", "password": "Some#Pass123x"})),
            (Method::PUT, "/api/v1/users/nurse1/roles", json!({"roles": [{"role": "admin", "campus": "*"}]})),
            (Method::POST, "/api/v1/users/bulk", json!({"action": "disable", "usernames": ["nurse1"]})),
            (Method::PATCH, "/api/v1/users/nurse1", json!({"display_name": "x"})),
            (Method::POST, "/ui/api/users", json!({"username": "x2"})),
            (Method::PUT, "/ui/api/users/nurse1/roles", json!({"roles": ["admin@*"]})),
            (Method::POST, "/ui/api/users/nurse1/password", json!({})),
        ];
        for (m, path, body) in writes {
            let r = kit.send(m.clone(), path, &aud, Some(body)).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {path}: {}", r.body);
        }
        assert_eq!(kit.get("/api/v1/users", Some(&aud)).await.status, StatusCode::FORBIDDEN);
        // Configuration changes are refused by the same check every config action makes.
        let id = aud.cookie.trim_start_matches("tz_session=");
        let session = kit.dashboard.identity.check_session(id, "127.0.0.1").unwrap();
        assert!(kit.dashboard.identity.authorize(&session, Permission::ManageConfig, None).is_err());
        assert!(kit.dashboard.identity.authorize(&session, Permission::ManageConfig, Some("east")).is_err());
        let nurse = kit.dashboard.identity.search(&Default::default()).unwrap();
        let nurse = nurse.iter().find(|u| u.username == "nurse1").unwrap();
        assert_eq!((nurse.status.as_str(), nurse.roles.len()), ("active", 1), "nothing changed");
    }

    #[tokio::test]
    async fn edit_roles_windows_validity_and_password_reset() {
        let kit = kit();
        let admin = kit.login("admin1", &[("admin", "*")]);
        kit.login("nurse1", &[("viewer", "east")]);
        let page = kit.get("/ui/users/edit/nurse1", Some(&admin)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("user-edit-form") && page.body.contains("value=\"viewer@east\" selected"));
        assert_eq!(kit.get("/ui/users/edit/ghost", Some(&admin)).await.status, StatusCode::NOT_FOUND);
        // Account names that look like the console's own paths are still reachable.
        kit.login("reports", &[("viewer", "east")]);
        let named = kit.get("/ui/users/edit/reports", Some(&admin)).await;
        assert!(named.status == StatusCode::OK && named.body.contains("data-user=\"reports\""), "{}", named.body);

        let soon = super::local_date(super::now_ms() + 10 * 86_400_000);
        let r = kit
            .send(
                Method::PATCH,
                "/ui/api/users/nurse1",
                &admin,
                Some(json!({
                "display_name": "李护士", "valid_until": soon, "access_windows": "1-5 08:00-18:00\n6,7 22:00-06:00"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let u = kit
            .dashboard
            .identity
            .search(&Default::default())
            .unwrap()
            .into_iter()
            .find(|u| u.username == "nurse1")
            .unwrap();
        assert_eq!(u.display_name, "李护士");
        assert_eq!(u.access_windows.len(), 2);
        assert_eq!((u.access_windows[1].days.clone(), u.access_windows[1].end.as_str()), (vec![6, 7], "06:00"));
        assert!(u.valid_until_ms.is_some());
        let list = kit.get("/ui/users", Some(&admin)).await;
        assert!(list.body.contains("validity-soon") && list.body.contains("一个月内到期"), "expiry warning shown");
        let edit = kit.get("/ui/users/edit/nurse1", Some(&admin)).await;
        assert!(
            edit.body.contains(&format!("value=\"{soon}\"")) && edit.body.contains("1-5 08:00-18:00\n6-7 22:00-06:00")
        );

        let r = kit
            .send(Method::PATCH, "/ui/api/users/nurse1", &admin, Some(json!({"access_windows": "8 09:00-10:00"})))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.body.contains("line 1"), "{}", r.body);
        let r = kit.send(Method::PATCH, "/ui/api/users/nurse1", &admin, Some(json!({"valid_until": ""}))).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(kit.dashboard.identity.search(&Default::default()).unwrap().iter().all(|u| u.valid_until_ms.is_none()));

        let r = kit
            .send(
                Method::PUT,
                "/ui/api/users/nurse1/roles",
                &admin,
                Some(json!({"roles": ["ops@west", "viewer@east"]})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let changed = events_of(&kit, events::PERMISSION_CHANGE);
        assert!(
            changed
                .iter()
                .any(|r| r.detail.contains("viewer@east -> ops@west, viewer@east") && r.detail.contains("admin1")),
            "{changed:?}"
        );

        // The first login below runs at the real time of day: lift the access windows set above
        // so the test does not depend on when it runs (it failed after 18:00 Asia/Shanghai).
        let r = kit.send(Method::PATCH, "/ui/api/users/nurse1", &admin, Some(json!({"access_windows": ""}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = kit.send(Method::POST, "/ui/api/users/nurse1/password", &admin, Some(json!({}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let password = data(&r.body).as_str().unwrap().to_string();
        assert_eq!(first_login(&kit, "nurse1", &password), Some(Restriction::PasswordChange));
        let r = kit.send(Method::POST, "/ui/api/users/ghost/password", &admin, Some(json!({}))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }

    fn summary(kit: &Kit, name: &str) -> tingzhen_identity::UserSummary {
        let all = kit.dashboard.identity.search(&Default::default()).unwrap();
        all.into_iter().find(|u| u.username == name).unwrap_or_else(|| panic!("{name} exists"))
    }

    #[tokio::test]
    async fn a_phone_number_is_stored_from_the_forms_and_only_shown_masked() {
        let kit = kit();
        let admin = kit.login("admin1", &[("admin", "*")]);
        let page = kit.get("/ui/users", Some(&admin)).await;
        assert!(page.body.contains(r#"<input name="phone" type="tel""#), "the create form asks for it");

        let r = kit
            .send(
                Method::POST,
                "/ui/api/users",
                &admin,
                Some(json!({"username": "doc2", "roles": ["viewer@east"], "phone": " 138-1234 5678 "})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(summary(&kit, "doc2").phone.as_deref(), Some("138****5678"));
        let r = kit.send(Method::POST, "/ui/api/users", &admin, Some(json!({"username": "doc3", "phone": ""}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(summary(&kit, "doc3").phone, None, "an empty field is no number");

        let list = kit.get("/ui/users", Some(&admin)).await;
        assert!(list.body.contains(r#"<td class="phone">138****5678</td>"#), "{}", list.body);
        let edit = kit.get("/ui/users/edit/doc2", Some(&admin)).await;
        assert!(edit.body.contains(r#"<dd id="user-phone">138****5678</dd>"#), "{}", edit.body);
        assert!(edit.body.contains("id=\"user-phone-remove\""));
        // Left empty, the edit form's field is not sent, so saving other fields keeps the number.
        assert!(edit.body.contains(r#"autocomplete="off" data-optional placeholder="138****5678""#), "{}", edit.body);
        for html in [&list.body, &edit.body] {
            assert!(!html.contains("13812345678") && !html.contains("1234 5678"), "the full number is on a page");
        }

        let r =
            kit.send(Method::PATCH, "/ui/api/users/doc2", &admin, Some(json!({"phone": "+86 139 0000 1111"}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(summary(&kit, "doc2").phone.as_deref(), Some("+86*******1111"));
        let r = kit.send(Method::PATCH, "/ui/api/users/doc2", &admin, Some(json!({"display_name": "王医生"}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(summary(&kit, "doc2").phone.as_deref(), Some("+86*******1111"), "absent leaves it unchanged");
        let edit = kit.get("/ui/users/edit/doc2", Some(&admin)).await;
        assert!(edit.body.contains("+86*******1111") && !edit.body.contains("8613900001111"));

        let r = kit.send(Method::PATCH, "/ui/api/users/doc2", &admin, Some(json!({"phone": ""}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(summary(&kit, "doc2").phone, None, "empty removes it");
        let edit = kit.get("/ui/users/edit/doc2", Some(&admin)).await;
        assert!(edit.body.contains("未登记") && !edit.body.contains("user-phone-remove"), "{}", edit.body);
        let changes = events_of(&kit, events::USER_UPDATE);
        assert!(changes.iter().all(|r| !r.detail.contains("8613900001111")), "{changes:?}");
    }

    #[tokio::test]
    async fn an_invalid_phone_number_is_refused_with_identitys_text() {
        let kit = kit();
        let admin = kit.login("admin1", &[("admin", "*")]);
        kit.login("nurse1", &[("viewer", "east")]);
        let why = tingzhen_core::phone::normalize("12ab").unwrap_err();

        let r =
            kit.send(Method::POST, "/ui/api/users", &admin, Some(json!({"username": "doc2", "phone": "12ab"}))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        let message = v["message"].as_str().unwrap();
        assert!(message.contains("phone") && message.contains(&why), "{message}");
        assert!(!kit.dashboard.identity.search(&Default::default()).unwrap().iter().any(|u| u.username == "doc2"));

        let upd = UserUpdate { phone: Some(Some("13812345678".into())), ..Default::default() };
        kit.dashboard
            .identity
            .update_user(&tingzhen_identity::Actor::new("test", "127.0.0.1"), "nurse1", &upd)
            .unwrap();
        let r = kit.send(Method::PATCH, "/ui/api/users/nurse1", &admin, Some(json!({"phone": "12ab"}))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["message"].as_str().unwrap().contains(&why), "{}", r.body);
        assert_eq!(summary(&kit, "nurse1").phone.as_deref(), Some("138****5678"), "unchanged");
    }

    #[tokio::test]
    async fn a_display_name_with_markup_is_escaped_on_every_page() {
        let kit = kit();
        let admin = kit.login("admin1", &[("admin", "*")]);
        let evil = kit.login("evil", &[("viewer", "east")]);
        let xss = "<script>alert(1)</script>";
        let upd = UserUpdate { display_name: Some(xss.into()), ..Default::default() };
        let who = tingzhen_identity::Actor::new("test", "127.0.0.1");
        kit.dashboard.identity.update_user(&who, "evil", &upd).unwrap();
        for (path, login) in [("/ui/users", &admin), ("/ui/users/edit/evil", &admin), ("/ui/account", &evil)] {
            let r = kit.get(path, Some(login)).await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            assert!(r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{path} shows it escaped");
            assert!(!r.body.contains(xss), "{path} has raw markup");
        }
        // The disabled-user report lists the name.
        kit.dashboard.identity.bulk(&who, tingzhen_identity::BulkAction::Disable, &["evil".into()]).unwrap();
        let r = kit.get("/ui/users/reports", Some(&admin)).await;
        assert!(r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !r.body.contains(xss), "{}", r.body);
    }

    #[tokio::test]
    async fn reports_and_their_csv_exports_are_audited() {
        let kit = kit();
        let admin = kit.login("admin1", &[("admin", "*")]);
        kit.login("nurse1", &[("viewer", "east")]);
        let who = tingzhen_identity::Actor::new("test", "127.0.0.1");
        let upd = UserUpdate { display_name: Some("=HYPERLINK(\"http://x\",\"a, b\")".into()), ..Default::default() };
        kit.dashboard.identity.update_user(&who, "nurse1", &upd).unwrap();
        kit.dashboard.identity.bulk(&who, tingzhen_identity::BulkAction::Disable, &["nurse1".into()]).unwrap();

        let page = kit.get("/ui/users/reports", Some(&admin)).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("users-report-disabled") && page.body.contains("data-user=\"nurse1\""));
        assert!(page.body.contains("/ui/users/reports/disabled.csv") && page.body.contains("查看监控"));
        assert_eq!(events_of(&kit, events::REPORT_VIEW).len(), 2, "both reports' views audited");

        let csv = kit.get("/ui/users/reports/disabled.csv", Some(&admin)).await;
        assert_eq!(csv.status, StatusCode::OK);
        assert!(csv.body.starts_with('\u{feff}'), "BOM for spreadsheet programs");
        let lines: Vec<&str> = csv.body.trim_start_matches('\u{feff}').lines().collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("账号,姓名,状态"), "{}", lines[0]);
        assert!(
            lines[1].starts_with("nurse1,\"'=HYPERLINK(\"\"http://x\"\",\"\"a, b\"\")\",已停用,viewer@east"),
            "{}",
            lines[1]
        );
        let perms = kit.get("/ui/users/reports/permissions.csv", Some(&admin)).await;
        assert!(perms.body.contains("admin1,正常,admin@*,管理用户,*"), "{}", perms.body);
        assert!(perms.body.contains("nurse1,已停用,viewer@east,查看监控,east"), "{}", perms.body);
        let exported = events_of(&kit, events::SENSITIVE_VIEW);
        assert_eq!(exported.len(), 2);
        assert!(exported.iter().all(|r| r.actor == "admin1" && r.detail.contains("CSV")));
    }

    #[test]
    fn form_values_parse_or_name_the_problem() {
        assert_eq!(super::parse_binding("viewer@east").unwrap().campus, "east");
        assert_eq!(super::parse_binding("auditor").unwrap().campus, "*");
        assert!(super::parse_binding("viewer@").unwrap_err().contains("campus"));
        let w = super::parse_windows("1-3,5 08:00-18:00\n\n7 22:00-06:00").unwrap();
        assert_eq!(w[0].days, vec![1, 2, 3, 5]);
        assert_eq!(super::windows_text(&w), "1-3,5 08:00-18:00\n7 22:00-06:00");
        assert!(super::parse_windows("1-5 25:00-26:00").unwrap_err().contains("line 1"));
        assert!(super::parse_windows("5-1 08:00-09:00").is_err());
        assert_eq!(super::local_ms("x", "2026-11-26", false).unwrap(), Some(1_795_622_400_000));
        assert_eq!(super::local_ms("x", "2026-11-26", true).unwrap(), Some(1_795_622_400_000 + 86_400_000));
        assert_eq!(super::local_ms("x", "2026-11-26T08:30", false).unwrap(), Some(1_795_622_400_000 + 30_600_000));
        assert!(super::local_ms("to", "26/11", false).unwrap_err().starts_with("to:"));
        assert_eq!(super::csv_field("-1+1"), "'-1+1");
        assert_eq!(super::csv_field("a\"b"), "\"a\"\"b\"");
    }
}
