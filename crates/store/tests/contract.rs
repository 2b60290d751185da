//! The store contract: every behaviour callers rely on, run against SQLite (always) and
//! PostgreSQL (the server on 127.0.0.1:5432, or `IDBRIDGE_TEST_POSTGRES_URL`). Each
//! PostgreSQL test creates its own database and drops it afterwards.

#[macro_use]
mod common;

use common::{Fixture, ctx, slug, tenant};

use std::sync::Arc;

use idbridge_core::DomainError;
use idbridge_core::audit::{Actor, ActorKind, AuditQuery, ChangeEvent, ChangeKind};
use idbridge_core::catalog::{Catalog, CatalogEntry, CatalogKind};
use idbridge_core::config_plan::{self, ConfigChange, CurrentConfig, DesiredConfig};
use idbridge_core::individual::{Individual, IndividualId, IndividualQuery, IndividualStatus, SourceKind, SourceLink};
use idbridge_core::ports::{IndividualWrite, IndividualWriter, Store};
use idbridge_core::role::{AccessLevel, AccessProfile, Role};
use idbridge_core::schedule::LocalInstant;
use idbridge_core::scopes::Scopes;
use idbridge_core::tenant::{Tenant, TenantId, TenantSettings};
use idbridge_core::token;
use idbridge_store::SqlStore;
use uuid::Uuid;

contract!(
    tenants_are_unique_by_slug_and_versioned,
    apply_writes_everything_or_nothing,
    scim_tokens_belong_to_one_tenant,
    individuals_are_versioned_unique_and_tenant_scoped,
    members_of_portal_groups_are_listed_by_group_within_their_tenant,
    audit_reads_filter_by_tenant_actor_subject_and_time,
    connector_links_owe_pushes_and_never_lose_a_change_made_during_one,
);

async fn tenants_are_unique_by_slug_and_versioned(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    assert_eq!(acme.version, 1);
    assert_eq!(store.get_tenant(&slug("acme")).await.unwrap().unwrap(), acme);
    assert!(store.get_tenant(&slug("nobody")).await.unwrap().is_none());

    let dup =
        store.create_tenant(TenantId(Uuid::new_v4()), &slug("acme"), &TenantSettings::new("again"), &ctx("x")).await;
    assert!(matches!(dup, Err(DomainError::AlreadyExists { kind: "tenant", .. })), "{dup:?}");

    let mut settings = acme.settings();
    settings.enabled = false;
    let disabled = store.update_tenant(acme.id, 1, &settings, &ctx("ops")).await.unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.version, 2);
    let stale = store.update_tenant(acme.id, 1, &acme.settings(), &ctx("ops")).await;
    assert!(matches!(stale, Err(DomainError::VersionConflict { expected: 1, found: 2, .. })), "{stale:?}");
    assert!(!store.get_tenant(&slug("acme")).await.unwrap().unwrap().enabled);

    tenant(&store, "beta").await;
    let slugs: Vec<_> = store.list_tenants().await.unwrap().into_iter().map(|t| t.slug.to_string()).collect();
    assert_eq!(slugs, ["acme", "beta"]);
}

fn pbx_admin() -> Role {
    Role {
        name: "PBX admin".into(),
        description: "PBX only".into(),
        default_level: AccessLevel::Read,
        levels: [("extensions".to_string(), AccessLevel::Modify), ("invoices".to_string(), AccessLevel::Restrict)]
            .into(),
    }
}

fn pbx_rule() -> idbridge_core::mapping::rules::Rule {
    serde_json::from_value(serde_json::json!({"name": "pbx", "groups": ["pbx-admins"], "role": "PBX admin"})).unwrap()
}

