//! Notifiers: one file per channel (email, WeChat Work robot and app, Aliyun / Tencent / HTTP
//! SMS, webhook), the `[alerting.notify]` config, and the `Notifier` trait the outbox drives.
//! A notifier is blocking (ureq, lettre's sync SMTP transport); the outbox runs it on the
//! blocking pool, so a slow provider never stalls the runtime.

mod config;
pub mod email;
mod http;
pub mod sms_aliyun;
pub mod sms_http;
pub mod sms_tencent;
pub mod verification;
pub mod webhook;
pub mod wecom_app;
pub mod wecom_robot;

pub use config::*;
pub use http::HttpClient;

use crate::model::Notification;
use crate::templates::Templates;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Why a send did not go through. The outbox retries `Transient` with backoff and gives up on
/// `Permanent` at once (the fallback chain takes over).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Transient(String),
    #[error("rejected: {0}")]
    Permanent(String),
}

impl NotifyError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }
}

/// What a provider said when it accepted the message (message id, request id …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt(pub String);

/// One send: the notification, the receiver's language, and the stable id of this
/// (notification, receiver, channel) that channels use to deduplicate where they can.
#[derive(Debug)]
pub struct Message<'a> {
    pub notification: &'a Notification,
    pub language: Language,
    pub templates: &'a Templates,
    pub dedup_id: &'a str,
    /// Parts of a multi-part send (robot message pieces, per-phone gateway requests) the
    /// provider already accepted in earlier attempts. A notifier skips that many and counts
    /// up as each further part is accepted, so a retry never repeats an accepted part.
    pub parts_done: &'a AtomicU32,
}

impl Message<'_> {
    /// Runs `send` for each part not yet accepted, recording progress as parts go through.
    pub fn for_each_part<T>(
        &self,
        parts: &[T],
        mut send: impl FnMut(&T) -> Result<(), NotifyError>,
    ) -> Result<(), NotifyError> {
        let done = self.parts_done.load(Ordering::SeqCst) as usize;
        for (i, part) in parts.iter().enumerate().skip(done) {
            send(part)?;
            self.parts_done.store(i as u32 + 1, Ordering::SeqCst);
        }
        Ok(())
    }
}

pub trait Notifier: Send + Sync {
    /// Blocking; called from the blocking pool.
    fn send(&self, msg: &Message<'_>) -> Result<Receipt, NotifyError>;
}

/// Could not build a notifier (bad config, unreadable secret or CA file).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("alerting.notify.{key}: secret: {source}")]
    Secret { key: String, source: tingzhen_core::config::SecretError },
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    /// A setting outside `[alerting.notify]` that uses a provider configured there (the
    /// password-reset SMS), with its full key.
    #[error("{key}: {message}")]
    Setting { key: String, message: String },
}

pub(crate) fn secret(key: &str, r: &tingzhen_core::config::SecretRef) -> Result<String, BuildError> {
    r.resolve().map_err(|source| BuildError::Secret { key: key.to_string(), source })
}

/// A configured channel of a receiver, ready to send.
#[derive(Clone)]
pub struct Channel {
    pub name: String,
    pub kind: &'static str,
    pub notifier: Arc<dyn Notifier>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("name", &self.name).field("kind", &self.kind).finish()
    }
}

/// A receiver's channels and fallback chain, in config order.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub language: Language,
    pub channels: Vec<Channel>,
    pub fallback: Vec<Channel>,
}

impl Receiver {
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().chain(&self.fallback).find(|c| c.name == name)
    }
}

/// Builds every receiver's notifiers. Provider clients (SMTP transport, WeChat Work token
/// cache, HTTP agent) are shared by all channels that use them.
pub fn build_receivers(cfg: &NotifyConfig) -> Result<HashMap<String, Receiver>, BuildError> {
    cfg.validate()?;
    let timeout = cfg.http.timeout.0;
    let smtp = cfg.smtp.as_ref().map(email::SmtpSender::new).transpose()?.map(Arc::new);
    let wecom_app = cfg.wecom_app.as_ref().map(|c| wecom_app::WecomAppClient::new(c, timeout)).transpose()?;
    let wecom_app = wecom_app.map(Arc::new);
    let mut robots = HashMap::new();
    for (name, rc) in &cfg.wecom_robots {
        robots.insert(name.clone(), Arc::new(wecom_robot::WecomRobot::new(name, rc, timeout)?));
    }
    let aliyun = cfg.aliyun_sms.as_ref().map(|c| sms_aliyun::AliyunSms::new(c, timeout)).transpose()?;
    let aliyun = aliyun.map(Arc::new);
    let tencent = cfg.tencent_sms.as_ref().map(|c| sms_tencent::TencentSms::new(c, timeout)).transpose()?;
    let tencent = tencent.map(Arc::new);
    let http_sms = cfg.http_sms.as_ref().map(|c| sms_http::HttpSms::new(c, timeout)).transpose()?.map(Arc::new);
    let mut hooks = HashMap::new();
    for (name, wc) in &cfg.webhooks {
        hooks.insert(name.clone(), Arc::new(webhook::Webhook::new(name, wc, timeout)?));
    }

    let make = |c: &ChannelConfig, name: String| -> Channel {
        // validate() guarantees every referenced provider exists, so the expects cannot fire.
        let notifier: Arc<dyn Notifier> = match c {
            ChannelConfig::Email { to, cc } => {
                Arc::new(email::EmailChannel::new(smtp.clone().expect("validated: smtp"), to.clone(), cc.clone()))
            }
            ChannelConfig::WecomRobot { robot, mention_mobiles } => {
                Arc::new(wecom_robot::RobotChannel::new(robots[robot].clone(), mention_mobiles.clone()))
            }
            ChannelConfig::WecomApp { users, parties } => Arc::new(wecom_app::AppChannel::new(
                wecom_app.clone().expect("validated: wecom_app"),
                users.clone(),
                parties.clone(),
            )),
            ChannelConfig::Sms { provider: SmsProvider::Aliyun, phones } => {
                Arc::new(sms_aliyun::AliyunChannel::new(aliyun.clone().expect("validated: aliyun_sms"), phones.clone()))
            }
            ChannelConfig::Sms { provider: SmsProvider::Tencent, phones } => Arc::new(
                sms_tencent::TencentChannel::new(tencent.clone().expect("validated: tencent_sms"), phones.clone()),
            ),
            ChannelConfig::Sms { provider: SmsProvider::Http, phones } => {
                Arc::new(sms_http::HttpSmsChannel::new(http_sms.clone().expect("validated: http_sms"), phones.clone()))
            }
            ChannelConfig::Webhook { webhook } => hooks[webhook].clone(),
        };
        Channel { name, kind: c.kind(), notifier }
    };

    let mut out = HashMap::new();
    for rc in &cfg.receivers {
        let (pn, fnames) = rc.channel_names();
        let channels = rc.channels.iter().zip(pn).map(|(c, n)| make(c, n)).collect();
        let fallback = rc.fallback.iter().zip(fnames).map(|(c, n)| make(c, n)).collect();
        out.insert(rc.name.clone(), Receiver { name: rc.name.clone(), language: rc.language, channels, fallback });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
