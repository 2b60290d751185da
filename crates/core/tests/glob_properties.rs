//! Properties of the group-name glob matcher, over generated patterns and names: it
//! agrees with a regular expression of the same meaning (`*` = `(.*?)`, `?` = `.`,
//! case-insensitive) on whether a name matches *and* on every capture — the regex
//! engine's lazy, leftmost-first captures are the shortest-first semantics the rules
//! document.

use idbridge_core::mapping::glob::Glob;
use proptest::prelude::*;

fn oracle(pattern: &str) -> regex::Regex {
    let mut re = String::from("(?is)^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str("(.*?)"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).unwrap()
}

/// Small alphabets make matches (and near misses) common.
fn pattern() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![Just('*'), Just('?'), Just('-'), Just('a'), Just('B'), Just('x')], 0..12)
        .prop_map(|c| c.into_iter().collect())
}

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![Just('-'), Just('a'), Just('b'), Just('X'), Just('é')], 0..40)
        .prop_map(|c| c.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_the_equivalent_regex(pattern in pattern(), name in name()) {
        let expected: Option<Vec<String>> = oracle(&pattern)
            .captures(&name)
            .map(|c| c.iter().skip(1).map(|m| m.map_or(String::new(), |m| m.as_str().to_owned())).collect());
        prop_assert_eq!(Glob::new(&pattern).captures(&name), expected, "pattern {:?} name {:?}", pattern, name);
    }

    /// A name built from the pattern's literals with arbitrary fillers always matches.
    #[test]
    fn a_name_built_from_the_pattern_matches(pattern in pattern(), fillers in proptest::collection::vec("[-ab]{0,6}", 12)) {
        let mut fillers = fillers.into_iter();
        let built: String = pattern
            .chars()
            .map(|c| match c {
                '*' => fillers.next().unwrap_or_default(),
                '?' => "q".to_owned(),
                c => c.to_string(),
            })
            .collect();
        prop_assert!(Glob::new(&pattern).captures(&built).is_some(), "pattern {:?} name {:?}", pattern, built);
    }
}
