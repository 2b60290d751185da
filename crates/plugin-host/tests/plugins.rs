//! The plugin host against the real `cdylib`s built from `plugins/` (the harness asks
//! cargo to build them and reads the artifact paths).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;

use idbridge_core::individual::SourceKind;
use idbridge_core::mapping::{ExternalGroup, Mapper, MappingInput, Pipeline, UserFacts, Verdict};
use idbridge_plugin_host::{PluginHost, PluginLoadError, PluginSpec, build_plugin};
use serde_json::json;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().and_then(Path::parent).expect("workspace root")
}

fn artifact(package: &str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    let map = BUILT.get_or_init(Default::default);
    let mut map = map.lock().unwrap();
    map.entry(package.to_owned()).or_insert_with(|| build_plugin(package, workspace()).unwrap()).clone()
}

fn spec(id: &str, package: &str, config: serde_json::Value) -> PluginSpec {
    PluginSpec { id: id.into(), path: artifact(package), sha256: None, config, timeout_ms: 200, workers: 4 }
}

fn input(login: &str) -> MappingInput {
    MappingInput {
        tenant: "acme".into(),
        user: UserFacts {
            login: login.into(),
            department: Some("Finance".into()),
            title: Some("Finance Manager".into()),
            custom: [("app_roles".to_string(), "Portal.Admin, Other".to_string())].into(),
            ..Default::default()
        },
        groups: vec![ExternalGroup {
            source: SourceKind::Scim,
            id: "g-queue-7".into(),
            display_name: "Queue 7".into(),
            via: vec![],
        }],
        current: None,
    }
}

#[test]
fn example_plugins_map_with_reasons() {
    let host = PluginHost::load(&[
        spec("entra", "idbridge-plugin-entra-roles", json!({"table": [
            {"key": "Portal.Admin", "role": "Customer admin", "access_profile": "Full portal"},
            {"key": "g-queue-7", "queues": ["7"]}
        ]})),
        spec("hr", "idbridge-plugin-department-title", json!({"rules": [{"department": "finance", "title_contains": "manager", "role": "Operations manager", "access_profile": "Billing only"}]})),
    ])
    .unwrap();
    let entra = host.get("entra").unwrap();
    let out = entra.map(&input("bob")).unwrap();
    assert_eq!(out.verdict, Verdict::Grant);
    assert_eq!(out.role.as_deref(), Some("Customer admin"));
    assert_eq!(out.scopes.queues, ["7".to_string()].into());
    assert!(out.reasons.iter().all(|r| r.mapper == "entra"), "reasons carry the plugin id");
    assert!(out.reasons.iter().any(|r| r.grants == "scope:queues=7" && r.groups == ["g-queue-7"]));

    let hr = host.get("hr").unwrap();
    assert_eq!(hr.map(&input("bob")).unwrap().role.as_deref(), Some("Operations manager"));

    let statuses = host.statuses();
    assert_eq!(statuses.len(), 2);
    let entra_status = statuses.iter().find(|s| s.id == "entra").unwrap();
    assert_eq!(
        (entra_status.name.as_str(), entra_status.version.as_str(), entra_status.health.as_str()),
        ("entra-roles", "1.0.0", "healthy")
    );
    assert_eq!(entra_status.sha256.len(), 64);

    // A pipeline of both: entra decides the role, scopes add up.
    let pipeline =
        Pipeline { mappers: vec![host.mapper("entra").unwrap(), host.mapper("hr").unwrap()], default_role: None };
    let d = pipeline.decide(&input("bob"));
    assert_eq!(d.role.as_deref(), Some("Customer admin"));
}

