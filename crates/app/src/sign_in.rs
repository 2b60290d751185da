//! Single sign-on wiring: who a verified login is (link by immutable id, or provision just
//! in time through the mapping pipeline and the reconciliation service), logout
//! everywhere when access shrinks (an outbox consumer), and key maintenance.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::idp::{Claimed, claim_at};
use idbridge_core::individual::{Individual, SourceKind, SourceLink};
use idbridge_core::mapping::{ExternalGroup, UserFacts};
use idbridge_core::ports::{SsoStore, Store};
use idbridge_core::reconcile::{SourcePerson, Submitted};
use idbridge_core::role::{AccessProfile, Role};
use idbridge_core::source_record::{ScimKind, ScimQuery};
use idbridge_core::sso::IdpConnection;
use idbridge_core::tenant::Tenant;
use serde_json::Value;

use crate::reconciliation::SourceReconciliation;

/// Why a verified person may not come in. `Display` is shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    NotAllowed(String),
    #[error("sign-in is not available right now: {0}")]
    Unavailable(String),
}

/// Finds (links, or provisions just in time) the individual behind a verified login.
/// The port the OpenID provider asks; `SsoAccounts` answers with the mapping pipeline
/// and the reconciliation service.
#[async_trait::async_trait]
pub trait Accounts: Send + Sync + 'static {
    async fn resolve(
        &self,
        tenant: &Tenant,
        connection: &IdpConnection,
        claimed: &Claimed,
    ) -> Result<Individual, Refusal>;
}

/// Tells portals that sessions ended (the OpenID provider's back-channel sender).
pub trait LogoutNotifier: Send + Sync + 'static {
    /// Wakes the sender: the store holds the logouts owed.
    fn notify(&self);
}

/// Resolves logins with the daemon's reconciliation service.
pub struct SsoAccounts {
    pub reconciliation: SourceReconciliation,
}

fn unavailable(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "login could not be resolved");
    Refusal::Unavailable("please try again shortly".into())
}

impl SsoAccounts {
    /// The individual another source provisioned, by the id named in `link_by`.
    async fn linked_elsewhere(
        &self,
        tenant: &Tenant,
        connection: &IdpConnection,
        claimed: &Claimed,
    ) -> Result<Option<Individual>, Refusal> {
        let Some(link_by) = &connection.link_by else { return Ok(None) };
        let Some(value) = claim_at(&claimed.raw, &link_by.claim).and_then(Value::as_str) else { return Ok(None) };
        let store = self.reconciliation.reconciler.store();
        if link_by.source == "scim" {
            let query = ScimQuery { external_id_eq: Some(value.to_owned()), limit: Some(2), ..Default::default() };
            let (records, _) =
                self.reconciliation.records.list_scim(tenant.id, ScimKind::User, &query).await.map_err(unavailable)?;
            // An externalId two SCIM users share identifies nobody.
            let [record] = records.as_slice() else { return Ok(None) };
            return store
                .find_individual_by_link(
                    tenant.id,
                    SourceKind::Scim,
                    crate::scim_person::SCIM_CONNECTION,
                    &record.id.to_string(),
                )
                .await
                .map_err(unavailable);
        }
        let id = idbridge_core::directory::normalize_immutable_id(value);
        store.find_individual_by_link(tenant.id, SourceKind::Ldap, &link_by.source, &id).await.map_err(unavailable)
    }

    /// The person as the login's claims describe them.
    fn person(claimed: &Claimed, link: SourceLink, groups: &[String]) -> SourcePerson {
        let login = claimed.login.clone().or_else(|| claimed.email.clone()).unwrap_or_else(|| claimed.subject.clone());
        let mut custom = BTreeMap::new();
        if !claimed.roles.is_empty() {
            custom.insert("roles".to_owned(), claimed.roles.join(","));
        }
        SourcePerson {
            link,
            also: Vec::new(),
            facts: UserFacts {
                login,
                emails: claimed.email.iter().cloned().collect(),
                given_name: claimed.given_name.clone(),
                family_name: claimed.family_name.clone(),
                display_name: claimed.name.clone(),
                custom,
                source: Some(SourceKind::Oidc),
                ..Default::default()
            },
            groups: groups
                .iter()
                .map(|g| ExternalGroup {
                    source: SourceKind::Oidc,
                    id: g.clone(),
                    display_name: g.clone(),
                    via: Vec::new(),
                })
                .collect(),
            active: true,
            email: claimed.email.clone(),
            given_name: claimed.given_name.clone(),
            family_name: claimed.family_name.clone(),
            display_name: claimed.name.clone(),
            activation: None,
            expiration: None,
            time_zone: None,
        }
    }

