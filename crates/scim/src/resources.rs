//! Users and Groups: create, read, replace, patch, delete, and the HTTP handlers that
//! wrap them. `bulk` calls the same operations.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use idbridge_core::audit::AuditRecord;
use idbridge_core::ports::{ScimChanges, ScimWritten};
use idbridge_core::source_record::{MemberChange, ScimKind, ScimMember, ScimRecord, ScimWrite};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::auth::ScimCaller;
use crate::error::{ScimError, ScimResult};
use crate::list::{self, ListParams};
use crate::patch::{self, Compat, MemberOp};
use crate::resource::{self, Projection};
use crate::schema::ResourceKind;
use crate::{ScimState, scim_response};

pub(crate) fn store_kind(kind: ResourceKind) -> ScimKind {
    match kind {
        ResourceKind::User => ScimKind::User,
        ResourceKind::Group => ScimKind::Group,
    }
}

/// A JSON request body: `application/scim+json` or `application/json`; errors in SCIM form.
pub struct ScimBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ScimError> {
        if let Some(content_type) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            if !(essence == "application/scim+json" || essence == "application/json" || essence.ends_with("+json")) {
                return Err(ScimError::status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("send application/scim+json or application/json, not {content_type}"),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ScimError::status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is larger than the advertised maxPayloadSize",
                )
            } else if rejection.body_text().contains("designated timeout") {
                // The daemon's body-read deadline (server.body_read_timeout_seconds).
                ScimError::status(StatusCode::REQUEST_TIMEOUT, "the request body stopped arriving")
            } else {
                ScimError::syntax(format!("cannot read the request body: {}", rejection.body_text()))
            }
        })?;
        parse_json(&bytes).map(Self)
    }
}

pub(crate) fn parse_json(bytes: &[u8]) -> ScimResult<Value> {
    let text = std::str::from_utf8(bytes).map_err(|_| ScimError::syntax("the request body is not valid UTF-8"))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ScimError::syntax(format!("the request body is not valid JSON: {e}")))?;
    // U+0000 is valid JSON but no text column stores it (PostgreSQL refuses it, SQLite
    // would cut it): refused the same on every backend, before anything is written.
    if text.contains("\\u0000") && contains_nul(&value) {
        return Err(ScimError::value("text must not contain the NUL character (U+0000)"));
    }
    Ok(value)
}

fn contains_nul(value: &Value) -> bool {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return true,
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    false
}

/// What an operation answers; handlers and bulk turn it into their own form.
pub(crate) struct Outcome {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub version: Option<i64>,
    pub location: Option<String>,
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => scim_response(self.status, body),
            None => self.status.into_response(),
        };
        let headers = response.headers_mut();
        if let Some(v) = self.version.and_then(|v| HeaderValue::from_str(&etag(v)).ok()) {
            headers.insert(header::ETAG, v);
        }
        if let Some(loc) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, loc);
        }
        response
    }
}

pub(crate) fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Whether an `If-Match`/`If-None-Match` list names this version.
fn etag_matches(header: &str, version: i64) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == version.to_string())
}

fn check_if_match(if_match: Option<&str>, record: &ScimRecord) -> ScimResult<()> {
    match if_match {
        Some(h) if !etag_matches(h, record.version) => Err(ScimError::status(
            StatusCode::PRECONDITION_FAILED,
            format!("If-Match does not match the current version {}", etag(record.version)),
        )),
        _ => Ok(()),
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn parse_id(kind: ResourceKind, id: &str) -> ScimResult<Uuid> {
    id.parse().map_err(|_| ScimError::not_found(format!("{} {id:?} not found", kind.as_str())))
}

pub(crate) async fn load(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    id: &str,
) -> ScimResult<ScimRecord> {
    let uuid = parse_id(kind, id)?;
    state
        .records
        .get_scim(caller.tenant.id, store_kind(kind), uuid)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("{} {id:?} not found", kind.as_str())))
}

/// The resource as clients read it.
pub(crate) async fn render(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    record: &ScimRecord,
    projection: &Projection,
) -> ScimResult<Value> {
    let groups = match kind {
        ResourceKind::User if projection.wants("groups") => {
            Some(state.records.list_scim_groups_of(caller.tenant.id, record.id).await?)
        }
        _ => None,
    };
    render_with_groups(state, caller, kind, record, projection, groups).await
}

