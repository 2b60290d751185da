//! What every command shares: the audit actor of the local user, argument parsing and
//! output helpers.

use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::tenant::TenantSlug;
use serde::Serialize;

/// Commands on the host are audited as the local user.
pub(super) fn cli_context() -> AuditContext {
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

pub(super) fn slug(raw: &str) -> anyhow::Result<TenantSlug> {
    Ok(TenantSlug::parse(raw)?)
}

pub(super) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(super) async fn remap_after(
    services: &crate::app::Services,
    report: &idbridge_app::operator::ApplyReport,
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
