//! `[[targets]]` in the agent's TOML file: one entry per watched database, middleware, probe or
//! process. Every key is documented here and in `deploy/agent.targets.example.toml`; unknown
//! keys, keys that do not apply to the target's type and inline passwords are errors.

use crate::AgentError;
use serde::Deserialize;
use std::time::Duration;
use tingzhen_core::config::{HumanDuration, SecretRef};

pub const DEFAULT_TARGET_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TARGET_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_TOP_SQL: usize = 10;
pub const MAX_TOP_SQL: usize = tingzhen_core::topsql::MAX_STATEMENTS;

/// What a target is; decides the collector module and the `<kind>_up` metric name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Postgres,
    Mysql,
    Redis,
    Rabbitmq,
    Nats,
    Mqtt,
    Http,
    Tcp,
    Process,
    Oracle,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Redis => "redis",
            Self::Rabbitmq => "rabbitmq",
            Self::Nats => "nats",
            Self::Mqtt => "mqtt",
            Self::Http => "http",
            Self::Tcp => "tcp",
            Self::Process => "process",
            Self::Oracle => "oracle",
        }
    }

    /// The liveness metric of the well-known exporter for this kind (blackbox's
    /// `probe_success` for probes), so their dashboards and alert rules work unchanged.
    pub fn up_metric(self) -> &'static str {
        match self {
            Self::Postgres => "pg_up",
            Self::Mysql => "mysql_up",
            Self::Redis => "redis_up",
            Self::Rabbitmq => "rabbitmq_up",
            Self::Nats => "nats_up",
            Self::Mqtt => "mqtt_up",
            Self::Http | Self::Tcp => "probe_success",
            Self::Process => "namedprocess_up",
            Self::Oracle => "oracledb_up",
        }
    }

    fn takes_credentials(self) -> bool {
        matches!(self, Self::Postgres | Self::Mysql | Self::Redis | Self::Rabbitmq | Self::Mqtt | Self::Oracle)
    }

    fn has_top_sql(self) -> bool {
        matches!(self, Self::Postgres | Self::Mysql | Self::Oracle)
    }
}

/// One `[[targets]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    /// Unique name; the `target` label on its series and its inventory name, e.g. "his-pg".
    pub name: String,
    /// postgres | mysql | redis | rabbitmq | nats | mqtt | http | tcp | process | oracle.
    #[serde(rename = "type")]
    pub kind: TargetKind,
    /// `host:port` (databases, brokers, tcp), a URL (http; nats: its monitoring URL), a process
    /// name (process: matched against `comm` or the first word of the command line), or an
    /// Oracle connect string (`//host:1521/service`).
    pub address: String,
    /// Login user (databases, redis ACL user, rabbitmq, mqtt).
    pub username: Option<String>,
    /// `{ file = "/etc/tingzhen/his-pg.pass" }` or `{ env = "HIS_PG_PASSWORD" }`; never inline.
    #[serde(default, deserialize_with = "crate::config::password_ref")]
    pub password: Option<SecretRef>,
    /// Database to connect to (postgres default "postgres", mysql none); for rabbitmq the
    /// virtual host (default "/").
    pub database: Option<String>,
    /// `campus` label (院区) of the target; default: the agent's.
    pub campus: Option<String>,
    /// `system` label (HIS, LIS, PACS…) of the target; default: the agent's.
    pub system: Option<String>,
    /// Time between collections of this target (default "30s", at least "1s").
    pub interval: Option<HumanDuration>,
    /// Bound on one connection attempt and each query (default "5s" or half the interval if
    /// that is shorter; must be less than the interval).
    pub timeout: Option<HumanDuration>,
    /// Statements in each top-SQL snapshot (postgres, mysql, oracle; default 10, 0 = off).
    pub top_sql: Option<usize>,
    /// http: a string the body must contain for the probe to succeed.
    pub keyword: Option<String>,
    /// http: the status code that counts as success (default: any 2xx).
    pub expect_status: Option<u16>,
    /// rabbitmq: base URL of the management API (e.g. "http://127.0.0.1:15672"); without it
    /// only the AMQP connection is checked.
    pub management_url: Option<String>,
}

