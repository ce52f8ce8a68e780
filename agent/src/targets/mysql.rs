//! MySQL / MariaDB (the `mysql` crate, sync, text protocol): liveness, version, connections
//! and threads against `max_connections`, queries, slow queries, InnoDB buffer pool, row lock
//! waits, the largest tables' sizes — mysqld_exporter's names — and top-N statements from
//! `performance_schema.events_statements_summary_by_digest` deltas (when performance_schema
//! is on; MariaDB ships it off). Socket read/write timeouts bound every query.

use super::sql::{Cumulative, Row, StatementKey, col, num, top_deltas};
use super::{Collect, Ctx, TargetConfig, TargetError};
use crate::host::Out;
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, Value};
use std::collections::HashMap;
use tingzhen_core::topsql::{TopSqlEntry, normalise_query};

const VARIABLES: &str = "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('version', 'version_comment', \
     'innodb_version', 'max_connections', 'innodb_buffer_pool_size', 'performance_schema', 'read_only', \
     'table_open_cache', 'thread_cache_size', 'long_query_time', 'innodb_log_file_size', 'max_allowed_packet')";

const STATUS: &str = "SHOW GLOBAL STATUS";

/// The largest tables outside the system schemas (bounded: one series per table).
const TABLES: &str = "SELECT table_schema, table_name, coalesce(data_length, 0), coalesce(index_length, 0), \
     coalesce(data_free, 0), coalesce(table_rows, 0) FROM information_schema.tables \
     WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') \
     ORDER BY coalesce(data_length, 0) + coalesce(index_length, 0) DESC LIMIT 50";

/// Cumulative digest statistics without text. `SUM_TIMER_WAIT` is in picoseconds.
const DIGESTS: &str = "SELECT DIGEST, coalesce(SCHEMA_NAME, ''), COUNT_STAR, SUM_TIMER_WAIT / 1000000000, \
     SUM_ROWS_SENT + SUM_ROWS_AFFECTED FROM performance_schema.events_statements_summary_by_digest \
     WHERE DIGEST IS NOT NULL";

/// Digests are hex; anything else is refused, so the chosen ones can be inlined safely.
fn digest_text_sql(digests: &[&str]) -> Option<String> {
    let ok: Vec<String> = digests
        .iter()
        .filter(|d| !d.is_empty() && d.len() <= 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|d| format!("'{d}'"))
        .collect();
    (!ok.is_empty()).then(|| {
        format!(
            "SELECT DIGEST, coalesce(SCHEMA_NAME, ''), DIGEST_TEXT FROM performance_schema.events_statements_summary_by_digest \
             WHERE DIGEST IN ({})",
            ok.join(", ")
        )
    })
}

/// Global status variables kept, with their type. `Com_*` and the buffer-pool page states
/// are mapped separately, as mysqld_exporter does.
const STATUS_KEEP: &[(&str, bool)] = &[
    ("aborted_clients", true),
    ("aborted_connects", true),
    ("bytes_received", true),
    ("bytes_sent", true),
    ("connections", true),
    ("created_tmp_disk_tables", true),
    ("created_tmp_tables", true),
    ("innodb_buffer_pool_read_requests", true),
    ("innodb_buffer_pool_reads", true),
    ("innodb_buffer_pool_wait_free", true),
    ("innodb_buffer_pool_write_requests", true),
    ("innodb_data_read", true),
    ("innodb_data_written", true),
    ("innodb_os_log_written", true),
    ("innodb_row_lock_time", true),
    ("innodb_row_lock_waits", true),
    ("innodb_rows_deleted", true),
    ("innodb_rows_inserted", true),
    ("innodb_rows_read", true),
    ("innodb_rows_updated", true),
    ("innodb_buffer_pool_bytes_data", false),
    ("innodb_buffer_pool_bytes_dirty", false),
    ("innodb_row_lock_current_waits", false),
    ("max_used_connections", false),
    ("open_files", false),
    ("open_tables", false),
    ("opened_tables", true),
    ("queries", true),
    ("questions", true),
    ("select_full_join", true),
    ("select_scan", true),
    ("slow_queries", true),
    ("sort_merge_passes", true),
    ("table_locks_immediate", true),
    ("table_locks_waited", true),
    ("threads_cached", false),
    ("threads_connected", false),
    ("threads_created", true),
    ("threads_running", false),
    ("uptime", false),
];

