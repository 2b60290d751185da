//! What reconciliation is given: a source's view of a person (`SourcePerson`), a change
//! by hand (`ManualChange`) and an individual created by hand (`NewIndividual`), and the
//! mapping input built from them. A leaf: the ports name these types.

use crate::individual::{Individual, SourceLink};
use crate::mapping::{CurrentAssignment, ExternalGroup, MappingInput, UserFacts};
use crate::tenant::Tenant;

/// A change an operator or delegated administrator makes by hand. (Its wire forms are
/// the adapters': the admin and Portal API bodies, the CLI's flags.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManualChange {
    /// Local date-time in the individual's zone; `Some(None)` clears it; `None` keeps it.
    pub activation: Option<Option<String>>,
    pub expiration: Option<Option<String>>,
    /// IANA zone; the dates keep their local times and move with it.
    pub time_zone: Option<String>,
    /// Language tag; `Some(None)` clears it (the tenant's language again).
    pub language: Option<Option<String>>,
    pub add_scopes: crate::scopes::Scopes,
    pub remove_scopes: crate::scopes::Scopes,
}

/// An individual created by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIndividual {
    pub login: String,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub role: String,
    pub access_profile: Option<String>,
    pub scopes: crate::scopes::Scopes,
    pub time_zone: Option<String>,
    /// Language tag the individual is written to in; `None`: the tenant's.
    pub language: Option<String>,
    /// Local date-times in the individual's zone (or instants with an offset).
    pub activation: Option<String>,
    pub expiration: Option<String>,
}

/// What one source currently says about one person.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourcePerson {
    pub link: SourceLink,
    /// Other immutable identities the source vouches for (a SCIM `externalId` that is the
    /// person's directory id): the person is linked to an individual that has any of them.
    #[serde(default)]
    pub also: Vec<SourceLink>,
    pub facts: UserFacts,
    pub groups: Vec<ExternalGroup>,
    /// The source's own active flag (SCIM `active`, LDAP disabled, …).
    pub active: bool,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    /// Local date-times and their zone, when the source carries them.
    pub activation: Option<String>,
    pub expiration: Option<String>,
    pub time_zone: Option<String>,
}

pub fn mapping_input(tenant: &Tenant, person: &SourcePerson, existing: Option<&Individual>) -> MappingInput {
    MappingInput {
        tenant: tenant.slug.to_string(),
        user: person.facts.clone(),
        groups: person.groups.clone(),
        current: existing.map(|i| CurrentAssignment {
            role: i.role.clone(),
            access_profile: i.access_profile.clone(),
            scopes: i.scopes.clone(),
        }),
    }
}
