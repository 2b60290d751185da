//! Individuals without an IdP: their own credential (a password, a TOTP second factor,
//! recovery codes), the lockout that slows guessing, the links that let them set or reset
//! it, and the mails that carry those links and the notices before activation and expiry.
//!
//! Nothing here hashes or checks a password (that is `app::local_accounts`, with Argon2id);
//! this is what is kept, and the rules that are pure arithmetic.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::individual::IndividualId;
pub use crate::local_sign_in::{Language, LocalSignInPolicy};
use crate::tenant::TenantId;

/// One individual's local credential.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalCredential {
    pub tenant_id: TenantId,
    pub individual_id: IndividualId,
    /// The lower-cased address the person signs in with.
    pub email_key: String,
    /// Argon2id, as a PHC string; `None` until the invitation is accepted.
    pub password_hash: Option<String>,
    pub password_set_at: Option<Timestamp>,
    /// The TOTP secret (base32) from the moment enrolment began.
    pub totp_secret: Option<String>,
    /// Enrolment finished: a code was entered. Until then the secret is not asked for.
    pub totp_confirmed_at: Option<Timestamp>,
    /// The last 30-second step a code was accepted for: a code is good once (RFC 6238 §5.2).
    pub totp_last_step: Option<i64>,
    /// SHA-256 hashes of the recovery codes not used yet.
    pub recovery_codes: Vec<String>,
    /// WebAuthn passkeys registered as the second factor (instead of, or beside, TOTP).
    pub passkeys: Vec<PasskeyRecord>,
    /// The one link out (an invitation or a reset), if any.
    pub link: Option<CredentialLink>,
    /// Wrong passwords or codes since the last success.
    pub failures: u32,
    pub locked_until: Option<Timestamp>,
    /// The expiration instant an expiry notice was sent for: one notice per date, and a new
    /// one when the date moves.
    pub expiry_noticed_for: Option<Timestamp>,
    pub updated_at: Timestamp,
}

impl LocalCredential {
    pub fn new(tenant_id: TenantId, individual_id: IndividualId, email: &str, now: Timestamp) -> Self {
        Self {
            tenant_id,
            individual_id,
            email_key: email_key(email),
            password_hash: None,
            password_set_at: None,
            totp_secret: None,
            totp_confirmed_at: None,
            totp_last_step: None,
            recovery_codes: Vec::new(),
            passkeys: Vec::new(),
            link: None,
            failures: 0,
            locked_until: None,
            expiry_noticed_for: None,
            updated_at: now,
        }
    }

    /// A TOTP whose enrolment was finished, or a passkey.
    pub fn has_second_factor(&self) -> bool {
        self.has_totp() || !self.passkeys.is_empty()
    }

    pub fn has_totp(&self) -> bool {
        self.totp_secret.is_some() && self.totp_confirmed_at.is_some()
    }

    pub fn locked(&self, now: Timestamp) -> Option<Timestamp> {
        self.locked_until.filter(|until| *until > now)
    }
}

/// A registered passkey. `key` is the WebAuthn library's credential record (public key,
/// signature counter, backup state), kept whole and opaque here: the application layer
/// reads and updates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyRecord {
    /// The credential id, base64url: how an assertion names the passkey it came from.
    pub credential_id: String,
    pub created_at: Timestamp,
    #[serde(default)]
    pub last_used_at: Option<Timestamp>,
    pub key: serde_json::Value,
}

/// How addresses are compared: trimmed, lower-cased.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Failures allowed before the first lock.
pub const FREE_FAILURES: u32 = 5;

/// How long an account (or a client address) is locked after `failures` wrong attempts in a
/// row: nothing for the first few, then one minute, doubling with each further failure, up
/// to an hour. Guessing stays possible for the owner after a pause, and costs an attacker
/// an hour per attempt once it has tried a dozen times.
pub fn lockout(failures: u32) -> Option<SignedDuration> {
    let over = failures.checked_sub(FREE_FAILURES)?;
    let minutes = 1i64 << over.min(6);
    Some(SignedDuration::from_mins(minutes.min(60)))
}

/// What a link sent by mail lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkPurpose {
    /// Set the first password (an invitation).
    Invitation,
    /// Set a new password (a reset the person asked for).
    Reset,
}

/// A link sent by mail, as kept: the SHA-256 of its token (never the token), what it is
/// for and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialLink {
    pub hash: String,
    pub purpose: LinkPurpose,
    pub expires_at: Timestamp,
}

impl LinkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invitation => "invitation",
            Self::Reset => "reset",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Invitation, Self::Reset].into_iter().find(|k| k.as_str() == s)
    }
}

/// What a mail is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailKind {
    Invitation,
    PasswordReset,
    /// Access begins now (sent at the activation instant).
    AccessStarts,
    /// Access ends in a few days.
    AccessEnds,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invitation => "invitation",
            Self::PasswordReset => "password_reset",
            Self::AccessStarts => "access_starts",
            Self::AccessEnds => "access_ends",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Invitation, Self::PasswordReset, Self::AccessStarts, Self::AccessEnds]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailState {
    Pending,
    Sent,
    /// Given up after the configured attempts (the dead letters).
    Dead,
}

impl MailState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Dead].into_iter().find(|k| k.as_str() == s)
    }
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailBody {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A mail owed or sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub individual_id: IndividualId,
    pub kind: MailKind,
    pub recipient: String,
    /// `None` once sent or given up (it may have held a link).
    pub body: Option<MailBody>,
    pub state: MailState,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

impl Mail {
    pub fn new(
        tenant_id: TenantId,
        individual_id: IndividualId,
        kind: MailKind,
        recipient: &str,
        body: MailBody,
        now: Timestamp,
    ) -> Self {
        Self {
            id: Uuid::new_v4(),
            tenant_id,
            individual_id,
            kind,
            recipient: recipient.to_owned(),
            body: Some(body),
            state: MailState::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            created_at: now,
            sent_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_starts_after_the_free_failures_and_doubles_to_an_hour() {
        assert_eq!(lockout(0), None);
        assert_eq!(lockout(FREE_FAILURES - 1), None);
        assert_eq!(lockout(FREE_FAILURES), Some(SignedDuration::from_mins(1)));
        assert_eq!(lockout(FREE_FAILURES + 1), Some(SignedDuration::from_mins(2)));
        assert_eq!(lockout(FREE_FAILURES + 5), Some(SignedDuration::from_mins(32)));
        assert_eq!(lockout(FREE_FAILURES + 6), Some(SignedDuration::from_mins(60)));
        assert_eq!(lockout(u32::MAX), Some(SignedDuration::from_mins(60)));
    }
}