const COMMANDS: &[&str] = &["select", "insert", "update", "delete", "replace", "commit", "rollback", "begin"];

pub struct Mysql {
    opts: OptsBuilder,
    address: String,
    top_n: usize,
    conn: Option<Conn>,
    digests: Option<HashMap<StatementKey, Cumulative>>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

fn classify(e: &mysql::Error, address: &str) -> TargetError {
    match e {
        // 1045 access denied, 1044 no access to the database, 1698 (MariaDB) access denied
        // for a socket-auth user, 1251 unsupported authentication plugin.
        mysql::Error::MySqlError(m) if matches!(m.code, 1044 | 1045 | 1698 | 1251) => {
            TargetError::Auth(format!("{} ({})", m.message, m.code))
        }
        mysql::Error::MySqlError(m) => TargetError::Query(format!("{} ({})", m.message, m.code)),
        mysql::Error::IoError(_) | mysql::Error::DriverError(_) | mysql::Error::CodecError(_) => {
            TargetError::Connect { address: address.into(), message: e.to_string() }
        }
        other => TargetError::Query(other.to_string()),
    }
}

/// `SHOW GLOBAL VARIABLES` / `STATUS` rows into a lower-cased name → value map.
fn name_values(rows: &[Row]) -> HashMap<String, String> {
    rows.iter().map(|r| (col(r, 0).to_ascii_lowercase(), col(r, 1).to_string())).collect()
}

pub fn emit_variables(vars: &HashMap<String, String>, out: &mut Out<'_>) {
    let get = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
    out.gauge(
        "mysql_version_info",
        "MySQL version and distribution.",
        &[
            ("version", get("version")),
            ("innodb_version", get("innodb_version")),
            ("version_comment", get("version_comment")),
        ],
        1.0,
    );
    for k in [
        "max_connections",
        "innodb_buffer_pool_size",
        "table_open_cache",
        "thread_cache_size",
        "long_query_time",
        "innodb_log_file_size",
        "max_allowed_packet",
    ] {
        if let Some(v) = vars.get(k).and_then(|v| v.parse::<f64>().ok()) {
            out.gauge(
                &format!("mysql_global_variables_{k}"),
                &format!("Generic gauge metric from SHOW GLOBAL VARIABLES ({k})."),
                &[],
                v,
            );
        }
    }
    for k in ["read_only", "performance_schema"] {
        if let Some(v) = vars.get(k) {
            let on = matches!(v.to_ascii_uppercase().as_str(), "ON" | "1");
            out.gauge(
                &format!("mysql_global_variables_{k}"),
                &format!("Whether {k} is on."),
                &[],
                if on { 1.0 } else { 0.0 },
            );
        }
    }
}

pub fn emit_status(status: &HashMap<String, String>, out: &mut Out<'_>) {
    let n = |k: &str| status.get(k).and_then(|v| v.parse::<f64>().ok());
    for (k, counter) in STATUS_KEEP {
        let Some(v) = n(k) else { continue };
        let name = format!("mysql_global_status_{k}");
        let help = format!("Generic metric from SHOW GLOBAL STATUS ({k}).");
        if *counter { out.counter(&name, &help, &[], v) } else { out.gauge(&name, &help, &[], v) }
    }
    for c in COMMANDS {
        if let Some(v) = n(&format!("com_{c}")) {
            out.counter(
                "mysql_global_status_commands_total",
                "Total number of executed MySQL commands.",
                &[("command", c)],
                v,
            );
        }
    }
    for state in ["data", "dirty", "free", "misc"] {
        if let Some(v) = n(&format!("innodb_buffer_pool_pages_{state}")) {
            out.gauge(
                "mysql_global_status_buffer_pool_pages",
                "Innodb buffer pool pages by state.",
                &[("state", state)],
                v,
            );
        }
    }
    if let Some(v) = n("innodb_buffer_pool_pages_total") {
        out.gauge("mysql_global_status_buffer_pool_pages_total", "Innodb buffer pool size in pages.", &[], v);
    }
    if let (Some(req), Some(miss)) = (n("innodb_buffer_pool_read_requests"), n("innodb_buffer_pool_reads"))
        && req > 0.0
    {
        out.gauge(
            "mysql_innodb_buffer_pool_hit_ratio",
            "Share of InnoDB logical reads served from the buffer pool since start.",
            &[],
            (1.0 - miss / req).clamp(0.0, 1.0),
        );
    }
}

pub fn emit_tables(rows: &[Row], out: &mut Out<'_>) {
    for r in rows {
        let (schema, table) = (col(r, 0), col(r, 1));
        for (i, component) in [(2, "data_length"), (3, "index_length"), (4, "data_free")] {
            if let Some(v) = num(r, i) {
                out.gauge(
                    "mysql_info_schema_table_size",
                    "The size of the table components from information_schema.tables",
                    &[("schema", schema), ("table", table), ("component", component)],
                    v,
                );
            }
        }
        if let Some(v) = num(r, 5) {
            out.gauge(
                "mysql_info_schema_table_rows",
                "The estimated number of rows in the table from information_schema.tables",
                &[("schema", schema), ("table", table)],
                v,
            );
        }
    }
}

/// Digest rows keyed by (digest, schema, "").
pub fn parse_digests(rows: &[Row]) -> HashMap<StatementKey, Cumulative> {
    rows.iter()
        .filter_map(|r| {
            let c = Cumulative { calls: num(r, 2)?, total_ms: num(r, 3)?, rows: num(r, 4).unwrap_or(0.0) };
            Some(((col(r, 0).to_string(), col(r, 1).to_string(), String::new()), c))
        })
        .collect()
}

pub fn digest_entries(top: &[(StatementKey, Cumulative)], texts: &[Row]) -> Vec<TopSqlEntry> {
    let by: HashMap<(&str, &str), &str> = texts.iter().map(|r| ((col(r, 0), col(r, 1)), col(r, 2))).collect();
    top.iter()
        .map(|(k, d)| TopSqlEntry {
            query_id: k.0.clone(),
            query: normalise_query(by.get(&(k.0.as_str(), k.1.as_str())).copied().unwrap_or("")),
            database: k.1.clone(),
            user: String::new(),
            calls: d.calls as u64,
            total_time_ms: d.total_ms,
            mean_time_ms: if d.calls > 0.0 { d.total_ms / d.calls } else { 0.0 },
            rows: d.rows as u64,
        })
        .collect()
}

impl Mysql {
    pub fn new(cfg: &TargetConfig) -> Self {
        let (host, port) = super::config::split_host_port(&cfg.address).unwrap_or_default();
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(host))
            .tcp_port(port)
            .prefer_socket(false)
            .user(cfg.username.clone().or(Some("root".into())))
            .pass(cfg.password.clone())
            .db_name(cfg.database.clone())
            .tcp_connect_timeout(Some(cfg.timeout))
            .read_timeout(Some(cfg.timeout))
            .write_timeout(Some(cfg.timeout))
            .stmt_cache_size(0);
        Self { opts, address: cfg.address.clone(), top_n: cfg.top_sql, conn: None, digests: None }
    }

