//! The lifecycle scheduler and the reconciliation service over a real store, driven by a
//! manual clock: expiry at a future instant, activation at local midnight on DST change
//! days, a time-zone change, restarts, two instances on one PostgreSQL database, and the
//! mass-deprovision guard.

#[macro_use]
mod common;

use std::sync::Arc;

use common::{Fixture, ctx, tenant};
use idbridge_core::DomainError;
use idbridge_core::audit::{Actor, ActorKind, AuditContext, AuditQuery};
use idbridge_core::changeset::{ChangeSet, ChangeSetStatus, PlannedWrite};
use idbridge_core::clock::ManualClock;
use idbridge_core::individual::{Individual, IndividualId, IndividualStatus, SourceKind, SourceLink};
use idbridge_core::lifecycle;
use idbridge_core::ports::Store;
use idbridge_core::reconcile::{ManualChange, Plan, Planned, Reconciler, Submitted};
use idbridge_core::schedule::LocalInstant;
use idbridge_core::tenant::Tenant;
use idbridge_store::{SqlStore, StoreOptions};
use jiff::Timestamp;
use uuid::Uuid;

contract!(
    expiry_happens_at_its_instant_and_once,
    activation_at_local_midnight_on_dst_change_days,
    a_time_zone_change_moves_the_instant_not_the_local_time,
    a_restart_applies_pending_transitions_exactly_once,
    the_guard_holds_a_mass_deprovision_until_approved,
    the_guard_holds_a_mass_deprovision_that_arrives_one_person_at_a_time,
    a_rejected_change_set_changes_nobody,
    batches_skip_writes_another_writer_got_to_first,
    a_lease_has_one_holder_until_it_expires,
    removed_while_suspended_goes_on_to_expiry_and_purge,
    a_past_expiry_date_leaves_the_whole_retention_period,
);

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn scheduler() -> AuditContext {
    AuditContext::new(idbridge_core::audit::Actor::new(idbridge_core::audit::ActorKind::Scheduler, "lifecycle"))
}

fn person(tenant: &Tenant, login: &str, time_zone: &str, now: Timestamp) -> Individual {
    Individual {
        id: IndividualId(Uuid::new_v4()),
        tenant_id: tenant.id,
        login: login.into(),
        email: None,
        given_name: None,
        family_name: None,
        display_name: None,
        role: Some("PBX admin".into()),
        access_profile: None,
        scopes: Default::default(),
        time_zone: time_zone.into(),
        language: None,
        activation: None,
        expiration: None,
        status: IndividualStatus::Active,
        links: vec![SourceLink { source: SourceKind::Scim, connection: "scim".into(), external_id: login.into() }],
        deprovisioned_at: None,
        access_ended_at: None,
        provenance: Default::default(),
        version: 0,
        created_at: now,
        updated_at: now,
    }
}

/// Creates individuals through the reconciliation service (as a source would).
async fn create(reconciler: &Reconciler, tenant: &Tenant, people: Vec<Individual>) -> Vec<Individual> {
    let writes = people
        .into_iter()
        .map(|after| PlannedWrite { before: None, after, action: "individual.created".into() })
        .collect();
    let report = reconciler.commit(tenant, writes, &ctx("setup")).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let mut out = Vec::new();
    for (id, _) in report.written {
        out.push(reconciler.store().get_individual(tenant.id, id).await.unwrap().unwrap());
    }
    out
}

async fn status(store: &Arc<dyn Store>, i: &Individual) -> IndividualStatus {
    store.get_individual(i.tenant_id, i.id).await.unwrap().unwrap().status
}

async fn actions(store: &Arc<dyn Store>, tenant: &Tenant, action: &str) -> usize {
    let query = AuditQuery { tenant_id: Some(tenant.id), limit: 10_000, ..AuditQuery::default() };
    store.list_audit(&query).await.unwrap().iter().filter(|e| e.record.action == action).count()
}

