//! Delegated administration: an individual whose role gives `modify` on
//! `customer_individuals` manages the other individuals of its own organisation with its
//! own access token — never handing out more than it holds (role within its role, access
//! profile flags within its flags, scopes within its scopes, only what the tenant allows).
//!
//! A **group administrator** is one whose `administration` group right reaches chosen
//! portal groups (seed 003: "all users in the company or a specific group"): it lists,
//! creates, changes and expires only members of those groups, places people only in them,
//! and never takes someone out of its own reach. Without the right, or with it for all
//! groups, the role alone decides and the whole organisation is in reach.
//!
//! The Portal API (`/portal/v1/individuals`) is the adapter; every rule is here. Lookups
//! are scoped by the caller's tenant and reach, so another organisation's individual, or a
//! member of another group, is "not found", never "forbidden".

use std::collections::{BTreeMap, BTreeSet};

use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::catalog::Catalog;
use idbridge_core::individual::{Individual, IndividualQuery};
use idbridge_core::reconcile::{ManualChange, NewIndividual};
use idbridge_core::role::{AccessLevel, AccessProfile, Role};
use idbridge_core::scopes::{GroupReach, Scopes};
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
    catalog: Catalog,
    own_role: Role,
    own_flags: BTreeSet<String>,
    roles: BTreeMap<String, Role>,
    profiles: BTreeMap<String, AccessProfile>,
    /// The groups a group administrator manages; `None`: the whole organisation.
    groups: Option<BTreeSet<String>>,
    /// What the caller may hand out: its own scopes, and for an administrator of the whole
    /// organisation the administration of every group (it holds that by its role).
    own_scopes: Scopes,
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
        let groups = match caller.scopes.administration() {
            Some(GroupReach::Groups(groups)) => Some(groups.clone()),
            Some(GroupReach::All) | None => None,
        };
        let mut own_scopes = caller.scopes.clone();
        if groups.is_none() {
            own_scopes.group_rights.insert(idbridge_core::scopes::ADMINISTRATION.to_owned(), GroupReach::All);
        }
        let ctx = AuditContext::new(Actor::new(ActorKind::Individual, caller.id.to_string()));
        Ok(Self { reconciliation, tenant, catalog, own_role, own_flags, roles, profiles, groups, own_scopes, ctx })
    }

    /// A page of the individuals in reach: a group administrator's query is narrowed to
    /// its groups (a group asked for outside them lists nobody).
    pub async fn list(&self, query: &IndividualQuery) -> DomainResult<Vec<Individual>> {
        let mut query = query.clone();
        if let Some(mine) = &self.groups {
            query.in_groups = Some(match &query.in_groups {
                Some(asked) => asked.intersection(mine).cloned().collect(),
                None => mine.clone(),
            });
        }
        self.operator().individuals(&self.tenant.slug, &query).await
    }

    /// One individual in reach, by id or login.
    pub async fn show(&self, id: &str) -> DomainResult<Individual> {
        self.in_reach(id).await
    }

    pub async fn create(&self, new: NewIndividual) -> DomainResult<Individual> {
        let reconciler = &self.reconciliation.reconciler;
        self.check_role(&new.role)?;
        if let Some(p) = &new.access_profile {
            self.check_profile(p)?;
        }
        self.check_scopes(&new.scopes)?;
        if let Some(mine) = &self.groups
            && new.scopes.groups.is_empty()
        {
            return Err(forbidden(format!(
                "you administer the members of {}: place the new individual in one of them (scopes.groups)",
                list(mine)
            )));
        }
        reconciler.create_manual(&self.tenant, new, &self.ctx).await
    }

    /// Sends an invitation again, or revokes the link out (`revoke`), for someone in reach.
    pub async fn invitation(
        &self,
        accounts: &crate::local_accounts::LocalAccounts,
        id: &str,
        revoke: bool,
    ) -> DomainResult<Option<idbridge_core::local_account::Mail>> {
        let target = self.target(id).await?;
        if revoke {
            accounts.revoke(&self.ctx, &self.tenant, target.id).await?;
            return Ok(None);
        }
        accounts.invite(&self.ctx, &self.tenant, &target).await.map(Some)
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
        self.check_regrouping(&target, &change.manual.add_scopes.groups, &change.manual.remove_scopes.groups)?;
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

    /// The individual, when it is of the caller's tenant (the lookup is scoped by it) and,
    /// for a group administrator, a member of one of its groups — "not found" otherwise,
    /// as another tenant's individual is.
    async fn in_reach(&self, id: &str) -> DomainResult<Individual> {
        let found = self.operator().individual(&self.tenant.slug, id).await?;
        match &self.groups {
            Some(mine) if mine.is_disjoint(&found.scopes.groups) => Err(DomainError::not_found("individual", id)),
            _ => Ok(found),
        }
    }

    /// The target must be in reach and not hold more than the caller.
    async fn target(&self, id: &str) -> DomainResult<Individual> {
        let target = self.in_reach(id).await?;
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

    /// Rights within the caller's own, group rights the catalog knows, and groups a group
    /// administrator manages.
    fn check_scopes(&self, wanted: &Scopes) -> DomainResult<()> {
        wanted.check_rights_in(&self.catalog)?;
        if !wanted.is_within(&self.own_scopes) {
            return Err(forbidden("the scopes include some you do not have"));
        }
        self.check_groups(&wanted.groups)
    }

    fn check_groups(&self, groups: &BTreeSet<String>) -> DomainResult<()> {
        match &self.groups {
            Some(mine) if !groups.is_subset(mine) => Err(forbidden(format!(
                "you administer the members of {} only; {} is not one of them",
                list(mine),
                list(&groups.difference(mine).cloned().collect())
            ))),
            _ => Ok(()),
        }
    }

    /// A group administrator moves people only between its own groups and never out of
    /// its reach (it could not see them again).
    fn check_regrouping(
        &self,
        target: &Individual,
        added: &BTreeSet<String>,
        removed: &BTreeSet<String>,
    ) -> DomainResult<()> {
        let Some(mine) = &self.groups else { return Ok(()) };
        self.check_groups(removed)?;
        let after: BTreeSet<&String> =
            target.scopes.groups.iter().filter(|g| !removed.contains(*g)).chain(added).collect();
        if after.iter().all(|g| !mine.contains(*g)) {
            return Err(forbidden(format!(
                "that would take {} out of every group you administer ({})",
                target.login,
                list(mine)
            )));
        }
        Ok(())
    }
}

/// Group names for a message: `"sales", "support"`.
fn list(groups: &BTreeSet<String>) -> String {
    groups.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(", ")
}
