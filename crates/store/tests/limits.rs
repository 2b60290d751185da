//! PostgreSQL under a stuck lock: a statement that waits past `statement_timeout` is
//! cancelled and said as such, and a request that finds every connection busy gets a
//! clear "try again" (503), not a hang or a generic storage error.

use idbridge_core::ports::TenantStore;
#[allow(unused_macros)]
mod common;

use std::time::{Duration, Instant};

use common::Fixture;
use idbridge_core::DomainError;
use idbridge_store::{SqlStore, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_lock_times_out_and_a_full_pool_says_so() {
    let Some(fixture) = Fixture::postgres().await else { return };
    let (admin_url, name) = fixture.drop_pg.clone().unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let mut options = StoreOptions::new(url.clone());
    options.max_connections = 1;
    options.connect_timeout = Duration::from_millis(500);
    options.statement_timeout = Duration::from_secs(1);
    let store = std::sync::Arc::new(SqlStore::connect(&options).await.unwrap());

    // Another session holds the tenants table (a stuck migration, an operator's psql).
    sqlx::any::install_default_drivers();
    let mut holder = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::Executor::execute(&mut holder, "BEGIN; LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE").await.unwrap();

    let started = Instant::now();
    let blocked = {
        let store = store.clone();
        tokio::spawn(async move { store.list_tenants().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The only connection waits on the lock: the next request finds the pool full.
    let full = store.list_tenants().await.unwrap_err();
    assert!(matches!(&full, DomainError::Unavailable(m) if m.contains("database.max_connections")), "{full:?}");
    let timed_out = blocked.await.unwrap().unwrap_err();
    assert!(matches!(&timed_out, DomainError::Unavailable(m) if m.contains("statement_timeout")), "{timed_out:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    sqlx::Executor::execute(&mut holder, "ROLLBACK").await.unwrap();
    assert!(store.list_tenants().await.is_ok(), "the pool recovers");
    store.close().await;
    fixture.finish().await;
}
