//! `MetricsQuery` over HTTP, for an alerting process that runs apart from the collector
//! (`--target alerting`): it evaluates each rule with the collector's Prometheus-compatible
//! `/api/v1/query`. TLS certificates are always verified. Evaluation on ingest needs the
//! collector in the same process; split deployments evaluate at each group's interval.

use crate::config::CollectorClientConfig;
use serde::Deserialize;
use std::io::Read;
use tingzhen_core::Labels;
use tingzhen_core::query::{InstantSample, MetricsQuery, MetricsQueryError};
use ureq::tls::{PemItem, RootCerts, TlsConfig};

/// Answers are small vectors; anything bigger than this is refused rather than buffered.
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("alerting.collector.token: {0}")]
    Token(String),
    #[error("alerting.collector.ca_file: {0}")]
    Ca(String),
}

pub struct HttpMetricsQuery {
    url: String,
    auth: Option<String>,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorItem {
    metric: std::collections::BTreeMap<String, String>,
    value: (f64, String),
}

fn parse_value(s: &str) -> Result<f64, MetricsQueryError> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        other => other.parse().map_err(|_| MetricsQueryError::Unavailable(format!("collector sent value {other:?}"))),
    }
}

impl HttpMetricsQuery {
    pub fn new(cfg: &CollectorClientConfig) -> Result<Self, ClientError> {
        let auth = match &cfg.token {
            Some(t) => Some(format!("Bearer {}", t.resolve().map_err(|e| ClientError::Token(e.to_string()))?)),
            None => None,
        };
        let mut tls = TlsConfig::builder();
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| ClientError::Ca(format!("{path}: {e}")))?;
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                if let PemItem::Certificate(c) = item.map_err(|e| ClientError::Ca(format!("{path}: {e}")))? {
                    certs.push(c);
                }
            }
            if certs.is_empty() {
                return Err(ClientError::Ca(format!("{path}: no PEM certificate found")));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout.0))
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .new_agent();
        Ok(Self { url: format!("{}/api/v1/query", cfg.url.trim_end_matches('/')), auth, agent })
    }
}

