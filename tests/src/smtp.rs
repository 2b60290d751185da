//! A real SMTP server for the tests and benchmarks: `aiosmtpd` from PyPI (installed in
//! `.venv` by `scripts/peers.sh`) on loopback, writing every mail into a maildir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// aiosmtpd writing every mail it receives into a maildir.
pub struct Smtp {
    child: Child,
    pub port: u16,
    maildir: PathBuf,
}

impl Smtp {
    pub fn start(dir: &Path) -> Self {
        let python = crate::workspace_root().join(".venv/bin/python");
        assert!(python.exists(), "aiosmtpd is installed by scripts/peers.sh (ensure_scim2_tester)");
        let maildir = dir.join("maildir");
        let port = crate::idp::free_port();
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port, maildir }
    }

    /// Every mail received so far, as text (headers and the decoded plain part).
    pub fn mails(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else { continue };
            let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths {
                out.push(decode(&std::fs::read_to_string(path).unwrap_or_default()));
            }
        }
        out
    }

    /// Waits for a mail to `to` whose text contains `needle` (a restarted daemon first waits
    /// out the killed one's 30-second lease on the notices).
    pub async fn wait_for(&self, to: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(75);
        loop {
            if let Some(mail) =
                self.mails().into_iter().find(|m| m.contains(&format!("To: {to}")) && m.contains(needle))
            {
                return mail;
            }
            assert!(Instant::now() < deadline, "no mail to {to} with {needle:?}; got {:#?}", self.mails());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Undoes quoted-printable soft breaks and `=XX` escapes (lettre encodes the parts so).
fn decode(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The link to `path` in a mail (a page of idbridge's, with its token).
pub fn link_in(mail: &str, path: &str) -> String {
    let start = mail.find(&format!("{path}?token=")).unwrap_or_else(|| panic!("no {path} link in {mail}"));
    let base_start = mail[..start].rfind("http").unwrap();
    mail[base_start..].split(|c: char| c.is_whitespace() || c == '<' || c == '"').next().unwrap().to_owned()
}
