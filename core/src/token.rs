//! API token scopes and hashing. Tokens are 256-bit random strings, so a single SHA-256 is
//! the right stored form (slow hashes like Argon2id are for low-entropy passwords); the
//! plaintext is shown once at creation and never stored.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Prefix that makes tokens recognisable in logs and secret scanners.
pub const TOKEN_PREFIX: &str = "tz_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Write samples, heartbeats, flow events.
    Ingest,
    /// Read through the query APIs.
    Query,
    /// Everything, including token management.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Query, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Query => "query",
            Scope::Admin => "admin",
        }
    }

    /// Parses `ingest,query` style lists; names the unknown scope on error.
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let scope = match part {
                "ingest" => Scope::Ingest,
                "query" => Scope::Query,
                "admin" => Scope::Admin,
                other => return Err(format!("unknown scope {other:?}: expected ingest, query or admin")),
            };
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        if out.is_empty() {
            return Err("at least one scope is required (ingest, query, admin)".into());
        }
        out.sort();
        Ok(out)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time comparison of two hex digests.
pub fn digests_equal(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An allowlist entry: an address or a CIDR network.
pub fn parse_allow(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<ipnet::IpNet>() {
        return Ok(net);
    }
    s.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR network"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_reject_unknown() {
        assert_eq!(Scope::parse_list("query, ingest,query").unwrap(), vec![Scope::Ingest, Scope::Query]);
        assert!(Scope::parse_list("root").unwrap_err().contains("root"));
        assert!(Scope::parse_list("").is_err());
    }

    #[test]
    fn hashing_and_allowlist() {
        assert_eq!(hash_token("a").len(), 64);
        assert!(digests_equal(&hash_token("a"), &hash_token("a")));
        assert!(!digests_equal(&hash_token("a"), &hash_token("b")));
        assert!(parse_allow("10.1.0.0/16").unwrap().contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
        assert!(parse_allow("127.0.0.1").unwrap().contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        assert!(parse_allow("nope").is_err());
    }
}
