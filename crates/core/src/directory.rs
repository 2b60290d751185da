//! Directory sources of a tenant (LDAP, Active Directory): where to read users and
//! groups, how to bind, and which attributes mean what. Pure configuration; the
//! `idbridge-ldap` crate reads directories with it.

use serde::{Deserialize, Serialize};

use crate::{DomainError, DomainResult};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    /// OpenLDAP and 389-ds: `entryUUID`, `memberOf` overlay, `pwdAccountLockedTime` /
    /// `nsAccountLock`.
    #[default]
    Openldap,
    /// Active Directory: binary `objectGUID`, `userAccountControl`, `accountExpires`,
    /// ranged `member` values.
    ActiveDirectory,
}

/// How a group names its members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Membership {
    /// `member` holds member DNs (groupOfNames, AD groups).
    #[default]
    Member,
    /// `uniqueMember` holds member DNs (groupOfUniqueNames).
    UniqueMember,
    /// `memberUid` holds member logins (posixGroup); no nesting.
    MemberUid,
    /// Users carry `memberOf` with their groups' DNs.
    MemberOf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchScope {
    Base,
    One,
    #[default]
    Sub,
}

/// Which attribute holds what. Unset fields take the flavour's usual attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttributeMap {
    pub login: Option<String>,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub title: Option<String>,
    pub department: Option<String>,
    pub employee_number: Option<String>,
    /// The immutable identifier: `entryUUID`, `objectGUID`, `nsUniqueId`.
    pub id: Option<String>,
    pub group_name: Option<String>,
    /// An attribute whose presence, or one of `disabled_values`, means disabled (besides
    /// the flavour's own: `userAccountControl`, `pwdAccountLockedTime`, `nsAccountLock`).
    pub disabled: Option<String>,
    pub disabled_values: Vec<String>,
    /// Expiry: `accountExpires` (FILETIME) on AD; on others a generalized time or
    /// `shadowExpire` (days since 1970).
    pub expiry: Option<String>,
}

/// Resolved attribute names (the map with the flavour's defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub login: String,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub display_name: String,
    pub title: String,
    pub department: String,
    pub employee_number: String,
    pub id: String,
    pub group_name: String,
    pub disabled: Option<String>,
    pub disabled_values: Vec<String>,
    pub expiry: Option<String>,
}

/// Stored inside the tenant's policy: read tolerantly, like it (unknown fields are
/// refused at the edges).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LdapSource {
    /// Unique within the tenant: `corp`, `ad-emea`.
    pub name: String,
    /// Tried in order (failover): `ldap://`, `ldaps://`.
    pub urls: Vec<String>,
    #[serde(default)]
    pub start_tls: bool,
    /// PEM file with the CA certificates that sign the directory's certificate (ldaps://
    /// and StartTLS); without it, the bundled web PKI roots are trusted.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Skip certificate checks (test directories only).
    #[serde(default)]
    pub tls_insecure: bool,
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// The bind password is read from this file, or from this environment variable; it is
    /// never stored.
    #[serde(default)]
    pub bind_password_file: Option<String>,
    #[serde(default)]
    pub bind_password_env: Option<String>,
    pub user_base: String,
    #[serde(default)]
    pub user_scope: SearchScope,
    #[serde(default)]
    pub user_filter: Option<String>,
    #[serde(default)]
    pub group_base: Option<String>,
    #[serde(default)]
    pub group_filter: Option<String>,
    #[serde(default)]
    pub flavour: Flavour,
    #[serde(default)]
    pub membership: Membership,
    /// Expand groups within groups (cycle-safe).
    #[serde(default = "yes")]
    pub nested_groups: bool,
    #[serde(default)]
    pub attributes: AttributeMap,
    #[serde(default = "page_size")]
    pub page_size: u32,
    #[serde(default = "timeout_seconds")]
    pub timeout_seconds: u64,
    /// Seconds between scheduled runs by the daemon; 0 runs only on demand.
    #[serde(default = "schedule_seconds")]
    pub schedule_seconds: u64,
    /// Runs in between read only users changed since the last run (`modifyTimestamp`,
    /// AD `uSNChanged`), every group, and — in Active Directory — the users deleted since
    /// (their tombstones); a full run, which also finds people moved out of the base and
    /// deletions in other directories, happens when the last one is older than this. 0:
    /// every run is full.
    #[serde(default = "full_run_seconds")]
    pub full_run_seconds: u64,
}

