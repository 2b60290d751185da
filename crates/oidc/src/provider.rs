//! idbridge as the portals' OpenID provider, and the login flow behind it:
//!
//! portal → `/oauth2/authorize` → (`/login` home-realm page) → tenant IdP →
//! `/login/callback` → checks → portal `redirect_uri?code=…` → `/oauth2/token`.
//!
//! Errors before the client and redirect URI are known are shown to the user (never
//! redirected to an unverified URI); later ones go back to the portal as OAuth errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use idbridge_core::individual::{Individual, IndividualStatus};
use idbridge_core::operator::Operator;
use idbridge_core::ports::SsoStore;
use idbridge_core::sso::{
    AuthorizationCode, CodeRedemption, IdpConnection, OAuthToken, PortalClient, RefreshUse, SsoSession, TokenKind,
};
use idbridge_core::tenant::{Tenant, TenantSlug};
use idbridge_core::token::hash_token;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::jose;
use crate::keys::KeyRing;
use crate::pages::{self, Branding};
use crate::upstream::{Claimed, LoginError, Upstreams};

pub const SESSION_COOKIE: &str = "idbridge_session";
pub const LOGIN_COOKIE: &str = "idbridge_login";

/// The cookie of one login in flight, named after its state.
fn login_cookie(state: &str) -> String {
    format!("{LOGIN_COOKIE}_{}", &hash_token(state)[..16])
}

/// Lifetimes and names of the provider.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// The issuer: idbridge's public URL.
    pub issuer: String,
    pub branding: Branding,
    pub code_ttl: SignedDuration,
    pub id_token_ttl: SignedDuration,
    pub access_token_ttl: SignedDuration,
    pub refresh_token_ttl: SignedDuration,
    pub session_ttl: SignedDuration,
    /// How long a login may take at the IdP.
    pub login_ttl: SignedDuration,
}

impl ProviderSettings {
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            branding: Branding { operator_name: "idbridge".into(), logo_url: None },
            code_ttl: SignedDuration::from_secs(60),
            id_token_ttl: SignedDuration::from_secs(3600),
            access_token_ttl: SignedDuration::from_secs(3600),
            refresh_token_ttl: SignedDuration::from_hours(24 * 14),
            session_ttl: SignedDuration::from_hours(12),
            login_ttl: SignedDuration::from_secs(600),
        }
    }

    fn secure_cookies(&self) -> bool {
        self.issuer.starts_with("https://")
    }
}

/// Why a verified person may not come in. `Display` is shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    NotAllowed(String),
    #[error("sign-in is not available right now: {0}")]
    Unavailable(String),
}

/// Finds (links, or provisions just in time) the individual behind a verified login.
/// The daemon implements it with the mapping pipeline and the reconciliation service.
#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    async fn resolve(
        &self,
        tenant: &Tenant,
        connection: &IdpConnection,
        claimed: &Claimed,
    ) -> Result<Individual, Refusal>;
}

#[derive(Clone)]
pub struct SsoState {
    pub store: Arc<dyn SsoStore>,
    pub operator: Operator,
    pub keys: KeyRing,
    pub upstreams: Upstreams,
    pub accounts: Arc<dyn Accounts>,
    pub settings: Arc<ProviderSettings>,
    /// Tells portals that sessions ended (back-channel logout).
    pub logout: crate::backchannel::Notifier,
    /// Tenants, portals, catalog, roles and profiles, held briefly in memory.
    pub config: crate::cache::ConfigCache,
    /// Stores issued tokens, many requests per statement under load.
    pub tokens: crate::batch::TokenWriter,
}

pub fn router(state: SsoState) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth2/jwks", get(jwks))
        .route("/oauth2/authorize", get(authorize))
        .route("/oauth2/token", axum::routing::post(token))
        .route("/oauth2/userinfo", get(userinfo).post(userinfo))
        .route("/oauth2/logout", get(logout).post(logout_form))
        .route("/login", get(login_page).post(login_submit))
        .route("/login/callback", get(callback))
        .layer(axum::middleware::from_fn(server_timing))
        .with_state(state)
}

/// `Server-Timing: idbridge;dur=…` on every sign-in answer (the callback sets its own,
/// which also names the IdP's share): what idbridge itself spent, for operators reading
/// browser developer tools and for the login benchmark.
async fn server_timing(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    if !response.headers().contains_key("server-timing") {
        let timing = format!("idbridge;dur={:.3}", started.elapsed().as_secs_f64() * 1e3);
        if let Ok(v) = HeaderValue::from_str(&timing) {
            response.headers_mut().insert("server-timing", v);
        }
    }
    response
}

// --- discovery and keys --------------------------------------------------------------

async fn discovery(State(s): State<SsoState>) -> Response {
    let i = &s.settings.issuer;
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/oauth2/authorize"),
            "token_endpoint": format!("{i}/oauth2/token"),
            "userinfo_endpoint": format!("{i}/oauth2/userinfo"),
            "jwks_uri": format!("{i}/oauth2/jwks"),
            "end_session_endpoint": format!("{i}/oauth2/logout"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "email",
                "email_verified", "name", "preferred_username", "given_name", "family_name", "zoneinfo", "tenant",
                "role", "permissions", "access_profile", "access_profile_name", "scopes"],
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "authorization_response_iss_parameter_supported": true,
        })),
    )
        .into_response()
}

/// How long a request waits for the first signing keys of a fresh start.
const KEYS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn jwks(State(s): State<SsoState>) -> Response {
    // Never publish an empty key set on a first start: portals cache it.
    if let Err(e) = s.keys.wait_until_signing(KEYS_WAIT).await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({ "error": "temporarily_unavailable", "error_description": e.to_string() })),
        )
            .into_response();
    }
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(s.keys.jwks(Timestamp::now()))).into_response()
}

// --- authorization -------------------------------------------------------------------

/// The portal's authorization request, kept while the user signs in upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    scope: String,
    code_challenge: String,
    /// A tenant the portal named (`tenant` parameter).
    tenant: Option<String>,
    login_hint: Option<String>,
    /// `prompt=login`: the person must authenticate again, at the IdP too.
    #[serde(default)]
    reauthenticate: bool,
    /// `prompt=none`: no page may be shown; every answer goes back to the portal.
    #[serde(default)]
    silent: bool,
}

