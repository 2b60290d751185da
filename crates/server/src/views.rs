//! What operators read, as the admin API sends it and `--json` prints it: wire types
//! built from domain types at the edge, so that a field added to a domain type (a hash,
//! an internal id) is never published by accident.

use serde::Serialize;

/// A tenant's SCIM token as listed: never its hash.
#[derive(Debug, Serialize)]
pub struct ScimToken {
    pub id: String,
    pub tenant_id: idbridge_core::tenant::TenantId,
    pub name: String,
    pub created_at: jiff::Timestamp,
    pub revoked_at: Option<jiff::Timestamp>,
}

impl From<idbridge_core::token::ScimTokenRecord> for ScimToken {
    fn from(record: idbridge_core::token::ScimTokenRecord) -> Self {
        // Exhaustive: a field added to the record is placed here or left out on purpose.
        let idbridge_core::token::ScimTokenRecord { id, tenant_id, name, hash: _, created_at, revoked_at } = record;
        Self { id, tenant_id, name, created_at, revoked_at }
    }
}

pub fn scim_tokens(records: Vec<idbridge_core::token::ScimTokenRecord>) -> Vec<ScimToken> {
    records.into_iter().map(ScimToken::from).collect()
}

/// A tenant as operators read it.
#[derive(Debug, Serialize)]
pub struct Tenant<'a> {
    pub id: idbridge_core::tenant::TenantId,
    pub slug: &'a idbridge_core::tenant::TenantSlug,
    pub name: &'a str,
    pub enabled: bool,
    pub default_time_zone: &'a str,
    pub allowed_roles: &'a std::collections::BTreeSet<String>,
    pub allowed_access_profiles: &'a std::collections::BTreeSet<String>,
    pub policy: &'a idbridge_core::tenant::TenantPolicy,
    pub version: i64,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
}

impl<'a> From<&'a idbridge_core::tenant::Tenant> for Tenant<'a> {
    fn from(tenant: &'a idbridge_core::tenant::Tenant) -> Self {
        let idbridge_core::tenant::Tenant {
            id,
            slug,
            name,
            enabled,
            default_time_zone,
            allowed_roles,
            allowed_access_profiles,
            policy,
            version,
            created_at,
            updated_at,
        } = tenant;
        Self {
            id: *id,
            slug,
            name,
            enabled: *enabled,
            default_time_zone,
            allowed_roles,
            allowed_access_profiles,
            policy,
            version: *version,
            created_at: *created_at,
            updated_at: *updated_at,
        }
    }
}

pub fn tenants(tenants: &[idbridge_core::tenant::Tenant]) -> Vec<Tenant<'_>> {
    tenants.iter().map(Tenant::from).collect()
}

/// An individual as operators read it (portals read `PortalIndividual`).
#[derive(Debug, Serialize)]
pub struct Individual<'a> {
    pub id: idbridge_core::individual::IndividualId,
    pub tenant_id: idbridge_core::tenant::TenantId,
    pub login: &'a str,
    pub email: Option<&'a str>,
    pub given_name: Option<&'a str>,
    pub family_name: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub role: Option<&'a str>,
    pub access_profile: Option<&'a str>,
    pub scopes: &'a idbridge_core::scopes::Scopes,
    pub time_zone: &'a str,
    pub activation: Option<&'a idbridge_core::schedule::LocalInstant>,
    pub expiration: Option<&'a idbridge_core::schedule::LocalInstant>,
    pub status: idbridge_core::individual::IndividualStatus,
    pub links: &'a [idbridge_core::individual::SourceLink],
    pub deprovisioned_at: Option<jiff::Timestamp>,
    pub access_ended_at: Option<jiff::Timestamp>,
    pub provenance: &'a idbridge_core::individual::Provenance,
    pub version: i64,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
}

impl<'a> From<&'a idbridge_core::individual::Individual> for Individual<'a> {
    fn from(individual: &'a idbridge_core::individual::Individual) -> Self {
        let idbridge_core::individual::Individual {
            id,
            tenant_id,
            login,
            email,
            given_name,
            family_name,
            display_name,
            role,
            access_profile,
            scopes,
            time_zone,
            activation,
            expiration,
            status,
            links,
            deprovisioned_at,
            access_ended_at,
            provenance,
            version,
            created_at,
            updated_at,
        } = individual;
        Self {
            id: *id,
            tenant_id: *tenant_id,
            login,
            email: email.as_deref(),
            given_name: given_name.as_deref(),
            family_name: family_name.as_deref(),
            display_name: display_name.as_deref(),
            role: role.as_deref(),
            access_profile: access_profile.as_deref(),
            scopes,
            time_zone,
            activation: activation.as_ref(),
            expiration: expiration.as_ref(),
            status: *status,
            links,
            deprovisioned_at: *deprovisioned_at,
            access_ended_at: *access_ended_at,
            provenance,
            version: *version,
            created_at: *created_at,
            updated_at: *updated_at,
        }
    }
}

pub fn individuals(individuals: &[idbridge_core::individual::Individual]) -> Vec<Individual<'_>> {
    individuals.iter().map(Individual::from).collect()
}