#[test]
fn loading_refuses_wrong_abi_missing_entry_bad_pin_and_rejected_config() {
    let err = PluginHost::load(&[spec("future", "idbridge-plugin-fixture-wrong-abi", json!({}))]).unwrap_err();
    assert!(matches!(err, PluginLoadError::AbiVersion { found: 999, expected: 1, .. }), "{err}");
    let err = PluginHost::load(&[spec("none", "idbridge-plugin-fixture-no-entry", json!({}))]).unwrap_err();
    assert!(matches!(err, PluginLoadError::NoEntry { .. }), "{err}");
    let mut pinned = spec("pinned", "idbridge-plugin-fixture-misbehaving", json!({}));
    pinned.sha256 = Some("00".repeat(32));
    assert!(matches!(PluginHost::load(&[pinned]).unwrap_err(), PluginLoadError::HashMismatch { .. }));
    let err = PluginHost::load(&[spec("picky", "idbridge-plugin-fixture-misbehaving", json!({"behaviour": "reject"}))])
        .unwrap_err();
    assert!(err.to_string().contains("field behaviour"), "{err}");
    let err =
        PluginHost::load(&[spec("entra", "idbridge-plugin-entra-roles", json!({"table": [{"key": ""}]}))]).unwrap_err();
    assert!(err.to_string().contains("table[0].key"), "{err}");
    let err = PluginHost::load(&[spec(
        "boom",
        "idbridge-plugin-fixture-misbehaving",
        json!({"behaviour": "panic-on-create"}),
    )])
    .unwrap_err();
    assert!(err.to_string().contains("panic"), "{err}");
    let missing = PluginSpec {
        path: PathBuf::from("/nonexistent/libnothing.so"),
        ..spec("x", "idbridge-plugin-fixture-misbehaving", json!({}))
    };
    assert!(matches!(PluginHost::load(&[missing]).unwrap_err(), PluginLoadError::Unreadable { .. }));
}

#[test]
fn a_panicking_plugin_is_quarantined_until_reloaded() {
    let specs = vec![PluginSpec {
        timeout_ms: 5000,
        ..spec("fragile", "idbridge-plugin-fixture-misbehaving", json!({"behaviour": "panic"}))
    }];
    let host = PluginHost::load(&specs).unwrap();
    let fragile = host.get("fragile").unwrap();
    let err = fragile.map(&input("bob")).unwrap_err();
    assert!(err.message.contains("panicked on purpose"), "{err}");
    assert_eq!(host.statuses()[0].health, "quarantined");
    assert!(fragile.map(&input("bob")).unwrap_err().message.contains("quarantined"));
    // The pipeline keeps deciding: the broken mapper abstains and is reported.
    let pipeline = Pipeline { mappers: vec![host.mapper("fragile").unwrap()], default_role: Some("Viewer".into()) };
    let d = pipeline.decide(&input("bob"));
    assert_eq!(d.role.as_deref(), Some("Viewer"));
    assert_eq!(d.errors.len(), 1);
    // Reload with a new config re-creates the instance (the library stays loaded).
    host.reload(&[spec("fragile", "idbridge-plugin-fixture-misbehaving", json!({"behaviour": "ok"}))]).unwrap();
    assert_eq!(host.statuses()[0].health, "healthy");
    assert_eq!(host.get("fragile").unwrap().map(&input("bob")).unwrap().role.as_deref(), Some("PBX admin"));
}

