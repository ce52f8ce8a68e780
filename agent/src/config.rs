//! The agent's configuration: the TOML file (every key documented on [`FileConfig`] and in
//! `deploy/agent.example.toml`), command-line overrides, and the resolved [`AgentConfig`] the
//! library runs on.

use crate::AgentError;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tingzhen_core::Labels;
use tingzhen_core::config::{HumanDuration, SecretRef};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The inventory accepts at most an hour between reports.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9631";
pub const DEFAULT_TOP_N: usize = 10;
pub const MAX_TOP_N: usize = 100;
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// A full process scan costs about 1 ms of kernel time per hundred processes; top lists do not
/// need 1-second resolution, so at short intervals processes are scanned less often.
pub const DEFAULT_PROCESS_INTERVAL: Duration = Duration::from_secs(10);
/// Prometheus's own default `max_samples_per_send`.
pub const DEFAULT_BATCH_SIZE: usize = 2000;
pub const DEFAULT_BUFFER_DIR: &str = "/var/lib/tingzhen-agent/buffer";
pub const DEFAULT_BUFFER_MAX_BYTES: u64 = 256 * 1024 * 1024;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The TOML file. Every key is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Base URL of the collector, e.g. `https://collector.example:8630`. Without it the agent
    /// only serves `/metrics` (scrape-only mode) and sends nothing.
    pub collector: Option<String>,
    /// Bearer token with the `ingest` scope: `{ file = "/etc/tingzhen/agent.token" }` or
    /// `{ env = "TINGZHEN_TOKEN" }`; never inline.
    #[serde(default, deserialize_with = "secret_ref")]
    pub token: Option<SecretRef>,
    /// PEM file with the CA(s) that signed the collector's certificate; when set, only these
    /// are trusted. Without it the bundled Mozilla roots are.
    pub ca_file: Option<PathBuf>,
    /// Time between collections (default "10s", minimum "1s").
    pub interval: Option<HumanDuration>,
    /// Address of the agent's own `/metrics` (default "127.0.0.1:9631"; "off" disables it).
    pub listen: Option<String>,
    /// How many processes each top list (by CPU, by memory) keeps (default 10, at most 100).
    pub top_n: Option<usize>,
    /// Least time between two scans of every process (the top lists and process counts;
    /// default "10s"). Collections in between leave process series out rather than repeat
    /// old values.
    pub process_interval: Option<HumanDuration>,
    /// Time between inventory heartbeats (default "30s").
    pub heartbeat_interval: Option<HumanDuration>,
    /// Most samples in one remote-write request (default 2000).
    pub batch_size: Option<usize>,
    /// Timeout of one request to the collector (default "10s").
    pub timeout: Option<HumanDuration>,
    /// Longest wait between retries while the collector is unreachable (default "30s").
    pub max_backoff: Option<HumanDuration>,
    /// Static labels put on every series.
    #[serde(default)]
    pub labels: LabelsConfig,
    /// The on-disk buffer used while the collector is unreachable.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// Databases, middleware, probes and processes to watch (`[[targets]]`, see
    /// [`crate::targets::config::TargetFile`]).
    #[serde(default)]
    pub targets: Vec<crate::targets::config::TargetFile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    /// `host` label and inventory key (default: the hostname).
    pub host: Option<String>,
    /// `ip` label (default: the address on the default route's interface).
    pub ip: Option<String>,
    /// `campus` label (院区), e.g. "east".
    pub campus: Option<String>,
    /// `role` label, e.g. "db", "app", "middleware".
    pub role: Option<String>,
    /// `system` label: the business system the host serves, e.g. "HIS", "LIS", "PACS".
    pub system: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Directory of the buffer's segment files (default "/var/lib/tingzhen-agent/buffer").
    pub dir: Option<PathBuf>,
    /// Bound on the buffer's size in bytes (default 268435456, 256 MiB); when reached, the
    /// oldest data is dropped and counted.
    pub max_bytes: Option<u64>,
}

/// Refuses `token = "..."` with a message that says what to write instead.
fn secret_ref<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretRef>, D::Error> {
    secret_ref_for(d, "token")
}

