//! `individual`: list, show, explain, create, change by hand.

use idbridge_core::audit::AuditContext;
use idbridge_core::individual::{IndividualQuery, IndividualStatus};

use crate::cli::IndividualCommand;

use super::shared::{print_json, slug};

pub(crate) async fn individual(
    services: &crate::app::Services,
    command: IndividualCommand,
    ctx: &AuditContext,
) -> anyhow::Result<()> {
    let operator = &services.operator;
    match command {
        IndividualCommand::Create {
            slug: raw,
            login,
            email,
            role,
            access_profile,
            given_name,
            family_name,
            display_name,
            time_zone,
            language,
            activation,
            expiration,
            json,
        } => {
            let tenant = operator.tenant(&slug(&raw)?).await?;
            let new = idbridge_core::reconcile::NewIndividual {
                login,
                email,
                given_name,
                family_name,
                display_name,
                role,
                access_profile,
                scopes: Default::default(),
                time_zone,
                language,
                activation,
                expiration,
            };
            let created = services.reconciliation()?.create_by_hand(&tenant, new, ctx).await?;
            if json {
                print_json(&crate::views::Individual::from(&created))?;
            } else {
                out!("created {} {} ({})", created.id, created.login, created.status.as_str());
                if tenant.policy.local_sign_in.allowed && created.email.is_some() {
                    out!("an invitation mail is on its way (`idbridge individual mails {raw} {}`)", created.login);
                }
            }
        }
        IndividualCommand::Invite { slug: raw, id_or_login } => {
            let tenant = operator.tenant(&slug(&raw)?).await?;
            let individual = operator.individual(&tenant.slug, &id_or_login).await?;
            let mail = services.local_accounts()?.invite(ctx, &tenant, &individual).await?;
            out!("{} queued for {} (mail {})", mail.kind.as_str(), mail.recipient, mail.id);
        }
        IndividualCommand::RevokeInvitation { slug: raw, id_or_login } => {
            let tenant = operator.tenant(&slug(&raw)?).await?;
            let individual = operator.individual(&tenant.slug, &id_or_login).await?;
            if services.local_accounts()?.revoke(ctx, &tenant, individual.id).await? {
                out!("revoked the link sent to {}", individual.login);
            } else {
                out!("{} has no link out", individual.login);
            }
        }
        IndividualCommand::Mails { slug: raw, id_or_login, limit, json } => {
            let tenant = operator.tenant(&slug(&raw)?).await?;
            let individual = match &id_or_login {
                Some(id) => Some(operator.individual(&tenant.slug, id).await?.id),
                None => None,
            };
            let mails = services.local_accounts()?.mails(&tenant, individual, limit).await?;
            if json {
                print_json(&mails.iter().map(crate::views::mail).collect::<Vec<_>>())?;
            } else {
                for m in mails {
                    out!(
                        "{}  {:<15} {:<8} {:<32} attempts {}  {}",
                        m.created_at,
                        m.kind.as_str(),
                        m.state.as_str(),
                        m.recipient,
                        m.attempts,
                        m.last_error.as_deref().unwrap_or("")
                    );
                }
            }
        }
        IndividualCommand::List { slug: raw, status, group, limit, json } => {
            if let Some(group) = &group {
                idbridge_core::scopes::check_group_name("groups", group)?;
            }
            let query = IndividualQuery {
                status: status.as_deref().map(IndividualStatus::parse).transpose()?,
                after_login: None,
                in_groups: group.map(|g| [g].into()),
                limit,
            };
            let individuals = operator.individuals(&slug(&raw)?, &query).await?;
            if json {
                print_json(&crate::views::individuals(&individuals))?;
            } else {
                for i in individuals {
                    out!("{}  {:<32} {:<10} {}", i.id, i.login, i.status.as_str(), i.role.as_deref().unwrap_or("-"));
                }
            }
        }
        IndividualCommand::Show { slug: raw, id_or_login, json } => {
            let i = operator.individual(&slug(&raw)?, &id_or_login).await?;
            if json {
                print_json(&crate::views::Individual::from(&i))?;
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
            language,
            add_scope,
            remove_scope,
        } => {
            let slug = slug(&raw)?;
            let tenant = operator.tenant(&slug).await?;
            let individual = operator.individual(&slug, &id_or_login).await?;
            let or_none = |d: Option<String>| d.map(|d| if d == "none" { None } else { Some(d) });
            let change = idbridge_core::reconcile::ManualChange {
                activation: or_none(activation),
                expiration: or_none(expiration),
                time_zone,
                language: or_none(language),
                add_scopes: scopes_arg("--add-scope", &add_scope)?,
                remove_scopes: scopes_arg("--remove-scope", &remove_scope)?,
            };
            let outcome = services.reconciliation()?.change_by_hand(&tenant, &individual, &change, ctx).await?;
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

/// `queues=101` → scopes with queue 101; `groups=sales` → member of portal group sales;
/// `co_monitoring=sales` or `statistics=all` → a group-scoped right (checked against the
/// catalog by the use case).
pub(crate) fn scopes_arg(flag: &str, values: &[String]) -> anyhow::Result<idbridge_core::scopes::Scopes> {
    use idbridge_core::scopes::GroupReach;
    let mut scopes = idbridge_core::scopes::Scopes::default();
    for value in values {
        let Some((kind, v)) = value.split_once('=') else {
            anyhow::bail!(
                "{flag} {value:?}: expected KIND=VALUE, e.g. queues=101, groups=sales or co_monitoring=sales"
            );
        };
        let list = match kind {
            "extensions" => &mut scopes.extensions,
            "queues" => &mut scopes.queues,
            "phone_numbers" => &mut scopes.phone_numbers,
            "billing_accounts" => &mut scopes.billing_accounts,
            "groups" => &mut scopes.groups,
            right => {
                idbridge_core::catalog::validate_identifier("group right", right).map_err(|_| {
                    anyhow::anyhow!(
                        "{flag} {value:?}: {right:?} is not one of extensions, queues, phone_numbers, \
                         billing_accounts, groups, nor a group right (statistics, co_monitoring, …)"
                    )
                })?;
                let reach =
                    scopes.group_rights.entry(right.to_owned()).or_insert(GroupReach::Groups(Default::default()));
                match (v, &mut *reach) {
                    ("all", _) => *reach = GroupReach::All,
                    (_, GroupReach::All) => {}
                    (group, GroupReach::Groups(groups)) => {
                        groups.insert(group.to_owned());
                    }
                }
                continue;
            }
        };
        list.insert(v.to_owned());
    }
    scopes.validate()?;
    Ok(scopes)
}

pub(crate) fn print_explanation(e: &idbridge_app::explain::Explanation) {
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