/// Renders a page of records, reading the users' groups in one query.
pub(crate) async fn render_page(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    records: &[ScimRecord],
    projection: &Projection,
) -> ScimResult<Vec<Value>> {
    let mut groups: std::collections::HashMap<Uuid, Vec<ScimMember>> = std::collections::HashMap::new();
    let want_groups = kind == ResourceKind::User && projection.wants("groups");
    if want_groups {
        let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
        for (member, group) in state.records.list_scim_groups_of_many(caller.tenant.id, &ids).await? {
            groups.entry(member).or_default().push(group);
        }
    }
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let g = want_groups.then(|| groups.remove(&record.id).unwrap_or_default());
        out.push(render_with_groups(state, caller, kind, record, projection, g).await?);
    }
    Ok(out)
}

async fn render_with_groups(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    record: &ScimRecord,
    projection: &Projection,
    groups: Option<Vec<ScimMember>>,
) -> ScimResult<Value> {
    let mut object = Map::new();
    let mut schemas = vec![Value::String(kind.core_schema().to_owned())];
    for ext in kind.extensions() {
        if record.data.get(*ext).is_some() {
            schemas.push(Value::String((*ext).to_owned()));
        }
    }
    object.insert("schemas".into(), Value::Array(schemas));
    object.insert("id".into(), Value::String(record.id.to_string()));
    if let Value::Object(data) = &record.data {
        for (k, v) in data {
            object.insert(k.clone(), v.clone());
        }
    }
    let base = state.base_url(&caller.tenant);
    match kind {
        ResourceKind::Group if projection.wants("members") => {
            let members = all_members(state, caller, record.id).await?;
            object.insert("members".into(), Value::Array(members));
        }
        ResourceKind::User => {
            let groups = groups.unwrap_or_default();
            if !groups.is_empty() {
                let groups = groups
                    .into_iter()
                    .map(|g| json!({"value": g.id.to_string(), "$ref": format!("{base}/Groups/{}", g.id), "display": g.display, "type": "direct"}))
                    .collect();
                object.insert("groups".into(), Value::Array(groups));
            }
        }
        _ => {}
    }
    object.insert(
        "meta".into(),
        json!({
            "resourceType": kind.as_str(),
            "created": record.created_at.to_string(),
            "lastModified": record.updated_at.to_string(),
            "location": format!("{base}/{}/{}", kind.endpoint(), record.id),
            "version": etag(record.version),
        }),
    );
    Ok(projection.apply(&state.schemas, kind, Value::Object(object)))
}

/// Members in pages from the store, so the database never returns one huge result.
async fn all_members(state: &ScimState, caller: &ScimCaller, group: Uuid) -> ScimResult<Vec<Value>> {
    let base = state.base_url(&caller.tenant);
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = state.records.list_scim_members(caller.tenant.id, group, after, 5000).await?;
        let done = page.len() < 5000;
        after = page.last().map(|m| m.id);
        out.extend(page.into_iter().map(|m| {
            let endpoint = match m.kind {
                ScimKind::User => "Users",
                ScimKind::Group => "Groups",
            };
            // No `display`: members read back exactly as they were written (value, $ref,
            // type), which is what strict clients compare.
            json!({"value": m.id.to_string(), "$ref": format!("{base}/{endpoint}/{}", m.id), "type": m.kind.as_str()})
        }));
        if done {
            return Ok(out);
        }
    }
}

fn member_changes(ops: Vec<MemberOp>) -> ScimResult<Vec<MemberChange>> {
    let ids = |ids: Vec<String>| {
        ids.into_iter()
            .map(|id| {
                id.parse::<Uuid>()
                    .map_err(|_| ScimError::value(format!("member {id:?} is not a user or group of this tenant")))
            })
            .collect::<ScimResult<Vec<_>>>()
    };
    ops.into_iter()
        .map(|op| {
            Ok(match op {
                MemberOp::Add(list) => MemberChange::Add(ids(list)?),
                // Removing an id that cannot exist is a no-op, like removing a non-member.
                MemberOp::Remove(list) => {
                    MemberChange::Remove(list.into_iter().filter_map(|id| id.parse().ok()).collect())
                }
                MemberOp::RemoveAll => MemberChange::RemoveAll,
            })
        })
        .collect()
}

