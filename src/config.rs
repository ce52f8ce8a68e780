//! The server's TOML config file: one section per concern, every key defaulted, unknown keys
//! refused (with the key named) so a typo never silently falls back to a default.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tingzhen_alerting::AlertingConfig;
use tingzhen_collector::CollectorSettings;
use tingzhen_collector::config::{InventoryConfig, QueryConfig, StorageConfig};
use tingzhen_collector::flows::FlowsConfig;
use tingzhen_core::config::ServerConfig;
use tingzhen_core::db::DbConfig;
use tingzhen_dashboard::DashboardConfig;
use tingzhen_identity::IdentityConfig;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub query: QueryConfig,
    pub inventory: InventoryConfig,
    pub alerting: AlertingConfig,
    pub flows: FlowsConfig,
    pub identity: IdentityConfig,
    pub dashboard: DashboardConfig,
    pub database: DbConfig,
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let config: Config =
            toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?;
        config.validate().with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(config)
    }

    pub fn load_or_default(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            Some(p) => Self::load(p),
            None => Ok(Self::default()),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            bail!("server.listen: {:?} is not an address like 127.0.0.1:8630", self.server.listen);
        }
        if self.server.max_body_bytes < 1024 {
            bail!("server.max_body_bytes: must be at least 1024");
        }
        if let Some(tls) = &self.server.tls {
            for (key, path) in [("server.tls.cert_file", &tls.cert_file), ("server.tls.key_file", &tls.key_file)] {
                if !Path::new(path).is_file() {
                    bail!("{key}: {path:?} does not exist or is not a file");
                }
            }
        }
        self.storage.validate().map_err(anyhow::Error::msg)?;
        self.query.validate().map_err(anyhow::Error::msg)?;
        self.inventory.validate().map_err(anyhow::Error::msg)?;
        self.alerting.validate().map_err(anyhow::Error::msg)?;
        self.flows.validate().map_err(anyhow::Error::msg)?;
        self.identity.validate()?;
        if let Some(reset) = &self.identity.password_reset {
            tingzhen_alerting::notify::verification::check_provider(&self.alerting.notify, &reset.sms_provider)?;
        }
        self.dashboard.validate().map_err(anyhow::Error::msg)?;
        self.database.validate().map_err(anyhow::Error::msg)?;
        Ok(())
    }

    pub fn collector_settings(&self) -> CollectorSettings {
        CollectorSettings {
            storage: self.storage.clone(),
            query: self.query.clone(),
            inventory: self.inventory.clone(),
            max_body_bytes: self.server.max_body_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c, Config::default());
        c.validate().unwrap();
    }

    #[test]
    fn database_section_refuses_an_inline_password() {
        let inline: Config = toml::from_str("[database]\nurl = \"postgres://tz:pw@db/tingzhen\"\n").unwrap();
        assert!(inline.validate().unwrap_err().to_string().contains("password_file"));
        let ok: Config = toml::from_str(
            "[database]\nurl = \"postgres://tz@db/tingzhen\"\npassword_env = \"TZ_DB_PW\"\nschema = \"tingzhen\"\n",
        )
        .unwrap();
        ok.validate().unwrap();
        assert!(ok.database.is_postgres());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<Config>("[storage]\nretension = \"1d\"\n").unwrap_err().to_string();
        assert!(err.contains("retension"), "{err}");
    }

    #[test]
    fn remote_mode_needs_its_section_and_validates_it() {
        let missing: Config = toml::from_str("[storage]\nmode = \"remote\"\n").unwrap();
        assert!(missing.validate().unwrap_err().to_string().contains("storage.remote"));
        let ok: Config = toml::from_str(
            "[storage]\nmode = \"remote\"\n[storage.remote]\nkind = \"victoriametrics\"\n\
             write_url = \"http://127.0.0.1:8428/api/v1/write\"\nquery_url = \"http://127.0.0.1:8428\"\n",
        )
        .unwrap();
        ok.validate().unwrap();
        let influx: Config = toml::from_str(
            "[storage]\nmode = \"remote\"\n[storage.remote]\nkind = \"influxdb2\"\n\
             write_url = \"http://127.0.0.1:8086\"\nquery_url = \"http://127.0.0.1:8428\"\n",
        )
        .unwrap();
        assert!(influx.validate().unwrap_err().to_string().contains("storage.remote.org"));
        let inline_token = toml::from_str::<Config>(
            "[storage.remote]\nkind = \"victoriametrics\"\nwrite_url = \"http://a\"\nquery_url = \"http://a\"\ntoken = \"secret\"\n",
        );
        assert!(inline_token.is_err(), "an inline secret must not be accepted");
    }

    #[test]
    fn backups_are_checked_and_need_the_embedded_engine() {
        let ok: Config = toml::from_str("[storage.backup]\ndir = \"/backup/tingzhen\"\n").unwrap();
        ok.validate().unwrap();
        let b = ok.storage.backup.as_ref().unwrap();
        assert_eq!((b.interval.0.as_secs(), b.keep), (86_400, 7));
        let remote: Config = toml::from_str(
            "[storage]\nmode = \"remote\"\n[storage.remote]\nkind = \"victoriametrics\"\n\
             write_url = \"http://127.0.0.1:8428/api/v1/write\"\nquery_url = \"http://127.0.0.1:8428\"\n\
             [storage.backup]\ndir = \"/backup\"\n",
        )
        .unwrap();
        assert!(remote.validate().unwrap_err().to_string().contains("storage.backup"));
        let typo = toml::from_str::<Config>("[storage.backup]\ndir = \"/b\"\nkeeep = 3\n").unwrap_err().to_string();
        assert!(typo.contains("keeep"), "{typo}");
    }

    #[test]
    fn password_reset_needs_its_sms_provider_configured() {
        let reset = "[identity.password_reset]\nsms_provider = \"http_sms\"\n";
        let c: Config = toml::from_str(reset).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("identity.password_reset.sms_provider") && err.contains("http_sms"), "{err}");
        let gateway = "[alerting.notify.http_sms]\nurl = \"http://10.0.0.9/sms\"\nbody = \"{{text}}\"\n";
        let c: Config = toml::from_str(&format!("{reset}{gateway}")).unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn alerting_section_is_checked() {
        let c: Config = toml::from_str(
            "[alerting.rules]\nfiles = [\"deploy/rules/example.yml\"]\ndebounce = \"20ms\"\n\
             [alerting.collector]\nurl = \"https://collector:8630\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        let err = toml::from_str::<Config>("[alerting.rules]\nfile = []\n").unwrap_err().to_string();
        assert!(err.contains("file"), "{err}");
        let bad: Config = toml::from_str("[alerting.collector]\nurl = \"collector:8630\"\n").unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("alerting.collector.url"));
    }

    #[test]
    fn example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("tingzhen") && name.ends_with(".toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let c: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
                checked += 1;
            }
        }
        assert!(checked > 0, "no tingzhen*.toml example under deploy/");
    }
}
