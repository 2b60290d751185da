//! SCIM 2.0 against the real daemon: the independent compliance checker, the request
//! sequences Entra ID and Okta document, and tenant isolation. Protocol details and
//! malformed input are in `scim_protocol.rs`.

use idbridge_e2e::scim::{ENTERPRISE, GROUP, Scim, USER, assert_scim_error};
use idbridge_e2e::{Workdir, workspace_root};
use reqwest::Method;
use serde_json::json;
#[tokio::test]
async fn scim2_tester_reports_no_failures() {
    let (scim, tokens) = Scim::start(&["compliance"]);
    compliance_run(&scim, "compliance", &tokens[0]);
}

#[tokio::test]
async fn entra_id_provisioning_sequence() {
    let (scim, tokens) = Scim::start(&["contoso"]);
    entra_id_sequence(&scim, "contoso", &tokens[0]).await;
}

#[tokio::test]
async fn okta_provisioning_sequence() {
    let (scim, tokens) = Scim::start(&["okta-co"]);
    okta_sequence(&scim, "okta-co", &tokens[0]).await;
}

/// Three instances on one PostgreSQL database, each request to the next: the compliance
/// run and the Entra ID and Okta sequences pass as against one, a write at one instance
/// read back at another; then one instance is killed and they pass again on the two left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_database_pass_the_compliance_run_and_the_replays() {
    let tenants = ["compliance", "contoso", "okta-co", "contoso-2", "okta-co-2"];
    let Some((mut scim, tokens)) = Scim::start_instances(&tenants, 3).await else { return };
    compliance_run(&scim, "compliance", &tokens[0]);
    entra_id_sequence(&scim, "contoso", &tokens[1]).await;
    okta_sequence(&scim, "okta-co", &tokens[2]).await;
    scim.kill(1);
    entra_id_sequence(&scim, "contoso-2", &tokens[3]).await;
    okta_sequence(&scim, "okta-co-2", &tokens[4]).await;
}

/// The independent checker (PyPI `scim2-tester`) against tenant `tenant`.
fn compliance_run(scim: &Scim, tenant: &str, token: &str) {
    let cli = std::env::var("IDBRIDGE_TEST_SCIM2")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join(".venv/bin/scim2"));
    assert!(cli.exists(), "{} missing: run scripts/test, which installs scim2-tester into .venv", cli.display());
    let out = std::process::Command::new(cli)
        .args(["-u", &scim.url(&format!("/scim/v2/{tenant}")), "test"])
        .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {token}"))
        .output()
        .expect("run scim2 test");
    let report = String::from_utf8_lossy(&out.stdout);
    let successes = report.lines().filter(|l| l.starts_with("SUCCESS")).count();
    let failures: Vec<&str> = report.lines().filter(|l| l.starts_with("ERROR") || l.starts_with("CRITICAL")).collect();
    assert!(
        out.status.success() && failures.is_empty(),
        "scim2-tester failures: {failures:?}\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(successes > 100, "too few checks ran ({successes}):\n{report}");
}

