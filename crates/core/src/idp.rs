//! A tenant's upstream identity provider connection (OpenID Connect): where it is, how
//! idbridge authenticates to it, which claims say who the person is and which groups they
//! are in, and whether its e-mail addresses are trusted. Part of the tenant's policy;
//! `sso` holds what idbridge's own provider hands out.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{DomainError, DomainResult};

/// How the upstream IdP's token endpoint authenticates idbridge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_secret_basic` (HTTP Basic), the default of most IdPs.
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    /// A JWT signed with idbridge's key for this connection (RFC 7523), no shared secret.
    PrivateKeyJwt,
}

/// Where in the ID token (or userinfo) each fact lives; dotted paths reach nested
/// objects (`realm_access.roles`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClaimPaths {
    /// The immutable subject the individual is linked by: `sub`, or Entra's `oid`.
    pub subject: String,
    pub login: String,
    pub email: String,
    pub name: String,
    pub given_name: String,
    pub family_name: String,
    pub groups: String,
    pub roles: String,
}

impl Default for ClaimPaths {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            login: "preferred_username".into(),
            email: "email".into(),
            name: "name".into(),
            given_name: "given_name".into(),
            family_name: "family_name".into(),
            groups: "groups".into(),
            roles: "roles".into(),
        }
    }
}

/// Links a first login to an individual another source provisioned, by an immutable id
/// the token carries (never by email).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkBy {
    /// The claim holding the id (`oid`, `sub`, `objectGUID`).
    pub claim: String,
    /// `scim` (the SCIM user's `externalId`) or the name of one of the tenant's LDAP
    /// sources (its immutable id attribute).
    pub source: String,
}

/// A tenant's upstream OpenID provider (Entra ID, Okta, any OIDC IdP). Stored inside the
/// tenant's policy: read tolerantly, like it (unknown fields are refused at the edges).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpConnection {
    /// Unique within the tenant: `entra`, `okta`.
    pub name: String,
    /// The issuer the ID tokens carry. Entra multi-tenant: `…/{tenantid}/v2.0`, with the
    /// tenant ids allowed in `entra_tenant_ids`.
    pub issuer: String,
    /// Read endpoints from `{issuer}/.well-known/openid-configuration` (unless set below).
    #[serde(default = "yes")]
    pub discovery: bool,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    pub client_id: String,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// The client secret is read from this file or environment variable; never stored.
    #[serde(default)]
    pub client_secret_file: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// PEM private key (PKCS#8, RSA or P-256) for `private_key_jwt`.
    #[serde(default)]
    pub private_key_file: Option<String>,
    /// The key id the IdP knows that key by.
    #[serde(default)]
    pub private_key_id: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub claims: ClaimPaths,
    /// Call the userinfo endpoint and merge its claims (the ID token's win).
    #[serde(default)]
    pub use_userinfo: bool,
    /// Email domains a login may carry; empty: any. With domains listed, a login must
    /// carry a trusted email (`email_verified`).
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// Which emails the IdP sends are believed. An email the IdP itself marks
    /// `email_verified: false` is never used — not for the domain check, not as a login,
    /// not in idbridge's tokens — unless this is `trust`. `verified_only` also refuses an
    /// email that comes without `email_verified` (Entra ID sends none; Okta, Google and
    /// Keycloak do).
    #[serde(default)]
    pub email_verification: EmailVerification,
    /// Entra tenant ids (`tid`) accepted when the issuer holds `{tenantid}`; for a fixed
    /// issuer, the token's `tid` must be one of these when the list is not empty.
    #[serde(default)]
    pub entra_tenant_ids: Vec<String>,
    /// Signature algorithms accepted on ID tokens.
    #[serde(default = "default_algs")]
    pub algorithms: Vec<String>,
    /// Clock difference tolerated on `exp`, `iat` (seconds).
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default)]
    pub link_by: Option<LinkBy>,
}

/// How an IdP's `email_verified` claim is read (`IdpConnection::email_verification`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailVerification {
    /// `email_verified: false` makes the email unusable; without the claim it is believed.
    #[default]
    UnlessUnverified,
    /// Only an email with `email_verified: true` is believed.
    VerifiedOnly,
    /// Every email is believed, whatever the IdP says of it.
    Trust,
}

