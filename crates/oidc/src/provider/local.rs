//! Sign-in without an IdP (`app::local_accounts`): the password step after the home-realm
//! page, the second factor, setting a password from an invitation or reset link, TOTP or
//! passkey enrolment with recovery codes, and asking for a reset. Each step's state is a
//! pending record under a fresh random handle, taken once — a passkey ceremony's state with
//! it, so an answer is checked against the challenge that page was given, once; a sign-in
//! ends in `start_session`, as after SSO.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use idbridge_app::local_accounts::{LocalAccounts, LocalRefusal, Passed, SetPasswordError};
use idbridge_core::individual::IndividualId;
use idbridge_core::local_account::LinkPurpose;

use super::*;

/// The connection name local sign-ins' sessions carry.
pub const LOCAL_CONNECTION: &str = "local";

/// A sign-in between its steps: the portal's request and who passed the password.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Between {
    /// Stored format version.
    #[serde(default)]
    v: u32,
    /// `None` for an enrolment after an invitation (no portal is waiting).
    request: Option<AuthRequest>,
    tenant: String,
    individual: Uuid,
    /// The passkey ceremony the page was given (its state, webauthn-rs JSON), if any.
    #[serde(default)]
    passkey: Option<String>,
}

fn local(s: &SsoState) -> Option<&LocalAccounts> {
    s.local.as_ref()
}

async fn put_between(s: &SsoState, prefix: &str, between: &Between) -> Result<String, Response> {
    let handle = jose::random_token();
    let key = hash_token(&format!("{prefix}:{handle}"));
    s.store
        .put_pending(&key, &json!(between).to_string(), idbridge_core::clock::now() + s.settings.login_ttl)
        .await
        .map_err(|e| unavailable(s, &e))?;
    Ok(handle)
}

async fn take_between(s: &SsoState, prefix: &str, handle: &str) -> Result<Between, Response> {
    let key = hash_token(&format!("{prefix}:{handle}"));
    match s.store.take_pending(&key, idbridge_core::clock::now()).await {
        Ok(Some(data)) => serde_json::from_str(&data).map_err(|e| unavailable(s, &e)),
        Ok(None) => Err(problem(
            s,
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This page has expired. Start again from your portal.",
        )),
        Err(e) => Err(unavailable(s, &e)),
    }
}

async fn put_request(s: &SsoState, request: &AuthRequest) -> Result<String, Response> {
    let handle = jose::random_token();
    let key = hash_token(&format!("request:{handle}"));
    s.store
        .put_pending(&key, &json!(request).to_string(), idbridge_core::clock::now() + s.settings.login_ttl)
        .await
        .map_err(|e| unavailable(s, &e))?;
    Ok(handle)
}

