//! `[alerting.notify]`: receivers (which channels, which fallback chain, which language) and the
//! providers they use (SMTP, WeChat Work, SMS, webhooks), plus retry/backoff. Secrets are only
//! ever `SecretRef`s; validation names the offending key so a bad config fails at startup, not
//! at 3 a.m. when the first alert is due.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tingzhen_core::config::{HumanDuration, SecretRef};

pub const WECOM_API_BASE: &str = "https://qyapi.weixin.qq.com";
pub const ALIYUN_SMS_ENDPOINT: &str = "https://dysmsapi.aliyuncs.com";
pub const TENCENT_SMS_ENDPOINT: &str = "https://sms.tencentcloudapi.com";

/// A bad notify configuration, naming the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("alerting.notify.{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Who can be notified; routing names these.
    pub receivers: Vec<ReceiverConfig>,
    pub retry: RetryConfig,
    /// Outbound HTTPS (WeChat Work, SMS, webhooks).
    pub http: HttpConfig,
    pub smtp: Option<SmtpConfig>,
    pub wecom_app: Option<WecomAppConfig>,
    /// Group robots by name; a channel picks one with `robot = "<name>"`.
    pub wecom_robots: BTreeMap<String, WecomRobotConfig>,
    pub aliyun_sms: Option<AliyunSmsConfig>,
    pub tencent_sms: Option<TencentSmsConfig>,
    pub http_sms: Option<HttpSmsConfig>,
    /// Webhooks by name; a channel picks one with `webhook = "<name>"`.
    pub webhooks: BTreeMap<String, WebhookConfig>,
}

/// Message language. zh-CN is the default: the appliance's users read Chinese.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Language {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZhCn => "zh-CN",
            Self::En => "en",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    #[serde(default)]
    pub language: Language,
    /// Every channel here gets the notification.
    pub channels: Vec<ChannelConfig>,
    /// Tried in order, one step per channel that ends dead (attempts exhausted or rejected).
    #[serde(default)]
    pub fallback: Vec<ChannelConfig>,
}

/// One way to reach a receiver. The provider settings live in their own sections; this says
/// which provider and which people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelConfig {
    Email {
        to: Vec<String>,
        #[serde(default)]
        cc: Vec<String>,
    },
    WecomRobot {
        robot: String,
        /// Phone numbers to @-mention in the group (`@all` for everyone).
        #[serde(default)]
        mention_mobiles: Vec<String>,
    },
    WecomApp {
        #[serde(default)]
        users: Vec<String>,
        #[serde(default)]
        parties: Vec<String>,
    },
    Sms {
        provider: SmsProvider,
        phones: Vec<String>,
    },
    Webhook {
        webhook: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsProvider {
    Aliyun,
    Tencent,
    Http,
}

impl SmsProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aliyun => "aliyun",
            Self::Tencent => "tencent",
            Self::Http => "http",
        }
    }
}

impl ChannelConfig {
    /// The channel's kind as stored and reported (`email`, `wecom_robot`, `sms_aliyun`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Email { .. } => "email",
            Self::WecomRobot { .. } => "wecom_robot",
            Self::WecomApp { .. } => "wecom_app",
            Self::Sms { provider: SmsProvider::Aliyun, .. } => "sms_aliyun",
            Self::Sms { provider: SmsProvider::Tencent, .. } => "sms_tencent",
            Self::Sms { provider: SmsProvider::Http, .. } => "sms_http",
            Self::Webhook { .. } => "webhook",
        }
    }

    /// A readable name that stays the same across restarts as long as the config does, so a
    /// stored delivery finds its channel again (`wecom_robot:infra`, `sms_aliyun`, …).
    fn base_name(&self) -> String {
        match self {
            Self::WecomRobot { robot, .. } => format!("wecom_robot:{robot}"),
            Self::Webhook { webhook } => format!("webhook:{webhook}"),
            other => other.kind().to_string(),
        }
    }
}

impl ReceiverConfig {
    /// Names for `channels` then `fallback`, unique within the receiver (`#2`, `#3` on repeats).
    pub fn channel_names(&self) -> (Vec<String>, Vec<String>) {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut name = |c: &ChannelConfig| {
            let base = c.base_name();
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { base } else { format!("{base}#{n}") }
        };
        let primary = self.channels.iter().map(&mut name).collect();
        let fallback = self.fallback.iter().map(&mut name).collect();
        (primary, fallback)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per channel before it is a dead letter and the fallback chain moves on.
    pub max_attempts: u32,
    pub initial_backoff: HumanDuration,
    pub max_backoff: HumanDuration,
    pub multiplier: f64,
    /// Sends in flight at once across all receivers.
    pub concurrency: usize,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: HumanDuration::from_secs(2),
            max_backoff: HumanDuration::from_secs(300),
            multiplier: 2.0,
            concurrency: 16,
        }
    }
}

