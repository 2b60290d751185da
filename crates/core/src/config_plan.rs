//! The declarative operator configuration behind `idbridge apply`: the desired catalog
//! extensions, roles, access profiles and tenants are compared with what is stored, and
//! the difference becomes a plan of changes that the store applies in one transaction.
//!
//! `apply` adds and updates; it never deletes what a file leaves out, because a partial
//! file must not silently take access away from a tenant.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use uuid::Uuid;

use crate::audit::{AuditContext, AuditRecord};
use crate::catalog::{Catalog, CatalogEntry};
use crate::mapping::rules::{Rule, validate_rules};
use crate::role::{AccessProfile, Role};
use crate::tenant::{Tenant, TenantId, TenantSettings, TenantSlug};
use crate::{DomainError, DomainResult};

/// What the operator's file asks for.
#[derive(Debug, Clone, Default)]
pub struct DesiredConfig {
    pub catalog: Vec<CatalogEntry>,
    pub roles: Vec<Role>,
    pub access_profiles: Vec<AccessProfile>,
    pub tenants: Vec<(TenantSlug, TenantSettings)>,
    /// Mapping rules per tenant; a tenant listed here gets exactly these rules.
    pub rules: BTreeMap<TenantSlug, Vec<Rule>>,
    /// Mapper ids the pipeline may name: `rules` and the configured plugins.
    pub known_mappers: BTreeSet<String>,
}

/// What is stored now.
#[derive(Debug, Clone, Default)]
pub struct CurrentConfig {
    pub catalog: Vec<CatalogEntry>,
    pub roles: Vec<Role>,
    pub access_profiles: Vec<AccessProfile>,
    pub tenants: Vec<Tenant>,
    pub rules: BTreeMap<TenantSlug, Vec<Rule>>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
// An apply plans a handful of changes; boxing the tenant settings would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum ConfigChange {
    PutCatalogEntry {
        before: Option<CatalogEntry>,
        after: CatalogEntry,
    },
    PutRole {
        before: Option<Role>,
        after: Role,
    },
    PutAccessProfile {
        before: Option<AccessProfile>,
        after: AccessProfile,
    },
    CreateTenant {
        id: TenantId,
        slug: TenantSlug,
        settings: TenantSettings,
    },
    UpdateTenant {
        id: TenantId,
        slug: TenantSlug,
        expected_version: i64,
        before: TenantSettings,
        after: TenantSettings,
    },
    PutRules {
        id: TenantId,
        slug: TenantSlug,
        before: Vec<Rule>,
        after: Vec<Rule>,
    },
}

impl ConfigChange {
    /// One line for the operator: `+` created, `~` changed.
    pub fn describe(&self) -> String {
        fn mark<T>(before: &Option<T>) -> &'static str {
            if before.is_some() { "~" } else { "+" }
        }
        match self {
            Self::PutCatalogEntry { before, after } => {
                format!("{} catalog {} {}", mark(before), after.kind.as_str(), after.name)
            }
            Self::PutRole { before, after } => format!("{} role {:?}", mark(before), after.name),
            Self::PutAccessProfile { before, after } => format!("{} access profile {:?}", mark(before), after.name),
            Self::CreateTenant { slug, .. } => format!("+ tenant {slug}"),
            Self::UpdateTenant { slug, before, after, .. } => {
                format!("~ tenant {slug} ({})", changed_tenant_fields(before, after).join(", "))
            }
            Self::PutRules { slug, before, after, .. } => {
                format!("~ mapping rules of {slug} ({} → {} rules)", before.len(), after.len())
            }
        }
    }

    /// The audit record of this change.
    pub fn audit(&self, ctx: &AuditContext) -> AuditRecord {
        let to_json = |v: &dyn erased::Json| v.json();
        match self {
            Self::PutCatalogEntry { before, after } => ctx.record(
                None,
                "catalog_entry",
                format!("{}:{}", after.kind.as_str(), after.name),
                if before.is_some() { "catalog_entry.updated" } else { "catalog_entry.created" },
                before.as_ref().map(|b| to_json(b)),
                Some(to_json(after)),
            ),
            Self::PutRole { before, after } => ctx.record(
                None,
                "role",
                after.name.clone(),
                if before.is_some() { "role.updated" } else { "role.created" },
                before.as_ref().map(|b| to_json(b)),
                Some(to_json(after)),
            ),
            Self::PutAccessProfile { before, after } => ctx.record(
                None,
                "access_profile",
                after.name.clone(),
                if before.is_some() { "access_profile.updated" } else { "access_profile.created" },
                before.as_ref().map(|b| to_json(b)),
                Some(to_json(after)),
            ),
            Self::CreateTenant { id, slug, settings } => ctx.record(
                Some(*id),
                "tenant",
                slug.as_str(),
                "tenant.created",
                None,
                Some(json!({ "slug": slug, "settings": settings })),
            ),
            Self::UpdateTenant { id, slug, before, after, .. } => ctx.record(
                Some(*id),
                "tenant",
                slug.as_str(),
                "tenant.updated",
                Some(to_json(before)),
                Some(to_json(after)),
            ),
            Self::PutRules { id, slug, before, after } => ctx.record(
                Some(*id),
                "mapping_rules",
                slug.as_str(),
                "mapping_rules.replaced",
                Some(to_json(before)),
                Some(to_json(after)),
            ),
        }
    }
}

