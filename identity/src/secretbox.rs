//! Encryption at rest for TOTP secrets (tender 1.12: no key in plaintext): ChaCha20-Poly1305
//! with a key derived (SHA-256) from the `totp_key` secret reference and a random nonce per
//! value. Stored form: `enc1:<nonce hex>:<ciphertext hex>`; without a key the value is stored
//! as is and still never returned by any API.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

const PREFIX: &str = "enc1:";

#[derive(Clone)]
pub struct SecretBox {
    key: Option<[u8; 32]>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox").field("keyed", &self.key.is_some()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretBoxError {
    #[error("stored secret is encrypted but no totp_key is configured")]
    NoKey,
    #[error("stored secret cannot be decrypted (wrong totp_key or damaged value)")]
    Decrypt,
}

impl SecretBox {
    pub fn new(secret: Option<&str>) -> Self {
        Self { key: secret.map(|s| Sha256::digest(s.as_bytes()).into()) }
    }

    pub fn seal(&self, plain: &str) -> String {
        let Some(k) = &self.key else { return plain.to_string() };
        let nonce: [u8; 12] = rand::random();
        let cipher = ChaCha20Poly1305::new(Key::from_slice(k));
        match cipher.encrypt(Nonce::from_slice(&nonce), plain.as_bytes()) {
            Ok(ct) => format!("{PREFIX}{}:{}", hex::encode(nonce), hex::encode(ct)),
            // Encryption of a short in-memory buffer cannot fail; keep the secret unusable rather than plain.
            Err(_) => String::new(),
        }
    }

    pub fn open(&self, stored: &str) -> Result<String, SecretBoxError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else { return Ok(stored.to_string()) };
        let k = self.key.as_ref().ok_or(SecretBoxError::NoKey)?;
        let (n, ct) = rest.split_once(':').ok_or(SecretBoxError::Decrypt)?;
        let (n, ct) = (
            hex::decode(n).map_err(|_| SecretBoxError::Decrypt)?,
            hex::decode(ct).map_err(|_| SecretBoxError::Decrypt)?,
        );
        if n.len() != 12 {
            return Err(SecretBoxError::Decrypt);
        }
        let plain = ChaCha20Poly1305::new(Key::from_slice(k))
            .decrypt(Nonce::from_slice(&n), ct.as_slice())
            .map_err(|_| SecretBoxError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| SecretBoxError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_refuses_the_wrong_key() {
        let b = SecretBox::new(Some("k1"));
        let s = b.seal("JBSWY3DPEHPK3PXP");
        assert!(s.starts_with("enc1:") && !s.contains("JBSWY3DPEHPK3PXP"));
        assert_ne!(s, b.seal("JBSWY3DPEHPK3PXP"), "random nonce");
        assert_eq!(b.open(&s).unwrap(), "JBSWY3DPEHPK3PXP");
        assert!(matches!(SecretBox::new(Some("k2")).open(&s), Err(SecretBoxError::Decrypt)));
        assert!(matches!(SecretBox::new(None).open(&s), Err(SecretBoxError::NoKey)));
        assert_eq!(SecretBox::new(None).seal("ABC"), "ABC");
        assert_eq!(b.open("ABC").unwrap(), "ABC", "values stored before a key was set still open");
    }
}