async fn expiry_happens_at_its_instant_and_once(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let clock = Arc::new(ManualClock::new(at("2027-01-15T12:00:00Z")));
    let reconciler = Reconciler::with_clock(&sql, clock.clone());
    let mut bob = person(&acme, "bob", "Europe/Berlin", clock.now_ts());
    // 18:00 in Berlin in January is 17:00 UTC.
    bob.expiration = Some(LocalInstant::parse("2027-01-15T18:00", "Europe/Berlin").unwrap());
    let bob = create(&reconciler, &acme, vec![bob]).await.remove(0);

    clock.set(at("2027-01-15T16:59:59Z"));
    assert_eq!(lifecycle::tick(&reconciler, &scheduler()).await.unwrap().applied, 0);
    assert_eq!(status(&store, &bob).await, IndividualStatus::Active);

    clock.set(at("2027-01-15T17:00:00Z"));
    assert_eq!(lifecycle::tick(&reconciler, &scheduler()).await.unwrap().applied, 1);
    assert_eq!(status(&store, &bob).await, IndividualStatus::Expired);
    assert_eq!(lifecycle::tick(&reconciler, &scheduler()).await.unwrap().applied, 0, "applied once");
    assert_eq!(actions(&store, &acme, "individual.scheduled").await, 1);
    let events = store.list_change_events(acme.id, 0, 100).await.unwrap();
    assert_eq!(events.iter().filter(|(_, e)| e.kind.as_str() == "individual.expired").count(), 1);
}

async fn activation_at_local_midnight_on_dst_change_days(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let clock = Arc::new(ManualClock::new(at("2026-01-01T00:00:00Z")));
    let reconciler = Reconciler::with_clock(&sql, clock.clone());
    // Local midnight on the four DST change days of 2026 and the UTC instant it is, in
    // the order they come.
    let cases = [
        ("ny-spring", "America/New_York", "2026-03-08T00:00", "2026-03-08T05:00:00Z"),
        ("berlin-spring", "Europe/Berlin", "2026-03-29T00:00", "2026-03-28T23:00:00Z"),
        ("berlin-autumn", "Europe/Berlin", "2026-10-25T00:00", "2026-10-24T22:00:00Z"),
        ("ny-autumn", "America/New_York", "2026-11-01T00:00", "2026-11-01T04:00:00Z"),
    ];
    let mut people = Vec::new();
    for (login, zone, local, _) in cases {
        let mut p = person(&acme, login, zone, clock.now_ts());
        p.activation = Some(LocalInstant::parse(local, zone).unwrap());
        p.status = IndividualStatus::Pending;
        people.push(p);
    }
    let people = create(&reconciler, &acme, people).await;
    for (login, _, _, instant) in cases {
        let who = people.iter().find(|p| p.login == login).unwrap();
        assert_eq!(who.activation.as_ref().unwrap().at, at(instant), "{login}");
        clock.set(at(instant).checked_sub(jiff::SignedDuration::from_secs(1)).unwrap());
        lifecycle::tick(&reconciler, &scheduler()).await.unwrap();
        assert_eq!(status(&store, who).await, IndividualStatus::Pending, "{login} one second early");
        clock.set(at(instant));
        lifecycle::tick(&reconciler, &scheduler()).await.unwrap();
        assert_eq!(status(&store, who).await, IndividualStatus::Active, "{login} at its instant");
    }
}

async fn a_time_zone_change_moves_the_instant_not_the_local_time(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let clock = Arc::new(ManualClock::new(at("2026-11-30T00:00:00Z")));
    let reconciler = Reconciler::with_clock(&sql, clock.clone());
    let mut eve = person(&acme, "eve", "Europe/Berlin", clock.now_ts());
    eve.status = IndividualStatus::Pending;
    let eve = create(&reconciler, &acme, vec![eve]).await.remove(0);
    // The operator sets 09:00 local in Berlin (08:00 UTC) …
    let set = ManualChange { activation: Some(Some("2026-12-01T09:00".into())), ..ManualChange::default() };
    reconciler.manual(&acme, &eve, &set, &ctx("ops")).await.unwrap();
    let eve = store.get_individual(acme.id, eve.id).await.unwrap().unwrap();
    assert_eq!(eve.activation.as_ref().unwrap().at, at("2026-12-01T08:00:00Z"));
    // … then eve moves to New York: still 09:00 local, now 14:00 UTC.
    let moved = ManualChange { time_zone: Some("America/New_York".into()), ..ManualChange::default() };
    reconciler.manual(&acme, &eve, &moved, &ctx("ops")).await.unwrap();
    let eve = store.get_individual(acme.id, eve.id).await.unwrap().unwrap();
    assert_eq!(eve.time_zone, "America/New_York");
    assert_eq!(eve.activation.as_ref().unwrap().local.to_string(), "2026-12-01T09:00:00");
    assert_eq!(eve.activation.as_ref().unwrap().at, at("2026-12-01T14:00:00Z"));

    clock.set(at("2026-12-01T08:00:00Z"));
    lifecycle::tick(&reconciler, &scheduler()).await.unwrap();
    assert_eq!(status(&store, &eve).await, IndividualStatus::Pending, "the Berlin instant no longer applies");
    clock.set(at("2026-12-01T14:00:00Z"));
    lifecycle::tick(&reconciler, &scheduler()).await.unwrap();
    assert_eq!(status(&store, &eve).await, IndividualStatus::Active);
}