fn yes() -> bool {
    true
}
fn page_size() -> u32 {
    500
}
fn timeout_seconds() -> u64 {
    30
}
fn schedule_seconds() -> u64 {
    900
}
fn full_run_seconds() -> u64 {
    86_400
}

impl LdapSource {
    pub fn validate(&self) -> DomainResult<()> {
        let field = |f: &str| format!("ldap.{}.{f}", self.name);
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 63
            && self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok_name {
            return Err(DomainError::invalid("ldap.name", format!("{:?} must be 1-63 of a-z, 0-9, -", self.name)));
        }
        if self.urls.is_empty() {
            return Err(DomainError::invalid(field("urls"), "at least one ldap:// or ldaps:// URL"));
        }
        for url in &self.urls {
            if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
                return Err(DomainError::invalid(field("urls"), format!("{url:?} is not an ldap:// or ldaps:// URL")));
            }
        }
        if self.bind_password_file.is_some() && self.bind_password_env.is_some() {
            return Err(DomainError::invalid(
                field("bind_password_file"),
                "give a file or an environment variable, not both",
            ));
        }
        if self.user_base.trim().is_empty() {
            return Err(DomainError::invalid(field("user_base"), "must not be empty"));
        }
        for (name, filter) in [("user_filter", &self.user_filter), ("group_filter", &self.group_filter)] {
            if let Some(filter) = filter
                && !balanced(filter)
            {
                return Err(DomainError::invalid(
                    field(name),
                    format!("{filter:?} is not a parenthesised LDAP filter"),
                ));
            }
        }
        if !(1..=5000).contains(&self.page_size) {
            return Err(DomainError::invalid(field("page_size"), "must be 1-5000"));
        }
        if !(1..=3600).contains(&self.timeout_seconds) {
            return Err(DomainError::invalid(field("timeout_seconds"), "must be 1-3600"));
        }
        Ok(())
    }

    pub fn attributes(&self) -> Attributes {
        let a = &self.attributes;
        let ad = self.flavour == Flavour::ActiveDirectory;
        let pick = |v: &Option<String>, openldap: &str, active_directory: &str| {
            v.clone().unwrap_or_else(|| if ad { active_directory } else { openldap }.to_owned())
        };
        Attributes {
            login: pick(&a.login, "uid", "sAMAccountName"),
            email: pick(&a.email, "mail", "mail"),
            given_name: pick(&a.given_name, "givenName", "givenName"),
            family_name: pick(&a.family_name, "sn", "sn"),
            display_name: pick(&a.display_name, "cn", "displayName"),
            title: pick(&a.title, "title", "title"),
            department: pick(&a.department, "departmentNumber", "department"),
            employee_number: pick(&a.employee_number, "employeeNumber", "employeeID"),
            id: pick(&a.id, "entryUUID", "objectGUID"),
            group_name: pick(&a.group_name, "cn", "cn"),
            disabled: a.disabled.clone(),
            disabled_values: a.disabled_values.clone(),
            expiry: a.expiry.clone().or_else(|| ad.then(|| "accountExpires".to_owned())),
        }
    }

    /// The attribute incremental runs select changed users by.
    pub fn change_attribute(&self) -> &'static str {
        match self.flavour {
            Flavour::Openldap => "modifyTimestamp",
            Flavour::ActiveDirectory => "uSNChanged",
        }
    }

    pub fn user_filter(&self) -> String {
        self.user_filter.clone().unwrap_or_else(|| match self.flavour {
            Flavour::Openldap => "(objectClass=inetOrgPerson)".into(),
            Flavour::ActiveDirectory => "(&(objectCategory=person)(objectClass=user))".into(),
        })
    }

    pub fn group_filter(&self) -> String {
        self.group_filter.clone().unwrap_or_else(|| match (self.flavour, self.membership) {
            (Flavour::ActiveDirectory, _) => "(objectClass=group)".into(),
            (_, Membership::UniqueMember) => "(objectClass=groupOfUniqueNames)".into(),
            (_, Membership::MemberUid) => "(objectClass=posixGroup)".into(),
            _ => "(objectClass=groupOfNames)".into(),
        })
    }
}

