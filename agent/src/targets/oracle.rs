//! Oracle (cargo feature `oracle`: the `oracle` crate over ODPI-C, which loads the Oracle
//! client library at run time): sessions, resource limits, activity and redo, wait classes,
//! tablespace usage and top-N SQL from `V$SQLSTATS` deltas, with the SQL and row mapping in
//! `oracle_sql.rs`. Every result set is read whole into rows and dropped before the next query
//! (the crate closes the cursor on drop), so no cursor outlives a collection; `call_timeout`
//! bounds each round trip.

use super::oracle_sql as sql;
use super::sql::{Cumulative, Row, StatementKey, top_deltas};
use super::{Collect, Ctx, TargetConfig, TargetError};
use oracle::{Connection, Connector};
use std::collections::HashMap;
use std::time::Duration;

pub struct Oracle {
    address: String,
    username: String,
    password: String,
    timeout: Duration,
    top_n: usize,
    conn: Option<Connection>,
    stats: Option<HashMap<StatementKey, Cumulative>>,
}

fn classify(e: &oracle::Error, address: &str) -> TargetError {
    match e.db_error().map(|d| d.code()) {
        Some(code) if sql::is_auth_error(code) => TargetError::Auth(e.to_string()),
        // ORA-12xxx are Oracle Net errors (listener, service, timeout): the target is unreachable.
        Some(code) if (12150..=12999).contains(&code) => {
            TargetError::Connect { address: address.into(), message: e.to_string() }
        }
        Some(_) => TargetError::Query(e.to_string()),
        // DPI-1047 (no client library) and friends.
        None => TargetError::Connect { address: address.into(), message: e.to_string() },
    }
}

impl Oracle {
    pub fn new(cfg: &TargetConfig) -> Self {
        Self {
            address: cfg.address.clone(),
            username: cfg.username.clone().unwrap_or_default(),
            password: cfg.password.clone().unwrap_or_default(),
            timeout: cfg.timeout,
            top_n: cfg.top_sql,
            conn: None,
            stats: None,
        }
    }

    fn query(conn: &Connection, q: &str) -> Result<Vec<Row>, oracle::Error> {
        let rs = conn.query(q, &[])?;
        let mut rows = Vec::new();
        for r in rs {
            let r = r?;
            let n = r.sql_values().len();
            let mut cols = Vec::with_capacity(n);
            for i in 0..n {
                cols.push(r.get::<usize, Option<String>>(i)?);
            }
            rows.push(cols);
        }
        Ok(rows)
    }

    fn collect_with(&mut self, cx: &mut Ctx<'_>) -> Result<(), oracle::Error> {
        let conn = self.conn.as_ref().expect("connected before collecting");
        let out = &mut cx.out;
        sql::emit_instance(&Self::query(conn, sql::INSTANCE)?, out);
        sql::emit_sessions(&Self::query(conn, sql::SESSIONS)?, out);
        sql::emit_resources(&Self::query(conn, sql::RESOURCES)?, out);
        sql::emit_sysstat(&Self::query(conn, sql::SYSSTAT)?, out);
        sql::emit_wait_classes(&Self::query(conn, sql::WAIT_CLASSES)?, out);
        // DBA_ views need SELECT_CATALOG_ROLE; without it the rest still counts.
        match Self::query(conn, sql::TABLESPACES) {
            Ok(rows) => sql::emit_tablespaces(&rows, out),
            Err(e) if e.db_error().is_some() => cx.partial_errors.push(format!("tablespaces: {e}")),
            Err(e) => return Err(e),
        }
        if self.top_n > 0 {
            let now = sql::parse_sqlstats(&Self::query(conn, sql::SQLSTATS)?);
            let top = top_deltas(self.stats.as_ref(), &now, self.top_n);
            let ids: Vec<&str> = top.iter().map(|t| t.0.0.as_str()).collect();
            if let Some(q) = sql::sqltext_sql(&ids) {
                cx.top_sql = sql::sqlstats_entries(&top, &Self::query(conn, &q)?);
            }
            self.stats = Some(now);
        }
        Ok(())
    }
}

impl Collect for Oracle {
    fn collect(&mut self, cx: &mut Ctx<'_>) -> Result<(), TargetError> {
        if self.conn.is_none() {
            let conn = Connector::new(self.username.as_str(), self.password.as_str(), self.address.as_str())
                .connect()
                .map_err(|e| classify(&e, &self.address))?;
            conn.set_call_timeout(Some(self.timeout)).map_err(|e| classify(&e, &self.address))?;
            self.conn = Some(conn);
        }
        self.collect_with(cx).map_err(|e| {
            self.conn = None;
            classify(&e, &self.address)
        })
    }
}
