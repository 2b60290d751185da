//! The durable-intent queue on both backends: SCIM writes record whom they affect in
//! their own transaction, claims are leased, and with two instances on PostgreSQL every
//! intent is taken by exactly one of them.

#[allow(unused_macros)]
mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{Fixture, ctx, tenant};
use idbridge_core::individual::{SourceKind, SourceLink};
use idbridge_core::intent::{CLAIM_LEASE, FAST_PATH_GRACE};
use idbridge_core::ports::{IntentQueue, ScimRecordStore, Store};
use idbridge_core::source_record::{MemberChange, ScimKind, ScimRecord, ScimWrite};
use idbridge_core::tenant::Tenant;
use idbridge_store::{SqlStore, StoreOptions};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use uuid::Uuid;

fn record(tenant: &Tenant, kind: ScimKind, name: &str) -> ScimRecord {
    let now = idbridge_core::clock::now();
    ScimRecord {
        tenant_id: tenant.id,
        kind,
        id: Uuid::new_v4(),
        external_id: None,
        data: if kind == ScimKind::User { json!({"userName": name}) } else { json!({"displayName": name}) },
        name: name.to_owned(),
        version: 0,
        created_at: now,
        updated_at: now,
        seq: 0,
    }
}

fn write(tenant: &Tenant, record: ScimRecord, expected: Option<i64>, members: Vec<MemberChange>) -> ScimWrite {
    in_change(tenant, record, expected, members, Uuid::new_v4())
}

fn in_change(
    tenant: &Tenant,
    record: ScimRecord,
    expected: Option<i64>,
    members: Vec<MemberChange>,
    change: Uuid,
) -> ScimWrite {
    let audit = ctx("scim").record(Some(tenant.id), "scim", record.id.to_string(), "scim.written", None, None);
    ScimWrite { record, expected_version: expected, body_changed: true, members, change, audit }
}

fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids.dedup();
    ids
}