/// What Entra ID's provisioning service sends, in the order Microsoft documents it,
/// against tenant `tenant`.
async fn entra_id_sequence(scim: &Scim, tenant: &str, token: &str) {
    let entra = scim.client(tenant, token);

    // "Test connection": a filter on a user that does not exist.
    let probe = entra.get("/Users?filter=userName+eq+%22non-existent+user%22").await;
    assert_eq!(probe.status, 200);
    assert_eq!(probe.body["totalResults"], 0);
    assert_eq!(probe.headers["content-type"], "application/scim+json");

    let created = entra.post("/Users", json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com",
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@contoso.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        ENTERPRISE: {"department": "Sales", "employeeNumber": "701984"}
    })).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let user = created.id();
    assert_eq!(created.headers["etag"], "W/\"1\"");
    assert!(created.headers["location"].to_str().unwrap().ends_with(&format!("/scim/v2/{tenant}/Users/{user}")));
    assert_eq!(created.body["meta"]["version"], "W/\"1\"");

    let by_name =
        entra.get("/Users?filter=userName+eq+%22Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1%40contoso.com%22").await;
    assert_eq!(by_name.body["totalResults"], 1);
    let by_ext = entra.get("/Users?filter=externalId+eq+%220a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef%22").await;
    assert_eq!(by_ext.body["Resources"][0]["id"], user.as_str());

    // Update: operation names in any case, booleans as strings, a filtered path that
    // does not exist yet, the manager as a bare id.
    let updated = entra.patch(&format!("/Users/{user}"), json!([
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
        {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+4915112345678"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
        {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "2819c223-7f76-453a-919d-ab1234567891"}
    ])).await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["emails"][0]["value"], "updatedEmail@microsoft.com");
    assert_eq!(updated.body["phoneNumbers"], json!([{"type": "mobile", "value": "+4915112345678"}]));
    assert_eq!(updated.body["name"]["familyName"], "updatedFamilyName");
    assert_eq!(updated.body[ENTERPRISE]["manager"]["value"], "2819c223-7f76-453a-919d-ab1234567891");

    // Without aadOptscim062020 Entra sends a path-less replace with "False".
    let disabled =
        entra.patch(&format!("/Users/{user}"), json!([{"op": "Replace", "value": {"active": "False"}}])).await;
    assert_eq!(disabled.status, 200);
    assert_eq!(disabled.body["active"], false);
    // Deactivated users stay readable, by id and by filter.
    assert_eq!(entra.get(&format!("/Users/{user}")).await.body["active"], false);
    assert_eq!(entra.get("/Users?filter=active+eq+false").await.body["totalResults"], 1);

    let group = entra.post("/Groups", json!({
        "schemas": [GROUP], "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159", "displayName": "displayName", "meta": {"resourceType": "Group"}
    })).await;
    assert_eq!(group.status, 201, "{}", group.body);
    let gid = group.id();
    let found = entra.get("/Groups?excludedAttributes=members&filter=displayName+eq+%22displayName%22").await;
    assert_eq!(found.body["totalResults"], 1);
    assert!(found.body["Resources"][0].get("members").is_none());

    let add = entra
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": user}]}]),
        )
        .await;
    assert_eq!(add.status, 204);
    let again = entra
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": user}]}]),
        )
        .await;
    assert_eq!(again.status, 204, "member add is idempotent");
    let read = entra.get(&format!("/Groups/{gid}")).await;
    assert_eq!(read.body["members"].as_array().unwrap().len(), 1);
    assert_eq!(entra.get(&format!("/Users/{user}")).await.body["groups"][0]["value"], gid.as_str());
    assert_eq!(entra.get(&format!("/Groups?filter=members.value+eq+%22{user}%22")).await.body["totalResults"], 1);

    let rename = entra.patch(&format!("/Groups/{gid}"), json!([{"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}])).await;
    assert_eq!(rename.status, 204);
    let remove = entra
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": user}]}]),
        )
        .await;
    assert_eq!(remove.status, 204);
    let read = entra.get(&format!("/Groups/{gid}")).await;
    assert_eq!(read.body["displayName"], "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName");
    assert!(read.body.get("members").is_none_or(|m| m.as_array().unwrap().is_empty()));

    assert_eq!(entra.send(Method::DELETE, &format!("/Users/{user}"), None).await.status, 204);
    assert_scim_error(&entra.get(&format!("/Users/{user}")).await, 404, None);
    assert_eq!(entra.send(Method::DELETE, &format!("/Groups/{gid}"), None).await.status, 204);
}

/// What Okta's SCIM 2.0 app sends, in the order Okta documents it, against `tenant`.
async fn okta_sequence(scim: &Scim, tenant: &str, token: &str) {
    let okta = scim.client(tenant, token);
    let none = okta.get("/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100").await;
    assert_eq!(none.body["totalResults"], 0);
    assert_eq!(none.body["startIndex"], 1);

    let user_body = json!({
        "schemas": [USER], "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [], "password": "1mz050nq", "active": true
    });
    let created = okta.post("/Users", user_body.clone()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(created.body.get("password").is_none(), "passwords are never returned");
    let id = created.id();
    assert_eq!(okta.get(&format!("/Users/{id}")).await.body["userName"], "test.user@okta.local");

    // Okta's PUT without `active` does not deactivate.
    let mut put = user_body.clone();
    put.as_object_mut().unwrap().remove("active");
    put["id"] = json!(id);
    put["name"]["familyName"] = json!("Renamed");
    let replaced = okta.send(Method::PUT, &format!("/Users/{id}"), Some(put)).await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.body["active"], true);
    assert_eq!(replaced.body["name"]["familyName"], "Renamed");

    let deactivated = okta.patch(&format!("/Users/{id}"), json!([{"op": "replace", "value": {"active": false}}])).await;
    assert_eq!(deactivated.body["active"], false);

    let group = okta.post("/Groups", json!({"schemas": [GROUP], "displayName": "Test SCIMv2", "members": []})).await;
    assert_eq!(group.status, 201);
    let gid = group.id();
    let renamed = okta
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "replace", "value": {"id": gid, "displayName": "Test SCIMv2 renamed"}}]),
        )
        .await;
    assert_eq!(renamed.status, 204);
    let added = okta
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "add", "path": "members", "value": [{"value": id, "display": "test.user@okta.local"}]}]),
        )
        .await;
    assert_eq!(added.status, 204);
    let with_attrs = okta
        .patch(
            &format!("/Groups/{gid}?attributes=displayName"),
            json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
        )
        .await;
    assert_eq!(with_attrs.status, 200, "attributes asked: the resource comes back");
    assert_eq!(with_attrs.body["displayName"], "Test SCIMv2 renamed");
    assert!(with_attrs.body.get("members").is_none());
    let removed = okta
        .patch(&format!("/Groups/{gid}"), json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]))
        .await;
    assert_eq!(removed.status, 204);
    assert!(
        okta.get(&format!("/Groups/{gid}")).await.body.get("members").is_none_or(|m| m.as_array().unwrap().is_empty())
    );
    assert_eq!(okta.send(Method::DELETE, &format!("/Groups/{gid}"), None).await.status, 204);
}