/// A held change set as operators read it, with its writes.
#[derive(Debug, Serialize)]
pub struct HeldChangeSet<'a> {
    pub id: uuid::Uuid,
    pub tenant_id: idbridge_core::tenant::TenantId,
    pub origin: &'a str,
    pub status: idbridge_core::changeset::ChangeSetStatus,
    pub summary: &'a idbridge_core::changeset::ChangeSummary,
    pub writes: Vec<PlannedWrite<'a>>,
    pub created_at: jiff::Timestamp,
    pub created_by: &'a str,
    pub decided_at: Option<jiff::Timestamp>,
    pub decided_by: Option<&'a str>,
    pub result: Option<&'a str>,
}

/// One held write: the individual as read (`null` for a create) and as it would become.
#[derive(Debug, Serialize)]
pub struct PlannedWrite<'a> {
    pub before: Option<Individual<'a>>,
    pub after: Individual<'a>,
    pub action: &'a str,
}

impl<'a> From<&'a idbridge_core::changeset::HeldChangeSet> for HeldChangeSet<'a> {
    fn from(set: &'a idbridge_core::changeset::HeldChangeSet) -> Self {
        let idbridge_core::changeset::HeldChangeSet {
            id,
            tenant_id,
            origin,
            status,
            summary,
            writes,
            created_at,
            created_by,
            decided_at,
            decided_by,
            result,
        } = set;
        Self {
            id: *id,
            tenant_id: *tenant_id,
            origin,
            status: *status,
            summary,
            writes: writes
                .iter()
                .map(|idbridge_core::changeset::PlannedWrite { before, after, action }| PlannedWrite {
                    before: before.as_ref().map(Individual::from),
                    after: Individual::from(after),
                    action,
                })
                .collect(),
            created_at: *created_at,
            created_by,
            decided_at: *decided_at,
            decided_by: decided_by.as_deref(),
            result: result.as_deref(),
        }
    }
}

/// An audit entry as operators read it: its position in the log and the record.
#[derive(Debug, Serialize)]
pub struct AuditEntry<'a> {
    pub id: i64,
    pub tenant_id: Option<idbridge_core::tenant::TenantId>,
    pub actor: &'a idbridge_core::audit::Actor,
    pub subject_kind: &'a str,
    pub subject_id: &'a str,
    pub action: &'a str,
    pub before: Option<&'a serde_json::Value>,
    pub after: Option<&'a serde_json::Value>,
    pub request_id: Option<&'a str>,
    pub at: jiff::Timestamp,
}

impl<'a> From<&'a idbridge_core::audit::AuditEntry> for AuditEntry<'a> {
    fn from(entry: &'a idbridge_core::audit::AuditEntry) -> Self {
        let idbridge_core::audit::AuditEntry { id, record } = entry;
        let idbridge_core::audit::AuditRecord {
            tenant_id,
            actor,
            subject_kind,
            subject_id,
            action,
            before,
            after,
            request_id,
            at,
        } = record;
        Self {
            id: *id,
            tenant_id: *tenant_id,
            actor,
            subject_kind,
            subject_id,
            action,
            before: before.as_ref(),
            after: after.as_ref(),
            request_id: request_id.as_deref(),
            at: *at,
        }
    }
}

/// A directory run as operators read it (`sync status`, `/admin/v1/sync-runs`).
#[derive(Debug, Serialize)]
pub struct SyncRun<'a> {
    pub id: uuid::Uuid,
    pub tenant_id: idbridge_core::tenant::TenantId,
    pub source: &'a str,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub status: idbridge_core::directory::RunStatus,
    pub summary: &'a idbridge_core::directory::RunSummary,
    pub error: Option<&'a str>,
}

