//! What every SCIM handler can reach, and the limits a deployment tunes.

use std::sync::Arc;

use idbridge_app::operator::Operator;
use idbridge_core::ports::ScimRecordStore;
use idbridge_core::tenant::Tenant;

use crate::auth_cache::AuthCache;
use crate::schema::Schemas;

/// Sizes a deployment may tune.
#[derive(Debug, Clone)]
pub struct ScimLimits {
    pub max_body_bytes: usize,
    pub bulk_max_operations: usize,
    pub default_page_size: u32,
    pub max_page_size: u32,
    /// How long a successful token check is remembered (0 turns the cache off).
    pub auth_cache_ttl: std::time::Duration,
}

impl Default for ScimLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            bulk_max_operations: 1000,
            default_page_size: 100,
            max_page_size: 1000,
            auth_cache_ttl: std::time::Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
pub struct ScimState {
    pub operator: Operator,
    pub records: Arc<dyn ScimRecordStore>,
    pub schemas: Arc<Schemas>,
    /// `server.public_url`, without a trailing slash.
    pub public_url: String,
    pub limits: ScimLimits,
    pub auth_cache: Arc<AuthCache>,
    /// Told about every successful write, so affected people are reconciled.
    pub changes: Arc<dyn idbridge_core::ports::SourceChanges>,
}

impl ScimState {
    pub fn new(
        operator: Operator,
        records: Arc<dyn ScimRecordStore>,
        changes: Arc<dyn idbridge_core::ports::SourceChanges>,
        public_url: &str,
        limits: ScimLimits,
    ) -> Self {
        Self {
            changes,
            auth_cache: Arc::new(AuthCache::new(limits.auth_cache_ttl)),
            operator,
            records,
            schemas: Arc::new(Schemas::default()),
            public_url: public_url.trim_end_matches('/').to_owned(),
            limits,
        }
    }

    pub fn base_url(&self, tenant: &Tenant) -> String {
        format!("{}/scim/v2/{}", self.public_url, tenant.slug)
    }
}
