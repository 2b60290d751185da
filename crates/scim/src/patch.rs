//! PATCH (RFC 7644 §3.5.2) over the canonical body: add, remove and replace with
//! attribute paths, sub-attributes, value filters and extension URNs, and path-less
//! operations whose value object has plain, dotted or URN-qualified keys. Operations on a
//! group's `members` become member changes the store applies as set operations.

use serde_json::{Map, Value, json};

use crate::error::{ScimError, ScimResult, ScimType};
use crate::filter::{self, AttrPath, CompValue, CompareOp, EvalContext, Filter, PatchPath, get_ci};
use crate::resource::{self, normalize_single, normalize_value};
use crate::schema::{AttrType, Attribute, Mutability, ResourceKind, Schemas};

pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub op: Op,
    pub path: Option<PatchPath>,
    pub raw_path: Option<String>,
    pub value: Option<Value>,
}

/// Client quirks a tenant may switch off.
#[derive(Debug, Clone, Copy)]
pub struct Compat {
    /// `replace`/`add` on `emails[type eq "work"].value` with no such email creates it
    /// (what Entra ID expects).
    pub create_missing_filtered_value: bool,
}

impl Default for Compat {
    fn default() -> Self {
        Self { create_missing_filtered_value: true }
    }
}

/// A change to a group's members, by the ids the client sent.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberOp {
    Add(Vec<String>),
    Remove(Vec<String>),
    RemoveAll,
}

#[derive(Debug)]
pub struct PatchOutcome {
    pub body: Map<String, Value>,
    pub body_changed: bool,
    pub members: Vec<MemberOp>,
}

/// Parses a PatchOp message; op names in any case, `Operations` in any case.
pub fn parse(body: &Value) -> ScimResult<Vec<Operation>> {
    let Value::Object(message) = body else { return Err(ScimError::syntax("the PATCH body must be a JSON object")) };
    if let Some(schemas) = get_ci(message, "schemas") {
        let ok = match schemas {
            Value::Array(items) => {
                items.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(PATCH_SCHEMA)))
            }
            Value::String(s) => s.eq_ignore_ascii_case(PATCH_SCHEMA),
            _ => false,
        };
        if !ok {
            tracing::info!("PATCH without the PatchOp schema URN tolerated");
        }
    }
    let ops = match get_ci(message, "Operations") {
        Some(Value::Array(ops)) => ops.iter().collect::<Vec<_>>(),
        Some(op @ Value::Object(_)) => vec![op],
        _ => return Err(ScimError::syntax("PATCH needs an Operations list")),
    };
    if ops.is_empty() {
        return Err(ScimError::syntax("Operations is empty"));
    }
    if ops.len() > 1000 {
        return Err(ScimError::typed(ScimType::TooMany, "more than 1000 operations in one PATCH"));
    }
    ops.into_iter()
        .map(|op| {
            let Value::Object(op) = op else { return Err(ScimError::syntax("each operation must be an object")) };
            let name =
                get_ci(op, "op").and_then(Value::as_str).ok_or_else(|| ScimError::syntax("operation without op"))?;
            let kind = match name.to_ascii_lowercase().as_str() {
                "add" => Op::Add,
                "remove" => Op::Remove,
                "replace" => Op::Replace,
                other => return Err(ScimError::syntax(format!("unknown op {other:?}; use add, remove or replace"))),
            };
            let raw_path = match get_ci(op, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if p.trim().is_empty() => None,
                Some(Value::String(p)) => Some(p.clone()),
                Some(_) => return Err(ScimError::typed(ScimType::InvalidPath, "path must be a string")),
            };
            let path = raw_path.as_deref().map(filter::parse_patch_path).transpose().map_err(|e| {
                ScimError::typed(ScimType::InvalidPath, format!("path {:?}: {e}", raw_path.as_deref().unwrap_or("")))
            })?;
            let value = get_ci(op, "value").filter(|v| !v.is_null()).cloned();
            Ok(Operation { op: kind, path, raw_path, value })
        })
        .collect()
}

