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
    /// `null`: the tenant's language applies.
    pub language: Option<&'a str>,
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
            language,
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
            language: language.as_deref(),
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

/// A held change set as operators read it: its header and one page of its writes, with
/// the position to ask for the next page after (`null` after the last).
#[derive(Debug, Serialize)]
pub struct HeldChangeSet<'a> {
    pub id: uuid::Uuid,
    pub tenant_id: idbridge_core::tenant::TenantId,
    pub origin: &'a str,
    pub status: idbridge_core::changeset::ChangeSetStatus,
    pub summary: &'a idbridge_core::changeset::ChangeSummary,
    pub writes: Vec<HeldWrite<'a>>,
    pub next_after: Option<u64>,
    pub created_at: jiff::Timestamp,
    pub created_by: &'a str,
    pub decided_at: Option<jiff::Timestamp>,
    pub decided_by: Option<&'a str>,
    pub result: Option<&'a str>,
}

/// One held write: whom it would change, from which status to which, and the fields it
/// would change (before and after; a create has only after).
#[derive(Debug, Serialize)]
pub struct HeldWrite<'a> {
    pub position: u64,
    pub individual_id: idbridge_core::individual::IndividualId,
    pub login: &'a str,
    pub action: &'a str,
    pub before: Option<idbridge_core::individual::IndividualStatus>,
    pub after: idbridge_core::individual::IndividualStatus,
    pub takes_access: bool,
    pub changed_before: &'a serde_json::Value,
    pub changed_after: &'a serde_json::Value,
    pub links: &'a [idbridge_core::individual::SourceLink],
}

impl<'a> HeldWrite<'a> {
    pub fn at(position: u64, write: &'a idbridge_core::changeset::HeldWrite) -> Self {
        let idbridge_core::changeset::HeldWrite {
            individual_id,
            login,
            action,
            before,
            after,
            takes_access,
            changed_before,
            changed_after,
            links,
        } = write;
        Self {
            position,
            individual_id: *individual_id,
            login,
            action,
            before: *before,
            after: *after,
            takes_access: *takes_access,
            changed_before,
            changed_after,
            links,
        }
    }
}

impl<'a> HeldChangeSet<'a> {
    /// The header with one page of writes; `full` says the page is as long as was asked
    /// for, so there may be more after its last.
    pub fn page(
        header: &'a idbridge_core::changeset::ChangeSetHeader,
        writes: &'a [(u64, idbridge_core::changeset::HeldWrite)],
        full: bool,
    ) -> Self {
        let idbridge_core::changeset::ChangeSetHeader {
            id,
            tenant_id,
            origin,
            status,
            summary,
            created_at,
            created_by,
            decided_at,
            decided_by,
            result,
        } = header;
        Self {
            id: *id,
            tenant_id: *tenant_id,
            origin,
            status: *status,
            summary,
            writes: writes.iter().map(|(position, write)| HeldWrite::at(*position, write)).collect(),
            next_after: writes.last().filter(|_| full).map(|(position, _)| *position),
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

/// A role as operators read it.
#[derive(Debug, Serialize)]
pub struct Role<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub default_level: idbridge_core::role::AccessLevel,
    pub levels: &'a std::collections::BTreeMap<String, idbridge_core::role::AccessLevel>,
}

impl<'a> From<&'a idbridge_core::role::Role> for Role<'a> {
    fn from(role: &'a idbridge_core::role::Role) -> Self {
        let idbridge_core::role::Role { name, description, default_level, levels } = role;
        Self { name, description, default_level: *default_level, levels }
    }
}

pub fn roles(roles: &[idbridge_core::role::Role]) -> Vec<Role<'_>> {
    roles.iter().map(Role::from).collect()
}

/// An access profile as operators read it.
#[derive(Debug, Serialize)]
pub struct AccessProfile<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub flags: &'a std::collections::BTreeSet<String>,
}

impl<'a> From<&'a idbridge_core::role::AccessProfile> for AccessProfile<'a> {
    fn from(profile: &'a idbridge_core::role::AccessProfile) -> Self {
        let idbridge_core::role::AccessProfile { name, description, flags } = profile;
        Self { name, description, flags }
    }
}

