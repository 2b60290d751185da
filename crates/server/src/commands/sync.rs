//! `sync`: directory runs on demand, and their history.

use idbridge_core::audit::{Actor, ActorKind, AuditContext};

use crate::cli::SyncCommand;

use super::shared::{cli_context, print_json, slug};

pub(crate) async fn sync(services: &crate::app::Services, command: SyncCommand) -> anyhow::Result<()> {
    let operator = &services.operator;
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
            let tenant = raw.as_deref().map(slug).transpose()?;
            let runs = idbridge_app::directory_sync::sync_runs(
                operator,
                services.ports.directory.as_ref(),
                tenant.as_ref(),
                limit,
            )
            .await?;
            if json {
                for run in &runs {
                    out!("{}", serde_json::to_string(&crate::views::SyncRun::from(run))?);
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
