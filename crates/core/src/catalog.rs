//! The catalog: the operator's list of portal sections (which roles grant levels on),
//! access-profile flags (Yeti's boolean feature switches) and group-scoped rights (what a
//! person may do for the members of chosen groups, seed 003).
//!
//! The default catalog is taken from the seed documents; operators extend it in config
//! (`[catalog]`) or through `idbridge apply` without code changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{DomainError, DomainResult};

/// Portal sections of PortaBilling self-care and the Cloud PBX (seeds 001–003).
pub const DEFAULT_SECTIONS: &[(&str, &str)] = &[
    ("account", "Account information"),
    ("rateplans", "Rate plans"),
    ("cdrs", "Call detail records"),
    ("cdr_exports", "CDR exports"),
    ("statistics", "Traffic statistics"),
    ("active_calls", "Active calls"),
    ("numberlists", "Number lists"),
    ("invoices", "Invoices"),
    ("payments", "Payments"),
    ("services", "Services"),
    ("transactions", "Transactions"),
    ("recordings", "Call recordings"),
    ("extensions", "PBX extensions"),
    ("queues", "PBX call queues"),
    ("numbers", "Phone numbers"),
    ("voicemail", "Voicemail"),
    ("wallboard", "Wallboard"),
    ("sms", "SMS"),
    ("co_monitoring", "Co-monitoring (listen, whisper, barge)"),
    ("customer_individuals", "Customer individuals: add and manage portal users"),
    ("allowed_roles", "The list of roles allowed for the customer"),
];

/// Every flag of a Yeti customer-portal access profile (seed 000).
pub const DEFAULT_FLAGS: &[(&str, &str)] = &[
    ("account", "View account information"),
    ("allow_listen_recording", "Listen to call recordings"),
    ("outgoing_rateplans", "View outgoing rateplans"),
    ("outgoing_cdrs", "View outgoing CDRs"),
    ("outgoing_cdr_exports", "Export outgoing CDRs"),
    ("outgoing_statistics", "View outgoing statistics"),
    ("outgoing_statistics_active_calls", "Outgoing statistics: active calls count"),
    ("outgoing_statistics_acd", "Outgoing statistics: ACD"),
    ("outgoing_statistics_asr", "Outgoing statistics: ASR"),
    ("outgoing_statistics_failed_calls", "Outgoing statistics: failed calls"),
    ("outgoing_statistics_successful_calls", "Outgoing statistics: successful calls"),
    ("outgoing_statistics_total_calls", "Outgoing statistics: total calls"),
    ("outgoing_statistics_total_duration", "Outgoing statistics: total duration"),
    ("outgoing_statistics_total_price", "Outgoing statistics: total price"),
    ("outgoing_statistics_acd_value", "Outgoing statistics: ACD value"),
    ("outgoing_statistics_asr_value", "Outgoing statistics: ASR value"),
    ("outgoing_statistics_failed_calls_value", "Outgoing statistics: failed calls value"),
    ("outgoing_statistics_successful_calls_value", "Outgoing statistics: successful calls value"),
    ("outgoing_statistics_total_calls_value", "Outgoing statistics: total calls value"),
    ("outgoing_statistics_total_duration_value", "Outgoing statistics: total duration value"),
    ("outgoing_statistics_total_price_value", "Outgoing statistics: total price value"),
    ("outgoing_active_calls", "View active outgoing calls"),
    ("outgoing_numberlists", "View and manage outgoing numberlists"),
    ("incoming_cdrs", "View incoming CDRs"),
    ("incoming_statistics", "View incoming statistics"),
    ("incoming_statistics_active_calls", "Incoming statistics: active calls count"),
    ("incoming_statistics_acd", "Incoming statistics: ACD"),
    ("incoming_statistics_asr", "Incoming statistics: ASR"),
    ("incoming_statistics_failed_calls", "Incoming statistics: failed calls"),
    ("incoming_statistics_successful_calls", "Incoming statistics: successful calls"),
    ("incoming_statistics_total_calls", "Incoming statistics: total calls"),
    ("incoming_statistics_total_duration", "Incoming statistics: total duration"),
    ("incoming_statistics_total_price", "Incoming statistics: total price"),
    ("incoming_statistics_acd_value", "Incoming statistics: ACD value"),
    ("incoming_statistics_asr_value", "Incoming statistics: ASR value"),
    ("incoming_statistics_failed_calls_value", "Incoming statistics: failed calls value"),
    ("incoming_statistics_successful_calls_value", "Incoming statistics: successful calls value"),
    ("incoming_statistics_total_calls_value", "Incoming statistics: total calls value"),
    ("incoming_statistics_total_duration_value", "Incoming statistics: total duration value"),
    ("incoming_statistics_total_price_value", "Incoming statistics: total price value"),
    ("invoices", "View invoices"),
    ("payments", "View payments"),
    ("payments_cryptomus", "Pay via Cryptomus"),
    ("services", "View active services"),
    ("transactions", "View account transactions"),
    // Yeti's later addition (yeti-web db/migrate/20260404183736_add_webrtc_dialer_to_…).
    ("webrtc_dialer", "Place calls from the portal (WebRTC dialer)"),
];

