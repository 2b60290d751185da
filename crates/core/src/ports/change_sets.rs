//! Ports for held change sets and for leases between instances.

use async_trait::async_trait;
use uuid::Uuid;

use crate::DomainResult;
use crate::audit::AuditRecord;
use crate::changeset::{ChangeSetDecision, ChangeSetHeader, ChangeSetStatus, HeldChangeSet, HeldWrite};
use crate::tenant::TenantId;

/// Change sets held by the mass-deprovision guard: stored, listed without their writes,
/// extended while pending, decided once. Their writes are read a page at a time: a
/// 100,000-person set is never loaded to be listed, shown or decided.
#[async_trait]
pub trait ChangeSetStore: Send + Sync + 'static {
    /// Stores a pending set with its writes (in their order), in one transaction with the
    /// audit record.
    async fn put_change_set(
        &self,
        set: &ChangeSetHeader,
        writes: &[HeldWrite],
        audit: &AuditRecord,
    ) -> DomainResult<()>;
    /// A change set with every one of its writes (to re-plan its people on approval, or to
    /// compare it with a set about to be held).
    async fn get_change_set(&self, tenant: TenantId, id: Uuid) -> DomainResult<Option<HeldChangeSet>>;
    /// At most `limit` writes of a change set after position `after` (`None`: from the
    /// first), in order, each with its position — the cursor for the next page.
    async fn change_set_writes(
        &self,
        tenant: TenantId,
        id: Uuid,
        after: Option<u64>,
        limit: usize,
    ) -> DomainResult<Vec<(u64, HeldWrite)>>;
    /// Adds writes to a pending change set (a later request joining a mass deprovision
    /// that already waits), recomputing its summary, with the audit record; `None` when
    /// the set is no longer pending. A person already in the set keeps one write: the
    /// later one.
    async fn extend_change_set(
        &self,
        tenant: TenantId,
        id: Uuid,
        writes: &[HeldWrite],
        audit: &AuditRecord,
    ) -> DomainResult<Option<crate::changeset::ChangeSummary>>;
    /// A change set without its writes (to decide it without reading them).
    async fn get_change_set_header(&self, tenant: TenantId, id: Uuid) -> DomainResult<Option<ChangeSetHeader>>;
    /// Change sets newest first (at most 1,000; without a tenant, every tenant's), without
    /// their writes.
    async fn list_change_sets(
        &self,
        tenant: Option<TenantId>,
        status: Option<ChangeSetStatus>,
    ) -> DomainResult<Vec<ChangeSetHeader>>;
    /// A change set of any tenant, by id (ids are UUIDs), without its writes.
    async fn find_change_set(&self, id: Uuid) -> DomainResult<Option<ChangeSetHeader>>;
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
}

/// One holder of a job across instances, and the round trip that says the database
/// answers.
#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> DomainResult<()>;
    /// Takes or renews the lease `name` for `holder` until `until`; `false` when another
    /// holder's lease has not expired.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: jiff::Timestamp,
        until: jiff::Timestamp,
    ) -> DomainResult<bool>;
}
