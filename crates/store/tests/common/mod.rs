//! Shared by the store's integration tests: a store on a fresh SQLite or PostgreSQL
//! database, a macro that runs a test on both, and small helpers.
#![allow(dead_code)]

use std::sync::Arc;

use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::ports::Store;
use idbridge_core::tenant::{Tenant, TenantId, TenantSettings, TenantSlug};
use idbridge_store::{SqlStore, StoreOptions};
use uuid::Uuid;

/// A store on a fresh database, and what to do to clean it up.
pub struct Fixture {
    pub store: Arc<SqlStore>,
    /// The database's URL, for what a test does behind the store's back.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pub drop_pg: Option<(String, String)>,
}

impl Fixture {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("contract.db").display());
        let store = SqlStore::connect(&StoreOptions::new(url.clone())).await.unwrap();
        Self { store: Arc::new(store), url, _dir: Some(dir), drop_pg: None }
    }

    pub async fn postgres() -> Option<Self> {
        if std::env::var("IDBRIDGE_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("IDBRIDGE_TEST_SKIP_POSTGRES=1: PostgreSQL contract tests skipped");
            return None;
        }
        let admin_url = std::env::var("IDBRIDGE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("idbridge_contract_{}", Uuid::new_v4().simple());
        sqlx::any::install_default_drivers();
        let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin_url} is needed for the contract suite ({e}); set IDBRIDGE_TEST_SKIP_POSTGRES=1 to skip")
        });
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        let base = admin_url.rsplit_once('/').unwrap().0;
        let url = format!("{base}/{name}");
        let store = SqlStore::connect(&StoreOptions::new(url.clone())).await.unwrap();
        Some(Self { store: Arc::new(store), url, _dir: None, drop_pg: Some((admin_url, name)) })
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The concrete store: what builds a `Reconciler` (the one writer of individuals).
    pub fn sql(&self) -> SqlStore {
        self.store.as_ref().clone()
    }

    pub async fn finish(self) {
        self.store.close().await;
        if let Some((admin_url, name)) = self.drop_pg {
            let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url).await.unwrap();
            sqlx::Executor::execute(&mut admin, format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await
                .unwrap();
        }
    }
}

/// Runs one test on both backends.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = super::Fixture::sqlite().await;
                    super::$name(fixture.sql()).await;
                    fixture.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(fixture) = super::Fixture::postgres().await else { return };
                    super::$name(fixture.sql()).await;
                    fixture.finish().await;
                }
            )*
        }
    };
}

pub fn ctx(id: &str) -> AuditContext {
    AuditContext { actor: Actor::new(ActorKind::Operator, id), request_id: Some(format!("req-{id}")) }
}

pub fn slug(s: &str) -> TenantSlug {
    TenantSlug::parse(s).unwrap()
}

pub async fn tenant(store: &Arc<dyn Store>, s: &str) -> Tenant {
    store
        .create_tenant(TenantId(Uuid::new_v4()), &slug(s), &TenantSettings::new(s.to_uppercase()), &ctx("setup"))
        .await
        .unwrap()
}
