//! Password policy (MLPS level 3: length, digits + letters + specials, no account name, weak-password list)
//! and Argon2id hashing. The policy returns every broken rule, each with its message, so the
//! client can show them all; reuse of recent passwords is checked by the caller, which owns
//! the history.

use crate::config::{Argon2Config, IdentityConfig};
use crate::messages::Msg;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::HashSet;

const EMBEDDED_WEAK: &str = include_str!("weak_passwords.txt");

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2 parameters: {0}")]
    Params(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

#[derive(Debug)]
pub struct PasswordPolicy {
    min_length: usize,
    weak: HashSet<String>,
    argon2: Argon2Config,
}

impl PasswordPolicy {
    pub fn new(cfg: &IdentityConfig) -> Result<Self, std::io::Error> {
        let mut weak: HashSet<String> = parse_list(EMBEDDED_WEAK).collect();
        if let Some(path) = &cfg.weak_password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("weak_password_file {path}: {e}")))?;
            weak.extend(parse_list(&text));
        }
        Ok(Self { min_length: cfg.password_min_length, weak, argon2: cfg.argon2.clone() })
    }

    pub fn min_length(&self) -> usize {
        self.min_length
    }

    /// Every rule `password` breaks for `username`, in the order the rules are listed to users.
    pub fn violations(&self, username: &str, password: &str) -> Vec<Msg> {
        let mut out = Vec::new();
        if password.chars().count() < self.min_length {
            out.push(Msg::PasswordTooShort { min: self.min_length });
        }
        if char_classes(password) < 3 {
            out.push(Msg::PasswordClasses);
        }
        let lower = password.to_lowercase();
        let user = username.trim().to_lowercase();
        if !user.is_empty() && lower.contains(&user) {
            out.push(Msg::PasswordContainsUsername);
        }
        if self.is_weak(&lower) {
            out.push(Msg::PasswordWeak);
        }
        out
    }

    fn is_weak(&self, lower: &str) -> bool {
        if self.weak.contains(lower) {
            return true;
        }
        // A single repeated character or a two-character pattern ("Aa1!Aa1!Aa1!") is weak however long.
        let distinct: HashSet<char> = lower.chars().collect();
        distinct.len() < 4
    }

    /// A random 20-character password this policy accepts for `username` (initial passwords
    /// and administrator resets; the user must change it at first login).
    pub fn generate(&self, username: &str) -> String {
        use rand::Rng;
        const SET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789-_.!#%+=";
        let mut rng = rand::rng();
        loop {
            let p: String = (0..20).map(|_| SET[rng.random_range(0..SET.len())] as char).collect();
            if self.violations(username, &p).is_empty() {
                return p;
            }
        }
    }

    fn argon2(&self) -> Result<Argon2<'static>, HashError> {
        let p = Params::new(self.argon2.memory_kib, self.argon2.iterations, self.argon2.parallelism, None)
            .map_err(|e| HashError::Params(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
    }

    /// PHC string (`$argon2id$v=19$m=…`) with a random 128-bit salt.
    pub fn hash(&self, password: &str) -> Result<String, HashError> {
        let salt_bytes: [u8; 16] = rand::random();
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| HashError::Hash(e.to_string()))?;
        Ok(self
            .argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| HashError::Hash(e.to_string()))?
            .to_string())
    }

    /// Verifies against a stored PHC string; the parameters come from the string, so hashes
    /// made before a cost change still verify.
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
    }
}

fn parse_list(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_lowercase)
}

/// The tender's 3 classes (1.7(1)): digits, letters (upper, lower or both), special characters
/// (anything else, including non-ASCII punctuation). All three are required.
fn char_classes(p: &str) -> usize {
    let digit = p.chars().any(|c| c.is_ascii_digit());
    let letter = p.chars().any(|c| c.is_alphabetic());
    let special = p.chars().any(|c| !c.is_alphanumeric());
    [digit, letter, special].iter().filter(|b| **b).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PasswordPolicy {
        let cfg = IdentityConfig {
            argon2: Argon2Config { memory_kib: 64, iterations: 1, parallelism: 1 },
            ..IdentityConfig::default()
        };
        PasswordPolicy::new(&cfg).unwrap()
    }

    #[test]
    fn each_rule_is_reported() {
        let p = policy();
        assert_eq!(p.violations("alice", "Sh0rt!"), vec![Msg::PasswordTooShort { min: 10 }]);
        assert_eq!(p.violations("alice", "onlylettersandmore"), vec![Msg::PasswordClasses]);
        assert_eq!(p.violations("alice", "xxALICE-2026yy"), vec![Msg::PasswordContainsUsername]);
        assert_eq!(p.violations("alice", "P@ssw0rd123"), vec![Msg::PasswordWeak]);
        assert_eq!(p.violations("alice", "Aa1!Aa1!Aa1!"), vec![Msg::PasswordWeak]);
        assert!(p.violations("alice", "Tz-7river-Kettle").is_empty());
        let g = p.generate("alice");
        assert!(g.len() == 20 && p.violations("alice", &g).is_empty(), "{g}");
        assert_eq!(p.violations("alice", "Riverkettle42"), vec![Msg::PasswordClasses], "no special character");
    }

    #[test]
    fn argon2id_hash_verifies_and_rejects() {
        let p = policy();
        let h = p.hash("Tz-7river-Kettle").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(p.verify("Tz-7river-Kettle", &h));
        assert!(!p.verify("Tz-7river-Kettlf", &h));
        assert_ne!(h, p.hash("Tz-7river-Kettle").unwrap(), "salted");
        assert!(!p.verify("x", "not a phc string"));
    }
}
