//! Reads a tenant's directory (OpenLDAP, 389-ds, Active Directory) and turns it into the
//! source persons the reconciliation service works with: users with their attributes, the
//! groups they are in directly and through nesting (cycle-safe, with the path), disabled
//! and expiry states as each flavour encodes them.
//!
//! Reading is all-or-nothing: any error (connection lost, time or size limit, a referral
//! it cannot follow) fails the read, and a failed read changes nobody's access.

pub mod entry;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use idbridge_core::directory::{Flavour, LdapSource, Membership, SearchScope};
use idbridge_core::individual::{SourceKind, SourceLink};
use idbridge_core::mapping::{ExternalGroup, UserFacts};
use idbridge_core::reconcile::SourcePerson;
pub use ldap3::SearchEntry;
use ldap3::adapters::{Adapter, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope};
use sha2::{Digest as _, Sha256};

use crate::entry::{Expiry, first, values};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("ca_file {path}: {message}")]
    CaFile { path: String, message: String },
    /// Every URL was tried, in order; each with why it did not serve.
    #[error("no directory server could be used: {}", describe(.tried))]
    Unreachable { tried: Vec<(String, String)> },
    #[error("bind as {dn:?} at {url} failed: {message}")]
    Bind { url: String, dn: String, message: String },
    /// The server did not answer one step within the source's `timeout_seconds`, or the
    /// connection broke: the next URL may serve.
    #[error("{step} at {url} got no answer within {seconds} s (timeout_seconds)")]
    TimedOut { url: String, step: String, seconds: u64 },
    #[error("{step} at {url} failed: connection lost: {message}")]
    ConnectionLost { url: String, step: String, message: String },
    #[error("{step} at {url} failed: {message}")]
    Search { url: String, step: String, message: String },
    #[error(
        "{url} answered with a referral to {to}, which idbridge does not follow: the entries under the base live on \
         another server (point the source at it, or at a Global Catalog)"
    )]
    Referral { url: String, to: String },
}

impl ReadError {
    /// Whether another URL of the source might serve where this one did not (a hung or
    /// lost server, not a refused bind or a bad search).
    pub fn fails_over(&self) -> bool {
        matches!(self, Self::TimedOut { .. } | Self::ConnectionLost { .. })
    }

    /// The URL the error happened at, when one did.
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::Bind { url, .. }
            | Self::TimedOut { url, .. }
            | Self::ConnectionLost { url, .. }
            | Self::Search { url, .. }
            | Self::Referral { url, .. } => Some(url),
            Self::CaFile { .. } | Self::Unreachable { .. } => None,
        }
    }
}

fn describe(tried: &[(String, String)]) -> String {
    tried.iter().map(|(url, why)| format!("{url}: {why}")).collect::<Vec<_>>().join("; ")
}

/// Everything read in one run.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub users: Vec<SearchEntry>,
    pub groups: Vec<SearchEntry>,
    /// Which URL answered (after failover).
    pub url: String,
    /// The highest change mark among the users read.
    pub high_water: Option<String>,
}

fn scope(s: SearchScope) -> Scope {
    match s {
        SearchScope::Base => Scope::Base,
        SearchScope::One => Scope::OneLevel,
        SearchScope::Sub => Scope::Subtree,
    }
}

