//! The customer's IdP for SSO tests: the npm `oidc-provider` started on loopback by
//! `tests/oidc/idp.mjs` (scripts/test installs it with `npm ci`), and a browserless
//! user agent that walks the login redirects the way a browser does.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

pub fn oidc_dir() -> PathBuf {
    crate::workspace_root().join("tests/oidc")
}

fn ensure_node_modules() {
    let dir = oidc_dir();
    if !dir.join("node_modules/oidc-provider").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .expect("run npm ci in tests/oidc (is Node.js installed?)");
        assert!(status.success(), "npm ci in tests/oidc failed");
    }
}

/// A free loopback port (the IdP's issuer and idbridge's public URL must name their
/// port before the servers start). Chosen below the kernel's ephemeral range (32768 and
/// up on Linux): a port handed out for `127.0.0.1:0` — another test's daemon, an outgoing
/// connection — was seen to take it between this choice and the server's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Tests run as separate processes: spread them by pid, then step within the process.
    let base = (u64::from(std::process::id()) * 7919 % 12_000) as u32;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (base.wrapping_add(n.wrapping_mul(97)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A private RSA JWK with this key id.
pub fn generate_key(kid: &str) -> Value {
    ensure_node_modules();
    let out = node_with_deadline(&["idp.mjs", "--gen-key", kid]);
    assert!(out.status.success(), "key generation failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a JWK")
}

/// Runs a short node program, killed and run again when it hangs: Node 20 was seen to
/// hang in a futex at exit after key generation, which would stall the whole suite.
fn node_with_deadline(args: &[&str]) -> std::process::Output {
    for _ in 0..3 {
        let mut child = Command::new("node")
            .args(args)
            .current_dir(oidc_dir())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("node");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if child.try_wait().expect("wait for node").is_some() {
                return child.wait_with_output().expect("node output");
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    panic!("node {args:?} hung three times");
}

/// An EC P-256 client key: (PKCS#8 PEM for idbridge, public JWK for the IdP).
pub fn generate_client_key(kid: &str) -> (String, Value) {
    ensure_node_modules();
    let out = node_with_deadline(&["idp.mjs", "--gen-pem", kid]);
    assert!(out.status.success(), "key generation failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    (v["pem"].as_str().expect("pem").to_owned(), v["jwk"].clone())
}

/// A running oidc-provider; killed when dropped.
pub struct Idp {
    child: Child,
    pub issuer: String,
    pub port: u16,
    pub config: Value,
    _dir: tempfile::TempDir,
}

impl Idp {
    /// Starts the IdP with `config` (port and issuer are filled in when absent).
    pub fn start(mut config: Value) -> Self {
        ensure_node_modules();
        let port = config["port"].as_u64().map_or_else(free_port, |p| p as u16);
        let issuer = format!("http://127.0.0.1:{port}");
        config["port"] = json!(port);
        config["issuer"] = json!(issuer);
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("idp.json");
        std::fs::write(&file, config.to_string()).expect("write idp config");
        let mut child = Command::new("node")
            .arg(oidc_dir().join("idp.mjs"))
            .arg(&file)
            .current_dir(oidc_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node idp.mjs");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("listening ") => break,
                Some(Ok(_)) => {}
                _ => panic!("the IdP exited before listening"),
            }
        }
        Self { child, issuer, port, config, _dir: dir }
    }

    /// An IdP with one fresh key and idbridge (at `idbridge`) as its client `idbridge`.
    pub fn for_idbridge(idbridge: &str, client_secret: &str, users: Value) -> Self {
        Self::start(json!({
            "keys": [generate_key("k1")],
            "acrValues": ["urn:acme:mfa", "urn:acme:password"],
            "clients": [{
                "client_id": "idbridge",
                "client_secret": client_secret,
                "redirect_uris": [format!("{idbridge}/login/callback")],
            }],
            "users": users,
        }))
    }

    /// Stops and starts again with other keys (same port and issuer): a key rotation.
    pub fn restart_with_keys(mut self, keys: Vec<Value>) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut config = self.config.clone();
        config["keys"] = json!(keys);
        Self::start(config)
    }

    /// Changes a user's claims at the IdP (their groups, say), from the next login on.
    pub async fn set_user(&self, login: &str, claims: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/_test/user", self.issuer))
            .form(&[("login", login), ("claims", &claims.to_string())])
            .send()
            .await
            .expect("user change request");
        assert!(r.status().is_success());
    }

    /// Makes the IdP's token answers carry a tampered ID token (`none` for honest ones).
    pub async fn tamper(&self, mode: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/_test/tamper", self.issuer))
            .form(&[("mode", mode)])
            .send()
            .await
            .expect("tamper request");
        assert!(r.status().is_success());
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser without JavaScript: a cookie jar, redirects followed by hand so every hop
/// can be inspected.
pub struct Agent {
    pub http: reqwest::Client,
}

/// Where a walk through redirects stopped.
#[derive(Debug)]
pub struct Stop {
    pub status: u16,
    pub url: String,
    pub location: Option<String>,
    pub body: String,
}

impl Stop {
    /// What submitting the page's form sends: its hidden fields, then `extra`.
    pub fn form_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut fields: Vec<(String, String)> = self
            .body
            .split("<input type=\"hidden\" ")
            .skip(1)
            .filter_map(|input| {
                let name = input.split("name=\"").nth(1)?.split('"').next()?;
                let value = input.split("value=\"").nth(1)?.split('"').next()?;
                Some((name.to_owned(), value.replace("&amp;", "&")))
            })
            .collect();
        fields.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        fields
    }
}

impl Default for Agent {
    fn default() -> Self {
        Self::new()
    }
}

impl Agent {
    pub fn new() -> Self {
        Self::with_headers(reqwest::header::HeaderMap::new())
    }

    /// A browser behind a reverse proxy that says it forwards for `client`.
    pub fn forwarded_for(client: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", client.parse().expect("an address"));
        Self::with_headers(headers)
    }

    fn with_headers(headers: reqwest::header::HeaderMap) -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .expect("client");
        Self { http }
    }

    /// Follows redirects from `url` until a page that is not a redirect, or a redirect to
    /// a URL starting with `stop_at` (the portal), which is returned unfollowed.
    pub async fn walk(&self, url: &str, stop_at: &str) -> Stop {
        let mut url = url.to_owned();
        for _ in 0..20 {
            let response = self.http.get(&url).send().await.expect("GET");
            let stop = self.read(url.clone(), response).await;
            match &stop.location {
                Some(next) if !next.starts_with(stop_at) => {
                    url = absolute(&url, next);
                }
                _ => return stop,
            }
        }
        panic!("too many redirects from {url}");
    }

    pub async fn read(&self, url: String, response: reqwest::Response) -> Stop {
        let status = response.status().as_u16();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(|l| absolute(&url, l));
        let body = response.text().await.unwrap_or_default();
        Stop { status, url, location, body }
    }

    /// Submits the page's form as it is (its hidden fields; POST to its action) and
    /// follows on, as a person pressing its button does.
    pub async fn submit(&self, page: &Stop, stop_at: &str) -> Stop {
        let unescape = |v: &str| {
            v.replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        };
        let fields: Vec<(String, String)> = page
            .body
            .split("<input type=\"hidden\" ")
            .skip(1)
            .filter_map(|input| {
                let name = input.split("name=\"").nth(1)?.split('"').next()?;
                let value = input.split("value=\"").nth(1)?.split('"').next()?;
                Some((unescape(name), unescape(value)))
            })
            .collect();
        self.post_form(page, &fields, stop_at).await
    }

    /// Signs in at the IdP's login page (`stop` is that page) and follows on.
    pub async fn idp_login(&self, page: &Stop, login: &str, stop_at: &str) -> Stop {
        let fields = [("login".to_owned(), login.to_owned()), ("password".to_owned(), "pw".to_owned())];
        self.post_form(page, &fields, stop_at).await
    }

    /// POSTs `fields` to the action of the page's form and follows on.
    pub async fn post_form(&self, page: &Stop, fields: &[(String, String)], stop_at: &str) -> Stop {
        let action = page
            .body
            .split("action=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no form on {}: {}", page.url, page.body));
        let post = absolute(&page.url, action);
        let response = self.http.post(&post).form(fields).send().await.expect("POST");
        let stop = self.read(post, response).await;
        match &stop.location {
            Some(next) if !next.starts_with(stop_at) => self.walk(next, stop_at).await,
            _ => stop,
        }
    }
}

/// Resolves a Location against the URL it came from.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let origin: String = base.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    if location.starts_with('/') { format!("{origin}{location}") } else { format!("{origin}/{location}") }
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// `config/examples/acme.toml` with `acme.example` as the tenant's verified domain and,
/// with `jit`, just-in-time provisioning on: the start of every SSO test's apply file
/// (each appends its own `[[tenants.oidc]]` and `[[clients]]`).
pub fn acme_with_domain(jit: bool) -> String {
    let acme = std::fs::read_to_string(crate::workspace_root().join("config/examples/acme.toml")).expect("acme.toml");
    let policy = if jit { "[tenants.policy]\njit_provisioning = true\n" } else { "[tenants.policy]\n" };
    acme.replacen("[tenants.policy]\n", &format!("domains = [\"acme.example\"]\n\n{policy}"), 1)
}
