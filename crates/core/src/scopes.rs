//! Scopes: which data a non-admin individual may see (Cloud PBX seed 002, group-scoped
//! permissions of seed 003).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{DomainError, DomainResult};

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
}

impl Scopes {
    /// Whether these scopes grant nothing the `other` ones do not.
    pub fn is_within(&self, other: &Scopes) -> bool {
        self.extensions.is_subset(&other.extensions)
            && self.queues.is_subset(&other.queues)
            && self.phone_numbers.is_subset(&other.phone_numbers)
            && self.billing_accounts.is_subset(&other.billing_accounts)
            && (!self.full_call_reports || other.full_call_reports)
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

    /// Removes what `other` lists (a hand-set scope taken back).
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
}