fn balanced(filter: &str) -> bool {
    let mut depth = 0i32;
    for c in filter.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0 && filter.starts_with('(') && filter.ends_with(')')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> LdapSource {
        serde_json::from_value(serde_json::json!({
            "name": "corp", "urls": ["ldap://127.0.0.1:389"], "user_base": "ou=people,dc=acme,dc=example"
        }))
        .unwrap()
    }

    #[test]
    fn defaults_follow_the_flavour() {
        let mut s = source();
        s.validate().unwrap();
        assert_eq!(s.attributes().id, "entryUUID");
        assert_eq!(s.user_filter(), "(objectClass=inetOrgPerson)");
        s.flavour = Flavour::ActiveDirectory;
        assert_eq!(s.attributes().id, "objectGUID");
        assert_eq!(s.attributes().login, "sAMAccountName");
        assert_eq!(s.attributes().expiry.as_deref(), Some("accountExpires"));
    }

    #[test]
    fn immutable_ids_from_other_systems() {
        assert_eq!(
            normalize_immutable_id("{3F2504E0-4F89-11D3-9A0C-0305E82C3301}"),
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
        );
        // base64 of E0 04 25 3F 89 4F D3 11 9A 0C 03 05 E8 2C 33 01
        assert_eq!(normalize_immutable_id("4AQlP4lP0xGaDAMF6CwzAQ=="), "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        assert_eq!(normalize_immutable_id("Emp-42"), "emp-42");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let mut s = source();
        s.urls = vec!["http://x".into()];
        assert!(s.validate().unwrap_err().to_string().contains("ldap.corp.urls"));
        let mut s = source();
        s.user_filter = Some("(uid=*".into());
        assert!(s.validate().unwrap_err().to_string().contains("user_filter"));
        let mut s = source();
        s.page_size = 0;
        assert!(s.validate().unwrap_err().to_string().contains("page_size"));
    }
}

/// An immutable directory id as another system carries it, in the form the LDAP reader
/// produces: a GUID or UUID in lower-case canonical form (also from base64 of AD's 16
/// `objectGUID` bytes, as Entra's `onPremisesImmutableId` is); anything else lower-cased.
pub fn normalize_immutable_id(raw: &str) -> String {
    let raw = raw.trim();
    if let Ok(uuid) = raw.trim_matches(['{', '}']).parse::<uuid::Uuid>() {
        return uuid.to_string();
    }
    use base64::Engine;
    if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(raw)
        && b.len() == 16
    {
        // objectGUID bytes: the first three fields are little-endian.
        return uuid::Uuid::from_bytes([
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
        ])
        .to_string();
    }
    raw.to_lowercase()
}

/// How a sync run ended, or that it is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Read completely and applied.
    Succeeded,
    /// Read completely; the change set waits for an operator (mass-deprovision guard).
    Held,
    /// Read completely; nothing applied on purpose.
    DryRun,
    /// The read or the apply failed; nobody's access changed.
    Failed,
    /// The process was asked to stop during the run; the next run does what it did not.
    Cancelled,
    /// Recorded when the run starts (it holds the source's lease); its outcome replaces it.
    Running,
    /// Its process ended without finishing (killed, crashed, the machine lost): found
    /// still `running` by the next run to take the lease. What it wrote stays (each page
    /// whole); the next run does the rest.
    Abandoned,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Held => "held",
            Self::DryRun => "dry_run",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Running => "running",
            Self::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> DomainResult<Self> {
        Ok(match s {
            "succeeded" => Self::Succeeded,
            "held" => Self::Held,
            "dry_run" => Self::DryRun,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "running" => Self::Running,
            "abandoned" => Self::Abandoned,
            other => return Err(DomainError::Storage(format!("unknown sync run status {other:?}"))),
        })
    }
}

/// Counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSummary {
    pub users: u64,
    pub groups: u64,
    /// People whose facts changed since the last complete run (or are new).
    pub changed: u64,
    /// People gone from the directory.
    pub removed: u64,
    /// People whose facts did not change but whose individual did not hold what they
    /// should (repaired by a full run's comparison).
    pub drift: u64,
    pub creates: u64,
    pub updates: u64,
    /// Writes that take access (suspend, expire).
    pub takes_access: u64,
    pub written: u64,
    pub warnings: Vec<String>,
    /// The held change set, when the guard held the run's changes.
    pub change_set: Option<uuid::Uuid>,
    /// Which URL answered.
    pub url: String,
    /// `full` or `incremental`.
    pub mode: String,
    /// The highest change mark seen (`modifyTimestamp` or `uSNChanged`): where the next
    /// incremental run starts.
    pub high_water: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    pub id: uuid::Uuid,
    pub tenant_id: crate::tenant::TenantId,
    pub source: String,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub status: RunStatus,
    pub summary: RunSummary,
    pub error: Option<String>,
}
