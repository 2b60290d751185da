//! Properties of the SCIM filter grammar and the PATCH engine over generated input, in
//! the normal suite (the fuzz targets in `fuzz/` search the same functions for crashes
//! for longer):
//! - any text parses or is refused, never panics;
//! - a string comparison built from any value (quotes, backslashes, control and
//!   multi-byte characters) round-trips through JSON escaping and matches exactly the
//!   resource holding that value;
//! - PATCH `add` of values is idempotent, de-duplicates, and `remove` with a value filter
//!   undoes it.

use idbridge_scim::filter::{EvalContext, parse, parse_patch_path};
use idbridge_scim::patch::{self, Compat};
use idbridge_scim::schema::{ResourceKind, Schemas};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Text made of the grammar's own tokens, so that most of it gets past the lexer.
fn filter_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("userName"),
        Just("emails"),
        Just("[type eq \"work\"]"),
        Just(".value"),
        Just(" eq "),
        Just(" co "),
        Just(" sw "),
        Just(" pr"),
        Just(" gt "),
        Just(" and "),
        Just(" or "),
        Just("not "),
        Just("("),
        Just(")"),
        Just("\"x\""),
        Just("\"é\\\"\""),
        Just("true"),
        Just("42"),
        Just("null"),
        Just("["),
        Just("]"),
        Just("urn:ietf:params:scim:schemas:core:2.0:User:"),
        Just("name.familyName"),
        Just("abcé"),
        Just(" "),
    ];
    proptest::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

fn user(name: &str) -> Value {
    json!({"userName": name, "emails": [{"value": "b@x.io", "type": "work"}], "active": true})
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn any_text_parses_or_is_refused(text in any::<String>(), soup in filter_soup()) {
        let schemas = Schemas::default();
        let ctx = EvalContext { schemas: &schemas, kind: ResourceKind::User };
        for input in [&text, &soup] {
            if let Ok(filter) = parse(input) {
                let _ = ctx.validate(&filter);
                let _ = ctx.matches(&filter, &user("bjensen"));
            }
            let _ = parse_patch_path(input);
        }
    }

    #[test]
    fn an_escaped_value_matches_exactly_its_resource(value in any::<String>(), other in any::<String>()) {
        prop_assume!(value.to_lowercase() != other.to_lowercase());
        let quoted = serde_json::to_string(&value).unwrap();
        let filter = parse(&format!("userName eq {quoted}")).expect("a JSON string is a valid comparison value");
        let schemas = Schemas::default();
        let ctx = EvalContext { schemas: &schemas, kind: ResourceKind::User };
        prop_assert!(ctx.validate(&filter).is_ok());
        prop_assert!(ctx.matches(&filter, &user(&value)));
        // userName is caseExact false: another case of the same name matches too.
        if value.to_uppercase().to_lowercase() == value.to_lowercase() {
            prop_assert!(ctx.matches(&filter, &user(&value.to_uppercase())));
        }
        prop_assert!(!ctx.matches(&filter, &user(&other)));
        let negated = parse(&format!("not (userName eq {quoted})")).unwrap();
        prop_assert!(!ctx.matches(&negated, &user(&value)));
    }

    #[test]
    fn add_is_idempotent_and_remove_undoes_it(values in proptest::collection::vec("[a-z0-9.]{1,12}@[a-z]{1,6}\\.example", 1..30)) {
        let schemas = Schemas::default();
        let apply = |body: Map<String, Value>, message: Value| {
            let operations = patch::parse(&message).unwrap();
            patch::apply(&schemas, ResourceKind::User, body, &operations, Compat { create_missing_filtered_value: true })
                .unwrap()
                .body
        };
        let Value::Object(original) = user("bjensen") else { unreachable!() };
        let add = json!({"Operations": [{"op": "add", "path": "emails",
            "value": values.iter().map(|v| json!({"value": v, "type": "other"})).collect::<Vec<_>>()}]});
        let once = apply(original.clone(), add.clone());
        let twice = apply(once.clone(), add);
        prop_assert_eq!(&once, &twice);
        let mut distinct = values.clone();
        distinct.sort();
        distinct.dedup();
        prop_assert_eq!(once["emails"].as_array().unwrap().len(), 1 + distinct.len());
        let mut back = once;
        for v in &distinct {
            back = apply(back, json!({"Operations": [{"op": "remove", "path": format!("emails[value eq \"{v}\"]")}]}));
        }
        prop_assert_eq!(back, original);
    }
}

/// Filters over the limits are refused with a message naming the limit.
#[test]
fn an_overlong_or_deep_filter_is_refused_by_name() {
    let long = format!("userName eq \"{}\"", "a".repeat(5000));
    let error = parse(&long).unwrap_err();
    assert!(error.to_string().contains("longer than"), "{error}");
    let deep = format!("{}userName pr{}", "(".repeat(40), ")".repeat(40));
    let error = parse(&deep).unwrap_err();
    assert!(error.to_string().contains("nests deeper"), "{error}");
}