/// A TLS configuration that trusts exactly the CA certificates in a PEM file.
pub fn tls_config(path: &str) -> Result<std::sync::Arc<rustls::ClientConfig>, ReadError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let fail = |message: String| ReadError::CaFile { path: path.to_owned(), message };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("holds no PEM certificate".into()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// What went wrong in one step at one URL, as a `ReadError`.
fn step_error(url: &str, step: impl Into<String>, seconds: u64, e: ldap3::LdapError) -> ReadError {
    let (url, step) = (url.to_owned(), step.into());
    match e {
        ldap3::LdapError::Timeout { .. } => ReadError::TimedOut { url, step, seconds },
        e @ (ldap3::LdapError::Io { .. }
        | ldap3::LdapError::EndOfStream
        | ldap3::LdapError::OpSend { .. }
        | ldap3::LdapError::ResultRecv { .. }
        | ldap3::LdapError::IdScrubSend { .. }) => ReadError::ConnectionLost { url, step, message: e.to_string() },
        e => ReadError::Search { url, step, message: e.to_string() },
    }
}

/// Connects to the first URL, from the `from`th on, that answers and accepts the bind.
/// A server that is down, refuses the connection or does not answer within
/// `timeout_seconds` is passed over for the next; a bind the server refuses (wrong
/// password, locked account) ends the attempt — another replica would refuse it too, and
/// every try counts towards Active Directory's lockout.
async fn connect(
    source: &LdapSource,
    password: Option<&str>,
    from: usize,
) -> Result<(Ldap, usize, Vec<(String, String)>), ReadError> {
    let seconds = source.timeout_seconds;
    let timeout = Duration::from_secs(seconds);
    let tls = source.ca_file.as_deref().map(tls_config).transpose()?;
    let mut tried = Vec::new();
    for (index, url) in source.urls.iter().enumerate().skip(from) {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(timeout)
            .set_starttls(source.start_tls && url.starts_with("ldap://"))
            .set_no_tls_verify(source.tls_insecure);
        if let Some(config) = &tls {
            settings = settings.set_config(config.clone());
        }
        // The connection (and StartTLS) under one deadline: a server that accepts TCP and
        // then says nothing must not hold the run.
        let connected = match tokio::time::timeout(timeout, LdapConnAsync::with_settings(settings, url)).await {
            Ok(Ok(connected)) => Ok(connected),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {seconds} s")),
        };
        let (conn, mut ldap) = match connected {
            Ok(connected) => connected,
            Err(why) => {
                tracing::warn!(url, error = why, "directory server unusable; trying the next URL");
                tried.push((url.clone(), why));
                continue;
            }
        };
        ldap3::drive!(conn);
        if let Some(dn) = &source.bind_dn {
            ldap.with_timeout(timeout);
            match ldap.simple_bind(dn, password.unwrap_or("")).await {
                // The password never appears in the message: ldap3 reports the result
                // code and the server's text only.
                Ok(result) => {
                    if let Err(e) = result.success() {
                        return Err(ReadError::Bind { url: url.clone(), dn: dn.clone(), message: e.to_string() });
                    }
                }
                Err(e) => {
                    let e = step_error(url, format!("bind as {dn:?}"), seconds, e);
                    if !e.fails_over() {
                        return Err(e);
                    }
                    tracing::warn!(url, error = %e, "directory server unusable; trying the next URL");
                    tried.push((url.clone(), e.to_string()));
                    continue;
                }
            }
        }
        return Ok((ldap, index, tried));
    }
    Err(ReadError::Unreachable { tried })
}

/// LDAP_SERVER_SHOW_DELETED_OID: the search returns deleted objects too (MS-ADTS 3.1.1.3.4.1.14).
const SHOW_DELETED: &str = "1.2.840.113556.1.4.417";

/// Where a search's entries go: one at a time to a function, or a page at a time into a
/// channel, whose consumer works on a page while the server already sends the next.
enum Sink<'s> {
    Each(&'s mut (dyn FnMut(SearchEntry) + Send)),
    Pages {
        to: &'s tokio::sync::mpsc::Sender<Vec<SearchEntry>>,
        size: usize,
        /// Sees every entry before it joins its page.
        inspect: &'s mut (dyn FnMut(&SearchEntry) + Send),
    },
}

/// A paged search, handing its entries to `sink` as they arrive; an error ends it. Every
/// answer — each entry, each page, the final result — must come within the timeout.
async fn search_each(
    conn: &mut Conn,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[String],
    page_size: u32,
    mut sink: Sink<'_>,
) -> Result<(), ReadError> {
    let (url, seconds) = (conn.url.clone(), conn.seconds);
    let fail = |e: ldap3::LdapError| step_error(&url, format!("search under {base:?}"), seconds, e);
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![Box::new(PagedResults::new(page_size as i32))];
    conn.ldap.with_timeout(Duration::from_secs(seconds));
    let mut stream =
        conn.ldap.streaming_search_with(adapters, base, scope, filter, attrs.to_vec()).await.map_err(fail)?;
    let mut page = Vec::new();
    // The consumer went away (its run was cancelled): the search ends here.
    let gone = || ReadError::Search {
        url: url.clone(),
        step: format!("search under {base:?}"),
        message: "the run stopped reading".into(),
    };
    while let Some(entry) = stream.next().await.map_err(fail)? {
        if entry.is_ref() {
            // A continuation reference (RFC 4511 §4.5.3): part of the tree under the base
            // lives elsewhere — Active Directory answers a search at the domain root with
            // references to its application partitions (DomainDnsZones, Configuration).
            // The entries this server holds are all returned; the rest is not this
            // source's to read.
            tracing::debug!(url, refs = ?ldap3::parse_refs(entry.0), "continuation reference skipped");
            continue;
        }
        if entry.is_intermediate() {
            continue;
        }
        let entry = SearchEntry::construct(entry);
        match &mut sink {
            Sink::Each(each) => each(entry),
            Sink::Pages { to, size, inspect } => {
                inspect(&entry);
                page.push(entry);
                if page.len() >= *size {
                    to.send(std::mem::replace(&mut page, Vec::with_capacity(*size))).await.map_err(|_| gone())?;
                }
            }
        }
    }
    let result = stream.finish().await;
    if result.rc == 10 {
        // A referral as the result: the base itself is held by another server.
        return Err(ReadError::Referral { url, to: result.refs.join(", ") });
    }
    result.success().map_err(fail)?;
    if let Sink::Pages { to, .. } = sink
        && !page.is_empty()
    {
        to.send(page).await.map_err(|_| gone())?;
    }
    Ok(())
}

/// A paged search, every entry or an error.
async fn search(
    conn: &mut Conn,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[String],
    page_size: u32,
) -> Result<Vec<SearchEntry>, ReadError> {
    let mut out = Vec::new();
    search_each(conn, base, scope, filter, attrs, page_size, Sink::Each(&mut |e| out.push(e))).await?;
    Ok(out)
}

/// A bound connection, the URL it is to, and the source's deadline per answer.
struct Conn {
    ldap: Ldap,
    url: String,
    seconds: u64,
}

/// A connection to a directory, read groups first (people need them) and then users as
/// a stream, so a run never holds every user entry at once.
pub struct Reader {
    conn: Conn,
    /// Which URL answered (after failover).
    pub url: String,
    /// Its place in the source's `urls`: a read that fails over starts after it.
    pub index: usize,
    /// The URLs before it that could not be used, and why.
    pub passed_over: Vec<(String, String)>,
}

impl Reader {
    pub async fn connect(source: &LdapSource, password: Option<&str>) -> Result<Self, ReadError> {
        Self::connect_from(source, password, 0).await
    }

    /// Connects to the first usable URL from the `from`th on.
    pub async fn connect_from(source: &LdapSource, password: Option<&str>, from: usize) -> Result<Self, ReadError> {
        let (ldap, index, passed_over) = connect(source, password, from).await?;
        let url = source.urls[index].clone();
        Ok(Self { conn: Conn { ldap, url: url.clone(), seconds: source.timeout_seconds }, url, index, passed_over })
    }

    /// Every group; Active Directory's ranged `member` values are fetched to the end.
    pub async fn groups(&mut self, source: &LdapSource) -> Result<Vec<SearchEntry>, ReadError> {
        let Some(base) = &source.group_base else { return Ok(Vec::new()) };
        let a = source.attributes();
        let member_attr = member_attribute(source.membership).to_owned();
        let group_attrs = vec![a.group_name.clone(), a.id.clone(), member_attr.clone()];
        let mut groups =
            search(&mut self.conn, base, Scope::Subtree, &source.group_filter(), &group_attrs, source.page_size)
                .await?;
        if source.flavour == Flavour::ActiveDirectory {
            for group in &mut groups {
                fetch_ranges(&mut self.conn, group, &member_attr).await?;
            }
        }
        Ok(groups)
    }

    /// Users (all, or with `since` only those changed since that change mark), sent into
    /// `pages` a page (`page_size` entries) at a time as they arrive: the next page is
    /// asked for while the consumer works on this one, and a consumer that falls behind
    /// holds the read back (the channel is bounded), so at most a few pages are held at
    /// once. The channel closes when the read ends. Returns how many, and the highest
    /// change mark seen.
    pub async fn users(
        &mut self,
        source: &LdapSource,
        since: Option<&str>,
        pages: tokio::sync::mpsc::Sender<Vec<SearchEntry>>,
    ) -> Result<(u64, Option<String>), ReadError> {
        let a = source.attributes();
        let mut user_attrs = vec![
            a.login.clone(),
            a.email.clone(),
            a.given_name.clone(),
            a.family_name.clone(),
            a.display_name.clone(),
            a.title.clone(),
            a.department.clone(),
            a.employee_number.clone(),
            a.id.clone(),
            "memberOf".to_owned(),
            "userAccountControl".to_owned(),
            "pwdAccountLockedTime".to_owned(),
            "nsAccountLock".to_owned(),
        ];
        user_attrs.extend(a.disabled.iter().cloned());
        user_attrs.extend(a.expiry.iter().cloned());
        let change = source.change_attribute();
        user_attrs.push(change.to_owned());
        let filter = match since {
            Some(mark) => format!("(&{}({change}>={}))", source.user_filter(), ldap3::ldap_escape(mark)),
            None => source.user_filter(),
        };
        let mut count = 0;
        let mut high_water: Option<String> = None;
        search_each(
            &mut self.conn,
            &source.user_base,
            scope(source.user_scope),
            &filter,
            &user_attrs,
            source.page_size,
            Sink::Pages {
                to: &pages,
                size: source.page_size.max(1) as usize,
                inspect: &mut |entry| {
                    count += 1;
                    if let Some(mark) = first(entry, change) {
                        // Generalized times of one server compare as text; USNs as numbers.
                        let higher =
                            high_water.as_deref().is_none_or(|h| match (mark.parse::<u64>(), h.parse::<u64>()) {
                                (Ok(m), Ok(h)) => m > h,
                                _ => mark > h,
                            });
                        if higher {
                            high_water = Some(mark.to_owned());
                        }
                    }
                },
            },
        )
        .await?;
        Ok((count, high_water))
    }

    /// The ids of users Active Directory deleted since the change mark `since`: their
    /// tombstones (`isDeleted`, read with the show-deleted control, OID
    /// 1.2.840.113556.1.4.417) keep `objectGUID` and get a new `uSNChanged` when deleted.
    /// Tombstones live under the domain's `CN=Deleted Objects`, wherever the user was, so
    /// the whole naming context is searched; callers keep the ids they know. `None` when
    /// there are too many to read in one answer (more than the server's MaxPageSize since
    /// the last run): read everyone instead. Other flavours keep no tombstones: their
    /// deletions are found by full runs only, and this answers `Some([])`.
    pub async fn deleted_since(&mut self, source: &LdapSource, since: &str) -> Result<Option<Vec<String>>, ReadError> {
        if source.flavour != Flavour::ActiveDirectory {
            return Ok(Some(Vec::new()));
        }
        let (url, seconds) = (self.conn.url.clone(), self.conn.seconds);
        let timeout = Duration::from_secs(seconds);
        let root = {
            let fail = |e| step_error(&url, "read the root DSE", seconds, e);
            self.conn.ldap.with_timeout(timeout);
            let (entries, _) = self
                .conn
                .ldap
                .search("", Scope::Base, "(objectClass=*)", vec!["defaultNamingContext"])
                .await
                .map_err(fail)?
                .success()
                .map_err(fail)?;
            let root = entries.into_iter().next().map(SearchEntry::construct);
            match root.as_ref().and_then(|e| first(e, "defaultNamingContext")) {
                Some(nc) => nc.to_owned(),
                None => {
                    return Err(ReadError::Search {
                        url,
                        step: "read the root DSE".into(),
                        message: "it names no defaultNamingContext".into(),
                    });
                }
            }
        };
        let step = format!("search for deleted users under {root:?}");
        let fail = |e| step_error(&url, step.clone(), seconds, e);
        let id = source.attributes().id.clone();
        let filter = format!("(&(isDeleted=TRUE)(objectClass=user)(uSNChanged>={}))", ldap3::ldap_escape(since.trim()));
        self.conn.ldap.with_timeout(timeout);
        let show_deleted = ldap3::controls::RawControl { ctype: SHOW_DELETED.to_owned(), crit: true, val: None };
        let result = self
            .conn
            .ldap
            .with_controls(show_deleted)
            .search(&root, Scope::Subtree, &filter, vec![id.as_str()])
            .await
            .map_err(fail)?;
        // sizeLimitExceeded: more tombstones than one answer holds.
        if result.1.rc == 4 {
            return Ok(None);
        }
        let (entries, _) = result.success().map_err(fail)?;
        Ok(Some(entries.into_iter().map(SearchEntry::construct).filter_map(|entry| entry_id(&entry, &id)).collect()))
    }

    pub async fn close(mut self) {
        self.conn.ldap.with_timeout(Duration::from_secs(self.conn.seconds));
        let _ = self.conn.ldap.unbind().await;
    }
}

/// Reads users (all, or with `since` only those changed since that change mark) and every
/// group. Active Directory's ranged `member` values are fetched to the end.
pub async fn read(source: &LdapSource, password: Option<&str>, since: Option<&str>) -> Result<Snapshot, ReadError> {
    let mut reader = Reader::connect(source, password).await?;
    let groups = reader.groups(source).await?;
    let (pages, mut arriving) = tokio::sync::mpsc::channel(2);
    let mut users = Vec::new();
    let collect = async {
        while let Some(page) = arriving.recv().await {
            users.extend(page);
        }
    };
    let (read, ()) = tokio::join!(reader.users(source, since, pages), collect);
    let (_, high_water) = read?;
    let url = reader.url.clone();
    reader.close().await;
    Ok(Snapshot { users, groups, url, high_water })
}

/// AD returns at most 1,500 values of `member` per read, as `member;range=0-1499`; the
/// rest is asked for range by range on the group itself.
async fn fetch_ranges(conn: &mut Conn, group: &mut SearchEntry, member: &str) -> Result<(), ReadError> {
    let mut next = entry::ranged(group, member).first().and_then(|(name, _)| entry::next_range(name));
    let mut collected: Vec<String> =
        entry::ranged(group, member).into_iter().flat_map(|(_, v)| v.iter().cloned()).collect();
    while let Some(range) = next.take() {
        let found = search(conn, &group.dn, Scope::Base, "(objectClass=*)", std::slice::from_ref(&range), 1000).await?;
        let Some(part) = found.first() else { break };
        for (name, vals) in entry::ranged(part, member) {
            collected.extend(vals.iter().cloned());
            next = entry::next_range(name);
        }
    }
    if !collected.is_empty() {
        group
            .attrs
            .retain(|k, _| !k.to_ascii_lowercase().starts_with(&format!("{};range=", member.to_ascii_lowercase())));
        group.attrs.entry(member.to_owned()).or_default().extend(collected);
    }
    Ok(())
}

fn member_attribute(m: Membership) -> &'static str {
    match m {
        Membership::Member | Membership::MemberOf => "member",
        Membership::UniqueMember => "uniqueMember",
        Membership::MemberUid => "memberUid",
    }
}