#[derive(Debug, Deserialize)]
struct AuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    login_hint: Option<String>,
    tenant: Option<String>,
    prompt: Option<String>,
    max_age: Option<String>,
}

fn problem(s: &SsoState, status: StatusCode, title: &str, message: &str) -> Response {
    pages::problem(&s.settings.branding, status, title, message)
}

/// An OAuth error sent back to the portal's (verified) redirect URI.
fn to_portal_error(s: &SsoState, request: &AuthRequest, error: &str, description: &str) -> Response {
    match portal_error_url(s, request, error, description) {
        Some(url) => Redirect::to(&url).into_response(),
        None => problem(s, StatusCode::BAD_REQUEST, "Sign-in failed", description),
    }
}

/// The portal's redirect URI with an OAuth error (RFC 6749 §4.1.2.1) and `iss`.
fn portal_error_url(s: &SsoState, request: &AuthRequest, error: &str, description: &str) -> Option<String> {
    let mut url = url::Url::parse(&request.redirect_uri).ok()?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("error", error).append_pair("error_description", description);
        if let Some(state) = &request.state {
            q.append_pair("state", state);
        }
        q.append_pair("iss", &s.settings.issuer);
    }
    Some(url.into())
}

/// A person idbridge will not sign in (no access, not now, not through this portal).
/// Without UI allowed (`prompt=none`) the portal gets `access_denied`; otherwise a page
/// says why, and offers another account (authenticating again, at the IdP too) and the
/// way back to the portal — which then also learns `access_denied`.
fn refused(s: &SsoState, request: &AuthRequest, reason: &str) -> Response {
    if request.silent {
        return to_portal_error(s, request, "access_denied", reason);
    }
    let mut again = url::Url::parse(&format!("{}/oauth2/authorize", s.settings.issuer.trim_end_matches('/')))
        .expect("the issuer is a URL");
    {
        let mut q = again.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &request.client_id)
            .append_pair("redirect_uri", &request.redirect_uri)
            .append_pair("scope", &request.scope)
            .append_pair("code_challenge", &request.code_challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("prompt", "login");
        for (name, value) in [("state", &request.state), ("nonce", &request.nonce), ("tenant", &request.tenant)] {
            if let Some(value) = value {
                q.append_pair(name, value);
            }
        }
    }
    let back = portal_error_url(s, request, "access_denied", reason);
    pages::refused(&s.settings.branding, reason, again.as_str(), back.as_deref())
}

async fn authorize(
    State(s): State<SsoState>,
    headers: HeaderMap,
    query: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(p)) = query else {
        return problem(&s, StatusCode::BAD_REQUEST, "Sign-in failed", "The portal's sign-in request is malformed.");
    };
    // 1. The client and its redirect URI, before anything is sent anywhere.
    let Some(client_id) = p.client_id.as_deref() else {
        return problem(&s, StatusCode::BAD_REQUEST, "Sign-in failed", "The portal sent no client_id.");
    };
    let snapshot = match s.config.get().await {
        Ok(snapshot) => snapshot,
        Err(e) => return unavailable(&s, &e),
    };
    let Some(client) = snapshot.clients.get(client_id).cloned() else {
        return problem(
            &s,
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The portal is not registered (unknown client_id).",
        );
    };
    let Some(redirect_uri) = p.redirect_uri.as_deref() else {
        return problem(&s, StatusCode::BAD_REQUEST, "Sign-in failed", "The portal sent no redirect_uri.");
    };
    // Exact, character-for-character match (no prefix, no normalisation).
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return problem(
            &s,
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The redirect_uri is not registered for this portal.",
        );
    }
    let mut request = AuthRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        state: p.state.clone(),
        nonce: p.nonce.clone(),
        scope: p.scope.clone().unwrap_or_default(),
        code_challenge: String::new(),
        tenant: p.tenant.clone(),
        login_hint: p.login_hint.clone(),
        reauthenticate: p.prompt.as_deref().is_some_and(|p| p.split(' ').any(|v| v == "login")),
        silent: p.prompt.as_deref().is_some_and(|p| p.split(' ').any(|v| v == "none")),
    };
    // 2. The rest of the request; errors go back to the portal.
    if p.response_type.as_deref() != Some("code") {
        return to_portal_error(&s, &request, "unsupported_response_type", "only response_type=code is supported");
    }
    if !request.scope.split(' ').any(|x| x == "openid") {
        return to_portal_error(&s, &request, "invalid_scope", "scope must include openid");
    }
    let challenge_ok = p.code_challenge.as_deref().is_some_and(|c| (43..=128).contains(&c.len()));
    if p.code_challenge_method.as_deref() != Some("S256") || !challenge_ok {
        return to_portal_error(&s, &request, "invalid_request", "PKCE with code_challenge_method=S256 is required");
    }
    request.code_challenge = p.code_challenge.clone().unwrap_or_default();
    if [&request.state, &request.nonce, &request.login_hint, &request.tenant]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| v.len() > 2048))
    {
        return to_portal_error(&s, &request, "invalid_request", "a parameter is too long");
    }
    // OpenID Connect Core §3.1.2.1: max_age is the most seconds since the person last
    // authenticated at the IdP; an older session authenticates again (0: always).
    let max_age = match p.max_age.as_deref().map(str::parse::<u32>) {
        None => None,
        Some(Ok(seconds)) => Some(SignedDuration::from_secs(i64::from(seconds))),
        Some(Err(_)) => {
            return to_portal_error(&s, &request, "invalid_request", "max_age must be a non-negative integer");
        }
    };
    let prompt = p.prompt.as_deref().unwrap_or_default();
    // 3. A live session signs in without the IdP (single sign-on across portals), unless
    // it is older than max_age allows.
    if !request.reauthenticate
        && let Some(session) = session_from_cookie(&s, &headers).await
        && let Some(tenant) = snapshot.tenants.get(&session.tenant_id)
        && request.tenant.as_deref().is_none_or(|t| t == tenant.slug.as_str())
    {
        let fresh = max_age.is_none_or(|age| session.auth_time + age > Timestamp::now());
        if fresh {
            return finish(&s, &client, &request, tenant, &session, None).await;
        }
        if prompt == "none" {
            return to_portal_error(&s, &request, "login_required", "the session is older than max_age");
        }
        request.reauthenticate = true;
        if request.tenant.is_none() {
            // The same organisation's IdP, asked to authenticate the person again.
            request.tenant = Some(tenant.slug.to_string());
        }
    }
    if prompt == "none" {
        return to_portal_error(&s, &request, "login_required", "no session");
    }
    // 4. Which organisation: named by the portal, or by the email's domain.
    if let Some(slug) = &request.tenant {
        match snapshot.tenant_by_slug(slug) {
            Some(t) => return start_upstream(&s, t, request).await,
            None => return to_portal_error(&s, &request, "invalid_request", "unknown tenant"),
        }
    }
    if let Some(tenant) =
        request.login_hint.as_deref().and_then(|hint| tenant_for_email(snapshot.tenants.values(), hint))
    {
        return start_upstream(&s, tenant, request).await;
    }
    let handle = jose::random_token();
    if let Err(e) = s
        .store
        .put_pending(
            &hash_token(&format!("request:{handle}")),
            &json!(request).to_string(),
            Timestamp::now() + s.settings.login_ttl,
        )
        .await
    {
        return unavailable(&s, &e);
    }
    pages::login_form(&s.settings.branding, &handle, request.login_hint.as_deref().unwrap_or_default(), None)
}