#[tokio::test]
async fn one_tenant_never_reaches_another() {
    let (scim, tokens) = Scim::start(&["alpha", "beta"]);
    let a = scim.client("alpha", &tokens[0]);
    let b = scim.client("beta", &tokens[1]);
    let b_user = b.post("/Users", json!({"userName": "secret@beta.example"})).await.id();
    let b_group = b.post("/Groups", json!({"displayName": "beta-admins", "members": [{"value": b_user}]})).await.id();
    for _ in 0..3 {
        b.post("/Users", json!({"userName": format!("u{}@beta.example", uuid_like())})).await;
    }
    let a_group = a.post("/Groups", json!({"displayName": "alpha-group"})).await.id();

    // Reads, filters and searches.
    assert_scim_error(&a.get(&format!("/Users/{b_user}")).await, 404, None);
    assert_scim_error(&a.get(&format!("/Groups/{b_group}")).await, 404, None);
    assert_eq!(a.get(&format!("/Users?filter=id+eq+%22{b_user}%22")).await.body["totalResults"], 0);
    assert_eq!(a.get("/Users?filter=userName+eq+%22secret%40beta.example%22").await.body["totalResults"], 0);
    assert_eq!(a.get(&format!("/Groups?filter=members.value+eq+%22{b_user}%22")).await.body["totalResults"], 0);
    let search = a.post("/.search", json!({"filter": "userName sw \"secret\""})).await;
    assert_eq!(search.body["totalResults"], 0);
    assert_eq!(a.get("/Users").await.body["totalResults"], 0);

    // Writes.
    assert_scim_error(
        &a.patch(&format!("/Users/{b_user}"), json!([{"op": "replace", "path": "active", "value": false}])).await,
        404,
        None,
    );
    assert_scim_error(
        &a.send(Method::PUT, &format!("/Users/{b_user}"), Some(json!({"userName": "x"}))).await,
        404,
        None,
    );
    assert_scim_error(&a.send(Method::DELETE, &format!("/Groups/{b_group}"), None).await, 404, None);
    let adopt = a
        .patch(&format!("/Groups/{a_group}"), json!([{"op": "add", "path": "members", "value": [{"value": b_user}]}]))
        .await;
    assert_scim_error(&adopt, 400, Some("invalidValue"));
    let bulk = a.post("/Bulk", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
        {"method": "DELETE", "path": format!("/Users/{b_user}")},
        {"method": "PATCH", "path": format!("/Groups/{b_group}"), "data": {"Operations": [{"op": "remove", "path": "members"}]}}
    ]})).await;
    assert_eq!(bulk.status, 200);
    assert_eq!(bulk.body["Operations"][0]["status"], "404");
    assert_eq!(bulk.body["Operations"][1]["status"], "404");

    // Cursors and ETags obtained in another tenant are worthless here.
    let page = b.get("/Users?cursor=&count=1").await;
    let cursor = page.body["nextCursor"].as_str().expect("beta has more than one user").to_owned();
    assert_scim_error(&a.get(&format!("/Users?cursor={cursor}&count=1")).await, 400, Some("invalidCursor"));
    let etag = b.get(&format!("/Users/{b_user}")).await.headers["etag"].to_str().unwrap().to_owned();
    let guarded = a.raw(Method::DELETE, &format!("/Users/{b_user}"), None, &[("if-match", &etag)]).await;
    assert_scim_error(&guarded, 404, None);

    // Tokens: another tenant's, none, garbage — all the same 401 that reveals nothing.
    let wrong_token = scim.client("alpha", &tokens[1]);
    let unknown_tenant = scim.client("nobody", &tokens[0]);
    for (client, path) in [
        (&wrong_token, "/Users".to_owned()),
        (&unknown_tenant, "/Users".to_owned()),
        (&wrong_token, format!("/Users/{b_user}")),
    ] {
        let answer = client.get(&path).await;
        assert_scim_error(&answer, 401, None);
        assert_eq!(answer.body["detail"], "a valid bearer token for this tenant is required");
    }
    let no_token = scim.http().get(a.url("/Users")).send().await.unwrap();
    assert_eq!(no_token.status(), 401);

    // Everything of beta is still there.
    assert_eq!(b.get(&format!("/Groups/{b_group}")).await.body["members"].as_array().unwrap().len(), 1);
    assert_eq!(b.get(&format!("/Users/{b_user}")).await.status, 200);
}

