//! Connects the sources to the reconciliation service: the users a SCIM request affects,
//! a directory run's changed people (`directory_sync`), or everyone after a rule change
//! become source persons — merged with what the other sources linked to the same
//! individual say — go through the tenant's mapping pipeline, and the decisions form one
//! change set that `core::reconcile::Reconciler` — the only writer of individuals —
//! applies, or holds when the mass-deprovision guard says so.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use idbridge_core::audit::AuditContext;
use idbridge_core::changeset::{ChangeSet, HeldChangeSet, HeldDecision, PlannedWrite};
use idbridge_core::individual::{Individual, SourceKind, SourceLink};
use idbridge_core::mapping::Pipeline;
use idbridge_core::ports::{IntentQueue, LoginRecordStore, ScimChanges, ScimRecordStore, SourceChanges};
use idbridge_core::reconcile::{CommitReport, Known, Plan, Reconciler, Replan, SourcePerson, Submitted, mapping_input};
use idbridge_core::source_record::{ScimKind, ScimMember, ScimQuery, ScimRecord};
use idbridge_core::tenant::Tenant;
use idbridge_core::{DomainError, DomainResult};
use uuid::Uuid;

use crate::mapping::MappingService;
use crate::scim_person::SCIM_CONNECTION;

/// Up to this many users are reconciled before the SCIM response; more (a big group
/// renamed or emptied) are reconciled in the background.
const INLINE_LIMIT: usize = 20;
/// Users planned per round trip when re-mapping a whole tenant.
const PAGE: u32 = 1000;

#[derive(Clone)]
pub struct SourceReconciliation {
    pub mapping: MappingService,
    /// The one writer of individuals; adapters reach it only through the use cases here.
    pub(crate) reconciler: Reconciler,
    pub records: Arc<dyn ScimRecordStore>,
    /// What directory sources said at their last complete run.
    pub directory: Arc<dyn idbridge_core::ports::DirectoryStore>,
    /// Background batches run one at a time, so that re-mapping a 100,000-member group
    /// does not crowd out the requests being served.
    pub background: Arc<tokio::sync::Semaphore>,
    /// The durable intents source writes record (`core::intent`).
    pub intents: Arc<dyn IntentQueue>,
    /// Wakes the intent worker when the fast path left intents behind.
    pub wake: Arc<tokio::sync::Notify>,
    /// What each person's last sign-in said.
    pub logins: Arc<dyn LoginRecordStore>,
    /// Deletes settled intents in batches, off the request path.
    pub clearer: crate::intent_clearer::Clearer,
    /// Directory runs end (recorded as cancelled, lease released) when this fires.
    pub stopping: crate::stopping::Stopping,
}

/// What reconciling some people did, and who of them is not settled yet (their write was
/// skipped because the individual changed meanwhile, or failed): their intents stay.
#[derive(Debug)]
pub struct Reconciled {
    pub submitted: Submitted,
    pub unsettled: Vec<SourceLink>,
}

impl Reconciled {
    fn of(set: &ChangeSet, submitted: Submitted) -> Self {
        let unsettled = match &submitted {
            Submitted::Applied(report) if !(report.skipped.is_empty() && report.failed.is_empty()) => {
                let not_done: std::collections::HashSet<_> =
                    report.skipped.iter().chain(report.failed.iter().map(|(id, _)| id)).collect();
                set.writes
                    .iter()
                    .filter(|w| not_done.contains(&w.after.id))
                    .flat_map(|w| w.after.links.iter().cloned())
                    .collect()
            }
            _ => Vec::new(),
        };
        Self { submitted, unsettled }
    }
}

impl SourceReconciliation {
    /// `reconciler` is the one writer of individuals (built by the composition root from
    /// the concrete store); everything else is read through `ports`.
    pub fn new(ports: &crate::Ports, reconciler: Reconciler, mapping: MappingService) -> Self {
        Self {
            mapping,
            reconciler,
            records: ports.records.clone(),
            directory: ports.directory.clone(),
            background: Arc::new(tokio::sync::Semaphore::new(1)),
            intents: ports.intents.clone(),
            wake: Arc::new(tokio::sync::Notify::new()),
            logins: ports.logins.clone(),
            clearer: crate::intent_clearer::Clearer::start(ports.intents.clone()),
            stopping: crate::stopping::Stopping::never(),
        }
    }

