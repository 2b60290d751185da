//! The admin commands: each opens the configured database, does one thing through the
//! core `Operator`, prints the result (text for people, `--json` for scripts) and exits.

use std::sync::Arc;

use idbridge_core::token;

use crate::cli::{AdminCommand, AdminTokenCommand, Cli, Command, PluginCommand};
use crate::config::Settings;

/// `println!` that ends the process quietly when stdout is closed (`idbridge … | head`)
/// instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod changes;
mod config;
mod connectors;
mod individuals;
mod mapping;
mod shared;
mod sso;
mod sync;
mod tenants;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let admin_command = match cli.command {
        // Needs no configuration: it only generates.
        Command::AdminToken(AdminTokenCommand::Create) => return create_admin_token(),
        Command::Serve => None,
        Command::Admin(command) => Some(command),
    };
    let settings = Settings::load(cli.config.as_deref())?;
    crate::telemetry::init_logging(settings.log.format, &settings.log.level);
    match admin_command {
        None => crate::serve::serve(settings, cli.config.clone()).await,
        Some(command) => {
            let services = crate::app::Services::connect(&settings).await?;
            let records: Arc<dyn idbridge_core::ports::ScimRecordStore> = Arc::new(services.store.clone());
            let result = admin(&services, &records, command, &settings).await;
            services.store.close().await;
            result
        }
    }
}

fn create_admin_token() -> anyhow::Result<()> {
    let issued = token::issue("admin");
    out!("token: {}", issued.secret_token);
    out!("sha256: {}", issued.hash);
    eprintln!("Put the sha256 under [admin] token_hashes; the token is not shown again.");
    Ok(())
}

async fn admin(
    services: &crate::app::Services,
    records: &Arc<dyn idbridge_core::ports::ScimRecordStore>,
    command: AdminCommand,
    settings: &Settings,
) -> anyhow::Result<()> {
    let (operator, store) = (&services.operator, &services.store);
    let ctx = shared::cli_context();
    match command {
        AdminCommand::CheckConfig => config::check(operator, settings).await,
        AdminCommand::Apply { file, dry_run } => config::apply(services, settings, &file, dry_run, &ctx).await,
        AdminCommand::Client(command) => sso::client(store, command, &ctx).await,
        AdminCommand::SignIn(command) => sso::sign_in(operator, command, &ctx).await,
        AdminCommand::Keys(command) => sso::keys(store, settings, command, &ctx).await,
        AdminCommand::Tenant(command) => tenants::tenant(operator, command, &ctx).await,
        AdminCommand::ScimToken(command) => tenants::scim_token(operator, command, &ctx).await,
        AdminCommand::Audit(args) => tenants::audit(operator, args).await,
        AdminCommand::Connector(command) => connectors::connector(&services.ports.store, command, &ctx).await,
        AdminCommand::Mapping(command) => mapping::mapping(services, records, command, settings, &ctx).await,
        AdminCommand::Changes(command) => changes::changes(services, command, &ctx).await,
        AdminCommand::Sync(command) => sync::sync(services, command).await,
        AdminCommand::Plugin(PluginCommand::List { json }) => config::plugins(settings, json),
        AdminCommand::Individual(command) => individuals::individual(services, command, &ctx).await,
        AdminCommand::Catalog { json } => config::catalog(operator, json).await,
        AdminCommand::Roles { json } => config::roles(operator, json).await,
        AdminCommand::AccessProfiles { json } => config::access_profiles(operator, json).await,
    }
}
