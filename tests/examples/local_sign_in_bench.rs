//! Local sign-in benchmark (bench/local_sign_in.sh runs it against a release build):
//!
//! 1. What one password verification costs at the configured Argon2id parameters
//!    (default: m = 19 MiB, t = 2, p = 1), in this process: milliseconds per verification
//!    on one core, and verifications per second with both cores busy.
//! 2. Whole sign-ins per second through idbridge (embedded SQLite, default Argon2id cost),
//!    CONCURRENCY fresh browsers at a time, each: the portal's authorize request, the
//!    home-realm page, the email, the password, back to the portal, the code exchange.
//!    Beside it in the same run, the same count of SSO sign-ins through idbridge in front
//!    of the npm `oidc-provider` as the customer's IdP (its login form included).
//!
//! Accounts are made the way an operator makes them (admin API), invited by mail through
//! aiosmtpd on loopback, and given their password from the link. The second factor is off
//! for the throughput part: a TOTP code is good once per 30-second step, so one account
//! could not sign in more often than that; its check is one HMAC, not measured.
//!
//! Reported, never asserted. Usage: bench/local_sign_in.sh [ACCOUNTS] [SIGN_INS].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use base64::Engine;
use idbridge_e2e::Workdir;
use idbridge_e2e::idp::{Agent, Idp, free_port, generate_key, query_param};
use idbridge_e2e::smtp::{Smtp, link_in};
use serde_json::json;

const UPSTREAM_SECRET: &str = "upstream-secret-upstream-secret-0123456789";
const PORTAL_SECRET: &str = "portal-secret-portal-secret-portal-secret-01";
const CONCURRENCY: usize = 8;
const VERIFIER: &str = "benchmark-verifier-benchmark-verifier-benchmark";
const PASSWORD: &str = "lantern orbit cactus fjord";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn authorize_url(base: &str, redirect: &str, extra: &str) -> String {
    use sha2::Digest;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
    format!(
        "{base}/oauth2/authorize?response_type=code&client_id=portal&scope=openid%20email&redirect_uri={}&state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256{extra}",
        url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>(),
    )
}

