//! Portals registered with idbridge's OpenID provider (`[[clients]]` in apply files,
//! `idbridge client …`, `/admin/v1/clients`), and a tenant's sign-in settings (verified
//! domains and upstream IdP connections).

use idbridge_core::audit::AuditContext;
use idbridge_core::ports::SsoStore;
use idbridge_core::sso::{IdpConnection, PortalClient};
use idbridge_core::tenant::TenantSlug;
use idbridge_core::token::hash_token;
use idbridge_core::{DomainError, DomainResult};
use serde::Deserialize;
use serde_json::json;

use crate::operator::Operator;

/// A portal client as operators write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientDoc {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    #[serde(default = "rs256")]
    pub id_token_alg: String,
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Only sections that are not `restrict` and flags that are on in the tokens.
    #[serde(default)]
    pub compact_claims: bool,
    /// The secret is read from here (apply files never hold secrets); without either,
    /// a new client gets a generated secret (printed once) and an existing one keeps its.
    #[serde(default)]
    pub secret_file: Option<String>,
    #[serde(default)]
    pub secret_env: Option<String>,
}

fn rs256() -> String {
    "RS256".into()
}

/// A tenant's sign-in settings as operators write them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInDoc {
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub oidc: Vec<IdpConnection>,
}

/// What registering did.
#[derive(Debug)]
pub struct Registered {
    pub client: PortalClient,
    /// Shown once: a generated secret.
    pub generated_secret: Option<String>,
    pub changed: bool,
}

impl ClientDoc {
    fn secret(&self) -> DomainResult<Option<String>> {
        idbridge_core::secret::read_referenced(self.secret_file.as_deref(), self.secret_env.as_deref()).map_err(|e| {
            let (suffix, reason) = e.describe();
            DomainError::invalid(format!("clients.{}.secret{suffix}", self.id), reason)
        })
    }
}

/// Creates or updates a portal client. Secrets shorter than 32 characters are refused:
/// only their SHA-256 is stored, which is safe for high-entropy secrets only.
pub async fn register(
    store: &dyn SsoStore,
    doc: ClientDoc,
    dry_run: bool,
    ctx: &AuditContext,
) -> DomainResult<Registered> {
    let existing = store.get_portal_client(&doc.id).await?;
    let mut generated_secret = None;
    let secret_hash = match doc.secret()? {
        Some(s) if s.len() < 32 => {
            return Err(DomainError::invalid(format!("clients.{}.secret", doc.id), "must be at least 32 characters"));
        }
        Some(s) => hash_token(&s),
        None => match &existing {
            Some(c) => c.secret_hash.clone(),
            None => {
                let secret = idbridge_core::token::random_secret();
                let hash = hash_token(&secret);
                generated_secret = Some(secret);
                hash
            }
        },
    };
    let now = idbridge_core::clock::now();
    let client = PortalClient {
        id: doc.id.clone(),
        name: doc.name.clone().unwrap_or_else(|| doc.id.clone()),
        secret_hash,
        redirect_uris: doc.redirect_uris,
        post_logout_redirect_uris: doc.post_logout_redirect_uris,
        backchannel_logout_uri: doc.backchannel_logout_uri,
        id_token_alg: doc.id_token_alg,
        tenants: doc.tenants,
        compact_claims: doc.compact_claims,
        created_at: existing.as_ref().map_or(now, |c| c.created_at),
        updated_at: now,
    };
    client.validate()?;
    let changed = existing.as_ref().is_none_or(|e| {
        let mut same = client.clone();
        same.updated_at = e.updated_at;
        same != *e
    });
    if changed && !dry_run {
        let view = |c: &PortalClient| {
            json!({ "name": c.name, "redirect_uris": c.redirect_uris, "post_logout_redirect_uris": c.post_logout_redirect_uris,
                    "backchannel_logout_uri": c.backchannel_logout_uri, "id_token_alg": c.id_token_alg, "tenants": c.tenants,
                    "compact_claims": c.compact_claims,
                    "secret_changed": existing.as_ref().is_some_and(|e| e.secret_hash != c.secret_hash) })
        };
        let action = if existing.is_some() { "portal_client.updated" } else { "portal_client.created" };
        let audit =
            ctx.record(None, "portal_client", &client.id, action, existing.as_ref().map(view), Some(view(&client)));
        store.put_portal_client(&client, &audit).await?;
    }
    Ok(Registered { client, generated_secret: generated_secret.filter(|_| changed && !dry_run), changed })
}

/// What portals and operators may see of a client (never the secret's hash).
pub fn client_view(c: &PortalClient) -> serde_json::Value {
    json!({
        "id": c.id, "name": c.name, "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "backchannel_logout_uri": c.backchannel_logout_uri, "id_token_alg": c.id_token_alg,
        "tenants": c.tenants, "compact_claims": c.compact_claims, "created_at": c.created_at,
        "updated_at": c.updated_at,
    })
}

/// Replaces a tenant's verified domains and IdP connections (validated with the rest of
/// the policy; a domain another tenant already uses is refused).
pub async fn set_sign_in(
    operator: &Operator,
    slug: &TenantSlug,
    doc: SignInDoc,
    ctx: &AuditContext,
) -> DomainResult<()> {
    let tenant = operator.tenant(slug).await?;
    let mut domains = Vec::new();
    for d in &doc.domains {
        domains.push(idbridge_core::sso::normalize_domain(d)?);
    }
    domains.sort();
    domains.dedup();
    for other in operator.tenants().await? {
        if other.id == tenant.id {
            continue;
        }
        if let Some(d) = domains.iter().find(|d| other.policy.domains.contains(d)) {
            return Err(DomainError::invalid("domains", format!("{d} is already a domain of tenant {}", other.slug)));
        }
    }
    let mut settings = tenant.settings();
    settings.policy.domains = domains;
    settings.policy.oidc = doc.oidc;
    settings.validate()?;
    operator.update_tenant(&tenant, &settings, ctx).await?;
    Ok(())
}