async fn scim_writes_owe_exactly_whom_they_affect(store: Arc<SqlStore>) {
    let dyn_store: Arc<dyn Store> = store.clone();
    let acme = tenant(&dyn_store, "acme").await;
    let mut users = Vec::new();
    for n in 0..3 {
        let written =
            store.write_scim(&write(&acme, record(&acme, ScimKind::User, &format!("u{n}")), None, vec![])).await;
        let written = written.unwrap();
        assert_eq!(written.owed.users, vec![written.record.id], "a user write owes the user");
        assert_eq!(written.owed.intents.len(), 1);
        users.push(written.record.id);
    }
    // Many read at once: only those that exist, of this tenant and kind.
    let many = store.get_scim_many(acme.id, ScimKind::User, &[users[0], users[2], Uuid::new_v4()]).await.unwrap();
    assert_eq!(sorted(many.iter().map(|r| r.id).collect()), sorted(vec![users[0], users[2]]));
    assert!(store.get_scim_many(acme.id, ScimKind::Group, &users).await.unwrap().is_empty());
    // A group created with two members owes them (not the group itself).
    let group = record(&acme, ScimKind::Group, "pbx-admins");
    let written =
        store.write_scim(&write(&acme, group, None, vec![MemberChange::Add(users[..2].to_vec())])).await.unwrap();
    assert_eq!(sorted(written.owed.users.clone()), sorted(users[..2].to_vec()));
    let group = written.record;
    // Adding the third owes the third only.
    let mut member_only = write(&acme, group.clone(), Some(group.version), vec![MemberChange::Add(vec![users[2]])]);
    member_only.body_changed = false;
    let written = store.write_scim(&member_only).await.unwrap();
    assert_eq!(written.owed.users, vec![users[2]]);
    // A rename may change everyone's access: every member is owed.
    let mut renamed = written.record.clone();
    renamed.name = "pbx-owners".into();
    renamed.data = json!({"displayName": "pbx-owners"});
    let written = store.write_scim(&write(&acme, renamed.clone(), Some(renamed.version), vec![])).await.unwrap();
    assert_eq!(sorted(written.owed.users), sorted(users.clone()));
    // Replacing all members owes the old ones and the new one.
    let replaced = write(
        &acme,
        written.record.clone(),
        Some(written.record.version),
        vec![MemberChange::RemoveAll, MemberChange::Add(vec![users[0]])],
    );
    let written = store.write_scim(&replaced).await.unwrap();
    assert_eq!(sorted(written.owed.users), sorted(users.clone()));
    // Deleting the group owes its members; deleting a user owes the user.
    let audit = ctx("scim").record(Some(acme.id), "scim", group.id.to_string(), "scim.deleted", None, None);
    let owed = store.delete_scim(acme.id, ScimKind::Group, group.id, Uuid::new_v4(), &audit).await.unwrap().unwrap();
    assert_eq!(owed.users, vec![users[0]]);
    let owed = store.delete_scim(acme.id, ScimKind::User, users[1], Uuid::new_v4(), &audit).await.unwrap().unwrap();
    assert_eq!(owed.users, vec![users[1]]);
    assert!(store.delete_scim(acme.id, ScimKind::User, users[1], Uuid::new_v4(), &audit).await.unwrap().is_none());

    // Every owed person is queued until settled; the person's own intents are listed.
    let stats = store.intent_stats(idbridge_core::clock::now()).await.unwrap();
    assert_eq!(stats.queued, 3 + 2 + 1 + 3 + 3 + 1 + 1);

    // Members by the hundred, added and removed in statements of several (600: more than
    // one), each named twice on the way in; an id that names nothing fails the whole write
    // by name and adds no one.
    let mut crowd = Vec::new();
    for n in 0..600 {
        let user = record(&acme, ScimKind::User, &format!("crowd{n}"));
        crowd.push(store.write_scim(&write(&acme, user, None, vec![])).await.unwrap().record.id);
    }
    let twice: Vec<Uuid> = crowd.iter().chain(crowd.iter()).copied().collect();
    let big = record(&acme, ScimKind::Group, "everyone");
    let big = store.write_scim(&write(&acme, big, None, vec![MemberChange::Add(twice)])).await.unwrap().record;
    let members = store.list_scim_members(acme.id, big.id, None, 10_000).await.unwrap();
    assert_eq!(members.len(), 600);
    let stranger = Uuid::new_v4();
    let mut with_stranger = crowd[..10].to_vec();
    with_stranger.push(stranger);
    let other_group = record(&acme, ScimKind::Group, "strangers");
    let refused = store.write_scim(&write(&acme, other_group, None, vec![MemberChange::Add(with_stranger)])).await;
    assert!(
        matches!(&refused, Err(idbridge_core::DomainError::Invalid { reason, .. }) if reason.contains(&stranger.to_string())),
        "{refused:?}"
    );
    let mut removing = write(&acme, big.clone(), Some(big.version), vec![MemberChange::Remove(crowd[..550].to_vec())]);
    removing.body_changed = false;
    store.write_scim(&removing).await.unwrap();
    assert_eq!(store.list_scim_members(acme.id, big.id, None, 10_000).await.unwrap().len(), 50);
    let link = SourceLink { source: SourceKind::Scim, connection: "scim".into(), external_id: users[2].to_string() };
    assert_eq!(store.intents_of(acme.id, &[link]).await.unwrap().len(), 4);
    let other = tenant(&dyn_store, "other").await;
    let link = SourceLink { source: SourceKind::Scim, connection: "scim".into(), external_id: users[2].to_string() };
    assert!(store.intents_of(other.id, &[link]).await.unwrap().is_empty(), "tenant-scoped");
}