pub fn access_profiles(profiles: &[idbridge_core::role::AccessProfile]) -> Vec<AccessProfile<'_>> {
    profiles.iter().map(AccessProfile::from).collect()
}

/// The portal's sections, flags and group-scoped rights, each with its description.
#[derive(Debug, Serialize)]
pub struct Catalog<'a> {
    pub sections: &'a std::collections::BTreeMap<String, String>,
    pub flags: &'a std::collections::BTreeMap<String, String>,
    pub group_rights: &'a std::collections::BTreeMap<String, String>,
}

impl<'a> From<&'a idbridge_core::catalog::Catalog> for Catalog<'a> {
    fn from(catalog: &'a idbridge_core::catalog::Catalog) -> Self {
        let idbridge_core::catalog::Catalog { sections, flags, group_rights } = catalog;
        Self { sections, flags, group_rights }
    }
}

/// `tenant show`: the tenant with the definitions of the roles and access profiles it
/// may use, each with its effect on every catalog section and flag.
#[derive(Debug, Serialize)]
pub struct TenantDetail<'a> {
    #[serde(flatten)]
    pub tenant: Tenant<'a>,
    pub roles: Vec<RoleDetail<'a>>,
    pub access_profiles: Vec<AccessProfileDetail<'a>>,
}

#[derive(Debug, Serialize)]
pub struct RoleDetail<'a> {
    #[serde(flatten)]
    pub role: Role<'a>,
    /// The level of every catalog section.
    pub permissions: &'a std::collections::BTreeMap<String, idbridge_core::role::AccessLevel>,
}

#[derive(Debug, Serialize)]
pub struct AccessProfileDetail<'a> {
    #[serde(flatten)]
    pub profile: AccessProfile<'a>,
    /// On or off for every catalog flag.
    pub effective_flags: &'a std::collections::BTreeMap<String, bool>,
}

impl<'a> From<&'a idbridge_app::operator::TenantView> for TenantDetail<'a> {
    fn from(view: &'a idbridge_app::operator::TenantView) -> Self {
        let idbridge_app::operator::TenantView { tenant, roles, access_profiles } = view;
        Self {
            tenant: Tenant::from(tenant),
            roles: roles
                .iter()
                .map(|r| RoleDetail { role: Role::from(&r.role), permissions: &r.permissions })
                .collect(),
            access_profiles: access_profiles
                .iter()
                .map(|p| AccessProfileDetail {
                    profile: AccessProfile::from(&p.profile),
                    effective_flags: &p.effective_flags,
                })
                .collect(),
        }
    }
}

/// A mail as the CLI and the APIs show it: never its body (it may hold a link).
pub fn mail(m: &idbridge_core::local_account::Mail) -> serde_json::Value {
    serde_json::json!({
        "id": m.id,
        "kind": m.kind.as_str(),
        "recipient": m.recipient,
        "state": m.state.as_str(),
        "attempts": m.attempts,
        "last_error": m.last_error,
        "created_at": m.created_at,
        "sent_at": m.sent_at,
    })
}

