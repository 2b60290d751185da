//! The `idbridge apply` document (TOML, or the same shape in JSON over the admin API):
//! its wire form and its conversion into core's `DesiredConfig`.

use std::collections::{BTreeMap, BTreeSet};

use idbridge_core::catalog::{CatalogEntry, CatalogKind};
use idbridge_core::config_plan::DesiredConfig;
use idbridge_core::mapping::rules::Rule;
use idbridge_core::role::{AccessLevel, AccessProfile, Role};
use idbridge_core::tenant::{TenantPolicy, TenantSettings, TenantSlug};
use idbridge_core::{DomainError, DomainResult};
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApplyDocument {
    #[serde(default)]
    pub catalog: CatalogDoc,
    #[serde(default)]
    pub roles: Vec<RoleDoc>,
    #[serde(default)]
    pub access_profiles: Vec<AccessProfileDoc>,
    #[serde(default)]
    pub tenants: Vec<TenantDoc>,
    /// Portals registered with idbridge's OpenID provider.
    #[serde(default)]
    pub clients: Vec<idbridge_app::portal_clients::ClientDoc>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CatalogDoc {
    #[serde(default)]
    pub sections: Vec<CatalogItemDoc>,
    #[serde(default)]
    pub flags: Vec<CatalogItemDoc>,
    #[serde(default)]
    pub group_rights: Vec<CatalogItemDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogItemDoc {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum LevelDoc {
    Modify,
    Read,
    Restrict,
}

impl From<LevelDoc> for AccessLevel {
    fn from(level: LevelDoc) -> Self {
        match level {
            LevelDoc::Modify => AccessLevel::Modify,
            LevelDoc::Read => AccessLevel::Read,
            LevelDoc::Restrict => AccessLevel::Restrict,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDoc {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Level of every section not listed under `sections`; `restrict` when omitted.
    pub default: Option<LevelDoc>,
    #[serde(default)]
    pub sections: BTreeMap<String, LevelDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessProfileDoc {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The flags that are on.
    #[serde(default)]
    pub flags: BTreeSet<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantDoc {
    pub slug: String,
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "utc")]
    pub time_zone: String,
    #[serde(default)]
    pub allowed_roles: BTreeSet<String>,
    #[serde(default)]
    pub allowed_access_profiles: BTreeSet<String>,
    #[serde(default)]
    pub policy: TenantPolicy,
    /// The tenant's complete mapping rule set; omitted leaves the stored rules alone.
    #[serde(default)]
    pub rules: Option<Vec<Rule>>,
    /// Directory sources (`[[tenants.ldap]]`); kept with the policy.
    #[serde(default)]
    pub ldap: Vec<idbridge_core::directory::LdapSource>,
    /// Verified email domains (home-realm discovery); kept with the policy.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Upstream IdP connections (`[[tenants.oidc]]`); kept with the policy.
    #[serde(default)]
    pub oidc: Vec<idbridge_core::sso::IdpConnection>,
    /// Portal connectors (`[[tenants.connectors]]`); kept with the policy.
    #[serde(default)]
    pub connectors: Vec<idbridge_core::connector::ConnectorConfig>,
}

fn yes() -> bool {
    true
}

fn utc() -> String {
    "UTC".to_owned()
}

/// A rules file for `mapping set-rules`: a JSON list, or TOML with `[[rules]]`.
pub fn read_rules(path: &std::path::Path) -> anyhow::Result<Vec<Rule>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RulesDoc {
        #[serde(default)]
        rules: Vec<Rule>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    // `[[rules]]` (TOML) and `[{…}]` (JSON) both start with a bracket: go by extension,
    // and without one by the second character.
    let is_json = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => true,
        Some("toml") => false,
        _ => !text.trim_start().starts_with("[["),
    };
    let rules = if is_json {
        crate::strict::from_json(text.as_bytes()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    } else {
        crate::strict::from_toml::<RulesDoc>(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?.rules
    };
    Ok(rules)
}

impl ApplyDocument {
    /// Parses TOML; errors carry the line and the key.
    pub fn from_toml(text: &str) -> DomainResult<Self> {
        crate::strict::from_toml(text).map_err(|e| DomainError::invalid("apply file", e.to_string()))
    }

    /// `known_mappers`: `rules` plus the ids of the configured plugins.
    pub fn into_desired(self, known_mappers: BTreeSet<String>) -> DomainResult<DesiredConfig> {
        let catalog = self
            .catalog
            .sections
            .into_iter()
            .map(|i| (CatalogKind::Section, i))
            .chain(self.catalog.flags.into_iter().map(|i| (CatalogKind::Flag, i)))
            .chain(self.catalog.group_rights.into_iter().map(|i| (CatalogKind::GroupRight, i)))
            .map(|(kind, i)| CatalogEntry { kind, name: i.name, description: i.description })
            .collect();
        let roles = self
            .roles
            .into_iter()
            .map(|r| Role {
                name: r.name,
                description: r.description,
                default_level: r.default.map_or(AccessLevel::Restrict, AccessLevel::from),
                levels: r.sections.into_iter().map(|(s, l)| (s, l.into())).collect(),
            })
            .collect();
        let access_profiles = self
            .access_profiles
            .into_iter()
            .map(|p| AccessProfile { name: p.name, description: p.description, flags: p.flags })
            .collect();
        let mut rules = BTreeMap::new();
        let tenants = self
            .tenants
            .into_iter()
            .map(|t| {
                let slug = TenantSlug::parse(&t.slug)?;
                if let Some(r) = t.rules {
                    rules.insert(slug.clone(), r);
                }
                let mut policy = t.policy;
                if !t.ldap.is_empty() {
                    policy.ldap = t.ldap;
                }
                if !t.domains.is_empty() {
                    policy.domains = t
                        .domains
                        .iter()
                        .map(|d| idbridge_core::sso::normalize_domain(d))
                        .collect::<DomainResult<_>>()?;
                }
                if !t.oidc.is_empty() {
                    policy.oidc = t.oidc;
                }
                if !t.connectors.is_empty() {
                    policy.connectors = t.connectors;
                }
                let settings = TenantSettings {
                    name: t.name,
                    enabled: t.enabled,
                    default_time_zone: t.time_zone,
                    allowed_roles: t.allowed_roles,
                    allowed_access_profiles: t.allowed_access_profiles,
                    policy,
                };
                Ok((slug, settings))
            })
            .collect::<DomainResult<_>>()?;
        Ok(DesiredConfig { catalog, roles, access_profiles, tenants, rules, known_mappers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../../config/examples/acme.toml");
        let desired = ApplyDocument::from_toml(text).unwrap().into_desired(["rules".to_string()].into()).unwrap();
        assert_eq!(desired.roles.len(), 3);
        assert_eq!(desired.tenants[0].0.as_str(), "acme");
    }

    #[test]
    fn unknown_keys_and_levels_are_named() {
        let err = ApplyDocument::from_toml("[[roles]]\nname = \"x\"\ndefualt = \"read\"\n").unwrap_err().to_string();
        assert!(err.contains("defualt"), "{err}");
        let err = ApplyDocument::from_toml("[[roles]]\nname = \"x\"\n[roles.sections]\ncdrs = \"write\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("write"), "{err}");
        let err = ApplyDocument::from_toml("[[tenants]]\nslug = \"Bad Slug\"\nname = \"x\"\n")
            .unwrap()
            .into_desired(Default::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("Bad Slug"), "{err}");
    }
}