    /// Plans and submits one SCIM request's changes as one change set.
    pub async fn reconcile(
        &self,
        tenant: &Tenant,
        changes: ScimChanges,
        ctx: &AuditContext,
    ) -> DomainResult<Reconciled> {
        let set = self.plan_scim(tenant, &changes).await?;
        let submitted = self.reconciler.submit(tenant, set.clone(), ctx).await?;
        Ok(Reconciled::of(&set, submitted))
    }

    /// What the SCIM users of `changes` need now: a user whose record is gone (deleted by
    /// this or a later request) is deprovisioned.
    pub async fn plan_scim(&self, tenant: &Tenant, changes: &ScimChanges) -> DomainResult<ChangeSet> {
        let pipeline = self.mapping.pipeline(tenant).await?;
        let mut set = ChangeSet::new(changes.origin.clone());
        let mut found: HashMap<Uuid, ScimRecord> = self
            .records
            .get_scim_many(tenant.id, ScimKind::User, &changes.changed)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let mut records = Vec::with_capacity(changes.changed.len());
        let mut gone = changes.removed.clone();
        let mut taken = std::collections::HashSet::with_capacity(changes.changed.len());
        for id in &changes.changed {
            match found.remove(id) {
                Some(record) => {
                    taken.insert(*id);
                    records.push(record);
                }
                // Named twice: planned once.
                None if taken.contains(id) => {}
                // Deleted by a later operation of the same request.
                None => gone.push(*id),
            }
        }
        for chunk in records.chunks(PAGE as usize) {
            self.plan_records(tenant, &pipeline, chunk.to_vec(), &mut set).await?;
        }
        let ids: Vec<String> = gone.iter().map(Uuid::to_string).collect();
        for individual in self
            .reconciler
            .store()
            .find_individuals_by_links(tenant.id, SourceKind::Scim, SCIM_CONNECTION, &ids)
            .await?
        {
            if let Plan::Write(w) = self.reconciler.plan_removed(tenant, Some(individual)) {
                set.writes.push(*w);
            }
        }
        Ok(set)
    }

    /// Re-decides people named by their source identities, of any kind, as one change
    /// set (the intent worker; `origin` says why).
    pub async fn redecide(
        &self,
        tenant: &Tenant,
        people: &[SourceLink],
        origin: &str,
        ctx: &AuditContext,
    ) -> DomainResult<Reconciled> {
        let set = self.plan_now(tenant, people, origin).await?;
        let submitted = self.reconciler.submit(tenant, set.clone(), ctx).await?;
        Ok(Reconciled::of(&set, submitted))
    }

    /// What these people need now, from everything their sources say.
    pub async fn plan_now(&self, tenant: &Tenant, people: &[SourceLink], origin: &str) -> DomainResult<ChangeSet> {
        let mut scim: Vec<Uuid> = Vec::new();
        let mut other: Vec<SourceLink> = Vec::new();
        for person in people {
            match (person.source, person.external_id.parse::<Uuid>()) {
                (SourceKind::Scim, Ok(id)) => scim.push(id),
                // Not a SCIM id: nothing can be owed for it.
                (SourceKind::Scim, Err(_)) => {}
                _ => other.push(person.clone()),
            }
        }
        scim.sort_unstable();
        scim.dedup();
        other.sort();
        other.dedup();
        let mut set = self.plan_scim(tenant, &ScimChanges::changed(origin, scim)).await?;
        if !other.is_empty() {
            merge(&mut set, self.plan_links(tenant, &other, origin).await?);
        }
        // A person known to two sources may be planned twice: once is enough.
        let mut seen = std::collections::HashSet::new();
        set.writes.retain(|w| seen.insert(w.after.id));
        Ok(set)
    }

