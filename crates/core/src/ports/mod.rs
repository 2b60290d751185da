//! Storage ports. The `idbridge-store` crate implements them for SQLite and PostgreSQL;
//! callers hold an `Arc<dyn Store>` and never know which.
//!
//! Every method that reads or writes tenant data takes the tenant's id, and every write
//! takes the audit record(s) to append in the same transaction.

mod change_sets;
mod connectors;
mod individuals;
mod local_accounts;
mod log;
mod operator;
mod sources;
mod sso;

pub use change_sets::{ChangeSetStore, Leases};
pub use connectors::ConnectorStore;
pub use individuals::{IndividualStore, IndividualWrite, IndividualWriter};
pub use local_accounts::LocalAccountStore;
pub use log::AuditLog;
pub use operator::{ConfigStore, TenantStore};
pub use sources::{
    CollectSourceChanges, DirectoryRecord, DirectoryStore, GroupsSeen, IgnoreSourceChanges, IntentQueue,
    LoginRecordStore, RecordDigest, ScimChanges, ScimRecordStore, ScimWritten, SourceChanges,
};
pub use sso::SsoStore;

/// Everything but individual writes, as most services hold it (`Arc<dyn Store>`). Each
/// concern is its own trait, implemented once by `idbridge-store`. Calls on a `dyn Store`
/// reach every one of them; calls on the concrete store need the trait in scope.
pub trait Store:
    TenantStore + ConfigStore + IndividualStore + ChangeSetStore + Leases + AuditLog + ConnectorStore + LocalAccountStore
{
}

impl<
    T: TenantStore
        + ConfigStore
        + IndividualStore
        + ChangeSetStore
        + Leases
        + AuditLog
        + ConnectorStore
        + LocalAccountStore
        + ?Sized,
> Store for T
{
}
