//! Recovery after a crash: N SCIM users were written into a granting group and the process
//! died before reconciling any of them, so N users' intents are outstanding (plus the
//! group's). This measures what a restart does: the intent worker — the daemon's own
//! `intent_worker::run` — from start until the queue is empty and every user is an
//! individual.
//!
//! Run: `cargo run --release -p idbridge-server --example recovery_bench [-- USERS]`.
//! Prints a Markdown row for BENCHMARKS.md; asserts only that the work was done.

use std::sync::Arc;
use std::time::{Duration, Instant};

use idbridge_app::mapping::MappingService;
use idbridge_app::operator::Operator;
use idbridge_app::reconciliation::SourceReconciliation;
use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::ports::{IntentQueue, ScimRecordStore, Store};
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
    let users: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let store = SqlStore::connect(&StoreOptions::new(url)).await?;
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let operator = Operator::new(shared.clone(), idbridge_core::catalog::Catalog::builtin());
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = std::fs::read_to_string(workspace.join("config/examples/acme.toml"))?;
    let desired = ApplyDocument::from_toml(&example)?.into_desired(["rules".to_owned()].into())?;
    operator.apply(&desired, false, &ctx()).await?;
    let tenant = operator.tenant(&TenantSlug::parse("acme")?).await?;

    // The state a crash leaves: source records written with their intents, nobody
    // reconciled.
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
        let login = format!("user{n:06}@acme.example");
        let user = record(ScimKind::User, login.clone(), json!({"userName": login, "active": true}));
        ids.push(user.id);
        let audit = ctx().record(Some(tenant.id), "scim_user", user.id.to_string(), "scim_user.created", None, None);
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
    let group = record(ScimKind::Group, "pbx-admins".into(), json!({"displayName": "pbx-admins"}));
    let audit = ctx().record(Some(tenant.id), "scim_group", group.id.to_string(), "scim_group.created", None, None);
    records
        .write_scim(&ScimWrite {
            record: group,
            expected_version: None,
            body_changed: true,
            members: vec![MemberChange::Add(ids.clone())],
            change: Uuid::new_v4(),
            audit,
        })
        .await?;
    let outstanding = store.intent_stats(idbridge_core::clock::now()).await?.queued;

    // The restart: the worker starts, releases every claim and drains the queue.
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
    let worker = tokio::spawn(idbridge_app::intent_worker::run(reconciliation));
    loop {
        if store.intent_stats(idbridge_core::clock::now()).await?.queued == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = started.elapsed();
    worker.abort();
    let holding = shared.count_individuals_holding_access(tenant.id).await?;
    assert_eq!(holding as usize, users, "every user in the granting group is an individual");
    println!(
        "| restart with {outstanding} intents outstanding ({users} users owed) → queue empty | {:.2} s ({:.0} people/s) |",
        drained.as_secs_f64(),
        users as f64 / drained.as_secs_f64()
    );
    Ok(())
}
