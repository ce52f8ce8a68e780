//! `IdentityConfig`: the `[identity]` section. Every key has a documented default chosen for
//! MLPS level 3 (the stricter, internet-facing profile); unknown keys are errors.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use tingzhen_core::config::{HumanDuration, SecretRef};

use crate::roles::Role;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Minimum password length. Default 10 (MLPS level 3; level 2 intranet allows 8).
    pub password_min_length: usize,
    /// How many previous passwords (besides the current one) a new password may not repeat. Default 5.
    pub password_history: usize,
    /// Forced periodic change; `None` disables it. Default 90 days.
    pub password_max_age: Option<HumanDuration>,
    /// Reminder period before a password expires. Default 7 days.
    pub password_expiry_warning: HumanDuration,
    /// Extra weak passwords, one per line, added to the embedded list.
    pub weak_password_file: Option<String>,
    /// Consecutive failed logins before the account is locked. Default 5.
    pub lockout_threshold: u32,
    /// How long a lockout lasts before automatic unlock. Default 10 minutes.
    pub lockout_duration: HumanDuration,
    /// Failed logins after which a captcha is required. Default 1 (the first attempt needs none).
    pub captcha_after_failures: u32,
    /// Captcha lifetime. Default 5 minutes.
    pub captcha_ttl: HumanDuration,
    /// A session without requests for this long ends. Default 15 minutes.
    pub session_idle_timeout: HumanDuration,
    /// A session ends this long after login regardless of activity. Default 12 hours.
    pub session_max_lifetime: HumanDuration,
    /// Live console sessions one account may hold (MLPS 4.6). A login beyond it ends that
    /// account's least recently used session, so someone who closed a browser without signing
    /// out is never locked out. Default 5; raise it for an account shared by several wall screens.
    pub max_sessions_per_user: u32,
    /// Live console sessions in all (MLPS 4.6: the maximum number of concurrent sessions). A
    /// login beyond it is refused until sessions end. Default 200.
    pub max_sessions: u32,
    /// Mark cookies `Secure`. Default true; only a plain-HTTP development setup turns it off.
    pub cookie_secure: bool,
    /// Accepted clock skew for `X-Request-Timestamp` and how long nonces are remembered. Default 5 minutes.
    pub replay_window: HumanDuration,
    /// Warning period before an account's validity ends. Default 30 days.
    pub account_expiry_warning: HumanDuration,
    /// Roles whose members must use TOTP. Default none.
    pub totp_required_roles: Vec<Role>,
    /// Offset of local time from UTC in minutes, for access-time windows. Default 480 (China Standard Time).
    pub utc_offset_minutes: i32,
    /// Key for the audit chain's HMAC-SHA256; without it the chain is plain SHA-256, which
    /// detects edits by anyone who does not also recompute every later hash.
    pub audit_key: Option<SecretRef>,
    /// Key that encrypts TOTP secrets at rest (ChaCha20-Poly1305). Without it they are stored
    /// unencrypted (still never returned by any API).
    pub totp_key: Option<SecretRef>,
    /// Forward every audit record to syslog (RFC 5424).
    pub syslog: Option<SyslogConfig>,
    /// Self-service password reset by SMS verification code (MLPS 1.2, 1.5, 1.6). Off without
    /// this section.
    pub password_reset: Option<PasswordResetConfig>,
    /// Argon2id cost parameters.
    pub argon2: Argon2Config,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `host:port` of the syslog receiver.
    pub address: String,
    /// `udp` (default) or `tcp` (RFC 6587 octet-counting framing).
    #[serde(default)]
    pub protocol: SyslogProtocol,
    /// RFC 5424 APP-NAME. Default `tingzhen`.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// Syslog facility number (0–23). Default 13 (log audit).
    #[serde(default = "default_facility")]
    pub facility: u8,
}

/// `[identity.password_reset]`: who sends the codes and how often they may be asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfig {
    /// The SMS provider of `[alerting.notify]` that sends the codes: `http_sms`, `aliyun_sms`
    /// or `tencent_sms`.
    pub sms_provider: String,
    /// `http_sms`: the text, a template over `{{code}}` and `{{minutes}}` (empty: a built-in
    /// text per language); `aliyun_sms`: the approved verification template's code (`SMS_…`,
    /// variable `${code}`); `tencent_sms`: the approved template's id (`{1}` code, `{2}` minutes).
    #[serde(default)]
    pub sms_template: String,
    /// How long a code is valid. Default 5 minutes.
    #[serde(default = "default_code_ttl")]
    pub code_ttl: HumanDuration,
    /// Wrong codes before the code is void. Default 5.
    #[serde(default = "default_code_attempts")]
    pub max_attempts: u32,
    /// Least time between two codes for one account. Default 60 s.
    #[serde(default = "default_resend_interval")]
    pub resend_interval: HumanDuration,
    /// Codes one account may be sent in an hour (MLPS 1.6). Default 5.
    #[serde(default = "default_codes_per_hour")]
    pub max_per_hour: u32,
}