/// The immutable id of an entry: `objectGUID` in canonical form, else the attribute's
/// text (`entryUUID`, `nsUniqueId`).
fn entry_id(entry: &SearchEntry, attribute: &str) -> Option<String> {
    if attribute.eq_ignore_ascii_case("objectGUID") {
        return entry::bytes(entry, attribute).and_then(|raw| entry::guid_string(&raw));
    }
    first(entry, attribute).map(str::to_lowercase)
}

fn normalize_dn(dn: &str) -> String {
    dn.split(',').map(|part| part.trim().to_lowercase()).collect::<Vec<_>>().join(",")
}

struct Group {
    id: String,
    name: String,
}

/// The people in a snapshot, and warnings about entries that were skipped or values that
/// could not be read.
pub fn persons(source: &LdapSource, snapshot: &Snapshot) -> (Vec<SourcePerson>, Vec<String>) {
    let mut warnings = Vec::new();
    let index = GroupIndex::new(source, &snapshot.groups, &mut warnings);
    let people = index.people(source, &snapshot.users, &mut warnings);
    (people, warnings)
}

/// The groups of a snapshot, and who lists whom.
pub struct GroupIndex {
    groups: HashMap<String, Group>,
    /// Member (DN or login) → the groups listing it (for users and, with nesting, groups).
    parents: HashMap<String, Vec<String>>,
}

