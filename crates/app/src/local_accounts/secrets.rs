//! The secret parts of a local credential: Argon2id password hashes, the password policy,
//! TOTP (RFC 6238) and recovery codes. Nothing here is stored or logged; callers keep the
//! hashes only.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use idbridge_core::token::hash_token;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// Argon2id cost (`[local_sign_in]` in the daemon's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashCost {
    /// OWASP's first Argon2id choice (m=19 MiB, t=2, p=1): about 20 ms per hash on one
    /// core of the machine in BENCHMARKS.md.
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

impl HashCost {
    fn argon2(&self) -> Result<Argon2<'static>, String> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| format!("Argon2id parameters: {e}"))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    pub fn validate(&self) -> Result<(), String> {
        self.argon2().map(|_| ())
    }
}

/// What a new password must be.
#[derive(Debug, Clone)]
pub struct PasswordRules {
    pub min_length: usize,
}

impl Default for PasswordRules {
    fn default() -> Self {
        Self { min_length: 10 }
    }
}

/// The most characters a password may have: Argon2 takes any length, but hashing a
/// megabyte per request is work a client should not be able to order.
pub const MAX_PASSWORD_CHARS: usize = 256;

impl PasswordRules {
    /// Why `password` cannot be used, in words for the person choosing it. Besides the
    /// length, it is checked against zxcvbn's bundled lists (30,000 common passwords,
    /// English words, names) and the person's own name and address (`inputs`): NIST SP
    /// 800-63B §5.1.1.2 — a list of known-bad passwords, no composition rules.
    pub fn refuse(&self, password: &str, inputs: &[&str]) -> Option<String> {
        let chars = password.chars().count();
        if chars < self.min_length {
            return Some(format!("Choose a password of at least {} characters.", self.min_length));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Some(format!("Choose a password of at most {MAX_PASSWORD_CHARS} characters."));
        }
        // An address counts as itself and as its local part (`adam.miller1`).
        let mut words: Vec<&str> = inputs.to_vec();
        words.extend(inputs.iter().filter_map(|i| i.split_once('@').map(|(local, _)| local)));
        let estimate = zxcvbn::zxcvbn(password, &words);
        if (estimate.score() as u8) < 3 {
            let warning = estimate.feedback().and_then(|f| f.warning()).map(|w| format!(" {w}."));
            return Some(format!(
                "This password is too easy to guess.{} Add another word or two that are not about you.",
                warning.unwrap_or_default().replace("..", ".")
            ));
        }
        None
    }
}

/// An Argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) for `password`.
pub fn hash_password(cost: HashCost, password: &str) -> Result<String, String> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| e.to_string())?;
    cost.argon2()?.hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `password` matches a stored PHC string (its own parameters are used, so hashes
/// made at an older cost still verify). A string that does not parse matches nothing.
pub fn verify_password(stored: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

/// Spends what one verification costs, for an address with no password: the answer for
/// an unknown account takes as long as for a known one.
pub fn spend_a_verification(cost: HashCost, password: &str) {
    static SALT: &str = "aWRicmlkZ2UtZHVtbXk";
    if let (Ok(argon2), Ok(salt)) = (cost.argon2(), SaltString::from_b64(SALT)) {
        let _ = argon2.hash_password(password.as_bytes(), &salt);
    }
}

/// A new TOTP secret: 160 random bits (RFC 4226 §4 recommends 160), base32 without padding
/// as authenticator apps take it.
pub fn new_totp_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    totp_rs::Secret::Raw(bytes.to_vec()).to_encoded().to_string()
}

fn totp(secret: &str, issuer: &str, account: &str) -> Result<totp_rs::TOTP, String> {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned()).to_bytes().map_err(|e| format!("TOTP secret: {e:?}"))?;
    // Issuer and account name go into the otpauth URL only; ':' is not allowed in them.
    Ok(totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        Some(issuer.replace(':', " ")),
        account.replace(':', " "),
    ))
}

/// The `otpauth://` URL authenticator apps read from the QR code.
pub fn totp_url(secret: &str, issuer: &str, account: &str) -> Result<String, String> {
    Ok(totp(secret, issuer, account)?.get_url())
}

/// The QR code of `url` as an SVG image.
pub fn qr_svg(url: &str) -> Result<String, String> {
    let code = qrcode::QrCode::new(url.as_bytes()).map_err(|e| e.to_string())?;
    Ok(code.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build())
}

