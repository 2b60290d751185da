//! The lifecycle scheduler: activates and expires individuals when their instants come.

use std::collections::HashMap;
use std::time::Duration;

use idbridge_core::DomainError;
use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::operator::Operator;
use idbridge_core::reconcile::{Outcome, Reconciler};
use idbridge_core::tenant::TenantId;

/// Runs until the process ends.
pub async fn run(operator: Operator, reconciler: Reconciler, tick: Duration) {
    let ctx = AuditContext::new(Actor::new(ActorKind::Scheduler, "lifecycle"));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(e) = tick_once(&operator, &reconciler, &ctx).await {
            tracing::error!(error = %e, "lifecycle tick failed; retrying next tick");
        }
    }
}

/// One pass: every due transition, in batches.
pub async fn tick_once(operator: &Operator, reconciler: &Reconciler, ctx: &AuditContext) -> Result<usize, DomainError> {
    let store = operator.store();
    let mut applied = 0;
    let tenants: HashMap<TenantId, _> = store.list_tenants().await?.into_iter().map(|t| (t.id, t)).collect();
    loop {
        let now = jiff::Timestamp::now();
        let due = store.list_due_individuals(now, 500).await?;
        let mut progressed = false;
        for individual in &due {
            let Some(tenant) = tenants.get(&individual.tenant_id) else { continue };
            match reconciler.apply_schedule(tenant, individual, now, ctx).await {
                Ok(Outcome::Written { .. }) => {
                    applied += 1;
                    progressed = true;
                }
                Ok(_) => {}
                // Another instance applied it first.
                Err(DomainError::VersionConflict { .. }) => progressed = true,
                Err(e) => tracing::error!(individual = %individual.id, error = %e, "scheduled transition failed"),
            }
        }
        if due.len() < 500 || !progressed {
            break;
        }
    }
    // Grace periods that ended and retention periods that passed, tenant by tenant (each
    // has its own policy).
    let now = jiff::Timestamp::now();
    let days = |n: u32| jiff::SignedDuration::from_hours(24 * i64::from(n));
    for tenant in tenants.values() {
        let grace_cutoff = now.checked_sub(days(tenant.policy.suspend_grace_days)).unwrap_or(now);
        let retention_cutoff = now.checked_sub(days(tenant.policy.retention_days)).unwrap_or(now);
        for individual in store.list_deprovision_due(tenant.id, grace_cutoff, retention_cutoff, 500).await? {
            match reconciler.apply_schedule(tenant, &individual, now, ctx).await {
                Ok(Outcome::Written { .. }) => applied += 1,
                Ok(_) | Err(DomainError::VersionConflict { .. }) => {}
                Err(e) => {
                    tracing::error!(individual = %individual.id, error = %e, "grace or retention transition failed")
                }
            }
        }
    }
    Ok(applied)
}
