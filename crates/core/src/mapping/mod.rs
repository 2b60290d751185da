//! The mapping contract: from what the sources say about a person (attributes and
//! external groups) to a decision — grant with a role, an access profile and scopes,
//! deny, or abstain — with reasons naming the mapper, rule and groups behind each part.
//!
//! A tenant's [`Pipeline`] is an ordered list of [`Mapper`]s: built-in rules
//! ([`rules::RulesMapper`]) and loaded plugins. The first mapper that does not abstain
//! decides role and access profile; scopes are the union over every granting mapper;
//! when all abstain the tenant's default role applies, or no access. Decisions are
//! deterministic: the same input always gives the same output.

pub mod glob;
pub mod reason;
pub mod rules;

pub use reason::Reason;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::individual::SourceKind;
use crate::scopes::Scopes;

/// A group as a source knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalGroup {
    pub source: SourceKind,
    /// Immutable identifier (SCIM group id, LDAP entryUUID/objectGUID, Entra object id).
    pub id: String,
    pub display_name: String,
    /// Display names of the groups through which membership was inherited, outermost
    /// last; empty for a direct membership.
    #[serde(default)]
    pub via: Vec<String>,
}

/// A person's normalised attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserFacts {
    pub login: String,
    pub emails: Vec<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub title: Option<String>,
    pub department: Option<String>,
    pub employee_number: Option<String>,
    pub manager: Option<String>,
    /// Source-specific attributes (Entra app roles, LDAP attributes, claims).
    pub custom: BTreeMap<String, String>,
    pub source: Option<SourceKind>,
}

/// What the individual holds now, so a mapper can keep or explain changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentAssignment {
    pub role: Option<String>,
    pub access_profile: Option<String>,
    pub scopes: Scopes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingInput {
    pub tenant: String,
    pub user: UserFacts,
    pub groups: Vec<ExternalGroup>,
    pub current: Option<CurrentAssignment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Grant,
    Deny,
    Abstain,
}

/// One mapper's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapperOutput {
    pub verdict: Verdict,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub access_profile: Option<String>,
    #[serde(default)]
    pub scopes: Scopes,
    /// Local date-times (in the individual's zone) a mapping may set.
    #[serde(default)]
    pub activation: Option<String>,
    #[serde(default)]
    pub expiration: Option<String>,
    #[serde(default)]
    pub reasons: Vec<Reason>,
}

impl MapperOutput {
    pub fn abstain() -> Self {
        Self {
            verdict: Verdict::Abstain,
            role: None,
            access_profile: None,
            scopes: Scopes::default(),
            activation: None,
            expiration: None,
            reasons: Vec::new(),
        }
    }
}

/// A mapper failed; the pipeline treats it as an abstention and reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("mapper {mapper}: {message}")]
pub struct MapperError {
    pub mapper: String,
    pub message: String,
}

pub trait Mapper: Send + Sync {
    fn id(&self) -> &str;
    fn map(&self, input: &MappingInput) -> Result<MapperOutput, MapperError>;

    /// Many people at once (a page of a sync or re-map). Plugins override it to cross
    /// to their worker thread once per batch.
    fn map_batch(&self, inputs: &[MappingInput]) -> Vec<Result<MapperOutput, MapperError>> {
        inputs.iter().map(|input| self.map(input)).collect()
    }
}

/// The pipeline's decision for one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// `grant`, `deny`, or `abstain` meaning no mapper decided and no default applies.
    pub verdict: Verdict,
    pub role: Option<String>,
    pub access_profile: Option<String>,
    pub scopes: Scopes,
    pub activation: Option<String>,
    pub expiration: Option<String>,
    pub reasons: Vec<Reason>,
    /// Mappers that failed and were treated as abstaining.
    pub errors: Vec<MapperError>,
}

impl Decision {
    pub fn has_access(&self) -> bool {
        self.verdict == Verdict::Grant && self.role.is_some()
    }
}

/// A tenant's ordered mappers.
#[derive(Clone, Default)]
pub struct Pipeline {
    pub mappers: Vec<Arc<dyn Mapper>>,
    /// Role given when every mapper abstains.
    pub default_role: Option<String>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("mappers", &self.mappers.iter().map(|m| m.id().to_owned()).collect::<Vec<_>>())
            .field("default_role", &self.default_role)
            .finish()
    }
}

impl Pipeline {
    pub fn decide(&self, input: &MappingInput) -> Decision {
        self.combine(self.mappers.iter().map(|m| m.map(input)))
    }

    /// Decisions for many people, each mapper called once with the whole batch; the same
    /// decisions as [`Pipeline::decide`] one by one.
    pub fn decide_many(&self, inputs: &[MappingInput]) -> Vec<Decision> {
        let mut per_mapper: Vec<std::vec::IntoIter<Result<MapperOutput, MapperError>>> =
            self.mappers.iter().map(|m| m.map_batch(inputs).into_iter()).collect();
        inputs
            .iter()
            .map(|_| {
                self.combine(per_mapper.iter_mut().map(|outputs| {
                    outputs.next().unwrap_or_else(|| {
                        Err(MapperError { mapper: "pipeline".into(), message: "mapper answered too few".into() })
                    })
                }))
            })
            .collect()
    }

