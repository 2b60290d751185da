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
use serde_json::json;
use uuid::Uuid;

use crate::audit::{AuditContext, AuditRecord, ChangeEvent, ChangeKind};
use crate::changeset::{
    ChangeSet, ChangeSetDecision, ChangeSetStatus, ChangeSummary, HeldChangeSet, HeldDecision, PlannedWrite,
};
use crate::clock::{Clock, SystemClock};
use crate::individual::{DateOrigin, Individual, IndividualId, IndividualStatus, SourceKind, SourceLink};
use crate::mapping::{self, CurrentAssignment, Decision, ExternalGroup, MappingInput, UserFacts};
use crate::ports::{IndividualWrite, Store};
use crate::schedule::LocalInstant;
use crate::tenant::{DeprovisionAction, Tenant};
use crate::{DomainError, DomainResult};

/// Writes per store transaction when applying a change set.
const BATCH: usize = 500;

/// A change an operator or delegated administrator makes by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManualChange {
    /// Local date-time in the individual's zone; `null` clears it; absent keeps it.
    #[serde(deserialize_with = "present")]
    pub activation: Option<Option<String>>,
    #[serde(deserialize_with = "present")]
    pub expiration: Option<Option<String>>,
    /// IANA zone; the dates keep their local times and move with it.
    pub time_zone: Option<String>,
    pub add_scopes: crate::scopes::Scopes,
    pub remove_scopes: crate::scopes::Scopes,
}

/// An individual created by hand.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIndividual {
    pub login: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    pub role: String,
    #[serde(default)]
    pub access_profile: Option<String>,
    #[serde(default)]
    pub scopes: crate::scopes::Scopes,
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Local date-times in the individual's zone (or instants with an offset).
    #[serde(default)]
    pub activation: Option<String>,
    #[serde(default)]
    pub expiration: Option<String>,
}

/// Tells a JSON `null` (clear) from an absent field (keep): use with
/// `#[serde(default, deserialize_with = "present")]` on an `Option<Option<String>>`.
pub fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    <Option<String> as serde::Deserialize>::deserialize(d).map(Some)
}

/// What one source currently says about one person.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourcePerson {
    pub link: SourceLink,
    /// Other immutable identities the source vouches for (a SCIM `externalId` that is the
    /// person's directory id): the person is linked to an individual that has any of them.
    #[serde(default)]
    pub also: Vec<SourceLink>,
    pub facts: UserFacts,
    pub groups: Vec<ExternalGroup>,
    /// The source's own active flag (SCIM `active`, LDAP disabled, …).
    pub active: bool,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    /// Local date-times and their zone, when the source carries them.
    pub activation: Option<String>,
    pub expiration: Option<String>,
    pub time_zone: Option<String>,
}

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
    clock: Arc<dyn Clock>,
}

