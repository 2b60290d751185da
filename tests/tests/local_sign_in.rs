//! Individuals without an IdP (seed 001, the PortaBilling customer-individual flow): the
//! operator creates Bob, Bob gets an invitation by mail (a real SMTP server, aiosmtpd, on
//! loopback), sets his password, enrols TOTP (codes computed here) and signs in to a portal
//! (the openidconnect crate as relying party) that receives his claims; then he adds Steve
//! and Adam over the Portal API with his own token. Adam's access starts seconds later: his
//! mail names the instant in his time zone, his sign-in is refused until then, a notice
//! comes at it and he signs in. Negative cases: a re-used link, a wrong code, wrong
//! passwords until the lockout, an unknown address answered like a known one, an ended
//! access. A second test walks the same first day in headless Chromium against a portal
//! built on the npm `openid-client`.

use std::process::Command;

use idbridge_e2e::Workdir;
use idbridge_e2e::idp::{Agent, Stop, free_port};
use idbridge_e2e::portal::{PORTAL_SECRET, Portal};
use idbridge_e2e::smtp::{Smtp, link_in};
use openidconnect::OAuth2TokenResponse;
use openidconnect::core::CoreTokenResponse;
use serde_json::json;

fn totp_now(secret: &str) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, "x".into());
    totp.generate_current().unwrap()
}

/// A TOTP code for the next 30-second step (a code is good once: a second sign-in within
/// the same step needs the next one, which is accepted for clock drift).
fn totp_next(secret: &str) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, "x".into());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    totp.generate(now + 30)
}

fn field(page: &Stop, attribute: &str) -> String {
    page.body
        .split(&format!("{attribute}=\""))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no {attribute} on {}: {}", page.url, page.body))
        .to_owned()
}

/// Sets the password from an invitation link and enrols TOTP; returns the TOTP secret.
async fn accept_invitation(agent: &Agent, link: &str, password: &str) -> String {
    let form = agent.walk(link, "-").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("Choose your password"), "{}", form.body);
    // A common password is refused, naming why, and the link still works.
    let weak = agent
        .post_form(&form, &form.form_with(&[("password", "password1234"), ("confirm", "password1234")]), "-")
        .await;
    assert_eq!(weak.status, 422, "{}", weak.body);
    assert!(weak.body.contains("too easy to guess"), "{}", weak.body);
    let enrol = agent.post_form(&weak, &weak.form_with(&[("password", password), ("confirm", password)]), "-").await;
    assert_eq!(enrol.status, 200, "{}", enrol.body);
    assert!(
        enrol.body.contains("Set up two-step verification")
            && enrol.body.contains("<img src=\"data:image/svg+xml;base64,"),
        "{}",
        enrol.body
    );
    let secret = field(&enrol, "data-secret");
    // A wrong code keeps the same secret on the page.
    let wrong = agent.post_form(&enrol, &enrol.form_with(&[("code", "000000")]), "-").await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(field(&wrong, "data-secret"), secret);
    let codes = agent.post_form(&wrong, &wrong.form_with(&[("code", &totp_now(&secret))]), "-").await;
    assert_eq!(codes.status, 200, "{}", codes.body);
    assert_eq!(codes.body.matches("<li><code>").count(), 10, "{}", codes.body);
    // The link was used: it shows the expired page now.
    let again = agent.walk(link, "-").await;
    assert_eq!(again.status, 410, "{}", again.body);
    secret
}

/// Signs in through the portal with a password and a TOTP code; the landing at the portal.
async fn sign_in(
    portal: &Portal,
    email: &str,
    password: &str,
    code: Option<&str>,
    redirect: &str,
) -> Result<(serde_json::Value, CoreTokenResponse), Stop> {
    sign_in_as(&Agent::new(), portal, email, password, code, redirect).await
}

async fn sign_in_as(
    agent: &Agent,
    portal: &Portal,
    email: &str,
    password: &str,
    code: Option<&str>,
    redirect: &str,
) -> Result<(serde_json::Value, CoreTokenResponse), Stop> {
    let started = portal.start(&[]);
    let home = agent.walk(&started.url, redirect).await;
    assert!(home.body.contains("Work email"), "{}", home.body);
    let password_page = agent.post_form(&home, &home.form_with(&[("email", email)]), redirect).await;
    assert!(password_page.body.contains("name=\"password\""), "{}", password_page.body);
    let after = agent
        .post_form(&password_page, &password_page.form_with(&[("email", email), ("password", password)]), redirect)
        .await;
    let landing = match code {
        Some(code) if after.body.contains("Two-step verification") => {
            agent.post_form(&after, &after.form_with(&[("code", code)]), redirect).await
        }
        _ => after,
    };
    if landing.location.as_deref().is_none_or(|l| !l.starts_with(redirect)) {
        return Err(landing);
    }
    portal.finish(started, &landing).await.map_err(|e| Stop { status: 0, url: String::new(), location: None, body: e })
}

