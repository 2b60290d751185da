//! `idbridge connector`: what each portal connector carried into the portal, what needs an
//! operator, and a resync.

use std::sync::Arc;

use idbridge_app::connectors::{ConnectorStatus, Connectors};
use idbridge_core::audit::AuditContext;
use idbridge_core::ports::Store;

use super::shared::{print_json, slug};
use crate::cli::ConnectorCommand;

pub(super) async fn connector(
    store: &Arc<dyn Store>,
    command: ConnectorCommand,
    ctx: &AuditContext,
) -> anyhow::Result<()> {
    let connectors = Connectors::new(store.clone());
    match command {
        ConnectorCommand::List { slug: raw, json } => {
            let statuses = connectors.status(&slug(&raw)?, None, 0).await?;
            if json {
                return print_json(&statuses);
            }
            if statuses.is_empty() {
                out!("tenant {raw} has no connectors ([[tenants.connectors]] in the apply file)");
            }
            for status in &statuses {
                out!("{}", summary_line(status));
            }
        }
        ConnectorCommand::Status { slug: raw, name, limit, json } => {
            let statuses = connectors.status(&slug(&raw)?, name.as_deref(), limit).await?;
            if json {
                return print_json(&statuses);
            }
            if statuses.is_empty() {
                out!("tenant {raw} has no connectors ([[tenants.connectors]] in the apply file)");
            }
            for status in &statuses {
                out!("{}", summary_line(status));
                match &status.health {
                    None => out!("  not started yet (idbridge serve starts it)"),
                    Some(health) => {
                        if let Some(since) = health.quarantined_since {
                            out!(
                                "  QUARANTINED since {since} after {} failures in a row: one probe every 30 s",
                                health.consecutive_failures
                            );
                        }
                        out!(
                            "  last success: {}   last drift repair: {}",
                            health.last_success_at.map_or("never".to_owned(), |t| t.to_string()),
                            health.last_drift_repair_at.map_or("never".to_owned(), |t| t.to_string())
                        );
                        if let Some(error) = &health.last_error {
                            out!("  last error: {error}");
                        }
                    }
                }
                for problem in &status.problems {
                    out!(
                        "  {:<8} {}  attempts={}{}  {}",
                        problem.state,
                        problem.individual_id,
                        problem.attempts,
                        problem.next_attempt_at.map(|t| format!("  next at {t}")).unwrap_or_default(),
                        problem.last_error.as_deref().unwrap_or("")
                    );
                }
            }
        }
        ConnectorCommand::Resync { slug: raw, name } => {
            let owed = connectors.resync(&slug(&raw)?, &name, ctx).await?;
            out!("{owed} individuals owe a push to {name}; each remote object is read back first");
        }
    }
    Ok(())
}

fn summary_line(status: &ConnectorStatus) -> String {
    let l = &status.links;
    format!(
        "{:<16} {:<5} {}  synced={} owed={} retrying={} dead={} conflicts={}{}",
        status.name,
        status.kind,
        status.target,
        l.synced,
        l.owed,
        l.retrying,
        l.dead,
        l.conflict,
        if status.health.as_ref().is_some_and(|h| h.quarantined_since.is_some()) { "  QUARANTINED" } else { "" }
    )
}
