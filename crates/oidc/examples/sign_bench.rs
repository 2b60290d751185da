//! How long one ID-token signature takes with each algorithm (ring), single thread:
//! the floor under the token endpoint's throughput. `cargo run --release -p idbridge-oidc
//! --example sign_bench`.
fn main() {
    let claims = serde_json::json!({ "iss": "https://idbridge.example", "sub": "x", "aud": "portal", "exp": 1, "iat": 1,
        "permissions": { "a": "modify", "b": "read" }, "scopes": { "queues": ["101"] } });
    for alg in ["RS256", "ES256"] {
        let signer =
            idbridge_oidc::jose::Signer::from_pkcs8(&idbridge_oidc::jose::generate_pkcs8(alg).unwrap()).unwrap();
        let n = 2000;
        let started = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(signer.jws(Some("k"), None, &claims).unwrap());
        }
        let each = started.elapsed() / n;
        println!("{alg}: {each:?} per signature, {:.0}/s per core", 1.0 / each.as_secs_f64());
    }
}