    /// Re-decides people of sources other than SCIM by their identities, from what each
    /// source said last (a directory's stored record), merged with the person's other
    /// sources. A directory person whose record is gone (a full run removed it) is
    /// deprovisioned.
    pub async fn plan_links(&self, tenant: &Tenant, links: &[SourceLink], origin: &str) -> DomainResult<ChangeSet> {
        let pipeline = self.mapping.pipeline(tenant).await?;
        let known = Arc::new(self.reconciler.known().await?);
        let store = self.reconciler.store();
        let mut people = Vec::new();
        let mut gone = Vec::new();
        for link in links {
            let current =
                store.find_individual_by_link(tenant.id, link.source, &link.connection, &link.external_id).await?;
            let person = match link.source {
                SourceKind::Ldap => {
                    self.directory.directory_person(tenant.id, &link.connection, &link.external_id).await?
                }
                // A login decides only an individual the IdP alone vouches for (one made just
                // in time); SCIM and directory people follow their provisioning sources, and
                // nobody is created outside a login.
                // A missing record (an individual made before logins were kept) is left
                // as it is until the person signs in again — never taken as "gone".
                SourceKind::Oidc => match &current {
                    Some(i) if login_only(i) => match self.logins.login_record(tenant.id, link).await? {
                        Some((person, _)) => Some(person),
                        None => continue,
                    },
                    _ => continue,
                },
                // A hand-made individual has no source to re-read; SCIM people go through
                // `reconcile`.
                SourceKind::Scim | SourceKind::Manual => continue,
            };
            match person {
                Some(person) => people.push((person, current)),
                None => gone.extend(current),
            }
        }
        let people = self.with_linked_sources(tenant, people).await?;
        let mut set = self.plan_people(tenant, &pipeline, known, people).await.map_err(task_failed)?;
        set.origin = origin.to_owned();
        for individual in gone {
            if let Plan::Write(w) = self.reconciler.plan_removed(tenant, Some(individual)) {
                set.writes.push(*w);
            }
        }
        Ok(set)
    }

    /// Re-decides every person of the tenant, from every source kind (after a rule or
    /// policy change, on an operator's request, and as the convergence sweep), as one
    /// change set: only the differences from the stored individuals are written.
    pub async fn remap(&self, tenant: &Tenant, origin: &str, ctx: &AuditContext) -> DomainResult<Submitted> {
        let pipeline = self.mapping.pipeline(tenant).await?;
        let known = Arc::new(self.reconciler.known().await?);
        let mut set = ChangeSet::new(origin);
        let mut people = self.people(tenant);
        // While one page is decided and planned on a blocking thread, the next is read.
        let mut planning: Option<tokio::task::JoinHandle<ChangeSet>> = None;
        while let Some(page) = people.next_page().await? {
            if let Some(previous) = planning.take() {
                merge(&mut set, previous.await.map_err(task_failed)?);
            }
            planning = Some(self.plan_people(tenant, &pipeline, known.clone(), page));
        }
        if let Some(last) = planning {
            merge(&mut set, last.await.map_err(task_failed)?);
        }
        self.reconciler.submit(tenant, set, ctx).await
    }

    /// A page of a directory source's people as its last complete run saw them, after an
    /// external id, merged with their other sources — without those a SCIM user stands
    /// for (they are decided with the SCIM user) — and where the next page starts.
    pub async fn directory_people_page(
        &self,
        tenant: &Tenant,
        source: &idbridge_core::directory::LdapSource,
        after: Option<&str>,
        limit: u32,
    ) -> DomainResult<(Vec<(SourcePerson, Option<Individual>)>, Option<String>)> {
        let chunk = self.directory.directory_persons_after(tenant.id, &source.name, after, limit).await?;
        let next = (chunk.len() >= limit as usize).then(|| chunk.last().map(|p| p.link.external_id.clone())).flatten();
        if chunk.is_empty() {
            return Ok((Vec::new(), None));
        }
        let ids: Vec<String> = chunk.iter().map(|p| p.link.external_id.clone()).collect();
        let mut existing =
            individuals_by_link(self.reconciler.store().as_ref(), tenant, SourceKind::Ldap, &source.name, &ids).await?;
        let people: Vec<_> = chunk
            .into_iter()
            .filter_map(|p| {
                let current = existing.remove(&p.link.external_id);
                let by_scim = current.as_ref().is_some_and(|i| i.links.iter().any(|l| l.source == SourceKind::Scim));
                (!by_scim).then_some((p, current))
            })
            .collect();
        Ok((self.with_linked_sources(tenant, people).await?, next))
    }

