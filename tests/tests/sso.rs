//! Single sign-on end to end: the real `idbridge` binary as the portal's OpenID provider,
//! the npm `oidc-provider` as the customer's IdP, and the `openidconnect` crate playing
//! the portal (discovery, PKCE, code exchange, ID token verification).

use idbridge_e2e::Workdir;
use idbridge_e2e::idp::{Agent, Idp, free_port, generate_key, query_param};
use idbridge_e2e::portal::{PORTAL_SECRET, Portal, logout_receiver, payload};
use openidconnect::{OAuth2TokenResponse, TokenResponse};
use serde_json::{Value, json};

const UPSTREAM_SECRET: &str = "upstream-secret-upstream-secret-0123456789";

fn users() -> Value {
    json!({
        "alice": { "sub": "u-alice", "email": "alice@acme.example", "name": "Alice Admin", "preferred_username": "alice@acme.example", "groups": ["Portal-Admins"] },
        "bob":   { "sub": "u-bob", "email": "bob@acme.example", "name": "Bob Builder", "preferred_username": "bob@acme.example", "groups": ["pbx-admins"] },
        "carol": { "sub": "u-carol", "email": "carol@acme.example", "preferred_username": "carol@acme.example", "hasgroups": true },
        "dave":  { "sub": "u-dave", "email": "dave@acme.example", "preferred_username": "dave@acme.example", "groups": [] },
        "erin":  { "sub": "u-erin", "email": "erin@acme.example", "preferred_username": "erin@acme.example", "groups": ["pbx-admins"] },
        "hank":  { "sub": "u-hank", "email": "hank@acme.example", "preferred_username": "hank@acme.example", "groups": ["helpdesk"] },
        "mallory": { "sub": "u-mallory", "email": "mallory@evil.example", "preferred_username": "mallory@evil.example", "groups": ["Portal-Admins"] },
    })
}

