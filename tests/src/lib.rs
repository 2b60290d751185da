//! Harness for end-to-end tests: runs the real `idbridge` binary in a temporary working
//! directory, on a free loopback port, and talks to it over HTTP.

pub mod browser;
pub mod fault_proxy;
pub mod idp;
pub mod pg;
pub mod portal;
pub mod proxy;
pub mod samba;
pub mod scim;
pub mod scim_target;
pub mod slapd;
pub mod smtp;
pub mod yeti;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Path of the `idbridge` binary: `IDBRIDGE_BIN`, or the workspace's debug build, built
/// on first use (cargo does not build another package's binary for `cargo test`).
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(path) = std::env::var("IDBRIDGE_BIN") {
            return PathBuf::from(path);
        }
        let root = workspace_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "idbridge-server", "--bin", "idbridge"])
            .current_dir(&root)
            .status()
            .expect("run cargo build for the idbridge binary");
        assert!(status.success(), "cargo build of idbridge failed");
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
        target.join("debug").join("idbridge")
    })
    .clone()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// PostgreSQL server URL for tests that need one (a database of their own is created).
pub fn postgres_admin_url() -> String {
    std::env::var("IDBRIDGE_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of the test's own on the shared PostgreSQL server (dropped when done);
/// `None` when `IDBRIDGE_TEST_SKIP_POSTGRES=1`.
pub struct SharedPgDatabase {
    pub url: String,
    name: String,
}

impl SharedPgDatabase {
    pub fn create(prefix: &str) -> Option<Self> {
        if std::env::var("IDBRIDGE_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            return None;
        }
        let name = format!("{prefix}_{}", std::process::id());
        psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        psql(&format!("CREATE DATABASE {name}"));
        let admin = postgres_admin_url();
        Some(Self { url: format!("{}/{name}", admin.rsplit_once('/').expect("a database in the URL").0), name })
    }
}

impl Drop for SharedPgDatabase {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn psql(sql: &str) {
    let out = Command::new("psql").args([postgres_admin_url().as_str(), "-qc", sql]).output().expect("psql");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A working directory with its own SQLite database and config.
pub struct Workdir {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Default for Workdir {
    fn default() -> Self {
        Self::new()
    }
}

impl Workdir {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir"), env: Vec::new() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command.args(args).current_dir(self.path()).env_remove("RUST_LOG").env("NO_COLOR", "1");
        for (k, _) in std::env::vars() {
            if k.starts_with("IDBRIDGE_") && k.contains("__") {
                command.env_remove(k);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    /// Applies `config/examples/acme.toml` and returns a new SCIM token of tenant `acme`.
    pub fn acme_with_scim_token(&self) -> String {
        self.ok(&["apply", &workspace_root().join("config/examples/acme.toml").display().to_string()]);
        self.ok(&["scim-token", "create", "acme"]).trim().to_owned()
    }

    /// Runs an admin command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run idbridge")
    }

    /// Runs an admin command that must succeed, returning its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "idbridge {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs an admin command that must fail, returning its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "idbridge {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).expect("utf-8 output")
    }

    /// Starts `idbridge serve` on a free port and waits for `/healthz`.
    pub fn serve(&self) -> Daemon {
        self.serve_at("127.0.0.1:0", None)
    }

    /// Starts `idbridge serve` on a port known in advance, with `server.public_url` naming
    /// it (the OpenID provider's issuer must be the URL clients reach).
    /// A port chosen in advance can be taken by another test's daemon before this one
    /// binds it ("Address already in use"): a daemon that exits before listening is tried
    /// again on another port, twice at most.
    pub fn serve_public(&self) -> Daemon {
        self.serve_public_as("127.0.0.1")
    }

    /// As `serve_public`, with the public URL naming `host` (`localhost`: a name browsers
    /// accept as a WebAuthn relying party, where they refuse an IP address).
    pub fn serve_public_as(&self, host: &str) -> Daemon {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = idp::free_port();
            match self.try_serve_at(&format!("127.0.0.1:{port}"), Some(format!("http://{host}:{port}"))) {
                Ok(daemon) => return daemon,
                Err(status) if attempt < 3 => {
                    eprintln!("idbridge serve on port {port} exited ({status}); another port")
                }
                Err(status) => panic!("idbridge serve exited before listening: {status}"),
            }
        }
    }

    pub fn serve_at(&self, listen: &str, public_url: Option<String>) -> Daemon {
        self.try_serve_at(listen, public_url)
            .unwrap_or_else(|status| panic!("idbridge serve exited before listening: {status}"))
    }

    fn try_serve_at(&self, listen: &str, public_url: Option<String>) -> Result<Daemon, std::process::ExitStatus> {
        let mut command = self.command(&["serve"]);
        command.env("IDBRIDGE_SERVER__LISTEN", listen).stdout(Stdio::piped()).stderr(Stdio::inherit());
        if let Some(url) = public_url {
            command.env("IDBRIDGE_SERVER__PUBLIC_URL", url);
        }
        let mut child = command.spawn().expect("spawn idbridge serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        break url.trim().to_owned();
                    }
                }
                _ => return Err(child.wait().expect("wait")),
            }
        };
        let client = ::reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client");
        let daemon = Daemon { child, base, client };
        daemon.wait_healthy();
        Ok(daemon)
    }
}

/// A running daemon; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub base: String,
    client: reqwest::Client,
}

