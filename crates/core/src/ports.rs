//! Storage ports. The `idbridge-store` crate implements them for SQLite and PostgreSQL;
//! callers hold an `Arc<dyn Store>` and never know which.
//!
//! Every method that reads or writes tenant data takes the tenant's id, and every write
//! takes the audit record(s) to append in the same transaction.

use async_trait::async_trait;

use crate::DomainResult;
use crate::audit::{AuditContext, AuditEntry, AuditQuery, AuditRecord, ChangeEvent};
use crate::catalog::CatalogEntry;
use crate::changeset::{ChangeSetDecision, ChangeSetStatus, HeldChangeSet};
use crate::config_plan::ConfigChange;
use crate::individual::{Individual, IndividualId, IndividualQuery, SourceKind, SourceLink};
use crate::intent::{Intent, IntentStats, Owed};
use crate::role::{AccessProfile, Role};
use crate::source_record::{ScimKind, ScimMember, ScimQuery, ScimRecord, ScimWrite};
use crate::tenant::{Tenant, TenantId, TenantSettings, TenantSlug};
use crate::token::ScimTokenRecord;
use uuid::Uuid;

/// A write of one individual: the new state, the version the writer read (`None` for a
/// create), and what to record with it.
#[derive(Debug, Clone)]
pub struct IndividualWrite {
    pub individual: Individual,
    pub expected_version: Option<i64>,
    /// Whether the source links differ from the stored ones (they are rewritten only then).
    pub links_changed: bool,
    /// Only the status (and when access was taken) changes: the store may update just
    /// those columns, as a scheduler tick over 100,000 expirations does.
    pub status_only: bool,
    pub audit: AuditRecord,
    pub event: Option<ChangeEvent>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> DomainResult<()>;

    // --- operator configuration -------------------------------------------------------
    async fn list_catalog_entries(&self) -> DomainResult<Vec<CatalogEntry>>;
    async fn list_roles(&self) -> DomainResult<Vec<Role>>;
    async fn list_access_profiles(&self) -> DomainResult<Vec<AccessProfile>>;
    /// Every tenant's mapping rules (tenants without rules are absent).
    async fn list_mapping_rules(&self) -> DomainResult<Vec<(TenantId, Vec<crate::mapping::rules::Rule>)>>;
    async fn get_mapping_rules(&self, tenant: TenantId) -> DomainResult<Vec<crate::mapping::rules::Rule>>;
    /// Applies every change in one transaction, each with its audit record; on any error
    /// nothing is written.
    async fn apply_config(&self, changes: &[ConfigChange], ctx: &AuditContext) -> DomainResult<()>;

    // --- tenants ----------------------------------------------------------------------
    async fn create_tenant(
        &self,
        id: TenantId,
        slug: &TenantSlug,
        settings: &TenantSettings,
        ctx: &AuditContext,
    ) -> DomainResult<Tenant>;
    async fn get_tenant(&self, slug: &TenantSlug) -> DomainResult<Option<Tenant>>;
    async fn list_tenants(&self) -> DomainResult<Vec<Tenant>>;
    /// Replaces the tenant's settings if its version is still `expected_version`.
    async fn update_tenant(
        &self,
        id: TenantId,
        expected_version: i64,
        settings: &TenantSettings,
        ctx: &AuditContext,
    ) -> DomainResult<Tenant>;

    // --- SCIM tokens ------------------------------------------------------------------
    async fn create_scim_token(&self, token: &ScimTokenRecord, ctx: &AuditContext) -> DomainResult<()>;
    async fn list_scim_tokens(&self, tenant: TenantId) -> DomainResult<Vec<ScimTokenRecord>>;
    /// The token with this id in this tenant, revoked or not.
    async fn find_scim_token(&self, tenant: TenantId, id: &str) -> DomainResult<Option<ScimTokenRecord>>;
    async fn revoke_scim_token(&self, tenant: TenantId, id: &str, ctx: &AuditContext) -> DomainResult<()>;

