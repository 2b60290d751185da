//! The SCIM filter grammar: parse, validate, evaluate against a user, and parse as a
//! PATCH path — none may panic or hang, whatever the text.
#![no_main]

use idbridge_scim::filter::{EvalContext, parse, parse_patch_path};
use idbridge_scim::schema::{ResourceKind, Schemas};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let schemas = Schemas::default();
    let user = serde_json::json!({
        "userName": "bjensen", "emails": [{"value": "b@x.io", "type": "work"}],
        "name": {"familyName": "Jensen"}, "active": true
    });
    if let Ok(filter) = parse(text) {
        let ctx = EvalContext { schemas: &schemas, kind: ResourceKind::User };
        let _ = ctx.validate(&filter);
        let _ = ctx.matches(&filter, &user);
    }
    let _ = parse_patch_path(text);
});