fn uuid_like() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

#[tokio::test]
async fn revoked_tokens_and_disabled_tenants_are_refused() {
    let work = Workdir::new();
    work.ok(&["tenant", "create", "gamma", "--name", "Gamma"]);
    let token = work.ok(&["scim-token", "create", "gamma"]).trim().to_owned();
    let id = token.split('_').nth(2).unwrap().to_owned();
    let daemon = work.serve();
    let url = daemon.url("/scim/v2/gamma/Users");
    assert_eq!(daemon.client().get(&url).bearer_auth(&token).send().await.unwrap().status(), 200);
    let token2 = work.ok(&["scim-token", "create", "gamma"]).trim().to_owned();
    assert_eq!(daemon.client().get(&url).bearer_auth(&token2).send().await.unwrap().status(), 200);
    // Changes made by the CLI (another process) take effect within scim.auth_cache_seconds.
    let settle = std::time::Duration::from_millis(2100);
    work.ok(&["scim-token", "revoke", "gamma", &id]);
    tokio::time::sleep(settle).await;
    assert_eq!(daemon.client().get(&url).bearer_auth(&token).send().await.unwrap().status(), 401);
    work.ok(&["tenant", "disable", "gamma"]);
    tokio::time::sleep(settle).await;
    assert_eq!(daemon.client().get(&url).bearer_auth(&token2).send().await.unwrap().status(), 401);
    let log = work.ok(&["audit", "gamma", "--json"]);
    assert!(!log.contains(&token) && !log.contains(&token2), "no secret in the audit log");
}