/// The page for a login the organisation's IdP could not complete. It names the
/// organisation and what the person can do — never URLs or library errors, which go to
/// the log (where the caller has put them).
fn login_failed(s: &SsoState, tenant: &Tenant, e: &LoginError) -> Response {
    let (status, title, message) = match e {
        LoginError::Unreachable(_) => (
            StatusCode::BAD_GATEWAY,
            "Sign-in unavailable",
            format!(
                "Signing in with {}'s identity provider is not possible right now. Please try again in a few \
                 minutes; if it goes on, tell your administrator.",
                tenant.name
            ),
        ),
        LoginError::Config(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in unavailable",
            format!(
                "Sign-in for {} is not set up correctly. Your administrator can see why in idbridge's log.",
                tenant.name
            ),
        ),
        // Idbridge's own words: why the ID token was rejected, what the IdP refused.
        LoginError::InvalidToken(_) | LoginError::Refused(_) => {
            (StatusCode::UNAUTHORIZED, "Sign-in failed", e.to_string())
        }
    };
    problem(s, status, title, &message)
}

fn unavailable(s: &SsoState, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "sign-in failed on the server side");
    problem(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in unavailable",
        "Sign-in is not available right now. Please try again shortly.",
    )
}

/// The tenant whose verified domains include the email's domain (one tenant per domain).
fn tenant_for_email<'a>(tenants: impl Iterator<Item = &'a Tenant>, email: &str) -> Option<&'a Tenant> {
    let domain = email.rsplit_once('@')?.1.trim().to_ascii_lowercase();
    let mut found = tenants.filter(|t| t.policy.domains.contains(&domain));
    let tenant = found.next()?;
    // A domain claimed twice is ambiguous: nobody is sent anywhere by it.
    if found.next().is_some() { None } else { Some(tenant) }
}

#[derive(Debug, Deserialize)]
struct LoginPageParams {
    request: Option<String>,
}

async fn login_page(State(s): State<SsoState>, Query(p): Query<LoginPageParams>) -> Response {
    match p.request {
        Some(handle) => pages::login_form(&s.settings.branding, &handle, "", None),
        None => problem(&s, StatusCode::BAD_REQUEST, "Sign in", "Start signing in from your portal."),
    }
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    request: String,
    email: String,
}

async fn login_submit(
    State(s): State<SsoState>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return problem(
            &s,
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The sign-in form was incomplete. Start again from your portal.",
        );
    };
    let key = hash_token(&format!("request:{}", f.request));
    let now = Timestamp::now();
    let request: AuthRequest = match s.store.take_pending(&key, now).await {
        Ok(Some(data)) => match serde_json::from_str(&data) {
            Ok(r) => r,
            Err(e) => return unavailable(&s, &e),
        },
        Ok(None) => {
            return problem(
                &s,
                StatusCode::BAD_REQUEST,
                "Sign-in expired",
                "This sign-in page has expired. Start again from your portal.",
            );
        }
        Err(e) => return unavailable(&s, &e),
    };
    let snapshot = match s.config.get().await {
        Ok(snapshot) => snapshot,
        Err(e) => return unavailable(&s, &e),
    };
    let email = f.email.trim();
    match tenant_for_email(snapshot.tenants.values(), email) {
        Some(tenant) => {
            let mut request = request;
            request.login_hint = Some(email.to_owned());
            start_upstream(&s, tenant, request).await
        }
        None => {
            // Put the request back under a new handle and ask again.
            let handle = jose::random_token();
            let key = hash_token(&format!("request:{handle}"));
            if let Err(e) = s.store.put_pending(&key, &json!(request).to_string(), now + s.settings.login_ttl).await {
                return unavailable(&s, &e);
            }
            let message = if email.contains('@') {
                "No organisation signs in with this email domain here. Check the address, or ask your administrator."
            } else {
                "Enter your work email address, like name@company.example."
            };
            pages::login_form(&s.settings.branding, &handle, email, Some(message))
        }
    }
}

/// A login at the tenant's IdP in flight (keyed by the hash of `state`).
#[derive(Debug, Serialize, Deserialize)]
struct UpstreamLogin {
    tenant: String,
    connection: String,
    nonce: String,
    pkce_verifier: String,
    /// Hash of the `idbridge_login` cookie: the callback must come back to this browser.
    browser: String,
    request: AuthRequest,
}

fn callback_uri(s: &SsoState) -> String {
    format!("{}/login/callback", s.settings.issuer)
}

