//! Rule groups managed through the API, stored in the relational store (SQLite or PostgreSQL,
//! component `alerting.rules`) as the JSON of their validated spec. Only validated groups reach
//! this store.

use super::GroupSpec;
use tingzhen_core::db::{Db, DbError};
use tingzhen_core::params;

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
    #[error("rule store holds an unreadable group {name:?}: {message}")]
    Corrupt { name: String, message: String },
}

pub fn migrate(db: &Db) -> Result<(), RuleStoreError> {
    Ok(db.migrate_component(COMPONENT, MIGRATIONS)?)
}

pub fn load_all(db: &Db) -> Result<Vec<GroupSpec>, RuleStoreError> {
    let rows: Vec<(String, String)> = db.with_conn(|c| {
        c.query_map("SELECT name, spec_json FROM alert_rule_groups ORDER BY name", &(), |r| Ok((r.get(0)?, r.get(1)?)))
    })?;
    rows.into_iter()
        .map(|(name, json)| {
            serde_json::from_str(&json).map_err(|e| RuleStoreError::Corrupt { name, message: e.to_string() })
        })
        .collect()
}

pub fn exists(db: &Db, name: &str) -> Result<bool, RuleStoreError> {
    let found: Option<i64> =
        db.with_conn(|c| c.query_opt("SELECT 1 FROM alert_rule_groups WHERE name = ?1", &[name], |r| r.get(0)))?;
    Ok(found.is_some())
}

/// Inserts or replaces; true if the group was new. Insert-if-absent, then update, in one
/// transaction: two writers of the same new name (PostgreSQL's pooled connections) cannot both
/// see it as new, and neither fails on the other's row.
pub fn upsert(db: &Db, spec: &GroupSpec, now_ms: i64) -> Result<bool, RuleStoreError> {
    let json = serde_json::to_string(spec)
        .map_err(|e| RuleStoreError::Corrupt { name: spec.name.clone(), message: e.to_string() })?;
    Ok(db.with_conn(|c| {
        c.transaction(|tx| {
            let inserted = tx.execute(
                "INSERT INTO alert_rule_groups (name, spec_json, created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT(name) DO NOTHING",
                &params![spec.name, json, now_ms],
            )?;
            if inserted == 0 {
                tx.execute(
                    "UPDATE alert_rule_groups SET spec_json = ?2, updated_at_ms = ?3 WHERE name = ?1",
                    &params![spec.name, json, now_ms],
                )?;
            }
            Ok::<_, DbError>(inserted > 0)
        })
    })?)
}

/// True if a group was deleted.
pub fn delete(db: &Db, name: &str) -> Result<bool, RuleStoreError> {
    let n = db.with_conn(|c| c.execute("DELETE FROM alert_rule_groups WHERE name = ?1", &[name]))?;
    Ok(n > 0)
}
