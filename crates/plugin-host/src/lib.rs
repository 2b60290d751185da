//! Loads native mapping plugins and runs them safely enough to keep serving when one
//! misbehaves. The only crate with `unsafe`.
//!
//! Invariants:
//! - A library is never unloaded (`Library` is leaked): unloading Rust code is unsound
//!   (TLS destructors, dangling vtables), so a reload re-creates instances only.
//! - Nothing but `abi_version` and `struct_size` is read from a table before both match.
//! - Every buffer a plugin returns is given back through its own `free_buffer`.
//! - Calls run on the plugin's worker threads, never on the async runtime, with a timeout;
//!   the worker count bounds concurrency.
//! - A plugin that panicked is quarantined (it abstains, with an error) until reloaded.
//! - Every output is parsed strictly; the pipeline then checks it against the tenant.

use std::collections::BTreeMap;
use std::ffi::{CStr, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

// crossbeam's channels spin briefly before parking: a plugin call's hand-off to a worker
// and back costs microseconds instead of two futex wake-ups.
use crossbeam_channel::{Receiver, Sender as SyncSender, bounded as sync_channel};
use std::time::Duration;

use idbridge_core::individual::SourceKind;
use idbridge_core::mapping::{self, Mapper, MapperError, MapperOutput, MappingInput, Reason, Verdict};
use idbridge_core::scopes::{GroupReach, Scopes};
use idbridge_plugin_api::{self as api, PluginBuffer, PluginTable, wire};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One `[[plugins]]` entry of the daemon's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    pub id: String,
    pub path: PathBuf,
    /// Hex SHA-256 the file must have; loading refuses anything else.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Passed to the plugin's `create` as JSON.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Worker threads, i.e. the most calls in flight at once.
    #[serde(default = "default_workers")]
    pub workers: usize,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

fn default_timeout_ms() -> u64 {
    200
}

fn default_workers() -> usize {
    4
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PluginLoadError {
    #[error("plugin {id}: cannot read {path}: {reason}")]
    Unreadable { id: String, path: String, reason: String },
    #[error("plugin {id}: {path} has sha256 {actual}, config pins {expected}")]
    HashMismatch { id: String, path: String, expected: String, actual: String },
    #[error("plugin {id}: cannot load {path}: {reason}")]
    NotLoadable { id: String, path: String, reason: String },
    #[error("plugin {id}: {path} does not export idbridge_plugin_entry_v1")]
    NoEntry { id: String, path: String },
    #[error("plugin {id}: ABI version {found}, this idbridge speaks {expected}")]
    AbiVersion { id: String, found: u32, expected: u32 },
    #[error("plugin {id}: table size {found}, expected {expected}")]
    TableSize { id: String, found: u32, expected: u32 },
    #[error("plugin {id} rejected its config{}: {message}", field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default())]
    Config { id: String, field: Option<String>, message: String },
    #[error("plugin {id}: {message}")]
    Other { id: String, message: String },
}

/// A loaded library: its table, kept for the life of the process.
struct Library {
    table: &'static PluginTable,
    name: String,
    version: String,
    sha256: String,
}

fn load_library(spec: &PluginSpec) -> Result<Library, PluginLoadError> {
    let path = spec.path.display().to_string();
    let bytes = std::fs::read(&spec.path).map_err(|e| PluginLoadError::Unreadable {
        id: spec.id.clone(),
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(expected) = &spec.sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(PluginLoadError::HashMismatch {
            id: spec.id.clone(),
            path,
            expected: expected.clone(),
            actual: sha256,
        });
    }
    // SAFETY: loading runs the library's initialisers. The operator named this file in
    // the config (optionally pinned by hash); that is the trust decision.
    let library = unsafe { libloading::Library::new(&spec.path) }.map_err(|e| PluginLoadError::NotLoadable {
        id: spec.id.clone(),
        path: path.clone(),
        reason: e.to_string(),
    })?;
    // Never unloaded (see the crate invariants).
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the symbol's type is fixed by the ABI; a wrong type is caught by the
    // version and size checks before anything else is used.
    let entry: libloading::Symbol<'static, api::EntryFn> = unsafe { library.get(api::ENTRY_SYMBOL) }
        .map_err(|_| PluginLoadError::NoEntry { id: spec.id.clone(), path: path.clone() })?;
    // SAFETY: calling the entry point has no preconditions.
    let table = unsafe { entry() };
    if table.is_null() {
        return Err(PluginLoadError::Other { id: spec.id.clone(), message: "entry point returned no table".into() });
    }
    // Read only the two leading u32 fields until they check out.
    // SAFETY: every version of the table starts with these two fields.
    let (abi_version, struct_size) = unsafe { ((*table).abi_version, (*table).struct_size) };
    if abi_version != api::ABI_VERSION {
        return Err(PluginLoadError::AbiVersion {
            id: spec.id.clone(),
            found: abi_version,
            expected: api::ABI_VERSION,
        });
    }
    let expected_size = u32::try_from(std::mem::size_of::<PluginTable>()).unwrap_or(u32::MAX);
    if struct_size != expected_size {
        return Err(PluginLoadError::TableSize { id: spec.id.clone(), found: struct_size, expected: expected_size });
    }
    // SAFETY: version and size match; the table is static data of a library never unloaded.
    let table: &'static PluginTable = unsafe { &*table };
    let text = |p: *const u8| {
        if p.is_null() {
            return String::new();
        }
        // SAFETY: the ABI says NUL-terminated UTF-8 in static memory.
        unsafe { CStr::from_ptr(p.cast()) }.to_string_lossy().into_owned()
    };
    Ok(Library { name: text(table.name), version: text(table.version), table, sha256 })
}

/// Takes a plugin buffer's bytes and gives the memory back to the plugin.
fn take_buffer(table: &PluginTable, buffer: PluginBuffer) -> Vec<u8> {
    if buffer.ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the plugin filled (ptr, len) for us; we copy before handing it back.
    let bytes = unsafe { std::slice::from_raw_parts(buffer.ptr, buffer.len) }.to_vec();
    // SAFETY: returned to the allocator that produced it, once.
    unsafe { (table.free_buffer)(buffer) };
    bytes
}

/// An instance pointer; plugins are `Send + Sync` by the SDK's trait bounds.
#[derive(Clone, Copy)]
struct Instance(*mut c_void);
// SAFETY: the SDK requires `MappingPlugin: Send + Sync`, so the instance may be shared.
unsafe impl Send for Instance {}
unsafe impl Sync for Instance {}

impl Instance {
    /// Through a method so closures capture the whole `Send` wrapper, not the raw field.
    fn ptr(self) -> *mut c_void {
        self.0
    }
}

/// Encoded inputs, and where to send the answers. A batch costs one hand-off to a worker
/// thread and one back, not one per person: answers travel together, in chunks sent
/// whenever half the timeout has passed since the last, so the caller can still tell a
/// plugin that stopped answering.
type Job = (Vec<Vec<u8>>, SyncSender<Vec<(i32, Vec<u8>)>>);

/// Health as `idbridge plugin list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginStatus {
    pub id: String,
    pub name: String,
    pub version: String,
    pub abi_version: u32,
    pub path: String,
    pub sha256: String,
    /// `healthy`; `degraded` (some workers have been inside one call for longer than the
    /// timeout — a hung plugin); `saturated` (every worker is, so calls are refused); or
    /// `quarantined`.
    pub health: String,
    pub quarantine_reason: Option<String>,
    pub calls: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// Calls refused because every worker and the queue were busy.
    pub refused_busy: u64,
    pub workers: usize,
    /// Workers inside one call for longer than the timeout.
    pub workers_stuck: usize,
}

/// Shared with the worker threads: a panic is seen by the worker even when the caller
/// already gave up waiting (timeout), and still quarantines the plugin.
#[derive(Default)]
struct Health {
    quarantined: AtomicBool,
    reason: Mutex<Option<String>>,
    /// Per worker: when its current call started (ms since `epoch`, plus one), 0 when idle.
    busy_since: Vec<AtomicU64>,
    epoch: Option<std::time::Instant>,
}

impl Health {
    fn with_workers(workers: usize) -> Self {
        Self {
            busy_since: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            epoch: Some(std::time::Instant::now()),
            ..Self::default()
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.map_or(0, |e| e.elapsed().as_millis() as u64) + 1
    }

    /// Workers whose current call has run longer than `limit`.
    fn stuck(&self, limit: Duration) -> usize {
        let now = self.now_ms();
        self.busy_since
            .iter()
            .filter(|b| {
                let since = b.load(Ordering::Relaxed);
                since != 0 && now.saturating_sub(since) > limit.as_millis() as u64
            })
            .count()
    }
}

impl Health {
    fn quarantine(&self, id: &str, reason: String) {
        self.quarantined.store(true, Ordering::SeqCst);
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
        tracing::error!(plugin = %id, reason, "plugin quarantined until reloaded");
    }
}

/// One plugin instance behind the `Mapper` contract.
pub struct PluginMapper {
    id: String,
    library: Arc<Library>,
    path: String,
    /// Never destroyed: after a reload a timed-out call may still be running in it. The
    /// workers end when `jobs` closes with this mapper.
    #[allow(dead_code)]
    instance: Instance,
    jobs: SyncSender<Job>,
    timeout: Duration,
    health: Arc<Health>,
    calls: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    refused_busy: AtomicU64,
    workers: usize,
}

impl std::fmt::Debug for PluginMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginMapper").field("id", &self.id).finish()
    }
}

impl PluginMapper {
    fn create(spec: &PluginSpec, library: Arc<Library>) -> Result<Arc<Self>, PluginLoadError> {
        let config = serde_json::to_vec(&spec.config).unwrap_or_else(|_| b"{}".to_vec());
        let mut instance: *mut c_void = std::ptr::null_mut();
        let mut error = PluginBuffer::EMPTY;
        // SAFETY: valid buffer and out-pointers, per the ABI.
        let status = unsafe { (library.table.create)(config.as_ptr(), config.len(), &mut instance, &mut error) };
        if status != api::STATUS_OK || instance.is_null() {
            let bytes = take_buffer(library.table, error);
            let parsed: Option<api::PluginError> = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| serde_json::from_value(v.get("error")?.clone()).ok());
            return Err(match parsed {
                Some(e) if e.kind == "config" => PluginLoadError::Config {
                    id: spec.id.clone(),
                    field: e.field.filter(|f| !f.is_empty()),
                    message: e.message,
                },
                Some(e) => PluginLoadError::Other {
                    id: spec.id.clone(),
                    message: format!("create failed ({}): {}", e.kind, e.message),
                },
                None => PluginLoadError::Other {
                    id: spec.id.clone(),
                    message: format!("create failed with status {status}"),
                },
            });
        }
        let instance = Instance(instance);
        let workers = spec.workers.clamp(1, 64);
        let (jobs, receiver) = sync_channel::<Job>(workers * 4);
        let health = Arc::new(Health::with_workers(workers));
        for n in 0..workers {
            let receiver: Receiver<Job> = receiver.clone();
            let table = library.table;
            let health = health.clone();
            let id = spec.id.clone();
            let half_timeout = Duration::from_millis(spec.timeout_ms.max(2) / 2);
            let n_worker = n;
            let spawned = std::thread::Builder::new().name(format!("plugin-{}-{n}", spec.id)).spawn(move || {
                loop {
                    let Ok((inputs, reply)) = receiver.recv() else { return };
                    let mut chunk = Vec::new();
                    let mut since = std::time::Instant::now();
                    let count = inputs.len();
                    for (n, input) in inputs.into_iter().enumerate() {
                        let mut output = PluginBuffer::EMPTY;
                        health.busy_since[n_worker].store(health.now_ms(), Ordering::Relaxed);
                        // SAFETY: the instance lives until the mapper is dropped, after the
                        // job channel closes; input and output are valid.
                        let status = unsafe { (table.map)(instance.ptr(), input.as_ptr(), input.len(), &mut output) };
                        health.busy_since[n_worker].store(0, Ordering::Relaxed);
                        let bytes = take_buffer(table, output);
                        let panicked = status == api::STATUS_PANIC;
                        if panicked {
                            health.quarantine(&id, format!("panicked: {}", String::from_utf8_lossy(&bytes)));
                        }
                        chunk.push((status, bytes));
                        if panicked || n + 1 == count || since.elapsed() >= half_timeout {
                            // The caller gave up (timeout) or the plugin is quarantined:
                            // the rest of the batch is not run.
                            if reply.send(std::mem::take(&mut chunk)).is_err() || panicked {
                                break;
                            }
                            since = std::time::Instant::now();
                        }
                    }
                }
            });
            spawned.map_err(|e| PluginLoadError::Other {
                id: spec.id.clone(),
                message: format!("cannot start worker: {e}"),
            })?;
        }
        Ok(Arc::new(Self {
            id: spec.id.clone(),
            library,
            path: spec.path.display().to_string(),
            instance,
            jobs,
            timeout: Duration::from_millis(spec.timeout_ms.max(1)),
            health,
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            refused_busy: AtomicU64::new(0),
            workers,
        }))
    }

    fn fail(&self, message: impl Into<String>) -> MapperError {
        self.errors.fetch_add(1, Ordering::Relaxed);
        MapperError { mapper: self.id.clone(), message: message.into() }
    }

    pub fn status(&self) -> PluginStatus {
        let quarantined = self.health.quarantined.load(Ordering::SeqCst);
        let stuck = self.health.stuck(self.timeout);
        let health = match (quarantined, stuck) {
            (true, _) => "quarantined",
            (false, 0) => "healthy",
            (false, n) if n >= self.workers => "saturated",
            (false, _) => "degraded",
        };
        PluginStatus {
            id: self.id.clone(),
            name: self.library.name.clone(),
            version: self.library.version.clone(),
            abi_version: api::ABI_VERSION,
            path: self.path.clone(),
            sha256: self.library.sha256.clone(),
            health: health.into(),
            quarantine_reason: self.health.reason.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            refused_busy: self.refused_busy.load(Ordering::Relaxed),
            workers: self.workers,
            workers_stuck: stuck,
        }
    }
}

