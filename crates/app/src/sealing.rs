//! Secrets at rest — signing keys, TOTP secrets — sealed with AES-256-GCM under a
//! key-encryption key the operator keeps outside the database (`[sso]
//! key_encryption_key_file`). A sealed value is stored as
//! `enc:v1:<base64(nonce ‖ ciphertext ‖ tag)>`; without a key-encryption key values are
//! stored as they are, and a sealed one cannot be read (the error names the setting).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use idbridge_core::{DomainError, DomainResult};

/// The setting that holds the key-encryption key, named in every error about it.
const SETTING: &str = "sso.key_encryption_key_file";

/// What a sealed value starts with.
pub const SEALED: &str = "enc:v1:";

#[derive(Clone)]
pub struct KeyEncryption(Arc<ring::aead::LessSafeKey>);

impl KeyEncryption {
    /// From 32 bytes, given as 64 hex digits or base64 (a file's trimmed content).
    pub fn from_text(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| STANDARD.decode(text).ok())
            .ok_or("expected 32 bytes as 64 hex digits or base64")?;
        let key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &bytes)
            .map_err(|_| format!("expected 32 bytes, found {}", bytes.len()))?;
        Ok(Self(Arc::new(ring::aead::LessSafeKey::new(key))))
    }

    /// `plain` sealed, as stored (`enc:v1:…`).
    pub fn seal(&self, plain: &[u8]) -> DomainResult<String> {
        let mut nonce = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| DomainError::Internal("no randomness for a nonce".into()))?;
        let mut data = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                &mut data,
            )
            .map_err(|_| DomainError::Internal("sealing a secret failed".into()))?;
        Ok(format!("{SEALED}{}", STANDARD.encode([nonce.as_slice(), &data].concat())))
    }

    /// A stored `enc:v1:…` value opened; `what` names it in the error (a key id).
    pub fn open(&self, what: &str, stored: &str) -> DomainResult<Vec<u8>> {
        let wrong = || DomainError::invalid(SETTING, format!("{what} cannot be opened with it (another key?)"));
        let sealed = stored.strip_prefix(SEALED).ok_or_else(wrong)?;
        let sealed = STANDARD.decode(sealed).map_err(|e| DomainError::Storage(format!("{what}: {e}")))?;
        if sealed.len() < 12 {
            return Err(wrong());
        }
        let (nonce, data) = sealed.split_at(12);
        let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut data = data.to_vec();
        let plain = self.0.open_in_place(nonce, ring::aead::Aad::empty(), &mut data).map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

impl std::fmt::Debug for KeyEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryption(***)")
    }
}

/// A text secret as it is to be stored: sealed when there is a key, as it is otherwise.
pub fn seal_text(key: Option<&KeyEncryption>, plain: &str) -> DomainResult<String> {
    match key {
        Some(key) => key.seal(plain.as_bytes()),
        None => Ok(plain.to_owned()),
    }
}

/// A text secret as it was stored by [`seal_text`]: a value stored before there was a key
/// reads as it is (and is sealed when next written).
pub fn open_text(key: Option<&KeyEncryption>, what: &str, stored: &str) -> DomainResult<String> {
    if !stored.starts_with(SEALED) {
        return Ok(stored.to_owned());
    }
    let key = key
        .ok_or_else(|| DomainError::invalid(SETTING, format!("{what} is sealed; set it to the key that sealed it")))?;
    String::from_utf8(key.open(what, stored)?).map_err(|_| DomainError::Storage(format!("{what}: not text")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_only_with_its_key_and_plain_text_reads_as_it_is() {
        let key = KeyEncryption::from_text(&"ab".repeat(32)).unwrap();
        let other = KeyEncryption::from_text(&"cd".repeat(32)).unwrap();
        let stored = seal_text(Some(&key), "JBSWY3DPEHPK3PXP").unwrap();
        assert!(stored.starts_with(SEALED) && !stored.contains("JBSWY3DP"));
        assert_eq!(open_text(Some(&key), "totp", &stored).unwrap(), "JBSWY3DPEHPK3PXP");
        let wrong = open_text(Some(&other), "the TOTP secret of x", &stored).unwrap_err().to_string();
        assert!(wrong.contains(SETTING) && wrong.contains("the TOTP secret of x"), "{wrong}");
        assert!(open_text(None, "totp", &stored).unwrap_err().to_string().contains(SETTING));
        assert_eq!(open_text(Some(&key), "totp", "JBSWY3DPEHPK3PXP").unwrap(), "JBSWY3DPEHPK3PXP");
        assert!(KeyEncryption::from_text("short").is_err());
    }
}
