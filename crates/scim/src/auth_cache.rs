//! The short-lived memory of successful SCIM token checks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use idbridge_core::tenant::Tenant;
use sha2::{Digest, Sha256};

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

    pub(crate) fn get(&self, slug: &str, token: &str) -> Option<(Tenant, String)> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (tenant, id, at) = entries.get(&Self::key(slug, token))?;
        (at.elapsed() < self.ttl).then(|| (tenant.clone(), id.clone()))
    }

    pub(crate) fn put(&self, slug: &str, token: &str, tenant: &Tenant, token_id: &str) {
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