    /// Every person of the tenant with what all their sources say (`People`).
    pub fn people(&self, tenant: &Tenant) -> People<'_> {
        People { rec: self, tenant: tenant.clone(), phase: Phase::Scim(None) }
    }

    /// Plans a page of SCIM users (reads, then decisions and plans off the runtime).
    async fn plan_records(
        &self,
        tenant: &Tenant,
        pipeline: &Pipeline,
        records: Vec<ScimRecord>,
        set: &mut ChangeSet,
    ) -> DomainResult<()> {
        let people = self.fetch(tenant, records).await?;
        let known = Arc::new(self.reconciler.known().await?);
        let planned = self.plan_people(tenant, pipeline, known, people).await.map_err(task_failed)?;
        merge(set, planned);
        Ok(())
    }

    async fn fetch(
        &self,
        tenant: &Tenant,
        records: Vec<ScimRecord>,
    ) -> DomainResult<Vec<(SourcePerson, Option<Individual>)>> {
        let people = scim_people(self.reconciler.store().as_ref(), self.records.as_ref(), tenant, records).await?;
        self.with_linked_sources(tenant, people).await
    }

    /// A person whose individual other sources also know is decided on everything they
    /// say: the union of their groups, and inactive when any source says inactive. (Each
    /// source alone would otherwise undo what the other granted.)
    pub async fn with_linked_sources(
        &self,
        tenant: &Tenant,
        people: Vec<(SourcePerson, Option<Individual>)>,
    ) -> DomainResult<Vec<(SourcePerson, Option<Individual>)>> {
        let mut out = Vec::with_capacity(people.len());
        for (mut person, existing) in people {
            for link in existing.iter().flat_map(|i| i.links.iter()).filter(|l| **l != person.link) {
                let other = match link.source {
                    SourceKind::Scim => {
                        let Ok(id) = link.external_id.parse::<Uuid>() else { continue };
                        match self.records.get_scim(tenant.id, ScimKind::User, id).await? {
                            Some(record) => {
                                let groups = self.records.list_scim_groups_of(tenant.id, id).await?;
                                Some(crate::scim_person::from_record(&record, &groups))
                            }
                            None => None,
                        }
                    }
                    SourceKind::Ldap => {
                        self.directory.directory_person(tenant.id, &link.connection, &link.external_id).await?
                    }
                    SourceKind::Oidc | SourceKind::Manual => None,
                };
                let Some(other) = other else { continue };
                // Who the person is (login, email, names) comes from the highest-ranked
                // source — SCIM, then LDAP — so sources never take turns renaming them.
                if rank(other.link.source) < rank(person.link.source) {
                    person.facts.login.clone_from(&other.facts.login);
                    person.facts.emails.clone_from(&other.facts.emails);
                    person.email.clone_from(&other.email);
                    person.given_name.clone_from(&other.given_name);
                    person.family_name.clone_from(&other.family_name);
                    person.display_name.clone_from(&other.display_name);
                }
                for group in other.groups {
                    if !person.groups.iter().any(|g| g.source == group.source && g.id == group.id) {
                        person.groups.push(group);
                    }
                }
                person.active &= other.active;
                person.activation = person.activation.or(other.activation);
                person.expiration = person.expiration.or(other.expiration);
                person.time_zone = person.time_zone.or(other.time_zone);
            }
            out.push((person, existing));
        }
        Ok(out)
    }

    /// Decides and plans people off the async runtime: plugins block, and a page of
    /// plans is CPU work the next page's reads can overlap with.
    pub(crate) fn plan_people(
        &self,
        tenant: &Tenant,
        pipeline: &Pipeline,
        known: Arc<Known>,
        people: Vec<(SourcePerson, Option<Individual>)>,
    ) -> tokio::task::JoinHandle<ChangeSet> {
        let (reconciler, pipeline, tenant) = (self.reconciler.clone(), pipeline.clone(), tenant.clone());
        tokio::task::spawn_blocking(move || {
            let inputs: Vec<_> =
                people.iter().map(|(person, current)| mapping_input(&tenant, person, current.as_ref())).collect();
            let decisions = pipeline.decide_many(&inputs);
            let mut set = ChangeSet::default();
            for ((person, current), decision) in people.into_iter().zip(decisions) {
                let subject = current.as_ref().map_or_else(|| person.link.external_id.clone(), |i| i.id.to_string());
                match reconciler.plan_present(&tenant, &person, current, &decision, &known) {
                    Ok(Plan::Write(w)) => set.writes.push(*w),
                    Ok(Plan::Held(reason)) => {
                        set.held.push(HeldDecision { subject, source_id: person.link.external_id.clone(), reason })
                    }
                    Ok(Plan::Unchanged | Plan::NoAccess) => {}
                    // One person's bad data (an invalid date or zone from the source) must
                    // not stop everybody else's reconciliation.
                    Err(e) => set.held.push(HeldDecision {
                        subject,
                        source_id: person.link.external_id.clone(),
                        reason: e.to_string(),
                    }),
                }
            }
            set
        })
    }

    /// Reconciles one request's changes and settles the intents it recorded when every
    /// person came out right; otherwise the intents stay for the worker
    /// (`intent_worker`), which takes them after `intent::FAST_PATH_GRACE`.
    async fn run(self, tenant: Tenant, changes: ScimChanges, ctx: AuditContext) {
        let intents = changes.intents.clone();
        let result = self.reconcile(&tenant, changes, &ctx).await;
        if let Ok(Reconciled { unsettled, .. }) = &result
            && unsettled.is_empty()
        {
            self.clearer.clear(intents);
        }
        if !matches!(&result, Ok(Reconciled { unsettled, .. }) if unsettled.is_empty()) {
            self.wake.notify_one();
        }
        match result.map(|r| r.submitted) {
            Ok(Submitted::Applied(report)) => {
                if !report.failed.is_empty() {
                    tracing::warn!(tenant = %tenant.slug, failed = ?report.failed, "some individuals could not be written");
                }
                tracing::debug!(tenant = %tenant.slug, written = report.written.len(), "reconciled");
            }
            Ok(Submitted::AwaitingApproval { id, summary }) => tracing::warn!(
                tenant = %tenant.slug,
                change_set = %id,
                takes_access = summary.takes_access,
                holding_access = summary.holding_access,
                "mass deprovision held for approval: idbridge changes show {id}"
            ),
            Err(e) => tracing::warn!(
                tenant = %tenant.slug,
                error = %e,
                "reconciliation failed; the recorded intents are retried"
            ),
        }
    }
}

