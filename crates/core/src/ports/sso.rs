//! The port for sign-in state: portals, signing keys, sessions, codes, tokens and the
//! back-channel logouts owed.

use async_trait::async_trait;
use uuid::Uuid;

use crate::DomainResult;
use crate::audit::AuditRecord;
use crate::individual::IndividualId;
use crate::tenant::TenantId;

/// Single sign-on state: portal clients, signing keys, pending logins, sessions,
/// authorization codes and tokens. Secrets (client secrets, codes, tokens, session
/// cookies) are stored as SHA-256 hashes only.
#[async_trait]
pub trait SsoStore: Send + Sync + 'static {
    /// Creates or replaces a portal client, with its audit record.
    async fn put_portal_client(&self, client: &crate::sso::PortalClient, audit: &AuditRecord) -> DomainResult<()>;
    async fn get_portal_client(&self, id: &str) -> DomainResult<Option<crate::sso::PortalClient>>;
    async fn list_portal_clients(&self) -> DomainResult<Vec<crate::sso::PortalClient>>;
    async fn delete_portal_client(&self, id: &str, audit: &AuditRecord) -> DomainResult<bool>;

    /// Every signing key not yet removed, newest first.
    async fn list_signing_keys(&self) -> DomainResult<Vec<crate::sso::SigningKeyRecord>>;
    /// Adds a key and schedules the keys it replaces (retire and remove instants), in one
    /// transaction.
    async fn add_signing_key(
        &self,
        key: &crate::sso::SigningKeyRecord,
        replaces: &[(String, jiff::Timestamp, jiff::Timestamp)],
        audit: &AuditRecord,
    ) -> DomainResult<()>;

    /// A short-lived record keyed by a hash (a login in flight: state, nonce, PKCE
    /// verifier, the portal's request).
    async fn put_pending(&self, hash: &str, data: &str, expires_at: jiff::Timestamp) -> DomainResult<()>;
    /// Takes (reads and deletes) a pending record that has not expired; a second take of
    /// the same hash finds nothing.
    async fn take_pending(&self, hash: &str, now: jiff::Timestamp) -> DomainResult<Option<String>>;

    async fn create_session(&self, session: &crate::sso::SsoSession, cookie_hash: &str) -> DomainResult<()>;
    /// The live session behind a cookie (not ended, not expired).
    async fn find_session(
        &self,
        cookie_hash: &str,
        now: jiff::Timestamp,
    ) -> DomainResult<Option<crate::sso::SsoSession>>;
    async fn get_session(&self, id: Uuid) -> DomainResult<Option<crate::sso::SsoSession>>;
    /// Ends one session and revokes its tokens; the portals holding tokens of it. Like
    /// every way of ending sessions, it records in the same transaction a back-channel
    /// logout owed to each of those portals (`claim_backchannel_logouts`).
    async fn end_session(&self, id: Uuid, now: jiff::Timestamp) -> DomainResult<Vec<String>>;
    /// Takes up to `limit` back-channel logouts due at `now` for `lease` (with several
    /// instances each is taken by one of them), oldest first.
    async fn claim_backchannel_logouts(
        &self,
        now: jiff::Timestamp,
        lease: jiff::SignedDuration,
        limit: u32,
    ) -> DomainResult<Vec<crate::sso::BackchannelLogout>>;
    /// The portal accepted it (or has no back-channel endpoint): it is owed no more.
    async fn backchannel_logout_done(&self, id: i64) -> DomainResult<()>;
    /// It failed: due again at `due`, or given up (`dead`) when `due` is `None`.
    async fn backchannel_logout_failed(
        &self,
        id: i64,
        due: Option<jiff::Timestamp>,
        error: &str,
        now: jiff::Timestamp,
    ) -> DomainResult<()>;
    async fn backchannel_logout_stats(&self, now: jiff::Timestamp) -> DomainResult<crate::sso::BackchannelStats>;
    /// The back-channel logouts given up, newest first.
    async fn list_dead_backchannel_logouts(&self, limit: u32) -> DomainResult<Vec<crate::sso::BackchannelLogout>>;
    /// Ends every live session of a tenant and revokes every token of it, for good (the
    /// tenant was disabled: enabling it again revives none). Returns each individual's
    /// ended sessions.
    async fn end_tenant_sessions(
        &self,
        tenant: TenantId,
        now: jiff::Timestamp,
    ) -> DomainResult<Vec<(IndividualId, crate::sso::EndedSession)>>;
    /// Ends every session of an individual that began before `started_before`, and
    /// revokes their tokens. A change to the individual ends the sessions that were
    /// decided before it — never one a sign-in opened after the change (the sign-in that
    /// caused it, say).
    async fn end_individual_sessions(
        &self,
        tenant: TenantId,
        individual: IndividualId,
        started_before: jiff::Timestamp,
        now: jiff::Timestamp,
    ) -> DomainResult<Vec<crate::sso::EndedSession>>;

    async fn put_code(&self, hash: &str, code: &crate::sso::AuthorizationCode) -> DomainResult<()>;
    /// Redeems a code once, recording the grant it starts; a second redemption revokes
    /// that grant's tokens and reports `Replayed`.
    async fn redeem_code(
        &self,
        hash: &str,
        grant_id: Uuid,
        now: jiff::Timestamp,
    ) -> DomainResult<crate::sso::CodeRedemption>;

    async fn put_tokens(&self, tokens: &[crate::sso::OAuthToken]) -> DomainResult<()>;
    /// An access token that is neither expired nor revoked.
    async fn find_access_token(&self, hash: &str, now: jiff::Timestamp)
    -> DomainResult<Option<crate::sso::OAuthToken>>;
    /// Uses a refresh token once; reuse revokes the whole grant.
    async fn use_refresh_token(&self, hash: &str, now: jiff::Timestamp) -> DomainResult<crate::sso::RefreshUse>;
    /// Deletes expired pending records, codes and tokens.
    async fn purge_sso(&self, now: jiff::Timestamp) -> DomainResult<u64>;
}