impl Daemon {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn client(&self) -> &::reqwest::Client {
        &self.client
    }

    /// POSTs a SCIM body to `/scim/v2/{tenant}{path}`; the answer must be a success.
    pub async fn scim_post(&self, token: &str, tenant: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let response = self
            .client
            .post(self.url(&format!("/scim/v2/{tenant}{path}")))
            .bearer_auth(token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .expect("SCIM request");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.expect("SCIM JSON")
    }

    /// GETs `path` with a bearer token; the answer must be a success, in JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        let response = self.client.get(self.url(path)).bearer_auth(token).send().await.expect("GET");
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.expect("JSON")
    }

    /// Waits until no reconciliation is owed (`/readyz` shows an empty intent queue in a
    /// measurement taken after this call: the daemon measures every 2 s).
    pub async fn wait_settled(&self) {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        loop {
            let ready: serde_json::Value =
                self.client.get(self.url("/readyz")).send().await.expect("readyz").json().await.expect("JSON");
            if started.elapsed() > Duration::from_millis(2500) && ready["reconciliation"]["queued"] == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "reconciliation did not settle: {ready}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Creates users `u00@acme.example`… (`width` digits) with one SCIM Bulk request,
    /// returning their ids in order.
    pub async fn scim_bulk_users(&self, token: &str, tenant: &str, count: usize, width: usize) -> Vec<String> {
        let operations: Vec<serde_json::Value> = (0..count)
            .map(|n| {
                serde_json::json!({"method": "POST", "path": "/Users", "bulkId": format!("u{n}"),
                    "data": {"userName": format!("u{n:0width$}@acme.example")}})
            })
            .collect();
        let body = serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": operations});
        let created = self.scim_post(token, tenant, "/Bulk", body).await;
        created["Operations"]
            .as_array()
            .expect("bulk results")
            .iter()
            .map(|o| o["location"].as_str().expect("created").rsplit('/').next().expect("an id").to_owned())
            .collect()
    }

    /// Polls `/healthz` with a bare HTTP/1.0 request: this runs inside async tests, where
    /// no blocking HTTP client or nested runtime may be used.
    fn wait_healthy(&self) {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = self.base.trim_start_matches("http://").to_owned();
        while Instant::now() < deadline {
            if let Ok(mut stream) = std::net::TcpStream::connect(&addr) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut response = String::new();
                if stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").is_ok()
                    && stream.read_to_string(&mut response).is_ok()
                    && response.starts_with("HTTP/1.0 200")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("idbridge did not become healthy at {addr}");
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "idbridge did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resident memory of a process, in KiB (Linux).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// A fresh bearer token and its SHA-256, from `idbridge admin-token create` (used for
/// operator and portal tokens alike).
pub fn new_token() -> (String, String) {
    let issued = Workdir::new().ok(&["admin-token", "create"]);
    let field =
        |name: &str| issued.lines().find_map(|l| l.strip_prefix(name)).expect("admin-token create output").to_owned();
    (field("token: "), field("sha256: "))
}
