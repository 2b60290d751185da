//! The lifecycle scheduler's work: every transition whose instant has come — activation,
//! expiration, the end of a suspension grace period, the end of a retention period —
//! applied in batches through the reconciliation service.
//!
//! Nothing is kept in memory between ticks: what is due is read from the store each time,
//! so a restart loses no transition, and the version check on every write makes sure
//! each is applied once even when several instances tick on one database.

use std::collections::HashMap;

use crate::DomainResult;
use crate::audit::AuditContext;
use crate::individual::Individual;
use crate::reconcile::{Plan, Reconciler};
use crate::tenant::{Tenant, TenantId};

const PAGE: u32 = 1000;

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    pub applied: usize,
    /// Transitions another instance applied first.
    pub skipped: usize,
    pub failed: usize,
}

/// Applies every due transition at the reconciler's clock.
pub async fn tick(reconciler: &Reconciler, ctx: &AuditContext) -> DomainResult<TickReport> {
    let store = reconciler.store().clone();
    let tenants: HashMap<TenantId, Tenant> = store.list_tenants().await?.into_iter().map(|t| (t.id, t)).collect();
    let mut report = TickReport::default();
    loop {
        let now = reconciler.now();
        let due = store.list_due_individuals(now, PAGE).await?;
        let before = report.applied;
        apply(reconciler, &tenants, &due, now, ctx, &mut report).await?;
        if due.len() < PAGE as usize || report.applied == before {
            break;
        }
    }
    // Grace periods that ended and retention periods that passed, tenant by tenant (each
    // has its own policy).
    let days = |n: u32| jiff::SignedDuration::from_hours(24 * i64::from(n));
    for tenant in tenants.values() {
        loop {
            let now = reconciler.now();
            let grace_cutoff = now.checked_sub(days(tenant.policy.suspend_grace_days)).unwrap_or(now);
            let retention_cutoff = now.checked_sub(days(tenant.policy.retention_days)).unwrap_or(now);
            let due = store.list_deprovision_due(tenant.id, grace_cutoff, retention_cutoff, PAGE).await?;
            let before = report.applied;
            apply(reconciler, &tenants, &due, now, ctx, &mut report).await?;
            if due.len() < PAGE as usize || report.applied == before {
                break;
            }
        }
    }
    Ok(report)
}

async fn apply(
    reconciler: &Reconciler,
    tenants: &HashMap<TenantId, Tenant>,
    due: &[Individual],
    now: jiff::Timestamp,
    ctx: &AuditContext,
    report: &mut TickReport,
) -> DomainResult<()> {
    let mut by_tenant: HashMap<TenantId, Vec<_>> = HashMap::new();
    for individual in due {
        let Some(tenant) = tenants.get(&individual.tenant_id) else { continue };
        if let Plan::Write(write) = reconciler.plan_schedule(tenant, individual, now) {
            by_tenant.entry(tenant.id).or_default().push(*write);
        }
    }
    for (tenant, writes) in by_tenant {
        let committed = reconciler.commit(&tenants[&tenant], writes, ctx).await?;
        report.applied += committed.written.len();
        report.skipped += committed.skipped.len();
        report.failed += committed.failed.len();
    }
    Ok(())
}
