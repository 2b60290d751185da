//! Audit records (who changed what, append-only) and change events (what portals and
//! connectors are told, through the outbox). Both are written in the same transaction as
//! the change they describe.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::individual::IndividualId;
use crate::tenant::TenantId;
use crate::{DomainError, DomainResult};

/// The kind of party that made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// An operator, through the CLI (on the host) or an admin API token.
    Operator,
    /// A SCIM client (Entra, Okta) with one of the tenant's tokens.
    ScimToken,
    /// An LDAP sync run.
    SyncRun,
    /// An SSO login (just-in-time provisioning).
    Login,
    /// A delegated administrator: an individual of the tenant.
    Individual,
    /// The lifecycle scheduler.
    Scheduler,
    /// A portal connector (its deletion guard holding disables).
    Connector,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::ScimToken => "scim_token",
            Self::SyncRun => "sync_run",
            Self::Login => "login",
            Self::Individual => "individual",
            Self::Scheduler => "scheduler",
            Self::Connector => "connector",
        }
    }

    pub fn parse(s: &str) -> DomainResult<Self> {
        Ok(match s {
            "operator" => Self::Operator,
            "scim_token" => Self::ScimToken,
            "sync_run" => Self::SyncRun,
            "login" => Self::Login,
            "individual" => Self::Individual,
            "scheduler" => Self::Scheduler,
            "connector" => Self::Connector,
            other => return Err(DomainError::invalid("actor kind", format!("{other:?} is unknown"))),
        })
    }
}

/// Who made a change: the kind and an identifier that is not a secret (a token's id or
/// name, a sync run id, an individual id, `cli@hostname`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
}

impl Actor {
    pub fn new(kind: ActorKind, id: impl Into<String>) -> Self {
        Self { kind, id: id.into() }
    }
}

/// The request a write belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditContext {
    pub actor: Actor,
    pub request_id: Option<String>,
}

impl AuditContext {
    pub fn new(actor: Actor) -> Self {
        Self { actor, request_id: None }
    }

    /// The audit record of one change made in this context.
    pub fn record(
        &self,
        tenant_id: Option<TenantId>,
        subject_kind: &'static str,
        subject_id: impl Into<String>,
        action: &'static str,
        before: Option<Value>,
        after: Option<Value>,
    ) -> AuditRecord {
        AuditRecord {
            tenant_id,
            actor: self.actor.clone(),
            subject_kind: subject_kind.to_owned(),
            subject_id: subject_id.into(),
            action: action.to_owned(),
            before,
            after,
            request_id: self.request_id.clone(),
            at: crate::clock::now(),
        }
    }
}

/// One append-only entry. `tenant_id` is `None` for operator-wide configuration
/// (roles, access profiles, catalog).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub tenant_id: Option<TenantId>,
    pub actor: Actor,
    pub subject_kind: String,
    pub subject_id: String,
    pub action: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
    pub at: Timestamp,
}

/// A stored audit record with its position in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// Which audit entries to read; results are ordered oldest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// `None` reads operator-wide entries.
    pub tenant_id: Option<TenantId>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Matches the actor id exactly.
    pub actor: Option<String>,
    /// Matches the subject id exactly.
    pub subject: Option<String>,
    /// Entries after this id (pagination).
    pub after_id: Option<i64>,
    pub limit: u32,
}

impl AuditQuery {
    /// A query from filters as operators type them — instants in RFC 3339 — the same for
    /// the CLI and the admin API. The error names the filter and what was given.
    pub fn from_filters(
        since: Option<&str>,
        until: Option<&str>,
        actor: Option<String>,
        subject: Option<String>,
        after_id: Option<i64>,
        limit: u32,
    ) -> Result<Self, String> {
        let instant = |field: &str, raw: Option<&str>| -> Result<Option<Timestamp>, String> {
            raw.map(|t| {
                t.parse::<Timestamp>()
                    .map_err(|_| format!("{field}: {t:?} is not an RFC 3339 instant such as 2026-11-24T10:00:00Z"))
            })
            .transpose()
        };
        Ok(Self {
            tenant_id: None,
            since: instant("since", since)?,
            until: instant("until", until)?,
            actor,
            subject,
            after_id,
            limit,
        })
    }
}

/// What happened to an individual, for portals and connectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    IndividualCreated,
    IndividualUpdated,
    IndividualActivated,
    IndividualSuspended,
    IndividualExpired,
    IndividualDeleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IndividualCreated => "individual.created",
            Self::IndividualUpdated => "individual.updated",
            Self::IndividualActivated => "individual.activated",
            Self::IndividualSuspended => "individual.suspended",
            Self::IndividualExpired => "individual.expired",
            Self::IndividualDeleted => "individual.deleted",
        }
    }

    pub fn parse(s: &str) -> DomainResult<Self> {
        Ok(match s {
            "individual.created" => Self::IndividualCreated,
            "individual.updated" => Self::IndividualUpdated,
            "individual.activated" => Self::IndividualActivated,
            "individual.suspended" => Self::IndividualSuspended,
            "individual.expired" => Self::IndividualExpired,
            "individual.deleted" => Self::IndividualDeleted,
            other => return Err(DomainError::invalid("change kind", format!("{other:?} is unknown"))),
        })
    }
}

/// An outbox entry. `id` doubles as the idempotency key for deliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub individual_id: IndividualId,
    pub kind: ChangeKind,
    /// The individual as it is after the change.
    pub individual: Value,
    /// For updates: which permissions changed (before and after per field).
    pub permission_diff: Option<Value>,
    pub at: Timestamp,
}
