//! `mapping`: preview a person's decision, a tenant's rules, diff and re-map.

use std::sync::Arc;

use anyhow::Context;
use idbridge_core::audit::AuditContext;

use crate::cli::MappingCommand;
use crate::config::Settings;

use super::shared::{print_json, remap_after, slug};

pub(crate) async fn mapping(
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
                let entries = d.scopes.entries();
                out!("scopes:          {}", if entries.is_empty() { "-".to_owned() } else { entries.join(" ") });
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
                                "{} / {} {}",
                                a.role.as_deref().unwrap_or("-"),
                                a.access_profile.as_deref().unwrap_or("-"),
                                a.scopes.entries().join(" ")
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
