//! The reconciliation service: the one writer of individuals. Given what a source says
//! about a person and the tenant's mapping decision, it creates, updates, suspends,
//! expires or reactivates the individual — in one transaction with its audit record and
//! change event (the store's `write_individual`).
//!
//! People are linked by immutable source identities (`SourceLink`), never by email.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::json;
use uuid::Uuid;

use crate::DomainResult;
use crate::audit::{AuditContext, ChangeEvent, ChangeKind};
use crate::individual::{Individual, IndividualId, IndividualStatus, SourceLink};
use crate::mapping::{self, CurrentAssignment, Decision, ExternalGroup, MappingInput, UserFacts};
use crate::ports::{IndividualWrite, Store};
use crate::schedule::LocalInstant;
use crate::tenant::{DeprovisionAction, Tenant};

/// What one source currently says about one person.
#[derive(Debug, Clone)]
pub struct SourcePerson {
    pub link: SourceLink,
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

/// What reconciliation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    /// The person has no access and no individual: nothing to do.
    NoAccess,
    Written {
        individual: IndividualId,
        kind: ChangeKind,
    },
    /// The decision asked for something the tenant does not allow; nothing changed.
    Held(String),
}

#[derive(Clone)]
pub struct Reconciler {
    store: Arc<dyn Store>,
}

impl Reconciler {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The mapping input for a person, and the individual already linked to it. The
    /// caller runs the pipeline on it (plugins block: off the async runtime) and passes
    /// the decision to [`Reconciler::apply`].
    pub async fn prepare(
        &self,
        tenant: &Tenant,
        person: &SourcePerson,
    ) -> DomainResult<(MappingInput, Option<Individual>)> {
        let existing = self
            .store
            .find_individual_by_link(tenant.id, person.link.source, &person.link.connection, &person.link.external_id)
            .await?;
        let input = MappingInput {
            tenant: tenant.slug.to_string(),
            user: person.facts.clone(),
            groups: person.groups.clone(),
            current: existing.as_ref().map(|i| CurrentAssignment {
                role: i.role.clone(),
                access_profile: i.access_profile.clone(),
                scopes: i.scopes.clone(),
            }),
        };
        Ok((input, existing))
    }

    /// Applies a decision for a person present at its source.
    pub async fn apply(
        &self,
        tenant: &Tenant,
        person: &SourcePerson,
        existing: Option<Individual>,
        decision: &Decision,
        ctx: &AuditContext,
    ) -> DomainResult<Outcome> {
        let roles: BTreeSet<String> = self.store.list_roles().await?.into_iter().map(|r| r.name).collect();
        let profiles: BTreeSet<String> = self.store.list_access_profiles().await?.into_iter().map(|p| p.name).collect();
        if let Some(reason) = mapping::check_against_tenant(decision, tenant, &roles, &profiles) {
            // Nothing new is granted and the individual stays as it was; the reason is
            // recorded for the operator.
            let subject = existing.as_ref().map_or_else(|| person.link.external_id.clone(), |i| i.id.to_string());
            let record = ctx.record(
                Some(tenant.id),
                "individual",
                subject,
                "mapping.held",
                None,
                Some(json!({ "reason": reason })),
            );
            self.store.append_audit(&record).await?;
            return Ok(Outcome::Held(reason));
        }
        let Some(existing) = existing else {
            if !decision.has_access() {
                return Ok(Outcome::NoAccess);
            }
            let individual = build(tenant, None, person, decision)?;
            return self.write(tenant, None, individual, ctx, "individual.created").await;
        };
        let next = build(tenant, Some(&existing), person, decision)?;
        if same_state(&existing, &next) {
            return Ok(Outcome::Unchanged);
        }
        self.write(tenant, Some(&existing), next, ctx, "individual.reconciled").await
    }

