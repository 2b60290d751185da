//! Submitting a change set: the mass-deprovision guard (hold, extend, the guard window),
//! commit in batches, and the held set's approval, rejection and supersession.

use serde_json::json;
use uuid::Uuid;

use crate::audit::{AuditContext, AuditRecord, ChangeEvent, ChangeKind};
use crate::changeset::{
    ChangeSet, ChangeSetDecision, ChangeSetHeader, ChangeSetStatus, ChangeSummary, HeldChangeSet, HeldWrite,
    PlannedWrite, changed_fields,
};
use crate::ports::IndividualWrite;
use crate::tenant::Tenant;
use crate::{DomainError, DomainResult};

use super::*;

impl Reconciler {
    /// Applies a change set unless the mass-deprovision guard holds it; decisions the
    /// tenant does not allow are recorded in the audit trail either way.
    pub async fn submit(&self, tenant: &Tenant, set: ChangeSet, ctx: &AuditContext) -> DomainResult<Submitted> {
        for held in &set.held {
            let record = ctx.record(
                Some(tenant.id),
                "individual",
                held.subject.clone(),
                "mapping.held",
                None,
                Some(json!({ "reason": held.reason, "origin": set.origin })),
            );
            self.store.append_audit(&record).await?;
        }
        let takes_access = set.writes.iter().filter(|w| w.takes_access()).count() as u64;
        let window = jiff::SignedDuration::from_mins(i64::from(tenant.policy.mass_deprovision_window_minutes));
        if takes_access > 0 {
            let holding = self.store.count_individuals_holding_access(tenant.id).await?;
            let mut summary = set.summary(holding);
            if !window.is_zero() {
                summary.taken_recently = self.store.access_taken_since(tenant.id, self.now() - window).await?;
            }
            if summary.exceeds(&tenant.policy) {
                // A big request's own reconciliation and the intent worker (which takes it
                // when that is slow, or after a crash) may both plan it: the same
                // decisions wait for an operator once, not twice.
                if let Some(waiting) = self.held_already(tenant, &set.writes).await? {
                    return Ok(Submitted::AwaitingApproval { id: waiting.id, summary: waiting.summary });
                }
                // Held only because of what the window took before (one deletion of an IdP
                // that sends one request per user): it joins the SCIM set already waiting,
                // so that the operator decides the mass deprovision once, not per person.
                let alone = ChangeSummary { taken_recently: 0, ..summary.clone() };
                if !alone.exceeds(&tenant.policy)
                    && ctx.actor.kind == crate::audit::ActorKind::ScimToken
                    && let Some(open) = self.open_scim_set(tenant).await?
                {
                    let audit = ctx.record(
                        Some(tenant.id),
                        "change_set",
                        open.to_string(),
                        "change_set.extended",
                        None,
                        Some(json!({ "origin": set.origin, "takes_access": takes_access })),
                    );
                    let joining = HeldWrite::all_of(&set.writes);
                    if let Some(summary) = self.store.extend_change_set(tenant.id, open, &joining, &audit).await? {
                        return Ok(Submitted::AwaitingApproval { id: open, summary });
                    }
                }
                let id = Uuid::new_v4();
                let held = ChangeSetHeader {
                    id,
                    tenant_id: tenant.id,
                    origin: set.origin.clone(),
                    status: ChangeSetStatus::Pending,
                    summary: summary.clone(),
                    created_at: self.now(),
                    created_by: format!("{}:{}", ctx.actor.kind.as_str(), ctx.actor.id),
                    decided_at: None,
                    decided_by: None,
                    result: None,
                };
                let audit = ctx.record(
                    Some(tenant.id),
                    "change_set",
                    id.to_string(),
                    "change_set.held",
                    None,
                    Some(json!({ "origin": held.origin, "summary": summary })),
                );
                let writes = HeldWrite::all_of(&set.writes);
                self.store.put_change_set(&held, &writes, &audit).await?;
                return Ok(Submitted::AwaitingApproval { id, summary });
            }
        }
        // Recorded before the writes: a failure here applies nothing, and writes that then
        // fail or are skipped only make the window count more — the safe direction.
        if takes_access > 0 && !window.is_zero() {
            self.writer.record_access_taken(tenant.id, self.now(), takes_access).await?;
        }
        let report = self.commit(tenant, set.writes, ctx).await?;
        Ok(Submitted::Applied(report))
    }

    /// The newest pending change set a SCIM client's requests were held in, if any.
    pub(super) async fn open_scim_set(&self, tenant: &Tenant) -> DomainResult<Option<Uuid>> {
        let scim = format!("{}:", crate::audit::ActorKind::ScimToken.as_str());
        Ok(self
            .store
            .list_change_sets(Some(tenant.id), Some(ChangeSetStatus::Pending))
            .await?
            .into_iter()
            .find(|h| h.created_by.starts_with(&scim))
            .map(|h| h.id))
    }