async fn a_restart_applies_pending_transitions_exactly_once(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let clock = Arc::new(ManualClock::new(at("2026-06-01T00:00:00Z")));
    let before_restart = Reconciler::with_clock(&sql, clock.clone());
    let people: Vec<_> = (0..1200)
        .map(|n| {
            let mut p = person(&acme, &format!("user{n:04}"), "UTC", clock.now_ts());
            p.expiration = Some(LocalInstant::parse("2026-06-02T00:00", "UTC").unwrap());
            p
        })
        .collect();
    create(&before_restart, &acme, people).await;
    drop(before_restart);
    // The instant passes while no scheduler runs; a new one (same database) starts.
    clock.set(at("2026-06-03T00:00:00Z"));
    let after_restart = Reconciler::with_clock(&sql, clock.clone());
    let report = lifecycle::tick(&after_restart, &scheduler()).await.unwrap();
    assert_eq!(report.applied, 1200, "{report:?}");
    assert_eq!(lifecycle::tick(&after_restart, &scheduler()).await.unwrap().applied, 0);
    assert_eq!(actions(&store, &acme, "individual.scheduled").await, 1200);
    assert_eq!(store.count_individuals_holding_access(acme.id).await.unwrap(), 0);
}

async fn seed_active(reconciler: &Reconciler, tenant: &Tenant, n: usize) -> Vec<Individual> {
    let now = reconciler.now();
    create(reconciler, tenant, (0..n).map(|i| person(tenant, &format!("staff{i:03}"), "UTC", now)).collect()).await
}

fn removal_set(reconciler: &Reconciler, tenant: &Tenant, people: &[Individual]) -> ChangeSet {
    let mut set = ChangeSet::new("SCIM Bulk request (test)");
    for p in people {
        if let Plan::Write(w) = reconciler.plan_removed(tenant, Some(p.clone())) {
            set.writes.push(*w);
        }
    }
    set
}

async fn the_guard_holds_a_mass_deprovision_until_approved(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let reconciler = Reconciler::new(&sql);
    let staff = seed_active(&reconciler, &acme, 100).await;

    // 20 of 100: under the minimum of 25, applied at once.
    let small = removal_set(&reconciler, &acme, &staff[..20]);
    assert!(matches!(reconciler.submit(&acme, small, &ctx("scim")).await.unwrap(), Submitted::Applied(_)));
    assert_eq!(store.count_individuals_holding_access(acme.id).await.unwrap(), 80);

    // 30 of the remaining 80: more than 10 % and at least 25 — held.
    let big = removal_set(&reconciler, &acme, &staff[20..50]);
    let Submitted::AwaitingApproval { id, summary } = reconciler.submit(&acme, big, &ctx("scim")).await.unwrap() else {
        panic!("a mass deprovision was applied");
    };
    assert_eq!((summary.takes_access, summary.holding_access), (30, 80));
    assert_eq!(store.count_individuals_holding_access(acme.id).await.unwrap(), 80, "nobody lost access");
    let pending = store.list_change_sets(Some(acme.id), Some(ChangeSetStatus::Pending)).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].id, pending[0].summary.takes_access), (id, 30), "listed without its writes");
    let held = store.get_change_set(acme.id, id).await.unwrap().unwrap();
    assert_eq!(held.writes.len(), 30);
    let logins: Vec<&str> = held.writes.iter().map(|w| w.login.as_str()).collect();
    let planned: Vec<&str> = staff[20..50].iter().map(|p| p.login.as_str()).collect();
    assert_eq!(logins, planned, "kept in the order planned");
    assert!(
        held.writes.iter().all(|w| w.takes_access && w.changed_after["status"] == w.after.as_str()),
        "{:?}",
        held.writes[0]
    );
    assert_eq!(store.find_change_set(id).await.unwrap().unwrap().summary.takes_access, 30, "found by id alone");
    // Read in pages: each after the position the one before ended on, the last one short.
    let first = store.change_set_writes(acme.id, id, None, 12).await.unwrap();
    let second = store.change_set_writes(acme.id, id, Some(first[11].0), 12).await.unwrap();
    let third = store.change_set_writes(acme.id, id, Some(second[11].0), 12).await.unwrap();
    assert_eq!((first.len(), second.len(), third.len()), (12, 12, 6));
    let paged: Vec<_> = first.into_iter().chain(second).chain(third).map(|(_, w)| w).collect();
    assert_eq!(paged, held.writes);
    assert!(store.change_set_writes(acme.id, id, None, 12).await.unwrap().len() == 12);
    let other = tenant(&store, "other").await;
    assert!(store.change_set_writes(other.id, id, None, 12).await.unwrap().is_empty(), "another tenant's");
    assert!(store.get_change_set(other.id, id).await.unwrap().is_none(), "another tenant's");

    // No sources here: what they say now is what was held.
    let now = Planned(removal_set(&reconciler, &acme, &staff[20..50]).writes);
    let report = reconciler.approve(&acme, id, &now, &ctx("ops")).await.unwrap();
    assert_eq!((report.written.len(), report.skipped.len()), (30, 0));
    assert_eq!(store.count_individuals_holding_access(acme.id).await.unwrap(), 50);
    let decided = store.get_change_set(acme.id, id).await.unwrap().unwrap();
    assert_eq!(decided.status, ChangeSetStatus::Approved);
    assert_eq!(decided.decided_by.as_deref(), Some("operator:ops"));
    assert!(decided.result.unwrap().contains("30 of 30 held write(s) still wanted; 30 applied"));
    let again = reconciler.approve(&acme, id, &now, &ctx("ops")).await.unwrap_err();
    assert!(matches!(again, DomainError::Rejected(_)), "{again:?}");
    assert_eq!(actions(&store, &acme, "change_set.held").await, 1);
    assert_eq!(actions(&store, &acme, "change_set.approved").await, 1);
}

