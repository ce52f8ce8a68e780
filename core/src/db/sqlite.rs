//! The SQLite side of [`super::Conn`]: statements go through rusqlite's prepared-statement
//! cache (the flow store runs the same few inserts tens of thousands of times a second), and
//! parameters bind borrowed, without copies.

use super::DbError;
use super::conn::Row;
use super::value::Value;
use rusqlite::types::{ToSqlOutput, ValueRef};

struct Bind<'a>(Value<'a>);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(i),
            Value::Real(f) => ValueRef::Real(f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn binds<'a>(values: &'a [Value<'a>]) -> impl Iterator<Item = Bind<'a>> + 'a {
    values.iter().map(|v| Bind(*v))
}

pub(super) fn execute(c: &rusqlite::Connection, sql: &str, values: &[Value<'_>]) -> Result<u64, DbError> {
    let mut st = c.prepare_cached(sql)?;
    Ok(st.execute(rusqlite::params_from_iter(binds(values)))? as u64)
}

pub(super) fn query<T>(
    c: &rusqlite::Connection,
    sql: &str,
    values: &[Value<'_>],
    f: &mut dyn FnMut(&Row<'_>) -> Result<T, DbError>,
) -> Result<Vec<T>, DbError> {
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query(rusqlite::params_from_iter(binds(values)))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(&Row::sqlite(r))?);
    }
    Ok(out)
}

pub(super) fn column<'r>(r: &'r rusqlite::Row<'_>, idx: usize) -> Result<Value<'r>, DbError> {
    Ok(match r.get_ref(idx)? {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => {
            Value::Text(std::str::from_utf8(t).map_err(|e| DbError::Column { index: idx, message: e.to_string() })?)
        }
        ValueRef::Blob(b) => Value::Blob(b),
    })
}
