//! What an operator does to the bridge's configuration and tenants, shared by the admin
//! CLI and the admin HTTP API so that both validate, audit and answer alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use idbridge_core::audit::{AuditContext, AuditEntry, AuditQuery, ChangeEvent};
use idbridge_core::catalog::Catalog;
use idbridge_core::changeset::{ChangeSetHeader, ChangeSetStatus, HeldWrite};
use idbridge_core::config_plan::{self, ConfigChange, CurrentConfig, DesiredConfig};
use idbridge_core::individual::{Individual, IndividualId, IndividualQuery};
use idbridge_core::ports::Store;
use idbridge_core::role::{AccessLevel, AccessProfile, Role};
use idbridge_core::tenant::{Tenant, TenantId, TenantSettings, TenantSlug};
use idbridge_core::token::{self, ScimTokenRecord};
use idbridge_core::{DomainError, DomainResult};

/// The most writes of a held change set one page shows.
pub const MAX_WRITES_PAGE: usize = 5_000;

/// The operator's handle on the bridge.
#[derive(Clone)]
pub struct Operator {
    store: Arc<dyn Store>,
    /// Built-in catalog plus the entries from the daemon's config file. Shared: the
    /// operator is cloned into every request's state, and a catalog is dozens of maps.
    configured_catalog: Arc<Catalog>,
}

/// A tenant with the definitions of the roles and access profiles it may use (the
/// server's views publish it).
#[derive(Debug, Clone)]
pub struct TenantView {
    pub tenant: Tenant,
    pub roles: Vec<RoleView>,
    pub access_profiles: Vec<AccessProfileView>,
}

#[derive(Debug, Clone)]
pub struct RoleView {
    pub role: Role,
    /// Level for every catalog section.
    pub permissions: BTreeMap<String, AccessLevel>,
}

#[derive(Debug, Clone)]
pub struct AccessProfileView {
    pub profile: AccessProfile,
    /// On/off for every catalog flag.
    pub effective_flags: BTreeMap<String, bool>,
}

/// An individual as a portal reads it: effective permissions, not references.
#[derive(Debug, Clone, Serialize)]
pub struct PortalIndividual {
    pub id: IndividualId,
    pub login: String,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub status: idbridge_core::individual::IndividualStatus,
    /// Whether the individual may use the portal at this moment.
    pub active_now: bool,
    pub role: Option<String>,
    /// Section → level for every catalog section (all `restrict` without a role).
    pub permissions: BTreeMap<String, AccessLevel>,
    pub access_profile: Option<String>,
    /// Flag → on/off for every catalog flag (all off without a profile).
    pub access_profile_flags: BTreeMap<String, bool>,
    pub scopes: idbridge_core::scopes::Scopes,
    pub time_zone: String,
    /// The language tag to show the person the portal in; `null`: the tenant's choice.
    pub language: Option<String>,
    pub valid_from: Option<jiff::Timestamp>,
    pub valid_until: Option<jiff::Timestamp>,
    pub version: i64,
}

impl PortalIndividual {
    /// The portal's view of an individual, given the catalog, roles and access profiles
    /// (the Portal API reads them from the store; sign-in from its short-lived snapshot).
    pub fn of(
        i: idbridge_core::individual::Individual,
        catalog: &Catalog,
        roles: &BTreeMap<String, Role>,
        profiles: &BTreeMap<String, AccessProfile>,
        now: jiff::Timestamp,
    ) -> Self {
        let role = i.role.as_ref().and_then(|r| roles.get(r));
        let profile = i.access_profile.as_ref().and_then(|p| profiles.get(p));
        let active_now = i.status == idbridge_core::individual::IndividualStatus::Active
            && i.scheduled_status(now) == idbridge_core::individual::IndividualStatus::Active
            && role.is_some();
        PortalIndividual {
            id: i.id,
            permissions: role.map_or_else(
                || catalog.sections.keys().map(|s| (s.clone(), AccessLevel::Restrict)).collect(),
                |r| r.effective_permissions(catalog),
            ),
            access_profile_flags: profile.map_or_else(
                || catalog.flags.keys().map(|f| (f.clone(), false)).collect(),
                |p| p.effective_flags(catalog),
            ),
            login: i.login,
            email: i.email,
            given_name: i.given_name,
            family_name: i.family_name,
            display_name: i.display_name,
            status: i.status,
            active_now,
            role: i.role,
            access_profile: i.access_profile,
            scopes: i.scopes,
            time_zone: i.time_zone,
            language: i.language,
            valid_from: i.activation.map(|a| a.at),
            valid_until: i.expiration.map(|e| e.at),
            version: i.version,
        }
    }
}

