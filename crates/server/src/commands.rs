//! The admin commands: each opens the configured database, does one thing through the
//! core `Operator`, prints the result (text for people, `--json` for scripts) and exits.

use std::sync::Arc;

use anyhow::{Context, bail};
use idbridge_core::audit::{Actor, ActorKind, AuditContext, AuditQuery};
use idbridge_core::individual::{IndividualQuery, IndividualStatus};
use idbridge_core::operator::Operator;
use idbridge_core::tenant::{TenantSettings, TenantSlug};
use idbridge_core::token;
use idbridge_store::SqlStore;
use serde::Serialize;

use crate::apply_file::ApplyDocument;
use crate::cli::{
    AdminTokenCommand, AuditArgs, ChangesCommand, Cli, Command, IndividualCommand, MappingCommand, PluginCommand,
    ScimTokenCommand, SyncCommand, TenantCommand,
};
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

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::AdminToken(AdminTokenCommand::Create) = cli.command {
        // Needs no configuration: it only generates.
        let issued = token::issue("admin");
        out!("token: {}", issued.secret_token);
        out!("sha256: {}", issued.hash);
        eprintln!("Put the sha256 under [admin] token_hashes; the token is not shown again.");
        return Ok(());
    }
    let settings = Settings::load(cli.config.as_deref())?;
    crate::telemetry::init_logging(settings.log.format, &settings.log.level);
    match cli.command {
        Command::Serve => crate::serve::serve(settings, cli.config.clone()).await,
        command => {
            let services = crate::app::Services::connect(&settings).await?;
            let records: Arc<dyn idbridge_core::ports::ScimRecordStore> = Arc::new(services.store.clone());
            let result = admin(&services, &records, command, &settings).await;
            services.store.close().await;
            result
        }
    }
}

/// Commands on the host are audited as the local user.
fn cli_context() -> AuditContext {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .or_else(|| {
            // Containers often run without USER; the uid still says who it was.
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.to_owned();
            Some(format!("uid{uid}"))
        })
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let id = if host.is_empty() { format!("cli:{user}") } else { format!("cli:{user}@{host}") };
    AuditContext::new(Actor::new(ActorKind::Operator, id))
}

