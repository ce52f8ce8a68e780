//! Config primitives shared by every TOML file: human durations (`"10s"`, `"15d"`) and
//! secrets, which are never written inline — only as a file path or an environment variable.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

/// A duration written the human way in TOML (`"500ms"`, `"10s"`, `"15d"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn from_secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(Self)
            .map_err(|e| format!("invalid duration {s:?}: {e} (e.g. \"10s\", \"5m\", \"15d\")"))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// Where a secret comes from. Inline secrets are deliberately not representable (SEC: no
/// plaintext keys in config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Read the secret from this file (first line, trimmed). The file should be mode 0600.
    #[serde(default)]
    pub file: Option<String>,
    /// Read the secret from this environment variable.
    #[serde(default)]
    pub env: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret reference names neither `file` nor `env`")]
    Empty,
    #[error("secret reference names both `file` and `env`; choose one")]
    Both,
    #[error("cannot read secret file {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("secret file {0} is empty")]
    EmptyFile(String),
    #[error("environment variable {0} is not set")]
    Env(String),
}

impl SecretRef {
    pub fn file(path: impl Into<String>) -> Self {
        Self { file: Some(path.into()), env: None }
    }

    pub fn resolve(&self) -> Result<String, SecretError> {
        match (&self.file, &self.env) {
            (None, None) => Err(SecretError::Empty),
            (Some(_), Some(_)) => Err(SecretError::Both),
            (Some(path), None) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| SecretError::File { path: path.clone(), source })?;
                let first = text.lines().next().unwrap_or("").trim().to_string();
                if first.is_empty() {
                    return Err(SecretError::EmptyFile(path.clone()));
                }
                Ok(first)
            }
            (None, Some(var)) => std::env::var(var).map_err(|_| SecretError::Env(var.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_clear_errors() {
        assert_eq!("10s".parse::<HumanDuration>().unwrap().0, Duration::from_secs(10));
        assert_eq!("15d".parse::<HumanDuration>().unwrap().0, Duration::from_secs(15 * 86400));
        assert!("ten".parse::<HumanDuration>().unwrap_err().contains("invalid duration"));
    }

    #[test]
    fn secrets_resolve_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "s3cret\n").unwrap();
        assert_eq!(SecretRef::file(p.to_str().unwrap()).resolve().unwrap(), "s3cret");
        assert!(matches!(SecretRef { file: None, env: None }.resolve(), Err(SecretError::Empty)));
        assert!(matches!(
            SecretRef { file: None, env: Some("TZ_NO_SUCH_VAR_X".into()) }.resolve(),
            Err(SecretError::Env(_))
        ));
    }
}

/// The HTTP listener every target shares in all-in-one mode (`[server]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8630`.
    pub listen: String,
    /// Largest request body accepted (bytes, compressed as sent). Default 32 MiB.
    pub max_body_bytes: usize,
    /// HTTPS with rustls when set (SEC: open interfaces over HTTPS).
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { listen: DEFAULT_LISTEN.into(), max_body_bytes: 32 * 1024 * 1024, tls: None }
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8630";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Keep it mode 0600.
    pub key_file: String,
}
