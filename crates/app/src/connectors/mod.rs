//! Portal connectors: each individual's creation, change, suspension and expiry carried
//! into the portal, and kept in agreement with it afterwards.
//!
//! A connector is an outbox consumer (`connector:<tenant id>:<name>`, one instance at a
//! time through a lease of that name). Reading the outbox only marks the changed
//! individuals' links as owing a push (`ConnectorStore::owe_connector_pushes`); the pusher
//! then takes owed links and pushes each individual's *current* state, so every change
//! reaches the portal, in order per individual (an older state never after a newer one),
//! and a push that failed, or whose answer was lost, is simply pushed again. Creation is
//! idempotent: the remote object carries the individual's id (SCIM `externalId`) and is
//! looked up by it before anything is created. A remote user with the same login that
//! nobody manages is adopted only when the operator allowed it, otherwise parked as a
//! conflict; nobody is ever matched by email. Remote objects idbridge did not create or
//! adopt are never touched.
//!
//! Failures are retried with jittered back-off (`Retry-After` honoured: the whole
//! connector waits), up to the connector's attempts, then the link is dead until the
//! individual changes again or an operator resyncs. A connector whose pushes keep failing
//! is quarantined: it sends one probe now and then until one succeeds. Drift repair (on a
//! schedule and on `connector resync`) reads every managed remote object back, repairs what
//! differs and re-creates what was deleted behind idbridge's back.

mod portal;
mod scim;
mod yeti;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use idbridge_core::DomainResult;
use idbridge_core::audit::AuditContext;
use idbridge_core::changeset::HeldWrite;
use idbridge_core::connector::{ConnectorConfig, ConnectorHealth, ConnectorKind, ConnectorLink, LinkCounts, LinkState};
use idbridge_core::error::DomainError;
use idbridge_core::individual::{Individual, IndividualId};
use idbridge_core::ports::Store;
use idbridge_core::tenant::{Tenant, TenantId, TenantSlug};
use serde::Serialize;
use serde_json::Value;

use crate::stopping::Stopping;

pub use portal::{Portal, PortalError, Remote};
pub use scim::ScimPortal;
pub use yeti::{CustomerToken, YetiPortal};

/// How long the pushing instance holds a connector; renewed on every pass.
const LEASE: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);
/// How often the deletion guard looks again at unexplained disables it could not decide
/// yet (a drift repair still reading back).
const JUDGE_EVERY: Duration = Duration::from_secs(2);
/// How often a batch in progress renews the lease (well within `LEASE`).
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// Transient failures in a row that put a connector in quarantine.
const QUARANTINE_AFTER: u32 = 10;
/// How often a quarantined connector sends its probe.
const PROBE_EVERY: Duration = Duration::from_secs(30);
/// Links taken per pass.
const BATCH: u32 = 100;
/// Outbox events read per pass.
const EVENTS: u32 = 500;
/// How often the supervisor looks for connectors added, changed or removed by `apply`.
const SUPERVISE_EVERY: Duration = Duration::from_secs(5);

/// The portal of a tenant's configured connector, with its secret read.
pub fn portal_for(config: &ConnectorConfig, tenant: &TenantSlug) -> Result<Arc<dyn Portal>, String> {
    let timeout = Duration::from_secs(config.timeout_seconds);
    match config.kind().map_err(|e| e.to_string())? {
        ConnectorKind::Scim(target) => {
            let auth = match &target.oauth {
                Some(client) => scim::Auth::client_credentials(
                    client.clone(),
                    secret(
                        config,
                        "oauth.client_secret",
                        client.client_secret_file.as_deref(),
                        client.client_secret_env.as_deref(),
                    )?,
                ),
                None => scim::Auth::Token(secret(
                    config,
                    "token",
                    target.token_file.as_deref(),
                    target.token_env.as_deref(),
                )?),
            };
            Ok(Arc::new(ScimPortal::new(target, auth, timeout)?))
        }
        ConnectorKind::Yeti(_) => Ok(Arc::new(yeti_portal(config, tenant)?)),
    }
}

fn yeti_portal(config: &ConnectorConfig, tenant: &TenantSlug) -> Result<YetiPortal, String> {
    let ConnectorKind::Yeti(target) = config.kind().map_err(|e| e.to_string())? else {
        return Err(format!("connector {} is not a Yeti connector", config.name));
    };
    let password = secret(config, "password", target.password_file.as_deref(), target.password_env.as_deref())?;
    YetiPortal::new(target, tenant.as_str(), password, Duration::from_secs(config.timeout_seconds))
}

/// A connector's referenced secret; errors name the setting, never the value.
fn secret(config: &ConnectorConfig, setting: &str, file: Option<&str>, env: Option<&str>) -> Result<String, String> {
    idbridge_core::secret::read_referenced(file, env)
        .map_err(|e| {
            let (suffix, reason) = e.describe();
            format!("connectors.{}.{setting}{suffix}: {reason}", config.name)
        })?
        .ok_or_else(|| format!("connectors.{}: no {setting} ({setting}_file or {setting}_env)", config.name))
}