#[test]
fn garbage_errors_and_timeouts_are_mapper_errors() {
    let host = PluginHost::load(&[
        spec("garbage", "idbridge-plugin-fixture-misbehaving", json!({"behaviour": "garbage"})),
        spec("error", "idbridge-plugin-fixture-misbehaving", json!({"behaviour": "error"})),
        PluginSpec {
            timeout_ms: 50,
            ..spec("slow", "idbridge-plugin-fixture-misbehaving", json!({"behaviour": "slow", "sleep_ms": 400}))
        },
    ])
    .unwrap();
    let err = host.get("garbage").unwrap().map(&input("bob")).unwrap_err();
    assert!(err.message.contains("invalid scopes"), "{err}");
    let err = host.get("error").unwrap().map(&input("bob")).unwrap_err();
    assert!(err.message.contains("refusing on purpose"), "{err}");
    let started = std::time::Instant::now();
    let err = host.get("slow").unwrap().map(&input("bob")).unwrap_err();
    assert!(err.message.contains("no answer within 50 ms"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_millis(300));
    // The worker is still inside the call it was given: health says so (a hung plugin
    // is not "healthy" while it refuses calls), and recovers when the call ends.
    let status = |host: &PluginHost| host.statuses().into_iter().find(|s| s.id == "slow").unwrap();
    // The worker may have picked the call up a little after the caller started waiting:
    // it counts as stuck once it has been inside the call for longer than the timeout.
    let mut slow = status(&host);
    for _ in 0..20 {
        if slow.workers_stuck == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        slow = status(&host);
    }
    assert_eq!((slow.timeouts, slow.workers_stuck), (1, 1), "{slow:?}");
    let expected = if slow.workers == 1 { "saturated" } else { "degraded" };
    assert_eq!(slow.health, expected, "{slow:?}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let slow = status(&host);
    assert_eq!((slow.workers_stuck, slow.health.as_str()), (0, "healthy"), "{slow:?}");
}

#[test]
fn a_hung_plugin_is_reported_saturated_and_refusals_name_the_stuck_workers() {
    let host = PluginHost::load(&[PluginSpec {
        timeout_ms: 50,
        workers: 1,
        ..spec("hung", "idbridge-plugin-fixture-misbehaving", json!({"behaviour": "slow", "sleep_ms": 3000}))
    }])
    .unwrap();
    let hung = host.get("hung").unwrap();
    assert!(hung.map(&input("a")).unwrap_err().message.contains("no answer"));
    // The one worker is stuck; the queue takes a few more, then calls are refused.
    let refused = (0..10)
        .map(|i| hung.map(&input(&format!("u{i}"))))
        .filter_map(Result::err)
        .find(|e| e.message.contains("too many calls in flight"))
        .expect("a call is refused once the queue is full");
    assert!(refused.message.contains("1 of 1 workers stuck"), "{refused}");
    let status = &host.statuses()[0];
    assert_eq!((status.health.as_str(), status.workers, status.workers_stuck), ("saturated", 1, 1), "{status:?}");
    assert!(status.refused_busy >= 1, "{status:?}");
}

#[test]
fn many_concurrent_calls() {
    let host = Arc::new(
        PluginHost::load(&[spec(
            "entra",
            "idbridge-plugin-entra-roles",
            json!({"table": [{"key": "Portal.Admin", "role": "Customer admin"}]}),
        )])
        .unwrap(),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let host = host.clone();
            std::thread::spawn(move || {
                let mapper = host.get("entra").unwrap();
                let mut ok = 0;
                for i in 0..500 {
                    // The bounded queue may push back under load; that is an error, never a crash.
                    if let Ok(out) = mapper.map(&input(&format!("u{t}-{i}"))) {
                        assert_eq!(out.role.as_deref(), Some("Customer admin"));
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let ok: i32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(ok > 3000, "only {ok} of 4000 calls answered");
    assert_eq!(host.statuses()[0].calls, 4000);
}

#[test]
fn batches_answer_like_single_calls_and_stop_on_a_timeout_or_a_panic() {
    let host = PluginHost::load(&[
        spec(
            "entra",
            "idbridge-plugin-entra-roles",
            json!({"table": [{"key": "Portal.Admin", "role": "Customer admin", "queues": ["7"]}]}),
        ),
        PluginSpec {
            timeout_ms: 50,
            ..spec("slow", "idbridge-plugin-fixture-misbehaving", json!({"behaviour": "slow", "sleep_ms": 400}))
        },
        PluginSpec {
            timeout_ms: 5000,
            ..spec("fragile", "idbridge-plugin-fixture-misbehaving", json!({"behaviour": "panic"}))
        },
    ])
    .unwrap();
    let inputs: Vec<MappingInput> = (0..300).map(|n| input(&format!("user{n}"))).collect();
    let pipeline = Pipeline { mappers: vec![host.mapper("entra").unwrap()], default_role: None };
    let one_by_one: Vec<_> = inputs.iter().map(|i| pipeline.decide(i)).collect();
    assert_eq!(pipeline.decide_many(&inputs), one_by_one);
    assert_eq!(one_by_one[0].role.as_deref(), Some("Customer admin"));

    let started = std::time::Instant::now();
    let slow = host.get("slow").unwrap().map_batch(&inputs[..3]);
    assert!(started.elapsed() < std::time::Duration::from_millis(300), "the batch waited for every sleeper");
    assert_eq!(slow.len(), 3);
    assert!(slow.iter().all(|r| r.as_ref().is_err_and(|e| e.message.contains("no answer within 50 ms"))), "{slow:?}");

    let fragile = host.get("fragile").unwrap().map_batch(&inputs[..3]);
    assert!(fragile[0].as_ref().unwrap_err().message.contains("panicked on purpose"), "{fragile:?}");
    assert!(fragile[1..].iter().all(|r| r.as_ref().is_err_and(|e| e.message.contains("quarantined"))), "{fragile:?}");
}
