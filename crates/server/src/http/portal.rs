//! The Portal API, `/portal/v1`: what a portal back-end reads about a tenant's
//! individuals — effective permissions, access-profile flags, scopes, status and validity
//! — and a feed of changes since a cursor. Authorised by portal service tokens.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use idbridge_core::individual::IndividualQuery;
use serde::Deserialize;
use serde_json::json;

use idbridge_app::delegated::{DelegatedAdmin, DelegatedChange};

use super::error::{ApiError, ApiResult};
use super::query::{AdminQuery, IndividualParams, slug};
use super::state::{AppState, bearer_match};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tenants/{slug}/individuals", get(list))
        .route("/tenants/{slug}/individuals/{id}", get(show))
        .route("/tenants/{slug}/changes", get(changes))
        .route("/tenants/{slug}/individuals/{id}/yeti-token", axum::routing::post(yeti_token))
        .route("/me", get(me))
        .route("/individuals", get(delegated_list).post(delegated_create))
        .route("/individuals/{id}", get(delegated_show).patch(delegated_update))
        .route("/individuals/{id}/expire", axum::routing::post(delegated_expire))
        .route(
            "/individuals/{id}/invitation",
            axum::routing::post(delegated_invite).delete(delegated_revoke_invitation),
        )
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct YetiTokenParams {
    /// The Yeti connector, when the tenant has several.
    connector: Option<String>,
}

/// A Yeti customer token for a signed-in individual, minted through the tenant's Yeti
/// connector with the Yeti profile its access profile maps to. Yeti cannot revoke such a
/// token before it expires (`api.customer.token_lifetime`): a portal asks for one per
/// session, not once for all.
async fn yeti_token(
    _: PortalCaller,
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
    AdminQuery(params): AdminQuery<YetiTokenParams>,
) -> ApiResult<Response> {
    let slug = slug(&raw)?;
    let individual = state.operator.individual(&slug, &id).await?;
    // The portal's service token is the caller: audited as the Portal API asking the connector.
    let ctx = idbridge_core::audit::AuditContext::new(idbridge_core::audit::Actor::new(
        idbridge_core::audit::ActorKind::Connector,
        "portal-api",
    ));
    let token =
        state.operator.connectors().mint_yeti_token(&slug, &individual, params.connector.as_deref(), &ctx).await?;
    Ok(Json(token).into_response())
}

/// An individual calling with its own access token (from idbridge's OpenID provider):
/// a delegated administrator when its role gives `modify` on `customer_individuals`.
pub struct IndividualCaller {
    pub tenant: idbridge_core::tenant::Tenant,
    pub individual: idbridge_core::individual::Individual,
}

impl FromRequestParts<AppState> for IndividualCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(sso) = &state.sso else {
            return Err(ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unauthorized", "sign-in is not enabled"));
        };
        match idbridge_oidc::provider::bearer_individual(sso, &parts.headers).await {
            Ok((tenant, individual, _)) => Ok(Self { tenant, individual }),
            Err((status, message)) => Err(ApiError::new(status, "invalid_token", message)),
        }
    }
}

impl IndividualCaller {
    /// The caller as a delegated administrator, or why it is none (403).
    async fn admin<'a>(&self, state: &'a AppState) -> ApiResult<DelegatedAdmin<'a>> {
        Ok(DelegatedAdmin::of(&state.reconciliation, self.tenant.clone(), self.individual.clone()).await?)
    }
}

async fn me(caller: IndividualCaller, State(state): State<AppState>) -> ApiResult<Response> {
    let mut items = state.operator.portal_individuals(vec![caller.individual]).await?;
    Ok(Json(json!({ "tenant": caller.tenant.slug, "individual": items.remove(0) })).into_response())
}

async fn delegated_list(
    caller: IndividualCaller,
    State(state): State<AppState>,
    AdminQuery(p): AdminQuery<IndividualParams>,
) -> ApiResult<Response> {
    let admin = caller.admin(&state).await?;
    let query = p.query()?;
    let individuals = admin.list(&query).await?;
    page(&state, &query, individuals).await
}

