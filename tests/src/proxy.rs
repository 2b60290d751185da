//! An HTTP load balancer for the multi-instance tests: each request goes to the next of
//! several idbridge instances in turn (not each connection: clients keep connections
//! alive), and to the one after when an instance does not accept the connection (killed).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

struct Balancer {
    backends: Vec<String>,
    next: AtomicUsize,
    http: reqwest::Client,
}

/// Serves on a free loopback port until the runtime ends; the base URL to use.
pub async fn round_robin(backends: Vec<String>) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let balancer = Arc::new(Balancer { backends, next: AtomicUsize::new(0), http });
    let app = axum::Router::new().fallback(forward).with_state(balancer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn forward(State(balancer): State<Arc<Balancer>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the test balancer holds at most 64 MiB").into_response();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let start = balancer.next.fetch_add(1, Ordering::Relaxed);
    let mut refused = Vec::new();
    for k in 0..balancer.backends.len() {
        let backend = &balancer.backends[(start + k) % balancer.backends.len()];
        let mut outgoing = balancer.http.request(parts.method.clone(), format!("{backend}{path}"));
        for (name, value) in &parts.headers {
            if name != axum::http::header::HOST {
                outgoing = outgoing.header(name, value);
            }
        }
        match outgoing.body(body.clone()).send().await {
            Ok(answer) => {
                let mut response = Response::builder().status(answer.status());
                for (name, value) in answer.headers() {
                    // Hop-by-hop: the body goes on whole, framed by this server.
                    if !["transfer-encoding", "connection", "content-length", "keep-alive"].contains(&name.as_str()) {
                        response = response.header(name, value);
                    }
                }
                let bytes = answer.bytes().await.unwrap_or_default();
                return response.body(Body::from(bytes)).unwrap();
            }
            // Not accepted (a killed instance): the next one takes it. A request that was
            // sent and then lost is not retried — it may have been done.
            Err(e) if e.is_connect() => refused.push(format!("{backend}: {e}")),
            Err(e) => return (StatusCode::BAD_GATEWAY, format!("{backend}: {e}")).into_response(),
        }
    }
    (StatusCode::BAD_GATEWAY, format!("no instance accepted: {refused:?}")).into_response()
}
