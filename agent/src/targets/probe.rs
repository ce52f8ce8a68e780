//! HTTP and TCP probes with blackbox_exporter's metric names: `probe_success`, duration,
//! HTTP status, body keyword, and for HTTPS the server certificate's expiry (read from a
//! verified rustls handshake with the Mozilla roots — verification is never turned off, so a
//! bad certificate is itself a failed probe).

use super::{Collect, Ctx, TargetConfig, TargetError};
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most body bytes read to look for the keyword.
const MAX_BODY: u64 = 1 << 20;

fn connect(address: &str, timeout: Duration) -> Result<TcpStream, TargetError> {
    let err = |m: String| TargetError::Connect { address: address.into(), message: m };
    let addr = address
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("name resolves to no address".into()))?;
    TcpStream::connect_timeout(&addr, timeout).map_err(|e| err(e.to_string()))
}

pub struct Tcp {
    address: String,
    timeout: Duration,
}

impl Tcp {
    pub fn new(cfg: &TargetConfig) -> Self {
        Self { address: cfg.address.clone(), timeout: cfg.timeout }
    }
}

impl Collect for Tcp {
    fn collect(&mut self, cx: &mut Ctx<'_>) -> Result<(), TargetError> {
        let t0 = Instant::now();
        connect(&self.address, self.timeout)?;
        cx.out.gauge(
            "probe_duration_seconds",
            "Returns how long the probe took to complete in seconds",
            &[],
            t0.elapsed().as_secs_f64(),
        );
        Ok(())
    }
}

pub struct Http {
    url: String,
    agent: ureq::Agent,
    keyword: Option<String>,
    expect_status: Option<u16>,
    timeout: Duration,
}

impl Http {
    pub fn new(cfg: &TargetConfig) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(false)
            .user_agent(format!("tingzhen-agent/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            url: cfg.address.clone(),
            agent,
            keyword: cfg.keyword.clone(),
            expect_status: cfg.expect_status,
            timeout: cfg.timeout,
        }
    }
}

/// `https://host:port/path` → ("host", "host:port").
fn tls_endpoint(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, addr) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') && p.parse::<u16>().is_ok() => {
            (h.trim_start_matches('[').trim_end_matches(']').to_string(), authority.to_string())
        }
        _ => (authority.trim_start_matches('[').trim_end_matches(']').to_string(), format!("{authority}:443")),
    };
    Some((host, addr))
}

/// Expiry (Unix seconds) of the certificate the server presents, verified against the
/// Mozilla roots.
fn cert_expiry(url: &str, timeout: Duration) -> Result<i64, TargetError> {
    let (host, addr) = tls_endpoint(url).ok_or_else(|| TargetError::Probe(format!("{url} is not an https URL")))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TargetError::Probe(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| TargetError::Probe(format!("{host}: {e}")))?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| TargetError::Probe(e.to_string()))?;
    let mut sock = connect(&addr, timeout)?;
    let _ = sock.set_read_timeout(Some(timeout));
    let _ = sock.set_write_timeout(Some(timeout));
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| TargetError::Probe(format!("TLS handshake with {addr}: {e}")))?;
    }
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| TargetError::Probe("server sent no certificate".into()))?;
    not_after(cert.as_ref()).ok_or_else(|| TargetError::Probe("cannot read the certificate's expiry".into()))
}

/// Reads one DER header: (tag, content start, content length).
fn der_header(d: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let tag = *d.get(at)?;
    let first = *d.get(at + 1)? as usize;
    if first < 0x80 {
        return Some((tag, at + 2, first));
    }
    let n = first & 0x7f;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *d.get(at + 2 + i)? as usize;
    }
    Some((tag, at + 2 + n, len))
}

