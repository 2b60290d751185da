//! Delegated administration: an individual whose role gives `modify` on
//! `customer_individuals` manages the other individuals of its own organisation with its
//! own access token — never handing out more than it holds (role within its role, access
//! profile flags within its flags, scopes within its scopes, only what the tenant allows).
//!
//! The Portal API (`/portal/v1/individuals`) is the adapter; every rule is here. Lookups
//! are scoped by the caller's tenant, so another organisation's individual is "not found",
//! never "forbidden".

use std::collections::{BTreeMap, BTreeSet};

use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::catalog::Catalog;
use idbridge_core::individual::{Individual, IndividualQuery};
use idbridge_core::reconcile::{ManualChange, NewIndividual};
use idbridge_core::role::{AccessLevel, AccessProfile, Role};
use idbridge_core::scopes::Scopes;
use idbridge_core::tenant::Tenant;
use idbridge_core::{DomainError, DomainResult};

use crate::operator::Operator;
use crate::reconciliation::SourceReconciliation;

/// A delegated administrator's change to another individual: the assignment and the
/// dates and scopes an operator could change by hand.
#[derive(Debug, Clone, Default)]
pub struct DelegatedChange {
    pub role: Option<String>,
    /// `Some(None)` clears the access profile; `None` keeps it.
    pub access_profile: Option<Option<String>>,
    pub manual: ManualChange,
}

/// What a delegated administrator may hand out: never more than it holds.
pub struct DelegatedAdmin<'a> {
    reconciliation: &'a SourceReconciliation,
    tenant: Tenant,
    caller: Individual,
    catalog: Catalog,
    own_role: Role,
    own_flags: BTreeSet<String>,
    roles: BTreeMap<String, Role>,
    profiles: BTreeMap<String, AccessProfile>,
    ctx: AuditContext,
}

fn forbidden(message: impl Into<String>) -> DomainError {
    DomainError::Forbidden(message.into())
}

impl<'a> DelegatedAdmin<'a> {
    /// The caller's limits, or why it is no delegated administrator.
    pub async fn of(
        reconciliation: &'a SourceReconciliation,
        tenant: Tenant,
        caller: Individual,
    ) -> DomainResult<Self> {
        let operator = &reconciliation.mapping.operator;
        let catalog = operator.catalog().await?;
        let roles: BTreeMap<_, _> = operator.roles().await?.into_iter().map(|r| (r.name.clone(), r)).collect();
        let profiles: BTreeMap<_, _> =
            operator.access_profiles().await?.into_iter().map(|p| (p.name.clone(), p)).collect();
        let own_role =
            caller.role.as_ref().and_then(|r| roles.get(r)).cloned().ok_or_else(|| forbidden("you have no role"))?;
        if own_role.level("customer_individuals") != AccessLevel::Modify {
            return Err(forbidden("your role does not give modify on customer_individuals"));
        }
        let own_flags =
            caller.access_profile.as_ref().and_then(|p| profiles.get(p)).map(|p| p.flags.clone()).unwrap_or_default();
        let ctx = AuditContext::new(Actor::new(ActorKind::Individual, caller.id.to_string()));
        Ok(Self { reconciliation, tenant, caller, catalog, own_role, own_flags, roles, profiles, ctx })
    }

    /// A page of the organisation's individuals.
    pub async fn list(&self, query: &IndividualQuery) -> DomainResult<Vec<Individual>> {
        self.operator().individuals(&self.tenant.slug, query).await
    }

    /// One individual of the organisation, by id or login.
    pub async fn show(&self, id: &str) -> DomainResult<Individual> {
        self.operator().individual(&self.tenant.slug, id).await
    }

    pub async fn create(&self, new: NewIndividual) -> DomainResult<Individual> {
        let reconciler = &self.reconciliation.reconciler;
        self.check_role(&new.role)?;
        if let Some(p) = &new.access_profile {
            self.check_profile(p)?;
        }
        self.check_scopes(&new.scopes)?;
        reconciler.create_manual(&self.tenant, new, &self.ctx).await
    }

    pub async fn change(&self, id: &str, change: &DelegatedChange) -> DomainResult<Individual> {
        let (operator, reconciler) = (self.operator(), &self.reconciliation.reconciler);
        let target = self.target(id).await?;
        if let Some(role) = &change.role {
            self.check_role(role)?;
        }
        if let Some(Some(p)) = &change.access_profile {
            self.check_profile(p)?;
        }
        self.check_scopes(&change.manual.add_scopes)?;
        reconciler
            .assign_manual(&self.tenant, &target, change.role.clone(), change.access_profile.clone(), &self.ctx)
            .await?;
        let target = operator.individual(&self.tenant.slug, id).await?;
        reconciler.manual(&self.tenant, &target, &change.manual, &self.ctx).await?;
        operator.individual(&self.tenant.slug, id).await
    }

    /// Ends an individual's access now (its expiration becomes this instant).
    pub async fn expire(&self, id: &str) -> DomainResult<Individual> {
        let (operator, reconciler) = (self.operator(), &self.reconciliation.reconciler);
        let target = self.target(id).await?;
        let now = reconciler.now();
        // An activation after now would make the expiration precede it; the access never
        // starts then either.
        let activation = target.activation.as_ref().filter(|a| a.at >= now).map(|_| None);
        let change = ManualChange { activation, expiration: Some(Some(now.to_string())), ..Default::default() };
        reconciler.manual(&self.tenant, &target, &change, &self.ctx).await?;
        operator.individual(&self.tenant.slug, id).await
    }

    fn operator(&self) -> &Operator {
        &self.reconciliation.mapping.operator
    }

    /// The target must be of the caller's tenant (the lookup is scoped by it) and not hold
    /// more than the caller.
    async fn target(&self, id: &str) -> DomainResult<Individual> {
        let target = self.operator().individual(&self.tenant.slug, id).await?;
        if let Some(role) = target.role.as_ref().and_then(|r| self.roles.get(r))
            && !role.is_within(&self.own_role, &self.catalog)
        {
            return Err(forbidden("that individual's role is above yours"));
        }
        Ok(target)
    }

    fn check_role(&self, role: &str) -> DomainResult<()> {
        if !self.tenant.allowed_roles.contains(role) {
            return Err(forbidden(format!("role {role:?} is not allowed for your organisation")));
        }
        let candidate =
            self.roles.get(role).ok_or_else(|| DomainError::invalid("role", format!("no role {role:?}")))?;
        if !candidate.is_within(&self.own_role, &self.catalog) {
            return Err(forbidden(format!("role {role:?} gives more than your own role")));
        }
        Ok(())
    }

    fn check_profile(&self, profile: &str) -> DomainResult<()> {
        if !self.tenant.allowed_access_profiles.contains(profile) {
            return Err(forbidden(format!("access profile {profile:?} is not allowed for your organisation")));
        }
        let candidate = self
            .profiles
            .get(profile)
            .ok_or_else(|| DomainError::invalid("access_profile", format!("no access profile {profile:?}")))?;
        if !candidate.flags.is_subset(&self.own_flags) {
            return Err(forbidden(format!("access profile {profile:?} turns on flags you do not have")));
        }
        Ok(())
    }

    fn check_scopes(&self, wanted: &Scopes) -> DomainResult<()> {
        if wanted.is_within(&self.caller.scopes) {
            Ok(())
        } else {
            Err(forbidden("the scopes include some you do not have"))
        }
    }
}