/// The outcome of `apply`: one line per change, empty when nothing changed.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub dry_run: bool,
    pub changes: Vec<String>,
    /// Tenants whose rules or policy changed: their individuals must be re-mapped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remap_tenants: Vec<TenantSlug>,
}

/// A freshly issued SCIM token; `token` is shown once and never stored.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedScimToken {
    pub id: String,
    pub name: String,
    pub token: String,
}

impl Operator {
    pub fn new(store: Arc<dyn Store>, configured_catalog: Catalog) -> Self {
        Self { store, configured_catalog: Arc::new(configured_catalog) }
    }

    /// The operator's view of the tenants' portal connectors (status, resync).
    pub fn connectors(&self) -> crate::connectors::Connectors {
        crate::connectors::Connectors::new(self.store.clone())
    }

    /// Cheap round trip to the database (`/readyz`, `check-config`).
    pub async fn ping(&self) -> DomainResult<()> {
        self.store.ping().await
    }

    /// Whether the database takes writes, not only reads (a full disk answers reads): a
    /// one-row write — a lease that expires at once.
    pub async fn probe_writable(&self) -> DomainResult<()> {
        self.store.ping().await?;
        let now = idbridge_core::clock::now();
        self.store.try_lease("readyz-write-probe", "readyz", now, now).await.map(|_| ())
    }

    pub async fn tenants(&self) -> DomainResult<Vec<Tenant>> {
        self.store.list_tenants().await
    }

    /// A tenant's settings written back (sign-in settings, by `portal_clients`), with its
    /// audit record; `version` is the one read.
    pub async fn update_tenant(
        &self,
        tenant: &Tenant,
        settings: &idbridge_core::tenant::TenantSettings,
        ctx: &AuditContext,
    ) -> DomainResult<Tenant> {
        self.store.update_tenant(tenant.id, tenant.version, settings, ctx).await
    }

    /// An individual of a tenant by id, if it still exists (sign-in, token use).
    pub async fn individual_by_id(&self, tenant: TenantId, id: IndividualId) -> DomainResult<Option<Individual>> {
        self.store.get_individual(tenant, id).await
    }

    pub async fn mapping_rules(&self, tenant: TenantId) -> DomainResult<Vec<idbridge_core::mapping::rules::Rule>> {
        self.store.get_mapping_rules(tenant).await
    }

    /// Held change sets, newest first, of one tenant or all, by status.
    pub async fn change_sets(
        &self,
        tenant: Option<TenantId>,
        status: Option<ChangeSetStatus>,
    ) -> DomainResult<Vec<ChangeSetHeader>> {
        self.store.list_change_sets(tenant, status).await
    }

    /// A held change set of a tenant, without its writes.
    pub async fn change_set(&self, tenant: TenantId, id: Uuid) -> DomainResult<ChangeSetHeader> {
        self.store
            .get_change_set_header(tenant, id)
            .await?
            .ok_or_else(|| DomainError::not_found("change set", id.to_string()))
    }

    /// A held change set by id across tenants (ids are UUIDs), without its writes.
    pub async fn find_change_set(&self, id: Uuid) -> DomainResult<ChangeSetHeader> {
        self.store.find_change_set(id).await?.ok_or_else(|| DomainError::not_found("change set", id.to_string()))
    }

    /// One page of a held change set's writes, after position `after`, at most
    /// [`MAX_WRITES_PAGE`] of them.
    pub async fn change_set_writes(
        &self,
        tenant: TenantId,
        id: Uuid,
        after: Option<u64>,
        limit: usize,
    ) -> DomainResult<Vec<(u64, HeldWrite)>> {
        if limit == 0 || limit > MAX_WRITES_PAGE {
            return Err(DomainError::invalid("limit", format!("{limit} is not between 1 and {MAX_WRITES_PAGE}")));
        }
        self.store.change_set_writes(tenant, id, after, limit).await
    }

    /// A tenant's change events after outbox position `after`.
    pub async fn change_events(
        &self,
        tenant: TenantId,
        after: i64,
        limit: u32,
    ) -> DomainResult<Vec<(i64, ChangeEvent)>> {
        self.store.list_change_events(tenant, after, limit).await
    }

    /// Every tenant's change events after outbox position `after`.
    pub async fn all_change_events(&self, after: i64, limit: u32) -> DomainResult<Vec<(i64, ChangeEvent)>> {
        self.store.list_all_change_events(after, limit).await
    }

    /// Built-in, config and stored entries together.
    pub async fn catalog(&self) -> DomainResult<Catalog> {
        let mut catalog = Catalog::clone(&self.configured_catalog);
        catalog.extend(&self.store.list_catalog_entries().await?);
        Ok(catalog)
    }

    pub async fn tenant(&self, slug: &TenantSlug) -> DomainResult<Tenant> {
        self.store.get_tenant(slug).await?.ok_or_else(|| DomainError::not_found("tenant", slug.as_str()))
    }