/// A target ready to run: the password resolved, defaults applied, keys checked.
#[derive(Clone)]
pub struct TargetConfig {
    pub name: String,
    pub kind: TargetKind,
    pub address: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    pub campus: Option<String>,
    pub system: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub top_sql: usize,
    pub keyword: Option<String>,
    pub expect_status: Option<u16>,
    pub management_url: Option<String>,
}

/// The password never appears in logs or debug output.
impl std::fmt::Debug for TargetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TargetConfig {
    /// A target with the documented defaults (tests and in-code configs).
    pub fn new(name: &str, kind: TargetKind, address: &str) -> Self {
        Self {
            name: name.into(),
            kind,
            address: address.into(),
            username: None,
            password: None,
            database: None,
            campus: None,
            system: None,
            interval: DEFAULT_TARGET_INTERVAL,
            timeout: DEFAULT_TARGET_TIMEOUT,
            top_sql: if kind.has_top_sql() { DEFAULT_TOP_SQL } else { 0 },
            keyword: None,
            expect_status: None,
            management_url: None,
        }
    }

    /// Applies defaults, resolves the password and checks every key; errors name
    /// `targets[i].key`.
    pub fn resolve(i: usize, f: TargetFile) -> Result<Self, AgentError> {
        let bad = |key: &'static str, message: String| AgentError::Target { index: i, key, message };
        let kind = f.kind;
        let not_for = |k: &'static str, set: bool, allowed: bool| -> Result<(), AgentError> {
            if set && !allowed {
                return Err(bad(k, format!("does not apply to type \"{}\"", kind.as_str())));
            }
            Ok(())
        };
        not_for("username", f.username.is_some(), kind.takes_credentials())?;
        not_for("password", f.password.is_some(), kind.takes_credentials())?;
        let takes_database = matches!(kind, TargetKind::Postgres | TargetKind::Mysql | TargetKind::Rabbitmq);
        not_for("database", f.database.is_some(), takes_database)?;
        not_for("top_sql", f.top_sql.is_some(), kind.has_top_sql())?;
        not_for("keyword", f.keyword.is_some(), kind == TargetKind::Http)?;
        not_for("expect_status", f.expect_status.is_some(), kind == TargetKind::Http)?;
        not_for("management_url", f.management_url.is_some(), kind == TargetKind::Rabbitmq)?;
        let password = match &f.password {
            Some(r) => Some(r.resolve().map_err(|e| bad("password", e.to_string()))?),
            None => None,
        };
        let mut c = Self::new(&f.name, kind, &f.address);
        c.username = f.username;
        c.password = password;
        c.database = f.database;
        c.campus = f.campus;
        c.system = f.system;
        c.interval = f.interval.map(|h| h.0).unwrap_or(c.interval);
        // Without a timeout, the default one, but never more than half the interval.
        c.timeout = f.timeout.map(|h| h.0).unwrap_or_else(|| c.timeout.min(c.interval / 2));
        c.top_sql = f.top_sql.unwrap_or(c.top_sql);
        c.keyword = f.keyword;
        c.expect_status = f.expect_status;
        c.management_url = f.management_url;
        c.validate().map_err(|(k, m)| bad(k, m))?;
        Ok(c)
    }

    /// Checks ranges; the error is (key, message).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 128
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(("name", format!("{:?} must be 1..=128 of A-Z a-z 0-9 - _ .", self.name)));
        }
        if self.address.trim().is_empty() || self.address.len() > 512 {
            return Err(("address", "must be 1..=512 characters".into()));
        }
        if self.interval < crate::config::MIN_INTERVAL || self.interval > crate::config::MAX_INTERVAL {
            return Err(("interval", "must be between 1s and 1h".into()));
        }
        if self.timeout.is_zero() || self.timeout >= self.interval {
            return Err(("timeout", "must be more than 0s and less than the interval".into()));
        }
        if self.kind == TargetKind::Oracle && !cfg!(feature = "oracle") {
            return Err(("type", "\"oracle\" needs an agent built with `--features oracle`".into()));
        }
        if self.top_sql > MAX_TOP_SQL {
            return Err(("top_sql", format!("must be at most {MAX_TOP_SQL}")));
        }
        let url_or_name = matches!(self.kind, TargetKind::Http | TargetKind::Process | TargetKind::Oracle)
            || (self.kind == TargetKind::Nats && self.address.starts_with("http"));
        let needs_host_port = !url_or_name;
        if needs_host_port && split_host_port(&self.address).is_none() {
            return Err(("address", format!("{:?} is not host:port", self.address)));
        }
        if self.kind == TargetKind::Http
            && !(self.address.starts_with("http://") || self.address.starts_with("https://"))
        {
            return Err(("address", format!("{:?} must start with http:// or https://", self.address)));
        }
        if let Some(u) =
            self.management_url.as_ref().filter(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(("management_url", format!("{u:?} must start with http:// or https://")));
        }
        Ok(())
    }
}