/// The password step, for an address no organisation's IdP takes (known or not: the page
/// is the same).
pub(super) async fn ask_password(s: &SsoState, request: &AuthRequest, email: &str) -> Response {
    match put_request(s, request).await {
        Ok(handle) => pages::password_form(&s.settings.branding, &handle, email, None),
        Err(response) => response,
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct PasswordForm {
    request: String,
    email: String,
    password: String,
}

pub(super) async fn password_submit(
    State(s): State<SsoState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    form: Result<Form<PasswordForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return problem(&s, StatusCode::BAD_REQUEST, "Sign-in failed", "The sign-in form was incomplete.");
    };
    let Some(accounts) = local(&s) else {
        return problem(&s, StatusCode::NOT_FOUND, "Sign in", "Sign-in with a password is not offered here.");
    };
    let key = hash_token(&format!("request:{}", f.request));
    let request: AuthRequest = match s.store.take_pending(&key, idbridge_core::clock::now()).await {
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
    let email = f.email.trim().to_owned();
    let again = |s: &SsoState, request: AuthRequest, message: String| {
        let s = s.clone();
        let email = email.clone();
        async move {
            match put_request(&s, &request).await {
                Ok(handle) => pages::password_form(&s.settings.branding, &handle, &email, Some(&message)),
                Err(response) => response,
            }
        }
    };
    let passed = match accounts.check_password(&email, &f.password, peer.map(|p| p.0.0.ip())).await {
        Ok(passed) => passed,
        Err(LocalRefusal::Unavailable(e)) => return unavailable(&s, &e),
        Err(refusal) => {
            tracing::info!(refusal = %refusal, "local sign-in refused at the password");
            return again(&s, request, refusal.to_string()).await;
        }
    };
    decided(&s, request, passed).await
}

/// The password passed: the person's access is decided as after SSO, then the second
/// factor (or its enrolment) comes, or the session begins.
async fn decided(s: &SsoState, request: AuthRequest, passed: Passed) -> Response {
    let client = match s.config.get().await {
        Ok(snapshot) => match snapshot.clients.get(&request.client_id).cloned() {
            Some(client) => client,
            None => return problem(s, StatusCode::BAD_REQUEST, "Sign-in failed", "The portal was unregistered."),
        },
        Err(e) => return unavailable(s, &e),
    };
    let now = idbridge_core::clock::now();
    if let Err(reason) = may_log_in(&passed.tenant, &client, &passed.individual, now) {
        tracing::info!(tenant = %passed.tenant.slug, individual = %passed.individual.id, reason, "local sign-in refused");
        return refused(s, &request, &reason);
    }
    let between = Between {
        v: 1,
        request: Some(request.clone()),
        tenant: passed.tenant.slug.to_string(),
        individual: passed.individual.id.0,
        passkey: None,
    };
    if passed.has_second_factor {
        return second_factor_page(s, &passed.tenant, between, None).await;
    }
    if passed.must_enrol {
        return enrol(s, &between, &passed).await;
    }
    match start_session(s, &client, &request, &passed.tenant, passed.individual, LOCAL_CONNECTION).await {
        Ok(response) => response,
        Err(failure) => failure.render(s),
    }
}

/// The second step's page, with a new passkey ceremony when the person has passkeys.
async fn second_factor_page(s: &SsoState, tenant: &Tenant, mut between: Between, error: Option<&str>) -> Response {
    let Some(accounts) = local(s) else { return unavailable(s, &"local sign-in is off") };
    let ceremony = match accounts.begin_passkey_check(tenant, IndividualId(between.individual)).await {
        Ok(ceremony) => ceremony,
        Err(e) => return unavailable(s, &e),
    };
    between.passkey = ceremony.as_ref().map(|c| c.state.clone());
    match put_between(s, "second-factor", &between).await {
        Ok(handle) => pages::second_factor_form(
            &s.settings.branding,
            &handle,
            ceremony.as_ref().map(|c| c.options.as_str()),
            error,
        ),
        Err(response) => response,
    }
}

async fn enrol(s: &SsoState, between: &Between, passed: &Passed) -> Response {
    let Some(accounts) = local(s) else { return unavailable(s, &"local sign-in is off") };
    let enrolment = match accounts.begin_totp(&passed.tenant, &passed.individual).await {
        Ok(e) => e,
        Err(e) => return unavailable(s, &e),
    };
    let enrolment = (enrolment.secret, enrolment.qr_svg);
    enrolment_page(s, &passed.tenant, &passed.individual, between.clone(), &enrolment, None).await
}

/// The enrolment page: the TOTP secret (`totp`: its text and QR code) and, where passkeys
/// are offered, a new registration ceremony.
async fn enrolment_page(
    s: &SsoState,
    tenant: &Tenant,
    individual: &idbridge_core::individual::Individual,
    mut between: Between,
    totp: &(String, String),
    error: Option<&str>,
) -> Response {
    let Some(accounts) = local(s) else { return unavailable(s, &"local sign-in is off") };
    let ceremony = match accounts.begin_passkey(tenant, individual).await {
        Ok(ceremony) => ceremony,
        Err(e) => return unavailable(s, &e),
    };
    between.passkey = ceremony.as_ref().map(|c| c.state.clone());
    match put_between(s, "enrol", &between).await {
        Ok(handle) => pages::enrolment(
            &s.settings.branding,
            &handle,
            &totp.0,
            &totp.1,
            ceremony.as_ref().map(|c| c.options.as_str()),
            error,
        ),
        Err(response) => response,
    }
}

/// A second factor's form: a code, or a passkey's answer (from the passkey form).
#[derive(Debug, Deserialize)]
pub(super) struct CodeForm {
    handle: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    passkey: Option<String>,
}

impl CodeForm {
    /// The passkey answer with the ceremony it answers; `Err` for an answer to a page that
    /// had none (a forged form).
    fn passkey<'a>(&'a self, between: &'a Between) -> Option<Result<(&'a str, &'a str), ()>> {
        let answer = self.passkey.as_deref().filter(|a| !a.is_empty())?;
        Some(between.passkey.as_deref().map(|state| (state, answer)).ok_or(()))
    }
}

/// The pending step `handle` names (taken once), and who it is about, as they are now.
async fn take_step(
    s: &SsoState,
    prefix: &str,
    handle: &str,
) -> Result<(Between, Tenant, idbridge_core::individual::Individual), Response> {
    let between = take_between(s, prefix, handle).await?;
    let slug = TenantSlug::parse(&between.tenant).map_err(|e| unavailable(s, &e))?;
    let tenant = s.operator.tenant(&slug).await.map_err(|e| unavailable(s, &e))?;
    let individual = s
        .operator
        .individual_by_id(tenant.id, IndividualId(between.individual))
        .await
        .map_err(|e| unavailable(s, &e))?
        .ok_or_else(|| problem(s, StatusCode::BAD_REQUEST, "Sign-in failed", "The account is gone."))?;
    Ok((between, tenant, individual))
}

pub(super) async fn second_factor_submit(
    State(s): State<SsoState>,
    form: Result<Form<CodeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return problem(&s, StatusCode::BAD_REQUEST, "Sign-in failed", "The form was incomplete.");
    };
    let Some(accounts) = local(&s) else { return unavailable(&s, &"local sign-in is off") };
    let (between, tenant, individual) = match take_step(&s, "second-factor", &f.handle).await {
        Ok(step) => step,
        Err(response) => return response,
    };
    let checked = match f.passkey(&between) {
        Some(Ok((state, answer))) => accounts.check_passkey(&tenant, individual.id, state, answer).await,
        Some(Err(())) => Err(LocalRefusal::WrongPasskey),
        None => accounts.check_second_factor(&tenant, individual.id, &f.code).await,
    };
    match checked {
        Ok(()) => {}
        Err(LocalRefusal::Unavailable(e)) => return unavailable(&s, &e),
        Err(refusal @ LocalRefusal::Locked(_)) => {
            return problem(&s, StatusCode::TOO_MANY_REQUESTS, "Sign-in paused", &refusal.to_string());
        }
        Err(refusal) => return second_factor_page(&s, &tenant, between, Some(&refusal.to_string())).await,
    }
    let Some(request) = between.request else { return unavailable(&s, &"a second factor without a portal request") };
    let passed = Passed { tenant, individual, has_second_factor: false, must_enrol: false };
    // Access is decided again (it may have changed in the meantime), then the session begins.
    decided(&s, request, passed).await
}