/// What one push ended with.
#[derive(Debug)]
enum Pushed {
    /// The portal agrees (remote id and version, the document it now holds).
    Done { remote_id: Option<String>, version: Option<String>, document: Option<Value> },
    /// A login taken by a user idbridge may not adopt.
    Conflict(String),
    /// Not pushed: it would take access from a portal user the individual's own change
    /// does not explain (active in the portal although idbridge last left it inactive, or
    /// adopted or found active) — for the deletion guard to judge with the others.
    Unexplained { remote_id: String, version: Option<String> },
}

/// Pushes the individual's current state (`None`: no longer stored) over `link`.
async fn push(
    portal: &dyn Portal,
    config: &ConnectorConfig,
    link: &ConnectorLink,
    individual: Option<&Individual>,
) -> Result<Pushed, PortalError> {
    let desired = individual.and_then(|i| portal.desired(i));
    let Some(desired) = desired else {
        if let Some(id) = &link.remote_id {
            // Deleting is taking access like a disable: the guard judges what the
            // individual's own change does not explain.
            let explained =
                link.pushed.as_ref().is_some_and(|p| portal.is_active(p)) || link.guard_passed >= link.wanted;
            if !explained && link.verify {
                match portal.read(id).await {
                    Ok(remote) if portal.is_active(&remote.document) => {
                        return Ok(Pushed::Unexplained { remote_id: remote.id, version: remote.version });
                    }
                    Ok(_) | Err(PortalError::Gone) => {}
                    Err(e) => return Err(e),
                }
            }
            portal.delete(id).await?;
        }
        return Ok(Pushed::Done { remote_id: None, version: None, document: None });
    };
    let individual = individual.expect("a desired document comes from an individual");
    let mut known = match &link.remote_id {
        // Drift repair: what the portal holds now, not what was pushed.
        Some(id) if link.verify => match portal.read(id).await {
            Ok(remote) => Some((remote.id, remote.version, Some(remote.document))),
            Err(PortalError::Gone) => None,
            Err(e) => return Err(e),
        },
        Some(id) => Some((id.clone(), link.remote_version.clone(), link.pushed.clone())),
        None => None,
    };
    for _ in 0..3 {
        let Some((id, version, current)) = known.take() else {
            match create_or_adopt(portal, config, link, individual, &desired).await? {
                Created::Pushed(remote) => {
                    return Ok(Pushed::Done {
                        remote_id: Some(remote.id),
                        version: remote.version,
                        document: Some(desired),
                    });
                }
                Created::Found(remote) => {
                    known = Some((remote.id, remote.version, Some(remote.document)));
                    continue;
                }
                Created::Conflict(reason) => return Ok(Pushed::Conflict(reason)),
            }
        };
        if unexplained_disable(portal, link, current.as_ref(), &desired) {
            return Ok(Pushed::Unexplained { remote_id: id, version });
        }
        match portal.update(&id, version.as_deref(), current.as_ref(), &desired).await {
            Ok(version) => return Ok(Pushed::Done { remote_id: Some(id), version, document: Some(desired) }),
            // Changed by someone else since: read it again and bring it over from there.
            Err(PortalError::Stale) => {
                let remote = portal.read(&id).await?;
                known = Some((remote.id, remote.version, Some(remote.document)));
            }
            // Deleted behind idbridge's back: made again.
            Err(PortalError::Gone) => known = None,
            Err(e) => return Err(e),
        }
    }
    Err(PortalError::Transient {
        reason: "the remote object kept changing during the update".into(),
        retry_after: None,
    })
}

/// Whether bringing `current` to `desired` takes access that the individual's own change
/// does not explain: the portal's user is active, idbridge wants it inactive, and what
/// idbridge last pushed was not active (it was disabled before and re-enabled in the
/// portal, or adopted, or found) — unless an approval or the guard let this change through.
fn unexplained_disable(portal: &dyn Portal, link: &ConnectorLink, current: Option<&Value>, desired: &Value) -> bool {
    let remote_active = current.is_some_and(|c| portal.is_active(c));
    let pushed_active = link.pushed.as_ref().is_some_and(|p| portal.is_active(p));
    remote_active && !portal.is_active(desired) && !pushed_active && link.guard_passed < link.wanted
}

enum Created {
    Pushed(Remote),
    /// A remote object that is this individual's already (or adopted): to be updated.
    Found(Remote),
    Conflict(String),
}

