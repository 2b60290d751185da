//! Listing and searching: filters, sorting, index pagination (`startIndex`, `count`) and
//! RFC 9865 cursor pagination (`cursor`, `nextCursor`), with `attributes` projection.
//!
//! Equality on an indexed attribute (`userName`, `displayName`, `externalId`, `id`) and
//! unfiltered pages are answered by the database; other filters are evaluated over the
//! tenant's resources of that type.

use std::cmp::Ordering;

use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idbridge_core::source_record::{ScimQuery, ScimRecord};
use serde_json::{Map, Value, json};

use crate::auth::ScimCaller;
use crate::error::{ScimError, ScimResult, ScimType};
use crate::filter::{self, EvalContext, Filter};
use crate::render::{query_pairs, render, render_page, store_kind};
use crate::resource::Projection;
use crate::response::LIST_RESPONSE;
use crate::response::scim_json;
use crate::schema::ResourceKind;
use crate::state::ScimState;

#[derive(Debug, Default)]
pub struct ListParams {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub descending: bool,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
    /// `Some("")` asks for the first cursor page.
    pub cursor: Option<String>,
}

fn integer(name: &str, raw: &str) -> ScimResult<i64> {
    raw.trim().parse::<i64>().map_err(|_| ScimError::value(format!("{name} must be an integer, got {raw:?}")))
}

fn sort_order(raw: &str) -> ScimResult<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "ascending" => Ok(false),
        "descending" => Ok(true),
        _ => Err(ScimError::value(format!("sortOrder must be ascending or descending, got {raw:?}"))),
    }
}

impl ListParams {
    pub fn from_query(raw: Option<&str>) -> ScimResult<Self> {
        let mut p = Self::default();
        for (key, value) in query_pairs(raw.unwrap_or("")) {
            match key.to_ascii_lowercase().as_str() {
                "filter" => p.filter = Some(value),
                "sortby" => p.sort_by = Some(value),
                "sortorder" => p.descending = sort_order(&value)?,
                "startindex" => p.start_index = Some(integer("startIndex", &value)?),
                "count" => p.count = Some(integer("count", &value)?),
                "attributes" => p.attributes = Some(value),
                "excludedattributes" => p.excluded_attributes = Some(value),
                "cursor" => p.cursor = Some(value),
                _ => {}
            }
        }
        Ok(p)
    }

    /// A `SearchRequest` body (RFC 7644 §3.4.3).
    pub fn from_search(body: &Value) -> ScimResult<Self> {
        let Value::Object(body) = body else { return Err(ScimError::syntax("a search request must be a JSON object")) };
        let mut p = Self::default();
        let text = |v: &Value, name: &str| -> ScimResult<String> {
            match v {
                Value::String(s) => Ok(s.clone()),
                Value::Array(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| ScimError::value(format!("{name} must list strings")))
                    })
                    .collect::<ScimResult<Vec<_>>>()
                    .map(|v| v.join(",")),
                _ => Err(ScimError::value(format!("{name} must be a string"))),
            }
        };
        let number = |v: &Value, name: &str| -> ScimResult<i64> {
            match v {
                Value::Number(n) => n.as_i64().ok_or_else(|| ScimError::value(format!("{name} must be an integer"))),
                Value::String(s) => integer(name, s),
                _ => Err(ScimError::value(format!("{name} must be an integer"))),
            }
        };
        for (key, value) in body {
            if value.is_null() {
                continue;
            }
            match key.to_ascii_lowercase().as_str() {
                "filter" => p.filter = Some(text(value, "filter")?),
                "sortby" => p.sort_by = Some(text(value, "sortBy")?),
                "sortorder" => p.descending = sort_order(&text(value, "sortOrder")?)?,
                "startindex" => p.start_index = Some(number(value, "startIndex")?),
                "count" => p.count = Some(number(value, "count")?),
                "attributes" => p.attributes = Some(text(value, "attributes")?),
                "excludedattributes" => p.excluded_attributes = Some(text(value, "excludedAttributes")?),
                "cursor" => p.cursor = Some(text(value, "cursor")?),
                "schemas" => {}
                other => return Err(ScimError::syntax(format!("unknown search parameter {other:?}"))),
            }
        }
        Ok(p)
    }
}

