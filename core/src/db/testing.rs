//! Stores for tests, so every store test runs on both engines: SQLite by default, and
//! PostgreSQL when `TINGZHEN_TEST_DATABASE_URL` is set (CI sets it and runs the store tests a
//! second time). Each store gets a schema of its own, dropped afterwards, so tests run in
//! parallel against one database without seeing each other.

use super::{Db, DbError, postgres::PgOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// The variable that points the store tests at PostgreSQL.
pub const TEST_DATABASE_URL: &str = "TINGZHEN_TEST_DATABASE_URL";

fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn postgres_url() -> Option<String> {
    std::env::var(TEST_DATABASE_URL).ok().filter(|u| !u.trim().is_empty())
}

fn pg_options(url: &str, schema: String, drop_schema_on_close: bool) -> Result<PgOptions, DbError> {
    let config = url
        .parse()
        .map_err(|e| DbError::Config(format!("{TEST_DATABASE_URL}: not a PostgreSQL connection string: {e}")))?;
    Ok(PgOptions { config, schema: Some(schema), max_connections: 4, drop_schema_on_close, tls: None })
}

/// A fresh, empty store that disappears when dropped.
pub fn fresh_db() -> Db {
    match postgres_url() {
        Some(url) => Db::open_postgres(pg_options(&url, unique_name("tzt"), true).expect("test database url"))
            .unwrap_or_else(|e| panic!("{TEST_DATABASE_URL} is set but PostgreSQL is unusable: {e}")),
        None => Db::open_in_memory().expect("in-memory SQLite"),
    }
}

/// A store that outlives the [`Db`] handles opened on it, for restart tests: open, drop,
/// open again and find the same rows. Removed when the `TestStore` is dropped.
pub struct TestStore {
    place: Place,
}

enum Place {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

impl TestStore {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let place = match postgres_url() {
            Some(url) => Place::Postgres { url, schema: unique_name("tzt") },
            None => {
                let dir = std::env::temp_dir().join(unique_name("tingzhen-store-test"));
                std::fs::create_dir_all(&dir).expect("temp dir");
                Place::Sqlite(dir)
            }
        };
        Self { place }
    }

    pub fn open(&self) -> Db {
        match &self.place {
            Place::Sqlite(dir) => Db::open(&dir.join("tingzhen.db")).expect("SQLite test store"),
            Place::Postgres { url, schema } => Db::open_postgres(pg_options(url, schema.clone(), false).expect("url"))
                .unwrap_or_else(|e| panic!("{TEST_DATABASE_URL} is set but PostgreSQL is unusable: {e}")),
        }
    }

    /// The SQLite file, for tests that inspect what is on disk; `None` under PostgreSQL.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match &self.place {
            Place::Sqlite(dir) => Some(dir.join("tingzhen.db")),
            Place::Postgres { .. } => None,
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        match &self.place {
            Place::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Place::Postgres { url, schema } => {
                // Opening with drop-on-close removes the schema and everything in it.
                if let Ok(opts) = pg_options(url, schema.clone(), true) {
                    let _ = super::postgres::PgPool::open(opts);
                }
            }
        }
    }
}