/// `notAfter` of an X.509 certificate in DER, as Unix seconds: Certificate → tbsCertificate →
/// [version], serial, signature, issuer, validity → notAfter (UTCTime or GeneralizedTime).
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert, _) = der_header(der, 0)?;
    let (_, tbs, _) = der_header(der, cert)?;
    let mut at = tbs;
    let (tag, start, len) = der_header(der, at)?;
    if tag == 0xa0 {
        at = start + len;
    }
    for _ in 0..3 {
        let (_, start, len) = der_header(der, at)?;
        at = start + len;
    }
    let (_, validity, _) = der_header(der, at)?;
    let (_, nb_start, nb_len) = der_header(der, validity)?;
    let (tag, start, len) = der_header(der, nb_start + nb_len)?;
    let text = std::str::from_utf8(der.get(start..start + len)?).ok()?;
    parse_asn1_time(tag, text)
}

fn parse_asn1_time(tag: u8, s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let y: i64 = s.get(0..2)?.parse().ok()?;
            (if y >= 50 { 1900 + y } else { 2000 + y }, s.get(2..)?)
        }
        0x18 => (s.get(0..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let f = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (mo, d, h, mi, sec) = (f(0)?, f(2)?, f(4)?, f(6)?, f(8).unwrap_or(0));
    Some(days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(super) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

impl Collect for Http {
    fn collect(&mut self, cx: &mut Ctx<'_>) -> Result<(), TargetError> {
        let t0 = Instant::now();
        let mut resp = self.agent.get(&self.url).call().map_err(|e| match e {
            ureq::Error::Io(io) => TargetError::Connect { address: self.url.clone(), message: io.to_string() },
            other => TargetError::Probe(other.to_string()),
        })?;
        let status = resp.status().as_u16();
        let mut body = String::new();
        let read = resp.body_mut().as_reader().take(MAX_BODY).read_to_string(&mut body);
        let took = t0.elapsed().as_secs_f64();
        let out = &mut cx.out;
        out.gauge("probe_duration_seconds", "Returns how long the probe took to complete in seconds", &[], took);
        out.gauge("probe_http_status_code", "Response HTTP status code", &[], status as f64);
        out.gauge("probe_http_content_length", "Length of http content response", &[], body.len() as f64);
        let status_ok = match self.expect_status {
            Some(s) => status == s,
            None => (200..300).contains(&status),
        };
        if !status_ok {
            let want = self.expect_status.map_or("2xx".to_string(), |s| s.to_string());
            cx.failed = Some(TargetError::Probe(format!("HTTP status {status}, expected {want}")));
        }
        if let Some(k) = &self.keyword {
            let found = read.is_ok() && body.contains(k.as_str());
            out.gauge(
                "probe_failed_due_to_regex",
                "Indicates if probe failed due to regex",
                &[],
                if found { 0.0 } else { 1.0 },
            );
            if !found && cx.failed.is_none() {
                cx.failed = Some(TargetError::Probe(format!("keyword {k:?} not in the response body")));
            }
        }
        let https = self.url.starts_with("https://");
        out.gauge(
            "probe_http_ssl",
            "Indicates if SSL was used for the final redirect",
            &[],
            if https { 1.0 } else { 0.0 },
        );
        if https {
            let expiry = cert_expiry(&self.url, self.timeout)?;
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
            out.gauge(
                "probe_ssl_earliest_cert_expiry",
                "Returns last SSL chain expiry in unixtime",
                &[],
                expiry as f64,
            );
            out.gauge(
                "probe_ssl_cert_days_left",
                "Days until the server certificate expires (negative once expired)",
                &[],
                (expiry - now) as f64 / 86400.0,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_expiry_is_read_from_der() {
        let mut params = rcgen::CertificateParams::new(vec!["probe.test".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 15);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(not_after(cert.der()), Some(1_941_840_000), "2031-07-15T00:00:00Z");
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(not_after(cert.der()), Some(2_524_521_600));
        assert_eq!(not_after(&[0x30, 0x03, 0x01]), None, "truncated DER is refused, not a panic");
        assert_eq!(parse_asn1_time(0x18, "20500101000000Z"), Some(2_524_608_000));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn https_endpoints() {
        assert_eq!(tls_endpoint("https://his.example/api"), Some(("his.example".into(), "his.example:443".into())));
        assert_eq!(tls_endpoint("https://10.0.0.1:8443/x?y"), Some(("10.0.0.1".into(), "10.0.0.1:8443".into())));
        assert_eq!(tls_endpoint("http://x"), None);
    }
}