    /// Decides and writes the person from the claims (just-in-time provisioning).
    async fn provision(
        &self,
        tenant: &Tenant,
        person: SourcePerson,
        existing: Option<Individual>,
    ) -> Result<(), Refusal> {
        let r = &self.reconciliation;
        let pipeline = r.mapping.pipeline(tenant).await.map_err(unavailable)?;
        let known = Arc::new(r.reconciler.known().await.map_err(unavailable)?);
        let set = r.plan_people(tenant, &pipeline, known, vec![(person, existing)]).await.map_err(unavailable)?;
        if let Some(held) = set.held.first() {
            return Err(Refusal::NotAllowed(format!("Your access could not be decided: {}", held.reason)));
        }
        let ctx = AuditContext::new(Actor::new(ActorKind::Login, "sso"));
        match r.reconciler.submit(tenant, set, &ctx).await.map_err(unavailable)? {
            Submitted::Applied(report) => {
                if let Some((_, error)) = report.failed.first() {
                    return Err(Refusal::NotAllowed(format!("Your account could not be created: {error}")));
                }
                Ok(())
            }
            Submitted::AwaitingApproval { .. } => {
                Err(Refusal::NotAllowed("Your access change awaits an operator's approval.".into()))
            }
        }
    }
}

#[async_trait]
impl Accounts for SsoAccounts {
    /// Who a verified login is. The login's claims are kept first, as the person's source
    /// record for this IdP connection, with the durable intent to re-decide them (in one
    /// transaction): re-maps and the sweep then follow the person as the login described
    /// them. The intent is settled here once the login is decided.
    async fn resolve(
        &self,
        tenant: &Tenant,
        connection: &IdpConnection,
        claimed: &Claimed,
    ) -> Result<Individual, Refusal> {
        let r = &self.reconciliation;
        let link = SourceLink {
            source: SourceKind::Oidc,
            connection: claimed.issuer.clone(),
            external_id: claimed.subject.clone(),
        };
        let previous = r.logins.login_record(tenant.id, &link).await.map_err(unavailable)?;
        let groups_known = claimed.groups.is_known();
        let mut person = Self::person(claimed, link.clone(), claimed.groups.list());
        if !groups_known && let Some((before, _)) = &previous {
            // Absent or overage groups are "unknown", never "none": the person keeps the
            // groups their last login brought.
            person.groups.clone_from(&before.groups);
        }
        let intent =
            r.logins.put_login_record(tenant.id, &person, idbridge_core::clock::now()).await.map_err(unavailable)?;
        let groups_known = groups_known || previous.is_some();
        let resolved = self.resolve_person(tenant, connection, claimed, person, groups_known).await;
        if !matches!(resolved, Err(Refusal::Unavailable(_))) {
            r.clearer.clear(vec![intent]);
        }
        resolved
    }
}

