//! Individuals: the portal users of a tenant (PortaBilling "customer individuals").

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::schedule::{LocalInstant, parse_time_zone};
use crate::scopes::Scopes;
use crate::tenant::TenantId;
use crate::{DomainError, DomainResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IndividualId(pub Uuid);

impl std::fmt::Display for IndividualId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where an individual stands in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndividualStatus {
    /// Known, but its activation instant has not come yet.
    Pending,
    /// May log in and use the portal.
    Active,
    /// A source says inactive; comes back when the source does.
    Suspended,
    /// Past its expiration, or deprovisioned.
    Expired,
    /// Personal data purged after the retention period; only the audit trail remains.
    Deleted,
}

impl IndividualStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
        }
    }

    /// Pending and active individuals hold access (or will, at activation); taking it
    /// from many at once is what the mass-deprovision guard watches.
    pub fn holds_access(self) -> bool {
        matches!(self, Self::Pending | Self::Active)
    }

    pub fn parse(s: &str) -> DomainResult<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "expired" => Ok(Self::Expired),
            "deleted" => Ok(Self::Deleted),
            other => Err(DomainError::invalid(
                "status",
                format!("{other:?} is not one of pending, active, suspended, expired, deleted"),
            )),
        }
    }
}

/// Where an identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Scim,
    Ldap,
    Oidc,
    Manual,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scim => "scim",
            Self::Ldap => "ldap",
            Self::Oidc => "oidc",
            Self::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> DomainResult<Self> {
        match s {
            "scim" => Ok(Self::Scim),
            "ldap" => Ok(Self::Ldap),
            "oidc" => Ok(Self::Oidc),
            "manual" => Ok(Self::Manual),
            other => Err(DomainError::invalid("source", format!("{other:?} is not one of scim, ldap, oidc, manual"))),
        }
    }
}

/// An immutable identity of the person at one source: SCIM id, LDAP entryUUID or
/// objectGUID, OIDC issuer + subject. Individuals are linked by these, never by email.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceLink {
    pub source: SourceKind,
    /// Which connection of that kind: an LDAP source name, an OIDC issuer, `scim`.
    pub connection: String,
    /// The immutable identifier within that connection.
    pub external_id: String,
}

/// Where an activation or expiration came from. A source's date wins over a mapping's,
/// and either wins over one set by hand; a hand-set date stays while neither sets one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateOrigin {
    Source,
    Mapping,
    Manual,
}

/// Why an individual holds its role, access profile, scopes and dates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Provenance {
    /// The mapping's reasons for each granted part (`role`, `access_profile`,
    /// `scope:queues=101`): mapper, rule and external groups. A re-map replaces them, so
    /// what is no longer justified goes.
    pub mapping: Vec<crate::mapping::reason::Reason>,
    /// The scopes the mapping granted (the individual's scopes are these and the manual
    /// ones).
    pub mapped_scopes: Scopes,
    /// Scopes set by an operator or a delegated administrator; a re-map never removes
    /// them.
    pub manual_scopes: Scopes,
    pub activation_from: Option<DateOrigin>,
    pub expiration_from: Option<DateOrigin>,
}

/// A portal user under a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Individual {
    pub id: IndividualId,
    pub tenant_id: TenantId,
    /// Portal login; unique within the tenant, compared case-insensitively.
    pub login: String,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub role: Option<String>,
    pub access_profile: Option<String>,
    pub scopes: Scopes,
    /// IANA zone the activation and expiration are local to.
    pub time_zone: String,
    /// BCP 47 tag of the language the individual is written to in (SCIM
    /// `preferredLanguage`, or set when created by hand); `None`: the tenant's.
    #[serde(default)]
    pub language: Option<String>,
    pub activation: Option<LocalInstant>,
    pub expiration: Option<LocalInstant>,
    pub status: IndividualStatus,
    pub links: Vec<SourceLink>,
    /// When access was taken by deprovisioning (removed at the source, or a deny): starts
    /// the suspension grace period and the retention period. `None` otherwise, also for a
    /// suspension the source asked for (`active: false`).
    #[serde(default)]
    pub deprovisioned_at: Option<Timestamp>,
    /// When idbridge last took access away (any reason: the source, the mapping, the
    /// calendar); `None` while the individual holds access. The retention period counts
    /// from here — never from a date in the past. Set by the reconciler on every write.
    #[serde(default)]
    pub access_ended_at: Option<Timestamp>,
    /// Why it holds what it holds: the rule or plugin and the groups behind each grant,
    /// and what an operator set by hand (kept across re-maps).
    #[serde(default)]
    pub provenance: Provenance,
    /// Incremented by every write; writers state the version they read.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What an individual *is*, as one comparable value: every field but its identity and
