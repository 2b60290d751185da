//! `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`: exactly what is supported.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Value, json};

use crate::auth::ScimCaller;
use crate::error::{ScimError, ScimResult};
use crate::response::LIST_RESPONSE;
use crate::response::scim_json;
use crate::schema::ResourceKind;
use crate::state::ScimState;

pub async fn service_provider_config(caller: ScimCaller, State(state): State<ScimState>) -> Response {
    let base = state.base_url(&caller.tenant);
    scim_json(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/idbridge/idbridge#scim",
        "patch": { "supported": true },
        "bulk": { "supported": true, "maxOperations": state.limits.bulk_max_operations, "maxPayloadSize": state.limits.max_body_bytes },
        "filter": { "supported": true, "maxResults": state.limits.max_page_size },
        "changePassword": { "supported": false },
        "sort": { "supported": true },
        "etag": { "supported": true },
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": state.limits.default_page_size,
            "maxPageSize": state.limits.max_page_size,
            "cursorTimeout": 86400
        },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A tenant SCIM token issued by `idbridge scim-token create`",
            "primary": true
        }],
        "meta": { "resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig") }
    }))
}

fn resource_type(kind: ResourceKind, base: &str) -> Value {
    let extensions: Vec<Value> =
        kind.extensions().iter().map(|urn| json!({ "schema": urn, "required": false })).collect();
    let mut v = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": kind.as_str(),
        "name": kind.as_str(),
        "endpoint": format!("/{}", kind.endpoint()),
        "description": match kind { ResourceKind::User => "User Account", ResourceKind::Group => "Group" },
        "schema": kind.core_schema(),
        "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", kind.as_str()) }
    });
    if !extensions.is_empty() {
        v["schemaExtensions"] = Value::Array(extensions);
    }
    v
}

pub async fn resource_types(caller: ScimCaller, State(state): State<ScimState>) -> Response {
    let base = state.base_url(&caller.tenant);
    let resources = vec![resource_type(ResourceKind::User, &base), resource_type(ResourceKind::Group, &base)];
    scim_json(json!({
        "schemas": [LIST_RESPONSE], "totalResults": 2, "startIndex": 1, "itemsPerPage": 2, "Resources": resources
    }))
}

pub async fn resource_type_by_id(
    caller: ScimCaller,
    State(state): State<ScimState>,
    Path((_, id)): Path<(String, String)>,
) -> ScimResult<Response> {
    let base = state.base_url(&caller.tenant);
    let kind = match id.as_str() {
        "User" => ResourceKind::User,
        "Group" => ResourceKind::Group,
        _ => return Err(ScimError::not_found(format!("no resource type {id:?}"))),
    };
    Ok(scim_json(resource_type(kind, &base)))
}

pub async fn schemas(caller: ScimCaller, State(state): State<ScimState>) -> Response {
    let base = state.base_url(&caller.tenant);
    let all: Vec<Value> = state.schemas.all().iter().map(|s| s.to_json(&base)).collect();
    scim_json(json!({
        "schemas": [LIST_RESPONSE], "totalResults": all.len(), "startIndex": 1, "itemsPerPage": all.len(), "Resources": all
    }))
}

pub async fn schema_by_id(
    caller: ScimCaller,
    State(state): State<ScimState>,
    Path((_, id)): Path<(String, String)>,
) -> ScimResult<Response> {
    let base = state.base_url(&caller.tenant);
    state
        .schemas
        .all()
        .into_iter()
        .find(|s| s.id == id)
        .map(|s| scim_json(s.to_json(&base)))
        .ok_or_else(|| ScimError::not_found(format!("no schema {id:?}")))
}
