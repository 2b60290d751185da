//! Planning: an individual's next state from what its source says, from the calendar
//! and policy, or from a change by hand — pure, no store access.

use jiff::Timestamp;
use uuid::Uuid;

use crate::changeset::PlannedWrite;
use crate::individual::{DateOrigin, Individual, IndividualId, IndividualStatus};
use crate::mapping::{self, Decision};
use crate::schedule::LocalInstant;
use crate::tenant::{DeprovisionAction, Tenant};
use crate::{DomainError, DomainResult};

use super::*;

impl Reconciler {
    /// Plans the individual for a person present at its source.
    pub fn plan_present(
        &self,
        tenant: &Tenant,
        person: &SourcePerson,
        existing: Option<Individual>,
        decision: &Decision,
        known: &Known,
    ) -> DomainResult<Plan> {
        if let Some(reason) = mapping::check_against_tenant(decision, tenant, &known.roles, &known.profiles) {
            return Ok(Plan::Held(reason));
        }
        let now = self.now();
        let Some(existing) = existing else {
            if !decision.has_access() {
                return Ok(Plan::NoAccess);
            }
            let after = build(tenant, None, person, decision, now)?;
            // Someone whose access already ended (expired at the source) is not
            // provisioned: creating them expired would only be purged and created again.
            if after.status == IndividualStatus::Expired {
                return Ok(Plan::NoAccess);
            }
            return Ok(write(None, after, "individual.created"));
        };
        let after = build(tenant, Some(&existing), person, decision, now)?;
        if same_state(&existing, &after) {
            return Ok(Plan::Unchanged);
        }
        Ok(write(Some(existing), after, "individual.reconciled"))
    }

    /// Plans deprovisioning by the tenant's policy for a person gone from its source.
    pub fn plan_removed(&self, tenant: &Tenant, existing: Option<Individual>) -> Plan {
        let Some(existing) = existing else { return Plan::NoAccess };
        // Past access already: nothing more to take (their retention runs as it is).
        if matches!(existing.status, IndividualStatus::Expired | IndividualStatus::Deleted) {
            return Plan::Unchanged;
        }
        let mut next = existing.clone();
        next.deprovisioned_at = existing.deprovisioned_at.or(Some(self.now()));
        next.status = match tenant.policy.deprovision_action {
            DeprovisionAction::Expire => IndividualStatus::Expired,
            DeprovisionAction::Suspend => IndividualStatus::Suspended,
        };
        // Someone the source had suspended (inactive) and then removed is deprovisioned
        // like everyone else: the removal starts the grace period, then expiry and purge.
        if next.status == existing.status && next.deprovisioned_at == existing.deprovisioned_at {
            return Plan::Unchanged;
        }
        write(Some(existing), next, "individual.deprovisioned")
    }

    /// Plans the status the calendar and the tenant's policy give at `now`: activation or
    /// expiration reached, a suspension grace period over, a retention period passed.
    pub fn plan_schedule(&self, tenant: &Tenant, individual: &Individual, now: Timestamp) -> Plan {
        let mut next = individual.clone();
        let days = |n: u32| jiff::SignedDuration::from_hours(24 * i64::from(n));
        let grace_over = individual
            .deprovisioned_at
            .is_some_and(|d| d.checked_add(days(tenant.policy.suspend_grace_days)).is_ok_and(|end| end <= now));
        // Retention counts from when idbridge took access away, not from the expiry date:
        // a date reported in the past must still leave the whole period of history.
        let expired_since = individual.access_ended_at.or(individual.deprovisioned_at).unwrap_or(individual.updated_at);
        let retention_over = expired_since.checked_add(days(tenant.policy.retention_days)).is_ok_and(|end| end <= now);
        let action = match individual.status {
            IndividualStatus::Suspended if grace_over => {
                next.status = IndividualStatus::Expired;
                "individual.grace_ended"
            }
            IndividualStatus::Expired if retention_over => {
                // Personal data goes; the audit trail and the id stay.
                next.status = IndividualStatus::Deleted;
                next.login = format!("deleted-{}", individual.id);
                next.email = None;
                next.given_name = None;
                next.family_name = None;
                next.display_name = None;
                next.scopes = Default::default();
                next.provenance = Default::default();
                next.links.clear();
                "individual.purged"
            }
            _ => {
                next.status = individual.scheduled_status(now);
                "individual.scheduled"
            }
        };
        if next.status == individual.status {
            return Plan::Unchanged;
        }
        write(Some(individual.clone()), next, action)
    }