impl Reconciler {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_clock(store, Arc::new(SystemClock))
    }

    pub fn with_clock(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
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

    /// Plans the individual for a person present at its source.
    pub fn plan_present(
        &self,
        tenant: &Tenant,
        person: &SourcePerson,
        existing: Option<Individual>,
        decision: &Decision,
        known: &Known,
    ) -> DomainResult<Plan> {
        if let Some(reason) = mapping::check_against_tenant(decision, tenant, &known.roles, &known.profiles) {
            return Ok(Plan::Held(reason));
        }
        let now = self.now();
        let Some(existing) = existing else {
            if !decision.has_access() {
                return Ok(Plan::NoAccess);
            }
            let after = build(tenant, None, person, decision, now)?;
            // Someone whose access already ended (expired at the source) is not
            // provisioned: creating them expired would only be purged and created again.
            if after.status == IndividualStatus::Expired {
                return Ok(Plan::NoAccess);
            }
            return Ok(write(None, after, "individual.created"));
        };
        let after = build(tenant, Some(&existing), person, decision, now)?;
        if same_state(&existing, &after) {
            return Ok(Plan::Unchanged);
        }
        Ok(write(Some(existing), after, "individual.reconciled"))
    }

    /// Plans deprovisioning by the tenant's policy for a person gone from its source.
    pub fn plan_removed(&self, tenant: &Tenant, existing: Option<Individual>) -> Plan {
        let Some(existing) = existing else { return Plan::NoAccess };
        // Past access already: nothing more to take (their retention runs as it is).
        if matches!(existing.status, IndividualStatus::Expired | IndividualStatus::Deleted) {
            return Plan::Unchanged;
        }
        let mut next = existing.clone();
        next.deprovisioned_at = existing.deprovisioned_at.or(Some(self.now()));
        next.status = match tenant.policy.deprovision_action {
            DeprovisionAction::Expire => IndividualStatus::Expired,
            DeprovisionAction::Suspend => IndividualStatus::Suspended,
        };
        // Someone the source had suspended (inactive) and then removed is deprovisioned
        // like everyone else: the removal starts the grace period, then expiry and purge.
        if next.status == existing.status && next.deprovisioned_at == existing.deprovisioned_at {
            return Plan::Unchanged;
        }
        write(Some(existing), next, "individual.deprovisioned")
    }

    /// Plans the status the calendar and the tenant's policy give at `now`: activation or
    /// expiration reached, a suspension grace period over, a retention period passed.
    pub fn plan_schedule(&self, tenant: &Tenant, individual: &Individual, now: Timestamp) -> Plan {
        let mut next = individual.clone();
        let days = |n: u32| jiff::SignedDuration::from_hours(24 * i64::from(n));
        let grace_over = individual
            .deprovisioned_at
            .is_some_and(|d| d.checked_add(days(tenant.policy.suspend_grace_days)).is_ok_and(|end| end <= now));
        // Retention counts from when idbridge took access away, not from the expiry date:
        // a date reported in the past must still leave the whole period of history.
        let expired_since = individual.access_ended_at.or(individual.deprovisioned_at).unwrap_or(individual.updated_at);
        let retention_over = expired_since.checked_add(days(tenant.policy.retention_days)).is_ok_and(|end| end <= now);
        let action = match individual.status {
            IndividualStatus::Suspended if grace_over => {
                next.status = IndividualStatus::Expired;
                "individual.grace_ended"
            }
            IndividualStatus::Expired if retention_over => {
                // Personal data goes; the audit trail and the id stay.
                next.status = IndividualStatus::Deleted;
                next.login = format!("deleted-{}", individual.id);
                next.email = None;
                next.given_name = None;
                next.family_name = None;
                next.display_name = None;
                next.scopes = Default::default();
                next.provenance = Default::default();
                next.links.clear();
                "individual.purged"
            }
            _ => {
                next.status = individual.scheduled_status(now);
                "individual.scheduled"
            }
        };
        if next.status == individual.status {
            return Plan::Unchanged;
        }
        write(Some(individual.clone()), next, action)
    }

    /// Applies a change set unless the mass-deprovision guard holds it; decisions the
    /// tenant does not allow are recorded in the audit trail either way.
    pub async fn submit(&self, tenant: &Tenant, set: ChangeSet, ctx: &AuditContext) -> DomainResult<Submitted> {
        for held in &set.held {
            let record = ctx.record(
                Some(tenant.id),
                "individual",
                held.subject.clone(),
                "mapping.held",
                None,
                Some(json!({ "reason": held.reason, "origin": set.origin })),
            );
            self.store.append_audit(&record).await?;
        }
        let takes_access = set.writes.iter().filter(|w| w.takes_access()).count() as u64;
        let window = jiff::SignedDuration::from_mins(i64::from(tenant.policy.mass_deprovision_window_minutes));
        if takes_access > 0 {
            let holding = self.store.count_individuals_holding_access(tenant.id).await?;
            let mut summary = set.summary(holding);
            if !window.is_zero() {
                summary.taken_recently = self.store.access_taken_since(tenant.id, self.now() - window).await?;
            }
            if summary.exceeds(&tenant.policy) {
                // A big request's own reconciliation and the intent worker (which takes it
                // when that is slow, or after a crash) may both plan it: the same
                // decisions wait for an operator once, not twice.
                if let Some(waiting) = self.held_already(tenant, &set.writes).await? {
                    return Ok(Submitted::AwaitingApproval { id: waiting.id, summary: waiting.summary });
                }
                // Held only because of what the window took before (one deletion of an IdP
                // that sends one request per user): it joins the SCIM set already waiting,
                // so that the operator decides the mass deprovision once, not per person.
                let alone = ChangeSummary { taken_recently: 0, ..summary.clone() };
                if !alone.exceeds(&tenant.policy)
                    && ctx.actor.kind == crate::audit::ActorKind::ScimToken
                    && let Some(open) = self.open_scim_set(tenant).await?
                {
                    let audit = ctx.record(
                        Some(tenant.id),
                        "change_set",
                        open.to_string(),
                        "change_set.extended",
                        None,
                        Some(json!({ "origin": set.origin, "takes_access": takes_access })),
                    );
                    if let Some(summary) = self.store.extend_change_set(tenant.id, open, &set.writes, &audit).await? {
                        return Ok(Submitted::AwaitingApproval { id: open, summary });
                    }
                }
                let id = Uuid::new_v4();
                let held = HeldChangeSet {
                    id,
                    tenant_id: tenant.id,
                    origin: set.origin.clone(),
                    status: ChangeSetStatus::Pending,
                    summary: summary.clone(),
                    writes: set.writes,
                    created_at: self.now(),
                    created_by: format!("{}:{}", ctx.actor.kind.as_str(), ctx.actor.id),
                    decided_at: None,
                    decided_by: None,
                    result: None,
                };
                let audit = ctx.record(
                    Some(tenant.id),
                    "change_set",
                    id.to_string(),
                    "change_set.held",
                    None,
                    Some(json!({ "origin": held.origin, "summary": summary })),
                );
                self.store.put_change_set(&held, &audit).await?;
                return Ok(Submitted::AwaitingApproval { id, summary });
            }
        }
        // Recorded before the writes: a failure here applies nothing, and writes that then
        // fail or are skipped only make the window count more — the safe direction.
        if takes_access > 0 && !window.is_zero() {
            self.store.record_access_taken(tenant.id, self.now(), takes_access).await?;
        }
        let report = self.commit(tenant, set.writes, ctx).await?;
        Ok(Submitted::Applied(report))
    }

    /// The newest pending change set a SCIM client's requests were held in, if any.
    async fn open_scim_set(&self, tenant: &Tenant) -> DomainResult<Option<Uuid>> {
        let scim = format!("{}:", crate::audit::ActorKind::ScimToken.as_str());
        Ok(self
            .store
            .list_change_sets(Some(tenant.id), Some(ChangeSetStatus::Pending))
            .await?
            .into_iter()
            .find(|h| h.created_by.starts_with(&scim))
            .map(|h| h.id))
    }

    /// The pending change set that holds exactly these decisions (the same individuals
    /// going to the same status), if there is one.
    async fn held_already(&self, tenant: &Tenant, writes: &[PlannedWrite]) -> DomainResult<Option<HeldChangeSet>> {
        let decisions = |writes: &[PlannedWrite]| {
            let mut d: Vec<_> = writes.iter().map(|w| (w.after.id, w.after.status)).collect();
            d.sort_unstable_by_key(|(id, _)| *id);
            d
        };
        let wanted = decisions(writes);
        let takes = writes.iter().filter(|w| w.takes_access()).count() as u64;
        // Only sets that take access from as many people are read with their writes.
        for header in self.store.list_change_sets(Some(tenant.id), Some(ChangeSetStatus::Pending)).await? {
            if header.summary.takes_access != takes {
                continue;
            }
            if let Some(held) = self.store.get_change_set(tenant.id, header.id).await?
                && decisions(&held.writes) == wanted
            {
                return Ok(Some(held));
            }
        }
        Ok(None)
    }

    /// Writes planned changes in batches. A write whose individual changed since it was
    /// planned is skipped (the version check: with several instances exactly one applies
    /// each transition). A batch the store refuses as a whole is retried write by write,
    /// so one bad write does not hold back the others.
    pub async fn commit(
        &self,
        tenant: &Tenant,
        writes: Vec<PlannedWrite>,
        ctx: &AuditContext,
    ) -> DomainResult<CommitReport> {
        let mut report = CommitReport::default();
        for chunk in writes.chunks(BATCH) {
            let batch: Vec<IndividualWrite> = chunk.iter().map(|w| self.individual_write(tenant, w, ctx)).collect();
            match self.store.write_individuals(&batch).await {
                Ok(results) => {
                    for (write, ok) in batch.iter().zip(results) {
                        if ok {
                            report.written.push((write.individual.id, kind_of(write)));
                        } else {
                            report.skipped.push(write.individual.id);
                        }
                    }
                }
                Err(e @ (DomainError::Storage(_) | DomainError::Internal(_) | DomainError::Unavailable(_))) => {
                    return Err(e);
                }
                Err(_) => {
                    for write in &batch {
                        match self.store.write_individual(write).await {
                            Ok(stored) => report.written.push((stored.id, kind_of(write))),
                            Err(DomainError::VersionConflict { .. }) => report.skipped.push(write.individual.id),
                            Err(
                                e @ (DomainError::Storage(_) | DomainError::Internal(_) | DomainError::Unavailable(_)),
                            ) => return Err(e),
                            Err(e) => report.failed.push((write.individual.id, e.to_string())),
                        }
                    }
                }
            }
        }
        Ok(report)
    }

    /// Approves a held change set. Its own writes were planned when it was held, and the
    /// sources may have changed while it waited, so they are never applied as they are:
    /// `replan` says what its people need *now*, and that is applied (without the guard:
    /// the operator approved taking access from them). The decision is recorded after the
    /// writes, with their result, so an approval the database interrupts leaves the set
    /// pending and can simply be repeated: the re-plan then leaves out what was applied.
    /// Of two approvals at once, both writes are version-checked (each individual is
    /// written once) and the second decision fails.
    pub async fn approve(
        &self,
        tenant: &Tenant,
        id: Uuid,
        replan: &dyn Replan,
        ctx: &AuditContext,
    ) -> DomainResult<CommitReport> {
        let header = self.still_pending(tenant, id).await?;
        let held = header.summary.creates + header.summary.updates + header.summary.takes_access;
        let set = if replan.needs_held_writes() {
            self.pending(tenant, id).await?
        } else {
            HeldChangeSet::from_header(header, Vec::new())
        };
        let writes = replan.replan(tenant, &set).await?;
        let still = writes.len();
        let report = self.commit(tenant, writes, ctx).await?;
        let result = format!(
            "re-planned against the sources now: {} of {} held write(s) still wanted; {} applied, {} skipped \
             (changed since), {} failed",
            still,
            held,
            report.written.len(),
            report.skipped.len(),
            report.failed.len()
        );
        let audit = ctx.record(
            Some(tenant.id),
            "change_set",
            id.to_string(),
            "change_set.approved",
            None,
            Some(json!({ "result": result })),
        );
        self.decide(tenant, id, ChangeSetStatus::Approved, result, ctx, &audit).await.map_err(|e| match e {
            DomainError::Rejected(_) => DomainError::Rejected(format!(
                "change set {id} was decided by somebody else while this approval applied it ({} written)",
                report.written.len()
            )),
            e => e,
        })?;
        Ok(report)
    }

    async fn decide(
        &self,
        tenant: &Tenant,
        id: Uuid,
        status: ChangeSetStatus,
        result: String,
        ctx: &AuditContext,
        audit: &AuditRecord,
    ) -> DomainResult<()> {
        let decision = ChangeSetDecision {
            status,
            by: format!("{}:{}", ctx.actor.kind.as_str(), ctx.actor.id),
            at: self.now(),
            result,
        };
        self.store.decide_change_set(tenant.id, id, &decision, audit).await
    }

    /// Marks pending change sets superseded: a later complete run of the same source
    /// applied what the source says now, so what they held is stale.
    pub async fn supersede(&self, tenant: &Tenant, origin: &str, by: &str, ctx: &AuditContext) -> DomainResult<u64> {
        let mut n = 0;
        for set in self.store.list_change_sets(Some(tenant.id), Some(ChangeSetStatus::Pending)).await? {
            if set.origin != origin {
                continue;
            }
            let audit = ctx.record(
                Some(tenant.id),
                "change_set",
                set.id.to_string(),
                "change_set.superseded",
                None,
                Some(json!({ "by": by })),
            );
            match self
                .decide(tenant, set.id, ChangeSetStatus::Rejected, format!("{SUPERSEDED} {by}"), ctx, &audit)
                .await
            {
                Ok(()) => n += 1,
                // An operator decided it meanwhile.
                Err(DomainError::Rejected(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Rejects a held change set: nothing in it is applied.
    pub async fn reject(&self, tenant: &Tenant, id: Uuid, ctx: &AuditContext) -> DomainResult<()> {
        self.still_pending(tenant, id).await?;
        let audit = ctx.record(Some(tenant.id), "change_set", id.to_string(), "change_set.rejected", None, None);
        self.decide(tenant, id, ChangeSetStatus::Rejected, "nothing applied".to_owned(), ctx, &audit).await
    }

    /// A pending change set with its writes (to approve it).
    async fn pending(&self, tenant: &Tenant, id: Uuid) -> DomainResult<HeldChangeSet> {
        self.store.get_change_set(tenant.id, id).await?.ok_or_else(|| DomainError::not_found("change set", id))
    }

    /// That a change set exists and waits for a decision — read without its writes, which
    /// for a 100,000-person set are hundreds of megabytes.
    async fn still_pending(&self, tenant: &Tenant, id: Uuid) -> DomainResult<crate::changeset::ChangeSetHeader> {
        let set = self
            .store
            .get_change_set_header(tenant.id, id)
            .await?
            .ok_or_else(|| DomainError::not_found("change set", id))?;
        if let Some(result) = set.result.as_deref().filter(|r| r.starts_with(SUPERSEDED)) {
            return Err(DomainError::Rejected(format!(
                "change set {id} is superseded ({result}); nothing in it can be approved"
            )));
        }
        if set.status != ChangeSetStatus::Pending {
            return Err(DomainError::Rejected(format!("change set {id} is already {}", set.status.as_str())));
        }
        Ok(set)
    }

    /// An operator's or delegated administrator's change: dates (kept across re-maps
    /// until a source or mapping sets one), time zone, and scopes added by hand (a re-map
    /// never removes those).
    pub async fn manual(
        &self,
        tenant: &Tenant,
        individual: &Individual,
        change: &ManualChange,
        ctx: &AuditContext,
    ) -> DomainResult<Outcome> {
        let plan = self.plan_manual(tenant, individual, change)?;
        self.one(tenant, plan, individual.id.to_string(), "manual change", ctx).await
    }

    pub fn plan_manual(&self, _tenant: &Tenant, individual: &Individual, change: &ManualChange) -> DomainResult<Plan> {
        if individual.status == IndividualStatus::Deleted {
            return Err(DomainError::Rejected(format!("individual {} was purged", individual.id)));
        }
        let mut next = individual.clone();
        if let Some(zone) = &change.time_zone {
            crate::schedule::parse_time_zone(zone)?;
            next.time_zone.clone_from(zone);
        }
        let date = |requested: &Option<Option<String>>,
                    current: &Option<LocalInstant>,
                    origin: Option<DateOrigin>,
                    zone: &str|
         -> DomainResult<(Option<LocalInstant>, Option<DateOrigin>)> {
            Ok(match requested {
                Some(Some(text)) => (Some(LocalInstant::parse(text, zone)?), Some(DateOrigin::Manual)),
                Some(None) => (None, None),
                // Same local time, in the (possibly new) zone.
                None => (current.as_ref().map(|d| LocalInstant::new(d.local, zone)).transpose()?, origin),
            })
        };
        (next.activation, next.provenance.activation_from) =
            date(&change.activation, &individual.activation, individual.provenance.activation_from, &next.time_zone)?;
        (next.expiration, next.provenance.expiration_from) =
            date(&change.expiration, &individual.expiration, individual.provenance.expiration_from, &next.time_zone)?;
        next.provenance.manual_scopes.union(&change.add_scopes);
        next.provenance.manual_scopes.remove(&change.remove_scopes);
        next.scopes = next.provenance.mapped_scopes.clone();
        next.scopes.union(&next.provenance.manual_scopes);
        // The calendar decides again unless access was taken by a source or a deny.
        if next.deprovisioned_at.is_none() && next.status != IndividualStatus::Suspended {
            next.status = IndividualStatus::Active;
            next.status = next.scheduled_status(self.now());
        }
        next.validate()?;
        if same_state(individual, &next) {
            return Ok(Plan::Unchanged);
        }
        Ok(write(Some(individual.clone()), next, "individual.manual_change"))
    }

    /// Links an individual another source provisioned to one more immutable identity
    /// (its first SSO login: issuer + subject).
    pub async fn link(
        &self,
        tenant: &Tenant,
        individual: &Individual,
        link: SourceLink,
        ctx: &AuditContext,
    ) -> DomainResult<Outcome> {
        if individual.links.contains(&link) {
            return Ok(Outcome::Unchanged);
        }
        let mut next = individual.clone();
        next.links.push(link);
        next.links.sort_by(|a, b| {
            (a.source.as_str(), &a.connection, &a.external_id).cmp(&(b.source.as_str(), &b.connection, &b.external_id))
        });
        let plan = write(Some(individual.clone()), next, "individual.linked");
        self.one(tenant, plan, individual.id.to_string(), "first sign-in", ctx).await
    }

    /// Creates an individual by hand (an operator or a delegated administrator). It has
    /// no source, so no re-map touches its role, profile or scopes.
    pub async fn create_manual(
        &self,
        tenant: &Tenant,
        new: NewIndividual,
        ctx: &AuditContext,
    ) -> DomainResult<Individual> {
        let now = self.now();
        let time_zone = new.time_zone.clone().unwrap_or_else(|| tenant.default_time_zone.clone());
        crate::schedule::parse_time_zone(&time_zone)?;
        let date = |text: &Option<String>| -> DomainResult<(Option<LocalInstant>, Option<DateOrigin>)> {
            Ok(match text {
                Some(t) => (Some(LocalInstant::parse(t, &time_zone)?), Some(DateOrigin::Manual)),
                None => (None, None),
            })
        };
        let (activation, activation_from) = date(&new.activation)?;
        let (expiration, expiration_from) = date(&new.expiration)?;
        let id = IndividualId(Uuid::new_v4());
        let mut individual = Individual {
            id,
            tenant_id: tenant.id,
            login: new.login.trim().to_owned(),
            email: new.email,
            given_name: new.given_name,
            family_name: new.family_name,
            display_name: new.display_name,
            role: Some(new.role),
            access_profile: new.access_profile,
            scopes: new.scopes.clone(),
            time_zone,
            activation,
            expiration,
            status: IndividualStatus::Active,
            links: vec![SourceLink {
                source: SourceKind::Manual,
                connection: "manual".into(),
                external_id: id.to_string(),
            }],
            deprovisioned_at: None,
            access_ended_at: None,
            provenance: crate::individual::Provenance {
                manual_scopes: new.scopes,
                activation_from,
                expiration_from,
                ..Default::default()
            },
            version: 0,
            created_at: now,
            updated_at: now,
        };
        individual.status = individual.scheduled_status(now);
        individual.validate()?;
        if individual.status == IndividualStatus::Expired {
            return Err(DomainError::invalid("expiration", "is already past"));
        }
        match self
            .one(tenant, write(None, individual.clone(), "individual.created"), id.to_string(), "created by hand", ctx)
            .await?
        {
            Outcome::Written { .. } => {}
            Outcome::Held(reason) => return Err(DomainError::Rejected(reason)),
            other => return Err(DomainError::Rejected(format!("not created: {other:?}"))),
        }
        self.store
            .get_individual(tenant.id, id)
            .await?
            .ok_or_else(|| DomainError::not_found("individual", id.to_string()))
    }

    /// Sets the role and access profile of an individual created by hand. Individuals
    /// from a directory get theirs from the mapping, so they are refused here.
    pub async fn assign_manual(
        &self,
        tenant: &Tenant,
        individual: &Individual,
        role: Option<String>,
        access_profile: Option<Option<String>>,
        ctx: &AuditContext,
    ) -> DomainResult<Outcome> {
        if role.is_none() && access_profile.is_none() {
            return Ok(Outcome::Unchanged);
        }
        if individual.links.iter().any(|l| l.source != SourceKind::Manual) {
            return Err(DomainError::Rejected(format!(
                "individual {} comes from a directory; its role and access profile come from the mapping",
                individual.id
            )));
        }
        let mut next = individual.clone();
        if let Some(role) = role {
            next.role = Some(role);
        }
        if let Some(profile) = access_profile {
            next.access_profile = profile;
        }
        let plan = if same_state(individual, &next) {
            Plan::Unchanged
        } else {
            write(Some(individual.clone()), next, "individual.manual_change")
        };
        self.one(tenant, plan, individual.id.to_string(), "manual change", ctx).await
    }

    // --- one person at a time ---------------------------------------------------------

    /// Plans and applies a decision for one person present at its source.
    pub async fn apply(
        &self,
        tenant: &Tenant,
        person: &SourcePerson,
        existing: Option<Individual>,
        decision: &Decision,
        ctx: &AuditContext,
    ) -> DomainResult<Outcome> {
        let known = self.known().await?;
        let plan = self.plan_present(tenant, person, existing, decision, &known)?;
        let subject = person.link.external_id.clone();
        self.one(tenant, plan, subject, "reconciliation", ctx).await
    }

    /// One person gone from its source: deprovision by the tenant's policy.
    pub async fn removed(&self, tenant: &Tenant, link: &SourceLink, ctx: &AuditContext) -> DomainResult<Outcome> {
        let existing =
            self.store.find_individual_by_link(tenant.id, link.source, &link.connection, &link.external_id).await?;
        let plan = self.plan_removed(tenant, existing);
        self.one(tenant, plan, link.external_id.clone(), "removal at the source", ctx).await
    }

    /// The scheduler's transitions are not guarded: they are what the calendar and the
    /// policy already said.
    pub async fn apply_schedule(
        &self,
        tenant: &Tenant,
        individual: &Individual,
        now: Timestamp,
        ctx: &AuditContext,
    ) -> DomainResult<Outcome> {
        match self.plan_schedule(tenant, individual, now) {
            Plan::Write(w) => {
                let report = self.commit(tenant, vec![*w], ctx).await?;
                Ok(single(report))
            }
            _ => Ok(Outcome::Unchanged),
        }
    }

    async fn one(
        &self,
        tenant: &Tenant,
        plan: Plan,
        subject: String,
        origin: &str,
        ctx: &AuditContext,
    ) -> DomainResult<Outcome> {
        let mut set = ChangeSet::new(origin);
        match plan {
            Plan::Unchanged => return Ok(Outcome::Unchanged),
            Plan::NoAccess => return Ok(Outcome::NoAccess),
            Plan::Held(reason) => {
                set.held.push(HeldDecision { source_id: subject.clone(), subject, reason: reason.clone() });
                self.submit(tenant, set, ctx).await?;
                return Ok(Outcome::Held(reason));
            }
            Plan::Write(w) => set.writes.push(*w),
        }
        Ok(match self.submit(tenant, set, ctx).await? {
            Submitted::Applied(report) => single(report),
            Submitted::AwaitingApproval { id, .. } => Outcome::AwaitingApproval(id),
        })
    }

    fn individual_write(&self, tenant: &Tenant, planned: &PlannedWrite, ctx: &AuditContext) -> IndividualWrite {
        let now = self.now();
        let mut next = planned.after.clone();
        next.updated_at = now;
        let before = planned.before.as_ref();
        // When access was taken is recorded here, once for every kind of write: kept while
        // the individual stays without access, cleared when access comes back.
        next.access_ended_at = match before {
            _ if next.status.holds_access() => None,
            Some(b) if !b.status.holds_access() => b.access_ended_at.or(Some(now)),
            _ => Some(now),
        };
        let kind = planned.kind();
        let permission_diff = before.map(|b| crate::permissions::PermissionDiff::between(b, &next).to_value());
        let snapshot = serde_json::to_value(&next).unwrap_or_default();
        // The audit trail records what changed (before and after of those fields only) —
        // a re-map of 100,000 individuals must not write 100,000 full copies twice.
        let (audit_before, audit_after) = match before {
            Some(b) => {
                let (old, new) = changed_fields(b, &next);
                (Some(old), Some(new))
            }
            None => (None, Some(snapshot.clone())),
        };
        let mut audit = ctx.record(
            Some(tenant.id),
            "individual",
            next.id.to_string(),
            "individual.written",
            audit_before,
            audit_after,
        );
        audit.action.clone_from(&planned.action);
        IndividualWrite {
            expected_version: before.map(|b| b.version),
            links_changed: before.is_none_or(|b| b.links != next.links),
            status_only: before.is_some_and(|b| {
                let mut same = next.clone();
                same.status = b.status;
                same.deprovisioned_at = b.deprovisioned_at;
                same.access_ended_at = b.access_ended_at;
                same.updated_at = b.updated_at;
                same.version = b.version;
                same == *b
            }),
            audit,
            event: Some(ChangeEvent {
                id: Uuid::new_v4(),
                tenant_id: tenant.id,
                individual_id: next.id,
                kind,
                individual: snapshot,
                permission_diff,
                at: now,
            }),
            individual: next,
        }
    }
}

/// The fields that differ, as two JSON objects: their values before and after.
/// The audit trail's before and after: the fields of the individual's state that differ.
fn changed_fields(before: &Individual, after: &Individual) -> (serde_json::Value, serde_json::Value) {
    let as_map = |i: &Individual| match serde_json::to_value(i.state()) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (mut old, mut new) = (as_map(before), as_map(after));
    old.retain(|field, value| new.get(field) != Some(value));
    new.retain(|field, _| old.contains_key(field));
    (serde_json::Value::Object(old), serde_json::Value::Object(new))
}

fn kind_of(write: &IndividualWrite) -> ChangeKind {
    write.event.as_ref().map_or(ChangeKind::IndividualUpdated, |e| e.kind)
}

fn single(report: CommitReport) -> Outcome {
    if let Some((individual, kind)) = report.written.first() {
        return Outcome::Written { individual: *individual, kind: *kind };
    }
    if let Some((_, error)) = report.failed.first() {
        return Outcome::Held(error.clone());
    }
    Outcome::Unchanged
}

fn write(before: Option<Individual>, after: Individual, action: &str) -> Plan {
    Plan::Write(Box::new(PlannedWrite { before, after, action: action.to_owned() }))
}

pub fn mapping_input(tenant: &Tenant, person: &SourcePerson, existing: Option<&Individual>) -> MappingInput {
    MappingInput {
        tenant: tenant.slug.to_string(),
        user: person.facts.clone(),
        groups: person.groups.clone(),
        current: existing.map(|i| CurrentAssignment {
            role: i.role.clone(),
            access_profile: i.access_profile.clone(),
            scopes: i.scopes.clone(),
        }),
    }
}

fn same_state(a: &Individual, b: &Individual) -> bool {
    a.state() == b.state()
}

/// A date from the source, else from the mapping, else the one set by hand before.
fn pick_date(
    time_zone: &str,
    source: Option<&str>,
    mapping: Option<&str>,
    existing: Option<(&Option<LocalInstant>, Option<DateOrigin>)>,
) -> DomainResult<(Option<LocalInstant>, Option<DateOrigin>)> {
    if let Some(text) = source {
        return Ok((Some(LocalInstant::parse(text, time_zone)?), Some(DateOrigin::Source)));
    }
    if let Some(text) = mapping {
        return Ok((Some(LocalInstant::parse(text, time_zone)?), Some(DateOrigin::Mapping)));
    }
    match existing {
        Some((Some(date), Some(DateOrigin::Manual))) => {
            // A hand-set date keeps its local time; a new zone moves its instant.
            Ok((Some(LocalInstant::new(date.local, time_zone)?), Some(DateOrigin::Manual)))
        }
        _ => Ok((None, None)),
    }
}

/// The individual the source and the decision call for.
fn build(
    tenant: &Tenant,
    existing: Option<&Individual>,
    person: &SourcePerson,
    decision: &Decision,
    now: Timestamp,
) -> DomainResult<Individual> {
    // The source's zone, else the one the individual has (possibly set by hand), else the
    // tenant's default.
    let time_zone = person
        .time_zone
        .clone()
        .or_else(|| existing.map(|e| e.time_zone.clone()))
        .unwrap_or_else(|| tenant.default_time_zone.clone());
    let (activation, activation_from) = pick_date(
        &time_zone,
        person.activation.as_deref(),
        decision.activation.as_deref(),
        existing.map(|e| (&e.activation, e.provenance.activation_from)),
    )?;
    let (expiration, expiration_from) = pick_date(
        &time_zone,
        person.expiration.as_deref(),
        decision.expiration.as_deref(),
        existing.map(|e| (&e.expiration, e.provenance.expiration_from)),
    )?;
    let mut links = existing.map(|e| e.links.clone()).unwrap_or_default();
    for link in std::iter::once(&person.link).chain(&person.also) {
        if !links.contains(link) {
            links.push(link.clone());
        }
    }
    // The order the store reads them back in, so an unchanged individual compares equal.
    links.sort_by(|a, b| {
        (a.source.as_str(), &a.connection, &a.external_id).cmp(&(b.source.as_str(), &b.connection, &b.external_id))
    });
    let manual_scopes = existing.map(|e| e.provenance.manual_scopes.clone()).unwrap_or_default();
    let mut scopes = decision.scopes.clone();
    scopes.union(&manual_scopes);
    let mut grants: Vec<_> = decision.reasons.iter().filter(|r| r.grants != "deny").cloned().collect();
    grants.sort();
    grants.dedup();
    let mut individual = Individual {
        id: existing.map_or_else(|| IndividualId(Uuid::new_v4()), |e| e.id),
        tenant_id: tenant.id,
        login: person.facts.login.clone(),
        email: person.email.clone(),
        given_name: person.given_name.clone(),
        family_name: person.family_name.clone(),
        display_name: person.display_name.clone(),
        role: decision.role.clone(),
        access_profile: decision.access_profile.clone(),
        scopes,
        time_zone,
        activation,
        expiration,
        status: IndividualStatus::Active,
        links,
        deprovisioned_at: None,
        access_ended_at: None,
        provenance: crate::individual::Provenance {
            mapping: grants,
            mapped_scopes: decision.scopes.clone(),
            manual_scopes,
            activation_from,
            expiration_from,
        },
        version: existing.map_or(0, |e| e.version),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    };
    individual.status = if !person.active {
        IndividualStatus::Suspended
    } else if !decision.has_access() {
        // Access ends by the tenant's deprovisioning policy; the assignment and its
        // provenance are kept for the audit trail and for explain.
        if let Some(e) = existing {
            individual.role.clone_from(&e.role);
            individual.access_profile.clone_from(&e.access_profile);
            individual.scopes = e.scopes.clone();
            individual.provenance.mapping = e.provenance.mapping.clone();
            individual.provenance.mapped_scopes = e.provenance.mapped_scopes.clone();
        }
        individual.deprovisioned_at = existing.and_then(|e| e.deprovisioned_at).or(Some(now));
        match tenant.policy.deprovision_action {
            DeprovisionAction::Expire => IndividualStatus::Expired,
            DeprovisionAction::Suspend => IndividualStatus::Suspended,
        }
    } else {
        individual.scheduled_status(now)
    };
    individual.validate()?;
    Ok(individual)
}
