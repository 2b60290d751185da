//! Assembles tenants' mapping pipelines (stored rules plus loaded plugins) and answers
//! `mapping preview`. Plugin calls block, so decisions run off the async runtime.

use std::collections::BTreeSet;
use std::sync::Arc;

use idbridge_core::mapping::rules::RulesMapper;
use idbridge_core::mapping::{self, Decision, ExternalGroup, MappingInput, Pipeline, UserFacts};
use idbridge_core::operator::Operator;
use idbridge_core::tenant::{Tenant, TenantSlug};
use idbridge_core::{DomainError, DomainResult};
use idbridge_plugin_host::PluginHost;
use serde::{Deserialize, Serialize};

#[derive(Clone)]
pub struct MappingService {
    pub operator: Operator,
    pub plugins: Arc<PluginHost>,
    /// Source records, for re-deciding existing individuals (`diff`).
    pub records: Arc<dyn idbridge_core::ports::ScimRecordStore>,
}

/// One individual whose access would change under other rules.
#[derive(Debug, Clone, Serialize)]
pub struct DiffEntry {
    pub login: String,
    pub before: Assignment,
    pub after: Assignment,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assignment {
    pub access: bool,
    pub role: Option<String>,
    pub access_profile: Option<String>,
    pub scopes: idbridge_core::scopes::Scopes,
}

impl Assignment {
    fn of(decision: &Decision) -> Self {
        Self {
            access: decision.has_access(),
            role: decision.role.clone(),
            access_profile: decision.access_profile.clone(),
            scopes: decision.scopes.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub tenant: String,
    pub individuals: usize,
    pub changes: Vec<DiffEntry>,
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
        let rules = self.operator.store().get_mapping_rules(tenant.id).await?;
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

impl crate::reconciliation::SourceReconciliation {
    /// What would change for every individual of the tenant if `rules` replaced the
    /// stored rules. Nothing is written. Individuals are re-decided from everything their
    /// sources say — the same people, merged the same way, as a re-map and the sweep
    /// (`reconciliation::People`); the comparison is between today's decision and
    /// tomorrow's.
    pub async fn diff(
        &self,
        slug: &TenantSlug,
        rules: &[idbridge_core::mapping::rules::Rule],
    ) -> DomainResult<DiffReport> {
        let tenant = self.mapping.operator.tenant(slug).await?;
        let current = self.mapping.pipeline(&tenant).await?;
        let proposed = self.mapping.pipeline_with(&tenant, rules)?;
        let mut people = Vec::new();
        let mut pages = self.people(&tenant);
        while let Some(page) = pages.next_page().await? {
            for (person, individual) in page {
                if let Some(individual) = individual {
                    people.push((individual.login, idbridge_core::reconcile::mapping_input(&tenant, &person, None)));
                }
            }
        }
        let individuals = people.len();
        let changes = tokio::task::spawn_blocking(move || {
            let inputs: Vec<MappingInput> = people.iter().map(|(_, input)| input.clone()).collect();
            let before = current.decide_many(&inputs);
            let after = proposed.decide_many(&inputs);
            people
                .into_iter()
                .zip(before.iter().zip(&after))
                .filter_map(|((login, _), (before, after))| {
                    let (before, after) = (Assignment::of(before), Assignment::of(after));
                    (before != after).then_some(DiffEntry { login, before, after })
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| DomainError::Internal(format!("mapping task failed: {e}")))?;
        Ok(DiffReport { tenant: slug.to_string(), individuals, changes })
    }
}
