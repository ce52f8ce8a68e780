//! `[alerting]` in the server's TOML: where rules come from and how they are evaluated, how a
//! separate alerting process reaches the collector, intake, and the routing and notifier
//! sections (owned by `routing` and `notify`). Unknown keys are errors.

use crate::notify::NotifyConfig;
use crate::routing::RoutingConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tingzhen_core::config::{HumanDuration, SecretRef};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    pub rules: RulesConfig,
    /// Only for `--target alerting` in its own process: the collector to query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collector: Option<CollectorClientConfig>,
    pub intake: IntakeConfig,
    /// Without it alerts are evaluated, stored and listed, but nobody is notified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingConfig>,
    pub notify: NotifyConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Prometheus rule files (read-only; the API manages its own groups in the database).
    pub files: Vec<String>,
    /// Interval of groups that name none.
    pub default_interval: HumanDuration,
    /// After a write wakes a group, wait this long so a burst of writes is one evaluation.
    pub debounce: HumanDuration,
    /// Rule-group evaluations running at once.
    pub max_concurrent: usize,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            files: Vec::new(),
            default_interval: HumanDuration(crate::rules::DEFAULT_INTERVAL),
            debounce: HumanDuration(Duration::from_millis(50)),
            max_concurrent: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorClientConfig {
    /// Base URL, e.g. `https://collector.example:8630`; `/api/v1/query` is appended.
    pub url: String,
    /// A token with the `query` scope.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// CA certificate (PEM) to trust instead of the built-in web roots (an intranet CA).
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default = "default_query_timeout")]
    pub timeout: HumanDuration,
}

fn default_query_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// An intake alert without `endsAt` resolves after this long unless sent again
    /// (Alertmanager's `resolve_timeout`).
    pub resolve_timeout: HumanDuration,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self { resolve_timeout: HumanDuration::from_secs(300) }
    }
}

impl AlertingConfig {
    /// Checks what serde cannot; names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.default_interval.0 < Duration::from_millis(100) {
            return Err("alerting.rules.default_interval: must be at least 100ms".into());
        }
        if self.rules.debounce.0 > Duration::from_secs(10) {
            return Err("alerting.rules.debounce: at most 10s (it delays every alert)".into());
        }
        if self.rules.max_concurrent == 0 {
            return Err("alerting.rules.max_concurrent: must be at least 1".into());
        }
        if let Some(c) = &self.collector {
            if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
                return Err(format!("alerting.collector.url: {:?} must start with http:// or https://", c.url));
            }
            if c.timeout.0.is_zero() {
                return Err("alerting.collector.timeout: must be greater than 0".into());
            }
        }
        if self.intake.resolve_timeout.0.is_zero() {
            return Err("alerting.intake.resolve_timeout: must be greater than 0".into());
        }
        self.notify.validate().map_err(|e| e.to_string())?;
        Ok(())
    }
}