#[async_trait]
impl Replan for SourceReconciliation {
    async fn replan(&self, tenant: &Tenant, set: &HeldChangeSet) -> DomainResult<Vec<PlannedWrite>> {
        let mut people: Vec<SourceLink> = set.writes.iter().flat_map(|w| w.links.iter().cloned()).collect();
        people.sort();
        people.dedup();
        Ok(self.plan_now(tenant, &people, &set.origin).await?.writes)
    }
}

#[async_trait]
impl SourceChanges for SourceReconciliation {
    async fn scim_changed(&self, tenant: &Tenant, changes: ScimChanges, ctx: &AuditContext) {
        if changes.changed.len() + changes.removed.len() <= INLINE_LIMIT {
            self.clone().run(tenant.clone(), changes, ctx.clone()).await;
        } else {
            let this = self.clone();
            let (tenant, ctx) = (tenant.clone(), ctx.clone());
            tokio::spawn(async move {
                let Ok(_turn) = this.background.clone().acquire_owned().await else { return };
                this.run(tenant, changes, ctx).await;
            });
        }
    }
}

/// The one enumeration of a tenant's people that re-maps, `mapping diff` and the
/// convergence sweep share, a page at a time: every SCIM user; then each directory
/// source's people as its last complete run saw them, unless a SCIM user already stands
/// for the same individual; then the people only sign-ins vouch for, from their last
/// login. Each comes merged with everything their individual's other sources say.
pub struct People<'a> {
    rec: &'a SourceReconciliation,
    tenant: Tenant,
    phase: Phase,
}

enum Phase {
    Scim(Option<i64>),
    Ldap(usize, Option<String>),
    Login(Option<(String, String)>),
    Done,
}

