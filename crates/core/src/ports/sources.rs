//! Ports for what sources say: SCIM records and memberships, the durable intents their
//! writes owe, the last sign-in of each person, each directory's last complete run, and
//! how the SCIM service reports its writes for reconciliation.

use async_trait::async_trait;
use uuid::Uuid;

use crate::DomainResult;
use crate::audit::{AuditContext, AuditRecord};
use crate::individual::SourceLink;
use crate::intent::{Intent, IntentStats, Owed};
use crate::source_record::{ScimKind, ScimMember, ScimQuery, ScimRecord, ScimWrite};
use crate::tenant::TenantId;

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
    /// The records of `ids` that exist, in no particular order: reconciling a thousand
    /// people reads them in a few statements, not a thousand.
    async fn get_scim_many(&self, tenant: TenantId, kind: ScimKind, ids: &[Uuid]) -> DomainResult<Vec<ScimRecord>>;
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

/// A person as a directory's last complete run saw them, with the digest that tells the
/// next run whether they changed ([`SourcePerson::change_digest`]). How the person is
/// stored is the store's business.
///
/// [`SourcePerson::change_digest`]: crate::reconcile::input::SourcePerson::change_digest
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryRecord {
    pub digest: String,
    pub person: crate::reconcile::input::SourcePerson,
    /// How the source's groups list the person and what they gave it, when the source's
    /// groups list their members (not `memberOf`).
    pub groups_seen: Option<GroupsSeen>,
}

/// What a directory record says without its person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordDigest {
    pub digest: String,
    pub groups_seen: Option<GroupsSeen>,
}

/// The key by which a directory's groups list a person (a normalised DN, or the login for
/// `memberUid`) and a digest of the groups that gave the person at this run: an
/// incremental run, which reads only changed users but every group, compares the digest
/// with what today's groups give that key, and reads only the records that differ —
/// never every stored person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupsSeen {
    pub key: String,
    pub digest: String,
}

impl DirectoryRecord {
    pub fn external_id(&self) -> &str {
        &self.person.link.external_id
    }
}

/// What directory sources said at their last complete run, and the runs themselves.
#[async_trait]
pub trait DirectoryStore: Send + Sync + 'static {
    /// external id → the person's change digest and groups seen, for one source: what a
    /// run compares with, without reading the people.
    async fn directory_hashes(
        &self,
        tenant: TenantId,
        source: &str,
    ) -> DomainResult<std::collections::HashMap<String, RecordDigest>>;
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
    /// The people a source had at its last run, of these external ids (those it has).
    async fn directory_persons(
        &self,
        tenant: TenantId,
        source: &str,
        external_ids: &[String],
    ) -> DomainResult<Vec<crate::reconcile::input::SourcePerson>>;
    /// Upserts records and deletes people by external id, in one transaction.
    async fn update_directory_records(
        &self,
        tenant: TenantId,
        source: &str,
        upserts: &[DirectoryRecord],
        deletes: &[String],
    ) -> DomainResult<()>;
    /// Writes a run, or replaces the record of the same id (a `running` run's outcome).
    async fn record_sync_run(&self, run: &crate::directory::SyncRun) -> DomainResult<()>;
    /// Marks the source's runs still `running` as `abandoned`, with `error` and
    /// `finished_at`: called by a run that has just taken the source's lease, so none of
    /// them can still be going. How many there were.
    async fn abandon_sync_runs(
        &self,
        tenant: TenantId,
        source: &str,
        at: jiff::Timestamp,
        error: &str,
    ) -> DomainResult<u64>;
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
