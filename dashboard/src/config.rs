//! `DashboardConfig`: the `[dashboard]` section of the server config. Unknown keys are errors.

use serde::{Deserialize, Serialize};
use tingzhen_core::config::SecretRef;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// How often live sections (overview, big screen, alert lists) refresh, in seconds. Default 10.
    pub refresh_seconds: u64,
    /// Display names of campuses, by the `campus` label agents send (e.g. `east` → 东院).
    pub campuses: Vec<CampusName>,
    /// For `--target dashboard` alone: where the collector and alerting APIs are.
    pub api: Option<ApiConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampusName {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Base URL of a process serving the collector and alerting APIs, e.g. `http://10.1.2.3:8630`.
    pub url: String,
    /// A token with the `admin` scope (`tingzhen token create --scope admin`), from a file or
    /// an environment variable, never inline.
    pub token: SecretRef,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self { refresh_seconds: 10, campuses: Vec::new(), api: None }
    }
}

impl DashboardConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=3600).contains(&self.refresh_seconds) {
            return Err(format!("dashboard.refresh_seconds: {} is not between 1 and 3600", self.refresh_seconds));
        }
        for (i, c) in self.campuses.iter().enumerate() {
            if c.id.trim().is_empty() || c.name.trim().is_empty() {
                return Err(format!("dashboard.campuses[{i}]: id and name must not be empty"));
            }
        }
        if let Some(api) = &self.api
            && !(api.url.starts_with("http://") || api.url.starts_with("https://"))
        {
            return Err(format!("dashboard.api.url: {:?} is not an http:// or https:// URL", api.url));
        }
        Ok(())
    }

    /// The display name of a campus id (the id itself when none is configured).
    pub fn campus_name(&self, id: &str) -> String {
        self.campuses.iter().find(|c| c.id == id).map(|c| c.name.clone()).unwrap_or_else(|| id.to_string())
    }
}
