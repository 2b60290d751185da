//! The admin API's JSON error format, and the one place that maps domain errors onto
//! HTTP statuses.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use idbridge_core::DomainError;
use serde_json::json;

/// An error answered as `{"error": {"code": …, "message": …}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid operator bearer token is required")
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Invalid { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", error.to_string()),
            DomainError::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, "not_found", error.to_string()),
            DomainError::AlreadyExists { .. } => Self::new(StatusCode::CONFLICT, "already_exists", error.to_string()),
            DomainError::VersionConflict { .. } => {
                Self::new(StatusCode::CONFLICT, "version_conflict", error.to_string())
            }
            DomainError::Rejected(_) => Self::new(StatusCode::CONFLICT, "rejected", error.to_string()),
            DomainError::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "forbidden", error.to_string()),
            DomainError::Storage(detail) => {
                // The detail may name tables or hosts: log it, never send it.
                tracing::error!(error = %detail, "storage failure");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the database is unavailable; try again",
                )
            }
            DomainError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "not ready");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
            }
            DomainError::Internal(detail) => {
                // Like storage details, an internal failure's text is for the log.
                tracing::error!(error = %detail, "internal failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "idbridge failed on its side; the log names the cause by request id",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(json!({ "error": { "code": self.code, "message": self.message } }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure inside idbridge is not reported as the database's; neither detail is
    /// sent to the client, and "not ready yet" says so.
    #[test]
    fn internal_and_unavailable_are_not_storage() {
        let internal = ApiError::from(DomainError::Internal("planning task failed: panicked".into()));
        assert_eq!((internal.status, internal.code), (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"));
        assert!(!internal.message.contains("database") && !internal.message.contains("panicked"));
        let unavailable = ApiError::from(DomainError::Unavailable("the signing keys are still being generated".into()));
        assert_eq!((unavailable.status, unavailable.code), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
        assert!(unavailable.message.contains("signing keys"));
        let storage = ApiError::from(DomainError::Storage("no such table: tenants".into()));
        assert!(!storage.message.contains("tenants"));
    }
}
