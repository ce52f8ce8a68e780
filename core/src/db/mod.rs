//! The relational store: SQLite embedded (the default and the appliance's choice). Schema
//! changes are numbered migrations applied in order at open, inside one transaction each, so
//! a crash mid-upgrade leaves the previous schema intact.

mod agents;
mod tokens;

pub use rusqlite;

pub use agents::AgentRecord;
pub use tokens::{AuthError, NewToken, TokenRecord};

use rusqlite::{Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create database directory {path}: {source}")]
    Dir { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("{what} {name:?} already exists")]
    Exists { what: &'static str, name: String },
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
}

/// Migrations, in order. Never edit a released one; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: API tokens
    "CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        token_sha256 TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        allow_cidrs TEXT NOT NULL DEFAULT '',
        created_at_ms INTEGER NOT NULL,
        last_used_at_ms INTEGER,
        revoked_at_ms INTEGER
    );
    -- A name is unique among live tokens; revoked ones stay for the record.
    CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens(name) WHERE revoked_at_ms IS NULL;",
    // 2: agent inventory (the latest heartbeat of each host)
    "CREATE TABLE agents (
        host TEXT PRIMARY KEY,
        heartbeat_json TEXT NOT NULL,
        remote_addr TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL
    );",
];

pub struct Db {
    conn: Mutex<Connection>,
}

impl Db {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Dir { path: dir.display().to_string(), source })?;
        }
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Self, DbError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, DbError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Self { conn: Mutex::new(conn) })
    }

    /// Applies a component's own numbered migrations (the alerting state, the outbox, …),
    /// tracked per component so crates add tables without sharing one migration list.
    /// Idempotent: already applied steps are skipped.
    pub fn migrate_component(&self, component: &str, migrations: &[&str]) -> Result<(), DbError> {
        let mut conn = self.conn();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS component_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
        )?;
        let current: i64 = conn
            .query_row("SELECT version FROM component_schema WHERE component = ?1", [component], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        for (i, sql) in migrations.iter().enumerate().skip(current as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO component_schema (component, version) VALUES (?1, ?2)
                 ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                rusqlite::params![component, (i + 1) as i64],
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Runs `f` with the connection locked. Keep `f` short: every user of the store waits on it.
    pub fn with_conn<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        f(&mut self.conn())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (it has its own
        // transactions), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) use crate::sample::now_ms;
