//! A real browser session the SSO tests drive step by step (`tests/oidc/browser_session.mjs`):
//! Debian's Chromium through playwright-core, and a portal built on the npm
//! `openid-client` with a back-channel logout endpoint that verifies what it gets.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::idp::{free_port, oidc_dir};

/// Debian's Chromium, when installed. `scripts/test` installs it and sets
/// `IDBRIDGE_REQUIRE_BROWSER`, so a test never skips itself there.
pub fn chromium() -> Option<String> {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if std::path::Path::new(&path).exists() {
        return Some(path);
    }
    assert!(std::env::var("IDBRIDGE_REQUIRE_BROWSER").is_err(), "chromium is required (IDBRIDGE_REQUIRE_BROWSER)");
    eprintln!("no chromium at {path}: browser test skipped");
    None
}

/// Where the browser session's portal listens: chosen before idbridge starts, so that the
/// apply file can register the portal's redirect URI and back-channel endpoint.
#[derive(Debug, Clone)]
pub struct PortalAddress {
    front: u16,
    backchannel: u16,
}

impl PortalAddress {
    pub fn new() -> Self {
        Self { front: free_port(), backchannel: free_port() }
    }

    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/cb", self.front)
    }

    pub fn backchannel_uri(&self) -> String {
        format!("http://127.0.0.1:{}/backchannel", self.backchannel)
    }
}

impl Default for PortalAddress {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Chromium, and the portal at `address` signed up as `client_id` at idbridge's
    /// `issuer` (which must serve discovery already).
    pub async fn launch(chromium: &str, issuer: &str, client_id: &str, secret: &str, address: &PortalAddress) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config: PathBuf = dir.path().join("browser.json");
        std::fs::write(
            &config,
            json!({ "issuer": issuer, "client_id": client_id, "client_secret": secret,
                    "portal_port": address.front, "backchannel_port": address.backchannel })
            .to_string(),
        )
        .expect("write browser config");
        let mut child = Command::new("node")
            .arg(oidc_dir().join("browser_session.mjs"))
            .arg(&config)
            .current_dir(oidc_dir())
            .env("CHROMIUM", chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start node browser_session.mjs");
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        assert!(matches!(ready, Ok(Ok(Some(ref l))) if l == "ready"), "the browser session did not start: {ready:?}");
        Self { child, stdin, lines, _dir: dir }
    }

    /// One command (see `browser_session.mjs`); its answer.
    pub async fn send(&mut self, command: Value) -> Value {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.expect("write to the browser session");
        let answer = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no answer within 60 s to {command}"))
            .expect("read from the browser session")
            .unwrap_or_else(|| panic!("the browser session ended at {command}"));
        let answer: Value = serde_json::from_str(&answer).expect("a JSON answer");
        assert!(answer.get("driver_error").is_none(), "{command}: {answer}");
        answer
    }

    /// The portal starts a sign-in in `tab` of `browser` with extra authorization
    /// parameters; the page the browser stops at.
    pub async fn open(&mut self, browser: &str, tab: &str, params: Value) -> Value {
        self.send(json!({"cmd": "open", "browser": browser, "tab": tab, "params": params})).await
    }

    /// Signs in at the IdP's form shown in `tab`; the page the browser lands on.
    pub async fn idp_login(&mut self, browser: &str, tab: &str, login: &str) -> Value {
        self.send(json!({"cmd": "idp_login", "browser": browser, "tab": tab, "login": login})).await
    }

    pub async fn goto(&mut self, browser: &str, tab: &str, url: &str) -> Value {
        self.send(json!({"cmd": "goto", "browser": browser, "tab": tab, "url": url})).await
    }

    /// The verified logout tokens the portal's back-channel endpoint got (their claims).
    pub async fn logouts(&mut self) -> Vec<Value> {
        self.send(json!({"cmd": "logouts"})).await["logouts"].as_array().cloned().unwrap_or_default()
    }

    /// Waits up to `within` for a logout token for session `sid`.
    pub async fn logout_for(&mut self, sid: &Value, within: Duration) -> Value {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(token) = self.logouts().await.into_iter().find(|t| t["sid"] == *sid) {
                return token;
            }
            assert!(std::time::Instant::now() < deadline, "no logout token for session {sid} within {within:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn backchannel(&mut self, up: bool) {
        assert_eq!(self.send(json!({"cmd": "backchannel", "up": up})).await["up"], up);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
