//! What every handler can reach, and how callers' bearer tokens are checked.

use std::sync::Arc;

use axum::http::HeaderName;
use idbridge_app::operator::Operator;
use metrics_exporter_prometheus::PrometheusHandle;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub operator: Operator,
    /// Hex SHA-256 of each accepted operator token.
    pub admin_token_hashes: Arc<Vec<String>>,
    /// Hex SHA-256 of each accepted portal service token.
    pub portal_token_hashes: Arc<Vec<String>>,
    pub metrics: Option<PrometheusHandle>,
    /// Cleared when an operator revokes a token or changes a tenant here.
    pub scim_auth_cache: Option<Arc<idbridge_scim::auth_cache::AuthCache>>,
    pub mapping: idbridge_app::mapping::MappingService,
    /// Re-maps tenants after rule changes; applies or rejects held change sets.
    pub reconciliation: idbridge_app::reconciliation::SourceReconciliation,
    pub known_mappers: Arc<std::collections::BTreeSet<String>>,
    /// The config file, re-read for `POST /admin/v1/plugins/reload`.
    pub config_path: Option<std::path::PathBuf>,
    /// The OpenID provider (access tokens for delegated administration, key rotation).
    pub sso: Option<idbridge_oidc::SsoState>,
    /// The reconciliation intent queue as last measured (for `/readyz` detail).
    pub intent_queue: idbridge_app::intent_worker::QueueView,
}

impl AppState {
    /// After a tenant or configuration change: SCIM token checks and the sign-in
    /// configuration cache read again.
    pub fn forget_scim_logins(&self) {
        if let Some(cache) = &self.scim_auth_cache {
            cache.clear();
        }
        if let Some(sso) = &self.sso {
            sso.config.invalidate();
        }
    }
}

/// The stored hash a presented bearer token matches, compared in constant time against
/// every hash without stopping early (timing reveals neither which nor whether).
pub fn bearer_match(headers: &axum::http::HeaderMap, hashes: &[String]) -> Option<String> {
    use subtle::ConstantTimeEq;
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(idbridge_core::token::bearer)
        .map(idbridge_core::token::hash_token)?;
    let mut matched = None;
    for stored in hashes {
        if bool::from(presented.as_bytes().ct_eq(stored.as_bytes())) {
            matched = Some(stored.clone());
        }
    }
    matched
}