    // --- individuals ------------------------------------------------------------------
    /// Creates or updates an individual with its audit record and change event, checking
    /// the version and the tenant-wide uniqueness of login and source links.
    async fn write_individual(&self, write: &IndividualWrite) -> DomainResult<Individual>;
    /// Writes a batch in one transaction. An update whose version no longer matches is
    /// skipped (`false` at its position) with its audit record and event; any other
    /// failure fails the whole batch and nothing is written.
    async fn write_individuals(&self, writes: &[IndividualWrite]) -> DomainResult<Vec<bool>>;
    /// Pending and active individuals of a tenant (the mass-deprovision guard's base).
    async fn count_individuals_holding_access(&self, tenant: TenantId) -> DomainResult<u64>;
    /// Records that a change set applied without approval took access from `taken`
    /// individuals at `at` (the guard's window, `TenantPolicy::mass_deprovision_window_minutes`).
    async fn record_access_taken(&self, tenant: TenantId, at: jiff::Timestamp, taken: u64) -> DomainResult<()>;
    /// How many individuals lost access without approval since `since`.
    async fn access_taken_since(&self, tenant: TenantId, since: jiff::Timestamp) -> DomainResult<u64>;
    async fn get_individual(&self, tenant: TenantId, id: IndividualId) -> DomainResult<Option<Individual>>;
    async fn find_individual_by_login(&self, tenant: TenantId, login: &str) -> DomainResult<Option<Individual>>;
    async fn find_individual_by_link(
        &self,
        tenant: TenantId,
        source: SourceKind,
        connection: &str,
        external_id: &str,
    ) -> DomainResult<Option<Individual>>;
    /// The individuals linked to any of these identities of one connection.
    async fn find_individuals_by_links(
        &self,
        tenant: TenantId,
        source: SourceKind,
        connection: &str,
        external_ids: &[String],
    ) -> DomainResult<Vec<Individual>>;
    async fn list_individuals(&self, tenant: TenantId, query: &IndividualQuery) -> DomainResult<Vec<Individual>>;
    /// Individuals of every tenant whose activation or expiration instant has passed
    /// without their status following (for the lifecycle scheduler), soonest first.
    async fn list_due_individuals(&self, now: jiff::Timestamp, limit: u32) -> DomainResult<Vec<Individual>>;
    /// A tenant's individuals suspended by deprovisioning before `grace_cutoff` (to be
    /// expired) and expired before `retention_cutoff` (to be purged).
    async fn list_deprovision_due(
        &self,
        tenant: TenantId,
        grace_cutoff: jiff::Timestamp,
        retention_cutoff: jiff::Timestamp,
        limit: u32,
    ) -> DomainResult<Vec<Individual>>;

    // --- change sets held by the mass-deprovision guard -------------------------------
    async fn put_change_set(&self, set: &HeldChangeSet, audit: &AuditRecord) -> DomainResult<()>;
    async fn get_change_set(&self, tenant: TenantId, id: Uuid) -> DomainResult<Option<HeldChangeSet>>;
    /// Adds writes to a pending change set (a later request joining a mass deprovision
    /// that already waits), recomputing its summary, with the audit record; `None` when
    /// the set is no longer pending. A person already in the set keeps one write: the
    /// later one.
    async fn extend_change_set(
        &self,
        tenant: TenantId,
        id: Uuid,
        writes: &[crate::changeset::PlannedWrite],
        audit: &AuditRecord,
    ) -> DomainResult<Option<crate::changeset::ChangeSummary>>;
    /// A change set without its writes (to decide it without reading them).
    async fn get_change_set_header(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> DomainResult<Option<crate::changeset::ChangeSetHeader>>;
    /// Change sets newest first (at most 1,000; without a tenant, every tenant's), without
    /// their writes.
    async fn list_change_sets(
        &self,
        tenant: Option<TenantId>,
        status: Option<ChangeSetStatus>,
    ) -> DomainResult<Vec<crate::changeset::ChangeSetHeader>>;
    /// A change set of any tenant, by id (ids are UUIDs), with its writes.
    async fn find_change_set(&self, id: Uuid) -> DomainResult<Option<HeldChangeSet>>;
    /// Records the decision on a pending change set and what came of it, in one
    /// transaction with its audit record; `Rejected` error when it is no longer pending
    /// (somebody decided first).
    async fn decide_change_set(
        &self,
        tenant: TenantId,
        id: Uuid,
        decision: &ChangeSetDecision,
        audit: &AuditRecord,
    ) -> DomainResult<()>;

    // --- leases (one holder of a job across instances) --------------------------------
    /// Takes or renews the lease `name` for `holder` until `until`; `false` when another
    /// holder's lease has not expired.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: jiff::Timestamp,
        until: jiff::Timestamp,
    ) -> DomainResult<bool>;

