//! The application layer: every use case of idbridge once, over the domain (`idbridge-core`)
//! and its storage ports — never a database, an HTTP framework or a command line.
//!
//! The adapters are thin: the admin CLI and the HTTP API (`idbridge-server`), SCIM
//! (`idbridge-scim`, which reports its writes through `core::ports::SourceChanges`) and the
//! OpenID provider (`idbridge-oidc`, which asks the `sign_in::Accounts` port who may sign in)
//! parse, call one use case here, and render. The composition root (`idbridge-server`'s
//! `app::Services`) builds these services once from the configuration and one store.
//!
//! Where each use case lives:
//! - `operator`: the operator's actions that need no reconciliation (tenants, tokens,
//!   configuration, audit) and the reads portals and the OpenID provider make.
//! - `reconciliation`: source reconciliation — SCIM changes, owed intents, re-maps after a
//!   rule or policy change, held change-set approval — and the merged view of a person
//!   across sources (`with_linked_sources`); it holds the reconciler (the one writer of
//!   individuals) and hands it to no adapter. `scim_person` is what a stored SCIM user
//!   says about a person.
//! - `mapping`: a tenant's pipeline, `mapping preview`; `diff`: `mapping diff`;
//!   `reconciliation` has `remap`.
//! - `explain`: `individual explain`.
//! - `directory_sync`: directory (LDAP / AD) runs, scheduled and on demand.
//! - `intent_worker`, `sweep`, `scheduler`: the background work that makes the above
//!   converge (owed intents, the convergence sweep, the lifecycle clock);
//!   `intent_clearer` deletes settled intents off the request path.
//! - `origin`: what a change set's origin says about its source.
//! - `sign_in`: sign-in decisions (link or provision at login) and the logout consumer.
//! - `delegated`: delegated administration by an individual's own access token.
//! - `local_accounts`: individuals without an IdP — invitations, passwords, second
//!   factors, lockout, resets, the mail outbox (SMTP) and the notices change events owe.
//! - `portal_feed`: the Portal API's change feed.
//! - `portal_clients`: portal registration and tenants' sign-in settings.
//! - `delivery`: the outbox's webhooks.
//! - `connectors`: portal connectors — each individual carried into the portal (outbound
//!   SCIM), links, retries, quarantine, drift repair; `connector status` and `resync`.
//! - `stopping`: how a long use case learns that the process is stopping.

use std::sync::Arc;

use idbridge_core::ports::{DirectoryStore, IntentQueue, LoginRecordStore, ScimRecordStore, SsoStore, Store};

pub mod connectors;
pub mod delegated;
pub mod delivery;
pub mod diff;
pub mod directory_sync;
pub mod explain;
pub mod intent_clearer;
pub mod intent_worker;
pub mod local_accounts;
pub mod mapping;
pub mod operator;
pub mod origin;
pub mod portal_clients;
pub mod portal_feed;
pub mod reconciliation;
pub mod scheduler;
pub mod scim_person;
pub mod sealing;
pub mod sign_in;
pub mod stopping;
pub mod sweep;

/// The storage ports the use cases need, each behind its own trait; one store usually
/// implements them all (`Ports::of`).
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub records: Arc<dyn ScimRecordStore>,
    pub directory: Arc<dyn DirectoryStore>,
    pub intents: Arc<dyn IntentQueue>,
    pub logins: Arc<dyn LoginRecordStore>,
    pub sso: Arc<dyn SsoStore>,
}

impl Ports {
    pub fn of<S>(store: &S) -> Self
    where
        S: Store + ScimRecordStore + DirectoryStore + IntentQueue + LoginRecordStore + SsoStore + Clone,
    {
        Self {
            store: Arc::new(store.clone()),
            records: Arc::new(store.clone()),
            directory: Arc::new(store.clone()),
            intents: Arc::new(store.clone()),
            logins: Arc::new(store.clone()),
            sso: Arc::new(store.clone()),
        }
    }
}
