//! The `idbridge apply` document: any text as TOML, into the desired configuration.
#![no_main]

use idbridge_server::apply_file::ApplyDocument;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(document) = ApplyDocument::from_toml(text) {
        let _ = document.into_desired(["rules".to_owned()].into());
    }
});