/// Splits `host:port` (`[v6]:port` too); `None` if there is no valid port.
pub fn split_host_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port))
}

/// Resolves every entry and checks that names are unique.
pub fn resolve_all(files: Vec<TargetFile>) -> Result<Vec<TargetConfig>, AgentError> {
    let mut out: Vec<TargetConfig> = Vec::with_capacity(files.len());
    for (i, f) in files.into_iter().enumerate() {
        let c = TargetConfig::resolve(i, f)?;
        if out.iter().any(|o| o.name == c.name) {
            return Err(AgentError::Target {
                index: out.len(),
                key: "name",
                message: format!("{:?} is used by more than one target", c.name),
            });
        }
        out.push(c);
    }
    if out.len() > tingzhen_core::inventory::MAX_TARGETS {
        return Err(AgentError::Config {
            key: "targets",
            message: format!("at most {} targets per agent", tingzhen_core::inventory::MAX_TARGETS),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct F {
        targets: Vec<TargetFile>,
    }

    fn parse(t: &str) -> Result<Vec<TargetConfig>, String> {
        let f: F = toml::from_str(t).map_err(|e| e.to_string())?;
        resolve_all(f.targets).map_err(|e| e.to_string())
    }

    #[test]
    fn targets_parse_with_defaults_and_clear_errors() {
        let ok = parse(
            "[[targets]]\nname = \"his-pg\"\ntype = \"postgres\"\naddress = \"127.0.0.1:5432\"\nusername = \"m\"\n\
             password = { env = \"PATH\" }\ncampus = \"east\"\nsystem = \"HIS\"\ninterval = \"15s\"\n",
        )
        .unwrap();
        assert_eq!(ok[0].interval, Duration::from_secs(15));
        assert_eq!(ok[0].timeout, DEFAULT_TARGET_TIMEOUT);
        assert_eq!(ok[0].top_sql, DEFAULT_TOP_SQL);
        assert!(ok[0].password.is_some());
        assert!(!format!("{:?}", ok[0]).contains(ok[0].password.as_deref().unwrap()));

        let e =
            parse("[[targets]]\nname = \"a\"\ntype = \"postgres\"\naddress = \"h:1\"\npassword = \"x\"\n").unwrap_err();
        assert!(e.contains("inline"), "{e}");
        let e = parse("[[targets]]\nname = \"a\"\ntype = \"couchdb\"\naddress = \"h:1\"\n").unwrap_err();
        assert!(e.contains("couchdb"), "{e}");
        let e = parse("[[targets]]\nname = \"a\"\ntype = \"redis\"\naddress = \"h:1\"\nkeyword = \"x\"\n").unwrap_err();
        assert!(e.contains("targets[0].keyword"), "{e}");
        let e = parse("[[targets]]\nname = \"a\"\ntype = \"redis\"\naddress = \"nohost\"\n").unwrap_err();
        assert!(e.contains("targets[0].address"), "{e}");
        let e =
            parse("[[targets]]\nname = \"a\"\ntype = \"redis\"\naddress = \"h:1\"\ntimeout = \"40s\"\n").unwrap_err();
        assert!(e.contains("targets[0].timeout"), "{e}");
        let e = parse("[[targets]]\nname = \"a\"\ntype = \"redis\"\naddress = \"h:1\"\ncolour = 1\n").unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let two = "[[targets]]\nname = \"a\"\ntype = \"tcp\"\naddress = \"h:1\"\n";
        let e = parse(&format!("{two}{two}")).unwrap_err();
        assert!(e.contains("more than one"), "{e}");
        let e = parse("[[targets]]\nname = \"a\"\ntype = \"mysql\"\naddress = \"h:1\"\npassword = { env = \"TZ_NO_SUCH_VAR_Q\" }\n")
            .unwrap_err();
        assert!(e.contains("targets[0].password") && e.contains("TZ_NO_SUCH_VAR_Q"), "{e}");
    }
}