impl MetricsQuery for HttpMetricsQuery {
    fn instant(&self, expr: &str, at_ms: i64) -> Result<Vec<InstantSample>, MetricsQueryError> {
        let time = format!("{}.{:03}", at_ms.div_euclid(1000), at_ms.rem_euclid(1000));
        let mut req = self.agent.post(&self.url);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req
            .send_form([("query", expr), ("time", time.as_str())])
            .map_err(|e| MetricsQueryError::Unavailable(format!("collector unreachable: {e}")))?;
        let status = resp.status().as_u16();
        let mut body = String::new();
        resp.body_mut()
            .as_reader()
            .take(MAX_ANSWER)
            .read_to_string(&mut body)
            .map_err(|e| MetricsQueryError::Unavailable(format!("collector answer unreadable: {e}")))?;
        let answer: Answer = serde_json::from_str(&body).map_err(|e| {
            MetricsQueryError::Unavailable(format!("collector answered HTTP {status} without a query result: {e}"))
        })?;
        if answer.status != "success" {
            let msg = answer.error.unwrap_or_default();
            return Err(match answer.error_type.as_deref() {
                Some("bad_data") => MetricsQueryError::BadQuery(msg),
                _ => MetricsQueryError::Unavailable(format!("HTTP {status}: {msg}")),
            });
        }
        let data = answer.data.ok_or_else(|| MetricsQueryError::Unavailable("answer has no data".into()))?;
        match data.result_type.as_str() {
            "vector" => {
                let items: Vec<VectorItem> = serde_json::from_value(data.result)
                    .map_err(|e| MetricsQueryError::Unavailable(format!("bad vector in answer: {e}")))?;
                items
                    .into_iter()
                    .map(|i| {
                        Ok(InstantSample { labels: Labels::from_pairs(i.metric), value: parse_value(&i.value.1)? })
                    })
                    .collect()
            }
            "scalar" => {
                let (_, v): (f64, String) = serde_json::from_value(data.result)
                    .map_err(|e| MetricsQueryError::Unavailable(format!("bad scalar in answer: {e}")))?;
                Ok(vec![InstantSample { labels: Labels::new(), value: parse_value(&v)? }])
            }
            other => {
                Err(MetricsQueryError::BadQuery(format!("expression returns a {other}, expected a vector or scalar")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tingzhen_core::config::HumanDuration;

    /// Answers each connection with the next canned (status, body) and records the request.
    fn serve(answers: Vec<(u16, &'static str)>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, body) in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = vec![0u8; 8192];
                let mut req = Vec::new();
                // Read the head and the (small, form-encoded) body.
                loop {
                    let n = std::io::Read::read(&mut s, &mut buf).unwrap();
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if req.len() >= head_end + 4 + len || n == 0 {
                            break;
                        }
                    }
                }
                seen.push(String::from_utf8_lossy(&req).to_string());
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).unwrap();
            }
            seen
        });
        (url, handle)
    }

    #[test]
    fn speaks_the_prometheus_query_api() {
        let (url, server) = serve(vec![
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"t","room":"icu"},"value":[1.5,"+Inf"]}]}}"#,
            ),
            (200, r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"2"]}}"#),
            (400, r#"{"status":"error","errorType":"bad_data","error":"parse error: unexpected end"}"#),
            (503, r#"{"status":"error","errorType":"unavailable","error":"shutting down"}"#),
            (502, "<html>bad gateway</html>"),
        ]);
        let token = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(token.path(), "tz_secret\n").unwrap();
        let cfg = CollectorClientConfig {
            url: format!("{url}/"),
            token: Some(tingzhen_core::config::SecretRef::file(token.path().display().to_string())),
            ca_file: None,
            timeout: HumanDuration::from_secs(5),
        };
        let q = HttpMetricsQuery::new(&cfg).unwrap();
        let v = q.instant("t > 1", 1_500).unwrap();
        assert_eq!((v[0].labels.get("room"), v[0].value), (Some("icu"), f64::INFINITY));
        assert_eq!(q.instant("1 + 1", 1_500).unwrap()[0].value, 2.0);
        assert!(matches!(q.instant("sum(", 1_500), Err(MetricsQueryError::BadQuery(m)) if m.contains("parse error")));
        assert!(matches!(q.instant("t", 1_500), Err(MetricsQueryError::Unavailable(_))));
        assert!(matches!(q.instant("t", 1_500), Err(MetricsQueryError::Unavailable(m)) if m.contains("502")));
        let requests = server.join().unwrap();
        assert!(requests[0].starts_with("POST /api/v1/query "), "{}", requests[0]);
        assert!(requests[0].to_ascii_lowercase().contains("authorization: bearer tz_secret"));
        assert!(requests[0].contains("time=1.500"), "{}", requests[0]);
    }

    #[test]
    fn configuration_errors_name_the_key() {
        let cfg = |token: Option<tingzhen_core::config::SecretRef>, ca: Option<&str>| CollectorClientConfig {
            url: "https://c:8630".into(),
            token,
            ca_file: ca.map(String::from),
            timeout: HumanDuration::from_secs(5),
        };
        let missing = tingzhen_core::config::SecretRef { file: None, env: Some("TZ_NO_SUCH_TOKEN_VAR".into()) };
        assert!(
            HttpMetricsQuery::new(&cfg(Some(missing), None))
                .err()
                .unwrap()
                .to_string()
                .starts_with("alerting.collector.token")
        );
        let err = HttpMetricsQuery::new(&cfg(None, Some("/no/such/ca.pem"))).err().unwrap().to_string();
        assert!(err.starts_with("alerting.collector.ca_file"), "{err}");
    }
}