impl GroupIndex {
    pub fn new(source: &LdapSource, entries: &[SearchEntry], warnings: &mut Vec<String>) -> Self {
        let a = source.attributes();
        let member_attr = member_attribute(source.membership);
        let mut groups: HashMap<String, Group> = HashMap::new();
        // Who lists whom: group DN → member values (DNs or logins).
        let mut members: HashMap<String, Vec<String>> = HashMap::new();
        for g in entries {
            let dn = normalize_dn(&g.dn);
            let Some(id) = entry_id(g, &a.id) else {
                warnings.push(format!("group {} has no {}; skipped", g.dn, a.id));
                continue;
            };
            let name = first(g, &a.group_name).unwrap_or(&g.dn).to_owned();
            let listed = values(g, member_attr)
                .into_iter()
                .map(|m| match source.membership {
                    Membership::MemberUid => m.to_lowercase(),
                    // uniqueMember may carry `#'0101'B` after the DN.
                    _ => normalize_dn(m.split('#').next().unwrap_or(m)),
                })
                .collect();
            members.insert(dn.clone(), listed);
            groups.insert(dn, Group { id, name });
        }
        // Member → the groups listing it (for users and, with nesting, for groups).
        let mut parents: HashMap<String, Vec<String>> = HashMap::new();
        for (group, listed) in &members {
            for m in listed {
                parents.entry(m.clone()).or_default().push(group.clone());
            }
        }
        for list in parents.values_mut() {
            list.sort();
            list.dedup();
        }
        Self { groups, parents }
    }