/// A cursor names the tenant, the resource type and the last position served, so a
/// cursor is useless to any other tenant or endpoint.
fn encode_cursor(caller: &ScimCaller, kind: ResourceKind, seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("c1|{}|{}|{seq}", caller.tenant.id, kind.as_str()))
}

fn decode_cursor(caller: &ScimCaller, kind: ResourceKind, cursor: &str) -> ScimResult<Option<i64>> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let invalid = || ScimError::typed(ScimType::InvalidCursor, "the cursor is not one this endpoint issued");
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let parts: Vec<&str> = raw.split('|').collect();
    match parts.as_slice() {
        ["c1", tenant, k, seq] if *tenant == caller.tenant.id.to_string() && *k == kind.as_str() => {
            seq.parse().map(Some).map_err(|_| invalid())
        }
        _ => Err(invalid()),
    }
}

/// The JSON a filter is evaluated against: the stored body plus `id`, `externalId`, `meta`.
fn evaluable(kind: ResourceKind, record: &ScimRecord) -> Value {
    let mut object = match &record.data {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    object.insert("id".into(), Value::String(record.id.to_string()));
    object.insert(
        "meta".into(),
        json!({
            "resourceType": kind.as_str(),
            "created": record.created_at.to_string(),
            "lastModified": record.updated_at.to_string(),
        }),
    );
    Value::Object(object)
}

fn mentions(filter: &Filter, name: &str) -> bool {
    match filter {
        Filter::And(a, b) | Filter::Or(a, b) => mentions(a, name) || mentions(b, name),
        Filter::Not(inner) => mentions(inner, name),
        Filter::Present(p) | Filter::Compare(p, ..) | Filter::ValuePath(p, _) => p.name.eq_ignore_ascii_case(name),
    }
}

/// Records matching the filter, in order, with the number that matched in all.
// The paging knobs are independent; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn matching(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    filter: Option<&Filter>,
    sort_by: Option<&filter::AttrPath>,
    descending: bool,
    after_seq: Option<i64>,
    offset: u64,
    limit: u32,
) -> ScimResult<(Vec<ScimRecord>, u64)> {
    let store_kind = store_kind(kind);
    let mut query = ScimQuery { after_seq, offset, limit: Some(limit), ..ScimQuery::default() };
    let pushed = match filter.and_then(filter::top_level_equality) {
        None if filter.is_none() => true,
        Some((name, value)) => {
            let indexed_name = match kind {
                ResourceKind::User => "userName",
                ResourceKind::Group => "displayName",
            };
            if name.eq_ignore_ascii_case(indexed_name) {
                query.name_eq = Some(value.to_owned());
                true
            } else if name.eq_ignore_ascii_case("externalId") {
                query.external_id_eq = Some(value.to_owned());
                true
            } else if name.eq_ignore_ascii_case("id") {
                match value.parse() {
                    Ok(id) => {
                        query.id_eq = Some(id);
                        true
                    }
                    Err(_) => return Ok((vec![], 0)),
                }
            } else {
                false
            }
        }
        None => false,
    };
    if pushed && sort_by.is_none() {
        return Ok(state.records.list_scim(caller.tenant.id, store_kind, &query).await?);
    }
    // Evaluate in memory over the tenant's resources of this type.
    let all_query = ScimQuery { after_seq, limit: None, offset: 0, ..query };
    let (records, _) = state.records.list_scim(caller.tenant.id, store_kind, &all_query).await?;
    let ctx = EvalContext { schemas: &state.schemas, kind };
    let needs_links = filter.is_some_and(|f| mentions(f, "members") || mentions(f, "groups"));
    let mut kept = Vec::new();
    for record in records {
        let mut doc = evaluable(kind, &record);
        if needs_links {
            doc = render(state, caller, kind, &record, &Projection::default()).await?;
        }
        if filter.is_none_or(|f| ctx.matches(f, &doc)) {
            kept.push((record, doc));
        }
    }
    if let Some(path) = sort_by {
        kept.sort_by(|(_, a), (_, b)| {
            let order = compare_sort(ctx.sort_value(path, a), ctx.sort_value(path, b));
            if descending { order.reverse() } else { order }
        });
    }
    let total = kept.len() as u64;
    let page = kept
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit as usize)
        .map(|(r, _)| r)
        .collect();
    Ok((page, total))
}

