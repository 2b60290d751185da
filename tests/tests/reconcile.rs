//! SCIM writes reach the portal's individuals through the mapping pipeline and the
//! reconciliation service: create, map, update, suspend, deprovision — audited, with
//! change events.

use idbridge_e2e::{Workdir, workspace_root};
use serde_json::{Value, json};

const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

#[tokio::test]
async fn scim_users_become_individuals_with_mapped_permissions() {
    let work = Workdir::new();
    let token = work.acme_with_scim_token();
    let daemon = work.serve();
    let http = daemon.client();
    let scim = |p: &str| daemon.url(&format!("/scim/v2/acme{p}"));
    let post = |path: String, body: Value| {
        http.post(path)
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
    };

    // A user with no matching group has no access: no individual.
    let steve: Value = post(scim("/Users"), json!({
        "userName": "steve@acme.example", "name": {"givenName": "Steve", "familyName": "Pbx"},
        "emails": [{"value": "steve@acme.example", "type": "work", "primary": true}],
        "preferredLanguage": "de-DE",
        "urn:idbridge:params:scim:schemas:extension:portal:2.0:User": {"timeZone": "Europe/Berlin", "expirationDateTime": "2030-03-31"}
    })).await.unwrap().json().await.unwrap();
    let steve_id = steve["id"].as_str().unwrap().to_owned();
    assert_eq!(work.ok(&["individual", "list", "acme"]), "");

    // Joining pbx-admins and a queue group grants the PBX admin role and the queue.
    let group: Value = post(scim("/Groups"), json!({"displayName": "pbx-admins", "members": [{"value": steve_id}]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let queue: Value =
        post(scim("/Groups"), json!({"displayName": "pbx-queue-101"})).await.unwrap().json().await.unwrap();
    let add = http
        .patch(scim(&format!("/Groups/{}", queue["id"].as_str().unwrap())))
        .bearer_auth(&token)
        .json(&json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": steve_id}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), 204);
    let shown: Value =
        serde_json::from_str(&work.ok(&["individual", "show", "acme", "steve@acme.example", "--json"])).unwrap();
    assert_eq!(shown["role"], "PBX admin");
    assert_eq!(shown["access_profile"], "Full portal");
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["scopes"]["queues"], json!(["101"]));
    assert_eq!(shown["email"], "steve@acme.example");
    assert_eq!(shown["time_zone"], "Europe/Berlin");
    assert_eq!(shown["language"], "de-DE", "the IdP's preferredLanguage is the person's");
    assert_eq!(
        shown["expiration"]["at"], "2030-03-30T23:00:00Z",
        "local midnight in Berlin (CET, DST starts that day at 02:00)"
    );
    assert_eq!(shown["links"][0], json!({"source": "scim", "connection": "scim", "external_id": steve_id}));

    // Deactivated at the source → suspended; active again → active.
    let patch = |body: Value| http.patch(scim(&format!("/Users/{steve_id}"))).bearer_auth(&token).json(&body).send();
    patch(json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}))
        .await
        .unwrap();
    assert!(work.ok(&["individual", "list", "acme"]).contains("suspended"));
    patch(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": true}}]})).await.unwrap();
    assert!(work.ok(&["individual", "list", "acme"]).contains("active"));

    // Leaving the group: no rule grants access any more → the tenant's policy (suspend).
    let leave = http
        .patch(scim(&format!("/Groups/{}", group["id"].as_str().unwrap())))
        .bearer_auth(&token)
        .json(&json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": "members", "value": [{"value": steve_id}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(leave.status(), 204);
    let shown: Value =
        serde_json::from_str(&work.ok(&["individual", "show", "acme", "steve@acme.example", "--json"])).unwrap();
    assert_eq!(shown["status"], "suspended");

    // Deleted at the source → deprovisioned by policy; the audit trail names the SCIM token.
    let gone = http.delete(scim(&format!("/Users/{steve_id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(gone.status(), 204);
    let log = work.ok(&["audit", "acme", "--subject", shown["id"].as_str().unwrap(), "--json"]);
    let actions: Vec<String> =
        log.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(actions.first().map(String::as_str), Some("individual.created"), "{actions:?}");
    assert!(actions.iter().all(|a| a.starts_with("individual.")), "{actions:?}");
    let first: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["actor"]["kind"], "scim_token");
}

#[tokio::test]
async fn the_scheduler_activates_and_expires_on_time() {
    let work = Workdir::new().with_env("IDBRIDGE_LIFECYCLE__TICK_SECONDS", "1");
    let token = work.acme_with_scim_token();
    let daemon = work.serve();
    let http = daemon.client();
    let scim = |p: &str| daemon.url(&format!("/scim/v2/acme{p}"));
    // Local date-times in Asia/Tokyo, a few seconds ahead.
    let tokyo = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
    // The wall clock: the daemon under test reads it too (tests of the binary cannot
    // drive its clock).
    #[allow(clippy::disallowed_methods)]
    let local = |secs: i64| {
        let at =
            jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(secs)).unwrap().to_zoned(tokyo.clone());
        at.datetime().strftime("%Y-%m-%dT%H:%M:%S").to_string()
    };
    let user: Value = http
        .post(scim("/Users"))
        .bearer_auth(&token)
        .json(&json!({
            "userName": "temp@acme.example",
            "urn:idbridge:params:scim:schemas:extension:portal:2.0:User": {
                "timeZone": "Asia/Tokyo", "activationDateTime": local(2), "expirationDateTime": local(5)
            }
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = user["id"].as_str().unwrap().to_owned();
    let joined = http
        .post(scim("/Groups"))
        .bearer_auth(&token)
        .json(&json!({"displayName": "Portal-Admins", "members": [{"value": id}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), 201);
    let status = || {
        let shown: Value =
            serde_json::from_str(&work.ok(&["individual", "show", "acme", "temp@acme.example", "--json"])).unwrap();
        shown["status"].as_str().unwrap().to_owned()
    };
    assert_eq!(status(), "pending");
    let wait_for = |want: &str, limit: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(limit);
        while std::time::Instant::now() < deadline {
            if status() == want {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        false
    };
    assert!(wait_for("active", 6), "activated within a tick of its instant");
    assert!(wait_for("expired", 8), "expired within a tick of its instant");
    let log = work.ok(&["audit", "acme", "--actor", "lifecycle", "--json"]);
    let actions: Vec<String> =
        log.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(actions, ["individual.scheduled", "individual.scheduled"], "each transition exactly once");
}

#[tokio::test]
async fn the_portal_api_serves_effective_permissions_and_a_change_feed() {
    let (portal_token, hash) = idbridge_e2e::new_token();
    let work = Workdir::new().with_env("IDBRIDGE_PORTAL__TOKEN_HASHES", &format!("[\"{hash}\"]"));
    let token = work.acme_with_scim_token();
    let daemon = work.serve();
    let http = daemon.client();
    let user: Value = http
        .post(daemon.url("/scim/v2/acme/Users"))
        .bearer_auth(&token)
        .json(&json!({"userName": "fiona@acme.example", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Finance"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(user["id"].is_string());

    let unauthorized =
        http.get(daemon.url("/portal/v1/tenants/acme/individuals")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401, "a SCIM token is not a portal token");
    let list: Value = http
        .get(daemon.url("/portal/v1/tenants/acme/individuals"))
        .bearer_auth(&portal_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fiona = &list["individuals"][0];
    assert_eq!(fiona["login"], "fiona@acme.example");
    assert_eq!(fiona["role"], "Operations manager");
    assert_eq!(fiona["active_now"], true);
    assert_eq!(fiona["permissions"]["invoices"], "modify");
    assert_eq!(fiona["permissions"]["extensions"], "restrict");
    assert_eq!(fiona["permissions"]["cdrs"], "read");
    assert_eq!(fiona["access_profile_flags"]["payments"], true);
    assert_eq!(fiona["access_profile_flags"]["allow_listen_recording"], false);
    let one: Value = http
        .get(daemon.url("/portal/v1/tenants/acme/individuals/FIONA@acme.example"))
        .bearer_auth(&portal_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], fiona["id"]);

    let feed: Value = http
        .get(daemon.url("/portal/v1/tenants/acme/changes"))
        .bearer_auth(&portal_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(feed["changes"][0]["kind"], "individual.created");
    let next = feed["next"].as_i64().unwrap();
    let empty: Value = http
        .get(daemon.url(&format!("/portal/v1/tenants/acme/changes?after={next}")))
        .bearer_auth(&portal_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(empty["changes"].as_array().unwrap().is_empty());
    assert_eq!(empty["next"], next);
    let missing =
        http.get(daemon.url("/portal/v1/tenants/nobody/individuals")).bearer_auth(&portal_token).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn change_events_reach_the_webhook_signed_in_order_after_retries() {
    use std::sync::{Arc, Mutex};

    use hmac::{Hmac, Mac};
    type Received = Arc<Mutex<Vec<(String, String, String, Vec<u8>)>>>;
    let received: Received = Arc::default();
    let failures_left = Arc::new(Mutex::new(2));
    let app = {
        let received = received.clone();
        let failures_left = failures_left.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let received = received.clone();
                let failures_left = failures_left.clone();
                async move {
                    let mut left = failures_left.lock().unwrap();
                    if *left > 0 {
                        *left -= 1;
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    received.lock().unwrap().push((
                        h("x-idbridge-event"),
                        h("idempotency-key"),
                        h("x-idbridge-signature"),
                        body.to_vec(),
                    ));
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let secret = "a-webhook-secret-of-some-length";
    let work = Workdir::new().with_env("IDBRIDGE_WEBHOOK__URL", &hook).with_env("IDBRIDGE_WEBHOOK__SECRET", secret);
    let token = work.acme_with_scim_token();
    let daemon = work.serve();
    let http = daemon.client();
    let user: Value = http
        .post(daemon.url("/scim/v2/acme/Users"))
        .bearer_auth(&token)
        .json(&json!({"userName": "hook@acme.example", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Finance"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = user["id"].as_str().unwrap().to_owned();
    http.patch(daemon.url(&format!("/scim/v2/acme/Users/{id}")))
        .bearer_auth(&token)
        .json(&json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]}))
        .send()
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while received.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "both events delivered after two refused attempts");
    assert_eq!((got[0].0.as_str(), got[1].0.as_str()), ("individual.created", "individual.suspended"));
    for (_, key, signature, body) in &got {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        assert_eq!(signature, &format!("sha256={}", hex::encode(mac.finalize().into_bytes())));
        let payload: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(&payload["id"], key.as_str(), "the idempotency key is the event id");
        assert_eq!(payload["tenant"], "acme");
    }
    let suspended: Value = serde_json::from_slice(&got[1].3).unwrap();
    assert_eq!(suspended["permission_diff"]["status"], json!(["active", "suspended"]));
}

#[tokio::test]
async fn deprovisioned_individuals_expire_after_the_grace_period_and_are_purged_after_retention() {
    let work = Workdir::new().with_env("IDBRIDGE_LIFECYCLE__TICK_SECONDS", "1");
    let file = work.path().join("acme.toml");
    let example = std::fs::read_to_string(workspace_root().join("config/examples/acme.toml")).unwrap();
    std::fs::write(
        &file,
        example
            .replace("suspend_grace_days = 7", "suspend_grace_days = 0")
            .replace("retention_days = 90", "retention_days = 0"),
    )
    .unwrap();
    work.ok(&["apply", file.to_str().unwrap()]);
    let token = work.ok(&["scim-token", "create", "acme"]).trim().to_owned();
    let daemon = work.serve();
    let http = daemon.client();
    let user: Value = http
        .post(daemon.url("/scim/v2/acme/Users"))
        .bearer_auth(&token)
        .json(&json!({"userName": "leaver@acme.example", "emails": [{"value": "leaver@acme.example"}], "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Finance"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown: Value =
        serde_json::from_str(&work.ok(&["individual", "show", "acme", "leaver@acme.example", "--json"])).unwrap();
    let individual = shown["id"].as_str().unwrap().to_owned();
    assert_eq!(shown["status"], "active");
    let deleted = http
        .delete(daemon.url(&format!("/scim/v2/acme/Users/{}", user["id"].as_str().unwrap())))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = Value::Null;
    while std::time::Instant::now() < deadline {
        last = serde_json::from_str(&work.ok(&["individual", "show", "acme", &individual, "--json"])).unwrap();
        if last["status"] == "deleted" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(last["status"], "deleted", "{last}");
    assert_eq!(last["login"], format!("deleted-{individual}"));
    assert!(last["email"].is_null() && last["links"].as_array().unwrap().is_empty());
    let log = work.ok(&["audit", "acme", "--subject", &individual, "--json"]);
    let actions: Vec<String> =
        log.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        actions,
        ["individual.created", "individual.deprovisioned", "individual.grace_ended", "individual.purged"]
    );
    assert!(log.contains("leaver@acme.example"), "the audit trail keeps what happened");
}