    pub async fn tenant_view(&self, slug: &TenantSlug) -> DomainResult<TenantView> {
        let tenant = self.tenant(slug).await?;
        let catalog = self.catalog().await?;
        let roles = self
            .store
            .list_roles()
            .await?
            .into_iter()
            .filter(|r| tenant.allowed_roles.contains(&r.name))
            .map(|role| RoleView { permissions: role.effective_permissions(&catalog), role })
            .collect();
        let access_profiles = self
            .store
            .list_access_profiles()
            .await?
            .into_iter()
            .filter(|p| tenant.allowed_access_profiles.contains(&p.name))
            .map(|profile| AccessProfileView { effective_flags: profile.effective_flags(&catalog), profile })
            .collect();
        Ok(TenantView { tenant, roles, access_profiles })
    }

    pub async fn create_tenant(
        &self,
        slug: &TenantSlug,
        settings: &TenantSettings,
        ctx: &AuditContext,
    ) -> DomainResult<Tenant> {
        settings.validate()?;
        let roles = self.store.list_roles().await?.into_iter().map(|r| r.name).collect();
        let profiles = self.store.list_access_profiles().await?.into_iter().map(|p| p.name).collect();
        config_plan::check_tenant_references(slug, settings, &roles, &profiles)?;
        self.store.create_tenant(TenantId(Uuid::new_v4()), slug, settings, ctx).await
    }

    /// Enables or disables a tenant; unchanged state is not an error and writes nothing.
    pub async fn set_tenant_enabled(
        &self,
        slug: &TenantSlug,
        enabled: bool,
        ctx: &AuditContext,
    ) -> DomainResult<Tenant> {
        let tenant = self.tenant(slug).await?;
        if tenant.enabled == enabled {
            return Ok(tenant);
        }
        let mut settings = tenant.settings();
        settings.enabled = enabled;
        self.store.update_tenant(tenant.id, tenant.version, &settings, ctx).await
    }