    // --- audit and outbox -------------------------------------------------------------
    /// An audit record that accompanies no other write (a held mapping decision).
    async fn append_audit(&self, record: &AuditRecord) -> DomainResult<()>;
    async fn list_audit(&self, query: &AuditQuery) -> DomainResult<Vec<AuditEntry>>;
    /// Change events of every tenant after a position, oldest first (for deliveries).
    async fn list_all_change_events(&self, after: i64, limit: u32) -> DomainResult<Vec<(i64, ChangeEvent)>>;
    /// Where an outbox consumer has got to (0 when new).
    async fn consumer_position(&self, consumer: &str) -> DomainResult<i64>;
    /// Moves a consumer past `position`; with `dead_letter` the event is recorded as
    /// given up (with the last error) in the same transaction.
    async fn advance_consumer(
        &self,
        consumer: &str,
        position: i64,
        dead_letter: Option<(&ChangeEvent, &str)>,
    ) -> DomainResult<()>;
    /// Change events of a tenant after the given outbox position, oldest first.
    async fn list_change_events(
        &self,
        tenant: TenantId,
        after: i64,
        limit: u32,
    ) -> DomainResult<Vec<(i64, ChangeEvent)>>;
}

/// Storage of SCIM source records and group memberships. Every method is scoped by tenant.
#[async_trait]
pub trait ScimRecordStore: Send + Sync + 'static {
    /// Creates or updates a record and applies member changes in one transaction, with
    /// the durable intent (`core::intent`) to re-decide every user the write may affect:
    /// the user itself; for a group, the users added or removed, and every member before
    /// and after when its name changed or all members were replaced.
    /// Unknown member ids (not a user or group of the tenant) fail the whole write with
    /// `Invalid`; a taken name fails with `AlreadyExists`; a stale version with
    /// `VersionConflict`. When the intent cannot be recorded nothing is written.
    async fn write_scim(&self, write: &ScimWrite) -> DomainResult<ScimWritten>;
    async fn get_scim(&self, tenant: TenantId, kind: ScimKind, id: Uuid) -> DomainResult<Option<ScimRecord>>;
    /// Deletes a record and every membership it takes part in, with the intent to
    /// re-decide the user (or the group's members), recorded as part of `change`
    /// (`ScimWrite::change`); `None` when absent.
    async fn delete_scim(
        &self,
        tenant: TenantId,
        kind: ScimKind,
        id: Uuid,
        change: Uuid,
        audit: &AuditRecord,
    ) -> DomainResult<Option<Owed>>;
    /// Records in insertion order, and how many match without offset and limit.
    async fn list_scim(
        &self,
        tenant: TenantId,
        kind: ScimKind,
        query: &ScimQuery,
    ) -> DomainResult<(Vec<ScimRecord>, u64)>;
    /// Members of a group in a stable order, after the given member id.
    async fn list_scim_members(
        &self,
        tenant: TenantId,
        group: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> DomainResult<Vec<ScimMember>>;
    /// Groups that list `member` directly.
    async fn list_scim_groups_of(&self, tenant: TenantId, member: Uuid) -> DomainResult<Vec<ScimMember>>;
    /// Groups of several members at once (for a page of users): (member, group) pairs.
    async fn list_scim_groups_of_many(
        &self,
        tenant: TenantId,
        members: &[Uuid],
    ) -> DomainResult<Vec<(Uuid, ScimMember)>>;
}

/// A SCIM write as stored, and the reconciliation it owes.
#[derive(Debug, Clone)]
pub struct ScimWritten {
    pub record: ScimRecord,
    pub owed: Owed,
}

