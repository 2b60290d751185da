//! Changes made one individual at a time: by an operator or delegated administrator,
//! the identity added at first sign-in, people created by hand, and the convenience
//! wrappers that plan and submit one person.

use uuid::Uuid;

use crate::audit::AuditContext;
use crate::changeset::{ChangeSet, HeldDecision};
use crate::individual::{DateOrigin, Individual, IndividualId, IndividualStatus, SourceKind, SourceLink};
use crate::mapping::Decision;
use crate::schedule::LocalInstant;
use crate::tenant::Tenant;
use crate::{DomainError, DomainResult};

use super::plan::*;
use super::*;

impl Reconciler {
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
            language: new.language,
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

    pub(super) async fn one(
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
}

pub(super) fn single(report: CommitReport) -> Outcome {
    if let Some((individual, kind)) = report.written.first() {
        return Outcome::Written { individual: *individual, kind: *kind };
    }
    if let Some((_, error)) = report.failed.first() {
        return Outcome::Held(error.clone());
    }
    Outcome::Unchanged
}
