//! The audit log and the outbox port.

use async_trait::async_trait;

use crate::DomainResult;
use crate::audit::{AuditEntry, AuditQuery, AuditRecord, ChangeEvent};
use crate::tenant::TenantId;

/// The audit log and the outbox of change events with its consumers' positions.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
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
