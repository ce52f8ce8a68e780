//! Account management: create, update, role bindings, password reset, bulk disable / enable /
//! cancel / unfreeze, search, the disabled-user and permission reports, login durations.
//! Callers check `Permission::ManageUsers` (or `ViewAudit`) first; these functions audit.

use super::access::AccessWindow;
use super::session::{bindings_in, name_key};
use super::{Actor, Identity, IdentityError, Result, for_update, invalid};
use crate::audit::{Outcome, events};
use crate::roles::{ALL_CAMPUSES, Role, RoleBinding};
use serde::{Deserialize, Serialize};
use tingzhen_core::db::{Conn, DbError, Dialect, Value};
use tingzhen_core::params;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    #[serde(default)]
    pub display_name: String,
    /// The initial password; the user must change it at first login.
    pub password: String,
    #[serde(default)]
    pub roles: Vec<RoleBinding>,
    #[serde(default)]
    pub valid_until_ms: Option<i64>,
    #[serde(default)]
    pub access_windows: Vec<AccessWindow>,
    /// Mobile number for password reset by SMS code; stored normalized, listed masked.
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub display_name: Option<String>,
    /// `Some(None)` (JSON `null`) removes the validity limit.
    #[serde(default, with = "double_option")]
    pub valid_until_ms: Option<Option<i64>>,
    pub access_windows: Option<Vec<AccessWindow>>,
    /// `Some(None)` (JSON `null`) removes the number.
    #[serde(default, with = "double_option")]
    pub phone: Option<Option<String>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// The stored form of an optional phone number; an empty string means none.
fn stored_phone(raw: Option<&str>) -> Result<Option<String>> {
    match raw.map(str::trim).filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) => tingzhen_core::phone::normalize(p).map(Some).map_err(|e| invalid("phone", e)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    Disable,
    Enable,
    /// Cancel (注销) an account for good: it can never sign in or be re-enabled.
    Cancel,
    /// Lift a lockout before it runs out.
    Unfreeze,
}