impl SsoAccounts {
    async fn resolve_person(
        &self,
        tenant: &Tenant,
        connection: &IdpConnection,
        claimed: &Claimed,
        person: SourcePerson,
        groups_known: bool,
    ) -> Result<Individual, Refusal> {
        let store = self.reconciliation.reconciler.store().clone();
        let link = person.link.clone();
        let no_account = || {
            Refusal::NotAllowed(format!(
                "There is no portal account for you at {}. Ask your administrator to give you access.",
                tenant.name
            ))
        };
        let linked = store
            .find_individual_by_link(tenant.id, SourceKind::Oidc, &link.connection, &link.external_id)
            .await
            .map_err(unavailable)?;
        if let Some(individual) = linked {
            // Only an individual the IdP alone vouches for is re-decided from the login,
            // and only when its groups are known (this login's, or the last one's).
            if tenant.policy.jit_provisioning && crate::reconciliation::login_only(&individual) && groups_known {
                self.provision(tenant, person, Some(individual.clone())).await?;
                return store
                    .get_individual(tenant.id, individual.id)
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(no_account);
            }
            return Ok(individual);
        }
        // Provisioned by SCIM or LDAP: link by the immutable id the token carries.
        if let Some(individual) = self.linked_elsewhere(tenant, connection, claimed).await? {
            let ctx = AuditContext::new(Actor::new(ActorKind::Login, "sso"));
            self.reconciliation.reconciler.link(tenant, &individual, link, &ctx).await.map_err(unavailable)?;
            return store.get_individual(tenant.id, individual.id).await.map_err(unavailable)?.ok_or_else(no_account);
        }
        if !tenant.policy.jit_provisioning {
            return Err(no_account());
        }
        if !groups_known {
            return Err(Refusal::NotAllowed(
                "Your identity provider did not send your groups, and no directory has told idbridge about you, \
                 so your access cannot be decided. Ask your administrator."
                    .into(),
            ));
        }
        self.provision(tenant, person, None).await?;
        store
            .find_individual_by_link(tenant.id, SourceKind::Oidc, &link.connection, &link.external_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(no_account)
    }
}

const CONSUMER: &str = "sso-logout";
const LEASE: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// The outbox consumer that ends sessions and tells portals (back-channel logout) when an
/// individual's access ends or shrinks. One instance at a time holds it (lease).
pub async fn run_logout_consumer(
    operator: crate::operator::Operator,
    store: Arc<dyn Store>,
    sso: Arc<dyn SsoStore>,
    notifier: Arc<dyn LogoutNotifier>,
    instance: String,
) {
    // Tenants are looked at every tenth pass (~5 s): listing a thousand tenants twice a
    // second would be most of this task's work.
    let mut pass: u64 = 0;
    loop {
        pass += 1;
        let now = idbridge_core::clock::now();
        match store.try_lease(CONSUMER, &instance, now, now + LEASE).await {
            Ok(true) => {
                if let Err(e) = logout_pass(&operator, store.as_ref(), sso.as_ref(), notifier.as_ref()).await {
                    tracing::warn!(error = %e, "back-channel logout pass failed; retrying");
                }
                if pass % 10 == 1
                    && let Err(e) = end_disabled_tenants(&operator, sso.as_ref(), notifier.as_ref()).await
                {
                    tracing::warn!(error = %e, "ending the sessions of disabled tenants failed; retrying");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot take the sso-logout lease"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn logout_pass(
    operator: &crate::operator::Operator,
    store: &dyn Store,
    sso: &dyn SsoStore,
    notifier: &dyn LogoutNotifier,
) -> idbridge_core::DomainResult<()> {
    let after = store.consumer_position(CONSUMER).await?;
    let events = store.list_all_change_events(after, 500).await?;
    let ready = crate::delivery::settled(after, &events, idbridge_core::clock::now(), crate::delivery::GAP_WAIT);
    if ready == 0 {
        return Ok(());
    }
    let catalog = operator.catalog().await?;
    let roles: BTreeMap<String, Role> = operator.roles().await?.into_iter().map(|r| (r.name.clone(), r)).collect();
    let profiles: BTreeMap<String, AccessProfile> =
        operator.access_profiles().await?.into_iter().map(|p| (p.name.clone(), p)).collect();
    for (_, event) in &events[..ready] {
        if idbridge_core::permissions::access_shrank(event, &roles, &profiles, &catalog) {
            // Sessions opened after the change were decided on it: they stay.
            let ended = sso
                .end_individual_sessions(event.tenant_id, event.individual_id, event.at, idbridge_core::clock::now())
                .await?;
            if !ended.is_empty() {
                tracing::info!(individual = %event.individual_id, sessions = ended.len(), kind = event.kind.as_str(), "access shrank: sessions ended");
                // The store recorded the logouts owed to their portals.
                notifier.notify();
            }
        }
    }
    // Once per batch, not per event (a transaction each): a crash before this re-reads the
    // batch, and ending sessions that ended already ends none.
    store.advance_consumer(CONSUMER, events[ready - 1].0, None).await?;
    Ok(())
}

/// A disabled tenant's people are signed out everywhere, however it was disabled (the
/// CLI, the admin API, an apply file): every session ends, every token is revoked for
/// good, and the portals are told by back-channel logout.
async fn end_disabled_tenants(
    operator: &crate::operator::Operator,
    sso: &dyn SsoStore,
    notifier: &dyn LogoutNotifier,
) -> idbridge_core::DomainResult<()> {
    for tenant in operator.tenants().await?.into_iter().filter(|t| !t.enabled) {
        let ended = sso.end_tenant_sessions(tenant.id, idbridge_core::clock::now()).await?;
        if ended.is_empty() {
            continue;
        }
        tracing::info!(tenant = %tenant.slug, sessions = ended.len(), "tenant disabled: sessions ended");
        notifier.notify();
    }
    Ok(())
}
