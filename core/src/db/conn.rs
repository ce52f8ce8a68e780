//! One connection of either engine, with the small API every store module uses: `execute`,
//! `query_row` / `query_opt` / `query_map`, and `transaction`. SQL is written once in the subset
//! both engines share (`?N` placeholders, `ON CONFLICT … DO …`, `RETURNING`, `COALESCE`,
//! `CASE`); the PostgreSQL side rewrites placeholders and folds its types back (see
//! `postgres.rs`). Where the dialects truly differ a call site asks [`Conn::dialect`].

use super::DbError;
use super::postgres::PgConn;
use super::sqlite;
use super::value::{FromValue, Params, Value};
use std::cell::Cell;

/// Which SQL dialect a connection speaks, for the rare statement that cannot be shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

pub(super) enum Engine<'c> {
    Sqlite(&'c rusqlite::Connection),
    Postgres(&'c PgConn),
}

/// A borrowed connection, handed to the closure of [`super::Db::with_conn`].
pub struct Conn<'c> {
    engine: Engine<'c>,
    /// Open transactions on this connection; nested ones become savepoints.
    depth: Cell<u32>,
}

/// One result row; columns are read by position.
pub struct Row<'r> {
    inner: RowInner<'r>,
}

enum RowInner<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r tokio_postgres::Row),
}

impl<'r> Row<'r> {
    pub(super) fn sqlite(r: &'r rusqlite::Row<'r>) -> Self {
        Self { inner: RowInner::Sqlite(r) }
    }

    pub(super) fn postgres(r: &'r tokio_postgres::Row) -> Self {
        Self { inner: RowInner::Postgres(r) }
    }

    /// Column `idx` (from 0) as `T`; a NULL needs `Option<T>`.
    pub fn get<T: FromValue>(&self, idx: usize) -> Result<T, DbError> {
        let value = match &self.inner {
            RowInner::Sqlite(r) => sqlite::column(r, idx)?,
            RowInner::Postgres(r) => super::postgres::column(r, idx)?,
        };
        T::from_value(value).map_err(|message| DbError::Column { index: idx, message })
    }

    /// Column `idx` as the engine's value, for code that handles several types itself.
    pub fn value(&self, idx: usize) -> Result<Value<'_>, DbError> {
        match &self.inner {
            RowInner::Sqlite(r) => sqlite::column(r, idx),
            RowInner::Postgres(r) => super::postgres::column(r, idx),
        }
    }
}

impl<'c> Conn<'c> {
    pub(super) fn new(engine: Engine<'c>) -> Self {
        Self { engine, depth: Cell::new(0) }
    }

    pub fn dialect(&self) -> Dialect {
        match self.engine {
            Engine::Sqlite(_) => Dialect::Sqlite,
            Engine::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs one statement; returns the number of rows it changed.
    pub fn execute<P: Params + ?Sized>(&self, sql: &str, params: &P) -> Result<u64, DbError> {
        let values = params.values();
        match &self.engine {
            Engine::Sqlite(c) => sqlite::execute(c, sql, &values),
            Engine::Postgres(c) => c.execute(sql, &values),
        }
    }

    /// Runs several `;`-separated statements without parameters (schema changes, pragmas).
    pub fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        match &self.engine {
            Engine::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Engine::Postgres(c) => c.batch(sql),
        }
    }

    /// Calls `f` for every row, in order, collecting what it returns.
    pub fn query_map<T, P: Params + ?Sized>(
        &self,
        sql: &str,
        params: &P,
        mut f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        let values = params.values();
        match &self.engine {
            Engine::Sqlite(c) => sqlite::query(c, sql, &values, &mut f),
            Engine::Postgres(c) => c.query(sql, &values, &mut f),
        }
    }

    /// The first row, or `None` when there is none.
    pub fn query_opt<T, P: Params + ?Sized>(
        &self,
        sql: &str,
        params: &P,
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        let mut f = Some(f);
        let mut rows = self.query_map(sql, params, |r| match f.take() {
            Some(f) => f(r).map(Some),
            None => Ok(None),
        })?;
        Ok(if rows.is_empty() { None } else { rows.swap_remove(0) })
    }

    /// The first row; [`DbError::NoRows`] when there is none.
    pub fn query_row<T, P: Params + ?Sized>(
        &self,
        sql: &str,
        params: &P,
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.query_opt(sql, params, f)?.ok_or(DbError::NoRows)
    }

    /// Runs `f` in a transaction: committed when it returns `Ok`, rolled back on `Err` or a
    /// panic. A transaction inside a transaction is a savepoint, so store functions can be
    /// transactional on their own and still compose.
    pub fn transaction<R, E: From<DbError>>(&self, f: impl FnOnce(&Conn<'c>) -> Result<R, E>) -> Result<R, E> {
        let depth = self.depth.get();
        let (begin, commit, rollback) = if depth == 0 {
            ("BEGIN".to_owned(), "COMMIT".to_owned(), "ROLLBACK".to_owned())
        } else {
            (format!("SAVEPOINT tz_sp{depth}"), format!("RELEASE tz_sp{depth}"), format!("ROLLBACK TO tz_sp{depth}"))
        };
        self.execute_batch(&begin)?;
        self.depth.set(depth + 1);
        let mut guard = RollbackOnDrop { conn: self, sql: Some(rollback), depth };
        let result = f(self);
        match result {
            Ok(v) => {
                guard.sql = None;
                self.depth.set(depth);
                if let Err(e) = self.execute_batch(&commit) {
                    // A failed COMMIT can leave the transaction open (SQLite when busy); end it
                    // so the connection is usable again.
                    if depth == 0 {
                        let _ = self.execute_batch("ROLLBACK");
                    }
                    return Err(e.into());
                }
                Ok(v)
            }
            Err(e) => Err(e),
        }
    }
}

/// Rolls the transaction back unless it was committed: on `Err`, and on a panic inside it, so
/// a pooled or mutex-shared connection is never handed on mid-transaction.
struct RollbackOnDrop<'a, 'c> {
    conn: &'a Conn<'c>,
    sql: Option<String>,
    depth: u32,
}

impl Drop for RollbackOnDrop<'_, '_> {
    fn drop(&mut self) {
        if let Some(sql) = self.sql.take() {
            let _ = self.conn.execute_batch(&sql);
            if self.depth > 0 {
                let _ = self.conn.execute_batch(&format!("RELEASE tz_sp{}", self.depth));
            }
            self.conn.depth.set(self.depth);
        }
    }
}
