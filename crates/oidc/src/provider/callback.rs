//! `/login/callback`: the IdP's answer is checked (state, browser, RFC 9207 `iss`, the ID
//! token, the email), the person is resolved (`Accounts`), and a session begins.

use super::*;

/// The page for a login the organisation's IdP could not complete. It names the
/// organisation and what the person can do — never URLs or library errors, which go to
/// the log (where the caller has put them).
pub(super) fn login_failed(s: &SsoState, tenant: &Tenant, e: &LoginError) -> Response {
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

#[derive(Debug, Deserialize)]
pub(super) struct CallbackParams {
    pub(super) code: Option<String>,
    pub(super) state: Option<String>,
    pub(super) iss: Option<String>,
    pub(super) error: Option<String>,
    pub(super) error_description: Option<String>,
}

pub(super) async fn callback(
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

/// Why a sign-in stopped at the callback. Every failure is one of these, rendered in one
/// place (`Failure::render`): what the person sees, and whether the portal is told.
pub(super) enum Failure {
    /// Before the portal's request is known, or when it cannot continue (no or unknown
    /// state, another browser, a changed configuration): a page, never a redirect.
    Page { status: StatusCode, message: String },
    /// The IdP's answer was refused (a wrong `iss`, its ID token): a page naming why.
    Answer(LoginError),
    /// The IdP could not complete the login: a page naming the organisation.
    Upstream { tenant: Box<Tenant>, error: LoginError },
    /// The IdP said no (`error=` on its answer): the portal gets `access_denied`.
    IdpRefused { request: Box<AuthRequest>, description: String },
    /// idbridge will not sign this person in: back to the portal, or a page with the ways
    /// on (`refused`).
    Refused { request: Box<AuthRequest>, reason: String },
    /// idbridge's own fault (the database, a stored login it cannot read).
    Unavailable(String),
}

impl Failure {
    pub(super) fn page(status: StatusCode, message: &str) -> Self {
        Self::Page { status, message: message.to_owned() }
    }

    pub(super) fn unavailable(e: impl std::fmt::Display) -> Self {
        Self::Unavailable(e.to_string())
    }

    pub(super) fn refused(request: &AuthRequest, reason: &str) -> Self {
        Self::Refused { request: Box::new(request.clone()), reason: reason.to_owned() }
    }

    pub(super) fn render(self, s: &SsoState) -> Response {
        match self {
            Self::Page { status, message } => problem(s, status, "Sign-in failed", &message),
            Self::Answer(e) => problem(s, StatusCode::BAD_REQUEST, "Sign-in failed", &e.to_string()),
            Self::Upstream { tenant, error } => login_failed(s, &tenant, &error),
            Self::IdpRefused { request, description } => to_portal_error(s, &request, "access_denied", &description),
            Self::Refused { request, reason } => refused(s, &request, &reason),
            Self::Unavailable(e) => unavailable(s, &e),
        }
    }
}

pub(super) async fn callback_inner(
    s: &SsoState,
    headers: &HeaderMap,
    p: CallbackParams,
    upstream: &mut std::time::Duration,
) -> Response {
    match sign_in(s, headers, p, upstream).await {
        Ok(response) => response,
        Err(failure) => failure.render(s),
    }
}

async fn sign_in(
    s: &SsoState,
    headers: &HeaderMap,
    p: CallbackParams,
    upstream: &mut std::time::Duration,
) -> Result<Response, Failure> {
    let now = idbridge_core::clock::now();
    let state =
        p.state.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| {
            Failure::page(StatusCode::BAD_REQUEST, "The identity provider's answer carries no state.")
        })?;
    let stored =
        s.store.take_pending(&hash_token(&format!("login:{state}")), now).await.map_err(Failure::unavailable)?;
    let login: UpstreamLogin = serde_json::from_str(&stored.ok_or_else(|| {
        Failure::page(
            StatusCode::BAD_REQUEST,
            "This sign-in answer has an unknown, expired or already used state. Start again from your portal.",
        )
    })?)
    .map_err(Failure::unavailable)?;
    // The state must come back to the browser that started the login (login CSRF). Each
    // login has its own cookie, so two in flight in one browser (two tabs, two portals)
    // both complete.
    let presented = cookie(headers, &login_cookie(state));
    let browser_ok = presented.is_some_and(|c| bool::from(hash_token(c).as_bytes().ct_eq(login.browser.as_bytes())));
    if !browser_ok {
        return Err(Failure::page(
            StatusCode::BAD_REQUEST,
            match presented {
                Some(_) => "This sign-in answer does not belong to this browser. Start again from your portal.",
                None => {
                    "This browser did not start this sign-in (or no longer holds its cookie). Start again from \
                     your portal."
                }
            },
        ));
    }
    let slug = TenantSlug::parse(&login.tenant).map_err(Failure::unavailable)?;
    let tenant = s.operator.tenant(&slug).await.map_err(Failure::unavailable)?;
    let connection = tenant.policy.oidc.iter().find(|c| c.name == login.connection).ok_or_else(|| {
        Failure::page(StatusCode::FORBIDDEN, "The organisation's sign-in was changed meanwhile. Start again.")
    })?;
    // Who answered, before anything in the answer is acted on (errors included).
    if let Err(e) = s.upstreams.check_response_issuer(tenant.slug.as_str(), connection, p.iss.as_deref()).await {
        tracing::warn!(tenant = %tenant.slug, connection = connection.name, error = %e, "IdP answer refused (mix-up defence)");
        return Err(Failure::Answer(e));
    }
    if let Some(error) = &p.error {
        let description = p.error_description.as_deref().unwrap_or_default();
        tracing::info!(tenant = login.tenant, error, description, "the IdP refused the login");
        return Err(Failure::IdpRefused {
            request: Box::new(login.request),
            description: format!("the identity provider answered {error}"),
        });
    }
    let code = p
        .code
        .as_deref()
        .ok_or_else(|| Failure::page(StatusCode::BAD_REQUEST, "The identity provider's answer carries no code."))?;
    let upstream_started = std::time::Instant::now();
    let completed = s
        .upstreams
        .complete(tenant.slug.as_str(), connection, code, &login.pkce_verifier, &callback_uri(s), &login.nonce)
        .await;
    *upstream = upstream_started.elapsed();
    let claimed = completed.map_err(|error| {
        tracing::warn!(tenant = %tenant.slug, connection = connection.name, error = %error, "upstream login rejected");
        Failure::Upstream { tenant: Box::new(tenant.clone()), error }
    })?;
    match (&claimed.email, &claimed.unverified_email) {
        (Some(email), _) if !connection.accepts_email(email) => {
            return Err(Failure::refused(&login.request, "Your email domain is not allowed for this organisation."));
        }
        // The domain check needs an email the IdP vouches for.
        (None, unverified) if !connection.allowed_email_domains.is_empty() => {
            tracing::info!(tenant = %tenant.slug, subject = claimed.subject, unverified = unverified.is_some(), "login refused: no verified email");
            let why = match unverified {
                Some(_) => "Your identity provider has not verified your email address.",
                None => "Your identity provider sent no email address.",
            };
            return Err(Failure::refused(&login.request, why));
        }
        _ => {}
    }
    let client = s
        .config
        .get()
        .await
        .map_err(Failure::unavailable)?
        .clients
        .get(&login.request.client_id)
        .cloned()
        .ok_or_else(|| Failure::page(StatusCode::BAD_REQUEST, "The portal was unregistered meanwhile."))?;
    let individual = s.accounts.resolve(&tenant, connection, &claimed).await.map_err(|refusal| {
        tracing::info!(tenant = %tenant.slug, subject = claimed.subject, reason = %refusal, "login refused");
        Failure::refused(&login.request, &refusal.to_string())
    })?;
    if let Err(reason) = may_log_in(&tenant, &client, &individual, now) {
        tracing::info!(tenant = %tenant.slug, individual = %individual.id, reason, "login refused");
        return Err(Failure::refused(&login.request, &reason));
    }
    let mut response = start_session(s, &client, &login.request, &tenant, individual, &connection.name).await?;
    // The login cookie has done its job.
    let secure = s.settings.secure_cookies();
    set_cookie(&mut response, &login_cookie(state), "", "/login/callback", SignedDuration::ZERO, secure);
    Ok(response)
}

/// A session for someone whose sign-in was decided (at their IdP, or with their own
/// password), and the code back to the portal: the same tokens and claims either way.
pub(super) async fn start_session(
    s: &SsoState,
    client: &PortalClient,
    request: &AuthRequest,
    tenant: &Tenant,
    individual: Individual,
    connection: &str,
) -> Result<Response, Failure> {
    // The session begins after the login was decided: a change that decision made ends
    // the person's earlier sessions, never this one (`SsoStore::end_individual_sessions`).
    let signed_in_at = idbridge_core::clock::now();
    let session = SsoSession {
        id: Uuid::new_v4(),
        tenant_id: tenant.id,
        individual_id: individual.id,
        connection: connection.to_owned(),
        auth_time: signed_in_at,
        expires_at: signed_in_at + s.settings.session_ttl,
        ended_at: None,
    };
    let cookie_value = jose::random_token();
    s.store.create_session(&session, &hash_token(&cookie_value)).await.map_err(Failure::unavailable)?;
    tracing::info!(tenant = %tenant.slug, individual = %individual.id, session = %session.id, connection, "signed in");
    let mut response = finish(s, client, request, tenant, &session, Some(individual)).await;
    set_cookie(&mut response, SESSION_COOKIE, &cookie_value, "/", s.settings.session_ttl, s.settings.secure_cookies());
    Ok(response)
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
