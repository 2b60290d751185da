//! Scopes as clients send them (Portal API and admin API bodies): group reaches written as
//! `"all"` or lists, then every operation a change by hand or a delegated check runs.
#![no_main]

use idbridge_core::scopes::Scopes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (a, b) = text.split_once('\n').unwrap_or((text, "{}"));
    let (Ok(mut a), Ok(b)) = (serde_json::from_str::<Scopes>(a), serde_json::from_str::<Scopes>(b)) else { return };
    let _ = a.validate();
    let _ = a.entries();
    let _ = a.is_within(&b) && b.is_within(&a);
    let _ = a.group_scopes_differ(&b);
    let mut joined = a.clone();
    joined.union(&b);
    // A union holds everything of both sides.
    assert!(a.is_within(&joined) && b.is_within(&joined), "{a:?} ∪ {b:?} = {joined:?}");
    a.remove(&b);
    // What is written reads back as the same value.
    let written = serde_json::to_string(&a).expect("scopes serialise");
    assert_eq!(serde_json::from_str::<Scopes>(&written).expect("read back"), a);
});