async fn apply_writes_everything_or_nothing(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let mut settings = TenantSettings::new("ACME");
    settings.allowed_roles.insert("PBX admin".into());
    settings.allowed_access_profiles.insert("Billing".into());
    let desired = DesiredConfig {
        catalog: vec![CatalogEntry { kind: CatalogKind::Flag, name: "fax".into(), description: "Fax".into() }],
        roles: vec![pbx_admin()],
        access_profiles: vec![AccessProfile {
            name: "Billing".into(),
            description: String::new(),
            flags: ["invoices".into(), "fax".into()].into(),
        }],
        tenants: vec![(slug("acme"), settings)],
        rules: [(slug("acme"), vec![pbx_rule()])].into(),
        known_mappers: ["rules".to_string()].into(),
    };
    let current = CurrentConfig::default();
    let changes = config_plan::plan(&Catalog::builtin(), &current, &desired).unwrap();
    assert_eq!(changes.len(), 5);

    // A plan whose last step fails leaves no trace of its first steps.
    let mut broken = changes.clone();
    broken.push(ConfigChange::UpdateTenant {
        id: TenantId(Uuid::new_v4()),
        slug: slug("ghost"),
        expected_version: 1,
        before: TenantSettings::new("g"),
        after: TenantSettings::new("g"),
    });
    assert!(store.apply_config(&broken, &ctx("ops")).await.is_err());
    assert!(store.list_roles().await.unwrap().is_empty());
    assert!(store.list_tenants().await.unwrap().is_empty());
    assert!(store.list_catalog_entries().await.unwrap().is_empty());

    store.apply_config(&changes, &ctx("ops")).await.unwrap();
    let current = CurrentConfig {
        catalog: store.list_catalog_entries().await.unwrap(),
        roles: store.list_roles().await.unwrap(),
        access_profiles: store.list_access_profiles().await.unwrap(),
        tenants: store.list_tenants().await.unwrap(),
        rules: [(slug("acme"), vec![pbx_rule()])].into(),
    };
    assert_eq!(current.roles, vec![pbx_admin()]);
    let acme_id = current.tenants[0].id;
    assert_eq!(store.get_mapping_rules(acme_id).await.unwrap(), vec![pbx_rule()]);
    assert_eq!(store.list_mapping_rules().await.unwrap().len(), 1);
    assert_eq!(current.access_profiles[0].flags.len(), 2);
    // Applying the same desired state again changes nothing.
    assert!(config_plan::plan(&Catalog::builtin(), &current, &desired).unwrap().is_empty());

    let acme = &current.tenants[0];
    let audit =
        store.list_audit(&AuditQuery { tenant_id: Some(acme.id), limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].record.action, "tenant.created");
    assert_eq!(audit[1].record.action, "mapping_rules.replaced");
    let operator_wide = store.list_audit(&AuditQuery { limit: 100, ..Default::default() }).await.unwrap();
    let actions: Vec<_> = operator_wide.iter().map(|e| e.record.action.as_str()).collect();
    assert_eq!(actions, ["catalog_entry.created", "role.created", "access_profile.created"]);
}

async fn scim_tokens_belong_to_one_tenant(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let beta = tenant(&store, "beta").await;
    let issued = token::issue("scim");
    let record = token::ScimTokenRecord {
        id: issued.id.clone(),
        tenant_id: acme.id,
        name: "entra".into(),
        hash: issued.hash.clone(),
        created_at: idbridge_core::clock::now(),
        revoked_at: None,
    };
    store.create_scim_token(&record, &ctx("ops")).await.unwrap();
    let found = store.find_scim_token(acme.id, &issued.id).await.unwrap().unwrap();
    assert!(token::verify(&issued.secret_token, &found.hash));
    assert!(store.find_scim_token(beta.id, &issued.id).await.unwrap().is_none());
    assert!(store.list_scim_tokens(beta.id).await.unwrap().is_empty());
    assert!(matches!(
        store.revoke_scim_token(beta.id, &issued.id, &ctx("ops")).await,
        Err(DomainError::NotFound { .. })
    ));

    store.revoke_scim_token(acme.id, &issued.id, &ctx("ops")).await.unwrap();
    assert!(store.find_scim_token(acme.id, &issued.id).await.unwrap().unwrap().revoked_at.is_some());
    assert!(matches!(store.revoke_scim_token(acme.id, &issued.id, &ctx("ops")).await, Err(DomainError::Rejected(_))));
    assert_eq!(store.list_scim_tokens(acme.id).await.unwrap().len(), 1);
}

