//! Turning what clients send into the canonical stored body, and stored records into
//! what clients read: canonical attribute names, types coerced the way Entra and Okta
//! need (`"True"`, single values for arrays, `null` as absent, `manager` forms),
//! read-only attributes ignored, and `attributes` / `excludedAttributes` projection.

use serde_json::{Map, Value, json};

use crate::error::{ScimError, ScimResult};
use crate::filter::get_ci;
use crate::schema::{self, AttrType, Attribute, Mutability, ResourceKind, Returned, Schemas};

/// A normalised request body.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// Canonical attributes, extension objects under their URN; no `id`, `meta`,
    /// `schemas`, `members`, `groups`.
    pub body: Map<String, Value>,
    /// `members` of a group, as sent (ids), when the body carried the attribute.
    pub members: Option<Vec<String>>,
}

/// Normalises a full resource (POST, PUT).
pub fn normalize(schemas: &Schemas, kind: ResourceKind, input: &Value) -> ScimResult<Normalized> {
    let Value::Object(input) = input else { return Err(ScimError::syntax("the request body must be a JSON object")) };
    check_schemas(kind, input)?;
    let mut body = Map::new();
    let mut members = None;
    for (key, value) in input {
        if value.is_null() || key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if kind == ResourceKind::Group && key.eq_ignore_ascii_case("members") {
            members = Some(member_ids(value)?);
            continue;
        }
        set_attribute(schemas, kind, &mut body, key, value)?;
    }
    let required = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    match body.get(required) {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        _ => return Err(ScimError::value(format!("{required} is required"))),
    }
    validate_portal_extension(&body)?;
    Ok(Normalized { body, members })
}

/// Places one top-level key (plain, or an extension URN holding an object, or a
/// URN-qualified attribute) into `body`, normalised. Read-only attributes are dropped.
pub fn set_attribute(
    schemas: &Schemas,
    kind: ResourceKind,
    body: &mut Map<String, Value>,
    key: &str,
    value: &Value,
) -> ScimResult<()> {
    if value.is_null() {
        return Ok(());
    }
    if let Some(ext) = schemas.extension(kind, key) {
        let Value::Object(fields) = value else {
            return Err(ScimError::syntax(format!("{key} must be an object of extension attributes")));
        };
        let mut out = match body.remove(ext.id) {
            Some(Value::Object(existing)) => existing,
            _ => Map::new(),
        };
        for (name, v) in fields {
            if v.is_null() || name.eq_ignore_ascii_case("schemas") {
                continue;
            }
            let attr = ext
                .attribute(name)
                .ok_or_else(|| ScimError::syntax(format!("unknown attribute {name:?} in {}", ext.id)))?;
            if let Some(normal) = normalize_value(attr, v)? {
                out.insert(attr.name.to_owned(), normal);
            }
        }
        if !out.is_empty() {
            body.insert(ext.id.to_owned(), Value::Object(out));
        }
        return Ok(());
    }
    if key.len() > 4 && key.get(..4).is_some_and(|k| k.eq_ignore_ascii_case("urn:")) {
        // `urn:…:User:employeeNumber` as a key: an extension attribute named in full.
        if let Some((urn, name)) = key.rsplit_once(':') {
            if let Some(ext) = schemas.extension(kind, urn) {
                return set_attribute(schemas, kind, body, ext.id, &json!({ name: value }));
            }
            if urn.eq_ignore_ascii_case(kind.core_schema()) {
                return set_attribute(schemas, kind, body, name, value);
            }
        }
        return Err(ScimError::syntax(format!("unknown schema or attribute {key:?}")));
    }
    let attr = schemas
        .core_attribute(kind, key)
        .ok_or_else(|| ScimError::syntax(format!("unknown attribute {key:?} for a {}", kind.as_str())))?;
    if attr.mutability == Mutability::ReadOnly {
        return Ok(());
    }
    if let Some(normal) = normalize_value(attr, value)? {
        body.insert(attr.name.to_owned(), normal);
    } else {
        body.remove(attr.name);
    }
    Ok(())
}

