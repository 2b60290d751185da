//! A portal as the SSO tests play it: the `openidconnect` crate as a relying party of
//! idbridge (discovery, PKCE, code exchange, ID token verification), client `portal`.

use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;

use crate::idp::{Stop, query_param};

/// The portal's client secret in every SSO test's apply file (`PORTAL_SECRET`).
pub const PORTAL_SECRET: &str = "portal-secret-portal-secret-portal-secret-01";

pub struct Portal {
    client: openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    http: reqwest::Client,
    redirect: String,
}

pub struct Started {
    pub url: String,
    pub verifier: PkceCodeVerifier,
    pub nonce: Nonce,
    pub state: CsrfToken,
}

impl Portal {
    pub async fn new(issuer: &str, redirect: &str) -> Self {
        Self::for_client(issuer, redirect, "portal").await
    }

    /// A portal registered as `client_id` (with the same secret).
    pub async fn for_client(issuer: &str, redirect: &str, client_id: &str) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.to_owned()).unwrap(), &http)
            .await
            .expect("idbridge's discovery document");
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.into()),
            Some(ClientSecret::new(PORTAL_SECRET.into())),
        )
        .set_redirect_uri(RedirectUrl::new(redirect.to_owned()).unwrap());
        Self { client, http, redirect: redirect.to_owned() }
    }

    pub fn start(&self, extra: &[(&str, &str)]) -> Started {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        for (k, v) in extra {
            request = request.add_extra_param(*k, *v);
        }
        let (url, state, nonce) = request.url();
        Started { url: url.to_string(), verifier, nonce, state }
    }

    /// Exchanges the code and verifies the ID token as a portal does; returns the
    /// verified claims (all of them) and the token response.
    pub async fn finish(
        &self,
        started: Started,
        landing: &Stop,
    ) -> Result<(Value, openidconnect::core::CoreTokenResponse), String> {
        let location = landing
            .location
            .clone()
            .ok_or_else(|| format!("no redirect to the portal: {} {}", landing.status, landing.body))?;
        assert!(location.starts_with(&self.redirect), "{location}");
        if let Some(error) = query_param(&location, "error") {
            return Err(error);
        }
        assert_eq!(query_param(&location, "state").as_deref(), Some(started.state.secret().as_str()));
        let code = query_param(&location, "code").expect("code");
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .unwrap()
            .set_pkce_verifier(started.verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let id_token = response.id_token().expect("an ID token");
        let verifier = self.client.id_token_verifier().set_allowed_algs(vec![
            openidconnect::core::CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            openidconnect::core::CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        ]);
        id_token.claims(&verifier, &started.nonce).map_err(|e| e.to_string())?;
        Ok((payload(&id_token.to_string()), response))
    }
}

/// The claims of a JWT, unverified (for tests that already verified it, or look at a
/// logout token).
pub fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// What the test's back-channel logout receiver got.
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A portal's back-channel logout endpoint: its URL, and the logout tokens it got.
pub async fn logout_receiver() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/backchannel", listener.local_addr().unwrap());
    (url, receive_logouts(listener))
}

/// The back-channel logout endpoint on a port known in advance (a portal that comes up
/// later), as `http://127.0.0.1:{port}/backchannel`.
pub async fn logout_receiver_at(port: u16) -> Received {
    receive_logouts(tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap())
}

fn receive_logouts(listener: tokio::net::TcpListener) -> Received {
    let received: Received = std::sync::Arc::default();
    let r = received.clone();
    let app = axum::Router::new().route(
        "/backchannel",
        axum::routing::post(move |body: String| {
            let r = r.clone();
            async move {
                let token = url::form_urlencoded::parse(body.as_bytes())
                    .find(|(k, _)| k == "logout_token")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                r.lock().unwrap().push(token);
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    received
}