fn individual(tenant: &Tenant, login: &str) -> Individual {
    let now = idbridge_core::clock::now();
    Individual {
        id: IndividualId(Uuid::new_v4()),
        tenant_id: tenant.id,
        login: login.into(),
        email: Some(format!("{}@abc.example", login.to_lowercase())),
        given_name: Some("Steve".into()),
        family_name: None,
        display_name: None,
        role: Some("PBX admin".into()),
        access_profile: None,
        scopes: Scopes { extensions: ["101".into()].into(), ..Default::default() },
        time_zone: "Europe/Berlin".into(),
        language: None,
        activation: Some(LocalInstant::parse("2026-03-29T02:30:00", "Europe/Berlin").unwrap()),
        expiration: None,
        status: IndividualStatus::Pending,
        links: vec![SourceLink {
            source: SourceKind::Scim,
            connection: "scim".into(),
            external_id: format!("ext-{login}"),
        }],
        deprovisioned_at: None,
        access_ended_at: None,
        provenance: Default::default(),
        version: 0,
        created_at: now,
        updated_at: now,
    }
}

fn write(i: &Individual, expected_version: Option<i64>, kind: ChangeKind) -> IndividualWrite {
    IndividualWrite {
        individual: i.clone(),
        expected_version,
        links_changed: true,
        groups_changed: true,
        status_only: false,
        audit: ctx("ops").record(Some(i.tenant_id), "individual", i.id.to_string(), "individual.written", None, None),
        event: Some(ChangeEvent {
            id: Uuid::new_v4(),
            tenant_id: i.tenant_id,
            individual_id: i.id,
            kind,
            individual: serde_json::json!({ "login": i.login }),
            permission_diff: None,
            at: idbridge_core::clock::now(),
        }),
    }
}

async fn individuals_are_versioned_unique_and_tenant_scoped(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let beta = tenant(&store, "beta").await;
    let steve = individual(&acme, "Steve");
    let stored = sql.write_individual(&write(&steve, None, ChangeKind::IndividualCreated)).await.unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.login, "Steve");
    assert_eq!(stored.activation.as_ref().unwrap().at.to_string(), "2026-03-29T01:00:00Z");
    assert_eq!(stored.links, steve.links);
    assert_eq!(stored.scopes, steve.scopes);

    // Logins are unique per tenant regardless of case, but another tenant may reuse one.
    let dup = sql.write_individual(&write(&individual(&acme, "steve"), None, ChangeKind::IndividualCreated)).await;
    assert!(matches!(dup, Err(DomainError::AlreadyExists { .. })), "{dup:?}");
    let beta_steve = individual(&beta, "steve");
    sql.write_individual(&write(&beta_steve, None, ChangeKind::IndividualCreated)).await.unwrap();

    // One external identity belongs to one individual; a failed write leaves nothing.
    let mut adam = individual(&acme, "adam");
    adam.links = steve.links.clone();
    assert!(sql.write_individual(&write(&adam, None, ChangeKind::IndividualCreated)).await.is_err());
    assert!(store.find_individual_by_login(acme.id, "adam").await.unwrap().is_none());

    // Optimistic concurrency.
    let mut update = stored.clone();
    update.status = IndividualStatus::Active;
    let updated = sql.write_individual(&write(&update, Some(1), ChangeKind::IndividualActivated)).await.unwrap();
    assert_eq!(updated.version, 2);
    let stale = sql.write_individual(&write(&update, Some(1), ChangeKind::IndividualUpdated)).await;
    assert!(matches!(stale, Err(DomainError::VersionConflict { expected: 1, found: 2, .. })), "{stale:?}");

    // Reads never cross tenants.
    assert!(store.get_individual(beta.id, steve.id).await.unwrap().is_none());
    assert_eq!(store.get_individual(acme.id, steve.id).await.unwrap().unwrap().status, IndividualStatus::Active);
    assert_eq!(store.find_individual_by_login(acme.id, "STEVE").await.unwrap().unwrap().id, steve.id);
    assert_eq!(
        store.find_individual_by_link(acme.id, SourceKind::Scim, "scim", "ext-Steve").await.unwrap().unwrap().id,
        steve.id
    );
    assert!(store.find_individual_by_link(beta.id, SourceKind::Scim, "scim", "ext-Steve").await.unwrap().is_none());

    // Listing filters by status and pages by login.
    for login in ["bob", "carol", "dave"] {
        sql.write_individual(&write(&individual(&acme, login), None, ChangeKind::IndividualCreated)).await.unwrap();
    }
    let page = |after: Option<&str>, status| {
        let store = store.clone();
        let after = after.map(str::to_owned);
        async move {
            store
                .list_individuals(acme.id, &IndividualQuery { status, after_login: after, in_groups: None, limit: 2 })
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.login)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(None, None).await, ["bob", "carol"]);
    assert_eq!(page(Some("carol"), None).await, ["dave", "Steve"]);
    assert_eq!(page(None, Some(IndividualStatus::Active)).await, ["Steve"]);

    // Every successful write left one change event, in order.
    let events = store.list_change_events(acme.id, 0, 100).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|(_, e)| e.kind).collect();
    assert_eq!(kinds[..2], [ChangeKind::IndividualCreated, ChangeKind::IndividualActivated]);
    assert_eq!(events.len(), 5);
    let after_first = store.list_change_events(acme.id, events[0].0, 100).await.unwrap();
    assert_eq!(after_first.len(), 4);
    assert_eq!(store.list_change_events(beta.id, 0, 100).await.unwrap().len(), 1);
}