    pub fn plan_manual(&self, _tenant: &Tenant, individual: &Individual, change: &ManualChange) -> DomainResult<Plan> {
        if individual.status == IndividualStatus::Deleted {
            return Err(DomainError::Rejected(format!("individual {} was purged", individual.id)));
        }
        let mut next = individual.clone();
        if let Some(zone) = &change.time_zone {
            crate::schedule::parse_time_zone(zone)?;
            next.time_zone.clone_from(zone);
        }
        if let Some(language) = &change.language {
            next.language.clone_from(language);
        }
        let date = |requested: &Option<Option<String>>,
                    current: &Option<LocalInstant>,
                    origin: Option<DateOrigin>,
                    zone: &str|
         -> DomainResult<(Option<LocalInstant>, Option<DateOrigin>)> {
            Ok(match requested {
                Some(Some(text)) => (Some(LocalInstant::parse(text, zone)?), Some(DateOrigin::Manual)),
                Some(None) => (None, None),
                // Same local time, in the (possibly new) zone.
                None => (current.as_ref().map(|d| LocalInstant::new(d.local, zone)).transpose()?, origin),
            })
        };
        (next.activation, next.provenance.activation_from) =
            date(&change.activation, &individual.activation, individual.provenance.activation_from, &next.time_zone)?;
        (next.expiration, next.provenance.expiration_from) =
            date(&change.expiration, &individual.expiration, individual.provenance.expiration_from, &next.time_zone)?;
        next.provenance.manual_scopes.union(&change.add_scopes);
        next.provenance.manual_scopes.remove(&change.remove_scopes);
        next.scopes = next.provenance.mapped_scopes.clone();
        next.scopes.union(&next.provenance.manual_scopes);
        // The calendar decides again unless access was taken by a source or a deny.
        if next.deprovisioned_at.is_none() && next.status != IndividualStatus::Suspended {
            next.status = IndividualStatus::Active;
            next.status = next.scheduled_status(self.now());
        }
        next.validate()?;
        if same_state(individual, &next) {
            return Ok(Plan::Unchanged);
        }
        Ok(write(Some(individual.clone()), next, "individual.manual_change"))
    }
}

pub(super) fn write(before: Option<Individual>, after: Individual, action: &str) -> Plan {
    Plan::Write(Box::new(PlannedWrite { before, after, action: action.to_owned() }))
}

pub(super) fn same_state(a: &Individual, b: &Individual) -> bool {
    a.state() == b.state()
}

/// A date from the source, else from the mapping, else the one set by hand before.
pub(super) fn pick_date(
    time_zone: &str,
    source: Option<&str>,
    mapping: Option<&str>,
    existing: Option<(&Option<LocalInstant>, Option<DateOrigin>)>,
) -> DomainResult<(Option<LocalInstant>, Option<DateOrigin>)> {
    if let Some(text) = source {
        return Ok((Some(LocalInstant::parse(text, time_zone)?), Some(DateOrigin::Source)));
    }
    if let Some(text) = mapping {
        return Ok((Some(LocalInstant::parse(text, time_zone)?), Some(DateOrigin::Mapping)));
    }
    match existing {
        Some((Some(date), Some(DateOrigin::Manual))) => {
            // A hand-set date keeps its local time; a new zone moves its instant.
            Ok((Some(LocalInstant::new(date.local, time_zone)?), Some(DateOrigin::Manual)))
        }
        _ => Ok((None, None)),
    }
}