/// bookkeeping (id, tenant, version, when it was created and last written, when access
/// ended — which follows from the status). Built by destructuring the whole individual,
/// so a new field does not compile until it is named here — in the state, or as
/// bookkeeping — and can never be silently left out of "did anything change" or of the
/// audit trail's before and after.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct IndividualState<'a> {
    pub login: &'a str,
    pub email: &'a Option<String>,
    pub given_name: &'a Option<String>,
    pub family_name: &'a Option<String>,
    pub display_name: &'a Option<String>,
    pub role: &'a Option<String>,
    pub access_profile: &'a Option<String>,
    pub scopes: &'a Scopes,
    pub time_zone: &'a str,
    pub language: &'a Option<String>,
    pub activation: &'a Option<LocalInstant>,
    pub expiration: &'a Option<LocalInstant>,
    pub status: IndividualStatus,
    pub links: &'a [SourceLink],
    pub deprovisioned_at: &'a Option<Timestamp>,
    pub provenance: &'a Provenance,
}

impl Individual {
    /// The comparable state (`a.state() == b.state()`: nothing to write).
    pub fn state(&self) -> IndividualState<'_> {
        let Individual {
            id: _,
            tenant_id: _,
            version: _,
            created_at: _,
            updated_at: _,
            access_ended_at: _,
            login,
            email,
            given_name,
            family_name,
            display_name,
            role,
            access_profile,
            scopes,
            time_zone,
            language,
            activation,
            expiration,
            status,
            links,
            deprovisioned_at,
            provenance,
        } = self;
        IndividualState {
            login,
            email,
            given_name,
            family_name,
            display_name,
            role,
            access_profile,
            scopes,
            time_zone,
            language,
            activation,
            expiration,
            status: *status,
            links,
            deprovisioned_at,
            provenance,
        }
    }

    /// Checks everything that does not need other records.
    pub fn validate(&self) -> DomainResult<()> {
        validate_login(&self.login)?;
        if let Some(email) = &self.email {
            validate_email(email)?;
        }
        for (field, value) in
            [("given_name", &self.given_name), ("family_name", &self.family_name), ("display_name", &self.display_name)]
        {
            if let Some(v) = value
                && (v.chars().count() > 256 || v.chars().any(char::is_control))
            {
                return Err(DomainError::invalid(field, "must be at most 256 printable characters"));
            }
        }
        parse_time_zone(&self.time_zone)?;
        if let Some(tag) = &self.language {
            validate_language(tag)?;
        }
        for (field, instant) in [("activation", &self.activation), ("expiration", &self.expiration)] {
            if let Some(instant) = instant
                && instant.time_zone != self.time_zone
            {
                return Err(DomainError::invalid(field, "must be local to the individual's time zone"));
            }
        }
        if let (Some(a), Some(e)) = (&self.activation, &self.expiration)
            && e.at <= a.at
        {
            return Err(DomainError::invalid("expiration", format!("{} is not after activation {}", e.local, a.local)));
        }
        self.scopes.validate()
    }

    /// The status the calendar alone gives at `now`; suspension and deletion are decided
    /// by the reconciliation service, not by the clock.
    pub fn scheduled_status(&self, now: Timestamp) -> IndividualStatus {
        match self.status {
            IndividualStatus::Suspended | IndividualStatus::Deleted => self.status,
            _ if self.expiration.as_ref().is_some_and(|e| e.at <= now) => IndividualStatus::Expired,
            _ if self.activation.as_ref().is_some_and(|a| a.at > now) => IndividualStatus::Pending,
            _ => IndividualStatus::Active,
        }
    }

    /// The key logins are unique by.
    pub fn login_key(&self) -> String {
        self.login.to_lowercase()
    }
}

pub fn validate_login(login: &str) -> DomainResult<()> {
    if login.is_empty() || login.chars().count() > 256 || login.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(DomainError::invalid("login", format!("{login:?} must be 1-256 characters without spaces")));
    }
    Ok(())
}