fn source_name(source: SourceKind) -> String {
    source.as_str().to_owned()
}

fn to_wire(input: &MappingInput) -> wire::MappingInput {
    let scopes = |s: &Scopes| wire::Scopes {
        full_call_reports: s.full_call_reports,
        extensions: s.extensions.clone(),
        queues: s.queues.clone(),
        phone_numbers: s.phone_numbers.clone(),
        billing_accounts: s.billing_accounts.clone(),
        default_caller_id: s.default_caller_id.clone(),
        groups: s.groups.clone(),
        group_rights: s
            .group_rights
            .iter()
            .map(|(right, reach)| {
                let groups = match reach {
                    GroupReach::All => vec!["*".to_owned()],
                    GroupReach::Groups(groups) => groups.iter().cloned().collect(),
                };
                (right.clone(), groups)
            })
            .collect(),
    };
    let u = &input.user;
    wire::MappingInput {
        tenant: input.tenant.clone(),
        user: wire::UserFacts {
            login: u.login.clone(),
            emails: u.emails.clone(),
            given_name: u.given_name.clone(),
            family_name: u.family_name.clone(),
            display_name: u.display_name.clone(),
            title: u.title.clone(),
            department: u.department.clone(),
            employee_number: u.employee_number.clone(),
            manager: u.manager.clone(),
            custom: u.custom.clone(),
            source: u.source.map(source_name),
        },
        groups: input
            .groups
            .iter()
            .map(|g| wire::ExternalGroup {
                source: source_name(g.source),
                id: g.id.clone(),
                display_name: g.display_name.clone(),
                via: g.via.clone(),
            })
            .collect(),
        current: input.current.as_ref().map(|c| wire::CurrentAssignment {
            role: c.role.clone(),
            access_profile: c.access_profile.clone(),
            scopes: scopes(&c.scopes),
        }),
    }
}