/// A workdir with acme allowing local sign-in, a portal client for `redirect`, and the
/// daemon's mail going to `smtp`.
fn set_up(work: Workdir, smtp: &Smtp, redirect: &str) -> Workdir {
    let acme = std::fs::read_to_string(idbridge_e2e::workspace_root().join("config/examples/acme.toml")).unwrap();
    let acme = acme.replace(
        "retention_days = 90\n",
        "retention_days = 90\n[tenants.policy.local_sign_in]\nallowed = true\nsecond_factor = true\n",
    );
    let file = work.path().join("local.toml");
    std::fs::write(
        &file,
        format!(
            "{acme}\n[[clients]]\nid = \"portal\"\nredirect_uris = [\"{redirect}\"]\nsecret_env = \"PORTAL_SECRET\"\n"
        ),
    )
    .unwrap();
    let applied = work.ok(&["apply", file.to_str().unwrap()]);
    assert!(applied.contains("registered portal client portal"), "{applied}");
    work.with_env("IDBRIDGE_LOCAL_SIGN_IN__SMTP__HOST", "127.0.0.1")
        .with_env("IDBRIDGE_LOCAL_SIGN_IN__SMTP__PORT", &smtp.port.to_string())
        .with_env("IDBRIDGE_LOCAL_SIGN_IN__SMTP__SECURITY", "none")
        .with_env("IDBRIDGE_LOCAL_SIGN_IN__SMTP__FROM", "ABC Telecom <portal@abc.example>")
        // A cheap hash keeps the suite fast; the cost in production is in BENCHMARKS.md.
        .with_env("IDBRIDGE_LOCAL_SIGN_IN__MEMORY_KIB", "1024")
        .with_env("IDBRIDGE_SSO__OPERATOR_NAME", "ABC Telecom")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_individual_sets_a_password_enrols_totp_and_signs_in_to_the_portal() {
    let work = Workdir::new().with_env("PORTAL_SECRET", PORTAL_SECRET);
    let smtp = Smtp::start(work.path());
    let portal_redirect = format!("http://127.0.0.1:{}/cb", free_port());
    let work = set_up(work, &smtp, &portal_redirect);
    let daemon = work.serve_public();
    let portal = Portal::new(&daemon.base, &portal_redirect).await;

    // --- the operator creates Bob, Customer admin; Bob's invitation arrives ---------------
    let created = work.ok(&[
        "individual",
        "create",
        "acme",
        "--login",
        "bob@smallco.example",
        "--email",
        "bob@smallco.example",
        "--role",
        "Customer admin",
        "--given-name",
        "Bob",
        "--time-zone",
        "Europe/Berlin",
        "--language",
        "en-GB",
    ]);
    assert!(created.contains("invitation"), "{created}");
    let mail = smtp.wait_for("bob@smallco.example", "/account/setup?token=").await;
    assert!(mail.contains("Subject: Your access to the ABC Telecom portal"), "{mail}");
    assert!(!mail.contains("password:") && !mail.to_lowercase().contains("your password is"), "no password in a mail");
    let link = link_in(&mail, "/account/setup");
    let bob_secret = accept_invitation(&Agent::new(), &link, "lantern orbit cactus fjord").await;

    // --- Bob signs in: the portal gets the same claims as after SSO -----------------------
    let (claims, bob_tokens) = sign_in(
        &portal,
        "bob@smallco.example",
        "lantern orbit cactus fjord",
        Some(&totp_next(&bob_secret)),
        &portal_redirect,
    )
    .await
    .unwrap_or_else(|stop| panic!("Bob signs in: {} {}", stop.status, stop.body));
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["role"], "Customer admin");
    assert_eq!(claims["email"], "bob@smallco.example");
    assert_eq!(claims["permissions"]["customer_individuals"], "modify");
    assert_eq!(claims["locale"], "en-GB", "OIDC's locale claim: the individual's language");
    assert_eq!(claims["zoneinfo"], "Europe/Berlin");

    // --- Bob adds Steve and Adam himself (seed 001), with the token his portal got --------
    let bob_access = bob_tokens.access_token().secret().clone();
    let http = reqwest::Client::new();
    let steve = http
        .post(daemon.url("/portal/v1/individuals"))
        .bearer_auth(&bob_access)
        .json(&json!({
            "login": "steve@smallco.example", "email": "steve@smallco.example", "given_name": "Steve",
            "role": "PBX admin", "language": "de",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(steve.status(), 201, "{}", steve.text().await.unwrap());
    // Adam's probation ends in a few seconds, in his own time zone.
    let starts = wall_clock() + jiff::SignedDuration::from_secs(25);
    let starts_local = starts.to_zoned(jiff::tz::TimeZone::get("America/New_York").unwrap()).datetime();
    let starts_local = starts_local.round(jiff::Unit::Second).unwrap();
    let adam = http
        .post(daemon.url("/portal/v1/individuals"))
        .bearer_auth(&bob_access)
        .json(&json!({
            "login": "adam@smallco.example", "email": "adam@smallco.example", "given_name": "Adam",
            "role": "Operations manager", "time_zone": "America/New_York",
            "activation": starts_local.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(adam.status(), 201, "{}", adam.text().await.unwrap());
    let steve_mail = smtp.wait_for("steve@smallco.example", "/account/setup?token=").await;
    // Steve reads German, whatever the tenant's language.
    assert!(steve_mail.contains("Hallo Steve"), "{steve_mail}");
    let adam_mail = smtp.wait_for("adam@smallco.example", "/account/setup?token=").await;
    let named = starts_local.strftime("Your access starts on %-d %B %Y, %H:%M:%S (America/New_York)").to_string();
    assert!(adam_mail.contains(&named), "{named} in {adam_mail}");
    let adam_secret =
        accept_invitation(&Agent::new(), &link_in(&adam_mail, "/account/setup"), "walnut harbor tundra kite").await;
    let refused = sign_in(
        &portal,
        "adam@smallco.example",
        "walnut harbor tundra kite",
        Some(&totp_next(&adam_secret)),
        &portal_redirect,
    )
    .await
    .expect_err("Adam's access has not started");
    assert!(refused.body.contains("Your access has not started yet."), "{}", refused.body);
    // At the instant, his access starts: a mail says so, and he signs in.
    let started_mail = smtp.wait_for("adam@smallco.example", "portal access has started").await;
    assert!(wall_clock() >= starts, "the notice came before the instant: {started_mail}");
    let (adam_claims, _) = sign_in(
        &portal,
        "adam@smallco.example",
        "walnut harbor tundra kite",
        Some(&totp_next(&adam_secret)),
        &portal_redirect,
    )
    .await
    .unwrap_or_else(|stop| panic!("Adam signs in once his access started: {} {}", stop.status, stop.body));
    assert_eq!(adam_claims["role"], "Operations manager");
    // Once his access has ended, the right password and code are not enough.
    // A second back, whole: rounding the wall clock could name an instant still ahead.
    let ended_at = (wall_clock() - jiff::SignedDuration::from_secs(1)).round(jiff::Unit::Second).unwrap().to_string();
    work.ok(&["individual", "set", "acme", "adam@smallco.example", "--expiration", &ended_at]);
    let ended = sign_in(
        &portal,
        "adam@smallco.example",
        "walnut harbor tundra kite",
        Some(&totp_next(&adam_secret)),
        &portal_redirect,
    )
    .await
    .expect_err("Adam's access has ended");
    assert!(ended.body.contains("has ended"), "{}", ended.body);

    // --- negatives: a wrong code, an unknown address like a wrong password ---------------
    let wrong_code =
        sign_in(&portal, "bob@smallco.example", "lantern orbit cactus fjord", Some("123456"), &portal_redirect).await;
    let stop = wrong_code.expect_err("a wrong TOTP code is refused");
    assert!(stop.body.contains("The code is not right."), "{}", stop.body);
    let unknown =
        sign_in(&portal, "nobody@smallco.example", "whatever whatever", None, &portal_redirect).await.unwrap_err();
    let wrong =
        sign_in(&portal, "bob@smallco.example", "wrong password here", None, &portal_redirect).await.unwrap_err();
    assert_eq!(unknown.status, wrong.status);
    assert!(unknown.body.contains("The email address or the password is not right."), "{}", unknown.body);
    assert_eq!(
        unknown.body.replace("nobody@smallco.example", "X"),
        wrong
            .body
            .replace("bob@smallco.example", "X")
            .replace(&field(&wrong, "name=\"request\" value"), &field(&unknown, "name=\"request\" value")),
        "an unknown address and a wrong password get the same page"
    );

    // --- Carl, from a date years ahead, created by an operator over the admin API -------
    let (admin_token, admin_hash) = idbridge_e2e::new_token();
    drop(daemon);
    let work = work.with_env("IDBRIDGE_ADMIN__TOKEN_HASHES", &format!("[\"{admin_hash}\"]"));
    let daemon = work.serve_public();
    let portal = Portal::new(&daemon.base, &portal_redirect).await;
    let response = daemon
        .client()
        .post(daemon.url("/admin/v1/tenants/acme/individuals"))
        .bearer_auth(&admin_token)
        .json(&json!({
            "login": "carl@smallco.example", "email": "carl@smallco.example", "given_name": "Carl",
            "role": "Operations manager", "time_zone": "America/New_York", "activation": "2031-04-20T09:00",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let carl_mail = smtp.wait_for("carl@smallco.example", "/account/setup?token=").await;
    assert!(carl_mail.contains("Your access starts on 20 April 2031, 09:00 (America/New_York)"), "{carl_mail}");
    let carl_secret =
        accept_invitation(&Agent::new(), &link_in(&carl_mail, "/account/setup"), "walnut harbor tundra kite").await;
    let refused = sign_in(
        &portal,
        "carl@smallco.example",
        "walnut harbor tundra kite",
        Some(&totp_next(&carl_secret)),
        &portal_redirect,
    )
    .await
    .expect_err("Carl's access has not started");
    assert!(
        refused.body.contains("Your access has not started yet.") && refused.body.contains("2031-04-20T09:00"),
        "{}",
        refused.body
    );

    // --- re-sending revokes the earlier link; the mails are listed, never their bodies ---
    let resent = daemon
        .client()
        .post(daemon.url("/admin/v1/tenants/acme/individuals/carl@smallco.example/invitation"))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resent.status(), 202);
    let mails = work.ok(&["individual", "mails", "acme", "carl@smallco.example", "--json"]);
    assert!(mails.contains("invitation") || mails.contains("password_reset"), "{mails}");
    assert!(!mails.contains("token="), "{mails}");

    // --- lockout: wrong passwords until the account is paused, then even the right one waits
    for _ in 0..5 {
        let _ = sign_in(&portal, "bob@smallco.example", "not the password at all", None, &portal_redirect).await;
    }
    let locked = sign_in(&portal, "bob@smallco.example", "lantern orbit cactus fjord", None, &portal_redirect)
        .await
        .unwrap_err();
    assert!(locked.body.contains("Too many attempts"), "{}", locked.body);
    let audit = work.ok(&["audit", "acme", "--json"]);
    assert!(
        audit.contains("sign_in.locked") && audit.contains("password.set") && audit.contains("mail.sent"),
        "{audit}"
    );
    assert!(!audit.contains("lantern") && !audit.contains("token="), "no secret in the audit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_follows_the_invitation_enrols_totp_and_signs_in_to_an_openid_client_portal() {
    let Some(result) = first_day_in_a_browser(false).await else { return };
    assert_eq!(result["passkeys"], json!([]));
}

/// The same day with a passkey for the second factor: Chromium's virtual authenticator
/// registers it on the enrolment page (webauthn-rs checks the attestation) and answers
/// the sign-in's assertion; the authenticator's counter shows both ceremonies ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_enrols_a_passkey_instead_of_totp_and_signs_in_with_it() {
    let Some(result) = first_day_in_a_browser(true).await else { return };
    let passkeys = result["passkeys"].as_array().unwrap();
    assert_eq!(passkeys.len(), 1, "{passkeys:?}");
    assert_eq!(passkeys[0]["rp_id"], "localhost");
    assert!(passkeys[0]["sign_count"].as_u64().unwrap() >= 1, "{passkeys:?}");
}

/// Bob's first day in Chromium (`browser_local.mjs`): the invitation, a password, a second
/// factor (TOTP, or a passkey), recovery codes, then a sign-in at an openid-client portal.
/// `None` where no browser is installed (and `IDBRIDGE_REQUIRE_BROWSER` is unset).
async fn first_day_in_a_browser(passkey: bool) -> Option<serde_json::Value> {
    let chromium = idbridge_e2e::browser::chromium()?;
    let work = Workdir::new().with_env("PORTAL_SECRET", PORTAL_SECRET);
    let smtp = Smtp::start(work.path());
    let portal_port = free_port();
    let work = set_up(work, &smtp, &format!("http://127.0.0.1:{portal_port}/cb"));
    // Browsers take passkeys for a name, never an IP address.
    let daemon = work.serve_public_as(if passkey { "localhost" } else { "127.0.0.1" });
    let issuer = daemon.base.replace("127.0.0.1", if passkey { "localhost" } else { "127.0.0.1" });
    work.ok(&[
        "individual",
        "create",
        "acme",
        "--login",
        "bob@smallco.example",
        "--email",
        "bob@smallco.example",
        "--role",
        "Customer admin",
        "--given-name",
        "Bob",
    ]);
    let mail = smtp.wait_for("bob@smallco.example", "/account/setup?token=").await;
    let config = work.path().join("browser.json");
    std::fs::write(
        &config,
        json!({
            "issuer": issuer, "client_id": "portal", "client_secret": PORTAL_SECRET, "portal_port": portal_port,
            "link": link_in(&mail, "/account/setup"), "email": "bob@smallco.example", "password": "lantern orbit cactus fjord",
            "passkey": passkey,
        })
        .to_string(),
    )
    .unwrap();
    let oidc = idbridge_e2e::idp::oidc_dir();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(oidc.join("browser_local.mjs"))
            .arg(&config)
            .current_dir(&oidc)
            .env("CHROMIUM", chromium)
            .output()
            .expect("run node browser_local.mjs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "browser sign-in failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from browser_local.mjs");
    let titles: Vec<&str> = result["pages"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap()).collect();
    assert!(titles[0].contains("Choose your password"), "{titles:?}");
    assert!(titles[1].contains("Set up two-step verification"), "{titles:?}");
    assert!(titles[2].contains("recovery codes"), "{titles:?}");
    assert_eq!(result["recovery_codes"], 10);
    // What openid-client verified and read: the same claims an SSO sign-in gives.
    assert_eq!(result["claims"]["tenant"], "acme");
    assert_eq!(result["claims"]["role"], "Customer admin");
    assert_eq!(result["claims"]["email"], "bob@smallco.example");
    assert_eq!(result["userinfo"]["sub"], result["claims"]["sub"]);
    assert_eq!(result["userinfo"]["role"], "Customer admin");
    let audit = work.ok(&["audit", "acme", "--json"]);
    let enrolled = audit.lines().find(|l| l.contains("second_factor.enrolled")).expect("enrolment audited");
    assert_eq!(enrolled.contains("passkey"), passkey, "{enrolled}");
    Some(result)
}

/// The wall clock (the daemon under test reads it too).
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// A wrong password for an address nobody has (a new one each time: only the client's
/// count grows); the page that answers.
async fn guess(agent: Agent, portal: &Portal, redirect: &str, n: usize) -> String {
    let email = format!("guess{n}@smallco.example");
    sign_in_as(&agent, portal, &email, "not a password at all", None, redirect).await.unwrap_err().body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_failures_count_against_the_client_it_forwards_for() {
    let work = Workdir::new().with_env("PORTAL_SECRET", PORTAL_SECRET);
    let smtp = Smtp::start(work.path());
    let redirect = format!("http://127.0.0.1:{}/cb", free_port());
    let work = set_up(work, &smtp, &redirect);

    // Not trusted (the default): what a client writes in the header changes nothing.
    let daemon = work.serve_public();
    let portal = Portal::new(&daemon.base, &redirect).await;
    let mut bodies = Vec::new();
    for n in 0..6 {
        let forged = format!("198.51.100.{n}");
        bodies.push(guess(Agent::forwarded_for(&forged), &portal, &redirect, n).await);
    }
    assert!(bodies.last().unwrap().contains("Too many attempts"), "a forged header escapes nothing: {bodies:#?}");
    drop(daemon);

    // Trusted: each forwarded client has its own count.
    let work = work.with_env("IDBRIDGE_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]");
    let daemon = work.serve_public();
    let portal = Portal::new(&daemon.base, &redirect).await;
    let mut bodies = Vec::new();
    for n in 0..6 {
        bodies.push(guess(Agent::forwarded_for("203.0.113.5"), &portal, &redirect, n).await);
    }
    assert!(bodies.last().unwrap().contains("Too many attempts"), "{bodies:#?}");
    let other = guess(Agent::forwarded_for("198.51.100.7"), &portal, &redirect, 99).await;
    assert!(other.contains("The email address or the password is not right."), "another client is not paused: {other}");
}
