//! The JSON that crosses the plugin boundary. It mirrors idbridge's mapping contract but
//! is owned here, versioned with [`crate::ABI_VERSION`], so that plugins depend on this
//! small crate only.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalGroup {
    /// `scim`, `ldap`, `oidc` or `manual`.
    pub source: String,
    pub id: String,
    pub display_name: String,
    #[serde(default)]
    pub via: Vec<String>,
}

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
    pub custom: BTreeMap<String, String>,
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scopes {
    pub full_call_reports: bool,
    pub extensions: BTreeSet<String>,
    pub queues: BTreeSet<String>,
    pub phone_numbers: BTreeSet<String>,
    pub billing_accounts: BTreeSet<String>,
    pub default_caller_id: Option<String>,
    /// Portal groups the person is a member of. Added within ABI 1: absent when empty, so
    /// plugins built before it read the same JSON.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub groups: BTreeSet<String>,
    /// Group-scoped right → the portal groups it reaches; `["*"]` is every group, as in
    /// the rules' templates.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub group_rights: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
    #[serde(default)]
    pub current: Option<CurrentAssignment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Grant,
    Deny,
    Abstain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub mapper: String,
    #[serde(default)]
    pub rule: Option<String>,
    pub grants: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapperOutput {
    pub verdict: Verdict,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub access_profile: Option<String>,
    #[serde(default)]
    pub scopes: Scopes,
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