fn from_wire(id: &str, out: wire::MapperOutput) -> MapperOutput {
    MapperOutput {
        verdict: match out.verdict {
            wire::Verdict::Grant => Verdict::Grant,
            wire::Verdict::Deny => Verdict::Deny,
            wire::Verdict::Abstain => Verdict::Abstain,
        },
        role: out.role,
        access_profile: out.access_profile,
        scopes: Scopes {
            full_call_reports: out.scopes.full_call_reports,
            extensions: out.scopes.extensions,
            queues: out.scopes.queues,
            phone_numbers: out.scopes.phone_numbers,
            billing_accounts: out.scopes.billing_accounts,
            default_caller_id: out.scopes.default_caller_id,
            groups: out.scopes.groups,
            group_rights: out
                .scopes
                .group_rights
                .into_iter()
                .map(|(right, groups)| (right, GroupReach::listed(groups)))
                .collect(),
        },
        activation: out.activation,
        expiration: out.expiration,
        // The mapper of every reason is the plugin's id, whatever the plugin wrote.
        reasons: out
            .reasons
            .into_iter()
            .map(|r| Reason { mapper: id.to_owned(), rule: r.rule, grants: r.grants, groups: r.groups })
            .collect(),
    }
}

impl Mapper for PluginMapper {
    fn id(&self) -> &str {
        &self.id
    }

