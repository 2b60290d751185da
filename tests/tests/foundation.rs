//! The foundation as a new operator meets it: the binary, its config, the admin CLI and
//! the admin API, against SQLite (and PostgreSQL where noted).

use idbridge_e2e::{Workdir, workspace_root};
use serde_json::{Value, json};

fn example() -> String {
    workspace_root().join("config/examples/acme.toml").display().to_string()
}

#[tokio::test]
async fn serve_with_no_config_uses_sqlite_in_the_working_directory_and_stops_on_sigterm() {
    let work = Workdir::new();
    let daemon = work.serve();
    let client = daemon.client();
    let ready = client.get(daemon.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ready");
    let metrics = client.get(daemon.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("idbridge_http_requests_total"), "{metrics}");
    assert!(work.path().join("idbridge.db").exists(), "SQLite file in the working directory");
    let unknown = client.get(daemon.url("/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"]["code"], "not_found");
    let status = daemon.terminate();
    assert!(status.success(), "graceful exit, got {status}");
}

#[test]
fn apply_the_example_then_show_it_and_apply_again_changes_nothing() {
    let work = Workdir::new();
    let first = work.ok(&["apply", &example()]);
    assert!(first.contains("+ tenant acme"), "{first}");
    assert!(first.contains("+ role \"PBX admin\""), "{first}");
    let shown: Value = serde_json::from_str(&work.ok(&["tenant", "show", "acme", "--json"])).unwrap();
    let roles: Vec<&str> = shown["roles"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(roles, ["Customer admin", "Operations manager", "PBX admin"]);
    let pbx = &shown["roles"][2]["permissions"];
    assert_eq!(pbx["extensions"], "modify");
    assert_eq!(pbx["invoices"], "restrict");
    assert_eq!(pbx["cdrs"], "read");
    assert_eq!(shown["roles"][0]["permissions"]["customer_individuals"], "modify");
    let profiles: Vec<&str> =
        shown["access_profiles"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(profiles, ["Billing only", "Full portal"]);
    assert_eq!(shown["access_profiles"][0]["effective_flags"]["invoices"], true);
    assert_eq!(shown["access_profiles"][0]["effective_flags"]["outgoing_cdrs"], false);
    assert_eq!(shown["default_time_zone"], "Europe/Berlin");

    assert_eq!(work.ok(&["apply", &example()]).trim(), "no changes");

    // The operator log holds one entry per created role and profile.
    let operator_log = work.ok(&["audit", "--operator", "--json"]);
    assert_eq!(operator_log.lines().count(), 5, "{operator_log}");
    let line: Value = serde_json::from_str(operator_log.lines().next().unwrap()).unwrap();
    assert_eq!(line["actor"]["kind"], "operator");
    assert_eq!(line["action"], "role.created");
}

#[test]
fn tenants_and_scim_tokens_from_the_cli() {
    let work = Workdir::new();
    work.ok(&["tenant", "create", "abc-telecom", "--name", "ABC Telecom", "--time-zone", "America/New_York"]);
    let token = work.ok(&["scim-token", "create", "abc-telecom", "--name", "entra"]);
    let token = token.trim();
    assert!(token.starts_with("idb_scim_"), "only the token on stdout: {token:?}");
    let listed = work.ok(&["scim-token", "list", "abc-telecom", "--json"]);
    assert!(!listed.contains(token) && !listed.contains(&token[22..]), "secrets are never listed");
    let tokens: Value = serde_json::from_str(&listed).unwrap();
    let id = tokens[0]["id"].as_str().unwrap().to_owned();
    assert!(tokens[0].get("hash").is_none());
    work.ok(&["scim-token", "revoke", "abc-telecom", &id]);
    let err = work.fails(&["scim-token", "revoke", "abc-telecom", &id]);
    assert!(err.contains("already revoked"), "{err}");
    work.ok(&["tenant", "disable", "abc-telecom"]);
    let list = work.ok(&["tenant", "list"]);
    assert!(list.contains("abc-telecom") && list.contains("disabled"), "{list}");
    let log = work.ok(&["audit", "abc-telecom", "--json"]);
    let actions: Vec<String> =
        log.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(actions, ["tenant.created", "scim_token.created", "scim_token.revoked", "tenant.updated"]);
    assert!(!log.contains(token), "the audit log never holds a secret");
    let filtered = work.ok(&["audit", "abc-telecom", "--subject", &id]);
    assert_eq!(filtered.lines().count(), 2, "{filtered}");
    assert_eq!(work.ok(&["individual", "list", "abc-telecom"]), "");
}

#[test]
fn bad_input_gets_one_clear_line_and_writes_nothing() {
    let work = Workdir::new();
    let err = work.fails(&["tenant", "create", "Bad_Slug", "--name", "x"]);
    // Log lines (a slow statement on a loaded machine is logged as a warning) are not
    // the error: that is one line.
    let message: Vec<&str> = err.lines().filter(|l| !l.starts_with("20") || !l.contains(" WARN ")).collect();
    assert!(err.contains("\"Bad_Slug\"") && message.len() == 1, "{err}");
    work.ok(&["tenant", "create", "acme", "--name", "ACME"]);
    let err = work.fails(&["tenant", "create", "acme", "--name", "again"]);
    assert!(err.contains("tenant \"acme\" already exists"), "{err}");
    let err = work.fails(&["tenant", "create", "zone", "--name", "Z", "--time-zone", "Europe/Atlantis"]);
    assert!(err.contains("Europe/Atlantis"), "{err}");

    // An apply file with an unknown role changes nothing, not even its valid parts.
    std::fs::write(
        work.path().join("bad.toml"),
        "[[roles]]\nname = \"Helper\"\ndefault = \"read\"\n\n[[tenants]]\nslug = \"beta\"\nname = \"Beta\"\nallowed_roles = [\"Wizard\"]\n",
    )
    .unwrap();
    let err = work.fails(&["apply", "bad.toml"]);
    assert!(err.contains("\"Wizard\"") && err.contains("bad.toml"), "{err}");
    std::fs::write(
        work.path().join("section.toml"),
        "[[roles]]\nname = \"Helper\"\n[roles.sections]\nfaxes = \"read\"\n",
    )
    .unwrap();
    let err = work.fails(&["apply", "section.toml"]);
    assert!(err.contains("\"faxes\""), "{err}");
    assert_eq!(work.ok(&["roles"]), "");
    assert!(!work.ok(&["tenant", "list"]).contains("beta"));

    let err = work.fails(&["tenant", "show", "nobody"]);
    assert!(err.contains("tenant \"nobody\" not found"), "{err}");
    let err = work.fails(&["scim-token", "revoke", "acme", "000000000000"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn configuration_errors_stop_before_anything_starts() {
    let work = Workdir::new();
    std::fs::write(work.path().join("broken.toml"), "[server\nlisten = 1").unwrap();
    let err = work.fails(&["--config", "broken.toml", "check-config"]);
    assert!(err.contains("broken.toml"), "{err}");
    std::fs::write(work.path().join("typo.toml"), "[server]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap();
    let err = work.fails(&["--config", "typo.toml", "serve"]);
    assert!(err.contains("listen_addr"), "{err}");
    let err = work.fails(&["--config", "missing.toml", "check-config"]);
    assert!(err.contains("missing.toml"), "{err}");

    let unreachable = Workdir::new()
        .with_env("IDBRIDGE_DATABASE__URL", "postgres://idbridge:hunter2@127.0.0.1:1/idbridge")
        .with_env("IDBRIDGE_DATABASE__CONNECT_TIMEOUT_SECONDS", "1");
    let err = unreachable.fails(&["check-config"]);
    assert!(err.contains("cannot connect to postgres://idbridge:***@127.0.0.1:1/idbridge"), "{err}");
    assert!(!err.contains("hunter2"), "password leaked: {err}");

    let ok = work.ok(&["check-config"]);
    assert!(ok.contains("configuration ok"), "{ok}");
}

#[tokio::test]
async fn admin_api_requires_an_operator_token_and_mirrors_the_cli() {
    let (token, hash) = idbridge_e2e::new_token();
    let work = Workdir::new().with_env("IDBRIDGE_ADMIN__TOKEN_HASHES", &format!("[\"{hash}\"]"));
    let daemon = work.serve();
    let http = daemon.client();
    let url = |p: &str| daemon.url(p);

    for bad in [None, Some("idb_admin_000000000000_wrong".to_owned())] {
        let mut req = http.get(url("/admin/v1/tenants"));
        if let Some(bad) = bad {
            req = req.bearer_auth(bad);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "unauthorized");
    }

    let created = http
        .post(url("/admin/v1/tenants"))
        .bearer_auth(&token)
        .json(&json!({"slug": "acme", "name": "ACME"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let dup = http
        .post(url("/admin/v1/tenants"))
        .bearer_auth(&token)
        .json(&json!({"slug": "acme", "name": "ACME"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    let bad = http
        .post(url("/admin/v1/tenants"))
        .bearer_auth(&token)
        .json(&json!({"slug": "A B", "name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("\\\"A B\\\""));
    let wrong_type = http
        .post(url("/admin/v1/tenants"))
        .bearer_auth(&token)
        .json(&json!({"slug": 5, "name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 422);
    let not_json = http
        .post(url("/admin/v1/tenants"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);

    let apply_body = std::fs::read_to_string(workspace_root().join("config/examples/acme.toml")).unwrap();
    let dry = http
        .post(url("/admin/v1/apply?dry_run=true"))
        .bearer_auth(&token)
        .header("content-type", "application/toml")
        .body(apply_body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(dry.status(), 200);
    let dry: Value = dry.json().await.unwrap();
    assert!(
        dry["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "~ tenant acme (name, time_zone, allowed_roles, allowed_access_profiles, policy)"),
        "{dry}"
    );
    assert!(
        http.get(url("/admin/v1/roles"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .is_empty()
    );
    let applied: Value = http
        .post(url("/admin/v1/apply"))
        .bearer_auth(&token)
        .header("content-type", "application/toml")
        .body(apply_body.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(applied["changes"].as_array().unwrap().len(), 7, "roles, profiles, tenant, rules");
    let again: Value = http
        .post(url("/admin/v1/apply"))
        .bearer_auth(&token)
        .header("content-type", "application/toml")
        .body(apply_body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(again["changes"].as_array().unwrap().is_empty());

    let shown: Value =
        http.get(url("/admin/v1/tenants/acme")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["roles"].as_array().unwrap().len(), 3);

    let issued: Value = http
        .post(url("/admin/v1/tenants/acme/scim-tokens"))
        .bearer_auth(&token)
        .json(&json!({"name": "okta"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let scim_id = issued["id"].as_str().unwrap();
    assert!(issued["token"].as_str().unwrap().starts_with("idb_scim_"));
    let revoke = http
        .delete(url(&format!("/admin/v1/tenants/acme/scim-tokens/{scim_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    let again = http
        .delete(url(&format!("/admin/v1/tenants/acme/scim-tokens/{scim_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);

    let lines = http.get(url("/admin/v1/tenants/acme/audit?format=jsonl")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(lines.headers()["content-type"], "application/x-ndjson");
    let lines = lines.text().await.unwrap();
    let actions: Vec<String> = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        ["tenant.created", "tenant.updated", "mapping_rules.replaced", "scim_token.created", "scim_token.revoked"]
    );
    let first: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert!(first["actor"]["id"].as_str().unwrap().starts_with("admin-token:"));
    assert!(first["request_id"].as_str().is_some_and(|r| !r.is_empty()), "audit carries the request id");
    let bad_since =
        http.get(url("/admin/v1/tenants/acme/audit?since=yesterday")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(bad_since.status(), 400);
    assert!(bad_since.text().await.unwrap().contains("yesterday"));
    let missing = http.get(url("/admin/v1/tenants/ghost/individuals")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    // What the API did, the CLI sees on the same database.
    drop(daemon);
    assert!(work.ok(&["tenant", "list"]).contains("acme"));
}

#[tokio::test]
async fn serve_on_postgresql() {
    let Some(db) = idbridge_e2e::SharedPgDatabase::create("idbridge_e2e") else { return };
    let work = Workdir::new().with_env("IDBRIDGE_DATABASE__URL", &db.url);
    work.ok(&["apply", &example()]);
    assert_eq!(work.ok(&["apply", &example()]).trim(), "no changes");
    let daemon = work.serve();
    assert_eq!(daemon.client().get(daemon.url("/readyz")).send().await.unwrap().status(), 200);
    assert!(daemon.terminate().success());
    assert!(!work.path().join("idbridge.db").exists());
}
