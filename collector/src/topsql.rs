//! Top-SQL snapshots from agents (MON-4 "expensive SQL"): kept in the relational store, one
//! row per snapshot with its statements as JSON (a snapshot is read whole, never queried by
//! statement), with bounded retention by age and by count, so an agent fleet cannot grow
//! the store without limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tingzhen_core::db::{Db, DbError};
use tingzhen_core::params;
use tingzhen_core::topsql::{TopSqlEntry, TopSqlReport};

const COMPONENT: &str = "collector.topsql";
const MIGRATIONS: &[&str] = &["CREATE TABLE topsql_snapshots (
        id INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        target TEXT NOT NULL,
        kind TEXT NOT NULL,
        address TEXT NOT NULL,
        ts_ms INTEGER NOT NULL,
        interval_ms INTEGER NOT NULL,
        statements_json TEXT NOT NULL
    );
    CREATE INDEX topsql_by_target ON topsql_snapshots(host, target, ts_ms);
    CREATE INDEX topsql_by_time ON topsql_snapshots(ts_ms);"];

/// Snapshots older than this are deleted.
pub const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// At most this many snapshots are kept in all (the oldest go first).
pub const MAX_SNAPSHOTS: i64 = 200_000;
/// Pruning runs once every this many inserts (it is a range delete on an index).
const PRUNE_EVERY: u64 = 100;
/// Most snapshots one query answers.
pub const MAX_LIMIT: usize = 1000;

pub struct TopSqlStore {
    db: Arc<Db>,
    inserts: AtomicU64,
}

/// What a query selects; empty strings match everything.
#[derive(Debug, Clone, Default)]
pub struct TopSqlFilter {
    pub host: String,
    pub target: String,
    pub since_ms: i64,
    pub until_ms: i64,
    pub limit: usize,
}

impl TopSqlStore {
    pub fn open(db: Arc<Db>) -> Result<Self, DbError> {
        db.migrate_component(COMPONENT, MIGRATIONS)?;
        Ok(Self { db, inserts: AtomicU64::new(0) })
    }

    /// Stores one (validated) snapshot. Blocking.
    pub fn insert(&self, r: &TopSqlReport, now_ms: i64) -> Result<(), DbError> {
        let json = serde_json::to_string(&r.statements).map_err(|e| DbError::Invalid(e.to_string()))?;
        self.db.with_conn(|c| {
            c.execute(
                "INSERT INTO topsql_snapshots (host, target, kind, address, ts_ms, interval_ms, statements_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &params![r.host, r.target, r.kind, r.address, r.ts_ms, r.interval_ms as i64, json],
            )
        })?;
        if self.inserts.fetch_add(1, Ordering::Relaxed).is_multiple_of(PRUNE_EVERY) {
            self.prune(now_ms, MAX_SNAPSHOTS)?;
        }
        Ok(())
    }

    /// Applies retention: by age, then by count.
    pub fn prune(&self, now_ms: i64, max_rows: i64) -> Result<usize, DbError> {
        self.db.with_conn(|c| {
            let mut n = c.execute("DELETE FROM topsql_snapshots WHERE ts_ms < ?1", &[now_ms - RETENTION_MS])?;
            let cutoff: Option<i64> = c.query_opt(
                "SELECT id FROM topsql_snapshots ORDER BY id DESC LIMIT 1 OFFSET ?1",
                &[max_rows.saturating_sub(1)],
                |r| r.get(0),
            )?;
            if let Some(id) = cutoff {
                n += c.execute("DELETE FROM topsql_snapshots WHERE id < ?1", &[id])?;
            }
            Ok(n as usize)
        })
    }

    /// Snapshots matching `f`, newest first.
    pub fn query(&self, f: &TopSqlFilter) -> Result<Vec<TopSqlReport>, DbError> {
        let limit = f.limit.clamp(1, MAX_LIMIT) as i64;
        self.db.with_conn(|c| {
            let rows = c.query_map(
                "SELECT host, target, kind, address, ts_ms, interval_ms, statements_json FROM topsql_snapshots
                 WHERE (?1 = '' OR host = ?1) AND (?2 = '' OR target = ?2) AND ts_ms >= ?3 AND ts_ms <= ?4
                 ORDER BY ts_ms DESC, id DESC LIMIT ?5",
                &params![f.host, f.target, f.since_ms, f.until_ms, limit],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        r.get::<String>(1)?,
                        r.get::<String>(2)?,
                        r.get::<String>(3)?,
                        r.get::<i64>(4)?,
                        r.get::<i64>(5)?,
                        r.get::<String>(6)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (host, target, kind, address, ts_ms, interval_ms, json) = row;
                // A row we cannot read back is skipped: it was validated when stored.
                let Ok(statements) = serde_json::from_str::<Vec<TopSqlEntry>>(&json) else { continue };
                out.push(TopSqlReport {
                    host,
                    target,
                    kind,
                    address,
                    ts_ms,
                    interval_ms: interval_ms as u64,
                    statements,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(host: &str, target: &str, ts_ms: i64) -> TopSqlReport {
        TopSqlReport {
            host: host.into(),
            target: target.into(),
            kind: "postgres".into(),
            address: "127.0.0.1:5432".into(),
            ts_ms,
            interval_ms: 10_000,
            statements: vec![TopSqlEntry {
                query_id: "42".into(),
                query: "SELECT pg_sleep($1)".into(),
                database: "his".into(),
                user: "app".into(),
                calls: 1,
                total_time_ms: 1500.0,
                mean_time_ms: 1500.0,
                rows: 1,
            }],
        }
    }

    #[test]
    fn stores_filters_and_prunes() {
        let db = Arc::new(tingzhen_core::db::testing::fresh_db());
        let s = TopSqlStore::open(db.clone()).unwrap();
        // Reopening runs no migration twice.
        TopSqlStore::open(db).unwrap();
        let now = 10 * RETENTION_MS;
        // The first insert prunes (nothing is old yet); the second is past retention.
        s.insert(&report("db01", "his-pg", now - 2000), now).unwrap();
        s.insert(&report("db01", "his-pg", now - RETENTION_MS - 1), now).unwrap();
        s.insert(&report("db01", "lis-mysql", now - 1000), now).unwrap();
        s.insert(&report("db02", "his-pg", now), now).unwrap();
        let all = |host: &str, target: &str, since_ms| {
            s.query(&TopSqlFilter {
                host: host.into(),
                target: target.into(),
                since_ms,
                until_ms: i64::MAX,
                limit: 100,
            })
            .unwrap()
        };
        assert_eq!(all("", "", 0).len(), 4);
        let his = all("db01", "his-pg", 0);
        assert_eq!(his.len(), 2);
        assert_eq!(all("db01", "his-pg", now - RETENTION_MS).len(), 1, "since bounds the time");
        assert!(his[0].ts_ms > his[1].ts_ms, "newest first");
        assert_eq!(his[0].statements[0].query, "SELECT pg_sleep($1)");
        assert_eq!(all("", "his-pg", now - 2000).len(), 2);
        assert_eq!(s.prune(now, 1_000).unwrap(), 1, "one snapshot is past retention");
        assert_eq!(s.prune(now, 2).unwrap(), 1, "count bound keeps the newest two");
        let left = all("", "", 0);
        assert_eq!(left.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(), vec!["his-pg", "lis-mysql"]);
    }
}
