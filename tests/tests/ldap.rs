//! LDAP sync against a real OpenLDAP `slapd` (started by the harness on a free loopback
//! port, memberOf overlay): nested and cyclic groups, disabled and expired users, a
//! rename with modrdn, deletions, a dry run, incremental runs, and reads that fail part
//! way (server gone, size limit) changing nobody.

use idbridge_e2e::slapd::{ADMIN_DN, ADMIN_PASSWORD, SUFFIX, Slapd};
use idbridge_e2e::{Workdir, workspace_root};
use serde_json::Value;

fn base_ldif() -> String {
    let person = |uid: &str, extra: &str| {
        format!(
            "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\n{extra}uid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {uid}@acme.example\n\n"
        )
    };
    let group = |cn: &str, members: &[&str]| {
        let members: String = members.iter().map(|m| format!("member: {m}\n")).collect();
        format!("dn: cn={cn},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {cn}\n{members}\n")
    };
    let user = |uid: &str| format!("uid={uid},ou=people,{SUFFIX}");
    let grp = |cn: &str| format!("cn={cn},ou=groups,{SUFFIX}");
    let mut ldif = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: ACME\ndc: acme\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=service,{SUFFIX}\nobjectClass: organizationalUnit\nou: service\n\n\
         dn: uid=limited,ou=service,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: limited\ncn: limited\nsn: limited\nuserPassword: limited-secret\n\n"
    );
    ldif += &person("alice", "");
    ldif += &person("bob", "");
    ldif += &person("carol", "employeeType: disabled\n");
    ldif += &person("dave", "objectClass: shadowAccount\nshadowExpire: 1\n");
    ldif += &person("eve", "");
    ldif += &person("frank", "");
    ldif += &group("team-a", &[&user("bob")]);
    ldif += &group("cycle-a", &[&user("frank")]);
    ldif += &group("cycle-b", &[&grp("cycle-a")]);
    ldif += &format!("dn: {}\nchangetype: modify\nadd: member\nmember: {}\n\n", grp("cycle-a"), grp("cycle-b"));
    ldif += &group(
        "pbx-admins",
        &[&user("alice"), &user("carol"), &user("dave"), &user("eve"), &grp("team-a"), &grp("cycle-b")],
    );
    ldif += &group("pbx-queue-101", &[&grp("cycle-a")]);
    ldif += &group("leavers", &[&user("eve")]);
    ldif
}

/// acme from the example, with this directory as its LDAP source.
fn apply_with_source(work: &Workdir, slapd: &Slapd, bind_dn: &str, password: &str) {
    apply_with(work, slapd, bind_dn, password, "");
}

fn apply_with(work: &Workdir, slapd: &Slapd, bind_dn: &str, password: &str, policy: &str) {
    apply_source(work, slapd, bind_dn, password, policy, "");
}

/// acme with this directory as its source, extra policy lines and extra source settings.
fn apply_source(work: &Workdir, slapd: &Slapd, bind_dn: &str, password: &str, policy: &str, source: &str) {
    let secret = work.path().join("ldap.secret");
    std::fs::write(&secret, format!("{password}\n")).unwrap();
    let example = std::fs::read_to_string(workspace_root().join("config/examples/acme.toml"))
        .unwrap()
        .replace("[tenants.policy]\n", &format!("[tenants.policy]\n{policy}"));
    let doc = format!(
        "{example}\n[[tenants.ldap]]\nname = \"corp\"\nurls = [\"{}\"]\nbind_dn = \"{bind_dn}\"\n\
         bind_password_file = \"{}\"\nuser_base = \"ou=people,{SUFFIX}\"\ngroup_base = \"ou=groups,{SUFFIX}\"\n\
         page_size = 2\nschedule_seconds = 0\nattributes = {{ disabled = \"employeeType\", disabled_values = [\"disabled\"], expiry = \"shadowExpire\" }}\n{source}",
        slapd.url(),
        secret.display()
    );
    let path = work.path().join("acme-ldap.toml");
    std::fs::write(&path, doc).unwrap();
    work.ok(&["apply", path.to_str().unwrap()]);
}