async fn start_upstream(s: &SsoState, tenant: &Tenant, request: AuthRequest) -> Response {
    if !tenant.enabled {
        return to_portal_error(s, &request, "access_denied", "the organisation's access is disabled");
    }
    // Known before anyone signs in at the IdP: a portal that does not serve the
    // organisation is told so at once, not after the person authenticated.
    let serves = match s.config.get().await {
        Ok(snapshot) => snapshot.clients.get(&request.client_id).is_some_and(|c| c.allows_tenant(tenant.slug.as_str())),
        Err(e) => return unavailable(s, &e),
    };
    if !serves {
        return refused(s, &request, &format!("This portal does not serve {}.", tenant.name));
    }
    let Some(connection) = tenant.policy.oidc.first() else {
        return to_portal_error(s, &request, "access_denied", "the organisation has no sign-in configured");
    };
    let state = jose::random_token();
    let nonce = jose::random_token();
    let (challenge, verifier) = openidconnect::PkceCodeChallenge::new_random_sha256();
    let browser = jose::random_token();
    let login = UpstreamLogin {
        tenant: tenant.slug.to_string(),
        connection: connection.name.clone(),
        nonce: nonce.clone(),
        pkce_verifier: verifier.secret().clone(),
        browser: hash_token(&browser),
        request,
    };
    let url = match s
        .upstreams
        .authorization_url(
            tenant.slug.as_str(),
            connection,
            &callback_uri(s),
            &state,
            &nonce,
            challenge.as_str(),
            login.request.login_hint.as_deref(),
            login.request.reauthenticate,
        )
        .await
    {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(tenant = %tenant.slug, connection = connection.name, error = %e, "cannot start upstream login");
            return login_failed(s, tenant, &e);
        }
    };
    let key = hash_token(&format!("login:{state}"));
    if let Err(e) = s.store.put_pending(&key, &json!(login).to_string(), Timestamp::now() + s.settings.login_ttl).await
    {
        return unavailable(s, &e);
    }
    let mut response = Redirect::to(&url).into_response();
    set_cookie(
        &mut response,
        &login_cookie(&state),
        &browser,
        "/login/callback",
        s.settings.login_ttl,
        s.settings.secure_cookies(),
    );
    response
}

fn set_cookie(response: &mut Response, name: &str, value: &str, path: &str, ttl: SignedDuration, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!("{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Lax{secure}", ttl.as_secs());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn session_from_cookie(s: &SsoState, headers: &HeaderMap) -> Option<SsoSession> {
    let value = cookie(headers, SESSION_COOKIE)?;
    s.store.find_session(&hash_token(value), Timestamp::now()).await.ok().flatten()
}

#[derive(Debug, Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(s): State<SsoState>,
    headers: HeaderMap,
    query: Result<Query<CallbackParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(p)) = query else {
        return problem(&s, StatusCode::BAD_REQUEST, "Sign-in failed", "The identity provider's answer is malformed.");
    };
    let started = std::time::Instant::now();
    let mut upstream = std::time::Duration::ZERO;
    let mut response = callback_inner(&s, &headers, p, &mut upstream).await;
    // How long the IdP took and how long idbridge itself took: operators see where a slow
    // login spends its time (browser developer tools show Server-Timing).
    let own = started.elapsed().saturating_sub(upstream);
    let timing =
        format!("upstream;dur={:.3}, idbridge;dur={:.3}", upstream.as_secs_f64() * 1e3, own.as_secs_f64() * 1e3);
    if let Ok(v) = HeaderValue::from_str(&timing) {
        response.headers_mut().insert("server-timing", v);
    }
    metrics::histogram!("idbridge_sso_login_seconds", "part" => "idbridge").record(own.as_secs_f64());
    metrics::histogram!("idbridge_sso_login_seconds", "part" => "upstream").record(upstream.as_secs_f64());
    response
}