impl RetryConfig {
    /// The wait after the `attempt`-th failed attempt (1-based): initial × multiplier^(n-1), capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.initial_backoff.0.as_secs_f64();
        let exp = self.multiplier.powi(attempt.saturating_sub(1).min(60) as i32);
        let secs = (base * exp).min(self.max_backoff.0.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Per request, connect to last byte.
    pub timeout: HumanDuration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { timeout: HumanDuration::from_secs(10) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587); refusing servers without it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS. Only accepted for a loopback host (a local relay or a test server).
    Plain,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 587 for starttls, 465 for tls, 25 for plain.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// The From address, e.g. `"听诊告警 <alerts@hospital.example>"`.
    pub from: String,
    /// Extra PEM CA trusted for this server (an intranet mail relay).
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}

fn wecom_base() -> String {
    WECOM_API_BASE.into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomAppConfig {
    pub corp_id: String,
    pub agent_id: i64,
    pub secret: SecretRef,
    /// PEM CA bundle trusted instead of the built-in Mozilla roots (an intranet gateway or proxy
    /// with a private CA). Verification is never turned off.
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default = "wecom_base")]
    pub api_base: String,
    /// WeChat Work drops an identical message to the same people within this interval
    /// (`enable_duplicate_check`), which closes the resend-after-crash window for this channel.
    #[serde(default = "default_dup_interval")]
    pub duplicate_check_interval: HumanDuration,
}

