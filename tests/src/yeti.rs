//! A stand-in for Yeti's admin JSON:API, written from yeti-web's own code and specs (the
//! reference copy at yeti-switch/yeti-web 3ec29c9fd7cf752fbf1539da4b6b08b6d6dc17c0, see
//! `../shared/reference/yeti-web/README.md`), since Yeti itself cannot run here. What it
//! follows, and where from:
//! - `POST /api/rest/admin/auth` `{"auth": {"username", "password"}}` → 201 `{"jwt"}`; 401
//!   with a JSON:API error for a wrong password (`app/controllers/api/rest/admin/auth_controller.rb`,
//!   `spec/requests/api/rest/admin/auth_controller_spec.rb`). The JWT carries `exp` after the
//!   configured lifetime (`app/lib/authentication/admin_auth.rb`, `config/yeti_web.yml.distr`
//!   `api.token_lifetime`); an expired or unknown one gets 401 with an empty body.
//! - `api-accesses` (`app/resources/api/rest/admin/api_access_resource.rb`,
//!   `app/models/system/api_access.rb`, `spec/controllers/api/rest/admin/api_accesses_controller_spec.rb`,
//!   `spec/acceptance/rest/admin/api/api_accesses_spec.rb`): attributes `customer-id`, `login`,
//!   `password` (required on create, write-only: never in an answer), `account-ids`,
//!   `allowed-ips` (default `0.0.0.0/0`, `::/0`); `login` unique across the whole system (422
//!   "login - has already been taken"); `paged` paginator (`page[number]`, `page[size]`, at
//!   most 1,000: `config/initializers/jsonapi_resources.rb`); create 201, update 200, delete 204.
//! - `customer-tokens` (`app/resources/api/rest/admin/customer_token_resource.rb`,
//!   `app/forms/customer_token_form.rb`, `spec/requests/api/rest/admin/customer_tokens_spec.rb`):
//!   create only, `customer` and `accounts` as relationships, `allowed-ips` and
//!   `customer-portal-access-profile-id` (default 1) as attributes; 201 with `token` and
//!   `expires-at`, the data's id being the customer's.
//! - The JSON:API media type `application/vnd.api+json` on requests with a body (415 otherwise).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const MEDIA_TYPE: &str = "application/vnd.api+json";

#[derive(Debug, Clone)]
pub struct ApiAccess {
    pub id: u64,
    pub customer_id: i64,
    pub login: String,
    pub password: String,
    pub account_ids: Vec<i64>,
    pub allowed_ips: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct MintedToken {
    pub customer_id: String,
    pub access_profile_id: i64,
    pub account_ids: Vec<String>,
    pub allowed_ips: Vec<String>,
}

#[derive(Default)]
struct Yeti {
    accesses: BTreeMap<u64, ApiAccess>,
    next_id: u64,
    jwts: BTreeMap<String, Instant>,
    sign_ins: usize,
    tokens: Vec<MintedToken>,
}

#[derive(Clone)]
pub struct YetiStandIn {
    pub base: String,
    state: Arc<Mutex<Yeti>>,
    config: Arc<(String, String, Duration)>,
}

impl YetiStandIn {
    /// Serves on a free loopback port; admin `username`/`password`, JWTs living `lifetime`.
    pub async fn start(username: &str, password: &str, lifetime: Duration) -> Self {
        let this = Self {
            base: String::new(),
            state: Arc::new(Mutex::new(Yeti { next_id: 1, ..Default::default() })),
            config: Arc::new((username.to_owned(), password.to_owned(), lifetime)),
        };
        let app = axum::Router::new()
            .route("/api/rest/admin/auth", axum::routing::post(auth))
            .route("/api/rest/admin/api-accesses", axum::routing::get(list).post(create))
            .route(
                "/api/rest/admin/api-accesses/{id}",
                axum::routing::get(show).patch(update).put(update).delete(destroy),
            )
            .route("/api/rest/admin/customer-tokens", axum::routing::post(customer_token))
            .with_state(this.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, ..this }
    }

    pub fn accesses(&self) -> Vec<ApiAccess> {
        self.state.lock().unwrap().accesses.values().cloned().collect()
    }

    /// A login made in Yeti directly, for another customer or this one.
    pub fn add_access(&self, customer_id: i64, login: &str) -> u64 {
        let mut yeti = self.state.lock().unwrap();
        let id = yeti.next_id;
        yeti.next_id += 1;
        let access = ApiAccess {
            id,
            customer_id,
            login: login.into(),
            password: "set-in-yeti".into(),
            account_ids: Vec::new(),
            allowed_ips: default_ips(),
        };
        yeti.accesses.insert(id, access);
        id
    }

