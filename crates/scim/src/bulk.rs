//! `/Bulk` (RFC 7644 §3.7): operations in order, `bulkId` references resolved in paths
//! and data, `failOnErrors`, and the advertised `maxOperations` and `maxPayloadSize`.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::auth::ScimCaller;
use crate::error::{ERROR_SCHEMA, ScimError, ScimResult, ScimType};
use crate::filter::get_ci;
use crate::resources::{self, Outcome, ScimBody};
use std::sync::Arc;

use futures::FutureExt;

use crate::resource::Projection;
use idbridge_core::ports::CollectSourceChanges;

use crate::schema::ResourceKind;
use crate::{ScimState, scim_json};

pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

pub async fn bulk(
    caller: ScimCaller,
    State(state): State<ScimState>,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    let Value::Object(request) = body else { return Err(ScimError::syntax("a bulk request must be a JSON object")) };
    let operations = match get_ci(&request, "Operations") {
        Some(Value::Array(ops)) => ops,
        _ => return Err(ScimError::syntax("a bulk request needs an Operations list")),
    };
    if operations.len() > state.limits.bulk_max_operations {
        let mut error = ScimError::typed(
            ScimType::TooMany,
            format!("{} operations exceed maxOperations {}", operations.len(), state.limits.bulk_max_operations),
        );
        error.status = StatusCode::PAYLOAD_TOO_LARGE;
        return Err(error);
    }
    let fail_on_errors = match get_ci(&request, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64().filter(|n| *n > 0).ok_or_else(|| ScimError::value("failOnErrors must be a positive integer"))?,
        ),
        Some(_) => return Err(ScimError::value("failOnErrors must be a positive integer")),
    };
    // Operations report their changes to a collector; the whole request is then one change
    // set for reconciliation (and for the mass-deprovision guard).
    let collector = Arc::new(CollectSourceChanges::default());
    let notify_once = state.changes.clone();
    let mut state = state;
    state.changes = collector.clone();
    let mut resolved: HashMap<String, String> = HashMap::new();
    let mut results = Vec::with_capacity(operations.len());
    let mut errors = 0u64;
    for operation in operations {
        if fail_on_errors.is_some_and(|limit| errors >= limit) {
            break;
        }
        // A panic in one operation is that operation's 500, not the end of the request:
        // the client is told what every other operation did (and the changes they made
        // are still reconciled below).
        let ran = std::panic::AssertUnwindSafe(run_one(&state, &caller, operation, &mut resolved)).catch_unwind().await;
        let ran = ran.unwrap_or_else(|_| {
            tracing::error!(request_id = caller.ctx.request_id.as_deref().unwrap_or(""), "a bulk operation panicked");
            Err((
                Map::new(),
                ScimError::status(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "this operation failed inside idbridge",
                ),
            ))
        });
        let (entry, ok) = match ran {
            Ok(entry) => (entry, true),
            Err((mut entry, error)) => {
                let mut response = json!({ "schemas": [ERROR_SCHEMA], "status": error.status.as_u16().to_string(), "detail": error.detail });
                if let Some(t) = error.scim_type {
                    response["scimType"] = json!(t.describe().0);
                }
                entry.insert("status".into(), json!(error.status.as_u16().to_string()));
                entry.insert("response".into(), response);
                (entry, false)
            }
        };
        if !ok {
            errors += 1;
        }
        results.push(Value::Object(entry));
    }
    let mut changes = std::mem::take(&mut *collector.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    if !changes.is_empty() {
        changes.origin = format!("SCIM Bulk request ({} operations)", results.len());
        notify_once.scim_changed(&caller.tenant, changes, &caller.ctx).await;
    }
    Ok(scim_json(json!({ "schemas": [BULK_RESPONSE], "Operations": results })).into_response())
}

type Failure = (Map<String, Value>, ScimError);

