//! Ports for held change sets and for leases between instances.

use async_trait::async_trait;
use uuid::Uuid;

use crate::DomainResult;
use crate::audit::AuditRecord;
use crate::changeset::{ChangeSetDecision, ChangeSetStatus, HeldChangeSet};
use crate::tenant::TenantId;

/// Change sets held by the mass-deprovision guard: stored, listed without their writes,
/// extended while pending, decided once.
#[async_trait]
pub trait ChangeSetStore: Send + Sync + 'static {
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
