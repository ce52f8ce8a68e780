//! The PostgreSQL collector's SQL and the mapping of its rows to metrics, kept apart from the
//! connection handling so the mapping is unit-tested without a server. Every query casts its
//! columns to text-friendly types and is run with the simple protocol, so a NULL is `None`
//! (never a panic) and versions that differ in column types map the same way.

pub use super::sql::{Cumulative, Row, StatementKey, col, num, top_deltas};
use crate::host::Out;
use std::collections::HashMap;
use tingzhen_core::topsql::{TopSqlEntry, normalise_query};

pub const VERSION: &str = "SELECT current_setting('server_version_num'), version(), \
     current_setting('server_version'), extract(epoch FROM pg_postmaster_start_time()), \
     current_setting('max_connections'), pg_is_in_recovery()::int";

pub const DATABASES: &str = "SELECT d.datid::text, d.datname, d.numbackends, d.xact_commit, d.xact_rollback, \
     d.blks_read, d.blks_hit, d.tup_returned, d.tup_fetched, d.tup_inserted, d.tup_updated, d.tup_deleted, \
     d.conflicts, d.temp_files, d.temp_bytes, d.deadlocks, d.blk_read_time, d.blk_write_time, \
     CASE WHEN has_database_privilege(d.datname, 'CONNECT') THEN pg_database_size(d.datid) END \
     FROM pg_stat_database d JOIN pg_database db ON db.oid = d.datid WHERE NOT db.datistemplate";

/// `pg_stat_database` counters, in the column order of [`DATABASES`] from index 3.
const DB_COUNTERS: [(&str, &str); 15] = [
    ("xact_commit", "Number of transactions in this database that have been committed"),
    ("xact_rollback", "Number of transactions in this database that have been rolled back"),
    ("blks_read", "Number of disk blocks read in this database"),
    ("blks_hit", "Number of times disk blocks were found already in the buffer cache"),
    ("tup_returned", "Number of rows returned by queries in this database"),
    ("tup_fetched", "Number of rows fetched by queries in this database"),
    ("tup_inserted", "Number of rows inserted by queries in this database"),
    ("tup_updated", "Number of rows updated by queries in this database"),
    ("tup_deleted", "Number of rows deleted by queries in this database"),
    ("conflicts", "Number of queries canceled due to conflicts with recovery in this database"),
    ("temp_files", "Number of temporary files created by queries in this database"),
    ("temp_bytes", "Total amount of data written to temporary files by queries in this database"),
    ("deadlocks", "Number of deadlocks detected in this database"),
    ("blk_read_time", "Time spent reading data file blocks by backends in this database, in milliseconds"),
    ("blk_write_time", "Time spent writing data file blocks by backends in this database, in milliseconds"),
];

pub const TABLESPACES: &str = "SELECT spcname, pg_tablespace_size(oid) FROM pg_tablespace";

/// Connections by database and state, the oldest transaction and the longest running query.
pub const ACTIVITY: &str = "SELECT coalesce(datname, ''), coalesce(state, 'unknown'), count(*), \
     coalesce(max(extract(epoch FROM now() - xact_start)), 0), \
     coalesce(max(extract(epoch FROM now() - query_start)) FILTER (WHERE state = 'active'), 0) \
     FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1, 2";

pub const LOCKS: &str = "SELECT coalesce(d.datname, ''), l.mode, count(*), count(*) FILTER (WHERE NOT l.granted) \
     FROM pg_locks l LEFT JOIN pg_database d ON d.oid = l.database GROUP BY 1, 2";

/// Bytes of WAL written since the cluster was created (a counter; its rate is the WAL rate).
pub const WAL_POSITION: &str = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')";

/// On a standby: seconds since the last replayed transaction (0 when fully caught up).
pub const STANDBY_LAG: &str = "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
     ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp())) END";

/// On a primary: each standby's replay distance in bytes and replay lag in seconds.
pub const REPLICAS: &str = "SELECT coalesce(application_name, ''), coalesce(client_addr::text, ''), \
     coalesce(state, ''), pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), \
     coalesce(extract(epoch FROM replay_lag), 0) FROM pg_stat_replication";

pub const HAS_STATEMENTS: &str = "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'";

/// Cumulative statement statistics without text (cheap); `total_exec_time` from PostgreSQL 13.
pub fn statements_sql(version_num: u32) -> &'static str {
    if version_num >= 130000 {
        "SELECT queryid::text, userid::text, dbid::text, calls, total_exec_time, rows \
         FROM pg_stat_statements(false) WHERE queryid IS NOT NULL"
    } else {
        "SELECT queryid::text, userid::text, dbid::text, calls, total_time, rows \
         FROM pg_stat_statements(false) WHERE queryid IS NOT NULL"
    }
}