fn default_dup_interval() -> HumanDuration {
    HumanDuration::from_secs(1800)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomRobotConfig {
    /// The `key` of the robot's webhook URL; it is the robot's credential.
    pub key: SecretRef,
    #[serde(default = "wecom_base")]
    pub api_base: String,
    /// PEM CA bundle trusted instead of the built-in Mozilla roots (an intranet gateway or proxy
    /// with a private CA). Verification is never turned off.
    #[serde(default)]
    pub ca_file: Option<String>,
}

fn aliyun_endpoint() -> String {
    ALIYUN_SMS_ENDPOINT.into()
}
fn aliyun_region() -> String {
    "cn-hangzhou".into()
}
fn aliyun_max_chars() -> usize {
    35
}
fn tencent_endpoint() -> String {
    TENCENT_SMS_ENDPOINT.into()
}
fn tencent_region() -> String {
    "ap-guangzhou".into()
}
fn tencent_max_chars() -> usize {
    12
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliyunSmsConfig {
    pub access_key_id: SecretRef,
    pub access_key_secret: SecretRef,
    pub sign_name: String,
    pub template_code: String,
    /// Template variable name → handlebars expression over the message context. Default:
    /// `{ alert = "{{title}}", status = "{{status_name}}", time = "{{time}}" }`.
    #[serde(default)]
    pub template_params: BTreeMap<String, String>,
    /// Characters per variable value (Aliyun's default limit for notification templates is 35).
    #[serde(default = "aliyun_max_chars")]
    pub max_param_chars: usize,
    #[serde(default = "aliyun_endpoint")]
    pub endpoint: String,
    #[serde(default = "aliyun_region")]
    pub region_id: String,
    /// PEM CA bundle trusted instead of the built-in Mozilla roots (an intranet gateway or proxy
    /// with a private CA). Verification is never turned off.
    #[serde(default)]
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TencentSmsConfig {
    pub secret_id: SecretRef,
    pub secret_key: SecretRef,
    pub sdk_app_id: String,
    pub sign_name: String,
    pub template_id: String,
    /// Handlebars expressions for the template's `{1}`, `{2}`, … in order. Default:
    /// `["{{title}}", "{{status_name}}", "{{time}}"]`.
    #[serde(default)]
    pub template_params: Vec<String>,
    /// Characters per variable value. Tencent documents 6 or 12 depending on page and account
    /// type (none for some enterprise accounts); set it to what your approved template allows.
    #[serde(default = "tencent_max_chars")]
    pub max_param_chars: usize,
    #[serde(default = "tencent_endpoint")]
    pub endpoint: String,
    #[serde(default = "tencent_region")]
    pub region: String,
    /// PEM CA bundle trusted instead of the built-in Mozilla roots (an intranet gateway or proxy
    /// with a private CA). Verification is never turned off.
    #[serde(default)]
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSmsConfig {
    pub url: String,
    /// Handlebars body; context has the message fields plus `phones` (array), `phone` (with
    /// `per_phone`) and `text` (the rendered SMS text). `{{json x}}` writes a JSON string.
    pub body: String,
    #[serde(default = "json_content_type")]
    pub content_type: String,
    /// One request per phone number instead of one for all.
    #[serde(default)]
    pub per_phone: bool,
    /// Header carrying the credential, e.g. `Authorization` with a secret `Bearer …`.
    #[serde(default)]
    pub auth_header: Option<String>,
    #[serde(default)]
    pub auth_secret: Option<SecretRef>,
    /// Characters of `text` (the gateway's message limit).
    #[serde(default = "http_sms_max_chars")]
    pub max_chars: usize,
    /// PEM CA bundle trusted instead of the built-in Mozilla roots (an intranet gateway or proxy
    /// with a private CA). Verification is never turned off.
    #[serde(default)]
    pub ca_file: Option<String>,
}

fn json_content_type() -> String {
    "application/json".into()
}
fn http_sms_max_chars() -> usize {
    300
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Sent as `Authorization: Bearer <secret>` when set.
    #[serde(default)]
    pub bearer: Option<SecretRef>,
    /// Alerts per body (0 = all); the rest are counted in `truncatedAlerts`.
    #[serde(default)]
    pub max_alerts: usize,
    /// `externalURL` in the body (this tingzhen's address for links back).
    #[serde(default)]
    pub external_url: String,
    /// PEM CA bundle trusted instead of the built-in Mozilla roots (an intranet gateway or proxy
    /// with a private CA). Verification is never turned off.
    #[serde(default)]
    pub ca_file: Option<String>,
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(ConfigError::new(key, format!("{url:?} must start with https:// or http://")))
    }
}

fn check_template(key: &str, template: &str) -> Result<(), ConfigError> {
    crate::templates::Templates::check_str(key, template).map_err(|e| ConfigError::new(key, e.to_string()))
}

fn nonempty(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.trim().is_empty() { Err(ConfigError::new(key, "must not be empty")) } else { Ok(()) }
}

impl NotifyConfig {
    /// Checks references and values; secrets are resolved later, when the notifiers are built.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.retry;
        if r.max_attempts == 0 {
            return Err(ConfigError::new("retry.max_attempts", "must be at least 1"));
        }
        if !(r.multiplier.is_finite() && r.multiplier >= 1.0) {
            return Err(ConfigError::new("retry.multiplier", "must be a number ≥ 1"));
        }
        if r.concurrency == 0 {
            return Err(ConfigError::new("retry.concurrency", "must be at least 1"));
        }
        if r.initial_backoff.0.is_zero() || r.max_backoff.0 < r.initial_backoff.0 {
            return Err(ConfigError::new(
                "retry.initial_backoff",
                "must be greater than 0 and at most retry.max_backoff",
            ));
        }
        if let Some(s) = &self.smtp {
            nonempty("smtp.host", &s.host)?;
            nonempty("smtp.from", &s.from)?;
            if s.security == SmtpSecurity::Plain && !is_loopback(&s.host) {
                return Err(ConfigError::new(
                    "smtp.security",
                    format!("\"plain\" is only allowed for a loopback host, not {:?}; use starttls or tls", s.host),
                ));
            }
            if s.password.is_some() && s.username.is_none() {
                return Err(ConfigError::new("smtp.username", "required when smtp.password is set"));
            }
        }
        if let Some(a) = &self.wecom_app {
            nonempty("wecom_app.corp_id", &a.corp_id)?;
            check_url("wecom_app.api_base", &a.api_base)?;
        }
        for (name, robot) in &self.wecom_robots {
            check_url(&format!("wecom_robots.{name}.api_base"), &robot.api_base)?;
        }
        if let Some(a) = &self.aliyun_sms {
            check_url("aliyun_sms.endpoint", &a.endpoint)?;
            nonempty("aliyun_sms.sign_name", &a.sign_name)?;
            nonempty("aliyun_sms.template_code", &a.template_code)?;
            if a.max_param_chars < 2 {
                return Err(ConfigError::new("aliyun_sms.max_param_chars", "must be at least 2"));
            }
            for (k, t) in &a.template_params {
                check_template(&format!("aliyun_sms.template_params.{k}"), t)?;
            }
        }
        if let Some(t) = &self.tencent_sms {
            check_url("tencent_sms.endpoint", &t.endpoint)?;
            nonempty("tencent_sms.sdk_app_id", &t.sdk_app_id)?;
            nonempty("tencent_sms.template_id", &t.template_id)?;
            if t.max_param_chars < 2 {
                return Err(ConfigError::new("tencent_sms.max_param_chars", "must be at least 2"));
            }
            for (i, tpl) in t.template_params.iter().enumerate() {
                check_template(&format!("tencent_sms.template_params[{i}]"), tpl)?;
            }
        }
        if let Some(h) = &self.http_sms {
            check_url("http_sms.url", &h.url)?;
            check_template("http_sms.body", &h.body)?;
            if h.auth_header.is_some() != h.auth_secret.is_some() {
                return Err(ConfigError::new("http_sms.auth_header", "auth_header and auth_secret go together"));
            }
        }
        for (name, w) in &self.webhooks {
            check_url(&format!("webhooks.{name}.url"), &w.url)?;
        }
        let mut names = HashSet::new();
        for (i, rc) in self.receivers.iter().enumerate() {
            let key = format!("receivers[{i}]");
            nonempty(&format!("{key}.name"), &rc.name)?;
            if !names.insert(rc.name.as_str()) {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    format!("receiver {:?} is defined twice", rc.name),
                ));
            }
            // A receiver without channels records its notifications in the console's
            // notification log and sends nothing (Alertmanager's null receiver); a fallback
            // needs channels to fall back from.
            if rc.channels.is_empty() && !rc.fallback.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}.fallback"),
                    "a fallback needs channels to fall back from; add channels or remove the fallback",
                ));
            }
            let all = rc.channels.iter().map(|c| ("channels", c)).chain(rc.fallback.iter().map(|c| ("fallback", c)));
            for (j, (list, ch)) in all.enumerate() {
                let idx = if list == "channels" { j } else { j - rc.channels.len() };
                self.validate_channel(&format!("{key}.{list}[{idx}]"), ch)?;
            }
        }
        Ok(())
    }

    fn validate_channel(&self, key: &str, ch: &ChannelConfig) -> Result<(), ConfigError> {
        let missing =
            |section: &str| ConfigError::new(key, format!("uses [alerting.notify.{section}], which is not configured"));
        match ch {
            ChannelConfig::Email { to, .. } => {
                if self.smtp.is_none() {
                    return Err(missing("smtp"));
                }
                if to.is_empty() {
                    return Err(ConfigError::new(format!("{key}.to"), "needs at least one address"));
                }
                for addr in to {
                    addr.parse::<lettre::message::Mailbox>()
                        .map_err(|e| ConfigError::new(format!("{key}.to"), format!("{addr:?}: {e}")))?;
                }
            }
            ChannelConfig::WecomRobot { robot, .. } => {
                if !self.wecom_robots.contains_key(robot) {
                    return Err(missing(&format!("wecom_robots.{robot}")));
                }
            }
            ChannelConfig::WecomApp { users, parties } => {
                if self.wecom_app.is_none() {
                    return Err(missing("wecom_app"));
                }
                if users.is_empty() && parties.is_empty() {
                    return Err(ConfigError::new(key, "wecom_app needs users or parties"));
                }
            }
            ChannelConfig::Sms { provider, phones } => {
                let present = match provider {
                    SmsProvider::Aliyun => self.aliyun_sms.is_some(),
                    SmsProvider::Tencent => self.tencent_sms.is_some(),
                    SmsProvider::Http => self.http_sms.is_some(),
                };
                if !present {
                    return Err(missing(&format!("{}_sms", provider.as_str())));
                }
                if phones.is_empty() {
                    return Err(ConfigError::new(format!("{key}.phones"), "needs at least one phone number"));
                }
                for p in phones {
                    let digits = p.strip_prefix('+').unwrap_or(p);
                    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                        return Err(ConfigError::new(format!("{key}.phones"), format!("{p:?} is not a phone number")));
                    }
                }
            }
            ChannelConfig::Webhook { webhook } => {
                if !self.webhooks.contains_key(webhook) {
                    return Err(missing(&format!("webhooks.{webhook}")));
                }
            }
        }
        Ok(())
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}
