//! A SCIM service provider to push to: the PyPI `scim2-server` (installed into `.venv` by
//! `scripts/test`), on a free loopback port, with a bearer token; and a client of it that
//! reads what idbridge pushed, as the portal holds it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct ScimTarget {
    pub base: String,
    pub token: String,
    child: Child,
    http: reqwest::Client,
}

impl ScimTarget {
    pub async fn start() -> Self {
        let exe = std::env::var("IDBRIDGE_SCIM2_SERVER")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| crate::workspace_root().join(".venv/bin/scim2-server"));
        assert!(exe.exists(), "{} missing: run scripts/test, which installs scim2-server into .venv", exe.display());
        let port = crate::idp::free_port();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let token = format!("target-{}-{nanos}", std::process::id());
        let child = Command::new(&exe)
            .args(["--port", &port.to_string(), "--bearer-token", &token])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scim2-server");
        let this = Self {
            base: format!("http://127.0.0.1:{port}"),
            token,
            child,
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer =
                this.http.get(format!("{}/ServiceProviderConfig", this.base)).bearer_auth(&this.token).send().await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return this;
            }
            assert!(Instant::now() < deadline, "scim2-server did not start on {}", this.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every user the server holds (it has no paging limit below 1,000 per page).
    pub async fn users(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut start = 1;
        loop {
            let page: Value = self
                .http
                .get(format!("{}/Users", self.base))
                .query(&[("startIndex", start.to_string()), ("count", "500".to_owned())])
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let resources = page["Resources"].as_array().cloned().unwrap_or_default();
            let n = resources.len();
            out.extend(resources);
            if n == 0 || out.len() as u64 >= page["totalResults"].as_u64().unwrap_or(0) {
                return out;
            }
            start += n;
        }
    }

    /// The users with this `userName`.
    pub async fn users_named(&self, user_name: &str) -> Vec<Value> {
        self.users().await.into_iter().filter(|u| u["userName"] == user_name).collect()
    }

    /// A user created directly in the portal (not by idbridge).
    pub async fn create_unmanaged(&self, user_name: &str) -> Value {
        let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name,
                          "displayName": "made in the portal", "active": true});
        let answer = self.write(reqwest::Method::POST, "/Users", body).await;
        assert_eq!(answer.status(), 201);
        answer.json().await.unwrap()
    }

    /// Changes a user in the portal (its version moves on).
    pub async fn patch(&self, id: &str, operations: Value) {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations});
        let answer = self.write(reqwest::Method::PATCH, &format!("/Users/{id}"), body).await;
        assert!(answer.status().is_success(), "{}", answer.status());
    }

    async fn write(&self, method: reqwest::Method, path: &str, body: Value) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// Deletes a user behind idbridge's back.
    pub async fn delete(&self, id: &str) {
        let answer =
            self.http.delete(format!("{}/Users/{id}", self.base)).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(answer.status(), 204);
    }
}

impl Drop for ScimTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
