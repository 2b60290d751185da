//! The SCIM caller: a tenant's bearer token, checked on every request before anything
//! else is read.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header;
use axum::http::request::Parts;
use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::tenant::Tenant;

use crate::ScimState;
use crate::error::ScimError;

/// An authenticated SCIM client of one tenant.
pub struct ScimCaller {
    pub tenant: Tenant,
    pub ctx: AuditContext,
}

impl FromRequestParts<ScimState> for ScimCaller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &ScimState) -> Result<Self, ScimError> {
        let params = RawPathParams::from_request_parts(parts, state).await.map_err(|_| ScimError::unauthorized())?;
        let slug = params
            .iter()
            .find(|(k, _)| *k == "tenant")
            .map(|(_, v)| v.to_owned())
            .ok_or_else(ScimError::unauthorized)?;
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned())
            .ok_or_else(ScimError::unauthorized)?;
        let (tenant, token) =
            state.operator.authenticate_scim(&slug, &presented).await?.ok_or_else(ScimError::unauthorized)?;
        let request_id = parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Self { tenant, ctx: AuditContext { actor: Actor::new(ActorKind::ScimToken, token.id), request_id } })
    }
}