fn name_of(kind: ResourceKind, body: &Map<String, Value>) -> String {
    let key = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    body.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn external_id(body: &Map<String, Value>) -> Option<String> {
    body.get("externalId").and_then(Value::as_str).map(str::to_owned)
}

fn audit(
    caller: &ScimCaller,
    kind: ResourceKind,
    id: Uuid,
    action: &'static str,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditRecord {
    let subject = match kind {
        ResourceKind::User => "scim_user",
        ResourceKind::Group => "scim_group",
    };
    caller.ctx.record(Some(caller.tenant.id), subject, id.to_string(), action, before, after)
}

fn compat(caller: &ScimCaller) -> Compat {
    Compat { create_missing_filtered_value: caller.tenant.policy.scim_create_missing_filtered_value }
}

pub(crate) async fn create(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    input: &Value,
    projection: &Projection,
) -> ScimResult<Outcome> {
    let normalized = resource::normalize(&state.schemas, kind, input)?;
    let now = idbridge_core::clock::now();
    let id = Uuid::new_v4();
    let members = match normalized.members {
        Some(ids) if !ids.is_empty() => member_changes(vec![MemberOp::Add(ids)])?,
        _ => vec![],
    };
    let body = Value::Object(normalized.body.clone());
    let record = ScimRecord {
        tenant_id: caller.tenant.id,
        kind: store_kind(kind),
        id,
        external_id: external_id(&normalized.body),
        name: name_of(kind, &normalized.body),
        data: body.clone(),
        version: 1,
        created_at: now,
        updated_at: now,
        seq: 0,
    };
    let action = match kind {
        ResourceKind::User => "scim_user.created",
        ResourceKind::Group => "scim_group.created",
    };
    let write = ScimWrite {
        record,
        expected_version: None,
        body_changed: true,
        members,
        change: caller.change,
        audit: audit(caller, kind, id, action, None, Some(body)),
    };
    let ScimWritten { record: stored, owed } = state.records.write_scim(&write).await?;
    notify(state, caller, ScimChanges::owed(format!("SCIM POST {}", kind.endpoint()), owed)).await;
    // A user created a moment ago belongs to no group yet.
    let rendered = render_with_groups(state, caller, kind, &stored, projection, Some(vec![])).await?;
    Ok(Outcome {
        status: StatusCode::CREATED,
        location: Some(format!("{}/{}/{}", state.base_url(&caller.tenant), kind.endpoint(), stored.id)),
        version: Some(stored.version),
        body: Some(rendered),
    })
}

pub(crate) async fn replace(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    id: &str,
    input: &Value,
    if_match: Option<&str>,
    projection: &Projection,
) -> ScimResult<Outcome> {
    retry_unconditional(if_match, || replace_once(state, caller, kind, id, input, if_match, projection)).await
}

/// Without If-Match the client asked for "apply to whatever is current" (Entra and Okta
/// never send one): a concurrent change is not its conflict, so the write is made again
/// against the fresh resource — PATCH re-applied, PUT re-written — with a short jittered
/// pause, until it lands. A 412 is only ever the answer to a failed If-Match.
async fn retry_unconditional<F, Fut>(if_match: Option<&str>, mut attempt: F) -> ScimResult<Outcome>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ScimResult<Outcome>>,
{
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match attempt().await {
            Err(e) if e.status == StatusCode::PRECONDITION_FAILED && if_match.is_none() && attempts < 64 => {
                let jitter = u64::from(
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
                        % 4,
                );
                tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempts.min(8)) + jitter)).await;
            }
            other => return other,
        }
    }
}

