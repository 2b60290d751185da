//! The stored formats of the JSON columns, kept apart from the domain types.
//!
//! A domain type may gain, lose or rename a field; what is already in the database does
//! not change with it, and one instance may read rows that a newer or an older one wrote
//! (a rollback, a rolling upgrade of several instances on one PostgreSQL database). So:
//!
//! - every JSON value is written as an envelope, `{"format": N, "value": …}`, with the
//!   format this version writes ([`FORMAT`]);
//! - readers take any format as far as they understand it: unknown fields, in the
//!   envelope or inside the value, are ignored and never fatal; a value written before
//!   the envelope existed (format 0: the bare value) is read as it is;
//! - the person a source reports, the largest and most often written value, has its own
//!   stored type ([`StoredPerson`]) naming every field, so a field added to
//!   `SourcePerson` is a decision made here, pinned by a golden test, and never a silent
//!   change of 100,000 rows.
//!
//! Strictness belongs to input (configuration, apply files, API bodies), never here.

use idbridge_core::individual::SourceLink;
use idbridge_core::mapping::{ExternalGroup, UserFacts};
use idbridge_core::reconcile::SourcePerson;
use idbridge_core::{DomainError, DomainResult};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The envelope format this version writes.
pub(crate) const FORMAT: u32 = 1;

#[derive(Serialize)]
struct Envelope<'a, T> {
    format: u32,
    value: &'a T,
}

#[derive(Deserialize)]
struct Enveloped<T> {
    /// Required, though any number is read: it is what tells an envelope from a bare
    /// value that has a field called `value`.
    #[serde(rename = "format")]
    _format: u32,
    value: T,
}

/// `value` in this version's envelope.
pub(crate) fn write<T: Serialize>(value: &T) -> String {
    // Plain data (no maps with non-string keys) always serialises.
    serde_json::to_string(&Envelope { format: FORMAT, value }).unwrap_or_else(|_| "null".to_owned())
}

/// A stored value of any format; `column` names it in the error.
pub(crate) fn read<T: DeserializeOwned>(column: &str, text: &str) -> DomainResult<T> {
    // The envelope first: a bare value whose fields all have defaults would also accept
    // an envelope (ignoring `format` and `value`) and come out empty.
    match serde_json::from_str::<Enveloped<T>>(text) {
        Ok(stored) => Ok(stored.value),
        Err(enveloped) => match serde_json::from_str::<T>(text) {
            Ok(bare) => Ok(bare),
            Err(bare) => Err(unreadable(column, text, enveloped, bare)),
        },
    }
}

fn unreadable(column: &str, text: &str, enveloped: serde_json::Error, bare: serde_json::Error) -> DomainError {
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    match serde_json::from_str::<Format>(text) {
        Ok(Format { format }) if format > FORMAT => DomainError::Storage(format!(
            "stored {column} was written by a newer idbridge (format {format}; this version reads up to \
             {FORMAT}) in a way this one cannot read: {enveloped}"
        )),
        Ok(_) => DomainError::Storage(format!("stored {column} is not valid: {enveloped}")),
        Err(_) => DomainError::Storage(format!("stored {column} is not valid: {bare}")),
    }
}

/// What one source said about one person, as stored (directory records, login records).
/// Format 1 has the field names `SourcePerson` was stored with before the envelope, so
/// those rows read as format 1. Every field but the link may be missing.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredPerson {
    link: SourceLink,
    #[serde(default)]
    also: Vec<SourceLink>,
    #[serde(default)]
    facts: UserFacts,
    #[serde(default)]
    groups: Vec<ExternalGroup>,
    #[serde(default = "active")]
    active: bool,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    activation: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
}

/// A source that did not say is not taken to have disabled the person; the reconciler
/// decides from the other facts.
fn active() -> bool {
    true
}

impl From<&SourcePerson> for StoredPerson {
    fn from(p: &SourcePerson) -> Self {
        // Destructured so that a field added to `SourcePerson` does not compile until it
        // has a stored form here.
        let SourcePerson {
            link,
            also,
            facts,
            groups,
            active,
            email,
            given_name,
            family_name,
            display_name,
            activation,
            expiration,
            time_zone,
        } = p.clone();
        StoredPerson {
            link,
            also,
            facts,
            groups,
            active,
            email,
            given_name,
            family_name,
            display_name,
            activation,
            expiration,
            time_zone,
        }
    }
}

impl From<StoredPerson> for SourcePerson {
    fn from(p: StoredPerson) -> Self {
        SourcePerson {
            link: p.link,
            also: p.also,
            facts: p.facts,
            groups: p.groups,
            active: p.active,
            email: p.email,
            given_name: p.given_name,
            family_name: p.family_name,
            display_name: p.display_name,
            activation: p.activation,
            expiration: p.expiration,
            time_zone: p.time_zone,
        }
    }
}

