//! Mapping decisions per second: the built-in rules mapper with 50 rules, and a pipeline
//! through a loaded native plugin (`entra-roles`). One calling thread each, as the
//! benchmark goals are per core. Run: `cargo run --release -p idbridge-plugin-host --example mapping_bench`.
//! Prints Markdown rows for BENCHMARKS.md; asserts nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idbridge_core::individual::SourceKind;
use idbridge_core::mapping::rules::{Rule, RulesMapper};
use idbridge_core::mapping::{ExternalGroup, MappingInput, Pipeline, UserFacts};
use idbridge_plugin_host::{PluginHost, PluginSpec, build_plugin_profile};
use serde_json::json;

fn fifty_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for i in 0..20 {
        rules.push(json!({"name": format!("team-{i}"), "priority": 100 - i, "groups": [format!("team-{i}-admins")], "role": "PBX admin"}));
    }
    for i in 0..15 {
        rules.push(json!({"name": format!("site-{i}"), "groups": [format!("site-{i}-queue-*")], "scopes": {"queues": ["{1}"]}}));
    }
    for i in 0..10 {
        rules.push(json!({"name": format!("dept-{i}"), "priority": 5, "attributes": {"department": format!("Dept{i}*")}, "role": "Operations manager"}));
    }
    for i in 0..4 {
        rules.push(
            json!({"name": format!("deny-{i}"), "priority": 90, "effect": "deny", "groups": [format!("leavers-{i}")]}),
        );
    }
    rules.push(json!({"name": "ids", "priority": 1, "groups": ["id:00000000-0000-0000-0000-000000000042"], "role": "Customer admin"}));
    rules.into_iter().map(|r| serde_json::from_value(r).unwrap()).collect()
}

fn person(n: usize) -> MappingInput {
    let mut groups: Vec<ExternalGroup> = (0..8)
        .map(|g| ExternalGroup {
            source: SourceKind::Scim,
            id: format!("g-{n}-{g}"),
            display_name: format!("staff-{g}"),
            via: vec![],
        })
        .collect();
    groups.push(ExternalGroup {
        source: SourceKind::Scim,
        id: "q".into(),
        display_name: format!("site-{}-queue-{}", n % 15, n % 100),
        via: vec![],
    });
    groups.push(ExternalGroup {
        source: SourceKind::Scim,
        id: "t".into(),
        display_name: format!("team-{}-admins", n % 20),
        via: vec![],
    });
    MappingInput {
        tenant: "acme".into(),
        user: UserFacts {
            login: format!("user{n}@acme.example"),
            department: Some(format!("Dept{}", n % 12)),
            custom: [(
                "app_roles".to_string(),
                if n.is_multiple_of(3) { "Portal.Admin" } else { "Portal.User" }.to_string(),
            )]
            .into(),
            ..Default::default()
        },
        groups,
        current: None,
    }
}

/// Decisions per second, one at a time (`batch` = 1, as a login decides) or a page at a
/// time (as a sync or re-map decides).
fn rate(pipeline: &Pipeline, inputs: &[MappingInput], seconds: u64, batch: usize) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut n = 0usize;
    while Instant::now() < deadline {
        if batch == 1 {
            for input in inputs {
                std::hint::black_box(pipeline.decide(input));
                n += 1;
            }
        } else {
            for page in inputs.chunks(batch) {
                n += std::hint::black_box(pipeline.decide_many(page)).len();
            }
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let inputs: Vec<MappingInput> = (0..1000).map(person).collect();
    let rules = Pipeline { mappers: vec![Arc::new(RulesMapper::new(&fifty_rules()).unwrap())], default_role: None };
    let sample = rules.decide(&inputs[1]);
    assert!(
        sample.role.is_some() && !sample.scopes.queues.is_empty(),
        "the workload must exercise roles and scopes: {sample:?}"
    );
    let rules_rate = rate(&rules, &inputs, 5, 1);

    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().and_then(Path::parent).unwrap();
    // Optimised like the host: a debug plugin spends its time in unoptimised serde.
    let path = build_plugin_profile("idbridge-plugin-entra-roles", workspace, true).unwrap();
    let host = PluginHost::load(&[PluginSpec {
        id: "entra".into(),
        path,
        sha256: None,
        config: json!({"table": [{"key": "Portal.Admin", "role": "Customer admin"}, {"key": "Portal.User", "role": "PBX admin", "queues": ["1"]}]}),
        timeout_ms: 1000,
        workers: 2,
    }])
    .unwrap();
    let plugin = Pipeline { mappers: vec![host.mapper("entra").unwrap()], default_role: None };
    assert!(plugin.decide(&inputs[0]).role.is_some());
    let plugin_single = rate(&plugin, &inputs, 5, 1);
    let plugin_rate = rate(&plugin, &inputs, 5, 1000);

    println!(
        "| mapping decisions, rules mapper with 50 rules, 10 groups per person, one thread | {rules_rate:.0}/s | ≥ 500,000/s |"
    );
    println!(
        "| mapping decisions through the entra-roles native plugin, pages of 1,000 (sync, re-map), one calling thread | {plugin_rate:.0}/s | ≥ 100,000/s |"
    );
    println!(
        "| mapping decisions through the entra-roles native plugin, one person per call (login), one calling thread | {plugin_single:.0}/s | |"
    );
}
