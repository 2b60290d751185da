//! Group-scoped permissions (seed 003) end to end: directory groups pushed over SCIM or read
//! from OpenLDAP `slapd` become portal groups and group-scoped rights; the Portal API, ID
//! tokens and userinfo carry them; a group administrator reaches only the members of its
//! group; a change of a person's group rights logs them out everywhere. The customer's IdP
//! is the npm `oidc-provider`, the portal the `openidconnect` crate.

use idbridge_e2e::Workdir;
use idbridge_e2e::idp::{Agent, Idp, free_port, generate_key};
use idbridge_e2e::portal::{PORTAL_SECRET, Portal, logout_receiver, payload};
use idbridge_e2e::slapd::{ADMIN_DN, ADMIN_PASSWORD, SUFFIX, Slapd};
use openidconnect::OAuth2TokenResponse;
use serde_json::{Value, json};

const UPSTREAM_SECRET: &str = "upstream-secret-upstream-secret-0123456789";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Teams become portal groups; supervisors get co-monitoring and statistics of their team;
/// group administrators manage their team's members.
const RULES: &str = r#"
[[tenants.rules]]
name = "pbx teams"
groups = ["pbx-team-*"]
scopes = { groups = ["{1}"] }

[[tenants.rules]]
name = "team supervisors"
groups = ["pbx-supervisors-*"]
scopes = { group_rights = { co_monitoring = ["{1}"], statistics = ["{1}"] } }

