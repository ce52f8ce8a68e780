//! `Identity`: the service every web-facing target holds. It owns the identity tables (its own
//! component migrations in the shared store, SQLite or PostgreSQL), the password policy, the
//! audit log and the clock. Login, sessions, CSRF/replay checks and TOTP are in `session`;
//! account management, search and reports in `users`; access-time windows in `access`.
//!
//! The store may be PostgreSQL with several pooled connections at READ COMMITTED, so every
//! read-then-write here (lockout counter, captcha, TOTP step, status change, role change,
//! password history, the first administrator) is either one statement or one transaction that
//! locks what it read ([`for_update`]); SQLite's single connection serializes them anyway.

mod access;
mod credentials;
mod reset;
mod session;
mod users;

pub use access::AccessWindow;
pub use credentials::TotpEnrolment;
pub use reset::{CodeSender, ResetConfirm, ResetRequest};
pub use session::{LoginRequest, LoginSuccess, Restriction, Session};
pub use users::{
    BulkAction, BulkResult, LoginDuration, NewUser, PermissionReport, UserFilter, UserSummary, UserUpdate,
};

use crate::audit::{self, AuditEvent, AuditLog, Outcome};
use crate::clock::Clock;
use crate::config::{ConfigError, IdentityConfig};
use crate::messages::Msg;
use crate::password::{HashError, PasswordPolicy};
use crate::roles::{Permission, allowed};
use std::sync::Arc;
use tingzhen_core::db::{Conn, Db, DbError, Dialect};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Captcha(#[from] crate::captcha::CaptchaError),
    #[error(transparent)]
    Secret(#[from] crate::secretbox::SecretBoxError),
    #[error("cannot start identity: {0}")]
    Setup(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("user {0:?} not found")]
    NotFound(String),
    #[error("user {0:?} already exists")]
    Exists(String),
    /// A refusal the user sees, with its message in their language.
    #[error("refused: {0:?}")]
    Denied(Msg),
    /// The new password breaks these rules.
    #[error("password refused: {violations:?}")]
    Policy { violations: Vec<Msg>, min_length: usize },
}

pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid { field, reason: reason.into() }
}

/// Who did something, for the audit log: a user name (or `cli:<name>` for the local CLI) and
/// the source address.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub ip: String,
}

