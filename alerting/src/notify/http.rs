//! The HTTPS client every HTTP channel shares: ureq with rustls, certificates always verified
//! (the Mozilla roots in the binary, or a configured CA for an intranet gateway), bounded
//! answers, and one place that decides which failures are worth retrying.

use super::{BuildError, ConfigError, NotifyError};
use std::io::Read;
use std::time::Duration;
use ureq::tls::{PemItem, RootCerts, TlsConfig};

/// Answers larger than this are cut; provider answers are small JSON documents.
const MAX_ANSWER: u64 = 64 * 1024;

#[derive(Debug, Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
}

/// A provider's answer: status and body (cut at 64 KiB).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// 2xx passes; 429 and 5xx are transient; other statuses are the provider saying no.
    pub fn check_status(&self) -> Result<(), NotifyError> {
        let excerpt: String = self.body.chars().take(300).collect();
        match self.status {
            200..=299 => Ok(()),
            429 | 500..=599 => Err(NotifyError::Transient(format!("HTTP {}: {excerpt}", self.status))),
            s => Err(NotifyError::Permanent(format!("HTTP {s}: {excerpt}"))),
        }
    }

    /// Parses a 2xx JSON answer.
    pub fn json(&self) -> Result<serde_json::Value, NotifyError> {
        self.check_status()?;
        serde_json::from_str(&self.body).map_err(|e| {
            // A proxy's HTML error page in a 200: try again rather than lose the message.
            NotifyError::Transient(format!(
                "answer is not JSON ({e}): {}",
                self.body.chars().take(200).collect::<String>()
            ))
        })
    }
}

fn load_roots(key: &str, path: &str) -> Result<RootCerts, BuildError> {
    let bad = |m: String| BuildError::Config(ConfigError::new(key, format!("{path}: {m}")));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| bad(e.to_string()))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(bad("no PEM certificate found".into()));
    }
    Ok(RootCerts::new_with_certs(&certs))
}

impl HttpClient {
    /// `ca_key` names the config key of `ca_file` for error messages.
    pub fn new(timeout: Duration, ca_file: Option<&str>, ca_key: &str) -> Result<Self, BuildError> {
        let mut tls = TlsConfig::builder();
        if let Some(p) = ca_file {
            tls = tls.root_certs(load_roots(ca_key, p)?);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // A redirect from a provider API is a misconfiguration, and following one would
            // resend a signed body to somewhere else.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(format!("tingzhen-alerting/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Self { agent })
    }

    pub fn get(&self, url: &str) -> Result<Answer, NotifyError> {
        Self::finish(self.agent.get(url).call())
    }

    pub fn post(
        &self,
        url: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, NotifyError> {
        let mut req = self.agent.post(url).header("Content-Type", content_type);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::finish(req.send(body))
    }

    pub fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> Result<Answer, NotifyError> {
        let bytes = serde_json::to_vec(body).map_err(|e| NotifyError::Permanent(format!("encoding JSON: {e}")))?;
        self.post(url, "application/json", headers, &bytes)
    }

    fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Answer, NotifyError> {
        match r {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let mut body = String::new();
                resp.body_mut()
                    .as_reader()
                    .take(MAX_ANSWER)
                    .read_to_string(&mut body)
                    .map_err(|e| NotifyError::Transient(format!("reading the answer: {e}")))?;
                Ok(Answer { status, body })
            }
            // TLS failures are configuration problems, but a CA rollover or a clock jump can
            // fix itself; retrying costs little and the dead letter records the error.
            Err(e) => Err(NotifyError::Transient(e.to_string())),
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - _ . ~`),
/// space as `%20`: what Aliyun's signature and plain query strings both need.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
