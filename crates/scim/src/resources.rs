//! Users and Groups written: create, replace (with `If-Match` and retry on a concurrent
//! change), patch, delete — each one store write with its audit record, then the
//! reconciliation of the people it affects. `handlers` and `bulk` call these; reading
//! back is `render`.

use axum::http::StatusCode;
use idbridge_core::audit::AuditRecord;
use idbridge_core::ports::{ScimChanges, ScimWritten};
use idbridge_core::source_record::{MemberChange, ScimRecord, ScimWrite};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::auth::ScimCaller;
use crate::error::{ScimError, ScimResult};
use crate::patch::{self, Compat, MemberOp};
use crate::render::*;
use crate::resource::{self, Projection};
use crate::schema::ResourceKind;
use crate::state::ScimState;

fn check_if_match(if_match: Option<&str>, record: &ScimRecord) -> ScimResult<()> {
    match if_match {
        Some(h) if !etag_matches(h, record.version) => Err(ScimError::status(
            StatusCode::PRECONDITION_FAILED,
            format!("If-Match does not match the current version {}", etag(record.version)),
        )),
        _ => Ok(()),
    }
}

fn member_changes(ops: Vec<MemberOp>) -> ScimResult<Vec<MemberChange>> {
    let ids = |ids: Vec<String>| {
        ids.into_iter()
            .map(|id| {
                id.parse::<Uuid>()
                    .map_err(|_| ScimError::value(format!("member {id:?} is not a user or group of this tenant")))
            })
            .collect::<ScimResult<Vec<_>>>()
    };
    ops.into_iter()
        .map(|op| {
            Ok(match op {
                MemberOp::Add(list) => MemberChange::Add(ids(list)?),
                // Removing an id that cannot exist is a no-op, like removing a non-member.
                MemberOp::Remove(list) => {
                    MemberChange::Remove(list.into_iter().filter_map(|id| id.parse().ok()).collect())
                }
                MemberOp::RemoveAll => MemberChange::RemoveAll,
            })
        })
        .collect()
}

fn name_of(kind: ResourceKind, body: &Map<String, Value>) -> String {
    let key = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    body.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn external_id(body: &Map<String, Value>) -> Option<String> {
    body.get("externalId").and_then(Value::as_str).map(str::to_owned)
}

fn audit(
    caller: &ScimCaller,
    kind: ResourceKind,
    id: Uuid,
    action: &'static str,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditRecord {
    let subject = match kind {
        ResourceKind::User => "scim_user",
        ResourceKind::Group => "scim_group",
    };
    caller.ctx.record(Some(caller.tenant.id), subject, id.to_string(), action, before, after)
}

fn compat(caller: &ScimCaller) -> Compat {
    Compat { create_missing_filtered_value: caller.tenant.policy.scim_create_missing_filtered_value }
}

pub(crate) async fn create(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    input: &Value,
    projection: &Projection,
) -> ScimResult<Outcome> {
    let normalized = resource::normalize(&state.schemas, kind, input)?;
    let now = idbridge_core::clock::now();
    let id = Uuid::new_v4();
    let members = match normalized.members {
        Some(ids) if !ids.is_empty() => member_changes(vec![MemberOp::Add(ids)])?,
        _ => vec![],
    };
    let body = Value::Object(normalized.body.clone());
    let record = ScimRecord {
        tenant_id: caller.tenant.id,
        kind: store_kind(kind),
        id,
        external_id: external_id(&normalized.body),
        name: name_of(kind, &normalized.body),
        data: body.clone(),
        version: 1,
        created_at: now,
        updated_at: now,
        seq: 0,
    };
    let action = match kind {
        ResourceKind::User => "scim_user.created",
        ResourceKind::Group => "scim_group.created",
    };
    let write = ScimWrite {
        record,
        expected_version: None,
        body_changed: true,
        members,
        change: caller.change,
        audit: audit(caller, kind, id, action, None, Some(body)),
    };
    let ScimWritten { record: stored, owed } = state.records.write_scim(&write).await?;
    notify(state, caller, ScimChanges::owed(format!("SCIM POST {}", kind.endpoint()), owed)).await;
    // A user created a moment ago belongs to no group yet.
    let rendered = render_with_groups(state, caller, kind, &stored, projection, Some(vec![])).await?;
    Ok(Outcome {
        status: StatusCode::CREATED,
        location: Some(format!("{}/{}/{}", state.base_url(&caller.tenant), kind.endpoint(), stored.id)),
        version: Some(stored.version),
        body: Some(rendered),
    })
}

pub(crate) async fn replace(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    id: &str,
    input: &Value,
    if_match: Option<&str>,
    projection: &Projection,
) -> ScimResult<Outcome> {
    retry_unconditional(if_match, || replace_once(state, caller, kind, id, input, if_match, projection)).await
}

/// Without If-Match the client asked for "apply to whatever is current" (Entra and Okta
/// never send one): a concurrent change is not its conflict, so the write is made again
/// against the fresh resource — PATCH re-applied, PUT re-written — with a short jittered
/// pause, until it lands. A 412 is only ever the answer to a failed If-Match.
async fn retry_unconditional<F, Fut>(if_match: Option<&str>, mut attempt: F) -> ScimResult<Outcome>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ScimResult<Outcome>>,
{
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match attempt().await {
            Err(e) if e.status == StatusCode::PRECONDITION_FAILED && if_match.is_none() && attempts < 64 => {
                let jitter = u64::from(
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
                        % 4,
                );
                tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempts.min(8)) + jitter)).await;
            }
            other => return other,
        }
    }
}