async fn claims_are_leased_retried_and_released(store: Arc<SqlStore>) {
    let dyn_store: Arc<dyn Store> = store.clone();
    let acme = tenant(&dyn_store, "acme").await;
    let now = idbridge_core::clock::now();
    let people: Vec<SourceLink> = (0..10)
        .map(|n| SourceLink { source: SourceKind::Ldap, connection: "corp".into(), external_id: format!("p{n}") })
        .collect();
    let ids = store.add_intents(acme.id, &people, now + FAST_PATH_GRACE).await.unwrap();
    assert_eq!(ids.len(), 10);
    assert!(store.claim_intents(now, 100).await.unwrap().is_empty(), "left to the fast path at first");
    let later = now + FAST_PATH_GRACE;
    let first = store.claim_intents(later, 4).await.unwrap();
    assert_eq!(first.len(), 4, "at most the limit, oldest first");
    assert_eq!(first.iter().map(|i| i.id).collect::<Vec<_>>(), ids[..4]);
    assert_eq!(first[0].person, people[0]);
    assert_eq!(first[0].attempts, 1);
    let rest = store.claim_intents(later, 100).await.unwrap();
    assert_eq!(rest.len(), 6, "claimed ones are not taken twice");
    assert!(store.claim_intents(later, 100).await.unwrap().is_empty());
    // A claim whose worker died runs out, and the intent is taken again.
    let expired = later + CLAIM_LEASE;
    assert_eq!(store.claim_intents(expired, 100).await.unwrap().len(), 10);

    let retry: Vec<(i64, Timestamp)> =
        ids[..2].iter().map(|id| (*id, expired + SignedDuration::from_secs(60))).collect();
    store.retry_intents(&retry, "database is locked").await.unwrap();
    let stats = store.intent_stats(expired).await.unwrap();
    assert_eq!((stats.queued, stats.failing), (10, 2));
    assert_eq!(stats.last_error.as_deref(), Some("database is locked"));
    store.clear_intents(&ids[2..]).await.unwrap();
    assert!(store.claim_intents(expired + CLAIM_LEASE, 100).await.unwrap().is_empty(), "backing off");
    // At start-up every outstanding intent is due at once.
    assert_eq!(store.release_intents(expired).await.unwrap(), 2);
    let again = store.claim_intents(expired, 100).await.unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].last_error.as_deref(), Some("database is locked"));
    store.clear_intents(&ids[..2]).await.unwrap();
    assert_eq!(store.intent_stats(expired).await.unwrap().queued, 0);
}

/// The intents of one source change (a Bulk request's operations) are taken together,
/// and not before the last of them is due: a worker never plans a slice of a request,
/// which the mass-deprovision guard would judge on its own.
async fn a_change_is_claimed_whole_once_all_of_it_is_due(store: Arc<SqlStore>) {
    let dyn_store: Arc<dyn Store> = store.clone();
    let acme = tenant(&dyn_store, "acme").await;
    let (bulk, single) = (Uuid::new_v4(), Uuid::new_v4());
    let mut users = Vec::new();
    for n in 0..3 {
        let user = record(&acme, ScimKind::User, &format!("b{n}"));
        users.push(store.write_scim(&in_change(&acme, user, None, vec![], bulk)).await.unwrap().record.id);
    }
    store.write_scim(&in_change(&acme, record(&acme, ScimKind::User, "alone"), None, vec![], single)).await.unwrap();
    let first_part = idbridge_core::clock::now() + FAST_PATH_GRACE;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // The Bulk request goes on: one more operation, a deletion.
    let audit = ctx("scim").record(Some(acme.id), "scim", users[0].to_string(), "scim.deleted", None, None);
    store.delete_scim(acme.id, ScimKind::User, users[0], bulk, &audit).await.unwrap().unwrap();
    let user = record(&acme, ScimKind::User, "b3");
    store.write_scim(&in_change(&acme, user, None, vec![], bulk)).await.unwrap();

    let taken = store.claim_intents(first_part, 100).await.unwrap();
    assert_eq!(taken.len(), 1, "only the complete change; the Bulk request is still recording: {taken:?}");
    store.clear_intents(&[taken[0].id]).await.unwrap();
    let all_due = idbridge_core::clock::now() + FAST_PATH_GRACE;
    let taken = store.claim_intents(all_due, 1).await.unwrap();
    assert_eq!(taken.len(), 5, "the whole request at once, whatever the limit: {taken:?}");
    assert!(store.claim_intents(all_due, 100).await.unwrap().is_empty(), "taken once");
    // Part of a change retried later holds nothing else back, and comes back whole.
    let ids: Vec<i64> = taken.iter().map(|i| i.id).collect();
    store.clear_intents(&ids[..3]).await.unwrap();
    let retry: Vec<(i64, Timestamp)> = ids[3..].iter().map(|id| (*id, all_due + CLAIM_LEASE)).collect();
    store.retry_intents(&retry, "the individual changed meanwhile").await.unwrap();
    assert_eq!(store.claim_intents(all_due + CLAIM_LEASE, 100).await.unwrap().len(), 2);
}

