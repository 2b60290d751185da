//! The convergence sweep: each tenant's people re-decided from everything their sources
//! say, on a schedule, writing only the differences (`SourceReconciliation::remap`, the
//! same code as an operator's `mapping remap`, under the same guard). Intents make each
//! change crash-safe; the sweep repairs what no intent covered — a decision taken on stale
//! data, a bug, a hand edit of the database.

use std::time::{Duration, Instant};

use idbridge_core::audit::{Actor, ActorKind, AuditContext};

use crate::reconciliation::{RemapSummary, SourceReconciliation};

/// The first sweep comes this long after start-up (not at once: a restart should not
/// compete with the backlog it has to settle), unless the period is shorter.
const FIRST_AFTER: Duration = Duration::from_secs(60);

pub async fn run(reconciliation: SourceReconciliation, every: Duration, instance: String) {
    if every.is_zero() {
        tracing::info!("convergence sweep off (lifecycle.sweep_seconds = 0)");
        return;
    }
    let ctx = AuditContext::new(Actor::new(ActorKind::Scheduler, "sweep"));
    tokio::time::sleep(every.min(FIRST_AFTER)).await;
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(e) = sweep_all(&reconciliation, every, &instance, &ctx).await {
            tracing::warn!(error = %e, "convergence sweep failed; trying again next period");
        }
    }
}

/// Sweeps every enabled tenant whose lease this instance gets for the period.
pub async fn sweep_all(
    reconciliation: &SourceReconciliation,
    every: Duration,
    instance: &str,
    ctx: &AuditContext,
) -> idbridge_core::DomainResult<Vec<RemapSummary>> {
    let store = reconciliation.reconciler.store().clone();
    let mut out = Vec::new();
    for tenant in store.list_tenants().await? {
        if !tenant.enabled {
            continue;
        }
        let now = idbridge_core::clock::now();
        let hold = jiff::SignedDuration::try_from(every).unwrap_or(jiff::SignedDuration::from_secs(900))
            - jiff::SignedDuration::from_secs(1);
        if !store.try_lease(&format!("sweep:{}", tenant.slug), instance, now, now + hold).await? {
            continue;
        }
        let started = Instant::now();
        let summary = RemapSummary::of(&tenant, reconciliation.remap(&tenant, "convergence sweep", ctx).await?);
        let labels = [("tenant", tenant.slug.to_string())];
        metrics::counter!("idbridge_sweep_runs_total", &labels).increment(1);
        metrics::counter!("idbridge_sweep_changed_total", &labels).increment(summary.written as u64);
        metrics::histogram!("idbridge_sweep_seconds", &labels).record(started.elapsed().as_secs_f64());
        if summary.written > 0 || summary.awaiting_approval.is_some() || !summary.failed.is_empty() {
            tracing::warn!(tenant = %tenant.slug, written = summary.written, failed = summary.failed.len(),
                held = ?summary.awaiting_approval, "convergence sweep repaired drift: {}", summary.describe());
        } else {
            tracing::debug!(tenant = %tenant.slug, seconds = started.elapsed().as_secs_f64(), "convergence sweep: nothing to repair");
        }
        out.push(summary);
    }
    Ok(out)
}