/// The durable-intent queue (`core::intent`): people who must be re-decided, recorded by
/// source writes in their own transaction and settled by reconciliation.
#[async_trait]
pub trait IntentQueue: Send + Sync + 'static {
    /// Records intents on their own (a re-decision asked for outside a source write).
    async fn add_intents(
        &self,
        tenant: TenantId,
        people: &[SourceLink],
        due: jiff::Timestamp,
    ) -> DomainResult<Vec<i64>>;
    /// Takes the intents due at `now`, oldest first, for `intent::CLAIM_LEASE`; with
    /// several instances each is taken by one of them. Intents of one source change
    /// (`ScimWrite::change`) are taken together and only once all of them are due, so
    /// `limit` bounds the changes started, not the intents returned.
    async fn claim_intents(&self, now: jiff::Timestamp, limit: u32) -> DomainResult<Vec<Intent>>;
    /// Deletes settled intents.
    async fn clear_intents(&self, ids: &[i64]) -> DomainResult<()>;
    /// Puts intents back, due again at the given instants, with the failure's message.
    async fn retry_intents(&self, retry: &[(i64, jiff::Timestamp)], error: &str) -> DomainResult<()>;
    /// Makes every intent due now (at start-up: claims of a process that died, back-offs
    /// of failures that a restart may have cured). Returns how many are outstanding.
    async fn release_intents(&self, now: jiff::Timestamp) -> DomainResult<u64>;
    async fn intent_stats(&self, now: jiff::Timestamp) -> DomainResult<IntentStats>;
    /// The outstanding intents of some people of a tenant (for `explain`).
    async fn intents_of(&self, tenant: TenantId, people: &[SourceLink]) -> DomainResult<Vec<Intent>>;
}

/// What each person's last sign-in said (a login is a source: `reconcile::SourcePerson`
/// with the link issuer + subject), and when.
#[async_trait]
pub trait LoginRecordStore: Send + Sync + 'static {
    /// Stores the person as this login describes them, with the durable intent to
    /// re-decide them, in one transaction; returns the intent's id.
    async fn put_login_record(
        &self,
        tenant: TenantId,
        person: &crate::reconcile::input::SourcePerson,
        at: jiff::Timestamp,
    ) -> DomainResult<i64>;
    async fn login_record(
        &self,
        tenant: TenantId,
        link: &SourceLink,
    ) -> DomainResult<Option<(crate::reconcile::input::SourcePerson, jiff::Timestamp)>>;
    /// A page of a tenant's login records after a (connection, subject) position.
    async fn login_records_after(
        &self,
        tenant: TenantId,
        after: Option<&(String, String)>,
        limit: u32,
    ) -> DomainResult<Vec<(crate::reconcile::input::SourcePerson, jiff::Timestamp)>>;
}

/// What directory sources said at their last complete run, and the runs themselves.
#[async_trait]
pub trait DirectoryStore: Send + Sync + 'static {
    /// external id → hash of the person, for one source.
    async fn directory_hashes(
        &self,
        tenant: TenantId,
        source: &str,
    ) -> DomainResult<std::collections::HashMap<String, String>>;
    /// One person as a source had it at its last run.
    async fn directory_person(
        &self,
        tenant: TenantId,
        source: &str,
        external_id: &str,
    ) -> DomainResult<Option<crate::reconcile::input::SourcePerson>>;
    /// A page of the people a source had at its last complete run, by external id after
    /// `after`.
    async fn directory_persons_after(
        &self,
        tenant: TenantId,
        source: &str,
        after: Option<&str>,
        limit: u32,
    ) -> DomainResult<Vec<crate::reconcile::input::SourcePerson>>;
    /// Upserts (external id, hash, person JSON) and deletes, in one transaction.
    async fn update_directory_records(
        &self,
        tenant: TenantId,
        source: &str,
        upserts: &[(String, String, String)],
        deletes: &[String],
    ) -> DomainResult<()>;
    async fn record_sync_run(&self, run: &crate::directory::SyncRun) -> DomainResult<()>;
    /// Newest first.
    async fn list_sync_runs(
        &self,
        tenant: Option<TenantId>,
        limit: u32,
    ) -> DomainResult<Vec<crate::directory::SyncRun>>;
}

