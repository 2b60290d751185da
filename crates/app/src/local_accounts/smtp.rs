//! Sends the mail outbox through SMTP (`lettre`): every instance takes due mails under a
//! lease, so with several instances each mail is sent by one; a failure is retried with
//! back-off and, after `max_attempts`, given up as a dead letter (audited, like every sent
//! mail — without its body, which may hold a link).

use std::sync::Arc;
use std::time::Duration;

use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::local_account::Mail;
use idbridge_core::ports::Store;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How a mail is handed over: `starttls` (port 587), `tls` (implicit, port 465), or
/// `none` (a relay on the host or the tests' server on loopback only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    StartTls,
    Tls,
    None,
}

impl SmtpSecurity {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "starttls" => Some(Self::StartTls),
            "tls" => Some(Self::Tls),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
    pub timeout: Duration,
    pub max_attempts: u32,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .finish()
    }
}

/// The SMTP side of the outbox.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    max_attempts: u32,
}

impl Mailer {
    pub fn new(settings: &SmtpSettings) -> Result<Self, String> {
        let from: Mailbox =
            settings.from.parse().map_err(|e| format!("local_sign_in.smtp.from {:?}: {e}", settings.from))?;
        let builder = match settings.security {
            SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host),
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host),
            SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)),
        }
        .map_err(|e| format!("local_sign_in.smtp.host {:?}: {e}", settings.host))?;
        let mut builder = builder.port(settings.port).timeout(Some(settings.timeout));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self { transport: builder.build(), from, max_attempts: settings.max_attempts.max(1) })
    }

    async fn send(&self, mail: &Mail) -> Result<(), String> {
        let body = mail.body.as_ref().ok_or("the mail has no body any more")?;
        let to: Mailbox = mail.recipient.parse().map_err(|e| format!("recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&body.subject)
            .multipart(MultiPart::alternative_plain_html(body.text.clone(), body.html.clone()))
            .map_err(|e| format!("cannot build the message: {e}"))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| format!("SMTP: {e}"))
    }
}

/// How long a claimed mail is this instance's before another may take it.
const LEASE: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);

/// The wait before attempt `attempts + 1`: 30 s doubling, at most an hour.
fn backoff(attempts: u32) -> jiff::SignedDuration {
    jiff::SignedDuration::from_secs(30i64.saturating_mul(1 << attempts.saturating_sub(1).min(7)).min(3600))
}

/// Runs until the process ends.
pub async fn run(store: Arc<dyn Store>, mailer: Mailer) {
    let ctx = AuditContext::new(Actor::new(ActorKind::Scheduler, "mailer"));
    loop {
        match send_due(store.as_ref(), &mailer, &ctx).await {
            Ok(0) => tokio::time::sleep(Duration::from_millis(500)).await,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "mail outbox pass failed");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Sends what is due; returns how many mails it tried.
pub async fn send_due(store: &dyn Store, mailer: &Mailer, ctx: &AuditContext) -> idbridge_core::DomainResult<usize> {
    let now = idbridge_core::clock::now();
    let mails = store.claim_due_mails(now, LEASE, 20).await?;
    for mail in &mails {
        let audit = |action: &'static str, error: Option<&str>| {
            ctx.record(
                Some(mail.tenant_id),
                "individual",
                mail.individual_id.to_string(),
                action,
                None,
                Some(serde_json::json!({
                    "mail": mail.id, "kind": mail.kind.as_str(), "recipient": mail.recipient,
                    "attempts": mail.attempts, "error": error,
                })),
            )
        };
        match mailer.send(mail).await {
            Ok(()) => {
                tracing::info!(mail = %mail.id, kind = mail.kind.as_str(), "mail sent");
                metrics::counter!("idbridge_mails_total", "outcome" => "sent").increment(1);
                store.mail_sent(mail.id, idbridge_core::clock::now(), &audit("mail.sent", None)).await?;
            }
            Err(error) if mail.attempts >= mailer.max_attempts => {
                tracing::error!(mail = %mail.id, kind = mail.kind.as_str(), attempts = mail.attempts, error, "mail given up");
                metrics::counter!("idbridge_mails_total", "outcome" => "dead").increment(1);
                let now = idbridge_core::clock::now();
                store.mail_failed(mail.id, None, &error, now, Some(&audit("mail.dead", Some(&error)))).await?;
            }
            Err(error) => {
                let due = idbridge_core::clock::now() + backoff(mail.attempts);
                tracing::warn!(mail = %mail.id, kind = mail.kind.as_str(), attempts = mail.attempts, error, "mail not sent; retrying");
                metrics::counter!("idbridge_mails_total", "outcome" => "retried").increment(1);
                store.mail_failed(mail.id, Some(due), &error, idbridge_core::clock::now(), None).await?;
            }
        }
    }
    Ok(mails.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_from_thirty_seconds_to_an_hour() {
        assert_eq!(super::backoff(1).as_secs(), 30);
        assert_eq!(super::backoff(2).as_secs(), 60);
        assert_eq!(super::backoff(5).as_secs(), 480);
        assert_eq!(super::backoff(30).as_secs(), 3600);
    }
}