/// Entra ID and Okta deprovision one user per request: thirty requests of one person each
/// are a mass deprovision too. On 92d5c47 every one was applied (each change set alone
/// was under the minimum of 25); now what the window took without approval counts.
async fn the_guard_holds_a_mass_deprovision_that_arrives_one_person_at_a_time(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let reconciler = Reconciler::new(&sql);
    let staff = seed_active(&reconciler, &acme, 100).await;
    let entra = AuditContext::new(Actor::new(ActorKind::ScimToken, "entra"));
    let mut held = Vec::new();
    for person in &staff[..30] {
        let one = removal_set(&reconciler, &acme, std::slice::from_ref(person));
        if let Submitted::AwaitingApproval { id, summary } = reconciler.submit(&acme, one, &entra).await.unwrap() {
            held.push((id, summary));
        }
    }
    assert_eq!(held.len(), 6, "24 applied; the 25th within the window is held, and each after it");
    assert_eq!(store.count_individuals_holding_access(acme.id).await.unwrap(), 76);
    let (first_id, first) = &held[0];
    assert_eq!((first.takes_access, first.holding_access, first.taken_recently), (1, 76, 24));
    // The later ones joined the first: one mass deprovision, decided once.
    assert!(held.iter().all(|(id, _)| id == first_id), "{held:?}");
    assert_eq!(held[5].1.takes_access, 6);
    let pending = store.list_change_sets(Some(acme.id), Some(ChangeSetStatus::Pending)).await.unwrap();
    assert_eq!(pending.len(), 1);
    let writes = store.get_change_set(acme.id, *first_id).await.unwrap().unwrap().writes;
    assert_eq!(writes.len(), 6);
    let logins: Vec<&str> = writes.iter().map(|w| w.login.as_str()).collect();
    assert_eq!(logins, staff[24..30].iter().map(|p| p.login.as_str()).collect::<Vec<_>>());
    assert_eq!(actions(&store, &acme, "change_set.extended").await, 5);
    // The same person again joins as one write, the later one.
    let again = removal_set(&reconciler, &acme, std::slice::from_ref(&staff[29]));
    let Submitted::AwaitingApproval { summary, .. } = reconciler.submit(&acme, again, &entra).await.unwrap() else {
        panic!("joins the waiting set");
    };
    assert_eq!(summary.takes_access, 6, "{summary:?}");
    assert_eq!(store.get_change_set(acme.id, *first_id).await.unwrap().unwrap().writes.len(), 6);
    let now = removal_set(&reconciler, &acme, &staff[24..30]).writes;
    let report = reconciler.approve(&acme, *first_id, &Planned(now), &ctx("ops")).await.unwrap();
    assert_eq!(report.written.len(), 6);
    assert_eq!(store.count_individuals_holding_access(acme.id).await.unwrap(), 70);
    // A change that is mass on its own is its own set.
    let big = removal_set(&reconciler, &acme, &staff[30..60]);
    let Submitted::AwaitingApproval { id, .. } = reconciler.submit(&acme, big, &entra).await.unwrap() else {
        panic!("30 of 70 must be held");
    };
    assert_ne!(&id, first_id);

    // A tenant that judges each change set on its own.
    let mut settings = idbridge_core::tenant::TenantSettings::new("Other");
    settings.policy.mass_deprovision_window_minutes = 0;
    let other = tenant(&store, "other").await;
    let other = store.update_tenant(other.id, other.version, &settings, &ctx("setup")).await.unwrap();
    let staff = seed_active(&reconciler, &other, 100).await;
    for person in &staff[..30] {
        let one = removal_set(&reconciler, &other, std::slice::from_ref(person));
        assert!(matches!(reconciler.submit(&other, one, &ctx("scim")).await.unwrap(), Submitted::Applied(_)));
    }
    assert_eq!(store.count_individuals_holding_access(other.id).await.unwrap(), 70);
}