impl People<'_> {
    /// The next page, `None` after the last.
    pub async fn next_page(&mut self) -> DomainResult<Option<Vec<(SourcePerson, Option<Individual>)>>> {
        let (rec, tenant) = (self.rec, &self.tenant);
        let store = rec.reconciler.store();
        loop {
            match &self.phase {
                Phase::Scim(after) => {
                    let (page, next) = scim_page(rec.records.as_ref(), tenant, *after).await?;
                    self.phase = match next {
                        Some(next) => Phase::Scim(Some(next)),
                        None => Phase::Ldap(0, None),
                    };
                    if !page.is_empty() {
                        return rec.fetch(tenant, page).await.map(Some);
                    }
                }
                Phase::Ldap(index, after) => {
                    let Some(source) = tenant.policy.ldap.get(*index) else {
                        self.phase = Phase::Login(None);
                        continue;
                    };
                    let (page, next) = rec.directory_people_page(tenant, source, after.as_deref(), PAGE).await?;
                    self.phase = match next {
                        Some(next) => Phase::Ldap(*index, Some(next)),
                        None => Phase::Ldap(index + 1, None),
                    };
                    if !page.is_empty() {
                        return Ok(Some(page));
                    }
                }
                Phase::Login(after) => {
                    let records = rec.logins.login_records_after(tenant.id, after.as_ref(), PAGE).await?;
                    self.phase = match records.last() {
                        Some((last, _)) => {
                            Phase::Login(Some((last.link.connection.clone(), last.link.external_id.clone())))
                        }
                        None => Phase::Done,
                    };
                    if records.is_empty() {
                        continue;
                    }
                    let mut by_connection: HashMap<String, Vec<String>> = HashMap::new();
                    for (person, _) in &records {
                        by_connection
                            .entry(person.link.connection.clone())
                            .or_default()
                            .push(person.link.external_id.clone());
                    }
                    let mut existing: HashMap<SourceLink, Individual> = HashMap::new();
                    for (connection, subjects) in by_connection {
                        let found =
                            individuals_by_link(store.as_ref(), tenant, SourceKind::Oidc, &connection, &subjects)
                                .await?;
                        for (subject, individual) in found {
                            let link = SourceLink {
                                source: SourceKind::Oidc,
                                connection: connection.clone(),
                                external_id: subject,
                            };
                            existing.insert(link, individual);
                        }
                    }
                    // Only individuals made just in time follow their logins; nobody is
                    // created outside a login.
                    let people: Vec<_> = records
                        .into_iter()
                        .filter_map(|(person, _)| {
                            let current = existing.remove(&person.link).filter(login_only)?;
                            Some((person, Some(current)))
                        })
                        .collect();
                    return Ok(Some(people));
                }
                Phase::Done => return Ok(None),
            }
        }
    }
}

/// An individual only sign-ins vouch for (provisioned just in time): the last login's
/// claims and groups decide it.
/// The individuals linked to these ids at one source connection, by external id (one
/// round trip; an individual linked twice is listed under each id).
pub(crate) async fn individuals_by_link(
    store: &dyn idbridge_core::ports::Store,
    tenant: &Tenant,
    source: SourceKind,
    connection: &str,
    ids: &[String],
) -> DomainResult<HashMap<String, Individual>> {
    let mut out = HashMap::new();
    for individual in store.find_individuals_by_links(tenant.id, source, connection, ids).await? {
        for link in individual.links.iter().filter(|l| l.source == source && l.connection == connection) {
            out.insert(link.external_id.clone(), individual.clone());
        }
    }
    Ok(out)
}

pub fn login_only(individual: &Individual) -> bool {
    individual.links.iter().all(|l| l.source == SourceKind::Oidc)
}

/// Precedence of sources for who a person is: the IdP that provisions over SCIM first.
pub fn rank(source: SourceKind) -> u8 {
    match source {
        SourceKind::Scim => 0,
        SourceKind::Ldap => 1,
        SourceKind::Oidc => 2,
        SourceKind::Manual => 3,
    }
}