mod sqlite {
    #[tokio::test]
    async fn a_change_is_claimed_whole_once_all_of_it_is_due() {
        let f = super::Fixture::sqlite().await;
        super::a_change_is_claimed_whole_once_all_of_it_is_due(f.store.clone()).await;
        f.finish().await;
    }

    #[tokio::test]
    async fn scim_writes_owe_exactly_whom_they_affect() {
        let f = super::Fixture::sqlite().await;
        super::scim_writes_owe_exactly_whom_they_affect(f.store.clone()).await;
        f.finish().await;
    }

    #[tokio::test]
    async fn claims_are_leased_retried_and_released() {
        let f = super::Fixture::sqlite().await;
        super::claims_are_leased_retried_and_released(f.store.clone()).await;
        f.finish().await;
    }
}

mod postgres {
    #[tokio::test]
    async fn a_change_is_claimed_whole_once_all_of_it_is_due() {
        let Some(f) = super::Fixture::postgres().await else { return };
        super::a_change_is_claimed_whole_once_all_of_it_is_due(f.store.clone()).await;
        f.finish().await;
    }

    #[tokio::test]
    async fn scim_writes_owe_exactly_whom_they_affect() {
        let Some(f) = super::Fixture::postgres().await else { return };
        super::scim_writes_owe_exactly_whom_they_affect(f.store.clone()).await;
        f.finish().await;
    }

    #[tokio::test]
    async fn claims_are_leased_retried_and_released() {
        let Some(f) = super::Fixture::postgres().await else { return };
        super::claims_are_leased_retried_and_released(f.store.clone()).await;
        f.finish().await;
    }
}

/// Two instances on one PostgreSQL database claim side by side: every intent is taken by
/// exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_take_each_intent_once() {
    let Some(fixture) = Fixture::postgres().await else { return };
    let (admin_url, name) = fixture.drop_pg.clone().unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0;
    let one = fixture.store.clone();
    let two = Arc::new(SqlStore::connect(&StoreOptions::new(format!("{base}/{name}"))).await.unwrap());
    let dyn_store: Arc<dyn Store> = one.clone();
    let acme = tenant(&dyn_store, "acme").await;
    let people: Vec<SourceLink> = (0..2000)
        .map(|n| SourceLink { source: SourceKind::Ldap, connection: "corp".into(), external_id: format!("p{n}") })
        .collect();
    let now = idbridge_core::clock::now();
    let ids: HashSet<i64> = one.add_intents(acme.id, &people, now).await.unwrap().into_iter().collect();
    let drain = |store: Arc<SqlStore>| async move {
        let mut taken = Vec::new();
        loop {
            let batch = store.claim_intents(now, 50).await.unwrap();
            if batch.is_empty() {
                return taken;
            }
            taken.extend(batch.into_iter().map(|i| i.id));
        }
    };
    let (a, b) = tokio::join!(tokio::spawn(drain(one.clone())), tokio::spawn(drain(two.clone())));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(!a.is_empty() && !b.is_empty(), "both instances took part: {} and {}", a.len(), b.len());
    let a_set: HashSet<i64> = a.iter().copied().collect();
    assert!(b.iter().all(|id| !a_set.contains(id)), "no intent taken twice");
    let all: HashSet<i64> = a.into_iter().chain(b).collect();
    assert_eq!(all, ids);
    fixture.finish().await;
}
