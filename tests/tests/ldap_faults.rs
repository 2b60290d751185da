//! Directory sync under faults, against real `slapd`: a server that accepts connections
//! and never answers, one that hangs in the middle of a read (SIGSTOP), failover to the
//! next URL, an interrupted run (SIGINT), and one hung source beside another tenant's
//! schedule, and a first run killed part way. On 791f4cb a hung read waited for the server forever (`timeout_seconds`
//! covered the bind only), failover skipped a hanging server, an interrupted run kept
//! its lease for 420 s, and one hung source stopped every tenant's scheduled runs.

use std::io::Read;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use idbridge_e2e::slapd::{ADMIN_DN, ADMIN_PASSWORD, SUFFIX, Slapd};
use idbridge_e2e::{Workdir, workspace_root};

/// A server that accepts every connection and never says a word.
fn hung_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    url
}

/// A server that accepts the bind and then answers nothing: every search hangs.
fn binds_then_hangs() -> String {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                // The BindRequest: SEQUENCE { INTEGER messageID, [APPLICATION 0] … }.
                let mut request = [0u8; 512];
                let Ok(n) = stream.read(&mut request) else { return };
                let header = if n > 1 && request[1] & 0x80 != 0 { 2 + usize::from(request[1] & 0x7f) } else { 2 };
                if n < header + 2 || request[header] != 0x02 {
                    return;
                }
                let id = &request[header + 2..header + 2 + usize::from(request[header + 1])];
                // BindResponse { resultCode success, matchedDN "", diagnosticMessage "" }.
                let mut op = vec![0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00];
                let mut body = vec![0x02, id.len() as u8];
                body.extend_from_slice(id);
                body.append(&mut op);
                let mut response = vec![0x30, body.len() as u8];
                response.extend(body);
                let _ = stream.write_all(&response);
                // Then silence, for as long as the client cares to wait.
                let mut rest = [0u8; 4096];
                while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
            });
        }
    });
    url
}

/// A directory of `people` users, all in `pbx-admins`.
fn directory(people: usize) -> String {
    let mut ldif = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: ACME\ndc: acme\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
    );
    let mut members = String::new();
    for n in 0..people {
        ldif += &format!(
            "dn: uid=p{n:03},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: p{n:03}\ncn: p\nsn: p\nmail: p{n:03}@acme.example\n\n"
        );
        members += &format!("member: uid=p{n:03},ou=people,{SUFFIX}\n");
    }
    ldif + &format!("dn: cn=pbx-admins,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: pbx-admins\n{members}\n")
}

/// The example tenants with LDAP sources: `(slug, urls, schedule_seconds)` each.
fn apply(work: &Workdir, sources: &[(&str, Vec<String>, u64)]) {
    let secret = work.path().join("ldap.secret");
    std::fs::write(&secret, format!("{ADMIN_PASSWORD}\n")).unwrap();
    let example = std::fs::read_to_string(workspace_root().join("config/examples/acme.toml")).unwrap();
    let tenant_block = &example[example.find("[[tenants]]").unwrap()..];
    let mut doc = example[..example.find("[[tenants]]").unwrap()].to_owned();
    for (slug, urls, schedule) in sources {
        let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
        doc += &tenant_block.replace("slug = \"acme\"", &format!("slug = \"{slug}\""));
        doc += &format!(
            "\n[[tenants.ldap]]\nname = \"corp\"\nurls = [{}]\nbind_dn = \"{ADMIN_DN}\"\n\
             bind_password_file = \"{}\"\nuser_base = \"ou=people,{SUFFIX}\"\ngroup_base = \"ou=groups,{SUFFIX}\"\n\
             page_size = 2\ntimeout_seconds = 2\nschedule_seconds = {schedule}\n\n",
            urls.join(", "),
            secret.display()
        );
    }
    let path = work.path().join("tenants.toml");
    std::fs::write(&path, doc).unwrap();
    work.ok(&["apply", path.to_str().unwrap()]);
}

/// Runs `idbridge sync ldap acme --full` in the background.
fn start_sync(work: &Workdir) -> std::process::Child {
    let mut sync = work.command(&["sync", "ldap", "acme", "--full"]);
    sync.stdout(Stdio::piped()).stderr(Stdio::piped());
    sync.spawn().unwrap()
}

