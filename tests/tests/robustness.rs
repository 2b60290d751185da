//! What busy real clients and broken surroundings do to the real binary: twenty writers
//! at once on one resource without If-Match (Entra and Okta never send one), text a
//! backend cannot store, and a log destination that is full.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use idbridge_e2e::{SharedPgDatabase, Workdir};
use serde_json::{Value, json};

const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

async fn concurrent_writes_all_land(work: Workdir) {
    work.ok(&["tenant", "create", "acme", "--name", "ACME"]);
    let token = work.ok(&["scim-token", "create", "acme"]).trim().to_owned();
    let daemon = work.serve();
    let http = daemon.client().clone();
    let url = |p: &str| daemon.url(&format!("/scim/v2/acme{p}"));
    let post = |path: String, body: Value| http.post(path).bearer_auth(&token).json(&body).send();
    let user: Value =
        post(url("/Users"), json!({"userName": "shared@acme.example"})).await.unwrap().json().await.unwrap();
    let user_id = user["id"].as_str().unwrap().to_owned();
    let group: Value = post(url("/Groups"), json!({"displayName": "team"})).await.unwrap().json().await.unwrap();
    let group_id = group["id"].as_str().unwrap().to_owned();
    let mut members = Vec::new();
    for n in 0..20 {
        let u: Value =
            post(url("/Users"), json!({"userName": format!("m{n}@acme.example")})).await.unwrap().json().await.unwrap();
        members.push(u["id"].as_str().unwrap().to_owned());
    }

    // Twenty PATCHes of one user's title, twenty member adds to one group, twenty PUTs of
    // the group's name: at the same time, none with If-Match.
    let mut tasks = Vec::new();
    for (n, member) in members.iter().cloned().enumerate() {
        let (http, token) = (http.clone(), token.clone());
        let user = url(&format!("/Users/{user_id}"));
        let group = url(&format!("/Groups/{group_id}"));
        tasks.push(tokio::spawn(async move {
            let title = http
                .patch(&user)
                .bearer_auth(&token)
                .json(&json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": format!("t{n}")}]}))
                .send();
            let add = http
                .patch(&group)
                .bearer_auth(&token)
                .json(&json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": member}]}]}))
                .send();
            let (title, add) = tokio::join!(title, add);
            let put = http
                .put(&group)
                .bearer_auth(&token)
                .json(&json!({"displayName": format!("team-{n}")}))
                .send()
                .await;
            (title.unwrap().status().as_u16(), add.unwrap().status().as_u16(), put.unwrap().status().as_u16())
        }));
    }
    for task in tasks {
        let (title, add, put) = task.await.unwrap();
        assert_eq!((title, add, put), (200, 204, 200), "every write without If-Match lands");
    }
    let shown: Value =
        http.get(url(&format!("/Groups/{group_id}"))).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let listed: Vec<&str> = shown["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), 20, "no member lost: {shown}");
    assert!(shown["displayName"].as_str().unwrap().starts_with("team-"));
    let shown: Value =
        http.get(url(&format!("/Users/{user_id}"))).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert!(shown["title"].as_str().unwrap().starts_with('t'), "{shown}");

    // With a stale If-Match the client is told 412, as RFC 7644 §3.14 says.
    let stale = http
        .patch(url(&format!("/Users/{user_id}")))
        .bearer_auth(&token)
        .header("if-match", "W/\"1\"")
        .json(&json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);

    // U+0000 is refused the same on every backend, in body and filter.
    let nul = post(url("/Users"), json!({"userName": "a\u{0}b@acme.example"})).await.unwrap();
    assert_eq!(nul.status(), 400);
    let body: Value = nul.json().await.unwrap();
    assert_eq!(body["scimType"], "invalidValue", "{body}");
    let nul = post(url("/Groups"), json!({"displayName": "x", "externalId": "e\u{0}"})).await.unwrap();
    assert_eq!(nul.status(), 400);
    let filter = http.get(url("/Users?filter=userName%20eq%20%22a%00b%22")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(filter.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_writers_at_once_all_land_on_sqlite() {
    concurrent_writes_all_land(Workdir::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_writers_at_once_all_land_on_postgresql() {
    let Some(db) = SharedPgDatabase::create("idbridge_concurrent") else { return };
    concurrent_writes_all_land(Workdir::new().with_env("IDBRIDGE_DATABASE__URL", &db.url)).await;
}

/// A full log destination loses log lines, not requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_destination_drops_no_request() {
    let work = Workdir::new();
    work.ok(&["tenant", "create", "acme", "--name", "ACME"]);
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let mut child = work
        .command(&["serve"])
        .env("IDBRIDGE_SERVER__LISTEN", "127.0.0.1:0")
        .env("IDBRIDGE_LOG__LEVEL", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(full))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let base = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on ").map(str::to_owned))
        .expect("the daemon starts with stderr on a full device");
    let http = reqwest::Client::new();
    for _ in 0..20 {
        // Each of these logs (debug: every request; warn: a refused token).
        let r = http.get(format!("{base}/scim/v2/acme/Users")).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("idbridge_log_lines_lost_total"), "lost lines are counted");
    let _ = child.kill();
    let _ = child.wait();
}

/// A mounted filesystem of a few megabytes, removed when the test ends.
struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Self { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills what is left; returns the filler to delete.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.flush();
        filler
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// The embedded database on a filesystem that fills up: writes are refused with a 503
/// that says the service is at fault (never a 500, never a success), `/readyz` says the
/// store cannot write, and once space is freed writes work again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_recovers_when_space_is_freed() {
    let Some(fs) = SmallFilesystem::mount(8) else {
        assert!(std::env::var("IDBRIDGE_REQUIRE_PEERS").is_err(), "cannot mount a small filesystem here");
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let url = format!("sqlite://{}", fs.path().join("idbridge.db").display());
    let work = Workdir::new().with_env("IDBRIDGE_DATABASE__URL", &url);
    work.ok(&["tenant", "create", "acme", "--name", "ACME"]);
    let token = work.ok(&["scim-token", "create", "acme"]).trim().to_owned();
    let daemon = work.serve();
    let http = daemon.client().clone();
    let create = |n: usize| {
        http.post(daemon.url("/scim/v2/acme/Users"))
            .bearer_auth(&token)
            .json(&json!({"userName": format!("u{n}@acme.example"), "displayName": "x".repeat(2000)}))
            .send()
    };
    assert_eq!(create(0).await.unwrap().status(), 201);
    let filler = fs.fill();
    let mut refused = None;
    for n in 1..2000 {
        let r = create(n).await.unwrap();
        match r.status().as_u16() {
            201 => continue,
            503 => {
                refused = Some(r.json::<Value>().await.unwrap());
                break;
            }
            other => panic!("a full disk answered {other}: {}", r.text().await.unwrap()),
        }
    }
    let refused = refused.expect("a full disk refuses writes");
    assert_eq!(refused["status"], "503", "{refused}");
    let ready = http.get(daemon.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "a store that cannot write is not ready");

    std::fs::remove_file(filler).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = create(5000).await.unwrap();
        if r.status() == 201 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "writes never resumed: {}", r.status());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(http.get(daemon.url("/readyz")).send().await.unwrap().status(), 200);
    for n in 5001..5010 {
        assert_eq!(create(n).await.unwrap().status(), 201, "every later write works");
    }
    drop(daemon);
}