async fn a_rejected_change_set_changes_nobody(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let reconciler = Reconciler::new(&sql);
    let staff = seed_active(&reconciler, &acme, 40).await;
    let all = removal_set(&reconciler, &acme, &staff);
    let Submitted::AwaitingApproval { id, .. } = reconciler.submit(&acme, all, &ctx("ldap")).await.unwrap() else {
        panic!("40 of 40 must be held");
    };
    // Somebody changes one of them meanwhile; approval would skip that one.
    reconciler.reject(&acme, id, &ctx("ops")).await.unwrap();
    assert_eq!(store.count_individuals_holding_access(acme.id).await.unwrap(), 40);
    let now = Planned(Vec::new());
    assert!(matches!(reconciler.approve(&acme, id, &now, &ctx("ops")).await, Err(DomainError::Rejected(_))));
    // Another tenant cannot see or decide it.
    let other = tenant(&store, "other").await;
    assert!(matches!(reconciler.approve(&other, id, &now, &ctx("ops")).await, Err(DomainError::NotFound { .. })));
}

async fn batches_skip_writes_another_writer_got_to_first(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let reconciler = Reconciler::new(&sql);
    let staff = seed_active(&reconciler, &acme, 5).await;
    let set = removal_set(&reconciler, &acme, &staff);
    // A concurrent writer updates staff[2] after the plan was made.
    let change = ManualChange { time_zone: Some("Europe/Paris".into()), ..ManualChange::default() };
    reconciler.manual(&acme, &staff[2], &change, &ctx("ops")).await.unwrap();
    let report = reconciler.commit(&acme, set.writes, &ctx("scim")).await.unwrap();
    assert_eq!((report.written.len(), report.skipped.len()), (4, 1));
    assert_eq!(status(&store, &staff[2]).await, IndividualStatus::Active, "the stale write was not applied");
}

/// Two schedulers on one PostgreSQL database, each with its own connection pool, tick at
/// the same time over the same due transitions: each is applied exactly once.
#[tokio::test]
async fn two_instances_on_postgres_never_double_apply() {
    let Some(fixture) = Fixture::postgres().await else { return };
    let store = fixture.store();
    let (admin_url, name) = fixture.drop_pg.clone().unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0;
    let second_sql = SqlStore::connect(&StoreOptions::new(format!("{base}/{name}"))).await.unwrap();
    let acme = tenant(&store, "acme").await;
    let clock = Arc::new(ManualClock::new(at("2026-06-01T00:00:00Z")));
    let one = Reconciler::with_clock(&fixture.sql(), clock.clone());
    let two = Reconciler::with_clock(&second_sql, clock.clone());
    let people: Vec<_> = (0..1500)
        .map(|n| {
            let mut p = person(&acme, &format!("user{n:04}"), "Europe/Berlin", clock.now_ts());
            p.expiration = Some(LocalInstant::parse("2026-06-01T12:00", "Europe/Berlin").unwrap());
            p
        })
        .collect();
    create(&one, &acme, people).await;
    clock.set(at("2026-06-02T00:00:00Z"));
    let (ctx_one, ctx_two) = (scheduler(), scheduler());
    let (a, b) = tokio::join!(lifecycle::tick(&one, &ctx_one), lifecycle::tick(&two, &ctx_two));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.applied + b.applied, 1500, "{a:?} {b:?}");
    assert_eq!(actions(&store, &acme, "individual.scheduled").await, 1500);
    let events = store.list_change_events(acme.id, 0, 10_000).await.unwrap();
    assert_eq!(events.iter().filter(|(_, e)| e.kind.as_str() == "individual.expired").count(), 1500);
    fixture.finish().await;
}

