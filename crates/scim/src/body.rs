//! SCIM request bodies: JSON of the SCIM or plain media type, refused when malformed or
//! when a string carries a NUL (which no store keeps faithfully).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::Value;

use crate::error::{ScimError, ScimResult};

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

pub(crate) fn contains_nul(value: &Value) -> bool {
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