#[cfg(test)]
mod tests {
    use idbridge_core::individual::{IndividualId, IndividualStatus, SourceKind, SourceLink};
    use idbridge_core::role::AccessLevel;
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
        "language",
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
        "next_after",
        "created_at",
        "created_by",
        "decided_at",
        "decided_by",
        "result",
    ];
    const HELD_WRITE: &[&str] = &[
        "position",
        "individual_id",
        "login",
        "action",
        "before",
        "after",
        "takes_access",
        "changed_before",
        "changed_after",
        "links",
    ];

    const AUDIT: &[&str] =
        &["id", "tenant_id", "actor", "subject_kind", "subject_id", "action", "before", "after", "request_id", "at"];
    const ROLE: &[&str] = &["name", "description", "default_level", "levels"];
    const PROFILE: &[&str] = &["name", "description", "flags"];
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
            language: None,
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
        let header = idbridge_core::changeset::ChangeSetHeader {
            id: Uuid::nil(),
            tenant_id: tenant.id,
            origin: "SCIM DELETE /Users".into(),
            status: idbridge_core::changeset::ChangeSetStatus::Pending,
            summary: Default::default(),
            created_at: at,
            created_by: "scim_token:abc".into(),
            decided_at: None,
            decided_by: None,
            result: None,
        };
        let write = idbridge_core::changeset::HeldWrite::of(&idbridge_core::changeset::PlannedWrite {
            before: Some(individual),
            after,
            action: "individual.deprovisioned".into(),
        });
        let writes = vec![(7, write.clone())];
        let page = serde_json::to_value(super::HeldChangeSet::page(&header, &writes, true)).unwrap();
        let mut domain = serde_json::to_value(&header).unwrap();
        domain["writes"] = page["writes"].clone();
        domain["next_after"] = 7.into();
        published(page.clone(), domain, HELD);
        let mut held = serde_json::to_value(&write).unwrap();
        held["position"] = 7.into();
        published(page["writes"][0].clone(), held, HELD_WRITE);
        assert_eq!(page["writes"][0]["changed_after"], serde_json::json!({ "status": "suspended" }));
        let last = serde_json::to_value(super::HeldChangeSet::page(&header, &writes, false)).unwrap();
        assert_eq!(last["next_after"], serde_json::Value::Null, "a short page is the last");
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

        let role = idbridge_core::role::Role {
            name: "PBX admin".into(),
            description: "all of the PBX".into(),
            default_level: AccessLevel::Read,
            levels: [("extensions".to_owned(), AccessLevel::Modify)].into(),
        };
        published(serde_json::to_value(super::Role::from(&role)).unwrap(), serde_json::to_value(&role).unwrap(), ROLE);
        let profile = idbridge_core::role::AccessProfile {
            name: "recordings".into(),
            description: String::new(),
            flags: ["call_recording".to_owned()].into(),
        };
        published(
            serde_json::to_value(super::AccessProfile::from(&profile)).unwrap(),
            serde_json::to_value(&profile).unwrap(),
            PROFILE,
        );
        let catalog = idbridge_core::catalog::Catalog::builtin();
        published(
            serde_json::to_value(super::Catalog::from(&catalog)).unwrap(),
            serde_json::to_value(&catalog).unwrap(),
            &["sections", "flags", "group_rights"],
        );

        // `tenant show --json`: the tenant's fields, then its roles and profiles with their
        // effect on the catalog, as before the views.
        let detail = idbridge_app::operator::TenantView {
            tenant: tenant.clone(),
            roles: vec![idbridge_app::operator::RoleView {
                role: role.clone(),
                permissions: [("billing".to_owned(), AccessLevel::Read)].into(),
            }],
            access_profiles: vec![idbridge_app::operator::AccessProfileView {
                profile: profile.clone(),
                effective_flags: [("call_recording".to_owned(), true)].into(),
            }],
        };
        let published_detail = serde_json::to_value(super::TenantDetail::from(&detail)).unwrap();
        let mut with_lists = serde_json::to_value(&tenant).unwrap();
        with_lists["roles"] = serde_json::Value::Null;
        with_lists["access_profiles"] = serde_json::Value::Null;
        let mut tenant_fields = TENANT.to_vec();
        tenant_fields.extend(["roles", "access_profiles"]);
        let mut tenant_part = published_detail.clone();
        tenant_part["roles"] = serde_json::Value::Null;
        tenant_part["access_profiles"] = serde_json::Value::Null;
        published(tenant_part, with_lists, &tenant_fields);
        let mut role_fields = ROLE.to_vec();
        role_fields.push("permissions");
        let mut role_with = serde_json::to_value(&role).unwrap();
        role_with["permissions"] = serde_json::json!({"billing": "read"});
        published(published_detail["roles"][0].clone(), role_with, &role_fields);
        let mut profile_fields = PROFILE.to_vec();
        profile_fields.push("effective_flags");
        let mut profile_with = serde_json::to_value(&profile).unwrap();
        profile_with["effective_flags"] = serde_json::json!({"call_recording": true});
        published(published_detail["access_profiles"][0].clone(), profile_with, &profile_fields);
    }
}