    /// A person's groups from this index: by DN, or by login for `memberUid`. (`memberOf`
    /// lives on the user entry, so only a fresh read of the user can tell.)
    fn groups_of(&self, source: &LdapSource, dn: &str, login: &str, member_of: Vec<String>) -> Vec<ExternalGroup> {
        let direct: Vec<String> = match source.membership {
            Membership::MemberOf => member_of,
            Membership::MemberUid => self.parents.get(&login.to_lowercase()).cloned().unwrap_or_default(),
            _ => self.parents.get(&normalize_dn(dn)).cloned().unwrap_or_default(),
        };
        expand(&direct, &self.parents, &self.groups, source.nested_groups && source.membership != Membership::MemberUid)
    }

    /// The key by which this source's groups list `person` (its normalised DN, or its
    /// login for `memberUid`); `None` for `memberOf`, where the user entry lists them.
    pub fn member_key(source: &LdapSource, person: &SourcePerson) -> Option<String> {
        match source.membership {
            Membership::MemberOf => None,
            Membership::MemberUid => Some(person.facts.login.to_lowercase()),
            _ => person.facts.custom.get("dn").map(|dn| normalize_dn(dn)),
        }
    }

    /// A digest of what these groups give a person (each group's id, name and the path it
    /// was inherited through, in order).
    pub fn groups_digest(groups: &[ExternalGroup]) -> String {
        let mut hash = Sha256::new();
        for g in groups {
            for part in std::iter::once(&g.id).chain(std::iter::once(&g.display_name)).chain(&g.via) {
                hash.update(part.len().to_le_bytes());
                hash.update(part.as_bytes());
            }
            hash.update(b"/");
        }
        format!("g1:{}", hex::encode(hash.finalize()))
    }

