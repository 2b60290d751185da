//! The storage ports of `idbridge-core`, implemented over sqlx for SQLite (the embedded
//! default: one file next to the daemon) and PostgreSQL (production, several instances).
//!
//! One implementation, [`SqlStore`], serves both through sqlx's `Any` driver: the SQL is
//! the common subset (`$n` parameters, `ON CONFLICT`, `RETURNING`), each backend has its
//! own `migrations/` folder, and the few differences (how a write transaction starts,
//! connection pragmas) live in [`Backend`] inside this crate — never in callers.
//!
//! This crate must never decide domain questions; it stores what core decided, checks
//! versions and uniqueness, and scopes every query by tenant.

mod backchannel;
mod change_sets;
mod config;
mod connectors;
mod convert;
mod directory;
mod individuals;
mod intents;
mod local_accounts;
mod log;
mod logins;
mod port;
mod rows;
mod scim;
mod sso;
mod stored;
mod tenants;

use std::str::FromStr;
use std::time::Duration;

use idbridge_core::{DomainError, DomainResult};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> DomainResult<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(DomainError::invalid(
                "database.url",
                "must start with sqlite: (for example sqlite://idbridge.db) or postgres://",
            ))
        }
    }

    /// SQLite write transactions take the write lock up front: a deferred transaction
    /// that reads and then writes fails with SQLITE_BUSY when another writer got there
    /// first, and busy_timeout cannot help it.
    fn begin_statement(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }
}

/// Pool settings from the daemon's config.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    pub max_connections: u32,
    /// How long to wait for a free connection of the pool (and for a new one to open).
    pub connect_timeout: Duration,
    /// PostgreSQL's `statement_timeout` on every connection; zero: none.
    pub statement_timeout: Duration,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// The store over one database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// SQLite admits one writer at a time. Queuing writers here, in order, is fairer and
    /// far faster under load than letting them poll the database lock (busy_timeout
    /// sleeps with growing back-off, which made p99 latencies jump).
    sqlite_writer: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

