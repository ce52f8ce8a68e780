//! API tokens: created with a name and scopes, stored as SHA-256 digests, optionally bound to
//! an IP allowlist, revocable. The plaintext exists only in the return value of `create_token`.

use super::{Db, DbError, Row, now_ms};
use crate::params;
use crate::token::{Scope, TOKEN_PREFIX, hash_token, parse_allow};
use ipnet::IpNet;
use rand::RngCore;

#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Empty means any source address.
    pub allow: Vec<IpNet>,
    pub created_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub revoked: bool,
}

impl TokenRecord {
    pub fn has_scope(&self, s: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&s)
    }

    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        // An IPv4 client may reach a dual-stack listener as ::ffff:a.b.c.d.
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }
}

/// Why a presented credential was refused. The messages are safe to show the client: they name
/// the token and the scope, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token (Authorization: Bearer <token>)")]
    Missing,
    #[error("unknown or revoked token")]
    Unknown,
    #[error("token {name:?} lacks the {scope} scope")]
    Scope { name: String, scope: Scope },
    #[error("token {name:?} may not be used from {peer}: outside its address allowlist")]
    Address { name: String, peer: String },
    #[error("client address unknown; token {0:?} has an allowlist")]
    NoPeer(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl AuthError {
    /// 401 (no usable identity) versus 403 (identity known, not allowed here).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Missing | Self::Unknown)
    }
}

/// The result of creating a token: its record and the plaintext, to be shown once.
#[derive(Debug)]
pub struct NewToken {
    pub record: TokenRecord,
    pub plaintext: String,
}

fn validate_name(name: &str) -> Result<(), DbError> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(DbError::Invalid(format!("token name {name:?}: use 1-64 characters from a-z, 0-9, '-', '_', '.'")));
    }
    Ok(())
}

fn row_to_record(r: &Row<'_>) -> Result<TokenRecord, DbError> {
    let scopes: String = r.get(2)?;
    let allow: String = r.get(3)?;
    Ok(TokenRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        // Stored values were validated on the way in; skip anything unreadable rather than panic.
        scopes: Scope::parse_list(&scopes).unwrap_or_default(),
        allow: allow.split(',').filter(|s| !s.is_empty()).filter_map(|s| parse_allow(s).ok()).collect(),
        created_at_ms: r.get(4)?,
        last_used_at_ms: r.get(5)?,
        revoked: r.get::<Option<i64>>(6)?.is_some(),
    })
}

const COLUMNS: &str = "id, name, scopes, allow_cidrs, created_at_ms, last_used_at_ms, revoked_at_ms";