    /// The groups that list `key` directly (a DN or a login, as [`Self::member_key`] gives).
    pub fn direct_groups(&self, key: &str) -> &[String] {
        self.parents.get(key).map_or(&[], Vec::as_slice)
    }

    /// [`Self::groups_digest`] of what these direct groups give today (with the source's
    /// nesting). People in the same groups share it: callers keep it per direct groups.
    pub fn groups_digest_of(&self, source: &LdapSource, direct: &[String]) -> String {
        Self::groups_digest(&expand(
            direct,
            &self.parents,
            &self.groups,
            source.nested_groups && source.membership != Membership::MemberUid,
        ))
    }

    /// The person as an earlier run saw it, with its groups as they are now (incremental
    /// runs read only changed users, but every group).
    pub fn regroup(&self, source: &LdapSource, person: &SourcePerson) -> Option<SourcePerson> {
        if source.membership == Membership::MemberOf {
            return None;
        }
        let dn = person.facts.custom.get("dn")?;
        let mut fresh = person.clone();
        fresh.groups = self.groups_of(source, dn, &person.facts.login, Vec::new());
        Some(fresh)
    }
}

impl GroupIndex {
    /// The people among user entries (sorted by id); entries without an id or a login are
    /// skipped with a warning.
    pub fn people(
        &self,
        source: &LdapSource,
        entries: &[SearchEntry],
        warnings: &mut Vec<String>,
    ) -> Vec<SourcePerson> {
        let index = self;
        let a = source.attributes();
        let mut people = Vec::with_capacity(entries.len());
        for u in entries {
            let Some(id) = entry_id(u, &a.id) else {
                warnings.push(format!("user {} has no {}; skipped", u.dn, a.id));
                continue;
            };
            let Some(login) = first(u, &a.login) else {
                warnings.push(format!("user {} has no {}; skipped", u.dn, a.login));
                continue;
            };
            let member_of = values(u, "memberOf").into_iter().map(normalize_dn).collect();
            let groups_of = index.groups_of(source, &u.dn, login, member_of);
            let disabled = match source.flavour {
                Flavour::ActiveDirectory => entry::ad_disabled(first(u, "userAccountControl")),
                Flavour::Openldap => {
                    first(u, "pwdAccountLockedTime").is_some()
                        || first(u, "nsAccountLock").is_some_and(|v| v.eq_ignore_ascii_case("true"))
                }
            } || a.disabled.as_deref().is_some_and(|attr| {
                let present = values(u, attr);
                if a.disabled_values.is_empty() {
                    !present.is_empty()
                } else {
                    present.iter().any(|v| a.disabled_values.iter().any(|d| d.eq_ignore_ascii_case(v)))
                }
            });
            let expiration =
                a.expiry.as_deref().and_then(|attr| first(u, attr).map(|v| (attr, v))).and_then(|(attr, v)| {
                    let parsed = if attr.eq_ignore_ascii_case("accountExpires") {
                        entry::filetime(v)
                    } else {
                        entry::generalized_or_days(v)
                    };
                    match parsed {
                        Expiry::At(at) => Some(at.to_string()),
                        Expiry::Never => None,
                        Expiry::Unreadable => {
                            warnings.push(format!("user {}: {attr} {v:?} is not a time; ignored", u.dn));
                            None
                        }
                    }
                });
            let text = |attr: &str| first(u, attr).map(str::to_owned);
            let emails: Vec<String> = values(u, &a.email).into_iter().map(str::to_owned).collect();
            let facts = UserFacts {
                login: login.to_owned(),
                emails: emails.clone(),
                given_name: text(&a.given_name),
                family_name: text(&a.family_name),
                display_name: text(&a.display_name),
                title: text(&a.title),
                department: text(&a.department),
                employee_number: text(&a.employee_number),
                manager: None,
                custom: [("dn".to_owned(), u.dn.clone())].into(),
                source: Some(SourceKind::Ldap),
            };
            people.push(SourcePerson {
                link: SourceLink { source: SourceKind::Ldap, connection: source.name.clone(), external_id: id },
                also: Vec::new(),
                groups: groups_of,
                active: !disabled,
                email: emails.first().cloned(),
                given_name: facts.given_name.clone(),
                family_name: facts.family_name.clone(),
                display_name: facts.display_name.clone(),
                activation: None,
                expiration,
                time_zone: None,
                facts,
            });
        }
        people.sort_by(|x, y| x.link.external_id.cmp(&y.link.external_id));
        people
    }
}

