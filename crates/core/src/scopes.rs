//! Scopes: which data a non-admin individual may see and act on — by extensions, queues,
//! numbers and accounts (Cloud PBX seed 002), and by groups of users (seed 003): the
//! portal groups an individual is a member of, and for each group-scoped right
//! (statistics, co-monitoring, recorded calls, administration, and what the operator's
//! catalog adds) either every group or a set of them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{DomainError, DomainResult};

/// The group-scoped right that makes a delegated administrator a group administrator.
pub const ADMINISTRATION: &str = "administration";

/// How far a group-scoped right reaches: the members of every group, or of these groups.
/// Written as `"all"` or as a list of portal group names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupReach {
    All,
    Groups(BTreeSet<String>),
}

impl GroupReach {
    /// Whether this reach includes everything `other` does.
    pub fn covers(&self, other: &GroupReach) -> bool {
        match (self, other) {
            (Self::All, _) => true,
            (Self::Groups(_), Self::All) => false,
            (Self::Groups(mine), Self::Groups(theirs)) => theirs.is_subset(mine),
        }
    }

    /// Groups as rules and plugins list them: `*` among them is every group.
    pub fn listed(groups: impl IntoIterator<Item = String>) -> Self {
        let groups: BTreeSet<String> = groups.into_iter().collect();
        if groups.contains("*") { Self::All } else { Self::Groups(groups) }
    }

    fn union(&mut self, other: &GroupReach) {
        match (&mut *self, other) {
            (Self::All, _) => {}
            (_, Self::All) => *self = Self::All,
            (Self::Groups(mine), Self::Groups(theirs)) => mine.extend(theirs.iter().cloned()),
        }
    }

    /// `"all"` or each group, as scope entries name them.
    fn values(&self) -> Vec<&str> {
        match self {
            Self::All => vec!["all"],
            Self::Groups(groups) => groups.iter().map(String::as_str).collect(),
        }
    }
}

impl Serialize for GroupReach {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::All => serializer.serialize_str("all"),
            Self::Groups(groups) => groups.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for GroupReach {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Word(String),
            Groups(BTreeSet<String>),
        }
        match Written::deserialize(deserializer)? {
            Written::Word(word) if word == "all" => Ok(Self::All),
            Written::Word(word) => {
                Err(serde::de::Error::custom(format!("{word:?}: a group reach is \"all\" or a list of group names")))
            }
            Written::Groups(groups) => Ok(Self::Groups(groups)),
        }
    }
}

/// What data an individual sees. `full_call_reports` wins over the lists for call data;
/// the lists still bound what the individual may configure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scopes {
    pub full_call_reports: bool,
    pub extensions: BTreeSet<String>,
    pub queues: BTreeSet<String>,
    pub phone_numbers: BTreeSet<String>,
    pub billing_accounts: BTreeSet<String>,
    pub default_caller_id: Option<String>,
    /// The portal groups the individual is a member of: what "members of the selected
    /// group" means for the group-scoped rights of others. Left out when empty, so values
    /// written before groups existed read and write back unchanged.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub groups: BTreeSet<String>,
    /// Group-scoped right (a catalog name) → how far it reaches. A right not listed is not
    /// held.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub group_rights: BTreeMap<String, GroupReach>,
}

impl Scopes {
    /// Whether these scopes grant nothing the `other` ones do not. Group membership is not
    /// a grant and is not compared (who may place someone in a group is the
    /// administration right's question, `DelegatedAdmin`).
    pub fn is_within(&self, other: &Scopes) -> bool {
        self.extensions.is_subset(&other.extensions)
            && self.queues.is_subset(&other.queues)
            && self.phone_numbers.is_subset(&other.phone_numbers)
            && self.billing_accounts.is_subset(&other.billing_accounts)
            && (!self.full_call_reports || other.full_call_reports)
            && self
                .group_rights
                .iter()
                .all(|(right, reach)| other.group_rights.get(right).is_some_and(|r| r.covers(reach)))
    }