#[derive(Debug, Clone, Serialize)]
pub struct BulkResult {
    pub username: String,
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFilter {
    /// Fuzzy match on user name or display name.
    pub q: Option<String>,
    /// `active`, `disabled`, `cancelled` or `locked`.
    pub status: Option<String>,
    pub created_from_ms: Option<i64>,
    pub created_to_ms: Option<i64>,
    pub last_login_from_ms: Option<i64>,
    pub last_login_to_ms: Option<i64>,
    pub changed_from_ms: Option<i64>,
    pub changed_to_ms: Option<i64>,
    pub min_logins: Option<i64>,
    pub max_logins: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserSummary {
    pub username: String,
    pub display_name: String,
    pub status: String,
    pub locked_until_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub last_login_ms: Option<i64>,
    pub login_count: i64,
    pub valid_until_ms: Option<i64>,
    pub password_changed_ms: i64,
    pub totp_enrolled: bool,
    pub access_windows: Vec<AccessWindow>,
    pub roles: Vec<RoleBinding>,
    /// Masked (`138****5678`): the full number never leaves the server.
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PermissionReport {
    pub username: String,
    pub status: String,
    pub roles: Vec<RoleBinding>,
    /// Each permission with the campuses it applies to.
    pub permissions: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoginDuration {
    pub username: String,
    pub source_ip: String,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub end_reason: Option<String>,
    pub duration_ms: Option<i64>,
}

fn check_username(u: &str) -> Result<()> {
    if u.is_empty() || u.len() > 64 || !u.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b)) {
        return Err(invalid("username", "must be 1–64 characters of letters, digits, '.', '_', '-', '@'"));
    }
    Ok(())
}

fn check_bindings(roles: &[RoleBinding]) -> Result<()> {
    for b in roles {
        let c = b.campus.trim();
        if c.is_empty() || c.len() > 64 || (c.contains('*') && c != ALL_CAMPUSES) {
            return Err(invalid("roles.campus", format!("{:?} is not a campus name or \"*\"", b.campus)));
        }
    }
    Ok(())
}

fn describe(roles: &[RoleBinding]) -> String {
    if roles.is_empty() {
        return "(none)".into();
    }
    roles.iter().map(|b| format!("{}@{}", b.role.as_str(), b.campus)).collect::<Vec<_>>().join(", ")
}

/// What inserting an account found.
enum Created {
    Yes,
    NameTaken,
    /// `bootstrap_admin` only: somebody else created the first user meanwhile.
    NotFirst,
}

/// Locks the user's row until the transaction ends (PostgreSQL), so a decision made on what
/// was read about the user still holds when it is written.
fn lock_user(tx: &Conn<'_>, id: i64) -> std::result::Result<String, DbError> {
    tx.query_row(&format!("SELECT status FROM identity_users WHERE id = ?1{}", for_update(tx)), &[id], |r| r.get(0))
}

impl Identity {
    fn user_id(&self, username: &str) -> Result<(i64, String, String)> {
        self.db
            .with_conn(|c| {
                c.query_opt(
                    "SELECT id, username, status FROM identity_users WHERE lower(username) = ?1",
                    &[name_key(username)],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
            })?
            .ok_or_else(|| IdentityError::NotFound(username.to_string()))
    }

    pub fn create_user(&self, actor: &Actor, u: &NewUser) -> Result<()> {
        match self.insert_user(actor, u, false)? {
            Created::Yes => Ok(()),
            Created::NameTaken | Created::NotFirst => Err(IdentityError::Exists(u.username.trim().to_string())),
        }
    }

    /// Checks and inserts an account with its bindings, then audits it. With `only_first`, the
    /// insert happens only while the table is empty, decided under a table lock on PostgreSQL
    /// so two servers bootstrapping one database create one administrator.
    fn insert_user(&self, actor: &Actor, u: &NewUser, only_first: bool) -> Result<Created> {
        let username = u.username.trim();
        check_username(username)?;
        check_bindings(&u.roles)?;
        for w in &u.access_windows {
            w.validate()?;
        }
        let phone = stored_phone(u.phone.as_deref())?;
        let violations = self.policy.violations(username, &u.password);
        if !violations.is_empty() {
            return Err(self.policy_error(violations));
        }
        let hash = self.policy.hash(&u.password)?;
        let now = self.now_ms();
        let windows = serde_json::to_string(&u.access_windows).unwrap_or_else(|_| "[]".into());
        let created = self.db.with_conn(|c| {
            c.transaction(|tx| -> std::result::Result<Created, DbError> {
                if only_first {
                    if tx.dialect() == Dialect::Postgres {
                        tx.execute_batch("LOCK TABLE identity_users IN EXCLUSIVE MODE")?;
                    }
                    if tx.query_row("SELECT COUNT(*) FROM identity_users", &(), |r| r.get::<i64>(0))? > 0 {
                        return Ok(Created::NotFirst);
                    }
                }
                // No conflict target: the name may collide with the UNIQUE column or with the
                // lower(username) index, and either means the name is taken.
                let id: Option<i64> = tx.query_opt(
                    "INSERT INTO identity_users (username, display_name, password_hash, password_changed_ms, must_change,
                     created_ms, updated_ms, valid_until_ms, access_windows, phone)
                     VALUES (?1, ?2, ?3, ?4, 1, ?4, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING RETURNING id",
                    &params![username, u.display_name.trim(), hash, now, u.valid_until_ms, windows, phone],
                    |r| r.get(0),
                )?;
                let Some(id) = id else { return Ok(Created::NameTaken) };
                for b in &u.roles {
                    tx.execute(
                        "INSERT INTO identity_role_bindings (user_id, role, campus) VALUES (?1, ?2, ?3)
                         ON CONFLICT DO NOTHING",
                        &params![id, b.role.as_str(), b.campus.trim()],
                    )?;
                }
                Ok(Created::Yes)
            })
        })?;
        if let Created::Yes = created {
            self.record(
                actor,
                events::USER_CREATE,
                Outcome::Success,
                format!("user {username}; roles {}", describe(&u.roles)),
            )?;
        }
        Ok(created)
    }

    /// The first administrator, for a fresh install: created only when no user exists yet.
    /// Returns `false` if there already are users.
    pub fn bootstrap_admin(&self, actor: &Actor, username: &str, password: &str) -> Result<bool> {
        // Cheap answer for the usual case; the insert checks again under a lock.
        let count: i64 =
            self.db.with_conn(|c| c.query_row("SELECT COUNT(*) FROM identity_users", &(), |r| r.get(0)))?;
        if count > 0 {
            return Ok(false);
        }
        let roles = vec![RoleBinding { role: Role::Admin, campus: ALL_CAMPUSES.into() }];
        let user = NewUser {
            username: username.into(),
            display_name: String::new(),
            password: password.into(),
            roles,
            valid_until_ms: None,
            access_windows: Vec::new(),
            phone: None,
        };
        match self.insert_user(actor, &user, true)? {
            Created::Yes => Ok(true),
            Created::NotFirst => Ok(false),
            Created::NameTaken => Err(IdentityError::Exists(username.trim().to_string())),
        }
    }

    pub fn update_user(&self, actor: &Actor, username: &str, u: &UserUpdate) -> Result<()> {
        let (id, name, _) = self.user_id(username)?;
        if let Some(ws) = &u.access_windows {
            for w in ws {
                w.validate()?;
            }
        }
        let phone = match &u.phone {
            Some(p) => Some(stored_phone(p.as_deref())?),
            None => None,
        };
        let now = self.now_ms();
        let mut changes = Vec::new();
        self.db.with_conn(|c| {
            c.transaction(|tx| {
                if let Some(p) = &phone {
                    tx.execute("UPDATE identity_users SET phone = ?2 WHERE id = ?1", &params![id, p])?;
                    // The audit names the change, not the number (personal data).
                    changes
                        .push(format!("phone {}", p.as_deref().map_or("removed".into(), tingzhen_core::phone::mask)));
                }
                if let Some(d) = &u.display_name {
                    tx.execute("UPDATE identity_users SET display_name = ?2 WHERE id = ?1", &params![id, d.trim()])?;
                    changes.push("display name".to_string());
                }
                if let Some(v) = u.valid_until_ms {
                    tx.execute("UPDATE identity_users SET valid_until_ms = ?2 WHERE id = ?1", &params![id, v])?;
                    changes.push(format!("valid until {v:?}"));
                }
                if let Some(ws) = &u.access_windows {
                    let json = serde_json::to_string(ws).unwrap_or_else(|_| "[]".into());
                    tx.execute("UPDATE identity_users SET access_windows = ?2 WHERE id = ?1", &params![id, json])?;
                    changes.push(format!("access windows {json}"));
                }
                tx.execute("UPDATE identity_users SET updated_ms = ?2 WHERE id = ?1", &[id, now])
            })
        })?;
        self.record(actor, events::USER_UPDATE, Outcome::Success, format!("user {name}: {}", changes.join("; ")))
    }

    /// Replaces a user's role bindings; the audit record names old and new bindings and the maintainer.
    pub fn set_roles(&self, actor: &Actor, username: &str, roles: &[RoleBinding]) -> Result<()> {
        check_bindings(roles)?;
        let (id, name, _) = self.user_id(username)?;
        let group_admin = |bs: &[RoleBinding]| bs.iter().any(|b| b.role == Role::Admin && b.campus == ALL_CAMPUSES);
        let now = self.now_ms();
        // The old bindings are read, checked and replaced under the user's row lock, so two
        // concurrent changes apply one after the other and each audits what it replaced.
        let old = self.db.with_conn(|c| {
            c.transaction(|tx| -> Result<Vec<RoleBinding>> {
                lock_user(tx, id)?;
                let old = bindings_in(tx, id)?;
                // An administrator who removes their own group-wide role could leave nobody able
                // to manage accounts; another administrator (or the local CLI) must do it.
                if name.eq_ignore_ascii_case(&actor.name) && group_admin(&old) && !group_admin(roles) {
                    return Err(invalid(
                        "roles",
                        "you cannot remove your own group-wide admin role; another administrator must",
                    ));
                }
                tx.execute("DELETE FROM identity_role_bindings WHERE user_id = ?1", &[id])?;
                for b in roles {
                    tx.execute(
                        "INSERT INTO identity_role_bindings (user_id, role, campus) VALUES (?1, ?2, ?3)
                         ON CONFLICT DO NOTHING",
                        &params![id, b.role.as_str(), b.campus.trim()],
                    )?;
                }
                tx.execute("UPDATE identity_users SET updated_ms = ?2 WHERE id = ?1", &[id, now])?;
                Ok(old)
            })
        })?;
        self.record(
            actor,
            events::PERMISSION_CHANGE,
            Outcome::Success,
            format!("user {name}: roles {} -> {} by {}", describe(&old), describe(roles), actor.name),
        )
    }

    /// An administrator sets a new initial password; the user must change it at next login.
    pub fn reset_password(&self, actor: &Actor, username: &str, password: &str) -> Result<()> {
        let (id, name, _) = self.user_id(username)?;
        self.set_password(actor, id, &name, password, true)
    }

    /// Applies one action to each named user; one failure does not stop the others.
    pub fn bulk(&self, actor: &Actor, action: BulkAction, usernames: &[String]) -> Result<Vec<BulkResult>> {
        let mut out = Vec::new();
        for u in usernames {
            let r = self.apply(actor, action, u);
            out.push(BulkResult { username: u.clone(), ok: r.is_ok(), error: r.err().map(|e| e.to_string()) });
        }
        Ok(out)
    }

    fn apply(&self, actor: &Actor, action: BulkAction, username: &str) -> Result<()> {
        let (id, name, _) = self.user_id(username)?;
        if matches!(action, BulkAction::Disable | BulkAction::Cancel) && name.eq_ignore_ascii_case(&actor.name) {
            return Err(invalid("usernames", "you cannot disable or cancel your own account"));
        }
        let now = self.now_ms();
        let new_status = match action {
            BulkAction::Unfreeze => {
                self.db.with_conn(|c| {
                    c.execute("DELETE FROM identity_login_failures WHERE username_lc = ?1", &[name.to_lowercase()])
                })?;
                return self.record(
                    actor,
                    events::UNLOCK,
                    Outcome::Success,
                    format!("user {name} unfrozen by {}", actor.name),
                );
            }
            BulkAction::Disable => "disabled",
            BulkAction::Enable => "active",
            BulkAction::Cancel => "cancelled",
        };
        // The status is checked and changed under the row lock: an enable racing a cancel must
        // not bring the cancelled account back.
        let status = self.db.with_conn(|c| {
            c.transaction(|tx| -> Result<String> {
                let status = lock_user(tx, id)?;
                if status == "cancelled" {
                    return Err(invalid("status", format!("{name} is cancelled for good")));
                }
                tx.execute(
                    "UPDATE identity_users SET status = ?2, updated_ms = ?3 WHERE id = ?1",
                    &params![id, new_status, now],
                )?;
                if new_status != "active" {
                    tx.execute(
                        "UPDATE identity_sessions SET ended_ms = ?2, end_reason = 'account disabled'
                         WHERE user_id = ?1 AND ended_ms IS NULL",
                        &[id, now],
                    )?;
                }
                Ok(status)
            })
        })?;
        self.record(actor, events::USER_STATUS, Outcome::Success, format!("user {name}: {status} -> {new_status}"))
    }

    pub fn search(&self, f: &UserFilter) -> Result<Vec<UserSummary>> {
        let now = self.now_ms();
        let mut sql = String::from(
            "SELECT u.id, u.username, u.display_name, u.status, l.locked_until_ms, u.created_ms, u.updated_ms,
                    u.last_login_ms, u.login_count, u.valid_until_ms, u.password_changed_ms,
                    CASE WHEN u.totp_secret IS NULL THEN 0 ELSE 1 END, u.access_windows, u.phone
             FROM identity_users u LEFT JOIN identity_login_failures l ON l.username_lc = lower(u.username) WHERE 1=1",
        );
        let pat =
            f.q.as_deref()
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .map(|q| format!("%{}%", q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
        let mut args: Vec<Value<'_>> = Vec::new();
        let mut add = |cond: &str, v| {
            args.push(v);
            sql.push_str(&cond.replace('?', &format!("?{}", args.len())));
        };
        if let Some(pat) = &pat {
            // LIKE ignores ASCII case on SQLite only; lower() on both sides makes it so on both.
            add(" AND (lower(u.username) LIKE lower(?) ESCAPE '\\'", Value::Text(pat));
            add(" OR lower(u.display_name) LIKE lower(?) ESCAPE '\\')", Value::Text(pat));
        }
        match f.status.as_deref() {
            None | Some("") => {}
            Some("locked") => add(" AND l.locked_until_ms > ?", Value::Int(now)),
            Some(s @ ("active" | "disabled" | "cancelled")) => add(" AND u.status = ?", Value::Text(s)),
            Some(other) => {
                return Err(invalid("status", format!("{other:?} is not active, disabled, cancelled or locked")));
            }
        }
        for (v, cond) in [
            (f.created_from_ms, " AND u.created_ms >= ?"),
            (f.created_to_ms, " AND u.created_ms < ?"),
            (f.last_login_from_ms, " AND u.last_login_ms >= ?"),
            (f.last_login_to_ms, " AND u.last_login_ms < ?"),
            (f.changed_from_ms, " AND u.updated_ms >= ?"),
            (f.changed_to_ms, " AND u.updated_ms < ?"),
            (f.min_logins, " AND u.login_count >= ?"),
            (f.max_logins, " AND u.login_count <= ?"),
        ] {
            if let Some(v) = v {
                add(cond, Value::Int(v));
            }
        }
        let mut rows = self.db.with_conn(|c| {
            c.query_map(&sql, &args, |r| {
                let windows: String = r.get(12)?;
                Ok((
                    r.get::<i64>(0)?,
                    UserSummary {
                        username: r.get(1)?,
                        display_name: r.get(2)?,
                        status: r.get(3)?,
                        locked_until_ms: r.get::<Option<i64>>(4)?.filter(|t| *t > now),
                        created_ms: r.get(5)?,
                        updated_ms: r.get(6)?,
                        last_login_ms: r.get(7)?,
                        login_count: r.get(8)?,
                        valid_until_ms: r.get(9)?,
                        password_changed_ms: r.get(10)?,
                        totp_enrolled: r.get(11)?,
                        access_windows: serde_json::from_str(&windows).unwrap_or_default(),
                        roles: Vec::new(),
                        phone: r.get::<Option<String>>(13)?.as_deref().map(tingzhen_core::phone::mask),
                    },
                ))
            })
        })?;
        // By name ignoring ASCII case (SQLite's NOCASE order), sorted here so the order does not
        // depend on the PostgreSQL server's collation.
        rows.sort_by(|(_, a), (_, b)| {
            name_key(&a.username).cmp(&name_key(&b.username)).then_with(|| a.username.cmp(&b.username))
        });
        rows.into_iter()
            .map(|(id, mut s)| {
                s.roles = self.bindings_of(id)?;
                Ok(s)
            })
            .collect()
    }

    /// Disabled, cancelled and expired accounts (an account past its validity period is
    /// stopped automatically: it can no longer sign in).
    pub fn report_disabled(&self, actor: &Actor) -> Result<Vec<UserSummary>> {
        let now = self.now_ms();
        let out: Vec<UserSummary> = self
            .search(&UserFilter::default())?
            .into_iter()
            .filter(|u| u.status != "active" || u.valid_until_ms.is_some_and(|v| v <= now))
            .collect();
        self.record(actor, events::REPORT_VIEW, Outcome::Success, "disabled-user report")?;
        Ok(out)
    }

    /// Every user's roles and the permissions they amount to, per campus.
    pub fn report_permissions(&self, actor: &Actor) -> Result<Vec<PermissionReport>> {
        let users = self.search(&UserFilter::default())?;
        self.record(actor, events::REPORT_VIEW, Outcome::Success, "permission report")?;
        Ok(users
            .into_iter()
            .map(|u| {
                let permissions = crate::roles::Permission::ALL
                    .into_iter()
                    .filter_map(|p| {
                        let campuses: Vec<String> = u
                            .roles
                            .iter()
                            .filter(|b| b.role.grants(p) && (!p.is_global() || b.campus == ALL_CAMPUSES))
                            .map(|b| b.campus.clone())
                            .collect();
                        (!campuses.is_empty()).then(|| (format!("{p:?}"), campuses))
                    })
                    .collect();
                PermissionReport { username: u.username, status: u.status, roles: u.roles, permissions }
            })
            .collect())
    }

    /// Session start/end pairs (login durations) in `[from_ms, to_ms)`, newest first.
    pub fn login_durations(
        &self,
        username: Option<&str>,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<LoginDuration>> {
        // Only the filters given go into the SQL: PostgreSQL cannot type a parameter that is
        // NULL and only compared in `?N IS NULL OR …` when several such NULLs differ in type.
        let name = username.map(name_key);
        let mut sql = String::from(
            "SELECT u.username, s.source_ip, s.created_ms, s.ended_ms, s.end_reason
             FROM identity_sessions s JOIN identity_users u ON u.id = s.user_id WHERE 1=1",
        );
        let mut args: Vec<Value<'_>> = Vec::new();
        for (cond, v) in [
            (" AND lower(u.username) = ?", name.as_deref().map(Value::Text)),
            (" AND s.created_ms >= ?", from_ms.map(Value::Int)),
            (" AND s.created_ms < ?", to_ms.map(Value::Int)),
        ] {
            if let Some(v) = v {
                args.push(v);
                sql.push_str(&cond.replace('?', &format!("?{}", args.len())));
            }
        }
        sql.push_str(" ORDER BY s.created_ms DESC, s.id_sha256 LIMIT 10000");
        Ok(self.db.with_conn(|c| {
            c.query_map(&sql, &args, |r| {
                let start: i64 = r.get(2)?;
                let end: Option<i64> = r.get(3)?;
                Ok(LoginDuration {
                    username: r.get(0)?,
                    source_ip: r.get(1)?,
                    start_ms: start,
                    end_ms: end,
                    end_reason: r.get(4)?,
                    duration_ms: end.map(|e| e - start),
                })
            })
        })?)
    }

    /// Ends every session of a user, e.g. after a role change so new rights apply at once.
    pub fn end_sessions_of(&self, username: &str, reason: &str) -> Result<()> {
        let (id, _, _) = self.user_id(username)?;
        let now = self.now_ms();
        self.db.with_conn(|c| {
            c.execute(
                "UPDATE identity_sessions SET ended_ms = ?2, end_reason = ?3 WHERE user_id = ?1 AND ended_ms IS NULL",
                &params![id, now, reason],
            )
        })?;
        Ok(())
    }
}