/// Where a path points.
struct Target<'s> {
    /// Extension URN holding the attribute, `None` for core.
    container: Option<&'static str>,
    attr: &'s Attribute,
}

fn resolve<'s>(schemas: &'s Schemas, kind: ResourceKind, path: &AttrPath) -> ScimResult<Target<'s>> {
    let unknown = || ScimError::typed(ScimType::InvalidPath, format!("no attribute {:?}", path.name));
    match &path.urn {
        Some(urn) if urn.eq_ignore_ascii_case(kind.core_schema()) => {
            Ok(Target { container: None, attr: schemas.core_attribute(kind, &path.name).ok_or_else(unknown)? })
        }
        Some(urn) => {
            let ext = schemas
                .extension(kind, urn)
                .ok_or_else(|| ScimError::typed(ScimType::InvalidPath, format!("unknown schema {urn:?}")))?;
            Ok(Target { container: Some(ext.id), attr: ext.attribute(&path.name).ok_or_else(unknown)? })
        }
        None => Ok(Target { container: None, attr: schemas.core_attribute(kind, &path.name).ok_or_else(unknown)? }),
    }
}

fn container_mut<'b>(body: &'b mut Map<String, Value>, container: Option<&str>) -> &'b mut Map<String, Value> {
    match container {
        None => body,
        Some(urn) => {
            let entry = body.entry(urn.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            entry.as_object_mut().expect("just made an object")
        }
    }
}

/// Applies the operations to `body`.
pub fn apply(
    schemas: &Schemas,
    kind: ResourceKind,
    mut body: Map<String, Value>,
    operations: &[Operation],
    compat: Compat,
) -> ScimResult<PatchOutcome> {
    let before = body.clone();
    let mut members = Vec::new();
    for operation in operations {
        // A path that is a whole extension URN targets the extension object.
        if let Some(ext) = operation.raw_path.as_deref().and_then(|p| schemas.extension(kind, p.trim())) {
            match (operation.op, &operation.value) {
                (Op::Remove, _) => {
                    body.remove(ext.id);
                }
                (_, Some(value)) => {
                    let whole = Operation {
                        op: operation.op,
                        path: None,
                        raw_path: None,
                        value: Some(json!({ ext.id: value })),
                    };
                    if operation.op == Op::Replace {
                        body.remove(ext.id);
                    }
                    apply_ops(schemas, kind, &mut body, &mut members, &[whole], compat)?;
                }
                (_, None) => return Err(ScimError::value(format!("{:?} on {} needs a value", operation.op, ext.id))),
            }
            continue;
        }
        apply_ops(schemas, kind, &mut body, &mut members, std::slice::from_ref(operation), compat)?;
    }
    // Drop extension objects a removal emptied.
    body.retain(|_, v| !matches!(v, Value::Object(o) if o.is_empty()));
    // The result must still be a valid resource (required attributes, types, dates).
    let checked = resource::normalize(schemas, kind, &Value::Object(body.clone()))?;
    let body_changed = checked.body != before;
    Ok(PatchOutcome { body: checked.body, body_changed, members })
}