/// Waits for a background run to end, at most `limit`; its output.
fn finish(mut child: std::process::Child, limit: Duration) -> (bool, String) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut text = String::new();
            child.stdout.take().unwrap().read_to_string(&mut text).unwrap();
            child.stderr.take().unwrap().read_to_string(&mut text).unwrap();
            return (status.success(), text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until slapd has answered `n` searches (it logs each), so a fault lands mid-read.
fn wait_for_results(slapd: &Slapd, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while slapd.results_sent() < n {
        assert!(Instant::now() < deadline, "slapd answered no search");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_hung_directory_fails_the_run_in_time_and_the_next_url_serves() {
    let mut slapd = Slapd::start();
    slapd.ldif(&directory(300));
    let work = Workdir::new();

    // The first URL accepts connections and never answers: the run goes on at the second.
    let hung = hung_server();
    apply(&work, &[("acme", vec![hung.clone(), slapd.url()], 0)]);
    let started = Instant::now();
    let run = work.ok(&["sync", "ldap", "acme"]);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert!(run.contains("succeeded") && run.contains("300 users"), "{run}");
    assert!(run.contains(&format!("warning: passed over {hung}: bind as")), "{run}");
    assert!(run.contains("got no answer within 2 s"), "{run}");
    let status = work.ok(&["sync", "status", "acme"]);
    assert!(status.lines().next().unwrap().contains(&slapd.url()), "the URL that served: {status}");

    // The only server hangs in the middle of the read: the run fails within its timeout,
    // names the server and the step, and changes nobody.
    apply(&work, &[("acme", vec![slapd.url()], 0)]);
    let before = work.ok(&["individual", "list", "acme"]);
    slapd.restart_logging();
    let child = start_sync(&work);
    wait_for_results(&slapd, 1);
    slapd.pause();
    let started = Instant::now();
    let (ok, text) = finish(child, Duration::from_secs(20));
    assert!(!ok, "{text}");
    assert!(started.elapsed() < Duration::from_secs(10), "failed after {:?}", started.elapsed());
    assert!(text.contains(&format!("at {} got no answer within 2 s", slapd.url())), "{text}");
    assert!(text.contains("search under"), "names the step: {text}");
    assert_eq!(work.ok(&["individual", "list", "acme"]), before, "nobody changed");

    // Interrupted (Ctrl-C) while the server hangs: recorded as cancelled, and the lease
    // goes with it — the next run starts at once.
    let child = start_sync(&work);
    std::thread::sleep(Duration::from_millis(700));
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let (ok, text) = finish(child, Duration::from_secs(10));
    assert!(!ok && text.contains("interrupted"), "{text}");
    let status = work.ok(&["sync", "status", "acme"]);
    assert!(status.lines().next().unwrap().contains("cancelled"), "{status}");
    slapd.resume();
    let run = work.ok(&["sync", "ldap", "acme"]);
    assert!(run.contains("succeeded"), "not refused by a left-over lease: {run}");
}

#[test]
fn a_server_that_hangs_mid_read_is_passed_over_for_the_next() {
    let mut first = Slapd::start();
    let second = Slapd::start();
    first.ldif(&directory(300));
    second.ldif(&directory(300));
    let work = Workdir::new();
    apply(&work, &[("acme", vec![first.url(), second.url()], 0)]);
    first.restart_logging();
    let child = start_sync(&work);
    wait_for_results(&first, 1);
    first.pause();
    let (ok, text) = finish(child, Duration::from_secs(30));
    assert!(ok, "{text}");
    assert!(text.contains("succeeded") && text.contains("300 users"), "{text}");
    assert!(
        text.contains("passed over: search under") && text.contains(&format!("at {} got no answer", first.url())),
        "{text}"
    );
    assert!(work.ok(&["sync", "status", "acme"]).lines().next().unwrap().contains(&second.url()));
    first.resume();
}

#[tokio::test]
async fn one_hung_source_does_not_hold_back_another_tenants_schedule() {
    let slapd = Slapd::start();
    slapd.ldif(&directory(3));
    let work = Workdir::new();
    // acme's server accepts the bind and never answers a search; beta's answers. Both
    // are due every few seconds.
    apply(&work, &[("acme", vec![binds_then_hangs()], 1), ("beta", vec![slapd.url()], 5)]);
    let daemon = work.serve();
    tokio::time::sleep(Duration::from_secs(18)).await;
    let beta = work.ok(&["sync", "status", "beta"]);
    let succeeded = beta.lines().filter(|l| l.contains("succeeded")).count();
    assert!(succeeded >= 3, "beta ran on its schedule beside acme's hung source: {beta}");
    let acme = work.ok(&["sync", "status", "acme"]);
    assert!(acme.lines().count() >= 2 && acme.contains("failed"), "{acme}");

    // Stopping the daemon ends whatever runs as cancelled or done, never left holding
    // a lease: a run from the command line starts at once.
    assert!(daemon.terminate().success());
    let run = work.run(&["sync", "ldap", "acme"]);
    let text = String::from_utf8_lossy(&run.stdout).to_string() + &String::from_utf8_lossy(&run.stderr);
    assert!(!text.contains("in progress"), "{text}");
}

/// Three instances on one PostgreSQL database, one directory source due every 5 s: each
/// run is made by one of them (the lease), so runs never overlap and there is one per
/// schedule, not three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_run_a_scheduled_source_once_per_schedule() {
    let Some(db) = idbridge_e2e::SharedPgDatabase::create("idbridge_sync_once") else { return };
    let slapd = Slapd::start();
    slapd.ldif(&directory(3));
    let work = Workdir::new().with_env("IDBRIDGE_DATABASE__URL", &db.url);
    apply(&work, &[("acme", vec![slapd.url()], 5)]);
    let daemons = [work.serve(), work.serve(), work.serve()];
    tokio::time::sleep(Duration::from_secs(17)).await;
    drop(daemons);
    let out = work.ok(&["sync", "status", "acme", "--json"]);
    let mut runs: Vec<(jiff::Timestamp, jiff::Timestamp)> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["status"] == "succeeded")
        .map(|r| {
            (r["started_at"].as_str().unwrap().parse().unwrap(), r["finished_at"].as_str().unwrap().parse().unwrap())
        })
        .collect();
    runs.sort();
    assert!((3..=5).contains(&runs.len()), "one run per 5 s schedule over 17 s, not one per instance: {out}");
    for pair in runs.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "two runs at once: {pair:?}");
    }
}

