//! Durable intent: "these people of this tenant must be re-decided".
//!
//! A source write records its intents in the same database transaction as the source
//! record, so what a client was told succeeded is never forgotten by a crash, a stopped
//! database or a failed reconciliation: the request's own fast path usually settles the
//! intents at once, and `ports::IntentQueue`'s worker (the daemon's) takes whatever is
//! left — at start-up, after a fault, or when the fast path was not taken — retries it
//! with back-off, and clears it only once the person's individual agrees with the sources.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::individual::SourceLink;
use crate::tenant::TenantId;

/// How long a new intent is left to the request that recorded it before the worker takes
/// it (the fast path clears it within milliseconds; taking it twice is harmless but
/// wasted work).
pub const FAST_PATH_GRACE: SignedDuration = SignedDuration::from_secs(2);

/// How long the worker that took an intent has it to itself. Settling an intent twice is
/// harmless (reconciliation is idempotent and version-checked), so a claim is a lease
/// without renewal: a worker that died, or is slow, loses it to the next one.
pub const CLAIM_LEASE: SignedDuration = SignedDuration::from_secs(5);

/// One outstanding intent, as the worker takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: i64,
    pub tenant_id: TenantId,
    /// The person, by their identity at the source that changed.
    pub person: SourceLink,
    pub created_at: Timestamp,
    /// Earlier attempts (including this claim).
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// The queue as `/metrics` and `/readyz` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IntentStats {
    pub queued: u64,
    /// Age of the oldest outstanding intent, in seconds.
    pub oldest_seconds: u64,
    /// Intents whose last attempt failed (they are retried with back-off).
    pub failing: u64,
    /// The last failure's message, for an operator.
    pub last_error: Option<String>,
}

/// The retry delay after `attempts` failed attempts: exponential from 250 ms, capped at
/// 256 s (a person whose write keeps failing — a login another individual holds — is
/// retried every few minutes and shown as failing meanwhile).
pub fn backoff(attempts: i64) -> SignedDuration {
    let exp = u32::try_from(attempts.clamp(1, 11) - 1).unwrap_or(0);
    let millis = 250_i64.saturating_mul(1_i64 << exp).min(300_000);
    SignedDuration::from_millis(millis)
}

/// What the source write owes: the intents it recorded and the SCIM users they name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owed {
    pub intents: Vec<i64>,
    pub users: Vec<uuid::Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), SignedDuration::from_millis(250));
        assert_eq!(backoff(2), SignedDuration::from_millis(500));
        assert_eq!(backoff(5), SignedDuration::from_secs(4));
        assert_eq!(backoff(11), SignedDuration::from_secs(256));
        assert_eq!(backoff(100), SignedDuration::from_secs(256));
        assert_eq!(backoff(i64::MAX), SignedDuration::from_secs(256));
        assert_eq!(backoff(0), SignedDuration::from_millis(250));
    }
}