/// Enrolment's code: on success the recovery codes are shown once, with the way on.
pub(super) async fn enrol_submit(
    State(s): State<SsoState>,
    form: Result<Form<CodeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return problem(&s, StatusCode::BAD_REQUEST, "Sign-in failed", "The form was incomplete.");
    };
    let Some(accounts) = local(&s) else { return unavailable(&s, &"local sign-in is off") };
    let (between, tenant, individual) = match take_step(&s, "enrol", &f.handle).await {
        Ok(step) => step,
        Err(response) => return response,
    };
    let confirmed = match f.passkey(&between) {
        Some(Ok((state, answer))) => accounts.confirm_passkey(&tenant, &individual, state, answer).await,
        Some(Err(())) => Err(LocalRefusal::WrongPasskey),
        None => accounts.confirm_totp(&tenant, &individual, &f.code).await,
    };
    let codes = match confirmed {
        Ok(codes) => codes,
        Err(LocalRefusal::Unavailable(e)) => return unavailable(&s, &e),
        Err(refusal) => {
            // The same secret again: the person's app already holds it.
            let secret = match accounts.pending_totp_secret(&tenant, &individual).await {
                Ok(Some(secret)) => secret,
                Ok(None) => return unavailable(&s, &"enrolment lost its secret"),
                Err(e) => return unavailable(&s, &e),
            };
            let qr = accounts.totp_qr(&secret, &individual).unwrap_or_default();
            let refusal = refusal.to_string();
            return enrolment_page(&s, &tenant, &individual, between, &(secret, qr), Some(&refusal)).await;
        }
    };
    match &between.request {
        Some(_) => match put_between(&s, "enrolled", &between).await {
            Ok(handle) => pages::recovery_codes(&s.settings.branding, &codes, Some(("/login/continue", &handle))),
            Err(response) => response,
        },
        None => pages::recovery_codes(&s.settings.branding, &codes, None),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct HandleForm {
    handle: String,
}

/// After the recovery codes were shown during a sign-in: on to the portal.
pub(super) async fn continue_submit(
    State(s): State<SsoState>,
    form: Result<Form<HandleForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return problem(&s, StatusCode::BAD_REQUEST, "Sign-in failed", "The form was incomplete.");
    };
    let (between, tenant, individual) = match take_step(&s, "enrolled", &f.handle).await {
        Ok(step) => step,
        Err(response) => return response,
    };
    let Some(request) = between.request else { return unavailable(&s, &"no portal request") };
    decided(&s, request, Passed { tenant, individual, has_second_factor: false, must_enrol: false }).await
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

fn link_gone(s: &SsoState) -> Response {
    problem(
        s,
        StatusCode::GONE,
        "Link expired",
        "This link has expired, has already been used, or was replaced by a newer one. Ask your administrator for \
         a new invitation, or ask for a new password-reset link.",
    )
}

async fn link_page(s: &SsoState, token: Option<String>, purpose: LinkPurpose, action: &str) -> Response {
    let Some(accounts) = local(s) else { return link_gone(s) };
    let Some(token) = token.filter(|t| !t.is_empty() && t.len() <= 200) else { return link_gone(s) };
    match accounts.link(&token).await {
        Ok(Some(view)) if view.purpose == purpose => {
            let login = view.individual.email.clone().unwrap_or(view.individual.login.clone());
            pages::set_password_form(&s.settings.branding, action, &token, &login, None)
        }
        Ok(_) => link_gone(s),
        Err(e) => unavailable(s, &e),
    }
}

pub(super) async fn setup_page(State(s): State<SsoState>, Query(q): Query<TokenQuery>) -> Response {
    link_page(&s, q.token, LinkPurpose::Invitation, "/account/setup").await
}

pub(super) async fn reset_new_page(State(s): State<SsoState>, Query(q): Query<TokenQuery>) -> Response {
    link_page(&s, q.token, LinkPurpose::Reset, "/account/reset/new").await
}

#[derive(Debug, Deserialize)]
pub(super) struct SetPasswordForm {
    token: String,
    password: String,
    confirm: String,
}

/// The password form again, saying why the last one was not taken.
async fn set_password_again(
    s: &SsoState,
    accounts: &LocalAccounts,
    token: &str,
    action: &str,
    message: &str,
) -> Response {
    match accounts.link(token).await {
        Ok(Some(view)) => {
            let login = view.individual.email.clone().unwrap_or(view.individual.login.clone());
            pages::set_password_form(&s.settings.branding, action, token, &login, Some(message))
        }
        Ok(None) => link_gone(s),
        Err(e) => unavailable(s, &e),
    }
}

async fn set_password(s: &SsoState, f: SetPasswordForm, action: &str) -> Response {
    let Some(accounts) = local(s) else { return link_gone(s) };
    if f.password != f.confirm {
        return set_password_again(s, accounts, &f.token, action, "The two passwords are not the same.").await;
    }
    let passed = match accounts.set_password(&f.token, &f.password).await {
        Ok(passed) => passed,
        Err(SetPasswordError::Refused(why)) => return set_password_again(s, accounts, &f.token, action, &why).await,
        Err(SetPasswordError::Gone) => return link_gone(s),
        Err(SetPasswordError::Unavailable(e)) => return unavailable(s, &e),
    };
    if passed.must_enrol {
        let between = Between {
            v: 1,
            request: None,
            tenant: passed.tenant.slug.to_string(),
            individual: passed.individual.id.0,
            passkey: None,
        };
        return enrol(s, &between, &passed).await;
    }
    pages::notice(&s.settings.branding, "Password set", "Your password is set. You can now sign in to your portal.")
}

pub(super) async fn setup_submit(
    State(s): State<SsoState>,
    form: Result<Form<SetPasswordForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    match form {
        Ok(Form(f)) => set_password(&s, f, "/account/setup").await,
        Err(_) => problem(&s, StatusCode::BAD_REQUEST, "Password not set", "The form was incomplete."),
    }
}

pub(super) async fn reset_new_submit(
    State(s): State<SsoState>,
    form: Result<Form<SetPasswordForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    match form {
        Ok(Form(f)) => set_password(&s, f, "/account/reset/new").await,
        Err(_) => problem(&s, StatusCode::BAD_REQUEST, "Password not set", "The form was incomplete."),
    }
}

pub(super) async fn reset_page(State(s): State<SsoState>) -> Response {
    pages::reset_form(&s.settings.branding)
}

#[derive(Debug, Deserialize)]
pub(super) struct ResetForm {
    email: String,
}

pub(super) async fn reset_submit(
    State(s): State<SsoState>,
    form: Result<Form<ResetForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return problem(&s, StatusCode::BAD_REQUEST, "Reset your password", "The form was incomplete.");
    };
    if let Some(accounts) = local(&s)
        && f.email.len() <= 320
        && let Err(e) = accounts.request_reset(&f.email).await
    {
        return unavailable(&s, &e);
    }
    // The same answer for every address.
    pages::notice(
        &s.settings.branding,
        "Check your mail",
        "If this address has an account here, a link to choose a new password is on its way.",
    )
}