    fn map(&self, input: &MappingInput) -> Result<MapperOutput, MapperError> {
        self.map_batch(std::slice::from_ref(input)).pop().unwrap_or_else(|| Err(self.fail("no answer")))
    }

    /// One hand-off to a worker for the whole batch; each answer still has to come within
    /// the plugin's timeout of the previous one.
    fn map_batch(&self, inputs: &[MappingInput]) -> Vec<Result<MapperOutput, MapperError>> {
        let quarantined = || MapperError {
            mapper: self.id.clone(),
            message: "quarantined after a panic; reload plugins to retry".into(),
        };
        if self.health.quarantined.load(Ordering::SeqCst) {
            return inputs.iter().map(|_| Err(quarantined())).collect();
        }
        self.calls.fetch_add(inputs.len() as u64, Ordering::Relaxed);
        let mut encoded = Vec::with_capacity(inputs.len());
        for input in inputs {
            match serde_json::to_vec(&to_wire(input)) {
                Ok(bytes) => encoded.push(bytes),
                Err(e) => {
                    let message = format!("cannot encode input: {e}");
                    return inputs.iter().map(|_| Err(self.fail(message.clone()))).collect();
                }
            }
        }
        let (reply, answers) = sync_channel(inputs.len().max(1));
        if self.jobs.try_send((encoded, reply)).is_err() {
            self.refused_busy.fetch_add(inputs.len() as u64, Ordering::Relaxed);
            let stuck = self.health.stuck(self.timeout);
            let message = if stuck > 0 {
                format!("too many calls in flight ({stuck} of {} workers stuck in a call)", self.workers)
            } else {
                "too many calls in flight".to_owned()
            };
            return inputs.iter().map(|_| Err(self.fail(message.clone()))).collect();
        }
        let mut out = Vec::with_capacity(inputs.len());
        while out.len() < inputs.len() {
            match answers.recv_timeout(self.timeout) {
                Ok(chunk) => out.extend(chunk.into_iter().map(|(status, bytes)| self.answer(status, &bytes))),
                Err(_) if self.health.quarantined.load(Ordering::SeqCst) => {
                    while out.len() < inputs.len() {
                        out.push(Err(quarantined()));
                    }
                }
                Err(_) => {
                    self.timeouts.fetch_add(1, Ordering::Relaxed);
                    let message = format!("no answer within {} ms", self.timeout.as_millis());
                    // Dropping `answers` tells the worker to stop the batch.
                    while out.len() < inputs.len() {
                        out.push(Err(self.fail(message.clone())));
                    }
                }
            }
        }
        out
    }
}

