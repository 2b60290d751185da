//! idbridge as the portals' OpenID provider, and the login flow behind it:
//!
//! portal → `/oauth2/authorize` → (`/login` home-realm page) → tenant IdP →
//! `/login/callback` → checks → portal `redirect_uri?code=…` → `/oauth2/token`.
//!
//! Errors before the client and redirect URI are known are shown to the user (never
//! redirected to an unverified URI); later ones go back to the portal as OAuth errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use idbridge_app::operator::Operator;
pub use idbridge_app::sign_in::{Accounts, Refusal};
use idbridge_core::individual::{Individual, IndividualStatus};
use idbridge_core::ports::SsoStore;
use idbridge_core::sso::{
    AuthorizationCode, CodeRedemption, OAuthToken, PortalClient, RefreshUse, SsoSession, TokenKind,
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
use crate::upstream::{LoginError, Upstreams};

mod authorize;
mod callback;
mod local;
mod logout;
mod token;

use authorize::*;
use callback::*;
use local::*;
use logout::*;
use token::*;

pub use callback::may_log_in;
pub use token::{bearer_individual, person_claims};

pub const SESSION_COOKIE: &str = "idbridge_session";

pub const LOGIN_COOKIE: &str = "idbridge_login";

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
    /// Sign-in with idbridge's own credentials, for tenants that allow it.
    pub local: Option<idbridge_app::local_accounts::LocalAccounts>,
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
        .route("/login/password", axum::routing::post(password_submit))
        .route("/login/second-factor", axum::routing::post(second_factor_submit))
        .route("/login/continue", axum::routing::post(continue_submit))
        .route("/account/setup", get(setup_page).post(setup_submit))
        .route("/account/second-factor", axum::routing::post(enrol_submit))
        .route("/assets/passkey.js", get(crate::pages::passkey_script))
        .route("/account/reset", get(reset_page).post(reset_submit))
        .route("/account/reset/new", get(reset_new_page).post(reset_new_submit))
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
                "email_verified", "name", "preferred_username", "given_name", "family_name", "zoneinfo", "locale", "tenant",
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
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(s.keys.jwks(idbridge_core::clock::now()))).into_response()
}

// --- authorization -------------------------------------------------------------------

fn problem(s: &SsoState, status: StatusCode, title: &str, message: &str) -> Response {
    pages::problem(&s.settings.branding, status, title, message)
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
    s.store.find_session(&hash_token(value), idbridge_core::clock::now()).await.ok().flatten()
}
