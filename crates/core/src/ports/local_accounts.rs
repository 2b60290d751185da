//! The port for individuals' own credentials and the mails sent to them.

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use crate::DomainResult;
use crate::audit::AuditRecord;
use crate::individual::IndividualId;
use crate::local_account::{LinkPurpose, LocalCredential, Mail};
use crate::tenant::TenantId;

/// Local credentials (password hashes, TOTP secrets, recovery-code hashes, the one link
/// out per individual as a hash) and the mail outbox.
#[async_trait]
pub trait LocalAccountStore: Send + Sync + 'static {
    async fn get_local_credential(
        &self,
        tenant: TenantId,
        individual: IndividualId,
    ) -> DomainResult<Option<LocalCredential>>;
    /// Every credential signed in with this (lower-cased) address: one address can be an
    /// individual in two tenants.
    async fn find_local_credentials(&self, email_key: &str) -> DomainResult<Vec<LocalCredential>>;
    /// Creates or replaces a credential, with its audit record when the change is one to
    /// audit, in one transaction.
    async fn put_local_credential(&self, credential: &LocalCredential, audit: Option<&AuditRecord>)
    -> DomainResult<()>;
    /// A new link and the mail that carries it, each with its audit record, in one
    /// transaction: never a link nobody was sent.
    async fn put_local_credential_and_mail(
        &self,
        credential: &LocalCredential,
        audit: &AuditRecord,
        mail: &Mail,
        mail_audit: &AuditRecord,
    ) -> DomainResult<()>;
    /// Takes the link with this hash and purpose if it has not expired: the credential with
    /// the link cleared, in one statement, so a link is used once even when two requests
    /// race (the loser reads `None`).
    async fn take_local_link(
        &self,
        link_hash: &str,
        purpose: LinkPurpose,
        now: Timestamp,
    ) -> DomainResult<Option<LocalCredential>>;
    /// The credential whose unexpired link has this hash, without using the link (the page
    /// that asks for the new password).
    async fn find_local_link(&self, link_hash: &str, now: Timestamp) -> DomainResult<Option<LocalCredential>>;
    /// Counts one failed attempt in one statement (concurrent guesses each count) and
    /// returns the failures in a row.
    async fn count_local_failure(
        &self,
        tenant: TenantId,
        individual: IndividualId,
        now: Timestamp,
    ) -> DomainResult<u32>;
    async fn lock_local_account(
        &self,
        tenant: TenantId,
        individual: IndividualId,
        until: Timestamp,
        audit: &AuditRecord,
    ) -> DomainResult<()>;
    /// A success: the failures in a row start again from zero.
    async fn reset_local_failures(&self, tenant: TenantId, individual: IndividualId) -> DomainResult<()>;

    /// A tenant's credentials whose individual (pending or active) expires after `now` and
    /// no later than `horizon` and has not been told about that instant yet, soonest first.
    async fn list_expiry_notices_due(
        &self,
        tenant: TenantId,
        now: Timestamp,
        horizon: Timestamp,
        limit: u32,
    ) -> DomainResult<Vec<LocalCredential>>;
    /// Queues an expiry notice and marks the credential as told about `expiration`, in one
    /// transaction; `false` (and nothing queued) when another instance already did.
    async fn enqueue_expiry_notice(
        &self,
        mail: &Mail,
        expiration: Timestamp,
        audit: &AuditRecord,
    ) -> DomainResult<bool>;
    /// Queues a mail, with its audit record (which never holds the body).
    async fn enqueue_mail(&self, mail: &Mail, audit: &AuditRecord) -> DomainResult<()>;
    /// Takes up to `limit` mails due at `now` for `lease` (with several instances each is
    /// taken by one of them), soonest first.
    async fn claim_due_mails(&self, now: Timestamp, lease: SignedDuration, limit: u32) -> DomainResult<Vec<Mail>>;
    /// The SMTP server accepted it: the body (which may hold a link) is dropped.
    async fn mail_sent(&self, id: Uuid, now: Timestamp, audit: &AuditRecord) -> DomainResult<()>;
    /// It failed: due again at `due`, or given up (`dead`, body dropped, audited) when
    /// `due` is `None`.
    async fn mail_failed(
        &self,
        id: Uuid,
        due: Option<Timestamp>,
        error: &str,
        now: Timestamp,
        audit: Option<&AuditRecord>,
    ) -> DomainResult<()>;
    /// A tenant's mails (one individual's when given), newest first.
    async fn list_mails(
        &self,
        tenant: TenantId,
        individual: Option<IndividualId>,
        limit: u32,
    ) -> DomainResult<Vec<Mail>>;
}