trait NowTs {
    fn now_ts(&self) -> Timestamp;
}

impl NowTs for ManualClock {
    fn now_ts(&self) -> Timestamp {
        idbridge_core::clock::Clock::now(self)
    }
}

async fn a_lease_has_one_holder_until_it_expires(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let t0 = at("2026-06-01T00:00:00Z");
    let later = |s: i64| t0.checked_add(jiff::SignedDuration::from_secs(s)).unwrap();
    assert!(store.try_lease("ldap:acme:corp", "one", t0, later(30)).await.unwrap());
    assert!(!store.try_lease("ldap:acme:corp", "two", later(10), later(40)).await.unwrap(), "held by one");
    assert!(store.try_lease("ldap:acme:corp", "one", later(10), later(40)).await.unwrap(), "renewed by its holder");
    assert!(store.try_lease("ldap:acme:corp", "two", later(41), later(70)).await.unwrap(), "taken over after expiry");
    // Released by expiring it now.
    assert!(store.try_lease("ldap:acme:corp", "two", later(50), later(50)).await.unwrap());
    assert!(store.try_lease("ldap:acme:corp", "three", later(51), later(80)).await.unwrap());
    assert!(store.try_lease("webhook", "three", later(51), later(80)).await.unwrap(), "leases are independent");
}

fn days(n: u32) -> jiff::SignedDuration {
    jiff::SignedDuration::from_hours(24 * i64::from(n))
}

/// A person the source had suspended (inactive), then removed, is deprovisioned like
/// everyone else: the grace period runs from the removal, then expiry, then purge.
async fn removed_while_suspended_goes_on_to_expiry_and_purge(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    // This tenant suspends the deprovisioned for a grace period before they expire.
    let mut settings = idbridge_core::tenant::TenantSettings::new("ACME");
    settings.policy.deprovision_action = idbridge_core::tenant::DeprovisionAction::Suspend;
    let acme = store.update_tenant(acme.id, acme.version, &settings, &ctx("setup")).await.unwrap();
    let t0 = at("2027-03-01T09:00:00Z");
    let clock = Arc::new(ManualClock::new(t0));
    let reconciler = Reconciler::with_clock(&sql, clock.clone());
    let carol = create(&reconciler, &acme, vec![person(&acme, "carol", "Europe/Berlin", t0)]).await.remove(0);
    // The source says inactive: suspended, not deprovisioned.
    let mut inactive = carol.clone();
    inactive.status = IndividualStatus::Suspended;
    let write = PlannedWrite { before: Some(carol), after: inactive, action: "individual.reconciled".into() };
    reconciler.commit(&acme, vec![write], &ctx("scim")).await.unwrap();
    let carol = store.get_individual(acme.id, inactive_id(&store, &acme, "carol").await).await.unwrap().unwrap();
    assert_eq!((carol.status, carol.deprovisioned_at), (IndividualStatus::Suspended, None));
    assert_eq!(carol.access_ended_at, Some(t0));

    // Removed at the source a day later: deprovisioned, though the status stays.
    let removed = t0 + days(1);
    clock.set(removed);
    let Plan::Write(w) = reconciler.plan_removed(&acme, Some(carol)) else { panic!("a removal must be recorded") };
    reconciler.commit(&acme, vec![*w], &ctx("scim")).await.unwrap();
    let carol = store.get_individual(acme.id, inactive_id(&store, &acme, "carol").await).await.unwrap().unwrap();
    assert_eq!(carol.deprovisioned_at, Some(removed));
    assert!(matches!(reconciler.plan_removed(&acme, Some(carol.clone())), Plan::Unchanged), "recorded once");

    let grace = acme.policy.suspend_grace_days;
    clock.set(removed + days(grace) - jiff::SignedDuration::from_secs(1));
    lifecycle::tick(&reconciler, &scheduler()).await.unwrap();
    assert_eq!(status(&store, &carol).await, IndividualStatus::Suspended);
    clock.set(removed + days(grace));
    lifecycle::tick(&reconciler, &scheduler()).await.unwrap();
    assert_eq!(status(&store, &carol).await, IndividualStatus::Expired, "the grace period ended");
    // Retention counts from when access was taken (the source's suspension), so the purge
    // comes retention_days after t0.
    clock.set(t0 + days(acme.policy.retention_days));
    lifecycle::tick(&reconciler, &scheduler()).await.unwrap();
    assert_eq!(status(&store, &carol).await, IndividualStatus::Deleted);
}