fn slug(raw: &str) -> anyhow::Result<TenantSlug> {
    Ok(TenantSlug::parse(raw)?)
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn remap_after(
    services: &crate::app::Services,
    report: &idbridge_core::operator::ApplyReport,
    ctx: &AuditContext,
) -> anyhow::Result<()> {
    if report.dry_run || report.remap_tenants.is_empty() {
        return Ok(());
    }
    for summary in services.reconciliation()?.remap_after(report, ctx).await? {
        out!("{}", summary.describe());
    }
    Ok(())
}

async fn admin(
    services: &crate::app::Services,
    records: &Arc<dyn idbridge_core::ports::ScimRecordStore>,
    command: Command,
    settings: &Settings,
) -> anyhow::Result<()> {
    let (operator, store) = (&services.operator, &services.store);
    let ctx = cli_context();
    match command {
        Command::Serve | Command::AdminToken(_) => unreachable!("handled by run"),
        Command::CheckConfig => {
            operator.ping().await?;
            // Plugins are checked exactly as `serve` loads them: path, sha256 pin, ABI,
            // entry symbol, and an instance created with its config.
            let plugins = idbridge_plugin_host::PluginHost::load(&settings.plugins)?;
            settings.admin_token_hashes()?;
            settings.portal_token_hashes()?;
            out!("configuration ok; database reachable and migrated; {} plugin(s) loaded", plugins.ids().len());
        }
        Command::Apply { file, dry_run } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut document = ApplyDocument::from_toml(&text).with_context(|| format!("{}", file.display()))?;
            let clients = std::mem::take(&mut document.clients);
            let desired =
                document.into_desired(settings.known_mappers()).with_context(|| format!("{}", file.display()))?;
            let report =
                operator.apply(&desired, dry_run, &ctx).await.with_context(|| format!("{}", file.display()))?;
            if report.changes.is_empty() {
                out!("no changes");
            } else {
                for line in &report.changes {
                    out!("{line}");
                }
                let verb = if dry_run { "would apply" } else { "applied" };
                out!("{verb} {} change(s)", report.changes.len());
            }
            remap_after(services, &report, &ctx).await?;
            for client in clients {
                let registered = idbridge_app::portal_clients::register(store, client, dry_run, &ctx)
                    .await
                    .with_context(|| format!("{}", file.display()))?;
                if registered.changed {
                    let verb = if dry_run { "would register" } else { "registered" };
                    out!("{verb} portal client {}", registered.client.id);
                }
                if let Some(secret) = registered.generated_secret {
                    out!("client {} secret (shown once): {secret}", registered.client.id);
                }
            }
        }
        Command::Client(command) => client(store, command, &ctx).await?,
        Command::SignIn(command) => sign_in(operator, command, &ctx).await?,
        Command::Keys(command) => keys(store, settings, command, &ctx).await?,
        Command::Tenant(command) => tenant(operator, command, &ctx).await?,
        Command::Mapping(command) => mapping(services, records, command, settings, &ctx).await?,
        Command::Changes(command) => changes(services, command, &ctx).await?,
        Command::Sync(command) => sync(services, command).await?,
        Command::Plugin(PluginCommand::List { json }) => {
            let host = idbridge_plugin_host::PluginHost::load(&settings.plugins)?;
            let statuses = host.statuses();
            if json {
                print_json(&statuses)?;
            } else if statuses.is_empty() {
                out!("no plugins configured ([[plugins]] in the config file)");
            } else {
                for p in statuses {
                    out!(
                        "{:<20} {} {} abi {}  {}  sha256 {}",
                        p.id,
                        p.name,
                        p.version,
                        p.abi_version,
                        p.health,
                        &p.sha256[..16]
                    );
                }
            }
        }
        Command::ScimToken(command) => scim_token(operator, command, &ctx).await?,
        Command::Individual(command) => individual(services, command, &ctx).await?,
        Command::Audit(args) => audit(operator, args).await?,
        Command::Catalog { json } => {
            let catalog = operator.catalog().await?;
            if json {
                print_json(&catalog)?;
            } else {
                out!("sections:");
                for (name, description) in &catalog.sections {
                    out!("  {name:<24} {description}");
                }
                out!("flags:");
                for (name, description) in &catalog.flags {
                    out!("  {name:<44} {description}");
                }
            }
        }
        Command::Roles { json } => {
            let roles = operator.roles().await?;
            if json {
                print_json(&roles)?;
            } else {
                for role in roles {
                    let explicit: Vec<String> =
                        role.levels.iter().map(|(s, l)| format!("{s}={}", l.as_str())).collect();
                    out!("{:<24} default={} {}", role.name, role.default_level.as_str(), explicit.join(" "));
                }
            }
        }
        Command::AccessProfiles { json } => {
            let profiles = operator.access_profiles().await?;
            if json {
                print_json(&profiles)?;
            } else {
                for p in profiles {
                    out!("{:<24} {}", p.name, p.flags.into_iter().collect::<Vec<_>>().join(" "));
                }
            }
        }
    }
    Ok(())
}

async fn client(store: &SqlStore, command: crate::cli::ClientCommand, ctx: &AuditContext) -> anyhow::Result<()> {
    use crate::cli::ClientCommand;
    use idbridge_core::ports::SsoStore;
    match command {
        ClientCommand::Create {
            id,
            name,
            redirect_uris,
            post_logout_redirect_uris,
            backchannel_logout_uri,
            alg,
            tenants,
            compact_claims,
            secret_env,
        } => {
            let doc = idbridge_app::portal_clients::ClientDoc {
                id,
                name,
                redirect_uris,
                post_logout_redirect_uris,
                backchannel_logout_uri,
                id_token_alg: alg,
                tenants,
                compact_claims,
                secret_file: None,
                secret_env,
            };
            let registered = idbridge_app::portal_clients::register(store, doc, false, ctx).await?;
            out!("client_id: {}", registered.client.id);
            if let Some(secret) = registered.generated_secret {
                out!("client_secret: {secret}");
                eprintln!("The secret is not shown again; only its hash is stored.");
            } else if !registered.changed {
                out!("no changes");
            }
        }
        ClientCommand::List { json } => {
            let clients = store.list_portal_clients().await?;
            if json {
                let views: Vec<_> = clients.iter().map(idbridge_app::portal_clients::client_view).collect();
                out!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                for c in clients {
                    out!(
                        "{}\t{}\t{}\t{}",
                        c.id,
                        c.id_token_alg,
                        c.redirect_uris.join(" "),
                        if c.tenants.is_empty() { "all tenants".to_owned() } else { c.tenants.join(",") }
                    );
                }
            }
        }
        ClientCommand::Delete { id } => {
            let audit = ctx.record(None, "portal_client", &id, "portal_client.deleted", None, None);
            if !store.delete_portal_client(&id, &audit).await? {
                bail!("no portal client {id}");
            }
            out!("deleted portal client {id}; its tokens no longer work");
        }
    }
    Ok(())
}

