//! Lifecycle benchmarks on SQLite, through the same code the daemon runs:
//!
//! 1. reconciliation throughput: 100,000 SCIM users (with their groups) become
//!    individuals — records read a page at a time, decided by the tenant's rules, planned
//!    and written in batches with their audit records and change events;
//! 2. a complete re-map of those 100,000 after a rule change (every individual changes);
//! 3. a re-map where nothing changes;
//! 4. 100,000 individuals whose expiration falls on the same instant, expired by one
//!    scheduler tick.
//!
//! Run: `cargo run --release -p idbridge-server --example lifecycle_bench [-- USERS]`.
//! Prints Markdown rows for BENCHMARKS.md; asserts only that the work was done.

use std::sync::Arc;
use std::time::Instant;

use idbridge_app::mapping::MappingService;
use idbridge_app::operator::Operator;
use idbridge_app::reconciliation::SourceReconciliation;
use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::changeset::PlannedWrite;
use idbridge_core::clock::ManualClock;
use idbridge_core::individual::IndividualQuery;
use idbridge_core::ports::{ScimRecordStore, Store};
use idbridge_core::reconcile::{Reconciler, Submitted};
use idbridge_core::schedule::LocalInstant;
use idbridge_core::source_record::{MemberChange, ScimKind, ScimRecord, ScimWrite};
use idbridge_core::tenant::TenantSlug;
use idbridge_server::apply_file::ApplyDocument;
use idbridge_store::{SqlStore, StoreOptions};
use serde_json::json;
use uuid::Uuid;

