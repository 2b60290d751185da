//! SCIM 2.0 service provider (RFC 7643, 7644, 9865 cursors) for Users and Groups, per
//! tenant at `/scim/v2/{tenant}/…`, built for what Microsoft Entra ID and Okta really send.
//!
//! Schemas are data (`schema`); resources are JSON normalised against them (`resource`);
//! filters (`filter`) and PATCH (`patch`) work on that JSON. The crate stores SCIM source
//! records through core's `ScimRecordStore`; it never writes individuals — what a person
//! becomes in the portal is the reconciliation service's decision.

pub mod auth;
mod bulk;
mod discovery;
pub mod error;
pub mod filter;
mod list;
pub mod patch;
pub mod person;
pub mod resource;
mod resources;
pub mod schema;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use idbridge_core::operator::Operator;
use idbridge_core::ports::ScimRecordStore;
use idbridge_core::tenant::Tenant;
use serde_json::Value;

pub use error::{ScimError, ScimResult};
use resources::{
    Groups, Users, create_handler, delete_handler, get_handler, list_handler, patch_handler, replace_handler,
    search_handler,
};
use schema::Schemas;

pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Sizes a deployment may tune.
#[derive(Debug, Clone)]
pub struct ScimLimits {
    pub max_body_bytes: usize,
    pub bulk_max_operations: usize,
    pub default_page_size: u32,
    pub max_page_size: u32,
    /// How long a successful token check is remembered (0 turns the cache off).
    pub auth_cache_ttl: std::time::Duration,
}

impl Default for ScimLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            bulk_max_operations: 1000,
            default_page_size: 100,
            max_page_size: 1000,
            auth_cache_ttl: std::time::Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
pub struct ScimState {
    pub operator: Operator,
    pub records: Arc<dyn ScimRecordStore>,
    pub schemas: Arc<Schemas>,
    /// `server.public_url`, without a trailing slash.
    pub public_url: String,
    pub limits: ScimLimits,
    pub auth_cache: Arc<auth::AuthCache>,
    /// Told about every successful write, so affected people are reconciled.
    pub changes: Arc<dyn idbridge_core::ports::SourceChanges>,
}

impl ScimState {
    pub fn new(
        operator: Operator,
        records: Arc<dyn ScimRecordStore>,
        changes: Arc<dyn idbridge_core::ports::SourceChanges>,
        public_url: &str,
        limits: ScimLimits,
    ) -> Self {
        Self {
            changes,
            auth_cache: Arc::new(auth::AuthCache::new(limits.auth_cache_ttl)),
            operator,
            records,
            schemas: Arc::new(Schemas::default()),
            public_url: public_url.trim_end_matches('/').to_owned(),
            limits,
        }
    }

    pub fn base_url(&self, tenant: &Tenant) -> String {
        format!("{}/scim/v2/{}", self.public_url, tenant.slug)
    }
}

/// The SCIM router, to be nested at `/scim/v2/{tenant}`.
pub fn router(state: ScimState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/ServiceProviderConfig", get(discovery::service_provider_config))
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{id}", get(discovery::resource_type_by_id))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{id}", get(discovery::schema_by_id))
        .route("/Users", get(list_handler::<Users>).post(create_handler::<Users>))
        .route("/Users/.search", post(search_handler::<Users>))
        .route(
            "/Users/{id}",
            get(get_handler::<Users>)
                .put(replace_handler::<Users>)
                .patch(patch_handler::<Users>)
                .delete(delete_handler::<Users>),
        )
        .route("/Groups", get(list_handler::<Groups>).post(create_handler::<Groups>))
        .route("/Groups/.search", post(search_handler::<Groups>))
        .route(
            "/Groups/{id}",
            get(get_handler::<Groups>)
                .put(replace_handler::<Groups>)
                .patch(patch_handler::<Groups>)
                .delete(delete_handler::<Groups>),
        )
        .route("/.search", post(resources::search_all))
        .route("/Bulk", post(bulk::bulk))
        .route("/Me", axum::routing::any(me))
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The SCIM endpoints as RFC 7644 spells them. Clients are matched case-insensitively and
/// with a trailing slash (`/users`, `/Users/?filter=`), as common servers do.
const ENDPOINTS: [&str; 8] =
    ["Users", "Groups", "Bulk", "Me", "ServiceProviderConfig", "ResourceTypes", "Schemas", ".search"];

/// Rewrites `/scim/v2/{tenant}/users/…/` to the canonical `/scim/v2/{tenant}/Users/…`
/// before routing; `None` when the path needs no change.
pub fn canonical_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/scim/v2/")?;
    let (tenant, rest) = rest.split_once('/')?;
    let trimmed = rest.strip_suffix('/').unwrap_or(rest);
    let mut parts = trimmed.splitn(2, '/');
    let endpoint = parts.next().unwrap_or("");
    let tail = parts.next();
    let canonical = ENDPOINTS.iter().find(|e| e.eq_ignore_ascii_case(endpoint)).copied().unwrap_or(endpoint);
    // `.search` under a resource type is matched the same way.
    let tail = tail.map(|t| if t.eq_ignore_ascii_case(".search") { ".search" } else { t });
    let rebuilt = match tail {
        Some(tail) => format!("/scim/v2/{tenant}/{canonical}/{tail}"),
        None => format!("/scim/v2/{tenant}/{canonical}"),
    };
    (rebuilt != path && !trimmed.is_empty()).then_some(rebuilt)
}

async fn method_not_allowed() -> ScimError {
    ScimError::status(StatusCode::METHOD_NOT_ALLOWED, "this SCIM endpoint does not take that method")
}

async fn me(_caller: auth::ScimCaller) -> ScimError {
    ScimError::status(StatusCode::NOT_IMPLEMENTED, "/Me is not supported: idbridge is provisioned by directory clients")
}

async fn unknown_endpoint() -> ScimError {
    ScimError::not_found("no such SCIM endpoint")
}

/// A 200 response with the SCIM media type.
pub fn scim_json(body: Value) -> Response {
    scim_response(StatusCode::OK, body)
}

pub fn scim_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(error::SCIM_CONTENT_TYPE));
    response
}

#[cfg(test)]
mod path_tests {
    use super::canonical_path;

    #[test]
    fn endpoints_match_case_insensitively_and_with_a_trailing_slash() {
        assert_eq!(canonical_path("/scim/v2/acme/users").as_deref(), Some("/scim/v2/acme/Users"));
        assert_eq!(canonical_path("/scim/v2/acme/Users/").as_deref(), Some("/scim/v2/acme/Users"));
        assert_eq!(canonical_path("/scim/v2/acme/GROUPS/abc").as_deref(), Some("/scim/v2/acme/Groups/abc"));
        assert_eq!(canonical_path("/scim/v2/acme/users/.SEARCH").as_deref(), Some("/scim/v2/acme/Users/.search"));
        assert_eq!(canonical_path("/scim/v2/acme/Users"), None);
        assert_eq!(canonical_path("/scim/v2/acme/"), None);
        assert_eq!(canonical_path("/admin/v1/tenants"), None);
        // Multi-byte text is left alone, never cut.
        assert_eq!(canonical_path("/scim/v2/acme/ü"), None);
    }
}
