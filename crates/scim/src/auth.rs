//! The SCIM caller: a tenant's bearer token, checked on every request before anything
//! else is read.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header;
use axum::http::request::Parts;
use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::tenant::Tenant;

use crate::error::ScimError;
use crate::state::ScimState;

/// An authenticated SCIM client of one tenant.
pub struct ScimCaller {
    pub tenant: Tenant,
    pub ctx: AuditContext,
    /// This request as one source change (`ScimWrite::change`), made here rather than
    /// taken from the client's `X-Request-Id`, which a client may repeat.
    pub change: uuid::Uuid,
}

impl FromRequestParts<ScimState> for ScimCaller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &ScimState) -> Result<Self, ScimError> {
        // A path that is not valid UTF-8 names no tenant or endpoint: 404, as for any other
        // path that does not exist (it reveals nothing about which tenants exist).
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ScimError::not_found("no such SCIM endpoint"))?;
        let slug = params
            .iter()
            .find(|(k, _)| *k == "tenant")
            .map(|(_, v)| v.to_owned())
            .ok_or_else(ScimError::unauthorized)?;
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(idbridge_core::token::bearer)
            .map(str::to_owned)
            .ok_or_else(ScimError::unauthorized)?;
        let (tenant, token_id) = match state.auth_cache.get(&slug, &presented) {
            Some(hit) => hit,
            None => {
                let (tenant, token) =
                    state.operator.authenticate_scim(&slug, &presented).await?.ok_or_else(ScimError::unauthorized)?;
                state.auth_cache.put(&slug, &presented, &tenant, &token.id);
                (tenant, token.id)
            }
        };
        let request_id = parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Self {
            tenant,
            ctx: AuditContext { actor: Actor::new(ActorKind::ScimToken, token_id), request_id },
            change: uuid::Uuid::new_v4(),
        })
    }
}
