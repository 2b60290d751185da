//! Login at a tenant's own IdP: the authorization request (code + PKCE S256 + state +
//! nonce), the code exchange, and strict ID token verification.
//!
//! Verification is the `openidconnect` crate's (signature with an algorithm allow-list,
//! `iss`, `aud`, `exp`, `nonce`), with what it leaves to its users done here: the JWKS is
//! cached by `kid`, refreshed when a token names an unknown `kid` (at most every
//! `MIN_FORCED_REFRESH`) and periodically; the clock skew goes through its time hook; `iat`
//! is bounded; `azp` is checked; Entra multi-tenant issuers (`{tenantid}`) are resolved
//! from the token's `tid` against the allowed list. The token request itself is a plain
//! form POST, because the crate's typed token response would drop the claims we read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
pub use idbridge_core::idp::{Claimed, GroupsClaim, claim_at};
use idbridge_core::sso::{ClientAuth, IdpConnection};
use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    ClaimsVerificationError, ClientId, EmptyAdditionalClaims, IdToken, IssuerUrl, Nonce, SignatureVerificationError,
};
use serde_json::{Map, Value, json};

use crate::jose;

type UpstreamIdToken =
    IdToken<EmptyAdditionalClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

/// An unknown `kid` refreshes the key set at most this often (a flood of forged tokens
/// must not become a flood of requests to the IdP).
pub const MIN_FORCED_REFRESH: Duration = Duration::from_secs(10);
/// The key set is re-read at least this often.
pub const PERIODIC_REFRESH: Duration = Duration::from_secs(3600);
/// An ID token issued longer ago than this (plus the skew) is refused.
pub const MAX_ID_TOKEN_AGE: Duration = Duration::from_secs(600);

/// Why a login at the upstream IdP failed. `Display` is safe to show the user.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the identity provider refused: {0}")]
    Refused(String),
    #[error("the identity provider's ID token was rejected: {0}")]
    InvalidToken(String),
    #[error("configuration problem: {0}")]
    Config(String),
}

struct Jwks {
    set: CoreJsonWebKeySet,
    fetched: Instant,
    /// Fetches forced by an unknown key id, within `MIN_FORCED_REFRESH`: each kid forces
    /// at most one per window (an IdP that rotates twice within it is followed), and all
    /// of them together at most `MAX_FORCED_REFRESHES`.
    forced: Vec<(String, Instant)>,
}

impl Jwks {
    /// Whether a token signed with the unknown `kid` may fetch the key set again now.
    fn may_force(&mut self, kid: &str) -> bool {
        self.forced.retain(|(_, at)| at.elapsed() < MIN_FORCED_REFRESH);
        self.forced.len() < MAX_FORCED_REFRESHES && !self.forced.iter().any(|(k, _)| k == kid)
    }
}

/// Key-set fetches unknown key ids may force within `MIN_FORCED_REFRESH`.
pub const MAX_FORCED_REFRESHES: usize = 4;

/// One connection's cached key set, behind its own lock.
type KeySetSlot = Arc<tokio::sync::Mutex<Option<Jwks>>>;

/// Endpoints of one connection, discovered once.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub jwks: String,
    pub userinfo: Option<String>,
    /// The IdP puts `iss` in its authorization responses (RFC 9207, from discovery's
    /// `authorization_response_iss_parameter_supported`): one without it is refused.
    pub iss_parameter: bool,
    /// The IdP's `acr_values_supported`, when discovery lists them.
    pub acr_values: Option<Vec<String>>,
}

/// What a login asks of the IdP's authorization endpoint.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamRequest<'a> {
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub pkce_challenge: &'a str,
    pub login_hint: Option<&'a str>,
    /// `prompt=login`: authenticate again.
    pub reauthenticate: bool,
    /// The portal's `acr_values`, passed on.
    pub acr_values: Option<&'a str>,
}

