//! The intent worker: takes the durable intents (`core::intent`) that no request settled —
//! left by a crash, a failed reconciliation, a stopped database or a big group change —
//! and re-decides those people until their individuals agree with the sources. It runs at
//! start-up and continuously; with several instances on one database each intent is
//! claimed by one of them at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::individual::SourceLink;
use idbridge_core::intent::{self, Intent, IntentStats};
use idbridge_core::tenant::{Tenant, TenantId};

use crate::reconciliation::{Reconciled, SourceReconciliation};

/// Source changes started per pass (each is taken whole, however many people it names).
const BATCH: u32 = 500;
/// How often an idle worker looks for due intents (it is also woken when a request's
/// fast path leaves intents behind).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// The queue as last measured, for `/readyz`.
#[derive(Clone, Default)]
pub struct QueueView(Arc<std::sync::Mutex<Option<IntentStats>>>);

impl QueueView {
    pub fn get(&self) -> Option<IntentStats> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set(&self, stats: IntentStats) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(stats);
    }
}

/// Runs until the process ends.
pub async fn run(reconciliation: SourceReconciliation) {
    let queue = reconciliation.intents.clone();
    // Claims of a process that died, and back-offs a restart may have cured, are due now.
    let mut delay = Duration::from_millis(250);
    loop {
        match queue.release_intents(idbridge_core::clock::now()).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(outstanding = n, "reconciling the people owed from before the start");
                }
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "intent queue unavailable at start; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
    let ctx = AuditContext::new(Actor::new(ActorKind::Scheduler, "reconciliation"));
    let mut delay = Duration::from_millis(250);
    loop {
        let batch = match queue.claim_intents(idbridge_core::clock::now(), BATCH).await {
            Ok(batch) => {
                delay = Duration::from_millis(250);
                batch
            }
            Err(e) => {
                metrics::counter!("idbridge_reconcile_intent_failures_total").increment(1);
                tracing::warn!(error = %e, "cannot take reconciliation intents; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = reconciliation.wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        settle(&reconciliation, batch, &ctx).await;
    }
}

/// Publishes the queue's depth, age and failures to `/metrics` and `/readyz`.
pub async fn publish_stats(reconciliation: SourceReconciliation, view: QueueView) {
    let mut interval = tokio::time::interval(Duration::from_secs(2));
    loop {
        interval.tick().await;
        match reconciliation.intents.intent_stats(idbridge_core::clock::now()).await {
            Ok(stats) => {
                metrics::gauge!("idbridge_reconcile_intents_queued").set(stats.queued as f64);
                metrics::gauge!("idbridge_reconcile_intents_oldest_seconds").set(stats.oldest_seconds as f64);
                metrics::gauge!("idbridge_reconcile_intents_failing").set(stats.failing as f64);
                view.set(stats);
            }
            Err(e) => tracing::debug!(error = %e, "intent queue statistics unavailable"),
        }
    }
}

/// Re-decides the people of one batch, tenant by tenant, and settles or re-schedules
/// each intent.
async fn settle(reconciliation: &SourceReconciliation, batch: Vec<Intent>, ctx: &AuditContext) {
    let tenants: HashMap<TenantId, Tenant> = match reconciliation.reconciler.store().list_tenants().await {
        Ok(list) => list.into_iter().map(|t| (t.id, t)).collect(),
        Err(e) => return retry_all(reconciliation, &batch, &e.to_string()).await,
    };
    let mut by_tenant: BTreeMap<TenantId, Vec<Intent>> = BTreeMap::new();
    for intent in batch {
        by_tenant.entry(intent.tenant_id).or_default().push(intent);
    }
    for (tenant_id, intents) in by_tenant {
        let Some(tenant) = tenants.get(&tenant_id) else {
            // The tenant is gone, and its people with it.
            clear(reconciliation, &intents).await;
            continue;
        };
        let people: Vec<SourceLink> = intents.iter().map(|i| i.person.clone()).collect();
        match reconciliation.redecide(tenant, &people, "reconciliation owed", ctx).await {
            Ok(Reconciled { unsettled, submitted }) => {
                if let idbridge_core::reconcile::Submitted::AwaitingApproval { id, summary } = &submitted {
                    tracing::warn!(
                        tenant = %tenant.slug,
                        change_set = %id,
                        takes_access = summary.takes_access,
                        holding_access = summary.holding_access,
                        "mass deprovision held for approval: idbridge changes show {id}"
                    );
                }
                let (retry, done): (Vec<Intent>, Vec<Intent>) =
                    intents.into_iter().partition(|i| unsettled.contains(&i.person));
                clear(reconciliation, &done).await;
                metrics::counter!("idbridge_reconcile_intents_settled_total").increment(done.len() as u64);
                if !retry.is_empty() {
                    retry_all(reconciliation, &retry, "the individual changed meanwhile or could not be written").await;
                }
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant.slug, error = %e, people = intents.len(), "reconciliation failed; retrying with back-off");
                retry_all(reconciliation, &intents, &e.to_string()).await;
            }
        }
    }
}

async fn clear(reconciliation: &SourceReconciliation, intents: &[Intent]) {
    let ids: Vec<i64> = intents.iter().map(|i| i.id).collect();
    if let Err(e) = reconciliation.intents.clear_intents(&ids).await {
        // They come back after their lease and are found settled then.
        tracing::debug!(error = %e, "settled intents not cleared");
    }
}

async fn retry_all(reconciliation: &SourceReconciliation, intents: &[Intent], error: &str) {
    metrics::counter!("idbridge_reconcile_intent_failures_total").increment(intents.len() as u64);
    let now = idbridge_core::clock::now();
    let retry: Vec<(i64, jiff::Timestamp)> =
        intents.iter().map(|i| (i.id, now + intent::backoff(i.attempts))).collect();
    if let Err(e) = reconciliation.intents.retry_intents(&retry, error).await {
        // The claim's lease runs out and they are taken again.
        tracing::debug!(error = %e, "intents not re-scheduled");
    }
}