async fn inactive_id(store: &Arc<dyn Store>, tenant: &Tenant, login: &str) -> IndividualId {
    store.find_individual_by_login(tenant.id, login).await.unwrap().unwrap().id
}

/// An expiry date the source reports in the past expires the individual at once, but the
/// retention period counts from that moment — the history stays for retention_days, and
/// the person comes back as the same individual if the date is cleared meanwhile.
async fn a_past_expiry_date_leaves_the_whole_retention_period(sql: SqlStore) {
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let t0 = at("2027-05-10T08:00:00Z");
    let clock = Arc::new(ManualClock::new(t0));
    let reconciler = Reconciler::with_clock(&sql, clock.clone());
    let dan = create(&reconciler, &acme, vec![person(&acme, "dan", "Europe/Berlin", t0)]).await.remove(0);
    let seen = t0 + days(3);
    clock.set(seen);
    let mut expired = dan.clone();
    expired.expiration = Some(LocalInstant::parse("2020-01-01T00:00", "Europe/Berlin").unwrap());
    expired.status = IndividualStatus::Expired;
    let write = PlannedWrite { before: Some(dan.clone()), after: expired, action: "individual.reconciled".into() };
    reconciler.commit(&acme, vec![write], &ctx("ldap")).await.unwrap();
    let stored = store.get_individual(acme.id, dan.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.access_ended_at), (IndividualStatus::Expired, Some(seen)));

    // The next ticks do not purge: the date is six years old, but access ended just now.
    clock.set(seen + jiff::SignedDuration::from_secs(60));
    lifecycle::tick(&reconciler, &scheduler()).await.unwrap();
    assert_eq!(status(&store, &dan).await, IndividualStatus::Expired);
    clock.set(seen + days(acme.policy.retention_days) - jiff::SignedDuration::from_secs(1));
    lifecycle::tick(&reconciler, &scheduler()).await.unwrap();
    assert_eq!(status(&store, &dan).await, IndividualStatus::Expired, "history kept for the whole period");
    // The date is cleared within retention: the same individual, active again, its
    // history intact.
    let stored = store.get_individual(acme.id, dan.id).await.unwrap().unwrap();
    let mut back = stored.clone();
    back.expiration = None;
    back.status = IndividualStatus::Active;
    let write = PlannedWrite { before: Some(stored), after: back, action: "individual.reconciled".into() };
    reconciler.commit(&acme, vec![write], &ctx("ldap")).await.unwrap();
    let stored = store.get_individual(acme.id, dan.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.access_ended_at), (IndividualStatus::Active, None));
    assert_eq!(store.find_individual_by_login(acme.id, "dan").await.unwrap().unwrap().id, dan.id);
    // And expired again, the purge comes retention_days after that.
    let again = clock.now_ts();
    let mut expired = stored.clone();
    expired.status = IndividualStatus::Expired;
    let write = PlannedWrite { before: Some(stored), after: expired, action: "individual.reconciled".into() };
    reconciler.commit(&acme, vec![write], &ctx("ldap")).await.unwrap();
    clock.set(again + days(acme.policy.retention_days));
    lifecycle::tick(&reconciler, &scheduler()).await.unwrap();
    assert_eq!(status(&store, &dan).await, IndividualStatus::Deleted);
}