async fn replace_once(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    id: &str,
    input: &Value,
    if_match: Option<&str>,
    projection: &Projection,
) -> ScimResult<Outcome> {
    let current = load(state, caller, kind, id).await?;
    check_if_match(if_match, &current)?;
    let mut normalized = resource::normalize(&state.schemas, kind, input)?;
    if kind == ResourceKind::User && !normalized.body.contains_key("active") {
        // Okta's PUT leaves out `active` when it means "unchanged", not "inactive".
        if let Some(active) = current.data.get("active") {
            normalized.body.insert("active".into(), active.clone());
        }
    }
    let members = match normalized.members {
        // A PUT without `members` leaves them as they are.
        None => vec![],
        Some(ids) => member_changes(vec![MemberOp::RemoveAll, MemberOp::Add(ids)])?,
    };
    let body = Value::Object(normalized.body.clone());
    let action = match kind {
        ResourceKind::User => "scim_user.replaced",
        ResourceKind::Group => "scim_group.replaced",
    };
    let record = ScimRecord {
        external_id: external_id(&normalized.body),
        name: name_of(kind, &normalized.body),
        data: body.clone(),
        ..current.clone()
    };
    let write = ScimWrite {
        record,
        expected_version: Some(current.version),
        body_changed: true,
        members,
        change: caller.change,
        audit: audit(caller, kind, current.id, action, Some(current.data.clone()), Some(body)),
    };
    let ScimWritten { record: stored, owed } = state.records.write_scim(&write).await?;
    notify(state, caller, ScimChanges::owed(format!("SCIM PUT {}", kind.endpoint()), owed)).await;
    let rendered = render(state, caller, kind, &stored, projection).await?;
    Ok(Outcome { status: StatusCode::OK, version: Some(stored.version), location: None, body: Some(rendered) })
}

pub(crate) async fn patch(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    id: &str,
    input: &Value,
    if_match: Option<&str>,
    projection: Option<Projection>,
) -> ScimResult<Outcome> {
    let operations = patch::parse(input)?;
    retry_unconditional(if_match, || patch_once(state, caller, kind, id, &operations, if_match, projection.clone()))
        .await
}

async fn patch_once(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    id: &str,
    operations: &[patch::Operation],
    if_match: Option<&str>,
    projection: Option<Projection>,
) -> ScimResult<Outcome> {
    let current = load(state, caller, kind, id).await?;
    check_if_match(if_match, &current)?;
    let Value::Object(body) = current.data.clone() else {
        return Err(ScimError::status(StatusCode::INTERNAL_SERVER_ERROR, "stored resource is not an object"));
    };
    let outcome = patch::apply(&state.schemas, kind, body, operations, compat(caller))?;
    let members = member_changes(outcome.members)?;
    if !outcome.body_changed && members.is_empty() {
        // Nothing to change: answer like a successful PATCH without writing or auditing.
        return finish_patch(state, caller, kind, &current, projection).await;
    }
    let body = Value::Object(outcome.body.clone());
    let action = match kind {
        ResourceKind::User => "scim_user.patched",
        ResourceKind::Group => "scim_group.patched",
    };
    let after = if outcome.body_changed { Some(body.clone()) } else { None };
    let member_summary = (!members.is_empty()).then(|| json!({ "members": format!("{members:?}") }));
    let record = ScimRecord {
        external_id: external_id(&outcome.body),
        name: name_of(kind, &outcome.body),
        data: body,
        ..current.clone()
    };
    let write = ScimWrite {
        record,
        expected_version: Some(current.version),
        body_changed: outcome.body_changed,
        members,
        change: caller.change,
        audit: audit(
            caller,
            kind,
            current.id,
            action,
            outcome.body_changed.then(|| current.data.clone()),
            after.or(member_summary),
        ),
    };
    // The store records, with the write, whom it affects: a renamed group, or one whose
    // members were all replaced, every member; a member added or removed, that member.
    let ScimWritten { record: stored, owed } = state.records.write_scim(&write).await?;
    notify(state, caller, ScimChanges::owed(format!("SCIM PATCH {}", kind.endpoint()), owed)).await;
    finish_patch(state, caller, kind, &stored, projection).await
}

/// Groups answer 204 unless the client asked for attributes (a 100,000-member group is
/// never serialised for nothing); users answer with the resource.
async fn finish_patch(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    record: &ScimRecord,
    projection: Option<Projection>,
) -> ScimResult<Outcome> {
    match (kind, projection) {
        (ResourceKind::Group, None) => {
            Ok(Outcome { status: StatusCode::NO_CONTENT, body: None, version: Some(record.version), location: None })
        }
        (_, projection) => {
            let body = render(state, caller, kind, record, &projection.unwrap_or_default()).await?;
            Ok(Outcome { status: StatusCode::OK, body: Some(body), version: Some(record.version), location: None })
        }
    }
}

