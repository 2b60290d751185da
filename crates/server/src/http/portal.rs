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
        .route("/me", get(me))
        .route("/individuals", get(delegated_list).post(delegated_create))
        .route("/individuals/{id}", get(delegated_show).patch(delegated_update))
        .route("/individuals/{id}/expire", axum::routing::post(delegated_expire))
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

/// What a delegated administrator may hand out: never more than it holds.
struct Limits {
    catalog: idbridge_core::catalog::Catalog,
    own_role: idbridge_core::role::Role,
    own_flags: std::collections::BTreeSet<String>,
    roles: std::collections::BTreeMap<String, idbridge_core::role::Role>,
    profiles: std::collections::BTreeMap<String, idbridge_core::role::AccessProfile>,
    ctx: idbridge_core::audit::AuditContext,
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(axum::http::StatusCode::FORBIDDEN, "forbidden", message)
}

impl IndividualCaller {
    async fn limits(&self, state: &AppState) -> ApiResult<Limits> {
        use idbridge_core::role::AccessLevel;
        let store = state.operator.store();
        let catalog = state.operator.catalog().await?;
        let roles: std::collections::BTreeMap<_, _> =
            store.list_roles().await?.into_iter().map(|r| (r.name.clone(), r)).collect();
        let profiles: std::collections::BTreeMap<_, _> =
            store.list_access_profiles().await?.into_iter().map(|p| (p.name.clone(), p)).collect();
        let own_role = self
            .individual
            .role
            .as_ref()
            .and_then(|r| roles.get(r))
            .cloned()
            .ok_or_else(|| forbidden("you have no role"))?;
        if own_role.level("customer_individuals") != AccessLevel::Modify {
            return Err(forbidden("your role does not give modify on customer_individuals"));
        }
        let own_flags = self
            .individual
            .access_profile
            .as_ref()
            .and_then(|p| profiles.get(p))
            .map(|p| p.flags.clone())
            .unwrap_or_default();
        let ctx = idbridge_core::audit::AuditContext::new(idbridge_core::audit::Actor::new(
            idbridge_core::audit::ActorKind::Individual,
            self.individual.id.to_string(),
        ));
        Ok(Limits { catalog, own_role, own_flags, roles, profiles, ctx })
    }

    /// The target must be of the caller's tenant (the lookup is scoped by it) and not
    /// hold more than the caller.
    async fn target(
        &self,
        state: &AppState,
        limits: &Limits,
        id: &str,
    ) -> ApiResult<idbridge_core::individual::Individual> {
        let target = state.operator.individual(&self.tenant.slug, id).await?;
        if let Some(role) = target.role.as_ref().and_then(|r| limits.roles.get(r))
            && !role.is_within(&limits.own_role, &limits.catalog)
        {
            return Err(forbidden("that individual's role is above yours"));
        }
        Ok(target)
    }
}

impl Limits {
    fn check_role(&self, tenant: &idbridge_core::tenant::Tenant, role: &str) -> ApiResult<()> {
        if !tenant.allowed_roles.contains(role) {
            return Err(forbidden(format!("role {role:?} is not allowed for your organisation")));
        }
        let candidate = self.roles.get(role).ok_or_else(|| ApiError::bad_request(format!("no role {role:?}")))?;
        if !candidate.is_within(&self.own_role, &self.catalog) {
            return Err(forbidden(format!("role {role:?} gives more than your own role")));
        }
        Ok(())
    }

    fn check_profile(&self, tenant: &idbridge_core::tenant::Tenant, profile: &str) -> ApiResult<()> {
        if !tenant.allowed_access_profiles.contains(profile) {
            return Err(forbidden(format!("access profile {profile:?} is not allowed for your organisation")));
        }
        let candidate = self
            .profiles
            .get(profile)
            .ok_or_else(|| ApiError::bad_request(format!("no access profile {profile:?}")))?;
        if !candidate.flags.is_subset(&self.own_flags) {
            return Err(forbidden(format!("access profile {profile:?} turns on flags you do not have")));
        }
        Ok(())
    }
}

async fn me(caller: IndividualCaller, State(state): State<AppState>) -> ApiResult<Response> {
    let mut items = state.operator.portal_individuals(vec![caller.individual]).await?;
    Ok(Json(json!({ "tenant": caller.tenant.slug, "individual": items.remove(0) })).into_response())
}

async fn delegated_list(
    caller: IndividualCaller,
    State(state): State<AppState>,
    AdminQuery(p): AdminQuery<ListParams>,
) -> ApiResult<Response> {
    caller.limits(&state).await?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let query = IndividualQuery {
        status: p.status.as_deref().map(IndividualStatus::parse).transpose()?,
        after_login: p.after,
        limit,
    };
    let individuals = state.operator.store().list_individuals(caller.tenant.id, &query).await?;
    let next = (individuals.len() == limit as usize).then(|| individuals.last().map(|i| i.login.clone())).flatten();
    let items = state.operator.portal_individuals(individuals).await?;
    Ok(Json(json!({ "individuals": items, "next_after": next })).into_response())
}

