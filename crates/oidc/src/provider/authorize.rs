//! `/oauth2/authorize` and the home-realm page (`/login`): the portal's request is checked,
//! a live session answers at once, otherwise the person is sent to their organisation's
//! IdP (`start_upstream`); `finish` issues the code once a login is decided.

use super::*;

/// The cookie of one login in flight, named after its state.
pub(super) fn login_cookie(state: &str) -> String {
    format!("{LOGIN_COOKIE}_{}", &hash_token(state)[..16])
}

/// The portal's authorization request, kept while the user signs in upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AuthRequest {
    pub(super) client_id: String,
    pub(super) redirect_uri: String,
    pub(super) state: Option<String>,
    pub(super) nonce: Option<String>,
    pub(super) scope: String,
    pub(super) code_challenge: String,
    /// A tenant the portal named (`tenant` parameter).
    pub(super) tenant: Option<String>,
    pub(super) login_hint: Option<String>,
    /// `prompt=login`: the person must authenticate again, at the IdP too.
    #[serde(default)]
    pub(super) reauthenticate: bool,
    /// `prompt=none`: no page may be shown; every answer goes back to the portal.
    #[serde(default)]
    pub(super) silent: bool,
    /// The portal's `acr_values` (OpenID Connect Core §3.1.2.1), passed on to the IdP.
    #[serde(default)]
    pub(super) acr_values: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct AuthorizeParams {
    pub(super) client_id: Option<String>,
    pub(super) redirect_uri: Option<String>,
    pub(super) response_type: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) state: Option<String>,
    pub(super) nonce: Option<String>,
    pub(super) code_challenge: Option<String>,
    pub(super) code_challenge_method: Option<String>,
    pub(super) login_hint: Option<String>,
    pub(super) tenant: Option<String>,
    pub(super) prompt: Option<String>,
    pub(super) max_age: Option<String>,
    pub(super) acr_values: Option<String>,
}

/// An OAuth error sent back to the portal's (verified) redirect URI.
pub(super) fn to_portal_error(s: &SsoState, request: &AuthRequest, error: &str, description: &str) -> Response {
    match portal_error_url(s, request, error, description) {
        Some(url) => Redirect::to(&url).into_response(),
        None => problem(s, StatusCode::BAD_REQUEST, "Sign-in failed", description),
    }
}

/// The portal's redirect URI with an OAuth error (RFC 6749 §4.1.2.1) and `iss`.
pub(super) fn portal_error_url(s: &SsoState, request: &AuthRequest, error: &str, description: &str) -> Option<String> {
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
pub(super) fn refused(s: &SsoState, request: &AuthRequest, reason: &str) -> Response {
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

pub(super) async fn authorize(
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
        acr_values: p.acr_values.clone(),
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
    if [&request.state, &request.nonce, &request.login_hint, &request.tenant, &request.acr_values]
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
        let fresh = max_age.is_none_or(|age| session.auth_time + age > idbridge_core::clock::now());
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
            idbridge_core::clock::now() + s.settings.login_ttl,
        )
        .await
    {
        return unavailable(&s, &e);
    }
    pages::login_form(&s.settings.branding, &handle, request.login_hint.as_deref().unwrap_or_default(), None)
}

/// The tenant whose verified domains include the email's domain (one tenant per domain).
pub(super) fn tenant_for_email<'a>(tenants: impl Iterator<Item = &'a Tenant>, email: &str) -> Option<&'a Tenant> {
    let domain = email.rsplit_once('@')?.1.trim().to_ascii_lowercase();
    let mut found = tenants.filter(|t| t.policy.domains.contains(&domain));
    let tenant = found.next()?;
    // A domain claimed twice is ambiguous: nobody is sent anywhere by it.
    if found.next().is_some() { None } else { Some(tenant) }
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginPageParams {
    pub(super) request: Option<String>,
}

pub(super) async fn login_page(State(s): State<SsoState>, Query(p): Query<LoginPageParams>) -> Response {
    match p.request {
        Some(handle) => pages::login_form(&s.settings.branding, &handle, "", None),
        None => problem(&s, StatusCode::BAD_REQUEST, "Sign in", "Start signing in from your portal."),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    pub(super) request: String,
    pub(super) email: String,
}

pub(super) async fn login_submit(
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
    let now = idbridge_core::clock::now();
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
    // The password step exists only where some tenant lets its people sign in without an
    // IdP; an SSO-only deployment keeps telling a mistyped domain apart.
    let passwords_offered = s.local.is_some() && snapshot.tenants.values().any(|t| t.policy.local_sign_in.allowed);
    match tenant_for_email(snapshot.tenants.values(), email) {
        // The organisation signs in at its IdP.
        Some(tenant) if !tenant.policy.oidc.is_empty() || !passwords_offered => {
            let mut request = request;
            request.login_hint = Some(email.to_owned());
            start_upstream(&s, tenant, request).await
        }
        // No IdP takes the address: a password, for whoever has one. Known or not, the
        // page is the same, so it tells nobody which accounts exist.
        _ if passwords_offered && email.contains('@') => ask_password(&s, &request, email).await,
        _ => {
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
pub(super) struct UpstreamLogin {
    pub(super) tenant: String,
    pub(super) connection: String,
    pub(super) nonce: String,
    pub(super) pkce_verifier: String,
    /// Hash of the `idbridge_login` cookie: the callback must come back to this browser.
    pub(super) browser: String,
    pub(super) request: AuthRequest,
}

pub(super) fn callback_uri(s: &SsoState) -> String {
    format!("{}/login/callback", s.settings.issuer)
}

pub(super) async fn start_upstream(s: &SsoState, tenant: &Tenant, request: AuthRequest) -> Response {
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
            &crate::upstream::UpstreamRequest {
                redirect_uri: &callback_uri(s),
                state: &state,
                nonce: &nonce,
                pkce_challenge: challenge.as_str(),
                login_hint: login.request.login_hint.as_deref(),
                reauthenticate: login.request.reauthenticate,
                acr_values: login.request.acr_values.as_deref(),
            },
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
    if let Err(e) =
        s.store.put_pending(&key, &json!(login).to_string(), idbridge_core::clock::now() + s.settings.login_ttl).await
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

/// Issues the authorization code and sends the browser back to the portal.
pub(super) async fn finish(
    s: &SsoState,
    client: &PortalClient,
    request: &AuthRequest,
    tenant: &Tenant,
    session: &SsoSession,
    individual: Option<Individual>,
) -> Response {
    let now = idbridge_core::clock::now();
    let individual = match individual {
        Some(i) => i,
        None => match s.operator.individual_by_id(tenant.id, session.individual_id).await {
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
