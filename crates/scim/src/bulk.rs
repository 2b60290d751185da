//! `/Bulk` (RFC 7644 §3.7): operations run in order, except that an operation waits for
//! the POSTs whose `bulkId` it references (forward references), and a cycle of new groups
//! that contain each other is broken by creating one without those members and adding
//! them once the others exist (§3.7.1: the service provider MUST try). Also
//! `failOnErrors`, and the advertised `maxOperations` and `maxPayloadSize`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use idbridge_core::ports::CollectSourceChanges;
use serde_json::{Map, Value, json};

use crate::auth::ScimCaller;
use crate::body::ScimBody;
use crate::error::{ERROR_SCHEMA, ScimError, ScimResult, ScimType};
use crate::filter::get_ci;
use crate::patch::PATCH_SCHEMA;
use crate::render::{Outcome, etag};
use crate::resource::Projection;
use crate::resources;
use crate::response::scim_json;
use crate::schema::ResourceKind;
use crate::state::ScimState;

pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

const REFERENCE: &str = "bulkId:";

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
    let mut job = Job::new(operations, fail_on_errors);
    job.run(&state, &caller).await;
    let mut changes = std::mem::take(&mut *collector.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let results: Vec<Value> = job.results.into_iter().flatten().map(Value::Object).collect();
    if !changes.is_empty() {
        changes.origin = format!("SCIM Bulk request ({} operations)", results.len());
        notify_once.scim_changed(&caller.tenant, changes, &caller.ctx).await;
    }
    Ok(scim_json(json!({ "schemas": [BULK_RESPONSE], "Operations": results })).into_response())
}

/// One operation as the client sent it, with the bulkIds it references.
struct Operation<'a> {
    body: &'a Value,
    method: String,
    bulk_id: Option<String>,
    refs: BTreeSet<String>,
}

/// Members held back from a new group to break a cycle, added once their POSTs ran.
struct Deferred {
    /// The group's operation (its result entry is updated).
    index: usize,
    group_id: String,
    members: Vec<Value>,
    refs: BTreeSet<String>,
}

struct Job<'a> {
    operations: Vec<Operation<'a>>,
    /// Results in the request's order; `None` for operations never run (failOnErrors).
    results: Vec<Option<Map<String, Value>>>,
    /// bulkId → index of the first POST that declares it.
    declared: HashMap<String, usize>,
    resolved: HashMap<String, String>,
    failed: HashSet<String>,
    deferred: Vec<Deferred>,
    fail_on_errors: Option<u64>,
    errors: u64,
}

impl<'a> Job<'a> {
    fn new(operations: &'a [Value], fail_on_errors: Option<u64>) -> Self {
        let mut declared = HashMap::new();
        let operations: Vec<Operation<'a>> = operations
            .iter()
            .enumerate()
            .map(|(index, body)| {
                let field = |name| body.as_object().and_then(|o| get_ci(o, name));
                let method = field("method").and_then(Value::as_str).unwrap_or("").to_ascii_uppercase();
                let bulk_id = field("bulkId").and_then(Value::as_str).map(str::to_owned);
                let mut refs = BTreeSet::new();
                if let Some((_, id)) = field("path").and_then(Value::as_str).and_then(|p| p.split_once(REFERENCE)) {
                    refs.insert(id.to_owned());
                }
                if let Some(data) = field("data") {
                    collect_references(data, &mut refs);
                }
                if let (Some(id), "POST") = (&bulk_id, method.as_str()) {
                    declared.entry(id.clone()).or_insert(index);
                }
                Operation { body, method, bulk_id, refs }
            })
            .collect();
        Self {
            results: vec![None; operations.len()],
            operations,
            declared,
            resolved: HashMap::new(),
            failed: HashSet::new(),
            deferred: Vec::new(),
            fail_on_errors,
            errors: 0,
        }
    }

    fn stopped(&self) -> bool {
        self.fail_on_errors.is_some_and(|limit| self.errors >= limit)
    }

