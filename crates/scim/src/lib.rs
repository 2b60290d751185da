//! SCIM 2.0 service provider (RFC 7643, 7644, 9865 cursors) for Users and Groups, per
//! tenant at `/scim/v2/{tenant}/…`, built for what Microsoft Entra ID and Okta really send.
//!
//! Schemas are data (`schema`); resources are JSON normalised against them (`resource`);
//! filters (`filter`) and PATCH (`patch`) work on that JSON. The crate stores SCIM source
//! records through core's `ScimRecordStore`; it never writes individuals — what a person
//! becomes in the portal is the reconciliation service's decision.

pub mod auth;
pub mod auth_cache;
mod body;
mod bulk;
mod discovery;
pub mod error;
pub mod filter;
mod handlers;
mod list;
pub mod patch;
mod render;
pub mod resource;
mod resources;
pub mod response;
pub mod schema;
pub mod state;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};

pub use error::{ScimError, ScimResult};
use handlers::{
    Groups, Users, create_handler, delete_handler, get_handler, list_handler, patch_handler, replace_handler,
    search_handler,
};
pub use response::{LIST_RESPONSE, scim_json, scim_response};
pub use state::{ScimLimits, ScimState};

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
        .route("/.search", post(handlers::search_all))
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