async fn delegated_show(
    caller: IndividualCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let individual = caller.admin(&state).await?.show(&id).await?;
    one(&state, individual).await
}

async fn delegated_create(
    caller: IndividualCaller,
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let admin = caller.admin(&state).await?;
    let new: super::bodies::NewIndividualBody =
        crate::strict::from_json(&body).map_err(|e| ApiError::bad_request(format!("invalid individual: {e}")))?;
    let created = admin.create(new.into()).await?;
    let mut items = state.operator.portal_individuals(vec![created]).await?;
    Ok((axum::http::StatusCode::CREATED, Json(items.remove(0))).into_response())
}

fn local_accounts(state: &AppState) -> ApiResult<&idbridge_app::local_accounts::LocalAccounts> {
    state.sso.as_ref().and_then(|s| s.local.as_ref()).ok_or_else(|| {
        ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable", "local sign-in is not enabled")
    })
}

/// A delegated administrator sends an invitation again to someone it administers.
async fn delegated_invite(
    caller: IndividualCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let admin = caller.admin(&state).await?;
    let mail = admin.invitation(local_accounts(&state)?, &id, false).await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(mail.as_ref().map(crate::views::mail))).into_response())
}

async fn delegated_revoke_invitation(
    caller: IndividualCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let admin = caller.admin(&state).await?;
    admin.invitation(local_accounts(&state)?, &id, true).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

async fn delegated_update(
    caller: IndividualCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let admin = caller.admin(&state).await?;
    let change: super::bodies::DelegatedChangeBody =
        crate::strict::from_json(&body).map_err(|e| ApiError::bad_request(format!("invalid change: {e}")))?;
    let individual = admin.change(&id, &DelegatedChange::from(change)).await?;
    one(&state, individual).await
}

/// Ends an individual's access now (its expiration becomes this instant).
async fn delegated_expire(
    caller: IndividualCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let admin = caller.admin(&state).await?;
    let individual = admin.expire(&id).await?;
    one(&state, individual).await
}

/// One individual as portals read it.
async fn one(state: &AppState, individual: idbridge_core::individual::Individual) -> ApiResult<Response> {
    let mut items = state.operator.portal_individuals(vec![individual]).await?;
    Ok(Json(items.remove(0)).into_response())
}

/// A page of individuals and the login to continue after (keyset pagination).
async fn page(
    state: &AppState,
    query: &IndividualQuery,
    individuals: Vec<idbridge_core::individual::Individual>,
) -> ApiResult<Response> {
    let next =
        (individuals.len() == query.limit as usize).then(|| individuals.last().map(|i| i.login.clone())).flatten();
    let items = state.operator.portal_individuals(individuals).await?;
    Ok(Json(json!({ "individuals": items, "next_after": next })).into_response())
}

/// A portal back-end holding a service token.
pub struct PortalCaller;

impl FromRequestParts<AppState> for PortalCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        bearer_match(&parts.headers, &state.portal_token_hashes).map(|_| Self).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid portal service token is required",
            )
        })
    }
}

async fn list(
    _: PortalCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    AdminQuery(p): AdminQuery<IndividualParams>,
) -> ApiResult<Response> {
    let query = p.query()?;
    let individuals = state.operator.individuals(&slug(&raw)?, &query).await?;
    page(&state, &query, individuals).await
}

async fn show(
    _: PortalCaller,
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let individual = state.operator.individual(&slug(&raw)?, &id).await?;
    one(&state, individual).await
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
    let feed = idbridge_app::portal_feed::changes(
        &state.operator,
        &slug(&raw)?,
        p.after.unwrap_or(0),
        p.limit.unwrap_or(100).clamp(1, 1000),
    )
    .await?;
    let changes: Vec<_> = feed
        .changes
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
    Ok(Json(json!({ "changes": changes, "next": feed.next })).into_response())
}
