//! The relational store: SQLite embedded (the default and the appliance's choice) or
//! PostgreSQL (`[database] url = "postgres://…"`, for sites that run a database server). Every
//! store module writes its SQL once, in the subset both engines share, against [`Conn`]; the
//! engines differ only below it (`sqlite.rs`, `postgres.rs`). Schema changes are numbered
//! migrations applied in order at open, inside one transaction each, so a crash mid-upgrade
//! leaves the previous schema intact.

mod agents;
mod config;
mod conn;
mod postgres;
mod sqlite;
pub mod testing;
#[cfg(test)]
mod tests;
mod tokens;
mod value;

pub use crate::params;
pub use agents::AgentRecord;
pub use config::DbConfig;
pub use conn::{Conn, Dialect, Row};
pub use tokens::{AuthError, NewToken, TokenRecord};
pub use value::{FromValue, Param, Params, Value};

use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("cannot create database directory {path}: {source}")]
    Dir { path: String, source: std::io::Error },
    #[error("database file {path}: {source}")]
    File { path: String, source: std::io::Error },
    /// A uniqueness constraint refused the write (the engine's message names it).
    #[error("conflicts with an existing row: {0}")]
    Conflict(String),
    #[error("no row found")]
    NoRows,
    #[error("column {index}: {message}")]
    Column { index: usize, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{what} {name:?} already exists")]
    Exists { what: &'static str, name: String },
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => DbError::NoRows,
            rusqlite::Error::SqliteFailure(ref f, ref msg)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                DbError::Conflict(msg.clone().unwrap_or_else(|| f.to_string()))
            }
            other => DbError::Sqlite(other),
        }
    }
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

enum Engine {
    Sqlite(Mutex<rusqlite::Connection>, String),
    Postgres(Box<postgres::PgPool>),
}

pub struct Db {
    engine: Engine,
}

impl Db {
    /// Opens the store `config` names: PostgreSQL when it has a URL, otherwise SQLite at
    /// `tingzhen.db` in `data_dir`.
    pub fn connect(config: &DbConfig, data_dir: &Path) -> Result<Self, DbError> {
        match config.postgres_options()? {
            Some(options) => Self::open_postgres(options),
            None => Self::open(&data_dir.join("tingzhen.db")),
        }
    }

    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Dir { path: dir.display().to_string(), source })?;
        }
        let conn = rusqlite::Connection::open(path)?;
        Self::init_sqlite(conn, format!("SQLite {}", path.display()))
    }

    pub fn open_in_memory() -> Result<Self, DbError> {
        Self::init_sqlite(rusqlite::Connection::open_in_memory()?, "SQLite in memory".into())
    }

    fn init_sqlite(mut conn: rusqlite::Connection, name: String) -> Result<Self, DbError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(256);
        // The core tables predate per-component tracking and keep SQLite's user_version.
        let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Self { engine: Engine::Sqlite(Mutex::new(conn), name) })
    }

    pub(crate) fn open_postgres(options: postgres::PgOptions) -> Result<Self, DbError> {
        let db = Self { engine: Engine::Postgres(Box::new(postgres::PgPool::open(options)?)) };
        db.migrate_component("core", MIGRATIONS)?;
        Ok(db)
    }

    /// What this store is, for logs and `tingzhen config check` (never includes a password).
    pub fn describe(&self) -> String {
        match &self.engine {
            Engine::Sqlite(_, name) => name.clone(),
            Engine::Postgres(pool) => pool.describe(),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match &self.engine {
            Engine::Sqlite(..) => Dialect::Sqlite,
            Engine::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Applies a component's own numbered migrations (the alerting state, the outbox, …),
    /// tracked per component so crates add tables without sharing one migration list.
    /// Idempotent: already applied steps are skipped. Migrations are written in SQLite's DDL;
    /// PostgreSQL gets them translated (64-bit integers, identity keys).
    pub fn migrate_component(&self, component: &str, migrations: &[&str]) -> Result<(), DbError> {
        let dialect = self.dialect();
        self.with_conn(|c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS component_schema (component TEXT PRIMARY KEY, version BIGINT NOT NULL)",
            )?;
            c.transaction(|tx| {
                if dialect == Dialect::Postgres {
                    // Two collectors starting together against one database: one migrates,
                    // the other waits here and then finds the work done.
                    tx.execute_batch("LOCK TABLE component_schema IN EXCLUSIVE MODE")?;
                }
                let current: i64 = tx
                    .query_opt("SELECT version FROM component_schema WHERE component = ?1", &[component], |r| r.get(0))?
                    .unwrap_or(0);
                for (i, sql) in migrations.iter().enumerate().skip(current as usize) {
                    match dialect {
                        Dialect::Sqlite => tx.execute_batch(sql)?,
                        Dialect::Postgres => tx.execute_batch(&postgres::ddl(sql))?,
                    }
                    tx.execute(
                        "INSERT INTO component_schema (component, version) VALUES (?1, ?2)
                         ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                        &params![component, (i + 1) as i64],
                    )?;
                }
                Ok(())
            })
        })
    }

    /// Writes a consistent, compacted copy of the SQLite store to `dest` (`VACUUM INTO`: one
    /// read transaction, so the copy is the store at one instant; other users of the store wait
    /// meanwhile) and fsyncs it. `Ok(false)` on PostgreSQL, whose backups are the database
    /// server's own (`pg_dump`, base backups), not tingzhen's.
    pub fn backup_to(&self, dest: &Path) -> Result<bool, DbError> {
        if self.dialect() == Dialect::Postgres {
            return Ok(false);
        }
        let target = dest.to_str().ok_or_else(|| DbError::Config(format!("{}: not a UTF-8 path", dest.display())))?;
        self.with_conn(|c| c.execute("VACUUM INTO ?1", &[target]))?;
        let synced = std::fs::File::open(dest).and_then(|f| f.sync_all());
        synced.map_err(|source| DbError::File { path: dest.display().to_string(), source })?;
        Ok(true)
    }

    /// Runs `f` with a connection: SQLite's one connection (locked), or one of PostgreSQL's
    /// pooled connections. Keep `f` short: other users of the store wait for it.
    pub fn with_conn<R, E: From<DbError>>(&self, f: impl FnOnce(&Conn<'_>) -> Result<R, E>) -> Result<R, E> {
        match &self.engine {
            Engine::Sqlite(m, _) => {
                // A panic while holding the lock cannot leave SQLite inconsistent (it has its
                // own transactions, and the guard rolls an open one back), so a poisoned lock
                // is safe to keep using.
                let guard = m.lock().unwrap_or_else(|p| p.into_inner());
                f(&Conn::new(conn::Engine::Sqlite(&guard)))
            }
            Engine::Postgres(pool) => pool.with(|pg| f(&Conn::new(conn::Engine::Postgres(pg))))?,
        }
    }
}

pub(crate) use crate::sample::now_ms;