[[tenants.rules]]
name = "group admins"
priority = 60
groups = ["pbx-group-admins-*"]
role = "Customer admin"
scopes = { group_rights = { administration = ["{1}"] } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_teams_scope_rights_and_group_administrators_reach_only_their_group() {
    let idbridge_port = free_port();
    let idbridge = format!("http://127.0.0.1:{idbridge_port}");
    let person = |name: &str| json!({ "sub": format!("pairwise-{name}"), "oid": format!("oid-{name}"), "email": format!("{name}@acme.example"), "hasgroups": true });
    let idp = Idp::start(json!({
        "keys": [generate_key("k1")],
        "clients": [{ "client_id": "idbridge", "client_secret": UPSTREAM_SECRET, "redirect_uris": [format!("{idbridge}/login/callback")] }],
        "users": { "sam": person("sam"), "sal": person("sal"), "una": person("una"), "ada": person("ada") },
    }));
    let (logout_url, received) = logout_receiver().await;
    let portal_redirect = format!("http://127.0.0.1:{}/cb", free_port());
    let (portal_token, hash) = idbridge_e2e::new_token();
    let work = Workdir::new()
        .with_env("ACME_IDP_SECRET", UPSTREAM_SECRET)
        .with_env("PORTAL_SECRET", PORTAL_SECRET)
        .with_env("IDBRIDGE_PORTAL__TOKEN_HASHES", &format!("[\"{hash}\"]"));
    let acme = idbridge_e2e::idp::acme_with_domain(false);
    let file = work.path().join("groups.toml");
    std::fs::write(
        &file,
        format!(
            "{acme}{RULES}\n[[tenants.oidc]]\nname = \"entra\"\nissuer = \"{}\"\nclient_id = \"idbridge\"\nclient_secret_env = \"ACME_IDP_SECRET\"\nlink_by = {{ claim = \"oid\", source = \"scim\" }}\n\n[[clients]]\nid = \"portal\"\nredirect_uris = [\"{portal_redirect}\"]\nbackchannel_logout_uri = \"{logout_url}\"\nsecret_env = \"PORTAL_SECRET\"\n",
            idp.issuer
        ),
    )
    .unwrap();
    work.ok(&["apply", file.to_str().unwrap()]);
    // An unknown group right is named before anything is stored.
    let bad = work.path().join("bad.toml");
    std::fs::write(&bad, format!("{acme}{}", RULES.replace("co_monitoring", "co_monitorin"))).unwrap();
    let refused = work.fails(&["apply", bad.to_str().unwrap()]);
    assert!(refused.contains("co_monitorin") && refused.contains("not in the catalog"), "{refused}");
    let catalog = work.ok(&["catalog"]);
    assert!(catalog.contains("group rights") && catalog.contains("co_monitoring"), "{catalog}");

    let scim_token = work.ok(&["scim-token", "create", "acme"]).trim().to_owned();
    let daemon = work.serve_at(&format!("127.0.0.1:{idbridge_port}"), Some(idbridge.clone()));
    let http = reqwest::Client::new();
    let scim = |method: reqwest::Method, path: &str, body: Value| {
        http.request(method, daemon.url(&format!("/scim/v2/acme{path}")))
            .bearer_auth(&scim_token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
    };
    let mut ids = std::collections::BTreeMap::new();
    for name in ["sam", "sal", "una", "ada"] {
        let email = format!("{name}@acme.example");
        let r: Value = scim(
            reqwest::Method::POST,
            "/Users",
            json!({ "userName": email, "externalId": format!("oid-{name}"), "emails": [{ "value": email, "primary": true }] }),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        ids.insert(name, r["id"].as_str().unwrap().to_owned());
    }
    let mut groups = std::collections::BTreeMap::new();
    for (group, members) in [
        ("pbx-team-sales", &["sam", "sal"][..]),
        ("pbx-team-support", &["una"]),
        ("pbx-group-admins-sales", &["sam"]),
        ("pbx-supervisors-sales", &["sal"]),
        ("pbx-admins", &["sal", "una"]),
        ("Portal-Admins", &["ada"]),
    ] {
        let members: Vec<Value> = members.iter().map(|m| json!({ "value": ids[m] })).collect();
        let r =
            scim(reqwest::Method::POST, "/Groups", json!({ "displayName": group, "members": members })).await.unwrap();
        assert_eq!(r.status(), 201);
        groups.insert(group, r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    daemon.wait_settled().await;

    // --- the Portal API: members of a group, and each person's groups and group rights ----
    let portal_get = |path: String| {
        let (http, url, token) = (http.clone(), daemon.url(&path), portal_token.clone());
        async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.json::<Value>().await.unwrap()
        }
    };
    let logins = |page: &Value| -> Vec<String> {
        page["individuals"].as_array().unwrap().iter().map(|i| i["login"].as_str().unwrap().to_owned()).collect()
    };
    let sales = portal_get("/portal/v1/tenants/acme/individuals?group=sales".into()).await;
    assert_eq!(logins(&sales), ["sal@acme.example", "sam@acme.example"]);
    let support = portal_get("/portal/v1/tenants/acme/individuals?group=support".into()).await;
    assert_eq!(logins(&support), ["una@acme.example"]);
    let sal = portal_get("/portal/v1/tenants/acme/individuals/sal@acme.example".into()).await;
    assert_eq!(sal["scopes"]["groups"], json!(["sales"]), "{sal}");
    assert_eq!(sal["scopes"]["group_rights"], json!({ "co_monitoring": ["sales"], "statistics": ["sales"] }), "{sal}");
    let r = http
        .get(daemon.url("/portal/v1/tenants/acme/individuals?group=a%20b"))
        .bearer_auth(&portal_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "a group name that cannot exist is named");
    let explained: Value =
        serde_json::from_str(&work.ok(&["individual", "explain", "acme", "sal@acme.example", "--json"])).unwrap();
    let because = explained["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scope"] == "scope:co_monitoring=sales")
        .unwrap_or_else(|| panic!("{explained}"))["because"]
        .to_string();
    assert!(because.contains("team supervisors"), "{because}");
    let listed = work.ok(&["individual", "list", "acme", "--group", "support"]);
    assert!(listed.contains("una@acme.example") && !listed.contains("sam@"), "{listed}");

    // --- sign-in: the ID token and userinfo carry them ------------------------------------
    let portal = Portal::new(&idbridge, &portal_redirect).await;
    let sign_in = |who: &'static str| {
        let portal = &portal;
        let redirect = portal_redirect.clone();
        async move {
            let agent = Agent::new();
            let started = portal.start(&[("login_hint", &format!("{who}@acme.example"))]);
            let at_idp = agent.walk(&started.url, &redirect).await;
            let landing = agent.idp_login(&at_idp, who, &redirect).await;
            portal.finish(started, &landing).await.unwrap_or_else(|e| panic!("{who} signs in: {e:?}"))
        }
    };
    let (sal_claims, sal_tokens) = sign_in("sal").await;
    assert_eq!(sal_claims["scopes"]["groups"], json!(["sales"]), "{sal_claims}");
    assert_eq!(sal_claims["scopes"]["group_rights"]["co_monitoring"], json!(["sales"]), "{sal_claims}");
    let info: Value = http
        .get(daemon.url("/oauth2/userinfo"))
        .bearer_auth(sal_tokens.access_token().secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["scopes"]["group_rights"]["statistics"], json!(["sales"]), "{info}");
    let (sam_claims, sam_tokens) = sign_in("sam").await;
    assert_eq!(sam_claims["scopes"]["group_rights"]["administration"], json!(["sales"]), "{sam_claims}");
    let sam = sam_tokens.access_token().secret().clone();

    // --- sam administers sales only: support's una is out of reach everywhere ------------
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let request = http.request(method, daemon.url(path)).bearer_auth(&sam);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let (status, body) = call(reqwest::Method::GET, "/portal/v1/individuals", None).await;
    assert_eq!(status, 200);
    assert_eq!(logins(&serde_json::from_str(&body).unwrap()), ["sal@acme.example", "sam@acme.example"], "{body}");
    let (status, body) = call(reqwest::Method::GET, "/portal/v1/individuals?group=support", None).await;
    assert_eq!((status, logins(&serde_json::from_str(&body).unwrap())), (200, vec![]), "a filter outside reach");
    let una = portal_get("/portal/v1/tenants/acme/individuals/una@acme.example".into()).await;
    let una_id = una["id"].as_str().unwrap();
    for (method, path, body) in [
        (reqwest::Method::GET, format!("/portal/v1/individuals/{una_id}"), None),
        (reqwest::Method::GET, "/portal/v1/individuals/una@acme.example".to_owned(), None),
        (reqwest::Method::PATCH, format!("/portal/v1/individuals/{una_id}"), Some(json!({ "role": "PBX admin" }))),
        (reqwest::Method::POST, format!("/portal/v1/individuals/{una_id}/expire"), None),
    ] {
        let (status, body) = call(method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    let una_after = portal_get("/portal/v1/tenants/acme/individuals/una@acme.example".into()).await;
    assert_eq!(
        (una_after["status"].clone(), una_after["version"].clone()),
        (una["status"].clone(), una["version"].clone())
    );

    // Creating: only into sales, and never with a right sam does not hold.
    let create = |scopes: Value| {
        call(
            reqwest::Method::POST,
            "/portal/v1/individuals",
            Some(json!({ "login": "tom@acme.example", "role": "PBX admin", "scopes": scopes })),
        )
    };
    let (status, body) = create(json!({})).await;
    assert!(status == 403 && body.contains("place the new individual"), "{status} {body}");
    let (status, body) = create(json!({ "groups": ["support"] })).await;
    assert!(status == 403 && body.contains("\\\"support\\\""), "{status} {body}");
    let (status, body) = create(json!({ "groups": ["sales"], "group_rights": { "co_monitoring": ["sales"] } })).await;
    assert!(status == 403 && body.contains("scopes"), "{status} {body}");
    let (status, body) = create(json!({ "groups": ["sales"], "group_rights": { "bogus_right": "all" } })).await;
    assert!(status == 422 && body.contains("bogus_right"), "{status} {body}");
    let (status, body) = create(json!({ "groups": ["sales"] })).await;
    assert_eq!(status, 201, "{body}");
    // Changing: never moving someone to another group, or out of reach.
    let (status, body) = call(
        reqwest::Method::PATCH,
        "/portal/v1/individuals/tom@acme.example",
        Some(json!({ "add_scopes": { "groups": ["support"] } })),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        reqwest::Method::PATCH,
        "/portal/v1/individuals/tom@acme.example",
        Some(json!({ "remove_scopes": { "groups": ["sales"] } })),
    )
    .await;
    assert!(status == 403 && body.contains("out of every group you administer"), "{status} {body}");
    let (status, body) = call(reqwest::Method::POST, "/portal/v1/individuals/tom@acme.example/expire", None).await;
    assert_eq!(status, 200, "{body}");

    // An administrator of the whole organisation (by role, without the right) holds the
    // administration of every group: it makes group administrators; a group administrator
    // cannot widen its own reach.
    let (_, ada_tokens) = sign_in("ada").await;
    let r = http
        .post(daemon.url("/portal/v1/individuals"))
        .bearer_auth(ada_tokens.access_token().secret())
        .json(&json!({ "login": "ivy@acme.example", "role": "PBX admin", "scopes": { "groups": ["support"], "group_rights": { "administration": ["support"] } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (status, body) = call(
        reqwest::Method::PATCH,
        "/portal/v1/individuals/sal@acme.example",
        Some(json!({ "add_scopes": { "group_rights": { "administration": "all" } } })),
    )
    .await;
    assert!(status == 403 && body.contains("scopes"), "{status} {body}");

    // --- sal loses co-monitoring at the directory: logged out everywhere -----------------
    let r = scim(
        reqwest::Method::PATCH,
        &format!("/Groups/{}", groups["pbx-supervisors-sales"]),
        json!({ "schemas": [PATCH], "Operations": [{ "op": "remove", "path": "members", "value": [{ "value": ids["sal"] }] }] }),
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !received.lock().unwrap().iter().any(|t| payload(t)["sid"] == sal_claims["sid"]) {
        assert!(std::time::Instant::now() < deadline, "no back-channel logout for sal after losing co-monitoring");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r =
        http.get(daemon.url("/oauth2/userinfo")).bearer_auth(sal_tokens.access_token().secret()).send().await.unwrap();
    assert_eq!(r.status(), 401, "sal's tokens ended with the session");
    let sal = portal_get("/portal/v1/tenants/acme/individuals/sal@acme.example".into()).await;
    assert!(sal["scopes"].get("group_rights").is_none(), "{sal}");
    assert_eq!(sal["scopes"]["groups"], json!(["sales"]), "still a member of sales: {sal}");
    // The change feed carries what changed, before and after.
    let feed = portal_get("/portal/v1/tenants/acme/changes?limit=1000".into()).await;
    let lost =
        feed["changes"].as_array().unwrap().iter().rev().find(|c| c["individual_id"] == sal["id"]).unwrap().clone();
    assert_eq!(lost["permission_diff"]["scopes"][0]["group_rights"]["co_monitoring"], json!(["sales"]), "{lost}");
    assert!(lost["permission_diff"]["scopes"][1].get("group_rights").is_none(), "{lost}");
    assert!(
        !received.lock().unwrap().iter().any(|t| payload(t)["sid"] == sam_claims["sid"]),
        "sam's access did not change"
    );
    // A group gained ends the sessions too (seed 003: changing these permissions logs the
    // user out of all applications, not only taking them).
    let r = scim(
        reqwest::Method::PATCH,
        &format!("/Groups/{}", groups["pbx-team-support"]),
        json!({ "schemas": [PATCH], "Operations": [{ "op": "add", "path": "members", "value": [{ "value": ids["sam"] }] }] }),
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    while !received.lock().unwrap().iter().any(|t| payload(t)["sid"] == sam_claims["sid"]) {
        assert!(std::time::Instant::now() < deadline, "no back-channel logout for sam after joining support");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(idp);
}

/// Nested directory groups: `sales-east` is inside `pbx-team-sales`, so its members are
/// members of portal group `sales`; a supervisor group grants co-monitoring of it. An
/// incremental run that moves a person between teams moves them between portal groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_groups_from_slapd_become_portal_groups_and_group_rights() {
    let slapd = Slapd::start();
    let person = |uid: &str| {
        format!(
            "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {uid}@acme.example\n\n"
        )
    };
    let user = |uid: &str| format!("uid={uid},ou=people,{SUFFIX}");
    let group = |cn: &str, members: &[String]| {
        let members: String = members.iter().map(|m| format!("member: {m}\n")).collect();
        format!("dn: cn={cn},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {cn}\n{members}\n")
    };
    let grp = |cn: &str| format!("cn={cn},ou=groups,{SUFFIX}");
    let mut ldif = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: ACME\ndc: acme\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
    );
    for uid in ["ann", "ben", "cy", "dee"] {
        ldif += &person(uid);
    }
    ldif += &group("sales-east", &[user("ben"), user("dee")]);
    ldif += &group("pbx-team-sales", &[user("ann"), grp("sales-east")]);
    ldif += &group("pbx-team-support", &[user("cy")]);
    ldif += &group("pbx-supervisors-sales", &[user("ann")]);
    ldif += &group("pbx-admins", &[user("ann"), user("ben"), user("cy"), user("dee")]);
    slapd.ldif(&ldif);

    let (portal_token, hash) = idbridge_e2e::new_token();
    let work = Workdir::new().with_env("IDBRIDGE_PORTAL__TOKEN_HASHES", &format!("[\"{hash}\"]"));
    let secret = work.path().join("ldap.secret");
    std::fs::write(&secret, ADMIN_PASSWORD).unwrap();
    let acme = std::fs::read_to_string(idbridge_e2e::workspace_root().join("config/examples/acme.toml")).unwrap();
    let file = work.path().join("acme-ldap.toml");
    std::fs::write(
        &file,
        format!(
            "{acme}{RULES}\n[[tenants.ldap]]\nname = \"corp\"\nurls = [\"{}\"]\nbind_dn = \"{ADMIN_DN}\"\n\
             bind_password_file = \"{}\"\nuser_base = \"ou=people,{SUFFIX}\"\ngroup_base = \"ou=groups,{SUFFIX}\"\n\
             schedule_seconds = 0\n",
            slapd.url(),
            secret.display()
        ),
    )
    .unwrap();
    work.ok(&["apply", file.to_str().unwrap()]);
    let run = work.ok(&["sync", "ldap", "acme"]);
    assert!(run.contains("corp: succeeded (full)"), "{run}");

    let show = |login: &str| -> Value {
        serde_json::from_str(&work.ok(&["individual", "show", "acme", login, "--json"])).unwrap()
    };
    assert_eq!(show("ben")["scopes"]["groups"], json!(["sales"]), "through sales-east, nested in pbx-team-sales");
    let ann = show("ann");
    assert_eq!(ann["scopes"]["groups"], json!(["sales"]));
    assert_eq!(ann["scopes"]["group_rights"], json!({ "co_monitoring": ["sales"], "statistics": ["sales"] }));
    assert_eq!(show("cy")["scopes"]["groups"], json!(["support"]));

    let daemon = work.serve();
    let members = |group: &str| {
        let (http, url, token) = (
            daemon.client().clone(),
            daemon.url(&format!("/portal/v1/tenants/acme/individuals?group={group}")),
            portal_token.clone(),
        );
        async move {
            let page: Value = http.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
            page["individuals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["login"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(members("sales").await, ["ann", "ben", "dee"]);
    assert_eq!(members("support").await, ["cy"]);

    // Ben moves to support in the directory; the next incremental run moves him.
    slapd.ldif(&format!(
        "dn: {}\nchangetype: modify\ndelete: member\nmember: {}\n\n\
         dn: {}\nchangetype: modify\nadd: member\nmember: {}\n\n",
        grp("sales-east"),
        user("ben"),
        grp("pbx-team-support"),
        user("ben")
    ));
    let run = work.ok(&["sync", "ldap", "acme"]);
    assert!(run.contains("(incremental)") && run.contains("1 changed"), "{run}");
    assert_eq!(members("sales").await, ["ann", "dee"]);
    assert_eq!(members("support").await, ["ben", "cy"]);
    let explained: Value = serde_json::from_str(&work.ok(&["individual", "explain", "acme", "ben", "--json"])).unwrap();
    let scopes = explained["scopes"].to_string();
    assert!(scopes.contains("scope:groups=support") && scopes.contains("pbx teams"), "{scopes}");

    // What a person would get, and who would change under other rules.
    let person = work.path().join("person.json");
    let groups_of = |names: &[&str]| -> Vec<Value> {
        names.iter().map(|n| json!({ "source": "ldap", "id": format!("id-{n}"), "display_name": n })).collect()
    };
    std::fs::write(
        &person,
        json!({ "user": { "login": "zed" }, "groups": groups_of(&["pbx-team-support", "pbx-supervisors-support"]) })
            .to_string(),
    )
    .unwrap();
    let preview = work.ok(&["mapping", "preview", "acme", "--user", person.to_str().unwrap()]);
    assert!(preview.contains("groups=support") && preview.contains("co_monitoring=support"), "{preview}");
    assert!(preview.contains("scope:statistics=support") && preview.contains("team supervisors"), "{preview}");
    let rules: Vec<Value> = serde_json::from_str(&work.ok(&["mapping", "rules", "acme", "--json"])).unwrap();
    let without: Vec<&Value> = rules.iter().filter(|r| r["name"] != "team supervisors").collect();
    let rules_file = work.path().join("rules.json");
    std::fs::write(&rules_file, serde_json::to_string(&without).unwrap()).unwrap();
    let diff = work.ok(&["mapping", "diff", "acme", "--rules", rules_file.to_str().unwrap()]);
    assert!(diff.contains("1 of 4 individuals would change") && diff.contains("co_monitoring=sales"), "{diff}");

    // Set by hand: a group and a right for every group, kept across runs; an unknown right
    // is named and changes nothing.
    let refused = work.fails(&["individual", "set", "acme", "cy", "--add-scope", "wallboards=sales"]);
    assert!(refused.contains("wallboards") && refused.contains("not a group right of the catalog"), "{refused}");
    work.ok(&["individual", "set", "acme", "cy", "--add-scope", "groups=east", "--add-scope", "statistics=all"]);
    work.ok(&["sync", "ldap", "acme", "--full"]);
    let cy = show("cy");
    assert_eq!(cy["scopes"]["groups"], json!(["east", "support"]), "{cy}");
    assert_eq!(cy["scopes"]["group_rights"], json!({ "statistics": "all" }), "{cy}");
    let explained: Value = serde_json::from_str(&work.ok(&["individual", "explain", "acme", "cy", "--json"])).unwrap();
    let statistics = explained["scopes"].as_array().unwrap().iter().find(|s| s["scope"] == "scope:statistics=all");
    assert_eq!(statistics.map(|s| s["because"].clone()), Some(json!(["manual"])), "{explained}");
    work.ok(&["individual", "set", "acme", "cy", "--remove-scope", "statistics=all"]);
    assert!(show("cy")["scopes"].get("group_rights").is_none());
    assert_eq!(members("east").await, ["cy"]);
}