/// Text, user and database of the chosen statements. Ids are integers we parsed, so they are
/// safe to inline (the simple protocol has no parameters).
pub fn statement_text_sql(ids: &[i64]) -> String {
    let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    format!(
        "SELECT s.queryid::text, s.userid::text, s.dbid::text, coalesce(r.rolname, ''), coalesce(d.datname, ''), s.query \
         FROM pg_stat_statements(true) s LEFT JOIN pg_roles r ON r.oid = s.userid \
         LEFT JOIN pg_database d ON d.oid = s.dbid WHERE s.queryid IN ({})",
        list.join(", ")
    )
}

pub fn emit_version(r: &Row, out: &mut Out<'_>) -> Option<u32> {
    let version_num = num(r, 0).map(|v| v as u32);
    let short = col(r, 2).split_whitespace().next().unwrap_or("").to_string();
    out.gauge(
        "pg_static",
        "Version string as reported by postgres",
        &[("version", col(r, 1)), ("short_version", short.as_str())],
        1.0,
    );
    if let Some(v) = version_num {
        out.gauge("pg_server_version_num", "The server_version_num setting", &[], v as f64);
    }
    if let Some(t) = num(r, 3) {
        out.gauge("pg_postmaster_start_time_seconds", "Time at which postmaster started", &[], t);
    }
    if let Some(m) = num(r, 4) {
        out.gauge("pg_settings_max_connections", "Sets the maximum number of concurrent connections.", &[], m);
    }
    let replica = num(r, 5).unwrap_or(0.0);
    out.gauge("pg_replication_is_replica", "Indicates if the server is a replica", &[], replica);
    version_num
}

pub fn emit_databases(rows: &[Row], out: &mut Out<'_>) {
    for r in rows {
        let l = [("datid", col(r, 0)), ("datname", col(r, 1))];
        if let Some(v) = num(r, 2) {
            out.gauge("pg_stat_database_numbackends", "Number of backends currently connected to this database", &l, v);
        }
        for (i, (name, help)) in DB_COUNTERS.iter().enumerate() {
            if let Some(v) = num(r, 3 + i) {
                out.counter(&format!("pg_stat_database_{name}"), help, &l, v);
            }
        }
        if let (Some(read), Some(hit)) = (num(r, 5), num(r, 6))
            && read + hit > 0.0
        {
            out.gauge(
                "pg_stat_database_cache_hit_ratio",
                "Share of block reads served from the buffer cache since the statistics were reset",
                &l[1..],
                hit / (read + hit),
            );
        }
        if let Some(size) = num(r, 18) {
            out.gauge("pg_database_size_bytes", "Disk space used by the database", &[("datname", col(r, 1))], size);
        }
    }
}

pub fn emit_tablespaces(rows: &[Row], out: &mut Out<'_>) {
    for r in rows {
        if let Some(v) = num(r, 1) {
            out.gauge("pg_tablespace_size_bytes", "Disk space used by the tablespace", &[("tablespace", col(r, 0))], v);
        }
    }
}

pub fn emit_activity(rows: &[Row], out: &mut Out<'_>) {
    let mut total = 0.0;
    for r in rows {
        let l = [("datname", col(r, 0)), ("state", col(r, 1))];
        let n = num(r, 2).unwrap_or(0.0);
        total += n;
        out.gauge("pg_stat_activity_count", "number of connections in this state", &l, n);
        out.gauge(
            "pg_stat_activity_max_tx_duration",
            "max duration in seconds any active transaction has been running",
            &l,
            num(r, 3).unwrap_or(0.0),
        );
        out.gauge(
            "pg_stat_activity_max_query_duration",
            "max duration in seconds any active query has been running",
            &l,
            num(r, 4).unwrap_or(0.0),
        );
    }
    out.gauge("pg_stat_activity_connections", "Client connections, all databases and states", &[], total);
}

pub fn emit_locks(rows: &[Row], out: &mut Out<'_>) {
    let mut waiting = 0.0;
    for r in rows {
        out.gauge(
            "pg_locks_count",
            "Number of locks",
            &[("datname", col(r, 0)), ("mode", col(r, 1))],
            num(r, 2).unwrap_or(0.0),
        );
        waiting += num(r, 3).unwrap_or(0.0);
    }
    out.gauge("pg_locks_waiting", "Lock requests not granted yet (sessions waiting on a lock)", &[], waiting);
}

pub fn emit_replicas(rows: &[Row], out: &mut Out<'_>) {
    for r in rows {
        let l = [("application_name", col(r, 0)), ("client_addr", col(r, 1)), ("state", col(r, 2))];
        if let Some(v) = num(r, 3) {
            out.gauge("pg_stat_replication_pg_wal_lsn_diff", "Lag in bytes between master and slave", &l, v);
        }
        out.gauge(
            "pg_stat_replication_replay_lag_seconds",
            "Time since the standby last replayed WAL the primary flushed",
            &l,
            num(r, 4).unwrap_or(0.0),
        );
    }
}

