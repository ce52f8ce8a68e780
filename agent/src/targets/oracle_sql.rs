//! Oracle's SQL and row mapping (oracledb_exporter's metric names), apart from the connection
//! (`oracle.rs`, cargo feature `oracle`) so both are unit-tested in every build — no Oracle
//! runs here. Only views outside the Diagnostics and Tuning Packs are read: `V$INSTANCE`,
//! `V$SESSION`, `V$RESOURCE_LIMIT`, `V$SYSSTAT`, `V$SYSTEM_WAIT_CLASS`, `V$SQLSTATS`,
//! `DBA_TABLESPACE_USAGE_METRICS` — never ASH (`V$ACTIVE_SESSION_HISTORY`) or AWR (`DBA_HIST_*`).
//! Every nullable column is wrapped in NVL/COALESCE or mapped as `Option`.

use super::sql::{Cumulative, Row, StatementKey, col, num};
use crate::host::Out;
use std::collections::HashMap;
use tingzhen_core::topsql::{TopSqlEntry, normalise_query};

pub const INSTANCE: &str = "SELECT i.instance_name, i.host_name, i.version, i.status, i.database_status, \
     ROUND((SYSDATE - i.startup_time) * 86400) FROM v$instance i";

pub const SESSIONS: &str =
    "SELECT NVL(status, 'UNKNOWN'), NVL(type, 'UNKNOWN'), COUNT(*) FROM v$session GROUP BY status, type";

pub const RESOURCES: &str = "SELECT resource_name, current_utilization, \
     CASE WHEN TRIM(limit_value) LIKE 'UNLIMITED' THEN '-1' ELSE TRIM(limit_value) END FROM v$resource_limit";

pub const SYSSTAT: &str = "SELECT name, value FROM v$sysstat WHERE name IN ('parse count (total)', 'execute count', \
     'user commits', 'user rollbacks', 'redo size', 'physical reads', 'session logical reads', 'db block changes')";

pub const WAIT_CLASSES: &str = "SELECT wait_class, NVL(total_waits, 0), NVL(time_waited, 0) / 100 \
     FROM v$system_wait_class WHERE wait_class <> 'Idle'";

pub const TABLESPACES: &str = "SELECT dt.tablespace_name, dt.contents, \
     NVL(dtum.used_space, 0) * dt.block_size, NVL(dtum.tablespace_size, 0) * dt.block_size, \
     NVL(dtum.used_percent, 0) FROM dba_tablespace_usage_metrics dtum \
     JOIN dba_tablespaces dt ON dtum.tablespace_name = dt.tablespace_name";

/// Cumulative statement statistics without text. `ELAPSED_TIME` is in microseconds.
pub const SQLSTATS: &str = "SELECT sql_id, TO_CHAR(plan_hash_value), NVL(executions, 0), NVL(elapsed_time, 0) / 1000, \
     NVL(rows_processed, 0) FROM v$sqlstats WHERE executions > 0";