async fn callback_inner(
    s: &SsoState,
    headers: &HeaderMap,
    p: CallbackParams,
    upstream: &mut std::time::Duration,
) -> Response {
    let s = s.clone();
    let now = Timestamp::now();
    let Some(state) = p.state.as_deref().filter(|v| !v.is_empty()) else {
        return problem(
            &s,
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The identity provider's answer carries no state.",
        );
    };
    let login: UpstreamLogin = match s.store.take_pending(&hash_token(&format!("login:{state}")), now).await {
        Ok(Some(data)) => match serde_json::from_str(&data) {
            Ok(l) => l,
            Err(e) => return unavailable(&s, &e),
        },
        Ok(None) => {
            return problem(
                &s,
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "This sign-in answer has an unknown, expired or already used state. Start again from your portal.",
            );
        }
        Err(e) => return unavailable(&s, &e),
    };
    // The state must come back to the browser that started the login (login CSRF). Each
    // login has its own cookie, so two in flight in one browser (two tabs, two portals)
    // both complete.
    let presented = cookie(headers, &login_cookie(state));
    let browser_ok = presented.is_some_and(|c| bool::from(hash_token(c).as_bytes().ct_eq(login.browser.as_bytes())));
    if !browser_ok {
        let message = match presented {
            Some(_) => "This sign-in answer does not belong to this browser. Start again from your portal.",
            None => {
                "This browser did not start this sign-in (or no longer holds its cookie). Start again from your \
                 portal."
            }
        };
        return problem(&s, StatusCode::BAD_REQUEST, "Sign-in failed", message);
    }
    let tenant = match TenantSlug::parse(&login.tenant) {
        Ok(slug) => match s.operator.tenant(&slug).await {
            Ok(t) => t,
            Err(e) => return unavailable(&s, &e),
        },
        Err(e) => return unavailable(&s, &e),
    };
    let Some(connection) = tenant.policy.oidc.iter().find(|c| c.name == login.connection) else {
        return problem(
            &s,
            StatusCode::FORBIDDEN,
            "Sign-in failed",
            "The organisation's sign-in was changed meanwhile. Start again.",
        );
    };
    // Who answered, before anything in the answer is acted on (errors included).
    if let Err(e) = s.upstreams.check_response_issuer(tenant.slug.as_str(), connection, p.iss.as_deref()).await {
        tracing::warn!(tenant = %tenant.slug, connection = connection.name, error = %e, "IdP answer refused (mix-up defence)");
        return problem(&s, StatusCode::BAD_REQUEST, "Sign-in failed", &e.to_string());
    }
    if let Some(error) = &p.error {
        let description = p.error_description.as_deref().unwrap_or_default();
        tracing::info!(tenant = login.tenant, error, description, "the IdP refused the login");
        return to_portal_error(
            &s,
            &login.request,
            "access_denied",
            &format!("the identity provider answered {error}"),
        );
    }
    let Some(code) = p.code.as_deref() else {
        return problem(
            &s,
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The identity provider's answer carries no code.",
        );
    };
    let upstream_started = std::time::Instant::now();
    let completed = s
        .upstreams
        .complete(tenant.slug.as_str(), connection, code, &login.pkce_verifier, &callback_uri(&s), &login.nonce)
        .await;
    *upstream = upstream_started.elapsed();
    let claimed = match completed {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(tenant = %tenant.slug, connection = connection.name, error = %e, "upstream login rejected");
            return login_failed(&s, &tenant, &e);
        }
    };
    match (&claimed.email, &claimed.unverified_email) {
        (Some(email), _) if !connection.accepts_email(email) => {
            return refused(&s, &login.request, "Your email domain is not allowed for this organisation.");
        }
        // The domain check needs an email the IdP vouches for.
        (None, unverified) if !connection.allowed_email_domains.is_empty() => {
            tracing::info!(tenant = %tenant.slug, subject = claimed.subject, unverified = unverified.is_some(), "login refused: no verified email");
            let why = match unverified {
                Some(_) => "Your identity provider has not verified your email address.",
                None => "Your identity provider sent no email address.",
            };
            return refused(&s, &login.request, why);
        }
        _ => {}
    }
    let client = match s.config.get().await.map(|c| c.clients.get(&login.request.client_id).cloned()) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return problem(&s, StatusCode::BAD_REQUEST, "Sign-in failed", "The portal was unregistered meanwhile.");
        }
        Err(e) => return unavailable(&s, &e),
    };
    let individual = match s.accounts.resolve(&tenant, connection, &claimed).await {
        Ok(i) => i,
        Err(refusal) => {
            tracing::info!(tenant = %tenant.slug, subject = claimed.subject, reason = %refusal, "login refused");
            return refused(&s, &login.request, &refusal.to_string());
        }
    };
    // The session begins after the login was decided: a change that decision made ends
    // the person's earlier sessions, never this one (`SsoStore::end_individual_sessions`).
    let signed_in_at = Timestamp::now();
    let session = SsoSession {
        id: Uuid::new_v4(),
        tenant_id: tenant.id,
        individual_id: individual.id,
        connection: connection.name.clone(),
        auth_time: signed_in_at,
        expires_at: signed_in_at + s.settings.session_ttl,
        ended_at: None,
    };
    if let Err(reason) = may_log_in(&tenant, &client, &individual, now) {
        tracing::info!(tenant = %tenant.slug, individual = %individual.id, reason, "login refused");
        return refused(&s, &login.request, &reason);
    }
    let cookie_value = jose::random_token();
    if let Err(e) = s.store.create_session(&session, &hash_token(&cookie_value)).await {
        return unavailable(&s, &e);
    }
    tracing::info!(tenant = %tenant.slug, individual = %individual.id, session = %session.id, "signed in");
    let mut response = finish(&s, &client, &login.request, &tenant, &session, Some(individual)).await;
    set_cookie(&mut response, SESSION_COOKIE, &cookie_value, "/", s.settings.session_ttl, s.settings.secure_cookies());
    // The login cookie has done its job.
    set_cookie(
        &mut response,
        &login_cookie(state),
        "",
        "/login/callback",
        SignedDuration::ZERO,
        s.settings.secure_cookies(),
    );
    response
}

/// Only individuals that are active now (their activation and expiration in their time
/// zone), of an enabled tenant, with a role the tenant allows, for a portal that serves
/// the tenant.
pub fn may_log_in(
    tenant: &Tenant,
    client: &PortalClient,
    individual: &Individual,
    now: Timestamp,
) -> Result<(), String> {
    if !tenant.enabled {
        return Err("Your organisation's access is disabled.".into());
    }
    if !client.allows_tenant(tenant.slug.as_str()) {
        return Err("This portal does not serve your organisation.".into());
    }
    if individual.tenant_id != tenant.id {
        return Err("Your account belongs to another organisation.".into());
    }
    match (individual.status, individual.scheduled_status(now)) {
        (IndividualStatus::Active, IndividualStatus::Active) => {}
        (_, IndividualStatus::Pending) | (IndividualStatus::Pending, _) => {
            let from = individual.activation.as_ref().map(|a| format!(" It starts on {} ({}).", a.local, a.time_zone));
            return Err(format!("Your access has not started yet.{}", from.unwrap_or_default()));
        }
        (_, IndividualStatus::Expired) | (IndividualStatus::Expired, _) => return Err("Your access has ended.".into()),
        _ => return Err("Your access is suspended.".into()),
    }
    let Some(role) = &individual.role else { return Err("You have no role in the portal.".into()) };
    if !tenant.allowed_roles.contains(role) {
        return Err("Your role is not allowed for your organisation.".into());
    }
    Ok(())
}

/// Issues the authorization code and sends the browser back to the portal.
async fn finish(
    s: &SsoState,
    client: &PortalClient,
    request: &AuthRequest,
    tenant: &Tenant,
    session: &SsoSession,
    individual: Option<Individual>,
) -> Response {
    let now = Timestamp::now();
    let individual = match individual {
        Some(i) => i,
        None => match s.operator.store().get_individual(tenant.id, session.individual_id).await {
            Ok(Some(i)) => i,
            Ok(None) => return to_portal_error(s, request, "login_required", "the session's account is gone"),
            Err(e) => return unavailable(s, &e),
        },
    };
    if let Err(reason) = may_log_in(tenant, client, &individual, now) {
        return refused(s, request, &reason);
    }
    let code = jose::random_token();
    let record = AuthorizationCode {
        client_id: client.id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        nonce: request.nonce.clone(),
        scope: request.scope.clone(),
        session_id: session.id,
        tenant_id: tenant.id,
        individual_id: individual.id,
        auth_time: session.auth_time,
        expires_at: now + s.settings.code_ttl,
    };
    if let Err(e) = s.store.put_code(&hash_token(&code), &record).await {
        return unavailable(s, &e);
    }
    let mut url = match url::Url::parse(&request.redirect_uri) {
        Ok(u) => u,
        Err(e) => return unavailable(s, &e),
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", &code);
        if let Some(state) = &request.state {
            q.append_pair("state", state);
        }
        // RFC 9207: tells the portal which provider answered (mix-up defence).
        q.append_pair("iss", &s.settings.issuer);
    }
    Redirect::to(url.as_str()).into_response()
}

