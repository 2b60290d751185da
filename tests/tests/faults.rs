//! Reconciliation never loses a person: the real binary under concurrent SCIM writes
//! (creates, and member adds into a group a rule maps) is killed with SIGKILL at random
//! moments and restarted, or has its database stopped under it; afterwards every person in
//! the granting group has the right individual, without anyone retrying anything.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idbridge_e2e::{Daemon, Workdir};
use serde_json::{Value, json};

const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const CLIENTS: usize = 8;

/// What the clients were told succeeded.
#[derive(Default)]
struct Acked {
    users: Mutex<Vec<String>>,
    members: Mutex<Vec<String>>,
    /// Statuses of answers that were not a success, by code.
    refused: Mutex<HashMap<u16, usize>>,
}

/// A pseudo-random number in 0..n (the test needs no reproducible sequence, just spread).
fn random(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    u64::from(nanos.wrapping_mul(2_654_435_761)) % n.max(1)
}

/// Eight clients that create users and add each to `group`, until `stop`.
fn start_load(
    base: &str,
    token: &str,
    group: &str,
    round: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Acked>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    (0..CLIENTS)
        .map(|client| {
            let (http, stop, acked) = (http.clone(), stop.clone(), acked.clone());
            let (base, token, group) = (base.to_owned(), token.to_owned(), group.to_owned());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let refuse = |status: u16| *acked.refused.lock().unwrap().entry(status).or_default() += 1;
                    let created = http
                        .post(format!("{base}/scim/v2/acme/Users"))
                        .bearer_auth(&token)
                        .json(&json!({"userName": format!("r{round}-c{client}-{n}@acme.example")}))
                        .send()
                        .await;
                    let id = match created {
                        Ok(r) if r.status() == 201 => match r.json::<Value>().await {
                            Ok(v) => v["id"].as_str().unwrap().to_owned(),
                            Err(_) => continue,
                        },
                        Ok(r) => {
                            refuse(r.status().as_u16());
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    acked.users.lock().unwrap().push(id.clone());
                    let added = http
                        .patch(format!("{base}/scim/v2/acme/Groups/{group}"))
                        .bearer_auth(&token)
                        .json(&json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]}))
                        .send()
                        .await;
                    match added {
                        Ok(r) if r.status() == 204 => acked.members.lock().unwrap().push(id),
                        Ok(r) => refuse(r.status().as_u16()),
                        Err(_) => {}
                    }
                }
            })
        })
        .collect()
}

