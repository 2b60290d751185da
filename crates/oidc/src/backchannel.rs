//! OpenID Connect Back-Channel Logout 1.0: a signed logout token POSTed to every portal
//! that holds tokens of an ended session.

use std::sync::Arc;
use std::time::Duration;

use idbridge_core::ports::SsoStore;
use idbridge_core::sso::BackchannelLogout;
use jiff::SignedDuration;
use serde_json::json;

use crate::jose;
use crate::keys::KeyRing;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Sends the back-channel logouts the store owes (`SsoStore::claim_backchannel_logouts`:
/// rows written with the sessions' end). Each attempt signs a fresh logout token; a
/// portal that is down is retried with back-off for `retry_for` (a day by default), then
/// the logout is kept as dead, visible in `/metrics` and the admin API.
#[derive(Clone)]
pub struct Notifier {
    pub store: Arc<dyn SsoStore>,
    pub keys: KeyRing,
    pub issuer: String,
    pub http: reqwest::Client,
    /// How long a logout is retried before it is given up.
    pub retry_for: SignedDuration,
    /// The longest wait between two attempts.
    pub max_interval: SignedDuration,
    wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

/// How long a sender has a claimed logout to itself (a sender that died loses it).
const LEASE: SignedDuration = SignedDuration::from_secs(60);
/// Logouts taken per pass.
const BATCH: u32 = 50;
/// How often an idle sender looks for due logouts (it is also woken when sessions end).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The delay after `attempts` failed attempts: 1 s doubling, at most `max` (10 minutes by
/// default: a portal back from an outage learns of a logout within that).
pub fn backoff(attempts: i64, max: SignedDuration) -> SignedDuration {
    let exp = u32::try_from(attempts.clamp(1, 13) - 1).unwrap_or(0);
    SignedDuration::from_secs(1_i64 << exp).min(max)
}

impl Notifier {
    pub fn new(store: Arc<dyn SsoStore>, keys: KeyRing, issuer: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS client can be built");
        Self {
            store,
            keys,
            issuer: issuer.trim_end_matches('/').to_owned(),
            http,
            retry_for: SignedDuration::from_hours(24),
            max_interval: SignedDuration::from_mins(10),
            wake: Arc::default(),
        }
    }

    /// Sessions ended: their logouts are owed (the store recorded them); send them now.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Sends what is owed, until the process ends.
    pub async fn run(self) {
        let mut delay = Duration::from_millis(250);
        loop {
            let now = idbridge_core::clock::now();
            let batch = match self.store.claim_backchannel_logouts(now, LEASE, BATCH).await {
                Ok(batch) => {
                    delay = Duration::from_millis(250);
                    batch
                }
                Err(e) => {
                    tracing::warn!(error = %e, "back-channel logout queue unavailable; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            for owed in batch {
                self.settle(owed).await;
            }
        }
    }

    /// Publishes the queue to `/metrics`.
    pub async fn publish_stats(self) {
        let mut interval = tokio::time::interval(Duration::from_secs(5));
        loop {
            interval.tick().await;
            if let Ok(stats) = self.store.backchannel_logout_stats(idbridge_core::clock::now()).await {
                metrics::gauge!("idbridge_backchannel_logouts_queued").set(stats.queued as f64);
                metrics::gauge!("idbridge_backchannel_logouts_failing").set(stats.failing as f64);
                metrics::gauge!("idbridge_backchannel_logouts_dead").set(stats.dead as f64);
                metrics::gauge!("idbridge_backchannel_logouts_oldest_seconds").set(stats.oldest_seconds as f64);
            }
        }
    }

    async fn settle(&self, owed: BackchannelLogout) {
        let now = idbridge_core::clock::now();
        let outcome = match self.send(&owed).await {
            Ok(()) => {
                metrics::counter!("idbridge_backchannel_logouts_total", "result" => "delivered").increment(1);
                tracing::info!(client = owed.client_id, session = %owed.session_id, "back-channel logout delivered");
                self.store.backchannel_logout_done(owed.id).await
            }
            Err(error) if now.duration_since(owed.created_at) >= self.retry_for => {
                metrics::counter!("idbridge_backchannel_logouts_total", "result" => "dead").increment(1);
                tracing::error!(client = owed.client_id, session = %owed.session_id, error,
                    attempts = owed.attempts, "back-channel logout given up after the retry period");
                self.store.backchannel_logout_failed(owed.id, None, &error, now).await
            }
            Err(error) => {
                metrics::counter!("idbridge_backchannel_logouts_total", "result" => "failed").increment(1);
                tracing::warn!(client = owed.client_id, session = %owed.session_id, error,
                    attempts = owed.attempts, "back-channel logout failed; retrying");
                self.store
                    .backchannel_logout_failed(
                        owed.id,
                        Some(now + backoff(owed.attempts, self.max_interval)),
                        &error,
                        now,
                    )
                    .await
            }
        };
        if let Err(e) = outcome {
            // The claim runs out and the logout is taken again.
            tracing::warn!(error = %e, "back-channel logout outcome not recorded");
        }
    }

    /// One attempt: a fresh logout token POSTed to the portal's endpoint. A portal with no
    /// endpoint (any more) is owed nothing.
    async fn send(&self, owed: &BackchannelLogout) -> Result<(), String> {
        let client = match self.store.get_portal_client(&owed.client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let Some(uri) = client.backchannel_logout_uri.clone() else { return Ok(()) };
        self.keys.wait_until_signing(Duration::from_secs(10)).await.map_err(|e| e.to_string())?;
        let now = idbridge_core::clock::now();
        let claims = json!({
            "iss": self.issuer,
            "aud": client.id,
            "iat": now.as_second(),
            "exp": now.as_second() + 120,
            "jti": jose::random_token(),
            "sub": owed.individual_id.0,
            "sid": owed.session_id,
            "events": { EVENT: {} },
        });
        let token =
            self.keys.sign(&client.id_token_alg, Some("logout+jwt"), &claims, now).map_err(|e| e.to_string())?;
        match self.http.post(&uri).form(&[("logout_token", token)]).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("{} answered {}", client.id, r.status())),
            Err(e) => Err(format!(
                "{} could not be reached ({})",
                client.id,
                if e.is_timeout() { "timeout" } else { "connection" }
            )),
        }
    }
}

/// The application's logout consumer wakes the sender through this port.
impl idbridge_app::sign_in::LogoutNotifier for Notifier {
    fn notify(&self) {
        Notifier::notify(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_back_off_by_doubling_up_to_the_longest_interval() {
        let ten_minutes = SignedDuration::from_mins(10);
        assert_eq!(backoff(1, ten_minutes), SignedDuration::from_secs(1));
        assert_eq!(backoff(2, ten_minutes), SignedDuration::from_secs(2));
        assert_eq!(backoff(10, ten_minutes), SignedDuration::from_secs(512));
        assert_eq!(backoff(11, ten_minutes), ten_minutes);
        assert_eq!(backoff(i64::MAX, ten_minutes), ten_minutes);
        assert_eq!(backoff(0, ten_minutes), SignedDuration::from_secs(1));
        assert_eq!(backoff(9, SignedDuration::from_secs(30)), SignedDuration::from_secs(30));
    }
}
