//! The lifecycle scheduler: ticks `core::lifecycle` on an interval until the process ends.

use std::time::Duration;

use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::reconcile::Reconciler;

pub async fn run(reconciler: Reconciler, tick: Duration) {
    let ctx = AuditContext::new(Actor::new(ActorKind::Scheduler, "lifecycle"));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match idbridge_core::lifecycle::tick(&reconciler, &ctx).await {
            Ok(report) if report.applied + report.failed > 0 => {
                tracing::info!(
                    applied = report.applied,
                    skipped = report.skipped,
                    failed = report.failed,
                    "lifecycle tick"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "lifecycle tick failed; retrying next tick"),
        }
    }
}