async fn create_or_adopt(
    portal: &dyn Portal,
    config: &ConnectorConfig,
    link: &ConnectorLink,
    individual: &Individual,
    desired: &Value,
) -> Result<Created, PortalError> {
    // A creation whose answer was lost (an earlier attempt, counted before it was sent)
    // or an object pushed before (a link whose remote object went missing) is looked up by
    // the individual's id first, never created twice. A link never attempted and never
    // pushed cannot have made one and skips the lookup — half the requests of a first
    // push, and on Yeti, whose lookup reads the whole listing, the difference between
    // linear and quadratic. (A portal user made some other way with the same login is
    // refused as taken, and then looked up by login.)
    let may_exist = link.attempts > 0 || link.done > 0;
    if may_exist && let Some(remote) = portal.find_managed(individual).await? {
        return Ok(Created::Found(remote));
    }
    match portal.create(desired).await {
        Ok(remote) => Ok(Created::Pushed(remote)),
        Err(PortalError::Taken(reason)) => match portal.find_by_login(individual).await? {
            // Ours after all (a portal whose filter missed it).
            Some(remote) if remote.managed_by.as_deref() == Some(individual.id.0.to_string().as_str()) => {
                Ok(Created::Found(remote))
            }
            Some(remote) if remote.managed_by.is_none() && config.adopt_unmanaged => {
                tracing::info!(connector = config.name, individual = %individual.id, remote = remote.id, "adopting the portal's unmanaged user");
                Ok(Created::Found(Remote { document: Value::Null, ..remote }))
            }
            Some(remote) => Ok(Created::Conflict(match remote.managed_by {
                None => format!(
                    "the portal already has a user {:?} (id {}) that idbridge does not manage; remove it, or set adopt_unmanaged = true and resync",
                    individual.login, remote.id
                ),
                Some(other) => format!(
                    "the portal's user {:?} (id {}) belongs to another individual ({other})",
                    individual.login, remote.id
                ),
            })),
            None => Err(PortalError::Transient { reason, retry_after: None }),
        },
        Err(e) => Err(e),
    }
}

/// `sha256:<hex>` of what decides a connector's pushes.
fn config_digest(config: &ConnectorConfig) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(config.push_fingerprint().as_bytes())))
}

/// Random in 0..1 for back-off jitter.
fn jitter() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 64) as f64 / u64::MAX as f64
}

/// The tenant's mass-deprovision thresholds, as the connector was started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Guard {
    percent: u8,
    min: u32,
}

impl Guard {
    fn of(policy: &idbridge_core::tenant::TenantPolicy) -> Self {
        Self { percent: policy.mass_deprovision_percent, min: policy.mass_deprovision_min }
    }

    fn exceeded_by(&self, summary: &idbridge_core::changeset::ChangeSummary) -> bool {
        let policy = idbridge_core::tenant::TenantPolicy {
            mass_deprovision_percent: self.percent,
            mass_deprovision_min: self.min,
            ..Default::default()
        };
        summary.exceeds(&policy)
    }
}

/// The outbox consumer (and lease) name of a tenant's connector.
pub fn consumer_name(tenant: TenantId, connector: &str) -> String {
    format!("connector:{tenant}:{connector}")
}

/// One connector of one tenant, pushed by this process while it holds the lease.
pub struct ConnectorRunner {
    store: Arc<dyn Store>,
    tenant: TenantId,
    /// The tenant's mass-deprovision thresholds, which the connector's disables count against.
    guard: Guard,
    config: ConnectorConfig,
    portal: Arc<dyn Portal>,
    instance: String,
    consumer: String,
}

/// What the runner keeps between passes.
struct RunnerState {
    health: ConnectorHealth,
    health_written: Option<ConnectorHealth>,
    paused_until: Option<tokio::time::Instant>,
    last_probe: Option<tokio::time::Instant>,
    counts_published: Option<tokio::time::Instant>,
    /// The portal answered again after a quarantine: the links waiting out their back-off
    /// are due now.
    recovered: bool,
    /// Unexplained disables may wait for the guard (some were found, or an earlier
    /// process may have left some undecided).
    unexplained_waiting: bool,
    judged_at: Option<tokio::time::Instant>,
}

impl ConnectorRunner {
    pub fn new(
        store: Arc<dyn Store>,
        tenant: &Tenant,
        config: ConnectorConfig,
        portal: Arc<dyn Portal>,
        instance: String,
    ) -> Self {
        let consumer = consumer_name(tenant.id, &config.name);
        Self { store, tenant: tenant.id, guard: Guard::of(&tenant.policy), config, portal, instance, consumer }
    }

