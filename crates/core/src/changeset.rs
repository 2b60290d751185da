//! Change sets: everything one operation (a SCIM request, a rule change, an LDAP run)
//! would do to a tenant's individuals, planned before anything is written. The
//! mass-deprovision guard looks at a whole change set: when it would take access from
//! more than the tenant's threshold, it is held for an operator instead of applied.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::ChangeKind;
use crate::individual::{Individual, IndividualId, IndividualStatus, SourceLink};
use crate::tenant::{TenantId, TenantPolicy};
use crate::{DomainError, DomainResult};

/// One write the reconciliation service intends: the individual as read (`None` for a
/// create) and as it should become.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedWrite {
    pub before: Option<Individual>,
    pub after: Individual,
    /// Audit action: `individual.created`, `individual.reconciled`, `individual.deprovisioned`, …
    pub action: String,
}

impl PlannedWrite {
    pub fn kind(&self) -> ChangeKind {
        match (self.before.as_ref().map(|b| b.status), self.after.status) {
            (None, _) => ChangeKind::IndividualCreated,
            (Some(a), b) if a == b => ChangeKind::IndividualUpdated,
            (_, IndividualStatus::Active) => ChangeKind::IndividualActivated,
            (_, IndividualStatus::Suspended) => ChangeKind::IndividualSuspended,
            (_, IndividualStatus::Expired) => ChangeKind::IndividualExpired,
            (_, IndividualStatus::Deleted) => ChangeKind::IndividualDeleted,
            (_, IndividualStatus::Pending) => ChangeKind::IndividualUpdated,
        }
    }

    /// The individual holds access now and would not afterwards.
    pub fn takes_access(&self) -> bool {
        self.before.as_ref().is_some_and(|b| b.status.holds_access()) && !self.after.status.holds_access()
    }
}

/// The fields of an individual's state that differ, as two JSON objects: their values
/// before and after (the audit trail's before and after, and what a held write shows).
pub(crate) fn changed_fields(before: &Individual, after: &Individual) -> (serde_json::Value, serde_json::Value) {
    let as_map = |i: &Individual| match serde_json::to_value(i.state()) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (mut old, mut new) = (as_map(before), as_map(after));
    old.retain(|field, value| new.get(field) != Some(value));
    new.retain(|field, _| old.contains_key(field));
    (serde_json::Value::Object(old), serde_json::Value::Object(new))
}

/// One write of a held change set as it is kept while it waits: enough to show an
/// operator what it would do and to re-plan its person on approval — not the two full
/// copies of the individual its plan carried (100,000 of those made one 366 MB row).
/// Approval never applies it (the sources may have moved on): it says whom to re-plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldWrite {
    pub individual_id: IndividualId,
    pub login: String,
    /// Audit action: `individual.created`, `individual.deprovisioned`, …
    pub action: String,
    /// The status as read (`None`: this write creates the individual) and as it would become.
    pub before: Option<IndividualStatus>,
    pub after: IndividualStatus,
    /// The individual holds access now and would not afterwards.
    pub takes_access: bool,
    /// The fields that would change, before and after (a create: every field after).
    /// Why the mapping decided (provenance) and the links are not repeated here.
    pub changed_before: serde_json::Value,
    pub changed_after: serde_json::Value,
    /// The person's identities at their sources, which approval re-plans.
    pub links: Vec<SourceLink>,
}

impl HeldWrite {
    pub fn of(write: &PlannedWrite) -> Self {
        let (mut changed_before, mut changed_after) = match &write.before {
            Some(before) => changed_fields(before, &write.after),
            None => (
                serde_json::Value::Object(serde_json::Map::new()),
                serde_json::to_value(write.after.state()).unwrap_or_default(),
            ),
        };
        for side in [&mut changed_before, &mut changed_after] {
            if let Some(map) = side.as_object_mut() {
                map.remove("provenance");
                map.remove("links");
            }
        }
        Self {
            individual_id: write.after.id,
            login: write.after.login.clone(),
            action: write.action.clone(),
            before: write.before.as_ref().map(|b| b.status),
            after: write.after.status,
            takes_access: write.takes_access(),
            changed_before,
            changed_after,
            links: write.after.links.clone(),
        }
    }

    /// The held writes of planned ones, a person once: where the plan has two writes for
    /// one individual, the later is kept (in its place).
    pub fn all_of(writes: &[PlannedWrite]) -> Vec<Self> {
        let mut last = std::collections::HashMap::with_capacity(writes.len());
        for (n, write) in writes.iter().enumerate() {
            last.insert(write.after.id, n);
        }
        writes.iter().enumerate().filter(|(n, w)| last[&w.after.id] == *n).map(|(_, w)| Self::of(w)).collect()
    }

    /// How it counts in the set's summary.
    pub fn counts_as(&self) -> WriteCount {
        match (self.before, self.takes_access) {
            (None, _) => WriteCount::Create,
            (Some(_), true) => WriteCount::TakesAccess,
            (Some(_), false) => WriteCount::Update,
        }
    }
}

/// The three counts of a [`ChangeSummary`] a write can add to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCount {
    Create,
    Update,
    TakesAccess,
}

impl WriteCount {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::TakesAccess => "takes_access",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "create" => Some(Self::Create),
            "update" => Some(Self::Update),
            "takes_access" => Some(Self::TakesAccess),
            _ => None,
        }
    }
}

/// A mapping decision the tenant does not allow: nothing is written for that person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldDecision {
    /// The individual's id, or the source's id for a person without an individual.
    pub subject: String,
    /// The person's id at its source (so a sync can try them again next run).
    pub source_id: String,
    pub reason: String,
}

