//! A real OpenLDAP `slapd` for the LDAP sync tests: its own configuration and data
//! directory in a temporary directory, on a free loopback port, with the memberOf
//! overlay. Killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=acme,dc=example";
pub const ADMIN_DN: &str = "cn=admin,dc=acme,dc=example";
pub const ADMIN_PASSWORD: &str = "slapd-test-secret";

pub struct Slapd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The ldaps:// port, when started with TLS.
    pub tls_port: Option<u16>,
    child: Option<Child>,
    /// When set, slapd logs its operations (`-d stats`) to this file.
    log: Option<PathBuf>,
}

fn slapd_binary() -> PathBuf {
    ["/usr/sbin/slapd", "/usr/local/libexec/slapd", "/usr/libexec/slapd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("slapd"))
}

impl Slapd {
    /// Starts slapd with `limited` (a user whose searches stop after 3 entries) besides
    /// the admin.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// As [`Slapd::start`], also serving ldaps:// with a certificate for 127.0.0.1 signed by
    /// a CA made for the test (`ca.pem` in the directory).
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port.expect("started with TLS"))
    }

    fn start_with(tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls_config = if tls { make_certificates(dir.path()) } else { String::new() };
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let config = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             moduleload memberof\n\
             pidfile {dir}/slapd.pid\n\
             {tls_config}\
             database mdb\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"{ADMIN_DN}\"\n\
             rootpw {ADMIN_PASSWORD}\n\
             directory {dir}/data\n\
             maxsize 104857600\n\
             limits dn.exact=\"uid=limited,ou=service,{SUFFIX}\" size=3 size.pr=noEstimate size.prtotal=3\n\
             access to * by * read\n\
             overlay memberof\n",
            dir = dir.path().display()
        );
        std::fs::write(dir.path().join("slapd.conf"), config).unwrap();
        let port = free_port();
        let tls_port = tls.then(free_port);
        let mut slapd = Self { dir, port, tls_port, child: None, log: None };
        slapd.launch();
        slapd
    }

    /// Restarts with every operation logged, so a test can act in the middle of a run.
    pub fn restart_logging(&mut self) -> PathBuf {
        let log = self.dir.path().join("stats.log");
        self.log = Some(log.clone());
        self.restart();
        log
    }

    /// Search results slapd has sent since it was started with logging.
    pub fn results_sent(&self) -> usize {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map_or(0, |text| text.lines().filter(|l| l.contains("SEARCH RESULT")).count())
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let mut command = Command::new(slapd_binary());
        command.args(["-f", &self.dir.path().join("slapd.conf").display().to_string()]);
        let urls = match self.tls_port {
            Some(_) => format!("{}/ {}/", self.url(), self.ldaps_url()),
            None => format!("{}/", self.url()),
        };
        command.args(["-h", &urls]).stdout(Stdio::null());
        match &self.log {
            Some(log) => {
                command.args(["-d", "stats"]).stderr(std::fs::File::create(log).unwrap());
            }
            None => {
                command.args(["-d", "0"]).stderr(Stdio::null());
            }
        }
        let child = command.spawn().expect("start slapd (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "slapd did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server goes away.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused server must be able to die.
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server hangs: the process is stopped (SIGSTOP), so connections are accepted
    /// by the kernel and nothing is ever answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// The hung server goes on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("slapd is running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// The server comes back on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Applies LDIF with `ldapmodify -a` (adds, modifies, deletes, modrdn) as the admin.
    pub fn ldif(&self, ldif: &str) {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        let out = Command::new("ldapmodify")
            .args(["-a", "-x", "-H", &self.url(), "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-f"])
            .arg(&path)
            .output()
            .expect("run ldapmodify (scripts/test installs ldap-utils)");
        assert!(out.status.success(), "ldapmodify failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a server certificate for 127.0.0.1 (openssl), and the slapd lines that use them.
fn make_certificates(dir: &std::path::Path) -> String {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=idbridge test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    format!(
        "TLSCACertificateFile {d}/ca.pem\nTLSCertificateFile {d}/server.pem\nTLSCertificateKeyFile {d}/server.key\n",
        d = dir.display()
    )
}

fn free_port() -> u16 {
    crate::idp::free_port()
}