/// Discovered endpoints and cached key sets, shared by every login.
#[derive(Clone)]
pub struct Upstreams {
    http: reqwest::Client,
    endpoints: Arc<Mutex<HashMap<String, Endpoints>>>,
    /// One lock per key set: a slow IdP holds up only its own tenant's logins.
    jwks: Arc<Mutex<HashMap<String, KeySetSlot>>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").finish_non_exhaustive()
    }
}

fn alg(name: &str) -> Option<CoreJwsSigningAlgorithm> {
    Some(match name {
        "RS256" => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        "RS384" => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
        "RS512" => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
        "ES256" => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        "ES384" => CoreJwsSigningAlgorithm::EcdsaP384Sha384,
        "PS256" => CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        _ => return None,
    })
}

fn claim_string(claims: &Map<String, Value>, path: &str) -> Option<String> {
    match claim_at(claims, path)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn claim_strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        Some(Value::String(s)) => s.split([' ', ',']).filter(|p| !p.is_empty()).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// Reads the groups claim into its four states.
pub fn groups_claim(claims: &Map<String, Value>, path: &str) -> GroupsClaim {
    let overage = claims.get("_claim_names").and_then(|n| n.get(path)).is_some()
        || claims.get("hasgroups").and_then(Value::as_bool) == Some(true)
        || claims.contains_key(&format!("{path}:src1"));
    if overage {
        return GroupsClaim::Overage;
    }
    match claim_at(claims, path) {
        None | Some(Value::Null) => GroupsClaim::Absent,
        Some(value) => {
            let list = claim_strings(Some(value));
            if list.is_empty() { GroupsClaim::Empty } else { GroupsClaim::List(list) }
        }
    }
}

/// Reads the client secret or private key a connection references.
fn read_secret(connection: &IdpConnection) -> Result<Option<String>, LoginError> {
    idbridge_core::secret::read_referenced(
        connection.client_secret_file.as_deref(),
        connection.client_secret_env.as_deref(),
    )
    .map_err(|e| {
        let (suffix, reason) = e.describe();
        LoginError::Config(format!("oidc.{}.client_secret{suffix}: {reason}", connection.name))
    })
}

/// The `kid` of a JWS header ("" when it has none).
fn token_kid(token: &str) -> String {
    token
        .split('.')
        .next()
        .and_then(|h| base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, h).ok())
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .and_then(|h| h["kid"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Upstreams {
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            // An IdP never needs to redirect a back-channel call; following one could leak
            // the client credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS client can be built");
        Self { http, endpoints: Arc::default(), jwks: Arc::default() }
    }

    fn cache_key(tenant: &str, connection: &IdpConnection) -> String {
        // The connection's settings are part of the key: a changed issuer or endpoint is a
        // new cache entry, never a stale one.
        format!("{tenant}\u{0}{}", serde_json::to_string(connection).unwrap_or_default())
    }

    /// The connection's endpoints (explicit ones win over discovered ones).
    pub async fn endpoints(&self, tenant: &str, connection: &IdpConnection) -> Result<Endpoints, LoginError> {
        let key = Self::cache_key(tenant, connection);
        if let Some(e) = self.endpoints.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key) {
            return Ok(e.clone());
        }
        let mut discovered = Map::new();
        if connection.discovery && !connection.issuer.contains("{tenantid}") {
            let url = format!("{}/.well-known/openid-configuration", connection.issuer.trim_end_matches('/'));
            let response =
                self.http.get(&url).send().await.map_err(|e| LoginError::Unreachable(format!("{url}: {e}")))?;
            if !response.status().is_success() {
                return Err(LoginError::Unreachable(format!("{url} answered {}", response.status())));
            }
            discovered = response.json().await.map_err(|e| LoginError::Unreachable(format!("{url}: {e}")))?;
            // OpenID Connect Discovery §4.3: the document must name the issuer it was
            // fetched for.
            if discovered.get("issuer").and_then(Value::as_str) != Some(connection.issuer.as_str()) {
                return Err(LoginError::Config(format!(
                    "{url} names issuer {}, not {}",
                    discovered.get("issuer").unwrap_or(&Value::Null),
                    connection.issuer
                )));
            }
        }
        let pick = |explicit: &Option<String>, field: &str| -> Option<String> {
            explicit.clone().or_else(|| discovered.get(field).and_then(Value::as_str).map(str::to_owned))
        };
        let missing = |f: &str| {
            LoginError::Config(format!("oidc.{}: no {f} (neither configured nor discovered)", connection.name))
        };
        let endpoints = Endpoints {
            authorization: pick(&connection.authorization_endpoint, "authorization_endpoint")
                .ok_or_else(|| missing("authorization_endpoint"))?,
            token: pick(&connection.token_endpoint, "token_endpoint").ok_or_else(|| missing("token_endpoint"))?,
            jwks: pick(&connection.jwks_uri, "jwks_uri").ok_or_else(|| missing("jwks_uri"))?,
            userinfo: pick(&connection.userinfo_endpoint, "userinfo_endpoint"),
            iss_parameter: discovered.get("authorization_response_iss_parameter_supported") == Some(&Value::Bool(true)),
            acr_values: discovered
                .get("acr_values_supported")
                .and_then(Value::as_array)
                .map(|list| list.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
        };
        self.endpoints.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, endpoints.clone());
        Ok(endpoints)
    }

    /// RFC 9207 §2.4: the `iss` of an authorization response must be the issuer the
    /// request went to — the defence against an IdP mix-up, where one tenant's IdP is made
    /// to answer a login that was sent to another's. When the IdP advertises the
    /// parameter, an answer without it is refused too.
    pub async fn check_response_issuer(
        &self,
        tenant: &str,
        connection: &IdpConnection,
        iss: Option<&str>,
    ) -> Result<(), LoginError> {
        let expected: Vec<String> = if connection.issuer.contains("{tenantid}") {
            connection.entra_tenant_ids.iter().map(|tid| connection.issuer.replace("{tenantid}", tid)).collect()
        } else {
            vec![connection.issuer.clone()]
        };
        match iss {
            Some(iss) if expected.iter().any(|e| e == iss) => Ok(()),
            Some(iss) => Err(LoginError::Refused(format!(
                "the answer names the issuer {iss:?}, not {:?} this sign-in was sent to",
                connection.issuer
            ))),
            None if self.endpoints(tenant, connection).await?.iss_parameter => Err(LoginError::Refused(format!(
                "the answer carries no iss, which {:?} always sends (RFC 9207)",
                connection.issuer
            ))),
            None => Ok(()),
        }
    }

    /// Where to send the browser.
    pub async fn authorization_url(
        &self,
        tenant: &str,
        connection: &IdpConnection,
        request: &UpstreamRequest<'_>,
    ) -> Result<String, LoginError> {
        let endpoints = self.endpoints(tenant, connection).await?;
        let mut url = url::Url::parse(&endpoints.authorization)
            .map_err(|e| LoginError::Config(format!("authorization endpoint {}: {e}", endpoints.authorization)))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &connection.client_id)
                .append_pair("redirect_uri", request.redirect_uri)
                .append_pair("scope", &connection.scopes.join(" "))
                .append_pair("state", request.state)
                .append_pair("nonce", request.nonce)
                .append_pair("code_challenge", request.pkce_challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(hint) = request.login_hint {
                q.append_pair("login_hint", hint);
            }
            if request.reauthenticate {
                q.append_pair("prompt", "login");
            }
            // The portal's acr_values, those the IdP says it supports (all of them when it
            // does not say): an IdP that knows none of them would refuse the request.
            if let Some(acr) = request.acr_values {
                let wanted: Vec<&str> = acr
                    .split(' ')
                    .filter(|v| !v.is_empty())
                    .filter(|v| endpoints.acr_values.as_ref().is_none_or(|known| known.iter().any(|k| k == v)))
                    .collect();
                if !wanted.is_empty() {
                    q.append_pair("acr_values", &wanted.join(" "));
                }
            }
        }
        Ok(url.into())
    }

    /// Exchanges the code and verifies the ID token; merges userinfo when configured.
    pub async fn complete(
        &self,
        tenant: &str,
        connection: &IdpConnection,
        code: &str,
        pkce_verifier: &str,
        redirect_uri: &str,
        nonce: &str,
    ) -> Result<Claimed, LoginError> {
        let endpoints = self.endpoints(tenant, connection).await?;
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("code_verifier", pkce_verifier.to_owned()),
        ];
        let mut request = self.http.post(&endpoints.token).header("accept", "application/json");
        match connection.client_auth {
            ClientAuth::ClientSecretBasic => {
                let secret = read_secret(connection)?.unwrap_or_default();
                // RFC 6749 §2.3.1: both parts form-urlencoded before Basic.
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    enc(&connection.client_id),
                    enc(&secret)
                ));
                request = request.header("authorization", format!("Basic {basic}"));
            }
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", connection.client_id.clone()));
                form.push(("client_secret", read_secret(connection)?.unwrap_or_default()));
            }
            ClientAuth::PrivateKeyJwt => {
                form.push(("client_id", connection.client_id.clone()));
                form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into()));
                form.push(("client_assertion", self.client_assertion(connection, &endpoints.token)?));
            }
        }
        let response =
            request.form(&form).send().await.map_err(|e| LoginError::Unreachable(format!("token endpoint: {e}")))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| LoginError::Refused(format!("token endpoint answered {status} without JSON: {e}")))?;
        if !status.is_success() {
            let error = body.get("error").and_then(Value::as_str).unwrap_or("unknown error");
            let description = body.get("error_description").and_then(Value::as_str).unwrap_or("");
            return Err(LoginError::Refused(format!("{error} {description}").trim().to_owned()));
        }
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| LoginError::Refused("the token response carries no id_token".into()))?;
        let mut claims = self.verify(tenant, connection, &endpoints, id_token, nonce).await?;
        if connection.use_userinfo
            && let (Some(url), Some(access)) = (&endpoints.userinfo, body.get("access_token").and_then(Value::as_str))
        {
            let info: Map<String, Value> = self
                .http
                .get(url)
                .bearer_auth(access)
                .send()
                .await
                .map_err(|e| LoginError::Unreachable(format!("userinfo: {e}")))?
                .json()
                .await
                .map_err(|e| LoginError::Refused(format!("userinfo is not JSON: {e}")))?;
            // OpenID Connect Core §5.3.2: userinfo about somebody else is discarded.
            if info.get("sub") != claims.get("sub") {
                return Err(LoginError::InvalidToken("userinfo names another subject".into()));
            }
            for (k, v) in info {
                claims.entry(k).or_insert(v);
            }
        }
        self.read_claims(connection, claims)
    }

    fn client_assertion(&self, connection: &IdpConnection, audience: &str) -> Result<String, LoginError> {
        let pem = idbridge_core::secret::read_referenced(connection.private_key_file.as_deref(), None)
            .map_err(|e| e.describe().1)
            .and_then(|pem| pem.ok_or_else(|| "not set".to_owned()))
            .map_err(|reason| LoginError::Config(format!("oidc.{}.private_key_file: {reason}", connection.name)))?;
        let signer = jose::Signer::from_pem(&pem)
            .map_err(|e| LoginError::Config(format!("oidc.{}.private_key_file: {e}", connection.name)))?;
        let now = idbridge_core::clock::now().as_second();
        let claims = json!({
            "iss": connection.client_id, "sub": connection.client_id, "aud": audience,
            "jti": jose::random_token(), "iat": now, "exp": now + 60,
        });
        signer
            .jws(connection.private_key_id.as_deref(), Some("JWT"), &claims)
            .map_err(|e| LoginError::Config(e.to_string()))
    }

    async fn fetch_jwks(&self, url: &str) -> Result<CoreJsonWebKeySet, LoginError> {
        let response = self.http.get(url).send().await.map_err(|e| LoginError::Unreachable(format!("{url}: {e}")))?;
        if !response.status().is_success() {
            return Err(LoginError::Unreachable(format!("{url} answered {}", response.status())));
        }
        let bytes = response.bytes().await.map_err(|e| LoginError::Unreachable(format!("{url}: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| LoginError::Unreachable(format!("{url} is not a JWK set: {e}")))
    }

    /// Verifies an ID token; returns its claims.
    pub async fn verify(
        &self,
        tenant: &str,
        connection: &IdpConnection,
        endpoints: &Endpoints,
        id_token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, LoginError> {
        let invalid = |m: String| LoginError::InvalidToken(m);
        let peek = jose::unverified_claims(id_token).ok_or_else(|| invalid("not a JWT".into()))?;
        let tid = peek.get("tid").and_then(Value::as_str).map(str::to_owned);
        // Entra multi-tenant: the issuer depends on the token's tenant, which must be one
        // this connection accepts. The signature check below then binds it.
        let issuer = if connection.issuer.contains("{tenantid}") {
            let tid = tid.as_deref().ok_or_else(|| invalid("no tid claim for a {tenantid} issuer".into()))?;
            if !connection.entra_tenant_ids.iter().any(|t| t.eq_ignore_ascii_case(tid)) {
                return Err(invalid(format!("Entra tenant {tid} is not allowed for this connection")));
            }
            connection.issuer.replace("{tenantid}", tid)
        } else {
            connection.issuer.clone()
        };
        let token: UpstreamIdToken = id_token.parse().map_err(|e| invalid(format!("malformed ID token: {e}")))?;
        let algs: Vec<_> = connection.algorithms.iter().filter_map(|a| alg(a)).collect();
        let skew = chrono::Duration::seconds(connection.clock_skew_seconds as i64);
        let max_age = chrono::Duration::from_std(MAX_ID_TOKEN_AGE).unwrap_or_default();
        let key = format!("{}\u{0}{}", Self::cache_key(tenant, connection), endpoints.jwks);
        let slot = self.jwks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(key).or_default().clone();
        let mut cache = slot.lock().await;
        let stale = cache.as_ref().is_none_or(|j| j.fetched.elapsed() > PERIODIC_REFRESH);
        if stale {
            let set = self.fetch_jwks(&endpoints.jwks).await?;
            let forced = cache.as_mut().map(|j| std::mem::take(&mut j.forced)).unwrap_or_default();
            *cache = Some(Jwks { set, fetched: Instant::now(), forced });
        }
        let issuer_url =
            IssuerUrl::new(issuer.clone()).map_err(|e| LoginError::Config(format!("issuer {issuer}: {e}")))?;
        let nonce = Nonce::new(nonce.to_owned());
        let mut refreshed = stale;
        loop {
            let Some(jwks) = cache.as_ref() else { return Err(LoginError::Unreachable("no key set".into())) };
            let verifier = openidconnect::core::CoreIdTokenVerifier::new_public_client(
                ClientId::new(connection.client_id.clone()),
                issuer_url.clone(),
                jwks.set.clone(),
            )
            .set_allowed_algs(algs.clone())
            .set_time_fn(move || chrono::Utc::now() - skew)
            .set_issue_time_verifier_fn(move |iat| {
                let now = chrono::Utc::now();
                if iat > now + skew {
                    Err(format!("issued in the future ({iat})"))
                } else if iat < now - max_age - skew {
                    Err(format!("issued too long ago ({iat})"))
                } else {
                    Ok(())
                }
            });
            match token.claims(&verifier, &nonce) {
                Ok(_) => break,
                Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey))
                    if !refreshed =>
                {
                    // A key we have not seen: the IdP may have rotated. Refresh, unless this
                    // kid just did (or too many others did).
                    let kid = token_kid(id_token);
                    if !cache.as_mut().is_some_and(|j| j.may_force(&kid)) {
                        return Err(invalid("signed with a key the IdP does not publish".into()));
                    }
                    let mut forced = cache.as_mut().map(|j| std::mem::take(&mut j.forced)).unwrap_or_default();
                    forced.push((kid, Instant::now()));
                    let set = self.fetch_jwks(&endpoints.jwks).await?;
                    *cache = Some(Jwks { set, fetched: Instant::now(), forced });
                    refreshed = true;
                }
                Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                    return Err(invalid("signed with a key the IdP does not publish".into()));
                }
                Err(e) => return Err(invalid(e.to_string())),
            }
        }
        drop(cache);
        let Value::Object(claims) = peek else { return Err(invalid("claims are not an object".into())) };
        // azp: when present it must be us; with several audiences it must be present.
        let several = claims.get("aud").and_then(Value::as_array).is_some_and(|a| a.len() > 1);
        match claims.get("azp").and_then(Value::as_str) {
            Some(azp) if azp != connection.client_id => {
                return Err(invalid(format!("authorized party {azp} is not this client")));
            }
            None if several => return Err(invalid("several audiences and no authorized party".into())),
            _ => {}
        }
        if !connection.issuer.contains("{tenantid}") && !connection.entra_tenant_ids.is_empty() {
            let ok =
                tid.as_deref().is_some_and(|t| connection.entra_tenant_ids.iter().any(|a| a.eq_ignore_ascii_case(t)));
            if !ok {
                return Err(invalid(format!(
                    "Entra tenant {} is not allowed for this connection",
                    tid.unwrap_or_default()
                )));
            }
        }
        Ok(claims)
    }

    /// Reads the configured claim paths.
    pub fn read_claims(&self, connection: &IdpConnection, raw: Map<String, Value>) -> Result<Claimed, LoginError> {
        let paths = &connection.claims;
        let subject = claim_string(&raw, &paths.subject)
            .ok_or_else(|| LoginError::InvalidToken(format!("no {} claim to identify the person by", paths.subject)))?;
        let issuer = raw.get("iss").and_then(Value::as_str).unwrap_or_default().to_owned();
        let email = claim_string(&raw, &paths.email);
        // OpenID Connect Core §5.1: a boolean; some IdPs send "true"/"false" strings.
        let email_verified = match raw.get("email_verified") {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) => s.parse::<bool>().ok(),
            _ => None,
        };
        let (email, unverified_email) = match email {
            Some(email) if !connection.email_verification.believes(email_verified) => (None, Some(email)),
            email => (email, None),
        };
        // A login claim that is the unverified email is no better than the email.
        let login = claim_string(&raw, &paths.login).filter(|l| unverified_email.as_ref() != Some(l));
        Ok(Claimed {
            issuer,
            subject,
            login,
            email,
            unverified_email,
            name: claim_string(&raw, &paths.name),
            given_name: claim_string(&raw, &paths.given_name),
            family_name: claim_string(&raw, &paths.family_name),
            groups: groups_claim(&raw, &paths.groups),
            roles: claim_strings(claim_at(&raw, &paths.roles)),
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn groups_claim_has_four_states() {
        assert_eq!(
            groups_claim(&map(json!({"groups": ["a", "b"]})), "groups"),
            GroupsClaim::List(vec!["a".into(), "b".into()])
        );
        assert_eq!(groups_claim(&map(json!({"groups": []})), "groups"), GroupsClaim::Empty);
        assert_eq!(groups_claim(&map(json!({})), "groups"), GroupsClaim::Absent);
        let entra =
            json!({"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "https://graph"}}});
        assert_eq!(groups_claim(&map(entra), "groups"), GroupsClaim::Overage);
        assert_eq!(groups_claim(&map(json!({"hasgroups": true})), "groups"), GroupsClaim::Overage);
        assert_eq!(
            groups_claim(&map(json!({"realm_access": {"roles": ["x"]}})), "realm_access.roles"),
            GroupsClaim::List(vec!["x".into()])
        );
        assert!(!GroupsClaim::Overage.is_known() && !GroupsClaim::Absent.is_known() && GroupsClaim::Empty.is_known());
    }
}
