//! The portal connectors' links and health.

use async_trait::async_trait;

use crate::DomainResult;
use crate::connector::{ConnectorHealth, ConnectorLink, LinkCounts, LinkState};
use crate::individual::IndividualId;
use crate::tenant::TenantId;

#[async_trait]
pub trait ConnectorStore: Send + Sync + 'static {
    /// The individuals changed: each of their links owes a push, due at `now` (a link is
    /// made for an individual the connector has not seen). Repeats are harmless.
    async fn owe_connector_pushes(
        &self,
        tenant: TenantId,
        connector: &str,
        individuals: &[IndividualId],
        now: jiff::Timestamp,
    ) -> DomainResult<()>;
    /// Every individual of the tenant owes a push with the remote object read back first
    /// (drift repair, `connector resync`); parked and dead links are tried again.
    async fn owe_connector_repair(&self, tenant: TenantId, connector: &str, now: jiff::Timestamp) -> DomainResult<u64>;
    /// Owed links due at `now`, soonest first.
    async fn due_connector_links(
        &self,
        tenant: TenantId,
        connector: &str,
        now: jiff::Timestamp,
        limit: u32,
    ) -> DomainResult<Vec<ConnectorLink>>;
    /// Counts an attempt on each of these links before their pushes start, so that a
    /// creation whose outcome is lost (a crash after the request) is looked up before it is
    /// tried again — and a link never attempted can be created without a lookup.
    async fn begin_connector_attempts(
        &self,
        tenant: TenantId,
        connector: &str,
        individuals: &[IndividualId],
    ) -> DomainResult<()>;
    /// Records a push's outcome: `link.done` is the `wanted` the push read, so a link
    /// changed meanwhile still owes one.
    async fn finish_connector_push(&self, link: &ConnectorLink) -> DomainResult<()>;
    /// Every retrying link of the connector due at `now` (the portal answers again).
    async fn reschedule_connector_retries(
        &self,
        tenant: TenantId,
        connector: &str,
        now: jiff::Timestamp,
    ) -> DomainResult<u64>;
    async fn connector_link_counts(&self, tenant: TenantId, connector: &str) -> DomainResult<LinkCounts>;
    /// Links in one state, by individual id after `after`.
    async fn list_connector_links(
        &self,
        tenant: TenantId,
        connector: &str,
        state: LinkState,
        after: Option<IndividualId>,
        limit: u32,
    ) -> DomainResult<Vec<ConnectorLink>>;
    /// The deletion guard's numbers: links with an unexplained disable waiting for the
    /// guard, links whose portal object is active, and whether a drift repair's read-backs
    /// are still owed (the guard judges a repair's disables together, once all are read).
    async fn connector_guard_counts(&self, tenant: TenantId, connector: &str) -> DomainResult<(u64, u64, bool)>;
    /// Holds every unexplained disable (state `held`, `note` as the reason); answers each
    /// held individual with its login and status, when it is still stored.
    async fn hold_connector_disables(
        &self,
        tenant: TenantId,
        connector: &str,
        note: &str,
    ) -> DomainResult<Vec<(IndividualId, Option<(String, String)>)>>;
    /// Ends a wait of the links in state `from` (unexplained: the guard let them through;
    /// held: an operator decided): approved, they are pushed past the guard; rejected,
    /// parked with `note` until a resync. Answers how many links it released.
    async fn release_connector_disables(
        &self,
        tenant: TenantId,
        connector: &str,
        from: LinkState,
        approved: bool,
        note: &str,
        now: jiff::Timestamp,
    ) -> DomainResult<u64>;
    /// Every tenant's quarantined connectors, with the instant each went in (`/readyz`).
    async fn quarantined_connectors(&self) -> DomainResult<Vec<(TenantId, String, jiff::Timestamp)>>;
    async fn get_connector_health(&self, tenant: TenantId, connector: &str) -> DomainResult<Option<ConnectorHealth>>;
    async fn put_connector_health(
        &self,
        tenant: TenantId,
        connector: &str,
        health: &ConnectorHealth,
    ) -> DomainResult<()>;
}
