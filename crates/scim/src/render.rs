//! Reading resources back: one resource as stored (with its ETag), projected by
//! `attributes`/`excludedAttributes`, groups with their members (streamed when large), and
//! users with their groups.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use idbridge_core::source_record::{ScimKind, ScimMember, ScimRecord};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::auth::ScimCaller;
use crate::error::{ScimError, ScimResult};
use crate::resource::Projection;
use crate::response::scim_response;
use crate::schema::ResourceKind;
use crate::state::ScimState;

pub(crate) fn store_kind(kind: ResourceKind) -> ScimKind {
    match kind {
        ResourceKind::User => ScimKind::User,
        ResourceKind::Group => ScimKind::Group,
    }
}

pub(crate) fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

pub(crate) fn parse_id(kind: ResourceKind, id: &str) -> ScimResult<Uuid> {
    id.parse().map_err(|_| ScimError::not_found(format!("{} {id:?} not found", kind.as_str())))
}

pub(crate) fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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

pub(crate) async fn render_with_groups(
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
pub(crate) async fn all_members(state: &ScimState, caller: &ScimCaller, group: Uuid) -> ScimResult<Vec<Value>> {
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

#[derive(Deserialize, Default)]
pub(crate) struct ProjectionParams {
    pub attributes: Option<String>,
    #[serde(rename = "excludedAttributes")]
    pub excluded_attributes: Option<String>,
}

impl ProjectionParams {
    pub(crate) fn projection(&self) -> Projection {
        Projection::parse(self.attributes.as_deref(), self.excluded_attributes.as_deref())
    }

    pub(crate) fn asked(&self) -> bool {
        self.attributes.is_some() || self.excluded_attributes.is_some()
    }
}

pub(crate) fn projection_query(raw: Option<&str>) -> ScimResult<ProjectionParams> {
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

pub(crate) async fn get_one(
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
pub(crate) async fn stream_group(
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

/// Whether an `If-Match`/`If-None-Match` list names this version.
pub(crate) fn etag_matches(header: &str, version: i64) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == version.to_string())
}