impl<'a> From<&'a idbridge_core::directory::SyncRun> for SyncRun<'a> {
    fn from(run: &'a idbridge_core::directory::SyncRun) -> Self {
        let idbridge_core::directory::SyncRun {
            id,
            tenant_id,
            source,
            started_at,
            finished_at,
            status,
            summary,
            error,
        } = run;
        Self {
            id: *id,
            tenant_id: *tenant_id,
            source,
            started_at: *started_at,
            finished_at: *finished_at,
            status: *status,
            summary,
            error: error.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use idbridge_core::individual::{IndividualId, IndividualStatus, SourceKind, SourceLink};
    use idbridge_core::schedule::LocalInstant;
    use idbridge_core::tenant::{TenantId, TenantPolicy, TenantSlug};
    use uuid::Uuid;

    /// A view publishes exactly its listed fields, each as the domain type serialises it:
    /// what the admin API and `--json` sent before the views existed (scripts read it). A
    /// field added to a domain type is published only when it is added here too.
    fn published(view: serde_json::Value, domain: serde_json::Value, fields: &[&str]) {
        let view = view.as_object().unwrap();
        let mut keys: Vec<&str> = view.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = fields.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        for field in fields {
            assert_eq!(view[*field], domain[*field], "{field}");
        }
    }

    const TENANT: &[&str] = &[
        "id",
        "slug",
        "name",
        "enabled",
        "default_time_zone",
        "allowed_roles",
        "allowed_access_profiles",
        "policy",
        "version",
        "created_at",
        "updated_at",
    ];
    const INDIVIDUAL: &[&str] = &[
        "id",
        "tenant_id",
        "login",
        "email",
        "given_name",
        "family_name",
        "display_name",
        "role",
        "access_profile",
        "scopes",
        "time_zone",
        "activation",
        "expiration",
        "status",
        "links",
        "deprovisioned_at",
        "access_ended_at",
        "provenance",
        "version",
        "created_at",
        "updated_at",
    ];
    const HELD: &[&str] = &[
        "id",
        "tenant_id",
        "origin",
        "status",
        "summary",
        "writes",
        "created_at",
        "created_by",
        "decided_at",
        "decided_by",
        "result",
    ];

    const AUDIT: &[&str] =
        &["id", "tenant_id", "actor", "subject_kind", "subject_id", "action", "before", "after", "request_id", "at"];
    const SYNC_RUN: &[&str] = &["id", "tenant_id", "source", "started_at", "finished_at", "status", "summary", "error"];

    #[test]
    fn views_keep_the_published_shape() {
        let at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let tenant = idbridge_core::tenant::Tenant {
            id: TenantId(Uuid::nil()),
            slug: TenantSlug::parse("acme").unwrap(),
            name: "ACME".into(),
            enabled: true,
            default_time_zone: "Europe/Berlin".into(),
            allowed_roles: ["PBX admin".to_owned()].into(),
            allowed_access_profiles: Default::default(),
            policy: TenantPolicy::default(),
            version: 3,
            created_at: at,
            updated_at: at,
        };
        published(
            serde_json::to_value(super::Tenant::from(&tenant)).unwrap(),
            serde_json::to_value(&tenant).unwrap(),
            TENANT,
        );
        let individual = idbridge_core::individual::Individual {
            id: IndividualId(Uuid::nil()),
            tenant_id: tenant.id,
            login: "bob@acme.example".into(),
            email: Some("bob@acme.example".into()),
            given_name: Some("Bob".into()),
            family_name: None,
            display_name: None,
            role: Some("PBX admin".into()),
            access_profile: None,
            scopes: Default::default(),
            time_zone: "Europe/Berlin".into(),
            activation: Some(LocalInstant::parse("2027-04-20T00:00", "Europe/Berlin").unwrap()),
            expiration: None,
            status: IndividualStatus::Pending,
            links: vec![SourceLink { source: SourceKind::Scim, connection: "scim".into(), external_id: "x".into() }],
            deprovisioned_at: None,
            access_ended_at: Some(at),
            provenance: Default::default(),
            version: 1,
            created_at: at,
            updated_at: at,
        };
        published(
            serde_json::to_value(super::Individual::from(&individual)).unwrap(),
            serde_json::to_value(&individual).unwrap(),
            INDIVIDUAL,
        );
        let mut after = individual.clone();
        after.status = IndividualStatus::Suspended;
        let set = idbridge_core::changeset::HeldChangeSet {
            id: Uuid::nil(),
            tenant_id: tenant.id,
            origin: "SCIM DELETE /Users".into(),
            status: idbridge_core::changeset::ChangeSetStatus::Pending,
            summary: Default::default(),
            writes: vec![idbridge_core::changeset::PlannedWrite {
                before: Some(individual),
                after,
                action: "individual.deprovisioned".into(),
            }],
            created_at: at,
            created_by: "scim_token:abc".into(),
            decided_at: None,
            decided_by: None,
            result: None,
        };
        published(
            serde_json::to_value(super::HeldChangeSet::from(&set)).unwrap(),
            serde_json::to_value(&set).unwrap(),
            HELD,
        );
        let entry = idbridge_core::audit::AuditEntry {
            id: 7,
            record: idbridge_core::audit::AuditRecord {
                tenant_id: Some(tenant.id),
                actor: idbridge_core::audit::Actor::new(idbridge_core::audit::ActorKind::Operator, "cli:ops"),
                subject_kind: "tenant".into(),
                subject_id: "acme".into(),
                action: "tenant.updated".into(),
                before: Some(serde_json::json!({"enabled": true})),
                after: None,
                request_id: Some("req-1".into()),
                at,
            },
        };
        published(
            serde_json::to_value(super::AuditEntry::from(&entry)).unwrap(),
            serde_json::to_value(&entry).unwrap(),
            AUDIT,
        );
        let run = idbridge_core::directory::SyncRun {
            id: Uuid::nil(),
            tenant_id: tenant.id,
            source: "corp".into(),
            started_at: at,
            finished_at: at,
            status: idbridge_core::directory::RunStatus::Cancelled,
            summary: Default::default(),
            error: Some("stopping".into()),
        };
        published(
            serde_json::to_value(super::SyncRun::from(&run)).unwrap(),
            serde_json::to_value(&run).unwrap(),
            SYNC_RUN,
        );
    }
}