    /// Runs every operation whose references are resolved, in request order, pass after
    /// pass; when a pass makes no progress, breaks a cycle or fails what is left.
    async fn run(&mut self, state: &ScimState, caller: &ScimCaller) {
        let mut pending: Vec<usize> = (0..self.operations.len()).collect();
        while !pending.is_empty() && !self.stopped() {
            let mut waiting = Vec::new();
            let mut progressed = false;
            for index in pending {
                if self.stopped() {
                    break;
                }
                let op = &self.operations[index];
                let blocked = op.refs.iter().find(|r| !self.resolved.contains_key(*r)).cloned();
                match blocked {
                    None => {
                        self.execute(state, caller, index, None).await;
                        progressed = true;
                    }
                    Some(r) if self.failed.contains(&r) || !self.can_resolve(&r, index) => {
                        let why = if self.failed.contains(&r) {
                            format!("{REFERENCE}{r}: the POST that creates it failed")
                        } else {
                            format!("{REFERENCE}{r} does not name a POST in this request")
                        };
                        self.record_failure(index, unresolved(why));
                        progressed = true;
                    }
                    Some(_) => waiting.push(index),
                }
                progressed |= self.run_deferred(state, caller).await;
            }
            pending = waiting;
            if pending.is_empty() || progressed || self.stopped() {
                continue;
            }
            // No operation can run: the references form a cycle. Break it at the first new
            // group whose unresolved references are all member values.
            match pending.iter().position(|&i| self.breakable(i)) {
                Some(at) => {
                    let index = pending.remove(at);
                    let op = &self.operations[index];
                    let held: BTreeSet<String> =
                        op.refs.iter().filter(|r| !self.resolved.contains_key(*r)).cloned().collect();
                    self.execute(state, caller, index, Some(held)).await;
                }
                None => {
                    for index in std::mem::take(&mut pending) {
                        if self.stopped() {
                            break;
                        }
                        self.record_failure(
                            index,
                            unresolved("its bulkId references form a cycle that idbridge cannot break".into()),
                        );
                    }
                }
            }
        }
    }

    /// A reference can still resolve when a POST declares it and has not been given up on.
    fn can_resolve(&self, reference: &str, referrer: usize) -> bool {
        self.declared.get(reference).is_some_and(|&declarer| declarer != referrer)
    }

    /// A POST of a group whose every unresolved reference is inside `members[].value`.
    fn breakable(&self, index: usize) -> bool {
        let op = &self.operations[index];
        let Some(body) = op.body.as_object() else { return false };
        let is_group_post = op.method == "POST"
            && get_ci(body, "path").and_then(Value::as_str).is_some_and(|p| p.trim_matches('/') == "Groups");
        if !is_group_post {
            return false;
        }
        let Some(data) = get_ci(body, "data").and_then(Value::as_object) else { return false };
        let mut outside = BTreeSet::new();
        for (key, value) in data {
            if !key.eq_ignore_ascii_case("members") {
                collect_references(value, &mut outside);
            }
        }
        outside.iter().all(|r| self.resolved.contains_key(r))
    }

