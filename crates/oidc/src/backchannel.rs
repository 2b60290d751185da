//! OpenID Connect Back-Channel Logout 1.0: a signed logout token POSTed to every portal
//! that holds tokens of an ended session.

use std::sync::Arc;
use std::time::Duration;

use idbridge_core::individual::IndividualId;
use idbridge_core::ports::SsoStore;
use idbridge_core::tenant::TenantId;
use jiff::Timestamp;
use serde_json::json;
use uuid::Uuid;

use crate::jose;
use crate::keys::KeyRing;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

#[derive(Clone)]
pub struct Notifier {
    pub store: Arc<dyn SsoStore>,
    pub keys: KeyRing,
    pub issuer: String,
    pub http: reqwest::Client,
    pub attempts: u32,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

/// What happened to one portal's logout token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub client_id: String,
    pub session_id: Uuid,
    pub result: Result<(), String>,
}

impl Notifier {
    pub fn new(store: Arc<dyn SsoStore>, keys: KeyRing, issuer: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS client can be built");
        Self { store, keys, issuer: issuer.trim_end_matches('/').to_owned(), http, attempts: 3 }
    }

    /// Fire and forget (RP-initiated logout: the user is waiting).
    pub fn notify(&self, tenant: TenantId, individual: IndividualId, sessions: Vec<(Uuid, Vec<String>)>) {
        let this = self.clone();
        tokio::spawn(async move {
            this.deliver(tenant, individual, sessions).await;
        });
    }

    /// Sends a logout token for each (session, portal) with a back-channel logout URI,
    /// retrying with back-off; returns what happened to each.
    pub async fn deliver(
        &self,
        _tenant: TenantId,
        individual: IndividualId,
        sessions: Vec<(Uuid, Vec<String>)>,
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        for (session_id, clients) in sessions {
            for client_id in clients {
                let client = match self.store.get_portal_client(&client_id).await {
                    Ok(Some(c)) => c,
                    _ => continue,
                };
                let Some(uri) = client.backchannel_logout_uri.clone() else { continue };
                let result = self.send(&client.id, &client.id_token_alg, &uri, individual, session_id).await;
                match &result {
                    Ok(()) => {
                        tracing::info!(client = client.id, session = %session_id, "back-channel logout delivered")
                    }
                    Err(e) => {
                        tracing::warn!(client = client.id, session = %session_id, error = e, "back-channel logout failed")
                    }
                }
                out.push(Delivery { client_id: client.id, session_id, result });
            }
        }
        out
    }

    async fn send(
        &self,
        client_id: &str,
        alg: &str,
        uri: &str,
        individual: IndividualId,
        session: Uuid,
    ) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..self.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * 4u64.pow(attempt))).await;
            }
            let now = Timestamp::now();
            let claims = json!({
                "iss": self.issuer,
                "aud": client_id,
                "iat": now.as_second(),
                "exp": now.as_second() + 120,
                "jti": jose::random_token(),
                "sub": individual.0,
                "sid": session,
                "events": { EVENT: {} },
            });
            if let Err(e) = self.keys.wait_until_signing(Duration::from_secs(10)).await {
                last = e.to_string();
                continue;
            }
            let token = match self.keys.sign(alg, Some("logout+jwt"), &claims, now) {
                Ok(t) => t,
                Err(e) => return Err(e.to_string()),
            };
            match self.http.post(uri).form(&[("logout_token", token)]).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("answered {}", r.status()),
                Err(e) => last = format!("request failed: {e}"),
            }
        }
        Err(last)
    }
}