async fn sign_in(operator: &Operator, command: crate::cli::SignInCommand, ctx: &AuditContext) -> anyhow::Result<()> {
    use crate::cli::SignInCommand;
    match command {
        SignInCommand::Set { slug: raw, file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let doc: idbridge_app::portal_clients::SignInDoc =
                crate::strict::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            idbridge_app::portal_clients::set_sign_in(operator, &slug(&raw)?, doc, ctx).await?;
            out!("sign-in settings of {raw} replaced");
        }
        SignInCommand::Show { slug: raw, json } => {
            let tenant = operator.tenant(&slug(&raw)?).await?;
            let view = serde_json::json!({ "domains": tenant.policy.domains, "oidc": tenant.policy.oidc, "jit_provisioning": tenant.policy.jit_provisioning });
            if json {
                out!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                out!("domains: {}", tenant.policy.domains.join(", "));
                out!("just-in-time provisioning: {}", tenant.policy.jit_provisioning);
                for c in &tenant.policy.oidc {
                    out!("oidc {}: issuer {} client {} ({:?})", c.name, c.issuer, c.client_id, c.client_auth);
                }
            }
        }
    }
    Ok(())
}

async fn keys(
    store: &SqlStore,
    settings: &Settings,
    command: crate::cli::KeysCommand,
    ctx: &AuditContext,
) -> anyhow::Result<()> {
    use crate::cli::KeysCommand;
    let s = &settings.sso;
    let ring =
        idbridge_oidc::keys::KeyRing::new(Arc::new(store.clone()), s.rotation()).with_encryption(s.key_encryption()?);
    let now = idbridge_core::clock::now();
    match command {
        KeysCommand::List { json } => {
            ring.reload().await?;
            let keys = ring.describe(now);
            if json {
                out!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                for k in keys {
                    out!(
                        "{}\t{}\t{}\tactivates {}",
                        k["kid"].as_str().unwrap_or_default(),
                        k["alg"].as_str().unwrap_or_default(),
                        k["state"].as_str().unwrap_or_default(),
                        k["activates_at"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        KeysCommand::Rotate { now: immediately } => {
            for kid in ring.rotate(now, immediately, ctx).await? {
                out!("new signing key {kid}");
            }
            eprintln!("Running daemons pick the keys up within a minute.");
        }
    }
    Ok(())
}

async fn tenant(operator: &Operator, command: TenantCommand, ctx: &AuditContext) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { slug: raw, name, time_zone } => {
            let mut settings = TenantSettings::new(name);
            settings.default_time_zone = time_zone;
            let tenant = operator.create_tenant(&slug(&raw)?, &settings, ctx).await?;
            out!("created tenant {} ({})", tenant.slug, tenant.name);
        }
        TenantCommand::List { json } => {
            let tenants = operator.tenants().await?;
            if json {
                print_json(&tenants)?;
            } else {
                for t in tenants {
                    let state = if t.enabled { "enabled" } else { "disabled" };
                    out!("{:<24} {:<9} {}", t.slug, state, t.name);
                }
            }
        }
        TenantCommand::Show { slug: raw, json } => {
            let view = operator.tenant_view(&slug(&raw)?).await?;
            if json {
                print_json(&view)?;
            } else {
                let t = &view.tenant;
                out!("tenant:          {} ({})", t.slug, t.name);
                out!("state:           {}", if t.enabled { "enabled" } else { "disabled" });
                out!("time zone:       {}", t.default_time_zone);
                out!("deprovisioning:  {:?}, retention {} days", t.policy.deprovision_action, t.policy.retention_days);
                out!("roles:");
                for r in &view.roles {
                    let explicit: Vec<String> =
                        r.role.levels.iter().map(|(s, l)| format!("{s}={}", l.as_str())).collect();
                    out!("  {:<22} default={} {}", r.role.name, r.role.default_level.as_str(), explicit.join(" "));
                }
                out!("access profiles:");
                for p in &view.access_profiles {
                    out!("  {:<22} {} flag(s) on", p.profile.name, p.profile.flags.len());
                }
            }
        }
        TenantCommand::Disable { slug: raw } => {
            operator.set_tenant_enabled(&slug(&raw)?, false, ctx).await?;
            out!("tenant {raw} disabled");
        }
        TenantCommand::Enable { slug: raw } => {
            operator.set_tenant_enabled(&slug(&raw)?, true, ctx).await?;
            out!("tenant {raw} enabled");
        }
    }
    Ok(())
}

async fn scim_token(operator: &Operator, command: ScimTokenCommand, ctx: &AuditContext) -> anyhow::Result<()> {
    match command {
        ScimTokenCommand::Create { slug: raw, name } => {
            let issued = operator.issue_scim_token(&slug(&raw)?, &name, ctx).await?;
            // Only the token on stdout, so `TOKEN=$(idbridge scim-token create acme)` works.
            out!("{}", issued.token);
            eprintln!("token id {} for tenant {raw}; it is not shown again", issued.id);
        }
        ScimTokenCommand::List { slug: raw, json } => {
            let tokens = operator.scim_tokens(&slug(&raw)?).await?;
            if json {
                print_json(&tokens)?;
            } else {
                for t in tokens {
                    let state = t.revoked_at.map_or_else(|| "active".to_owned(), |at| format!("revoked {at}"));
                    out!("{}  {:<20} created {}  {state}", t.id, t.name, t.created_at);
                }
            }
        }
        ScimTokenCommand::Revoke { slug: raw, id } => {
            operator.revoke_scim_token(&slug(&raw)?, &id, ctx).await?;
            out!("token {id} revoked");
        }
    }
    Ok(())
}

async fn individual(
    services: &crate::app::Services,
    command: IndividualCommand,
    ctx: &AuditContext,
) -> anyhow::Result<()> {
    let operator = &services.operator;
    match command {
        IndividualCommand::List { slug: raw, status, limit, json } => {
            let query = IndividualQuery {
                status: status.as_deref().map(IndividualStatus::parse).transpose()?,
                after_login: None,
                limit,
            };
            let individuals = operator.individuals(&slug(&raw)?, &query).await?;
            if json {
                print_json(&individuals)?;
            } else {
                for i in individuals {
                    out!("{}  {:<32} {:<10} {}", i.id, i.login, i.status.as_str(), i.role.as_deref().unwrap_or("-"));
                }
            }
        }
        IndividualCommand::Show { slug: raw, id_or_login, json } => {
            let i = operator.individual(&slug(&raw)?, &id_or_login).await?;
            if json {
                print_json(&i)?;
            } else {
                out!("id:          {}", i.id);
                out!("login:       {}", i.login);
                out!("email:       {}", i.email.as_deref().unwrap_or("-"));
                out!("status:      {}", i.status.as_str());
                out!("role:        {}", i.role.as_deref().unwrap_or("-"));
                out!("profile:     {}", i.access_profile.as_deref().unwrap_or("-"));
                out!("time zone:   {}", i.time_zone);
                if let Some(a) = &i.activation {
                    out!("activation:  {} ({})", a.local, a.at);
                }
                if let Some(e) = &i.expiration {
                    out!("expiration:  {} ({})", e.local, e.at);
                }
                for link in &i.links {
                    out!("source:      {} {} {}", link.source.as_str(), link.connection, link.external_id);
                }
            }
        }
        IndividualCommand::Explain { slug: raw, id_or_login, json } => {
            let explanation =
                idbridge_app::explain::explain(services.reconciliation()?, &slug(&raw)?, &id_or_login).await?;
            if json {
                print_json(&explanation)?;
            } else {
                print_explanation(&explanation);
            }
        }
        IndividualCommand::Set {
            slug: raw,
            id_or_login,
            activation,
            expiration,
            time_zone,
            add_scope,
            remove_scope,
        } => {
            let slug = slug(&raw)?;
            let tenant = operator.tenant(&slug).await?;
            let individual = operator.individual(&slug, &id_or_login).await?;
            let date = |d: Option<String>| d.map(|d| if d == "none" { None } else { Some(d) });
            let change = idbridge_core::reconcile::ManualChange {
                activation: date(activation),
                expiration: date(expiration),
                time_zone,
                add_scopes: scopes_arg("--add-scope", &add_scope)?,
                remove_scopes: scopes_arg("--remove-scope", &remove_scope)?,
            };
            let outcome = services.reconciliation()?.reconciler.manual(&tenant, &individual, &change, ctx).await?;
            match outcome {
                idbridge_core::reconcile::Outcome::Unchanged => out!("no changes"),
                idbridge_core::reconcile::Outcome::Held(reason) => anyhow::bail!("{reason}"),
                _ => {
                    let after = operator.individual(&slug, &individual.id.to_string()).await?;
                    out!("{} is {} (version {})", after.login, after.status.as_str(), after.version);
                }
            }
        }
    }
    Ok(())
}

async fn audit(operator: &Operator, args: AuditArgs) -> anyhow::Result<()> {
    let slug = match (&args.slug, args.operator) {
        (Some(raw), false) => Some(slug(raw)?),
        (None, true) => None,
        _ => bail!("name a tenant, or pass --operator for operator-wide entries"),
    };
    let query = AuditQuery::from_filters(
        args.since.as_deref(),
        args.until.as_deref(),
        args.actor,
        args.subject,
        None,
        args.limit,
    )
    .map_err(|e| anyhow::anyhow!("--{e}"))?;
    for entry in operator.audit(slug.as_ref(), query).await? {
        if args.json {
            out!("{}", serde_json::to_string(&entry)?);
        } else {
            let r = &entry.record;
            out!(
                "{}  {:<24} {}:{}  {} {}",
                r.at,
                r.action,
                r.actor.kind.as_str(),
                r.actor.id,
                r.subject_kind,
                r.subject_id
            );
        }
    }
    Ok(())
}

async fn mapping(
    services: &crate::app::Services,
    records: &Arc<dyn idbridge_core::ports::ScimRecordStore>,
    command: MappingCommand,
    settings: &Settings,
    ctx: &AuditContext,
) -> anyhow::Result<()> {
    let operator = &services.operator;
    match command {
        MappingCommand::Preview { slug: raw, user, json } => {
            let text = std::fs::read_to_string(&user).with_context(|| format!("cannot read {}", user.display()))?;
            let person: idbridge_app::mapping::PreviewPerson =
                serde_json::from_str(&text).with_context(|| format!("{}: not a person description", user.display()))?;
            let service = idbridge_app::mapping::MappingService {
                operator: operator.clone(),
                plugins: Arc::new(idbridge_plugin_host::PluginHost::load(&settings.plugins)?),
                records: records.clone(),
            };
            let preview = service.preview(&slug(&raw)?, person).await?;
            if json {
                print_json(&preview)?;
            } else {
                let d = &preview.decision;
                out!("tenant:          {} (mappers: {})", preview.tenant, preview.mappers.join(", "));
                out!("verdict:         {:?}{}", d.verdict, if d.has_access() { "" } else { " (no access)" });
                out!("role:            {}", d.role.as_deref().unwrap_or("-"));
                out!("access profile:  {}", d.access_profile.as_deref().unwrap_or("-"));
                let s = &d.scopes;
                out!(
                    "scopes:          full_call_reports={} extensions={:?} queues={:?} numbers={:?} accounts={:?}",
                    s.full_call_reports,
                    s.extensions,
                    s.queues,
                    s.phone_numbers,
                    s.billing_accounts
                );
                if let Some(held) = &preview.held {
                    out!("HELD:            {held}");
                }
                out!("because:");
                for r in &d.reasons {
                    out!(
                        "  {:<28} mapper {} rule {} groups {:?}",
                        r.grants,
                        r.mapper,
                        r.rule.as_deref().unwrap_or("-"),
                        r.groups
                    );
                }
                for e in &d.errors {
                    out!("  error: {e}");
                }
            }
        }
        MappingCommand::Remap { slug: raw } => {
            let tenant = operator.tenant(&slug(&raw)?).await?;
            let submitted = services.reconciliation()?.remap(&tenant, "re-map requested by an operator", ctx).await?;
            out!("{}", idbridge_app::reconciliation::RemapSummary::of(&tenant, submitted).describe());
        }
        MappingCommand::SetRules { slug: raw, file, dry_run } => {
            let rules = crate::apply_file::read_rules(&file)?;
            let report = operator.replace_rules(&slug(&raw)?, rules, settings.known_mappers(), dry_run, ctx).await?;
            if report.changes.is_empty() {
                out!("no changes");
            }
            for line in &report.changes {
                out!("{line}");
            }
            remap_after(services, &report, ctx).await?;
        }
        MappingCommand::Diff { slug: raw, rules, json } => {
            let rules = crate::apply_file::read_rules(&rules)?;
            let report = services.reconciliation()?.diff(&slug(&raw)?, &rules).await?;
            if json {
                print_json(&report)?;
            } else {
                out!("{} of {} individuals would change", report.changes.len(), report.individuals);
                for c in &report.changes {
                    let show = |a: &idbridge_app::diff::Assignment| {
                        if a.access {
                            format!(
                                "{} / {} queues={:?}",
                                a.role.as_deref().unwrap_or("-"),
                                a.access_profile.as_deref().unwrap_or("-"),
                                a.scopes.queues
                            )
                        } else {
                            "no access".to_owned()
                        }
                    };
                    out!("  {:<32} {}  →  {}", c.login, show(&c.before), show(&c.after));
                }
            }
        }
        MappingCommand::Rules { slug: raw, json } => {
            let tenant = operator.tenant(&slug(&raw)?).await?;
            let mut rules = operator.mapping_rules(tenant.id).await?;
            rules.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
            if json {
                print_json(&rules)?;
            } else {
                for r in rules {
                    out!(
                        "{:>5}  {:<24} {:?} groups={:?} role={} profile={}",
                        r.priority,
                        r.name,
                        r.effect,
                        r.groups,
                        r.role.as_deref().unwrap_or("-"),
                        r.access_profile.as_deref().unwrap_or("-")
                    );
                }
            }
        }
    }
    Ok(())
}

/// `queues=101` → scopes with queue 101.
fn scopes_arg(flag: &str, values: &[String]) -> anyhow::Result<idbridge_core::scopes::Scopes> {
    let mut scopes = idbridge_core::scopes::Scopes::default();
    for value in values {
        let Some((kind, v)) = value.split_once('=') else {
            anyhow::bail!("{flag} {value:?}: expected KIND=VALUE, e.g. queues=101");
        };
        let list = match kind {
            "extensions" => &mut scopes.extensions,
            "queues" => &mut scopes.queues,
            "phone_numbers" => &mut scopes.phone_numbers,
            "billing_accounts" => &mut scopes.billing_accounts,
            other => anyhow::bail!(
                "{flag} {value:?}: {other:?} is not one of extensions, queues, phone_numbers, billing_accounts"
            ),
        };
        list.insert(v.to_owned());
    }
    scopes.validate()?;
    Ok(scopes)
}

fn print_explanation(e: &idbridge_app::explain::Explanation) {
    out!("{} ({}) in {}", e.login, e.id, e.tenant);
    out!("status:          {} — {}", e.status.as_str(), e.status_because);
    let because = |reasons: &[idbridge_core::mapping::Reason]| -> String {
        if reasons.is_empty() {
            return "no recorded reason".into();
        }
        reasons
            .iter()
            .map(|r| format!("{} rule {} groups {:?}", r.mapper, r.rule.as_deref().unwrap_or("-"), r.groups))
            .collect::<Vec<_>>()
            .join("; ")
    };
    out!("role:            {} — {}", e.role.as_deref().unwrap_or("-"), because(&e.role_because));
    out!("access profile:  {} — {}", e.access_profile.as_deref().unwrap_or("-"), because(&e.access_profile_because));
    for s in &e.scopes {
        out!("scope:           {} — {}", s.scope, s.because.join("; "));
    }
    out!("time zone:       {}", e.time_zone);
    for (name, date) in [("activation", &e.activation), ("expiration", &e.expiration)] {
        if let Some(d) = date {
            out!("{name}:{:>width$}{} ({}, from {:?})", "", d.local, d.at, d.from, width = 16 - name.len());
        }
    }
    for s in &e.sources {
        out!(
            "source:          {}:{}:{} present={} active={:?} groups={:?}{}",
            s.source.as_str(),
            s.connection,
            s.external_id,
            s.present,
            s.active,
            s.groups,
            s.seen_at.map(|at| format!(" seen={at}")).unwrap_or_default()
        );
    }
    match &e.decision_now {
        Some(d) => {
            out!(
                "mapping now:     {:?} role={} profile={}",
                d.verdict,
                d.role.as_deref().unwrap_or("-"),
                d.access_profile.as_deref().unwrap_or("-")
            );
            for error in &d.errors {
                out!("mapper error:    {error}");
            }
        }
        None => out!("mapping now:     no source record to decide from"),
    }
    for p in &e.pending {
        out!(
            "pending:         re-decision owed by {}:{} since {} ({} attempt(s){})",
            p.source.as_str(),
            p.connection,
            p.since,
            p.attempts,
            p.last_error.as_deref().map(|e| format!(", last error: {e}")).unwrap_or_default()
        );
    }
    out!("history:");
    for line in &e.history {
        out!("  {line}");
    }
}

/// Finds a held change set by id across tenants (ids are UUIDs).
async fn find_change_set(operator: &Operator, raw: &str) -> anyhow::Result<idbridge_core::changeset::HeldChangeSet> {
    let id: uuid::Uuid = raw.parse().with_context(|| format!("change set id {raw:?} is not a UUID"))?;
    Ok(operator.find_change_set(id).await?)
}

async fn changes(services: &crate::app::Services, command: ChangesCommand, ctx: &AuditContext) -> anyhow::Result<()> {
    let operator = &services.operator;
    let tenants: std::collections::HashMap<_, _> = operator.tenants().await?.into_iter().map(|t| (t.id, t)).collect();
    let slug_of =
        |id| tenants.get(&id).map_or_else(|| "?".to_owned(), |t: &idbridge_core::tenant::Tenant| t.slug.to_string());
    match command {
        ChangesCommand::List { tenant, status, json } => {
            let tenant = match tenant {
                Some(raw) => Some(operator.tenant(&slug(&raw)?).await?.id),
                None => None,
            };
            let status = status.as_deref().map(idbridge_core::changeset::ChangeSetStatus::parse).transpose()?;
            let sets = operator.change_sets(tenant, status).await?;
            if json {
                for set in &sets {
                    out!(
                        "{}",
                        serde_json::to_string(&serde_json::json!({
                            "id": set.id, "tenant": slug_of(set.tenant_id), "origin": set.origin, "status": set.status,
                            "summary": set.summary, "created_at": set.created_at, "created_by": set.created_by,
                            "decided_by": set.decided_by, "result": set.result,
                        }))?
                    );
                }
            } else if sets.is_empty() {
                out!("no change sets");
            } else {
                for set in &sets {
                    out!(
                        "{}  {:<10} {:<8} takes access from {} of {}{}  {} ({}, by {})",
                        set.id,
                        slug_of(set.tenant_id),
                        set.status.as_str(),
                        set.summary.takes_access,
                        set.summary.holding_access,
                        recently(&set.summary),
                        set.origin,
                        set.created_at,
                        set.created_by
                    );
                }
            }
        }
        ChangesCommand::Show { id, json } => {
            let set = find_change_set(operator, &id).await?;
            if json {
                print_json(&set)?;
            } else {
                out!("change set {} of {} — {}", set.id, slug_of(set.tenant_id), set.status.as_str());
                out!("origin:   {} (by {} at {})", set.origin, set.created_by, set.created_at);
                let s = &set.summary;
                out!(
                    "summary:  takes access from {} of {} individuals holding access{}; {} creates, {} other updates",
                    s.takes_access,
                    s.holding_access,
                    recently(s),
                    s.creates,
                    s.updates
                );
                if let Some(by) = &set.decided_by {
                    out!("decided:  by {by}: {}", set.result.as_deref().unwrap_or(""));
                }
                for w in &set.writes {
                    let before = w.before.as_ref().map_or("new", |b| b.status.as_str());
                    out!("  {:<32} {} → {}  ({})", w.after.login, before, w.after.status.as_str(), w.action);
                }
            }
        }
        ChangesCommand::Approve { id } => {
            let set = find_change_set(operator, &id).await?;
            let tenant = &tenants[&set.tenant_id];
            let report = services.reconciliation()?.approve(tenant, set.id, ctx).await?;
            out!(
                "approved {}: {} applied, {} skipped (changed since), {} failed",
                set.id,
                report.written.len(),
                report.skipped.len(),
                report.failed.len()
            );
            for (id, e) in &report.failed {
                out!("  failed {id}: {e}");
            }
        }
        ChangesCommand::Reject { id } => {
            let set = find_change_set(operator, &id).await?;
            let tenant = &tenants[&set.tenant_id];
            services.reconciliation()?.reconciler.reject(tenant, set.id, ctx).await?;
            out!("rejected {}: nothing applied", set.id);
        }
    }
    Ok(())
}

/// What the guard's window added to a held change set, for the listing.
fn recently(summary: &idbridge_core::changeset::ChangeSummary) -> String {
    match summary.taken_recently {
        0 => String::new(),
        n => format!(" (after {n} taken without approval within the guard's window)"),
    }
}

async fn sync(services: &crate::app::Services, command: SyncCommand) -> anyhow::Result<()> {
    let (operator, store) = (&services.operator, &services.store);
    match command {
        SyncCommand::Ldap { slug: raw, source, dry_run, full, json } => {
            let tenant = operator.tenant(&slug(&raw)?).await?;
            let sources: Vec<_> = tenant
                .policy
                .ldap
                .iter()
                .filter(|s| source.as_ref().is_none_or(|name| &s.name == name))
                .cloned()
                .collect();
            if sources.is_empty() {
                match source {
                    Some(name) => anyhow::bail!("tenant {raw} has no LDAP source {name:?}"),
                    None => anyhow::bail!("tenant {raw} has no LDAP sources ([[tenants.ldap]] in the apply file)"),
                }
            }
            let mut rec = services.reconciliation()?.clone();
            // Ctrl-C or SIGTERM ends the run cleanly: recorded as cancelled, its lease
            // released, so the next run can start at once.
            let (stop, stopping) = idbridge_app::stopping::Stopping::new();
            idbridge_app::stopping::on_signals(stop);
            rec.stopping = stopping.clone();
            let ctx = AuditContext::new(Actor::new(ActorKind::SyncRun, cli_context().actor.id));
            let mut failed = false;
            for source in &sources {
                if stopping.is_requested() {
                    anyhow::bail!("interrupted: the remaining sources were not run");
                }
                let outcome = rec.sync_ldap(&tenant, source, dry_run, full, &ctx).await?;
                use idbridge_core::directory::RunStatus;
                failed |= matches!(outcome.run.status, RunStatus::Failed | RunStatus::Cancelled);
                if json {
                    print_json(&outcome)?;
                    continue;
                }
                let r = &outcome.run;
                let s = &r.summary;
                out!(
                    "{} {}: {} ({}) — {} users, {} groups read; {} changed, {} gone, {} repaired; {} creates, {} updates, {} take access; {} written ({:.1} s)",
                    raw,
                    r.source,
                    r.status.as_str(),
                    s.mode,
                    s.users,
                    s.groups,
                    s.changed,
                    s.removed,
                    s.drift,
                    s.creates,
                    s.updates,
                    s.takes_access,
                    s.written,
                    r.finished_at.duration_since(r.started_at).as_secs_f64()
                );
                if let Some(error) = &r.error {
                    out!("  error: {error}");
                }
                if let Some(id) = s.change_set {
                    out!("  held for approval: idbridge changes show {id}");
                }
                for w in &s.warnings {
                    out!("  warning: {w}");
                }
                if dry_run {
                    for line in &outcome.plan {
                        out!(
                            "  {:<32} {} → {}  ({}{})",
                            line.login,
                            line.before.as_deref().unwrap_or("new"),
                            line.after,
                            line.action,
                            line.role.as_deref().map(|r| format!(", role {r}")).unwrap_or_default()
                        );
                    }
                }
            }
            if stopping.is_requested() {
                anyhow::bail!("interrupted: the run was recorded as cancelled");
            }
            if failed {
                anyhow::bail!("a sync run failed; nobody's access changed");
            }
        }
        SyncCommand::Status { slug: raw, limit, json } => {
            let tenant = match raw {
                Some(raw) => Some(operator.tenant(&slug(&raw)?).await?.id),
                None => None,
            };
            let directory: &dyn idbridge_core::ports::DirectoryStore = store;
            let runs = directory.list_sync_runs(tenant, limit).await?;
            if json {
                for run in &runs {
                    out!("{}", serde_json::to_string(run)?);
                }
            } else if runs.is_empty() {
                out!("no sync runs");
            }
            if !json {
                for r in &runs {
                    let s = &r.summary;
                    out!(
                        "{}  {:<10} {:<9} {:<11} {:>7.1} s  users={} changed={} gone={} written={}  {}{}{}",
                        r.started_at,
                        r.source,
                        r.status.as_str(),
                        s.mode,
                        r.finished_at.duration_since(r.started_at).as_secs_f64(),
                        s.users,
                        s.changed,
                        s.removed,
                        s.written,
                        if s.url.is_empty() { "-" } else { s.url.as_str() },
                        s.change_set.map(|id| format!("  held: idbridge changes show {id}")).unwrap_or_default(),
                        r.error.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}
