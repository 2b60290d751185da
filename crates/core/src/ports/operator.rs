//! Ports for what the operator configures: tenants, SCIM tokens, catalog, roles, access
//! profiles and mapping rules.

use async_trait::async_trait;

use crate::DomainResult;
use crate::audit::AuditContext;
use crate::catalog::CatalogEntry;
use crate::config_plan::ConfigChange;
use crate::role::{AccessProfile, Role};
use crate::tenant::{Tenant, TenantId, TenantSettings, TenantSlug};
use crate::token::ScimTokenRecord;

/// Tenants and their SCIM tokens.
#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    async fn create_tenant(
        &self,
        id: TenantId,
        slug: &TenantSlug,
        settings: &TenantSettings,
        ctx: &AuditContext,
    ) -> DomainResult<Tenant>;
    async fn get_tenant(&self, slug: &TenantSlug) -> DomainResult<Option<Tenant>>;
    async fn list_tenants(&self) -> DomainResult<Vec<Tenant>>;
    /// Replaces the tenant's settings if its version is still `expected_version`.
    async fn update_tenant(
        &self,
        id: TenantId,
        expected_version: i64,
        settings: &TenantSettings,
        ctx: &AuditContext,
    ) -> DomainResult<Tenant>;
    async fn create_scim_token(&self, token: &ScimTokenRecord, ctx: &AuditContext) -> DomainResult<()>;
    async fn list_scim_tokens(&self, tenant: TenantId) -> DomainResult<Vec<ScimTokenRecord>>;
    /// The token with this id in this tenant, revoked or not.
    async fn find_scim_token(&self, tenant: TenantId, id: &str) -> DomainResult<Option<ScimTokenRecord>>;
    async fn revoke_scim_token(&self, tenant: TenantId, id: &str, ctx: &AuditContext) -> DomainResult<()>;
}

/// The operator's configuration: catalog entries, roles, access profiles, each tenant's
/// mapping rules.
#[async_trait]
pub trait ConfigStore: Send + Sync + 'static {
    async fn list_catalog_entries(&self) -> DomainResult<Vec<CatalogEntry>>;
    async fn list_roles(&self) -> DomainResult<Vec<Role>>;
    async fn list_access_profiles(&self) -> DomainResult<Vec<AccessProfile>>;
    /// Every tenant's mapping rules (tenants without rules are absent).
    async fn list_mapping_rules(&self) -> DomainResult<Vec<(TenantId, Vec<crate::mapping::rules::Rule>)>>;
    async fn get_mapping_rules(&self, tenant: TenantId) -> DomainResult<Vec<crate::mapping::rules::Rule>>;
    /// Applies every change in one transaction, each with its audit record; on any error
    /// nothing is written.
    async fn apply_config(&self, changes: &[ConfigChange], ctx: &AuditContext) -> DomainResult<()>;
}
