//! A stored SCIM user as a source person for mapping and reconciliation: the protocol's
//! attributes turned into core's protocol-neutral facts.

use idbridge_core::individual::{SourceKind, SourceLink};
use idbridge_core::mapping::{ExternalGroup, UserFacts};
use idbridge_core::reconcile::SourcePerson;
use idbridge_core::source_record::{ScimMember, ScimRecord};
use serde_json::Value;

use idbridge_core::source_record::{ENTERPRISE_USER, PORTAL_USER};

/// The connection name of SCIM links: one SCIM endpoint per tenant.
pub const SCIM_CONNECTION: &str = "scim";

pub fn link(id: uuid::Uuid) -> SourceLink {
    SourceLink { source: SourceKind::Scim, connection: SCIM_CONNECTION.into(), external_id: id.to_string() }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned).filter(|s| !s.is_empty())
}

pub fn from_record(record: &ScimRecord, groups: &[ScimMember]) -> SourcePerson {
    let data = &record.data;
    let enterprise = data.get(ENTERPRISE_USER);
    let portal = data.get(PORTAL_USER);
    let emails: Vec<&Value> =
        data.get("emails").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    let primary = emails
        .iter()
        .find(|e| e.get("primary") == Some(&Value::Bool(true)))
        .or_else(|| emails.iter().find(|e| e.get("type").and_then(Value::as_str) == Some("work")))
        .or_else(|| emails.first())
        .and_then(|e| text(e.get("value")));
    let mut custom = std::collections::BTreeMap::new();
    let values = |name: &str| -> Option<String> {
        let list: Vec<String> = data.get(name)?.as_array()?.iter().filter_map(|r| text(r.get("value"))).collect();
        (!list.is_empty()).then(|| list.join(","))
    };
    if let Some(roles) = values("roles") {
        // Entra app-role assignments arrive as SCIM roles.
        custom.insert("app_roles".to_owned(), roles);
    }
    if let Some(entitlements) = values("entitlements") {
        custom.insert("entitlements".to_owned(), entitlements);
    }
    for key in ["userType", "locale", "preferredLanguage"] {
        if let Some(v) = text(data.get(key)) {
            custom.insert(key.to_owned(), v);
        }
    }
    for key in ["costCenter", "organization", "division"] {
        if let Some(v) = text(enterprise.and_then(|e| e.get(key))) {
            custom.insert(key.to_owned(), v);
        }
    }
    let name = data.get("name");
    let facts = UserFacts {
        login: text(data.get("userName")).unwrap_or_default(),
        emails: emails.iter().filter_map(|e| text(e.get("value"))).collect(),
        given_name: text(name.and_then(|n| n.get("givenName"))),
        family_name: text(name.and_then(|n| n.get("familyName"))),
        display_name: text(data.get("displayName")),
        title: text(data.get("title")),
        department: text(enterprise.and_then(|e| e.get("department"))),
        employee_number: text(enterprise.and_then(|e| e.get("employeeNumber"))),
        manager: text(enterprise.and_then(|e| e.get("manager")).and_then(|m| m.get("value"))),
        custom,
        source: Some(SourceKind::Scim),
    };
    SourcePerson {
        link: link(record.id),
        also: Vec::new(),
        groups: groups
            .iter()
            .map(|g| ExternalGroup {
                source: SourceKind::Scim,
                id: g.id.to_string(),
                display_name: g.display.clone(),
                via: vec![],
            })
            .collect(),
        active: data.get("active").and_then(Value::as_bool).unwrap_or(true),
        email: primary,
        given_name: facts.given_name.clone(),
        family_name: facts.family_name.clone(),
        display_name: facts.display_name.clone(),
        activation: text(portal.and_then(|p| p.get("activationDateTime"))),
        expiration: text(portal.and_then(|p| p.get("expirationDateTime"))),
        time_zone: text(portal.and_then(|p| p.get("timeZone"))),
        facts,
    }
}