async fn exchange(http: &reqwest::Client, base: &str, redirect: &str, landing: &str) {
    let code = query_param(landing, "code").unwrap_or_else(|| panic!("no code: {landing}"));
    let r = http
        .post(format!("{base}/oauth2/token"))
        .basic_auth("portal", Some(PORTAL_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", redirect),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "token: {}", r.status());
    let _ = r.bytes().await;
}

/// A local sign-in in a fresh browser, to the portal's code exchange.
async fn local_sign_in(http: &reqwest::Client, base: &str, redirect: &str, email: &str) {
    let agent = Agent::new();
    let home = agent.walk(&authorize_url(base, redirect, ""), redirect).await;
    let password_page = agent.post_form(&home, &home.form_with(&[("email", email)]), redirect).await;
    let landing = agent
        .post_form(&password_page, &password_page.form_with(&[("email", email), ("password", PASSWORD)]), redirect)
        .await;
    let location = landing.location.unwrap_or_else(|| panic!("{email}: {} {}", landing.status, landing.body));
    exchange(http, base, redirect, &location).await;
}

/// An SSO sign-in in a fresh browser: idbridge, the IdP's form, back, the code exchange.
async fn sso_sign_in(http: &reqwest::Client, base: &str, redirect: &str) {
    let agent = Agent::new();
    let page = agent.walk(&authorize_url(base, redirect, "&login_hint=alice%40acme.example"), redirect).await;
    let landing = agent.idp_login(&page, "alice", redirect).await;
    let location = landing.location.unwrap_or_else(|| panic!("sso: {} {}", landing.status, landing.body));
    exchange(http, base, redirect, &location).await;
}

/// Runs `total` sign-ins, CONCURRENCY at a time; returns (sign-ins/s, sorted latencies ms).
async fn throughput<F, Fut>(total: usize, one: F) -> (f64, Vec<f64>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let one = Arc::new(one);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (one, next) = (one.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return latencies;
                }
                let t = Instant::now();
                one(i).await;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    (total as f64 / secs, all)
}

fn argon2_cost() {
    use idbridge_app::local_accounts::secrets::{HashCost, hash_password, verify_password};
    let cost = HashCost::default();
    let stored = hash_password(cost, PASSWORD).unwrap();
    let n = 40;
    let t = Instant::now();
    for _ in 0..n {
        assert!(verify_password(&stored, PASSWORD));
    }
    let one = t.elapsed().as_secs_f64() * 1e3 / f64::from(n);
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get());
    let t = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..n {
                    assert!(verify_password(&stored, PASSWORD));
                }
            });
        }
    });
    let per_second = f64::from(n) * threads as f64 / t.elapsed().as_secs_f64();
    println!(
        "| Argon2id m={} KiB t={} p={} | {one:.1} ms per verification on one core | {per_second:.0} verifications/s on {threads} cores |",
        cost.memory_kib, cost.iterations, cost.parallelism
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let accounts: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let sign_ins: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(400);

    // --- 1. the cost of one verification --------------------------------------------------
    argon2_cost();

    // --- 2. whole sign-ins -----------------------------------------------------------------
    let idbridge_port = free_port();
    let base = format!("http://127.0.0.1:{idbridge_port}");
    let redirect = "http://127.0.0.1:1/cb".to_owned();
    let idp = Idp::start(json!({
        "keys": [generate_key("k1")],
        "clients": [{ "client_id": "idbridge", "client_secret": UPSTREAM_SECRET, "redirect_uris": [format!("{base}/login/callback")] }],
        "users": { "alice": { "sub": "u-alice", "email": "alice@acme.example", "preferred_username": "alice@acme.example", "groups": ["Portal-Admins"] } },
    }));
    let (admin_token, admin_hash) = idbridge_e2e::new_token();
    let work = Workdir::new()
        .with_env("ACME_IDP_SECRET", UPSTREAM_SECRET)
        .with_env("PORTAL_SECRET", PORTAL_SECRET)
        .with_env("IDBRIDGE_LOG__LEVEL", "warn")
        .with_env("IDBRIDGE_ADMIN__TOKEN_HASHES", &format!("[\"{admin_hash}\"]"));
    let smtp = Smtp::start(work.path());
    let acme = idbridge_e2e::idp::acme_with_domain(true).replace(
        "retention_days = 90\n",
        "retention_days = 90\n[tenants.policy.local_sign_in]\nallowed = true\nsecond_factor = false\n",
    );
    let file = work.path().join("bench.toml");
    std::fs::write(
        &file,
        format!(
            "{acme}\n[[tenants.oidc]]\nname = \"acme-idp\"\nissuer = \"{}\"\nclient_id = \"idbridge\"\nclient_secret_env = \"ACME_IDP_SECRET\"\n\n[[clients]]\nid = \"portal\"\nredirect_uris = [\"{redirect}\"]\nsecret_env = \"PORTAL_SECRET\"\n",
            idp.issuer
        ),
    )
    .unwrap();
    work.ok(&["apply", file.to_str().unwrap()]);
    let work = work
        .with_env("IDBRIDGE_LOCAL_SIGN_IN__SMTP__HOST", "127.0.0.1")
        .with_env("IDBRIDGE_LOCAL_SIGN_IN__SMTP__PORT", &smtp.port.to_string())
        .with_env("IDBRIDGE_LOCAL_SIGN_IN__SMTP__SECURITY", "none");
    let _daemon = work.serve_at(&format!("127.0.0.1:{idbridge_port}"), Some(base.clone()));
    let http = reqwest::Client::new();

    let emails: Vec<String> = (0..accounts).map(|i| format!("person{i:04}@smallco.example")).collect();
    for email in &emails {
        let r = http
            .post(format!("{base}/admin/v1/tenants/acme/individuals"))
            .bearer_auth(&admin_token)
            .json(&json!({ "login": email, "email": email, "role": "PBX admin" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    for email in &emails {
        let mail = smtp.wait_for(email, "/account/setup?token=").await;
        let agent = Agent::new();
        let form = agent.walk(&link_in(&mail, "/account/setup"), "-").await;
        let done = agent.post_form(&form, &form.form_with(&[("password", PASSWORD), ("confirm", PASSWORD)]), "-").await;
        assert_eq!(done.status, 200, "{email}: {}", done.body);
    }
    println!("accounts: {accounts}, each with a password; {CONCURRENCY} browsers at a time");

    // Warm-up: discovery, the IdP's keys, connection pools.
    for i in 0..10 {
        local_sign_in(&http, &base, &redirect, &emails[i % accounts]).await;
        sso_sign_in(&http, &base, &redirect).await;
    }
    let (b, r, e, h) = (base.clone(), redirect.clone(), Arc::new(emails), http.clone());
    let (local_rate, local) = throughput(sign_ins, move |i| {
        let (b, r, e, h) = (b.clone(), r.clone(), e.clone(), h.clone());
        async move { local_sign_in(&h, &b, &r, &e[i % e.len()]).await }
    })
    .await;
    let (b, r, h) = (base.clone(), redirect.clone(), http.clone());
    let (sso_rate, sso) = throughput(sign_ins, move |_| {
        let (b, r, h) = (b.clone(), r.clone(), h.clone());
        async move { sso_sign_in(&h, &b, &r).await }
    })
    .await;
    println!("| sign-ins, {sign_ins} each | per second | p50 | p99 |");
    for (name, rate, latencies) in [
        ("local: email, password (Argon2id default), code exchange", local_rate, &local),
        ("SSO: email, oidc-provider's form, callback, code exchange", sso_rate, &sso),
    ] {
        println!(
            "| {name} | {rate:.0}/s | {:.1} ms | {:.1} ms |",
            percentile(latencies, 0.5),
            percentile(latencies, 0.99)
        );
    }
}
