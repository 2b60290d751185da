//! When did a directory person change? A digest over the explicit fields of a
//! `SourcePerson`, in a fixed order and a versioned encoding — not over its serde form,
//! where adding a field to the type would make every stored person look changed (and
//! re-plan a 100,000-person directory at the first run after an upgrade).
//!
//! Rules for changing this file: a field added to `SourcePerson`, `UserFacts`,
//! `ExternalGroup` or `SourceLink` does not compile here until it is placed (the
//! destructuring is exhaustive). Append it *after* the existing fields and write it only
//! when it is not empty, so that every person without it keeps its digest. Changing the
//! encoding of an existing field needs a new `VERSION`.

use sha2::{Digest, Sha256};

use crate::individual::SourceLink;
use crate::mapping::{ExternalGroup, UserFacts};

use super::input::SourcePerson;

/// Prefixes every digest; a stored digest without it predates this encoding.
pub const VERSION: &str = "v1:";

/// Length-prefixed fields: no two different field lists encode alike.
struct Encoder(Sha256);

impl Encoder {
    fn str(&mut self, value: &str) {
        self.0.update((value.len() as u64).to_be_bytes());
        self.0.update(value.as_bytes());
    }

    fn opt(&mut self, value: Option<&str>) {
        match value {
            None => self.0.update([0]),
            Some(v) => {
                self.0.update([1]);
                self.str(v);
            }
        }
    }

    fn count(&mut self, n: usize) {
        self.0.update((n as u64).to_be_bytes());
    }

    fn link(&mut self, link: &SourceLink) {
        let SourceLink { source, connection, external_id } = link;
        self.str(source.as_str());
        self.str(connection);
        self.str(external_id);
    }
}

impl SourcePerson {
    /// The person's change digest (`VERSION` + hex SHA-256). Groups are compared as a set
    /// (a directory may list them in any order); everything else as given.
    pub fn change_digest(&self) -> String {
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
        } = self;
        let mut e = Encoder(Sha256::new());
        e.link(link);
        e.count(also.len());
        also.iter().for_each(|l| e.link(l));
        let UserFacts {
            login,
            emails,
            given_name: fact_given,
            family_name: fact_family,
            display_name: fact_display,
            title,
            department,
            employee_number,
            manager,
            custom,
            source,
        } = facts;
        e.str(login);
        e.count(emails.len());
        emails.iter().for_each(|m| e.str(m));
        for v in [fact_given, fact_family, fact_display, title, department, employee_number, manager] {
            e.opt(v.as_deref());
        }
        e.count(custom.len());
        for (k, v) in custom {
            e.str(k);
            e.str(v);
        }
        e.opt(source.map(|s| s.as_str()));
        let mut sorted: Vec<&ExternalGroup> = groups.iter().collect();
        sorted.sort_by(|a, b| {
            (a.source.as_str(), &a.id, &a.display_name, &a.via).cmp(&(
                b.source.as_str(),
                &b.id,
                &b.display_name,
                &b.via,
            ))
        });
        e.count(sorted.len());
        for ExternalGroup { source, id, display_name, via } in sorted {
            e.str(source.as_str());
            e.str(id);
            e.str(display_name);
            e.count(via.len());
            via.iter().for_each(|v| e.str(v));
        }
        e.0.update([u8::from(*active)]);
        for v in [email, given_name, family_name, display_name, activation, expiration, time_zone] {
            e.opt(v.as_deref());
        }
        format!("{VERSION}{}", hex::encode(e.0.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::individual::SourceKind;

    fn bob() -> SourcePerson {
        SourcePerson {
            link: SourceLink { source: SourceKind::Ldap, connection: "corp".into(), external_id: "guid-1".into() },
            also: vec![],
            facts: UserFacts {
                login: "bob@acme.example".into(),
                emails: vec!["bob@acme.example".into()],
                given_name: Some("Bob".into()),
                source: Some(SourceKind::Ldap),
                ..UserFacts::default()
            },
            groups: vec![
                ExternalGroup {
                    source: SourceKind::Ldap,
                    id: "g1".into(),
                    display_name: "pbx-admins".into(),
                    via: vec![],
                },
                ExternalGroup { source: SourceKind::Ldap, id: "g2".into(), display_name: "staff".into(), via: vec![] },
            ],
            active: true,
            email: Some("bob@acme.example".into()),
            given_name: Some("Bob".into()),
            family_name: None,
            display_name: None,
            activation: None,
            expiration: Some("2027-04-20T00:00".into()),
            time_zone: Some("Europe/Berlin".into()),
        }
    }

    /// The encoding is a stored format: this value may only change with `VERSION`.
    #[test]
    fn the_digest_of_a_known_person_never_changes() {
        assert_eq!(bob().change_digest(), "v1:b03506dd984cb05753fad361946d6c464f1e3ea7d395f7cf7304dba0944af936",);
    }

    #[test]
    fn every_field_counts_and_group_order_does_not() {
        let base = bob().change_digest();
        let mut reordered = bob();
        reordered.groups.reverse();
        assert_eq!(reordered.change_digest(), base);
        let changes: Vec<fn(&mut SourcePerson)> = vec![
            |p| p.active = false,
            |p| p.expiration = None,
            |p| p.facts.title = Some("CTO".into()),
            |p| {
                p.facts.custom.insert("extensionAttribute1".into(), "x".into());
            },
            |p| p.groups[0].via.push("outer".into()),
            |p| p.link.external_id = "guid-2".into(),
            // Moving a value between adjacent fields is a change (length-prefixed).
            |p| {
                p.given_name = None;
                p.family_name = Some("Bob".into());
            },
        ];
        for (n, change) in changes.iter().enumerate() {
            let mut p = bob();
            change(&mut p);
            assert_ne!(p.change_digest(), base, "change {n} went unnoticed");
        }
    }
}
