//! Outbox delivery to webhooks: every change event, in order, signed, with retries,
//! exponential back-off and a dead-letter record when the receiver keeps failing.
//!
//! Each receiver is an outbox consumer with its own position: the global `webhook`
//! (every tenant without a receiver of its own) and `webhook:<slug>` per tenant. With
//! several instances on one database, a lease per consumer makes one instance at a time
//! deliver it, so events stay in order; a receiver still sees an event twice when an
//! instance dies between sending and recording, and recognises it by the idempotency key.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use idbridge_core::audit::ChangeEvent;
use idbridge_core::ports::Store;
use idbridge_core::tenant::TenantSlug;
use sha2::Sha256;

/// How long a delivering instance holds a receiver; renewed on every pass and attempt.
const LEASE: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
    pub max_attempts: u32,
    pub client: reqwest::Client,
}

/// Which events a receiver gets.
#[derive(Debug, Clone)]
pub enum Audience {
    /// One tenant's events.
    Tenant(TenantSlug),
    /// Every tenant's except these (they have receivers of their own).
    AllExcept(BTreeSet<String>),
}

#[derive(Clone)]
pub struct Destination {
    /// The outbox consumer (and lease) name.
    pub consumer: String,
    pub audience: Audience,
    pub webhook: Webhook,
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    async fn send(&self, tenant: Option<&str>, event: &ChangeEvent) -> Result<(), String> {
        let body = serde_json::to_vec(&serde_json::json!({
            "id": event.id,
            "kind": event.kind.as_str(),
            "tenant": tenant,
            "individual_id": event.individual_id,
            "at": event.at,
            "individual": event.individual,
            "permission_diff": event.permission_diff,
        }))
        .map_err(|e| e.to_string())?;
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", event.id.to_string())
            .header("x-idbridge-event", event.kind.as_str())
            .header("x-idbridge-signature", signature(&self.secret, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if response.status().is_success() { Ok(()) } else { Err(format!("receiver answered {}", response.status())) }
    }
}

/// How long delivery waits at a hole in the outbox positions. On PostgreSQL a position
/// is taken when the event is inserted, so with concurrent writers an event can become
/// visible after a later one; moving past the hole at once would skip it for good. A hole
/// that outlasts this is a write that was rolled back.
pub const GAP_WAIT: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// How many of `events` (read after `position`, in order) may be delivered now: those
/// before the first hole in the positions whose next event is younger than `wait`.
pub fn settled(
    position: i64,
    events: &[(i64, ChangeEvent)],
    now: jiff::Timestamp,
    wait: jiff::SignedDuration,
) -> usize {
    let mut expected = position + 1;
    for (n, (at, event)) in events.iter().enumerate() {
        if *at != expected && now.duration_since(event.at) < wait {
            return n;
        }
        expected = at + 1;
    }
    events.len()
}

/// Runs until the process ends. `instance` names this process for the lease.
pub async fn run(store: Arc<dyn Store>, destination: Destination, instance: String) {
    loop {
        let now = idbridge_core::clock::now();
        let held = store.try_lease(&destination.consumer, &instance, now, now + LEASE).await;
        match held {
            Ok(true) => {}
            Ok(false) => {
                // Another instance delivers this receiver; take over if its lease lapses.
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, consumer = destination.consumer, "cannot take the delivery lease");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        }
        match deliver_pending(store.as_ref(), &destination, &instance).await {
            Ok(0) => tokio::time::sleep(Duration::from_millis(500)).await,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, consumer = destination.consumer, "webhook delivery pass failed");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Delivers the events after the consumer's position, in order; returns how many it
/// handled (delivered, skipped as another receiver's, or dead-lettered).
async fn deliver_pending(
    store: &dyn Store,
    destination: &Destination,
    instance: &str,
) -> Result<usize, idbridge_core::DomainError> {
    let consumer = destination.consumer.as_str();
    let position = store.consumer_position(consumer).await?;
    let tenants = store.list_tenants().await?;
    // Every receiver reads the one outbox in position order and skips what is not for
    // it, so holes in the positions can be seen.
    let events = store.list_all_change_events(position, 100).await?;
    let ready = settled(position, &events, idbridge_core::clock::now(), GAP_WAIT);
    let events = &events[..ready];
    if events.is_empty() {
        return Ok(0);
    }
    let only = match &destination.audience {
        Audience::Tenant(slug) => match tenants.iter().find(|t| &t.slug == slug) {
            Some(tenant) => Some(tenant.id),
            None => return Ok(0),
        },
        Audience::AllExcept(_) => None,
    };
    // Slugs once per batch, not per event.
    let slugs: std::collections::HashMap<_, _> = tenants.into_iter().map(|t| (t.id, t.slug.to_string())).collect();
    let webhook = &destination.webhook;
    // Events for other audiences are passed over together: the position moves past them
    // with the next delivery, or once at the end — not one transaction per event.
    let mut passed_over = None;
    for (at, event) in events {
        let slug = slugs.get(&event.tenant_id).map(String::as_str);
        let excluded = match &destination.audience {
            Audience::AllExcept(excluded) => slug.is_some_and(|s| excluded.contains(s)),
            Audience::Tenant(_) => only != Some(event.tenant_id),
        };
        if excluded {
            passed_over = Some(*at);
            continue;
        }
        passed_over = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match webhook.send(slug, event).await {
                Ok(()) => {
                    store.advance_consumer(consumer, *at, None).await?;
                    break;
                }
                Err(error) if attempt >= webhook.max_attempts => {
                    tracing::error!(event = %event.id, consumer, attempts = attempt, error, "webhook gave up; event dead-lettered");
                    store.advance_consumer(consumer, *at, Some((event, &error))).await?;
                    break;
                }
                Err(error) => {
                    let backoff = Duration::from_millis(1000u64.saturating_mul(1 << (attempt - 1).min(6)))
                        .min(Duration::from_secs(60));
                    tracing::warn!(event = %event.id, consumer, attempt, error, ?backoff, "webhook delivery failed; retrying");
                    tokio::time::sleep(backoff).await;
                    let now = idbridge_core::clock::now();
                    if !store.try_lease(consumer, instance, now, now + LEASE).await? {
                        // Lost the lease while waiting: the other instance carries on.
                        return Ok(0);
                    }
                }
            }
        }
    }
    if let Some(at) = passed_over {
        store.advance_consumer(consumer, at, None).await?;
    }
    Ok(events.len())
}

#[cfg(test)]
mod tests {
    use idbridge_core::audit::{ChangeEvent, ChangeKind};

    fn event(position: i64, age_seconds: i64, now: jiff::Timestamp) -> (i64, ChangeEvent) {
        (
            position,
            ChangeEvent {
                id: uuid::Uuid::new_v4(),
                tenant_id: idbridge_core::tenant::TenantId(uuid::Uuid::nil()),
                individual_id: idbridge_core::individual::IndividualId(uuid::Uuid::nil()),
                kind: ChangeKind::IndividualUpdated,
                individual: serde_json::json!({}),
                permission_diff: None,
                at: now - jiff::SignedDuration::from_secs(age_seconds),
            },
        )
    }

    #[test]
    fn delivery_waits_at_a_young_hole_and_passes_an_old_one() {
        let now = idbridge_core::clock::now();
        let wait = jiff::SignedDuration::from_secs(30);
        let contiguous = [event(11, 1, now), event(12, 1, now), event(13, 1, now)];
        assert_eq!(super::settled(10, &contiguous, now, wait), 3);
        // 12 is not visible yet (its transaction may still commit): stop before 13.
        let young_hole = [event(11, 1, now), event(13, 1, now)];
        assert_eq!(super::settled(10, &young_hole, now, wait), 1);
        // A hole older than the wait is a rolled-back write: move on.
        let old_hole = [event(11, 60, now), event(13, 60, now)];
        assert_eq!(super::settled(10, &old_hole, now, wait), 2);
        assert_eq!(super::settled(10, &[event(12, 1, now)], now, wait), 0, "a hole right after the position");
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
