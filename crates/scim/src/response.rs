//! Responses with the SCIM media type.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// A 200 response with the SCIM media type.
pub fn scim_json(body: Value) -> Response {
    scim_response(StatusCode::OK, body)
}

pub fn scim_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::error::SCIM_CONTENT_TYPE));
    response
}
