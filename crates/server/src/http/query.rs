//! Query strings and path segments as the admin and Portal APIs read them: rejections in
//! the API's error format.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use idbridge_core::individual::{IndividualQuery, IndividualStatus};
use idbridge_core::tenant::TenantSlug;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiResult};

/// `Query` whose rejections use the admin error format.
pub struct AdminQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AdminQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}

pub(super) fn slug(raw: &str) -> ApiResult<TenantSlug> {
    TenantSlug::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A page of a tenant's individuals, as both APIs ask for it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IndividualParams {
    status: Option<String>,
    /// Login to continue after (keyset pagination; logins sort case-insensitively).
    after: Option<String>,
    /// Only the members of this portal group.
    group: Option<String>,
    limit: Option<u32>,
}

impl IndividualParams {
    pub(super) fn query(self) -> ApiResult<IndividualQuery> {
        if let Some(group) = &self.group {
            idbridge_core::scopes::check_group_name("groups", group)?;
        }
        Ok(IndividualQuery {
            status: self.status.as_deref().map(IndividualStatus::parse).transpose()?,
            after_login: self.after,
            in_groups: self.group.map(|g| [g].into()),
            limit: self.limit.unwrap_or(100).clamp(1, 1000),
        })
    }
}
