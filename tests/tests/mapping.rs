//! The mapping pipeline through the binary: rules from `apply`, plugins from config,
//! `mapping preview`, `plugin list`, the admin API, and reloads.

use idbridge_e2e::{Workdir, workspace_root};
use serde_json::{Value, json};

fn example() -> String {
    workspace_root().join("config/examples/acme.toml").display().to_string()
}

fn plugin(package: &str) -> String {
    idbridge_plugin_host::build_plugin(package, &workspace_root()).unwrap().display().to_string()
}

fn person(work: &Workdir, name: &str, body: Value) -> String {
    let path = work.path().join(name);
    std::fs::write(&path, body.to_string()).unwrap();
    path.display().to_string()
}

#[test]
fn rules_from_apply_decide_with_reasons() {
    let work = Workdir::new();
    let applied = work.ok(&["apply", &example()]);
    assert!(applied.contains("~ mapping rules of acme (0 → 5 rules)"), "{applied}");
    assert_eq!(work.ok(&["apply", &example()]).trim(), "no changes");
    let rules = work.ok(&["mapping", "rules", "acme"]);
    assert!(rules.lines().next().unwrap().contains("portal admins"), "{rules}");

    let steve = person(
        &work,
        "steve.json",
        json!({
            "user": {"login": "steve@acme.example", "department": "IT"},
            "groups": [
                {"source": "scim", "id": "g1", "display_name": "pbx-admins"},
                {"source": "scim", "id": "g2", "display_name": "PBX-Queue-101"},
                {"source": "ldap", "id": "g3", "display_name": "pbx-queue-102", "via": ["supervisors"]}
            ]
        }),
    );
    let preview: Value =
        serde_json::from_str(&work.ok(&["mapping", "preview", "acme", "--user", &steve, "--json"])).unwrap();
    let d = &preview["decision"];
    assert_eq!(d["verdict"], "grant");
    assert_eq!(d["role"], "PBX admin");
    assert_eq!(d["scopes"]["queues"], json!(["101", "102"]));
    assert!(preview["held"].is_null());
    let reasons = d["reasons"].as_array().unwrap();
    assert!(reasons.iter().any(|r| r["grants"] == "role" && r["rule"] == "pbx admins" && r["groups"] == json!(["g1"])));
    assert!(reasons.iter().any(|r| r["grants"] == "scope:queues=102" && r["groups"] == json!(["g3"])));

    let leaver = person(
        &work,
        "leaver.json",
        json!({"user": {"login": "adam"}, "groups": [{"source": "scim", "id": "g9", "display_name": "Leavers"}, {"source": "scim", "id": "g1", "display_name": "pbx-admins"}]}),
    );
    let text = work.ok(&["mapping", "preview", "acme", "--user", &leaver]);
    assert!(text.contains("Deny") && text.contains("no access"), "{text}");

    let finance = person(&work, "fin.json", json!({"user": {"login": "fiona", "department": "Finance EU"}}));
    let preview: Value =
        serde_json::from_str(&work.ok(&["mapping", "preview", "acme", "--user", &finance, "--json"])).unwrap();
    assert_eq!(preview["decision"]["access_profile"], "Billing only");

    let bad = person(&work, "bad.json", json!({"user": {"login": "x"}, "groupz": []}));
    let err = work.fails(&["mapping", "preview", "acme", "--user", &bad]);
    assert!(err.contains("groupz"), "{err}");
}