/// A page of SCIM users as source persons, with their groups and their individuals read
/// in one query each.
pub async fn scim_people(
    store: &dyn idbridge_core::ports::Store,
    records: &dyn ScimRecordStore,
    tenant: &Tenant,
    page: Vec<ScimRecord>,
) -> DomainResult<Vec<(SourcePerson, Option<Individual>)>> {
    if page.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = page.iter().map(|r| r.id).collect();
    let mut groups: HashMap<Uuid, Vec<ScimMember>> = HashMap::new();
    for (member, group) in records.list_scim_groups_of_many(tenant.id, &ids).await? {
        groups.entry(member).or_default().push(group);
    }
    let external: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let mut existing: HashMap<String, Individual> = HashMap::new();
    for individual in store.find_individuals_by_links(tenant.id, SourceKind::Scim, SCIM_CONNECTION, &external).await? {
        if let Some(link) = individual.links.iter().find(|l| l.source == SourceKind::Scim) {
            existing.insert(link.external_id.clone(), individual.clone());
        }
    }
    // A SCIM externalId that is the person's directory id links to the directory's
    // individual (policy.link_scim_external_id_to).
    let directory = tenant.policy.link_scim_external_id_to.as_deref();
    let mut people: Vec<(SourcePerson, Option<Individual>)> = page
        .iter()
        .map(|record| {
            let mut person = crate::scim_person::from_record(record, groups.get(&record.id).map_or(&[], Vec::as_slice));
            if let (Some(source), Some(external)) = (directory, &record.external_id) {
                person.also.push(idbridge_core::individual::SourceLink {
                    source: SourceKind::Ldap,
                    connection: source.to_owned(),
                    external_id: idbridge_core::directory::normalize_immutable_id(external),
                });
            }
            let current = existing.remove(&person.link.external_id);
            (person, current)
        })
        .collect();
    if let Some(source) = directory {
        let wanted: Vec<String> = people
            .iter()
            .filter(|(_, current)| current.is_none())
            .flat_map(|(p, _)| p.also.iter().map(|l| l.external_id.clone()))
            .collect();
        if !wanted.is_empty() {
            let by_alias = individuals_by_link(store, tenant, SourceKind::Ldap, source, &wanted).await?;
            for (person, current) in &mut people {
                if current.is_none() {
                    *current = person.also.iter().find_map(|l| by_alias.get(&l.external_id).cloned());
                }
            }
        }
    }
    Ok(people)
}

/// A page of a tenant's SCIM users after a position, and the position to continue from
/// (`None` after the last page).
pub async fn scim_page(
    records: &dyn ScimRecordStore,
    tenant: &Tenant,
    after: Option<i64>,
) -> DomainResult<(Vec<ScimRecord>, Option<i64>)> {
    let query = ScimQuery { after_seq: after, limit: Some(PAGE), ..ScimQuery::default() };
    let (page, _) = records.list_scim(tenant.id, ScimKind::User, &query).await?;
    let next = if page.len() < PAGE as usize { None } else { page.last().map(|r| r.seq) };
    Ok((page, next))
}

fn merge(set: &mut ChangeSet, page: ChangeSet) {
    set.writes.extend(page.writes);
    set.held.extend(page.held);
}

fn task_failed(e: tokio::task::JoinError) -> DomainError {
    DomainError::Internal(format!("planning task failed: {e}"))
}

/// What re-mapping one tenant did, for the CLI and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RemapSummary {
    pub tenant: String,
    pub written: usize,
    pub skipped: usize,
    pub failed: Vec<String>,
    /// Set when the mass-deprovision guard held the change set.
    pub awaiting_approval: Option<Uuid>,
    pub takes_access: u64,
}

impl RemapSummary {
    pub fn of(tenant: &Tenant, submitted: Submitted) -> Self {
        match submitted {
            Submitted::Applied(report) => Self {
                tenant: tenant.slug.to_string(),
                written: report.written.len(),
                skipped: report.skipped.len(),
                failed: report.failed.iter().map(|(id, e)| format!("{id}: {e}")).collect(),
                awaiting_approval: None,
                takes_access: 0,
            },
            Submitted::AwaitingApproval { id, summary } => Self {
                tenant: tenant.slug.to_string(),
                written: 0,
                skipped: 0,
                failed: Vec::new(),
                awaiting_approval: Some(id),
                takes_access: summary.takes_access,
            },
        }
    }

    pub fn describe(&self) -> String {
        match self.awaiting_approval {
            Some(id) => format!(
                "re-mapping {} would take access from {} individuals: held for approval as change set {id} \
                 (idbridge changes show {} {id})",
                self.tenant, self.takes_access, self.tenant
            ),
            None => format!(
                "re-mapped {}: {} individual(s) changed{}",
                self.tenant,
                self.written,
                if self.failed.is_empty() { String::new() } else { format!(", {} failed", self.failed.len()) }
            ),
        }
    }
}