/// What one operation would do to one tenant.
#[derive(Debug, Clone, Default)]
pub struct ChangeSet {
    /// What caused it, for the operator: `SCIM Bulk request`, `rule change`, `LDAP run`.
    pub origin: String,
    pub writes: Vec<PlannedWrite>,
    pub held: Vec<HeldDecision>,
}

impl ChangeSet {
    pub fn new(origin: impl Into<String>) -> Self {
        Self { origin: origin.into(), ..Self::default() }
    }

    pub fn summary(&self, holding_access: u64) -> ChangeSummary {
        let mut summary = ChangeSummary { holding_access, ..ChangeSummary::default() };
        for write in &self.writes {
            match write.kind() {
                ChangeKind::IndividualCreated => summary.creates += 1,
                _ if write.takes_access() => summary.takes_access += 1,
                _ => summary.updates += 1,
            }
        }
        summary
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSummary {
    pub creates: u64,
    pub updates: u64,
    /// Writes that take access from an individual that holds it (suspend, expire).
    pub takes_access: u64,
    /// Individuals of the tenant holding access when the change set was planned.
    pub holding_access: u64,
    /// Individuals whose access was taken without an approval within the tenant's
    /// `mass_deprovision_window_minutes` before this change set (they count towards it).
    #[serde(default)]
    pub taken_recently: u64,
}

impl ChangeSummary {
    /// The guard: more than `mass_deprovision_percent` of the tenant and at least
    /// `mass_deprovision_min` individuals. Both must hold, so that a small tenant can still
    /// lose a few people and a big one is protected from losing many. What the window
    /// before took without approval counts as part of this change (and of the tenant as
    /// it was before it).
    pub fn exceeds(&self, policy: &TenantPolicy) -> bool {
        let taken = self.takes_access.saturating_add(self.taken_recently);
        let tenant = self.holding_access.saturating_add(self.taken_recently);
        let share = taken.saturating_mul(100) > tenant.saturating_mul(u64::from(policy.mass_deprovision_percent));
        share && taken >= u64::from(policy.mass_deprovision_min)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeSetStatus {
    /// Held by the guard, waiting for an operator.
    Pending,
    Approved,
    Rejected,
}

impl ChangeSetStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> DomainResult<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "approved" => Ok(Self::Approved),
            "rejected" => Ok(Self::Rejected),
            other => {
                Err(DomainError::invalid("status", format!("{other:?} is not one of pending, approved, rejected")))
            }
        }
    }
}

/// An operator's (or a later run's) decision on a held change set, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSetDecision {
    pub status: ChangeSetStatus,
    /// `kind:id` of the actor.
    pub by: String,
    pub at: Timestamp,
    pub result: String,
}

/// A change set the guard held, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldChangeSet {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub origin: String,
    pub status: ChangeSetStatus,
    pub summary: ChangeSummary,
    pub writes: Vec<HeldWrite>,
    pub created_at: Timestamp,
    /// Who caused it (`scim_token:…`, `operator:…`).
    pub created_by: String,
    pub decided_at: Option<Timestamp>,
    pub decided_by: Option<String>,
    /// What the decision did: how many writes were applied and skipped.
    pub result: Option<String>,
}

/// A held change set without its writes: what listings show. Reading the writes of a
/// 100,000-person set takes hundreds of megabytes; a listing never needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeSetHeader {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub origin: String,
    pub status: ChangeSetStatus,
    pub summary: ChangeSummary,
    pub created_at: Timestamp,
    pub created_by: String,
    pub decided_at: Option<Timestamp>,
    pub decided_by: Option<String>,
    pub result: Option<String>,
}

impl HeldChangeSet {
    /// The set of this header with these writes.
    pub fn from_header(header: ChangeSetHeader, writes: Vec<HeldWrite>) -> Self {
        let ChangeSetHeader {
            id,
            tenant_id,
            origin,
            status,
            summary,
            created_at,
            created_by,
            decided_at,
            decided_by,
            result,
        } = header;
        Self { id, tenant_id, origin, status, summary, writes, created_at, created_by, decided_at, decided_by, result }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_needs_both_the_share_and_the_minimum() {
        let policy = TenantPolicy::default(); // 10 %, at least 25
        let s = |takes, holding| ChangeSummary { takes_access: takes, holding_access: holding, ..Default::default() };
        assert!(!s(24, 100).exceeds(&policy), "24 of 100 is under the minimum");
        assert!(s(25, 100).exceeds(&policy));
        assert!(!s(100, 1000).exceeds(&policy), "exactly 10% is not more than 10%");
        assert!(s(101, 1000).exceeds(&policy));
        assert!(!s(0, 0).exceeds(&policy));
        assert!(s(30, 0).exceeds(&policy), "an unknown tenant size cannot excuse 30 deprovisions");
    }

    #[test]
    fn access_taken_in_the_window_counts_towards_the_next_change_set() {
        let policy = TenantPolicy::default();
        let s = |takes, holding, recently| ChangeSummary {
            takes_access: takes,
            holding_access: holding,
            taken_recently: recently,
            ..Default::default()
        };
        // One leaver at a time from a tenant of 1,000: the 101st within the window is held.
        assert!(!s(1, 901, 99).exceeds(&policy), "100 of 1,000");
        assert!(s(1, 900, 100).exceeds(&policy), "101 of 1,000");
        // Below the minimum, however large the share.
        assert!(!s(1, 10, 23).exceeds(&policy));
        assert!(s(1, 10, 24).exceeds(&policy));
    }
}