/// The database refuses the writes of an approved change set (a full disk, a lost
/// connection). On 0d34fa8 the set was marked approved before its writes, so the failed
/// commit left it "approved" with nothing applied, and every later approval was refused
/// ("no longer pending"). Now the decision is recorded with the result, after the
/// writes: a failed approval leaves the set pending, and approving it again applies it.
#[tokio::test]
async fn an_approval_whose_writes_fail_can_be_approved_again() {
    const REFUSE: &str =
        "CREATE TRIGGER refuse BEFORE UPDATE ON individuals BEGIN SELECT RAISE(ABORT, 'disk full'); END";
    struct DiskFills(sqlx::SqlitePool, Vec<PlannedWrite>);
    #[async_trait::async_trait]
    impl idbridge_core::reconcile::Replan for DiskFills {
        async fn replan(
            &self,
            _: &Tenant,
            _: &idbridge_core::changeset::HeldChangeSet,
        ) -> idbridge_core::DomainResult<Vec<PlannedWrite>> {
            sqlx::query(REFUSE).execute(&self.0).await.unwrap();
            Ok(self.1.clone())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approve.db");
    let sql = SqlStore::connect(&StoreOptions::new(format!("sqlite://{}", path.display()))).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let reconciler = Reconciler::new(&sql);
    let staff = seed_active(&reconciler, &acme, 40).await;
    let Submitted::AwaitingApproval { id, .. } =
        reconciler.submit(&acme, removal_set(&reconciler, &acme, &staff[..30]), &ctx("scim")).await.unwrap()
    else {
        panic!("30 of 40 must be held");
    };
    let writes = removal_set(&reconciler, &acme, &staff[..30]).writes;
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let failed = reconciler.approve(&acme, id, &DiskFills(raw.clone(), writes.clone()), &ctx("ops")).await;
    assert!(failed.is_err(), "the writes cannot have been applied: {failed:?}");
    assert_eq!(store.count_individuals_holding_access(acme.id).await.unwrap(), 40);
    let set = store.get_change_set(acme.id, id).await.unwrap().unwrap();
    assert_eq!(set.status, ChangeSetStatus::Pending, "nothing was applied, so nothing was decided");

    sqlx::query("DROP TRIGGER refuse").execute(&raw).await.unwrap();
    let report = reconciler.approve(&acme, id, &Planned(writes), &ctx("ops")).await.unwrap();
    assert_eq!(report.written.len(), 30);
    let decided = store.get_change_set(acme.id, id).await.unwrap().unwrap();
    assert_eq!(decided.status, ChangeSetStatus::Approved);
    assert!(decided.result.unwrap().contains("30 applied"));
    assert_eq!(actions(&store, &acme, "change_set.approved").await, 1, "recorded once, with the writes");
}

/// A set held before writes had rows of their own (one JSON value in `change_sets.writes`)
/// is moved into rows when the store opens, and reads, pages and approves as any other.
#[tokio::test]
async fn a_set_held_before_writes_had_rows_is_moved_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("legacy.db").display());
    let sql = SqlStore::connect(&StoreOptions::new(url.clone())).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let acme = tenant(&store, "acme").await;
    let reconciler = Reconciler::new(&sql);
    let staff = seed_active(&reconciler, &acme, 40).await;
    let planned = removal_set(&reconciler, &acme, &staff[..30]).writes;
    // As 0007's version stored it: full planned writes in an envelope.
    let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO change_sets (tenant_id, id, origin, status, summary, writes, created_at, created_by)
         VALUES (?, ?, 'SCIM Bulk request', 'pending', ?, ?, 0, 'scim_token:entra')",
    )
    .bind(acme.id.0.to_string())
    .bind(id.to_string())
    .bind(r#"{"creates":0,"updates":0,"takes_access":30,"holding_access":40}"#)
    .bind(serde_json::json!({ "format": 1, "writes": planned }).to_string())
    .execute(&raw)
    .await
    .unwrap();
    sql.close().await;

    let sql = SqlStore::connect(&StoreOptions::new(url.clone())).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    let (left,): (String,) = sqlx::query_as("SELECT writes FROM change_sets WHERE id = ?")
        .bind(id.to_string())
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(left, "", "moved out of the set's row");
    let held = store.get_change_set(acme.id, id).await.unwrap().unwrap();
    let logins: Vec<&str> = held.writes.iter().map(|w| w.login.as_str()).collect();
    assert_eq!(logins, staff[..30].iter().map(|p| p.login.as_str()).collect::<Vec<_>>());
    assert_eq!(store.change_set_writes(acme.id, id, Some(24), 100).await.unwrap().len(), 5);
    // Opening again moves nothing twice.
    drop(SqlStore::connect(&StoreOptions::new(url)).await.unwrap());
    assert_eq!(store.get_change_set(acme.id, id).await.unwrap().unwrap().writes.len(), 30);
    let reconciler = Reconciler::new(&sql);
    let report = reconciler.approve(&acme, id, &Planned(planned), &ctx("ops")).await.unwrap();
    assert_eq!(report.written.len(), 30);
    assert_eq!(store.count_individuals_holding_access(acme.id).await.unwrap(), 10);
}
