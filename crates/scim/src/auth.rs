//! The SCIM caller: a tenant's bearer token, checked on every request before anything
//! else is read.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header;
use axum::http::request::Parts;
use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::tenant::Tenant;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::ScimState;
use crate::error::ScimError;

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

/// Successful token checks, remembered for a short time so that a busy SCIM client does
/// not cost two database reads per request. Keyed by the SHA-256 of tenant and token
/// (the secret itself is never kept). A revoked token or a disabled tenant stops working
/// within `ttl` even when the change was made by another process.
pub struct AuthCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Tenant, String, Instant)>>,
}

const MAX_CACHED_TOKENS: usize = 10_000;

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn key(slug: &str, token: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(slug.as_bytes());
        hasher.update([0]);
        hasher.update(token.as_bytes());
        hasher.finalize().into()
    }

    fn get(&self, slug: &str, token: &str) -> Option<(Tenant, String)> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (tenant, id, at) = entries.get(&Self::key(slug, token))?;
        (at.elapsed() < self.ttl).then(|| (tenant.clone(), id.clone()))
    }

    fn put(&self, slug: &str, token: &str, tenant: &Tenant, token_id: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHED_TOKENS {
            entries.clear();
        }
        entries.insert(Self::key(slug, token), (tenant.clone(), token_id.to_owned(), Instant::now()));
    }

    /// Forgets everything (after a revocation or a tenant change in this process).
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