/// A write transaction; on SQLite it also holds the in-process writer lock.
pub(crate) struct WriteTx {
    pub(crate) tx: sqlx::Transaction<'static, sqlx::Any>,
    _writer: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

/// How long a PostgreSQL connection may sit unused before it is pinged on its way out of
/// the pool (see `connect`).
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl SqlStore {
    /// Connects and applies pending migrations. Errors name the database (without its
    /// password) and the cause.
    pub async fn connect(options: &StoreOptions) -> DomainResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(&options.url)?;
        let shown = redact_url(&options.url);
        let mut url = options.url.clone();
        if backend == Backend::Sqlite && !url.contains("mode=") && !url.contains(":memory:") {
            // Create the file on first start, as `idbridge serve` with no config promises.
            url.push_str(if url.contains('?') { "&mode=rwc" } else { "?mode=rwc" });
        }
        let connect_options = AnyConnectOptions::from_str(&url)
            .map_err(|e| DomainError::invalid("database.url", format!("{shown}: {e}")))?;
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.connect_timeout);
        // sqlx pings every connection before handing it out, one more round trip per
        // statement run on the pool. A SQLite connection is a file handle in this process:
        // it cannot have gone away, and the ping doubled each statement's hand-offs to its
        // thread — never pinged. A PostgreSQL connection can have been cut (the server
        // restarted, a proxy timed it out), but only while it sat unused: one used a
        // moment ago is as alive as a ping would show, so only a connection idle for
        // longer than `PING_AFTER_IDLE` is pinged (a dead one is closed and replaced, and
        // the request never sees it). Under load that removes a round trip per statement.
        pool_options = pool_options.test_before_acquire(false);
        if backend == Backend::Postgres {
            pool_options = pool_options.before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_AFTER_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            });
        }
        if backend == Backend::Sqlite {
            pool_options = pool_options.after_connect(|conn, _| {
                Box::pin(async move {
                    // The default page cache (2 MB) is far smaller than the working set of a
                    // tenant with 100,000 individuals; reads through mmap skip a syscall per
                    // page. Both are upper bounds: memory is only used as pages are touched.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
                         PRAGMA busy_timeout = 5000; PRAGMA cache_size = -32768; PRAGMA mmap_size = 268435456;
                         PRAGMA temp_store = MEMORY;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        if backend == Backend::Postgres && !options.statement_timeout.is_zero() {
            // A statement that runs away (a lock held by a stuck transaction, a plan gone
            // wrong) is cancelled instead of holding a connection and its request forever.
            let millis = options.statement_timeout.as_millis();
            pool_options = pool_options.after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(format!("SET statement_timeout = {millis}").as_str()).await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options
            .connect_with(connect_options)
            .await
            .map_err(|e| DomainError::Storage(format!("cannot connect to {shown}: {e}")))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await.map_err(|e| DomainError::Storage(format!("migrating {shown}: {e}")))?;
        if backend == Backend::Postgres {
            warn_without_autovacuum(&pool, &shown).await;
        }
        let sqlite_writer = (backend == Backend::Sqlite).then(|| std::sync::Arc::new(tokio::sync::Mutex::new(())));
        let store = Self { pool, backend, sqlite_writer };
        let moved = store.move_legacy_held_writes().await?;
        if moved > 0 {
            tracing::info!(database = %shown, change_sets = moved, "held change sets moved to one row per write");
        }
        tracing::debug!(database = %shown, "store ready");
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> DomainResult<WriteTx> {
        let writer = match &self.sqlite_writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        // A connection can come back from a transaction whose future was dropped half-way
        // (a client went away mid-request) still counting that transaction — its rollback
        // failed or has not run — and every `BEGIN` on it would fail. Such a connection
        // is closed, never reused; the pool opens a fresh one.
        // Every client that went away at once can leave one such connection behind, so
        // try past the pool's size: each one discarded makes room for a fresh one.
        for _ in 0..=self.pool.options().get_max_connections() + 1 {
            let mut conn = self.pool.acquire().await.map_err(convert::storage)?;
            if sqlx::Connection::is_in_transaction(&*conn) {
                metrics::counter!("idbridge_store_connections_discarded_total").increment(1);
                tracing::warn!("a database connection left inside a transaction was discarded");
                conn.close_on_drop();
                continue;
            }
            let tx = sqlx::Transaction::begin(conn, Some(self.backend.begin_statement().into()))
                .await
                .map_err(convert::storage)?;
            return Ok(WriteTx { tx, _writer: writer });
        }
        Err(DomainError::Storage("no usable database connection: each was left inside a transaction".into()))
    }
}

/// Without autovacuum nothing keeps the planner's statistics: tables filled since the last
/// `ANALYZE` look empty to it, and lookups that should take an index walk whole tables (on
/// a server with autovacuum off, 20,000 SCIM users answered 375 lookups/s before
/// `ANALYZE` and 3,202/s after). Said once at start-up, for the operator to fix.
async fn warn_without_autovacuum(pool: &AnyPool, shown: &str) {
    if let Ok((setting,)) = sqlx::query_as::<_, (String,)>("SHOW autovacuum").fetch_one(pool).await
        && setting == "off"
    {
        tracing::warn!(
            database = %shown,
            "PostgreSQL has autovacuum off: statistics go stale as tables grow and queries slow down; turn it on, \
             or run ANALYZE after bulk changes"
        );
    }
}

/// A database URL fit for logs and error messages: the password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_and_classified() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(redact_url("sqlite://idbridge.db"), "sqlite://idbridge.db");
        assert_eq!(Backend::from_url("postgresql://h/db").unwrap(), Backend::Postgres);
        assert!(Backend::from_url("mysql://h/db").unwrap_err().to_string().contains("database.url"));
    }
}