    /// Whether the groups part differs — memberships or group-scoped rights, in either
    /// direction. Seed 003: changing these permissions logs the user out of every
    /// application, not only when something is taken.
    pub fn group_scopes_differ(&self, other: &Scopes) -> bool {
        self.groups != other.groups || self.group_rights != other.group_rights
    }

    /// Every value is a short printable token: scope values end up in tokens, URLs and
    /// portal queries.
    pub fn validate(&self) -> DomainResult<()> {
        let lists = [
            ("extensions", &self.extensions),
            ("queues", &self.queues),
            ("phone_numbers", &self.phone_numbers),
            ("billing_accounts", &self.billing_accounts),
        ];
        for (name, list) in lists {
            if list.len() > 10_000 {
                return Err(DomainError::invalid(format!("scopes.{name}"), "more than 10000 entries"));
            }
            for value in list {
                check_scope_value(name, value)?;
            }
        }
        if self.groups.len() > 10_000 {
            return Err(DomainError::invalid("scopes.groups", "more than 10000 groups"));
        }
        for group in &self.groups {
            check_group_name("groups", group)?;
        }
        if self.group_rights.len() > 64 {
            return Err(DomainError::invalid("scopes.group_rights", "more than 64 rights"));
        }
        for (right, reach) in &self.group_rights {
            crate::catalog::validate_identifier("scopes.group_rights", right)?;
            if let GroupReach::Groups(groups) = reach {
                if groups.len() > 10_000 {
                    return Err(DomainError::invalid(format!("scopes.group_rights.{right}"), "more than 10000 groups"));
                }
                if groups.is_empty() {
                    return Err(DomainError::invalid(
                        format!("scopes.group_rights.{right}"),
                        "reaches no group: name groups, or \"all\"",
                    ));
                }
                for group in groups {
                    check_group_name(&format!("group_rights.{right}"), group)?;
                }
            }
        }
        if let Some(caller_id) = &self.default_caller_id {
            check_scope_value("default_caller_id", caller_id)?;
            if !self.phone_numbers.is_empty() && !self.phone_numbers.contains(caller_id) && !self.full_call_reports {
                return Err(DomainError::invalid(
                    "scopes.default_caller_id",
                    format!("{caller_id:?} is not one of the individual's phone numbers"),
                ));
            }
        }
        Ok(())
    }

    /// Removes what `other` lists (a hand-set scope taken back). A right reaching every
    /// group is taken back only as a whole (`"all"`).
    pub fn remove(&mut self, other: &Scopes) {
        if other.full_call_reports {
            self.full_call_reports = false;
        }
        self.extensions.retain(|v| !other.extensions.contains(v));
        self.queues.retain(|v| !other.queues.contains(v));
        self.phone_numbers.retain(|v| !other.phone_numbers.contains(v));
        self.billing_accounts.retain(|v| !other.billing_accounts.contains(v));
        if other.default_caller_id.is_some() && self.default_caller_id == other.default_caller_id {
            self.default_caller_id = None;
        }
        self.groups.retain(|g| !other.groups.contains(g));
        for (right, taken) in &other.group_rights {
            let emptied = match (self.group_rights.get_mut(right), taken) {
                (None, _) => false,
                (Some(_), GroupReach::All) => true,
                (Some(GroupReach::All), GroupReach::Groups(_)) => false,
                (Some(GroupReach::Groups(mine)), GroupReach::Groups(theirs)) => {
                    mine.retain(|g| !theirs.contains(g));
                    mine.is_empty()
                }
            };
            if emptied {
                self.group_rights.remove(right);
            }
        }
    }

    /// Union of two scope sets (membership in two queue groups gives both queues).
    pub fn union(&mut self, other: &Scopes) {
        self.full_call_reports |= other.full_call_reports;
        self.extensions.extend(other.extensions.iter().cloned());
        self.queues.extend(other.queues.iter().cloned());
        self.phone_numbers.extend(other.phone_numbers.iter().cloned());
        self.billing_accounts.extend(other.billing_accounts.iter().cloned());
        if self.default_caller_id.is_none() {
            self.default_caller_id.clone_from(&other.default_caller_id);
        }
        self.groups.extend(other.groups.iter().cloned());
        for (right, reach) in &other.group_rights {
            match self.group_rights.get_mut(right) {
                Some(mine) => mine.union(reach),
                None => {
                    self.group_rights.insert(right.clone(), reach.clone());
                }
            }
        }
    }

