//! Delivery of one spooled batch to the remote store: remote write for VictoriaMetrics, line
//! protocol over the InfluxDB 2 write API. The InfluxDB 2 API is a single POST, so it is spoken
//! directly with the HTTP client already in use rather than through the `influxdb2` crate,
//! which would pull in a second, older HTTP and TLS stack (reqwest 0.11, hyper 0.14, rustls 0.21).

use crate::config::{RemoteConfig, RemoteKind};
use std::io::Read;
use tingzhen_core::spool::Record;
use tingzhen_core::{line_protocol, remote_write};

#[derive(Debug)]
pub enum SendError {
    /// The remote will never take this batch (malformed, too large…): dead-letter it.
    Refused { status: u16, body: String },
    /// Down, overloaded, or misconfigured in a way an operator fixes (401, 403, 404): retry.
    Retry(String),
}

pub struct Sink {
    kind: RemoteKind,
    url: String,
    auth: Option<String>,
    agent: ureq::Agent,
}

impl Sink {
    pub fn new(config: &RemoteConfig, token: Option<String>, agent: ureq::Agent) -> Self {
        let (url, auth) = match config.kind {
            RemoteKind::VictoriaMetrics => (config.write_url.clone(), token.map(|t| format!("Bearer {t}"))),
            RemoteKind::InfluxDb2 => {
                let base = config.write_url.trim_end_matches('/');
                let org = config.org.as_deref().unwrap_or_default();
                let bucket = config.bucket.as_deref().unwrap_or_default();
                let url = format!(
                    "{base}/api/v2/write?org={}&bucket={}&precision=ns",
                    encode_query(org),
                    encode_query(bucket)
                );
                (url, token.map(|t| format!("Token {t}")))
            }
        };
        Self { kind: config.kind, url, auth, agent }
    }

    /// Sends one batch; `Ok` carries how many samples could not be represented and were skipped.
    pub fn send(&self, record: &Record) -> Result<u64, SendError> {
        let (body, content_type, skipped) = match self.kind {
            RemoteKind::VictoriaMetrics => (record.payload.clone(), remote_write::CONTENT_TYPE, 0),
            RemoteKind::InfluxDb2 => {
                // The spool only ever holds payloads this process encoded, so a decode failure
                // means the file is damaged: no retry can fix it.
                let series =
                    remote_write::decode(&record.payload, remote_write::DEFAULT_MAX_DECOMPRESSED).map_err(|e| {
                        SendError::Refused { status: 0, body: format!("spooled batch cannot be decoded: {e}") }
                    })?;
                let mut text = String::new();
                let skipped = line_protocol::write(&series, &mut text) as u64;
                if text.is_empty() {
                    return Ok(skipped);
                }
                (text.into_bytes(), "text/plain; charset=utf-8", skipped)
            }
        };
        let mut req = self.agent.post(&self.url).header("Content-Type", content_type);
        if self.kind == RemoteKind::VictoriaMetrics {
            req = req
                .header("Content-Encoding", remote_write::CONTENT_ENCODING)
                .header(remote_write::VERSION_HEADER, remote_write::VERSION);
        }
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        match req.send(&body[..]) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let mut text = String::new();
                let _ = resp.body_mut().as_reader().take(512).read_to_string(&mut text);
                classify(status, text.trim().to_string()).map(|()| skipped)
            }
            Err(e) => Err(SendError::Retry(e.to_string())),
        }
    }
}

fn classify(status: u16, body: String) -> Result<(), SendError> {
    match status {
        200..=299 => Ok(()),
        401 | 403 | 404 | 408 | 429 | 500..=599 => Err(SendError::Retry(format!("HTTP {status}: {body}"))),
        _ => Err(SendError::Refused { status, body }),
    }
}

/// Percent-encodes a query-string value.
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_retry_and_refuse() {
        assert!(classify(204, String::new()).is_ok());
        for s in [401, 403, 404, 429, 500, 503] {
            assert!(matches!(classify(s, String::new()), Err(SendError::Retry(_))), "{s}");
        }
        for s in [400, 413, 422] {
            assert!(matches!(classify(s, String::new()), Err(SendError::Refused { .. })), "{s}");
        }
        assert_eq!(encode_query("a b/ç"), "a%20b%2F%C3%A7");
    }
}