    /// The pending change set that holds exactly these decisions (the same individuals
    /// going to the same status), if there is one.
    pub(super) async fn held_already(
        &self,
        tenant: &Tenant,
        writes: &[PlannedWrite],
    ) -> DomainResult<Option<HeldChangeSet>> {
        let sorted = |mut d: Vec<(crate::individual::IndividualId, crate::individual::IndividualStatus)>| {
            d.sort_unstable_by_key(|(id, _)| *id);
            d
        };
        let wanted = sorted(writes.iter().map(|w| (w.after.id, w.after.status)).collect());
        let takes = writes.iter().filter(|w| w.takes_access()).count() as u64;
        // Only sets that take access from as many people are read with their writes.
        for header in self.store.list_change_sets(Some(tenant.id), Some(ChangeSetStatus::Pending)).await? {
            if header.summary.takes_access != takes {
                continue;
            }
            if let Some(held) = self.store.get_change_set(tenant.id, header.id).await?
                && sorted(held.writes.iter().map(|w| (w.individual_id, w.after)).collect()) == wanted
            {
                return Ok(Some(held));
            }
        }
        Ok(None)
    }

    /// Writes planned changes in batches. A write whose individual changed since it was
    /// planned is skipped (the version check: with several instances exactly one applies
    /// each transition). A batch the store refuses as a whole is retried write by write,
    /// so one bad write does not hold back the others.
    pub async fn commit(
        &self,
        tenant: &Tenant,
        writes: Vec<PlannedWrite>,
        ctx: &AuditContext,
    ) -> DomainResult<CommitReport> {
        let mut report = CommitReport::default();
        for chunk in writes.chunks(BATCH) {
            let batch: Vec<IndividualWrite> = chunk.iter().map(|w| self.individual_write(tenant, w, ctx)).collect();
            match self.writer.write_individuals(&batch).await {
                Ok(results) => {
                    for (write, ok) in batch.iter().zip(results) {
                        if ok {
                            report.written.push((write.individual.id, kind_of(write)));
                        } else {
                            report.skipped.push(write.individual.id);
                        }
                    }
                }
                Err(e @ (DomainError::Storage(_) | DomainError::Internal(_) | DomainError::Unavailable(_))) => {
                    return Err(e);
                }
                Err(_) => {
                    for write in &batch {
                        match self.writer.write_individual(write).await {
                            Ok(stored) => report.written.push((stored.id, kind_of(write))),
                            Err(DomainError::VersionConflict { .. }) => report.skipped.push(write.individual.id),
                            Err(
                                e @ (DomainError::Storage(_) | DomainError::Internal(_) | DomainError::Unavailable(_)),
                            ) => return Err(e),
                            Err(e) => report.failed.push((write.individual.id, e.to_string())),
                        }
                    }
                }
            }
        }
        Ok(report)
    }

    /// Approves a held change set. Its own writes were planned when it was held, and the
    /// sources may have changed while it waited, so they are never applied as they are:
    /// `replan` says what its people need *now*, and that is applied (without the guard:
    /// the operator approved taking access from them). The decision is recorded after the
    /// writes, with their result, so an approval the database interrupts leaves the set
    /// pending and can simply be repeated: the re-plan then leaves out what was applied.
    /// Of two approvals at once, both writes are version-checked (each individual is
    /// written once) and the second decision fails.
    pub async fn approve(
        &self,
        tenant: &Tenant,
        id: Uuid,
        replan: &dyn Replan,
        ctx: &AuditContext,
    ) -> DomainResult<CommitReport> {
        let header = self.still_pending(tenant, id).await?;
        let held = header.summary.creates + header.summary.updates + header.summary.takes_access;
        let set = if replan.needs_held_writes() {
            self.pending(tenant, id).await?
        } else {
            HeldChangeSet::from_header(header, Vec::new())
        };
        let writes = replan.replan(tenant, &set).await?;
        let still = writes.len();
        let report = self.commit(tenant, writes, ctx).await?;
        let result = format!(
            "re-planned against the sources now: {} of {} held write(s) still wanted; {} applied, {} skipped \
             (changed since), {} failed",
            still,
            held,
            report.written.len(),
            report.skipped.len(),
            report.failed.len()
        );
        let audit = ctx.record(
            Some(tenant.id),
            "change_set",
            id.to_string(),
            "change_set.approved",
            None,
            Some(json!({ "result": result })),
        );
        self.decide(tenant, id, ChangeSetStatus::Approved, result, ctx, &audit).await.map_err(|e| match e {
            DomainError::Rejected(_) => DomainError::Rejected(format!(
                "change set {id} was decided by somebody else while this approval applied it ({} written)",
                report.written.len()
            )),
            e => e,
        })?;
        Ok(report)
    }

    pub(super) async fn decide(
        &self,
        tenant: &Tenant,
        id: Uuid,
        status: ChangeSetStatus,
        result: String,
        ctx: &AuditContext,
        audit: &AuditRecord,
    ) -> DomainResult<()> {
        let decision = ChangeSetDecision {
            status,
            by: format!("{}:{}", ctx.actor.kind.as_str(), ctx.actor.id),
            at: self.now(),
            result,
        };
        self.store.decide_change_set(tenant.id, id, &decision, audit).await
    }

