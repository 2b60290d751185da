//! What a browser (or anyone) posts as a passkey's answer to a registration: JSON around
//! base64url CBOR, taken apart by webauthn-rs: an answer is accepted or refused, never a
//! panic. The same bytes as a language tag: the validator never panics and accepts only
//! what RFC 5646 shapes.
#![no_main]

use std::sync::LazyLock;

use idbridge_app::local_accounts::passkeys::{Ceremony, Relying};
use libfuzzer_sys::fuzz_target;

static PARTY: LazyLock<(Relying, Ceremony)> = LazyLock::new(|| {
    let rp = Relying::for_public_url("https://id.example", "ABC Telecom").unwrap().unwrap();
    let ceremony = rp.begin_registration(uuid::Uuid::nil(), "bob@smallco.example", "Bob", &[]).unwrap();
    (rp, ceremony)
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (rp, ceremony) = &*PARTY;
    let _ = rp.finish_registration(&ceremony.state, text);
    if idbridge_core::individual::validate_language(text).is_ok() {
        assert!(text.len() <= 35 && !text.is_empty());
    }
});
