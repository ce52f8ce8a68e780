//! PostgreSQL (`postgres`, the sync wrapper of `tokio-postgres`): liveness, version, uptime,
//! connections by state against `max_connections`, database and tablespace sizes, cache hit
//! ratio, commits/rollbacks, deadlocks, lock waits, the longest transaction and query,
//! replication lag, WAL position (its rate is the WAL rate) — postgres_exporter's names — and
//! top-N statements from `pg_stat_statements` deltas. The connection stays open between
//! collections and is dropped on any error; `statement_timeout` bounds every query.

use super::postgres_sql::{self as sql, Row, StatementKey};
use super::{Collect, Ctx, TargetConfig, TargetError};
use postgres::{Client, Config, NoTls, SimpleQueryMessage};
use std::collections::HashMap;

pub struct Postgres {
    config: Config,
    address: String,
    top_n: usize,
    client: Option<Client>,
    version_num: u32,
    statements: Option<HashMap<StatementKey, sql::Cumulative>>,
}

/// A useful message: the server's own text for server errors (the default Display of
/// `postgres::Error` is only "db error"), the cause chain otherwise.
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

fn classify(e: &postgres::Error, address: &str) -> TargetError {
    use postgres::error::SqlState;
    if let Some(code) = e.code() {
        if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            return TargetError::Auth(describe(e));
        }
        return TargetError::Query(describe(e));
    }
    if e.is_closed() {
        return TargetError::Connect {
            address: address.into(),
            message: format!("connection closed: {}", describe(e)),
        };
    }
    TargetError::Connect { address: address.into(), message: describe(e) }
}

impl Postgres {
    pub fn new(cfg: &TargetConfig) -> Self {
        let mut config = Config::new();
        if let Some((host, port)) = super::config::split_host_port(&cfg.address) {
            config.host(&host).port(port);
        }
        config
            .user(cfg.username.as_deref().unwrap_or("postgres"))
            .dbname(cfg.database.as_deref().unwrap_or("postgres"))
            .application_name("tingzhen-agent")
            .connect_timeout(cfg.timeout)
            .keepalives(true)
            // Server-side bound on every query of ours; a lock wait cannot hold the thread.
            .options(&format!("-c statement_timeout={0} -c lock_timeout={0}", cfg.timeout.as_millis()));
        if let Some(p) = &cfg.password {
            config.password(p);
        }
        Self {
            config,
            address: cfg.address.clone(),
            top_n: cfg.top_sql,
            client: None,
            version_num: 0,
            statements: None,
        }
    }

    fn query(client: &mut Client, q: &str) -> Result<Vec<Row>, postgres::Error> {
        let mut rows = Vec::new();
        for m in client.simple_query(q)? {
            if let SimpleQueryMessage::Row(r) = m {
                rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
            }
        }
        Ok(rows)
    }

    fn collect_with(&mut self, cx: &mut Ctx<'_>) -> Result<(), postgres::Error> {
        let client = self.client.as_mut().expect("connected before collecting");
        let out = &mut cx.out;
        let v = Self::query(client, sql::VERSION)?;
        let in_recovery = v.first().and_then(|r| sql::num(r, 5)).unwrap_or(0.0) > 0.0;
        if let Some(r) = v.first() {
            self.version_num = sql::emit_version(r, out).unwrap_or(0);
        }
        sql::emit_databases(&Self::query(client, sql::DATABASES)?, out);
        sql::emit_tablespaces(&Self::query(client, sql::TABLESPACES)?, out);
        sql::emit_activity(&Self::query(client, sql::ACTIVITY)?, out);
        sql::emit_locks(&Self::query(client, sql::LOCKS)?, out);
        if in_recovery {
            if let Some(lag) = Self::query(client, sql::STANDBY_LAG)?.first().and_then(|r| sql::num(r, 0)) {
                out.gauge("pg_replication_lag_seconds", "Replication lag behind master in seconds", &[], lag);
            }
        } else {
            if let Some(pos) = Self::query(client, sql::WAL_POSITION)?.first().and_then(|r| sql::num(r, 0)) {
                out.counter("pg_wal_lsn_bytes_total", "WAL bytes written since the cluster was created", &[], pos);
            }
            sql::emit_replicas(&Self::query(client, sql::REPLICAS)?, out);
        }
        if self.top_n > 0 {
            // Optional: without the extension (or the right to read it) the target is still up.
            match self.top_sql(cx) {
                Ok(()) => {}
                Err(e) if e.code().is_some() => cx.partial_errors.push(format!("top SQL: {}", describe(&e))),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn top_sql(&mut self, cx: &mut Ctx<'_>) -> Result<(), postgres::Error> {
        let client = self.client.as_mut().expect("connected before collecting");
        let has = Self::query(client, sql::HAS_STATEMENTS)?.first().and_then(|r| sql::num(r, 0)).unwrap_or(0.0);
        if has < 1.0 {
            cx.partial_errors.push("top SQL: extension pg_stat_statements is not installed in this database".into());
            self.statements = None;
            return Ok(());
        }
        let now = sql::parse_statements(&Self::query(client, sql::statements_sql(self.version_num))?);
        let top = sql::top_deltas(self.statements.as_ref(), &now, self.top_n);
        if !top.is_empty() {
            let ids: Vec<i64> = top.iter().filter_map(|t| t.0.0.parse().ok()).collect();
            let texts = Self::query(client, &sql::statement_text_sql(&ids))?;
            cx.top_sql = sql::top_entries(&top, &texts);
        }
        cx.out.gauge(
            "pg_stat_statements_tracked",
            "Statements pg_stat_statements currently tracks",
            &[],
            now.len() as f64,
        );
        self.statements = Some(now);
        Ok(())
    }
}

impl Collect for Postgres {
    fn collect(&mut self, cx: &mut Ctx<'_>) -> Result<(), TargetError> {
        if self.client.is_none() {
            let client = self.config.connect(NoTls).map_err(|e| classify(&e, &self.address))?;
            self.client = Some(client);
        }
        match self.collect_with(cx) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Start clean next time: the session may be in an unknown state.
                self.client = None;
                Err(classify(&e, &self.address))
            }
        }
    }
}
