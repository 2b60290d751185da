//! The Portal API, `/portal/v1`: what a portal back-end reads about a tenant's
//! individuals — effective permissions, access-profile flags, scopes, status and validity
//! — and a feed of changes since a cursor. Authorised by portal service tokens.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use idbridge_core::individual::{IndividualQuery, IndividualStatus};
use idbridge_core::tenant::TenantSlug;
use serde::Deserialize;
use serde_json::json;

use super::admin::AdminQuery;
use super::{ApiError, ApiResult, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tenants/{slug}/individuals", get(list))
        .route("/tenants/{slug}/individuals/{id}", get(show))
        .route("/tenants/{slug}/changes", get(changes))
}

/// A portal back-end holding a service token.
pub struct PortalCaller;

impl FromRequestParts<AppState> for PortalCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        super::bearer_match(&parts.headers, &state.portal_token_hashes).map(|_| Self).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid portal service token is required",
            )
        })
    }
}

fn slug(raw: &str) -> ApiResult<TenantSlug> {
    TenantSlug::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    status: Option<String>,
    /// Login to continue after (keyset pagination; logins sort case-insensitively).
    after: Option<String>,
    limit: Option<u32>,
}

async fn list(
    _: PortalCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    AdminQuery(p): AdminQuery<ListParams>,
) -> ApiResult<Response> {
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let query = IndividualQuery {
        status: p.status.as_deref().map(IndividualStatus::parse).transpose()?,
        after_login: p.after,
        limit,
    };
    let individuals = state.operator.individuals(&slug(&raw)?, &query).await?;
    let next = (individuals.len() == limit as usize).then(|| individuals.last().map(|i| i.login.clone())).flatten();
    let items = state.operator.portal_individuals(individuals).await?;
    Ok(Json(json!({ "individuals": items, "next_after": next })).into_response())
}

async fn show(
    _: PortalCaller,
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let individual = state.operator.individual(&slug(&raw)?, &id).await?;
    let mut items = state.operator.portal_individuals(vec![individual]).await?;
    Ok(Json(items.remove(0)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeParams {
    /// The `next` of the previous page; 0 (or absent) from the beginning.
    after: Option<i64>,
    limit: Option<u32>,
}

/// Change events in order; a portal stores `next` and asks again from there.
async fn changes(
    _: PortalCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    AdminQuery(p): AdminQuery<ChangeParams>,
) -> ApiResult<Response> {
    let tenant = state.operator.tenant(&slug(&raw)?).await?;
    let after = p.after.unwrap_or(0).max(0);
    let store = state.operator.store();
    let mut events = store.list_change_events(tenant.id, after, p.limit.unwrap_or(100).clamp(1, 1000)).await?;
    // Nothing past a young hole in the outbox positions: an event another instance has not
    // committed yet would otherwise be behind the cursor for good (see `delivery::settled`).
    let global = store.list_all_change_events(after, 1000).await?;
    let ready = crate::delivery::settled(after, &global, jiff::Timestamp::now(), crate::delivery::GAP_WAIT);
    let checked_up_to = match global.get(ready) {
        Some((hole, _)) => Some(*hole),
        // Only the first 1,000 positions were looked at.
        None if global.len() == 1000 => global.last().map(|(position, _)| position + 1),
        None => None,
    };
    if let Some(limit) = checked_up_to {
        events.retain(|(position, _)| *position < limit);
    }
    let next = events.last().map_or(after, |(position, _)| *position);
    let changes: Vec<_> = events
        .into_iter()
        .map(|(position, e)| {
            json!({
                "position": position,
                "id": e.id,
                "kind": e.kind.as_str(),
                "individual_id": e.individual_id,
                "at": e.at,
                "permission_diff": e.permission_diff,
                "individual": e.individual,
            })
        })
        .collect();
    Ok(Json(json!({ "changes": changes, "next": next })).into_response())
}
