//! LDAP sync runs: read the directory completely (`idbridge-ldap`), find the people whose
//! facts changed since the last complete run and the people gone, decide and plan them,
//! and submit one change set — guarded like every other. A failed read changes nothing;
//! deletions are found only by difference against a complete read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use idbridge_core::audit::AuditContext;
use idbridge_core::changeset::{ChangeSet, ChangeSetStatus};
use idbridge_core::directory::{LdapSource, RunStatus, RunSummary, SyncRun};
use idbridge_core::individual::{Individual, SourceKind};
use idbridge_core::ports::{DirectoryRecord, GroupsSeen, RecordDigest};
use idbridge_core::reconcile::{CHANGE_DIGEST_VERSION, CommitReport, Plan, Planned, SourcePerson, Submitted};
use idbridge_core::tenant::Tenant;
use idbridge_core::{DomainError, DomainResult};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::reconciliation::SourceReconciliation;

/// One line of a run's plan, for `--dry-run` and the operator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanLine {
    pub login: String,
    pub before: Option<String>,
    pub after: String,
    pub action: String,
    pub role: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncOutcome {
    pub run: SyncRun,
    pub plan: Vec<PlanLine>,
    /// When the run approved a held change set: what it applied.
    #[serde(skip)]
    pub approved: Option<CommitReport>,
}

/// What a run decided: its status, its plan, and what an approving run applied.
type Ran = (RunStatus, Vec<PlanLine>, Option<CommitReport>);

/// The bind password from the source's file or environment variable. Errors name the
/// setting, never the value.
pub fn bind_password(tenant: &Tenant, source: &LdapSource) -> DomainResult<Option<String>> {
    idbridge_core::secret::read_referenced(source.bind_password_file.as_deref(), source.bind_password_env.as_deref())
        .map_err(|e| {
            let (suffix, reason) = e.describe();
            DomainError::invalid(format!("tenant {} ldap {} bind_password{suffix}", tenant.slug, source.name), reason)
        })
}

/// What a run has seen so far, and who changed since the last complete run.
struct Found {
    seen: HashSet<String>,
    changed: Vec<SourcePerson>,
    /// What to store when the run is applied.
    upserts: Vec<DirectoryRecord>,
}

impl Found {
    fn consider(&mut self, source: &LdapSource, stored: &HashMap<String, RecordDigest>, person: SourcePerson) {
        self.seen.insert(person.link.external_id.clone());
        let digest = person.change_digest();
        match stored.get(&person.link.external_id) {
            Some(known) if known.digest == digest => {
                // Unchanged, but its record was written before groups were seen (or lists
                // them under another key): rewritten once, without re-planning the person.
                let groups_seen = groups_seen(source, &person);
                if known.groups_seen != groups_seen {
                    self.upserts.push(DirectoryRecord { digest, person, groups_seen });
                }
            }
            // A digest of the earlier encoding (SHA-256 of the person's JSON as that
            // version wrote it): unchanged when it still matches; the row is rewritten
            // with the new digest without re-planning the person.
            Some(known)
                if !known.digest.starts_with(CHANGE_DIGEST_VERSION) && known.digest == legacy_digest(&person) =>
            {
                self.upserts.push(DirectoryRecord { digest, groups_seen: groups_seen(source, &person), person });
            }
            // Its record is made when it is planned (`record`), not held twice meanwhile.
            _ => self.changed.push(person),
        }
    }
}

/// The record a run stores for a person it read.
fn record(source: &LdapSource, person: &SourcePerson) -> DirectoryRecord {
    DirectoryRecord { digest: person.change_digest(), person: person.clone(), groups_seen: groups_seen(source, person) }
}

/// How the source's groups list the person and a digest of what they gave it.
fn groups_seen(source: &LdapSource, person: &SourcePerson) -> Option<GroupsSeen> {
    idbridge_ldap::GroupIndex::member_key(source, person)
        .map(|key| GroupsSeen { key, digest: idbridge_ldap::GroupIndex::groups_digest(&person.groups) })
}

/// How runs before `CHANGE_DIGEST_VERSION` detected a change: SHA-256 of the person's
/// JSON as those versions wrote it.
fn legacy_digest(person: &SourcePerson) -> String {
    hex::encode(Sha256::digest(serde_json::to_string(person).unwrap_or_default().as_bytes()))
}

/// What one complete read of a source found.
struct Read {
    index: Arc<idbridge_ldap::GroupIndex>,
    found: Found,
    users: u64,
    high_water: Option<String>,
    /// The URL that served it.
    url: String,
    groups: u64,
    warnings: Vec<String>,
    /// In an incremental run, the known people the directory deleted since the mark
    /// (Active Directory's tombstones).
    deleted: HashSet<String>,
}

/// Why an attempt at reading a source failed: the directory (another URL may serve), or
/// idbridge's own records of it (the database).
enum ReadFailed {
    Directory(idbridge_ldap::ReadError),
    Records(DomainError),
}