    /// Runs the deferred member additions whose references are now resolved (or failed).
    async fn run_deferred(&mut self, state: &ScimState, caller: &ScimCaller) -> bool {
        let mut ran = false;
        let mut i = 0;
        while i < self.deferred.len() {
            let ready = self.deferred[i].refs.iter().all(|r| self.resolved.contains_key(r) || self.failed.contains(r));
            if !ready {
                i += 1;
                continue;
            }
            let deferred = self.deferred.swap_remove(i);
            ran = true;
            if let Some(r) = deferred.refs.iter().find(|r| self.failed.contains(*r)) {
                self.amend_failure(
                    deferred.index,
                    unresolved(format!("created, but member {REFERENCE}{r} was not: the POST that creates it failed")),
                );
                continue;
            }
            let members = match substitute(Value::Array(deferred.members), &self.resolved) {
                Ok(members) => members,
                Err(e) => {
                    self.amend_failure(deferred.index, e);
                    continue;
                }
            };
            let patch = json!({ "schemas": [PATCH_SCHEMA], "Operations": [{ "op": "add", "path": "members", "value": members }] });
            let outcome = std::panic::AssertUnwindSafe(resources::patch(
                state,
                caller,
                ResourceKind::Group,
                &deferred.group_id,
                &patch,
                None,
                None,
            ))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(panicked(caller)));
            match outcome {
                Ok(outcome) => {
                    if let (Some(entry), Some(v)) = (self.results[deferred.index].as_mut(), outcome.version) {
                        entry.insert("version".into(), json!(etag(v)));
                    }
                }
                Err(e) => self.amend_failure(deferred.index, e),
            }
        }
        ran
    }

    /// Runs one operation; `hold` names the references whose members are left out for now.
    async fn execute(&mut self, state: &ScimState, caller: &ScimCaller, index: usize, hold: Option<BTreeSet<String>>) {
        let (entry, call, held) = match prepare(&self.operations[index], &self.resolved, hold.as_ref()) {
            Ok(prepared) => prepared,
            Err((entry, error)) => {
                self.store_failure(index, entry, error);
                return;
            }
        };
        // A panic in one operation is that operation's 500, not the end of the request: the
        // client is told what every other operation did (and the changes they made are
        // still reconciled).
        let outcome = std::panic::AssertUnwindSafe(call.run(state, caller))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(panicked(caller)));
        let op = &self.operations[index];
        match outcome {
            Ok(outcome) => {
                let mut entry = entry;
                let location = outcome.location.clone().or_else(|| call_location(state, caller, op));
                if let Some(location) = &location {
                    entry.insert("location".into(), json!(location));
                }
                if let (Some(bulk_id), "POST", Some(id)) =
                    (&op.bulk_id, op.method.as_str(), outcome.location.as_deref().and_then(|l| l.rsplit('/').next()))
                {
                    if !held.is_empty() {
                        self.deferred.push(Deferred {
                            index,
                            group_id: id.to_owned(),
                            refs: hold.unwrap_or_default(),
                            members: held,
                        });
                    }
                    self.resolved.insert(bulk_id.clone(), id.to_owned());
                }
                if let Some(v) = outcome.version {
                    entry.insert("version".into(), json!(etag(v)));
                }
                entry.insert("status".into(), json!(outcome.status.as_u16().to_string()));
                self.results[index] = Some(entry);
            }
            Err(error) => self.store_failure(index, entry, error),
        }
    }

    fn record_failure(&mut self, index: usize, error: ScimError) {
        let entry = base_entry(&self.operations[index]);
        self.store_failure(index, entry, error);
    }

    fn store_failure(&mut self, index: usize, mut entry: Map<String, Value>, error: ScimError) {
        let op = &self.operations[index];
        if let (Some(id), "POST") = (&op.bulk_id, op.method.as_str())
            && self.declared.get(id) == Some(&index)
        {
            self.failed.insert(id.clone());
        }
        insert_error(&mut entry, &error);
        self.results[index] = Some(entry);
        self.errors += 1;
    }

    /// A created group whose held-back members could not be added: the entry keeps its
    /// location (the group exists) and reports the error.
    fn amend_failure(&mut self, index: usize, error: ScimError) {
        let mut entry = self.results[index].take().unwrap_or_else(|| base_entry(&self.operations[index]));
        insert_error(&mut entry, &error);
        self.results[index] = Some(entry);
        self.errors += 1;
    }
}

fn panicked(caller: &ScimCaller) -> ScimError {
    tracing::error!(request_id = caller.ctx.request_id.as_deref().unwrap_or(""), "a bulk operation panicked");
    ScimError::status(StatusCode::INTERNAL_SERVER_ERROR, "this operation failed inside idbridge")
}

fn insert_error(entry: &mut Map<String, Value>, error: &ScimError) {
    let mut response =
        json!({ "schemas": [ERROR_SCHEMA], "status": error.status.as_u16().to_string(), "detail": error.detail });
    if let Some(t) = error.scim_type {
        response["scimType"] = json!(t.describe().0);
    }
    entry.insert("status".into(), json!(error.status.as_u16().to_string()));
    entry.insert("response".into(), response);
}

fn base_entry(op: &Operation<'_>) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert("method".into(), json!(op.method));
    if let Some(id) = &op.bulk_id {
        entry.insert("bulkId".into(), json!(id));
    }
    entry
}

fn call_location(state: &ScimState, caller: &ScimCaller, op: &Operation<'_>) -> Option<String> {
    let path = op.body.as_object().and_then(|o| get_ci(o, "path")).and_then(Value::as_str)?;
    let mut segments = path.trim_matches('/').split('/');
    let kind = match segments.next()? {
        "Users" => ResourceKind::User,
        "Groups" => ResourceKind::Group,
        _ => return None,
    };
    let id = segments.next()?;
    Some(format!("{}/{}/{id}", state.base_url(&caller.tenant), kind.endpoint()))
}

/// What an operation will call, with references substituted.
enum Call {
    Create(ResourceKind, Value),
    Replace(ResourceKind, String, Value, Option<String>),
    Patch(ResourceKind, String, Value, Option<String>),
    Delete(ResourceKind, String, Option<String>),
}

impl Call {
    async fn run(self, state: &ScimState, caller: &ScimCaller) -> ScimResult<Outcome> {
        let all = Projection::default();
        match self {
            Self::Create(kind, data) => resources::create(state, caller, kind, &data, &all).await,
            Self::Replace(kind, id, data, version) => {
                resources::replace(state, caller, kind, &id, &data, version.as_deref(), &all).await
            }
            Self::Patch(kind, id, data, version) => {
                resources::patch(state, caller, kind, &id, &data, version.as_deref(), None).await
            }
            Self::Delete(kind, id, version) => resources::delete(state, caller, kind, &id, version.as_deref()).await,
        }
    }
}

