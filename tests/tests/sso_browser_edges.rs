//! Single sign-on at its edges in a real browser: Debian's Chromium, the npm
//! `oidc-provider` as the customer's IdP (it sends and advertises RFC 9207's `iss`) and a
//! portal built on the npm `openid-client`, whose back-channel endpoint verifies each
//! logout token. The same edges are checked request by request in `sso_edges.rs`; here a
//! browser walks them as a person would, with the cookies a browser keeps.

use std::time::Duration;

use idbridge_e2e::Workdir;
use idbridge_e2e::browser::{Browser, PortalAddress, chromium};
use idbridge_e2e::idp::{Idp, acme_with_domain, free_port};
use idbridge_e2e::portal::PORTAL_SECRET;
use serde_json::{Value, json};

const UPSTREAM_SECRET: &str = "upstream-secret-upstream-secret-0123456789";

struct Setup {
    work: Workdir,
    _daemon: idbridge_e2e::Daemon,
    idp: Idp,
    idbridge: String,
    browser: Browser,
}

/// idbridge with tenant acme signing in at the IdP (alice, verified; ursula, whose email
/// the IdP has not verified), the portal registered with its back-channel endpoint; `env`
/// adds daemon settings.
async fn setup(chromium: &str, env: &[(&str, &str)]) -> Setup {
    let idbridge_port = free_port();
    let idbridge = format!("http://127.0.0.1:{idbridge_port}");
    let idp = Idp::for_idbridge(
        &idbridge,
        UPSTREAM_SECRET,
        json!({
            "alice": { "sub": "u-alice", "email": "alice@acme.example", "email_verified": true, "name": "Alice",
                       "preferred_username": "alice@acme.example", "groups": ["Portal-Admins"] },
            "ursula": { "sub": "u-ursula", "email": "ursula@acme.example", "email_verified": false,
                        "groups": ["Portal-Admins"] },
        }),
    );
    let portal = PortalAddress::new();
    let mut work = Workdir::new().with_env("ACME_IDP_SECRET", UPSTREAM_SECRET).with_env("PORTAL_SECRET", PORTAL_SECRET);
    for (k, v) in env {
        work = work.with_env(k, v);
    }
    let file = work.path().join("sso.toml");
    std::fs::write(
        &file,
        format!(
            "{}\n[[tenants.oidc]]\nname = \"acme-idp\"\nissuer = \"{}\"\nclient_id = \"idbridge\"\n\
             client_secret_env = \"ACME_IDP_SECRET\"\nallowed_email_domains = [\"acme.example\"]\n\n\
             [[clients]]\nid = \"portal\"\nredirect_uris = [\"{}\"]\nsecret_env = \"PORTAL_SECRET\"\n\
             backchannel_logout_uri = \"{}\"\n",
            acme_with_domain(true),
            idp.issuer,
            portal.redirect_uri(),
            portal.backchannel_uri(),
        ),
    )
    .unwrap();
    work.ok(&["apply", file.to_str().unwrap()]);
    let daemon = work.serve_at(&format!("127.0.0.1:{idbridge_port}"), Some(idbridge.clone()));
    let browser = Browser::launch(chromium, &idbridge, "portal", PORTAL_SECRET, &portal).await;
    Setup { work, _daemon: daemon, idp, idbridge, browser }
}

/// What the portal's callback concluded, from a page the browser is on.
fn portal_result(page: &Value) -> &Value {
    assert!(page["result"].is_object(), "not back at the portal: {page}");
    &page["result"]
}

/// The portal verified an ID token (and read userinfo); its claims.
fn signed_in(page: &Value) -> &Value {
    let result = portal_result(page);
    assert!(result["claims"].is_object(), "the portal did not sign in: {result}");
    result
}