    /// Runs until the process stops.
    pub async fn run(self, stopping: Stopping) {
        let health = match self.store.get_connector_health(self.tenant, &self.config.name).await {
            Ok(Some(health)) => health,
            _ => ConnectorHealth {
                quarantined_since: None,
                consecutive_failures: 0,
                last_success_at: None,
                last_error: None,
                last_drift_repair_at: None,
                config_digest: None,
            },
        };
        let mut state = RunnerState {
            health_written: Some(health.clone()),
            health,
            paused_until: None,
            last_probe: None,
            counts_published: None,
            // Unexplained disables an earlier process left undecided are judged at once.
            unexplained_waiting: true,
            judged_at: None,
            recovered: false,
        };
        loop {
            if stopping.is_requested() {
                return;
            }
            let idle = match self.pass(&mut state).await {
                Ok(worked) => !worked,
                Err(e) => {
                    tracing::error!(error = %e, connector = self.config.name, tenant = %self.tenant, "connector pass failed");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    false
                }
            };
            if idle {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stopping.requested() => return,
                }
            }
        }
    }

    /// One pass: the outbox read into owed links, a drift repair when due, owed links
    /// pushed. Answers whether it did anything.
    async fn pass(&self, state: &mut RunnerState) -> DomainResult<bool> {
        let now = idbridge_core::clock::now();
        if !self.store.try_lease(&self.consumer, &self.instance, now, now + LEASE).await? {
            // Another instance pushes this connector; take over if its lease lapses.
            tokio::time::sleep(Duration::from_secs(2)).await;
            return Ok(false);
        }
        let mut worked = self.read_outbox().await?;
        // A new connector, or one whose configuration changed (another portal, other
        // attributes): everyone is pushed again, read back first — as a drift repair.
        let fingerprint = config_digest(&self.config);
        let changed = state.health.config_digest.as_deref() != Some(fingerprint.as_str());
        if changed || self.drift_repair_due(&state.health, now) {
            let owed = self.store.owe_connector_repair(self.tenant, &self.config.name, now).await?;
            tracing::info!(connector = self.config.name, tenant = %self.tenant, owed, changed, "connector drift repair");
            state.health.last_drift_repair_at = Some(now);
            state.health.config_digest = Some(fingerprint);
            worked = true;
        }
        let tokio_now = tokio::time::Instant::now();
        let paused = state.paused_until.is_some_and(|until| until > tokio_now);
        let probe_wait = state.health.quarantined_since.is_some()
            && state.last_probe.is_some_and(|at| tokio_now.duration_since(at) < PROBE_EVERY);
        if !paused && !probe_wait {
            let quarantined = state.health.quarantined_since.is_some();
            let limit = if quarantined { 1 } else { BATCH };
            // The probe is the link waiting longest, due or not: after a long outage every
            // link has backed off for minutes, and the portal being back must not wait for
            // them (when the probe lands, every retry is made due at once).
            let until = if quarantined { now + jiff::SignedDuration::from_hours(24 * 365) } else { now };
            let due = self.store.due_connector_links(self.tenant, &self.config.name, until, limit).await?;
            let individuals = self.individuals_of(&due).await?;
            if state.health.quarantined_since.is_some() && !due.is_empty() {
                state.last_probe = Some(tokio_now);
            }
            worked |= !due.is_empty();
            let unexplained = self.push_all(due, individuals, state).await?;
            state.unexplained_waiting |= unexplained > 0;
            if std::mem::take(&mut state.recovered) {
                let due_now = self.store.reschedule_connector_retries(self.tenant, &self.config.name, now).await?;
                tracing::info!(connector = self.config.name, tenant = %self.tenant, due_now, "the portal answers again: retries due now");
            }
        }
        // The guard's count reads every link of the connector: not every pass, while a
        // drift repair is still reading back (a decision is deferred until it is done).
        let judge_due = state.judged_at.is_none_or(|at| at.elapsed() >= JUDGE_EVERY);
        if state.unexplained_waiting && judge_due {
            state.unexplained_waiting = !self.judge_unexplained().await?;
            state.judged_at = Some(tokio::time::Instant::now());
        }
        self.publish(state).await?;
        Ok(worked)
    }

    fn drift_repair_due(&self, health: &ConnectorHealth, now: jiff::Timestamp) -> bool {
        match health.last_drift_repair_at {
            // A new connector: everyone the tenant has is owed once.
            None => true,
            Some(_) if self.config.drift_repair_minutes == 0 => false,
            Some(at) => {
                now.duration_since(at) >= jiff::SignedDuration::from_mins(self.config.drift_repair_minutes as i64)
            }
        }
    }

    /// Marks the links of the individuals the outbox names since the consumer's position.
    async fn read_outbox(&self) -> DomainResult<bool> {
        let position = self.store.consumer_position(&self.consumer).await?;
        let events = self.store.list_all_change_events(position, EVENTS).await?;
        let ready = crate::delivery::settled(position, &events, idbridge_core::clock::now(), crate::delivery::GAP_WAIT);
        let Some((last, _)) = events[..ready].last() else { return Ok(false) };
        let owed: Vec<IndividualId> = events[..ready]
            .iter()
            .filter(|(_, event)| event.tenant_id == self.tenant)
            .map(|(_, event)| event.individual_id)
            .collect();
        self.store.owe_connector_pushes(self.tenant, &self.config.name, &owed, idbridge_core::clock::now()).await?;
        self.store.advance_consumer(&self.consumer, *last, None).await?;
        Ok(true)
    }

    /// The current individual of each link (`None`: no longer stored).
    async fn individuals_of(&self, due: &[ConnectorLink]) -> DomainResult<Vec<Option<Individual>>> {
        let ids: Vec<IndividualId> = due.iter().map(|l| l.individual_id).collect();
        let mut found: HashMap<IndividualId, Individual> =
            self.store.get_individuals(self.tenant, &ids).await?.into_iter().map(|i| (i.id, i)).collect();
        Ok(ids.iter().map(|id| found.remove(id)).collect())
    }

    /// The deletion guard, once a drift repair has read everything back (or at the end of
    /// an ordinary pass): when the unexplained disables would take access in the portal from
    /// more than the tenant's mass-deprovision threshold (of the users active there), they
    /// are held in a change set for an operator, like any other mass deprovision; otherwise
    /// they are let through. Answers whether it decided (`false`: still reading back).
    async fn judge_unexplained(&self) -> DomainResult<bool> {
        let (unexplained, active, surveying) =
            self.store.connector_guard_counts(self.tenant, &self.config.name).await?;
        if surveying {
            return Ok(false);
        }
        if unexplained == 0 {
            return Ok(true);
        }
        let summary = idbridge_core::changeset::ChangeSummary {
            creates: 0,
            updates: unexplained,
            takes_access: unexplained,
            holding_access: active,
            taken_recently: 0,
        };
        let now = idbridge_core::clock::now();
        if !self.guard.exceeded_by(&summary) {
            let released = self
                .store
                .release_connector_disables(self.tenant, &self.config.name, LinkState::Unexplained, true, "", now)
                .await?;
            tracing::info!(connector = self.config.name, tenant = %self.tenant, released, "connector disables within the guard's threshold; pushed");
            return Ok(true);
        }
        let id = uuid::Uuid::new_v4();
        let note = format!("held for approval in change set {id} (idbridge changes show {id})");
        let held = self.store.hold_connector_disables(self.tenant, &self.config.name, &note).await?;
        let writes: Vec<HeldWrite> = held
            .into_iter()
            .map(|(individual_id, found)| {
                let (login, status) = found.unwrap_or_else(|| (individual_id.to_string(), "deleted".to_owned()));
                let after = idbridge_core::individual::IndividualStatus::parse(&status)
                    .unwrap_or(idbridge_core::individual::IndividualStatus::Deleted);
                HeldWrite {
                    individual_id,
                    login,
                    action: "connector.disable".to_owned(),
                    before: Some(idbridge_core::individual::IndividualStatus::Active),
                    after,
                    takes_access: true,
                    changed_before: serde_json::json!({ "portal": "active" }),
                    changed_after: serde_json::json!({ "portal": "disabled or deleted" }),
                    links: Vec::new(),
                }
            })
            .collect();
        let summary = idbridge_core::changeset::ChangeSummary {
            updates: writes.len() as u64,
            takes_access: writes.len() as u64,
            ..summary
        };
        let header = idbridge_core::changeset::ChangeSetHeader {
            id,
            tenant_id: self.tenant,
            origin: crate::origin::connector_origin(&self.config.name),
            status: idbridge_core::changeset::ChangeSetStatus::Pending,
            summary: summary.clone(),
            created_at: now,
            created_by: format!("connector:{}", self.config.name),
            decided_at: None,
            decided_by: None,
            result: None,
        };
        let ctx = AuditContext::new(idbridge_core::audit::Actor::new(
            idbridge_core::audit::ActorKind::Connector,
            self.config.name.clone(),
        ));
        let audit = ctx.record(
            Some(self.tenant),
            "change_set",
            id.to_string(),
            "change_set.held",
            None,
            Some(serde_json::json!({ "origin": header.origin, "summary": summary })),
        );
        self.store.put_change_set(&header, &writes, &audit).await?;
        tracing::warn!(connector = self.config.name, tenant = %self.tenant, change_set = %id, disables = writes.len(), "connector disables held by the mass-deprovision guard");
        Ok(true)
    }

    async fn push_all(
        &self,
        due: Vec<ConnectorLink>,
        individuals: Vec<Option<Individual>>,
        state: &mut RunnerState,
    ) -> DomainResult<u64> {
        let mut unexplained = 0;
        // Counted before anything is sent (one statement for the batch): what a crash
        // interrupts is looked up before it is tried again.
        let ids: Vec<IndividualId> = due.iter().map(|l| l.individual_id).collect();
        self.store.begin_connector_attempts(self.tenant, &self.config.name, &ids).await?;
        let mut tasks = tokio::task::JoinSet::new();
        let mut renewed = tokio::time::Instant::now();
        let mut due = due.into_iter().zip(individuals);
        let cap = self.config.concurrency.max(1) as usize;
        loop {
            while tasks.len() < cap {
                let Some((link, individual)) = due.next() else { break };
                let (portal, config) = (self.portal.clone(), self.config.clone());
                tasks.spawn(async move {
                    let outcome = push(portal.as_ref(), &config, &link, individual.as_ref()).await;
                    (link, outcome)
                });
            }
            let Some(joined) = tasks.join_next().await else { break };
            let (link, outcome) = joined.map_err(|e| DomainError::Internal(format!("a connector push failed: {e}")))?;
            unexplained += u64::from(matches!(outcome, Ok(Pushed::Unexplained { .. })));
            self.record(link, outcome, state).await?;
            // A slow portal can make a batch outlast the lease: renewed on the way, and
            // when another instance has taken it, this one stops (dropping the set aborts
            // the pushes in flight; they are owed still, and safe to repeat).
            if renewed.elapsed() >= RENEW_EVERY {
                let now = idbridge_core::clock::now();
                if !self.store.try_lease(&self.consumer, &self.instance, now, now + LEASE).await? {
                    tracing::warn!(
                        connector = self.config.name,
                        "connector lease lost during a batch; another instance goes on"
                    );
                    return Ok(unexplained);
                }
                renewed = tokio::time::Instant::now();
            }
        }
        Ok(unexplained)
    }

    async fn record(
        &self,
        mut link: ConnectorLink,
        outcome: Result<Pushed, PortalError>,
        state: &mut RunnerState,
    ) -> DomainResult<()> {
        let now = idbridge_core::clock::now();
        link.updated_at = now;
        match outcome {
            Ok(Pushed::Done { remote_id, version, document }) => {
                link.remote_active = document.as_ref().is_some_and(|d| self.portal.is_active(d));
                link.remote_id = remote_id;
                link.remote_version = version;
                link.pushed = document;
                link.done = link.wanted;
                link.verify = false;
                link.state = LinkState::Synced;
                link.attempts = 0;
                link.last_error = None;
                metrics::counter!("idbridge_connector_pushes_total", "connector" => self.config.name.clone(), "outcome" => "pushed").increment(1);
                state.health.consecutive_failures = 0;
                state.health.last_success_at = Some(now);
                if state.health.quarantined_since.take().is_some() {
                    tracing::info!(connector = self.config.name, tenant = %self.tenant, "connector out of quarantine");
                    state.recovered = true;
                }
            }
            Ok(Pushed::Unexplained { remote_id, version }) => {
                // What idbridge last pushed stays: it is what makes the disable unexplained,
                // should the guard ask again after a rejection and a resync.
                link.remote_id = Some(remote_id);
                link.remote_version = version;
                link.remote_active = true;
                link.verify = false;
                link.state = LinkState::Unexplained;
                link.last_error =
                    Some("a disable of a user active in the portal, waiting for the deletion guard".into());
            }
            Ok(Pushed::Conflict(reason)) => {
                tracing::warn!(connector = self.config.name, individual = %link.individual_id, reason, "connector conflict parked");
                link.done = link.wanted;
                link.state = LinkState::Conflict;
                link.last_error = Some(reason);
                metrics::counter!("idbridge_connector_pushes_total", "connector" => self.config.name.clone(), "outcome" => "conflict").increment(1);
            }
            Err(error) => {
                let reason = error.reason();
                link.attempts = link.attempts.saturating_add(1);
                link.last_error = Some(reason.clone());
                // A portal that is down or slow (timeouts, 5xx, 429) is the connector's
                // trouble, not this person's: retried until it answers (quarantine slows
                // it down meanwhile), so an outage of any length ends with everyone
                // caught up. A refusal of this person's push counts towards giving up.
                let transient = matches!(error, PortalError::Transient { .. });
                if !transient && link.attempts >= self.config.max_attempts {
                    tracing::error!(connector = self.config.name, individual = %link.individual_id, attempts = link.attempts, reason, "connector gave up; link dead");
                    link.state = LinkState::Dead;
                } else {
                    link.state = LinkState::Retrying;
                    let mut wait = idbridge_core::connector::backoff(link.attempts, jitter());
                    if let PortalError::Transient { retry_after: Some(after), .. } = &error {
                        wait = wait.max(jiff::SignedDuration::try_from(*after).unwrap_or(wait));
                    }
                    link.next_attempt_at = now + wait;
                    tracing::warn!(connector = self.config.name, individual = %link.individual_id, attempt = link.attempts, reason, "connector push failed; retrying");
                }
                metrics::counter!("idbridge_connector_pushes_total", "connector" => self.config.name.clone(), "outcome" => "failed").increment(1);
                if let PortalError::Transient { retry_after, .. } = &error {
                    if let Some(after) = retry_after {
                        // The portal asked everyone to wait, not just this request.
                        state.paused_until = Some(tokio::time::Instant::now() + *after);
                    }
                    state.health.consecutive_failures = state.health.consecutive_failures.saturating_add(1);
                    state.health.last_error = Some(reason);
                    if state.health.consecutive_failures >= QUARANTINE_AFTER && state.health.quarantined_since.is_none()
                    {
                        tracing::error!(connector = self.config.name, tenant = %self.tenant, failures = state.health.consecutive_failures, "connector quarantined: one probe every 30 s until the portal answers");
                        state.health.quarantined_since = Some(now);
                    }
                }
            }
        }
        self.store.finish_connector_push(&link).await
    }

    /// Health written when it changed; link counts and quarantine as metrics now and then.
    async fn publish(&self, state: &mut RunnerState) -> DomainResult<()> {
        let changed = state.health_written.as_ref().is_none_or(|written| {
            written.quarantined_since != state.health.quarantined_since
                || written.last_error != state.health.last_error
                || written.last_drift_repair_at != state.health.last_drift_repair_at
                || written.config_digest != state.health.config_digest
                || (written.consecutive_failures == 0) != (state.health.consecutive_failures == 0)
                || written.consecutive_failures / QUARANTINE_AFTER
                    != state.health.consecutive_failures / QUARANTINE_AFTER
                || written.last_success_at.is_none() != state.health.last_success_at.is_none()
                || state
                    .health
                    .last_success_at
                    .zip(written.last_success_at)
                    .is_some_and(|(now, then)| now.duration_since(then) > jiff::SignedDuration::from_secs(10))
        });
        if changed {
            self.store.put_connector_health(self.tenant, &self.config.name, &state.health).await?;
            state.health_written = Some(state.health.clone());
        }
        let labels = [("tenant", self.tenant.to_string()), ("connector", self.config.name.clone())];
        metrics::gauge!("idbridge_connector_quarantined", &labels).set(if state.health.quarantined_since.is_some() {
            1.0
        } else {
            0.0
        });
        // Counting the links reads the connector's rows: now and then, not every pass.
        let due = state.counts_published.is_none_or(|at| at.elapsed() >= Duration::from_secs(15));
        if due {
            let counts = self.store.connector_link_counts(self.tenant, &self.config.name).await?;
            metrics::gauge!("idbridge_connector_owed", &labels).set(counts.owed as f64);
            metrics::gauge!("idbridge_connector_dead", &labels).set(counts.dead as f64);
            metrics::gauge!("idbridge_connector_conflicts", &labels).set(counts.conflict as f64);
            state.counts_published = Some(tokio::time::Instant::now());
        }
        Ok(())
    }
}