/// Text of the chosen statements. SQL ids are 13 base-32 characters; anything else is
/// refused, so the list is safe to inline.
pub fn sqltext_sql(ids: &[&str]) -> Option<String> {
    let ok: Vec<String> = ids
        .iter()
        .filter(|i| i.len() == 13 && i.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(|i| format!("'{i}'"))
        .collect();
    (!ok.is_empty()).then(|| {
        format!("SELECT sql_id, MAX(sql_text) FROM v$sqlstats WHERE sql_id IN ({}) GROUP BY sql_id", ok.join(", "))
    })
}

const SYSSTAT_NAMES: &[(&str, &str)] = &[
    ("parse count (total)", "oracledb_activity_parse_count_total"),
    ("execute count", "oracledb_activity_execute_count"),
    ("user commits", "oracledb_activity_user_commits"),
    ("user rollbacks", "oracledb_activity_user_rollbacks"),
    ("redo size", "oracledb_activity_redo_size_bytes"),
    ("physical reads", "oracledb_activity_physical_reads"),
    ("session logical reads", "oracledb_activity_session_logical_reads"),
    ("db block changes", "oracledb_activity_db_block_changes"),
];

pub fn emit_instance(rows: &[Row], out: &mut Out<'_>) {
    for r in rows {
        out.gauge(
            "oracledb_instance_info",
            "Instance name, host, version and status",
            &[
                ("instance", col(r, 0)),
                ("host_name", col(r, 1)),
                ("version", col(r, 2)),
                ("status", col(r, 3)),
                ("database_status", col(r, 4)),
            ],
            1.0,
        );
        if let Some(v) = num(r, 5) {
            out.gauge("oracledb_uptime_seconds", "Seconds since the instance started", &[], v);
        }
    }
}

pub fn emit_sessions(rows: &[Row], out: &mut Out<'_>) {
    for r in rows {
        if let Some(v) = num(r, 2) {
            out.gauge(
                "oracledb_sessions_value",
                "Gauge metric with count of sessions by status and type.",
                &[("status", col(r, 0)), ("type", col(r, 1))],
                v,
            );
        }
    }
}

pub fn emit_resources(rows: &[Row], out: &mut Out<'_>) {
    for r in rows {
        let l = [("resource_name", col(r, 0))];
        if let Some(v) = num(r, 1) {
            out.gauge(
                "oracledb_resource_current_utilization",
                "Generic counter metric from v$resource_limit view in Oracle (current value).",
                &l,
                v,
            );
        }
        if let Some(v) = num(r, 2) {
            out.gauge(
                "oracledb_resource_limit_value",
                "Generic counter metric from v$resource_limit view in Oracle (UNLIMITED: -1).",
                &l,
                v,
            );
        }
    }
}

pub fn emit_sysstat(rows: &[Row], out: &mut Out<'_>) {
    for r in rows {
        let Some((_, name)) = SYSSTAT_NAMES.iter().find(|(n, _)| *n == col(r, 0)) else { continue };
        if let Some(v) = num(r, 1) {
            out.counter(name, &format!("v$sysstat {}", col(r, 0)), &[], v);
        }
    }
}

pub fn emit_wait_classes(rows: &[Row], out: &mut Out<'_>) {
    for r in rows {
        let l = [("wait_class", col(r, 0))];
        if let Some(v) = num(r, 1) {
            out.counter("oracledb_wait_class_waits_total", "Waits by wait class since startup", &l, v);
        }
        if let Some(v) = num(r, 2) {
            out.counter(
                "oracledb_wait_class_time_waited_seconds_total",
                "Time waited by wait class since startup",
                &l,
                v,
            );
        }
    }
}

pub fn emit_tablespaces(rows: &[Row], out: &mut Out<'_>) {
    for r in rows {
        let l = [("tablespace", col(r, 0)), ("type", col(r, 1))];
        let (used, max) = (num(r, 2), num(r, 3));
        if let Some(v) = used {
            out.gauge("oracledb_tablespace_bytes", "Generic counter metric of tablespaces bytes in Oracle.", &l, v);
        }
        if let Some(v) = max {
            out.gauge(
                "oracledb_tablespace_max_bytes",
                "Generic counter metric of tablespaces max bytes in Oracle.",
                &l,
                v,
            );
        }
        if let (Some(u), Some(m)) = (used, max) {
            out.gauge(
                "oracledb_tablespace_free",
                "Generic counter metric of tablespaces free bytes in Oracle.",
                &l,
                (m - u).max(0.0),
            );
        }
        if let Some(v) = num(r, 4) {
            out.gauge(
                "oracledb_tablespace_used_percent",
                "Used share of the tablespace's maximum size, percent",
                &l,
                v,
            );
        }
    }
}

/// `V$SQLSTATS` rows keyed by (sql_id, plan_hash_value, "").
pub fn parse_sqlstats(rows: &[Row]) -> HashMap<StatementKey, Cumulative> {
    rows.iter()
        .filter_map(|r| {
            let c = Cumulative { calls: num(r, 2)?, total_ms: num(r, 3)?, rows: num(r, 4).unwrap_or(0.0) };
            Some(((col(r, 0).to_string(), col(r, 1).to_string(), String::new()), c))
        })
        .collect()
}

pub fn sqlstats_entries(top: &[(StatementKey, Cumulative)], texts: &[Row]) -> Vec<TopSqlEntry> {
    let by: HashMap<&str, &str> = texts.iter().map(|r| (col(r, 0), col(r, 1))).collect();
    top.iter()
        .map(|(k, d)| TopSqlEntry {
            query_id: k.0.clone(),
            query: normalise_query(by.get(k.0.as_str()).copied().unwrap_or("")),
            database: String::new(),
            user: String::new(),
            calls: d.calls as u64,
            total_time_ms: d.total_ms,
            mean_time_ms: if d.calls > 0.0 { d.total_ms / d.calls } else { 0.0 },
            rows: d.rows as u64,
        })
        .collect()
}

/// ORA codes that mean the credentials are wrong (invalid login, locked, expired).
pub fn is_auth_error(code: i32) -> bool {
    matches!(code, 1017 | 1005 | 28000 | 28001 | 1045)
}

#[cfg(test)]
mod tests {
    use super::super::sql::top_deltas;
    use super::*;
    use tingzhen_core::Labels;

    fn row(cols: &[Option<&str>]) -> Row {
        cols.iter().map(|c| c.map(str::to_string)).collect()
    }

    #[test]
    fn no_diagnostics_pack_views_and_nulls_are_guarded() {
        let all = [INSTANCE, SESSIONS, RESOURCES, SYSSTAT, WAIT_CLASSES, TABLESPACES, SQLSTATS];
        for q in all {
            let l = q.to_ascii_lowercase();
            assert!(!l.contains("active_session_history") && !l.contains("dba_hist_"), "{q}");
            assert!(!l.contains("v$sql_monitor") && !l.contains("v$waitclassmetric"), "{q}");
        }
        assert!(SQLSTATS.contains("v$sqlstats") && SQLSTATS.contains("NVL(elapsed_time, 0)"));
        assert!(TABLESPACES.contains("NVL(dtum.used_space, 0)"));
        let t = sqltext_sql(&["0abcd1234efgh", "x' OR 1=1 --", "short"]).unwrap();
        assert!(t.contains("IN ('0abcd1234efgh')") && !t.contains("OR 1=1"), "{t}");
        assert!(sqltext_sql(&["bad"]).is_none());
    }

    #[test]
    fn rows_map_to_exporter_names_null_safely() {
        let base = Labels::new();
        let mut out = Out::new(&base);
        emit_instance(
            &[row(&[Some("ORCL"), Some("db1"), Some("19.0.0.0.0"), Some("OPEN"), Some("ACTIVE"), Some("3600")])],
            &mut out,
        );
        emit_sessions(&[row(&[Some("ACTIVE"), Some("USER"), Some("12")]), row(&[None, None, None])], &mut out);
        emit_resources(
            &[row(&[Some("processes"), Some("50"), Some("300")]), row(&[Some("sessions"), Some("60"), Some("-1")])],
            &mut out,
        );
        emit_sysstat(&[row(&[Some("redo size"), Some("1048576")]), row(&[Some("unknown stat"), Some("1")])], &mut out);
        emit_wait_classes(&[row(&[Some("User I/O"), Some("10"), Some("2.5")])], &mut out);
        emit_tablespaces(
            &[
                row(&[Some("USERS"), Some("PERMANENT"), Some("100"), Some("400"), Some("25")]),
                row(&[Some("TEMP"), Some("TEMPORARY"), None, None, None]),
            ],
            &mut out,
        );
        let fams = out.finish();
        let get = |n: &str| fams.iter().find(|f| f.name == n).map(|f| f.samples.clone()).unwrap_or_default();
        assert_eq!(get("oracledb_uptime_seconds")[0].1, 3600.0);
        assert_eq!(get("oracledb_sessions_value").len(), 1, "a NULL count is left out");
        assert_eq!(get("oracledb_resource_limit_value")[1].1, -1.0);
        assert_eq!(get("oracledb_activity_redo_size_bytes")[0].1, 1048576.0);
        assert_eq!(get("oracledb_wait_class_time_waited_seconds_total")[0].0.get("wait_class"), Some("User I/O"));
        assert_eq!(get("oracledb_tablespace_free")[0].1, 300.0);
        assert_eq!(get("oracledb_tablespace_bytes").len(), 1);
    }

    #[test]
    fn sqlstats_deltas_give_top_sql() {
        let prev = parse_sqlstats(&[row(&[Some("0abcd1234efgh"), Some("1"), Some("10"), Some("100"), Some("10")])]);
        let now = parse_sqlstats(&[
            row(&[Some("0abcd1234efgh"), Some("1"), Some("12"), Some("3100"), Some("12")]),
            row(&[Some("1abcd1234efgh"), Some("7"), None, Some("5"), None]),
        ]);
        assert_eq!(now.len(), 1, "NULL executions are dropped");
        let top = top_deltas(Some(&prev), &now, 5);
        let e = sqlstats_entries(&top, &[row(&[Some("0abcd1234efgh"), Some("SELECT  *  FROM orders WHERE id = :1")])]);
        assert_eq!(e[0].query, "SELECT * FROM orders WHERE id = :1");
        assert_eq!((e[0].calls, e[0].total_time_ms, e[0].mean_time_ms, e[0].rows), (2, 3000.0, 1500.0, 2));
        assert!(is_auth_error(1017) && !is_auth_error(12541));
    }
}