/// The 30-second step `code` is good for at `unix_seconds` (one step of clock drift either
/// way), if it is good and newer than `last_step`: a code is accepted once.
pub fn check_totp(secret: &str, code: &str, unix_seconds: u64, last_step: Option<i64>) -> Option<i64> {
    let code = code.trim().replace(' ', "");
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret, "idbridge", "x").ok()?;
    let now_step = (unix_seconds / 30) as i64;
    let mut matched = None;
    // Every candidate is compared (no early exit): the time taken does not tell which.
    for step in [now_step - 1, now_step, now_step + 1] {
        let Ok(at) = u64::try_from(step * 30) else { continue };
        if bool::from(totp.generate(at).as_bytes().ct_eq(code.as_bytes())) {
            matched = Some(step);
        }
    }
    matched.filter(|step| last_step.is_none_or(|last| *step > last))
}

/// Ten recovery codes (`xxxx-xxxx-xxxx`, 60 random bits each) and their hashes.
pub fn recovery_codes() -> (Vec<String>, Vec<String>) {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let codes: Vec<String> = (0..10)
        .map(|_| {
            let chars: Vec<char> =
                (0..12).map(|_| char::from(ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()])).collect();
            format!(
                "{}-{}-{}",
                chars[..4].iter().collect::<String>(),
                chars[4..8].iter().collect::<String>(),
                chars[8..].iter().collect::<String>()
            )
        })
        .collect();
    let hashes = codes.iter().map(|c| hash_recovery_code(c)).collect();
    (codes, hashes)
}

/// Recovery codes are compared as typed, without the dashes, in lower case.
pub fn hash_recovery_code(code: &str) -> String {
    let normal: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
    hash_token(&format!("recovery:{normal}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost { memory_kib: 64, iterations: 1, parallelism: 1 };

    #[test]
    fn a_password_verifies_against_its_argon2id_hash_only() {
        let hash = hash_password(CHEAP, "correct horse battery staple").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(verify_password(&hash, "correct horse battery staple"));
        assert!(!verify_password(&hash, "correct horse battery stapler"));
        assert!(!verify_password("not a hash", "anything"));
        assert_ne!(hash, hash_password(CHEAP, "correct horse battery staple").unwrap(), "salted");
    }

    #[test]
    fn short_common_and_personal_passwords_are_refused_with_a_reason() {
        let rules = PasswordRules::default();
        assert!(rules.refuse("short", &[]).unwrap().contains("at least 10"));
        assert!(rules.refuse("password1234", &[]).unwrap().contains("too easy"));
        assert!(rules.refuse("qwertyuiop", &[]).is_some());
        assert!(rules.refuse("adam.miller1", &["adam.miller@abc.example", "Adam", "Miller"]).is_some());
        assert!(rules.refuse(&"x".repeat(300), &[]).unwrap().contains("at most"));
        assert_eq!(rules.refuse("lantern orbit cactus fjord", &[]), None);
    }

    #[test]
    fn totp_matches_rfc_6238_and_takes_a_code_once() {
        // RFC 6238 Appendix B, SHA-1, T = 59 s: 94287082 (8 digits); 6 digits: 287082.
        let secret = totp_rs::Secret::Raw(b"12345678901234567890".to_vec()).to_encoded().to_string();
        assert_eq!(check_totp(&secret, "287082", 59, None), Some(1));
        assert_eq!(check_totp(&secret, "287 082", 59, None), Some(1), "spaces as apps show them");
        assert_eq!(check_totp(&secret, "287082", 59, Some(1)), None, "used once");
        assert_eq!(check_totp(&secret, "287083", 59, None), None);
        assert_eq!(check_totp(&secret, "28708", 59, None), None);
        // 1111111109 s: 07081804 → 081804; one step later still accepted (clock drift).
        assert_eq!(check_totp(&secret, "081804", 1_111_111_109 + 30, None), Some(1_111_111_109 / 30));
        assert_eq!(check_totp(&secret, "081804", 1_111_111_109 + 90, None), None);
    }

    #[test]
    fn recovery_codes_hash_as_typed_without_dashes_or_case() {
        let (codes, hashes) = recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(hash_recovery_code(&codes[0].to_uppercase().replace('-', " ")), hashes[0]);
        assert_ne!(hashes[0], hashes[1]);
    }

    #[test]
    fn the_qr_code_is_an_svg_of_the_otpauth_url() {
        let secret = new_totp_secret();
        let url = totp_url(&secret, "ABC Telecom", "adam@abc.example").unwrap();
        assert!(url.starts_with("otpauth://totp/"), "{url}");
        assert!(url.contains(&format!("secret={secret}")), "{url}");
        assert!(qr_svg(&url).unwrap().contains("<svg"));
    }
}