async fn replace_once(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    id: &str,
    input: &Value,
    if_match: Option<&str>,
    projection: &Projection,
) -> ScimResult<Outcome> {
    let current = load(state, caller, kind, id).await?;
    check_if_match(if_match, &current)?;
    let mut normalized = resource::normalize(&state.schemas, kind, input)?;
    if kind == ResourceKind::User && !normalized.body.contains_key("active") {
        // Okta's PUT leaves out `active` when it means "unchanged", not "inactive".
        if let Some(active) = current.data.get("active") {
            normalized.body.insert("active".into(), active.clone());
        }
    }
    let members = match normalized.members {
        // A PUT without `members` leaves them as they are.
        None => vec![],
        Some(ids) => member_changes(vec![MemberOp::RemoveAll, MemberOp::Add(ids)])?,
    };
    let body = Value::Object(normalized.body.clone());
    let action = match kind {
        ResourceKind::User => "scim_user.replaced",
        ResourceKind::Group => "scim_group.replaced",
    };
    let record = ScimRecord {
        external_id: external_id(&normalized.body),
        name: name_of(kind, &normalized.body),
        data: body.clone(),
        ..current.clone()
    };
    let write = ScimWrite {
        record,
        expected_version: Some(current.version),
        body_changed: true,
        members,
        change: caller.change,
        audit: audit(caller, kind, current.id, action, Some(current.data.clone()), Some(body)),
    };
    let ScimWritten { record: stored, owed } = state.records.write_scim(&write).await?;
    notify(state, caller, ScimChanges::owed(format!("SCIM PUT {}", kind.endpoint()), owed)).await;
    let rendered = render(state, caller, kind, &stored, projection).await?;
    Ok(Outcome { status: StatusCode::OK, version: Some(stored.version), location: None, body: Some(rendered) })
}

pub(crate) async fn patch(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    id: &str,
    input: &Value,
    if_match: Option<&str>,
    projection: Option<Projection>,
) -> ScimResult<Outcome> {
    let operations = patch::parse(input)?;
    retry_unconditional(if_match, || patch_once(state, caller, kind, id, &operations, if_match, projection.clone()))
        .await
}

