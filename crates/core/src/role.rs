//! Roles (PortaBilling "customer self-care" roles: a level per portal section) and access
//! profiles (Yeti's named sets of boolean feature flags). Both are defined by the operator
//! and offered to tenants through their allowed lists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, validate_identifier};
use crate::{DomainError, DomainResult};

/// What a role lets an individual do in one portal section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLevel {
    /// The section is hidden.
    Restrict,
    /// The section is visible, read only.
    Read,
    /// The section is visible and editable.
    Modify,
}

impl AccessLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restrict => "restrict",
            Self::Read => "read",
            Self::Modify => "modify",
        }
    }

    pub fn parse(s: &str) -> DomainResult<Self> {
        match s.to_ascii_lowercase().as_str() {
            "restrict" => Ok(Self::Restrict),
            "read" => Ok(Self::Read),
            "modify" => Ok(Self::Modify),
            _ => Err(DomainError::invalid("access level", format!("{s:?} is not one of modify, read, restrict"))),
        }
    }
}

/// Role and access-profile names are what operators see in PortaBilling ("PBX admin"), so
/// they are free text within sane bounds rather than identifiers.
pub fn validate_display_name(what: &str, name: &str) -> DomainResult<()> {
    if name.trim() != name || name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            what,
            format!("{name:?} must be 1-128 printable characters without leading or trailing spaces"),
        ));
    }
    Ok(())
}

/// An operator-defined permission set of type customer self-care.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Level of every section the role does not name. `restrict` unless stated, so a new
    /// catalog section is hidden until an operator decides otherwise.
    pub default_level: AccessLevel,
    /// Levels the role states explicitly.
    pub levels: BTreeMap<String, AccessLevel>,
}

impl Role {
    pub fn validate(&self, catalog: &Catalog) -> DomainResult<()> {
        validate_display_name("role name", &self.name)?;
        for section in self.levels.keys() {
            if !catalog.has_section(section) {
                return Err(DomainError::invalid(
                    "role",
                    format!("role {:?} names unknown section {section:?}; add it to the catalog first", self.name),
                ));
            }
        }
        Ok(())
    }

    /// The level for one section.
    pub fn level(&self, section: &str) -> AccessLevel {
        self.levels.get(section).copied().unwrap_or(self.default_level)
    }

    /// Section → level for every section of the catalog: what portals read.
    pub fn effective_permissions(&self, catalog: &Catalog) -> BTreeMap<String, AccessLevel> {
        catalog.sections.keys().map(|s| (s.clone(), self.level(s))).collect()
    }

    /// True when `self` grants nothing beyond `other` in any section. Delegated
    /// administrators may only hand out roles that are not above their own.
    pub fn is_within(&self, other: &Role, catalog: &Catalog) -> bool {
        catalog.sections.keys().all(|s| self.level(s) <= other.level(s))
    }
}

/// An operator-defined named set of portal feature flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessProfile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Flags that are on; every other catalog flag is off.
    pub flags: std::collections::BTreeSet<String>,
}

impl AccessProfile {
    pub fn validate(&self, catalog: &Catalog) -> DomainResult<()> {
        validate_display_name("access profile name", &self.name)?;
        for flag in &self.flags {
            validate_identifier("flag", flag)?;
            if !catalog.has_flag(flag) {
                return Err(DomainError::invalid(
                    "access profile",
                    format!("access profile {:?} names unknown flag {flag:?}; add it to the catalog first", self.name),
                ));
            }
        }
        Ok(())
    }

    /// Flag → on/off for every flag of the catalog.
    pub fn effective_flags(&self, catalog: &Catalog) -> BTreeMap<String, bool> {
        catalog.flags.keys().map(|f| (f.clone(), self.flags.contains(f))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(default_level: AccessLevel, levels: &[(&str, AccessLevel)]) -> Role {
        Role {
            name: "r".into(),
            description: String::new(),
            default_level,
            levels: levels.iter().map(|(s, l)| (s.to_string(), *l)).collect(),
        }
    }

    #[test]
    fn unnamed_sections_take_the_default_level() {
        let catalog = Catalog::builtin();
        let pbx = role(AccessLevel::Read, &[("extensions", AccessLevel::Modify), ("invoices", AccessLevel::Restrict)]);
        let perms = pbx.effective_permissions(&catalog);
        assert_eq!(perms["extensions"], AccessLevel::Modify);
        assert_eq!(perms["invoices"], AccessLevel::Restrict);
        assert_eq!(perms["cdrs"], AccessLevel::Read);
        assert_eq!(perms.len(), catalog.sections.len());
    }

    #[test]
    fn unknown_section_is_named_in_the_error() {
        let err = role(AccessLevel::Read, &[("faxes", AccessLevel::Modify)]).validate(&Catalog::builtin()).unwrap_err();
        assert!(err.to_string().contains("\"faxes\""), "{err}");
    }

    #[test]
    fn a_role_is_within_another_only_if_no_section_is_higher() {
        let catalog = Catalog::builtin();
        let admin = role(AccessLevel::Modify, &[]);
        let pbx = role(AccessLevel::Read, &[("extensions", AccessLevel::Modify)]);
        assert!(pbx.is_within(&admin, &catalog));
        assert!(!admin.is_within(&pbx, &catalog));
    }

    #[test]
    fn levels_parse_case_insensitively_and_name_bad_values() {
        assert_eq!(AccessLevel::parse("Modify").unwrap(), AccessLevel::Modify);
        assert!(AccessLevel::parse("write").unwrap_err().to_string().contains("write"));
    }
}
