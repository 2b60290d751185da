//! The application's services, built once from the configuration — by the daemon and by
//! every command alike: the store, the operator's actions, the plugins, the mapping
//! service and the reconciliation service over them.

use std::sync::{Arc, OnceLock};

use idbridge_app::mapping::MappingService;
use idbridge_app::operator::Operator;
use idbridge_app::reconciliation::SourceReconciliation;
use idbridge_plugin_host::PluginHost;
use idbridge_store::SqlStore;

use crate::config::Settings;

pub struct Services {
    pub store: SqlStore,
    /// The same store behind each port the application layer uses.
    pub ports: idbridge_app::Ports,
    pub operator: Operator,
    plugins: Vec<idbridge_plugin_host::PluginSpec>,
    reconciliation: OnceLock<SourceReconciliation>,
    local: Result<idbridge_app::local_accounts::LocalSettings, String>,
}

impl Services {
    /// Connects to the configured database (migrating it) and builds the operator's side.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let store = SqlStore::connect(&settings.store_options()?).await?;
        let ports = idbridge_app::Ports::of(&store);
        let operator = Operator::new(ports.store.clone(), settings.catalog());
        let local = settings.local_settings().map_err(|e| e.to_string());
        Ok(Self { store, ports, operator, plugins: settings.plugins.clone(), reconciliation: OnceLock::new(), local })
    }

    /// Local accounts (invitations, passwords), as the daemon has them.
    pub fn local_accounts(&self) -> anyhow::Result<idbridge_app::local_accounts::LocalAccounts> {
        let settings = self.local.clone().map_err(anyhow::Error::msg)?;
        Ok(idbridge_app::local_accounts::LocalAccounts::new(self.ports.store.clone(), settings))
    }

    /// The reconciliation service with the configured mapping plugins, loaded on first
    /// use: a command that writes no individual never loads a plugin (a broken plugin
    /// must not stop `tenant list`), and `check-config` says what is wrong with one.
    pub fn reconciliation(&self) -> anyhow::Result<&SourceReconciliation> {
        if let Some(built) = self.reconciliation.get() {
            return Ok(built);
        }
        let mapping = MappingService {
            operator: self.operator.clone(),
            plugins: Arc::new(PluginHost::load(&self.plugins)?),
            records: Arc::new(self.store.clone()),
        };
        Ok(self.reconciliation.get_or_init(|| {
            SourceReconciliation::new(&self.ports, idbridge_core::reconcile::Reconciler::new(&self.store), mapping)
        }))
    }
}

/// Re-reads `[[plugins]]` from the config file (or the defaults) and re-creates the
/// instances; on error the running plugins stay as they were.
pub fn reload_plugins(host: &idbridge_plugin_host::PluginHost, config: Option<&std::path::Path>) -> Result<(), String> {
    let settings = Settings::load(config).map_err(|e| e.to_string())?;
    host.reload(&settings.plugins).map_err(|e| e.to_string())?;
    tracing::info!(plugins = ?host.ids(), "plugins reloaded");
    Ok(())
}
