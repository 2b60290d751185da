//! Three `idbridge serve` processes on one PostgreSQL database, with the clients spread
//! over them. One is killed in the middle of the load and comes back: every
//! acknowledged person has their individual. Then, with all three running, a scheduled
//! expiry of every person happens once — one audit record and one webhook event each —
//! although each instance's scheduler and webhook sender sees it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idbridge_e2e::Workdir;
use serde_json::{Value, json};

const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const PEOPLE: usize = 45;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_database_do_everything_once() {
    let Some(db) = idbridge_e2e::SharedPgDatabase::create("idbridge_instances") else { return };
    // The webhook receiver counts deliveries by event id (the idempotency key).
    let received: Arc<Mutex<HashMap<String, (String, usize)>>> = Arc::default();
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let received = received.clone();
                async move {
                    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    let mut got = received.lock().unwrap();
                    got.entry(h("idempotency-key")).or_insert_with(|| (h("x-idbridge-event"), 0)).1 += 1;
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let work = Workdir::new()
        .with_env("IDBRIDGE_DATABASE__URL", &db.url)
        .with_env("IDBRIDGE_WEBHOOK__URL", &hook)
        .with_env("IDBRIDGE_WEBHOOK__SECRET", "a-webhook-secret-of-some-length")
        .with_env("IDBRIDGE_LIFECYCLE__TICK_SECONDS", "1");
    let token = work.acme_with_scim_token();
    let mut daemons = [work.serve(), work.serve(), work.serve()];
    let group = daemons[0].scim_post(&token, "acme", "/Groups", json!({"displayName": "pbx-admins"})).await;
    let group = group["id"].as_str().unwrap().to_owned();

    // Everyone expires at one instant, a little after the load.
    let expires = wall_clock() + jiff::SignedDuration::from_secs(25);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut acked = Vec::new();
    for n in 0..PEOPLE {
        if n == PEOPLE / 2 {
            // The second instance dies in the middle of the load.
            daemons[1].child.kill().unwrap();
            daemons[1].child.wait().unwrap();
        }
        // Round robin over the instances that are up.
        let at = if n < PEOPLE / 2 { &daemons[n % 3] } else { &daemons[[0, 2][n % 2]] };
        let user = json!({
            "userName": format!("p{n:02}@acme.example"),
            "urn:idbridge:params:scim:schemas:extension:portal:2.0:User": {"expirationDateTime": expires.to_string()},
        });
        let id = at.scim_post(&token, "acme", "/Users", user).await["id"].as_str().unwrap().to_owned();
        let added = http
            .patch(at.url(&format!("/scim/v2/acme/Groups/{group}")))
            .bearer_auth(&token)
            .json(&json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(added.status(), 204);
        acked.push(id);
    }
    daemons[1] = work.serve();

    // Everyone acknowledged is an active PBX admin, whichever instance took the write.
    let list = || {
        let out = work.ok(&["individual", "list", "acme", "--limit", "1000", "--json"]);
        serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let active = list().iter().filter(|i| i["status"] == "active" && i["role"] == "PBX admin").count();
        if active == PEOPLE {
            break;
        }
        assert!(Instant::now() < deadline, "{active} of {PEOPLE} active PBX admins");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The expiry: three schedulers, one transition each.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let expired = list().iter().filter(|i| i["status"] == "expired").count();
        if expired == PEOPLE {
            break;
        }
        assert!(Instant::now() < deadline, "{expired} of {PEOPLE} expired");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let audit = work.ok(&["audit", "acme", "--json", "--limit", "100000"]);
    let mut expiries: HashMap<String, usize> = HashMap::new();
    for line in audit.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        if entry["action"] == "individual.scheduled" {
            *expiries.entry(entry["subject_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    assert_eq!(expiries.len(), PEOPLE, "{expiries:?}");
    assert!(expiries.values().all(|n| *n == 1), "an expiry recorded twice: {expiries:?}");

    // The webhook: one delivery per event while all three run (the instance killed earlier
    // may have left one event to be delivered again after it — at least once, keyed).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let expired_events = received.lock().unwrap().values().filter(|(kind, _)| kind == "individual.expired").count();
        if expired_events == PEOPLE {
            break;
        }
        assert!(Instant::now() < deadline, "{expired_events} of {PEOPLE} expiry events delivered");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let twice: Vec<(String, (String, usize))> = received
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, (kind, n))| kind == "individual.expired" && *n > 1)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(twice.is_empty(), "expiry events delivered more than once: {twice:?}");
}

/// A thousand tenants in one PostgreSQL database (each with the example's rules): the
/// daemon is ready at once, idles in bounded memory, and the listings answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tenants_start_at_once_in_bounded_memory() {
    let Some(db) = idbridge_e2e::SharedPgDatabase::create("idbridge_tenants") else { return };
    let work = Workdir::new().with_env("IDBRIDGE_DATABASE__URL", &db.url);
    let example = std::fs::read_to_string(idbridge_e2e::workspace_root().join("config/examples/acme.toml")).unwrap();
    let (head, tenant) = example.split_at(example.find("[[tenants]]").unwrap());
    let mut doc = head.to_owned();
    for n in 0..1000 {
        doc += &tenant
            .replace("slug = \"acme\"", &format!("slug = \"t{n:04}\""))
            .replace("name = \"ACME Corporation\"", &format!("name = \"Tenant {n}\""));
    }
    let file = work.path().join("tenants.toml");
    std::fs::write(&file, doc).unwrap();
    work.ok(&["apply", file.to_str().unwrap()]);

    let started = Instant::now();
    let daemon = work.serve();
    let ready = daemon.client().get(daemon.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(10), "ready after {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(6)).await; // every background loop has run
    let rss = idbridge_e2e::rss_kib(daemon.child.id());
    assert!(rss < 200 * 1024, "{rss} KiB idle with 1,000 tenants");
    assert_eq!(work.ok(&["tenant", "list"]).lines().count(), 1000);
    let listing = daemon.client().get(daemon.url("/scim/v2/t0999/Users")).send().await.unwrap();
    assert_eq!(listing.status(), 401, "each tenant's SCIM endpoint is there (and closed without its token)");
}

/// The wall clock (the daemons under test read it too).
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> jiff::Timestamp {
    jiff::Timestamp::now()
}