/// Direct groups and, with nesting, every group above them, each once, with the path it
/// was inherited through. Breadth-first, so the shortest path wins; a visited set makes
/// cycles harmless.
fn expand(
    direct: &[String],
    parents: &HashMap<String, Vec<String>>,
    groups: &HashMap<String, Group>,
    nested: bool,
) -> Vec<ExternalGroup> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut queue: VecDeque<(&str, Vec<String>)> = VecDeque::new();
    let mut out = Vec::new();
    for dn in direct {
        if groups.contains_key(dn) && seen.insert(dn.as_str()) {
            queue.push_back((dn.as_str(), Vec::new()));
        }
    }
    while let Some((dn, via)) = queue.pop_front() {
        let group = &groups[dn];
        out.push(ExternalGroup {
            source: SourceKind::Ldap,
            id: group.id.clone(),
            display_name: group.name.clone(),
            via: via.clone(),
        });
        if !nested {
            continue;
        }
        for parent in parents.get(dn).into_iter().flatten() {
            if groups.contains_key(parent) && seen.insert(parent.as_str()) {
                let mut path = via.clone();
                path.push(group.name.clone());
                queue.push_back((parent.as_str(), path));
            }
        }
    }
    out.sort_by(|x, y| x.display_name.cmp(&y.display_name).then_with(|| x.id.cmp(&y.id)));
    out
}