async fn userinfo(setup: &Setup, access_token: &Value) -> u16 {
    let token = access_token.as_str().expect("an access token");
    let url = format!("{}/oauth2/userinfo", setup.idbridge);
    reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// A person's whole day at the edges, in one browser session: two tabs signing in at
/// once, `max_age`, silent sign-ins, a bare logout link, a narrowing sign-in, a tenant
/// disabled and enabled again, a mix-up at the IdP and an unverified email.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_walks_every_sign_in_edge() {
    let Some(chromium) = chromium() else { return };
    let mut s = setup(&chromium, &[]).await;
    let hint = json!({"login_hint": "alice@acme.example"});

    // Two tabs start signing in before either finishes: both complete (on 253756d the
    // second overwrote the first's login cookie).
    let one = s.browser.open("a", "one", hint.clone()).await;
    assert!(one["url"].as_str().unwrap().starts_with(&s.idp.issuer), "to the IdP: {one}");
    let two = s.browser.open("a", "two", hint.clone()).await;
    assert!(two["url"].as_str().unwrap().starts_with(&s.idp.issuer), "to the IdP: {two}");
    let second = s.browser.idp_login("a", "two", "alice").await;
    let first = s.browser.idp_login("a", "one", "alice").await;
    let (first, second) = (signed_in(&first).clone(), signed_in(&second).clone());
    assert_eq!(first["claims"]["email"], "alice@acme.example");
    assert_eq!(first["claims"]["email_verified"], true);
    assert_eq!(second["claims"]["role"], "Customer admin");
    let auth_time = first["claims"]["auth_time"].as_i64().expect("auth_time");

    // Within max_age: straight back, no page. max_age=0: authenticated again at the IdP,
    // with a later auth_time (openid-client checks it against max_age).
    let again = s.browser.open("a", "one", json!({"max_age": "3600"})).await;
    assert_eq!(signed_in(&again)["claims"]["auth_time"], auth_time);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let at_idp = s.browser.open("a", "one", json!({"max_age": "0"})).await;
    assert!(at_idp["url"].as_str().unwrap().starts_with(&s.idp.issuer), "max_age=0 re-authenticates: {at_idp}");
    let fresh = s.browser.idp_login("a", "one", "alice").await;
    let fresh = signed_in(&fresh).clone();
    assert!(fresh["claims"]["auth_time"].as_i64().unwrap() > auth_time, "{fresh}");
    // prompt=none with a session too old: the portal hears login_required, no page shows.
    let silent = s.browser.open("a", "one", json!({"prompt": "none", "max_age": "0"})).await;
    assert_eq!(portal_result(&silent)["error"], "login_required", "{silent}");
    assert_eq!(portal_result(&silent)["state_known"], true);

    // A bare logout link (an image on any site) asks; the session lives on.
    let asked = s.browser.goto("a", "one", &format!("{}/oauth2/logout", s.idbridge)).await;
    assert!(asked["text"].as_str().unwrap().contains("Sign out?"), "{asked}");
    let still = s.browser.open("a", "one", json!({"prompt": "none"})).await;
    signed_in(&still);

    // Alice's groups shrink at her IdP; she signs in on another computer. That sign-in
    // keeps its session; the older sessions end, and their portal is told.
    s.idp.set_user("alice", json!({"groups": ["pbx-admins"]})).await;
    s.browser.open("b", "main", hint.clone()).await;
    let narrowed = s.browser.idp_login("b", "main", "alice").await;
    let narrowed = signed_in(&narrowed).clone();
    assert_eq!(narrowed["claims"]["role"], "PBX admin");
    let old = s.browser.logout_for(&fresh["claims"]["sid"], Duration::from_secs(15)).await;
    assert_eq!(old["sub"], fresh["claims"]["sub"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(userinfo(&s, &fresh["access_token"]).await, 401, "the older session's tokens are revoked");
    assert_eq!(userinfo(&s, &narrowed["access_token"]).await, 200, "the narrowing sign-in's own tokens work");
    assert!(
        !s.browser.logouts().await.iter().any(|t| t["sid"] == narrowed["claims"]["sid"]),
        "no logout token for the new session"
    );
    let quiet = s.browser.open("b", "main", json!({"prompt": "none"})).await;
    signed_in(&quiet);

    // The tenant is disabled: every session ends and the portal is told; a silent
    // sign-in is answered to the portal, not with a page; enabling it again revives none
    // of the old tokens.
    s.work.ok(&["tenant", "disable", "acme"]);
    s.browser.logout_for(&narrowed["claims"]["sid"], Duration::from_secs(15)).await;
    let refused = s.browser.open("b", "main", json!({"prompt": "none"})).await;
    let error = portal_result(&refused)["error"].as_str().unwrap_or_default().to_owned();
    assert!(["login_required", "access_denied"].contains(&error.as_str()), "{refused}");
    s.work.ok(&["tenant", "enable", "acme"]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(userinfo(&s, &narrowed["access_token"]).await, 401, "re-enabling revives no token");
    let refreshed = reqwest::Client::new()
        .post(format!("{}/oauth2/token", s.idbridge))
        .basic_auth("portal", Some(PORTAL_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", narrowed["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 400, "nor a refresh token");

    // A mix-up: the IdP's answer names another issuer, or none although the IdP always
    // sends it. Refused before the code is used.
    s.idp.tamper("auth_iss_evil").await;
    let at_idp = s.browser.open("c", "main", hint.clone()).await;
    assert!(at_idp["text"].as_str().unwrap().contains("Username"), "at the IdP's form: {at_idp}");
    let mixed = s.browser.idp_login("c", "main", "alice").await;
    assert_eq!(mixed["status"], 400, "{mixed}");
    assert!(mixed["text"].as_str().unwrap().contains("evil.example"), "{mixed}");
    s.idp.tamper("auth_iss_missing").await;
    let at_idp = s.browser.open("d", "main", hint.clone()).await;
    assert!(at_idp["text"].as_str().unwrap().contains("Username"), "at the IdP's form: {at_idp}");
    let missing = s.browser.idp_login("d", "main", "alice").await;
    assert_eq!(missing["status"], 400, "{missing}");
    assert!(missing["text"].as_str().unwrap().contains("RFC 9207"), "{missing}");
    s.idp.tamper("none").await;

    // An email the IdP did not verify is not trusted for the tenant's domain check.
    s.browser.open("e", "main", json!({"login_hint": "ursula@acme.example"})).await;
    let unverified = s.browser.idp_login("e", "main", "ursula").await;
    assert_eq!(unverified["status"], 403, "{unverified}");
    assert!(unverified["text"].as_str().unwrap().contains("not verified your email"), "{unverified}");
    assert!(unverified["result"].is_null(), "the portal got no sign-in: {unverified}");
}

/// The portal's back-channel endpoint is down for five minutes while the person signs
/// out; once it is back, the logout token arrives, once. (On 037a52f it was tried three
/// times within ~4 s and then only logged.) The longest wait between attempts is set to
/// 30 s so the test ends soon after the outage does; the default is 10 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_channel_endpoint_down_for_five_minutes_still_gets_the_logout() {
    let Some(chromium) = chromium() else { return };
    let mut s = setup(&chromium, &[("IDBRIDGE_SSO__BACKCHANNEL_MAX_INTERVAL_SECONDS", "30")]).await;
    s.browser.open("a", "main", json!({"login_hint": "alice@acme.example"})).await;
    let page = s.browser.idp_login("a", "main", "alice").await;
    let alice = signed_in(&page).clone();

    s.browser.backchannel(false).await;
    let id_token = alice["id_token"].as_str().unwrap();
    let logout = format!(
        "{}/oauth2/logout?id_token_hint={}",
        s.idbridge,
        url::form_urlencoded::byte_serialize(id_token.as_bytes()).collect::<String>()
    );
    let out = s.browser.goto("a", "main", &logout).await;
    assert!(out["text"].as_str().unwrap().contains("signed out"), "{out}");
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(s.browser.logouts().await.is_empty());
    s.browser.backchannel(true).await;
    let token = s.browser.logout_for(&alice["claims"]["sid"], Duration::from_secs(60)).await;
    assert_eq!(token["sub"], alice["claims"]["sub"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.browser.logouts().await.len(), 1, "delivered once");
}
