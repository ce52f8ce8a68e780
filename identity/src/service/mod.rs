//! `Identity`: the service every web-facing target holds. It owns the identity tables (its own
//! component migrations in the shared SQLite store), the password policy, the audit log and the
//! clock. Login, sessions, CSRF/replay checks and TOTP are in `session`; account management,
//! search and reports in `users`; access-time windows in `access`.

mod access;
mod credentials;
mod session;
mod users;

pub use access::AccessWindow;
pub use credentials::TotpEnrolment;
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
use tingzhen_core::db::{Db, DbError};

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

impl From<tingzhen_core::db::rusqlite::Error> for IdentityError {
    fn from(e: tingzhen_core::db::rusqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
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
];

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
        db.migrate_component("identity", MIGRATIONS)?;
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
        Ok(Self { db, cfg, clock, policy, audit, dummy_hash, secrets })
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