    /// Moves an individual to the status its calendar gives at `now` (activation or
    /// expiration reached). Several schedulers on one database may race: the version
    /// check lets exactly one win; the others get `VersionConflict` and move on.
    pub async fn apply_schedule(
        &self,
        tenant: &Tenant,
        individual: &Individual,
        now: Timestamp,
        ctx: &AuditContext,
    ) -> DomainResult<Outcome> {
        let mut next = individual.clone();
        let days = |n: u32| jiff::SignedDuration::from_hours(24 * i64::from(n));
        let grace_over = individual
            .deprovisioned_at
            .is_some_and(|d| d.checked_add(days(tenant.policy.suspend_grace_days)).is_ok_and(|end| end <= now));
        let expired_since = individual
            .deprovisioned_at
            .or(individual.expiration.as_ref().map(|e| e.at))
            .unwrap_or(individual.updated_at);
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
                next.links.clear();
                "individual.purged"
            }
            _ => {
                next.status = individual.scheduled_status(now);
                "individual.scheduled"
            }
        };
        if next.status == individual.status {
            return Ok(Outcome::Unchanged);
        }
        self.write(tenant, Some(individual), next, ctx, action).await
    }

    /// The person is gone from its source: deprovision by the tenant's policy.
    pub async fn removed(&self, tenant: &Tenant, link: &SourceLink, ctx: &AuditContext) -> DomainResult<Outcome> {
        let Some(existing) =
            self.store.find_individual_by_link(tenant.id, link.source, &link.connection, &link.external_id).await?
        else {
            return Ok(Outcome::NoAccess);
        };
        let mut next = existing.clone();
        next.deprovisioned_at = existing.deprovisioned_at.or(Some(Timestamp::now()));
        next.status = match tenant.policy.deprovision_action {
            DeprovisionAction::Expire => IndividualStatus::Expired,
            DeprovisionAction::Suspend => IndividualStatus::Suspended,
        };
        if next.status == existing.status {
            return Ok(Outcome::Unchanged);
        }
        self.write(tenant, Some(&existing), next, ctx, "individual.deprovisioned").await
    }

    async fn write(
        &self,
        tenant: &Tenant,
        before: Option<&Individual>,
        mut next: Individual,
        ctx: &AuditContext,
        action: &'static str,
    ) -> DomainResult<Outcome> {
        let now = Timestamp::now();
        next.updated_at = now;
        let kind = match (before.map(|b| b.status), next.status) {
            (None, _) => ChangeKind::IndividualCreated,
            (Some(a), b) if a == b => ChangeKind::IndividualUpdated,
            (_, IndividualStatus::Active) => ChangeKind::IndividualActivated,
            (_, IndividualStatus::Suspended) => ChangeKind::IndividualSuspended,
            (_, IndividualStatus::Expired) => ChangeKind::IndividualExpired,
            (_, IndividualStatus::Deleted) => ChangeKind::IndividualDeleted,
            (_, IndividualStatus::Pending) => ChangeKind::IndividualUpdated,
        };
        let permission_diff = before.map(|b| {
            json!({
                "role": [b.role, next.role],
                "access_profile": [b.access_profile, next.access_profile],
                "scopes": [b.scopes, next.scopes],
                "status": [b.status, next.status],
            })
        });
        let snapshot = serde_json::to_value(&next).unwrap_or_default();
        let write = IndividualWrite {
            expected_version: before.map(|b| b.version),
            audit: ctx.record(
                Some(tenant.id),
                "individual",
                next.id.to_string(),
                action,
                before.map(|b| serde_json::to_value(b).unwrap_or_default()),
                Some(snapshot.clone()),
            ),
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
        };
        let stored = self.store.write_individual(&write).await?;
        Ok(Outcome::Written { individual: stored.id, kind })
    }
}

fn same_state(a: &Individual, b: &Individual) -> bool {
    a.login == b.login
        && a.email == b.email
        && a.given_name == b.given_name
        && a.family_name == b.family_name
        && a.display_name == b.display_name
        && a.role == b.role
        && a.access_profile == b.access_profile
        && a.scopes == b.scopes
        && a.time_zone == b.time_zone
        && a.activation == b.activation
        && a.expiration == b.expiration
        && a.status == b.status
        && a.links == b.links
}

/// The individual the source and the decision call for.
fn build(
    tenant: &Tenant,
    existing: Option<&Individual>,
    person: &SourcePerson,
    decision: &Decision,
) -> DomainResult<Individual> {
    let now = Timestamp::now();
    let time_zone = person.time_zone.clone().unwrap_or_else(|| tenant.default_time_zone.clone());
    let local = |text: &Option<String>| text.as_deref().map(|t| LocalInstant::parse(t, &time_zone)).transpose();
    let activation = local(&person.activation)?.or(local(&decision.activation)?);
    let expiration = local(&person.expiration)?.or(local(&decision.expiration)?);
    let mut links = existing.map(|e| e.links.clone()).unwrap_or_default();
    if !links.contains(&person.link) {
        links.push(person.link.clone());
        links.sort();
    }
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
        scopes: decision.scopes.clone(),
        time_zone,
        activation,
        expiration,
        status: IndividualStatus::Active,
        links,
        deprovisioned_at: None,
        version: existing.map_or(0, |e| e.version),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    };
    individual.status = if !person.active {
        IndividualStatus::Suspended
    } else if !decision.has_access() {
        // Access ends by the tenant's deprovisioning policy; the assignment is kept for
        // the audit trail.
        if let Some(e) = existing {
            individual.role.clone_from(&e.role);
            individual.access_profile.clone_from(&e.access_profile);
            individual.scopes = e.scopes.clone();
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
