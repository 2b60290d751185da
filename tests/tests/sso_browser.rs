//! A real browser (Debian's Chromium, JavaScript off, driven by playwright-core) through
//! the home-realm page, the IdP's login form and back to a portal built on the npm
//! `openid-client`, which verifies the ID token and reads userinfo.

use std::process::Command;

use idbridge_e2e::Workdir;
use idbridge_e2e::browser::chromium;
use idbridge_e2e::idp::{Idp, free_port, generate_key, oidc_dir};
use serde_json::{Value, json};

const UPSTREAM_SECRET: &str = "upstream-secret-upstream-secret-0123456789";
const PORTAL_SECRET: &str = "portal-secret-portal-secret-portal-secret-01";

#[test]
fn a_real_browser_signs_in_through_the_home_realm_page() {
    let Some(chromium) = chromium() else { return };
    let idbridge_port = free_port();
    let idbridge = format!("http://127.0.0.1:{idbridge_port}");
    let portal_port = free_port();
    let idp = Idp::start(json!({
        "keys": [generate_key("k1")],
        "clients": [{ "client_id": "idbridge", "client_secret": UPSTREAM_SECRET, "redirect_uris": [format!("{idbridge}/login/callback")] }],
        "users": { "alice": { "sub": "u-alice", "email": "alice@acme.example", "name": "Alice Admin",
                              "preferred_username": "alice@acme.example", "password": "correct horse", "groups": ["Portal-Admins"] } },
    }));
    let work = Workdir::new().with_env("ACME_IDP_SECRET", UPSTREAM_SECRET).with_env("PORTAL_SECRET", PORTAL_SECRET);
    let acme = idbridge_e2e::idp::acme_with_domain(true);
    let file = work.path().join("sso.toml");
    std::fs::write(
        &file,
        format!(
            r#"{acme}
[[tenants.oidc]]
name = "acme-idp"
issuer = "{issuer}"
client_id = "idbridge"
client_secret_env = "ACME_IDP_SECRET"

[[clients]]
id = "portal"
name = "Self-care portal"
redirect_uris = ["http://127.0.0.1:{portal_port}/cb"]
secret_env = "PORTAL_SECRET"
"#,
            issuer = idp.issuer
        ),
    )
    .unwrap();
    work.ok(&["apply", file.to_str().unwrap()]);
    let _daemon = work.serve_at(&format!("127.0.0.1:{idbridge_port}"), Some(idbridge.clone()));

    let config = work.path().join("browser.json");
    std::fs::write(
        &config,
        json!({
            "issuer": idbridge, "client_id": "portal", "client_secret": PORTAL_SECRET, "portal_port": portal_port,
            "email": "alice@acme.example", "login": "alice", "password": "correct horse",
        })
        .to_string(),
    )
    .unwrap();
    let out = Command::new("node")
        .arg(oidc_dir().join("browser.mjs"))
        .arg(&config)
        .current_dir(oidc_dir())
        .env("CHROMIUM", chromium)
        .output()
        .expect("run node browser.mjs");
    assert!(
        out.status.success(),
        "browser sign-in failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("JSON from browser.mjs");
    let pages = result["pages"].as_array().unwrap();
    assert!(pages[0]["url"].as_str().unwrap().starts_with(&format!("{idbridge}/oauth2/authorize")), "{pages:?}");
    assert!(pages[0]["title"].as_str().unwrap().contains("Sign in"), "{pages:?}");
    assert!(pages[1]["url"].as_str().unwrap().starts_with(&idp.issuer), "{pages:?}");
    let claims = &result["claims"];
    assert_eq!(claims["iss"], idbridge.as_str());
    assert_eq!(claims["aud"], "portal");
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["email"], "alice@acme.example");
    assert_eq!(claims["name"], "Alice Admin");
    assert_eq!(claims["role"], "Customer admin");
    assert_eq!(claims["permissions"]["customer_individuals"], "modify");
    assert_eq!(claims["access_profile_name"], "Full portal");
    assert!(claims["sid"].is_string());
    assert_eq!(result["userinfo"]["role"], "Customer admin");
}
