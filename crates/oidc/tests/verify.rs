//! ID token verification against a key set served over HTTP: Entra multi-tenant issuers
//! and `tid`, `azp`, clock skew on `exp` and `iat`, and the rate limit on key-set
//! refreshes for unknown key ids. (The end-to-end tests cover the same checks against
//! the npm oidc-provider; these cover what that IdP cannot send.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use idbridge_core::sso::IdpConnection;
use idbridge_oidc::jose::{self, Signer};
use idbridge_oidc::upstream::{Endpoints, Upstreams};
use serde_json::{Value, json};

const T1: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const T2: &str = "00000000-0000-0000-0000-000000000002";

struct Jwks {
    base: String,
    fetches: Arc<AtomicUsize>,
    signer: Signer,
    /// The key ids the set publishes now (all for `signer`'s key: a rotation renames it).
    kids: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn serve_jwks() -> Jwks {
    let signer = Signer::from_pkcs8(&jose::generate_pkcs8("ES256").unwrap()).unwrap();
    let public = signer.public_jwk();
    let kids = Arc::new(std::sync::Mutex::new(vec!["k1".to_owned()]));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (counter, published) = (fetches.clone(), kids.clone());
    let app = axum::Router::new().route(
        "/keys",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let keys: Vec<Value> = published
                .lock()
                .unwrap()
                .iter()
                .map(|kid| {
                    let mut jwk = public.clone();
                    jwk["kid"] = json!(kid);
                    jwk["alg"] = json!("ES256");
                    jwk["use"] = json!("sig");
                    jwk
                })
                .collect();
            async move { axum::Json(json!({ "keys": keys })) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Jwks { base, fetches, signer, kids }
}

fn connection(base: &str) -> IdpConnection {
    serde_json::from_value(json!({
        "name": "entra",
        "issuer": format!("{base}/{{tenantid}}/v2.0"),
        "discovery": false,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/keys"),
        "client_id": "app",
        "client_secret_env": "UNUSED",
        "entra_tenant_ids": [T1],
        "claims": { "subject": "oid" },
    }))
    .unwrap()
}

fn claims(base: &str, tid: &str) -> Value {
    let now = idbridge_core::clock::now().as_second();
    json!({
        "iss": format!("{base}/{tid}/v2.0"), "aud": "app", "sub": "pairwise", "oid": "object-1", "tid": tid,
        "iat": now, "exp": now + 600, "nonce": "n1",
    })
}

async fn verify(
    jwks: &Jwks,
    upstreams: &Upstreams,
    claims: &Value,
    kid: &str,
) -> Result<serde_json::Map<String, Value>, String> {
    let connection = connection(&jwks.base);
    let endpoints = Endpoints {
        authorization: format!("{}/authorize", jwks.base),
        token: format!("{}/token", jwks.base),
        jwks: format!("{}/keys", jwks.base),
        userinfo: None,
        iss_parameter: false,
        acr_values: None,
    };
    let token = jwks.signer.jws(Some(kid), Some("JWT"), claims).unwrap();
    upstreams.verify("acme", &connection, &endpoints, &token, "n1").await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn entra_issuers_tids_azp_skew_and_refresh_limits() {
    let jwks = serve_jwks().await;
    let upstreams = Upstreams::new(std::time::Duration::from_secs(5));
    let base = jwks.base.clone();

    let ok = verify(&jwks, &upstreams, &claims(&base, T1), "k1").await.expect("an allowed Entra tenant");
    assert_eq!(ok["oid"], "object-1");
    let read = upstreams.read_claims(&connection(&base), ok).unwrap();
    assert_eq!(read.subject, "object-1", "the configured subject claim (oid) identifies the person");

    let err = verify(&jwks, &upstreams, &claims(&base, T2), "k1").await.unwrap_err();
    assert!(err.contains("not allowed"), "{err}");
    // A token that names an allowed tid but another tenant's issuer.
    let mut mixed = claims(&base, T1);
    mixed["iss"] = json!(format!("{base}/{T2}/v2.0"));
    assert!(verify(&jwks, &upstreams, &mixed, "k1").await.unwrap_err().contains("ssuer"));

    let mut azp = claims(&base, T1);
    azp["azp"] = json!("another-app");
    assert!(verify(&jwks, &upstreams, &azp, "k1").await.unwrap_err().contains("authorized party"));

    // exp within the 60 s skew passes; beyond it fails; iat in the future beyond it fails.
    let now = idbridge_core::clock::now().as_second();
    let mut late = claims(&base, T1);
    late["exp"] = json!(now - 30);
    verify(&jwks, &upstreams, &late, "k1").await.expect("within the clock skew");
    late["exp"] = json!(now - 120);
    assert!(verify(&jwks, &upstreams, &late, "k1").await.unwrap_err().contains("xpired"));
    let mut future = claims(&base, T1);
    future["iat"] = json!(now + 300);
    assert!(verify(&jwks, &upstreams, &future, "k1").await.unwrap_err().contains("future"));

    // Unknown kid: one refresh, then no more within the rate limit.
    let before = jwks.fetches.load(Ordering::SeqCst);
    assert!(verify(&jwks, &upstreams, &claims(&base, T1), "k9").await.unwrap_err().contains("does not publish"));
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), before + 1);
    assert!(verify(&jwks, &upstreams, &claims(&base, T1), "k9").await.unwrap_err().contains("does not publish"));
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), before + 1, "the same unknown kid within 10 s fetches nothing");

    // The IdP rotates twice within 10 s: each new kid is followed (on 7cf90f3 the second
    // login failed with "a key the IdP does not publish").
    for kid in ["k2", "k3"] {
        *jwks.kids.lock().unwrap() = vec![kid.to_owned()];
        verify(&jwks, &upstreams, &claims(&base, T1), kid).await.unwrap_or_else(|e| panic!("{kid}: {e}"));
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), before + 3);
    // Made-up kids cannot make idbridge hammer the IdP: a few fetches per 10 s, then none.
    for n in 0..10 {
        let _ = verify(&jwks, &upstreams, &claims(&base, T1), &format!("bogus{n}")).await;
    }
    let forced = jwks.fetches.load(Ordering::SeqCst) - (before + 3);
    assert!(forced <= idbridge_oidc::upstream::MAX_FORCED_REFRESHES, "{forced} fetches");
}