impl EmailVerification {
    /// Whether an email the IdP sent with this `email_verified` value may be used.
    pub fn believes(self, email_verified: Option<bool>) -> bool {
        match (self, email_verified) {
            (Self::Trust, _) | (_, Some(true)) => true,
            (Self::UnlessUnverified, None) => true,
            (_, Some(false)) | (Self::VerifiedOnly, None) => false,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}
fn default_algs() -> Vec<String> {
    ["RS256", "ES256"].map(String::from).to_vec()
}
fn default_skew() -> u64 {
    60
}

/// The algorithms idbridge verifies.
pub const SUPPORTED_ALGS: [&str; 6] = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"];

impl IdpConnection {
    pub fn validate(&self) -> DomainResult<()> {
        let field = |f: &str| format!("oidc.{}.{f}", self.name);
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 63
            && self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok_name {
            return Err(DomainError::invalid("oidc.name", format!("{:?} must be 1-63 of a-z, 0-9, -", self.name)));
        }
        let url_ok = |u: &str| {
            u.starts_with("https://") || u.starts_with("http://127.0.0.1") || u.starts_with("http://localhost")
        };
        if !url_ok(&self.issuer) {
            return Err(DomainError::invalid(
                field("issuer"),
                format!("{:?} must be an https:// URL (http:// only on loopback)", self.issuer),
            ));
        }
        for (name, value) in [
            ("authorization_endpoint", &self.authorization_endpoint),
            ("token_endpoint", &self.token_endpoint),
            ("jwks_uri", &self.jwks_uri),
            ("userinfo_endpoint", &self.userinfo_endpoint),
        ] {
            if let Some(v) = value
                && !url_ok(v)
            {
                return Err(DomainError::invalid(field(name), format!("{v:?} must be an https:// URL")));
            }
        }
        if !self.discovery
            && (self.authorization_endpoint.is_none() || self.token_endpoint.is_none() || self.jwks_uri.is_none())
        {
            return Err(DomainError::invalid(
                field("discovery"),
                "without discovery, authorization_endpoint, token_endpoint and jwks_uri are required",
            ));
        }
        if self.issuer.contains("{tenantid}") && self.entra_tenant_ids.is_empty() {
            return Err(DomainError::invalid(
                field("entra_tenant_ids"),
                "an issuer with {tenantid} accepts only the Entra tenants listed here; list at least one",
            ));
        }
        if self.issuer.contains("{tenantid}") && self.discovery && self.jwks_uri.is_none() {
            return Err(DomainError::invalid(
                field("jwks_uri"),
                "an issuer with {tenantid} cannot be discovered; give the endpoints and jwks_uri",
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(DomainError::invalid(field("client_id"), "must not be empty"));
        }
        if self.client_secret_file.is_some() && self.client_secret_env.is_some() {
            return Err(DomainError::invalid(
                field("client_secret_file"),
                "give a file or an environment variable, not both",
            ));
        }
        match self.client_auth {
            ClientAuth::PrivateKeyJwt if self.private_key_file.is_none() => {
                return Err(DomainError::invalid(
                    field("private_key_file"),
                    "private_key_jwt needs a private key file",
                ));
            }
            ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost
                if self.client_secret_file.is_none() && self.client_secret_env.is_none() =>
            {
                return Err(DomainError::invalid(
                    field("client_secret_file"),
                    "client_secret_basic/post need client_secret_file or client_secret_env",
                ));
            }
            _ => {}
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(DomainError::invalid(field("scopes"), "must include openid"));
        }
        if self.algorithms.is_empty() {
            return Err(DomainError::invalid(field("algorithms"), "list at least one"));
        }
        for alg in &self.algorithms {
            if !SUPPORTED_ALGS.contains(&alg.as_str()) {
                return Err(DomainError::invalid(
                    field("algorithms"),
                    format!("{alg:?} is not one of {}", SUPPORTED_ALGS.join(", ")),
                ));
            }
        }
        if self.clock_skew_seconds > 600 {
            return Err(DomainError::invalid(field("clock_skew_seconds"), "must be at most 600"));
        }
        Ok(())
    }

    /// Whether an email's domain is one this connection accepts.
    pub fn accepts_email(&self, email: &str) -> bool {
        if self.allowed_email_domains.is_empty() {
            return true;
        }
        let Some((_, domain)) = email.rsplit_once('@') else { return false };
        self.allowed_email_domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }
}

/// Lower-case an email domain and check it looks like one (`example.com`).
pub fn normalize_domain(raw: &str) -> DomainResult<String> {
    let d = raw.trim().trim_start_matches('@').to_ascii_lowercase();
    let ok = d.len() <= 253
        && d.contains('.')
        && d.split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if ok { Ok(d) } else { Err(DomainError::invalid("domain", format!("{raw:?} is not a domain name"))) }
}

/// The groups claim, whose four states mean different things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupsClaim {
    List(Vec<String>),
    /// Present and empty: the person is in no group.
    Empty,
    /// Not sent at all: nothing is known.
    Absent,
    /// Too many to send (Entra `_claim_names` / `hasgroups`): nothing is known from the
    /// token.
    Overage,
}

impl GroupsClaim {
    /// Whether the token says which groups the person is in.
    pub fn is_known(&self) -> bool {
        matches!(self, Self::List(_) | Self::Empty)
    }

    /// The groups the token lists (none for every other state).
    pub fn list(&self) -> &[String] {
        match self {
            Self::List(groups) => groups,
            Self::Empty | Self::Absent | Self::Overage => &[],
        }
    }
}

/// What a verified login says about the person.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The issuer the token was verified against (with an Entra `tid` filled in).
    pub issuer: String,
    pub subject: String,
    pub login: Option<String>,
    /// The email, when the connection believes it (`IdpConnection::email_verification`).
    pub email: Option<String>,
    /// An email the IdP sent that is not believed: for messages only, never for a check.
    pub unverified_email: Option<String>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub groups: GroupsClaim,
    pub roles: Vec<String>,
    /// Every claim, for `link_by` and mapping attributes.
    pub raw: Map<String, Value>,
}

/// A dotted path into the claims (`realm_access.roles`).
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}
