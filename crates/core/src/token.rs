//! Bearer tokens (SCIM tokens of a tenant, operator admin tokens).
//!
//! A token is `idb_<kind>_<id>_<secret>`: the id finds the stored record without a scan,
//! the secret carries 256 random bits. Only the SHA-256 of the whole token is stored;
//! a slow password hash would add nothing for a secret of that entropy, and every SCIM
//! request must check one. Comparison is constant-time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::tenant::TenantId;

/// A freshly generated token: shown once, then only its hash exists.
#[derive(Debug)]
pub struct IssuedToken {
    pub id: String,
    pub secret_token: String,
    pub hash: String,
}

/// Generates a token of `kind` (`scim`, `admin`).
pub fn issue(kind: &str) -> IssuedToken {
    let mut rng = rand::rng();
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret_token = format!("idb_{kind}_{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = hash_token(&secret_token);
    IssuedToken { id, secret_token, hash }
}

/// 256 random bits, URL-safe base64: a secret for one use (a generated client secret).
pub fn random_secret() -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    URL_SAFE_NO_PAD.encode(secret)
}

/// The token of an `Authorization: Bearer <token>` header value (RFC 6750 §2.1; the
/// scheme in any case), or `None` for any other scheme or an empty token.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Hex SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The id part of a token of `kind`, if it has the right shape.
pub fn token_id<'a>(kind: &str, token: &'a str) -> Option<&'a str> {
    let rest = token.strip_prefix("idb_")?.strip_prefix(kind)?.strip_prefix('_')?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty()).then_some(id)
}

/// Constant-time check of a presented token against a stored hex hash.
/// A well-formed hash no token has (64 hex zeros would need a SHA-256 preimage): checked
/// against when there is no record, so a miss costs what a mismatch costs.
pub const UNMATCHABLE_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn verify(presented: &str, stored_hash: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    match hex::decode(stored_hash) {
        Ok(stored) if stored.len() == presented.len() => presented.as_slice().ct_eq(&stored).into(),
        _ => false,
    }
}

/// A tenant's SCIM token as stored (never the secret; its SHA-256). Not serialisable:
/// what operators see is the server's `views::ScimToken`, without the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimTokenRecord {
    pub id: String,
    pub tenant_id: TenantId,
    pub name: String,
    pub hash: String,
    pub created_at: jiff::Timestamp,
    pub revoked_at: Option<jiff::Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_in_any_case_of_the_scheme() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("BEARER abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn issued_tokens_verify_and_others_do_not() {
        let t = issue("scim");
        assert_eq!(token_id("scim", &t.secret_token), Some(t.id.as_str()));
        assert!(verify(&t.secret_token, &t.hash));
        assert!(!verify(&format!("{}x", t.secret_token), &t.hash));
        assert!(!verify(&t.secret_token, "not-hex"));
        assert_eq!(token_id("admin", &t.secret_token), None);
        assert_ne!(issue("scim").secret_token, t.secret_token);
    }
}
