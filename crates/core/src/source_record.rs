//! Source records pushed over SCIM: the resource exactly as the client wrote it (SCIM
//! semantics: what was written is what is read back), plus group memberships kept as
//! rows so that changing one member of a huge group never reads the others.
//!
//! The JSON body is protocol data the SCIM crate owns; core only stores it, scoped by
//! tenant, with the fields the store must index.

use jiff::Timestamp;
use serde_json::Value;
use uuid::Uuid;

use crate::audit::AuditRecord;
use crate::tenant::TenantId;
use crate::{DomainError, DomainResult};

/// The SCIM schema URNs whose attributes a stored user record carries for mapping.
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// idbridge's own extension for portal attributes.
pub const PORTAL_USER: &str = "urn:idbridge:params:scim:schemas:extension:portal:2.0:User";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimKind {
    User,
    Group,
}

impl ScimKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }

    pub fn parse(s: &str) -> DomainResult<Self> {
        match s {
            "User" => Ok(Self::User),
            "Group" => Ok(Self::Group),
            other => Err(DomainError::Storage(format!("unknown SCIM kind {other:?}"))),
        }
    }
}

/// One stored SCIM resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimRecord {
    pub tenant_id: TenantId,
    pub kind: ScimKind,
    pub id: Uuid,
    pub external_id: Option<String>,
    /// `userName` of a user, `displayName` of a group: unique per tenant and kind,
    /// compared without regard to case.
    pub name: String,
    /// The resource body without `id`, `meta`, `members` and `groups`.
    pub data: Value,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Insertion order: the stable order of listings.
    pub seq: i64,
}

/// A change to a group's member rows, applied as set operations in SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberChange {
    Add(Vec<Uuid>),
    Remove(Vec<Uuid>),
    RemoveAll,
}

/// Create (`expected_version: None`) or update a record, with member changes, as one
/// transaction with one audit record. The version grows by one.
#[derive(Debug, Clone)]
pub struct ScimWrite {
    pub record: ScimRecord,
    pub expected_version: Option<i64>,
    /// Whether `record.data`/`name`/`external_id` changed (member-only PATCHes skip the
    /// rewrite of the body).
    pub body_changed: bool,
    pub members: Vec<MemberChange>,
    /// The source change this write is part of: one SCIM request (every operation of a
    /// Bulk request shares it). Its intents are taken by the worker together, so the
    /// mass-deprovision guard judges the whole request.
    pub change: Uuid,
    pub audit: AuditRecord,
}

/// Which records to list, in `seq` order.
#[derive(Debug, Clone, Default)]
pub struct ScimQuery {
    pub name_eq: Option<String>,
    pub external_id_eq: Option<String>,
    pub id_eq: Option<Uuid>,
    /// Keyset position: records after this `seq`.
    pub after_seq: Option<i64>,
    pub offset: u64,
    /// `None`: no limit.
    pub limit: Option<u32>,
}

/// A member row of a group, with what the SCIM `members` attribute shows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimMember {
    pub id: Uuid,
    pub kind: ScimKind,
    pub display: String,
}
