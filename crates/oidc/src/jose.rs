//! The little JOSE idbridge needs to *issue* tokens: key generation (RSA 2048 for RS256,
//! P-256 for ES256), public JWKs, and compact JWS signing. Signing is ring's; RSA key
//! generation is the `rsa` crate's (ring cannot generate RSA keys). Verifying upstream
//! tokens is the `openidconnect` crate's job (see `upstream`).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    #[error("{0}")]
    Key(String),
    #[error("signing failed")]
    Sign,
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A private key able to sign JWS.
pub enum Signer {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rs256(_) => "Signer(RS256, ***)",
            Self::Es256(_) => "Signer(ES256, ***)",
        })
    }
}

impl Signer {
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Rs256(_) => "RS256",
            Self::Es256(_) => "ES256",
        }
    }

    /// Reads a PKCS#8 DER key of either kind.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, JoseError> {
        let rng = SystemRandom::new();
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng) {
            return Ok(Self::Es256(k));
        }
        RsaKeyPair::from_pkcs8(der)
            .map(Self::Rs256)
            .map_err(|e| JoseError::Key(format!("not a PKCS#8 RSA or P-256 private key: {e}")))
    }

    /// Reads a PEM `PRIVATE KEY` (PKCS#8) file's text.
    pub fn from_pem(pem: &str) -> Result<Self, JoseError> {
        let body: String = pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        if body.is_empty() {
            return Err(JoseError::Key("expected a PEM \"PRIVATE KEY\" (PKCS#8) block".into()));
        }
        let der = STANDARD.decode(body.trim()).map_err(|e| JoseError::Key(format!("PEM body is not base64: {e}")))?;
        Self::from_pkcs8(&der)
    }

    /// The public half as a JWK (without `kid`, `alg`, `use`).
    pub fn public_jwk(&self) -> Value {
        match self {
            Self::Rs256(k) => {
                let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({ "kty": "RSA", "n": b64(&parts.n), "e": b64(&parts.e) })
            }
            Self::Es256(k) => {
                // Uncompressed point: 0x04 || x || y.
                let point = k.public_key().as_ref();
                json!({ "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]) })
            }
        }
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        let rng = SystemRandom::new();
        match self {
            Self::Rs256(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig).map_err(|_| JoseError::Sign)?;
                Ok(sig)
            }
            Self::Es256(k) => k.sign(&rng, message).map(|s| s.as_ref().to_vec()).map_err(|_| JoseError::Sign),
        }
    }

    /// A compact JWS of `claims` with the given header fields (`kid`, `typ`).
    pub fn jws(&self, kid: Option<&str>, typ: Option<&str>, claims: &Value) -> Result<String, JoseError> {
        let mut header = json!({ "alg": self.alg() });
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(serde_json::to_string(claims).map_err(|_| JoseError::Sign)?.as_bytes())
        );
        let sig = self.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", b64(&sig)))
    }
}

impl Signer {
    /// Whether `signature` over `message` was made by this key with `alg` (RS256 or
    /// ES256; nothing else — never `none`).
    pub fn verifies(&self, alg: &str, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
        match (self, alg) {
            (Self::Rs256(k), "RS256") => {
                let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                parts.verify(&RSA_PKCS1_2048_8192_SHA256, message, signature).is_ok()
            }
            (Self::Es256(k), "ES256") => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, k.public_key().as_ref())
                .verify(message, signature)
                .is_ok(),
            _ => false,
        }
    }
}

/// A compact JWS split into its header, claims, signing input and signature; `None`
/// when it is not one.
pub fn parse_jws(token: &str) -> Option<(Value, Value, String, Vec<u8>)> {
    let mut parts = token.split('.');
    let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).ok();
    // Both must be JSON objects (RFC 7515 §4, RFC 7519 §7.2).
    let header: Value = serde_json::from_slice(&decode(header)?).ok().filter(Value::is_object)?;
    let body: Value = serde_json::from_slice(&decode(claims)?).ok().filter(Value::is_object)?;
    Some((header, body, token[..token.len() - signature.len() - 1].to_owned(), decode(signature)?))
}

