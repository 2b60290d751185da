//! `mapping preview` and `mapping diff` on a tenant with 10,000 individuals, through the
//! services the CLI and the admin API use, on a real SQLite store.

use std::sync::Arc;

use idbridge_app::mapping::{MappingService, PreviewPerson};
use idbridge_app::operator::Operator;
use idbridge_app::reconciliation::SourceReconciliation;
use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::mapping::rules::Rule;
use idbridge_core::ports::ScimRecordStore;
use idbridge_core::reconcile::Submitted;
use idbridge_core::source_record::{MemberChange, ScimKind, ScimRecord, ScimWrite};
use idbridge_core::tenant::TenantSlug;
use idbridge_server::apply_file::ApplyDocument;
use idbridge_store::{SqlStore, StoreOptions};
use serde_json::json;
use uuid::Uuid;

const PEOPLE: usize = 10_000;

fn ctx() -> AuditContext {
    AuditContext::new(Actor::new(ActorKind::Operator, "test"))
}

#[tokio::test]
async fn preview_and_diff_on_a_tenant_with_10000_individuals() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("scale.db").display());
    let store = SqlStore::connect(&StoreOptions::new(url)).await.unwrap();
    let operator = Operator::new(Arc::new(store.clone()), idbridge_core::catalog::Catalog::builtin());
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/examples/acme.toml")).unwrap();
    let desired = ApplyDocument::from_toml(&example).unwrap().into_desired(["rules".to_owned()].into()).unwrap();
    operator.apply(&desired, false, &ctx()).await.unwrap();
    let slug = TenantSlug::parse("acme").unwrap();
    let tenant = operator.tenant(&slug).await.unwrap();

    // Everyone is a PBX admin; 100 queue groups of 100 people each.
    let records: Arc<dyn ScimRecordStore> = Arc::new(store.clone());
    let now = idbridge_core::clock::now();
    let record = |kind, name: String| ScimRecord {
        tenant_id: tenant.id,
        kind,
        id: Uuid::new_v4(),
        external_id: None,
        data: if kind == ScimKind::User { json!({"userName": name}) } else { json!({"displayName": name}) },
        name,
        version: 0,
        created_at: now,
        updated_at: now,
        seq: 0,
    };
    let write = |record: ScimRecord, members: Vec<MemberChange>| {
        let audit = ctx().record(Some(tenant.id), "scim", record.id.to_string(), "scim.created", None, None);
        ScimWrite { record, expected_version: None, body_changed: true, members, change: uuid::Uuid::new_v4(), audit }
    };
    let mut ids = Vec::new();
    for n in 0..PEOPLE {
        let user = record(ScimKind::User, format!("user{n:05}@acme.example"));
        ids.push(user.id);
        records.write_scim(&write(user, vec![])).await.unwrap();
    }
    records
        .write_scim(&write(record(ScimKind::Group, "pbx-admins".into()), vec![MemberChange::Add(ids.clone())]))
        .await
        .unwrap();
    for q in 0..100 {
        let members = ids[q * 100..(q + 1) * 100].to_vec();
        let group = record(ScimKind::Group, format!("pbx-queue-{q}"));
        records.write_scim(&write(group, vec![MemberChange::Add(members)])).await.unwrap();
    }
    let mapping = MappingService {
        operator: operator.clone(),
        plugins: Arc::new(idbridge_plugin_host::PluginHost::default()),
        records: records.clone(),
    };
    let reconciliation = SourceReconciliation::new(
        &idbridge_app::Ports::of(&store),
        idbridge_core::reconcile::Reconciler::new(&store),
        mapping.clone(),
    );
    let Submitted::Applied(report) = reconciliation.remap(&tenant, "test", &ctx()).await.unwrap() else {
        panic!("creating individuals is not a deprovision");
    };
    assert_eq!(report.written.len(), PEOPLE);

    // Without the queue rule every individual would lose its queue; without the admins
    // rule, nobody keeps a role (a dry run: nothing is written).
    let mut rules = store_rules(&store, &tenant).await;
    rules.retain(|r| r.name != "queue supervisors");
    let diff = reconciliation.diff(&slug, &rules).await.unwrap();
    assert_eq!((diff.individuals, diff.changes.len()), (PEOPLE, PEOPLE));
    let first = diff.changes.iter().find(|c| c.login == "user00150@acme.example").unwrap();
    assert_eq!(first.before.scopes.queues.iter().collect::<Vec<_>>(), ["1"]);
    assert!(first.after.scopes.queues.is_empty() && first.after.access);
    let untouched = reconciliation.diff(&slug, &store_rules(&store, &tenant).await).await.unwrap();
    assert_eq!((untouched.individuals, untouched.changes.len()), (PEOPLE, 0));
    let shown = operator.individual(&slug, "user00150@acme.example").await.unwrap();
    assert_eq!(shown.scopes.queues.iter().collect::<Vec<_>>(), ["1"], "diff wrote nothing");

    let person: PreviewPerson = serde_json::from_value(json!({
        "user": {"login": "new@acme.example"},
        "groups": [{"source": "scim", "id": "g1", "display_name": "pbx-admins"}, {"source": "scim", "id": "g2", "display_name": "pbx-queue-42"}]
    }))
    .unwrap();
    let preview = mapping.preview(&slug, person).await.unwrap();
    assert_eq!(preview.decision.role.as_deref(), Some("PBX admin"));
    assert!(preview.decision.scopes.queues.contains("42"));
    assert!(
        preview.decision.reasons.iter().any(|r| r.rule.as_deref() == Some("queue supervisors") && r.groups == ["g2"])
    );
    store.close().await;
}

async fn store_rules(store: &SqlStore, tenant: &idbridge_core::tenant::Tenant) -> Vec<Rule> {
    idbridge_core::ports::ConfigStore::get_mapping_rules(store, tenant.id).await.unwrap()
}