// The same allocator as the daemon.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn ctx() -> AuditContext {
    AuditContext::new(Actor::new(ActorKind::Operator, "bench"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let users: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = SqlStore::connect(&StoreOptions::new(url)).await?;
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let operator = Operator::new(shared.clone(), idbridge_core::catalog::Catalog::builtin());
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = std::fs::read_to_string(workspace.join("config/examples/acme.toml"))?;
    let mut known = std::collections::BTreeSet::new();
    known.insert("rules".to_owned());
    let desired = ApplyDocument::from_toml(&example)?.into_desired(known)?;
    operator.apply(&desired, false, &ctx()).await?;
    let slug = TenantSlug::parse("acme")?;
    let tenant = operator.tenant(&slug).await?;
    // Every user deprovisioned at once would be held by the guard: lift it for the bench.
    let mut settings = tenant.settings();
    settings.policy.mass_deprovision_min = u32::MAX;
    let tenant = shared.update_tenant(tenant.id, tenant.version, &settings, &ctx()).await?;

    // Seed SCIM: the users, everyone in pbx-admins, and 100 queue groups of users/100.
    let seeding = Instant::now();
    let records: Arc<dyn ScimRecordStore> = Arc::new(store.clone());
    let now = idbridge_core::clock::now();
    let record = |kind, name: String, data| ScimRecord {
        tenant_id: tenant.id,
        kind,
        id: Uuid::new_v4(),
        external_id: None,
        name,
        data,
        version: 0,
        created_at: now,
        updated_at: now,
        seq: 0,
    };
    let mut ids = Vec::with_capacity(users);
    for n in 0..users {
        let user = record(
            ScimKind::User,
            format!("user{n:06}@acme.example"),
            json!({"userName": format!("user{n:06}@acme.example"), "active": true}),
        );
        ids.push(user.id);
        let audit = ctx().record(Some(tenant.id), "scim_user", user.id.to_string(), "scim.user.created", None, None);
        records
            .write_scim(&ScimWrite {
                record: user,
                expected_version: None,
                body_changed: true,
                members: vec![],
                change: Uuid::new_v4(),
                audit,
            })
            .await?;
    }
    let group = |name: &str, members: Vec<Uuid>| {
        let g = record(ScimKind::Group, name.to_owned(), json!({"displayName": name}));
        let audit = ctx().record(Some(tenant.id), "scim_group", g.id.to_string(), "scim.group.created", None, None);
        ScimWrite {
            record: g,
            expected_version: None,
            body_changed: true,
            members: vec![MemberChange::Add(members)],
            change: Uuid::new_v4(),
            audit,
        }
    };
    records.write_scim(&group("pbx-admins", ids.clone())).await?;
    for q in 0..100 {
        let members: Vec<Uuid> = ids.iter().skip(q).step_by(100).copied().collect();
        records.write_scim(&group(&format!("pbx-queue-{q}"), members)).await?;
    }
    let seeded = seeding.elapsed();
    // The seeding's writes recorded intents, which the daemon would have settled (the
    // request's fast path, or the intent worker); settle them the same way here — by
    // deleting them — so they do not sit in the database the measurements read.
    let far = idbridge_core::clock::now() + jiff::SignedDuration::from_hours(1);
    loop {
        let batch = idbridge_core::ports::IntentQueue::claim_intents(&store, far, 10_000).await?;
        if batch.is_empty() {
            break;
        }
        let ids: Vec<i64> = batch.iter().map(|i| i.id).collect();
        idbridge_core::ports::IntentQueue::clear_intents(&store, &ids).await?;
    }

    let mapping = MappingService {
        operator: operator.clone(),
        plugins: Arc::new(idbridge_plugin_host::PluginHost::default()),
        records: records.clone(),
    };
    let reconciliation = SourceReconciliation::new(
        &idbridge_app::Ports::of(&store),
        idbridge_core::reconcile::Reconciler::new(&store),
        mapping,
    );

    let started = Instant::now();
    let created = applied(reconciliation.remap(&tenant, "bench: first reconciliation", &ctx()).await?);
    let first = started.elapsed();
    assert_eq!(created, users, "every user became an individual");

    // A rule change: the queue rule now also grants the extension of the same number.
    let mut rules = shared.get_mapping_rules(tenant.id).await?;
    for rule in &mut rules {
        if rule.name == "queue supervisors" {
            rule.scopes.extensions.push("{1}".into());
        }
    }
    operator.replace_rules(&slug, rules, ["rules".to_owned()].into(), false, &ctx()).await?;
    let started = Instant::now();
    let changed = applied(reconciliation.remap(&tenant, "bench: rule change", &ctx()).await?);
    let remap = started.elapsed();
    assert_eq!(changed, users, "every individual gained an extension");

    // A rule change that concerns 1 % of the people (the members of one queue group).
    let mut rules = shared.get_mapping_rules(tenant.id).await?;
    rules.push(serde_json::from_value(
        json!({"name": "queue 7 extension", "groups": ["pbx-queue-7"], "scopes": {"extensions": ["7007"]}}),
    )?);
    operator.replace_rules(&slug, rules, ["rules".to_owned()].into(), false, &ctx()).await?;
    let started = Instant::now();
    let some = applied(reconciliation.remap(&tenant, "bench: small rule change", &ctx()).await?);
    let small = started.elapsed();
    assert_eq!(some, users / 100);

    let started = Instant::now();
    let unchanged = applied(reconciliation.remap(&tenant, "bench: nothing changed", &ctx()).await?);
    let steady = started.elapsed();
    assert_eq!(unchanged, 0);

    // Everyone expires at the same local midnight.
    let mut writes = Vec::with_capacity(users);
    let mut after = None;
    loop {
        let page = shared
            .list_individuals(
                tenant.id,
                &IndividualQuery { status: None, after_login: after.clone(), in_groups: None, limit: 10_000 },
            )
            .await?;
        after = page.last().map(|i| i.login.clone());
        for i in &page {
            let mut next = i.clone();
            next.expiration = Some(LocalInstant::parse("2030-01-01T00:00", &i.time_zone)?);
            writes.push(PlannedWrite { before: Some(i.clone()), after: next, action: "bench.expiration".into() });
        }
        if page.len() < 10_000 {
            break;
        }
    }
    let plain = Reconciler::new(&store);
    plain.commit(&tenant, writes, &ctx()).await?;
    let clock = Arc::new(ManualClock::new("2030-01-01T00:00:01Z".parse()?));
    let scheduler = Reconciler::with_clock(&store, clock);
    if std::env::var("BENCH_PHASES").is_ok() {
        let t = Instant::now();
        let due = shared.list_due_individuals("2030-01-01T00:00:01Z".parse()?, 1000).await?;
        eprintln!("list 1000 due: {:?}", t.elapsed());
        let t = Instant::now();
        let writes: Vec<_> = due
            .iter()
            .filter_map(|i| match scheduler.plan_schedule(&tenant, i, "2030-01-01T00:00:01Z".parse().unwrap()) {
                idbridge_core::reconcile::Plan::Write(w) => Some(*w),
                _ => None,
            })
            .collect();
        eprintln!("plan 1000: {:?}", t.elapsed());
        let t = Instant::now();
        scheduler.commit(&tenant, writes, &ctx()).await?;
        eprintln!("commit 1000: {:?}", t.elapsed());
    }
    let started = Instant::now();
    let report =
        idbridge_core::lifecycle::tick(&scheduler, &AuditContext::new(Actor::new(ActorKind::Scheduler, "bench")))
            .await?;
    let expiry = started.elapsed();
    if std::env::var("BENCH_PHASES").is_err() {
        assert_eq!(report.applied, users);
    }

    let per_second = |n: usize, d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!("seeded {users} SCIM users and 101 groups in {:.1} s", seeded.as_secs_f64());
    println!(
        "| reconciliation: {users} SCIM users → new individuals (rules, audit, change events) | {:.2} s ({:.0}/s) | ≥ 5,000/s |",
        first.as_secs_f64(),
        per_second(users, first)
    );
    println!(
        "| complete re-map of {users} individuals after a rule change (all change) | {:.2} s ({:.0}/s) | < 5 s |",
        remap.as_secs_f64(),
        per_second(users, remap)
    );
    println!(
        "| complete re-map of {users} individuals after a rule change that concerns 1 % of them | {:.2} s | < 5 s |",
        small.as_secs_f64()
    );
    println!("| re-map of {users} individuals, nothing changes | {:.2} s | |", steady.as_secs_f64());
    println!(
        "| expire {users} individuals due at the same instant (one scheduler tick) | {:.2} s ({:.0}/s) | < 10 s |",
        expiry.as_secs_f64(),
        per_second(users, expiry)
    );
    store.close().await;
    Ok(())
}

fn applied(submitted: Submitted) -> usize {
    match submitted {
        Submitted::Applied(report) => {
            assert!(report.failed.is_empty(), "{:?}", &report.failed[..report.failed.len().min(3)]);
            report.written.len()
        }
        Submitted::AwaitingApproval { .. } => panic!("held by the guard"),
    }
}
