//! The login pages: plain, accessible HTML that works without JavaScript. Every value
//! that reaches a page is escaped.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The operator's branding.
#[derive(Debug, Clone, Default)]
pub struct Branding {
    pub operator_name: String,
    pub logo_url: Option<String>,
}

fn layout(branding: &Branding, title: &str, body: &str) -> String {
    let logo = branding
        .logo_url
        .as_deref()
        .map(|u| format!(r#"<img src="{}" alt="{} logo" height="40">"#, escape(u), escape(&branding.operator_name)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – {operator}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 28rem; margin: 4rem auto; padding: 0 1rem; color: #1a1a1a; }}
label {{ display: block; margin: 1rem 0 .25rem; font-weight: 600; }}
input[type=email], input[type=password], input[type=text] {{ width: 100%; padding: .6rem; font-size: 1rem; box-sizing: border-box; }}
button {{ margin-top: 1rem; padding: .6rem 1.2rem; font-size: 1rem; }}
.error {{ border-left: 4px solid #b00020; padding: .5rem 1rem; background: #fdecea; }}
</style>
</head>
<body>
<header>{logo}<p>{operator}</p></header>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"#,
        title = escape(title),
        operator = escape(&branding.operator_name),
    )
}

/// The home-realm discovery form: the user's work email picks the organisation.
pub fn login_form(branding: &Branding, request: &str, email: &str, error: Option<&str>) -> Response {
    let error_html = error
        .map(|e| format!(r#"<p class="error" role="alert" id="login-error">{}</p>"#, escape(e)))
        .unwrap_or_default();
    let described = if error.is_some() { r#" aria-describedby="login-error" aria-invalid="true""# } else { "" };
    let body = format!(
        r#"{error_html}
<form method="post" action="/login">
<input type="hidden" name="request" value="{request}">
<label for="email">Work email</label>
<input type="email" id="email" name="email" autocomplete="username" required value="{email}"{described}>
<p>We send you to your organisation's sign-in page.</p>
<button type="submit">Continue</button>
</form>"#,
        request = escape(request),
        email = escape(email),
    );
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    (status, no_store(), page_security(), Html(layout(branding, "Sign in", &body))).into_response()
}

/// A page that explains why signing in stopped.
pub fn problem(branding: &Branding, status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(r#"<p class="error" role="alert">{}</p>"#, escape(message));
    (status, no_store(), page_security(), Html(layout(branding, title, &body))).into_response()
}

/// Why the person cannot sign in, with the ways on: another account, or back to the
/// portal (which then learns `access_denied`).
pub fn refused(branding: &Branding, reason: &str, another_account: &str, back: Option<&str>) -> Response {
    let back =
        back.map(|url| format!(r#"<p><a href="{}">Back to the portal</a></p>"#, escape(url))).unwrap_or_default();
    let body = format!(
        r#"<p class="error" role="alert">{}</p>
<p><a href="{}">Sign in with another account</a></p>
{back}"#,
        escape(reason),
        escape(another_account)
    );
    (StatusCode::FORBIDDEN, no_store(), page_security(), Html(layout(branding, "Sign-in refused", &body)))
        .into_response()
}

/// "Sign out?" — asked when a sign-out request does not prove it comes from the
/// person's own portal. The form carries the request on, with the session's
/// confirmation value.
pub fn confirm_logout(branding: &Branding, fields: &[(&str, &str)]) -> Response {
    let hidden: String = fields
        .iter()
        .map(|(name, value)| format!(r#"<input type="hidden" name="{}" value="{}">"#, escape(name), escape(value)))
        .collect::<Vec<_>>()
        .join("\n");
    let body = format!(
        r#"<p>Do you want to sign out of every portal you are signed in to?</p>
<form method="post" action="/oauth2/logout">
{hidden}
<button type="submit">Sign out</button>
</form>
<p>If you did not ask to sign out, close this page: you stay signed in.</p>"#
    );
    (StatusCode::OK, no_store(), page_security(), Html(layout(branding, "Sign out?", &body))).into_response()
}

pub fn signed_out(branding: &Branding) -> Response {
    let body = "<p>You are signed out.</p>";
    (StatusCode::OK, no_store(), page_security(), Html(layout(branding, "Signed out", body))).into_response()
}

/// What every page sends so that it cannot be framed (clickjacking a sign-in or a
/// logout), run scripts, or leak its URL — which can carry a state or a code — to
/// another site. No `form-action`: the login form's answer redirects to the IdP, which
/// browsers would count against it.
pub fn page_security() -> [(axum::http::HeaderName, &'static str); 4] {
    use axum::http::header;
    [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; base-uri 'none'; frame-ancestors 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ]
}

pub fn no_store() -> [(axum::http::HeaderName, &'static str); 2] {
    [(axum::http::header::CACHE_CONTROL, "no-store"), (axum::http::header::PRAGMA, "no-cache")]
}

/// A page of its own for the local sign-in steps: a title, an optional error, a body that
/// is already escaped HTML, and the status.
fn page(
    branding: &Branding,
    status: StatusCode,
    title: &str,
    error: Option<&str>,
    body: &str,
    script: bool,
) -> Response {
    let error_html = error
        .map(|e| format!(r#"<p class="error" role="alert" id="form-error">{}</p>"#, escape(e)))
        .unwrap_or_default();
    let body = format!("{error_html}\n{body}");
    let mut security = page_security();
    if script {
        // The passkey script, from idbridge itself and nowhere else.
        security[0].1 = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src * data:; \
                         base-uri 'none'; frame-ancestors 'none'";
    }
    (status, no_store(), security, Html(layout(branding, title, &body))).into_response()
}

fn status_for(error: Option<&str>) -> StatusCode {
    if error.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK }
}

/// The password step of a local sign-in: shown for every address no organisation's IdP
/// takes, known or not.
pub fn password_form(branding: &Branding, request: &str, email: &str, error: Option<&str>) -> Response {
    let body = format!(
        r#"<form method="post" action="/login/password">
<input type="hidden" name="request" value="{request}">
<label for="email">Email</label>
<input type="email" id="email" name="email" autocomplete="username" required value="{email}">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>
<p><a href="/account/reset">Forgot your password?</a></p>"#,
        request = escape(request),
        email = escape(email),
    );
    page(branding, status_for(error), "Sign in", error, &body, false)
}

/// The second step: a code from the authenticator app, or a recovery code.
pub fn second_factor_form(branding: &Branding, handle: &str, passkey: Option<&str>, error: Option<&str>) -> Response {
    let body = format!(
        r#"<form method="post" action="/login/second-factor">
<input type="hidden" name="handle" value="{handle}">
<label for="code">Code from your authenticator app</label>
<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus>
<p>Lost your device? Enter one of your recovery codes instead.</p>
<button type="submit">Continue</button>
</form>{passkey}"#,
        handle = escape(handle),
        passkey = passkey
            .map(|options| passkey_block("/login/second-factor", handle, "get", options, "Use your passkey"))
            .unwrap_or_default(),
    );
    page(branding, status_for(error), "Two-step verification", error, &body, passkey.is_some())
}

/// A passkey button (shown by `/assets/passkey.js` where the browser has WebAuthn) with the
/// ceremony's options, and the form its answer is posted in.
fn passkey_block(action: &str, handle: &str, ceremony: &str, options: &str, label: &str) -> String {
    format!(
        r#"
<form method="post" action="{action}" id="passkey-form">
<input type="hidden" name="handle" value="{handle}">
<input type="hidden" name="passkey" value="">
<button type="button" id="passkey-button" hidden data-ceremony="{ceremony}" data-options="{options}">{label}</button>
<p id="passkey-status" role="status"></p>
</form>
<script src="/assets/passkey.js"></script>"#,
        action = escape(action),
        handle = escape(handle),
        ceremony = escape(ceremony),
        options = escape(options),
        label = escape(label),
    )
}

/// The passkey pages' script, served from idbridge itself (the pages allow no other).
pub async fn passkey_script() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "public, max-age=3600"),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("assets/passkey.js"),
    )
        .into_response()
}

/// Choosing a password from an invitation or reset link.
pub fn set_password_form(branding: &Branding, action: &str, token: &str, login: &str, error: Option<&str>) -> Response {
    let body = format!(
        r#"<form method="post" action="{action}">
<input type="hidden" name="token" value="{token}">
<input type="hidden" name="username" autocomplete="username" value="{login}">
<p>Account: <strong>{login}</strong></p>
<label for="password">New password</label>
<input type="password" id="password" name="password" autocomplete="new-password" required autofocus>
<label for="confirm">The same password again</label>
<input type="password" id="confirm" name="confirm" autocomplete="new-password" required>
<p>At least 10 characters. Several unrelated words are easy to remember and hard to guess.</p>
<button type="submit">Set password</button>
</form>"#,
        action = escape(action),
        token = escape(token),
        login = escape(login),
    );
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    page(branding, status, "Choose your password", error, &body, false)
}

/// TOTP enrolment: the QR code (an SVG made here, embedded as a data URL so the page's
/// policy needs no other source) and the secret as text for typing in.
pub fn enrolment(
    branding: &Branding,
    handle: &str,
    secret: &str,
    qr_svg: &str,
    passkey: Option<&str>,
    error: Option<&str>,
) -> Response {
    use base64::Engine;
    let qr = base64::engine::general_purpose::STANDARD.encode(qr_svg);
    let grouped: String =
        secret.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ");
    let body = format!(
        r#"<p>Scan this code with your authenticator app (for example Google Authenticator, Microsoft
Authenticator or FreeOTP), then enter the six-digit code it shows.</p>
<img src="data:image/svg+xml;base64,{qr}" alt="QR code for your authenticator app" width="200" height="200">
<p>Or type this key in: <code id="totp-secret" data-secret="{secret}">{grouped}</code></p>
<form method="post" action="/account/second-factor">
<input type="hidden" name="handle" value="{handle}">
<label for="code">Code from the app</label>
<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required>
<button type="submit">Turn on two-step verification</button>
</form>{passkey}"#,
        secret = escape(secret),
        grouped = escape(&grouped),
        handle = escape(handle),
        passkey = passkey
            .map(|options| {
                let block = passkey_block("/account/second-factor", handle, "create", options, "Use a passkey instead");
                format!("\n<p>Or use a passkey: your device's screen lock or a security key.</p>{block}")
            })
            .unwrap_or_default(),
    );
    page(branding, status_for(error), "Set up two-step verification", error, &body, passkey.is_some())
}

/// The recovery codes, shown this once; `next` goes on (to the portal, or a sign-in hint).
pub fn recovery_codes(branding: &Branding, codes: &[String], next: Option<(&str, &str)>) -> Response {
    let list: String = codes.iter().map(|c| format!("<li><code>{}</code></li>", escape(c))).collect();
    let next = match next {
        Some((action, handle)) => format!(
            r#"<form method="post" action="{}"><input type="hidden" name="handle" value="{}"><button type="submit">Continue</button></form>"#,
            escape(action),
            escape(handle)
        ),
        None => "<p>You can now sign in to your portal.</p>".to_owned(),
    };
    let body = format!(
        r#"<p>Two-step verification is on. Keep these recovery codes somewhere safe: each signs you in
once if you lose your device. They are shown only now.</p>
<ul id="recovery-codes">{list}</ul>
{next}"#
    );
    page(branding, StatusCode::OK, "Your recovery codes", None, &body, false)
}

/// A message and nothing to do (a password set, a reset mail on its way).
pub fn notice(branding: &Branding, title: &str, message: &str) -> Response {
    page(branding, StatusCode::OK, title, None, &format!(r#"<p role="status">{}</p>"#, escape(message)), false)
}

/// Asking for a reset link.
pub fn reset_form(branding: &Branding) -> Response {
    let body = r#"<form method="post" action="/account/reset">
<label for="email">Email</label>
<input type="email" id="email" name="email" autocomplete="username" required autofocus>
<p>We send a link to choose a new password to this address, if it has an account here.</p>
<button type="submit">Send the link</button>
</form>"#;
    page(branding, StatusCode::OK, "Reset your password", None, body, false)
}
