//! SSO benchmark (bench/sso.sh runs it against a release build): idbridge as the portal's
//! OpenID provider in front of the npm `oidc-provider` as the customer's IdP, both on
//! loopback, embedded SQLite.
//!
//! 1. Latency idbridge adds to one login, IdP excluded: `/oauth2/authorize` (to the IdP),
//!    plus `/login/callback` minus the IdP's token call (the callback's `Server-Timing`
//!    `upstream` part), plus the portal's code exchange at `/oauth2/token`. Each login is
//!    a fresh browser (no SSO session); the individual exists after the warm-up logins.
//! 2. Code exchanges per second at `/oauth2/token`: codes are minted first through an SSO
//!    session, then exchanged by CONCURRENCY clients at once. The same measurement against
//!    oidc-provider's own token endpoint, in the same run, is the peer.
//!
//! Reported, never asserted. Usage: bench/sso.sh [LOGINS] [CODES].

use std::time::{Duration, Instant};

use base64::Engine;
use idbridge_e2e::Workdir;
use idbridge_e2e::idp::{Agent, Idp, free_port, generate_key, query_param};
use serde_json::json;

const UPSTREAM_SECRET: &str = "upstream-secret-upstream-secret-0123456789";
const PORTAL_SECRET: &str = "portal-secret-portal-secret-portal-secret-01";
const CONCURRENCY: usize = 32;
const ROUND: usize = 400;
const VERIFIER: &str = "benchmark-verifier-benchmark-verifier-benchmark";