/// Unknown URNs in `schemas` are tolerated and logged (clients misspell them).
fn check_schemas(kind: ResourceKind, input: &Map<String, Value>) -> ScimResult<()> {
    let Some(list) = get_ci(input, "schemas") else { return Ok(()) };
    let list: Vec<&Value> = match list {
        Value::Array(items) => items.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    };
    for urn in list {
        let Some(urn) = urn.as_str() else { return Err(ScimError::syntax("schemas must be a list of URN strings")) };
        let known = urn.eq_ignore_ascii_case(kind.core_schema())
            || kind.extensions().iter().any(|e| e.eq_ignore_ascii_case(urn));
        if !known {
            tracing::info!(urn, resource = kind.as_str(), "unknown schema URN in request tolerated");
        }
    }
    Ok(())
}

fn member_ids(value: &Value) -> ScimResult<Vec<String>> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    };
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let id = match item {
            Value::Object(o) => get_ci(o, "value").and_then(Value::as_str),
            Value::String(s) => Some(s.as_str()),
            _ => None,
        };
        let id = id.ok_or_else(|| ScimError::value("each member needs a string value (the member's id)"))?;
        ids.push(id.to_owned());
    }
    Ok(ids)
}

/// The most values one multi-valued attribute (emails, phone numbers, addresses, roles…)
/// may hold; group `members` are not attribute values and have no such limit.
pub const MAX_VALUES: usize = 1000;

/// A clear `400 invalidValue` past `MAX_VALUES`.
pub fn check_value_count(attr: &Attribute, count: usize) -> ScimResult<()> {
    if count > MAX_VALUES {
        return Err(ScimError::value(format!("{} has {count} values; at most {MAX_VALUES} are accepted", attr.name)));
    }
    Ok(())
}

