//! What every sign-in and token request reads and operators rarely change — tenants,
//! portal clients, the catalog, roles and access profiles — held in memory for a short
//! time (`ttl`, 2 s by default). Each token exchange then costs three statements (redeem
//! the code, read the individual, store the tokens) instead of eight.
//!
//! Changes made through this daemon clear the cache at once; changes made elsewhere (the
//! CLI, another instance) are seen within `ttl`. Individuals are never cached: whether a
//! person may sign in is always read fresh.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use idbridge_app::operator::Operator;
use idbridge_core::DomainResult;
use idbridge_core::catalog::Catalog;
use idbridge_core::ports::SsoStore;
use idbridge_core::role::{AccessProfile, Role};
use idbridge_core::sso::PortalClient;
use idbridge_core::tenant::{Tenant, TenantId};

/// One consistent read of the configuration.
#[derive(Debug)]
pub struct Snapshot {
    pub tenants: HashMap<TenantId, Tenant>,
    pub clients: HashMap<String, PortalClient>,
    pub catalog: Catalog,
    pub roles: BTreeMap<String, Role>,
    pub profiles: BTreeMap<String, AccessProfile>,
}

impl Snapshot {
    pub fn tenant_by_slug(&self, slug: &str) -> Option<&Tenant> {
        self.tenants.values().find(|t| t.slug.as_str() == slug)
    }
}

/// A snapshot and when it was read.
type Stamped = (Instant, Arc<Snapshot>);

#[derive(Clone)]
pub struct ConfigCache {
    operator: Operator,
    store: Arc<dyn SsoStore>,
    ttl: Duration,
    current: Arc<RwLock<Option<Stamped>>>,
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for ConfigCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigCache").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl ConfigCache {
    pub fn new(operator: Operator, store: Arc<dyn SsoStore>, ttl: Duration) -> Self {
        Self { operator, store, ttl, current: Arc::default(), refreshing: Arc::default() }
    }

    fn fresh(&self) -> Option<Arc<Snapshot>> {
        let guard = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, s)| s.clone())
    }

    /// The current snapshot, read again when older than `ttl` (by one caller; the others
    /// wait for it rather than all reading at once).
    pub async fn get(&self) -> DomainResult<Arc<Snapshot>> {
        if let Some(s) = self.fresh() {
            return Ok(s);
        }
        let _turn = self.refreshing.lock().await;
        if let Some(s) = self.fresh() {
            return Ok(s);
        }
        let snapshot = Arc::new(Snapshot {
            tenants: self.operator.tenants().await?.into_iter().map(|t| (t.id, t)).collect(),
            clients: self.store.list_portal_clients().await?.into_iter().map(|c| (c.id.clone(), c)).collect(),
            catalog: self.operator.catalog().await?,
            roles: self.operator.roles().await?.into_iter().map(|r| (r.name.clone(), r)).collect(),
            profiles: self.operator.access_profiles().await?.into_iter().map(|p| (p.name.clone(), p)).collect(),
        });
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((Instant::now(), snapshot.clone()));
        Ok(snapshot)
    }

    /// Forgets the snapshot (after a change through this daemon).
    pub fn invalidate(&self) {
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}
