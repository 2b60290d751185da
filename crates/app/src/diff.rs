//! `mapping diff`: what proposed rules would change, for the same people a re-map reads.

use idbridge_core::mapping::{Decision, MappingInput};
use idbridge_core::tenant::TenantSlug;
use idbridge_core::{DomainError, DomainResult};
use serde::Serialize;

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