/// Generates a PKCS#8 DER private key for `alg`.
pub fn generate_pkcs8(alg: &str) -> Result<Vec<u8>, JoseError> {
    match alg {
        "ES256" => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| JoseError::Key("P-256 key generation failed".into())),
        "RS256" => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
                .map_err(|e| JoseError::Key(format!("RSA key generation failed: {e}")))?;
            key.to_pkcs8_der().map(|d| d.as_bytes().to_vec()).map_err(|e| JoseError::Key(e.to_string()))
        }
        other => Err(JoseError::Key(format!("cannot generate keys for {other}"))),
    }
}

/// The RFC 7638 thumbprint of a public JWK, used as its `kid`.
pub fn thumbprint(jwk: &Value) -> String {
    use sha2::Digest;
    let canonical = match jwk["kty"].as_str() {
        Some("RSA") => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, jwk["e"], jwk["n"]),
        _ => format!(r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#, jwk["crv"], jwk["x"], jwk["y"]),
    };
    b64(&sha2::Sha256::digest(canonical.as_bytes()))
}

/// Reads the claims of a compact JWS without checking anything: only for choosing how to
/// verify it (an Entra `tid` picks the issuer), never for trusting it.
pub fn unverified_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// `left half of SHA-256`, base64url: `at_hash` / `c_hash` for RS256 and ES256.
pub fn half_hash(value: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(value.as_bytes());
    b64(&digest[..16])
}

/// 256 random bits, base64url: codes, tokens, cookies, state.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut bytes).expect("the system random source works");
    b64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_round_trip_and_thumbprint() {
        let der = generate_pkcs8("ES256").unwrap();
        let signer = Signer::from_pkcs8(&der).unwrap();
        assert_eq!(signer.alg(), "ES256");
        let jwt = signer.jws(Some("k1"), Some("JWT"), &json!({"sub": "x"})).unwrap();
        assert_eq!(jwt.split('.').count(), 3);
        assert_eq!(unverified_claims(&jwt).unwrap()["sub"], "x");
        let jwk = signer.public_jwk();
        // Verify with ring's public-key API.
        let point = [
            vec![4u8],
            URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap(),
            URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap(),
        ]
        .concat();
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
            .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
        assert_eq!(thumbprint(&jwk).len(), 43);
    }

    #[test]
    fn only_the_key_s_own_signature_verifies() {
        for alg in ["ES256", "RS256"] {
            let signer = Signer::from_pkcs8(&generate_pkcs8(alg).unwrap()).unwrap();
            let other = Signer::from_pkcs8(&generate_pkcs8(alg).unwrap()).unwrap();
            let jwt = signer.jws(Some("k1"), Some("JWT"), &json!({"sub": "x"})).unwrap();
            let (header, claims, input, signature) = parse_jws(&jwt).unwrap();
            assert_eq!((header["alg"].as_str(), claims["sub"].as_str()), (Some(alg), Some("x")));
            assert!(signer.verifies(alg, input.as_bytes(), &signature), "{alg}");
            assert!(!other.verifies(alg, input.as_bytes(), &signature), "{alg}: another key");
            assert!(!signer.verifies("none", input.as_bytes(), &signature), "alg none never verifies");
            let tampered =
                jwt.replacen(&jwt[jwt.find('.').unwrap() + 1..jwt.rfind('.').unwrap()], &b64(br#"{"sub":"y"}"#), 1);
            let (_, _, input, signature) = parse_jws(&tampered).unwrap();
            assert!(!signer.verifies(alg, input.as_bytes(), &signature), "{alg}: changed claims");
        }
        assert!(parse_jws("NzM.NzM.").is_none(), "a header that is not an object");
        for junk in ["", ".", "..", "a.b.c", "a.b.c.d", "e30.e30.", "e30.e30.!!"] {
            let parsed = parse_jws(junk);
            assert!(parsed.is_none() || parsed.unwrap().3.is_empty(), "{junk:?}");
        }
    }

    #[test]
    fn garbage_keys_are_refused_with_a_reason() {
        assert!(Signer::from_pkcs8(b"nope").unwrap_err().to_string().contains("PKCS#8"));
        assert!(Signer::from_pem("hello").unwrap_err().to_string().contains("PRIVATE KEY"));
    }
}
