//! Properties of the `idbridge apply` parser over generated documents (the `apply_file`
//! fuzz target searches the same function longer): a damaged copy of the example file
//! parses or is refused with an error, never a panic; tenants written with any slug the
//! grammar allows and any printable name come back exactly.

use idbridge_server::apply_file::ApplyDocument;
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../../config/examples/acme.toml");

fn mappers() -> std::collections::BTreeSet<String> {
    ["rules".to_owned()].into()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_damaged_example_parses_or_is_refused(
        cut in 0..EXAMPLE.lines().count(),
        duplicate in 0..EXAMPLE.lines().count(),
        junk in "\\PC{0,16}",
        at in 0..EXAMPLE.lines().count(),
    ) {
        let mut lines: Vec<String> = EXAMPLE.lines().map(str::to_owned).collect();
        let copy = lines[duplicate].clone();
        lines.insert(duplicate, copy);
        lines.remove(cut.min(lines.len() - 1));
        let at = at.min(lines.len());
        lines.insert(at, junk);
        if let Ok(document) = ApplyDocument::from_toml(&lines.join("\n")) {
            let _ = document.into_desired(mappers());
        }
    }

    #[test]
    fn tenants_come_back_as_written(tenants in proptest::collection::btree_map("[a-z][a-z0-9-]{0,20}", "\\PC{1,30}", 1..8)) {
        let text: String = tenants
            .iter()
            .map(|(slug, name)| format!("[[tenants]]\nslug = {}\nname = {}\n", serde_json::json!(slug), serde_json::json!(name)))
            .collect();
        let desired = ApplyDocument::from_toml(&text).unwrap().into_desired(mappers());
        let desired = match desired {
            Ok(d) => d,
            // A slug the domain refuses (e.g. a trailing dash) is named in the error.
            Err(e) => {
                prop_assert!(tenants.keys().any(|slug| e.to_string().contains(slug.as_str())), "{}", e);
                return Ok(());
            }
        };
        let back: Vec<(String, String)> =
            desired.tenants.iter().map(|(slug, t)| (slug.as_str().to_owned(), t.name.clone())).collect();
        let written: Vec<(String, String)> = tenants.into_iter().collect();
        prop_assert_eq!(back, written);
    }
}