/// Rights scoped to groups of users (Cloud PBX seed 003): each is held for every group or
/// for a set of portal groups (`scopes::GroupReach`).
pub const DEFAULT_GROUP_RIGHTS: &[(&str, &str)] = &[
    ("statistics", "Fetch statistics for members of the group"),
    ("co_monitoring", "Listen in to the calls of members of the group (listen, whisper, barge)"),
    ("recorded_calls", "Recorded calls of members of the group"),
    ("administration", "Manage the members of the group (group administrator)"),
];

/// Whether a catalog entry names a portal section, an access-profile flag or a
/// group-scoped right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogKind {
    Section,
    Flag,
    GroupRight,
}

impl CatalogKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Section => "section",
            Self::Flag => "flag",
            Self::GroupRight => "group_right",
        }
    }

    pub fn parse(s: &str) -> DomainResult<Self> {
        match s {
            "section" => Ok(Self::Section),
            "flag" => Ok(Self::Flag),
            "group_right" => Ok(Self::GroupRight),
            other => {
                Err(DomainError::invalid("catalog kind", format!("{other:?} is not one of section, flag, group_right")))
            }
        }
    }
}

/// One operator-added section or flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub kind: CatalogKind,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

impl CatalogEntry {
    pub fn validate(&self) -> DomainResult<()> {
        validate_identifier(self.kind.as_str(), &self.name)
    }
}

/// Catalog names are snake_case identifiers so they survive every wire format unchanged.
pub fn validate_identifier(what: &str, name: &str) -> DomainResult<()> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            what,
            format!("{name:?} must be snake_case: a-z, 0-9 and _, starting with a letter, at most 64 characters"),
        ))
    }
}

/// The effective catalog: defaults plus config extensions plus stored extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Catalog {
    pub sections: BTreeMap<String, String>,
    pub flags: BTreeMap<String, String>,
    pub group_rights: BTreeMap<String, String>,
}

impl Catalog {
    /// The catalog idbridge ships with.
    pub fn builtin() -> Self {
        let own = |list: &[(&str, &str)]| list.iter().map(|(n, d)| (n.to_string(), d.to_string())).collect();
        Self { sections: own(DEFAULT_SECTIONS), flags: own(DEFAULT_FLAGS), group_rights: own(DEFAULT_GROUP_RIGHTS) }
    }

    /// Adds operator entries; an entry that already exists keeps its name and takes the
    /// new description only when one is given.
    pub fn extend<'a>(&mut self, entries: impl IntoIterator<Item = &'a CatalogEntry>) {
        for entry in entries {
            let map = match entry.kind {
                CatalogKind::Section => &mut self.sections,
                CatalogKind::Flag => &mut self.flags,
                CatalogKind::GroupRight => &mut self.group_rights,
            };
            let slot = map.entry(entry.name.clone()).or_default();
            if !entry.description.is_empty() {
                *slot = entry.description.clone();
            }
        }
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.sections.contains_key(name)
    }

    pub fn has_flag(&self, name: &str) -> bool {
        self.flags.contains_key(name)
    }

    pub fn has_group_right(&self, name: &str) -> bool {
        self.group_rights.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_carries_every_yeti_flag_and_portal_section() {
        let catalog = Catalog::builtin();
        for flag in [
            "account",
            "outgoing_rateplans",
            "outgoing_statistics_total_price_value",
            "incoming_statistics_asr_value",
            "incoming_cdrs",
            "payments_cryptomus",
            "allow_listen_recording",
            "webrtc_dialer",
        ] {
            assert!(catalog.has_flag(flag), "missing flag {flag}");
        }
        // account + listen recording, 21 outgoing, 17 incoming, 5 billing, the WebRTC dialer
        assert_eq!(catalog.flags.len(), 46);
        for section in ["customer_individuals", "allowed_roles", "co_monitoring", "wallboard", "queues"] {
            assert!(catalog.has_section(section), "missing section {section}");
        }
        assert_eq!(catalog.sections.len(), 21);
        for right in ["statistics", "co_monitoring", "recorded_calls", "administration"] {
            assert!(catalog.has_group_right(right), "missing group right {right}");
        }
        assert_eq!(crate::scopes::ADMINISTRATION, "administration");
        for (name, _) in DEFAULT_SECTIONS.iter().chain(DEFAULT_FLAGS).chain(DEFAULT_GROUP_RIGHTS) {
            validate_identifier("name", name).unwrap();
        }
    }

    #[test]
    fn extension_adds_entries_without_losing_builtin_descriptions() {
        let mut catalog = Catalog::builtin();
        catalog.extend(&[
            CatalogEntry { kind: CatalogKind::Section, name: "fax".into(), description: "Fax to mail".into() },
            CatalogEntry { kind: CatalogKind::Flag, name: "account".into(), description: String::new() },
            CatalogEntry {
                kind: CatalogKind::GroupRight,
                name: "queue_reports".into(),
                description: "Queue reports".into(),
            },
        ]);
        assert!(catalog.has_section("fax"));
        assert!(catalog.has_group_right("queue_reports") && !catalog.has_section("queue_reports"));
        assert_eq!(CatalogKind::parse("group_right").unwrap(), CatalogKind::GroupRight);
        assert_eq!(catalog.flags["account"], "View account information");
    }

    #[test]
    fn identifiers_are_snake_case() {
        assert!(validate_identifier("section", "Fax").is_err());
        assert!(validate_identifier("section", "1fax").is_err());
        assert!(validate_identifier("section", "").is_err());
        assert!(validate_identifier("section", "fax_2").is_ok());
    }
}