/// An equality filter with the value escaped per RFC 4515.
pub fn equality(attribute: &str, value: &str) -> String {
    format!("({attribute}={})", ldap3::ldap_escape(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(dn: &str, attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: dn.into(),
            attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
            bin_attrs: HashMap::new(),
        }
    }

    fn source(flavour: &str, membership: &str) -> LdapSource {
        serde_json::from_value(serde_json::json!({
            "name": "corp", "urls": ["ldap://x"], "user_base": "ou=people,dc=x", "group_base": "ou=groups,dc=x",
            "flavour": flavour, "membership": membership
        }))
        .unwrap()
    }

    /// What an incremental run compares: the digest of a person's groups as read, and what
    /// today's groups give the person's key — equal while the groups are, different when
    /// a group above the person's gains a parent.
    #[test]
    fn groups_seen_match_until_the_groups_change() {
        let source = source("openldap", "member");
        let group = |dn: &str, id: &str, members: &[&str]| {
            let cn = dn.split(',').next().unwrap().trim_start_matches("cn=").to_owned();
            e(dn, &[("cn", &[cn.as_str()]), ("entryUUID", &[id]), ("member", members)])
        };
        let users = vec![e("uid=Bob,ou=people,dc=x", &[("uid", &["bob"]), ("entryUUID", &["U1"])])];
        let mut groups = vec![group("cn=queue,ou=groups,dc=x", "G1", &["uid=bob,ou=people,dc=x"])];
        let mut warnings = Vec::new();
        let index = GroupIndex::new(&source, &groups, &mut warnings);
        let bob = index.people(&source, &users, &mut warnings).remove(0);
        let key = GroupIndex::member_key(&source, &bob).unwrap();
        assert_eq!(key, "uid=bob,ou=people,dc=x");
        let seen = GroupIndex::groups_digest(&bob.groups);
        assert_eq!(index.groups_digest_of(&source, index.direct_groups(&key)), seen);

        groups.push(group("cn=admins,ou=groups,dc=x", "G2", &["cn=queue,ou=groups,dc=x"]));
        let index = GroupIndex::new(&source, &groups, &mut warnings);
        let today = index.groups_digest_of(&source, index.direct_groups(&key));
        assert_ne!(today, seen, "bob is in admins through queue now");
        assert_eq!(today, GroupIndex::groups_digest(&index.regroup(&source, &bob).unwrap().groups));
        assert_eq!(
            index.groups_digest_of(&source, index.direct_groups("uid=nobody,dc=x")),
            GroupIndex::groups_digest(&[])
        );
    }

    #[test]
    fn nested_and_cyclic_groups_expand_once_with_their_path() {
        let snapshot = Snapshot {
            users: vec![e("uid=bob,ou=people,dc=x", &[("uid", &["bob"]), ("entryUUID", &["U1"])])],
            groups: vec![
                e(
                    "cn=pbx-admins,ou=groups,dc=x",
                    &[("cn", &["pbx-admins"]), ("entryUUID", &["G1"]), ("member", &["uid=bob,ou=people,dc=x"])],
                ),
                e(
                    "cn=staff,ou=groups,dc=x",
                    &[
                        ("cn", &["staff"]),
                        ("entryUUID", &["G2"]),
                        ("member", &["cn=pbx-admins,ou=groups,dc=x", "cn=all,ou=groups,dc=x"]),
                    ],
                ),
                e(
                    "cn=all,ou=groups,dc=x",
                    &[("cn", &["all"]), ("entryUUID", &["G3"]), ("member", &["cn=staff,ou=groups,dc=x"])],
                ),
            ],
            url: String::new(),
            high_water: None,
        };
        let (people, warnings) = persons(&source("openldap", "member"), &snapshot);
        assert!(warnings.is_empty(), "{warnings:?}");
        let bob = &people[0];
        assert_eq!(bob.link.external_id, "u1");
        let got: Vec<(&str, Vec<String>)> =
            bob.groups.iter().map(|g| (g.display_name.as_str(), g.via.clone())).collect();
        assert_eq!(
            got,
            vec![
                ("all", vec!["pbx-admins".to_string(), "staff".to_string()]),
                ("pbx-admins", vec![]),
                ("staff", vec!["pbx-admins".to_string()]),
            ]
        );
        let mut flat = source("openldap", "member");
        flat.nested_groups = false;
        assert_eq!(persons(&flat, &snapshot).0[0].groups.len(), 1);
    }

    #[test]
    fn active_directory_users_disabled_expired_and_without_ids() {
        let guid = vec![0xE0, 0x04, 0x25, 0x3F, 0x89, 0x4F, 0xD3, 0x11, 0x9A, 0x0C, 0x03, 0x05, 0xE8, 0x2C, 0x33, 0x01];
        let mut alice = e(
            "CN=Alice,OU=Staff,DC=corp",
            &[
                ("sAMAccountName", &["alice"]),
                ("userAccountControl", &["514"]),
                ("accountExpires", &["133801632000000000"]),
            ],
        );
        alice.bin_attrs.insert("objectGUID".into(), vec![guid]);
        let nobody = e("CN=NoId,OU=Staff,DC=corp", &[("sAMAccountName", &["noid"])]);
        let mut garbage = e("CN=G,OU=Staff,DC=corp", &[("sAMAccountName", &["g"]), ("accountExpires", &["soon"])]);
        garbage.bin_attrs.insert("objectGUID".into(), vec![vec![7; 16]]);
        let snapshot =
            Snapshot { users: vec![alice, nobody, garbage], groups: vec![], url: String::new(), high_water: None };
        let (people, warnings) = persons(&source("active_directory", "member"), &snapshot);
        assert_eq!(people.len(), 2);
        let alice = people.iter().find(|p| p.facts.login == "alice").unwrap();
        assert_eq!(alice.link.external_id, "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        assert!(!alice.active);
        assert_eq!(alice.expiration.as_deref(), Some("2025-01-01T00:00:00Z"));
        assert!(people.iter().find(|p| p.facts.login == "g").unwrap().expiration.is_none());
        assert!(warnings.iter().any(|w| w.contains("NoId")), "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("\"soon\"")), "{warnings:?}");
    }

    #[test]
    fn member_uid_and_member_of_models() {
        let users = vec![e(
            "uid=bob,ou=people,dc=x",
            &[("uid", &["Bob"]), ("entryUUID", &["U1"]), ("memberOf", &["cn=ops,ou=groups,dc=x"])],
        )];
        let posix = Snapshot {
            users: users.clone(),
            groups: vec![e(
                "cn=ops,ou=groups,dc=x",
                &[("cn", &["ops"]), ("entryUUID", &["G1"]), ("memberUid", &["bob"])],
            )],
            url: String::new(),
            high_water: None,
        };
        assert_eq!(persons(&source("openldap", "member_uid"), &posix).0[0].groups[0].display_name, "ops");
        let overlay = Snapshot {
            users,
            groups: vec![e("cn=ops,ou=groups,dc=x", &[("cn", &["ops"]), ("entryUUID", &["G1"])])],
            url: String::new(),
            high_water: None,
        };
        assert_eq!(persons(&source("openldap", "member_of"), &overlay).0[0].groups[0].display_name, "ops");
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = std::env::temp_dir().join(format!("idbridge-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate").unwrap();
        let err = tls_config(dir.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let err = tls_config("/nonexistent/ca.pem").unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let _ = std::fs::remove_file(dir);
    }

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(equality("uid", "a*(b)\\c"), "(uid=a\\2a\\28b\\29\\5cc)");
    }
}