fn apply_file(idp: &Idp) -> String {
    let acme = std::fs::read_to_string(idbridge_e2e::workspace_root().join("config/examples/acme.toml")).unwrap();
    let acme = acme.replace("[tenants.policy]\n", "[tenants.policy]\njit_provisioning = true\n");
    // A helpdesk role that manages portal users but reads everything else, and a reader.
    let acme = acme.replace(
        "allowed_roles = [\"Customer admin\", \"PBX admin\", \"Operations manager\"]",
        "allowed_roles = [\"Customer admin\", \"PBX admin\", \"Operations manager\", \"Helpdesk\", \"Reader\"]",
    );
    let roles = "[[roles]]\nname = \"Helpdesk\"\ndefault = \"read\"\n[roles.sections]\ncustomer_individuals = \"modify\"\n\n[[roles]]\nname = \"Reader\"\ndefault = \"read\"\n\n";
    let rule =
        "\n[[tenants.rules]]\nname = \"helpdesk\"\npriority = 60\ngroups = [\"helpdesk\"]\nrole = \"Helpdesk\"\n";
    format!(
        r#"{roles}{acme}{rule}
# Sign-in for ACME: its verified domain and its IdP.
[[tenants.oidc]]
name = "acme-idp"
issuer = "{issuer}"
client_id = "idbridge"
client_secret_env = "ACME_IDP_SECRET"
allowed_email_domains = ["acme.example"]

[[tenants]]
slug = "beta"
name = "Beta GmbH"
allowed_roles = ["PBX admin"]
domains = ["beta.example"]
[[tenants.oidc]]
name = "beta-idp"
issuer = "http://127.0.0.1:9"
discovery = false
authorization_endpoint = "http://127.0.0.1:9/auth"
token_endpoint = "http://127.0.0.1:9/token"
jwks_uri = "http://127.0.0.1:9/jwks"
client_id = "idbridge"
client_secret_env = "ACME_IDP_SECRET"
"#,
        issuer = idp.issuer
    )
    .replacen("[tenants.policy]", "domains = [\"acme.example\"]\n\n[tenants.policy]", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_login_tokens_negative_cases_logout_and_delegated_admin() {
    sso_scenario(None).await;
}

/// The same on PostgreSQL, the production store (several instances share its sessions,
/// codes and tokens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_scenario_on_postgresql() {
    let Some(db) = idbridge_e2e::SharedPgDatabase::create("idbridge_sso") else { return };
    sso_scenario(Some(db.url.clone())).await;
}

async fn sso_scenario(database_url: Option<String>) {
    let (k1, k0, foreign) = (generate_key("k1"), generate_key("k0-rotated-out"), generate_key("beta-key"));
    let idbridge_port = free_port();
    let idbridge = format!("http://127.0.0.1:{idbridge_port}");
    let idp = Idp::start(json!({
        "keys": [k1],
        "old_key": k0,
        "foreign": { "issuer": "http://127.0.0.1:9", "key": foreign },
        "clients": [{
            "client_id": "idbridge",
            "client_secret": UPSTREAM_SECRET,
            "redirect_uris": [format!("{idbridge}/login/callback")],
        }],
        "users": users(),
    }));
    let (logout_url, received) = logout_receiver().await;
    let portal_redirect = format!("http://127.0.0.1:{}/cb", free_port());

    let mut work = Workdir::new().with_env("ACME_IDP_SECRET", UPSTREAM_SECRET).with_env("PORTAL_SECRET", PORTAL_SECRET);
    if let Some(url) = &database_url {
        work = work.with_env("IDBRIDGE_DATABASE__URL", url);
    }
    let file = work.path().join("sso.toml");
    std::fs::write(
        &file,
        format!(
            "{}\n[[clients]]\nid = \"portal\"\nredirect_uris = [\"{portal_redirect}\"]\npost_logout_redirect_uris = [\"{portal_redirect}/bye\"]\nbackchannel_logout_uri = \"{logout_url}\"\nsecret_env = \"PORTAL_SECRET\"\n",
            apply_file(&idp)
        ),
    )
    .unwrap();
    let applied = work.ok(&["apply", file.to_str().unwrap()]);
    assert!(applied.contains("registered portal client portal"), "{applied}");
    let shown = work.ok(&["sign-in", "show", "acme"]);
    assert!(shown.contains("acme.example") && shown.contains("acme-idp"), "{shown}");
    let daemon = work.serve_at(&format!("127.0.0.1:{idbridge_port}"), Some(idbridge.clone()));
    let portal = Portal::new(&idbridge, &portal_redirect).await;

    // --- a login by login_hint: straight to the IdP, back with a code, tokens -----------
    let agent = Agent::new();
    let started = portal.start(&[("login_hint", "alice@acme.example")]);
    let at_idp = agent.walk(&started.url, &portal_redirect).await;
    assert!(at_idp.url.starts_with(&idp.issuer) && at_idp.body.contains("Acme IdP"), "{at_idp:?}");
    let landing = agent.idp_login(&at_idp, "alice", &portal_redirect).await;
    assert_eq!(query_param(landing.location.as_deref().unwrap(), "iss").as_deref(), Some(idbridge.as_str()));
    let (claims, tokens) = portal.finish(started, &landing).await.expect("alice signs in");
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["role"], "Customer admin");
    assert_eq!(claims["email"], "alice@acme.example");
    assert_eq!(claims["permissions"]["customer_individuals"], "modify");
    assert_eq!(claims["access_profile_name"], "Full portal");
    assert_eq!(claims["access_profile"]["allow_listen_recording"], true);
    assert_eq!(claims["scopes"]["full_call_reports"], true);
    assert!(claims["sid"].is_string() && claims["sub"].is_string());
    let alice_id = claims["sub"].as_str().unwrap().to_owned();
    let alice_access = tokens.access_token().secret().clone();
    let alice_refresh = tokens.refresh_token().expect("refresh token").secret().clone();
    let http = reqwest::Client::new();
    let info: Value =
        http.get(daemon.url("/oauth2/userinfo")).bearer_auth(&alice_access).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["role"], "Customer admin");
    assert_eq!(info["sid"], claims["sid"]);

    // A second portal visit in the same browser signs in without the IdP (SSO session).
    let started = portal.start(&[]);
    let landing = agent.walk(&started.url, &portal_redirect).await;
    let (again, _) = portal.finish(started, &landing).await.expect("session sign-in");
    assert_eq!(again["sid"], claims["sid"]);

    // prompt=login: the person signs in again, at the IdP too, despite the session.
    let started = portal.start(&[("prompt", "login"), ("login_hint", "alice@acme.example")]);
    let first = agent.http.get(&started.url).send().await.unwrap();
    let to_idp = first.headers()["location"].to_str().unwrap().to_owned();
    assert!(to_idp.starts_with(&idp.issuer) && to_idp.contains("prompt=login"), "{to_idp}");

    // --- home-realm discovery: the page, an unknown domain, then a known one --------------
    let bob_agent = Agent::new();
    let started = portal.start(&[]);
    let page = bob_agent.walk(&started.url, &portal_redirect).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("Work email") && page.body.contains("<form method=\"post\" action=\"/login\""));
    let handle = page.body.split("name=\"request\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = bob_agent
        .http
        .post(daemon.url("/login"))
        .form(&[("request", handle.as_str()), ("email", "bob@unknown.example")])
        .send()
        .await
        .unwrap();
    let unknown = bob_agent.read(daemon.url("/login"), r).await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.body.contains("role=\"alert\"") && unknown.body.contains("No organisation"), "{}", unknown.body);
    let handle = unknown.body.split("name=\"request\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = bob_agent
        .http
        .post(daemon.url("/login"))
        .form(&[("request", handle.as_str()), ("email", "bob@acme.example")])
        .send()
        .await
        .unwrap();
    let to_idp = bob_agent.read(daemon.url("/login"), r).await;
    assert!(to_idp.location.as_deref().unwrap().starts_with(&idp.issuer), "{to_idp:?}");
    let at_idp = bob_agent.walk(to_idp.location.as_deref().unwrap(), &portal_redirect).await;
    let landing = bob_agent.idp_login(&at_idp, "bob", &portal_redirect).await;
    let (bob, bob_tokens) = portal.finish(started, &landing).await.expect("bob signs in");
    assert_eq!(bob["role"], "PBX admin");
    assert_eq!(bob["permissions"]["customer_individuals"], "restrict");

    // --- state: missing, unknown, replayed --------------------------------------------
    let stray = agent.walk(&daemon.url("/login/callback?code=abc"), &portal_redirect).await;
    assert_eq!(stray.status, 400);
    assert!(stray.body.contains("no state"), "{}", stray.body);
    let stray = agent.walk(&daemon.url("/login/callback?code=abc&state=forged"), &portal_redirect).await;
    assert_eq!(stray.status, 400);
    assert!(stray.body.contains("unknown, expired or already used state"), "{}", stray.body);

    // --- a replayed authorization code revokes what it gave ----------------------------
    let fresh = Agent::new();
    let started = portal.start(&[("login_hint", "erin@acme.example")]);
    let at_idp = fresh.walk(&started.url, &portal_redirect).await;
    let landing = fresh.idp_login(&at_idp, "erin", &portal_redirect).await;
    let code = query_param(landing.location.as_deref().unwrap(), "code").unwrap();
    let exchange = |code: String, verifier: String, redirect: String| {
        let http = http.clone();
        let url = daemon.url("/oauth2/token");
        async move {
            let r = http
                .post(url)
                .basic_auth("portal", Some(PORTAL_SECRET))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("code_verifier", &verifier),
                    ("redirect_uri", &redirect),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // PKCE verifier mismatch first: refused (and the code is spent).
    let (status, body) = exchange(code.clone(), "x".repeat(43), portal_redirect.clone()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("PKCE"), "{body}");
    let started = portal.start(&[]);
    let landing = fresh.walk(&started.url, &portal_redirect).await;
    let code = query_param(landing.location.as_deref().unwrap(), "code").unwrap();
    let verifier = started.verifier.secret().clone();
    // A redirect_uri differing from the request's is refused at the token endpoint too.
    let (status, _) = exchange(code.clone(), verifier.clone(), format!("{portal_redirect}/")).await;
    assert_eq!(status, 400);
    let started = portal.start(&[]);
    let landing = fresh.walk(&started.url, &portal_redirect).await;
    let code = query_param(landing.location.as_deref().unwrap(), "code").unwrap();
    let verifier = started.verifier.secret().clone();
    let (status, first) = exchange(code.clone(), verifier.clone(), portal_redirect.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = exchange(code, verifier, portal_redirect.clone()).await;
    assert_eq!((status, second["error"].as_str()), (400, Some("invalid_grant")));
    let r = http
        .get(daemon.url("/oauth2/userinfo"))
        .bearer_auth(first["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the replayed code's access token is revoked");

    // --- redirect URIs are matched exactly --------------------------------------------
    for wrong in [
        format!("{portal_redirect}/"),
        portal_redirect.replace("/cb", "/CB"),
        format!("{portal_redirect}?x=1"),
        portal_redirect.replace("http://127.0.0.1", "http://localhost"),
    ] {
        let url = format!(
            "{idbridge}/oauth2/authorize?response_type=code&client_id=portal&scope=openid&code_challenge={}&code_challenge_method=S256&redirect_uri={}",
            "a".repeat(43),
            url::form_urlencoded::byte_serialize(wrong.as_bytes()).collect::<String>()
        );
        let stop = agent.walk(&url, "http://never").await;
        assert_eq!(stop.status, 400, "{wrong}");
        assert!(stop.location.is_none(), "no redirect to an unregistered URI");
        assert!(stop.body.contains("not registered"), "{}", stop.body);
    }

    // --- refresh: rotation, and reuse revokes the family --------------------------------
    let refresh = |token: String| {
        let http = http.clone();
        let url = daemon.url("/oauth2/token");
        async move {
            let r = http
                .post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &token),
                    ("client_id", "portal"),
                    ("client_secret", PORTAL_SECRET),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let bob_refresh = bob_tokens.refresh_token().unwrap().secret().clone();
    let (status, rotated) = refresh(bob_refresh.clone()).await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["refresh_token"].as_str().unwrap(), bob_refresh);
    assert_eq!(payload(rotated["id_token"].as_str().unwrap())["role"], "PBX admin");
    let (status, reused) = refresh(bob_refresh).await;
    assert_eq!((status, reused["error"].as_str()), (400, Some("invalid_grant")), "{reused}");
    let (status, _) = refresh(rotated["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, 400, "the whole grant is revoked after reuse");
    let r = http
        .post(daemon.url("/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", "portal"),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let attempt = |login: &'static str, hint: &'static str| {
        let portal = &portal;
        let portal_redirect = portal_redirect.clone();
        async move {
            let a = Agent::new();
            let started = portal.start(&[("login_hint", hint)]);
            let at_idp = a.walk(&started.url, &portal_redirect).await;
            a.idp_login(&at_idp, login, &portal_redirect).await
        }
    };
    // --- the IdP rotates its key: idbridge fetches the new key set on the unknown kid ------
    let idp = idp.restart_with_keys(vec![generate_key("k2")]);
    let stop = attempt("bob", "bob@acme.example").await;
    assert!(
        stop.location.as_deref().is_some_and(|l| l.starts_with(&portal_redirect) && l.contains("code=")),
        "{stop:?}"
    );

    // --- ID tokens the IdP (or an attacker in between) got wrong ---------------------------
    for (mode, expect) in [
        ("wrong_nonce", "nonce"),
        ("expired", "xpired"),
        ("alg_none", "rejected"),
        ("old_key", "does not publish"),
        ("foreign", "ssuer"),
        ("wrong_audience", "udience"),
    ] {
        idp.tamper(mode).await;
        let a = Agent::new();
        let started = portal.start(&[("login_hint", "erin@acme.example")]);
        let at_idp = a.walk(&started.url, &portal_redirect).await;
        let stop = a.idp_login(&at_idp, "erin", &portal_redirect).await;
        assert_eq!(stop.status, 401, "{mode}: {stop:?}");
        assert!(stop.url.starts_with(&format!("{idbridge}/login/callback")), "{mode}");
        assert!(stop.body.contains(expect), "{mode}: {}", stop.body);
    }
    idp.tamper("none").await;

    // --- who may sign in ---------------------------------------------------------------
    // Overage with no directory behind: access cannot be decided, and is not "no groups".
    let stop = attempt("carol", "carol@acme.example").await;
    assert_eq!(stop.status, 403);
    assert!(stop.body.contains("did not send your groups"), "{}", stop.body);
    // No group maps to a role: no account.
    let stop = attempt("dave", "dave@acme.example").await;
    assert_eq!(stop.status, 403);
    assert!(stop.body.contains("no portal account"), "{}", stop.body);
    // An email domain the connection does not allow.
    let stop = attempt("mallory", "alice@acme.example").await;
    assert_eq!(stop.status, 403);
    // Expired and not-yet-active individuals.
    work.ok(&["individual", "set", "acme", "erin@acme.example", "--activation", "2099-01-01T00:00"]);
    let stop = attempt("erin", "erin@acme.example").await;
    assert_eq!(stop.status, 403);
    assert!(stop.body.contains("not started yet") && stop.body.contains("2099-01-01"), "{}", stop.body);
    work.ok(&[
        "individual",
        "set",
        "acme",
        "erin@acme.example",
        "--activation",
        "none",
        "--expiration",
        "2020-01-01T00:00",
    ]);
    let stop = attempt("erin", "erin@acme.example").await;
    assert_eq!(stop.status, 403);
    assert!(stop.body.contains("has ended"), "{}", stop.body);

    // --- delegated administration with alice's access token ---------------------------------
    let created = http
        .post(daemon.url("/portal/v1/individuals"))
        .bearer_auth(&alice_access)
        .json(&json!({ "login": "frank@acme.example", "email": "frank@acme.example", "role": "PBX admin", "access_profile": "Billing only" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let frank: Value = created.json().await.unwrap();
    assert_eq!(frank["role"], "PBX admin");
    let frank_id = frank["id"].as_str().unwrap().to_owned();
    let refused = http
        .post(daemon.url("/portal/v1/individuals"))
        .bearer_auth(&alice_access)
        .json(&json!({ "login": "gina@acme.example", "role": "Reader of everything" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "a role the tenant does not allow");
    let bob_access = bob_tokens.access_token().secret();
    let r = http.get(daemon.url("/portal/v1/individuals")).bearer_auth(bob_access).send().await.unwrap();
    assert!(r.status() == 403 || r.status() == 401, "bob has no modify on customer_individuals");
    let r = http.get(daemon.url("/portal/v1/individuals")).bearer_auth(&alice_access).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let listed: Value = r.json().await.unwrap();
    assert!(listed["individuals"].as_array().unwrap().iter().any(|i| i["login"] == "frank@acme.example"));
    let r = http
        .post(daemon.url(&format!("/portal/v1/individuals/{frank_id}/expire")))
        .bearer_auth(&alice_access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "expired");
    let audit = work.ok(&["audit", "acme", "--actor", &alice_id]);
    assert!(audit.contains("individual.created") && audit.contains("individual.manual_change"), "{audit}");
    // A bad body is a 400 naming the problem, never a 500.
    let r = http
        .post(daemon.url("/portal/v1/individuals"))
        .bearer_auth(&alice_access)
        .body("{\"login\": 1}")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A delegated administrator never hands out more than it holds.
    let hank_agent = Agent::new();
    let started = portal.start(&[("login_hint", "hank@acme.example")]);
    let at_idp = hank_agent.walk(&started.url, &portal_redirect).await;
    let landing = hank_agent.idp_login(&at_idp, "hank", &portal_redirect).await;
    let (hank, hank_tokens) = portal.finish(started, &landing).await.expect("hank signs in");
    assert_eq!(hank["role"], "Helpdesk");
    let hank_access = hank_tokens.access_token().secret().clone();
    let create = |role: &'static str, login: &'static str| {
        let http = http.clone();
        let url = daemon.url("/portal/v1/individuals");
        let token = hank_access.clone();
        async move { http.post(url).bearer_auth(token).json(&json!({ "login": login, "role": role })).send().await.unwrap() }
    };
    let r = create("Customer admin", "ivy@acme.example").await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("more than your own role"));
    assert_eq!(create("PBX admin", "ivy@acme.example").await.status(), 403, "modify on extensions is above read");
    assert_eq!(create("Reader", "ivy@acme.example").await.status(), 201);
    let r = http
        .post(daemon.url(&format!("/portal/v1/individuals/{alice_id}/expire")))
        .bearer_auth(&hank_access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "alice's role is above hank's");
    let r = http
        .patch(daemon.url("/portal/v1/individuals/ivy@acme.example"))
        .bearer_auth(&hank_access)
        .json(&json!({ "role": "Customer admin" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .patch(daemon.url("/portal/v1/individuals/ivy@acme.example"))
        .bearer_auth(&hank_access)
        .json(&json!({ "expiration": "2031-01-01T00:00", "bogus": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unknown fields are named, not ignored");

    // --- a tenant named by the portal skips the home-realm page -----------------------------
    let t = Agent::new();
    let started = portal.start(&[("tenant", "acme")]);
    let at_idp = t.walk(&started.url, &portal_redirect).await;
    assert!(at_idp.url.starts_with(&idp.issuer), "{at_idp:?}");
    let started = portal.start(&[("tenant", "nobody")]);
    let stop = t.walk(&started.url, &portal_redirect).await;
    assert!(stop.location.as_deref().is_some_and(|l| l.contains("error=invalid_request")), "{stop:?}");

    // --- RP-initiated logout: bob's session ends, the portal is told, it returns --------
    let bob_sid = bob["sid"].as_str().unwrap().to_owned();
    let logout = format!(
        "{idbridge}/oauth2/logout?client_id=portal&state=bye1&post_logout_redirect_uri={}",
        url::form_urlencoded::byte_serialize(format!("{portal_redirect}/bye").as_bytes()).collect::<String>()
    );
    // Without an ID token as hint, the person is asked first (logout CSRF); confirming
    // the page's form signs out.
    let page = bob_agent.walk(&logout, &portal_redirect).await;
    assert!(page.status == 200 && page.body.contains("Sign out?"), "{page:?}");
    let stop = bob_agent.submit(&page, &portal_redirect).await;
    assert_eq!(stop.location.as_deref(), Some(format!("{portal_redirect}/bye?state=bye1").as_str()), "{stop:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !received.lock().unwrap().iter().any(|t| payload(t)["sid"] == bob_sid.as_str()) {
        assert!(std::time::Instant::now() < deadline, "no back-channel logout for bob's session");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let started = portal.start(&[]);
    let page = bob_agent.walk(&started.url, &portal_redirect).await;
    assert!(page.body.contains("Work email"), "signed out: the home-realm page again");
    let stop = bob_agent
        .walk(
            &format!("{idbridge}/oauth2/logout?post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F"),
            &portal_redirect,
        )
        .await;
    assert_eq!(stop.status, 400, "an unregistered return address is not followed");
    assert!(stop.location.is_none());

    // --- access ends: every session ends, tokens stop, portals are told -------------------
    work.ok(&["individual", "set", "acme", &alice_id, "--expiration", "2020-01-01T00:00"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let logout_token = loop {
        // Earlier expiries (erin, frank) ended their sessions too; alice's is the one here.
        let found = received.lock().unwrap().iter().find(|t| payload(t)["sub"] == alice_id.as_str()).cloned();
        if let Some(token) = found {
            break token;
        }
        assert!(std::time::Instant::now() < deadline, "no back-channel logout arrived");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let logout = payload(&logout_token);
    assert_eq!(logout["sub"], alice_id.as_str());
    assert_eq!(logout["sid"], claims["sid"]);
    assert_eq!(logout["aud"], "portal");
    assert_eq!(logout["iss"], idbridge.as_str());
    assert!(logout["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(logout.get("nonce").is_none());
    let header = payload(&format!("x.{}", logout_token.split('.').next().unwrap()));
    assert_eq!(header["typ"], "logout+jwt");
    let r = http.get(daemon.url("/oauth2/userinfo")).bearer_auth(&alice_access).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let (status, _) = refresh(alice_refresh).await;
    assert_eq!(status, 400);
    let started = portal.start(&[]);
    let stop = agent.walk(&started.url, &portal_redirect).await;
    assert_ne!(
        stop.location.as_deref().map(|l| l.starts_with(&portal_redirect)),
        Some(true),
        "the SSO session ended too"
    );
    drop(idp);
}

/// idbridge authenticates to the IdP with a signed JWT (no shared secret), and merges the
/// IdP's userinfo into what it knows of the person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_client_authentication_and_userinfo() {
    let (pem, public) = idbridge_e2e::idp::generate_client_key("idbridge-2026");
    let idbridge_port = free_port();
    let idbridge = format!("http://127.0.0.1:{idbridge_port}");
    let idp = Idp::start(json!({
        "keys": [generate_key("k1")],
        "clients": [{
            "client_id": "idbridge",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "ES256",
            "jwks": { "keys": [public] },
            "redirect_uris": [format!("{idbridge}/login/callback")],
        }],
        // Userinfo is read too (use_userinfo) and must name the same subject.
        "users": { "alice": { "sub": "u-alice", "email": "alice@acme.example", "preferred_username": "alice@acme.example", "groups": ["Portal-Admins"] } },
    }));
    let work = Workdir::new().with_env("PORTAL_SECRET", PORTAL_SECRET);
    let key_file = work.path().join("idbridge-client.pem");
    std::fs::write(&key_file, pem).unwrap();
    let acme = idbridge_e2e::idp::acme_with_domain(true);
    let portal_redirect = format!("http://127.0.0.1:{}/cb", free_port());
    let file = work.path().join("sso.toml");
    std::fs::write(
        &file,
        format!(
            "{acme}\n[[tenants.oidc]]\nname = \"acme-idp\"\nissuer = \"{}\"\nclient_id = \"idbridge\"\nclient_auth = \"private_key_jwt\"\nprivate_key_file = \"{}\"\nprivate_key_id = \"idbridge-2026\"\nuse_userinfo = true\n\n[[clients]]\nid = \"portal\"\nredirect_uris = [\"{portal_redirect}\"]\nsecret_env = \"PORTAL_SECRET\"\nid_token_alg = \"ES256\"\n",
            idp.issuer,
            key_file.display()
        ),
    )
    .unwrap();
    work.ok(&["apply", file.to_str().unwrap()]);
    let daemon = work.serve_at(&format!("127.0.0.1:{idbridge_port}"), Some(idbridge.clone()));
    let portal = Portal::new(&idbridge, &portal_redirect).await;
    let agent = Agent::new();
    let started = portal.start(&[("login_hint", "alice@acme.example")]);
    let at_idp = agent.walk(&started.url, &portal_redirect).await;
    let landing = agent.idp_login(&at_idp, "alice", &portal_redirect).await;
    let (claims, tokens) = portal.finish(started, &landing).await.expect("signed in with private_key_jwt");
    assert_eq!(claims["role"], "Customer admin");
    let id_token = tokens.id_token().unwrap().to_string();
    let header = payload(&format!("x.{}", id_token.split('.').next().unwrap()));
    assert_eq!(header["alg"], "ES256", "the portal registered for ES256");
    drop(daemon);
}

/// People Entra or Okta provisioned over SCIM sign in as the individual SCIM made: linked
/// by the immutable id the token carries (Entra `oid` = SCIM `externalId`), never by email.
/// Their groups come from SCIM, so a token with a groups overage still signs them in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_provisioned_people_are_linked_by_immutable_id_not_by_email() {
    let idbridge_port = free_port();
    let idbridge = format!("http://127.0.0.1:{idbridge_port}");
    let idp = Idp::start(json!({
        "keys": [generate_key("k1")],
        "clients": [{ "client_id": "idbridge", "client_secret": UPSTREAM_SECRET, "redirect_uris": [format!("{idbridge}/login/callback")] }],
        "users": {
            // Entra sends a groups overage for Gina; SCIM knows her groups.
            "gina": { "sub": "pairwise-gina", "oid": "8d3f-gina", "email": "gina@acme.example", "hasgroups": true },
            // Same email as SCIM's Hal, but another object id: somebody else.
            "impostor": { "sub": "pairwise-x", "oid": "0000-other", "email": "hal@acme.example", "groups": ["Portal-Admins"] },
        },
    }));
    let work = Workdir::new().with_env("ACME_IDP_SECRET", UPSTREAM_SECRET).with_env("PORTAL_SECRET", PORTAL_SECRET);
    // Just-in-time provisioning stays off: only SCIM creates people here.
    let acme = idbridge_e2e::idp::acme_with_domain(false);
    let portal_redirect = format!("http://127.0.0.1:{}/cb", free_port());
    let file = work.path().join("sso.toml");
    std::fs::write(
        &file,
        format!(
            "{acme}\n[[tenants.oidc]]\nname = \"entra\"\nissuer = \"{}\"\nclient_id = \"idbridge\"\nclient_secret_env = \"ACME_IDP_SECRET\"\nlink_by = {{ claim = \"oid\", source = \"scim\" }}\n\n[[clients]]\nid = \"portal\"\nredirect_uris = [\"{portal_redirect}\"]\nsecret_env = \"PORTAL_SECRET\"\n",
            idp.issuer
        ),
    )
    .unwrap();
    work.ok(&["apply", file.to_str().unwrap()]);
    let scim_token = work.ok(&["scim-token", "create", "acme"]).trim().to_owned();
    let daemon = work.serve_at(&format!("127.0.0.1:{idbridge_port}"), Some(idbridge.clone()));
    let http = reqwest::Client::new();
    let scim = |path: &str, body: Value| {
        http.post(daemon.url(&format!("/scim/v2/acme{path}")))
            .bearer_auth(&scim_token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
    };
    let mut ids = Vec::new();
    for (user, external) in [("gina@acme.example", "8d3f-gina"), ("hal@acme.example", "8d3f-hal")] {
        let r: Value = scim(
            "/Users",
            json!({ "userName": user, "externalId": external, "emails": [{ "value": user, "primary": true }] }),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        ids.push(json!({ "value": r["id"] }));
    }
    let r = scim("/Groups", json!({ "displayName": "pbx-admins", "members": ids })).await.unwrap();
    assert_eq!(r.status(), 201);

    let portal = Portal::new(&idbridge, &portal_redirect).await;
    let agent = Agent::new();
    let started = portal.start(&[("login_hint", "gina@acme.example")]);
    let at_idp = agent.walk(&started.url, &portal_redirect).await;
    let landing = agent.idp_login(&at_idp, "gina", &portal_redirect).await;
    let (claims, _) = portal.finish(started, &landing).await.expect("gina signs in as SCIM's individual");
    assert_eq!(claims["role"], "PBX admin", "from her SCIM groups despite the overage");
    assert_eq!(claims["preferred_username"], "gina@acme.example");
    let shown = work.ok(&["individual", "show", "acme", "gina@acme.example", "--json"]);
    assert!(shown.contains("\"oidc\"") && shown.contains("pairwise-gina") && shown.contains("\"scim\""), "{shown}");

    // The same email with another object id is not Hal.
    let other = Agent::new();
    let started = portal.start(&[("login_hint", "hal@acme.example")]);
    let at_idp = other.walk(&started.url, &portal_redirect).await;
    let stop = other.idp_login(&at_idp, "impostor", &portal_redirect).await;
    assert_eq!(stop.status, 403, "{stop:?}");
    assert!(stop.body.contains("no portal account"), "{}", stop.body);
}

/// A person made just in time follows rule changes like any other: their login's groups
/// are kept as their source record, so `mapping diff` lists them, a re-map counts and
/// changes them, they are logged out everywhere, and `explain` shows the login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_made_just_in_time_follows_rule_changes_and_is_logged_out() {
    let idbridge_port = free_port();
    let idbridge = format!("http://127.0.0.1:{idbridge_port}");
    let idp = Idp::for_idbridge(&idbridge, UPSTREAM_SECRET, users());
    let (logout_url, received) = logout_receiver().await;
    let portal_redirect = format!("http://127.0.0.1:{}/cb", free_port());
    let work = Workdir::new().with_env("ACME_IDP_SECRET", UPSTREAM_SECRET).with_env("PORTAL_SECRET", PORTAL_SECRET);
    let file = work.path().join("sso.toml");
    std::fs::write(
        &file,
        format!(
            "{}\n[[clients]]\nid = \"portal\"\nredirect_uris = [\"{portal_redirect}\"]\nbackchannel_logout_uri = \"{logout_url}\"\nsecret_env = \"PORTAL_SECRET\"\n",
            apply_file(&idp)
        ),
    )
    .unwrap();
    work.ok(&["apply", file.to_str().unwrap()]);
    let daemon = work.serve_at(&format!("127.0.0.1:{idbridge_port}"), Some(idbridge.clone()));
    let portal = Portal::new(&idbridge, &portal_redirect).await;
    let agent = Agent::new();
    let started = portal.start(&[("login_hint", "bob@acme.example")]);
    let at_idp = agent.walk(&started.url, &portal_redirect).await;
    let landing = agent.idp_login(&at_idp, "bob", &portal_redirect).await;
    let (bob, tokens) = portal.finish(started, &landing).await.expect("bob signs in");
    assert_eq!(bob["role"], "PBX admin");
    let access = tokens.access_token().secret().clone();

    let explained: Value =
        serde_json::from_str(&work.ok(&["individual", "explain", "acme", "bob@acme.example", "--json"])).unwrap();
    let login = explained["sources"].as_array().unwrap().iter().find(|s| s["source"] == "oidc").unwrap().clone();
    assert_eq!(login["present"], true, "{explained}");
    assert_eq!(login["groups"], json!(["pbx-admins"]), "{explained}");
    assert_eq!(explained["decision_now"]["role"], "PBX admin", "{explained}");

    // The rules without the one that makes bob a PBX admin.
    let current = work.ok(&["mapping", "rules", "acme", "--json"]);
    let mut rules: Vec<Value> = serde_json::from_str(&current).unwrap();
    rules.retain(|r| r["name"] != "pbx admins");
    let rules_file = work.path().join("rules.json");
    std::fs::write(&rules_file, serde_json::to_string(&rules).unwrap()).unwrap();
    let diff = work.ok(&["mapping", "diff", "acme", "--rules", rules_file.to_str().unwrap()]);
    assert!(diff.contains("1 of 1 individuals would change") && diff.contains("bob@acme.example"), "{diff}");
    let set = work.ok(&["mapping", "set-rules", "acme", rules_file.to_str().unwrap()]);
    assert!(set.contains("re-mapped acme: 1 individual(s) changed"), "{set}");
    let shown: Value =
        serde_json::from_str(&work.ok(&["individual", "show", "acme", "bob@acme.example", "--json"])).unwrap();
    assert_eq!(shown["status"], "suspended", "no rule grants bob access any more: {shown}");

    // Logged out everywhere: the portal is told, the tokens stop working.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !received.lock().unwrap().iter().any(|t| payload(t)["sid"] == bob["sid"]) {
        assert!(std::time::Instant::now() < deadline, "no back-channel logout for bob after the rule change");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = reqwest::Client::new().get(daemon.url("/oauth2/userinfo")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 401);
    drop(idp);
}