pub fn validate_email(email: &str) -> DomainResult<()> {
    let ok = email.len() <= 320
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(()) } else { Err(DomainError::invalid("email", format!("{email:?} is not an email address"))) }
}

/// A language tag as RFC 5646 shapes it (`de`, `en-GB`, `zh-Hant-TW`): subtags of one to
/// eight letters or digits joined by `-`, the first (the language) two to eight letters,
/// at most 35 characters — the longest tag RFC 5646 §4.4.1 asks systems to keep.
pub fn validate_language(tag: &str) -> DomainResult<()> {
    let mut subtags = tag.split('-');
    let first_ok =
        subtags.next().is_some_and(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    let rest_ok = subtags.all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()));
    if tag.len() <= 35 && first_ok && rest_ok {
        Ok(())
    } else {
        Err(DomainError::invalid("language", format!("{tag:?} is not a language tag (like \"de\" or \"en-GB\")")))
    }
}

/// Filter for listing individuals; results are ordered by login.
#[derive(Debug, Clone, Default)]
pub struct IndividualQuery {
    pub status: Option<IndividualStatus>,
    /// Return individuals whose login sorts after this one (keyset pagination).
    pub after_login: Option<String>,
    /// Only members of at least one of these portal groups (a group administrator's reach,
    /// or a portal asking for the members of a group). `Some` of an empty set: nobody.
    pub in_groups: Option<std::collections::BTreeSet<String>>,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_as_rfc_5646_shapes_them() {
        for good in ["de", "en-GB", "zh-Hant-TW", "sgn-BE-FR", "de-CH-1996"] {
            assert!(validate_language(good).is_ok(), "{good}");
        }
        for bad in ["", "d", "de_DE", "de-", "-de", "en-GB-toolongsubtag", "dé", "1de", "x-a-b-c-d-e-f-g-h-i-j-k-l-m-n"]
        {
            let error = validate_language(bad).unwrap_err().to_string();
            assert!(error.contains("language"), "{bad}: {error}");
        }
    }

    fn individual() -> Individual {
        let now = crate::clock::now();
        Individual {
            id: IndividualId(Uuid::new_v4()),
            tenant_id: TenantId(Uuid::new_v4()),
            login: "bob@abc.example".into(),
            email: Some("bob@abc.example".into()),
            given_name: None,
            family_name: None,
            display_name: None,
            role: None,
            access_profile: None,
            scopes: Scopes::default(),
            time_zone: "Europe/Berlin".into(),
            language: None,
            activation: None,
            expiration: None,
            status: IndividualStatus::Active,
            links: vec![],
            deprovisioned_at: None,
            access_ended_at: None,
            provenance: Provenance::default(),
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn calendar_decides_pending_active_expired() {
        let mut i = individual();
        i.activation = Some(LocalInstant::parse("2026-03-01", "Europe/Berlin").unwrap());
        i.expiration = Some(LocalInstant::parse("2026-04-01", "Europe/Berlin").unwrap());
        i.validate().unwrap();
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(i.scheduled_status(t("2026-02-28T22:59:59Z")), IndividualStatus::Pending);
        assert_eq!(i.scheduled_status(t("2026-02-28T23:00:00Z")), IndividualStatus::Active);
        assert_eq!(i.scheduled_status(t("2026-03-31T22:00:00Z")), IndividualStatus::Expired);
        i.status = IndividualStatus::Suspended;
        assert_eq!(i.scheduled_status(t("2026-03-10T00:00:00Z")), IndividualStatus::Suspended);
    }

    #[test]
    fn expiration_must_follow_activation_and_share_the_zone() {
        let mut i = individual();
        i.activation = Some(LocalInstant::parse("2026-03-01", "Europe/Berlin").unwrap());
        i.expiration = Some(LocalInstant::parse("2026-03-01", "Europe/Berlin").unwrap());
        assert!(i.validate().unwrap_err().to_string().contains("expiration"));
        i.expiration = Some(LocalInstant::parse("2026-05-01", "UTC").unwrap());
        assert!(i.validate().is_err());
    }

    #[test]
    fn logins_and_emails() {
        assert!(validate_login("bob smith").is_err());
        assert!(validate_email("bob").is_err());
        assert!(validate_email("bob@abc.example").is_ok());
    }
}