impl SourceReconciliation {
    /// An operator's change by hand to one individual: dates, time zone, scopes added or
    /// removed (a re-map never undoes them). Group-scoped rights must be in the catalog.
    pub async fn change_by_hand(
        &self,
        tenant: &Tenant,
        individual: &Individual,
        change: &idbridge_core::reconcile::ManualChange,
        ctx: &AuditContext,
    ) -> DomainResult<idbridge_core::reconcile::Outcome> {
        change.add_scopes.check_rights_in(&self.mapping.operator.catalog().await?)?;
        self.reconciler.manual(tenant, individual, change, ctx).await
    }

    /// An individual an operator creates by hand (no directory behind it): a customer's
    /// first administrator, a person of a customer without an IdP.
    pub async fn create_by_hand(
        &self,
        tenant: &Tenant,
        new: idbridge_core::reconcile::NewIndividual,
        ctx: &AuditContext,
    ) -> DomainResult<Individual> {
        new.scopes.check_rights_in(&self.mapping.operator.catalog().await?)?;
        self.reconciler.create_manual(tenant, new, ctx).await
    }

    /// Drops a held change set: nobody changes.
    pub async fn reject(&self, tenant: &Tenant, id: Uuid, ctx: &AuditContext) -> DomainResult<()> {
        let set = self.held_header(tenant, id).await?;
        if let Some(connector) = crate::origin::connector_of_origin(&set.origin) {
            let connectors = crate::connectors::Connectors::new(self.reconciler.store().clone());
            connectors.decide_held(tenant, connector, id, false, ctx).await?;
            return Ok(());
        }
        self.reconciler.reject(tenant, id, ctx).await
    }

    async fn held_header(&self, tenant: &Tenant, id: Uuid) -> DomainResult<idbridge_core::changeset::ChangeSetHeader> {
        self.reconciler
            .store()
            .get_change_set_header(tenant.id, id)
            .await?
            .ok_or_else(|| DomainError::not_found("change set", id))
    }

    /// The lifecycle clock's pass (`scheduler`), on this service's reconciler.
    pub fn scheduler(&self) -> Reconciler {
        self.reconciler.clone()
    }

    pub async fn approve(&self, tenant: &Tenant, id: Uuid, ctx: &AuditContext) -> DomainResult<CommitReport> {
        // Which kind of set it is, without reading its writes.
        let set = self.held_header(tenant, id).await?;
        if let Some(connector) = crate::origin::connector_of_origin(&set.origin) {
            // Nothing of idbridge's individuals changes: the connector pushes the held
            // disables, as the individuals already are.
            let connectors = crate::connectors::Connectors::new(self.reconciler.store().clone());
            connectors.decide_held(tenant, connector, id, true, ctx).await?;
            return Ok(CommitReport::default());
        }
        let source = crate::origin::source_of_origin(&set.origin)
            .and_then(|name| tenant.policy.ldap.iter().find(|s| s.name == name));
        let Some(source) = source else {
            return self.reconciler.approve(tenant, id, self, ctx).await;
        };
        let outcome = self.approve_directory_run(tenant, source, id, ctx).await?;
        match (outcome.approved, outcome.run.error) {
            (Some(report), _) => Ok(report),
            (None, Some(error)) => Err(DomainError::Rejected(format!(
                "approving change set {id} reads {} again, and that failed: {error}; nothing was approved",
                source.name
            ))),
            (None, None) => Err(DomainError::Rejected(format!(
                "change set {id}: the new read of {} was held again; see idbridge changes list",
                source.name
            ))),
        }
    }

    /// Re-maps every tenant whose rules or policy an apply changed.
    pub async fn remap_after(
        &self,
        report: &crate::operator::ApplyReport,
        ctx: &AuditContext,
    ) -> DomainResult<Vec<RemapSummary>> {
        let mut out = Vec::new();
        if report.dry_run {
            return Ok(out);
        }
        for slug in &report.remap_tenants {
            let tenant = self.mapping.operator.tenant(slug).await?;
            let submitted = self.remap(&tenant, "rule or policy change", ctx).await?;
            out.push(RemapSummary::of(&tenant, submitted));
        }
        Ok(out)
    }
}
