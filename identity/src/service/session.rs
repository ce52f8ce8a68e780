//! Login (captcha after a failure, lockout with automatic unlock, TOTP), sessions (random
//! 256-bit ids stored as SHA-256, idle and absolute timeouts), the CSRF and anti-replay check
//! on state-changing requests. Password change and TOTP enrolment are in `credentials`.

use super::access::{AccessWindow, permitted};
use super::{Actor, Identity, IdentityError, Result, invalid};
use crate::audit::{Outcome, events};
use crate::captcha;
use crate::config::ms;
use crate::messages::Msg;
use crate::roles::{Role, RoleBinding};
use crate::totp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tingzhen_core::db::{Conn, DbError, Dialect, Row};
use tingzhen_core::params;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub captcha_id: Option<String>,
    #[serde(default)]
    pub captcha_answer: Option<String>,
    #[serde(default)]
    pub totp: Option<String>,
}

/// What a session may do before it is a full session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Restriction {
    /// First login, an expired password or a stored password found weak.
    PasswordChange,
    /// The user's role requires TOTP and none is enrolled.
    TotpEnrolment,
}

impl Restriction {
    pub fn message(self) -> Msg {
        match self {
            Restriction::PasswordChange => Msg::PasswordChangeRequired,
            Restriction::TotpEnrolment => Msg::TotpEnrolmentRequired,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Session {
    #[serde(skip)]
    pub id_hash: String,
    #[serde(skip)]
    pub user_id: i64,
    pub username: String,
    pub bindings: Vec<RoleBinding>,
    #[serde(skip)]
    pub csrf_token: String,
    pub restriction: Option<Restriction>,
    pub created_ms: i64,
    /// The address of the current request (not necessarily the login's).
    pub source_ip: String,
    /// Reminders to show: password or account about to expire.
    pub warnings: Vec<Msg>,
}

impl Session {
    pub fn actor(&self) -> Actor {
        Actor::new(&self.username, &self.source_ip)
    }
}

#[derive(Debug)]
pub struct LoginSuccess {
    /// The raw session id: goes into the cookie, never stored.
    pub session_id: String,
    pub session: Session,
}

/// The end reason of a session that a newer login of the same account pushed out.
const DISPLACED: &str = "displaced by a newer login";

/// What `open_session` did.
enum Opened {
    /// Created; these sessions (id hashes) of the same account were ended to make room.
    Displacing(Vec<String>),
    /// Refused: this many sessions are live, the system-wide maximum.
    AtCapacity(i64),
}

pub(crate) fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub(super) fn random_hex32() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Constant-time comparison of two ASCII tokens.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) struct UserRow {
    pub(super) id: i64,
    pub(super) username: String,
    pub(super) password_hash: String,
    pub(super) password_changed_ms: i64,
    pub(super) must_change: bool,
    pub(super) status: String,
    pub(super) valid_until_ms: Option<i64>,
    pub(super) access_windows: Vec<AccessWindow>,
    pub(super) totp_secret: Option<String>,
    pub(super) totp_last_step: Option<i64>,
    /// Normalized mobile number, for password reset by SMS code.
    pub(super) phone: Option<String>,
}

const USER_COLS: &str = "id, username, password_hash, password_changed_ms, must_change, status, valid_until_ms, \
                         access_windows, totp_secret, totp_last_step, phone";

fn user_row(r: &Row<'_>) -> std::result::Result<UserRow, DbError> {
    let windows: String = r.get(7)?;
    Ok(UserRow {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        password_changed_ms: r.get(3)?,
        must_change: r.get::<i64>(4)? != 0,
        status: r.get(5)?,
        valid_until_ms: r.get(6)?,
        access_windows: serde_json::from_str(&windows).unwrap_or_default(),
        totp_secret: r.get(8)?,
        totp_last_step: r.get(9)?,
        phone: r.get(10)?,
    })
}

/// A user's role bindings, on a connection the caller holds (inside its transaction, say).
/// Sorted here rather than by SQL, so the order is the same whatever the server's collation.
pub(super) fn bindings_in(c: &Conn<'_>, user_id: i64) -> std::result::Result<Vec<RoleBinding>, DbError> {
    let mut rows =
        c.query_map("SELECT role, campus FROM identity_role_bindings WHERE user_id = ?1", &[user_id], |r| {
            Ok((r.get::<String>(0)?, r.get::<String>(1)?))
        })?;
    rows.sort();
    Ok(rows
        .into_iter()
        .filter_map(|(role, campus)| Role::parse(&role).map(|role| RoleBinding { role, campus }))
        .collect())
}

/// The form a user name is looked up in: names are ASCII (checked at creation) and compared
/// as `lower(username)`, which folds ASCII on both engines; folding only ASCII here too keeps
/// a non-ASCII look-alike from matching on an engine whose lower() folds more.
pub(super) fn name_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

impl Identity {
    pub(super) fn user_by_name(&self, username: &str) -> Result<Option<UserRow>> {
        Ok(self.db.with_conn(|c| {
            c.query_opt(
                &format!("SELECT {USER_COLS} FROM identity_users WHERE lower(username) = ?1"),
                &[name_key(username)],
                user_row,
            )
        })?)
    }

    pub(super) fn user_by_id(&self, id: i64) -> Result<UserRow> {
        Ok(self.db.with_conn(|c| {
            c.query_row(&format!("SELECT {USER_COLS} FROM identity_users WHERE id = ?1"), &[id], user_row)
        })?)
    }

    pub(crate) fn bindings_of(&self, user_id: i64) -> Result<Vec<RoleBinding>> {
        Ok(self.db.with_conn(|c| bindings_in(c, user_id))?)
    }

    /// A new captcha: returns its id (for the login request) and the PNG.
    pub fn new_captcha(&self) -> Result<(String, Vec<u8>)> {
        let code = captcha::random_code();
        let png = captcha::render_png(&code)?;
        let id = random_hex32();
        let now = self.now_ms();
        self.db.with_conn(|c| {
            c.execute("DELETE FROM identity_captchas WHERE expires_ms < ?1", &[now])?;
            c.execute(
                "INSERT INTO identity_captchas (id_sha256, answer, expires_ms) VALUES (?1, ?2, ?3)",
                &params![sha256_hex(&id), code, now + ms(self.cfg.captcha_ttl)],
            )
        })?;
        Ok((id, png))
    }

    /// Consumes the captcha whatever the answer, so each image allows one guess. Read and
    /// removed in one statement: two requests racing with one captcha get one answer between them.
    pub(super) fn take_captcha(&self, id: &str, answer: &str) -> Result<bool> {
        let now = self.now_ms();
        let h = sha256_hex(id);
        let stored: Option<(String, i64)> = self.db.with_conn(|c| {
            c.query_opt("DELETE FROM identity_captchas WHERE id_sha256 = ?1 RETURNING answer, expires_ms", &[&h], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })?;
        Ok(matches!(stored, Some((a, exp)) if exp >= now && a.eq_ignore_ascii_case(answer.trim())))
    }

    /// Whether the next login for `username` must carry a captcha.
    pub fn captcha_required(&self, username: &str) -> Result<bool> {
        let lc = username.trim().to_lowercase();
        let failures: i64 = self
            .db
            .with_conn(|c| {
                c.query_opt("SELECT failures FROM identity_login_failures WHERE username_lc = ?1", &[&lc], |r| r.get(0))
            })?
            .unwrap_or(0);
        Ok(failures >= self.cfg.captcha_after_failures as i64)
    }

    /// Counts a failed attempt; locks the name when the threshold is reached. Returns the end
    /// of the lock, if the name is locked now.
    ///
    /// One transaction: the upsert takes the row's lock on PostgreSQL, so concurrent failures
    /// for one name are counted one after another and exactly one of them sets (and audits)
    /// the lock; the others see it set.
    fn note_failure(&self, lc: &str, ip: &str) -> Result<Option<i64>> {
        let now = self.now_ms();
        let threshold = self.cfg.lockout_threshold as i64;
        let until = now + ms(self.cfg.lockout_duration);
        let (failures, locked, newly) = self.db.with_conn(|c| {
            c.transaction(|tx| -> std::result::Result<_, DbError> {
                let (failures, locked): (i64, Option<i64>) = tx.query_row(
                    "INSERT INTO identity_login_failures (username_lc, failures, last_failure_ms) VALUES (?1, 1, ?2)
                     ON CONFLICT(username_lc) DO UPDATE SET failures = identity_login_failures.failures + 1,
                         last_failure_ms = excluded.last_failure_ms
                     RETURNING failures, locked_until_ms",
                    &params![lc, now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if failures < threshold {
                    return Ok((failures, None, false));
                }
                if let Some(l) = locked.filter(|l| *l > now) {
                    return Ok((failures, Some(l), false));
                }
                tx.execute(
                    "UPDATE identity_login_failures SET locked_until_ms = ?2 WHERE username_lc = ?1",
                    &params![lc, until],
                )?;
                Ok((failures, Some(until), true))
            })
        })?;
        if newly {
            self.record(
                &Actor::new(lc, ip),
                events::LOCKOUT,
                Outcome::Refused,
                format!("locked after {failures} failed logins until {until} ms"),
            )?;
        }
        Ok(locked)
    }

    pub(super) fn clear_failures(&self, lc: &str) -> Result<()> {
        self.db.with_conn(|c| c.execute("DELETE FROM identity_login_failures WHERE username_lc = ?1", &[lc]))?;
        Ok(())
    }

    fn lock_minutes(&self, until: i64) -> i64 {
        ((until - self.now_ms()).max(0) + 59_999) / 60_000
    }

    /// Password (+ captcha after a failure, + TOTP when enrolled) → a new session.
    pub fn login(&self, req: &LoginRequest, ip: &str) -> Result<LoginSuccess> {
        let now = self.now_ms();
        let username = req.username.trim();
        if username.is_empty() || username.len() > 128 {
            return Err(invalid("username", "must be 1–128 characters"));
        }
        let lc = username.to_lowercase();
        let refuse = |msg: Msg, detail: &str| -> Result<LoginSuccess> {
            self.record(&Actor::new(username, ip), events::LOGIN, Outcome::Refused, detail)?;
            Err(IdentityError::Denied(msg))
        };
        // Lockout: refused without looking at the password, automatic unlock when it runs out.
        let lock: Option<i64> = self
            .db
            .with_conn(|c| {
                c.query_opt("SELECT locked_until_ms FROM identity_login_failures WHERE username_lc = ?1", &[&lc], |r| {
                    r.get::<Option<i64>>(0)
                })
            })?
            .flatten();
        if let Some(until) = lock {
            if until > now {
                return refuse(Msg::AccountLocked { minutes: self.lock_minutes(until) }, "account locked");
            }
            // Only the request that lifts this very lock records the unlock, however many
            // logins arrive together once it has run out.
            let lifted = self.db.with_conn(|c| {
                c.execute(
                    "UPDATE identity_login_failures SET failures = 0, locked_until_ms = NULL
                     WHERE username_lc = ?1 AND locked_until_ms = ?2",
                    &params![lc, until],
                )
            })?;
            if lifted == 1 {
                self.record(
                    &Actor::new(username, ip),
                    events::UNLOCK,
                    Outcome::Success,
                    "automatic unlock: lockout period over",
                )?;
            }
        }
        if self.captcha_required(&lc)? {
            let (Some(id), Some(answer)) = (&req.captcha_id, &req.captcha_answer) else {
                return refuse(Msg::CaptchaRequired, "captcha missing");
            };
            if !self.take_captcha(id, answer)? {
                return refuse(Msg::CaptchaWrong, "captcha wrong or expired");
            }
        }
        let user = self.user_by_name(username)?;
        let ok = match &user {
            Some(u) => self.policy.verify(&req.password, &u.password_hash),
            None => {
                self.policy.verify(&req.password, &self.dummy_hash);
                false
            }
        };
        let Some(user) = user.filter(|_| ok) else {
            let locked = self.note_failure(&lc, ip)?;
            self.record(&Actor::new(username, ip), events::LOGIN, Outcome::Failure, "wrong user name or password")?;
            return Err(IdentityError::Denied(match locked {
                Some(until) => Msg::AccountLocked { minutes: self.lock_minutes(until) },
                None => Msg::LoginInvalid,
            }));
        };
        if user.status != "active" {
            return refuse(Msg::AccountDisabled, &format!("account {}", user.status));
        }
        if user.valid_until_ms.is_some_and(|v| v <= now) {
            return refuse(Msg::AccountExpired, "account validity period over");
        }
        if !permitted(&user.access_windows, now, self.cfg.utc_offset_minutes) {
            return refuse(Msg::OutsideAccessHours, "outside the account's access-time windows");
        }
        if let Some(secret) = &user.totp_secret {
            let Some(code) = req.totp.as_deref().filter(|c| !c.trim().is_empty()) else {
                return refuse(Msg::TotpRequired, "one-time code missing");
            };
            let key = totp::base32_decode(&self.secrets.open(secret)?).unwrap_or_default();
            let accepted = match totp::check(&key, code, now / 1000) {
                // A code is single-use: a step at or before the last accepted one is a replay.
                // The step moves on only if it still is later, in one statement, so of two
                // logins racing with one code exactly one gets in.
                Some(step) if user.totp_last_step.is_none_or(|last| step > last) => {
                    self.db.with_conn(|c| {
                        c.execute(
                            "UPDATE identity_users SET totp_last_step = ?2
                             WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                            &[user.id, step],
                        )
                    })? == 1
                }
                _ => false,
            };
            if !accepted {
                let locked = self.note_failure(&lc, ip)?;
                self.record(&Actor::new(username, ip), events::LOGIN, Outcome::Failure, "wrong one-time code")?;
                return Err(IdentityError::Denied(match locked {
                    Some(until) => Msg::AccountLocked { minutes: self.lock_minutes(until) },
                    None => Msg::TotpWrong,
                }));
            }
        }
        self.clear_failures(&lc)?;
        // Weak-password detection at login: a password that no longer passes the policy (the
        // list grew, the rules tightened) must be changed before anything else.
        let weak = !self.policy.violations(&user.username, &req.password).is_empty();
        let session_id = random_hex32();
        let id_hash = sha256_hex(&session_id);
        let csrf_token = random_hex32();
        let displaced = match self.open_session(user.id, &id_hash, &csrf_token, ip, now, weak)? {
            Opened::Displacing(displaced) => displaced,
            Opened::AtCapacity(live) => {
                return refuse(
                    Msg::SessionLimitReached,
                    &format!("concurrent session limit reached ({live} live, max_sessions {})", self.cfg.max_sessions),
                );
            }
        };
        for old in &displaced {
            self.record(
                &Actor::new(&user.username, ip),
                events::SESSION_EXPIRED,
                Outcome::Success,
                format!(
                    "session {}: {DISPLACED} (max_sessions_per_user {})",
                    &old[..16],
                    self.cfg.max_sessions_per_user
                ),
            )?;
        }
        let detail =
            format!("session {}{}", &id_hash[..16], if weak { "; stored password is weak: change forced" } else { "" });
        self.record(&Actor::new(&user.username, ip), events::LOGIN, Outcome::Success, detail)?;
        // Built from what was just written rather than read back: a concurrent login of the
        // same account may already have displaced this session, and this login still succeeded.
        let mut user = user;
        user.must_change |= weak;
        let session = self.session_of(user, id_hash, csrf_token, now, ip, now)?;
        Ok(LoginSuccess { session_id, session })
    }

    /// Creates the session row within the concurrent-session limits (MLPS 4.6), in one
    /// transaction: the user's least recently used sessions beyond `max_sessions_per_user` are
    /// ended, and nothing is written when the system-wide `max_sessions` is reached. A live
    /// session is one not ended, not idle and not over age, of an active account: sessions that
    /// timed out but were never looked at again do not count.
    ///
    /// On PostgreSQL the sessions table is locked against other writers first, so concurrent
    /// logins count one after another (on SQLite the one connection already serializes them).
    fn open_session(&self, user_id: i64, id_hash: &str, csrf: &str, ip: &str, now: i64, weak: bool) -> Result<Opened> {
        let idle_since = now - ms(self.cfg.session_idle_timeout);
        let born_since = now - ms(self.cfg.session_max_lifetime);
        let per_user = self.cfg.max_sessions_per_user as usize;
        let max = i64::from(self.cfg.max_sessions);
        let opened = self.db.with_conn(|c| {
            c.transaction(|tx| -> std::result::Result<Opened, DbError> {
                if tx.dialect() == Dialect::Postgres {
                    tx.execute_batch("LOCK TABLE identity_sessions IN EXCLUSIVE MODE")?;
                }
                let live: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM identity_sessions s JOIN identity_users u ON u.id = s.user_id
                     WHERE s.ended_ms IS NULL AND s.last_seen_ms >= ?1 AND s.created_ms >= ?2 AND u.status = 'active'",
                    &[idle_since, born_since],
                    |r| r.get(0),
                )?;
                // Oldest use first; the id breaks ties so the choice does not depend on the engine.
                let mine: Vec<String> = tx.query_map(
                    "SELECT id_sha256 FROM identity_sessions
                     WHERE user_id = ?1 AND ended_ms IS NULL AND last_seen_ms >= ?2 AND created_ms >= ?3
                     ORDER BY last_seen_ms, id_sha256",
                    &[user_id, idle_since, born_since],
                    |r| r.get(0),
                )?;
                let displaced: Vec<String> = mine[..(mine.len() + 1).saturating_sub(per_user)].to_vec();
                if live - displaced.len() as i64 >= max {
                    return Ok(Opened::AtCapacity(live));
                }
                for old in &displaced {
                    tx.execute(
                        "UPDATE identity_sessions SET ended_ms = ?2, end_reason = ?3
                         WHERE id_sha256 = ?1 AND ended_ms IS NULL",
                        &params![old, now, DISPLACED],
                    )?;
                }
                tx.execute(
                    "UPDATE identity_users SET last_login_ms = ?2, login_count = login_count + 1,
                     must_change = CASE WHEN ?3 <> 0 THEN 1 ELSE must_change END WHERE id = ?1",
                    &[user_id, now, i64::from(weak)],
                )?;
                tx.execute(
                    "INSERT INTO identity_sessions (id_sha256, user_id, csrf_token, source_ip, created_ms, last_seen_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    &params![id_hash, user_id, csrf, ip, now],
                )?;
                Ok(Opened::Displacing(displaced))
            })
        })?;
        Ok(opened)
    }

    /// Resolves a cookie's session id: refuses ended, idle or over-age sessions and users who
    /// may no longer sign in, and marks the session as used now.
    pub fn check_session(&self, session_id: &str, ip: &str) -> Result<Session> {
        self.resolve_session(session_id, ip, true)
    }

    /// Like `check_session`, for requests a page makes on its own (live refresh of a screen):
    /// they do not count as activity, so an unattended console still reaches the idle timeout.
    pub fn check_session_background(&self, session_id: &str, ip: &str) -> Result<Session> {
        self.resolve_session(session_id, ip, false)
    }

    fn resolve_session(&self, session_id: &str, ip: &str, activity: bool) -> Result<Session> {
        let now = self.now_ms();
        let h = sha256_hex(session_id);
        let row: Option<(i64, String, i64, i64)> = self.db.with_conn(|c| {
            c.query_opt(
                "SELECT user_id, csrf_token, created_ms, last_seen_ms FROM identity_sessions
                 WHERE id_sha256 = ?1 AND ended_ms IS NULL",
                &[&h],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
        })?;
        let Some((user_id, csrf_token, created_ms, last_seen_ms)) = row else {
            return Err(IdentityError::Denied(Msg::NotLoggedIn));
        };
        let user = self.user_by_id(user_id)?;
        let end_reason = if now - last_seen_ms > ms(self.cfg.session_idle_timeout) {
            Some("idle timeout")
        } else if now - created_ms > ms(self.cfg.session_max_lifetime) {
            Some("maximum lifetime")
        } else if user.status != "active" {
            Some("account disabled")
        } else if user.valid_until_ms.is_some_and(|v| v <= now) {
            Some("account validity over")
        } else if !permitted(&user.access_windows, now, self.cfg.utc_offset_minutes) {
            Some("outside access-time windows")
        } else {
            None
        };
        if let Some(reason) = end_reason {
            // The idle end is the last activity plus the timeout, which makes login durations honest.
            let ended = if reason == "idle timeout" { last_seen_ms + ms(self.cfg.session_idle_timeout) } else { now };
            // Requests arriving together on an expired session end it once and audit it once.
            if self.end_session(&h, ended, reason)? {
                self.record(
                    &Actor::new(&user.username, ip),
                    events::SESSION_EXPIRED,
                    Outcome::Success,
                    format!("session {}: {reason}", &h[..16]),
                )?;
            }
            return Err(IdentityError::Denied(Msg::SessionExpired));
        }
        if activity {
            // Never moves backwards (a slower concurrent request with an older time) and never
            // touches a session ended meanwhile.
            self.db.with_conn(|c| {
                c.execute(
                    "UPDATE identity_sessions SET last_seen_ms = ?2
                     WHERE id_sha256 = ?1 AND ended_ms IS NULL AND last_seen_ms < ?2",
                    &params![h, now],
                )
            })?;
        }
        self.session_of(user, h, csrf_token, created_ms, ip, now)
    }

    /// A live session's view: role bindings, what it is restricted to, reminders to show.
    fn session_of(
        &self,
        user: UserRow,
        id_hash: String,
        csrf_token: String,
        created_ms: i64,
        ip: &str,
        now: i64,
    ) -> Result<Session> {
        let bindings = self.bindings_of(user.id)?;
        let expired_pw = self.cfg.password_max_age.is_some_and(|age| now - user.password_changed_ms >= ms(age));
        let restriction = if user.must_change || expired_pw {
            Some(Restriction::PasswordChange)
        } else if user.totp_secret.is_none() && bindings.iter().any(|b| self.cfg.totp_required_roles.contains(&b.role))
        {
            Some(Restriction::TotpEnrolment)
        } else {
            None
        };
        let mut warnings = Vec::new();
        if let Some(age) = self.cfg.password_max_age {
            let left = user.password_changed_ms + ms(age) - now;
            if left > 0 && left <= ms(self.cfg.password_expiry_warning) {
                warnings.push(Msg::PasswordExpiresSoon { days: (left + 86_399_999) / 86_400_000 });
            }
        }
        if let Some(v) = user.valid_until_ms {
            let left = v - now;
            if left > 0 && left <= ms(self.cfg.account_expiry_warning) {
                warnings.push(Msg::AccountExpiresSoon { days: (left + 86_399_999) / 86_400_000 });
            }
        }
        Ok(Session {
            id_hash,
            user_id: user.id,
            username: user.username,
            bindings,
            csrf_token,
            restriction,
            created_ms,
            source_ip: ip.to_string(),
            warnings,
        })
    }

    /// Ends a live session; `false` if it had already ended.
    fn end_session(&self, id_hash: &str, at: i64, reason: &str) -> Result<bool> {
        let n = self.db.with_conn(|c| {
            c.execute(
                "UPDATE identity_sessions SET ended_ms = ?2, end_reason = ?3 WHERE id_sha256 = ?1 AND ended_ms IS NULL",
                &params![id_hash, at, reason],
            )
        })?;
        Ok(n == 1)
    }

    pub fn logout(&self, session: &Session) -> Result<()> {
        self.end_session(&session.id_hash, self.now_ms(), "logout")?;
        self.record(&session.actor(), events::LOGOUT, Outcome::Success, format!("session {}", &session.id_hash[..16]))
    }

    /// The check before any state-changing request: the session's CSRF token, and a fresh
    /// nonce with a timestamp inside the replay window (anti-replay: a nonce is accepted once
    /// per session; timestamps outside the window are refused, so nonces need only be
    /// remembered for the window).
    pub fn check_state_change(
        &self,
        session: &Session,
        csrf: Option<&str>,
        nonce: Option<&str>,
        ts_ms: Option<&str>,
    ) -> Result<()> {
        if !csrf.is_some_and(|t| same(t, &session.csrf_token)) {
            self.record(&session.actor(), events::ACCESS_REFUSED, Outcome::Refused, "CSRF token missing or wrong")?;
            return Err(IdentityError::Denied(Msg::CsrfMissing));
        }
        let now = self.now_ms();
        let window = ms(self.cfg.replay_window);
        let ts: Option<i64> = ts_ms.and_then(|t| t.trim().parse().ok());
        let nonce =
            nonce.map(str::trim).filter(|n| (16..=128).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_graphic()));
        let (Some(ts), Some(nonce)) = (ts, nonce) else {
            self.record(
                &session.actor(),
                events::ACCESS_REFUSED,
                Outcome::Refused,
                "request nonce or timestamp missing",
            )?;
            return Err(IdentityError::Denied(Msg::ReplayRefused));
        };
        if (now - ts).abs() > window {
            self.record(
                &session.actor(),
                events::ACCESS_REFUSED,
                Outcome::Refused,
                "request timestamp outside the window",
            )?;
            return Err(IdentityError::Denied(Msg::ReplayRefused));
        }
        // The insert is the check: of two requests with one nonce, only one inserts it.
        let fresh = self.db.with_conn(|c| {
            c.execute("DELETE FROM identity_nonces WHERE seen_ms < ?1", &[now - 2 * window])?;
            let n = c.execute(
                "INSERT INTO identity_nonces (session, nonce, seen_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                &params![session.id_hash, nonce, now],
            )?;
            Ok::<_, DbError>(n == 1)
        })?;
        if !fresh {
            self.record(
                &session.actor(),
                events::ACCESS_REFUSED,
                Outcome::Refused,
                "replayed request (nonce seen before)",
            )?;
            return Err(IdentityError::Denied(Msg::ReplayRefused));
        }
        Ok(())
    }
}
