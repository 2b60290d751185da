//! What operators do with sign-in: portals, tenants' sign-in settings and signing keys
//! over the admin API and the CLI, and signing keys sealed with a key-encryption key.

use idbridge_e2e::Workdir;
use serde_json::{Value, json};

/// Operators manage portals, tenants' sign-in and signing keys over the admin API and the
/// CLI; bad input is refused with the reason, secrets are shown once and never listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_sign_in_settings_and_keys_over_the_admin_api_and_cli() {
    let (token, hash) = idbridge_e2e::new_token();
    let work = Workdir::new().with_env("IDBRIDGE_ADMIN__TOKEN_HASHES", &format!("[\"{hash}\"]"));
    work.ok(&["apply", idbridge_e2e::workspace_root().join("config/examples/acme.toml").to_str().unwrap()]);
    work.ok(&["tenant", "create", "beta", "--name", "Beta"]);
    let daemon = work.serve();
    let http = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: &str| http.request(method, daemon.url(path)).bearer_auth(&token);

    let r = admin(reqwest::Method::POST, "/admin/v1/clients")
        .json(&json!({ "id": "portal", "redirect_uris": ["https://portal.example/cb"], "backchannel_logout_uri": "https://portal.example/bc" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let created: Value = r.json().await.unwrap();
    assert!(created["client_secret"].as_str().unwrap().len() >= 43);
    let listed: Value = admin(reqwest::Method::GET, "/admin/v1/clients").send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["clients"][0]["id"], "portal");
    assert!(!listed.to_string().contains("secret"), "{listed}");
    let r = admin(reqwest::Method::POST, "/admin/v1/clients")
        .json(&json!({ "id": "bad", "redirect_uris": ["http://portal.example/cb"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("https://"));
    let r = admin(reqwest::Method::POST, "/admin/v1/clients")
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let sign_in = json!({
        "domains": ["ACME.example"],
        "oidc": [{ "name": "okta", "issuer": "https://acme.okta.example", "client_id": "abc", "client_secret_env": "OKTA_SECRET",
                   "claims": { "groups": "groups" }, "allowed_email_domains": ["acme.example"] }],
    });
    let r = admin(reqwest::Method::PUT, "/admin/v1/tenants/acme/sign-in").json(&sign_in).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let shown: Value = r.json().await.unwrap();
    assert_eq!(shown["domains"], json!(["acme.example"]));
    // A domain belongs to one tenant.
    let r = admin(reqwest::Method::PUT, "/admin/v1/tenants/beta/sign-in")
        .json(&json!({ "domains": ["acme.example"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("acme"));
    // alg none is not an algorithm anybody may allow.
    let r = admin(reqwest::Method::PUT, "/admin/v1/tenants/beta/sign-in")
        .json(&json!({ "oidc": [{ "name": "x", "issuer": "https://idp.example", "client_id": "a", "client_secret_env": "S", "algorithms": ["none"] }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let keys: Value = admin(reqwest::Method::GET, "/admin/v1/signing-keys").send().await.unwrap().json().await.unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2, "one RS256 and one ES256 key");
    let rotated: Value =
        admin(reqwest::Method::POST, "/admin/v1/signing-keys/rotate").send().await.unwrap().json().await.unwrap();
    let states: Vec<&str> = rotated["keys"].as_array().unwrap().iter().map(|k| k["state"].as_str().unwrap()).collect();
    assert_eq!(states.iter().filter(|s| **s == "signing").count(), 2, "{states:?}");
    assert_eq!(states.iter().filter(|s| s.starts_with("published")).count(), 2, "{states:?}");
    let jwks: Value = http.get(daemon.url("/oauth2/jwks")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 4, "successors are published before they sign");
    assert!(!jwks.to_string().contains("\"d\""), "no private key material");

    // Whatever a client sends, an answer that names the problem, never a 500.
    let secret = created["client_secret"].as_str().unwrap();
    let r = http
        .post(daemon.url("/oauth2/token"))
        .json(&json!({ "grant_type": "authorization_code" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = http.post(daemon.url("/oauth2/token")).form(&[("grant_type", "authorization_code")]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = http
        .post(daemon.url("/oauth2/token"))
        .basic_auth("portal", Some(secret))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");
    let r = http
        .post(daemon.url("/oauth2/token"))
        .basic_auth("portal", Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "nope"),
            ("code_verifier", "x"),
            ("redirect_uri", "https://portal.example/cb"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    for path in [
        "/oauth2/authorize",
        "/oauth2/authorize?client_id=portal",
        "/oauth2/authorize?client_id=%FF%FE",
        "/login",
        "/login/callback?state=%ZZ",
    ] {
        let r = http.get(daemon.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "{path}");
    }
    let r = http.post(daemon.url("/login")).form(&[("email", "x@acme.example")]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Errors after the client and redirect URI are verified go back to the portal.
    let r = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
        .get(daemon.url("/oauth2/authorize?client_id=portal&redirect_uri=https%3A%2F%2Fportal.example%2Fcb&response_type=code&scope=openid&state=xyz"))
        .send().await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("https://portal.example/cb?error=invalid_request") && location.contains("state=xyz"),
        "{location}"
    );
    let r = http.get(daemon.url("/oauth2/userinfo")).bearer_auth("forged").send().await.unwrap();
    assert_eq!(r.status(), 401);
    drop(daemon);

    let listed = work.ok(&["client", "list"]);
    assert!(listed.contains("portal") && listed.contains("https://portal.example/cb"), "{listed}");
    let keys = work.ok(&["keys", "list"]);
    assert_eq!(keys.lines().count(), 4, "{keys}");
    let err = work.fails(&["client", "create", "p2", "--redirect-uri", "https://p2.example/cb#frag"]);
    assert!(err.contains("fragment"), "{err}");
    let created = work.ok(&["client", "create", "p2", "--redirect-uri", "https://p2.example/cb", "--alg", "ES256"]);
    assert!(created.contains("client_secret: "), "{created}");
    work.ok(&["client", "delete", "p2"]);
    assert!(work.fails(&["client", "delete", "p2"]).contains("no portal client"));
}

/// With `[sso] key_encryption_key_file`, signing keys are sealed in the database: the
/// daemon and the CLI open them with the file, and without it (or with another key)
/// refuse with a message that names the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_are_sealed_with_the_key_encryption_key() {
    let work = Workdir::new();
    let kek = work.path().join("kek");
    std::fs::write(&kek, "8f3c1e5a7b9d2f4061c3e5a7b9d2f4068f3c1e5a7b9d2f4061c3e5a7b9d2f406\n").unwrap();
    let work = work.with_env("IDBRIDGE_SSO__KEY_ENCRYPTION_KEY_FILE", kek.to_str().unwrap());
    let daemon = work.serve();
    let jwks: Value = reqwest::get(daemon.url("/oauth2/jwks")).await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert!(daemon.terminate().success());

    let mut stored = Vec::new();
    for file in ["idbridge.db", "idbridge.db-wal"] {
        stored.extend(std::fs::read(work.path().join(file)).unwrap_or_default());
    }
    let stored = String::from_utf8_lossy(&stored);
    assert!(stored.contains("enc:v1:"), "keys are stored sealed");
    // Every P-256 PKCS#8 key starts with these base64 characters; none is stored in clear.
    assert!(!stored.contains("MIGHAgEAMBMGByqGSM49AgEG"), "no private key in clear");

    assert_eq!(work.ok(&["keys", "list"]).lines().count(), 2);
    let out = work.command(&["keys", "list"]).env("IDBRIDGE_SSO__KEY_ENCRYPTION_KEY_FILE", "").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sso.key_encryption_key_file"));
    let other = work.path().join("other-kek");
    std::fs::write(&other, "0000000000000000000000000000000000000000000000000000000000000000").unwrap();
    let out = work.command(&["keys", "list"]).env("IDBRIDGE_SSO__KEY_ENCRYPTION_KEY_FILE", &other).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be opened"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&other, "too short").unwrap();
    let err = work.command(&["check-config"]).env("IDBRIDGE_SSO__KEY_ENCRYPTION_KEY_FILE", &other).output().unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("key_encryption_key_file"));
}