/// Serialising domain values for audit before/after snapshots.
mod erased {
    pub trait Json {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

fn changed_tenant_fields(before: &TenantSettings, after: &TenantSettings) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if before.name != after.name {
        fields.push("name");
    }
    if before.enabled != after.enabled {
        fields.push("enabled");
    }
    if before.default_time_zone != after.default_time_zone {
        fields.push("time_zone");
    }
    if before.allowed_roles != after.allowed_roles {
        fields.push("allowed_roles");
    }
    if before.allowed_access_profiles != after.allowed_access_profiles {
        fields.push("allowed_access_profiles");
    }
    if before.policy != after.policy {
        fields.push("policy");
    }
    fields
}

/// Computes the changes that bring `current` to `desired`, validating the whole desired
/// state first so that a bad file changes nothing.
pub fn plan(base: &Catalog, current: &CurrentConfig, desired: &DesiredConfig) -> DomainResult<Vec<ConfigChange>> {
    let mut changes = Vec::new();

    // Catalog first: roles and profiles below may name the new entries.
    let mut catalog = base.clone();
    catalog.extend(&current.catalog);
    let stored_entries: BTreeMap<_, _> = current.catalog.iter().map(|e| ((e.kind, e.name.clone()), e)).collect();
    let mut seen = BTreeSet::new();
    for entry in &desired.catalog {
        entry.validate()?;
        if !seen.insert((entry.kind, entry.name.clone())) {
            return Err(DomainError::invalid(
                "catalog",
                format!("{} {:?} is listed twice", entry.kind.as_str(), entry.name),
            ));
        }
        let before = stored_entries.get(&(entry.kind, entry.name.clone())).map(|e| (*e).clone());
        if before.as_ref() != Some(entry) {
            changes.push(ConfigChange::PutCatalogEntry { before, after: entry.clone() });
        }
    }
    catalog.extend(&desired.catalog);

    let stored_roles: BTreeMap<_, _> = current.roles.iter().map(|r| (r.name.clone(), r)).collect();
    let mut role_names: BTreeSet<String> = stored_roles.keys().cloned().collect();
    let mut seen = BTreeSet::new();
    for role in &desired.roles {
        role.validate(&catalog)?;
        if !seen.insert(role.name.clone()) {
            return Err(DomainError::invalid("roles", format!("role {:?} is listed twice", role.name)));
        }
        role_names.insert(role.name.clone());
        let before = stored_roles.get(&role.name).map(|r| (*r).clone());
        if before.as_ref() != Some(role) {
            changes.push(ConfigChange::PutRole { before, after: role.clone() });
        }
    }

    let stored_profiles: BTreeMap<_, _> = current.access_profiles.iter().map(|p| (p.name.clone(), p)).collect();
    let mut profile_names: BTreeSet<String> = stored_profiles.keys().cloned().collect();
    let mut seen = BTreeSet::new();
    for profile in &desired.access_profiles {
        profile.validate(&catalog)?;
        if !seen.insert(profile.name.clone()) {
            return Err(DomainError::invalid(
                "access_profiles",
                format!("access profile {:?} is listed twice", profile.name),
            ));
        }
        profile_names.insert(profile.name.clone());
        let before = stored_profiles.get(&profile.name).map(|p| (*p).clone());
        if before.as_ref() != Some(profile) {
            changes.push(ConfigChange::PutAccessProfile { before, after: profile.clone() });
        }
    }

    let stored_tenants: BTreeMap<_, _> = current.tenants.iter().map(|t| (t.slug.clone(), t)).collect();
    let mut seen = BTreeSet::new();
    for (slug, settings) in &desired.tenants {
        settings.validate()?;
        if !seen.insert(slug.clone()) {
            return Err(DomainError::invalid("tenants", format!("tenant {slug} is listed twice")));
        }
        check_tenant_references(slug, settings, &role_names, &profile_names)?;
        for mapper in &settings.policy.mappers {
            if !desired.known_mappers.contains(mapper) {
                return Err(DomainError::invalid(
                    "policy.mappers",
                    format!(
                        "tenant {slug} names mapper {mapper:?}, which is neither \"rules\" nor a configured plugin"
                    ),
                ));
            }
        }
        let id = match stored_tenants.get(slug) {
            None => {
                let id = TenantId(Uuid::new_v4());
                changes.push(ConfigChange::CreateTenant { id, slug: slug.clone(), settings: settings.clone() });
                id
            }
            Some(tenant) => {
                let before = tenant.settings();
                if &before != settings {
                    changes.push(ConfigChange::UpdateTenant {
                        id: tenant.id,
                        slug: slug.clone(),
                        expected_version: tenant.version,
                        before,
                        after: settings.clone(),
                    });
                }
                tenant.id
            }
        };
        if let Some(rules) = desired.rules.get(slug) {
            validate_rules(rules).map_err(|e| DomainError::invalid("rules", format!("tenant {slug}: {e}")))?;
            for rule in rules {
                if let Some(role) = &rule.role
                    && !settings.allowed_roles.contains(role)
                {
                    return Err(DomainError::invalid(
                        "rules",
                        format!(
                            "tenant {slug}: rule {:?} grants role {role:?}, which is not among the tenant's allowed roles",
                            rule.name
                        ),
                    ));
                }
                if let Some(right) = rule.scopes.group_rights.keys().find(|r| !catalog.has_group_right(r)) {
                    return Err(DomainError::invalid(
                        "rules",
                        format!(
                            "tenant {slug}: rule {:?} grants group right {right:?}, which is not in the catalog \
                             (add it under [catalog] group_rights)",
                            rule.name
                        ),
                    ));
                }
                if let Some(profile) = &rule.access_profile
                    && !settings.allowed_access_profiles.contains(profile)
                {
                    return Err(DomainError::invalid(
                        "rules",
                        format!(
                            "tenant {slug}: rule {:?} grants access profile {profile:?}, which the tenant does not allow",
                            rule.name
                        ),
                    ));
                }
            }
            let before = current.rules.get(slug).cloned().unwrap_or_default();
            if &before != rules {
                changes.push(ConfigChange::PutRules { id, slug: slug.clone(), before, after: rules.clone() });
            }
        }
    }
    for slug in desired.rules.keys() {
        if !desired.tenants.iter().any(|(s, _)| s == slug) {
            return Err(DomainError::invalid(
                "rules",
                format!("rules for tenant {slug}, which the file does not list"),
            ));
        }
    }
    Ok(changes)
}

/// A tenant may only allow roles and profiles that exist, and its default role must be
/// one of its allowed roles.
pub fn check_tenant_references(
    slug: &TenantSlug,
    settings: &TenantSettings,
    role_names: &BTreeSet<String>,
    profile_names: &BTreeSet<String>,
) -> DomainResult<()> {
    for role in &settings.allowed_roles {
        if !role_names.contains(role) {
            return Err(DomainError::invalid("allowed_roles", format!("tenant {slug} allows unknown role {role:?}")));
        }
    }
    for profile in &settings.allowed_access_profiles {
        if !profile_names.contains(profile) {
            return Err(DomainError::invalid(
                "allowed_access_profiles",
                format!("tenant {slug} allows unknown access profile {profile:?}"),
            ));
        }
    }
    if let Some(default_role) = &settings.policy.default_role
        && !settings.allowed_roles.contains(default_role)
    {
        return Err(DomainError::invalid(
            "policy.default_role",
            format!("tenant {slug}: default role {default_role:?} is not among its allowed roles"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::AccessLevel;

    fn role(name: &str) -> Role {
        Role {
            name: name.into(),
            description: String::new(),
            default_level: AccessLevel::Read,
            levels: [("invoices".to_string(), AccessLevel::Restrict)].into(),
        }
    }

    fn desired() -> DesiredConfig {
        let mut settings = TenantSettings::new("ACME");
        settings.allowed_roles.insert("PBX admin".into());
        DesiredConfig {
            catalog: vec![],
            roles: vec![role("PBX admin")],
            access_profiles: vec![],
            tenants: vec![(TenantSlug::parse("acme").unwrap(), settings)],
            rules: BTreeMap::new(),
            known_mappers: ["rules".to_string()].into(),
        }
    }

    #[test]
    fn first_plan_creates_and_an_unchanged_state_plans_nothing() {
        let base = Catalog::builtin();
        let changes = plan(&base, &CurrentConfig::default(), &desired()).unwrap();
        assert_eq!(changes.len(), 2);
        let ConfigChange::CreateTenant { id, slug, settings } = &changes[1] else { panic!("{changes:?}") };
        let now = crate::clock::now();
        let current = CurrentConfig {
            roles: vec![role("PBX admin")],
            tenants: vec![Tenant {
                id: *id,
                slug: slug.clone(),
                name: settings.name.clone(),
                enabled: true,
                default_time_zone: "UTC".into(),
                allowed_roles: settings.allowed_roles.clone(),
                allowed_access_profiles: Default::default(),
                policy: Default::default(),
                version: 1,
                created_at: now,
                updated_at: now,
            }],
            ..Default::default()
        };
        assert!(plan(&base, &current, &desired()).unwrap().is_empty());
    }

    #[test]
    fn unknown_role_in_allowed_roles_is_named() {
        let mut d = desired();
        d.tenants[0].1.allowed_roles.insert("Wizard".into());
        let err = plan(&Catalog::builtin(), &CurrentConfig::default(), &d).unwrap_err();
        assert!(err.to_string().contains("\"Wizard\""), "{err}");
    }

    #[test]
    fn a_role_may_use_a_section_added_in_the_same_file() {
        let mut d = desired();
        d.catalog.push(CatalogEntry {
            kind: crate::catalog::CatalogKind::Section,
            name: "fax".into(),
            description: String::new(),
        });
        d.roles[0].levels.insert("fax".into(), AccessLevel::Modify);
        assert_eq!(plan(&Catalog::builtin(), &CurrentConfig::default(), &d).unwrap().len(), 3);
    }
}
