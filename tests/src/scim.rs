//! A SCIM client for the tests: a daemon with tenants and a token for each, requests
//! that fail the test on a 500, and the RFC 7644 error shape.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{Daemon, Workdir};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A daemon with tenants and a SCIM token for each — or several daemons on one
/// PostgreSQL database behind a balancer that sends each request to the next.
pub struct Scim {
    _work: Workdir,
    daemons: Vec<Daemon>,
    /// Where clients send requests: the daemon, or the balancer.
    base: String,
    http: reqwest::Client,
    _db: Option<crate::SharedPgDatabase>,
}

pub struct Client<'a> {
    scim: &'a Scim,
    pub tenant: String,
    pub token: String,
}

fn with_tenants(work: &Workdir, tenants: &[&str]) -> Vec<String> {
    let mut tokens = Vec::new();
    for t in tenants {
        work.ok(&["tenant", "create", t, "--name", t]);
        tokens.push(work.ok(&["scim-token", "create", t]).trim().to_owned());
    }
    tokens
}

impl Scim {
    pub fn start(tenants: &[&str]) -> (Self, Vec<String>) {
        let work = Workdir::new().with_env("IDBRIDGE_SERVER__MAX_BODY_BYTES", "65536");
        let tokens = with_tenants(&work, tenants);
        let daemon = work.serve();
        let base = daemon.base.clone();
        let http = daemon.client().clone();
        (Self { _work: work, daemons: vec![daemon], base, http, _db: None }, tokens)
    }

    /// `instances` daemons on a database of their own on the shared PostgreSQL server,
    /// each request to the next; `None` where the tests skip PostgreSQL.
    pub async fn start_instances(tenants: &[&str], instances: usize) -> Option<(Self, Vec<String>)> {
        let db = crate::SharedPgDatabase::create("idbridge_scim_instances")?;
        let work = Workdir::new()
            .with_env("IDBRIDGE_SERVER__MAX_BODY_BYTES", "65536")
            .with_env("IDBRIDGE_DATABASE__URL", &db.url);
        let tokens = with_tenants(&work, tenants);
        let daemons: Vec<Daemon> = (0..instances).map(|_| work.serve()).collect();
        let base = crate::proxy::round_robin(daemons.iter().map(|d| d.base.clone()).collect()).await;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Some((Self { _work: work, daemons, base, http, _db: Some(db) }, tokens))
    }

    pub fn client(&self, tenant: &str, token: &str) -> Client<'_> {
        Client { scim: self, tenant: tenant.to_owned(), token: token.to_owned() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Kills instance `n` (SIGKILL): the balancer sends its share to the others.
    pub fn kill(&mut self, n: usize) {
        let daemon = &mut self.daemons[n];
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("id in response").to_owned()
    }
}

impl Client<'_> {
    pub fn url(&self, path: &str) -> String {
        self.scim.url(&format!("/scim/v2/{}{path}", self.tenant))
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.raw(method, path, body.map(|b| b.to_string().into_bytes()), &[]).await
    }

    pub async fn raw(&self, method: Method, path: &str, body: Option<Vec<u8>>, headers: &[(&str, &str)]) -> Answer {
        let mut req = self.scim.http.request(method, self.url(path)).bearer_auth(&self.token);
        if let Some(body) = body {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                req = req.header("content-type", "application/scim+json");
            }
            req = req.body(body);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            panic!("{status} from {path}: {body}");
        }
        Answer { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, ops: Value) -> Answer {
        self.send(Method::PATCH, path, Some(json!({"schemas": [PATCH], "Operations": ops}))).await
    }
}

pub fn assert_scim_error(answer: &Answer, status: u16, scim_type: Option<&str>) {
    assert_eq!(answer.status.as_u16(), status, "{}", answer.body);
    assert_eq!(answer.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error", "{}", answer.body);
    assert_eq!(answer.body["status"], status.to_string(), "status is a string: {}", answer.body);
    if let Some(t) = scim_type {
        assert_eq!(answer.body["scimType"], t, "{}", answer.body);
    }
    assert_eq!(answer.headers["content-type"], "application/scim+json");
}