pub(crate) async fn delete(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    id: &str,
    if_match: Option<&str>,
) -> ScimResult<Outcome> {
    let current = load(state, caller, kind, id).await?;
    check_if_match(if_match, &current)?;
    let action = match kind {
        ResourceKind::User => "scim_user.deleted",
        ResourceKind::Group => "scim_group.deleted",
    };
    let record = audit(caller, kind, current.id, action, Some(current.data.clone()), None);
    let Some(owed) =
        state.records.delete_scim(caller.tenant.id, store_kind(kind), current.id, caller.change, &record).await?
    else {
        return Err(ScimError::not_found(format!("{} {id:?} not found", kind.as_str())));
    };
    // A deleted user is in `owed.users` like a changed one: reconciliation finds no record
    // and deprovisions.
    notify(state, caller, ScimChanges::owed(format!("SCIM DELETE {}", kind.endpoint()), owed)).await;
    Ok(Outcome { status: StatusCode::NO_CONTENT, body: None, version: None, location: None })
}

#[derive(Deserialize, Default)]
pub(crate) struct ProjectionParams {
    pub attributes: Option<String>,
    #[serde(rename = "excludedAttributes")]
    pub excluded_attributes: Option<String>,
}

impl ProjectionParams {
    fn projection(&self) -> Projection {
        Projection::parse(self.attributes.as_deref(), self.excluded_attributes.as_deref())
    }

    fn asked(&self) -> bool {
        self.attributes.is_some() || self.excluded_attributes.is_some()
    }
}

fn projection_query(raw: Option<&str>) -> ScimResult<ProjectionParams> {
    let raw = raw.unwrap_or("");
    let pairs = query_pairs(raw);
    let mut p = ProjectionParams::default();
    for (k, v) in pairs {
        if k.eq_ignore_ascii_case("attributes") {
            p.attributes = Some(v);
        } else if k.eq_ignore_ascii_case("excludedAttributes") {
            p.excluded_attributes = Some(v);
        }
    }
    Ok(p)
}

/// Decodes a query string (percent-encoding and `+`), keeping every pair.
pub(crate) fn query_pairs(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes()).into_owned().collect()
}

async fn get_one(
    state: ScimState,
    caller: ScimCaller,
    kind: ResourceKind,
    id: String,
    headers: HeaderMap,
    query: Option<String>,
) -> ScimResult<Response> {
    let params = projection_query(query.as_deref())?;
    let record = load(&state, &caller, kind, &id).await?;
    if let Some(h) = header_str(&headers, header::IF_NONE_MATCH)
        && etag_matches(h, record.version)
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&etag(record.version)) {
            response.headers_mut().insert(header::ETAG, v);
        }
        return Ok(response);
    }
    let projection = params.projection();
    if kind == ResourceKind::Group && projection.wants("members") {
        return stream_group(state, caller, record, projection).await;
    }
    let body = render(&state, &caller, kind, &record, &projection).await?;
    Ok(Outcome { status: StatusCode::OK, body: Some(body), version: Some(record.version), location: None }
        .into_response())
}

