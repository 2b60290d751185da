//! The mails change events owe: an invitation when an individual without an IdP is
//! created (by an operator or a delegated administrator — every way of creating one ends
//! in the same event), and a notice when their access starts; and the notice the clock
//! owes, a tenant's `expiry_notice_days` before an individual's access ends (once per
//! expiration date: moved, it is told again). An outbox consumer
//! (`mail-notices`) under a lease: with several instances one sends, and an instance that
//! dies before moving its position sends the mail again rather than never (the link in the
//! first is then replaced, so only the newest works).

use std::sync::Arc;
use std::time::Duration;

use idbridge_core::audit::{Actor, ActorKind, AuditContext, AuditRecord, ChangeKind};
use idbridge_core::individual::Individual;
use idbridge_core::local_account::{Mail, MailKind};
use idbridge_core::ports::Store;
use idbridge_core::tenant::Tenant;

use super::LocalAccounts;

const CONSUMER: &str = "mail-notices";
const LEASE: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// How often the expiry notices owed are looked for.
const EXPIRY_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// Runs until the process ends.
pub async fn run(accounts: LocalAccounts, store: Arc<dyn Store>, instance: String) {
    let mut expiry_looked_at: Option<jiff::Timestamp> = None;
    loop {
        let now = accounts.now();
        match store.try_lease(CONSUMER, &instance, now, now + LEASE).await {
            Ok(true) if expiry_looked_at.is_none_or(|at| now >= at + EXPIRY_EVERY) => {
                expiry_looked_at = Some(now);
                if let Err(e) = expiry_pass(&accounts, store.as_ref()).await {
                    tracing::error!(error = %e, "expiry notices pass failed");
                }
            }
            Ok(true) => match pass(&accounts, store.as_ref()).await {
                Ok(0) => tokio::time::sleep(Duration::from_millis(500)).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "mail notices pass failed");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            },
            Ok(false) => tokio::time::sleep(Duration::from_secs(2)).await,
            Err(e) => {
                tracing::error!(error = %e, "cannot take the mail notices lease");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// One batch of events; returns how many it read.
pub async fn pass(accounts: &LocalAccounts, store: &dyn Store) -> idbridge_core::DomainResult<usize> {
    let position = store.consumer_position(CONSUMER).await?;
    let events = store.list_all_change_events(position, 200).await?;
    let ready = crate::delivery::settled(position, &events, accounts.now(), crate::delivery::GAP_WAIT);
    let events = &events[..ready];
    if events.is_empty() {
        return Ok(0);
    }
    let tenants = store.list_tenants().await?;
    let ctx = AuditContext::new(Actor::new(ActorKind::Scheduler, "mail-notices"));
    for (at, event) in events {
        let wanted = matches!(event.kind, ChangeKind::IndividualCreated | ChangeKind::IndividualActivated);
        let tenant = tenants.iter().find(|t| t.id == event.tenant_id);
        if let (true, Some(tenant)) = (wanted, tenant)
            && tenant.enabled
            && tenant.policy.local_sign_in.allowed
            && let Some(individual) = store.get_individual(tenant.id, event.individual_id).await?
            && !super::has_directory(&individual)
            && individual.email.is_some()
        {
            let credential = store.get_local_credential(tenant.id, individual.id).await?;
            match event.kind {
                // Created with a password already (never, today) or invited meanwhile by
                // hand: nothing more to send.
                ChangeKind::IndividualCreated if credential.is_none() => {
                    if let Err(e) = accounts.invite(&ctx, tenant, &individual).await {
                        tracing::warn!(tenant = %tenant.slug, individual = %individual.id, error = %e, "no invitation sent");
                    }
                }
                ChangeKind::IndividualActivated if credential.is_some() => {
                    let (mail, audit) = notice(accounts, &ctx, tenant, &individual, MailKind::AccessStarts);
                    store.enqueue_mail(&mail, &audit).await?;
                }
                _ => {}
            }
        }
        store.advance_consumer(CONSUMER, *at, None).await?;
    }
    Ok(events.len())
}

/// Queues the expiry notices owed now; returns how many.
pub async fn expiry_pass(accounts: &LocalAccounts, store: &dyn Store) -> idbridge_core::DomainResult<usize> {
    let now = accounts.now();
    let ctx = AuditContext::new(Actor::new(ActorKind::Scheduler, "mail-notices"));
    let mut queued = 0;
    for tenant in store.list_tenants().await? {
        let policy = &tenant.policy.local_sign_in;
        if !tenant.enabled || !policy.allowed || policy.expiry_notice_days == 0 {
            continue;
        }
        let horizon = now + jiff::SignedDuration::from_hours(24 * i64::from(policy.expiry_notice_days));
        loop {
            let due = store.list_expiry_notices_due(tenant.id, now, horizon, 200).await?;
            let mut told = 0;
            for credential in &due {
                let Some(individual) = store.get_individual(tenant.id, credential.individual_id).await? else {
                    continue;
                };
                let Some(expiration) = individual.expiration.clone() else { continue };
                if individual.email.is_none() || super::has_directory(&individual) {
                    continue;
                }
                let (mail, audit) = notice(accounts, &ctx, &tenant, &individual, MailKind::AccessEnds);
                if store.enqueue_expiry_notice(&mail, expiration.at, &audit).await? {
                    told += 1;
                }
            }
            queued += told;
            // A full page where nobody could be told (a directory link, no address) would
            // come back the same: stop rather than spin.
            if due.len() < 200 || told == 0 {
                break;
            }
        }
    }
    Ok(queued)
}

/// A notice about the individual's access (starting or ending), rendered and audited
/// without its body.
fn notice(
    accounts: &LocalAccounts,
    ctx: &AuditContext,
    tenant: &Tenant,
    individual: &Individual,
    kind: MailKind,
) -> (Mail, AuditRecord) {
    let now = accounts.now();
    let mut values = accounts.values(tenant, individual);
    values.link = format!("{}/", accounts.settings.public_url.trim_end_matches('/'));
    values.starts = individual.activation.clone();
    values.ends = individual.expiration.clone();
    let body = accounts.settings.templates.render(kind, LocalAccounts::language(tenant, individual), &values);
    let recipient = individual.email.clone().unwrap_or_default();
    let mail = Mail::new(tenant.id, individual.id, kind, &recipient, body, now);
    let audit = ctx.record(
        Some(tenant.id),
        "individual",
        individual.id.to_string(),
        "mail.queued",
        None,
        Some(serde_json::json!({
            "mail": mail.id, "kind": kind.as_str(), "recipient": recipient,
            "activation": individual.activation.as_ref().map(|a| a.at),
            "expiration": individual.expiration.as_ref().map(|e| e.at),
        })),
    );
    (mail, audit)
}