async fn run_one(
    state: &ScimState,
    caller: &ScimCaller,
    operation: &Value,
    resolved: &mut HashMap<String, String>,
) -> Result<Map<String, Value>, Failure> {
    let mut entry = Map::new();
    let fail = |entry: &Map<String, Value>, e: ScimError| (entry.clone(), e);
    let Value::Object(op) = operation else {
        return Err(fail(&entry, ScimError::syntax("each bulk operation must be an object")));
    };
    let method = get_ci(op, "method").and_then(Value::as_str).unwrap_or("").to_ascii_uppercase();
    entry.insert("method".into(), json!(method));
    let bulk_id = get_ci(op, "bulkId").and_then(Value::as_str).map(str::to_owned);
    if let Some(id) = &bulk_id {
        entry.insert("bulkId".into(), json!(id));
    }
    let path = get_ci(op, "path").and_then(Value::as_str).unwrap_or("").to_owned();
    let path = substitute_path(&path, resolved).map_err(|e| fail(&entry, e))?;
    let version = get_ci(op, "version").and_then(Value::as_str).map(str::to_owned);
    let data = get_ci(op, "data").cloned().map(|d| substitute(d, resolved)).transpose().map_err(|e| fail(&entry, e))?;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let kind = match segments.first().copied() {
        Some("Users") => ResourceKind::User,
        Some("Groups") => ResourceKind::Group,
        _ => {
            return Err(fail(
                &entry,
                ScimError::typed(ScimType::InvalidPath, format!("bulk path {path:?} is not /Users or /Groups")),
            ));
        }
    };
    let id = segments.get(1).copied();
    let outcome: ScimResult<Outcome> = match (method.as_str(), id, segments.len()) {
        ("POST", None, 1) => {
            let Some(bulk_id) = &bulk_id else {
                return Err(fail(&entry, ScimError::value("POST operations need a bulkId")));
            };
            if resolved.contains_key(bulk_id) {
                return Err(fail(&entry, ScimError::value(format!("bulkId {bulk_id:?} is used twice"))));
            }
            let data = data.ok_or_else(|| ScimError::value("POST needs data"));
            match data {
                Ok(data) => resources::create(state, caller, kind, &data, &Projection::default()).await,
                Err(e) => Err(e),
            }
        }
        ("PUT", Some(id), 2) => match data {
            Some(data) => {
                resources::replace(state, caller, kind, id, &data, version.as_deref(), &Projection::default()).await
            }
            None => Err(ScimError::value("PUT needs data")),
        },
        ("PATCH", Some(id), 2) => match data {
            Some(data) => resources::patch(state, caller, kind, id, &data, version.as_deref(), None).await,
            None => Err(ScimError::value("PATCH needs data")),
        },
        ("DELETE", Some(id), 2) => resources::delete(state, caller, kind, id, version.as_deref()).await,
        _ => Err(ScimError::value(format!("unsupported bulk operation {method} {path}"))),
    };
    let outcome = outcome.map_err(|e| fail(&entry, e))?;
    if let Some(location) = &outcome.location {
        entry.insert("location".into(), json!(location));
        if let (Some(bulk_id), Some(id)) = (&bulk_id, location.rsplit('/').next()) {
            resolved.insert(bulk_id.clone(), id.to_owned());
        }
    } else if let Some(id) = id {
        entry.insert("location".into(), json!(format!("{}/{}/{id}", state.base_url(&caller.tenant), kind.endpoint())));
    }
    if let Some(v) = outcome.version {
        entry.insert("version".into(), json!(resources::etag(v)));
    }
    entry.insert("status".into(), json!(outcome.status.as_u16().to_string()));
    Ok(entry)
}

fn unresolved(reference: &str) -> ScimError {
    let mut e =
        ScimError::typed(ScimType::InvalidValue, format!("{reference} does not name an earlier successful POST"));
    e.status = StatusCode::CONFLICT;
    e
}

fn substitute_path(path: &str, resolved: &HashMap<String, String>) -> ScimResult<String> {
    match path.split_once("bulkId:") {
        None => Ok(path.to_owned()),
        Some((before, id)) => {
            let real = resolved.get(id).ok_or_else(|| unresolved(&format!("bulkId:{id}")))?;
            Ok(format!("{before}{real}"))
        }
    }
}

/// Replaces every string `bulkId:x` in `data` by the id created for `x`.
fn substitute(data: Value, resolved: &HashMap<String, String>) -> ScimResult<Value> {
    Ok(match data {
        Value::String(s) => match s.strip_prefix("bulkId:") {
            Some(id) => Value::String(resolved.get(id).cloned().ok_or_else(|| unresolved(&s))?),
            None => Value::String(s),
        },
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| substitute(v, resolved)).collect::<ScimResult<_>>()?)
        }
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| Ok((k, substitute(v, resolved)?))).collect::<ScimResult<_>>()?)
        }
        other => other,
    })
}