impl PluginMapper {
    fn answer(&self, status: i32, bytes: &[u8]) -> Result<MapperOutput, MapperError> {
        match status {
            api::STATUS_OK => {
                let out: wire::MapperOutput = serde_json::from_slice(bytes)
                    .map_err(|e| self.fail(format!("answered something that is not a MapperOutput: {e}")))?;
                let out = from_wire(&self.id, out);
                out.scopes.validate().map_err(|e| self.fail(format!("answered invalid scopes: {e}")))?;
                Ok(out)
            }
            api::STATUS_PANIC => {
                // The worker has quarantined the plugin already.
                let message = String::from_utf8_lossy(bytes).into_owned();
                Err(self.fail(format!("panicked: {message}")))
            }
            _ => Err(self.fail(format!("failed: {}", String::from_utf8_lossy(bytes)))),
        }
    }
}

/// Every configured plugin, by id. Libraries load once; `reload` re-creates instances.
#[derive(Default)]
pub struct PluginHost {
    libraries: Mutex<BTreeMap<PathBuf, Arc<Library>>>,
    plugins: RwLock<BTreeMap<String, Arc<PluginMapper>>>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost").field("plugins", &self.ids()).finish()
    }
}

impl PluginHost {
    /// Loads every plugin; any failure fails the whole load (nothing replaced).
    pub fn load(specs: &[PluginSpec]) -> Result<Self, PluginLoadError> {
        let host = Self::default();
        host.reload(specs)?;
        Ok(host)
    }