type Failure = (Map<String, Value>, ScimError);

/// The operation's result entry so far, the call, and members held back for later.
type Prepared = (Map<String, Value>, Call, Vec<Value>);

/// Validates one operation and substitutes its references. `hold`: references whose
/// `members` entries are taken out of a group POST (returned, to be added later).
fn prepare(
    op: &Operation<'_>,
    resolved: &HashMap<String, String>,
    hold: Option<&BTreeSet<String>>,
) -> Result<Prepared, Failure> {
    let entry = base_entry(op);
    let fail = |e: ScimError| (entry.clone(), e);
    let Value::Object(body) = op.body else {
        return Err(fail(ScimError::syntax("each bulk operation must be an object")));
    };
    let path = get_ci(body, "path").and_then(Value::as_str).unwrap_or("");
    let path = substitute_path(path, resolved).map_err(fail)?;
    let version = get_ci(body, "version").and_then(Value::as_str).map(str::to_owned);
    let mut held = Vec::new();
    let data = match get_ci(body, "data").cloned() {
        Some(Value::Object(mut data)) if hold.is_some() => {
            let hold = hold.unwrap_or_else(|| unreachable!("checked by the guard"));
            if let Some(Value::Array(members)) =
                data.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case("members")).map(|(_, v)| v)
            {
                let (later, now): (Vec<Value>, Vec<Value>) = std::mem::take(members).into_iter().partition(|m| {
                    let mut refs = BTreeSet::new();
                    collect_references(m, &mut refs);
                    refs.iter().any(|r| hold.contains(r))
                });
                *members = now;
                held = later;
            }
            Some(Value::Object(data))
        }
        other => other,
    };
    let data = data.map(|d| substitute(d, resolved)).transpose().map_err(fail)?;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let kind = match segments.first().copied() {
        Some("Users") => ResourceKind::User,
        Some("Groups") => ResourceKind::Group,
        _ => {
            return Err(fail(ScimError::typed(
                ScimType::InvalidPath,
                format!("bulk path {path:?} is not /Users or /Groups"),
            )));
        }
    };
    let id = segments.get(1).map(|s| (*s).to_owned());
    let call = match (op.method.as_str(), id, segments.len()) {
        ("POST", None, 1) => {
            if op.bulk_id.is_none() {
                return Err(fail(ScimError::value("POST operations need a bulkId")));
            }
            Call::Create(kind, data.ok_or_else(|| fail(ScimError::value("POST needs data")))?)
        }
        ("PUT", Some(id), 2) => {
            Call::Replace(kind, id, data.ok_or_else(|| fail(ScimError::value("PUT needs data")))?, version)
        }
        ("PATCH", Some(id), 2) => {
            Call::Patch(kind, id, data.ok_or_else(|| fail(ScimError::value("PATCH needs data")))?, version)
        }
        ("DELETE", Some(id), 2) => Call::Delete(kind, id, version),
        _ => return Err(fail(ScimError::value(format!("unsupported bulk operation {} {path}", op.method)))),
    };
    Ok((entry, call, held))
}

/// A reference that cannot be resolved: 409 without a scimType, as RFC 7644 §3.7.1 says
/// (`invalidValue` belongs to 400).
fn unresolved(detail: String) -> ScimError {
    ScimError::status(StatusCode::CONFLICT, detail)
}

fn collect_references(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix(REFERENCE) {
                out.insert(id.to_owned());
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        Value::Object(o) => o.values().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

fn substitute_path(path: &str, resolved: &HashMap<String, String>) -> ScimResult<String> {
    match path.split_once(REFERENCE) {
        None => Ok(path.to_owned()),
        Some((before, id)) => {
            let real = resolved
                .get(id)
                .ok_or_else(|| unresolved(format!("{REFERENCE}{id} does not name an earlier successful POST")))?;
            Ok(format!("{before}{real}"))
        }
    }
}

/// Replaces every string `bulkId:x` in `data` by the id created for `x`.
fn substitute(data: Value, resolved: &HashMap<String, String>) -> ScimResult<Value> {
    Ok(match data {
        Value::String(s) => match s.strip_prefix(REFERENCE) {
            Some(id) => Value::String(
                resolved
                    .get(id)
                    .cloned()
                    .ok_or_else(|| unresolved(format!("{s} does not name an earlier successful POST")))?,
            ),
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