/// What one SCIM request changed: the users (ids) that may need reconciling because
/// they or a group of theirs changed, and the users deleted. A Bulk request is one change
/// set, so the mass-deprovision guard sees it whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScimChanges {
    /// What caused it, for operators (`SCIM PATCH Groups`, `SCIM Bulk request`).
    pub origin: String,
    pub changed: Vec<Uuid>,
    pub removed: Vec<Uuid>,
    /// The durable intents the request's writes recorded; settled once every person in
    /// `changed` and `removed` is reconciled.
    pub intents: Vec<i64>,
}

impl ScimChanges {
    pub fn changed(origin: impl Into<String>, users: Vec<Uuid>) -> Self {
        Self { origin: origin.into(), changed: users, ..Self::default() }
    }

    pub fn removed(origin: impl Into<String>, user: Uuid) -> Self {
        Self { origin: origin.into(), removed: vec![user], ..Self::default() }
    }

    /// The changes a write owes (`ScimWritten::owed`): its users, its intents.
    pub fn owed(origin: impl Into<String>, owed: Owed) -> Self {
        Self { origin: origin.into(), changed: owed.users, intents: owed.intents, ..Self::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }

    /// Folds another request's changes into this one (a user removed after a change is
    /// only removed; a user changed again stays changed once).
    pub fn merge(&mut self, other: ScimChanges) {
        self.changed.extend(other.changed);
        self.removed.extend(other.removed);
        self.intents.extend(other.intents);
        self.removed.sort_unstable();
        self.removed.dedup();
        self.changed.sort_unstable();
        self.changed.dedup();
        self.changed.retain(|id| self.removed.binary_search(id).is_err());
    }
}

/// Told by the SCIM service after each successful write (or Bulk request), so that the
/// affected people are reconciled. Implemented by the daemon (mapping pipeline +
/// reconciliation service).
#[async_trait]
pub trait SourceChanges: Send + Sync + 'static {
    async fn scim_changed(&self, tenant: &crate::tenant::Tenant, changes: ScimChanges, ctx: &AuditContext);
}

/// For tests and tools that run SCIM without reconciliation.
#[derive(Debug, Default)]
pub struct IgnoreSourceChanges;

#[async_trait]
impl SourceChanges for IgnoreSourceChanges {
    async fn scim_changed(&self, _: &crate::tenant::Tenant, _: ScimChanges, _: &AuditContext) {}
}

/// Collects the changes of several SCIM operations (a Bulk request) into one change set.
#[derive(Debug, Default)]
pub struct CollectSourceChanges(pub std::sync::Mutex<ScimChanges>);

#[async_trait]
impl SourceChanges for CollectSourceChanges {
    async fn scim_changed(&self, _: &crate::tenant::Tenant, changes: ScimChanges, _: &AuditContext) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).merge(changes);
    }
}

