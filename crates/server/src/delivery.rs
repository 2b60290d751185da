//! Outbox delivery to the webhook: every change event, in order, signed, with retries,
//! exponential back-off and a dead-letter record when the receiver keeps failing.

use std::time::Duration;

use hmac::{Hmac, Mac};
use idbridge_core::audit::ChangeEvent;
use idbridge_core::operator::Operator;
use sha2::Sha256;

const CONSUMER: &str = "webhook";

#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
    pub max_attempts: u32,
    pub client: reqwest::Client,
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

/// Runs until the process ends.
pub async fn run(operator: Operator, webhook: Webhook) {
    loop {
        match deliver_pending(&operator, &webhook).await {
            Ok(0) => tokio::time::sleep(Duration::from_millis(500)).await,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "webhook delivery pass failed");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Delivers the events after the consumer's position, in order; returns how many it
/// handled (delivered or dead-lettered).
async fn deliver_pending(operator: &Operator, webhook: &Webhook) -> Result<usize, idbridge_core::DomainError> {
    let store = operator.store();
    let position = store.consumer_position(CONSUMER).await?;
    let events = store.list_all_change_events(position, 100).await?;
    if events.is_empty() {
        return Ok(0);
    }
    // Slugs once per batch, not per event.
    let slugs: std::collections::HashMap<_, _> =
        store.list_tenants().await?.into_iter().map(|t| (t.id, t.slug.to_string())).collect();
    for (at, event) in &events {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match webhook.send(slugs.get(&event.tenant_id).map(String::as_str), event).await {
                Ok(()) => {
                    store.advance_consumer(CONSUMER, *at, None).await?;
                    break;
                }
                Err(error) if attempt >= webhook.max_attempts => {
                    tracing::error!(event = %event.id, attempts = attempt, error, "webhook gave up; event dead-lettered");
                    store.advance_consumer(CONSUMER, *at, Some((event, &error))).await?;
                    break;
                }
                Err(error) => {
                    let backoff = Duration::from_millis(1000u64.saturating_mul(1 << (attempt - 1).min(6)))
                        .min(Duration::from_secs(60));
                    tracing::warn!(event = %event.id, attempt, error, ?backoff, "webhook delivery failed; retrying");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }
    Ok(events.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