#[test]
fn rules_that_grant_what_the_tenant_does_not_allow_are_refused() {
    let work = Workdir::new();
    work.ok(&["apply", &example()]);
    let file = work.path().join("more.toml");
    let base = std::fs::read_to_string(example()).unwrap();
    std::fs::write(
        &file,
        base.replace("role = \"Operations manager\"\naccess_profile = \"Billing only\"", "role = \"Wizard\""),
    )
    .unwrap();
    let err = work.fails(&["apply", file.to_str().unwrap()]);
    assert!(err.contains("\"Wizard\"") && err.contains("allowed roles"), "{err}");
    std::fs::write(
        &file,
        base.replace(
            "groups = [\"pbx-queue-*\"]\nscopes = { queues = [\"{1}\"] }",
            "groups = [\"pbx-queue\"]\nscopes = { queues = [\"{1}\"] }",
        ),
    )
    .unwrap();
    let err = work.fails(&["apply", file.to_str().unwrap()]);
    assert!(err.contains("{1}"), "{err}");
    std::fs::write(&file, base.replace("allowed_access_profiles = [\"Full portal\", \"Billing only\"]", "allowed_access_profiles = [\"Full portal\", \"Billing only\"]\n\n[tenants.policy]\nmappers = [\"rules\", \"ghost\"]").replace("[tenants.policy]\ndeprovision_action", "[tenants.policy_unused]\ndeprovision_action")).unwrap();
    let err = work.fails(&["apply", file.to_str().unwrap()]);
    assert!(err.contains("ghost") || err.contains("policy_unused"), "{err}");
}

