//! Tenants: the operator's business customers (PortaBilling "customer", Yeti "contractor").

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{DomainError, DomainResult};

/// A tenant's URL-safe identifier: `[a-z0-9-]{2,63}`, not starting or ending with `-`.
/// It appears in SCIM URLs that customers paste into Entra and Okta.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantSlug(String);

impl TenantSlug {
    pub fn parse(raw: &str) -> DomainResult<Self> {
        let ok = (2..=63).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !raw.starts_with('-')
            && !raw.ends_with('-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DomainError::invalid(
                "tenant slug",
                format!("{raw:?} must be 2-63 characters of a-z, 0-9 and -, not starting or ending with -"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantSlug {
    type Error = DomainError;
    fn try_from(value: String) -> DomainResult<Self> {
        Self::parse(&value)
    }
}

impl From<TenantSlug> for String {
    fn from(slug: TenantSlug) -> String {
        slug.0
    }
}

impl std::fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant's internal, immutable identity. Every stored row carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TenantId(pub Uuid);

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What happens to an individual whose source removed it or whose mapping denies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeprovisionAction {
    /// Expire at once.
    Expire,
    /// Suspend for `suspend_grace_days`, then expire.
    Suspend,
}

/// Per-tenant policy. Later capabilities add fields here, each with a safe default so that
/// stored policies written by an older version still read; and, stored as JSON, it is
/// read tolerantly — a field a newer version wrote is ignored, never fatal. Input is
/// strict at the edges instead (the apply file, the admin API: `server::strict`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantPolicy {
    pub deprovision_action: DeprovisionAction,
    pub suspend_grace_days: u32,
    /// Days after expiry before personal data is purged (the audit trail stays).
    pub retention_days: u32,
    /// A change set taking access from more than this percentage of the tenant is held.
    pub mass_deprovision_percent: u8,
    /// ... and from at least this many individuals.
    pub mass_deprovision_min: u32,
    /// Access taken without an approval within this many minutes before a change set
    /// counts towards it: a mass deprovision that arrives as many small requests (Entra
    /// ID and Okta send one request per user) or is re-decided in slices is judged as a
    /// whole. 0: each change set on its own.
    pub mass_deprovision_window_minutes: u32,
    /// Create individuals at first SSO login from the IdP's claims.
    pub jit_provisioning: bool,
    /// Role given when every mapper abstains; `None` means no access.
    pub default_role: Option<String>,
    /// SCIM: `add`/`replace` on `emails[type eq "work"].value` when no such email exists
    /// creates it, as Microsoft Entra ID expects.
    pub scim_create_missing_filtered_value: bool,
    /// The tenant's mapping pipeline, in order: `rules` (the built-in rules mapper) and
    /// plugin ids from the daemon's `[[plugins]]`.
    pub mappers: Vec<String>,
    /// Directories (LDAP, Active Directory) idbridge reads this tenant's people from.
    pub ldap: Vec<crate::directory::LdapSource>,
    /// The LDAP source whose immutable id SCIM users carry as `externalId` (Entra ID
    /// provisioning users synced from on-premises AD: map `objectGUID` /
    /// `onPremisesImmutableId` to `externalId`). Such a SCIM user and the directory's
    /// person are one individual; without it, sources are never linked.
    pub link_scim_external_id_to: Option<String>,
    /// The tenant's verified email domains: the login page sends `bob@abc.example` to
    /// this tenant's IdP. A domain belongs to one tenant.
    pub domains: Vec<String>,
    /// Upstream OpenID providers the tenant's people log in with; the first is used
    /// unless the login names another.
    pub oidc: Vec<crate::idp::IdpConnection>,
    /// Portal connectors: idbridge carries the tenant's individuals into the portal.
    pub connectors: Vec<crate::connector::config::ConnectorConfig>,
    /// Sign-in without an IdP: a password and a second factor, set from an invitation.
    pub local_sign_in: crate::local_sign_in::LocalSignInPolicy,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        Self {
            deprovision_action: DeprovisionAction::Expire,
            suspend_grace_days: 7,
            retention_days: 90,
            mass_deprovision_percent: 10,
            mass_deprovision_min: 25,
            mass_deprovision_window_minutes: 60,
            jit_provisioning: false,
            default_role: None,
            scim_create_missing_filtered_value: true,
            mappers: vec!["rules".to_owned()],
            ldap: Vec::new(),
            link_scim_external_id_to: None,
            domains: Vec::new(),
            oidc: Vec::new(),
            connectors: Vec::new(),
            local_sign_in: Default::default(),
        }
    }
}

impl TenantPolicy {
    pub fn validate(&self) -> DomainResult<()> {
        if self.mass_deprovision_percent > 100 {
            return Err(DomainError::invalid("policy.mass_deprovision_percent", "must be 0-100"));
        }
        if self.mass_deprovision_window_minutes > 7 * 24 * 60 {
            return Err(DomainError::invalid(
                "policy.mass_deprovision_window_minutes",
                "must be at most 10080 (a week)",
            ));
        }
        if self.retention_days > 36_500 || self.suspend_grace_days > 3_650 {
            return Err(DomainError::invalid("policy", "retention_days or suspend_grace_days is unreasonably large"));
        }
        if let Some(name) = &self.link_scim_external_id_to
            && !self.ldap.iter().any(|s| &s.name == name)
        {
            return Err(DomainError::invalid(
                "policy.link_scim_external_id_to",
                format!("{name:?} is not one of the tenant's LDAP sources"),
            ));
        }
        self.local_sign_in.validate()?;
        let mut names = std::collections::BTreeSet::new();
        for source in &self.ldap {
            source.validate()?;
            if !names.insert(source.name.as_str()) {
                return Err(DomainError::invalid("ldap.name", format!("{:?} is listed twice", source.name)));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for connection in &self.oidc {
            connection.validate()?;
            if !names.insert(connection.name.as_str()) {
                return Err(DomainError::invalid("oidc.name", format!("{:?} is listed twice", connection.name)));
            }
            if let Some(link) = &connection.link_by
                && link.source != "scim"
                && !self.ldap.iter().any(|s| s.name == link.source)
            {
                return Err(DomainError::invalid(
                    format!("oidc.{}.link_by.source", connection.name),
                    format!("{:?} is neither scim nor one of the tenant's LDAP sources", link.source),
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for connector in &self.connectors {
            connector.validate()?;
            if !names.insert(connector.name.as_str()) {
                return Err(DomainError::invalid("connectors.name", format!("{:?} is listed twice", connector.name)));
            }
        }
        for domain in &self.domains {
            if crate::idp::normalize_domain(domain)? != *domain {
                return Err(DomainError::invalid("domains", format!("{domain:?} must be written in lower case")));
            }
        }
        Ok(())
    }
}

/// A business customer of the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: TenantSlug,
    pub name: String,
    pub enabled: bool,
    /// IANA zone used for individuals that do not carry their own.
    pub default_time_zone: String,
    /// Role names the tenant's individuals may hold.
    pub allowed_roles: BTreeSet<String>,
    /// Access-profile names the tenant's individuals may hold.
    pub allowed_access_profiles: BTreeSet<String>,
    pub policy: TenantPolicy,
    pub version: i64,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
}

/// The operator-editable part of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    pub name: String,
    pub enabled: bool,
    pub default_time_zone: String,
    pub allowed_roles: BTreeSet<String>,
    pub allowed_access_profiles: BTreeSet<String>,
    pub policy: TenantPolicy,
}

impl TenantSettings {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            enabled: true,
            default_time_zone: "UTC".into(),
            allowed_roles: BTreeSet::new(),
            allowed_access_profiles: BTreeSet::new(),
            policy: TenantPolicy::default(),
        }
    }

    pub fn validate(&self) -> DomainResult<()> {
        if self.name.trim().is_empty() || self.name.chars().count() > 200 || self.name.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "tenant name",
                format!("{:?} must be 1-200 printable characters", self.name),
            ));
        }
        crate::schedule::parse_time_zone(&self.default_time_zone)?;
        self.policy.validate()
    }
}

impl Tenant {
    pub fn settings(&self) -> TenantSettings {
        TenantSettings {
            name: self.name.clone(),
            enabled: self.enabled,
            default_time_zone: self.default_time_zone.clone(),
            allowed_roles: self.allowed_roles.clone(),
            allowed_access_profiles: self.allowed_access_profiles.clone(),
            policy: self.policy.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for good in ["ac", "acme", "acme-2", "a1"] {
            TenantSlug::parse(good).unwrap();
        }
        for bad in ["a", "Acme", "acme_co", "-acme", "acme-", "ac me", &"a".repeat(64), "acmé"] {
            let err = TenantSlug::parse(bad).unwrap_err();
            assert!(err.to_string().contains("tenant slug"), "{bad}: {err}");
        }
    }

    #[test]
    fn settings_validate_time_zone_and_name() {
        let mut s = TenantSettings::new("ACME");
        s.validate().unwrap();
        s.default_time_zone = "Mars/Olympus".into();
        assert!(s.validate().unwrap_err().to_string().contains("Mars/Olympus"));
        let s = TenantSettings::new(" ");
        assert!(s.validate().is_err());
    }
}
