//! A real Active Directory domain controller for the directory tests: Samba's AD DC
//! (Debian's `samba`), domain `acme.example`, serving LDAP only, on a loopback address of
//! its own (`127.0.0.N`: a domain controller listens on port 389, so instances that run at
//! once need different addresses). The domain is provisioned once per machine into a
//! template (about 10 s) and copied for each test. Killed when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BASE: &str = "DC=acme,DC=example";
/// The domain administrator, as a user principal name (AD accepts it as a bind DN).
pub const ADMIN: &str = "Administrator@acme.example";
pub const ADMIN_PASSWORD: &str = "Samba-test-Adm1n-secret";

/// `userAccountControl` of an enabled account that needs no password (NORMAL_ACCOUNT |
/// PASSWD_NOTREQD): the tests never sign in to AD itself.
pub const ENABLED: u32 = 0x220;
/// The same, disabled (| ACCOUNTDISABLE).
pub const DISABLED: u32 = 0x222;

pub struct SambaDc {
    dir: tempfile::TempDir,
    /// The loopback address it listens on.
    pub address: String,
    child: Child,
    _slot: File,
}

/// Bumped when the template's provisioning changes: an older template is not reused.
const TEMPLATE_VERSION: u32 = 1;

fn template() -> PathBuf {
    let root = std::env::temp_dir();
    let template = root.join(format!("idbridge-samba-template-{TEMPLATE_VERSION}"));
    let lock = File::create(root.join("idbridge-samba-template.lock")).expect("template lock file");
    lock.lock().expect("lock the template");
    if !template.join("etc/smb.conf").exists() {
        let partial = root.join(format!("idbridge-samba-template-{TEMPLATE_VERSION}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).unwrap();
        let out = Command::new("samba-tool")
            .args(["domain", "provision", "--realm=ACME.EXAMPLE", "--domain=ACME", "--server-role=dc"])
            .args(["--dns-backend=NONE", "--host-ip=127.0.0.1", "--use-rfc2307"])
            .arg(format!("--adminpass={ADMIN_PASSWORD}"))
            .arg(format!("--targetdir={}", partial.display()))
            .output()
            .expect("run samba-tool (scripts/test installs samba)");
        assert!(out.status.success(), "samba-tool domain provision: {}", String::from_utf8_lossy(&out.stderr));
        // LDAP only (no SMB, Kerberos, DNS or replication), simple binds without TLS, and
        // every file in the instance's own directory.
        let conf = partial.join("etc/smb.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let mut edited = String::new();
        for line in text.lines() {
            let key = line.trim().split('=').next().unwrap_or_default().trim();
            match key {
                "server services" | "interfaces" | "bind interfaces only" => {}
                "[global]" => {
                    edited.push_str(&format!(
                        "{line}\n\tserver services = ldap\n\tldap server require strong auth = no\n\
                         \tinterfaces = ADDRESS\n\tbind interfaces only = yes\n\tpid directory = {dir}\n\
                         \tlog file = {dir}/samba.log\n",
                        dir = partial.display()
                    ));
                }
                _ => {
                    edited.push_str(line);
                    edited.push('\n');
                }
            }
        }
        std::fs::write(&conf, edited).unwrap();
        std::fs::rename(&partial, &template).expect("the template in place");
    }
    template
}

/// A loopback address no other test holds, with its lock.
fn slot() -> (String, File) {
    for n in 10..250u32 {
        let file = File::create(std::env::temp_dir().join(format!("idbridge-samba-slot-{n}.lock"))).unwrap();
        if file.try_lock().is_ok() {
            let address = format!("127.0.0.{n}");
            // Linux routes all of 127/8 to lo, but Samba listens only on addresses an
            // interface has.
            let _ = Command::new("ip").args(["addr", "add", &format!("{address}/32"), "dev", "lo"]).output();
            return (address, file);
        }
    }
    panic!("no free loopback address for Samba");
}

impl SambaDc {
    pub fn start() -> Self {
        let template = template();
        let (address, slot) = slot();
        let dir = tempfile::tempdir().expect("temp dir");
        let copied = Command::new("cp").arg("-a").arg(format!("{}/.", template.display())).arg(dir.path()).status();
        assert!(copied.is_ok_and(|s| s.success()), "copy the Samba template");
        let conf = dir.path().join("etc/smb.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let text = text
            .replace(&format!("{}.partial", template.display()), &dir.path().display().to_string())
            .replace(&template.display().to_string(), &dir.path().display().to_string())
            .replace("ADDRESS", &address);
        std::fs::write(&conf, text).unwrap();
        let child = Command::new("samba")
            .args(["-i", "-M", "single", "-s"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(File::create(dir.path().join("samba.stderr")).unwrap())
            .spawn()
            .expect("start samba");
        let dc = Self { dir, address, child, _slot: slot };
        dc.wait_ready();
        dc
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new("ldapsearch")
                .args(["-x", "-H", &self.url(), "-D", ADMIN, "-w", ADMIN_PASSWORD, "-b", BASE, "-s", "base", "dn"])
                .output()
                .expect("run ldapsearch");
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Samba did not answer within 60 s: {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.path().join("samba.stderr")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://{}:389", self.address)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Applies LDIF with `ldapmodify -a` (adds, modifies, deletes, modrdn) as the domain
    /// administrator.
    pub fn ldif(&self, ldif: &str) {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        let out = Command::new("ldapmodify")
            .args(["-a", "-x", "-H", &self.url(), "-D", ADMIN, "-w", ADMIN_PASSWORD, "-f"])
            .arg(&path)
            .output()
            .expect("run ldapmodify");
        assert!(out.status.success(), "ldapmodify failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
