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
input[type=email] {{ width: 100%; padding: .6rem; font-size: 1rem; box-sizing: border-box; }}
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