impl Actor {
    pub fn new(name: impl Into<String>, ip: impl Into<String>) -> Self {
        Self { name: name.into(), ip: ip.into() }
    }
}

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE identity_users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        display_name TEXT NOT NULL DEFAULT '',
        password_hash TEXT NOT NULL,
        password_changed_ms INTEGER NOT NULL,
        must_change INTEGER NOT NULL DEFAULT 1,
        status TEXT NOT NULL DEFAULT 'active',
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        last_login_ms INTEGER,
        login_count INTEGER NOT NULL DEFAULT 0,
        valid_until_ms INTEGER,
        access_windows TEXT NOT NULL DEFAULT '[]',
        totp_secret TEXT,
        totp_pending TEXT,
        totp_last_step INTEGER
    );
    CREATE TABLE identity_password_history (
        user_id INTEGER NOT NULL REFERENCES identity_users(id),
        password_hash TEXT NOT NULL,
        changed_ms INTEGER NOT NULL
    );
    CREATE INDEX identity_password_history_user ON identity_password_history(user_id, changed_ms);
    CREATE TABLE identity_role_bindings (
        user_id INTEGER NOT NULL REFERENCES identity_users(id),
        role TEXT NOT NULL,
        campus TEXT NOT NULL,
        PRIMARY KEY (user_id, role, campus)
    );
    CREATE TABLE identity_sessions (
        id_sha256 TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES identity_users(id),
        csrf_token TEXT NOT NULL,
        source_ip TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        end_reason TEXT
    );
    CREATE INDEX identity_sessions_user ON identity_sessions(user_id, created_ms);
    CREATE TABLE identity_nonces (
        session TEXT NOT NULL,
        nonce TEXT NOT NULL,
        seen_ms INTEGER NOT NULL,
        PRIMARY KEY (session, nonce)
    );
    CREATE INDEX identity_nonces_seen ON identity_nonces(seen_ms);
    CREATE TABLE identity_captchas (
        id_sha256 TEXT PRIMARY KEY,
        answer TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    CREATE TABLE identity_login_failures (
        username_lc TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        locked_until_ms INTEGER,
        last_failure_ms INTEGER NOT NULL
    );",
    audit::MIGRATION,
    // 3: user names are unique and looked up case-insensitively through lower(username) on
    // both engines (SQLite's COLLATE NOCASE in migration 1 has no PostgreSQL equivalent; it
    // folds ASCII only, like lower(), and names are ASCII, so existing rows stay unique).
    // Password history gets a per-user sequence that orders it (it relied on SQLite's rowid);
    // existing rows are numbered by time, then hash.
    "CREATE UNIQUE INDEX identity_users_username_lower ON identity_users (lower(username));
    ALTER TABLE identity_password_history ADD COLUMN seq INTEGER;
    UPDATE identity_password_history SET seq = (
        SELECT COUNT(*) FROM identity_password_history h
        WHERE h.user_id = identity_password_history.user_id
          AND (h.changed_ms < identity_password_history.changed_ms
               OR (h.changed_ms = identity_password_history.changed_ms
                   AND h.password_hash <= identity_password_history.password_hash))
    );",
    // 4: password reset by SMS code. The phone number on the account; one outstanding code per
    // account (its SHA-256 with the account id, never the code); every code request, matched
    // or not, for the per-account rate limit.
    "ALTER TABLE identity_users ADD COLUMN phone TEXT;
    CREATE TABLE identity_reset_codes (
        user_id INTEGER NOT NULL UNIQUE REFERENCES identity_users(id),
        code_sha256 TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE identity_reset_requests (
        username_lc TEXT NOT NULL,
        requested_ms INTEGER NOT NULL
    );
    CREATE INDEX identity_reset_requests_user ON identity_reset_requests(username_lc, requested_ms);",
];

/// The migrations in `dialect`'s terms. SQLite runs [`MIGRATIONS`] as released; PostgreSQL
/// gets migration 1 without SQLite's NOCASE collation (migration 3's index takes its place)
/// and the audit triggers in its own syntax.
fn migrations(dialect: Dialect) -> Vec<String> {
    MIGRATIONS
        .iter()
        .map(|m| match dialect {
            Dialect::Sqlite => m.to_string(),
            Dialect::Postgres if *m == audit::MIGRATION => audit::migration(dialect),
            Dialect::Postgres => m.replace(" COLLATE NOCASE", ""),
        })
        .collect()
}

/// ` FOR UPDATE` on PostgreSQL, nothing on SQLite (which has no such clause and no need: one
/// connection). Appended to a SELECT inside a transaction, it holds the rows read until commit.
pub(crate) fn for_update(c: &Conn<'_>) -> &'static str {
    match c.dialect() {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    }
}

pub struct Identity {
    db: Arc<Db>,
    cfg: IdentityConfig,
    clock: Arc<dyn Clock>,
    policy: PasswordPolicy,
    audit: AuditLog,
    /// Checked when a login names no existing user, so the answer takes as long as for a real
    /// one and timing does not reveal which account names exist.
    dummy_hash: String,
    secrets: crate::secretbox::SecretBox,
    /// Sends password-reset codes; reset is off without it (or without `[identity.password_reset]`).
    code_sender: Option<Arc<dyn CodeSender>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("cfg", &self.cfg).finish()
    }
}

impl Identity {
    /// Validates `cfg`, migrates the identity tables and starts the syslog forwarder if configured.
    pub fn new(db: Arc<Db>, cfg: IdentityConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        cfg.validate()?;
        let migrations = migrations(db.dialect());
        db.migrate_component("identity", &migrations.iter().map(String::as_str).collect::<Vec<_>>())?;
        let policy = PasswordPolicy::new(&cfg).map_err(|e| IdentityError::Setup(e.to_string()))?;
        let key = match &cfg.audit_key {
            Some(r) => Some(r.resolve().map_err(|e| IdentityError::Setup(format!("audit_key: {e}")))?.into_bytes()),
            None => None,
        };
        let forwarder = match cfg.syslog.clone() {
            Some(s) => Some(
                audit::syslog::Forwarder::start(s)
                    .map_err(|e| IdentityError::Setup(format!("syslog forwarder thread: {e}")))?,
            ),
            None => None,
        };
        let audit = AuditLog::new(db.clone(), key, forwarder);
        let dummy_hash = policy.hash(&hex::encode(rand::random::<[u8; 16]>()))?;
        let totp_key = match &cfg.totp_key {
            Some(r) => Some(r.resolve().map_err(|e| IdentityError::Setup(format!("totp_key: {e}")))?),
            None => None,
        };
        let secrets = crate::secretbox::SecretBox::new(totp_key.as_deref());
        Ok(Self { db, cfg, clock, policy, audit, dummy_hash, secrets, code_sender: None })
    }

    /// Turns on password reset by SMS code (with `[identity.password_reset]` configured).
    pub fn with_code_sender(mut self, sender: Arc<dyn CodeSender>) -> Self {
        self.code_sender = Some(sender);
        self
    }

    pub fn config(&self) -> &IdentityConfig {
        &self.cfg
    }

    pub fn policy(&self) -> &PasswordPolicy {
        &self.policy
    }

    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    pub(crate) fn policy_error(&self, violations: Vec<Msg>) -> IdentityError {
        IdentityError::Policy { violations, min_length: self.policy.min_length() }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Records an event other targets own (configuration change, start/stop, view of
    /// sensitive data) in the chained audit log.
    pub fn record(&self, actor: &Actor, event: &str, outcome: Outcome, detail: impl Into<String>) -> Result<()> {
        self.audit.append(self.now_ms(), &AuditEvent::new(&actor.name, &actor.ip, event, outcome, detail))?;
        Ok(())
    }

    /// The permission check every target calls: may this session do `perm` on `campus`
    /// (`None` for group-wide actions)? A refusal is audited. A session that must first
    /// change its password or enrol TOTP may do nothing else.
    pub fn authorize(&self, session: &Session, perm: Permission, campus: Option<&str>) -> Result<()> {
        if let Some(r) = session.restriction {
            return Err(IdentityError::Denied(r.message()));
        }
        if allowed(&session.bindings, perm, campus) {
            return Ok(());
        }
        self.record(
            &session.actor(),
            audit::events::ACCESS_REFUSED,
            Outcome::Refused,
            format!("permission {perm:?} on campus {}", campus.unwrap_or("*")),
        )?;
        Err(IdentityError::Denied(Msg::Forbidden))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_keeps_the_released_migrations_and_postgres_drops_nocase() {
        assert_eq!(migrations(Dialect::Sqlite), MIGRATIONS);
        let pg = migrations(Dialect::Postgres);
        assert_eq!(pg.len(), MIGRATIONS.len());
        assert!(MIGRATIONS[0].contains("COLLATE NOCASE") && !pg[0].contains("NOCASE"));
        assert!(!pg[1].contains("RAISE(ABORT"));
        assert_eq!(pg[2], MIGRATIONS[2]);
    }

    /// A store made before migration 3 (history ordered by rowid, names unique by NOCASE on
    /// SQLite) upgrades: history rows get their order, and names stay unique ignoring case.
    #[test]
    fn migration_3_numbers_old_history_and_keeps_names_unique() {
        let db = Arc::new(tingzhen_core::db::testing::fresh_db());
        let old = migrations(db.dialect());
        db.migrate_component("identity", &old[..2].iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
        db.with_conn(|c| {
            c.execute(
                "INSERT INTO identity_users (id, username, password_hash, password_changed_ms, created_ms, updated_ms)
                 VALUES (7, 'Ward-Nurse', 'h-now', 30, 1, 30)",
                &(),
            )?;
            for (hash, at) in [("h-b", 20), ("h-a", 10), ("h-c", 20)] {
                c.execute(
                    "INSERT INTO identity_password_history (user_id, password_hash, changed_ms) VALUES (7, ?1, ?2)",
                    &tingzhen_core::params![hash, at],
                )?;
            }
            Ok::<_, DbError>(())
        })
        .unwrap();
        let cfg = IdentityConfig {
            argon2: crate::config::Argon2Config { memory_kib: 64, iterations: 1, parallelism: 1 },
            ..IdentityConfig::default()
        };
        let id = Identity::new(db.clone(), cfg, Arc::new(crate::ManualClock::new(1_000))).unwrap();
        let order: Vec<(String, i64)> = db
            .with_conn(|c| {
                c.query_map(
                    "SELECT password_hash, seq FROM identity_password_history WHERE user_id = 7 ORDER BY seq",
                    &(),
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .unwrap();
        assert_eq!(order, [("h-a".to_string(), 1), ("h-b".to_string(), 2), ("h-c".to_string(), 3)]);
        // The name is found and taken whatever its case.
        let found = id.search(&UserFilter { q: Some("ward-NURSE".into()), ..Default::default() }).unwrap();
        assert_eq!(found.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["Ward-Nurse"]);
        let dup = |name: &str| NewUser {
            username: name.into(),
            display_name: String::new(),
            password: "Kettle-river-7342".into(),
            roles: Vec::new(),
            valid_until_ms: None,
            access_windows: Vec::new(),
            phone: None,
        };
        let err = id.create_user(&Actor::new("cli:test", "local"), &dup("WARD-NURSE")).unwrap_err();
        assert!(matches!(err, IdentityError::Exists(_)), "{err}");
        // Straight into the table, the index refuses it too.
        let raw = db.with_conn(|c| {
            c.execute(
                "INSERT INTO identity_users (username, password_hash, password_changed_ms, created_ms, updated_ms)
                 VALUES ('ward-NURSE', 'x', 1, 1, 1)",
                &(),
            )
        });
        assert!(matches!(raw, Err(DbError::Conflict(_))), "{raw:?}");
    }
}
