//! A fault-injecting HTTP proxy for the connector tests: put between idbridge and a portal,
//! it forwards every request, except that a test can queue faults (each taken by the next
//! request of its method) or take the portal "down" (every request answered 503).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What the proxy does to one request instead of (or after) forwarding it.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with `Retry-After: n` seconds; not forwarded.
    TooManyRequests(u64),
    /// 503; not forwarded.
    Unavailable,
    /// Holds the request this long before forwarding it (past the client's timeout).
    Hang(Duration),
    /// Forwarded — the write happens — and the answer is lost: the client gets a 502.
    LoseAnswer,
    /// Forwarded at once, answered this much later (the client may be gone by then).
    LateAnswer(Duration),
}

/// The portal's token check, by OAuth 2.0 token introspection (RFC 7662) at the
/// authorization server: a request with an active token goes on with the portal's own
/// fixed token; any other is answered 401 with an empty body.
#[derive(Clone)]
pub struct Introspection {
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    pub backend_token: String,
}

#[derive(Default)]
struct Faults {
    queued: VecDeque<(Option<String>, Fault)>,
    down: bool,
    /// Requests seen, by method.
    seen: Vec<String>,
    /// Requests passed on to the portal, by method.
    forwarded: Vec<String>,
    /// Requests refused for their token.
    unauthorized: usize,
    /// Tokens refused from now on although introspection calls them active (revoked).
    revoked: Vec<String>,
    /// Tokens seen, in order of first use.
    tokens: Vec<String>,
}

#[derive(Clone)]
pub struct FaultProxy {
    pub base: String,
    faults: Arc<Mutex<Faults>>,
}

struct Proxy {
    backend: String,
    faults: Arc<Mutex<Faults>>,
    http: reqwest::Client,
    introspection: Option<Introspection>,
}

impl FaultProxy {
    /// Serves on a free loopback port until the runtime ends.
    pub async fn start(backend: &str) -> Self {
        Self::start_checking(backend, None).await
    }

    /// As `start`, checking each request's bearer token by introspection first.
    pub async fn start_checking(backend: &str, introspection: Option<Introspection>) -> Self {
        let faults = Arc::new(Mutex::new(Faults::default()));
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let proxy = Arc::new(Proxy { backend: backend.to_owned(), faults: faults.clone(), http, introspection });
        let app = axum::Router::new().fallback(forward).with_state(proxy);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, faults }
    }

    /// Queues a fault for the next request with this method (`None`: any).
    pub fn inject(&self, method: Option<&str>, fault: Fault) {
        self.faults.lock().unwrap().queued.push_back((method.map(str::to_owned), fault));
    }

    pub fn set_down(&self, down: bool) {
        self.faults.lock().unwrap().down = down;
    }

    /// Faults still waiting for their request.
    pub fn pending(&self) -> usize {
        self.faults.lock().unwrap().queued.len()
    }

    /// How many requests came with this method.
    pub fn seen(&self, method: &str) -> usize {
        self.faults.lock().unwrap().seen.iter().filter(|m| *m == method).count()
    }

    /// Refuses the tokens seen so far, as a portal that revoked them.
    pub fn revoke_tokens(&self) {
        let mut faults = self.faults.lock().unwrap();
        faults.revoked = faults.tokens.clone();
    }

    /// How many different tokens came.
    pub fn tokens_seen(&self) -> usize {
        self.faults.lock().unwrap().tokens.len()
    }

    /// How many requests were refused for their token.
    pub fn unauthorized(&self) -> usize {
        self.faults.lock().unwrap().unauthorized
    }

    /// How many requests with this method reached the portal (faults that answer instead
    /// of the portal not counted).
    pub fn forwarded(&self, method: &str) -> usize {
        self.faults.lock().unwrap().forwarded.iter().filter(|m| *m == method).count()
    }
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_owned();
    let fault = {
        let mut faults = proxy.faults.lock().unwrap();
        faults.seen.push(method.clone());
        if faults.down {
            return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
        }
        let at = faults.queued.iter().position(|(m, _)| m.as_deref().is_none_or(|m| m == method));
        at.and_then(|n| faults.queued.remove(n)).map(|(_, f)| f)
    };
    match &fault {
        Some(Fault::TooManyRequests(seconds)) => {
            return Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header("retry-after", seconds.to_string())
                .body(Body::from("slow down"))
                .unwrap();
        }
        Some(Fault::Unavailable) => return (StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response(),
        Some(Fault::Hang(for_)) => tokio::time::sleep(*for_).await,
        Some(Fault::LoseAnswer | Fault::LateAnswer(_)) | None => {}
    }
    let Ok(body) = axum::body::to_bytes(body, 16 << 20).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the test proxy holds at most 16 MiB").into_response();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if let Some(check) = &proxy.introspection {
        let token = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_owned();
        let answer: serde_json::Value = match proxy
            .http
            .post(&check.url)
            .basic_auth(&check.client_id, Some(&check.client_secret))
            .form(&[("token", token.as_str())])
            .send()
            .await
        {
            Ok(answer) => answer.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        let mut faults = proxy.faults.lock().unwrap();
        if !faults.tokens.contains(&token) {
            faults.tokens.push(token.clone());
        }
        if answer["active"] != true || faults.revoked.contains(&token) {
            faults.unauthorized += 1;
            return StatusCode::UNAUTHORIZED.into_response();
        }
        drop(faults);
    }
    proxy.faults.lock().unwrap().forwarded.push(method.clone());
    let mut outgoing = proxy.http.request(parts.method.clone(), format!("{}{path}", proxy.backend));
    for (name, value) in &parts.headers {
        let replaced = proxy.introspection.is_some() && name == axum::http::header::AUTHORIZATION;
        if name != axum::http::header::HOST && !replaced {
            outgoing = outgoing.header(name, value);
        }
    }
    if let Some(check) = &proxy.introspection {
        outgoing = outgoing.bearer_auth(&check.backend_token);
    }
    let answer = match outgoing.body(body).send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("test proxy: {e}")).into_response(),
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !["transfer-encoding", "connection", "content-length", "keep-alive"].contains(&name.as_str()) {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    if let Some(Fault::LateAnswer(after)) = &fault {
        tokio::time::sleep(*after).await;
    }
    if matches!(fault, Some(Fault::LoseAnswer)) {
        return (StatusCode::BAD_GATEWAY, "the answer was lost on the way back").into_response();
    }
    response.body(Body::from(bytes)).unwrap()
}
