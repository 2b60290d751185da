//! `changes`: change sets held by the mass-deprovision guard.

use anyhow::Context;
use idbridge_app::operator::Operator;
use idbridge_core::audit::AuditContext;

use crate::cli::ChangesCommand;

use super::shared::slug;

/// Writes read per page by `changes show`.
const PAGE: usize = 1_000;

/// Finds a held change set by id across tenants (ids are UUIDs), without its writes.
pub(crate) async fn find_change_set(
    operator: &Operator,
    raw: &str,
) -> anyhow::Result<idbridge_core::changeset::ChangeSetHeader> {
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
        ChangesCommand::Show { id, limit, json } => {
            let set = find_change_set(operator, &id).await?;
            if json {
                // One JSON document, its writes written as they are read.
                let header = serde_json::to_value(crate::views::HeldChangeSet::page(&set, &[], false))?;
                let mut header = header.as_object().cloned().unwrap_or_default();
                header.remove("writes");
                header.remove("next_after");
                let text = serde_json::to_string(&header)?;
                let open = text.strip_suffix('}').unwrap_or(&text);
                let comma = if header.is_empty() { "" } else { "," };
                part(&format!("{open}{comma}\"writes\":["));
                let mut first = true;
                for_each_write(operator, &set, limit, |position, write| {
                    let text = serde_json::to_string(&crate::views::HeldWrite::at(position, write))?;
                    part(&format!("{}{text}", if first { "" } else { "," }));
                    first = false;
                    Ok(())
                })
                .await?;
                out!("]}}");
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
                let shown = for_each_write(operator, &set, limit, |_, w| {
                    let before = w.before.map_or("new", |b| b.as_str());
                    let fields: Vec<&str> = w
                        .changed_after
                        .as_object()
                        .map_or_else(Vec::new, |m| m.keys().map(String::as_str).filter(|f| *f != "status").collect());
                    let fields = if fields.is_empty() { String::new() } else { format!("; {}", fields.join(", ")) };
                    out!("  {:<32} {} → {}  ({}{fields})", w.login, before, w.after.as_str(), w.action);
                    Ok(())
                })
                .await?;
                let total = s.creates + s.updates + s.takes_access;
                if shown < total {
                    out!("  … {} more (without --limit, every write is shown)", total - shown);
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

/// Part of a line on stdout; a reader that went away (`| head`) ends the command quietly,
/// as `out!` does.
fn part(text: &str) {
    use std::io::Write as _;
    if let Err(e) = std::io::stdout().lock().write_all(text.as_bytes())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// Calls `each` with the set's writes in order, at most `limit` of them, reading a page
/// at a time; how many it saw.
async fn for_each_write(
    operator: &Operator,
    set: &idbridge_core::changeset::ChangeSetHeader,
    limit: Option<u64>,
    mut each: impl FnMut(u64, &idbridge_core::changeset::HeldWrite) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut after = None;
    let mut seen = 0;
    loop {
        let page = match limit {
            Some(limit) => usize::try_from(limit.saturating_sub(seen)).unwrap_or(PAGE).min(PAGE),
            None => PAGE,
        };
        if page == 0 {
            return Ok(seen);
        }
        let writes = operator.change_set_writes(set.tenant_id, set.id, after, page).await?;
        for (position, write) in &writes {
            each(*position, write)?;
            seen += 1;
        }
        match writes.last() {
            Some((last, _)) if writes.len() == page => after = Some(*last),
            _ => return Ok(seen),
        }
    }
}

/// What the guard's window added to a held change set, for the listing.
pub(crate) fn recently(summary: &idbridge_core::changeset::ChangeSummary) -> String {
    match summary.taken_recently {
        0 => String::new(),
        n => format!(" (after {n} taken without approval within the guard's window)"),
    }
}