    /// The decision from the mappers' outputs, in pipeline order.
    fn combine(&self, outputs: impl Iterator<Item = Result<MapperOutput, MapperError>>) -> Decision {
        let mut decision = Decision {
            verdict: Verdict::Abstain,
            role: None,
            access_profile: None,
            scopes: Scopes::default(),
            activation: None,
            expiration: None,
            reasons: Vec::new(),
            errors: Vec::new(),
        };
        let mut decided = false;
        let mut denied = false;
        for output in outputs {
            let output = match output {
                Ok(output) => output,
                Err(error) => {
                    decision.errors.push(error);
                    continue;
                }
            };
            match output.verdict {
                Verdict::Abstain => {}
                Verdict::Deny => {
                    if !decided {
                        decided = true;
                        denied = true;
                        decision.verdict = Verdict::Deny;
                        decision.reasons.extend(output.reasons);
                    }
                }
                // A grant without a role contributes scopes but decides nothing.
                Verdict::Grant if output.role.is_none() => {
                    if !denied {
                        decision.scopes.union(&output.scopes);
                        decision.reasons.extend(output.reasons.into_iter().filter(|r| r.grants.starts_with("scope:")));
                        if !decided && decision.access_profile.is_none() {
                            decision.access_profile = output.access_profile;
                        }
                    }
                }
                Verdict::Grant => {
                    if !decided {
                        decided = true;
                        decision.verdict = Verdict::Grant;
                        decision.role = output.role;
                        decision.access_profile = output.access_profile.or(decision.access_profile.take());
                        decision.activation = output.activation;
                        decision.expiration = output.expiration;
                        decision.scopes.union(&output.scopes);
                        decision.reasons.extend(output.reasons);
                    } else if !denied {
                        // Later granting mappers add scopes only.
                        decision.scopes.union(&output.scopes);
                        decision.reasons.extend(output.reasons.into_iter().filter(|r| r.grants.starts_with("scope:")));
                    }
                }
            }
        }
        if !decided && let Some(role) = &self.default_role {
            decision.verdict = Verdict::Grant;
            decision.role = Some(role.clone());
            decision.reasons.push(Reason {
                mapper: "default".into(),
                rule: None,
                grants: "role".into(),
                groups: Vec::new(),
            });
        }
        decision
    }
}

/// Why a decision may not be applied to this tenant, if it may not: a role that does not
/// exist or is not among the tenant's allowed roles, the same for access profiles, or
/// malformed scopes. Such a decision grants nothing new; the individual stays as it was.
pub fn check_against_tenant(
    decision: &Decision,
    tenant: &crate::tenant::Tenant,
    roles: &std::collections::BTreeSet<String>,
    profiles: &std::collections::BTreeSet<String>,
) -> Option<String> {
    if let Some(role) = &decision.role {
        if !roles.contains(role) {
            return Some(format!("the mapping asks for role {role:?}, which does not exist"));
        }
        if !tenant.allowed_roles.contains(role) {
            return Some(format!(
                "the mapping asks for role {role:?}, which is not allowed for tenant {}",
                tenant.slug
            ));
        }
    }
    if let Some(profile) = &decision.access_profile {
        if !profiles.contains(profile) {
            return Some(format!("the mapping asks for access profile {profile:?}, which does not exist"));
        }
        if !tenant.allowed_access_profiles.contains(profile) {
            return Some(format!(
                "the mapping asks for access profile {profile:?}, which is not allowed for tenant {}",
                tenant.slug
            ));
        }
    }
    decision.scopes.validate().err().map(|e| format!("the mapping produced invalid scopes: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, MapperOutput);

    impl Mapper for Fixed {
        fn id(&self) -> &str {
            self.0
        }
        fn map(&self, _: &MappingInput) -> Result<MapperOutput, MapperError> {
            Ok(self.1.clone())
        }
    }

    struct Broken;

    impl Mapper for Broken {
        fn id(&self) -> &str {
            "broken"
        }
        fn map(&self, _: &MappingInput) -> Result<MapperOutput, MapperError> {
            Err(MapperError { mapper: "broken".into(), message: "boom".into() })
        }
    }

    fn grant(role: &str, queue: &str) -> MapperOutput {
        MapperOutput {
            verdict: Verdict::Grant,
            role: Some(role.into()),
            access_profile: None,
            scopes: Scopes { queues: [queue.to_string()].into(), ..Default::default() },
            activation: None,
            expiration: None,
            reasons: vec![],
        }
    }

    fn input() -> MappingInput {
        MappingInput { tenant: "acme".into(), user: UserFacts::default(), groups: vec![], current: None }
    }

    #[test]
    fn first_decider_wins_role_and_scopes_accumulate() {
        let pipeline = Pipeline {
            mappers: vec![
                Arc::new(Broken),
                Arc::new(Fixed("a", MapperOutput::abstain())),
                Arc::new(Fixed("b", grant("PBX admin", "101"))),
                Arc::new(Fixed("c", grant("Customer admin", "102"))),
            ],
            default_role: None,
        };
        let d = pipeline.decide(&input());
        assert_eq!(d.role.as_deref(), Some("PBX admin"));
        assert_eq!(d.scopes.queues.len(), 2);
        assert_eq!(d.errors.len(), 1);
        assert!(d.has_access());
    }

    #[test]
    fn deny_first_means_no_access_and_abstention_falls_back_to_the_default() {
        let mut deny = MapperOutput::abstain();
        deny.verdict = Verdict::Deny;
        let pipeline = Pipeline {
            mappers: vec![Arc::new(Fixed("d", deny)), Arc::new(Fixed("g", grant("PBX admin", "101")))],
            default_role: Some("Viewer".into()),
        };
        let d = pipeline.decide(&input());
        assert_eq!(d.verdict, Verdict::Deny);
        assert!(!d.has_access());
        assert!(d.scopes.queues.is_empty());
        let pipeline = Pipeline { mappers: vec![], default_role: Some("Viewer".into()) };
        assert_eq!(pipeline.decide(&input()).role.as_deref(), Some("Viewer"));
        assert!(!Pipeline::default().decide(&input()).has_access());
    }
}