async fn members_of_portal_groups_are_listed_by_group_within_their_tenant(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let beta = tenant(&store, "beta").await;
    let in_groups = |i: &Individual, groups: &[&str]| {
        let mut i = i.clone();
        i.scopes.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        i
    };
    let mut stored = Vec::new();
    for (login, groups) in
        [("ann", &["sales"][..]), ("ben", &["sales", "support"]), ("cat", &["support"]), ("dan", &[])]
    {
        let i = in_groups(&individual(&acme, login), groups);
        stored.push(sql.write_individual(&write(&i, None, ChangeKind::IndividualCreated)).await.unwrap());
    }
    // Another tenant's member of a group of the same name is never listed.
    let other = in_groups(&individual(&beta, "eve"), &["sales"]);
    sql.write_individual(&write(&other, None, ChangeKind::IndividualCreated)).await.unwrap();
    let members = |tenant: TenantId, groups: Option<&[&str]>, after: Option<&str>| {
        let store = store.clone();
        let query = IndividualQuery {
            after_login: after.map(str::to_owned),
            in_groups: groups.map(|g| g.iter().map(|g| (*g).to_owned()).collect()),
            limit: 2,
            ..Default::default()
        };
        async move { store.list_individuals(tenant, &query).await.unwrap().into_iter().map(|i| i.login).collect::<Vec<_>>() }
    };
    assert_eq!(members(acme.id, Some(&["sales"]), None).await, ["ann", "ben"]);
    assert_eq!(members(acme.id, Some(&["sales", "support"]), None).await, ["ann", "ben"]);
    assert_eq!(members(acme.id, Some(&["sales", "support"]), Some("ben")).await, ["cat"], "pages by login");
    assert_eq!(members(acme.id, Some(&[]), None).await, Vec::<String>::new(), "no group reaches nobody");
    assert_eq!(members(acme.id, Some(&["nobody"]), None).await, Vec::<String>::new());
    assert_eq!(members(beta.id, Some(&["sales"]), None).await, ["eve"]);
    // A change of groups rewrites the rows: ben leaves sales, dan joins it.
    let ben = in_groups(&stored[1], &["support"]);
    sql.write_individual(&write(&ben, Some(1), ChangeKind::IndividualUpdated)).await.unwrap();
    let dan = in_groups(&stored[3], &["sales"]);
    sql.write_individual(&write(&dan, Some(1), ChangeKind::IndividualUpdated)).await.unwrap();
    assert_eq!(members(acme.id, Some(&["sales"]), None).await, ["ann", "dan"]);
    assert_eq!(members(acme.id, Some(&["support"]), None).await, ["ben", "cat"]);
    assert_eq!(store.get_individual(acme.id, stored[1].id).await.unwrap().unwrap().scopes.groups, ben.scopes.groups);
}

