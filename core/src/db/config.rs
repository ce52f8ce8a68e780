//! `[database]`: which relational store to use. Empty is SQLite beside the time-series data
//! (the appliance default); a `postgres://` URL is a database server. The password never sits
//! in the config file (MLPS: no plaintext secrets in configuration): it comes from a file
//! readable only by the service account, or from an environment variable.

use super::DbError;
use super::postgres::PgOptions;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

fn default_max_connections() -> usize {
    8
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbConfig {
    /// Empty: SQLite `tingzhen.db` in the data directory. Otherwise
    /// `postgres://USER@HOST:PORT/DBNAME` (key=value connection strings work too).
    pub url: String,
    /// A file holding the PostgreSQL password (first line).
    pub password_file: Option<PathBuf>,
    /// The name of an environment variable holding the PostgreSQL password.
    pub password_env: Option<String>,
    /// Tables go in this schema (created if missing); unset is the server's search_path.
    pub schema: Option<String>,
    /// PEM file of the CA (or the self-signed certificate) that signed the server's
    /// certificate. Set: the connection is TLS and the server is verified, or refused.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for DbConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            password_file: None,
            password_env: None,
            schema: None,
            ca_file: None,
            max_connections: default_max_connections(),
        }
    }
}

impl DbConfig {
    pub fn is_postgres(&self) -> bool {
        !self.url.trim().is_empty()
    }

    /// Checks what can be checked without connecting.
    pub fn validate(&self) -> Result<(), String> {
        if !self.is_postgres() {
            if self.password_file.is_some()
                || self.password_env.is_some()
                || self.schema.is_some()
                || self.ca_file.is_some()
            {
                return Err("database: password_file, password_env, schema and ca_file need a postgres:// url".into());
            }
            return Ok(());
        }
        let config: tokio_postgres::Config =
            self.url.parse().map_err(|e| format!("database.url: not a PostgreSQL connection string: {e}"))?;
        if config.get_password().is_some() {
            return Err("database.url: must not contain a password; use database.password_file or \
                 database.password_env"
                .into());
        }
        if config.get_user().is_none() {
            return Err("database.url: name the user, as in postgres://tingzhen@db-host/tingzhen".into());
        }
        if self.password_file.is_some() && self.password_env.is_some() {
            return Err("database: set password_file or password_env, not both".into());
        }
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require && self.ca_file.is_none() {
            return Err("database.url: sslmode=require needs database.ca_file, to verify the server".into());
        }
        if self.max_connections == 0 || self.max_connections > 256 {
            return Err("database.max_connections: must be between 1 and 256".into());
        }
        Ok(())
    }

    /// The connection options for PostgreSQL, reading the password now; `None` means SQLite.
    pub(crate) fn postgres_options(&self) -> Result<Option<PgOptions>, DbError> {
        if !self.is_postgres() {
            return Ok(None);
        }
        self.validate().map_err(DbError::Config)?;
        let mut config: tokio_postgres::Config =
            self.url.parse().map_err(|e| DbError::Config(format!("database.url: {e}")))?;
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| DbError::Config(format!("database.password_file {}: cannot read: {e}", path.display())))?;
            config.password(text.lines().next().unwrap_or("").trim_end());
        } else if let Some(var) = &self.password_env {
            let value = std::env::var(var).map_err(|_| {
                DbError::Config(format!("database.password_env: environment variable {var} is not set"))
            })?;
            config.password(value);
        }
        let tls = match &self.ca_file {
            Some(path) => {
                // With a CA the connection is TLS or nothing: never fall back to plain text.
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Some(super::postgres::tls_connector(path)?)
            }
            None => None,
        };
        if config.get_application_name().is_none() {
            config.application_name("tingzhen");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        Ok(Some(PgOptions {
            config,
            schema: self.schema.clone(),
            max_connections: self.max_connections,
            drop_schema_on_close: false,
            tls,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> DbConfig {
        DbConfig { url: url.into(), ..Default::default() }
    }

    #[test]
    fn empty_is_sqlite_and_valid() {
        assert!(!DbConfig::default().is_postgres());
        DbConfig::default().validate().unwrap();
        let orphan = DbConfig { schema: Some("x".into()), ..Default::default() };
        assert!(orphan.validate().unwrap_err().contains("postgres://"));
    }

    #[test]
    fn a_password_in_the_url_is_refused() {
        let err = cfg("postgres://tz:secret@db/tingzhen").validate().unwrap_err();
        assert!(err.contains("must not contain a password"), "{err}");
        assert!(cfg("postgres://tz@db/tingzhen").validate().is_ok());
        assert!(cfg("postgres://db/tingzhen").validate().unwrap_err().contains("user"));
        assert!(cfg("postgres://tz@db:notaport/x").validate().unwrap_err().contains("database.url"));
    }

    #[test]
    fn tls_needs_a_ca_to_verify_with() {
        let err = cfg("postgres://tz@db/x?sslmode=require").validate().unwrap_err();
        assert!(err.contains("ca_file"), "{err}");
        let missing = DbConfig { ca_file: Some("/nonexistent/ca.pem".into()), ..cfg("postgres://tz@db/x") };
        let err = missing.postgres_options().err().unwrap().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn password_comes_from_file_or_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let c = DbConfig { password_file: Some(file), ..cfg("postgres://tz@db/tingzhen") };
        let opts = c.postgres_options().unwrap().unwrap();
        assert_eq!(opts.config.get_password(), Some(&b"s3cret"[..]));
        let missing = DbConfig { password_env: Some("TZ_TEST_NO_SUCH_VAR".into()), ..cfg("postgres://tz@db/x") };
        let err = missing.postgres_options().err().unwrap().to_string();
        assert!(err.contains("TZ_TEST_NO_SUCH_VAR"), "{err}");
    }
}
