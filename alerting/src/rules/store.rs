//! Rule groups managed through the API, stored in SQLite (component `alerting.rules`) as the
//! JSON of their validated spec. Only validated groups reach this store.

use super::GroupSpec;
use rusqlite::{OptionalExtension, params};
use tingzhen_core::db::{Db, DbError, rusqlite};

pub const COMPONENT: &str = "alerting.rules";

pub const MIGRATIONS: &[&str] = &["CREATE TABLE alert_rule_groups (
        name TEXT PRIMARY KEY,
        spec_json TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );"];

#[derive(Debug, thiserror::Error)]
pub enum RuleStoreError {
    #[error("rule store: {0}")]
    Db(#[from] DbError),
    #[error("rule store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("rule store holds an unreadable group {name:?}: {message}")]
    Corrupt { name: String, message: String },
}

pub fn migrate(db: &Db) -> Result<(), RuleStoreError> {
    Ok(db.migrate_component(COMPONENT, MIGRATIONS)?)
}

pub fn load_all(db: &Db) -> Result<Vec<GroupSpec>, RuleStoreError> {
    let rows: Vec<(String, String)> = db.with_conn(|c| {
        let mut st = c.prepare("SELECT name, spec_json FROM alert_rule_groups ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<Vec<_>, _>>()
    })?;
    rows.into_iter()
        .map(|(name, json)| {
            serde_json::from_str(&json).map_err(|e| RuleStoreError::Corrupt { name, message: e.to_string() })
        })
        .collect()
}

pub fn exists(db: &Db, name: &str) -> Result<bool, RuleStoreError> {
    let found: Option<i64> = db.with_conn(|c| {
        c.query_row("SELECT 1 FROM alert_rule_groups WHERE name = ?1", [name], |r| r.get(0)).optional()
    })?;
    Ok(found.is_some())
}

/// Inserts or replaces; true if the group was new.
pub fn upsert(db: &Db, spec: &GroupSpec, now_ms: i64) -> Result<bool, RuleStoreError> {
    let json = serde_json::to_string(spec)
        .map_err(|e| RuleStoreError::Corrupt { name: spec.name.clone(), message: e.to_string() })?;
    let is_new = !exists(db, &spec.name)?;
    db.with_conn(|c| {
        c.execute(
            "INSERT INTO alert_rule_groups (name, spec_json, created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT(name) DO UPDATE SET spec_json = excluded.spec_json, updated_at_ms = excluded.updated_at_ms",
            params![spec.name, json, now_ms],
        )
    })?;
    Ok(is_new)
}

/// True if a group was deleted.
pub fn delete(db: &Db, name: &str) -> Result<bool, RuleStoreError> {
    let n = db.with_conn(|c| c.execute("DELETE FROM alert_rule_groups WHERE name = ?1", [name]))?;
    Ok(n > 0)
}