    /// Each grant as one entry — `full_call_reports`, `queues=101`, `groups=sales`,
    /// `co_monitoring=sales`, `statistics=all` — the names mapping reasons, explanations
    /// and previews use (`scope:<entry>`). The default caller id is a setting, not a grant.
    pub fn entries(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.full_call_reports {
            out.push("full_call_reports".to_owned());
        }
        let lists = [
            ("extensions", &self.extensions),
            ("queues", &self.queues),
            ("phone_numbers", &self.phone_numbers),
            ("billing_accounts", &self.billing_accounts),
            ("groups", &self.groups),
        ];
        for (kind, values) in lists {
            out.extend(values.iter().map(|v| format!("{kind}={v}")));
        }
        for (right, reach) in &self.group_rights {
            out.extend(reach.values().into_iter().map(|v| format!("{right}={v}")));
        }
        out
    }

    /// Every group-scoped right named is one the catalog knows.
    pub fn check_rights_in(&self, catalog: &crate::catalog::Catalog) -> DomainResult<()> {
        let Some(right) = self.group_rights.keys().find(|r| !catalog.has_group_right(r)) else { return Ok(()) };
        let known: Vec<&str> = catalog.group_rights.keys().map(String::as_str).collect();
        Err(DomainError::invalid(
            "scopes.group_rights",
            format!("{right:?} is not a group right of the catalog ({})", known.join(", ")),
        ))
    }

    /// How far the administration right reaches: `None` when it is not given at all (an
    /// administrator by role alone manages the whole organisation).
    pub fn administration(&self) -> Option<&GroupReach> {
        self.group_rights.get(ADMINISTRATION)
    }
}

fn check_scope_value(name: &str, value: &str) -> DomainResult<()> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '.' | '*' | '#'));
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            format!("scopes.{name}"),
            format!("{value:?} must be 1-64 characters of letters, digits and + - _ . * #"),
        ))
    }
}