    /// Re-creates all instances from `specs` (new config, new plugins). On error the
    /// previous set stays in service.
    pub fn reload(&self, specs: &[PluginSpec]) -> Result<(), PluginLoadError> {
        let mut fresh = BTreeMap::new();
        for spec in specs {
            if fresh.contains_key(&spec.id) {
                return Err(PluginLoadError::Other { id: spec.id.clone(), message: "plugin id listed twice".into() });
            }
            let library = self.library(spec)?;
            fresh.insert(spec.id.clone(), PluginMapper::create(spec, library)?);
        }
        *self.plugins.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    fn library(&self, spec: &PluginSpec) -> Result<Arc<Library>, PluginLoadError> {
        let canonical = std::fs::canonicalize(&spec.path).unwrap_or_else(|_| spec.path.clone());
        let mut libraries = self.libraries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = libraries.get(&canonical) {
            // A library stays loaded; a pin must still match the file that was loaded.
            if let Some(expected) = &spec.sha256
                && !expected.eq_ignore_ascii_case(&existing.sha256)
            {
                return Err(PluginLoadError::HashMismatch {
                    id: spec.id.clone(),
                    path: spec.path.display().to_string(),
                    expected: expected.clone(),
                    actual: existing.sha256.clone(),
                });
            }
            return Ok(existing.clone());
        }
        let library = Arc::new(load_library(spec)?);
        libraries.insert(canonical, library.clone());
        Ok(library)
    }

    pub fn get(&self, id: &str) -> Option<Arc<PluginMapper>> {
        self.plugins.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    pub fn ids(&self) -> Vec<String> {
        self.plugins.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    pub fn statuses(&self) -> Vec<PluginStatus> {
        self.plugins.read().unwrap_or_else(|e| e.into_inner()).values().map(|p| p.status()).collect()
    }

    /// A mapper by id, as the pipeline holds it.
    pub fn mapper(&self, id: &str) -> Option<Arc<dyn mapping::Mapper>> {
        self.get(id).map(|p| p as Arc<dyn mapping::Mapper>)
    }
}

/// Where cargo put a plugin's `cdylib` (for tests and tools): runs
/// `cargo build -p PACKAGE --message-format=json` and reads the artifact path.
pub fn build_plugin(package: &str, workspace: &Path) -> Result<PathBuf, String> {
    build_plugin_profile(package, workspace, false)
}

/// As [`build_plugin`], optimised (`--release`): what benchmarks and production load.
pub fn build_plugin_profile(package: &str, workspace: &Path, release: bool) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "--quiet", "-p", package, "--message-format=json"];
    if release {
        args.push("--release");
    }
    let out = std::process::Command::new(cargo)
        .args(&args)
        .current_dir(workspace)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo build -p {package} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if message["reason"] != "compiler-artifact"
            || !message["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        {
            continue;
        }
        if let Some(file) = message["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".so") || f.ends_with(".dylib") || f.ends_with(".dll"))
        {
            return Ok(PathBuf::from(file));
        }
    }
    Err(format!("cargo built {package} but reported no cdylib"))
}
