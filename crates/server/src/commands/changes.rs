//! `changes`: change sets held by the mass-deprovision guard.

use anyhow::Context;
use idbridge_app::operator::Operator;
use idbridge_core::audit::AuditContext;

use crate::cli::ChangesCommand;

use super::shared::{print_json, slug};

/// Finds a held change set by id across tenants (ids are UUIDs).
pub(crate) async fn find_change_set(
    operator: &Operator,
    raw: &str,
) -> anyhow::Result<idbridge_core::changeset::HeldChangeSet> {
    let id: uuid::Uuid = raw.parse().with_context(|| format!("change set id {raw:?} is not a UUID"))?;
    Ok(operator.find_change_set(id).await?)
}

pub(crate) async fn changes(
    services: &crate::app::Services,
    command: ChangesCommand,
    ctx: &AuditContext,
) -> anyhow::Result<()> {
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
                print_json(&crate::views::HeldChangeSet::from(&set))?;
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
            services.reconciliation()?.reject(tenant, set.id, ctx).await?;
            out!("rejected {}: nothing applied", set.id);
        }
    }
    Ok(())
}

/// What the guard's window added to a held change set, for the listing.
pub(crate) fn recently(summary: &idbridge_core::changeset::ChangeSummary) -> String {
    match summary.taken_recently {
        0 => String::new(),
        n => format!(" (after {n} taken without approval within the guard's window)"),
    }
}
