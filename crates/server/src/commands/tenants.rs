//! `tenant`, `scim-token` and `audit`.

use anyhow::bail;
use idbridge_app::operator::Operator;
use idbridge_core::audit::{AuditContext, AuditQuery};
use idbridge_core::tenant::TenantSettings;

use crate::cli::{AuditArgs, ScimTokenCommand, TenantCommand};

use super::shared::{print_json, slug};

pub(crate) async fn tenant(operator: &Operator, command: TenantCommand, ctx: &AuditContext) -> anyhow::Result<()> {
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
                print_json(&crate::views::tenants(&tenants))?;
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
                print_json(&crate::views::TenantDetail::from(&view))?;
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

pub(crate) async fn scim_token(
    operator: &Operator,
    command: ScimTokenCommand,
    ctx: &AuditContext,
) -> anyhow::Result<()> {
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
                print_json(&crate::views::scim_tokens(tokens))?;
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

pub(crate) async fn audit(operator: &Operator, args: AuditArgs) -> anyhow::Result<()> {
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
            out!("{}", serde_json::to_string(&crate::views::AuditEntry::from(&entry))?);
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