pub(crate) fn write_person(person: &SourcePerson) -> String {
    write(&StoredPerson::from(person))
}

pub(crate) fn read_person(column: &str, text: &str) -> DomainResult<SourcePerson> {
    read::<StoredPerson>(column, text).map(SourcePerson::from)
}

#[cfg(test)]
mod tests {
    use idbridge_core::individual::SourceKind;
    use idbridge_core::scopes::Scopes;
    use idbridge_core::tenant::TenantPolicy;

    use super::*;

    fn bob() -> SourcePerson {
        SourcePerson {
            link: SourceLink { source: SourceKind::Ldap, connection: "corp".into(), external_id: "guid-1".into() },
            also: vec![],
            facts: UserFacts { login: "bob@acme.example".into(), ..UserFacts::default() },
            groups: vec![ExternalGroup {
                source: SourceKind::Ldap,
                id: "g-1".into(),
                display_name: "pbx-admins".into(),
                via: vec![],
            }],
            active: false,
            email: Some("bob@acme.example".into()),
            given_name: Some("Bob".into()),
            family_name: None,
            display_name: None,
            activation: Some("2026-04-20T09:00".into()),
            expiration: None,
            time_zone: Some("Europe/Berlin".into()),
        }
    }

    /// Format 1 as written: this text must stay readable by every later version.
    const PERSON_FORMAT_1: &str = r#"{"format":1,"value":{"link":{"source":"ldap","connection":"corp","external_id":"guid-1"},"also":[],"facts":{"login":"bob@acme.example","emails":[],"given_name":null,"family_name":null,"display_name":null,"title":null,"department":null,"employee_number":null,"manager":null,"custom":{},"source":null},"groups":[{"source":"ldap","id":"g-1","display_name":"pbx-admins","via":[]}],"active":false,"email":"bob@acme.example","given_name":"Bob","family_name":null,"display_name":null,"activation":"2026-04-20T09:00","expiration":null,"time_zone":"Europe/Berlin"}}"#;

    #[test]
    fn a_person_is_stored_in_format_1_and_read_back() {
        assert_eq!(read_person("person", &write_person(&bob())).unwrap(), bob());
        assert_eq!(read_person("person", PERSON_FORMAT_1).unwrap(), bob());
    }

    #[test]
    fn a_person_stored_before_the_envelope_is_read() {
        let bare = serde_json::to_string(&bob()).unwrap();
        assert_eq!(read_person("person", &bare).unwrap(), bob());
    }

    #[test]
    fn what_a_newer_version_added_is_ignored() {
        let mut newer: serde_json::Value = serde_json::from_str(PERSON_FORMAT_1).unwrap();
        newer["format"] = 2.into();
        newer["written_by"] = "idbridge 9".into();
        newer["value"]["pronouns"] = "he/him".into();
        newer["value"]["facts"]["cost_centre"] = "4711".into();
        assert_eq!(read_person("person", &newer.to_string()).unwrap(), bob());
        // And a newer version that dropped optional fields.
        let sparse = r#"{"format":2,"value":{"link":{"source":"ldap","connection":"corp","external_id":"guid-1"}}}"#;
        let read = read_person("person", sparse).unwrap();
        assert!(read.active && read.groups.is_empty() && read.facts == UserFacts::default());
    }

    #[test]
    fn a_value_no_version_can_read_names_the_column_and_the_format() {
        let e = read_person("directory person", r#"{"format":3,"value":{"link":7}}"#).unwrap_err().to_string();
        assert!(e.contains("directory person") && e.contains("newer idbridge (format 3"), "{e}");
        let e = read::<Scopes>("scopes", "[1, 2]").unwrap_err().to_string();
        assert!(e.contains("stored scopes is not valid"), "{e}");
    }

    #[test]
    fn values_whose_fields_all_have_defaults_are_not_mistaken_for_an_envelope() {
        let mut scopes = Scopes::default();
        scopes.queues.insert("101".into());
        assert_eq!(read::<Scopes>("scopes", &write(&scopes)).unwrap(), scopes);
        assert_eq!(read::<Scopes>("scopes", r#"{"queues":["101"]}"#).unwrap(), scopes);
    }

    #[test]
    fn a_policy_stored_bare_or_enveloped_reads_the_same() {
        let policy = TenantPolicy { domains: vec!["acme.example".into()], ..TenantPolicy::default() };
        let bare = serde_json::to_string(&policy).unwrap();
        assert_eq!(read::<TenantPolicy>("policy", &bare).unwrap(), policy);
        assert_eq!(read::<TenantPolicy>("policy", &write(&policy)).unwrap(), policy);
    }
}
