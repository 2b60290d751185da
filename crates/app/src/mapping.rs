//! Assembles tenants' mapping pipelines (stored rules plus loaded plugins) and answers
//! `mapping preview`. Plugin calls block, so decisions run off the async runtime.

use std::collections::BTreeSet;
use std::sync::Arc;

use idbridge_core::mapping::rules::RulesMapper;
use idbridge_core::mapping::{self, Decision, ExternalGroup, MappingInput, Pipeline, UserFacts};
use idbridge_core::tenant::{Tenant, TenantSlug};
use idbridge_core::{DomainError, DomainResult};
use idbridge_plugin_host::PluginHost;
use serde::{Deserialize, Serialize};

use crate::operator::Operator;

#[derive(Clone)]
pub struct MappingService {
    pub operator: Operator,
    pub plugins: Arc<PluginHost>,
    /// Source records, for re-deciding existing individuals (`diff`).
    pub records: Arc<dyn idbridge_core::ports::ScimRecordStore>,
}

/// What `mapping preview --user FILE` reads: the person as a source would present it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewPerson {
    pub user: UserFacts,
    #[serde(default)]
    pub groups: Vec<ExternalGroup>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub tenant: String,
    pub mappers: Vec<String>,
    pub decision: Decision,
    /// Set when the decision may not be applied (and would leave the individual as is).
    pub held: Option<String>,
}

impl MappingService {
    pub async fn pipeline(&self, tenant: &Tenant) -> DomainResult<Pipeline> {
        let rules = self.operator.mapping_rules(tenant.id).await?;
        self.pipeline_with(tenant, &rules)
    }

    /// The tenant's pipeline with the given rules in place of the stored ones.
    pub fn pipeline_with(
        &self,
        tenant: &Tenant,
        rules: &[idbridge_core::mapping::rules::Rule],
    ) -> DomainResult<Pipeline> {
        let mut mappers: Vec<Arc<dyn mapping::Mapper>> = Vec::new();
        for id in &tenant.policy.mappers {
            if id == "rules" {
                mappers.push(Arc::new(RulesMapper::new(rules)?));
            } else {
                let mapper = self.plugins.mapper(id).ok_or_else(|| {
                    DomainError::Rejected(format!("tenant {} uses plugin {id:?}, which is not loaded", tenant.slug))
                })?;
                mappers.push(mapper);
            }
        }
        Ok(Pipeline { mappers, default_role: tenant.policy.default_role.clone() })
    }

    pub async fn preview(&self, slug: &TenantSlug, person: PreviewPerson) -> DomainResult<Preview> {
        let tenant = self.operator.tenant(slug).await?;
        let pipeline = self.pipeline(&tenant).await?;
        let input = MappingInput { tenant: slug.to_string(), user: person.user, groups: person.groups, current: None };
        let decision = tokio::task::spawn_blocking(move || pipeline.decide(&input))
            .await
            .map_err(|e| DomainError::Internal(format!("mapping task failed: {e}")))?;
        let roles: BTreeSet<String> = self.operator.roles().await?.into_iter().map(|r| r.name).collect();
        let profiles: BTreeSet<String> = self.operator.access_profiles().await?.into_iter().map(|p| p.name).collect();
        let held = mapping::check_against_tenant(&decision, &tenant, &roles, &profiles);
        Ok(Preview { tenant: slug.to_string(), mappers: tenant.policy.mappers.clone(), decision, held })
    }
}