async fn patch_once(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    id: &str,
    operations: &[patch::Operation],
    if_match: Option<&str>,
    projection: Option<Projection>,
) -> ScimResult<Outcome> {
    let current = load(state, caller, kind, id).await?;
    check_if_match(if_match, &current)?;
    let Value::Object(body) = current.data.clone() else {
        return Err(ScimError::status(StatusCode::INTERNAL_SERVER_ERROR, "stored resource is not an object"));
    };
    let outcome = patch::apply(&state.schemas, kind, body, operations, compat(caller))?;
    let members = member_changes(outcome.members)?;
    if !outcome.body_changed && members.is_empty() {
        // Nothing to change: answer like a successful PATCH without writing or auditing.
        return finish_patch(state, caller, kind, &current, projection).await;
    }
    let body = Value::Object(outcome.body.clone());
    let action = match kind {
        ResourceKind::User => "scim_user.patched",
        ResourceKind::Group => "scim_group.patched",
    };
    let after = if outcome.body_changed { Some(body.clone()) } else { None };
    let member_summary = (!members.is_empty()).then(|| json!({ "members": format!("{members:?}") }));
    let record = ScimRecord {
        external_id: external_id(&outcome.body),
        name: name_of(kind, &outcome.body),
        data: body,
        ..current.clone()
    };
    let write = ScimWrite {
        record,
        expected_version: Some(current.version),
        body_changed: outcome.body_changed,
        members,
        change: caller.change,
        audit: audit(
            caller,
            kind,
            current.id,
            action,
            outcome.body_changed.then(|| current.data.clone()),
            after.or(member_summary),
        ),
    };
    // The store records, with the write, whom it affects: a renamed group, or one whose
    // members were all replaced, every member; a member added or removed, that member.
    let ScimWritten { record: stored, owed } = state.records.write_scim(&write).await?;
    notify(state, caller, ScimChanges::owed(format!("SCIM PATCH {}", kind.endpoint()), owed)).await;
    finish_patch(state, caller, kind, &stored, projection).await
}

/// Groups answer 204 unless the client asked for attributes (a 100,000-member group is
/// never serialised for nothing); users answer with the resource.
async fn finish_patch(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    record: &ScimRecord,
    projection: Option<Projection>,
) -> ScimResult<Outcome> {
    match (kind, projection) {
        (ResourceKind::Group, None) => {
            Ok(Outcome { status: StatusCode::NO_CONTENT, body: None, version: Some(record.version), location: None })
        }
        (_, projection) => {
            let body = render(state, caller, kind, record, &projection.unwrap_or_default()).await?;
            Ok(Outcome { status: StatusCode::OK, body: Some(body), version: Some(record.version), location: None })
        }
    }
}

pub(crate) async fn delete(
    state: &ScimState,
    caller: &ScimCaller,
    kind: ResourceKind,
    id: &str,
    if_match: Option<&str>,
) -> ScimResult<Outcome> {
    let current = load(state, caller, kind, id).await?;
    check_if_match(if_match, &current)?;
    let action = match kind {
        ResourceKind::User => "scim_user.deleted",
        ResourceKind::Group => "scim_group.deleted",
    };
    let record = audit(caller, kind, current.id, action, Some(current.data.clone()), None);
    let Some(owed) =
        state.records.delete_scim(caller.tenant.id, store_kind(kind), current.id, caller.change, &record).await?
    else {
        return Err(ScimError::not_found(format!("{} {id:?} not found", kind.as_str())));
    };
    // A deleted user is in `owed.users` like a changed one: reconciliation finds no record
    // and deprovisions.
    notify(state, caller, ScimChanges::owed(format!("SCIM DELETE {}", kind.endpoint()), owed)).await;
    Ok(Outcome { status: StatusCode::NO_CONTENT, body: None, version: None, location: None })
}

pub(crate) async fn notify(state: &ScimState, caller: &ScimCaller, changes: ScimChanges) {
    if !changes.is_empty() {
        state.changes.scim_changed(&caller.tenant, changes, &caller.ctx).await;
    }
}