#[tokio::test]
async fn plugins_from_config_preview_list_and_reload() {
    let entra = plugin("idbridge-plugin-entra-roles");
    let fixture = plugin("idbridge-plugin-fixture-misbehaving");
    let work = Workdir::new();
    let config = work.path().join("idbridge.toml");
    let write_config = |behaviour: &str| {
        std::fs::write(
            &config,
            format!(
                r#"[[plugins]]
id = "entra"
path = "{entra}"
config = {{ table = [{{ key = "Portal.Admin", role = "Customer admin", access_profile = "Full portal" }}] }}

[[plugins]]
id = "fragile"
path = "{fixture}"
config = {{ behaviour = "{behaviour}" }}
# Generous: with RUST_BACKTRACE set, a debug build spends long on the panic's backtrace.
timeout_ms = 5000
"#
            ),
        )
        .unwrap();
    };
    write_config("panic");
    let cfg = config.display().to_string();
    let file = work.path().join("acme.toml");
    let base = std::fs::read_to_string(example()).unwrap();
    std::fs::write(
        &file,
        base.replace("retention_days = 90", "retention_days = 90\nmappers = [\"fragile\", \"entra\", \"rules\"]"),
    )
    .unwrap();
    work.ok(&["--config", &cfg, "apply", file.to_str().unwrap()]);

    let list: Value = serde_json::from_str(&work.ok(&["--config", &cfg, "plugin", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["name"], "entra-roles");

    let admin = person(
        &work,
        "admin.json",
        json!({"user": {"login": "ann", "custom": {"app_roles": "Portal.Admin"}}, "groups": [{"source": "scim", "id": "q", "display_name": "pbx-queue-5"}]}),
    );
    let preview: Value =
        serde_json::from_str(&work.ok(&["--config", &cfg, "mapping", "preview", "acme", "--user", &admin, "--json"]))
            .unwrap();
    let d = &preview["decision"];
    assert_eq!(d["role"], "Customer admin", "the panicking plugin abstains; entra decides");
    assert_eq!(d["scopes"]["queues"], json!(["5"]), "rules still add scopes");
    assert!(d["errors"][0]["message"].as_str().unwrap().contains("panicked"));

    // The daemon keeps serving after the plugin panics; reload brings it back.
    let (token, hash) = idbridge_e2e::new_token();
    let work =
        work.with_env("IDBRIDGE_ADMIN__TOKEN_HASHES", &format!("[\"{hash}\"]")).with_env("IDBRIDGE_CONFIG", &cfg);
    let daemon = work.serve();
    let http = daemon.client();
    let body = json!({"user": {"login": "ann", "custom": {"app_roles": "Portal.Admin"}}, "groups": []});
    let first: Value = http
        .post(daemon.url("/admin/v1/tenants/acme/mapping/preview"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["decision"]["role"], "Customer admin");
    let plugins: Value =
        http.get(daemon.url("/admin/v1/plugins")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let fragile = plugins.as_array().unwrap().iter().find(|p| p["id"] == "fragile").unwrap().clone();
    assert_eq!(fragile["health"], "quarantined");
    assert_eq!(http.get(daemon.url("/healthz")).send().await.unwrap().status(), 200);

    write_config("foreign-role");
    let reloaded = http.post(daemon.url("/admin/v1/plugins/reload")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(reloaded.status(), 200);
    let after: Value = http
        .post(daemon.url("/admin/v1/tenants/acme/mapping/preview"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["decision"]["role"], "Wizard", "the reloaded plugin decides now");
    assert!(
        after["held"].as_str().unwrap().contains("\"Wizard\""),
        "a role the tenant does not allow is held: {after}"
    );

    std::fs::write(&config, "[[plugins]]\nid = \"broken\"\npath = \"/nonexistent.so\"\n").unwrap();
    let refused = http.post(daemon.url("/admin/v1/plugins/reload")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(refused.status(), 422);
    let still: Value =
        http.get(daemon.url("/admin/v1/plugins")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(still.as_array().unwrap().len(), 2, "a failed reload keeps the running plugins");
}

#[tokio::test]
async fn rules_are_replaced_and_diffed_against_existing_individuals() {
    let work = Workdir::new();
    work.ok(&["apply", &example()]);
    let token = work.ok(&["scim-token", "create", "acme"]).trim().to_owned();
    let daemon = work.serve();
    let http = daemon.client();
    let post = |path: &str, body: Value| {
        http.post(daemon.url(&format!("/scim/v2/acme{path}"))).bearer_auth(&token).json(&body).send()
    };
    let ann: Value = post("/Users", json!({"userName": "ann"})).await.unwrap().json().await.unwrap();
    post("/Users", json!({"userName": "carl", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Finance"}})).await.unwrap();
    post("/Groups", json!({"displayName": "pbx-admins", "members": [{"value": ann["id"]}]})).await.unwrap();
    assert_eq!(work.ok(&["individual", "list", "acme"]).lines().count(), 2);

    let rules = work.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rules]]\nname = \"pbx admins are admins now\"\ngroups = [\"pbx-admins\"]\nrole = \"Customer admin\"\n",
    )
    .unwrap();
    let diff: Value =
        serde_json::from_str(&work.ok(&["mapping", "diff", "acme", "--rules", rules.to_str().unwrap(), "--json"]))
            .unwrap();
    assert_eq!(diff["individuals"], 2);
    let changes = diff["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{diff}");
    let ann_change = changes.iter().find(|c| c["login"] == "ann").unwrap();
    assert_eq!(
        (ann_change["before"]["role"].as_str(), ann_change["after"]["role"].as_str()),
        (Some("PBX admin"), Some("Customer admin"))
    );
    let carl_change = changes.iter().find(|c| c["login"] == "carl").unwrap();
    assert_eq!(carl_change["after"]["access"], false);
    assert!(work.ok(&["mapping", "rules", "acme"]).contains("finance"), "diff writes nothing");

    let set = work.ok(&["mapping", "set-rules", "acme", rules.to_str().unwrap()]);
    assert!(set.contains("~ mapping rules of acme (5 → 1 rules)"), "{set}");
    assert_eq!(work.ok(&["mapping", "set-rules", "acme", rules.to_str().unwrap()]).trim(), "no changes");
    let json_rules = work.path().join("rules.json");
    std::fs::write(&json_rules, "[{\"name\": \"x\", \"groups\": [\"g\"], \"role\": \"Wizard\"}]").unwrap();
    let err = work.fails(&["mapping", "set-rules", "acme", json_rules.to_str().unwrap()]);
    assert!(err.contains("\"Wizard\""), "{err}");
}