async fn audit_reads_filter_by_tenant_actor_subject_and_time(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let before_disable = idbridge_core::clock::now();
    let mut settings = acme.settings();
    settings.enabled = false;
    store.update_tenant(acme.id, 1, &settings, &ctx("alice")).await.unwrap();
    let beta = tenant(&store, "beta").await;

    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery { tenant_id: Some(acme.id), limit: 100, ..Default::default() };
        f(&mut q);
        q
    };
    let all = store.list_audit(&q(|_| {})).await.unwrap();
    assert_eq!(all.iter().map(|e| e.record.action.as_str()).collect::<Vec<_>>(), ["tenant.created", "tenant.updated"]);
    let disable = &all[1].record;
    assert_eq!(disable.actor, Actor::new(ActorKind::Operator, "alice"));
    assert_eq!(disable.request_id.as_deref(), Some("req-alice"));
    assert_eq!(disable.before.as_ref().unwrap()["enabled"], true);
    assert_eq!(disable.after.as_ref().unwrap()["enabled"], false);

    assert_eq!(store.list_audit(&q(|q| q.actor = Some("alice".into()))).await.unwrap().len(), 1);
    assert_eq!(store.list_audit(&q(|q| q.subject = Some("beta".into()))).await.unwrap().len(), 0);
    let mut since = q(|_| {});
    since.since = Some(before_disable);
    assert_eq!(store.list_audit(&since).await.unwrap().len(), 1);
    let mut until = q(|_| {});
    until.until = Some(before_disable);
    assert_eq!(store.list_audit(&until).await.unwrap().len(), 1);
    let mut paged = q(|_| {});
    paged.after_id = Some(all[0].id);
    assert_eq!(store.list_audit(&paged).await.unwrap().len(), 1);
    let beta_log =
        store.list_audit(&AuditQuery { tenant_id: Some(beta.id), limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(beta_log.len(), 1);
}

/// The audit log is append-only in the database itself: an UPDATE or DELETE that
/// bypasses idbridge (an operator's SQL, a compromised process) is refused by triggers.
async fn the_audit_log_refuses_changes(fixture: Fixture) {
    let store = fixture.store();
    let acme = tenant(&store, "acme").await;
    let query = AuditQuery { tenant_id: Some(acme.id), limit: 100, ..AuditQuery::default() };
    let before = store.list_audit(&query).await.unwrap();
    assert!(!before.is_empty(), "creating a tenant is audited");
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&fixture.url).await.unwrap();
    for statement in ["UPDATE audit_log SET action = 'forged'", "DELETE FROM audit_log"] {
        let refused = sqlx::query(statement).execute(&mut conn).await.expect_err(statement);
        assert!(refused.to_string().contains("append-only"), "{statement}: {refused}");
    }
    let after = store.list_audit(&query).await.unwrap();
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|e| e.record.action != "forged"));
    drop(conn);
    fixture.finish().await;
}