/// Normalises one attribute value; `None` when it amounts to absent.
pub fn normalize_value(attr: &Attribute, value: &Value) -> ScimResult<Option<Value>> {
    if value.is_null() {
        return Ok(None);
    }
    if attr.mutability == Mutability::WriteOnly {
        // Passwords are accepted so that clients that always send one succeed, and are
        // discarded: portal logins go through SSO.
        return Ok(None);
    }
    if attr.multi_valued {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        check_value_count(attr, items.len())?;
        // Duplicates are dropped by their canonical text (objects' keys are sorted), in
        // linear time: a pairwise check made one 45,000-value request cost minutes.
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = normalize_single(attr, item)?
                && seen.insert(v.to_string())
            {
                out.push(v);
            }
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    // A single-valued attribute sent as an array of one (Entra sends `manager` so).
    let value = match value {
        Value::Array(items) if items.len() == 1 => &items[0],
        Value::Array(items) if items.is_empty() => return Ok(None),
        Value::Array(_) => return Err(ScimError::value(format!("{} takes a single value, not a list", attr.name))),
        other => other,
    };
    normalize_single(attr, value)
}

pub fn normalize_single(attr: &Attribute, value: &Value) -> ScimResult<Option<Value>> {
    let name = attr.name;
    let wrong = |expected: &str| ScimError::value(format!("{name} must be {expected}, got {value}"));
    Ok(match (attr.kind, value) {
        (_, Value::Null) => None,
        (AttrType::Complex, Value::Object(fields)) => {
            let mut out = Map::new();
            for (k, v) in fields {
                if v.is_null() {
                    continue;
                }
                let sub = attr.sub(k).ok_or_else(|| ScimError::syntax(format!("unknown sub-attribute {name}.{k}")))?;
                if sub.mutability == Mutability::ReadOnly && name != "members" {
                    continue;
                }
                if let Some(v) = normalize_single(sub, v)? {
                    out.insert(sub.name.to_owned(), v);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        // `manager` as a bare id string; a simple multi-valued element given as a value.
        (AttrType::Complex, Value::String(s)) if attr.sub("value").is_some() => {
            (!s.is_empty()).then(|| json!({ "value": s }))
        }
        (AttrType::Complex, _) => return Err(wrong("an object")),
        (AttrType::Boolean, Value::Bool(b)) => Some(Value::Bool(*b)),
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(Value::Bool(true)),
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(Value::Bool(false)),
        (AttrType::Boolean, _) => return Err(wrong("true or false")),
        (AttrType::Integer, Value::Number(n)) if n.is_i64() => Some(value.clone()),
        (AttrType::Integer, _) => return Err(wrong("an integer")),
        (AttrType::Decimal, Value::Number(_)) => Some(value.clone()),
        (AttrType::Decimal, _) => return Err(wrong("a number")),
        (AttrType::DateTime, Value::String(s)) => {
            s.parse::<jiff::Timestamp>().map_err(|_| wrong("an RFC 3339 date-time"))?;
            Some(value.clone())
        }
        (AttrType::DateTime, _) => return Err(wrong("an RFC 3339 date-time string")),
        (AttrType::String | AttrType::Reference, Value::String(s)) => {
            if s.len() > 16 * 1024 {
                return Err(ScimError::value(format!("{name} is longer than 16 KiB")));
            }
            Some(value.clone())
        }
        // Okta and Entra send numeric employee numbers and phone extensions as numbers.
        (AttrType::String, Value::Number(n)) => Some(Value::String(n.to_string())),
        (AttrType::String | AttrType::Reference, _) => return Err(wrong("a string")),
    })
}

/// The portal extension carries local date-times and a zone; check them with core's rules.
fn validate_portal_extension(body: &Map<String, Value>) -> ScimResult<()> {
    let Some(Value::Object(portal)) = body.get(schema::PORTAL_USER) else { return Ok(()) };
    let zone = portal.get("timeZone").and_then(Value::as_str).unwrap_or("UTC");
    idbridge_core::schedule::parse_time_zone(zone).map_err(|e| ScimError::value(e.to_string()))?;
    for field in ["activationDateTime", "expirationDateTime"] {
        if let Some(text) = portal.get(field).and_then(Value::as_str) {
            idbridge_core::schedule::LocalInstant::parse(text, zone)
                .map_err(|e| ScimError::value(format!("{}:{field}: {e}", schema::PORTAL_USER)))?;
        }
    }
    Ok(())
}

/// Which attributes a response carries (RFC 7644 §3.9).
#[derive(Debug, Clone, Default)]
pub struct Projection {
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

impl Projection {
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Self {
        let split = |s: Option<&str>| {
            s.map(|s| s.split(',').map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect()).unwrap_or_default()
        };
        Self { attributes: split(attributes), excluded: split(excluded) }
    }

    /// Whether the response needs a top-level attribute at all (so `members` is not read
    /// when nobody will see it).
    pub fn wants(&self, name: &str) -> bool {
        let mentions = |list: &[String]| {
            list.iter().any(|a| {
                let a = a.rsplit_once(':').map_or(a.as_str(), |(_, n)| n);
                a.eq_ignore_ascii_case(name)
                    || a.to_ascii_lowercase().starts_with(&format!("{}.", name.to_ascii_lowercase()))
            })
        };
        if self.excluded.iter().any(|a| a.eq_ignore_ascii_case(name)) {
            return false;
        }
        if !self.attributes.is_empty() {
            return mentions(&self.attributes);
        }
        true
    }

    /// The member sub-attributes to keep when `attributes` names some (`members.value`),
    /// or `None` for all of them.
    pub fn member_fields(&self) -> Option<Vec<String>> {
        let named: Vec<String> = self
            .attributes
            .iter()
            .filter_map(|a| {
                let a = a.rsplit_once(':').map_or(a.as_str(), |(_, n)| n);
                let (attr, sub) = a.split_once('.')?;
                attr.eq_ignore_ascii_case("members").then(|| sub.to_owned())
            })
            .collect();
        (!named.is_empty()).then_some(named)
    }

    /// Applies the projection to a rendered resource.
    pub fn apply(&self, schemas: &Schemas, kind: ResourceKind, resource: Value) -> Value {
        let Value::Object(mut object) = resource else { return resource };
        if !self.attributes.is_empty() {
            let mut out = Map::new();
            for (k, v) in &object {
                if is_always(schemas, kind, k) {
                    out.insert(k.clone(), v.clone());
                }
            }
            for wanted in &self.attributes {
                copy_path(schemas, kind, &object, &mut out, wanted);
            }
            object = out;
        }
        for excluded in &self.excluded {
            remove_path(schemas, kind, &mut object, excluded);
        }
        Value::Object(object)
    }
}

fn is_always(schemas: &Schemas, kind: ResourceKind, key: &str) -> bool {
    key == "schemas" || schemas.core_attribute(kind, key).is_some_and(|a| a.returned == Returned::Always)
}

/// Splits `urn:…:attr.sub`, `attr.sub` or a bare extension URN into (container key, attr, sub).
fn split_path<'a>(
    schemas: &Schemas,
    kind: ResourceKind,
    path: &'a str,
) -> (Option<&'static str>, Option<&'a str>, Option<&'a str>) {
    if let Some(ext) = schemas.extension(kind, path) {
        return (Some(ext.id), None, None);
    }
    let (container, rest) = match path.rsplit_once(':') {
        Some((urn, rest)) => match schemas.extension(kind, urn) {
            Some(ext) => (Some(ext.id), rest),
            None => (None, rest),
        },
        None => (None, path),
    };
    match rest.split_once('.') {
        Some((a, s)) => (container, Some(a), Some(s)),
        None => (container, Some(rest), None),
    }
}

fn key_ci(object: &Map<String, Value>, key: &str) -> Option<String> {
    object.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned()
}

fn copy_path(
    schemas: &Schemas,
    kind: ResourceKind,
    from: &Map<String, Value>,
    to: &mut Map<String, Value>,
    path: &str,
) {
    let (container, attr, sub) = split_path(schemas, kind, path);
    let (source, target) = match container {
        Some(urn) => {
            let Some(Value::Object(source)) = from.get(urn) else { return };
            let target = to.entry(urn.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(target) = target else { return };
            (source, target)
        }
        None => (from, &mut *to),
    };
    let Some(attr) = attr else {
        if let Some(urn) = container {
            target.clone_from(source);
            let _ = urn;
        }
        return;
    };
    let Some(key) = key_ci(source, attr) else { return };
    match (sub, &source[&key]) {
        (None, v) => {
            target.insert(key, v.clone());
        }
        (Some(sub), Value::Object(inner)) => {
            if let Some(sub_key) = key_ci(inner, sub) {
                let entry = target.entry(key).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(entry) = entry {
                    entry.insert(sub_key.clone(), inner[&sub_key].clone());
                }
            }
        }
        (Some(sub), Value::Array(items)) => {
            let picked: Vec<Value> = items
                .iter()
                .filter_map(|i| i.as_object().and_then(|o| key_ci(o, sub).map(|k| json!({ k.clone(): o[&k].clone() }))))
                .collect();
            target.insert(key, Value::Array(picked));
        }
        _ => {}
    }
}

fn remove_path(schemas: &Schemas, kind: ResourceKind, object: &mut Map<String, Value>, path: &str) {
    let (container, attr, sub) = split_path(schemas, kind, path);
    let target = match container {
        Some(urn) => {
            if attr.is_none() {
                object.remove(urn);
                return;
            }
            match object.get_mut(urn) {
                Some(Value::Object(inner)) => inner,
                _ => return,
            }
        }
        None => object,
    };
    let Some(attr) = attr else { return };
    if container.is_none() && is_always(schemas, kind, attr) {
        return;
    }
    let Some(key) = key_ci(target, attr) else { return };
    match sub {
        None => {
            target.remove(&key);
        }
        Some(sub) => match target.get_mut(&key) {
            Some(Value::Object(inner)) => {
                if let Some(k) = key_ci(inner, sub) {
                    inner.remove(&k);
                }
            }
            Some(Value::Array(items)) => {
                for item in items {
                    if let Value::Object(inner) = item
                        && let Some(k) = key_ci(inner, sub)
                    {
                        inner.remove(&k);
                    }
                }
            }
            _ => {}
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(input: Value) -> ScimResult<Map<String, Value>> {
        normalize(&Schemas::default(), ResourceKind::User, &input).map(|n| n.body)
    }

    #[test]
    fn what_entra_and_okta_send_is_normalised() {
        let body = user(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "urn:misspelled:schema"],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "UserName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com",
            "active": "True",
            "emails": {"Primary": true, "type": "work", "value": "Test_User@contoso.com"},
            "meta": {"resourceType": "User"},
            "id": "client-chosen",
            "groups": [{"value": "g"}],
            "name": {"familyName": "familyName", "GivenName": "givenName", "formatted": null},
            "title": null,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"Department": "sales", "manager": "26118915", "employeeNumber": 42},
            "password": "secret"
        }))
        .unwrap();
        assert_eq!(body["userName"], "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com");
        assert_eq!(body["active"], true);
        assert_eq!(body["emails"], json!([{"primary": true, "type": "work", "value": "Test_User@contoso.com"}]));
        assert_eq!(body["name"], json!({"familyName": "familyName", "givenName": "givenName"}));
        for absent in ["id", "meta", "groups", "title", "password"] {
            assert!(!body.contains_key(absent), "{absent} must not be stored");
        }
        let ext = &body[schema::ENTERPRISE_USER];
        assert_eq!(ext["department"], "sales");
        assert_eq!(ext["manager"], json!({"value": "26118915"}));
        assert_eq!(ext["employeeNumber"], "42");
    }

    #[test]
    fn manager_as_array_of_one_and_bad_values() {
        let body = user(json!({"userName": "a", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": [{"value": "m1"}]}})).unwrap();
        assert_eq!(body[schema::ENTERPRISE_USER]["manager"], json!({"value": "m1"}));
        assert!(user(json!({"userName": "a", "active": "yes"})).is_err());
        assert!(
            user(json!({"userName": "a", "favouriteColour": "blue"})).unwrap_err().detail.contains("favouriteColour")
        );
        assert!(user(json!({"name": {"givenName": "x"}})).unwrap_err().detail.contains("userName"));
        assert!(user(json!([1, 2])).is_err());
        assert!(user(json!({"userName": 5})).is_ok(), "numbers become strings");
        let bad_date = json!({"userName": "a", "urn:idbridge:params:scim:schemas:extension:portal:2.0:User": {"activationDateTime": "2026-02-30"}});
        assert!(user(bad_date).unwrap_err().detail.contains("activationDateTime"));
    }

    #[test]
    fn projection() {
        let schemas = Schemas::default();
        let resource = json!({
            "schemas": [schema::USER], "id": "1", "userName": "a", "name": {"givenName": "g", "familyName": "f"},
            "emails": [{"value": "a@x", "type": "work"}],
            schema::ENTERPRISE_USER: {"department": "d", "costCenter": "c"}
        });
        let p = Projection::parse(
            Some("userName,name.givenName,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
            None,
        );
        let out = p.apply(&schemas, ResourceKind::User, resource.clone());
        assert_eq!(
            out,
            json!({"schemas": [schema::USER], "id": "1", "userName": "a", "name": {"givenName": "g"}, schema::ENTERPRISE_USER: {"department": "d"}})
        );
        let p = Projection::parse(None, Some("emails,id,name.familyName"));
        let out = p.apply(&schemas, ResourceKind::User, resource);
        assert!(out.get("emails").is_none());
        assert_eq!(out["id"], "1", "id is always returned");
        assert_eq!(out["name"], json!({"givenName": "g"}));
        assert!(!Projection::parse(None, Some("members")).wants("members"));
        assert!(!Projection::parse(Some("displayName"), None).wants("members"));
        assert!(Projection::parse(Some("members.value"), None).wants("members"));
    }
}