// --- token endpoint -------------------------------------------------------------------

/// An OAuth error answer of the token and userinfo endpoints.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self { status, error, description: description.into() }
    }
    fn grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }
    fn request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
    fn server(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "token endpoint failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again shortly")
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            pages::no_store(),
            Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"idbridge\""));
        }
        response
    }
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `client_secret_basic` or `client_secret_post`; the secret's hash is compared in
/// constant time.
async fn authenticate_client(s: &SsoState, headers: &HeaderMap, form: &TokenForm) -> Result<PortalClient, OAuthError> {
    let unauthorized = || OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, b)| b.trim().to_owned());
    let (id, secret) = match (basic, &form.client_secret) {
        (Some(_), Some(_)) => return Err(OAuthError::request("use one client authentication method, not two")),
        (Some(b), None) => {
            let decoded = base64::engine::general_purpose::STANDARD.decode(b).map_err(|_| unauthorized())?;
            let text = String::from_utf8(decoded).map_err(|_| unauthorized())?;
            let (id, secret) = text.split_once(':').ok_or_else(unauthorized)?;
            let dec =
                |v: &str| url::form_urlencoded::parse(format!("x={v}").as_bytes()).next().map(|(_, v)| v.into_owned());
            (dec(id).ok_or_else(unauthorized)?, dec(secret).ok_or_else(unauthorized)?)
        }
        (None, Some(secret)) => (form.client_id.clone().ok_or_else(unauthorized)?, secret.clone()),
        (None, None) => return Err(unauthorized()),
    };
    let snapshot = s.config.get().await.map_err(|e| OAuthError::server(&e))?;
    let client = snapshot.clients.get(&id).cloned().ok_or_else(unauthorized)?;
    if !bool::from(hash_token(&secret).as_bytes().ct_eq(client.secret_hash.as_bytes())) {
        return Err(unauthorized());
    }
    Ok(client)
}