fn compare_sort(a: Option<(&Value, bool)>, b: Option<(&Value, bool)>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some((Value::String(x), exact)), Some((Value::String(y), _))) => {
            if exact {
                x.cmp(y)
            } else {
                x.to_lowercase().cmp(&y.to_lowercase())
            }
        }
        (Some((Value::Number(x), _)), Some((Value::Number(y), _))) => {
            x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal)
        }
        (Some((Value::Bool(x), _)), Some((Value::Bool(y), _))) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

pub async fn list(
    state: &ScimState,
    caller: &ScimCaller,
    kind: Option<ResourceKind>,
    params: ListParams,
) -> ScimResult<Response> {
    let kinds: Vec<ResourceKind> = kind.map_or_else(|| vec![ResourceKind::User, ResourceKind::Group], |k| vec![k]);
    let count = params
        .count
        .unwrap_or(i64::from(state.limits.default_page_size))
        .clamp(0, i64::from(state.limits.max_page_size));
    let count = u32::try_from(count).unwrap_or(0);
    let start_index = params.start_index.unwrap_or(1).max(1);
    let filter = params
        .filter
        .as_deref()
        .filter(|f| !f.trim().is_empty())
        .map(filter::parse)
        .transpose()
        .map_err(|e| ScimError::typed(ScimType::InvalidFilter, e.0))?;
    for kind in &kinds {
        if let Some(f) = &filter {
            EvalContext { schemas: &state.schemas, kind: *kind }
                .validate(f)
                .map_err(|e| ScimError::typed(ScimType::InvalidFilter, e.0))?;
        }
    }
    let sort_by = params
        .sort_by
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(filter::parse_attr_path)
        .transpose()
        .map_err(|e| ScimError::typed(ScimType::InvalidPath, format!("sortBy: {e}")))?;
    let projection = Projection::parse(params.attributes.as_deref(), params.excluded_attributes.as_deref());

    let mut resources = Vec::new();
    let mut total = 0u64;
    let mut next_cursor = None;
    if let Some(cursor) = &params.cursor {
        let [kind] = kinds.as_slice() else {
            return Err(ScimError::typed(ScimType::InvalidCursor, "cursor pagination needs one resource type"));
        };
        if params.start_index.is_some() {
            return Err(ScimError::typed(ScimType::InvalidCursor, "use either cursor or startIndex, not both"));
        }
        let after = decode_cursor(caller, *kind, cursor)?;
        // One more than asked tells whether another page exists.
        let (page, _) =
            matching(state, caller, *kind, filter.as_ref(), None, false, after, 0, count.saturating_add(1)).await?;
        let (_, all) = matching(state, caller, *kind, filter.as_ref(), None, false, None, 0, 0).await?;
        total = all;
        let more = page.len() > count as usize;
        let shown = &page[..page.len().min(count as usize)];
        resources.extend(render_page(state, caller, *kind, shown, &projection).await?);
        // count=0 asks for the total only: no page, so no next cursor either.
        if more && count > 0 {
            next_cursor = page.get(count as usize - 1).map(|r| encode_cursor(caller, *kind, r.seq));
        }
    } else {
        let mut skip = u64::try_from(start_index - 1).unwrap_or(0);
        let mut room = count;
        for kind in &kinds {
            let (page, matched) =
                matching(state, caller, *kind, filter.as_ref(), sort_by.as_ref(), params.descending, None, skip, room)
                    .await?;
            total += matched;
            skip = skip.saturating_sub(matched);
            room -= u32::try_from(page.len()).unwrap_or(room).min(room);
            resources.extend(render_page(state, caller, *kind, &page, &projection).await?);
        }
    }
    let mut body = json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    if params.cursor.is_none() {
        body["startIndex"] = json!(start_index);
    }
    if let Some(next) = next_cursor {
        body["nextCursor"] = json!(next);
    }
    Ok(scim_json(body))
}