async fn delegated_show(
    caller: IndividualCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.limits(&state).await?;
    let individual = state.operator.individual(&caller.tenant.slug, &id).await?;
    let mut items = state.operator.portal_individuals(vec![individual]).await?;
    Ok(Json(items.remove(0)).into_response())
}

fn scopes_within(wanted: &idbridge_core::scopes::Scopes, own: &idbridge_core::scopes::Scopes) -> bool {
    wanted.extensions.is_subset(&own.extensions)
        && wanted.queues.is_subset(&own.queues)
        && wanted.phone_numbers.is_subset(&own.phone_numbers)
        && wanted.billing_accounts.is_subset(&own.billing_accounts)
        && (!wanted.full_call_reports || own.full_call_reports)
}

async fn delegated_create(
    caller: IndividualCaller,
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let limits = caller.limits(&state).await?;
    let new: idbridge_core::reconcile::NewIndividual =
        crate::strict::from_json(&body).map_err(|e| ApiError::bad_request(format!("invalid individual: {e}")))?;
    limits.check_role(&caller.tenant, &new.role)?;
    if let Some(p) = &new.access_profile {
        limits.check_profile(&caller.tenant, p)?;
    }
    if !scopes_within(&new.scopes, &caller.individual.scopes) {
        return Err(forbidden("the scopes include some you do not have"));
    }
    let created = state.reconciliation.reconciler.create_manual(&caller.tenant, new, &limits.ctx).await?;
    let mut items = state.operator.portal_individuals(vec![created]).await?;
    Ok((axum::http::StatusCode::CREATED, Json(items.remove(0))).into_response())
}

/// What a delegated administrator may change. (Not a flattened `ManualChange`: serde
/// does not refuse unknown keys through `flatten`.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegatedChange {
    role: Option<String>,
    #[serde(default, deserialize_with = "idbridge_core::reconcile::present")]
    access_profile: Option<Option<String>>,
    #[serde(default, deserialize_with = "idbridge_core::reconcile::present")]
    activation: Option<Option<String>>,
    #[serde(default, deserialize_with = "idbridge_core::reconcile::present")]
    expiration: Option<Option<String>>,
    time_zone: Option<String>,
    #[serde(default)]
    add_scopes: idbridge_core::scopes::Scopes,
    #[serde(default)]
    remove_scopes: idbridge_core::scopes::Scopes,
}

impl DelegatedChange {
    fn manual(&self) -> idbridge_core::reconcile::ManualChange {
        idbridge_core::reconcile::ManualChange {
            activation: self.activation.clone(),
            expiration: self.expiration.clone(),
            time_zone: self.time_zone.clone(),
            add_scopes: self.add_scopes.clone(),
            remove_scopes: self.remove_scopes.clone(),
        }
    }
}

async fn delegated_update(
    caller: IndividualCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let limits = caller.limits(&state).await?;
    let change: DelegatedChange =
        crate::strict::from_json(&body).map_err(|e| ApiError::bad_request(format!("invalid change: {e}")))?;
    let target = caller.target(&state, &limits, &id).await?;
    if let Some(role) = &change.role {
        limits.check_role(&caller.tenant, role)?;
    }
    if let Some(Some(p)) = &change.access_profile {
        limits.check_profile(&caller.tenant, p)?;
    }
    if !scopes_within(&change.add_scopes, &caller.individual.scopes) {
        return Err(forbidden("the scopes include some you do not have"));
    }
    let reconciler = &state.reconciliation.reconciler;
    reconciler
        .assign_manual(&caller.tenant, &target, change.role.clone(), change.access_profile.clone(), &limits.ctx)
        .await?;
    let target = state.operator.individual(&caller.tenant.slug, &id).await?;
    reconciler.manual(&caller.tenant, &target, &change.manual(), &limits.ctx).await?;
    let individual = state.operator.individual(&caller.tenant.slug, &id).await?;
    let mut items = state.operator.portal_individuals(vec![individual]).await?;
    Ok(Json(items.remove(0)).into_response())
}

/// Ends an individual's access now (its expiration becomes this instant).
async fn delegated_expire(
    caller: IndividualCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let limits = caller.limits(&state).await?;
    let target = caller.target(&state, &limits, &id).await?;
    let reconciler = &state.reconciliation.reconciler;
    let now = reconciler.now();
    // An activation after now would make the expiration precede it; the access never
    // starts then either.
    let activation = target.activation.as_ref().filter(|a| a.at >= now).map(|_| None);
    let change = idbridge_core::reconcile::ManualChange {
        activation,
        expiration: Some(Some(now.to_string())),
        ..Default::default()
    };
    reconciler.manual(&caller.tenant, &target, &change, &limits.ctx).await?;
    let individual = state.operator.individual(&caller.tenant.slug, &id).await?;
    let mut items = state.operator.portal_individuals(vec![individual]).await?;
    Ok(Json(items.remove(0)).into_response())
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
    let ready = crate::delivery::settled(after, &global, idbridge_core::clock::now(), crate::delivery::GAP_WAIT);
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