#[tokio::test]
async fn the_audit_log_refuses_changes_on_sqlite() {
    the_audit_log_refuses_changes(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn the_audit_log_refuses_changes_on_postgres() {
    let Some(fixture) = Fixture::postgres().await else { return };
    the_audit_log_refuses_changes(fixture).await;
}

async fn connector_links_owe_pushes_and_never_lose_a_change_made_during_one(sql: SqlStore) {
    use idbridge_core::connector::LinkState;
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let beta = tenant(&store, "beta").await;
    let steve =
        sql.write_individual(&write(&individual(&acme, "steve"), None, ChangeKind::IndividualCreated)).await.unwrap();
    let adam =
        sql.write_individual(&write(&individual(&acme, "adam"), None, ChangeKind::IndividualCreated)).await.unwrap();
    let now = idbridge_core::clock::now();
    store.owe_connector_pushes(acme.id, "portal", &[steve.id, steve.id, adam.id], now).await.unwrap();
    let due = store.due_connector_links(acme.id, "portal", now, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert!(store.due_connector_links(beta.id, "portal", now, 10).await.unwrap().is_empty(), "another tenant's");
    assert!(store.due_connector_links(acme.id, "other", now, 10).await.unwrap().is_empty(), "another connector's");
    let mut link = due.into_iter().find(|l| l.individual_id == steve.id).unwrap();
    assert!(link.wanted > link.done);
    // A change arrives while the push is under way: finishing the push keeps it owed.
    store.owe_connector_pushes(acme.id, "portal", &[steve.id], now).await.unwrap();
    link.done = link.wanted;
    link.remote_id = Some("r-1".into());
    link.remote_version = Some("W/\"1\"".into());
    link.pushed = Some(serde_json::json!({"userName": "steve"}));
    link.state = LinkState::Synced;
    store.finish_connector_push(&link).await.unwrap();
    let again = store.due_connector_links(acme.id, "portal", now, 10).await.unwrap();
    let steve_link = again.iter().find(|l| l.individual_id == steve.id).expect("still owed");
    assert_eq!(steve_link.remote_id.as_deref(), Some("r-1"));
    assert_eq!(steve_link.pushed, Some(serde_json::json!({"userName": "steve"})));
    // Finished with what it read last: settled, and not due any more.
    let mut settled = steve_link.clone();
    settled.done = settled.wanted;
    store.finish_connector_push(&settled).await.unwrap();
    // Adam fails until dead; a retrying link waits for its time.
    let mut adam_link = again.into_iter().find(|l| l.individual_id == adam.id).unwrap();
    adam_link.state = LinkState::Retrying;
    adam_link.attempts = 1;
    adam_link.last_error = Some("portal answered 503".into());
    adam_link.next_attempt_at = now + jiff::SignedDuration::from_secs(60);
    store.finish_connector_push(&adam_link).await.unwrap();
    assert!(store.due_connector_links(acme.id, "portal", now, 10).await.unwrap().is_empty());
    let later = now + jiff::SignedDuration::from_secs(61);
    assert_eq!(store.due_connector_links(acme.id, "portal", later, 10).await.unwrap().len(), 1);
    adam_link.state = LinkState::Dead;
    store.finish_connector_push(&adam_link).await.unwrap();
    assert!(store.due_connector_links(acme.id, "portal", later, 10).await.unwrap().is_empty(), "dead links wait");
    let counts = store.connector_link_counts(acme.id, "portal").await.unwrap();
    assert_eq!((counts.synced, counts.dead, counts.owed), (1, 1, 0), "{counts:?}");
    let dead = store.list_connector_links(acme.id, "portal", LinkState::Dead, None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("portal answered 503"));
    // A repair owes everyone again, read back first — the dead link too, and an
    // individual the connector never saw.
    let eve =
        sql.write_individual(&write(&individual(&acme, "eve"), None, ChangeKind::IndividualCreated)).await.unwrap();
    assert_eq!(store.owe_connector_repair(acme.id, "portal", later).await.unwrap(), 3);
    let repair = store.due_connector_links(acme.id, "portal", later, 10).await.unwrap();
    assert_eq!(repair.len(), 3);
    assert!(repair.iter().all(|l| l.verify && l.attempts == 0));
    assert!(repair.iter().any(|l| l.individual_id == eve.id));
    assert_eq!(store.connector_link_counts(beta.id, "portal").await.unwrap(), Default::default());
    // Health, per connector.
    assert!(store.get_connector_health(acme.id, "portal").await.unwrap().is_none());
    let health = idbridge_core::connector::ConnectorHealth {
        quarantined_since: Some(later),
        consecutive_failures: 20,
        last_success_at: None,
        last_error: Some("connection refused".into()),
        last_drift_repair_at: Some(now),
        config_digest: Some("sha256:abc".into()),
    };
    store.put_connector_health(acme.id, "portal", &health).await.unwrap();
    let read = store.get_connector_health(acme.id, "portal").await.unwrap().unwrap();
    assert_eq!(read.consecutive_failures, 20);
    assert_eq!(read.config_digest.as_deref(), Some("sha256:abc"));
    assert_eq!(read.quarantined_since.map(|t| t.as_microsecond()), Some(later.as_microsecond()));
    assert!(store.get_connector_health(beta.id, "portal").await.unwrap().is_none());
}