/// Single sign-on state: portal clients, signing keys, pending logins, sessions,
/// authorization codes and tokens. Secrets (client secrets, codes, tokens, session
/// cookies) are stored as SHA-256 hashes only.
#[async_trait]
pub trait SsoStore: Send + Sync + 'static {
    /// Creates or replaces a portal client, with its audit record.
    async fn put_portal_client(&self, client: &crate::sso::PortalClient, audit: &AuditRecord) -> DomainResult<()>;
    async fn get_portal_client(&self, id: &str) -> DomainResult<Option<crate::sso::PortalClient>>;
    async fn list_portal_clients(&self) -> DomainResult<Vec<crate::sso::PortalClient>>;
    async fn delete_portal_client(&self, id: &str, audit: &AuditRecord) -> DomainResult<bool>;

    /// Every signing key not yet removed, newest first.
    async fn list_signing_keys(&self) -> DomainResult<Vec<crate::sso::SigningKeyRecord>>;
    /// Adds a key and schedules the keys it replaces (retire and remove instants), in one
    /// transaction.
    async fn add_signing_key(
        &self,
        key: &crate::sso::SigningKeyRecord,
        replaces: &[(String, jiff::Timestamp, jiff::Timestamp)],
        audit: &AuditRecord,
    ) -> DomainResult<()>;

    /// A short-lived record keyed by a hash (a login in flight: state, nonce, PKCE
    /// verifier, the portal's request).
    async fn put_pending(&self, hash: &str, data: &str, expires_at: jiff::Timestamp) -> DomainResult<()>;
    /// Takes (reads and deletes) a pending record that has not expired; a second take of
    /// the same hash finds nothing.
    async fn take_pending(&self, hash: &str, now: jiff::Timestamp) -> DomainResult<Option<String>>;

    async fn create_session(&self, session: &crate::sso::SsoSession, cookie_hash: &str) -> DomainResult<()>;
    /// The live session behind a cookie (not ended, not expired).
    async fn find_session(
        &self,
        cookie_hash: &str,
        now: jiff::Timestamp,
    ) -> DomainResult<Option<crate::sso::SsoSession>>;
    async fn get_session(&self, id: Uuid) -> DomainResult<Option<crate::sso::SsoSession>>;
    /// Ends one session and revokes its tokens; the portals holding tokens of it. Like
    /// every way of ending sessions, it records in the same transaction a back-channel
    /// logout owed to each of those portals (`claim_backchannel_logouts`).
    async fn end_session(&self, id: Uuid, now: jiff::Timestamp) -> DomainResult<Vec<String>>;
    /// Takes up to `limit` back-channel logouts due at `now` for `lease` (with several
    /// instances each is taken by one of them), oldest first.
    async fn claim_backchannel_logouts(
        &self,
        now: jiff::Timestamp,
        lease: jiff::SignedDuration,
        limit: u32,
    ) -> DomainResult<Vec<crate::sso::BackchannelLogout>>;
    /// The portal accepted it (or has no back-channel endpoint): it is owed no more.
    async fn backchannel_logout_done(&self, id: i64) -> DomainResult<()>;
    /// It failed: due again at `due`, or given up (`dead`) when `due` is `None`.
    async fn backchannel_logout_failed(
        &self,
        id: i64,
        due: Option<jiff::Timestamp>,
        error: &str,
        now: jiff::Timestamp,
    ) -> DomainResult<()>;
    async fn backchannel_logout_stats(&self, now: jiff::Timestamp) -> DomainResult<crate::sso::BackchannelStats>;
    /// The back-channel logouts given up, newest first.
    async fn list_dead_backchannel_logouts(&self, limit: u32) -> DomainResult<Vec<crate::sso::BackchannelLogout>>;
    /// Ends every live session of a tenant and revokes every token of it, for good (the
    /// tenant was disabled: enabling it again revives none). Returns each individual's
    /// ended sessions.
    async fn end_tenant_sessions(
        &self,
        tenant: TenantId,
        now: jiff::Timestamp,
    ) -> DomainResult<Vec<(IndividualId, crate::sso::EndedSession)>>;
    /// Ends every session of an individual that began before `started_before`, and
    /// revokes their tokens. A change to the individual ends the sessions that were
    /// decided before it — never one a sign-in opened after the change (the sign-in that
    /// caused it, say).
    async fn end_individual_sessions(
        &self,
        tenant: TenantId,
        individual: IndividualId,
        started_before: jiff::Timestamp,
        now: jiff::Timestamp,
    ) -> DomainResult<Vec<crate::sso::EndedSession>>;

    async fn put_code(&self, hash: &str, code: &crate::sso::AuthorizationCode) -> DomainResult<()>;
    /// Redeems a code once, recording the grant it starts; a second redemption revokes
    /// that grant's tokens and reports `Replayed`.
    async fn redeem_code(
        &self,
        hash: &str,
        grant_id: Uuid,
        now: jiff::Timestamp,
    ) -> DomainResult<crate::sso::CodeRedemption>;

    async fn put_tokens(&self, tokens: &[crate::sso::OAuthToken]) -> DomainResult<()>;
    /// An access token that is neither expired nor revoked.
    async fn find_access_token(&self, hash: &str, now: jiff::Timestamp)
    -> DomainResult<Option<crate::sso::OAuthToken>>;
    /// Uses a refresh token once; reuse revokes the whole grant.
    async fn use_refresh_token(&self, hash: &str, now: jiff::Timestamp) -> DomainResult<crate::sso::RefreshUse>;
    /// Deletes expired pending records, codes and tokens.
    async fn purge_sso(&self, now: jiff::Timestamp) -> DomainResult<u64>;
}
