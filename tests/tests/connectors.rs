//! Portal connectors against a real SCIM service provider — the PyPI `scim2-server` — with
//! a fault-injecting proxy in front of it: idbridge carries each individual into the portal
//! (create, change, suspend, reactivate, expire), exactly once per individual whatever the
//! network does, repairs drift, and never touches a portal user it does not manage.

use std::time::{Duration, Instant};

use idbridge_e2e::fault_proxy::{Fault, FaultProxy};
use idbridge_e2e::scim_target::ScimTarget;
use idbridge_e2e::{Daemon, Workdir, workspace_root};
use serde_json::{Value, json};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// `config/examples/acme.toml`, expiring people their source removes (instead of
/// suspending them), with a SCIM connector to `base_url`.
fn apply_with_connector(work: &Workdir, base_url: &str, token: &str) {
    apply_with_connector_and_policy(work, base_url, token, "");
}

/// As `apply_with_connector`, with more policy lines for the tenant.
fn apply_with_connector_and_policy(work: &Workdir, base_url: &str, token: &str, policy: &str) {
    let example = std::fs::read_to_string(workspace_root().join("config/examples/acme.toml")).unwrap();
    let token_file = work.path().join("portal-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let text = example
        .replace("deprovision_action = \"suspend\"", &format!("deprovision_action = \"expire\"\n{policy}"))
        + &format!(
            r#"
[[tenants.connectors]]
name = "portal"
timeout_seconds = 2
max_attempts = 30
[tenants.connectors.scim]
base_url = "{base_url}"
token_file = "{}"
"#,
            token_file.display()
        );
    let file = work.path().join("acme-with-connector.toml");
    std::fs::write(&file, text).unwrap();
    work.ok(&["apply", &file.display().to_string()]);
}

/// Waits until `check` holds for the portal's users with this userName.
async fn until(target: &ScimTarget, user_name: &str, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let users = target.users_named(user_name).await;
        if check(&users) {
            return users;
        }
        assert!(Instant::now() < deadline, "{user_name}: {what} did not happen; the portal holds {users:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn one(users: &[Value]) -> &Value {
    assert_eq!(users.len(), 1, "exactly one remote user: {users:?}");
    &users[0]
}

async fn scim(daemon: &Daemon, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = daemon.client().request(method, daemon.url(&format!("/scim/v2/acme{path}"))).bearer_auth(token);
    if let Some(body) = body {
        request = request.header("content-type", "application/scim+json").body(body.to_string());
    }
    let answer = request.send().await.unwrap();
    assert!(answer.status().is_success(), "{path}: {}", answer.status());
    answer.json().await.unwrap_or(Value::Null)
}

/// Waits until the connector owes nothing, with `conflicts` parked, nothing dead, and not
/// quarantined.
async fn settled(work: &Workdir, conflicts: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: Value =
            serde_json::from_str(&work.ok(&["connector", "status", "acme", "portal", "--json"])).unwrap();
        let links = &status[0]["links"];
        if links["owed"] == 0 && links["retrying"] == 0 {
            assert_eq!(links["conflict"], conflicts, "{status}");
            assert_eq!(links["dead"], 0, "{status}");
            assert!(status[0]["health"]["quarantined_since"].is_null(), "{status}");
            return;
        }
        assert!(Instant::now() < deadline, "links still owed: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A user of the Finance department (an Operations manager, by acme's rules) created at
/// idbridge over SCIM; answers the SCIM resource.
async fn create_finance(daemon: &Daemon, token: &str, user_name: &str) -> Value {
    let body = json!({"userName": user_name, ENTERPRISE: {"department": "Finance"}});
    scim(daemon, token, reqwest::Method::POST, "/Users", Some(body)).await
}

/// A SCIM PATCH of `active` at idbridge, as Entra ID sends a suspension and its undoing.
async fn set_active(daemon: &Daemon, token: &str, path: &str, active: bool) {
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                      "Operations": [{"op": "replace", "path": "active", "value": active}]});
    scim(daemon, token, reqwest::Method::PATCH, path, Some(body)).await;
}

fn individual_id(work: &Workdir, login: &str) -> String {
    let shown: Value = serde_json::from_str(&work.ok(&["individual", "show", "acme", login, "--json"])).unwrap();
    shown["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn individuals_are_carried_into_a_scim_portal_through_faults_each_exactly_once() {
    let target = ScimTarget::start().await;
    let proxy = FaultProxy::start(&target.base).await;
    let work = Workdir::new();
    let token = work.acme_with_scim_token();
    apply_with_connector(&work, &proxy.base, &target.token);
    let daemon = work.serve();

    // Created: Ann is an Operations manager (department Finance), in the portal with
    // idbridge's individual id as externalId.
    let ann = scim(
        &daemon,
        &token,
        reqwest::Method::POST,
        "/Users",
        Some(json!({
        "userName": "ann@acme.example", "name": {"givenName": "Ann", "familyName": "Smith"},
        "emails": [{"value": "ann@acme.example", "type": "work"}], ENTERPRISE: {"department": "Finance"}})),
    )
    .await;
    let ann_scim = ann["id"].as_str().unwrap().to_owned();
    let users = until(&target, "ann@acme.example", "creation", |u| u.len() == 1).await;
    let remote = one(&users);
    assert_eq!(remote["externalId"], individual_id(&work, "ann@acme.example"));
    assert_eq!(remote["active"], true);
    assert_eq!(remote["roles"][0]["value"], "Operations manager");
    assert_eq!(remote["name"]["givenName"], "Ann");
    assert_eq!(remote["emails"][0]["value"], "ann@acme.example");

    // Changed, suspended and reactivated: the same remote user follows.
    let patch = |ops: Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    let path = format!("/Users/{ann_scim}");
    scim(
        &daemon,
        &token,
        reqwest::Method::PATCH,
        &path,
        Some(patch(json!([{"op": "replace", "path": "name.givenName", "value": "Annie"}]))),
    )
    .await;
    until(&target, "ann@acme.example", "the name change", |u| u.len() == 1 && u[0]["name"]["givenName"] == "Annie")
        .await;
    set_active(&daemon, &token, &path, false).await;
    until(&target, "ann@acme.example", "suspension", |u| u.len() == 1 && u[0]["active"] == false).await;
    set_active(&daemon, &token, &path, true).await;
    let users = until(&target, "ann@acme.example", "reactivation", |u| u.len() == 1 && u[0]["active"] == true).await;
    assert_eq!(users[0]["id"], remote["id"], "the same remote object throughout");

    // Changed in the portal meanwhile (an attribute idbridge does not manage; the ETag moves
    // on): idbridge's next update is refused as stale (412), re-reads and lands, and the
    // portal's own attribute stays.
    let remote_id = remote["id"].as_str().unwrap();
    target.patch(remote_id, json!([{"op": "replace", "path": "nickName", "value": "annie-in-the-portal"}])).await;
    let stale_before = proxy.seen("GET");
    scim(
        &daemon,
        &token,
        reqwest::Method::PATCH,
        &path,
        Some(patch(json!([{"op": "replace", "path": "name.familyName", "value": "Jones"}]))),
    )
    .await;
    let users = until(&target, "ann@acme.example", "the update over a stale version", |u| {
        u.len() == 1 && u[0]["name"]["familyName"] == "Jones"
    })
    .await;
    assert_eq!(users[0]["nickName"], "annie-in-the-portal");
    assert!(proxy.seen("GET") > stale_before, "the stale update was followed by a read");

    // A portal user idbridge does not manage, with the login of a new individual: parked
    // as a conflict, never matched by login, never changed.
    let unmanaged = target.create_unmanaged("mallory@acme.example").await;
    create_finance(&daemon, &token, "mallory@acme.example").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: Value =
            serde_json::from_str(&work.ok(&["connector", "status", "acme", "portal", "--json"])).unwrap();
        if status[0]["links"]["conflict"] == 1 {
            let problem = &status[0]["problems"][0];
            assert_eq!(problem["state"], "conflict");
            assert!(problem["last_error"].as_str().unwrap().contains("does not manage"), "{problem}");
            break;
        }
        assert!(Instant::now() < deadline, "no conflict parked: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = work.ok(&["connector", "status", "acme"]);
    assert!(text.contains("conflicts=1") && text.contains("conflict "), "{text}");
    assert_eq!(
        target.users_named("mallory@acme.example").await,
        vec![unmanaged.clone()],
        "the portal's own user is untouched"
    );

    // The network misbehaves while Bob is created: a rate limit with Retry-After, a 503, a
    // creation whose answer is lost after the portal made the user, and then a request
    // that hangs past the timeout. Bob arrives once.
    proxy.inject(Some("POST"), Fault::TooManyRequests(1));
    proxy.inject(Some("POST"), Fault::Unavailable);
    proxy.inject(Some("POST"), Fault::LoseAnswer);
    proxy.inject(None, Fault::Hang(Duration::from_secs(3)));
    let posts_before = proxy.forwarded("POST");
    create_finance(&daemon, &token, "bob@acme.example").await;
    let users = until(&target, "bob@acme.example", "creation through faults", |u| !u.is_empty()).await;
    assert_eq!(proxy.pending(), 0, "every fault was met");
    settled(&work, 1).await;
    let bob = one(&target.users_named("bob@acme.example").await).clone();
    assert_eq!(bob["externalId"], individual_id(&work, "bob@acme.example"));
    assert_eq!(users[0]["id"], bob["id"]);
    // The push after the lost answer found Bob by his id instead of creating him again.
    assert_eq!(proxy.forwarded("POST") - posts_before, 1, "one creation: the retry looked Bob up first");

    // Deleted in the portal behind idbridge's back: a resync creates Ann again.
    let ann_remote = one(&target.users_named("ann@acme.example").await).clone();
    target.delete(ann_remote["id"].as_str().unwrap()).await;
    let said = work.ok(&["connector", "resync", "acme", "portal"]);
    assert!(said.contains("owe a push"), "{said}");
    let users = until(&target, "ann@acme.example", "re-creation", |u| u.len() == 1).await;
    assert_ne!(users[0]["id"], ann_remote["id"]);
    assert_eq!(users[0]["externalId"], ann_remote["externalId"]);
    assert_eq!(
        target.users_named("mallory@acme.example").await,
        vec![unmanaged.clone()],
        "a resync leaves it alone too"
    );

    // The portal is down for a while: changes wait, then arrive in order.
    proxy.set_down(true);
    for name in ["carol", "dave"] {
        create_finance(&daemon, &token, &format!("{name}@acme.example")).await;
    }
    // Bob is suspended and reactivated while the portal is down: it ends active.
    let bob_scim =
        scim(&daemon, &token, reqwest::Method::GET, "/Users?filter=userName%20eq%20%22bob@acme.example%22", None).await
            ["Resources"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let bob_path = format!("/Users/{bob_scim}");
    set_active(&daemon, &token, &bob_path, false).await;
    set_active(&daemon, &token, &bob_path, true).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status: Value = serde_json::from_str(&work.ok(&["connector", "status", "acme", "portal", "--json"])).unwrap();
    assert!(status[0]["links"]["retrying"].as_u64().unwrap() >= 1, "the outage shows: {status}");
    proxy.set_down(false);
    for name in ["carol", "dave"] {
        until(&target, &format!("{name}@acme.example"), "catching up", |u| u.len() == 1).await;
    }
    until(&target, "bob@acme.example", "Bob's last state", |u| u.len() == 1 && u[0]["active"] == true).await;

    // Expired (the source removed Ann; the policy expires): deleted in the portal.
    scim(&daemon, &token, reqwest::Method::DELETE, &path, None).await;
    until(&target, "ann@acme.example", "deletion", <[Value]>::is_empty).await;

    // In the end: one remote user per individual, each carrying its id; the portal's own
    // user as it was.
    settled(&work, 1).await;
    let users = target.users().await;
    let mut names: Vec<&str> = users.iter().map(|u| u["userName"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["bob@acme.example", "carol@acme.example", "dave@acme.example", "mallory@acme.example"]);
    for user in &users {
        if user["userName"] != "mallory@acme.example" {
            let login = user["userName"].as_str().unwrap();
            assert_eq!(user["externalId"], individual_id(&work, login));
        }
    }
    assert_eq!(target.users_named("mallory@acme.example").await, vec![unmanaged]);
}

/// Three `serve` processes on one PostgreSQL database: one of them pushes (the connector's
/// lease), so each individual is created in the portal once. A portal that keeps failing
/// puts the connector in quarantine — one probe every 30 s, said by `connector status`,
/// `/readyz` and `/metrics` — and when it answers again everything owed arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_push_each_change_once_and_a_failing_portal_is_quarantined_then_caught_up() {
    let Some(db) = idbridge_e2e::SharedPgDatabase::create("idbridge_connectors") else { return };
    let target = ScimTarget::start().await;
    let proxy = FaultProxy::start(&target.base).await;
    let work = Workdir::new().with_env("IDBRIDGE_DATABASE__URL", &db.url);
    let token = work.acme_with_scim_token();
    apply_with_connector(&work, &proxy.base, &target.token);
    // Two refusals kill a link; an outage, however long, does not.
    let file = work.path().join("acme-with-connector.toml");
    let text = std::fs::read_to_string(&file).unwrap().replace("max_attempts = 30", "max_attempts = 2");
    std::fs::write(&file, text).unwrap();
    work.ok(&["apply", &file.display().to_string()]);
    let daemons = [work.serve(), work.serve(), work.serve()];
    proxy.set_down(true);
    const PEOPLE: usize = 12;
    for n in 0..PEOPLE {
        let user = json!({"userName": format!("p{n:02}@acme.example"), ENTERPRISE: {"department": "Finance"}});
        daemons[n % 3].scim_post(&token, "acme", "/Users", user).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status: Value =
            serde_json::from_str(&work.ok(&["connector", "status", "acme", "portal", "--json"])).unwrap();
        if !status[0]["health"]["quarantined_since"].is_null() {
            break status;
        }
        assert!(Instant::now() < deadline, "never quarantined: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status[0]["health"]["last_error"].as_str().unwrap().contains("503"), "{status}");
    assert!(work.ok(&["connector", "list", "acme"]).contains("QUARANTINED"));
    for daemon in &daemons {
        let ready: Value = daemon.get_json("/readyz", "").await;
        assert_eq!(ready["status"], "ready", "a failing portal does not make idbridge unready");
        assert_eq!(ready["connectors"]["quarantined"][0]["connector"], "portal", "{ready}");
        assert_eq!(ready["connectors"]["quarantined"][0]["tenant"], "acme", "{ready}");
    }
    // Quarantined, the connector only probes now and then.
    let seen = proxy.seen("GET") + proxy.seen("POST");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(proxy.seen("GET") + proxy.seen("POST") - seen <= 1, "more than a probe while quarantined");
    let mut metrics = String::new();
    for daemon in &daemons {
        metrics += &daemon.client().get(daemon.url("/metrics")).send().await.unwrap().text().await.unwrap();
    }
    let quarantined = metrics.lines().find(|l| l.starts_with("idbridge_connector_quarantined{")).unwrap_or("");
    assert!(quarantined.contains("connector=\"portal\"") && quarantined.ends_with(" 1"), "{quarantined:?}");

    proxy.set_down(false);
    settled(&work, 0).await;
    let users = target.users().await;
    assert_eq!(users.len(), PEOPLE, "each person once: {users:?}");
    assert_eq!(proxy.forwarded("POST"), PEOPLE, "each creation sent once, by one instance");
    for user in &users {
        assert_eq!(user["externalId"], individual_id(&work, user["userName"].as_str().unwrap()));
    }
}

/// The deletion guard at the portal: disables the individuals' own changes explain pass
/// (they passed idbridge's guard already), but disables a drift repair finds — users
/// re-enabled in the portal behind idbridge's back — count against the tenant's
/// mass-deprovision threshold and are held in a change set: rejected, nothing changes in
/// the portal; approved, they are pushed. A few such disables, under the threshold, pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disables_a_drift_repair_would_make_in_bulk_are_held_like_any_mass_deprovision() {
    let target = ScimTarget::start().await;
    let work = Workdir::new();
    let token = work.acme_with_scim_token();
    // Each SCIM request judged on its own at idbridge (no window), 20% and 3 people at the portal.
    apply_with_connector_and_policy(
        &work,
        &target.base,
        &target.token,
        "mass_deprovision_percent = 20\nmass_deprovision_min = 3\nmass_deprovision_window_minutes = 0",
    );
    let daemon = work.serve();
    let mut ids = Vec::new();
    for n in 0..6 {
        let user = json!({"userName": format!("g{n}@acme.example"), ENTERPRISE: {"department": "Finance"}});
        ids.push(daemon.scim_post(&token, "acme", "/Users", user).await["id"].as_str().unwrap().to_owned());
    }
    for n in 0..6 {
        until(&target, &format!("g{n}@acme.example"), "creation", |u| u.len() == 1 && u[0]["active"] == true).await;
    }
    // Four leave, one request each: explained by the individuals, pushed at once.
    for id in &ids[..4] {
        let path = format!("/Users/{id}");
        set_active(&daemon, &token, &path, false).await;
    }
    for n in 0..4 {
        until(&target, &format!("g{n}@acme.example"), "suspension", |u| u.len() == 1 && u[0]["active"] == false).await;
    }
    settled(&work, 0).await;

    // Someone re-enables the four in the portal; a resync finds it and would disable them
    // again: 4 of the 6 users active in the portal is past the threshold — held.
    let target = &target;
    let reenable = |n: usize| async move {
        let user = target.users_named(&format!("g{n}@acme.example")).await.remove(0);
        target.patch(user["id"].as_str().unwrap(), json!([{"op": "replace", "path": "active", "value": true}])).await;
    };
    for n in 0..4 {
        reenable(n).await;
    }
    work.ok(&["connector", "resync", "acme", "portal"]);
    let held = held_set(&work, 1).await;
    assert_eq!(held["summary"]["takes_access"], 4, "{held}");
    let set = held["id"].as_str().unwrap().to_owned();
    let shown = work.ok(&["changes", "show", &set]);
    assert!(shown.contains("g0@acme.example") && shown.contains("g3@acme.example"), "{shown}");
    for n in 0..6 {
        assert_eq!(one(&target.users_named(&format!("g{n}@acme.example")).await)["active"], true, "held: untouched");
    }
    let status: Value = serde_json::from_str(&work.ok(&["connector", "status", "acme", "portal", "--json"])).unwrap();
    assert_eq!(status[0]["links"]["held"], 4, "{status}");

    // Rejected: the portal keeps them; the links are parked until a resync.
    work.ok(&["changes", "reject", &set]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in 0..4 {
        assert_eq!(
            one(&target.users_named(&format!("g{n}@acme.example")).await)["active"],
            true,
            "rejected: untouched"
        );
    }
    settled(&work, 4).await;

    // Asked again by a resync, held again; approved, pushed.
    work.ok(&["connector", "resync", "acme", "portal"]);
    let held = held_set(&work, 2).await;
    work.ok(&["changes", "approve", held["id"].as_str().unwrap()]);
    for n in 0..4 {
        until(target, &format!("g{n}@acme.example"), "the approved disable", |u| {
            u.len() == 1 && u[0]["active"] == false
        })
        .await;
    }
    settled(&work, 0).await;

    // One re-enabled in the portal: under the threshold, a repair simply disables it again.
    reenable(0).await;
    work.ok(&["connector", "resync", "acme", "portal"]);
    until(target, "g0@acme.example", "the repair", |u| u.len() == 1 && u[0]["active"] == false).await;
    settled(&work, 0).await;
    let sets = work.ok(&["changes", "list", "--tenant", "acme", "--json"]);
    assert_eq!(sets.lines().count(), 2, "no third set: {sets}");
    for n in 4..6 {
        assert_eq!(one(&target.users_named(&format!("g{n}@acme.example")).await)["active"], true, "the two who stayed");
    }
}

/// Waits for the `nth` change set the connector's guard held, pending; answers it.
async fn held_set(work: &Workdir, nth: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sets: Vec<Value> = work
            .ok(&["changes", "list", "--tenant", "acme", "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let pending: Vec<&Value> = sets.iter().filter(|s| s["status"] == "pending").collect();
        if sets.len() >= nth && pending.len() == 1 {
            let set = pending[0].clone();
            assert_eq!(set["origin"], "disables by connector portal", "{set}");
            return set;
        }
        assert!(Instant::now() < deadline, "no held set {nth}: {sets:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `kill -9` of idbridge while a creation is on its way to the portal (the portal makes the
/// user after idbridge died): the next process looks the person up before creating, so the
/// user exists once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_creation_interrupted_by_kill_9_is_not_made_twice() {
    let target = ScimTarget::start().await;
    let proxy = FaultProxy::start(&target.base).await;
    let work = Workdir::new();
    let token = work.acme_with_scim_token();
    apply_with_connector(&work, &proxy.base, &target.token);
    let mut daemon = work.serve();
    proxy.inject(Some("POST"), Fault::LateAnswer(Duration::from_secs(30)));
    let user = json!({"userName": "kim@acme.example", ENTERPRISE: {"department": "Finance"}});
    daemon.scim_post(&token, "acme", "/Users", user).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.seen("POST") == 0 {
        assert!(Instant::now() < deadline, "no creation was sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    // The portal made the user; idbridge died before its answer came.
    until(&target, "kim@acme.example", "the interrupted creation", |u| u.len() == 1).await;
    let _daemon = work.serve();
    settled(&work, 0).await;
    let kim = one(&target.users_named("kim@acme.example").await).clone();
    assert_eq!(kim["externalId"], individual_id(&work, "kim@acme.example"));
    assert_eq!(proxy.forwarded("POST"), 1, "created once");
}

/// Yeti, against a stand-in written from yeti-web's code and specs (`idbridge_e2e::yeti`):
/// each active individual is a customer portal login of the tenant's Yeti customer,
/// namespaced by the tenant; suspension deletes it and reactivation makes it again; an
/// expired admin JWT is obtained again; a login another customer holds is a conflict; a
/// login a lost creation left is found and kept; a customer token carries the Yeti profile
/// the individual's access profile maps to.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn individuals_become_yeti_customer_portal_logins_and_tokens() {
    use idbridge_e2e::yeti::YetiStandIn;
    let yeti = YetiStandIn::start("idbridge", "yeti-admin-secret", Duration::from_secs(2)).await;
    let (portal_token, hash) = idbridge_e2e::new_token();
    let work = Workdir::new().with_env("IDBRIDGE_PORTAL__TOKEN_HASHES", &format!("[\"{hash}\"]"));
    let token = work.acme_with_scim_token();
    let password_file = work.path().join("yeti-password");
    std::fs::write(&password_file, "yeti-admin-secret\n").unwrap();
    let example = std::fs::read_to_string(workspace_root().join("config/examples/acme.toml")).unwrap();
    let connector = |acknowledged: bool| {
        format!(
            r#"
[[tenants.connectors]]
name = "yeti"
[tenants.connectors.yeti]
base_url = "{}"
username = "idbridge"
password_file = "{}"
customer_id = 42
allowed_ips = ["10.0.0.0/8"]
access_profiles = {{ "Billing only" = 7, "Full portal" = 3 }}
acknowledge_default_profile = {acknowledged}
"#,
            yeti.base,
            password_file.display()
        )
    };
    let file = work.path().join("acme-yeti.toml");
    std::fs::write(&file, example.clone() + &connector(false)).unwrap();
    let refused = work.fails(&["apply", &file.display().to_string()]);
    assert!(refused.contains("acknowledge_default_profile") && refused.contains("default access profile"), "{refused}");
    std::fs::write(&file, example + &connector(true)).unwrap();
    work.ok(&["apply", &file.display().to_string()]);
    // Already in Yeti: another customer's login with the namespaced name of Mallory, and
    // Bob's login under this customer, as a creation whose answer was lost leaves it.
    yeti.add_access(99, "acme.mallory@acme.example");
    let bobs = yeti.add_access(42, "acme.bob@acme.example");
    let daemon = work.serve();

    let access_of = |login: &str| yeti.accesses().into_iter().filter(|a| a.login == login).collect::<Vec<_>>();
    let wait = |login: &'static str, what: &'static str, check: fn(&[idbridge_e2e::yeti::ApiAccess]) -> bool| {
        let access_of = &access_of;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let found = access_of(login);
                if check(&found) {
                    return found;
                }
                assert!(Instant::now() < deadline, "{login}: {what} did not happen: {found:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let ann = daemon
        .scim_post(
            &token,
            "acme",
            "/Users",
            json!({"userName": "ann@acme.example", ENTERPRISE: {"department": "Finance"}}),
        )
        .await;
    let ann_path = format!("/Users/{}", ann["id"].as_str().unwrap());
    let found = wait("acme.ann@acme.example", "creation", |a| a.len() == 1).await;
    assert_eq!(found[0].customer_id, 42);
    assert_eq!(found[0].allowed_ips, ["10.0.0.0/8"]);
    assert!(found[0].password.len() >= 32, "a generated password");
    assert!(found[0].account_ids.is_empty());

    // A billing account given by hand reaches Yeti as an account id — after the admin JWT
    // expired, so the connector signs in again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    work.ok(&["individual", "set", "acme", "ann@acme.example", "--add-scope", "billing_accounts=17"]);
    let found = wait("acme.ann@acme.example", "the account", |a| a.len() == 1 && a[0].account_ids == [17]).await;
    let first_id = found[0].id;
    assert!(yeti.sign_ins() >= 2, "the expired JWT was obtained again");

    // A customer token for Ann carries the Yeti profile of "Billing only" and her account.
    let mint = || {
        daemon
            .client()
            .post(daemon.url("/portal/v1/tenants/acme/individuals/ann@acme.example/yeti-token"))
            .bearer_auth(&portal_token)
            .send()
    };
    let minted: Value = mint().await.unwrap().json().await.unwrap();
    assert!(minted["token"].as_str().unwrap().starts_with("customer-token-"), "{minted}");
    assert_eq!(minted["access_profile_id"], 7);
    let recorded = yeti.tokens().pop().unwrap();
    assert_eq!((recorded.customer_id.as_str(), recorded.access_profile_id), ("42", 7));
    assert_eq!(recorded.account_ids, ["17"]);
    assert_eq!(recorded.allowed_ips, ["10.0.0.0/8"]);
    let audit = work.ok(&["audit", "acme", "--json"]);
    assert!(
        audit.contains("connector.customer_token") && !audit.contains("customer-token-1"),
        "audited, without the token"
    );

    // A disabled tenant's people get no token.
    work.ok(&["tenant", "disable", "acme"]);
    assert_eq!(mint().await.unwrap().status(), 403, "no token for a disabled tenant");
    work.ok(&["tenant", "enable", "acme"]);

    // Suspended: the login is deleted (Yeti's only immediate revocation), and no token.
    set_active(&daemon, &token, &ann_path, false).await;
    wait("acme.ann@acme.example", "deletion", <[_]>::is_empty).await;
    let refused = mint().await.unwrap();
    assert_eq!(refused.status(), 409, "no token for a suspended individual");
    // Reactivated: made again.
    set_active(&daemon, &token, &ann_path, true).await;
    let found = wait("acme.ann@acme.example", "re-creation", |a| a.len() == 1).await;
    assert_ne!(found[0].id, first_id);
    assert_eq!(found[0].account_ids, [17]);

    // Bob's login was there already under this customer: kept, not made twice.
    daemon
        .scim_post(
            &token,
            "acme",
            "/Users",
            json!({"userName": "bob@acme.example", ENTERPRISE: {"department": "Finance"}}),
        )
        .await;
    // Mallory's namespaced login belongs to another customer: a conflict, left alone.
    daemon
        .scim_post(
            &token,
            "acme",
            "/Users",
            json!({"userName": "mallory@acme.example", ENTERPRISE: {"department": "Finance"}}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status: Value = serde_json::from_str(&work.ok(&["connector", "status", "acme", "yeti", "--json"])).unwrap();
        if status[0]["links"]["owed"] == 0 && status[0]["links"]["conflict"] == 1 {
            break status;
        }
        assert!(Instant::now() < deadline, "not settled: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status[0]["kind"], "yeti");
    assert!(status[0]["problems"][0]["last_error"].as_str().unwrap().contains("Yeti customer 99"), "{status}");
    let bob = access_of("acme.bob@acme.example");
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].id, bobs, "the login that was there is kept");
    let mallory = access_of("acme.mallory@acme.example");
    assert_eq!((mallory.len(), mallory[0].customer_id, mallory[0].password.as_str()), (1, 99, "set-in-yeti"));
}

/// The connector is pointed at another portal (a changed configuration): everyone is
/// pushed again, read back first — missing there, so created — and the old portal is left
/// as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connector_pointed_elsewhere_pushes_everyone_again() {
    let old = ScimTarget::start().await;
    let new = ScimTarget::start().await;
    let work = Workdir::new();
    let token = work.acme_with_scim_token();
    apply_with_connector(&work, &old.base, &old.token);
    let daemon = work.serve();
    for name in ["ivy", "joe"] {
        let user = json!({"userName": format!("{name}@acme.example"), ENTERPRISE: {"department": "Finance"}});
        daemon.scim_post(&token, "acme", "/Users", user).await;
    }
    for name in ["ivy", "joe"] {
        until(&old, &format!("{name}@acme.example"), "creation", |u| u.len() == 1).await;
    }
    settled(&work, 0).await;
    apply_with_connector(&work, &new.base, &new.token);
    for name in ["ivy", "joe"] {
        let users = until(&new, &format!("{name}@acme.example"), "creation at the new portal", |u| u.len() == 1).await;
        assert_eq!(users[0]["externalId"], individual_id(&work, &format!("{name}@acme.example")));
    }
    settled(&work, 0).await;
    assert_eq!(old.users().await.len(), 2, "the old portal as it was");
}

/// OAuth 2.0 client credentials instead of a fixed token: idbridge gets its access token
/// from the portal's authorization server (the npm `oidc-provider`), which the portal (the
/// proxy, by introspection) checks; the token is reused while it lives and obtained again
/// when the portal refuses an expired one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scim_portal_behind_oauth_client_credentials() {
    use idbridge_e2e::fault_proxy::Introspection;
    let target = ScimTarget::start().await;
    let idp = idbridge_e2e::idp::Idp::start(json!({
        "keys": [idbridge_e2e::idp::generate_key("k1")],
        "client_credentials": true,
        // The access tokens live 3 s, so that one expires during the test.
        "ttl": {"ClientCredentials": 3},
        "clients": [
            {"client_id": "idbridge-connector", "client_secret": "connector-client-secret-0123456789",
             "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": []},
            {"client_id": "portal", "client_secret": "portal-introspection-secret-0123456789",
             "grant_types": [], "response_types": [], "redirect_uris": []},
        ],
        "users": {},
    }));
    let proxy = FaultProxy::start_checking(
        &target.base,
        Some(Introspection {
            url: format!("{}/token/introspection", idp.issuer),
            client_id: "portal".into(),
            client_secret: "portal-introspection-secret-0123456789".into(),
            backend_token: target.token.clone(),
        }),
    )
    .await;
    let work = Workdir::new();
    let token = work.acme_with_scim_token();
    let secret_file = work.path().join("client-secret");
    std::fs::write(&secret_file, "connector-client-secret-0123456789\n").unwrap();
    let example = std::fs::read_to_string(workspace_root().join("config/examples/acme.toml")).unwrap();
    let text = example
        + &format!(
            r#"
[[tenants.connectors]]
name = "portal"
timeout_seconds = 2
[tenants.connectors.scim]
base_url = "{}"
[tenants.connectors.scim.oauth]
token_url = "{}/token"
client_id = "idbridge-connector"
client_secret_file = "{}"
"#,
            proxy.base,
            idp.issuer,
            secret_file.display()
        );
    let file = work.path().join("acme-oauth.toml");
    std::fs::write(&file, text).unwrap();
    work.ok(&["apply", &file.display().to_string()]);
    let daemon = work.serve();
    for name in ["kai", "lea"] {
        let user = json!({"userName": format!("{name}@acme.example"), ENTERPRISE: {"department": "Finance"}});
        daemon.scim_post(&token, "acme", "/Users", user).await;
        until(&target, &format!("{name}@acme.example"), "creation", |u| u.len() == 1).await;
    }
    assert_eq!(proxy.tokens_seen(), 1, "one token for both while it lives");
    // The token expires: a new one is obtained before the next push.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let user = json!({"userName": "max@acme.example", ENTERPRISE: {"department": "Finance"}});
    daemon.scim_post(&token, "acme", "/Users", user).await;
    until(&target, "max@acme.example", "creation with a new token", |u| u.len() == 1).await;
    assert_eq!(proxy.tokens_seen(), 2);
    // The portal refuses a token that still lives (revoked): answered by a new one at once.
    proxy.revoke_tokens();
    let user = json!({"userName": "noa@acme.example", ENTERPRISE: {"department": "Finance"}});
    daemon.scim_post(&token, "acme", "/Users", user).await;
    until(&target, "noa@acme.example", "creation after a refused token", |u| u.len() == 1).await;
    assert_eq!((proxy.tokens_seen(), proxy.unauthorized()), (3, 1), "one refusal, one new token");
    settled(&work, 0).await;
    assert_eq!(target.users().await.len(), 4);
}

/// The portal is down for a long time (`IDBRIDGE_TEST_OUTAGE_SECONDS`, 20 by default; run by
/// hand with 600 for issue 18's ten minutes) while people come, change and leave: nobody's
/// link gives up (an outage is not a refusal), the connector is quarantined and probes, and
/// once the portal answers everyone arrives within a probe's interval, each in their last
/// state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_portal_down_for_long_catches_up_in_order() {
    let outage: u64 = std::env::var("IDBRIDGE_TEST_OUTAGE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let target = ScimTarget::start().await;
    let proxy = FaultProxy::start(&target.base).await;
    let work = Workdir::new();
    let token = work.acme_with_scim_token();
    apply_with_connector(&work, &proxy.base, &target.token);
    let daemon = work.serve();
    proxy.set_down(true);
    let mut ids = Vec::new();
    for n in 0..12 {
        let user = json!({"userName": format!("o{n:02}@acme.example"), ENTERPRISE: {"department": "Finance"}});
        ids.push(daemon.scim_post(&token, "acme", "/Users", user).await["id"].as_str().unwrap().to_owned());
    }
    // During the outage: o00 suspended and back, o01 suspended, o02 gone.
    set_active(&daemon, &token, &format!("/Users/{}", ids[0]), false).await;
    set_active(&daemon, &token, &format!("/Users/{}", ids[0]), true).await;
    set_active(&daemon, &token, &format!("/Users/{}", ids[1]), false).await;
    scim(&daemon, &token, reqwest::Method::DELETE, &format!("/Users/{}", ids[2]), None).await;
    tokio::time::sleep(Duration::from_secs(outage)).await;
    let status: Value = serde_json::from_str(&work.ok(&["connector", "status", "acme", "portal", "--json"])).unwrap();
    assert_eq!(status[0]["links"]["dead"], 0, "an outage kills no link: {status}");
    assert!(!status[0]["health"]["quarantined_since"].is_null(), "quarantined: {status}");
    proxy.set_down(false);
    let back = Instant::now();
    let deadline = back + Duration::from_secs(60);
    loop {
        let users = target.users().await;
        if users.len() == 11 {
            break;
        }
        assert!(Instant::now() < deadline, "not caught up a minute after the portal came back: {} users", users.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    settled(&work, 0).await;
    eprintln!("caught up {:.1} s after a {outage} s outage", back.elapsed().as_secs_f64());
    let users = target.users().await;
    let active = |n: usize| {
        let name = format!("o{n:02}@acme.example");
        users.iter().find(|u| u["userName"] == name.as_str()).map(|u| u["active"].clone())
    };
    assert_eq!(active(0), Some(json!(true)), "suspended and back: active");
    assert_eq!(active(1), Some(json!(false)), "suspended: inactive");
    assert_eq!(active(2), None, "gone: never created");
    for n in 3..12 {
        assert_eq!(active(n), Some(json!(true)));
    }
}
