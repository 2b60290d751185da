//! `/oauth2/token` (code with PKCE, refresh with rotation and reuse detection) and
//! `/oauth2/userinfo`, and the claims both carry.

use super::*;

/// An OAuth error answer of the token and userinfo endpoints.
pub(super) struct OAuthError {
    pub(super) status: StatusCode,
    pub(super) error: &'static str,
    pub(super) description: String,
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
pub(super) struct TokenForm {
    pub(super) grant_type: Option<String>,
    pub(super) code: Option<String>,
    pub(super) redirect_uri: Option<String>,
    pub(super) code_verifier: Option<String>,
    pub(super) refresh_token: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
}

/// `client_secret_basic` or `client_secret_post`; the secret's hash is compared in
/// constant time.
pub(super) async fn authenticate_client(
    s: &SsoState,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<PortalClient, OAuthError> {
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

pub(super) async fn token(
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

pub(super) async fn token_inner(s: &SsoState, headers: &HeaderMap, form: TokenForm) -> Result<Value, OAuthError> {
    let client = authenticate_client(s, headers, &form).await?;
    let now = idbridge_core::clock::now();
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
pub(super) async fn issue(
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
        .individual_by_id(tenant_id, individual_id)
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
pub(super) fn compact(claims: &mut serde_json::Map<String, Value>) {
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
    let view = idbridge_app::operator::PortalIndividual::of(
        individual,
        &snapshot.catalog,
        &snapshot.roles,
        &snapshot.profiles,
        idbridge_core::clock::now(),
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
    if let Some(language) = &view.language {
        // OIDC Core §5.1: `locale` is a BCP 47 language tag, as the individual's is.
        claims.insert("locale".into(), json!(language));
    }
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
        .and_then(idbridge_core::token::bearer)
        .ok_or((StatusCode::UNAUTHORIZED, "a bearer access token is required"))?;
    let now = idbridge_core::clock::now();
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
        .individual_by_id(token.tenant_id, token.individual_id)
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

pub(super) async fn userinfo(State(s): State<SsoState>, headers: HeaderMap) -> Response {
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