async fn token(
    State(s): State<SsoState>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(e) => {
            return OAuthError::request(format!("the body must be application/x-www-form-urlencoded: {e}"))
                .into_response();
        }
    };
    match token_inner(&s, &headers, form).await {
        Ok(body) => (pages::no_store(), Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn token_inner(s: &SsoState, headers: &HeaderMap, form: TokenForm) -> Result<Value, OAuthError> {
    let client = authenticate_client(s, headers, &form).await?;
    let now = Timestamp::now();
    match form.grant_type.as_deref() {
        Some("authorization_code") => {
            let code = form.code.as_deref().ok_or_else(|| OAuthError::request("code is required"))?;
            let verifier =
                form.code_verifier.as_deref().ok_or_else(|| OAuthError::request("code_verifier is required"))?;
            let redirect_uri =
                form.redirect_uri.as_deref().ok_or_else(|| OAuthError::request("redirect_uri is required"))?;
            let grant_id = Uuid::new_v4();
            let record = match s
                .store
                .redeem_code(&hash_token(code), grant_id, now)
                .await
                .map_err(|e| OAuthError::server(&e))?
            {
                CodeRedemption::Fresh(r) => r,
                CodeRedemption::Replayed => {
                    tracing::warn!(client = client.id, "authorization code replayed; its tokens are revoked");
                    // A code is single use, also when its first exchange failed (a wrong
                    // code_verifier, say): start the sign-in again.
                    return Err(OAuthError::grant(
                        "the authorization code was already presented (a code is spent by its first exchange, \
                         also a failed one); start the sign-in again",
                    ));
                }
                CodeRedemption::Unknown => return Err(OAuthError::grant("unknown or expired authorization code")),
            };
            if record.client_id != client.id {
                return Err(OAuthError::grant("the code was issued to another client"));
            }
            if record.redirect_uri != redirect_uri {
                return Err(OAuthError::grant("redirect_uri differs from the authorization request's"));
            }
            let computed = jose::b64(&<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
            if !bool::from(computed.as_bytes().ct_eq(record.code_challenge.as_bytes())) {
                return Err(OAuthError::grant("PKCE verification failed (code_verifier does not match)"));
            }
            issue(
                s,
                &client,
                record.tenant_id,
                record.individual_id,
                record.session_id,
                &record.scope,
                record.nonce,
                record.auth_time,
                grant_id,
                now,
            )
            .await
        }
        Some("refresh_token") => {
            let presented =
                form.refresh_token.as_deref().ok_or_else(|| OAuthError::request("refresh_token is required"))?;
            let old = match s
                .store
                .use_refresh_token(&hash_token(presented), now)
                .await
                .map_err(|e| OAuthError::server(&e))?
            {
                RefreshUse::Fresh(t) => t,
                RefreshUse::Reused => {
                    tracing::warn!(client = client.id, "refresh token reused; its grant is revoked");
                    return Err(OAuthError::grant(
                        "the refresh token was already used; every token of this sign-in is revoked",
                    ));
                }
                RefreshUse::Revoked => {
                    tracing::info!(client = client.id, "revoked refresh token presented");
                    return Err(OAuthError::grant(
                        "the refresh token was revoked: the sign-in ended (signed out, or access ended or changed)",
                    ));
                }
                RefreshUse::Unknown => return Err(OAuthError::grant("unknown or expired refresh token")),
            };
            if old.client_id != client.id {
                return Err(OAuthError::grant("the refresh token was issued to another client"));
            }
            let session = s.store.get_session(old.session_id).await.map_err(|e| OAuthError::server(&e))?;
            let Some(session) = session.filter(|x| x.ended_at.is_none()) else {
                return Err(OAuthError::grant("the session has ended"));
            };
            issue(
                s,
                &client,
                old.tenant_id,
                old.individual_id,
                old.session_id,
                &old.scope,
                None,
                session.auth_time,
                old.grant_id,
                now,
            )
            .await
        }
        Some(other) => {
            Err(OAuthError::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", format!("{other} is not supported")))
        }
        None => Err(OAuthError::request("grant_type is required")),
    }
}

/// Checks the individual may still come in, then signs the ID token and stores the
/// access and refresh tokens.
#[allow(clippy::too_many_arguments)]
async fn issue(
    s: &SsoState,
    client: &PortalClient,
    tenant_id: idbridge_core::tenant::TenantId,
    individual_id: idbridge_core::individual::IndividualId,
    session_id: Uuid,
    scope: &str,
    nonce: Option<String>,
    auth_time: Timestamp,
    grant_id: Uuid,
    now: Timestamp,
) -> Result<Value, OAuthError> {
    let snapshot = s.config.get().await.map_err(|e| OAuthError::server(&e))?;
    let tenant = snapshot.tenants.get(&tenant_id).ok_or_else(|| OAuthError::grant("the organisation is gone"))?;
    let individual = s
        .operator
        .store()
        .get_individual(tenant_id, individual_id)
        .await
        .map_err(|e| OAuthError::server(&e))?
        .ok_or_else(|| OAuthError::grant("the account is gone"))?;
    may_log_in(tenant, client, &individual, now).map_err(OAuthError::grant)?;
    let mut claims = person_claims(&snapshot, tenant, individual);
    if client.compact_claims {
        compact(&mut claims);
    }
    let access = jose::random_token();
    let refresh = jose::random_token();
    let exp = now + s.settings.id_token_ttl;
    claims.insert("iss".into(), json!(s.settings.issuer));
    claims.insert("aud".into(), json!(client.id));
    claims.insert("azp".into(), json!(client.id));
    claims.insert("iat".into(), json!(now.as_second()));
    claims.insert("exp".into(), json!(exp.as_second()));
    claims.insert("auth_time".into(), json!(auth_time.as_second()));
    claims.insert("sid".into(), json!(session_id));
    claims.insert("at_hash".into(), json!(jose::half_hash(&access)));
    if let Some(nonce) = nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    s.keys.wait_until_signing(KEYS_WAIT).await.map_err(|e| OAuthError::server(&e))?;
    let id_token =
        s.keys.sign(&client.id_token_alg, None, &Value::Object(claims), now).map_err(|e| OAuthError::server(&e))?;
    let token = |hash: String, kind: TokenKind, ttl: SignedDuration| OAuthToken {
        hash,
        kind,
        grant_id,
        client_id: client.id.clone(),
        tenant_id,
        individual_id,
        session_id,
        scope: scope.to_owned(),
        created_at: now,
        expires_at: now + ttl,
        used_at: None,
        revoked_at: None,
    };
    s.tokens
        .put(vec![
            token(hash_token(&access), TokenKind::Access, s.settings.access_token_ttl),
            token(hash_token(&refresh), TokenKind::Refresh, s.settings.refresh_token_ttl),
        ])
        .await
        .map_err(|e| OAuthError::server(&e))?;
    Ok(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": s.settings.access_token_ttl.as_secs(),
        "refresh_token": refresh,
        "id_token": id_token,
        "scope": scope,
    }))
}

/// What portals read about an individual: identity, tenant, role, permissions per
/// section (every catalog section), access-profile flags (every catalog flag) and scopes.
/// The compact form of the permission claims (`PortalClient::compact_claims`): sections
/// that are `restrict` and flags that are off are left out.
fn compact(claims: &mut serde_json::Map<String, Value>) {
    if let Some(Value::Object(sections)) = claims.get_mut("permissions") {
        sections.retain(|_, level| level != "restrict");
    }
    if let Some(Value::Object(flags)) = claims.get_mut("access_profile") {
        flags.retain(|_, on| on == &Value::Bool(true));
    }
}

pub fn person_claims(
    snapshot: &crate::cache::Snapshot,
    tenant: &Tenant,
    individual: Individual,
) -> serde_json::Map<String, Value> {
    let view = idbridge_core::operator::PortalIndividual::of(
        individual,
        &snapshot.catalog,
        &snapshot.roles,
        &snapshot.profiles,
        Timestamp::now(),
    );
    let name = view.display_name.clone().or_else(|| match (&view.given_name, &view.family_name) {
        (Some(g), Some(f)) => Some(format!("{g} {f}")),
        (Some(n), None) | (None, Some(n)) => Some(n.clone()),
        _ => None,
    });
    let permissions: BTreeMap<&str, &str> = view.permissions.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), json!(view.id));
    claims.insert("tenant".into(), json!(tenant.slug));
    claims.insert("preferred_username".into(), json!(view.login));
    for (claim, value) in
        [("email", &view.email), ("name", &name), ("given_name", &view.given_name), ("family_name", &view.family_name)]
    {
        if let Some(v) = value {
            claims.insert(claim.into(), json!(v));
        }
    }
    if view.email.is_some() {
        // An individual's email comes from a directory, or from an IdP that vouched for
        // it: one it did not vouch for is never stored (`IdpConnection::email_verification`).
        claims.insert("email_verified".into(), json!(true));
    }
    claims.insert("role".into(), json!(view.role));
    claims.insert("permissions".into(), json!(permissions));
    claims.insert("access_profile".into(), json!(view.access_profile_flags));
    claims.insert("access_profile_name".into(), json!(view.access_profile));
    claims.insert("scopes".into(), json!(view.scopes));
    claims.insert("zoneinfo".into(), json!(view.time_zone));
    claims
}