/// A first run killed (`kill -9`) part way: what it wrote stays consistent — each page's
/// directory records follow its individuals — and the next run, once the dead process's
/// lease has expired (a minute), creates the rest: everyone once, nobody twice; the killed
/// run is recorded as `abandoned`.
#[test]
fn a_first_run_killed_part_way_is_completed_by_the_next_each_person_once() {
    let slapd = Slapd::start();
    slapd.ldif(&directory(3000));
    let work = Workdir::new();
    apply(&work, &[("acme", vec![slapd.url()], 0)]);
    let count = || work.ok(&["individual", "list", "acme", "--limit", "10000"]).lines().count();

    let mut child = start_sync(&work);
    let deadline = Instant::now() + Duration::from_secs(120);
    let written = loop {
        let n = count();
        if n > 0 {
            break n;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(Instant::now() < deadline, "the first run wrote nobody");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let left = count();
    assert!(written < 3000 && left < 3000, "killed before the end: {written} then {left} written");
    eprintln!("killed with {left} of 3000 individuals written");
    // The dead process still holds the lease until it expires; then the next run starts.
    let refused = work.run(&["sync", "ldap", "acme", "--full"]);
    assert!(!refused.status.success(), "a crashed run's lease holds for a minute");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("in progress"));
    let deadline = Instant::now() + Duration::from_secs(90);
    let run = loop {
        let out = work.run(&["sync", "ldap", "acme", "--full"]);
        if out.status.success() {
            break String::from_utf8(out.stdout).unwrap();
        }
        assert!(Instant::now() < deadline, "the lease never expired: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(run.contains("succeeded") && run.contains("3000 users"), "{run}");
    let logins: Vec<String> = work
        .ok(&["individual", "list", "acme", "--limit", "10000"])
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .collect();
    let unique: std::collections::BTreeSet<&String> = logins.iter().collect();
    assert_eq!((logins.len(), unique.len()), (3000, 3000), "everyone once");
    // Nothing is left to do: the records of the killed run's pages were written with them.
    let again = work.ok(&["sync", "ldap", "acme", "--full"]);
    assert!(again.contains("0 changed, 0 gone"), "{again}");
    // The killed run is in `sync status`: found still running by the next, and said so.
    let status = work.ok(&["sync", "status", "acme"]);
    let oldest = status.lines().last().unwrap();
    assert!(oldest.contains("abandoned") && oldest.contains("killed or crashed"), "{status}");
    assert_eq!(status.lines().filter(|l| l.contains("running")).count(), 0, "{status}");
}
