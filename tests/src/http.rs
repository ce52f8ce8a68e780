//! A blocking HTTP client for tests: statuses are values, not errors, so a test can assert
//! on 401/403/400; transport and TLS failures stay errors so a test can assert on those.

use std::time::Duration;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// Largest response body we read (range queries over many series are big).
const BODY_LIMIT: u64 = 512 * 1024 * 1024;

#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Resp {
    /// The body as JSON; panics (with the body) when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response ({}) is not JSON: {e}\n{}", self.status, self.body))
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    fn with_tls(tls: TlsConfig) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .timeout_connect(Some(Duration::from_secs(5)))
            .tls_config(tls)
            .build();
        Http { agent: ureq::Agent::new_with_config(config) }
    }

    /// Plain client; HTTPS only against publicly trusted roots (so a test CA is refused).
    pub fn new() -> Self {
        Self::with_tls(TlsConfig::default())
    }

    /// A client that trusts exactly the CA in `ca_pem`.
    pub fn with_ca(ca_pem: &str) -> Self {
        let cert = Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM parses");
        Self::with_tls(TlsConfig::builder().root_certs(RootCerts::new_with_certs(&[cert])).build())
    }

    fn finish(res: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Resp, ureq::Error> {
        let mut r = res?;
        let status = r.status().as_u16();
        let content_type =
            r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let body = r.body_mut().with_config().limit(BODY_LIMIT).lossy_utf8(true).read_to_string()?;
        Ok(Resp { status, content_type, body })
    }

    /// GET with an optional bearer token and query parameters.
    pub fn get(&self, url: &str, token: Option<&str>, params: &[(&str, &str)]) -> Result<Resp, ureq::Error> {
        let mut req = self.agent.get(url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        Self::finish(req.call())
    }

    /// POST of a raw body with extra headers (content type first among them, if any).
    pub fn post(
        &self,
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Resp, ureq::Error> {
        let mut req = self.agent.post(url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::finish(req.send(body))
    }

    /// POST `application/x-www-form-urlencoded`.
    pub fn post_form(&self, url: &str, token: Option<&str>, form: &[(&str, &str)]) -> Result<Resp, ureq::Error> {
        let mut req = self.agent.post(url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        Self::finish(req.send_form(form.iter().copied()))
    }

    /// A snappy protobuf remote-write POST with the headers remote write 1.0 requires.
    pub fn remote_write(&self, url: &str, token: Option<&str>, body: &[u8]) -> Result<Resp, ureq::Error> {
        use tingzhen_core::remote_write as rw;
        self.post(
            url,
            token,
            &[
                ("Content-Type", rw::CONTENT_TYPE),
                ("Content-Encoding", rw::CONTENT_ENCODING),
                (rw::VERSION_HEADER, rw::VERSION),
            ],
            body,
        )
    }
}