fn challenge() -> String {
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER.as_bytes()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn authorize_url(base: &str, path: &str, client: &str, redirect: &str, extra: &str) -> String {
    format!(
        "{base}{path}?response_type=code&client_id={client}&scope=openid%20email&redirect_uri={}&state=s&nonce=n&code_challenge={}&code_challenge_method=S256{extra}",
        url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>(),
        challenge()
    )
}

/// Mints `n` codes through an existing session (no login page): one GET each.
async fn mint_codes(agent: &Agent, url: &str, n: usize) -> Vec<String> {
    let mut codes = Vec::with_capacity(n);
    for _ in 0..n {
        let stop = agent.walk(url, "http://127.0.0.1:1/").await;
        let location = stop.location.unwrap_or_else(|| panic!("no code: {} {}", stop.status, stop.body));
        codes.push(query_param(&location, "code").expect("code"));
    }
    codes
}

/// Exchanges every code with CONCURRENCY clients; returns (seconds, failures).
async fn exchange_all(token_url: &str, client: &str, secret: &str, redirect: &str, codes: Vec<String>) -> (f64, usize) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(CONCURRENCY).build().unwrap();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(codes));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (http, queue) = (http.clone(), queue.clone());
        let (token_url, client, secret, redirect) =
            (token_url.to_owned(), client.to_owned(), secret.to_owned(), redirect.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            loop {
                let Some(code) = queue.lock().unwrap().pop() else { break };
                let r = http
                    .post(&token_url)
                    .basic_auth(&client, Some(&secret))
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("code_verifier", VERIFIER),
                        ("redirect_uri", &redirect),
                    ])
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    Ok(r) => {
                        if failures == 0 {
                            eprintln!("exchange failed: {} {}", r.status(), r.text().await.unwrap_or_default());
                        }
                        failures += 1;
                    }
                    Err(e) => {
                        eprintln!("exchange failed: {e}");
                        failures += 1;
                    }
                }
            }
            failures
        }));
    }
    let mut failures = 0;
    for t in tasks {
        failures += t.await.unwrap();
    }
    (started.elapsed().as_secs_f64(), failures)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let logins: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let n_codes: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let idbridge_port = free_port();
    let idbridge = format!("http://127.0.0.1:{idbridge_port}");
    let portal_redirect = "http://127.0.0.1:1/cb".to_owned();
    let idp = Idp::start(json!({
        "keys": [generate_key("k1")],
        "ttl": { "AuthorizationCode": 3600 },
        "clients": [
            { "client_id": "idbridge", "client_secret": UPSTREAM_SECRET, "redirect_uris": [format!("{idbridge}/login/callback")] },
            { "client_id": "bench", "client_secret": PORTAL_SECRET, "redirect_uris": [portal_redirect.clone()] },
        ],
        "users": { "alice": { "sub": "u-alice", "email": "alice@acme.example", "preferred_username": "alice@acme.example", "groups": ["Portal-Admins"] } },
    }));
    let work = Workdir::new()
        .with_env("ACME_IDP_SECRET", UPSTREAM_SECRET)
        .with_env("PORTAL_SECRET", PORTAL_SECRET)
        .with_env("IDBRIDGE_SSO__CODE_SECONDS", "600")
        .with_env("IDBRIDGE_LOG__LEVEL", "warn")
        .with_env(
            "IDBRIDGE_DATABASE__MAX_CONNECTIONS",
            &std::env::var("BENCH_DB_CONNECTIONS").unwrap_or_else(|_| "10".into()),
        );
    let acme = idbridge_e2e::idp::acme_with_domain(true);
    let file = work.path().join("sso.toml");
    std::fs::write(
        &file,
        format!(
            "{acme}\n[[tenants.oidc]]\nname = \"acme-idp\"\nissuer = \"{}\"\nclient_id = \"idbridge\"\nclient_secret_env = \"ACME_IDP_SECRET\"\n\n[[clients]]\nid = \"portal\"\nredirect_uris = [\"{portal_redirect}\"]\nsecret_env = \"PORTAL_SECRET\"\n\n[[clients]]\nid = \"portal-es\"\nredirect_uris = [\"{portal_redirect}\"]\nsecret_env = \"PORTAL_SECRET\"\nid_token_alg = \"ES256\"\n",
            idp.issuer
        ),
    )
    .unwrap();
    work.ok(&["apply", file.to_str().unwrap()]);
    let _daemon = work.serve_at(&format!("127.0.0.1:{idbridge_port}"), Some(idbridge.clone()));
    let http = reqwest::Client::new();

    // --- 1. latency added per login --------------------------------------------------------
    let start_url =
        authorize_url(&idbridge, "/oauth2/authorize", "portal", &portal_redirect, "&login_hint=alice%40acme.example");
    let mut added = Vec::with_capacity(logins);
    let mut parts = [Vec::new(), Vec::new(), Vec::new()];
    // The same three steps as idbridge itself timed them (Server-Timing `idbridge`): what
    // it adds without the loopback connection and HTTP client costs.
    let mut served = Vec::with_capacity(logins);
    let own = |r: &reqwest::Response| -> f64 {
        r.headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| {
                t.split(',').find_map(|p| p.trim().strip_prefix("idbridge;dur=")).and_then(|v| v.parse().ok())
            })
            .unwrap_or(0.0)
    };
    for i in 0..logins + 20 {
        let agent = Agent::new();
        let t = Instant::now();
        let r = agent.http.get(&start_url).send().await.unwrap();
        let authorize = t.elapsed();
        let mut server_ms = own(&r);
        let to_idp = r.headers()["location"].to_str().unwrap().to_owned();
        let page = agent.walk(&to_idp, &idbridge).await;
        let back = agent.idp_login(&page, "alice", &idbridge).await;
        let callback_url = back.location.expect("back to idbridge");
        let t = Instant::now();
        let r = agent.http.get(&callback_url).send().await.unwrap();
        let callback = t.elapsed();
        let timing = r.headers().get("server-timing").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let upstream_ms: f64 = timing
            .split(',')
            .find_map(|p| p.trim().strip_prefix("upstream;dur="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        server_ms += own(&r);
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let code = query_param(&location, "code").unwrap_or_else(|| panic!("no code: {location}"));
        let t = Instant::now();
        let r = http
            .post(format!("{idbridge}/oauth2/token"))
            .basic_auth("portal", Some(PORTAL_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", VERIFIER),
                ("redirect_uri", &portal_redirect),
            ])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        server_ms += own(&r);
        let _ = r.bytes().await;
        let token = t.elapsed();
        if i < 20 {
            continue; // warm-up: first JWKS fetch, discovery, connection pools
        }
        let a = authorize.as_secs_f64() * 1e3;
        let c = callback.as_secs_f64() * 1e3 - upstream_ms;
        let k = token.as_secs_f64() * 1e3;
        parts[0].push(a);
        parts[1].push(c);
        parts[2].push(k);
        added.push(a + c + k);
        served.push(server_ms);
    }
    for p in parts.iter_mut().chain([&mut added, &mut served]) {
        p.sort_by(f64::total_cmp);
    }
    println!("logins measured: {logins} (fresh browser each, IdP's token call excluded)");
    for (name, values) in [
        ("authorize", &parts[0]),
        ("callback (own)", &parts[1]),
        ("token", &parts[2]),
        ("added per login, as the client saw it", &added),
        ("added per login, as idbridge timed it", &served),
    ] {
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms |",
            percentile(values, 0.5),
            percentile(values, 0.95),
            percentile(values, 0.99)
        );
    }

    // The transport floor on this machine: a fresh client's GET /healthz.
    let mut floor = Vec::new();
    for _ in 0..200 {
        let client = reqwest::Client::new();
        let t = Instant::now();
        let _ = client.get(format!("{idbridge}/healthz")).send().await.unwrap().bytes().await;
        floor.push(t.elapsed().as_secs_f64() * 1e3);
    }
    floor.sort_by(f64::total_cmp);
    println!(
        "| floor: fresh connection + GET /healthz | {:.2} ms | {:.2} ms | {:.2} ms |",
        percentile(&floor, 0.5),
        percentile(&floor, 0.95),
        percentile(&floor, 0.99)
    );

    // --- 2. code exchanges per second: idbridge, then oidc-provider --------------------------
    let agent = Agent::new();
    let page = agent.walk(&start_url, &portal_redirect).await;
    let back = agent.idp_login(&page, "alice", &portal_redirect).await;
    assert!(back.location.is_some_and(|l| l.contains("code=")));
    // Codes are minted and exchanged in rounds of ROUND: oidc-provider's in-memory store
    // keeps 1,000 entries, so its codes must be used before that many more exist. Only
    // the exchanges are timed.
    let session_url = authorize_url(&idbridge, "/oauth2/authorize", "portal", &portal_redirect, "");
    let es_url = authorize_url(&idbridge, "/oauth2/authorize", "portal-es", &portal_redirect, "");
    let peer = Agent::new();
    let peer_url = authorize_url(&idp.issuer, "/auth", "bench", &portal_redirect, "");
    let page = peer.walk(&peer_url, &portal_redirect).await;
    let back = peer.idp_login(&page, "alice", &portal_redirect).await;
    assert!(back.location.is_some_and(|l| l.contains("code=")), "the peer gives codes");
    let targets = [
        (
            "idbridge /oauth2/token, RS256 portal",
            &agent,
            session_url.as_str(),
            format!("{idbridge}/oauth2/token"),
            "portal",
        ),
        (
            "idbridge /oauth2/token, ES256 portal",
            &agent,
            es_url.as_str(),
            format!("{idbridge}/oauth2/token"),
            "portal-es",
        ),
        ("oidc-provider /token (peer, RS256)", &peer, peer_url.as_str(), format!("{}/token", idp.issuer), "bench"),
    ];
    for (name, agent, url, token_url, client) in targets {
        let (mut secs, mut failures, mut done) = (0.0, 0, 0);
        while done < n_codes {
            let round = ROUND.min(n_codes - done);
            let codes = mint_codes(agent, url, round).await;
            let (s, f) = exchange_all(&token_url, client, PORTAL_SECRET, &portal_redirect, codes).await;
            secs += s;
            failures += f;
            done += round;
        }
        println!("| {name} | {n_codes} | {CONCURRENCY} | {:.0}/s | {failures} failed |", n_codes as f64 / secs);
    }
    let _ = Duration::ZERO;
}
