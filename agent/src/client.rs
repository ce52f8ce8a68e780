//! The HTTP client to the collector (ureq, rustls with ring): remote-write POSTs and heartbeats,
//! top-SQL snapshots, with the bearer token, server verification against a custom CA when one is given, and the
//! one place that decides which answers are worth retrying.

use crate::AgentError;
use std::io::Read;
use std::path::Path;
use std::time::Duration;
use tingzhen_core::inventory::Heartbeat;
use tingzhen_core::remote_write;
use ureq::tls::{PemItem, RootCerts, TlsConfig};

/// What to do with a batch after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the collector has it; delete it.
    Sent,
    /// Network error, 5xx or 429: try again later.
    Retry(String),
    /// Any other status: the batch can never succeed; drop it and count it.
    Reject(u16, String),
}

/// Sorts a status code: 2xx sent, 429 and 5xx retried, everything else rejected for good.
pub fn classify(status: u16, body: String) -> Outcome {
    match status {
        200..=299 => Outcome::Sent,
        429 | 500..=599 => Outcome::Retry(format!("HTTP {status}: {body}")),
        _ => Outcome::Reject(status, body),
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    write_url: String,
    heartbeat_url: String,
    top_sql_url: String,
    auth: Option<String>,
}

/// Reads a PEM file of one or more CA certificates.
fn load_roots(path: &Path) -> Result<RootCerts, AgentError> {
    let bad = |m: String| AgentError::Config { key: "ca_file", message: format!("{}: {m}", path.display()) };
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

impl Client {
    /// `collector` is the base URL (`https://collector:8630`). With `ca_file`, only that CA is
    /// trusted (a hospital's internal PKI); without it, the Mozilla roots bundled in the binary.
    pub fn new(
        collector: &str,
        token: Option<&str>,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, AgentError> {
        let base = collector.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(AgentError::Config {
                key: "collector",
                message: format!("{collector:?} must start with http:// or https://"),
            });
        }
        let mut tls = TlsConfig::builder();
        if let Some(p) = ca_file {
            tls = tls.root_certs(load_roots(p)?);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(format!("tingzhen-agent/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Self {
            agent,
            write_url: format!("{base}/api/v1/write"),
            heartbeat_url: format!("{base}/api/v1/agents/heartbeat"),
            top_sql_url: format!("{base}/api/v1/db/top-sql"),
            auth: token.map(|t| format!("Bearer {t}")),
        })
    }

    /// POSTs one snappy-compressed remote-write body.
    pub fn write(&self, payload: &[u8]) -> Outcome {
        let mut req = self
            .agent
            .post(&self.write_url)
            .header("Content-Encoding", remote_write::CONTENT_ENCODING)
            .header("Content-Type", remote_write::CONTENT_TYPE)
            .header(remote_write::VERSION_HEADER, remote_write::VERSION);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        Self::finish(req.send(payload))
    }

    pub fn heartbeat(&self, hb: &Heartbeat) -> Outcome {
        let mut req = self.agent.post(&self.heartbeat_url);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        Self::finish(req.send_json(hb))
    }

    /// POSTs one top-SQL snapshot of a watched database.
    pub fn top_sql(&self, report: &tingzhen_core::topsql::TopSqlReport) -> Outcome {
        let mut req = self.agent.post(&self.top_sql_url);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        Self::finish(req.send_json(report))
    }

    fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Outcome {
        match r {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                // A short excerpt of the answer is enough for the log; never read unbounded.
                let mut body = String::new();
                let _ = resp.body_mut().as_reader().take(512).read_to_string(&mut body);
                classify(status, body.trim().to_string())
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(classify(204, String::new()), Outcome::Sent);
        assert!(matches!(classify(429, String::new()), Outcome::Retry(_)));
        assert!(matches!(classify(503, String::new()), Outcome::Retry(_)));
        assert_eq!(classify(400, "bad".into()), Outcome::Reject(400, "bad".into()));
        assert!(matches!(classify(401, String::new()), Outcome::Reject(401, _)));
        assert!(matches!(classify(308, String::new()), Outcome::Reject(308, _)));
    }

    #[test]
    fn bad_urls_and_ca_files_are_config_errors() {
        let t = Duration::from_secs(1);
        assert!(matches!(
            Client::new("collector:8630", None, None, t),
            Err(AgentError::Config { key: "collector", .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate").unwrap();
        assert!(matches!(Client::new("https://x", None, Some(&p), t), Err(AgentError::Config { key: "ca_file", .. })));
    }
}