/// Refuses `password = "..."` in `[[targets]]` the same way.
pub(crate) fn password_ref<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretRef>, D::Error> {
    secret_ref_for(d, "password")
}

fn secret_ref_for<'de, D: serde::Deserializer<'de>>(d: D, key: &str) -> Result<Option<SecretRef>, D::Error> {
    let v = toml::Value::deserialize(d)?;
    if v.is_str() {
        return Err(serde::de::Error::custom(format!(
            "inline {key}s are not allowed; write {key} = {{ file = \"/path\" }} or {key} = {{ env = \"VAR\" }}"
        )));
    }
    v.try_into::<SecretRef>().map(Some).map_err(serde::de::Error::custom)
}

impl FileConfig {
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| AgentError::ReadConfig { path: path.into(), source })?;
        Self::parse(&text).map_err(|message| AgentError::ParseConfig { path: path.into(), message })
    }
}

/// Command-line values; each one set wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub collector: Option<String>,
    pub interval: Option<HumanDuration>,
    pub listen: Option<String>,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// Static labels stamped on every series, scraped or pushed. Empty values are left off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticLabels {
    pub host: String,
    pub ip: String,
    pub campus: String,
    pub role: String,
    pub system: String,
}

impl StaticLabels {
    /// `host` from the hostname, `ip` from the routing table; the rest empty.
    pub fn detect() -> Self {
        let host = crate::host::system::uname().nodename;
        let ip = crate::host::system::host_ips().0.map(|ip| ip.to_string()).unwrap_or_default();
        Self { host, ip, ..Self::default() }
    }

    pub fn to_labels(&self) -> Labels {
        Labels::from_pairs([
            ("host", self.host.as_str()),
            ("ip", self.ip.as_str()),
            ("campus", self.campus.as_str()),
            ("role", self.role.as_str()),
            ("system", self.system.as_str()),
        ])
    }
}

/// Everything the agent runs on; public so the server's `tingzhen up` can build one in code.
#[derive(Clone)]
pub struct AgentConfig {
    /// Collector base URL; `None` for scrape-only.
    pub collector: Option<String>,
    /// Bearer token sent to the collector.
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub interval: Duration,
    /// Random delay before the first collection (up to one interval), so that a fleet restarted
    /// together does not collect and send in lockstep. Tests turn it off.
    pub jitter: bool,
    /// Address of `/metrics`; `None` disables the server.
    pub listen: Option<SocketAddr>,
    pub labels: StaticLabels,
    pub buffer_dir: PathBuf,
    pub buffer_max_bytes: u64,
    pub top_n: usize,
    pub process_interval: Duration,
    pub heartbeat_interval: Duration,
    pub batch_size: usize,
    pub timeout: Duration,
    pub max_backoff: Duration,
    /// Watched targets, each collected on its own thread and schedule.
    pub targets: Vec<crate::targets::TargetConfig>,
}

/// The token never appears in logs or debug output.
impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("collector", &self.collector)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("interval", &self.interval)
            .field("jitter", &self.jitter)
            .field("listen", &self.listen)
            .field("labels", &self.labels)
            .field("buffer_dir", &self.buffer_dir)
            .field("buffer_max_bytes", &self.buffer_max_bytes)
            .field("top_n", &self.top_n)
            .field("process_interval", &self.process_interval)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("batch_size", &self.batch_size)
            .field("timeout", &self.timeout)
            .field("max_backoff", &self.max_backoff)
            .field("targets", &self.targets)
            .finish()
    }
}