/// The access token's individual, when it is still allowed in: for userinfo and the
/// Portal API.
pub async fn bearer_individual(
    s: &SsoState,
    headers: &HeaderMap,
) -> Result<(Tenant, Individual, OAuthToken), (StatusCode, &'static str)> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or((StatusCode::UNAUTHORIZED, "a bearer access token is required"))?;
    let now = Timestamp::now();
    let token = s
        .store
        .find_access_token(&hash_token(presented), now)
        .await
        .map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "try again shortly"))?
        .ok_or((StatusCode::UNAUTHORIZED, "the access token is unknown, expired or revoked"))?;
    let snapshot = s.config.get().await.map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "try again shortly"))?;
    let tenant = snapshot
        .tenants
        .get(&token.tenant_id)
        .cloned()
        .ok_or((StatusCode::UNAUTHORIZED, "the organisation is gone"))?;
    let individual = s
        .operator
        .store()
        .get_individual(token.tenant_id, token.individual_id)
        .await
        .map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "try again shortly"))?
        .ok_or((StatusCode::UNAUTHORIZED, "the account is gone"))?;
    let client = snapshot
        .clients
        .get(&token.client_id)
        .cloned()
        .ok_or((StatusCode::UNAUTHORIZED, "the portal was unregistered"))?;
    if may_log_in(&tenant, &client, &individual, now).is_err() {
        return Err((StatusCode::UNAUTHORIZED, "the account may no longer sign in"));
    }
    Ok((tenant, individual, token))
}

async fn userinfo(State(s): State<SsoState>, headers: HeaderMap) -> Response {
    match bearer_individual(&s, &headers).await {
        Ok((tenant, individual, token)) => match s.config.get().await {
            Ok(snapshot) => {
                let mut claims = person_claims(&snapshot, &tenant, individual);
                if snapshot.clients.get(&token.client_id).is_some_and(|c| c.compact_claims) {
                    compact(&mut claims);
                }
                claims.insert("sid".into(), json!(token.session_id));
                (pages::no_store(), Json(Value::Object(claims))).into_response()
            }
            Err(e) => OAuthError::server(&e).into_response(),
        },
        Err((status, description)) => {
            let mut r =
                (status, Json(json!({ "error": "invalid_token", "error_description": description }))).into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            r
        }
    }
}

// --- logout -----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct LogoutParams {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    client_id: Option<String>,
    state: Option<String>,
    /// From idbridge's own confirmation form: proves the request comes from the browser
    /// that holds the session (a value derived from its session cookie).
    confirm: Option<String>,
}

/// RP-initiated logout by POST (the parameters in a form body).
async fn logout_form(
    state: State<SsoState>,
    headers: HeaderMap,
    form: Result<Form<LogoutParams>, axum::extract::rejection::FormRejection>,
) -> Response {
    match form {
        Ok(Form(p)) => logout(state, headers, Query(p)).await,
        Err(_) => problem(&state.0, StatusCode::BAD_REQUEST, "Sign-out failed", "The sign-out request is malformed."),
    }
}

/// The confirmation value of a session: only the browser holding the cookie can know it.
fn logout_confirmation(cookie: &str) -> String {
    hash_token(&format!("logout:{cookie}"))
}

/// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ends the browser's
/// session (its tokens stop working, and the other portals of the session are told by
/// back-channel logout). A request that does not prove it comes from the session's own
/// portal — an ID token idbridge signed for this session as `id_token_hint` — is asked
/// to confirm first (§2: logout without it is a CSRF that signs people out of every
/// portal). A hint is believed only when idbridge's own keys verify it; `alg: none` or
/// a foreign signature never chooses where the browser goes next.
async fn logout(State(s): State<SsoState>, headers: HeaderMap, Query(p): Query<LogoutParams>) -> Response {
    let now = Timestamp::now();
    let hint = p
        .id_token_hint
        .as_deref()
        .and_then(|t| s.keys.verify(t, now))
        .filter(|claims| claims["iss"].as_str() == Some(s.settings.issuer.as_str()));
    let cookie_value = cookie(&headers, SESSION_COOKIE).map(str::to_owned);
    if let (Some(session), Some(cookie_value)) = (session_from_cookie(&s, &headers).await, cookie_value) {
        let session_id = session.id.to_string();
        let hinted = hint.as_ref().is_some_and(|c| c["sid"].as_str() == Some(session_id.as_str()));
        let confirmed = p
            .confirm
            .as_deref()
            .is_some_and(|c| bool::from(c.as_bytes().ct_eq(logout_confirmation(&cookie_value).as_bytes())));
        if !(hinted || confirmed) {
            let confirmation = logout_confirmation(&cookie_value);
            let mut fields: Vec<(&str, &str)> = vec![("confirm", &confirmation)];
            for (name, value) in [
                ("post_logout_redirect_uri", &p.post_logout_redirect_uri),
                ("client_id", &p.client_id),
                ("state", &p.state),
                ("id_token_hint", &p.id_token_hint),
            ] {
                if let Some(value) = value {
                    fields.push((name, value));
                }
            }
            return pages::confirm_logout(&s.settings.branding, &fields);
        }
        match s.store.end_session(session.id, now).await {
            // The store recorded the logouts owed to the session's portals.
            Ok(_) => s.logout.notify(),
            Err(e) => return unavailable(&s, &e),
        }
    }
    let mut response = match p.post_logout_redirect_uri {
        Some(uri) => {
            // Which portal asks: client_id, or the audience of an ID token idbridge issued.
            let client_id = p.client_id.or_else(|| {
                hint.as_ref().and_then(|c| match &c["aud"] {
                    Value::String(aud) => Some(aud.clone()),
                    Value::Array(list) => list.first().and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                })
            });
            let client = match client_id {
                Some(id) => s.config.get().await.ok().and_then(|c| c.clients.get(&id).cloned()),
                None => None,
            };
            match client.filter(|c| c.post_logout_redirect_uris.contains(&uri)) {
                Some(_) => {
                    let mut url = match url::Url::parse(&uri) {
                        Ok(u) => u,
                        Err(e) => return unavailable(&s, &e),
                    };
                    if let Some(state) = &p.state {
                        url.query_pairs_mut().append_pair("state", state);
                    }
                    Redirect::to(url.as_str()).into_response()
                }
                None => problem(
                    &s,
                    StatusCode::BAD_REQUEST,
                    "Signed out",
                    "You are signed out. (The portal's return address is not registered.)",
                ),
            }
        }
        None => pages::signed_out(&s.settings.branding),
    };
    set_cookie(&mut response, SESSION_COOKIE, "", "/", SignedDuration::ZERO, s.settings.secure_cookies());
    response
}