fn apply_ops(
    schemas: &Schemas,
    kind: ResourceKind,
    body: &mut Map<String, Value>,
    members: &mut Vec<MemberOp>,
    operations: &[Operation],
    compat: Compat,
) -> ScimResult<()> {
    for operation in operations {
        match &operation.path {
            Some(path) => apply_at(schemas, kind, body, members, operation.op, path, operation.value.as_ref(), compat)?,
            None => {
                if operation.op == Op::Remove {
                    return Err(ScimError::typed(ScimType::NoTarget, "remove needs a path"));
                }
                let Some(Value::Object(values)) = &operation.value else {
                    return Err(ScimError::value("an operation without path needs an object value"));
                };
                for (key, value) in values {
                    if ["schemas", "id", "meta", "groups"].iter().any(|k| k.eq_ignore_ascii_case(key)) {
                        continue;
                    }
                    if let Some(ext) = schemas.extension(kind, key) {
                        let Value::Object(inner) = value else {
                            return Err(ScimError::value(format!("{key} must be an object of extension attributes")));
                        };
                        for (name, v) in inner {
                            if name.eq_ignore_ascii_case("schemas") {
                                continue;
                            }
                            let path = PatchPath {
                                attr: filter::parse_attr_path(&format!("{}:{name}", ext.id))
                                    .map_err(|e| ScimError::typed(ScimType::InvalidPath, e.0))?,
                                filter: None,
                                sub_after_filter: None,
                            };
                            apply_at(schemas, kind, body, members, operation.op, &path, Some(v), compat)?;
                        }
                        continue;
                    }
                    let path = filter::parse_patch_path(key)
                        .map_err(|e| ScimError::typed(ScimType::InvalidPath, format!("{key:?}: {e}")))?;
                    apply_at(schemas, kind, body, members, operation.op, &path, Some(value), compat)?;
                }
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn apply_at(
    schemas: &Schemas,
    kind: ResourceKind,
    body: &mut Map<String, Value>,
    members: &mut Vec<MemberOp>,
    op: Op,
    path: &PatchPath,
    value: Option<&Value>,
    compat: Compat,
) -> ScimResult<()> {
    let target = resolve(schemas, kind, &path.attr)?;
    let attr = target.attr;
    if kind == ResourceKind::Group && attr.name == "members" {
        members.extend(member_op(op, path, value)?);
        return Ok(());
    }
    if attr.mutability == Mutability::ReadOnly {
        // Read-only attributes in requests are ignored, as in bodies.
        return Ok(());
    }
    let map = container_mut(body, target.container);
    let name = attr.name;
    let value = value.filter(|v| !v.is_null());

    if let Some(filter) = &path.filter {
        if !(attr.multi_valued && attr.kind == AttrType::Complex) {
            return Err(ScimError::typed(
                ScimType::InvalidPath,
                format!("{name} is not a multi-valued complex attribute"),
            ));
        }
        let ctx = EvalContext { schemas, kind };
        ctx.validate(&Filter::ValuePath(path.attr.clone(), Box::new(filter.clone())))
            .map_err(|e| ScimError::typed(ScimType::InvalidFilter, e.0))?;
        let sub = match &path.sub_after_filter {
            Some(s) => Some(
                attr.sub(s)
                    .ok_or_else(|| ScimError::typed(ScimType::InvalidPath, format!("no sub-attribute {name}.{s}")))?,
            ),
            None => None,
        };
        let items = match map.get_mut(name) {
            Some(Value::Array(items)) => items,
            _ => {
                map.insert(name.to_owned(), Value::Array(vec![]));
                map.get_mut(name).and_then(Value::as_array_mut).expect("just inserted")
            }
        };
        let matching: Vec<usize> = items
            .iter()
            .enumerate()
            .filter(|(_, item)| ctx.matches_element(&path.attr, filter, item))
            .map(|(i, _)| i)
            .collect();
        match op {
            Op::Remove => {
                match sub {
                    Some(sub) => {
                        for &i in &matching {
                            if let Value::Object(o) = &mut items[i] {
                                o.remove(sub.name);
                            }
                        }
                    }
                    None => {
                        for &i in matching.iter().rev() {
                            items.remove(i);
                        }
                    }
                }
                return Ok(());
            }
            Op::Add | Op::Replace => {
                let Some(value) = value else {
                    return Err(ScimError::value(format!("{op:?} on {name} needs a value")));
                };
                if matching.is_empty() {
                    if !compat.create_missing_filtered_value {
                        return Err(ScimError::typed(ScimType::NoTarget, format!("no {name} matches the filter")));
                    }
                    // Entra: `emails[type eq "work"].value` creates the work email.
                    let mut element = equality_fields(filter)
                        .ok_or_else(|| ScimError::typed(ScimType::NoTarget, format!("no {name} matches the filter")))?;
                    match sub {
                        Some(sub) => {
                            if let Some(v) = normalize_single(sub, value)? {
                                element.insert(sub.name.to_owned(), v);
                            }
                        }
                        None => {
                            if let Some(Value::Object(v)) = normalize_single(attr, value)? {
                                element.extend(v);
                            }
                        }
                    }
                    items.push(Value::Object(element));
                    return Ok(());
                }
                for &i in &matching {
                    match sub {
                        Some(sub) => {
                            if let (Value::Object(o), Some(v)) = (&mut items[i], normalize_single(sub, value)?) {
                                o.insert(sub.name.to_owned(), v);
                            }
                        }
                        None => {
                            let Some(Value::Object(v)) = normalize_single(attr, value)? else {
                                return Err(ScimError::value(format!("{name} elements are objects")));
                            };
                            match (op, &mut items[i]) {
                                (Op::Add, Value::Object(o)) => o.extend(v),
                                (_, slot) => *slot = Value::Object(v),
                            }
                        }
                    }
                }
                return Ok(());
            }
        }
    }

    if let Some(sub_name) = &path.attr.sub {
        let sub = attr
            .sub(sub_name)
            .ok_or_else(|| ScimError::typed(ScimType::InvalidPath, format!("no sub-attribute {name}.{sub_name}")))?;
        let slot = map.entry(name.to_owned()).or_insert_with(|| if attr.multi_valued { json!([]) } else { json!({}) });
        let objects: Vec<&mut Map<String, Value>> = match slot {
            Value::Object(o) => vec![o],
            Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).collect(),
            _ => vec![],
        };
        for object in objects {
            match (op, value) {
                (Op::Remove, _) | (Op::Replace, None) => {
                    object.remove(sub.name);
                }
                (_, Some(v)) => {
                    if let Some(v) = normalize_single(sub, v)? {
                        object.insert(sub.name.to_owned(), v);
                    }
                }
                (Op::Add, None) => return Err(ScimError::value(format!("add on {name}.{sub_name} needs a value"))),
            }
        }
        if matches!(map.get(name), Some(Value::Object(o)) if o.is_empty()) {
            map.remove(name);
        }
        return Ok(());
    }

    match op {
        Op::Remove => {
            match (value, attr.multi_valued) {
                // Remove the listed values only.
                (Some(v), true) => {
                    let listed: Vec<Value> = match normalize_value(attr, v)? {
                        Some(Value::Array(items)) => items,
                        _ => vec![],
                    };
                    if let Some(Value::Array(items)) = map.get_mut(name) {
                        // Matched through a set of keys: linear in both lists.
                        let listed: std::collections::HashSet<String> = listed.iter().map(element_key).collect();
                        items.retain(|item| !listed.contains(&element_key(item)));
                        if items.is_empty() {
                            map.remove(name);
                        }
                    }
                }
                _ => {
                    map.remove(name);
                }
            }
        }
        Op::Replace | Op::Add => {
            let Some(value) = value else {
                if op == Op::Replace {
                    map.remove(name);
                    return Ok(());
                }
                return Err(ScimError::value(format!("add on {name} needs a value")));
            };
            let Some(normal) = normalize_value(attr, value)? else { return Ok(()) };
            match (op, attr.multi_valued, attr.kind, map.get_mut(name)) {
                (Op::Add, true, _, Some(Value::Array(existing))) => {
                    let mut seen: std::collections::HashSet<String> = existing.iter().map(Value::to_string).collect();
                    for v in normal.as_array().into_iter().flatten() {
                        if seen.insert(v.to_string()) {
                            existing.push(v.clone());
                        }
                    }
                    resource::check_value_count(attr, existing.len())?;
                }
                // Complex single values merge: sub-attributes not given stay (RFC 7644 §3.5.2.3).
                (_, false, AttrType::Complex, Some(Value::Object(existing))) => {
                    if let Value::Object(new) = normal {
                        existing.extend(new);
                    }
                }
                _ => {
                    map.insert(name.to_owned(), normal);
                }
            }
        }
    }
    Ok(())
}

/// Two multi-valued elements are the same when their `value`s are (or they are equal).
/// What identifies an element of a multi-valued attribute for removal: its `value` when
/// it has one, else the whole element (canonical text: objects' keys are sorted).
fn element_key(v: &Value) -> String {
    match v.get("value") {
        Some(value) => format!("v:{value}"),
        None => format!("e:{v}"),
    }
}

/// `type eq "work" and primary eq true` → {"type": "work", "primary": true}.
fn equality_fields(filter: &Filter) -> Option<Map<String, Value>> {
    match filter {
        Filter::Compare(AttrPath { urn: None, name, sub: None }, CompareOp::Eq, value) => {
            let v = match value {
                CompValue::String(s) => Value::String(s.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Number(n) => json!(n),
                CompValue::Null => return None,
            };
            Some(Map::from_iter([(name.clone(), v)]))
        }
        Filter::And(a, b) => {
            let mut m = equality_fields(a)?;
            m.extend(equality_fields(b)?);
            Some(m)
        }
        _ => None,
    }
}

fn member_values(value: Option<&Value>) -> ScimResult<Vec<String>> {
    let items: Vec<&Value> = match value {
        None => vec![],
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
    };
    items
        .into_iter()
        .filter(|v| !v.is_null())
        .map(|item| match item {
            Value::Object(o) => get_ci(o, "value").and_then(Value::as_str).map(str::to_owned),
            Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .map(|id| id.ok_or_else(|| ScimError::value("each member needs a string value (the member's id)")))
        .collect()
}

/// `value eq "a" or value eq "b"` → ["a", "b"].
fn member_filter_ids(filter: &Filter) -> Option<Vec<String>> {
    match filter {
        Filter::Compare(AttrPath { urn: None, name, sub: None }, CompareOp::Eq, CompValue::String(id))
            if name.eq_ignore_ascii_case("value") =>
        {
            Some(vec![id.clone()])
        }
        Filter::Or(a, b) => {
            let mut ids = member_filter_ids(a)?;
            ids.extend(member_filter_ids(b)?);
            Some(ids)
        }
        _ => None,
    }
}

fn member_op(op: Op, path: &PatchPath, value: Option<&Value>) -> ScimResult<Vec<MemberOp>> {
    if let Some(filter) = &path.filter {
        let ids = member_filter_ids(filter).ok_or_else(|| {
            ScimError::typed(ScimType::InvalidFilter, "members can be selected by value eq \"id\" (joined with or)")
        })?;
        return match op {
            Op::Remove => Ok(vec![MemberOp::Remove(ids)]),
            _ => Err(ScimError::typed(ScimType::InvalidPath, "members[…] can only be removed")),
        };
    }
    if path.attr.sub.is_some() {
        return Err(ScimError::typed(ScimType::InvalidPath, "member sub-attributes cannot be changed"));
    }
    let ids = member_values(value)?;
    Ok(match op {
        Op::Add => vec![MemberOp::Add(ids)],
        // Okta and Entra send remove with a value list: remove those members only.
        Op::Remove if value.is_some() => vec![MemberOp::Remove(ids)],
        Op::Remove => vec![MemberOp::RemoveAll],
        Op::Replace => vec![MemberOp::RemoveAll, MemberOp::Add(ids)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: ResourceKind, body: Value, ops: Value) -> ScimResult<PatchOutcome> {
        let schemas = Schemas::default();
        let ops = parse(&json!({"schemas": [PATCH_SCHEMA], "Operations": ops}))?;
        let Value::Object(body) = body else { panic!() };
        apply(&schemas, kind, body, &ops, Compat::default())
    }

    fn user() -> Value {
        json!({"userName": "bob", "active": true, "emails": [{"type": "home", "value": "b@home"}], "name": {"givenName": "B", "familyName": "J"}})
    }

    #[test]
    fn entra_style_operations() {
        let out = run(ResourceKind::User, user(), json!([
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "bob@work"},
            {"op": "Replace", "path": "name.givenName", "value": "Robert"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "mgr-1"},
            {"op": "replace", "value": {"displayName": "Bob J", "name.familyName": "Jones", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "ops"}}
        ])).unwrap();
        let b = &out.body;
        assert!(out.body_changed);
        assert_eq!(b["active"], false);
        assert_eq!(b["emails"], json!([{"type": "home", "value": "b@home"}, {"type": "work", "value": "bob@work"}]));
        assert_eq!(b["name"], json!({"givenName": "Robert", "familyName": "Jones"}));
        assert_eq!(b["displayName"], "Bob J");
        let ext = &b["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
        assert_eq!(ext["manager"], json!({"value": "mgr-1"}));
        assert_eq!(ext["department"], "ops");
    }

    #[test]
    fn filtered_replace_remove_and_no_target() {
        let out = run(
            ResourceKind::User,
            user(),
            json!([
                {"op": "replace", "path": "emails[type eq \"home\"].value", "value": "new@home"},
            ]),
        )
        .unwrap();
        assert_eq!(out.body["emails"], json!([{"type": "home", "value": "new@home"}]));
        let out =
            run(ResourceKind::User, user(), json!([{"op": "remove", "path": "emails[type eq \"home\"]"}])).unwrap();
        assert!(out.body.get("emails").is_none());
        let schemas = Schemas::default();
        let ops = parse(
            &json!({"Operations": [{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "x@w"}]}),
        )
        .unwrap();
        let Value::Object(body) = user() else { panic!() };
        let err = apply(&schemas, ResourceKind::User, body, &ops, Compat { create_missing_filtered_value: false })
            .unwrap_err();
        assert_eq!(err.scim_type, Some(ScimType::NoTarget));
    }

    #[test]
    fn bad_operations() {
        assert_eq!(
            run(ResourceKind::User, user(), json!([{"op": "remove"}])).unwrap_err().scim_type,
            Some(ScimType::NoTarget)
        );
        assert_eq!(
            run(ResourceKind::User, user(), json!([{"op": "jump", "path": "x"}])).unwrap_err().scim_type,
            Some(ScimType::InvalidSyntax)
        );
        assert_eq!(
            run(ResourceKind::User, user(), json!([{"op": "add", "path": "nosuch", "value": 1}]))
                .unwrap_err()
                .scim_type,
            Some(ScimType::InvalidPath)
        );
        assert_eq!(
            run(ResourceKind::User, user(), json!([{"op": "remove", "path": "userName"}])).unwrap_err().scim_type,
            Some(ScimType::InvalidValue)
        );
        assert!(
            run(ResourceKind::User, user(), json!([{"op": "replace", "path": "active", "value": "maybe"}])).is_err()
        );
        let unchanged =
            run(ResourceKind::User, user(), json!([{"op": "replace", "path": "id", "value": "x"}])).unwrap();
        assert!(!unchanged.body_changed, "read-only targets are ignored");
    }

    #[test]
    fn member_operations_become_set_operations() {
        let group = json!({"displayName": "Sales"});
        let out = run(
            ResourceKind::Group,
            group.clone(),
            json!([
                {"op": "Add", "path": "members", "value": [{"value": "a"}, {"value": "b"}]},
                {"op": "Remove", "path": "members", "value": [{"value": "a"}]},
                {"op": "remove", "path": "members[value eq \"c\" or value eq \"d\"]"},
                {"op": "replace", "path": "members", "value": [{"value": "e"}]},
                {"op": "remove", "path": "members"}
            ]),
        )
        .unwrap();
        assert!(!out.body_changed);
        assert_eq!(
            out.members,
            vec![
                MemberOp::Add(vec!["a".into(), "b".into()]),
                MemberOp::Remove(vec!["a".into()]),
                MemberOp::Remove(vec!["c".into(), "d".into()]),
                MemberOp::RemoveAll,
                MemberOp::Add(vec!["e".into()]),
                MemberOp::RemoveAll,
            ]
        );
        let out = run(
            ResourceKind::Group,
            group,
            json!([{"op": "replace", "value": {"id": "x", "displayName": "Sales EU"}}]),
        )
        .unwrap();
        assert_eq!(out.body["displayName"], "Sales EU");
    }
}