/// Members of the group as stored, and the individuals by SCIM id (role, status).
async fn members_and_individuals(
    work: &Workdir,
    daemon: &Daemon,
    token: &str,
    group: &str,
) -> Result<(HashSet<String>, HashMap<String, (String, String)>), String> {
    let shown: Value = daemon
        .client()
        .get(daemon.url(&format!("/scim/v2/acme/Groups/{group}")))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let members: HashSet<String> = shown["members"]
        .as_array()
        .map(|m| m.iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    let out = work.run(&["individual", "list", "acme", "--limit", "100000", "--json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let list: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let mut individuals = HashMap::new();
    for i in list.as_array().into_iter().flatten() {
        for link in i["links"].as_array().into_iter().flatten() {
            if link["source"] == "scim" {
                individuals.insert(
                    link["external_id"].as_str().unwrap().to_owned(),
                    (i["role"].as_str().unwrap_or("").to_owned(), i["status"].as_str().unwrap_or("").to_owned()),
                );
            }
        }
    }
    Ok((members, individuals))
}

/// Waits up to `limit` for every member of the group to have an active PBX admin
/// individual; the people still wrong otherwise.
async fn converged(work: &Workdir, daemon: &Daemon, token: &str, group: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let wrong = match members_and_individuals(work, daemon, token, group).await {
            Ok((members, individuals)) => members
                .iter()
                .filter(|m| individuals.get(*m).is_none_or(|(role, status)| role != "PBX admin" || status != "active"))
                .cloned()
                .collect(),
            Err(e) => vec![format!("cannot read: {e}")],
        };
        if wrong.is_empty() || Instant::now() > deadline {
            return wrong;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create_group(daemon: &Daemon, token: &str) -> String {
    let group: Value = daemon
        .client()
        .post(daemon.url("/scim/v2/acme/Groups"))
        .bearer_auth(token)
        .json(&json!({"displayName": "pbx-admins"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    group["id"].as_str().unwrap().to_owned()
}

/// `kills` rounds of load, SIGKILL at a random moment, restart, and the check.
async fn kill_under_load(work: Workdir, kills: usize) {
    let token = work.acme_with_scim_token();
    let mut daemon = work.serve();
    let group = create_group(&daemon, &token).await;
    let acked = Arc::new(Acked::default());
    let mut missing_total = 0;
    for round in 0..kills {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = start_load(&daemon.base, &token, &group, round, stop.clone(), acked.clone());
        tokio::time::sleep(Duration::from_millis(300 + random(1200))).await;
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.await.unwrap();
        }
        daemon = work.serve();
        let wrong = converged(&work, &daemon, &token, &group, Duration::from_secs(10)).await;
        missing_total += wrong.len();
        assert!(
            wrong.is_empty(),
            "round {round}: {} people in the granting group without their individual 10 s after the restart: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
    }
    // Every acknowledged write survived.
    let (members, _) = members_and_individuals(&work, &daemon, &token, &group).await.unwrap();
    let acked_members = acked.members.lock().unwrap().clone();
    assert!(acked_members.len() > kills * 4, "the load did real work: {} member adds", acked_members.len());
    let lost: Vec<&String> = acked_members.iter().filter(|m| !members.contains(*m)).collect();
    assert!(lost.is_empty(), "acknowledged member adds lost: {lost:?}");
    assert_eq!(missing_total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_scim_load_loses_nobody_on_sqlite() {
    kill_under_load(Workdir::new(), 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_scim_load_loses_nobody_on_postgresql() {
    let Some(db) = idbridge_e2e::SharedPgDatabase::create("idbridge_crash") else { return };
    kill_under_load(Workdir::new().with_env("IDBRIDGE_DATABASE__URL", &db.url), 5).await;
}

/// A PostgreSQL server of the test's own (it is stopped and started), with an `idbridge`
/// database; `None` when PostgreSQL is skipped or, outside CI, not installed.
fn own_postgres() -> Option<idbridge_e2e::pg::OwnPostgres> {
    if std::env::var("IDBRIDGE_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        return None;
    }
    let Some(pg) = idbridge_e2e::pg::OwnPostgres::start() else {
        assert!(std::env::var("IDBRIDGE_REQUIRE_PEERS").is_err(), "no PostgreSQL server installed");
        return None;
    };
    pg.create_database("idbridge");
    Some(pg)
}

/// The test's own PostgreSQL is stopped under load and started again: no success answer
/// for a write that did not last, refusals are 503, and everyone converges without
/// restarting idbridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_database_loses_nobody_and_converges_when_back() {
    let Some(pg) = own_postgres() else { return };
    // A request waits up to the connect timeout for a connection: with 1 s, a 3 s outage
    // is answered (503), not absorbed by waiting — on a loaded machine few requests reach
    // the dead connections that fail at once.
    let work = Workdir::new()
        .with_env("IDBRIDGE_DATABASE__URL", &pg.url("idbridge"))
        .with_env("IDBRIDGE_DATABASE__CONNECT_TIMEOUT_SECONDS", "1");
    let token = work.acme_with_scim_token();
    let daemon = work.serve();
    let group = create_group(&daemon, &token).await;
    let acked = Arc::new(Acked::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = start_load(&daemon.base, &token, &group, 0, stop.clone(), acked.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_outage = acked.members.lock().unwrap().len();
    pg.stop_server();
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.start_server();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert!(before_outage > 0, "the load ran before the outage");
    let refused = acked.refused.lock().unwrap().clone();
    assert!(refused.keys().all(|s| *s == 503), "during the outage clients are told 503, nothing else: {refused:?}");
    assert!(refused.get(&503).is_some_and(|n| *n > 0), "the outage was seen: {refused:?}");
    let wrong = converged(&work, &daemon, &token, &group, Duration::from_secs(30)).await;
    assert!(
        wrong.is_empty(),
        "{} people without their individual after the database came back: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    let (members, _) = members_and_individuals(&work, &daemon, &token, &group).await.unwrap();
    for id in acked.members.lock().unwrap().iter() {
        assert!(members.contains(id), "an acknowledged member add was lost: {id}");
    }
    // The queue is empty again and says so.
    let ready: Value = daemon.client().get(daemon.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
}

/// The database restarts while idbridge is idle: the connections the pool holds are dead,
/// but none of them reaches a request — a connection unused for a while is pinged on its
/// way out of the pool and replaced when the ping fails (`idbridge_store::connect`), so
/// the first requests after the restart all succeed. Busy connections are not pinged (a
/// round trip per statement saved), which is why this waits past the idle threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restarted_while_idle_fails_no_request_afterwards() {
    let Some(pg) = own_postgres() else { return };
    let work = Workdir::new().with_env("IDBRIDGE_DATABASE__URL", &pg.url("idbridge"));
    let token = work.acme_with_scim_token();
    let daemon = work.serve();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let url = daemon.url("/scim/v2/acme/Users");
    // Concurrent creates, one connection each: the pool fills up.
    let creates = |from: usize| {
        (from..from + CLIENTS)
            .map(|n| {
                let (http, token, url) = (http.clone(), token.clone(), url.clone());
                tokio::spawn(async move {
                    let body = json!({"userName": format!("idle-{n}@acme.example")});
                    http.post(url).bearer_auth(&token).json(&body).send().await.unwrap().status().as_u16()
                })
            })
            .collect::<Vec<_>>()
    };
    let mut warm = Vec::new();
    for task in creates(0) {
        warm.push(task.await.unwrap());
    }
    assert!(warm.iter().all(|s| *s == 201), "before the restart: {warm:?}");
    pg.stop_server();
    pg.start_server();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut after = Vec::new();
    for task in creates(100) {
        after.push(task.await.unwrap());
    }
    assert!(after.iter().all(|s| *s == 201), "the first requests after the restart: {after:?}");
    let ready: Value = daemon.client().get(daemon.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
}
