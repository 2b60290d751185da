//! Portal connectors: idbridge carries each individual into the portal itself.
//!
//! A connector is configured per tenant (`[[tenants.connectors]]` in the apply file, kept
//! with the policy like directory sources). For every individual it has touched it keeps a
//! [`ConnectorLink`]: the remote object's id and version, what was last pushed, and whether
//! the link owes a push. Change events mark links as owing (`wanted` goes up); the pusher
//! reads the individual's *current* state, pushes it, and records the `wanted` it read as
//! `done` — so a change that arrives during a push is never lost, and an individual's
//! changes reach the portal in order (the latest state wins, never an older one after it).
//!
//! The configuration is in `config` (below the tenant, whose policy holds it); the links and
//! health here.

pub mod config;

use serde::{Deserialize, Serialize};

use crate::individual::IndividualId;
use crate::tenant::TenantId;

pub use config::{ConnectorConfig, ConnectorKind, OAuthClient, OnExpire, PORTAL_EXTENSION, ScimTarget, YetiTarget};

/// Where a link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// The portal agrees with the individual as last read (or a push is owed: `wanted > done`).
    Synced,
    /// The last attempt failed; retried at `next_attempt_at`.
    Retrying,
    /// Gave up after the connector's attempts; the next change or a resync tries again.
    Dead,
    /// The portal has a user with this login that idbridge does not manage: parked until
    /// an operator resolves it (or enables adoption) and resyncs.
    Conflict,
    /// A disable or deletion the individual does not explain (the portal's user is active
    /// although idbridge last left it inactive, or was adopted or found): waiting for the
    /// deletion guard to count it with the others of the pass.
    Unexplained,
    /// Such disables, more than the tenant's mass-deprovision threshold: held in a change
    /// set until an operator approves it (`idbridge changes approve`).
    Held,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "synced",
            Self::Retrying => "retrying",
            Self::Dead => "dead",
            Self::Conflict => "conflict",
            Self::Unexplained => "unexplained",
            Self::Held => "held",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "synced" => Self::Synced,
            "retrying" => Self::Retrying,
            "dead" => Self::Dead,
            "conflict" => Self::Conflict,
            "unexplained" => Self::Unexplained,
            "held" => Self::Held,
            _ => return None,
        })
    }
}

/// One individual as one connector knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorLink {
    pub tenant_id: TenantId,
    pub connector: String,
    pub individual_id: IndividualId,
    /// The portal's id of the remote object; `None` before it is created or after it was
    /// deleted (expiry as deletion).
    pub remote_id: Option<String>,
    /// The remote object's version (SCIM ETag) as last seen, for `If-Match`.
    pub remote_version: Option<String>,
    /// The document last pushed (the connector's own form), to send only what changed.
    pub pushed: Option<serde_json::Value>,
    /// Bumped by every change of the individual (and by a resync).
    pub wanted: i64,
    /// The `wanted` the last finished push read; the link owes a push while `wanted > done`.
    pub done: i64,
    /// Read the remote object back before the next push (drift repair).
    pub verify: bool,
    /// The portal's object was left active by the last push (what the deletion guard counts).
    pub remote_active: bool,
    /// The `wanted` up to which an operator approved this link's disable (deletion guard).
    pub guard_passed: i64,
    pub state: LinkState,
    pub attempts: u32,
    pub next_attempt_at: jiff::Timestamp,
    pub last_error: Option<String>,
    pub updated_at: jiff::Timestamp,
}

/// How many links of a connector are in each state, for `connector status` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkCounts {
    pub synced: u64,
    /// Links owing a push (any state but conflict).
    pub owed: u64,
    pub retrying: u64,
    pub dead: u64,
    pub conflict: u64,
    /// Disables and deletions the deletion guard holds (or is about to judge).
    pub held: u64,
}

/// The connector's own health, written by the instance that pushes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectorHealth {
    /// Failing persistently: only a probe is sent now and then until one succeeds.
    pub quarantined_since: Option<jiff::Timestamp>,
    pub consecutive_failures: u32,
    pub last_success_at: Option<jiff::Timestamp>,
    pub last_error: Option<String>,
    pub last_drift_repair_at: Option<jiff::Timestamp>,
    /// The configuration everyone was last pushed with (`ConnectorConfig::digest`).
    pub config_digest: Option<String>,
}

/// Back-off before attempt `attempt + 1` (1-based `attempt` that just failed): doubling
/// from 1 s up to 5 min, with up to a quarter subtracted at random (`jitter` in 0..1) so
/// that links failing together do not come back together.
pub fn backoff(attempt: u32, jitter: f64) -> jiff::SignedDuration {
    let base_ms = 1000u64.saturating_mul(1 << attempt.saturating_sub(1).min(9)).min(300_000);
    let cut = (base_ms as f64 * 0.25 * jitter.clamp(0.0, 1.0)) as u64;
    jiff::SignedDuration::from_millis((base_ms - cut) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_down() {
        assert_eq!(backoff(1, 0.0), jiff::SignedDuration::from_secs(1));
        assert_eq!(backoff(2, 0.0), jiff::SignedDuration::from_secs(2));
        assert_eq!(backoff(30, 0.0), jiff::SignedDuration::from_secs(300));
        assert_eq!(backoff(3, 1.0), jiff::SignedDuration::from_secs(3));
        assert!(backoff(0, 0.5) > jiff::SignedDuration::ZERO);
    }
}