impl PasswordResetConfig {
    /// `provider` with `template` and every limit at its default.
    pub fn new(sms_provider: &str, sms_template: &str) -> Self {
        Self {
            sms_provider: sms_provider.into(),
            sms_template: sms_template.into(),
            code_ttl: default_code_ttl(),
            max_attempts: default_code_attempts(),
            resend_interval: default_resend_interval(),
            max_per_hour: default_codes_per_hour(),
        }
    }
}

fn default_code_ttl() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_code_attempts() -> u32 {
    5
}
fn default_resend_interval() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_codes_per_hour() -> u32 {
    5
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogProtocol {
    #[default]
    Udp,
    Tcp,
}

fn default_app_name() -> String {
    "tingzhen".into()
}

fn default_facility() -> u8 {
    13
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Config {
    /// Memory in KiB. Default 19456 (19 MiB, OWASP's Argon2id recommendation).
    pub memory_kib: u32,
    /// Passes. Default 2.
    pub iterations: u32,
    /// Lanes. Default 1.
    pub parallelism: u32,
}

impl Default for Argon2Config {
    fn default() -> Self {
        Self { memory_kib: 19456, iterations: 2, parallelism: 1 }
    }
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            password_min_length: 10,
            password_history: 5,
            password_max_age: Some(HumanDuration::from_secs(90 * 86400)),
            password_expiry_warning: HumanDuration::from_secs(7 * 86400),
            weak_password_file: None,
            lockout_threshold: 5,
            lockout_duration: HumanDuration::from_secs(600),
            captcha_after_failures: 1,
            captcha_ttl: HumanDuration::from_secs(300),
            session_idle_timeout: HumanDuration::from_secs(900),
            session_max_lifetime: HumanDuration::from_secs(12 * 3600),
            max_sessions_per_user: 5,
            max_sessions: 200,
            cookie_secure: true,
            replay_window: HumanDuration::from_secs(300),
            account_expiry_warning: HumanDuration::from_secs(30 * 86400),
            totp_required_roles: Vec::new(),
            utc_offset_minutes: 480,
            audit_key: None,
            totp_key: None,
            syslog: None,
            password_reset: None,
            argon2: Argon2Config::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("identity config: {field}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError { field, reason: reason.into() }
}

pub(crate) fn ms(d: HumanDuration) -> i64 {
    d.0.as_millis() as i64
}

impl IdentityConfig {
    /// Checks values serde cannot: ranges and relations between keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.password_min_length < 8 {
            return Err(bad("password_min_length", "must be at least 8 (MLPS level 2 minimum)"));
        }
        if self.lockout_threshold == 0 {
            return Err(bad("lockout_threshold", "must be at least 1"));
        }
        if self.lockout_duration.0 < Duration::from_secs(60) {
            return Err(bad("lockout_duration", "must be at least 1m"));
        }
        if self.session_idle_timeout.0 < Duration::from_secs(60) {
            return Err(bad("session_idle_timeout", "must be at least 1m"));
        }
        if self.max_sessions_per_user == 0 {
            return Err(bad("max_sessions_per_user", "must be at least 1"));
        }
        if self.max_sessions < self.max_sessions_per_user {
            return Err(bad("max_sessions", "must be at least max_sessions_per_user"));
        }
        if self.replay_window.0 < Duration::from_secs(10) {
            return Err(bad("replay_window", "must be at least 10s"));
        }
        if !(-14 * 60..=14 * 60).contains(&self.utc_offset_minutes) {
            return Err(bad("utc_offset_minutes", "must be within ±840"));
        }
        if let Some(s) = &self.syslog {
            if s.address.trim().is_empty() {
                return Err(bad("syslog.address", "must be host:port"));
            }
            if s.facility > 23 {
                return Err(bad("syslog.facility", "must be 0–23"));
            }
        }
        if let Some(r) = &self.password_reset {
            if !["http_sms", "aliyun_sms", "tencent_sms"].contains(&r.sms_provider.as_str()) {
                return Err(bad("password_reset.sms_provider", "must be http_sms, aliyun_sms or tencent_sms"));
            }
            if r.sms_provider != "http_sms" && r.sms_template.trim().is_empty() {
                return Err(bad("password_reset.sms_template", "must name the provider's approved template"));
            }
            if !(Duration::from_secs(60)..=Duration::from_secs(30 * 60)).contains(&r.code_ttl.0) {
                return Err(bad("password_reset.code_ttl", "must be 1m–30m"));
            }
            if r.max_attempts == 0 || r.max_per_hour == 0 {
                return Err(bad("password_reset", "max_attempts and max_per_hour must be at least 1"));
            }
        }
        if self.argon2.memory_kib < 8 * self.argon2.parallelism.max(1) || self.argon2.iterations == 0 {
            return Err(bad("argon2", "memory_kib must be ≥ 8 × parallelism and iterations ≥ 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_unknown_keys_are_errors() {
        let c: IdentityConfig = toml::from_str("").unwrap();
        assert_eq!(c, IdentityConfig::default());
        assert_eq!(c.session_idle_timeout.0, Duration::from_secs(900));
        c.validate().unwrap();
        let c: IdentityConfig =
            toml::from_str("lockout_threshold = 3\nlockout_duration = \"30m\"\n[syslog]\naddress = \"10.0.0.1:514\"")
                .unwrap();
        assert_eq!((c.lockout_threshold, c.syslog.unwrap().protocol), (3, SyslogProtocol::Udp));
        let e = toml::from_str::<IdentityConfig>("lockout_treshold = 3").unwrap_err().to_string();
        assert!(e.contains("lockout_treshold"), "{e}");
        let e = toml::from_str::<IdentityConfig>("[argon2]\nmemory = 1").unwrap_err().to_string();
        assert!(e.contains("memory"), "{e}");
    }

    #[test]
    fn validate_names_the_field() {
        let c = IdentityConfig { password_min_length: 6, ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field, "password_min_length");
        let c = IdentityConfig { lockout_threshold: 0, ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field, "lockout_threshold");
        let c = IdentityConfig { max_sessions_per_user: 0, ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field, "max_sessions_per_user");
        let c = IdentityConfig { max_sessions: 4, ..Default::default() };
        assert_eq!(c.validate().unwrap_err().field, "max_sessions");
    }

    #[test]
    fn the_deploy_example_parses_to_the_defaults() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            identity: IdentityConfig,
        }
        let text = include_str!("../../deploy/identity.example.toml");
        let f: File = toml::from_str(text).unwrap();
        assert_eq!(f.identity, IdentityConfig::default(), "the example documents the defaults");
        // The commented-out examples parse too.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with("audit_key")
                        || rest.starts_with("totp_key")
                        || rest.starts_with('[')
                        || rest.contains(" = ") =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let f: File = toml::from_str(&uncommented).unwrap();
        assert_eq!(f.identity.syslog.as_ref().unwrap().address, "10.20.0.5:514");
        assert!(f.identity.audit_key.is_some() && f.identity.weak_password_file.is_some());
        assert!(f.identity.totp_key.is_some());
        let reset = f.identity.password_reset.clone().unwrap();
        assert_eq!((reset.sms_provider.as_str(), reset.max_per_hour), ("http_sms", 5));
        f.identity.validate().unwrap();
    }

    #[test]
    fn password_reset_settings_are_checked() {
        let base = PasswordResetConfig::new("aliyun_sms", "SMS_1");
        let with = |r: PasswordResetConfig| IdentityConfig { password_reset: Some(r), ..Default::default() };
        with(base.clone()).validate().unwrap();
        let field = |r: PasswordResetConfig| with(r).validate().unwrap_err().field;
        assert_eq!(
            field(PasswordResetConfig { sms_provider: "pigeon".into(), ..base.clone() }),
            "password_reset.sms_provider"
        );
        assert_eq!(
            field(PasswordResetConfig { sms_template: " ".into(), ..base.clone() }),
            "password_reset.sms_template"
        );
        assert_eq!(
            field(PasswordResetConfig { code_ttl: "2h".parse().unwrap(), ..base.clone() }),
            "password_reset.code_ttl"
        );
        assert_eq!(field(PasswordResetConfig { max_attempts: 0, ..base }), "password_reset");
    }
}