/// A group with its members, streamed page by page: a 100,000-member group is never held
/// in memory as one list. The resource without members is written first, then the
/// members array as the store pages it out.
async fn stream_group(
    state: ScimState,
    caller: ScimCaller,
    record: ScimRecord,
    projection: Projection,
) -> ScimResult<Response> {
    let mut head_projection = projection.clone();
    head_projection.excluded.push("members".into());
    let head = render_with_groups(&state, &caller, ResourceKind::Group, &record, &head_projection, None).await?;
    let mut prefix = head.to_string();
    prefix.pop(); // the closing brace; the members array goes in before it
    if prefix.len() > 1 {
        prefix.push(',');
    }
    prefix.push_str("\"members\":[");
    let keep = projection.member_fields();
    let base = state.base_url(&caller.tenant);
    let tenant = caller.tenant.id;
    let group = record.id;
    let records = state.records.clone();
    let pages =
        futures::stream::unfold((Some(prefix), None::<Uuid>, false, true), move |(prefix, after, done, first)| {
            let records = records.clone();
            let base = base.clone();
            let keep = keep.clone();
            async move {
                if let Some(prefix) = prefix {
                    return Some((Ok::<_, std::io::Error>(prefix.into_bytes()), (None, after, done, first)));
                }
                if done {
                    return None;
                }
                let page = match records.list_scim_members(tenant, group, after, 5000).await {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::error!(error = %e, "streaming group members failed");
                        return Some((Err(std::io::Error::other("members page failed")), (None, after, true, first)));
                    }
                };
                let last = page.len() < 5000;
                let next = page.last().map(|m| m.id);
                let mut chunk = Vec::with_capacity(page.len() * 120);
                let mut first = first;
                for m in page {
                    if !first {
                        chunk.push(b',');
                    }
                    first = false;
                    let endpoint = match m.kind {
                        ScimKind::User => "Users",
                        ScimKind::Group => "Groups",
                    };
                    let mut member = Map::new();
                    member.insert("value".into(), json!(m.id.to_string()));
                    member.insert("$ref".into(), json!(format!("{base}/{endpoint}/{}", m.id)));
                    member.insert("type".into(), json!(m.kind.as_str()));
                    if let Some(keep) = &keep {
                        member.retain(|k, _| keep.iter().any(|f| f.eq_ignore_ascii_case(k)));
                    }
                    let _ = serde_json::to_writer(&mut chunk, &Value::Object(member));
                }
                if last {
                    chunk.extend_from_slice(b"]}");
                }
                Some((Ok(chunk), (None, next, last, first)))
            }
        });
    let mut response = axum::body::Body::from_stream(pages).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::error::SCIM_CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(&etag(record.version)) {
        headers.insert(header::ETAG, v);
    }
    Ok(response)
}

/// Which endpoint a handler serves; one generic handler per operation serves both.
pub trait Endpoint: Send + Sync + 'static {
    const KIND: ResourceKind;
}

pub struct Users;
pub struct Groups;

impl Endpoint for Users {
    const KIND: ResourceKind = ResourceKind::User;
}

impl Endpoint for Groups {
    const KIND: ResourceKind = ResourceKind::Group;
}

pub async fn get_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ScimResult<Response> {
    get_one(state, caller, E::KIND, id, headers, q).await
}

/// `attributes` and `excludedAttributes` shape the answers of POST and PUT too (RFC 7644
/// §3.9).
pub async fn create_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    RawQuery(q): RawQuery,
    ScimBody(body): ScimBody,
) -> ScimResult<Outcome> {
    let projection = projection_query(q.as_deref())?.projection();
    create(&state, &caller, E::KIND, &body, &projection).await
}

pub async fn replace_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    ScimBody(body): ScimBody,
) -> ScimResult<Outcome> {
    let projection = projection_query(q.as_deref())?.projection();
    replace(&state, &caller, E::KIND, &id, &body, header_str(&headers, header::IF_MATCH), &projection).await
}

pub async fn patch_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    ScimBody(body): ScimBody,
) -> ScimResult<Outcome> {
    let params = projection_query(q.as_deref())?;
    let projection = params.asked().then(|| params.projection());
    patch(&state, &caller, E::KIND, &id, &body, header_str(&headers, header::IF_MATCH), projection).await
}

pub async fn delete_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ScimResult<Outcome> {
    delete(&state, &caller, E::KIND, &id, header_str(&headers, header::IF_MATCH)).await
}

pub async fn list_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    RawQuery(q): RawQuery,
) -> ScimResult<Response> {
    let params = ListParams::from_query(q.as_deref())?;
    list::list(&state, &caller, Some(E::KIND), params).await
}

pub async fn search_handler<E: Endpoint>(
    caller: ScimCaller,
    State(state): State<ScimState>,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    list::list(&state, &caller, Some(E::KIND), ListParams::from_search(&body)?).await
}

pub async fn search_all(
    caller: ScimCaller,
    State(state): State<ScimState>,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    list::list(&state, &caller, None, ListParams::from_search(&body)?).await
}

async fn notify(state: &ScimState, caller: &ScimCaller, changes: ScimChanges) {
    if !changes.is_empty() {
        state.changes.scim_changed(&caller.tenant, changes, &caller.ctx).await;
    }
}