    /// Marks pending change sets superseded: a later complete run of the same source
    /// applied what the source says now, so what they held is stale.
    pub async fn supersede(&self, tenant: &Tenant, origin: &str, by: &str, ctx: &AuditContext) -> DomainResult<u64> {
        let mut n = 0;
        for set in self.store.list_change_sets(Some(tenant.id), Some(ChangeSetStatus::Pending)).await? {
            if set.origin != origin {
                continue;
            }
            let audit = ctx.record(
                Some(tenant.id),
                "change_set",
                set.id.to_string(),
                "change_set.superseded",
                None,
                Some(json!({ "by": by })),
            );
            match self
                .decide(tenant, set.id, ChangeSetStatus::Rejected, format!("{SUPERSEDED} {by}"), ctx, &audit)
                .await
            {
                Ok(()) => n += 1,
                // An operator decided it meanwhile.
                Err(DomainError::Rejected(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Rejects a held change set: nothing in it is applied.
    pub async fn reject(&self, tenant: &Tenant, id: Uuid, ctx: &AuditContext) -> DomainResult<()> {
        self.still_pending(tenant, id).await?;
        let audit = ctx.record(Some(tenant.id), "change_set", id.to_string(), "change_set.rejected", None, None);
        self.decide(tenant, id, ChangeSetStatus::Rejected, "nothing applied".to_owned(), ctx, &audit).await
    }

    /// A pending change set with its writes (to approve it).
    pub(super) async fn pending(&self, tenant: &Tenant, id: Uuid) -> DomainResult<HeldChangeSet> {
        self.store.get_change_set(tenant.id, id).await?.ok_or_else(|| DomainError::not_found("change set", id))
    }

    /// That a change set exists and waits for a decision — read without its writes, which
    /// for a 100,000-person set are hundreds of megabytes.
    pub(super) async fn still_pending(
        &self,
        tenant: &Tenant,
        id: Uuid,
    ) -> DomainResult<crate::changeset::ChangeSetHeader> {
        let set = self
            .store
            .get_change_set_header(tenant.id, id)
            .await?
            .ok_or_else(|| DomainError::not_found("change set", id))?;
        if let Some(result) = set.result.as_deref().filter(|r| r.starts_with(SUPERSEDED)) {
            return Err(DomainError::Rejected(format!(
                "change set {id} is superseded ({result}); nothing in it can be approved"
            )));
        }
        if set.status != ChangeSetStatus::Pending {
            return Err(DomainError::Rejected(format!("change set {id} is already {}", set.status.as_str())));
        }
        Ok(set)
    }

    pub(super) fn individual_write(
        &self,
        tenant: &Tenant,
        planned: &PlannedWrite,
        ctx: &AuditContext,
    ) -> IndividualWrite {
        let now = self.now();
        let mut next = planned.after.clone();
        next.updated_at = now;
        let before = planned.before.as_ref();
        // When access was taken is recorded here, once for every kind of write: kept while
        // the individual stays without access, cleared when access comes back.
        next.access_ended_at = match before {
            _ if next.status.holds_access() => None,
            Some(b) if !b.status.holds_access() => b.access_ended_at.or(Some(now)),
            _ => Some(now),
        };
        let kind = planned.kind();
        let permission_diff = before.map(|b| crate::permissions::PermissionDiff::between(b, &next).to_value());
        let snapshot = serde_json::to_value(&next).unwrap_or_default();
        // The audit trail records what changed (before and after of those fields only) —
        // a re-map of 100,000 individuals must not write 100,000 full copies twice.
        let (audit_before, audit_after) = match before {
            Some(b) => {
                let (old, new) = changed_fields(b, &next);
                (Some(old), Some(new))
            }
            None => (None, Some(snapshot.clone())),
        };
        let mut audit = ctx.record(
            Some(tenant.id),
            "individual",
            next.id.to_string(),
            "individual.written",
            audit_before,
            audit_after,
        );
        audit.action.clone_from(&planned.action);
        IndividualWrite {
            expected_version: before.map(|b| b.version),
            links_changed: before.is_none_or(|b| b.links != next.links),
            groups_changed: before.map_or(!next.scopes.groups.is_empty(), |b| b.scopes.groups != next.scopes.groups),
            status_only: before.is_some_and(|b| {
                let mut same = next.clone();
                same.status = b.status;
                same.deprovisioned_at = b.deprovisioned_at;
                same.access_ended_at = b.access_ended_at;
                same.updated_at = b.updated_at;
                same.version = b.version;
                same == *b
            }),
            audit,
            event: Some(ChangeEvent {
                id: Uuid::new_v4(),
                tenant_id: tenant.id,
                individual_id: next.id,
                kind,
                individual: snapshot,
                permission_diff,
                at: now,
            }),
            individual: next,
        }
    }
}

pub(super) fn kind_of(write: &IndividualWrite) -> ChangeKind {
    write.event.as_ref().map_or(ChangeKind::IndividualUpdated, |e| e.kind)
}