    pub fn sign_ins(&self) -> usize {
        self.state.lock().unwrap().sign_ins
    }

    pub fn tokens(&self) -> Vec<MintedToken> {
        self.state.lock().unwrap().tokens.clone()
    }
}

fn default_ips() -> Vec<String> {
    vec!["0.0.0.0/0".into(), "::/0".into()]
}

fn errors(status: StatusCode, detail: &str, pointer: &str) -> Response {
    let body = json!({"errors": [{"title": detail, "detail": detail, "code": "100", "status": status.as_u16().to_string(),
                                  "source": {"pointer": pointer}}]});
    (status, [("content-type", MEDIA_TYPE)], body.to_string()).into_response()
}

fn resource(access: &ApiAccess) -> Value {
    // `fetchable_fields` leaves the password out.
    json!({"id": access.id.to_string(), "type": "api-accesses",
           "links": {"self": format!("/api/rest/admin/api-accesses/{}", access.id)},
           "attributes": {"customer-id": access.customer_id, "login": access.login,
                          "account-ids": access.account_ids, "allowed-ips": access.allowed_ips}})
}

fn ok(status: StatusCode, body: Value) -> Response {
    (status, [("content-type", MEDIA_TYPE)], body.to_string()).into_response()
}

/// The admin JWT check: an unknown or expired token is 401 with an empty body.
fn authorized(yeti: &YetiStandIn, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let state = yeti.state.lock().unwrap();
    match state.jwts.get(token) {
        Some(expires) if Instant::now() < *expires => Ok(()),
        _ => Err(Box::new(StatusCode::UNAUTHORIZED.into_response())),
    }
}

/// An authorized request whose body comes as JSON:API.
fn json_api(yeti: &YetiStandIn, headers: &HeaderMap, body: &Bytes) -> Result<Value, Box<Response>> {
    authorized(yeti, headers)?;
    let media = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !media.starts_with(MEDIA_TYPE) {
        return Err(Box::new(errors(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "All requests that create or update must use the 'application/vnd.api+json' Content-Type.",
            "/",
        )));
    }
    serde_json::from_slice(body).map_err(|_| Box::new(errors(StatusCode::BAD_REQUEST, "invalid JSON", "/")))
}

async fn auth(State(yeti): State<YetiStandIn>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (username, password, lifetime) = &*yeti.config;
    if body.pointer("/auth/username").and_then(Value::as_str) != Some(username)
        || body.pointer("/auth/password").and_then(Value::as_str) != Some(password)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errors": [{"title": "Authentication failed", "status": "401"}]})),
        )
            .into_response();
    }
    let mut state = yeti.state.lock().unwrap();
    state.sign_ins += 1;
    let jwt = format!("eyJhbGciOiJIUzI1NiJ9.stand-in-{}-{}.sig", state.sign_ins, state.jwts.len());
    state.jwts.insert(jwt.clone(), Instant::now() + *lifetime);
    (StatusCode::CREATED, Json(json!({"jwt": jwt}))).into_response()
}

use axum::Json;

async fn list(
    State(yeti): State<YetiStandIn>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(refused) = authorized(&yeti, &headers) {
        return *refused;
    }
    let number: usize = q.get("page[number]").and_then(|n| n.parse().ok()).unwrap_or(1).max(1);
    let size: usize = q.get("page[size]").and_then(|n| n.parse().ok()).unwrap_or(50).clamp(1, 1000);
    let state = yeti.state.lock().unwrap();
    let data: Vec<Value> = state.accesses.values().skip((number - 1) * size).take(size).map(resource).collect();
    ok(StatusCode::OK, json!({"data": data, "meta": {"total-count": state.accesses.len()}}))
}

async fn show(State(yeti): State<YetiStandIn>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    if let Err(refused) = authorized(&yeti, &headers) {
        return *refused;
    }
    match yeti.state.lock().unwrap().accesses.get(&id) {
        Some(access) => ok(StatusCode::OK, json!({"data": resource(access)})),
        None => errors(StatusCode::NOT_FOUND, &format!("The record identified by {id} could not be found."), "/"),
    }
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    value.and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
}

fn integers(value: Option<&Value>) -> Option<Vec<i64>> {
    value.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_i64).collect())
}