    fn query(conn: &mut Conn, q: &str) -> Result<Vec<Row>, mysql::Error> {
        let rows: Vec<mysql::Row> = conn.query(q)?;
        Ok(rows.into_iter().map(|r| r.unwrap().iter().map(text).collect()).collect())
    }

    fn collect_with(&mut self, cx: &mut Ctx<'_>) -> Result<(), mysql::Error> {
        let conn = self.conn.as_mut().expect("connected before collecting");
        let vars = name_values(&Self::query(conn, VARIABLES)?);
        emit_variables(&vars, &mut cx.out);
        emit_status(&name_values(&Self::query(conn, STATUS)?), &mut cx.out);
        match Self::query(conn, TABLES) {
            Ok(rows) => emit_tables(&rows, &mut cx.out),
            Err(e @ mysql::Error::MySqlError(_)) => cx.partial_errors.push(format!("table sizes: {e}")),
            Err(e) => return Err(e),
        }
        let ps_on = vars.get("performance_schema").is_some_and(|v| v.eq_ignore_ascii_case("ON") || v == "1");
        if self.top_n > 0 && !ps_on {
            cx.partial_errors.push("top SQL: performance_schema is OFF on this server".into());
        } else if self.top_n > 0 {
            match self.top_sql(cx) {
                Ok(()) => {}
                Err(e @ mysql::Error::MySqlError(_)) => cx.partial_errors.push(format!("top SQL: {e}")),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn top_sql(&mut self, cx: &mut Ctx<'_>) -> Result<(), mysql::Error> {
        let conn = self.conn.as_mut().expect("connected before collecting");
        let now = parse_digests(&Self::query(conn, DIGESTS)?);
        let top = top_deltas(self.digests.as_ref(), &now, self.top_n);
        let ids: Vec<&str> = top.iter().map(|t| t.0.0.as_str()).collect();
        if let Some(q) = digest_text_sql(&ids) {
            let texts = Self::query(conn, &q)?;
            cx.top_sql = digest_entries(&top, &texts);
        }
        self.digests = Some(now);
        Ok(())
    }
}

impl Collect for Mysql {
    fn collect(&mut self, cx: &mut Ctx<'_>) -> Result<(), TargetError> {
        if self.conn.is_none() {
            let conn = Conn::new(self.opts.clone()).map_err(|e| classify(&e, &self.address))?;
            self.conn = Some(conn);
        }
        self.collect_with(cx).map_err(|e| {
            self.conn = None;
            classify(&e, &self.address)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tingzhen_core::Labels;

    fn row(cols: &[Option<&str>]) -> Row {
        cols.iter().map(|c| c.map(str::to_string)).collect()
    }

    #[test]
    fn status_maps_to_exporter_names() {
        let base = Labels::new();
        let mut out = Out::new(&base);
        let rows = vec![
            row(&[Some("Threads_connected"), Some("4")]),
            row(&[Some("Com_select"), Some("12")]),
            row(&[Some("Innodb_buffer_pool_pages_free"), Some("100")]),
            row(&[Some("Innodb_buffer_pool_read_requests"), Some("1000")]),
            row(&[Some("Innodb_buffer_pool_reads"), Some("10")]),
            row(&[Some("Slow_queries"), None]),
            row(&[Some("Rpl_status"), Some("AUTH")]),
        ];
        emit_status(&name_values(&rows), &mut out);
        let vars = name_values(&[
            row(&[Some("version"), Some("10.11.6-MariaDB")]),
            row(&[Some("performance_schema"), Some("OFF")]),
        ]);
        emit_variables(&vars, &mut out);
        let fams = out.finish();
        let get = |n: &str| fams.iter().find(|f| f.name == n).map(|f| f.samples[0].1);
        assert_eq!(get("mysql_global_status_threads_connected"), Some(4.0));
        assert_eq!(get("mysql_global_status_commands_total"), Some(12.0));
        assert_eq!(get("mysql_global_status_buffer_pool_pages"), Some(100.0));
        assert_eq!(get("mysql_innodb_buffer_pool_hit_ratio"), Some(0.99));
        assert_eq!(get("mysql_global_status_slow_queries"), None, "NULL is left out");
        assert_eq!(get("mysql_global_variables_performance_schema"), Some(0.0));
        assert_eq!(get("mysql_version_info"), Some(1.0));
    }

    #[test]
    fn digests_give_top_sql_and_only_hex_is_inlined() {
        let prev = parse_digests(&[row(&[Some("ab12"), Some("his"), Some("1"), Some("5"), Some("1")])]);
        let now = parse_digests(&[
            row(&[Some("ab12"), Some("his"), Some("3"), Some("2005"), Some("4")]),
            row(&[Some("cd34"), None, Some("1"), Some("1"), None]),
        ]);
        let top = top_deltas(Some(&prev), &now, 10);
        assert_eq!(top[0].0.0, "ab12");
        let texts = vec![row(&[Some("ab12"), Some("his"), Some("SELECT SLEEP (?)")])];
        let e = digest_entries(&top, &texts);
        assert_eq!((e[0].query.as_str(), e[0].database.as_str(), e[0].calls), ("SELECT SLEEP (?)", "his", 2));
        assert_eq!(e[0].total_time_ms, 2000.0);
        assert_eq!(e[1].query, "");
        let sql = digest_text_sql(&["ab12", "x'; DROP TABLE t; --", ""]).unwrap();
        assert!(sql.contains("IN ('ab12')") && !sql.contains("DROP"));
        assert!(digest_text_sql(&["nothex"]).is_none());
    }
}