/// `pg_stat_statements` rows (from [`statements_sql`]) keyed by (queryid, userid, dbid); rows
/// whose queryid is not an integer are dropped, so ids can be inlined into SQL safely.
pub fn parse_statements(rows: &[Row]) -> HashMap<StatementKey, Cumulative> {
    rows.iter()
        .filter_map(|r| {
            let id: i64 = col(r, 0).parse().ok()?;
            let c = Cumulative { calls: num(r, 3)?, total_ms: num(r, 4)?, rows: num(r, 5).unwrap_or(0.0) };
            Some(((id.to_string(), col(r, 1).to_string(), col(r, 2).to_string()), c))
        })
        .collect()
}

/// Joins the chosen deltas with their text rows (from [`statement_text_sql`]).
pub fn top_entries(top: &[(StatementKey, Cumulative)], texts: &[Row]) -> Vec<TopSqlEntry> {
    let by_key: HashMap<StatementKey, &Row> =
        texts.iter().map(|r| ((col(r, 0).to_string(), col(r, 1).to_string(), col(r, 2).to_string()), r)).collect();
    top.iter()
        .map(|(k, d)| {
            let r = by_key.get(k);
            let text = r.map(|r| col(r, 5)).unwrap_or("");
            TopSqlEntry {
                query_id: k.0.clone(),
                query: normalise_query(text),
                database: r.map(|r| col(r, 4)).unwrap_or("").to_string(),
                user: r.map(|r| col(r, 3)).unwrap_or("").to_string(),
                calls: d.calls as u64,
                total_time_ms: d.total_ms,
                mean_time_ms: if d.calls > 0.0 { d.total_ms / d.calls } else { 0.0 },
                rows: d.rows as u64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tingzhen_core::Labels;

    fn row(cols: &[Option<&str>]) -> Row {
        cols.iter().map(|c| c.map(str::to_string)).collect()
    }

    #[test]
    fn nulls_never_panic_and_are_left_out() {
        let base = Labels::from_pairs([("target", "pg")]);
        let mut out = Out::new(&base);
        let mut r = vec![Some("5".to_string()), Some("test".to_string())];
        r.extend(std::iter::repeat_n(None, 17));
        emit_databases(&[r, vec![]], &mut out);
        emit_version(&row(&[None, None, None, None, None, None]), &mut out);
        emit_activity(&[row(&[Some(""), Some("idle"), Some("3"), None, None])], &mut out);
        let fams = out.finish();
        assert!(fams.iter().all(|f| f.name != "pg_database_size_bytes"));
        let act = fams.iter().find(|f| f.name == "pg_stat_activity_count").unwrap();
        assert_eq!(act.samples[0].1, 3.0);
        assert!(fams.iter().any(|f| f.name == "pg_static"));
    }

    #[test]
    fn database_rows_map_to_exporter_names() {
        let base = Labels::new();
        let mut out = Out::new(&base);
        let vals: Vec<String> = (0..19).map(|i| (i * 10).to_string()).collect();
        let mut r: Row = vals.into_iter().map(Some).collect();
        r[1] = Some("his".into());
        emit_databases(&[r], &mut out);
        let fams = out.finish();
        let get = |n: &str| fams.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("{n}")).samples[0].1;
        assert_eq!(get("pg_stat_database_xact_commit"), 30.0);
        assert_eq!(get("pg_stat_database_deadlocks"), 150.0);
        assert_eq!(get("pg_database_size_bytes"), 180.0);
        assert!((get("pg_stat_database_cache_hit_ratio") - 60.0 / 110.0).abs() < 1e-9);
    }

    #[test]
    fn statements_join_their_text() {
        let stats = vec![
            row(&[Some("1"), Some("10"), Some("5"), Some("3"), Some("2100.5"), Some("3")]),
            row(&[Some("not-a-number"), Some("10"), Some("5"), Some("3"), Some("1"), Some("3")]),
            row(&[Some("2"), Some("10"), Some("5"), None, Some("1"), Some("3")]),
        ];
        let now = parse_statements(&stats);
        assert_eq!(now.len(), 1, "bad ids and NULL calls are dropped");
        let prev: HashMap<_, _> = [(
            ("1".to_string(), "10".to_string(), "5".to_string()),
            Cumulative { calls: 2.0, total_ms: 100.5, rows: 2.0 },
        )]
        .into();
        let top = top_deltas(Some(&prev), &now, 5);
        let texts =
            vec![row(&[Some("1"), Some("10"), Some("5"), Some("app"), Some("his"), Some("SELECT  pg_sleep($1)")])];
        let e = top_entries(&top, &texts);
        assert_eq!(e[0].query, "SELECT pg_sleep($1)");
        assert_eq!((e[0].user.as_str(), e[0].database.as_str()), ("app", "his"));
        assert_eq!((e[0].calls, e[0].total_time_ms, e[0].mean_time_ms), (1, 2000.0, 2000.0));
        assert_eq!(
            top_entries(&top, &[])[0].query,
            "",
            "a statement evicted before its text was read keeps its numbers"
        );
    }

    #[test]
    fn statement_sql_follows_the_version() {
        assert!(statements_sql(150000).contains("total_exec_time"));
        assert!(statements_sql(120000).contains("total_time"));
        assert!(statement_text_sql(&[1, -2]).contains("IN (1, -2)"));
    }
}
