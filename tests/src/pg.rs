//! A PostgreSQL server of the test's own (initdb into a temporary directory, on a free
//! loopback port, trust authentication), for tests that stop and start the database —
//! never the shared server other tests use.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// The newest installed server's binaries (Debian puts them under /usr/lib/postgresql).
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl OwnPostgres {
    /// `None` when no PostgreSQL server is installed here.
    pub fn start() -> Option<Self> {
        let bin = server_bin()?;
        let dir = tempfile::Builder::new().prefix("idbridge-pg-").tempdir().expect("temp dir");
        let this = Self { dir, bin, port: crate::idp::free_port() };
        if is_root() {
            // The server refuses to run as root: the data directory belongs to `postgres`.
            let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(this.dir.path()).status();
            assert!(chown.is_ok_and(|s| s.success()), "chown the test's PostgreSQL directory");
        }
        let data = this.data().display().to_string();
        let out = this.as_owner(this.bin.join("initdb"), &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"]);
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        this.start_server();
        Some(this)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_owner(&self, program: PathBuf, args: &[&str]) -> Output {
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.args(args).current_dir(self.dir.path()).output().expect("run a PostgreSQL program")
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start_server(&self) {
        let data = self.data().display().to_string();
        let options =
            format!("-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off", self.port, self.dir.path().display());
        let log = self.dir.path().join("server.log").display().to_string();
        let out = self.as_owner(self.bin.join("pg_ctl"), &["-D", &data, "-o", &options, "-l", &log, "-w", "start"]);
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the test's PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server at once (clients' connections are cut, as in an outage).
    pub fn stop_server(&self) {
        let data = self.data().display().to_string();
        let out = self.as_owner(self.bin.join("pg_ctl"), &["-D", &data, "-m", "immediate", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn create_database(&self, name: &str) {
        let out = Command::new("psql")
            .args([self.url("postgres").as_str(), "-qc", &format!("CREATE DATABASE {name}")])
            .output();
        let out = out.expect("psql");
        assert!(out.status.success(), "create database: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data().display().to_string();
        let _ = self.as_owner(self.bin.join("pg_ctl"), &["-D", &data, "-m", "immediate", "stop"]);
    }
}