async fn create(State(yeti): State<YetiStandIn>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match json_api(&yeti, &headers, &body) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let attributes = body.pointer("/data/attributes").cloned().unwrap_or(Value::Null);
    let customer_id = match attributes.get("customer-id") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let Some(customer_id) = customer_id else {
        return errors(StatusCode::UNPROCESSABLE_ENTITY, "customer - can't be blank", "/data/attributes/customer");
    };
    let Some(login) = attributes.get("login").and_then(Value::as_str).filter(|l| !l.is_empty()) else {
        return errors(StatusCode::UNPROCESSABLE_ENTITY, "login - can't be blank", "/data/attributes/login");
    };
    let Some(password) = attributes.get("password").and_then(Value::as_str).filter(|p| !p.is_empty()) else {
        return errors(StatusCode::UNPROCESSABLE_ENTITY, "password - can't be blank", "/data/attributes/password");
    };
    let mut state = yeti.state.lock().unwrap();
    if state.accesses.values().any(|a| a.login == login) {
        return errors(StatusCode::UNPROCESSABLE_ENTITY, "login - has already been taken", "/data/attributes/login");
    }
    let id = state.next_id;
    state.next_id += 1;
    let access = ApiAccess {
        id,
        customer_id,
        login: login.to_owned(),
        password: password.to_owned(),
        account_ids: integers(attributes.get("account-ids")).unwrap_or_default(),
        allowed_ips: strings(attributes.get("allowed-ips")).unwrap_or_else(default_ips),
    };
    let answer = json!({"data": resource(&access)});
    state.accesses.insert(id, access);
    ok(StatusCode::CREATED, answer)
}

async fn update(State(yeti): State<YetiStandIn>, headers: HeaderMap, Path(id): Path<u64>, body: Bytes) -> Response {
    let body = match json_api(&yeti, &headers, &body) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let attributes = body.pointer("/data/attributes").cloned().unwrap_or(Value::Null);
    let mut state = yeti.state.lock().unwrap();
    if let Some(login) = attributes.get("login").and_then(Value::as_str)
        && state.accesses.values().any(|a| a.login == login && a.id != id)
    {
        return errors(StatusCode::UNPROCESSABLE_ENTITY, "login - has already been taken", "/data/attributes/login");
    }
    let Some(access) = state.accesses.get_mut(&id) else {
        return errors(StatusCode::NOT_FOUND, &format!("The record identified by {id} could not be found."), "/");
    };
    if let Some(login) = attributes.get("login").and_then(Value::as_str) {
        access.login = login.to_owned();
    }
    if let Some(customer) = attributes.get("customer-id").and_then(Value::as_i64) {
        access.customer_id = customer;
    }
    if let Some(accounts) = integers(attributes.get("account-ids")) {
        access.account_ids = accounts;
    }
    if let Some(ips) = strings(attributes.get("allowed-ips")) {
        access.allowed_ips = ips;
    }
    if let Some(password) = attributes.get("password").and_then(Value::as_str) {
        access.password = password.to_owned();
    }
    ok(StatusCode::OK, json!({"data": resource(access)}))
}

async fn destroy(State(yeti): State<YetiStandIn>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    if let Err(refused) = authorized(&yeti, &headers) {
        return *refused;
    }
    match yeti.state.lock().unwrap().accesses.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => errors(StatusCode::NOT_FOUND, &format!("The record identified by {id} could not be found."), "/"),
    }
}

async fn customer_token(State(yeti): State<YetiStandIn>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match json_api(&yeti, &headers, &body) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let Some(customer_id) = body.pointer("/data/relationships/customer/data/id").and_then(Value::as_str) else {
        return errors(StatusCode::UNPROCESSABLE_ENTITY, "customer - can't be blank", "/data/relationships/customer");
    };
    let accounts = body
        .pointer("/data/relationships/accounts/data")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_owned)).collect())
        .unwrap_or_default();
    let attributes = body.pointer("/data/attributes").cloned().unwrap_or(Value::Null);
    let minted = MintedToken {
        customer_id: customer_id.to_owned(),
        access_profile_id: attributes.get("customer-portal-access-profile-id").and_then(Value::as_i64).unwrap_or(1),
        account_ids: accounts,
        allowed_ips: strings(attributes.get("allowed-ips")).unwrap_or_else(default_ips),
    };
    let mut state = yeti.state.lock().unwrap();
    state.tokens.push(minted);
    let token = format!("customer-token-{}", state.tokens.len());
    ok(
        StatusCode::CREATED,
        json!({"data": {"id": customer_id, "type": "customer-tokens",
                        "attributes": {"token": token, "expires-at": "2026-12-31T23:59:59.000Z"}}}),
    )
}