fn status_of(work: &Workdir, login: &str) -> Option<Value> {
    let out = work.run(&["individual", "show", "acme", login, "--json"]);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn an_ldap_directory_becomes_individuals_and_stays_in_line() {
    let slapd = Slapd::start();
    slapd.ldif(&base_ldif());
    let work = Workdir::new();
    apply_with_source(&work, &slapd, ADMIN_DN, ADMIN_PASSWORD);

    let dry = work.ok(&["sync", "ldap", "acme", "--dry-run"]);
    assert!(dry.contains("corp: dry_run (full) — 6 users"), "{dry}");
    assert!(dry.contains("alice") && dry.contains("new → active"), "{dry}");
    assert_eq!(work.ok(&["individual", "list", "acme"]), "", "a dry run applies nothing");

    let run = work.ok(&["sync", "ldap", "acme"]);
    assert!(run.contains("corp: succeeded (full)"), "{run}");
    let alice = status_of(&work, "alice").unwrap();
    assert_eq!((alice["status"].as_str(), alice["role"].as_str()), (Some("active"), Some("PBX admin")));
    assert_eq!(alice["links"][0]["source"], "ldap");
    assert_eq!(status_of(&work, "bob").unwrap()["status"], "active", "nested: team-a is in pbx-admins");
    assert_eq!(status_of(&work, "carol").unwrap()["status"], "suspended", "disabled in the directory");
    assert!(status_of(&work, "dave").is_none(), "expired in the directory (shadowExpire in 1970): not provisioned");
    assert!(status_of(&work, "eve").is_none(), "leavers are denied");
    let frank = status_of(&work, "frank").unwrap();
    assert_eq!(frank["scopes"]["queues"], serde_json::json!(["101"]), "through the cycle, once");
    let explain: Value = serde_json::from_str(&work.ok(&["individual", "explain", "acme", "bob", "--json"])).unwrap();
    assert_eq!(explain["role_because"][0]["rule"], "pbx admins");

    // Nothing changed in the directory: an incremental run reconciles nobody.
    let again = work.ok(&["sync", "ldap", "acme"]);
    assert!(again.contains("(incremental)") && again.contains("0 changed, 0 gone"), "{again}");

    // A rename keeps the identity (entryUUID); an incremental run sees it. A deletion is
    // found by the next full run and deprovisions by policy.
    slapd.ldif(&format!(
        "dn: uid=alice,ou=people,{SUFFIX}\nchangetype: modrdn\nnewrdn: uid=alice2\ndeleteoldrdn: 1\n\n\
         dn: uid=bob,ou=people,{SUFFIX}\nchangetype: delete\n\n"
    ));
    let run = work.ok(&["sync", "ldap", "acme"]);
    assert!(run.contains("(incremental)") && run.contains("0 gone"), "{run}");
    let renamed = status_of(&work, "alice2").unwrap();
    assert_eq!(renamed["id"], alice["id"], "same individual after modrdn");
    assert_eq!(status_of(&work, "bob").unwrap()["status"], "active", "deletions wait for a full run");
    let run = work.ok(&["sync", "ldap", "acme", "--full"]);
    assert!(run.contains("(full)") && run.contains("1 gone"), "{run}");
    assert_eq!(status_of(&work, "bob").unwrap()["status"], "suspended");

    // A group change reaches members whose own entries did not change.
    slapd.ldif(&format!(
        "dn: cn=leavers,ou=groups,{SUFFIX}\nchangetype: modify\nadd: member\nmember: uid=frank,ou=people,{SUFFIX}\n\n"
    ));
    let run = work.ok(&["sync", "ldap", "acme"]);
    assert!(run.contains("(incremental)") && run.contains("1 changed"), "{run}");
    assert_eq!(status_of(&work, "frank").unwrap()["status"], "suspended", "leavers are denied");
    // A deleted group takes what it granted from everyone in it (alice2 was a PBX admin
    // only through it).
    slapd.ldif(&format!("dn: cn=pbx-admins,ou=groups,{SUFFIX}\nchangetype: delete\n\n"));
    let run = work.ok(&["sync", "ldap", "acme"]);
    assert!(run.contains("succeeded (incremental)"), "{run}");
    assert_eq!(status_of(&work, "alice2").unwrap()["status"], "suspended", "{run}");
    let runs = work.ok(&["sync", "status", "acme"]);
    assert_eq!(runs.lines().count(), 7, "{runs}");
}

#[test]
fn a_read_that_fails_part_way_changes_nobody() {
    let mut slapd = Slapd::start();
    slapd.ldif(&base_ldif());
    let work = Workdir::new();
    apply_with_source(&work, &slapd, ADMIN_DN, ADMIN_PASSWORD);
    work.ok(&["sync", "ldap", "acme"]);
    let before = work.ok(&["individual", "list", "acme"]);

    // The server goes away: the run fails and nobody is deprovisioned.
    slapd.stop();
    let failed = work.fails(&["sync", "ldap", "acme"]);
    assert!(failed.contains("nobody's access changed"), "{failed}");
    assert_eq!(work.ok(&["individual", "list", "acme"]), before);

    // A read cut short by a size limit (3 entries) is not a complete enumeration either.
    slapd.restart();
    apply_with_source(&work, &slapd, &format!("uid=limited,ou=service,{SUFFIX}"), "limited-secret");
    let partial = work.run(&["sync", "ldap", "acme"]);
    assert!(!partial.status.success(), "{}", String::from_utf8_lossy(&partial.stdout));
    assert!(String::from_utf8_lossy(&partial.stdout).contains("sizeLimitExceeded"), "{partial:?}");
    assert_eq!(work.ok(&["individual", "list", "acme"]), before);

    // A wrong password is a failed bind that does not show the password.
    apply_with_source(&work, &slapd, ADMIN_DN, "not-the-password");
    let out = work.run(&["sync", "ldap", "acme"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("bind as"), "{text}");
    assert!(!text.contains("not-the-password"));

    // The server goes away in the middle of a run: bob has left, and 300 more people make
    // the read long enough (two users per page) to cut it short after its first page.
    apply_with_source(&work, &slapd, ADMIN_DN, ADMIN_PASSWORD);
    let more: String = (0..300)
        .map(|n| {
            format!("dn: uid=temp{n},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: temp{n}\ncn: t\nsn: t\n\n")
        })
        .collect();
    slapd.ldif(&format!("{more}dn: uid=bob,ou=people,{SUFFIX}\nchangetype: delete\n\n"));
    slapd.restart_logging();
    let mut sync = work.command(&["sync", "ldap", "acme", "--full"]);
    sync.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = sync.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while slapd.results_sent() < 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    slapd.stop();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success() && text.contains("failed"), "the run was cut short: {text}");
    assert_eq!(work.ok(&["individual", "list", "acme"]), before, "nobody deprovisioned: {text}");

    // Back to normal: the next run completes the work.
    slapd.restart();
    let run = work.ok(&["sync", "ldap", "acme", "--full"]);
    assert!(run.contains("succeeded") && run.contains("1 gone"), "{run}");
    let status = work.ok(&["sync", "status", "acme"]);
    assert!(status.contains("failed"), "{status}");
}

#[tokio::test]
async fn a_scim_user_whose_external_id_is_the_directory_id_is_the_same_individual() {
    let slapd = Slapd::start();
    slapd.ldif(&base_ldif());
    let work = Workdir::new();
    let token = work.acme_with_scim_token();
    apply_with(&work, &slapd, ADMIN_DN, ADMIN_PASSWORD, "link_scim_external_id_to = \"corp\"\n");
    work.ok(&["sync", "ldap", "acme"]);
    let alice = status_of(&work, "alice").unwrap();
    let entry_uuid = alice["links"][0]["external_id"].as_str().unwrap().to_owned();
    let before = work.ok(&["individual", "list", "acme"]).lines().count();

    // Entra provisions the same person over SCIM, with the directory id as externalId and
    // none of the directory's groups.
    let daemon = work.serve();
    let created = daemon
        .client()
        .post(daemon.url("/scim/v2/acme/Users"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"userName": "alice@acme.example", "externalId": entry_uuid.to_uppercase()}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let scim_id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let listing = work.ok(&["individual", "list", "acme"]);
    assert_eq!(listing.lines().count(), before, "linked, not a second individual: {listing}");
    let one = status_of(&work, alice["id"].as_str().unwrap()).unwrap();
    assert_eq!(one["login"], "alice@acme.example");
    let mut sources: Vec<&str> =
        one["links"].as_array().unwrap().iter().map(|l| l["source"].as_str().unwrap()).collect();
    sources.sort_unstable();
    assert_eq!(sources, ["ldap", "scim"]);
    assert_eq!(one["role"], "PBX admin", "decided on the directory's groups too");
    let remap = work.ok(&["mapping", "remap", "acme"]);
    assert_eq!(remap.trim(), "re-mapped acme: 0 individual(s) changed", "sources agree; nothing flaps");

    // Inactive at either source: suspended; a directory run that sees no change for her
    // does not undo it.
    daemon
        .client()
        .patch(daemon.url(&format!("/scim/v2/acme/Users/{scim_id}")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": false}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(status_of(&work, alice["id"].as_str().unwrap()).unwrap()["status"], "suspended");
    work.ok(&["sync", "ldap", "acme", "--full"]);
    assert_eq!(status_of(&work, alice["id"].as_str().unwrap()).unwrap()["status"], "suspended");
}

#[test]
fn ldaps_trusts_the_configured_ca_and_refuses_an_unknown_one() {
    let slapd = Slapd::start_tls();
    slapd.ldif(&base_ldif());
    let work = Workdir::new();
    let source = |ca: Option<&std::path::Path>| {
        let example = std::fs::read_to_string(workspace_root().join("config/examples/acme.toml")).unwrap();
        let secret = work.path().join("ldap.secret");
        std::fs::write(&secret, ADMIN_PASSWORD).unwrap();
        let ca = ca.map(|p| format!("ca_file = \"{}\"\n", p.display())).unwrap_or_default();
        let doc = format!(
            "{example}\n[[tenants.ldap]]\nname = \"corp\"\nurls = [\"{}\"]\nbind_dn = \"{ADMIN_DN}\"\n\
             bind_password_file = \"{}\"\nuser_base = \"ou=people,{SUFFIX}\"\ngroup_base = \"ou=groups,{SUFFIX}\"\n{ca}",
            slapd.ldaps_url(),
            secret.display()
        );
        let path = work.path().join("tls.toml");
        std::fs::write(&path, doc).unwrap();
        work.ok(&["apply", path.to_str().unwrap()]);
    };
    // Without the CA, the server's certificate is not trusted: nothing is read.
    source(None);
    let refused = work.run(&["sync", "ldap", "acme"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stdout).contains("failed"));
    assert_eq!(work.ok(&["individual", "list", "acme"]), "");
    // With it, the directory is read over TLS.
    source(Some(&slapd.ca_file()));
    let run = work.ok(&["sync", "ldap", "acme"]);
    assert!(run.contains("succeeded") && run.contains("6 users"), "{run}");
    assert_eq!(status_of(&work, "alice").unwrap()["status"], "active");
}

/// A person read from the directory signs in with SSO as that same individual: the IdP's
/// token carries the directory's immutable id (entryUUID here; objectGUID on AD), which
/// `link_by` matches against the LDAP source — never the email.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_person_signs_in_as_the_synced_individual() {
    use idbridge_e2e::idp::{Agent, Idp, free_port, generate_key, query_param};
    use serde_json::json;
    let slapd = Slapd::start();
    slapd.ldif(&base_ldif());
    let work = Workdir::new().with_env("IDP_SECRET", "upstream-secret-upstream-secret-0123456789");
    apply_with_source(&work, &slapd, ADMIN_DN, ADMIN_PASSWORD);
    work.ok(&["sync", "ldap", "acme"]);
    let alice = status_of(&work, "alice").expect("alice synced");
    let entry_uuid = alice["links"][0]["external_id"].as_str().unwrap().to_owned();

    let port = free_port();
    let idbridge = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(json!({
        "keys": [generate_key("k1")],
        "clients": [{ "client_id": "idbridge", "client_secret": "upstream-secret-upstream-secret-0123456789",
                      "redirect_uris": [format!("{idbridge}/login/callback")] }],
        "users": { "alice": { "sub": "idp-alice", "oid": entry_uuid.to_uppercase(), "email": "alice@acme.example", "hasgroups": true } },
    }));
    let sign_in = work.path().join("sign-in.toml");
    std::fs::write(
        &sign_in,
        format!(
            "domains = [\"acme.example\"]\n[[oidc]]\nname = \"idp\"\nissuer = \"{}\"\nclient_id = \"idbridge\"\nclient_secret_env = \"IDP_SECRET\"\nlink_by = {{ claim = \"oid\", source = \"corp\" }}\n",
            idp.issuer
        ),
    )
    .unwrap();
    work.ok(&["sign-in", "set", "acme", sign_in.to_str().unwrap()]);
    let redirect = format!("http://127.0.0.1:{}/cb", free_port());
    let created = work.ok(&["client", "create", "portal", "--redirect-uri", &redirect]);
    let secret = created.lines().find_map(|l| l.strip_prefix("client_secret: ")).unwrap().to_owned();
    let _daemon = work.serve_at(&format!("127.0.0.1:{port}"), Some(idbridge.clone()));

    let verifier = "v".repeat(43);
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let agent = Agent::new();
    let url = format!(
        "{idbridge}/oauth2/authorize?response_type=code&client_id=portal&scope=openid&state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256&login_hint=alice%40acme.example&redirect_uri={}",
        url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
    );
    let page = agent.walk(&url, &redirect).await;
    let landing = agent.idp_login(&page, "alice", &redirect).await;
    let code = query_param(landing.location.as_deref().expect("back at the portal"), "code").expect("a code");
    let tokens: Value = reqwest::Client::new()
        .post(format!("{idbridge}/oauth2/token"))
        .basic_auth("portal", Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", &redirect),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claims: Value = {
        use base64::Engine;
        let part = tokens["id_token"].as_str().unwrap().split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    assert_eq!(claims["sub"], alice["id"], "the directory's individual, not a new one");
    assert_eq!(claims["role"], "PBX admin", "groups from the directory (the token had an overage)");
    let linked = status_of(&work, "alice").unwrap();
    assert!(
        linked["links"].as_array().unwrap().iter().any(|l| l["source"] == "oidc" && l["external_id"] == "idp-alice")
    );
}

/// What an operator approves never contradicts what the directory says now: a held run is
/// read again at approval, a later complete run supersedes it, and a full run repairs an
/// individual that drifted from its unchanged directory entry.
#[test]
fn held_change_sets_are_never_applied_stale_and_full_runs_repair_drift() {
    let slapd = Slapd::start();
    slapd.ldif(&base_ldif());
    let work = Workdir::new();
    let policy = "mass_deprovision_min = 1\n";
    apply_source(&work, &slapd, ADMIN_DN, ADMIN_PASSWORD, policy, "");
    assert!(work.ok(&["sync", "ldap", "acme", "--full"]).contains("succeeded (full)"));
    let active =
        || ["alice", "bob", "frank"].iter().filter(|l| status_of(&work, l).unwrap()["status"] == "active").count();
    assert_eq!(active(), 3);
    let pending = || -> Vec<Value> {
        work.ok(&["changes", "list", "--status", "pending", "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    // A filter that briefly matches nobody: the guard holds the run.
    let broken = "user_filter = \"(uid=nobody)\"\n";
    apply_source(&work, &slapd, ADMIN_DN, ADMIN_PASSWORD, policy, broken);
    let run = work.ok(&["sync", "ldap", "acme", "--full"]);
    assert!(run.contains("held (full)"), "{run}");
    let held = pending();
    assert_eq!(held.len(), 1, "{held:?}");
    // Fixed before anyone approved: approval reads the directory again and applies what
    // it says now, which takes nobody's access.
    apply_source(&work, &slapd, ADMIN_DN, ADMIN_PASSWORD, policy, "");
    let approved = work.ok(&["changes", "approve", held[0]["id"].as_str().unwrap()]);
    assert!(approved.contains("0 applied"), "{approved}");
    assert_eq!(active(), 3, "the stale held set took nobody's access");

    // Held again, then a complete run with the fixed filter supersedes it: it cannot be
    // approved afterwards.
    apply_source(&work, &slapd, ADMIN_DN, ADMIN_PASSWORD, policy, broken);
    assert!(work.ok(&["sync", "ldap", "acme", "--full"]).contains("held (full)"));
    let held = pending();
    assert_eq!(held.len(), 1);
    apply_source(&work, &slapd, ADMIN_DN, ADMIN_PASSWORD, policy, "");
    let run = work.ok(&["sync", "ldap", "acme", "--full"]);
    assert!(run.contains("succeeded (full)") && run.contains("0 changed, 0 gone"), "{run}");
    assert!(pending().is_empty(), "superseded by the complete run");
    let refused = work.fails(&["changes", "approve", held[0]["id"].as_str().unwrap()]);
    assert!(refused.contains("superseded"), "{refused}");
    assert_eq!(active(), 3);

    // Drift: alice's individual is changed behind idbridge's back (her entry is not). The
    // next full run compares and repairs it though no directory fact changed.
    let db = work.path().join("idbridge.db");
    let out = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE individuals SET status='suspended', version=version+1 WHERE login='alice'\"); c.commit()"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(status_of(&work, "alice").unwrap()["status"], "suspended");
    let run = work.ok(&["sync", "ldap", "acme", "--full"]);
    assert!(run.contains("0 changed, 0 gone, 1 repaired"), "{run}");
    assert_eq!(status_of(&work, "alice").unwrap()["status"], "active");

    // `mapping diff` and the re-map a rule change makes count the same directory people
    // (with the default guard again, which lets a tenant this small lose them).
    apply_source(&work, &slapd, ADMIN_DN, ADMIN_PASSWORD, "", "");
    let current = work.ok(&["mapping", "rules", "acme", "--json"]);
    let mut rules: Vec<Value> = serde_json::from_str(&current).unwrap();
    rules.retain(|r| r["name"] != "pbx admins");
    let file = work.path().join("rules.json");
    std::fs::write(&file, serde_json::to_string(&rules).unwrap()).unwrap();
    let diff = work.ok(&["mapping", "diff", "acme", "--rules", file.to_str().unwrap()]);
    let first_number = |text: &str, after: &str| -> usize {
        let at = text.find(after).unwrap_or_else(|| panic!("{after:?} in {text}")) + after.len();
        text[at..].trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let would = first_number(&diff, "");
    assert!(diff.contains(&format!("{would} of 4 individuals would change")), "{diff}");
    assert!(would >= 3, "{diff}");
    let set = work.ok(&["mapping", "set-rules", "acme", file.to_str().unwrap()]);
    assert_eq!(first_number(&set, "re-mapped acme:"), would, "{diff}\n{set}");
}