    pub async fn issue_scim_token(
        &self,
        slug: &TenantSlug,
        name: &str,
        ctx: &AuditContext,
    ) -> DomainResult<IssuedScimToken> {
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(DomainError::invalid("token name", "must be 1-100 printable characters"));
        }
        let tenant = self.tenant(slug).await?;
        let issued = token::issue("scim");
        let record = ScimTokenRecord {
            id: issued.id.clone(),
            tenant_id: tenant.id,
            name: name.to_owned(),
            hash: issued.hash,
            created_at: idbridge_core::clock::now(),
            revoked_at: None,
        };
        self.store.create_scim_token(&record, ctx).await?;
        Ok(IssuedScimToken { id: issued.id, name: name.to_owned(), token: issued.secret_token })
    }

    pub async fn scim_tokens(&self, slug: &TenantSlug) -> DomainResult<Vec<ScimTokenRecord>> {
        let tenant = self.tenant(slug).await?;
        self.store.list_scim_tokens(tenant.id).await
    }

    pub async fn revoke_scim_token(&self, slug: &TenantSlug, id: &str, ctx: &AuditContext) -> DomainResult<()> {
        let tenant = self.tenant(slug).await?;
        self.store.revoke_scim_token(tenant.id, id, ctx).await
    }

    /// The tenant a presented SCIM token authorises, or `None`. Every failure looks the
    /// same to the caller so that a client cannot probe which tenants or tokens exist.
    pub async fn authenticate_scim(
        &self,
        slug: &str,
        presented: &str,
    ) -> DomainResult<Option<(Tenant, ScimTokenRecord)>> {
        let Ok(slug) = TenantSlug::parse(slug) else { return Ok(None) };
        let Some(id) = token::token_id("scim", presented) else { return Ok(None) };
        // The same work whether the tenant exists or not — two lookups and one hash check —
        // so that response time does not tell which tenant slugs exist.
        let tenant = self.store.get_tenant(&slug).await?;
        let tenant_id = tenant.as_ref().map_or(idbridge_core::tenant::TenantId(Uuid::nil()), |t| t.id);
        let record = self.store.find_scim_token(tenant_id, id).await?;
        let valid = match &record {
            Some(record) => token::verify(presented, &record.hash),
            None => {
                let _ = token::verify(presented, token::UNMATCHABLE_HASH);
                false
            }
        };
        match (tenant, record) {
            (Some(tenant), Some(record)) if valid && record.revoked_at.is_none() && tenant.enabled => {
                Ok(Some((tenant, record)))
            }
            _ => Ok(None),
        }
    }

    pub async fn individuals(&self, slug: &TenantSlug, query: &IndividualQuery) -> DomainResult<Vec<Individual>> {
        let tenant = self.tenant(slug).await?;
        self.store.list_individuals(tenant.id, query).await
    }

    /// An individual by id or, failing that, by login.
    pub async fn individual(&self, slug: &TenantSlug, id_or_login: &str) -> DomainResult<Individual> {
        let tenant = self.tenant(slug).await?;
        let by_id = match id_or_login.parse::<Uuid>() {
            Ok(id) => self.store.get_individual(tenant.id, IndividualId(id)).await?,
            Err(_) => None,
        };
        let found = match by_id {
            Some(i) => Some(i),
            None => self.store.find_individual_by_login(tenant.id, id_or_login).await?,
        };
        found.ok_or_else(|| DomainError::not_found("individual", id_or_login))
    }

    /// Audit entries of a tenant (`Some`) or operator-wide (`None`).
    pub async fn audit(&self, slug: Option<&TenantSlug>, mut query: AuditQuery) -> DomainResult<Vec<AuditEntry>> {
        query.tenant_id = match slug {
            Some(slug) => Some(self.tenant(slug).await?.id),
            None => None,
        };
        if let (Some(since), Some(until)) = (query.since, query.until)
            && until <= since
        {
            return Err(DomainError::invalid("until", "must be after since"));
        }
        self.store.list_audit(&query).await
    }

    /// Plans the desired configuration against the stored one and, unless `dry_run`,
    /// applies the plan in one transaction.
    pub async fn apply(&self, desired: &DesiredConfig, dry_run: bool, ctx: &AuditContext) -> DomainResult<ApplyReport> {
        let tenants = self.store.list_tenants().await?;
        let by_id: std::collections::BTreeMap<_, _> = tenants.iter().map(|t| (t.id, t.slug.clone())).collect();
        let rules = self
            .store
            .list_mapping_rules()
            .await?
            .into_iter()
            .filter_map(|(id, rules)| by_id.get(&id).map(|slug| (slug.clone(), rules)))
            .collect();
        let current = CurrentConfig {
            catalog: self.store.list_catalog_entries().await?,
            roles: self.store.list_roles().await?,
            access_profiles: self.store.list_access_profiles().await?,
            tenants,
            rules,
        };
        let changes: Vec<ConfigChange> = config_plan::plan(&self.configured_catalog, &current, desired)?;
        if !dry_run && !changes.is_empty() {
            self.store.apply_config(&changes, ctx).await?;
        }
        let mut remap_tenants: Vec<TenantSlug> = changes
            .iter()
            .filter_map(|c| match c {
                ConfigChange::PutRules { slug, .. } => Some(slug.clone()),
                ConfigChange::UpdateTenant { slug, before, after, .. }
                    if before.policy != after.policy
                        || before.allowed_roles != after.allowed_roles
                        || before.allowed_access_profiles != after.allowed_access_profiles =>
                {
                    Some(slug.clone())
                }
                _ => None,
            })
            .collect();
        remap_tenants.sort();
        remap_tenants.dedup();
        Ok(ApplyReport { dry_run, changes: changes.iter().map(ConfigChange::describe).collect(), remap_tenants })
    }

    /// Individuals as portals read them.
    pub async fn portal_individuals(&self, individuals: Vec<Individual>) -> DomainResult<Vec<PortalIndividual>> {
        let catalog = self.catalog().await?;
        let roles: BTreeMap<String, Role> =
            self.store.list_roles().await?.into_iter().map(|r| (r.name.clone(), r)).collect();
        let profiles: BTreeMap<String, AccessProfile> =
            self.store.list_access_profiles().await?.into_iter().map(|p| (p.name.clone(), p)).collect();
        let now = idbridge_core::clock::now();
        Ok(individuals.into_iter().map(|i| PortalIndividual::of(i, &catalog, &roles, &profiles, now)).collect())
    }

    /// Replaces a tenant's mapping rules (validated like `apply`: against the tenant's
    /// allowed roles and profiles), in one transaction with its audit record.
    pub async fn replace_rules(
        &self,
        slug: &TenantSlug,
        rules: Vec<idbridge_core::mapping::rules::Rule>,
        known_mappers: std::collections::BTreeSet<String>,
        dry_run: bool,
        ctx: &AuditContext,
    ) -> DomainResult<ApplyReport> {
        let tenant = self.tenant(slug).await?;
        let desired = DesiredConfig {
            tenants: vec![(slug.clone(), tenant.settings())],
            rules: [(slug.clone(), rules)].into(),
            known_mappers,
            ..DesiredConfig::default()
        };
        self.apply(&desired, dry_run, ctx).await
    }

    pub async fn roles(&self) -> DomainResult<Vec<Role>> {
        self.store.list_roles().await
    }

    pub async fn access_profiles(&self) -> DomainResult<Vec<AccessProfile>> {
        self.store.list_access_profiles().await
    }
}
