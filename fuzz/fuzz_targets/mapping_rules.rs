//! The rules mapper: glob patterns against group names (captures and templates), with
//! the pattern and the name both from the input.
#![no_main]

use idbridge_core::mapping::glob::Glob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern, name) = text.split_once('\n').unwrap_or((text, "pbx-queue-101"));
    let glob = Glob::new(pattern);
    let _ = glob.literal_prefix();
    let _ = glob.captures(name);
});