impl Db {
    pub fn create_token(&self, name: &str, scopes: &[Scope], allow: &[IpNet]) -> Result<NewToken, DbError> {
        validate_name(name)?;
        if scopes.is_empty() {
            return Err(DbError::Invalid("a token needs at least one scope".into()));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let plaintext = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
        let scopes_s = scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
        let allow_s = allow.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
        let now = now_ms();
        let id = self.with_conn(|c| {
            let exists =
                c.query_opt("SELECT id FROM api_tokens WHERE name = ?1 AND revoked_at_ms IS NULL", &[name], |r| {
                    r.get::<i64>(0)
                })?;
            if exists.is_some() {
                return Err(DbError::Exists { what: "token", name: name.into() });
            }
            c.query_row(
                "INSERT INTO api_tokens (name, token_sha256, scopes, allow_cidrs, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                &params![name, hash_token(&plaintext), scopes_s, allow_s, now],
                |r| r.get(0),
            )
        })?;
        let mut scopes = scopes.to_vec();
        scopes.sort();
        Ok(NewToken {
            record: TokenRecord {
                id,
                name: name.into(),
                scopes,
                allow: allow.to_vec(),
                created_at_ms: now,
                last_used_at_ms: None,
                revoked: false,
            },
            plaintext,
        })
    }

    /// Finds the live (not revoked) token with this plaintext.
    pub fn find_token(&self, plaintext: &str) -> Result<Option<TokenRecord>, DbError> {
        self.with_conn(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM api_tokens WHERE token_sha256 = ?1 AND revoked_at_ms IS NULL"),
                &[hash_token(plaintext)],
                row_to_record,
            )
        })
    }

    /// Every live token, keyed by digest; the collector caches this for its hot path.
    pub fn live_token_digests(&self) -> Result<Vec<(String, TokenRecord)>, DbError> {
        self.with_conn(|c| {
            c.query_map(
                &format!("SELECT {COLUMNS}, token_sha256 FROM api_tokens WHERE revoked_at_ms IS NULL"),
                &(),
                |r| Ok((r.get::<String>(7)?, row_to_record(r)?)),
            )
        })
    }

    /// The whole token check, usable by any target without the collector's HTTP layer: the
    /// token must be live, carry `scope` (admin implies all) and, if it has an allowlist, come
    /// from an allowed `peer`. Blocking (one indexed lookup).
    pub fn authenticate(
        &self,
        plaintext: Option<&str>,
        peer: Option<std::net::IpAddr>,
        scope: Scope,
    ) -> Result<TokenRecord, AuthError> {
        let plaintext = plaintext.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let record = self.find_token(plaintext)?.ok_or(AuthError::Unknown)?;
        if !record.has_scope(scope) {
            return Err(AuthError::Scope { name: record.name, scope });
        }
        match peer {
            Some(ip) if record.allows(ip) => {}
            Some(ip) => return Err(AuthError::Address { name: record.name, peer: ip.to_string() }),
            None if record.allow.is_empty() => {}
            None => return Err(AuthError::NoPeer(record.name)),
        }
        Ok(record)
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>, DbError> {
        self.with_conn(|c| c.query_map(&format!("SELECT {COLUMNS} FROM api_tokens ORDER BY id"), &(), row_to_record))
    }

    pub fn revoke_token(&self, name: &str) -> Result<(), DbError> {
        let n = self.with_conn(|c| {
            c.execute(
                "UPDATE api_tokens SET revoked_at_ms = ?1 WHERE name = ?2 AND revoked_at_ms IS NULL",
                &params![now_ms(), name],
            )
        })?;
        if n == 0 {
            return Err(DbError::NotFound { what: "live token", name: name.into() });
        }
        Ok(())
    }

    pub fn touch_token(&self, id: i64, at_ms: i64) -> Result<(), DbError> {
        self.with_conn(|c| c.execute("UPDATE api_tokens SET last_used_at_ms = ?1 WHERE id = ?2", &params![at_ms, id]))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_find_revoke() {
        let db = crate::db::testing::fresh_db();
        let t = db.create_token("agent-1", &[Scope::Ingest], &[parse_allow("10.0.0.0/8").unwrap()]).unwrap();
        assert!(t.plaintext.starts_with(TOKEN_PREFIX));
        let found = db.find_token(&t.plaintext).unwrap().unwrap();
        assert!(found.has_scope(Scope::Ingest) && !found.has_scope(Scope::Query));
        assert!(found.allows("10.2.3.4".parse().unwrap()));
        assert!(!found.allows("192.0.2.1".parse().unwrap()));
        assert!(db.find_token("tz_wrong").unwrap().is_none());
        assert!(matches!(db.create_token("agent-1", &[Scope::Query], &[]), Err(DbError::Exists { .. })));
        assert!(matches!(db.create_token("bad name", &[Scope::Query], &[]), Err(DbError::Invalid(_))));
        db.revoke_token("agent-1").unwrap();
        assert!(db.find_token(&t.plaintext).unwrap().is_none());
        assert!(db.revoke_token("agent-1").is_err());
        // The name is free again once revoked; the old token stays dead.
        let again = db.create_token("agent-1", &[Scope::Query], &[]).unwrap();
        assert!(db.find_token(&again.plaintext).unwrap().is_some());
        assert!(db.find_token(&t.plaintext).unwrap().is_none());
        assert_eq!(db.list_tokens().unwrap().len(), 2);
    }

    #[test]
    fn authenticate_checks_scope_and_allowlist() {
        let db = crate::db::testing::fresh_db();
        let q = db.create_token("reader", &[Scope::Query], &[parse_allow("10.0.0.0/8").unwrap()]).unwrap();
        let a = db.create_token("root", &[Scope::Admin], &[]).unwrap();
        let inside = Some("10.1.1.1".parse().unwrap());
        assert_eq!(db.authenticate(Some(&q.plaintext), inside, Scope::Query).unwrap().name, "reader");
        assert!(matches!(db.authenticate(Some(&q.plaintext), inside, Scope::Admin), Err(AuthError::Scope { .. })));
        let outside = Some("192.0.2.1".parse().unwrap());
        assert!(matches!(db.authenticate(Some(&q.plaintext), outside, Scope::Query), Err(AuthError::Address { .. })));
        assert!(matches!(db.authenticate(Some(&q.plaintext), None, Scope::Query), Err(AuthError::NoPeer(_))));
        assert!(db.authenticate(Some(&a.plaintext), None, Scope::Ingest).is_ok(), "admin implies every scope");
        let missing = db.authenticate(None, None, Scope::Query).unwrap_err();
        assert!(missing.is_unauthorized());
        assert!(db.authenticate(Some("tz_nope"), None, Scope::Query).unwrap_err().is_unauthorized());
    }

    #[test]
    fn stored_form_is_a_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let t = Db::open(&path).unwrap().create_token("x", &[Scope::Admin], &[]).unwrap();
        drop(t.record);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let hay = String::from_utf8_lossy(&bytes);
            assert!(!hay.contains(&t.plaintext), "plaintext token must never be stored");
            assert!(!hay.contains(&t.plaintext[3..]), "plaintext token must never be stored");
        }
        assert!(Db::open(&path).unwrap().find_token(&t.plaintext).unwrap().is_some());
    }
}
