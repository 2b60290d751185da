//! SCIM errors (RFC 7644 §3.12): `schemas`, `status` as a string, `scimType`, `detail`.
//! Every `scimType` has one HTTP status, fixed in one table.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use idbridge_core::DomainError;
use serde_json::json;

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
    InvalidCursor,
    ExpiredCursor,
}

impl ScimType {
    /// The one table of scimType → (wire name, HTTP status).
    pub fn describe(self) -> (&'static str, StatusCode) {
        match self {
            Self::InvalidFilter => ("invalidFilter", StatusCode::BAD_REQUEST),
            Self::TooMany => ("tooMany", StatusCode::BAD_REQUEST),
            Self::Uniqueness => ("uniqueness", StatusCode::CONFLICT),
            Self::Mutability => ("mutability", StatusCode::BAD_REQUEST),
            Self::InvalidSyntax => ("invalidSyntax", StatusCode::BAD_REQUEST),
            Self::InvalidPath => ("invalidPath", StatusCode::BAD_REQUEST),
            Self::NoTarget => ("noTarget", StatusCode::BAD_REQUEST),
            Self::InvalidValue => ("invalidValue", StatusCode::BAD_REQUEST),
            Self::InvalidVers => ("invalidVers", StatusCode::BAD_REQUEST),
            Self::Sensitive => ("sensitive", StatusCode::FORBIDDEN),
            Self::InvalidCursor => ("invalidCursor", StatusCode::BAD_REQUEST),
            Self::ExpiredCursor => ("expiredCursor", StatusCode::BAD_REQUEST),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<ScimType>,
    pub detail: String,
}

impl ScimError {
    pub fn typed(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self { status: scim_type.describe().1, scim_type: Some(scim_type), detail: detail.into() }
    }

    pub fn status(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, scim_type: None, detail: detail.into() }
    }

    pub fn syntax(detail: impl Into<String>) -> Self {
        Self::typed(ScimType::InvalidSyntax, detail)
    }

    pub fn value(detail: impl Into<String>) -> Self {
        Self::typed(ScimType::InvalidValue, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::status(StatusCode::NOT_FOUND, detail)
    }

    /// The same answer for a missing, wrong, revoked or foreign token, or an unknown
    /// tenant: nothing about what exists leaks.
    pub fn unauthorized() -> Self {
        Self::status(StatusCode::UNAUTHORIZED, "a valid bearer token for this tenant is required")
    }
}

impl From<DomainError> for ScimError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Invalid { .. } => Self::value(error.to_string()),
            DomainError::NotFound { .. } => Self::not_found(error.to_string()),
            DomainError::AlreadyExists { kind, key } => {
                Self::typed(ScimType::Uniqueness, format!("a {kind} named {key:?} already exists"))
            }
            DomainError::VersionConflict { .. } => {
                Self::status(StatusCode::PRECONDITION_FAILED, "the resource was changed concurrently; read it again")
            }
            DomainError::Rejected(reason) => Self::status(StatusCode::CONFLICT, reason),
            DomainError::Forbidden(reason) => Self::status(StatusCode::FORBIDDEN, reason),
            DomainError::Storage(detail) => {
                tracing::error!(error = %detail, "storage failure in SCIM request");
                Self::status(StatusCode::SERVICE_UNAVAILABLE, "the service is temporarily unavailable")
            }
            DomainError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "not ready in SCIM request");
                Self::status(StatusCode::SERVICE_UNAVAILABLE, "the service is temporarily unavailable")
            }
            DomainError::Internal(detail) => {
                tracing::error!(error = %detail, "internal failure in SCIM request");
                Self::status(StatusCode::INTERNAL_SERVER_ERROR, "this request failed inside idbridge")
            }
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t.describe().0);
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_CONTENT_TYPE));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"SCIM\""));
        }
        response
    }
}

pub type ScimResult<T> = Result<T, ScimError>;