/// The individual the source and the decision call for.
pub(super) fn build(
    tenant: &Tenant,
    existing: Option<&Individual>,
    person: &SourcePerson,
    decision: &Decision,
    now: Timestamp,
) -> DomainResult<Individual> {
    // The source's zone, else the one the individual has (possibly set by hand), else the
    // tenant's default.
    let time_zone = person
        .time_zone
        .clone()
        .or_else(|| existing.map(|e| e.time_zone.clone()))
        .unwrap_or_else(|| tenant.default_time_zone.clone());
    // The source's preferred language when it is a tag (a source's odd value is not worth
    // refusing the person for), else the one the individual has.
    let language = person
        .facts
        .custom
        .get("preferredLanguage")
        .filter(|tag| crate::individual::validate_language(tag).is_ok())
        .cloned()
        .or_else(|| existing.and_then(|e| e.language.clone()));
    let (activation, activation_from) = pick_date(
        &time_zone,
        person.activation.as_deref(),
        decision.activation.as_deref(),
        existing.map(|e| (&e.activation, e.provenance.activation_from)),
    )?;
    let (expiration, expiration_from) = pick_date(
        &time_zone,
        person.expiration.as_deref(),
        decision.expiration.as_deref(),
        existing.map(|e| (&e.expiration, e.provenance.expiration_from)),
    )?;
    let mut links = existing.map(|e| e.links.clone()).unwrap_or_default();
    for link in std::iter::once(&person.link).chain(&person.also) {
        if !links.contains(link) {
            links.push(link.clone());
        }
    }
    // The order the store reads them back in, so an unchanged individual compares equal.
    links.sort_by(|a, b| {
        (a.source.as_str(), &a.connection, &a.external_id).cmp(&(b.source.as_str(), &b.connection, &b.external_id))
    });
    let manual_scopes = existing.map(|e| e.provenance.manual_scopes.clone()).unwrap_or_default();
    let mut scopes = decision.scopes.clone();
    scopes.union(&manual_scopes);
    let mut grants: Vec<_> = decision.reasons.iter().filter(|r| r.grants != "deny").cloned().collect();
    grants.sort();
    grants.dedup();
    let mut individual = Individual {
        id: existing.map_or_else(|| IndividualId(Uuid::new_v4()), |e| e.id),
        tenant_id: tenant.id,
        login: person.facts.login.clone(),
        email: person.email.clone(),
        given_name: person.given_name.clone(),
        family_name: person.family_name.clone(),
        display_name: person.display_name.clone(),
        role: decision.role.clone(),
        access_profile: decision.access_profile.clone(),
        scopes,
        time_zone,
        language,
        activation,
        expiration,
        status: IndividualStatus::Active,
        links,
        deprovisioned_at: None,
        access_ended_at: None,
        provenance: crate::individual::Provenance {
            mapping: grants,
            mapped_scopes: decision.scopes.clone(),
            manual_scopes,
            activation_from,
            expiration_from,
        },
        version: existing.map_or(0, |e| e.version),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    };
    individual.status = if !person.active {
        IndividualStatus::Suspended
    } else if !decision.has_access() {
        // Access ends by the tenant's deprovisioning policy; the assignment and its
        // provenance are kept for the audit trail and for explain.
        if let Some(e) = existing {
            individual.role.clone_from(&e.role);
            individual.access_profile.clone_from(&e.access_profile);
            individual.scopes = e.scopes.clone();
            individual.provenance.mapping = e.provenance.mapping.clone();
            individual.provenance.mapped_scopes = e.provenance.mapped_scopes.clone();
        }
        individual.deprovisioned_at = existing.and_then(|e| e.deprovisioned_at).or(Some(now));
        match tenant.policy.deprovision_action {
            DeprovisionAction::Expire => IndividualStatus::Expired,
            DeprovisionAction::Suspend => IndividualStatus::Suspended,
        }
    } else {
        individual.scheduled_status(now)
    };
    individual.validate()?;
    Ok(individual)
}