/// Runs every tenant's connectors until the process stops: started when `apply` adds
/// one, restarted when its configuration changes, stopped when it is removed.
pub async fn supervise(store: Arc<dyn Store>, instance: String, stopping: Stopping) {
    let mut running: HashMap<(TenantId, String), (ConnectorConfig, Guard, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let mut refused: HashMap<(TenantId, String), String> = HashMap::new();
    loop {
        match store.list_tenants().await {
            Ok(tenants) => {
                let mut wanted = std::collections::HashSet::new();
                for tenant in &tenants {
                    for config in &tenant.policy.connectors {
                        let key = (tenant.id, config.name.clone());
                        wanted.insert(key.clone());
                        let guard = Guard::of(&tenant.policy);
                        if running
                            .get(&key)
                            .is_some_and(|(c, g, task)| c == config && *g == guard && !task.is_finished())
                        {
                            continue;
                        }
                        if let Some((_, _, task)) = running.remove(&key) {
                            task.abort();
                        }
                        match portal_for(config, &tenant.slug) {
                            Ok(portal) => {
                                refused.remove(&key);
                                let runner = ConnectorRunner::new(
                                    store.clone(),
                                    tenant,
                                    config.clone(),
                                    portal,
                                    instance.clone(),
                                );
                                let task = tokio::spawn(runner.run(stopping.clone()));
                                running.insert(key, (config.clone(), guard, task));
                            }
                            Err(reason) => {
                                if refused.get(&key) != Some(&reason) {
                                    tracing::error!(tenant = %tenant.slug, connector = config.name, reason, "connector cannot start");
                                    refused.insert(key, reason);
                                }
                            }
                        }
                    }
                }
                running.retain(|key, (_, _, task)| {
                    let keep = wanted.contains(key);
                    if !keep {
                        task.abort();
                    }
                    keep
                });
            }
            Err(e) => tracing::error!(error = %e, "cannot list tenants for their connectors"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SUPERVISE_EVERY) => {}
            _ = stopping.requested() => return,
        }
    }
}

/// A connector as `connector list` and `connector status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorStatus {
    pub name: String,
    pub kind: &'static str,
    pub target: String,
    pub links: LinkCounts,
    pub health: Option<ConnectorHealth>,
    /// Links that need an operator's eye: parked conflicts, dead ones, retrying ones.
    pub problems: Vec<LinkProblem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkProblem {
    pub individual_id: IndividualId,
    pub state: &'static str,
    pub attempts: u32,
    pub remote_id: Option<String>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<jiff::Timestamp>,
}

/// The operator's connector use cases (CLI `connector`, admin API).
pub struct Connectors {
    store: Arc<dyn Store>,
}

impl Connectors {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    async fn tenant(&self, slug: &TenantSlug) -> DomainResult<Tenant> {
        self.store
            .get_tenant(slug)
            .await?
            .ok_or_else(|| DomainError::NotFound { kind: "tenant", key: slug.to_string() })
    }

    fn config<'t>(tenant: &'t Tenant, name: &str) -> DomainResult<&'t ConnectorConfig> {
        tenant
            .policy
            .connectors
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| DomainError::NotFound { kind: "connector", key: format!("{}/{name}", tenant.slug) })
    }

    /// The tenant's connectors (or the one named), with `problems` up to `problems` each.
    pub async fn status(
        &self,
        slug: &TenantSlug,
        name: Option<&str>,
        problems: u32,
    ) -> DomainResult<Vec<ConnectorStatus>> {
        let tenant = self.tenant(slug).await?;
        let configs: Vec<&ConnectorConfig> = match name {
            Some(name) => vec![Self::config(&tenant, name)?],
            None => tenant.policy.connectors.iter().collect(),
        };
        let mut out = Vec::new();
        for config in configs {
            let links = self.store.connector_link_counts(tenant.id, &config.name).await?;
            let health = self.store.get_connector_health(tenant.id, &config.name).await?;
            let mut listed = Vec::new();
            for state in
                [LinkState::Held, LinkState::Unexplained, LinkState::Conflict, LinkState::Dead, LinkState::Retrying]
            {
                let left = problems.saturating_sub(listed.len() as u32);
                if left == 0 {
                    break;
                }
                for link in self.store.list_connector_links(tenant.id, &config.name, state, None, left).await? {
                    listed.push(LinkProblem {
                        individual_id: link.individual_id,
                        state: link.state.as_str(),
                        attempts: link.attempts,
                        remote_id: link.remote_id,
                        last_error: link.last_error,
                        next_attempt_at: (link.state == LinkState::Retrying).then_some(link.next_attempt_at),
                    });
                }
            }
            let kind = config.kind()?;
            let (kind, target) = (kind.as_str(), kind.target().to_owned());
            out.push(ConnectorStatus { name: config.name.clone(), kind, target, links, health, problems: listed });
        }
        Ok(out)
    }

    /// Decides a change set the deletion guard held for a connector (`changes approve` and
    /// `reject` come here for such a set): approved, its disables are pushed now; rejected,
    /// they are parked until a resync.
    pub async fn decide_held(
        &self,
        tenant: &Tenant,
        connector: &str,
        id: uuid::Uuid,
        approve: bool,
        ctx: &AuditContext,
    ) -> DomainResult<u64> {
        let set = self
            .store
            .get_change_set_header(tenant.id, id)
            .await?
            .ok_or_else(|| DomainError::not_found("change set", id))?;
        if set.status != idbridge_core::changeset::ChangeSetStatus::Pending {
            return Err(DomainError::Rejected(format!("change set {id} is already {}", set.status.as_str())));
        }
        let now = idbridge_core::clock::now();
        let note =
            format!("the disables held in change set {id} were rejected; idbridge connector resync to try again");
        let released =
            self.store.release_connector_disables(tenant.id, connector, LinkState::Held, approve, &note, now).await?;
        let (status, action, result) = if approve {
            (
                idbridge_core::changeset::ChangeSetStatus::Approved,
                "change_set.approved",
                format!("{released} disables released to connector {connector}"),
            )
        } else {
            (
                idbridge_core::changeset::ChangeSetStatus::Rejected,
                "change_set.rejected",
                format!("{released} disables parked at connector {connector}"),
            )
        };
        let audit = ctx.record(
            Some(tenant.id),
            "change_set",
            id.to_string(),
            action,
            None,
            Some(serde_json::json!({ "result": result })),
        );
        let decision = idbridge_core::changeset::ChangeSetDecision {
            status,
            by: format!("{}:{}", ctx.actor.kind.as_str(), ctx.actor.id),
            at: now,
            result,
        };
        self.store.decide_change_set(tenant.id, id, &decision, &audit).await?;
        Ok(released)
    }

    /// Mints a Yeti customer token for an active individual (the Portal API, for a portal
    /// that signed the individual in): through the tenant's Yeti connector (the named one,
    /// or its only one), with the Yeti profile its access profile maps to. The token is
    /// answered, never stored or logged; the minting is audited.
    pub async fn mint_yeti_token(
        &self,
        slug: &TenantSlug,
        individual: &Individual,
        connector: Option<&str>,
        ctx: &AuditContext,
    ) -> DomainResult<CustomerToken> {
        let tenant = self.tenant(slug).await?;
        if !tenant.enabled {
            // Nobody of a disabled tenant may sign in; nor get a token that outlives it.
            return Err(DomainError::Forbidden(format!("tenant {} is disabled", tenant.slug)));
        }
        let yeti: Vec<&ConnectorConfig> = tenant
            .policy
            .connectors
            .iter()
            .filter(|c| c.yeti.is_some() && connector.is_none_or(|n| n == c.name))
            .collect();
        let config = match yeti.as_slice() {
            [one] => *one,
            [] => {
                return Err(DomainError::not_found(
                    "Yeti connector",
                    format!("{}/{}", tenant.slug, connector.unwrap_or("*")),
                ));
            }
            _ => return Err(DomainError::invalid("connector", "the tenant has several Yeti connectors: name one")),
        };
        let portal = yeti_portal(config, &tenant.slug).map_err(DomainError::Unavailable)?;
        let token = portal.mint_token(individual).await.map_err(DomainError::Rejected)?;
        self.store
            .append_audit(&ctx.record(
                Some(tenant.id),
                "individual",
                individual.id.to_string(),
                "connector.customer_token",
                None,
                Some(serde_json::json!({
                    "connector": config.name,
                    "access_profile_id": token.access_profile_id,
                    "account_ids": token.account_ids,
                    "expires_at": token.expires_at,
                })),
            ))
            .await?;
        Ok(token)
    }

    /// Quarantined connectors of every tenant, for `/readyz`: a portal that keeps failing
    /// does not make idbridge unready, but on-call should see it.
    pub async fn quarantined(&self) -> DomainResult<Vec<Value>> {
        let quarantined = self.store.quarantined_connectors().await?;
        if quarantined.is_empty() {
            return Ok(Vec::new());
        }
        let slugs: HashMap<TenantId, String> =
            self.store.list_tenants().await?.into_iter().map(|t| (t.id, t.slug.to_string())).collect();
        Ok(quarantined
            .into_iter()
            .map(|(tenant, connector, since)| {
                serde_json::json!({
                    "tenant": slugs.get(&tenant).cloned().unwrap_or_else(|| tenant.to_string()),
                    "connector": connector,
                    "quarantined_since": since,
                })
            })
            .collect())
    }

    /// Every individual of the tenant pushed again, each remote object read back first
    /// (conflicts and dead links included). Answers how many links owe a push.
    pub async fn resync(&self, slug: &TenantSlug, name: &str, ctx: &AuditContext) -> DomainResult<u64> {
        let tenant = self.tenant(slug).await?;
        Self::config(&tenant, name)?;
        let owed = self.store.owe_connector_repair(tenant.id, name, idbridge_core::clock::now()).await?;
        self.store
            .append_audit(&ctx.record(
                Some(tenant.id),
                "connector",
                name,
                "connector.resync",
                None,
                Some(serde_json::json!({ "owed": owed })),
            ))
            .await?;
        Ok(owed)
    }
}
