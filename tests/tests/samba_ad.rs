//! Directory sync against a real Active Directory domain controller (Samba AD DC, domain
//! acme.example, on loopback): a source at the domain root on port 389 (AD answers with
//! continuation references there), nested groups, `userAccountControl`, `accountExpires`,
//! a rename that keeps the `objectGUID`, a group of more than 1,500 members, and a user
//! deleted in AD losing access at the next *incremental* run (through its tombstone). On
//! 5162834 a root base failed every run ("the directory returned a referral"), and a
//! deletion waited for the next full run — a day by default.

use idbridge_e2e::samba::{ADMIN, ADMIN_PASSWORD, BASE, DISABLED, ENABLED, SambaDc};
use idbridge_e2e::{Workdir, workspace_root};
use serde_json::Value;

/// `accountExpires` of a moment long past (FILETIME: 100 ns since 1601).
const EXPIRED_IN_2001: &str = "126227808000000000";

fn user(cn: &str, ou: &str, uac: u32, extra: &str) -> String {
    format!(
        "dn: CN={cn},OU={ou},{BASE}\nobjectClass: user\nsAMAccountName: {cn}\nuserPrincipalName: {cn}@acme.example\n\
         mail: {cn}@acme.example\ngivenName: {cn}\nuserAccountControl: {uac}\n{extra}\n"
    )
}

fn group(cn: &str, members: &[String]) -> String {
    let members: String = members.iter().map(|m| format!("member: {m}\n")).collect();
    format!("dn: CN={cn},OU=Groups,{BASE}\nobjectClass: group\nsAMAccountName: {cn}\n{members}\n")
}

fn dn(cn: &str, ou: &str) -> String {
    format!("CN={cn},OU={ou},{BASE}")
}

const BIG: usize = 1_600;

fn directory() -> String {
    let mut ldif = format!(
        "dn: OU=Staff,{BASE}\nobjectClass: organizationalUnit\n\n\
         dn: OU=Many,{BASE}\nobjectClass: organizationalUnit\n\n\
         dn: OU=Groups,{BASE}\nobjectClass: organizationalUnit\n\n"
    );
    ldif += &user("alice", "Staff", ENABLED, "");
    ldif += &user("bob", "Staff", ENABLED, "");
    ldif += &user("carol", "Staff", DISABLED, "");
    ldif += &user("dave", "Staff", ENABLED, &format!("accountExpires: {EXPIRED_IN_2001}\n"));
    ldif += &user("erin", "Staff", ENABLED, "");
    for n in 0..BIG {
        ldif += &user(&format!("m{n:04}"), "Many", ENABLED, "");
    }
    ldif += &group("team-a", &[dn("bob", "Staff")]);
    ldif += &group(
        "pbx-admins",
        &[dn("alice", "Staff"), dn("carol", "Staff"), dn("dave", "Staff"), format!("CN=team-a,OU=Groups,{BASE}")],
    );
    let everyone: Vec<String> =
        (0..BIG).map(|n| dn(&format!("m{n:04}"), "Many")).chain([dn("erin", "Staff")]).collect();
    ldif += &group("Portal-Admins", &everyone);
    ldif
}

/// acme from the example, reading this domain controller from the domain root.
fn apply(work: &Workdir, dc: &SambaDc) {
    let secret = work.path().join("ad.secret");
    std::fs::write(&secret, format!("{ADMIN_PASSWORD}\n")).unwrap();
    let example = std::fs::read_to_string(workspace_root().join("config/examples/acme.toml")).unwrap();
    let doc = format!(
        "{example}\n[[tenants.ldap]]\nname = \"ad\"\nflavour = \"active_directory\"\nurls = [\"{}\"]\n\
         bind_dn = \"{ADMIN}\"\nbind_password_file = \"{}\"\nuser_base = \"{BASE}\"\ngroup_base = \"{BASE}\"\n\
         membership = \"member\"\nschedule_seconds = 0\n",
        dc.url(),
        secret.display()
    );
    let path = work.path().join("acme-ad.toml");
    std::fs::write(&path, doc).unwrap();
    work.ok(&["apply", path.to_str().unwrap()]);
}

fn show(work: &Workdir, login: &str) -> Option<Value> {
    let out = work.run(&["individual", "show", "acme", login, "--json"]);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn active_directory_at_the_domain_root_syncs_and_leavers_go_at_the_next_incremental_run() {
    let dc = SambaDc::start();
    dc.ldif(&directory());
    let work = Workdir::new();
    apply(&work, &dc);

    let run = work.ok(&["sync", "ldap", "acme"]);
    assert!(run.contains("ad: succeeded (full)"), "{run}");
    let alice = show(&work, "alice").expect("alice");
    assert_eq!((alice["status"].as_str(), alice["role"].as_str()), (Some("active"), Some("PBX admin")), "{alice}");
    assert_eq!(alice["links"][0]["source"], "ldap");
    let guid = alice["links"][0]["external_id"].as_str().unwrap().to_owned();
    assert_eq!(guid.len(), 36, "objectGUID in its string form: {guid}");
    assert_eq!(show(&work, "bob").unwrap()["role"], "PBX admin", "nested: team-a is in pbx-admins");
    assert_eq!(show(&work, "carol").unwrap()["status"], "suspended", "userAccountControl ACCOUNTDISABLE");
    assert!(show(&work, "dave").is_none(), "accountExpires in 2001: not provisioned");
    assert!(show(&work, "Administrator").is_none(), "in no mapped group: no access");
    let listing = work.ok(&["individual", "list", "acme", "--limit", "100000", "--json"]);
    let everyone: Vec<Value> = serde_json::from_str(&listing).unwrap();
    let customer_admins = everyone.iter().filter(|i| i["role"] == "Customer admin" && i["status"] == "active").count();
    assert_eq!(customer_admins, BIG + 1, "every member of the {}-member group", BIG + 1);

    // Nothing changed: the next run is incremental and changes nobody.
    let again = work.ok(&["sync", "ldap", "acme"]);
    assert!(again.contains("(incremental)") && again.contains("0 changed, 0 gone"), "{again}");

    // A rename keeps the objectGUID; a deletion leaves a tombstone. The next incremental
    // run sees both.
    dc.ldif(&format!(
        "dn: {}\nchangetype: modrdn\nnewrdn: CN=alice2\ndeleteoldrdn: 1\n\n\
         dn: CN=alice2,OU=Staff,{BASE}\nchangetype: modify\nreplace: sAMAccountName\nsAMAccountName: alice2\n\n\
         dn: {}\nchangetype: delete\n\n",
        dn("alice", "Staff"),
        dn("bob", "Staff")
    ));
    let run = work.ok(&["sync", "ldap", "acme"]);
    assert!(run.contains("(incremental)") && run.contains("1 gone"), "{run}");
    let renamed = show(&work, "alice2").expect("alice2");
    assert_eq!(renamed["id"], alice["id"], "same individual after the rename");
    assert_eq!(show(&work, "bob").unwrap()["status"], "suspended", "deleted in AD: access taken at once");

    // A full run agrees, and finds nothing more.
    let full = work.ok(&["sync", "ldap", "acme", "--full"]);
    assert!(full.contains("(full)") && full.contains("0 gone"), "{full}");
}