impl From<idbridge_ldap::ReadError> for ReadFailed {
    fn from(e: idbridge_ldap::ReadError) -> Self {
        Self::Directory(e)
    }
}

/// What a run does with what it planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunMode {
    Apply,
    DryRun,
    /// Approving this held change set of the source: what the directory says now is
    /// applied in its place, without the guard.
    Approve(Uuid),
}

/// How long a run's lease lasts without renewal: a crashed runner's source is free again
/// within this.
const LEASE: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);
/// How often a running run renews its lease.
const LEASE_RENEWAL: std::time::Duration = std::time::Duration::from_secs(20);

/// The lease that makes a run the source's only one.
struct RunLease {
    name: String,
    holder: Uuid,
}

impl SourceReconciliation {
    /// Approves a held change set of a directory run: the directory is read again, in
    /// full, and what it says now is applied in place of what was held (which may be
    /// stale: the directory may have been fixed meanwhile).
    pub async fn approve_directory_run(
        &self,
        tenant: &Tenant,
        source: &LdapSource,
        id: Uuid,
        ctx: &AuditContext,
    ) -> DomainResult<SyncOutcome> {
        self.sync_leased(tenant, source, RunMode::Approve(id), true, ctx).await
    }

    /// One run of one source. Returns the run as recorded (also when it failed).
    /// `full` forces a full run; otherwise the run is incremental when a full run
    /// succeeded within `full_run_seconds` and the last successful run left a change mark.
    pub async fn sync_ldap(
        &self,
        tenant: &Tenant,
        source: &LdapSource,
        dry_run: bool,
        full: bool,
        ctx: &AuditContext,
    ) -> DomainResult<SyncOutcome> {
        let mode = if dry_run { RunMode::DryRun } else { RunMode::Apply };
        self.sync_leased(tenant, source, mode, full, ctx).await
    }

    async fn sync_leased(
        &self,
        tenant: &Tenant,
        source: &LdapSource,
        mode: RunMode,
        full: bool,
        ctx: &AuditContext,
    ) -> DomainResult<SyncOutcome> {
        let started_at = idbridge_core::clock::now();
        let clock = Instant::now();
        // One runner per source, whichever instance or command started it.
        let lease = RunLease { name: format!("ldap:{}:{}", tenant.slug, source.name), holder: Uuid::new_v4() };
        let store = self.reconciler.store().clone();
        if !store.try_lease(&lease.name, &lease.holder.to_string(), started_at, started_at + LEASE).await? {
            return Err(DomainError::Rejected(format!(
                "another run of {} for tenant {} is in progress",
                source.name, tenant.slug
            )));
        }
        let outcome = self.sync_held(tenant, source, mode, full, ctx, started_at, clock, &lease).await;
        // Released by letting it expire now, however the run ended.
        let now = idbridge_core::clock::now();
        if let Err(e) = store.try_lease(&lease.name, &lease.holder.to_string(), now, now).await {
            tracing::warn!(lease = lease.name, error = %e, "run lease not released; it expires within a minute");
        }
        outcome
    }