impl Default for AgentConfig {
    /// The documented defaults, with `host` and `ip` detected from this machine.
    fn default() -> Self {
        Self {
            collector: None,
            token: None,
            ca_file: None,
            interval: DEFAULT_INTERVAL,
            jitter: true,
            listen: Some(DEFAULT_LISTEN.parse().expect("valid default address")),
            labels: StaticLabels::detect(),
            buffer_dir: DEFAULT_BUFFER_DIR.into(),
            buffer_max_bytes: DEFAULT_BUFFER_MAX_BYTES,
            top_n: DEFAULT_TOP_N,
            process_interval: DEFAULT_PROCESS_INTERVAL,
            heartbeat_interval: DEFAULT_HEARTBEAT,
            batch_size: DEFAULT_BATCH_SIZE,
            timeout: DEFAULT_TIMEOUT,
            max_backoff: DEFAULT_MAX_BACKOFF,
            targets: Vec::new(),
        }
    }
}

fn parse_listen(s: &str) -> Result<Option<SocketAddr>, AgentError> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| AgentError::Config {
        key: "listen",
        message: format!("{s:?} is not an address like \"127.0.0.1:9631\" (or \"off\")"),
    })
}

impl AgentConfig {
    /// Resolves a file config and command-line overrides (the token also from `TINGZHEN_TOKEN`,
    /// which the CLI reads into `overrides.token`).
    pub fn resolve(file: FileConfig, ov: &Overrides) -> Result<Self, AgentError> {
        let d = Self::default();
        let token = match (&ov.token, &file.token) {
            (Some(t), _) if !t.trim().is_empty() => Some(t.trim().to_string()),
            (_, Some(r)) => Some(r.resolve()?),
            _ => None,
        };
        let listen = match ov.listen.as_deref().or(file.listen.as_deref()) {
            Some(s) => parse_listen(s)?,
            None => d.listen,
        };
        let l = file.labels;
        let c = Self {
            collector: ov.collector.clone().or(file.collector).filter(|c| !c.trim().is_empty()),
            token,
            ca_file: ov.ca_file.clone().or(file.ca_file),
            interval: ov.interval.or(file.interval).map(|h| h.0).unwrap_or(d.interval),
            jitter: true,
            listen,
            labels: StaticLabels {
                host: l.host.unwrap_or(d.labels.host),
                ip: l.ip.unwrap_or(d.labels.ip),
                campus: l.campus.unwrap_or_default(),
                role: l.role.unwrap_or_default(),
                system: l.system.unwrap_or_default(),
            },
            buffer_dir: file.buffer.dir.unwrap_or(d.buffer_dir),
            buffer_max_bytes: file.buffer.max_bytes.unwrap_or(d.buffer_max_bytes),
            top_n: file.top_n.unwrap_or(d.top_n),
            process_interval: file.process_interval.map(|h| h.0).unwrap_or(d.process_interval),
            heartbeat_interval: file.heartbeat_interval.map(|h| h.0).unwrap_or(d.heartbeat_interval),
            batch_size: file.batch_size.unwrap_or(d.batch_size),
            timeout: file.timeout.map(|h| h.0).unwrap_or(d.timeout),
            max_backoff: file.max_backoff.map(|h| h.0).unwrap_or(d.max_backoff),
            targets: crate::targets::config::resolve_all(file.targets)?,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), AgentError> {
        let bad = |key: &'static str, message: &str| Err(AgentError::Config { key, message: message.into() });
        if self.interval < MIN_INTERVAL || self.interval > MAX_INTERVAL {
            return bad("interval", "must be between 1s and 1h");
        }
        if self.heartbeat_interval < MIN_INTERVAL {
            return bad("heartbeat_interval", "must be at least 1s");
        }
        if self.process_interval < MIN_INTERVAL || self.process_interval > MAX_INTERVAL {
            return bad("process_interval", "must be between 1s and 1h");
        }
        if self.top_n > MAX_TOP_N {
            return bad("top_n", "must be at most 100 (it bounds the number of process series)");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.buffer_max_bytes < 64 * 1024 {
            return bad("buffer.max_bytes", "must be at least 65536");
        }
        if self.timeout.is_zero() {
            return bad("timeout", "must be more than 0s");
        }
        if self.max_backoff < Duration::from_millis(100) {
            return bad("max_backoff", "must be at least 100ms");
        }
        for (i, t) in self.targets.iter().enumerate() {
            t.validate().map_err(|(key, message)| AgentError::Target { index: i, key, message })?;
        }
        let labels = self.labels.to_labels().into_vec();
        if let Err(e) = Labels::validated(labels) {
            return Err(AgentError::Config { key: "labels", message: e.to_string() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_in_deploy_parses_and_resolves() {
        let text = include_str!("../../deploy/agent.example.toml");
        let fc = FileConfig::parse(text).unwrap();
        assert!(fc.collector.is_some());
        assert!(fc.token.is_some());
        // The example reads the token from a file that does not exist here; the flag wins.
        let c = AgentConfig::resolve(fc, &Overrides { token: Some("t".into()), ..Default::default() }).unwrap();
        assert_eq!(c.token.as_deref(), Some("t"));
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.labels.campus, "east");
    }

    #[test]
    fn targets_example_in_deploy_parses_and_resolves() {
        let text = include_str!("../../deploy/agent.targets.example.toml");
        let mut fc = FileConfig::parse(text).unwrap();
        assert!(fc.targets.len() >= 9);
        // The example's password files do not exist here; every other key is checked for real.
        for t in &mut fc.targets {
            if t.password.is_some() {
                t.password = Some(SecretRef { file: None, env: Some("PATH".into()) });
            }
        }
        let c = AgentConfig::resolve(fc, &Overrides { token: Some("t".into()), ..Default::default() }).unwrap();
        let pg = c.targets.iter().find(|t| t.name == "his-pg").unwrap();
        assert_eq!((pg.campus.as_deref(), pg.top_sql), (Some("east"), 10));
        assert!(c.targets.iter().any(|t| t.kind == crate::targets::TargetKind::Process));
    }

    #[test]
    fn unknown_keys_and_inline_tokens_are_errors() {
        let e = FileConfig::parse("colector = \"http://x\"\n").unwrap_err();
        assert!(e.contains("colector"), "{e}");
        let e = FileConfig::parse("[labels]\nzone = \"a\"\n").unwrap_err();
        assert!(e.contains("zone"), "{e}");
        let e = FileConfig::parse("token = \"tz_secret\"\n").unwrap_err();
        assert!(e.contains("inline tokens are not allowed"), "{e}");
        let e = FileConfig::parse("interval = \"soon\"\n").unwrap_err();
        assert!(e.contains("invalid duration"), "{e}");
    }

    #[test]
    fn flags_override_file_and_limits_hold() {
        let fc = FileConfig::parse(
            "collector = \"http://a:1\"\ninterval = \"30s\"\nlisten = \"off\"\n[labels]\nhost = \"db01\"\nrole = \"db\"\n",
        )
        .unwrap();
        let ov = Overrides {
            collector: Some("http://b:2".into()),
            interval: Some(HumanDuration::from_secs(5)),
            ..Default::default()
        };
        let c = AgentConfig::resolve(fc, &ov).unwrap();
        assert_eq!(c.collector.as_deref(), Some("http://b:2"));
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.listen, None);
        assert_eq!(c.labels.to_labels().get("host"), Some("db01"));
        assert_eq!(c.labels.to_labels().get("role"), Some("db"));
        assert_eq!(c.labels.to_labels().get("campus"), None);

        let ov = Overrides { interval: Some("500ms".parse().unwrap()), ..Default::default() };
        let e = AgentConfig::resolve(FileConfig::default(), &ov).unwrap_err();
        assert!(matches!(e, AgentError::Config { key: "interval", .. }));
        let fc = FileConfig::parse("top_n = 1000\n").unwrap();
        assert!(matches!(
            AgentConfig::resolve(fc, &Overrides::default()),
            Err(AgentError::Config { key: "top_n", .. })
        ));
        let fc = FileConfig::parse("token = { env = \"TZ_AGENT_TEST_NO_SUCH_VAR\" }\n").unwrap();
        assert!(matches!(AgentConfig::resolve(fc, &Overrides::default()), Err(AgentError::Secret(_))));
        let dbg = format!("{:?}", AgentConfig { token: Some("tz_secret".into()), ..AgentConfig::default() });
        assert!(!dbg.contains("tz_secret"));
    }
}
