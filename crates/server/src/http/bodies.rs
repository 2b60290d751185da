//! Request bodies of the admin and Portal APIs: the wire forms of the domain's inputs,
//! strict (every field known, `server::strict`), converted at the edge.

use idbridge_app::delegated::DelegatedChange;
use idbridge_core::reconcile::{ManualChange, NewIndividual};
use idbridge_core::scopes::Scopes;
use serde::Deserialize;

/// `PATCH …/individuals/{id}` by an operator: dates, time zone, scopes added or removed.
/// An absent date keeps it; `null` clears it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManualChangeBody {
    #[serde(deserialize_with = "crate::strict::present")]
    pub activation: Option<Option<String>>,
    #[serde(deserialize_with = "crate::strict::present")]
    pub expiration: Option<Option<String>>,
    pub time_zone: Option<String>,
    /// A language tag; `null` clears it (the tenant's language again).
    #[serde(deserialize_with = "crate::strict::present")]
    pub language: Option<Option<String>>,
    pub add_scopes: Scopes,
    pub remove_scopes: Scopes,
}

impl From<ManualChangeBody> for ManualChange {
    fn from(body: ManualChangeBody) -> Self {
        let ManualChangeBody { activation, expiration, time_zone, language, add_scopes, remove_scopes } = body;
        Self { activation, expiration, time_zone, language, add_scopes, remove_scopes }
    }
}

/// `POST /portal/v1/individuals`: an individual created by a delegated administrator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIndividualBody {
    pub login: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    pub role: String,
    #[serde(default)]
    pub access_profile: Option<String>,
    #[serde(default)]
    pub scopes: Scopes,
    #[serde(default)]
    pub time_zone: Option<String>,
    /// The language the individual's mails are written in (`de`, `en-GB`); absent: the
    /// tenant's.
    #[serde(default)]
    pub language: Option<String>,
    /// Local date-times in the individual's zone (or instants with an offset).
    #[serde(default)]
    pub activation: Option<String>,
    #[serde(default)]
    pub expiration: Option<String>,
}

impl From<NewIndividualBody> for NewIndividual {
    fn from(body: NewIndividualBody) -> Self {
        let NewIndividualBody {
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
        } = body;
        Self {
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
        }
    }
}

/// `PATCH /portal/v1/individuals/{id}`: what a delegated administrator may change. (Not
/// a flattened `ManualChangeBody`: serde does not refuse unknown keys through `flatten`.)
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegatedChangeBody {
    pub role: Option<String>,
    #[serde(default, deserialize_with = "crate::strict::present")]
    pub access_profile: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::strict::present")]
    pub activation: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::strict::present")]
    pub expiration: Option<Option<String>>,
    pub time_zone: Option<String>,
    #[serde(default, deserialize_with = "crate::strict::present")]
    pub language: Option<Option<String>>,
    #[serde(default)]
    pub add_scopes: idbridge_core::scopes::Scopes,
    #[serde(default)]
    pub remove_scopes: idbridge_core::scopes::Scopes,
}

impl From<DelegatedChangeBody> for DelegatedChange {
    fn from(body: DelegatedChangeBody) -> Self {
        Self {
            role: body.role,
            access_profile: body.access_profile,
            manual: ManualChange {
                activation: body.activation,
                expiration: body.expiration,
                time_zone: body.time_zone,
                language: body.language,
                add_scopes: body.add_scopes,
                remove_scopes: body.remove_scopes,
            },
        }
    }
}
