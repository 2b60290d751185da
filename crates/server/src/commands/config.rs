//! Configuration commands: `check-config`, `apply`, and the operator's catalog, roles,
//! access profiles and plugins as configured.

use std::path::Path;

use anyhow::Context;
use idbridge_app::operator::Operator;
use idbridge_core::audit::AuditContext;

use super::shared::{print_json, remap_after};
use crate::apply_file::ApplyDocument;
use crate::config::Settings;

pub(super) async fn check(operator: &Operator, settings: &Settings) -> anyhow::Result<()> {
    operator.ping().await?;
    // Plugins are checked exactly as `serve` loads them: path, sha256 pin, ABI,
    // entry symbol, and an instance created with its config.
    let plugins = idbridge_plugin_host::PluginHost::load(&settings.plugins)?;
    settings.admin_token_hashes()?;
    settings.portal_token_hashes()?;
    out!("configuration ok; database reachable and migrated; {} plugin(s) loaded", plugins.ids().len());
    Ok(())
}

pub(super) async fn apply(
    services: &crate::app::Services,
    settings: &Settings,
    file: &Path,
    dry_run: bool,
    ctx: &AuditContext,
) -> anyhow::Result<()> {
    let (operator, store) = (&services.operator, &services.store);
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut document = ApplyDocument::from_toml(&text).with_context(|| format!("{}", file.display()))?;
    let clients = std::mem::take(&mut document.clients);
    let desired = document.into_desired(settings.known_mappers()).with_context(|| format!("{}", file.display()))?;
    let report = operator.apply(&desired, dry_run, ctx).await.with_context(|| format!("{}", file.display()))?;
    if report.changes.is_empty() {
        out!("no changes");
    } else {
        for line in &report.changes {
            out!("{line}");
        }
        let verb = if dry_run { "would apply" } else { "applied" };
        out!("{verb} {} change(s)", report.changes.len());
    }
    remap_after(services, &report, ctx).await?;
    for client in clients {
        let registered = idbridge_app::portal_clients::register(store, client, dry_run, ctx)
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
    Ok(())
}

pub(super) fn plugins(settings: &Settings, json: bool) -> anyhow::Result<()> {
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
    Ok(())
}

pub(super) async fn catalog(operator: &Operator, json: bool) -> anyhow::Result<()> {
    let catalog = operator.catalog().await?;
    if json {
        print_json(&crate::views::Catalog::from(&catalog))?;
    } else {
        out!("sections:");
        for (name, description) in &catalog.sections {
            out!("  {name:<24} {description}");
        }
        out!("flags:");
        for (name, description) in &catalog.flags {
            out!("  {name:<44} {description}");
        }
        out!("group rights (for all groups or chosen ones):");
        for (name, description) in &catalog.group_rights {
            out!("  {name:<24} {description}");
        }
    }
    Ok(())
}

pub(super) async fn roles(operator: &Operator, json: bool) -> anyhow::Result<()> {
    let roles = operator.roles().await?;
    if json {
        print_json(&crate::views::roles(&roles))?;
    } else {
        for role in roles {
            let explicit: Vec<String> = role.levels.iter().map(|(s, l)| format!("{s}={}", l.as_str())).collect();
            out!("{:<24} default={} {}", role.name, role.default_level.as_str(), explicit.join(" "));
        }
    }
    Ok(())
}

pub(super) async fn access_profiles(operator: &Operator, json: bool) -> anyhow::Result<()> {
    let profiles = operator.access_profiles().await?;
    if json {
        print_json(&crate::views::access_profiles(&profiles))?;
    } else {
        for p in profiles {
            out!("{:<24} {}", p.name, p.flags.into_iter().collect::<Vec<_>>().join(" "));
        }
    }
    Ok(())
}
