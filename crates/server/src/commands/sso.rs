//! `client`, `sign-in` and `keys`: portals registered with the OpenID provider, a
//! tenant's sign-in settings, and the signing keys.

use std::sync::Arc;

use anyhow::{Context, bail};
use idbridge_app::operator::Operator;
use idbridge_core::audit::AuditContext;
use idbridge_store::SqlStore;

use crate::config::Settings;

use super::shared::slug;

pub(crate) async fn client(
    store: &SqlStore,
    command: crate::cli::ClientCommand,
    ctx: &AuditContext,
) -> anyhow::Result<()> {
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

pub(crate) async fn sign_in(
    operator: &Operator,
    command: crate::cli::SignInCommand,
    ctx: &AuditContext,
) -> anyhow::Result<()> {
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

pub(crate) async fn keys(
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
