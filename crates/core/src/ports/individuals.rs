//! Ports for individuals: reading them (`IndividualStore`, part of `Store`) and writing
//! them (`IndividualWriter`, which only the reconciliation service holds).

use async_trait::async_trait;

use crate::DomainResult;
use crate::audit::{AuditRecord, ChangeEvent};
use crate::individual::{Individual, IndividualId, IndividualQuery, SourceKind};
use crate::tenant::TenantId;

/// A write of one individual: the new state, the version the writer read (`None` for a
/// create), and what to record with it.
#[derive(Debug, Clone)]
pub struct IndividualWrite {
    pub individual: Individual,
    pub expected_version: Option<i64>,
    /// Whether the source links differ from the stored ones (they are rewritten only then).
    pub links_changed: bool,
    /// Whether the portal groups (`scopes.groups`) differ from the stored ones (their
    /// rows are rewritten only then).
    pub groups_changed: bool,
    /// Only the status (and when access was taken) changes: the store may update just
    /// those columns, as a scheduler tick over 100,000 expirations does.
    pub status_only: bool,
    pub audit: AuditRecord,
    pub event: Option<ChangeEvent>,
}

/// Individuals read: by id, login or source identity, pages of a tenant, what the
/// calendar makes due, and the guard's counts.
#[async_trait]
pub trait IndividualStore: Send + Sync + 'static {
    /// Pending and active individuals of a tenant (the mass-deprovision guard's base).
    async fn count_individuals_holding_access(&self, tenant: TenantId) -> DomainResult<u64>;
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
    /// These individuals of the tenant (a few statements for any number); ids not stored
    /// are left out, the order is not the ids'.
    async fn get_individuals(&self, tenant: TenantId, ids: &[IndividualId]) -> DomainResult<Vec<Individual>>;
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
}

/// Individuals written. Not part of `Store`: only the `Reconciler` holds one (it is
/// built from a store that is both), so code holding an `Arc<dyn Store>` cannot write
/// an individual — the one-writer rule is a type, not a convention.
#[async_trait]
pub trait IndividualWriter: Send + Sync + 'static {
    /// Creates or updates an individual with its audit record and change event, checking
    /// the version and the tenant-wide uniqueness of login and source links.
    async fn write_individual(&self, write: &IndividualWrite) -> DomainResult<Individual>;
    /// Writes a batch in one transaction. An update whose version no longer matches is
    /// skipped (`false` at its position) with its audit record and event; any other
    /// failure fails the whole batch and nothing is written.
    async fn write_individuals(&self, writes: &[IndividualWrite]) -> DomainResult<Vec<bool>>;
    /// Records that a change set applied without approval took access from `taken`
    /// individuals at `at` (the guard's window, `TenantPolicy::mass_deprovision_window_minutes`).
    async fn record_access_taken(&self, tenant: TenantId, at: jiff::Timestamp, taken: u64) -> DomainResult<()>;
}
