//! Compact JWS as idbridge reads untrusted ones (an `id_token_hint` at logout): split,
//! decoded and checked against a key of each kind — never a panic, and nothing but a
//! signature the key made verifies.
#![no_main]

use std::sync::OnceLock;

use idbridge_oidc::jose::{self, Signer};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static [Signer; 2] {
    static KEYS: OnceLock<[Signer; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = |alg| Signer::from_pkcs8(&jose::generate_pkcs8(alg).unwrap()).unwrap();
        [key("ES256"), key("RS256")]
    })
}

// The keys are made before the first input: an RSA key takes seconds to generate, which
// libFuzzer would report as a hang of whatever input happened to come first.
fuzz_target!(init: { keys(); }, |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = idbridge_core::token::bearer(text);
    if let Some((header, _claims, signing_input, signature)) = jose::parse_jws(text) {
        let alg = header["alg"].as_str().unwrap_or("none");
        for key in keys() {
            assert!(!key.verifies(alg, signing_input.as_bytes(), &signature), "a forged signature verified");
        }
    }
});
