//! Email over SMTP with lettre: STARTTLS, implicit TLS, or plain for a loopback relay; login
//! with a password from a `SecretRef`; certificates verified against the Mozilla roots or a
//! configured CA. The Message-ID is derived from the delivery's dedup id, so a message resent
//! after a crash carries the same id and mail systems that deduplicate on it show it once.

use super::{BuildError, ConfigError, Message, Notifier, NotifyError, Receipt, SmtpConfig, SmtpSecurity, secret};
use crate::templates::TemplateKind;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};
use std::sync::Arc;

/// The configured SMTP server, shared by every email channel.
pub struct SmtpSender {
    transport: SmtpTransport,
    from: Mailbox,
    /// The domain of Message-IDs (`<id@domain>`): the From address's domain.
    id_domain: String,
}

impl SmtpSender {
    pub fn new(c: &SmtpConfig) -> Result<Self, BuildError> {
        let bad = |key: &str, m: String| BuildError::Config(ConfigError::new(format!("smtp.{key}"), m));
        let from: Mailbox = c.from.parse().map_err(|e| bad("from", format!("{:?}: {e}", c.from)))?;
        let tls_params = || -> Result<TlsParameters, BuildError> {
            let mut b = TlsParameters::builder(c.host.clone());
            if let Some(path) = &c.ca_file {
                let pem = std::fs::read(path).map_err(|e| bad("ca_file", format!("{path}: {e}")))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| bad("ca_file", format!("{path}: {e}")))?;
                b = b.add_root_certificate(cert);
            }
            b.build_rustls().map_err(|e| bad("ca_file", e.to_string()))
        };
        let (tls, default_port) = match c.security {
            SmtpSecurity::Starttls => (Tls::Required(tls_params()?), 587),
            SmtpSecurity::Tls => (Tls::Wrapper(tls_params()?), 465),
            SmtpSecurity::Plain => (Tls::None, 25),
        };
        let mut b = SmtpTransport::builder_dangerous(c.host.as_str())
            .port(c.port.unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(c.timeout.0));
        if let (Some(user), Some(pw)) = (&c.username, &c.password) {
            b = b.credentials(Credentials::new(user.clone(), secret("smtp.password", pw)?));
        }
        let id_domain = from.email.domain().to_string();
        Ok(Self { transport: b.build(), from, id_domain })
    }
}

/// One receiver's email channel: the server plus the addresses.
pub struct EmailChannel {
    smtp: Arc<SmtpSender>,
    to: Vec<String>,
    cc: Vec<String>,
}

impl EmailChannel {
    pub fn new(smtp: Arc<SmtpSender>, to: Vec<String>, cc: Vec<String>) -> Self {
        Self { smtp, to, cc }
    }

    fn mailboxes(list: &[String]) -> Result<Mailboxes, NotifyError> {
        let mut out = Mailboxes::new();
        for a in list {
            out.push(a.parse().map_err(|e| NotifyError::Permanent(format!("address {a:?}: {e}")))?);
        }
        Ok(out)
    }

    /// Builds the message (exposed for tests of the headers).
    pub fn build(&self, msg: &Message<'_>) -> Result<lettre::Message, NotifyError> {
        let render = |k| {
            msg.templates.render(k, msg.notification, msg.language).map_err(|e| NotifyError::Permanent(e.to_string()))
        };
        let subject = render(TemplateKind::EmailSubject)?;
        let body = render(TemplateKind::EmailBody)?;
        let mut b = lettre::Message::builder()
            .from(self.smtp.from.clone())
            .subject(subject)
            .message_id(Some(format!("<{}@{}>", msg.dedup_id, self.smtp.id_domain)))
            .header(ContentType::TEXT_PLAIN);
        b = b.mailbox(lettre::message::header::To::from(Self::mailboxes(&self.to)?));
        if !self.cc.is_empty() {
            b = b.mailbox(lettre::message::header::Cc::from(Self::mailboxes(&self.cc)?));
        }
        b.body(body).map_err(|e| NotifyError::Permanent(format!("building the email: {e}")))
    }
}

impl Notifier for EmailChannel {
    fn send(&self, msg: &Message<'_>) -> Result<Receipt, NotifyError> {
        let email = self.build(msg)?;
        match self.smtp.transport.send(&email) {
            Ok(resp) => Ok(Receipt(format!("{} {}", resp.code(), resp.message().collect::<Vec<_>>().join(" ")))),
            // 5xx answers (unknown mailbox, policy) will not change on retry; everything else
            // (connection refused, timeouts, 4xx greylisting) might.
            Err(e) if e.is_permanent() => Err(NotifyError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(NotifyError::Transient(format!("SMTP: {e}"))),
        }
    }
}