/// A portal group's name: a scope value without `*` (in rule templates `*` stands for every
/// group) and never `all` (a reach's word for every group).
pub fn check_group_name(name: &str, value: &str) -> DomainResult<()> {
    check_scope_value(name, value)?;
    if value.contains('*') || value.eq_ignore_ascii_case("all") {
        return Err(DomainError::invalid(
            format!("scopes.{name}"),
            format!("{value:?} is not a group name: `*` and `all` stand for every group"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_merges_lists() {
        let mut a = Scopes { queues: ["101".into()].into(), ..Default::default() };
        a.union(&Scopes { queues: ["102".into()].into(), full_call_reports: true, ..Default::default() });
        assert_eq!(a.queues.len(), 2);
        assert!(a.full_call_reports);
    }

    #[test]
    fn bad_values_are_named() {
        let s = Scopes { extensions: ["10 1".into()].into(), ..Default::default() };
        assert!(s.validate().unwrap_err().to_string().contains("scopes.extensions"));
        let s = Scopes {
            phone_numbers: ["+3212345".into()].into(),
            default_caller_id: Some("+999".into()),
            ..Default::default()
        };
        assert!(s.validate().is_err());
    }

    fn groups(names: &[&str]) -> GroupReach {
        GroupReach::Groups(names.iter().map(|n| (*n).to_owned()).collect())
    }

    fn with_right(right: &str, reach: GroupReach) -> Scopes {
        Scopes { group_rights: [(right.to_owned(), reach)].into(), ..Default::default() }
    }

    #[test]
    fn a_reach_is_written_as_all_or_a_list_and_nothing_else() {
        let s = Scopes {
            groups: ["sales".into()].into(),
            group_rights: [("statistics".into(), GroupReach::All), ("co_monitoring".into(), groups(&["sales"]))].into(),
            ..Default::default()
        };
        let value = serde_json::to_value(&s).unwrap();
        assert_eq!(value["group_rights"], serde_json::json!({"co_monitoring": ["sales"], "statistics": "all"}));
        assert_eq!(serde_json::from_value::<Scopes>(value).unwrap(), s);
        let bad = serde_json::json!({"group_rights": {"statistics": "some"}});
        assert!(serde_json::from_value::<Scopes>(bad).unwrap_err().to_string().contains("\"all\" or a list"));
        // Values written before groups existed keep their exact shape.
        let old = serde_json::to_value(Scopes::default()).unwrap();
        assert!(old.get("groups").is_none() && old.get("group_rights").is_none());
    }

    #[test]
    fn all_covers_every_group_and_union_keeps_the_wider_reach() {
        assert!(GroupReach::All.covers(&groups(&["a"])));
        assert!(!groups(&["a"]).covers(&GroupReach::All));
        assert!(groups(&["a", "b"]).covers(&groups(&["a"])));
        assert!(!groups(&["a"]).covers(&groups(&["a", "b"])));
        let mut s = with_right("statistics", groups(&["a"]));
        s.union(&with_right("statistics", groups(&["b"])));
        assert_eq!(s.group_rights["statistics"], groups(&["a", "b"]));
        s.union(&with_right("statistics", GroupReach::All));
        assert_eq!(s.group_rights["statistics"], GroupReach::All);
        assert!(with_right("statistics", groups(&["a"])).is_within(&s));
        assert!(!s.is_within(&with_right("statistics", groups(&["a"]))));
        assert!(!with_right("recorded_calls", groups(&["a"])).is_within(&s), "another right is not held");
    }

    #[test]
    fn removing_a_group_from_a_right_drops_the_right_when_none_is_left() {
        let mut s = with_right("co_monitoring", groups(&["a", "b"]));
        s.remove(&with_right("co_monitoring", groups(&["a"])));
        assert_eq!(s.group_rights["co_monitoring"], groups(&["b"]));
        s.remove(&with_right("co_monitoring", groups(&["b"])));
        assert!(s.group_rights.is_empty());
        let mut all = with_right("statistics", GroupReach::All);
        all.remove(&with_right("statistics", groups(&["a"])));
        assert_eq!(all.group_rights["statistics"], GroupReach::All, "every group is taken back only as a whole");
        all.remove(&with_right("statistics", GroupReach::All));
        assert!(all.group_rights.is_empty());
    }

    #[test]
    fn group_names_and_rights_are_checked() {
        let bad_name = Scopes { groups: ["a b".into()].into(), ..Default::default() };
        assert!(bad_name.validate().unwrap_err().to_string().contains("scopes.groups"));
        let star = Scopes { groups: ["team-*".into()].into(), ..Default::default() };
        assert!(star.validate().is_err());
        let all = with_right("statistics", groups(&["ALL"]));
        assert!(all.validate().is_err());
        assert!(with_right("Statistics", GroupReach::All).validate().is_err());
        assert!(with_right("statistics", groups(&[])).validate().unwrap_err().to_string().contains("reaches no group"));
        assert!(with_right("statistics", groups(&["sales"])).validate().is_ok());
    }

    #[test]
    fn entries_name_every_grant_and_group_changes_are_seen_both_ways() {
        let mut s = with_right("statistics", GroupReach::All);
        s.groups.insert("sales".into());
        s.queues.insert("101".into());
        assert_eq!(s.entries(), ["queues=101", "groups=sales", "statistics=all"]);
        let mut wider = s.clone();
        wider.groups.insert("support".into());
        assert!(s.group_scopes_differ(&wider) && wider.group_scopes_differ(&s));
        let mut other_queue = s.clone();
        other_queue.queues.insert("102".into());
        assert!(!s.group_scopes_differ(&other_queue));
        assert!(s.administration().is_none());
    }
}
