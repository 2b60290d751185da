//! The PATCH engine: any JSON body as a PatchOp, applied to a user and to a group.
#![no_main]

use idbridge_scim::patch::{Compat, apply, parse};
use idbridge_scim::schema::{ResourceKind, Schemas};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(operations) = parse(&body) else { return };
    let schemas = Schemas::default();
    let user = serde_json::json!({"userName": "bjensen", "emails": [{"value": "b@x.io", "type": "work"}], "active": true});
    let group = serde_json::json!({"displayName": "team"});
    for (kind, resource) in [(ResourceKind::User, user), (ResourceKind::Group, group)] {
        let serde_json::Value::Object(map) = resource else { continue };
        let _ = apply(&schemas, kind, map, &operations, Compat { create_missing_filtered_value: true });
    }
});
