//! `/oauth2/logout`: RP-initiated logout, with confirmation unless idbridge signed the hint.

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct LogoutParams {
    pub(super) id_token_hint: Option<String>,
    pub(super) post_logout_redirect_uri: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) state: Option<String>,
    /// From idbridge's own confirmation form: proves the request comes from the browser
    /// that holds the session (a value derived from its session cookie).
    pub(super) confirm: Option<String>,
}

/// RP-initiated logout by POST (the parameters in a form body).
pub(super) async fn logout_form(
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
pub(super) fn logout_confirmation(cookie: &str) -> String {
    hash_token(&format!("logout:{cookie}"))
}

/// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ends the browser's
/// session (its tokens stop working, and the other portals of the session are told by
/// back-channel logout). A request that does not prove it comes from the session's own
/// portal — an ID token idbridge signed for this session as `id_token_hint` — is asked
/// to confirm first (§2: logout without it is a CSRF that signs people out of every
/// portal). A hint is believed only when idbridge's own keys verify it; `alg: none` or
/// a foreign signature never chooses where the browser goes next.
pub(super) async fn logout(State(s): State<SsoState>, headers: HeaderMap, Query(p): Query<LogoutParams>) -> Response {
    let now = idbridge_core::clock::now();
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