    /// Keeps the run's lease while the run goes on; returns only when it was lost (another
    /// instance took it after it expired: this run must not go on beside that one).
    async fn keep_lease(&self, lease: &RunLease) -> DomainError {
        let store = self.reconciler.store().clone();
        loop {
            tokio::time::sleep(LEASE_RENEWAL).await;
            let now = idbridge_core::clock::now();
            match store.try_lease(&lease.name, &lease.holder.to_string(), now, now + LEASE).await {
                Ok(true) => {}
                Ok(false) => {
                    return DomainError::Rejected(format!(
                        "the run's lease {} was taken over by another runner; this run stopped",
                        lease.name
                    ));
                }
                // A database that does not answer for a moment: the lease lasts a minute.
                Err(e) => tracing::warn!(lease = lease.name, error = %e, "run lease not renewed; retrying"),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn sync_held(
        &self,
        tenant: &Tenant,
        source: &LdapSource,
        mode: RunMode,
        full: bool,
        ctx: &AuditContext,
        started_at: jiff::Timestamp,
        clock: Instant,
        lease: &RunLease,
    ) -> DomainResult<SyncOutcome> {
        let mut summary = RunSummary::default();
        let mark = if full { None } else { self.incremental_mark(tenant, source).await? };
        summary.mode = if mark.is_some() { "incremental" } else { "full" }.to_owned();
        // Holding the lease, no earlier run of this source can still be going: one still
        // `running` died with its process. Then this run is recorded as running, so a
        // process killed from here on leaves a record the next run completes.
        let abandoned = self
            .directory
            .abandon_sync_runs(
                tenant.id,
                &source.name,
                started_at,
                "its process ended before the run finished (killed or crashed); the next run did the rest",
            )
            .await?;
        if abandoned > 0 {
            tracing::warn!(tenant = %tenant.slug, source = source.name, abandoned, "an earlier run's process died mid-run");
        }
        let id = Uuid::new_v4();
        let running = SyncRun {
            id,
            tenant_id: tenant.id,
            source: source.name.clone(),
            started_at,
            finished_at: started_at,
            status: RunStatus::Running,
            summary: summary.clone(),
            error: None,
        };
        self.directory.record_sync_run(&running).await?;
        let result = tokio::select! {
            result = self.sync_inner(tenant, source, mode, mark, ctx, &mut summary) => result.map(Some),
            lost = self.keep_lease(lease) => Err(lost),
            () = self.stopping.requested() => Ok(None),
        };
        let (status, error, plan, approved) = match result {
            Ok(Some((status, plan, approved))) => (status, None, plan, approved),
            Ok(None) => (
                RunStatus::Cancelled,
                Some("the process was asked to stop before the run finished; the next run does the rest".to_owned()),
                Vec::new(),
                None,
            ),
            Err(e) => (RunStatus::Failed, Some(e.to_string()), Vec::new(), None),
        };
        let run = SyncRun {
            id,
            tenant_id: tenant.id,
            source: source.name.clone(),
            started_at,
            finished_at: idbridge_core::clock::now(),
            status,
            summary,
            error,
        };
        self.directory.record_sync_run(&run).await?;
        let labels = [
            ("tenant", tenant.slug.to_string()),
            ("source", source.name.clone()),
            ("status", status.as_str().to_owned()),
        ];
        metrics::counter!("idbridge_ldap_sync_runs_total", &labels).increment(1);
        metrics::histogram!("idbridge_ldap_sync_seconds", &labels[..2]).record(clock.elapsed().as_secs_f64());
        match &run.error {
            Some(error) if status == RunStatus::Cancelled => {
                tracing::warn!(tenant = %tenant.slug, source = source.name, error, "LDAP sync cancelled")
            }
            Some(error) => {
                tracing::error!(tenant = %tenant.slug, source = source.name, error, "LDAP sync failed; nobody's access changed")
            }
            None => tracing::info!(
                tenant = %tenant.slug, source = source.name, status = status.as_str(), users = run.summary.users,
                changed = run.summary.changed, removed = run.summary.removed, written = run.summary.written,
                seconds = clock.elapsed().as_secs_f64(), "LDAP sync finished"
            ),
        }
        Ok(SyncOutcome { run, plan, approved })
    }

    /// One attempt at reading the source, from its `from`th URL on: every group, then the
    /// users a page at a time, keeping only the people whose facts changed since the last
    /// complete run (with their new records), the rest only as seen. What idbridge stored
    /// of the source (`stored`, loaded by the first attempt) is read from the database
    /// while the directory is connected to and its groups are read.
    #[allow(clippy::too_many_arguments)]
    async fn read_directory(
        &self,
        tenant: &Tenant,
        source: &LdapSource,
        password: Option<&str>,
        from: usize,
        since: &mut Option<String>,
        mark: &Option<(String, String)>,
        stored: &tokio::sync::OnceCell<Arc<HashMap<String, RecordDigest>>>,
    ) -> Result<Read, ReadFailed> {
        let directory = async {
            let mut reader = idbridge_ldap::Reader::connect_from(source, password, from).await?;
            if let Some((_, url)) = mark
                && source.flavour == idbridge_core::directory::Flavour::ActiveDirectory
                && &reader.url != url
            {
                // Failed over to another domain controller: its USNs are not comparable.
                tracing::info!(tenant = %tenant.slug, source = source.name, "another domain controller answered; reading everyone");
                *since = None;
            }
            // Deletions since the mark, before the users: when there are too many to tell,
            // the run reads everyone and finds them as a full run does.
            let mut deleted = Vec::new();
            if let Some(mark) = since.clone() {
                match reader.deleted_since(source, &mark).await? {
                    Some(ids) => deleted = ids,
                    None => {
                        tracing::info!(tenant = %tenant.slug, source = source.name, "too many deletions since the last run to list; reading everyone");
                        *since = None;
                    }
                }
            }
            let groups = reader.groups(source).await?;
            Ok::<_, idbridge_ldap::ReadError>((reader, deleted, groups))
        };
        let records = stored
            .get_or_try_init(|| async { self.directory.directory_hashes(tenant.id, &source.name).await.map(Arc::new) });
        let (directory, records) = tokio::join!(directory, records);
        let stored = records.map_err(ReadFailed::Records)?.clone();
        let (mut reader, deleted, groups) = directory?;
        let deleted: HashSet<String> = deleted.into_iter().filter(|id| stored.contains_key(id)).collect();
        let mut warnings: Vec<String> =
            reader.passed_over.iter().map(|(url, why)| format!("passed over {url}: {why}")).collect();
        let group_count = groups.len() as u64;
        let index = Arc::new(idbridge_ldap::GroupIndex::new(source, &groups, &mut warnings));
        drop(groups);
        // Users are made into people and compared on a thread of their own, a page at a
        // time, while the reader already asks the server for the next page (processing
        // each page inside the search left the server idle between pages).
        let (pages, mut arriving) = tokio::sync::mpsc::channel::<Vec<idbridge_ldap::SearchEntry>>(2);
        let worker = {
            let (index, stored, source) = (index.clone(), stored, source.clone());
            let label = format!("{} {}", tenant.slug, source.name);
            tokio::task::spawn_blocking(move || {
                let mut found =
                    Found { seen: HashSet::with_capacity(stored.len()), changed: Vec::new(), upserts: Vec::new() };
                let mut warnings = Vec::new();
                // On a terminal (`idbridge sync ldap`), a progress line; logs get the phases.
                let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
                let mut read_so_far = 0usize;
                while let Some(page) = arriving.blocking_recv() {
                    let before = read_so_far;
                    read_so_far += page.len();
                    for person in index.people(&source, &page, &mut warnings) {
                        found.consider(&source, &stored, person);
                    }
                    if terminal && read_so_far / 1000 > before / 1000 {
                        eprint!("\r{label}: {read_so_far} users read");
                    }
                }
                if terminal && read_so_far >= 1000 {
                    eprintln!("\r{label}: {read_so_far} users read");
                }
                (found, warnings)
            })
        };
        let read = reader.users(source, since.as_deref(), pages).await;
        let worked = worker.await;
        let (users, high_water) = read?;
        let (found, user_warnings) = worked.map_err(|e| idbridge_ldap::ReadError::Search {
            url: reader.url.clone(),
            step: "reading users".into(),
            message: format!("the task making people of the entries failed: {e}"),
        })?;
        let url = reader.url.clone();
        reader.close().await;
        warnings.extend(user_warnings);
        Ok(Read { index, found, users, high_water, url, groups: group_count, warnings, deleted })
    }

    /// Where an incremental run would start, if one may run now, and the URL of the server
    /// that set the mark (Active Directory's USNs are per domain controller).
    async fn incremental_mark(&self, tenant: &Tenant, source: &LdapSource) -> DomainResult<Option<(String, String)>> {
        if source.full_run_seconds == 0 || source.membership == idbridge_core::directory::Membership::MemberOf {
            return Ok(None);
        }
        let runs = self.directory.list_sync_runs(Some(tenant.id), 1000).await?;
        let succeeded: Vec<&SyncRun> =
            runs.iter().filter(|r| r.source == source.name && r.status == RunStatus::Succeeded).collect();
        let Some(last) = succeeded.first() else { return Ok(None) };
        let window = jiff::SignedDuration::from_secs(source.full_run_seconds as i64);
        let recent_full = succeeded.iter().any(|r| {
            r.summary.mode != "incremental"
                && r.started_at.checked_add(window).is_ok_and(|end| end > idbridge_core::clock::now())
        });
        Ok(if recent_full {
            last.summary.high_water.clone().map(|mark| (mark, last.summary.url.clone()))
        } else {
            None
        })
    }

    async fn sync_inner(
        &self,
        tenant: &Tenant,
        source: &LdapSource,
        mode: RunMode,
        mark: Option<(String, String)>,
        ctx: &AuditContext,
        summary: &mut RunSummary,
    ) -> DomainResult<Ran> {
        let password = bind_password(tenant, source)?;
        tracing::info!(tenant = %tenant.slug, source = source.name, "LDAP sync: reading the directory");
        let stored = tokio::sync::OnceCell::new();
        let mut since = mark.as_ref().map(|(m, _)| m.clone());
        // Read from the first URL that serves; one that hangs or drops the connection part
        // way through is left for the next, and the read starts over there.
        let mut from = 0;
        let mut passed_over: Vec<String> = Vec::new();
        let read = loop {
            match self.read_directory(tenant, source, password.as_deref(), from, &mut since, &mark, &stored).await {
                Ok(read) => break read,
                Err(ReadFailed::Records(e)) => return Err(e),
                Err(ReadFailed::Directory(e)) => {
                    let next = e.url().and_then(|u| source.urls.iter().position(|x| x == u)).map(|i| i + 1);
                    match next {
                        Some(next) if e.fails_over() && next < source.urls.len() => {
                            tracing::warn!(tenant = %tenant.slug, source = source.name, error = %e, "directory server failed; reading from the next URL");
                            passed_over.push(e.to_string());
                            from = next;
                        }
                        _ => {
                            passed_over.push(e.to_string());
                            return Err(DomainError::Rejected(format!(
                                "reading {}: {}",
                                source.name,
                                passed_over.join("; then ")
                            )));
                        }
                    }
                }
            }
        };
        if !passed_over.is_empty() {
            summary.warnings.extend(passed_over.iter().map(|e| format!("passed over: {e}")));
        }
        let Read { index, mut found, users, high_water, url, groups, warnings: mut read_warnings, deleted } = read;
        // A read that succeeded loaded them.
        let stored =
            stored.get().cloned().ok_or_else(|| DomainError::Internal("the directory records were not read".into()))?;
        if since.is_none() && mark.is_some() {
            summary.mode = "full".into();
        }
        summary.url = url;
        summary.groups = groups;
        let mut warnings = std::mem::take(&mut summary.warnings);
        warnings.append(&mut read_warnings);
        summary.users = users;
        summary.high_water = high_water.or_else(|| since.clone());
        if since.is_some() {
            // Users not read this time are as the last run saw them, with today's groups.
            // Only those whose groups give them something else today are read back and
            // regrouped: an incremental run touches the changed people, not every record.
            let mut today: HashMap<&[String], String> = HashMap::new();
            let mut regroup: Vec<String> = stored
                .iter()
                .filter(|(id, _)| !found.seen.contains(*id) && !deleted.contains(*id))
                .filter(|(_, record)| match &record.groups_seen {
                    Some(seen) => {
                        let direct = index.direct_groups(&seen.key);
                        *today.entry(direct).or_insert_with(|| index.groups_digest_of(source, direct)) != seen.digest
                    }
                    None => true,
                })
                .map(|(id, _)| id.clone())
                .collect();
            drop(today);
            regroup.sort_unstable();
            tracing::debug!(tenant = %tenant.slug, source = source.name, regrouped = regroup.len(), "LDAP sync: people whose groups changed");
            for ids in regroup.chunks(5000) {
                for person in self.directory.directory_persons(tenant.id, &source.name, ids).await? {
                    if let Some(person) = index.regroup(source, &person) {
                        found.consider(source, &stored, person);
                    }
                }
            }
        }
        summary.warnings = warnings;
        tracing::info!(tenant = %tenant.slug, source = source.name, users = summary.users, groups = summary.groups, "LDAP sync: read; planning");
        // A full read finds deletions as the people it did not see; an incremental one sees
        // changed users only, and the deletions the directory keeps tombstones of.
        let removed: Vec<String> = if since.is_some() {
            let mut removed: Vec<String> = deleted.into_iter().filter(|id| !found.seen.contains(id)).collect();
            removed.sort_unstable();
            removed
        } else {
            stored.keys().filter(|id| !found.seen.contains(*id)).cloned().collect()
        };
        let Found { changed, mut upserts, .. } = found;
        summary.changed = changed.len() as u64;
        summary.removed = removed.len() as u64;

        let mut wanted: Vec<String> = changed.iter().map(|p| p.link.external_id.clone()).collect();
        wanted.extend(removed.iter().cloned());
        let store = self.reconciler.store().clone();
        let mut existing =
            crate::reconciliation::individuals_by_link(store.as_ref(), tenant, SourceKind::Ldap, &source.name, &wanted)
                .await?;
        if stored.is_empty() && removed.is_empty() && existing.is_empty() && matches!(mode, RunMode::Apply) {
            return self.create_page_by_page(tenant, source, changed, upserts, ctx, summary).await;
        }
        upserts.extend(changed.iter().map(|p| record(source, p)));
        let pipeline = self.mapping.pipeline(tenant).await?;
        let known = Arc::new(self.reconciler.known().await?);
        let people: Vec<(SourcePerson, Option<Individual>)> = changed
            .into_iter()
            .map(|p| {
                let current = existing.remove(&p.link.external_id);
                (p, current)
            })
            .collect();
        let people = self.with_linked_sources(tenant, people).await?;
        // Decided a page at a time: the mapping inputs and decisions of 100,000 people at
        // once would cost hundreds of megabytes.
        let mut set = ChangeSet::new(crate::origin::run_origin(&source.name));
        let mut people = people.into_iter().peekable();
        while people.peek().is_some() {
            let page: Vec<_> = people.by_ref().take(1000).collect();
            let planned = self
                .plan_people(tenant, &pipeline, known.clone(), page)
                .await
                .map_err(|e| DomainError::Internal(format!("planning task failed: {e}")))?;
            set.writes.extend(planned.writes);
            set.held.extend(planned.held);
        }
        for id in &removed {
            if let Plan::Write(w) = self.reconciler.plan_removed(tenant, existing.remove(id)) {
                set.writes.push(*w);
            }
        }
        if since.is_none() {
            // A complete read also compares what everyone else should have with what their
            // individuals hold, not only the facts that changed: whatever drifted (a
            // decision taken on stale data, a write lost) is repaired by the next full run.
            let planned: HashSet<String> = set
                .writes
                .iter()
                .flat_map(|w| w.after.links.iter())
                .filter(|l| l.source == SourceKind::Ldap && l.connection == source.name)
                .map(|l| l.external_id.clone())
                .chain(set.held.iter().map(|h| h.source_id.clone()))
                .chain(removed.iter().cloned())
                .collect();
            // The next page is read while the last one is decided (off the runtime).
            let mut after = None;
            let mut deciding: Option<tokio::task::JoinHandle<ChangeSet>> = None;
            loop {
                let (page, next) = self.directory_people_page(tenant, source, after.as_deref(), 1000).await?;
                if let Some(decided) = deciding.take() {
                    add_drift(summary, &mut set, decided).await?;
                }
                let page: Vec<_> = page.into_iter().filter(|(p, _)| !planned.contains(&p.link.external_id)).collect();
                if !page.is_empty() {
                    deciding = Some(self.plan_people(tenant, &pipeline, known.clone(), page));
                }
                match next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            if let Some(decided) = deciding {
                add_drift(summary, &mut set, decided).await?;
            }
        }
        let counts = set.summary(0);
        (summary.creates, summary.updates, summary.takes_access) =
            (counts.creates, counts.updates, counts.takes_access);
        let plan = plan_lines(&set);
        // People the tenant refused (a mapping it does not allow) keep their old record, so
        // the next run tries them again.
        let held: HashSet<&str> = set.held.iter().map(|h| h.source_id.as_str()).collect();
        upserts.retain(|r| !held.contains(r.external_id()));
        let approving = match mode {
            RunMode::DryRun => return Ok((RunStatus::DryRun, plan, None)),
            RunMode::Approve(id) => Some(id),
            RunMode::Apply => None,
        };
        // A run whose change set already waits for an operator does not pile up another.
        let waiting = self
            .reconciler
            .store()
            .list_change_sets(Some(tenant.id), Some(ChangeSetStatus::Pending))
            .await?
            .into_iter()
            .find(|s| s.origin == set.origin);
        if approving.is_none()
            && let Some(waiting) = waiting
            && set.writes.iter().any(|w| w.takes_access())
        {
            summary.change_set = Some(waiting.id);
            return Ok((RunStatus::Held, plan, None));
        }
        let external_of = external_ids(&set, source);
        let origin = set.origin.clone();
        let submitted = match approving {
            Some(id) => Submitted::Applied(self.reconciler.approve(tenant, id, &Planned(set.writes), ctx).await?),
            None => self.reconciler.submit(tenant, set, ctx).await?,
        };
        match submitted {
            Submitted::Applied(report) => {
                let approved = approving.map(|_| report.clone());
                summary.written = report.written.len() as u64;
                if !report.failed.is_empty() {
                    summary.warnings.extend(report.failed.iter().map(|(id, e)| format!("individual {id}: {e}")));
                    // Their records stay as they were, so the next run tries again.
                    let failed: HashSet<&str> = report
                        .failed
                        .iter()
                        .filter_map(|(id, _)| external_of.get(&id.to_string()).map(String::as_str))
                        .collect();
                    upserts.retain(|r| !failed.contains(r.external_id()));
                }
                self.directory.update_directory_records(tenant.id, &source.name, &upserts, &removed).await?;
                if since.is_none() {
                    // What waited for an operator is stale now: this complete run applied
                    // what the directory says.
                    let by = format!("the complete run at {}", idbridge_core::clock::now());
                    let n = self.reconciler.supersede(tenant, &origin, &by, ctx).await?;
                    if n > 0 {
                        summary.warnings.push(format!("{n} held change set(s) of this source superseded"));
                    }
                }
                Ok((RunStatus::Succeeded, plan, approved))
            }
            Submitted::AwaitingApproval { id, .. } => {
                summary.change_set = Some(id);
                Ok((RunStatus::Held, plan, None))
            }
        }
    }
}

impl SourceReconciliation {
    /// A run in which every write creates an individual — the source's first run, with
    /// nobody known and nobody gone — cannot take access from anyone, so the guard has
    /// nothing to hold: it is decided and written a page at a time (the individuals, then
    /// the records of those written), never held whole. Stopped part way, what was
    /// written stays consistent: the next run finds the rest unknown and creates them.
    async fn create_page_by_page(
        &self,
        tenant: &Tenant,
        source: &LdapSource,
        changed: Vec<SourcePerson>,
        unchanged: Vec<DirectoryRecord>,
        ctx: &AuditContext,
        summary: &mut RunSummary,
    ) -> DomainResult<Ran> {
        let pipeline = self.mapping.pipeline(tenant).await?;
        let known = Arc::new(self.reconciler.known().await?);
        let origin = crate::origin::run_origin(&source.name);
        self.directory.update_directory_records(tenant.id, &source.name, &unchanged, &[]).await?;
        let mut plan = Vec::new();
        let mut people = changed.into_iter().peekable();
        while people.peek().is_some() {
            let page: Vec<SourcePerson> = people.by_ref().take(1000).collect();
            let mut records: Vec<DirectoryRecord> = page.iter().map(|p| record(source, p)).collect();
            let planned = self
                .plan_people(tenant, &pipeline, known.clone(), page.into_iter().map(|p| (p, None)).collect())
                .await
                .map_err(|e| DomainError::Internal(format!("planning task failed: {e}")))?;
            let set = ChangeSet { origin: origin.clone(), writes: planned.writes, held: planned.held };
            let counts = set.summary(0);
            summary.creates += counts.creates;
            summary.updates += counts.updates;
            summary.takes_access += counts.takes_access;
            plan.extend(plan_lines(&set));
            // People the tenant refused keep no record, so the next run tries them again.
            let mut retry: HashSet<String> = set.held.iter().map(|h| h.source_id.clone()).collect();
            let external_of = external_ids(&set, source);
            match self.reconciler.submit(tenant, set, ctx).await? {
                Submitted::Applied(report) => {
                    summary.written += report.written.len() as u64;
                    for (id, e) in &report.failed {
                        summary.warnings.push(format!("individual {id}: {e}"));
                        retry.extend(external_of.get(&id.to_string()).cloned());
                    }
                    records.retain(|r| !retry.contains(r.external_id()));
                    self.directory.update_directory_records(tenant.id, &source.name, &records, &[]).await?;
                }
                // Somebody linked an individual to this source meanwhile and the guard
                // found access to take after all: what is left waits for the next run.
                Submitted::AwaitingApproval { id, .. } => {
                    summary.change_set = Some(id);
                    return Ok((RunStatus::Held, plan, None));
                }
            }
        }
        Ok((RunStatus::Succeeded, plan, None))
    }
}

/// What a full run's comparison of unchanged people found to repair, added to its set.
async fn add_drift(
    summary: &mut RunSummary,
    set: &mut ChangeSet,
    decided: tokio::task::JoinHandle<ChangeSet>,
) -> DomainResult<()> {
    let drift = decided.await.map_err(|e| DomainError::Internal(format!("planning task failed: {e}")))?;
    summary.drift += drift.writes.len() as u64;
    // Unchanged people the tenant refuses were audited when they changed.
    set.writes.extend(drift.writes);
    Ok(())
}

/// Individual id → the person's id at this source, for the writes of a set.
fn external_ids(set: &ChangeSet, source: &LdapSource) -> HashMap<String, String> {
    set.writes
        .iter()
        .filter_map(|w| {
            let link = w.after.links.iter().find(|l| l.source == SourceKind::Ldap && l.connection == source.name)?;
            Some((w.after.id.to_string(), link.external_id.clone()))
        })
        .collect()
}

fn plan_lines(set: &ChangeSet) -> Vec<PlanLine> {
    set.writes
        .iter()
        .map(|w| PlanLine {
            login: w.after.login.clone(),
            before: w.before.as_ref().map(|b| b.status.as_str().to_owned()),
            after: w.after.status.as_str().to_owned(),
            action: w.action.clone(),
            role: w.after.role.clone(),
        })
        .collect()
}

/// The scheduled runs this process has going, by lease name.
#[derive(Clone, Default)]
pub struct RunsInFlight(Arc<std::sync::Mutex<HashSet<String>>>);

impl RunsInFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks a run started; `false` when it already runs here.
    fn start(&self, key: &str) -> bool {
        self.lock().insert(key.to_owned())
    }

    fn finish(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Waits (at most `limit`) until no scheduled run is going on.
    pub async fn wait_until_none(&self, limit: std::time::Duration) {
        let deadline = Instant::now() + limit;
        while !self.lock().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// A scheduled run going on.
struct Running(RunsInFlight, String);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.finish(&self.1);
    }
}

/// How often the schedules are looked at.
const SCHEDULE_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs every tenant's directory sources on their schedules, until the process ends. Each
/// run is a task of its own: a source whose server hangs, or a big tenant's long run,
/// never delays another source's schedule. With several instances on one database, the
/// lease `sync_ldap` takes lets one of them run it.
pub async fn run_schedules(reconciliation: SourceReconciliation, runs: RunsInFlight) {
    let ctx = AuditContext::new(idbridge_core::audit::Actor::new(idbridge_core::audit::ActorKind::SyncRun, "schedule"));
    let mut interval = tokio::time::interval(SCHEDULE_CHECK);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = reconciliation.stopping.requested() => return,
        }
        if let Err(e) = start_due_runs(&reconciliation, &runs, &ctx).await {
            tracing::error!(error = %e, "LDAP schedule check failed");
        }
    }
}

async fn start_due_runs(
    reconciliation: &SourceReconciliation,
    runs: &RunsInFlight,
    ctx: &AuditContext,
) -> DomainResult<()> {
    let store = reconciliation.reconciler.store().clone();
    for tenant in store.list_tenants().await? {
        if !tenant.enabled || tenant.policy.ldap.is_empty() {
            continue;
        }
        let recorded = reconciliation.directory.list_sync_runs(Some(tenant.id), 1000).await?;
        for source in tenant.policy.ldap.iter().filter(|s| s.schedule_seconds > 0) {
            let last = recorded.iter().find(|r| r.source == source.name).map(|r| r.started_at);
            let now = idbridge_core::clock::now();
            let every = jiff::SignedDuration::from_secs(source.schedule_seconds as i64);
            // Due when its time falls nearer this check than the next one.
            let horizon = now + jiff::SignedDuration::try_from(SCHEDULE_CHECK / 2).unwrap_or_default();
            if last.is_some_and(|at| at.checked_add(every).is_ok_and(|next| next > horizon)) {
                continue;
            }
            let key = format!("{}:{}", tenant.slug, source.name);
            if !runs.start(&key) {
                continue;
            }
            let (reconciliation, runs, ctx) = (reconciliation.clone(), runs.clone(), ctx.clone());
            let (tenant, source) = (tenant.clone(), source.clone());
            tokio::spawn(async move {
                // Finished however the task ends (a panic included), or the source would never
                // run again here.
                let _running = Running(runs, key);
                match reconciliation.sync_ldap(&tenant, &source, false, false, &ctx).await {
                    Ok(_) => {}
                    // Another instance runs it.
                    Err(DomainError::Rejected(reason)) => tracing::debug!(reason, "scheduled LDAP run skipped"),
                    Err(e) => {
                        tracing::error!(tenant = %tenant.slug, source = source.name, error = %e, "scheduled LDAP run not recorded")
                    }
                }
            });
        }
    }
    Ok(())
}

/// Recent directory runs, newest first, of one tenant or of all (`sync status`, the admin
/// API's `/sync-runs`).
pub async fn sync_runs(
    operator: &crate::operator::Operator,
    directory: &dyn idbridge_core::ports::DirectoryStore,
    tenant: Option<&idbridge_core::tenant::TenantSlug>,
    limit: u32,
) -> DomainResult<Vec<SyncRun>> {
    let tenant = match tenant {
        Some(slug) => Some(operator.tenant(slug).await?.id),
        None => None,
    };
    directory.list_sync_runs(tenant, limit).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use idbridge_core::individual::SourceLink;
    use idbridge_core::mapping::UserFacts;

    fn person(login: &str) -> SourcePerson {
        SourcePerson {
            link: SourceLink { source: SourceKind::Ldap, connection: "corp".into(), external_id: login.into() },
            also: vec![],
            facts: UserFacts { login: login.into(), ..UserFacts::default() },
            groups: vec![],
            active: true,
            email: None,
            given_name: None,
            family_name: None,
            display_name: None,
            activation: None,
            expiration: None,
            time_zone: None,
        }
    }

    fn found() -> Found {
        Found { seen: HashSet::new(), changed: Vec::new(), upserts: Vec::new() }
    }

    fn corp() -> LdapSource {
        serde_json::from_value(serde_json::json!({
            "name": "corp", "urls": ["ldap://x"], "user_base": "ou=people,dc=x", "group_base": "ou=groups,dc=x"
        }))
        .unwrap()
    }

    fn known(digest: String) -> HashMap<String, RecordDigest> {
        HashMap::from([("bob".to_owned(), RecordDigest { digest, groups_seen: None })])
    }

    /// A directory stored by a version that hashed the person's JSON is not re-planned
    /// person by person after the upgrade: matching rows get the new digest, unchanged.
    #[test]
    fn digests_of_the_earlier_encoding_are_recognised() {
        let bob = person("bob");
        let legacy = legacy_digest(&bob);
        let mut run = found();
        run.consider(&corp(), &known(legacy.clone()), bob.clone());
        assert!(run.changed.is_empty(), "an unchanged person is not re-planned");
        assert_eq!(run.upserts.len(), 1, "its row gets the new digest");
        assert_eq!(run.upserts[0].digest, bob.change_digest());

        let mut run = found();
        run.consider(&corp(), &known(bob.change_digest()), bob.clone());
        assert!(run.changed.is_empty() && run.upserts.is_empty(), "nothing to write");

        let mut moved = bob.clone();
        moved.active = false;
        let mut run = found();
        run.consider(&corp(), &known(legacy), moved);
        assert_eq!(run.changed.len(), 1, "a change since the legacy digest is one");
    }

    /// A record written before groups were seen gets them at the next run that sees the
    /// person, without re-planning an unchanged person; then nothing is written.
    #[test]
    fn records_without_groups_seen_are_completed_once() {
        let mut bob = person("bob");
        bob.facts.custom.insert("dn".into(), "uid=Bob, ou=people,dc=x".into());
        let mut run = found();
        run.consider(&corp(), &known(bob.change_digest()), bob.clone());
        assert!(run.changed.is_empty(), "unchanged");
        let seen = run.upserts[0].groups_seen.clone().expect("groups seen");
        assert_eq!(seen.key, "uid=bob,ou=people,dc=x");
        let stored =
            HashMap::from([("bob".to_owned(), RecordDigest { digest: bob.change_digest(), groups_seen: Some(seen) })]);
        let mut run = found();
        run.consider(&corp(), &stored, bob);
        assert!(run.upserts.is_empty() && run.changed.is_empty());
    }
}
