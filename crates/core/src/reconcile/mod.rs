//! The reconciliation service: the one writer of individuals. Given what a source says
//! about a person and the tenant's mapping decision, it plans the individual's next state
//! (create, update, suspend, expire, reactivate); a whole operation's plans form a
//! [`ChangeSet`], which the mass-deprovision guard may hold for an operator; what is
//! applied is written in batches, each write in one transaction with its audit record and
//! change event.
//!
//! People are linked by immutable source identities (`SourceLink`), never by email.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Timestamp;
use uuid::Uuid;

use crate::DomainResult;
use crate::audit::ChangeKind;
use crate::changeset::{ChangeSummary, HeldChangeSet, PlannedWrite};
use crate::clock::{Clock, SystemClock};
use crate::individual::{Individual, IndividualId};
use crate::mapping::MappingInput;
use crate::ports::{IndividualWriter, Store};
use crate::tenant::Tenant;

mod digest;
pub mod input;
mod manual;
mod plan;
mod submit;

pub use digest::VERSION as CHANGE_DIGEST_VERSION;
pub use input::{ManualChange, NewIndividual, SourcePerson, mapping_input};

/// Writes per store transaction when applying a change set.
const BATCH: usize = 500;

/// What reconciliation decided for one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Unchanged,
    /// The person has no access and no individual: nothing to do.
    NoAccess,
    /// The decision asked for something the tenant does not allow; nothing changes.
    Held(String),
    Write(Box<PlannedWrite>),
}

/// What reconciliation did for one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    NoAccess,
    Written {
        individual: IndividualId,
        kind: ChangeKind,
    },
    /// The decision asked for something the tenant does not allow; nothing changed.
    Held(String),
    /// The mass-deprovision guard held the change set this person belongs to.
    AwaitingApproval(Uuid),
}

/// How a superseded change set's result begins.
const SUPERSEDED: &str = "superseded by";

/// Plans what the people of a held change set need now, from the current sources (the
/// daemon implements it: it can read every source).
#[async_trait::async_trait]
pub trait Replan: Send + Sync {
    async fn replan(&self, tenant: &Tenant, set: &HeldChangeSet) -> DomainResult<Vec<PlannedWrite>>;

    /// Whether `replan` reads the held writes (to know whose decisions to re-make). One
    /// that plans from the sources alone (a directory read again) says no, and a held set
    /// of 100,000 writes is then approved without reading them.
    fn needs_held_writes(&self) -> bool {
        true
    }
}

/// Writes planned from the current sources a moment ago (a directory read just now).
pub struct Planned(pub Vec<PlannedWrite>);

#[async_trait::async_trait]
impl Replan for Planned {
    fn needs_held_writes(&self) -> bool {
        false
    }

    async fn replan(&self, _: &Tenant, _: &HeldChangeSet) -> DomainResult<Vec<PlannedWrite>> {
        Ok(self.0.clone())
    }
}

/// What submitting a change set did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Applied(CommitReport),
    /// Held by the mass-deprovision guard as this pending change set.
    AwaitingApproval {
        id: Uuid,
        summary: ChangeSummary,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    pub written: Vec<(IndividualId, ChangeKind)>,
    /// Writes skipped because the individual changed after it was planned (another
    /// instance or request got there first).
    pub skipped: Vec<IndividualId>,
    /// Writes that failed on their own (a login taken by another individual, …).
    pub failed: Vec<(IndividualId, String)>,
}

/// Role and access-profile names that exist, read once per change set.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub roles: BTreeSet<String>,
    pub profiles: BTreeSet<String>,
}

#[derive(Clone)]
pub struct Reconciler {
    store: Arc<dyn Store>,
    /// The only handle on individual writes (`ports::IndividualWriter` is not part of
    /// `Store`, and this field is never handed out).
    writer: Arc<dyn IndividualWriter>,
    clock: Arc<dyn Clock>,
}

impl Reconciler {
    /// The reconciler over a store that can also write individuals. Only code holding the
    /// concrete store (the composition root, tests) can build one; code holding an
    /// `Arc<dyn Store>` cannot write an individual.
    pub fn new<S: Store + IndividualWriter + Clone>(store: &S) -> Self {
        Self::with_clock(store, Arc::new(SystemClock))
    }

    pub fn with_clock<S: Store + IndividualWriter + Clone>(store: &S, clock: Arc<dyn Clock>) -> Self {
        Self { store: Arc::new(store.clone()), writer: Arc::new(store.clone()), clock }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn known(&self) -> DomainResult<Known> {
        Ok(Known {
            roles: self.store.list_roles().await?.into_iter().map(|r| r.name).collect(),
            profiles: self.store.list_access_profiles().await?.into_iter().map(|p| p.name).collect(),
        })
    }

    /// The mapping input for a person, and the individual already linked to it. The
    /// caller runs the pipeline on it (plugins block: off the async runtime) and plans
    /// with the decision.
    pub async fn prepare(
        &self,
        tenant: &Tenant,
        person: &SourcePerson,
    ) -> DomainResult<(MappingInput, Option<Individual>)> {
        let mut existing = None;
        for link in std::iter::once(&person.link).chain(&person.also) {
            existing =
                self.store.find_individual_by_link(tenant.id, link.source, &link.connection, &link.external_id).await?;
            if existing.is_some() {
                break;
            }
        }
        let input = mapping_input(tenant, person, existing.as_ref());
        Ok((input, existing))
    }
}
