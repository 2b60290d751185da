//! Single sign-on, protocol-neutral: the portals registered with idbridge's own OpenID
//! provider, its signing keys, and the sessions, authorization codes and tokens it hands
//! out. The `idbridge-oidc` crate speaks the protocol; the store keeps these records. A
//! tenant's upstream IdP connection is `idp` (re-exported here).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::idp::{
    ClaimPaths, ClientAuth, EmailVerification, IdpConnection, LinkBy, SUPPORTED_ALGS, normalize_domain,
};
use crate::individual::IndividualId;
use crate::tenant::TenantId;
use crate::{DomainError, DomainResult};

/// A portal registered with idbridge's OpenID provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalClient {
    /// The `client_id`.
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the client secret (secrets carry 256 random bits).
    pub secret_hash: String,
    /// Matched exactly, character for character.
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// OpenID Connect Back-Channel Logout 1.0 receiver.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// `RS256` (the OpenID default) or `ES256`.
    pub id_token_alg: String,
    /// Tenants (slugs) whose individuals may log in to this portal; empty: every tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Compact permission claims: `permissions` lists only the sections that are not
    /// `restrict`, `access_profile` only the flags that are on — a portal reads a missing
    /// section as `restrict` and a missing flag as off. Keeps ID tokens well under the
    /// 4 KB a cookie can hold.
    #[serde(default)]
    pub compact_claims: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl PortalClient {
    pub fn validate(&self) -> DomainResult<()> {
        let ok_id = !self.id.is_empty()
            && self.id.len() <= 100
            && self.id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok_id {
            return Err(DomainError::invalid("client id", format!("{:?} must be 1-100 of A-Z a-z 0-9 - _ .", self.id)));
        }
        if self.redirect_uris.is_empty() {
            return Err(DomainError::invalid("redirect_uris", "list at least one"));
        }
        for uri in self.redirect_uris.iter().chain(&self.post_logout_redirect_uris).chain(&self.backchannel_logout_uri)
        {
            let parsed = url_like(uri);
            if !parsed {
                return Err(DomainError::invalid(
                    "redirect_uris",
                    format!("{uri:?} must be an absolute https:// URL without a fragment (http:// only on loopback)"),
                ));
            }
        }
        if !matches!(self.id_token_alg.as_str(), "RS256" | "ES256") {
            return Err(DomainError::invalid("id_token_alg", format!("{:?} is not RS256 or ES256", self.id_token_alg)));
        }
        for slug in &self.tenants {
            crate::tenant::TenantSlug::parse(slug)?;
        }
        Ok(())
    }

    pub fn allows_tenant(&self, slug: &str) -> bool {
        self.tenants.is_empty() || self.tenants.iter().any(|t| t == slug)
    }
}

fn url_like(uri: &str) -> bool {
    let scheme_ok = uri.starts_with("https://")
        || uri.starts_with("http://127.0.0.1")
        || uri.starts_with("http://localhost")
        || uri.starts_with("http://[::1]");
    scheme_ok && !uri.contains('#') && !uri.chars().any(|c| c.is_whitespace() || c.is_control()) && uri.len() <= 2000
}

/// One of idbridge's token signing keys. New keys are published before they sign
/// (`activates_at`), and old keys stay published after they stop (`removed_at`), so that
/// portals caching the key set never meet an unknown or a missing key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    pub kid: String,
    /// `RS256` or `ES256`.
    pub alg: String,
    /// PKCS#8 DER, base64; or sealed with the operator's key-encryption key
    /// (`enc:v1:…`, see `idbridge_oidc::keys::KeyEncryption`).
    pub private_pkcs8: String,
    /// The public JWK as published.
    pub public_jwk: serde_json::Value,
    pub created_at: Timestamp,
    pub activates_at: Timestamp,
    pub retires_at: Option<Timestamp>,
    pub removed_at: Option<Timestamp>,
}

/// A login session at idbridge (the browser's `idbridge_session` cookie). Its id is the
/// `sid` claim portals receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoSession {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub individual_id: IndividualId,
    /// Which upstream connection authenticated it.
    pub connection: String,
    pub auth_time: Timestamp,
    pub expires_at: Timestamp,
    pub ended_at: Option<Timestamp>,
}

/// What an authorization code stands for until the portal redeems it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub scope: String,
    pub session_id: Uuid,
    pub tenant_id: TenantId,
    pub individual_id: IndividualId,
    pub auth_time: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }

    pub fn parse(s: &str) -> DomainResult<Self> {
        match s {
            "access" => Ok(Self::Access),
            "refresh" => Ok(Self::Refresh),
            other => Err(DomainError::invalid("token kind", format!("{other:?}"))),
        }
    }
}

/// An access or refresh token idbridge issued; only its hash is stored. Tokens from one
/// code exchange and its refreshes share a `grant_id`, so that a replayed code or a
/// reused refresh token revokes the whole family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthToken {
    pub hash: String,
    pub kind: TokenKind,
    pub grant_id: Uuid,
    pub client_id: String,
    pub tenant_id: TenantId,
    pub individual_id: IndividualId,
    pub session_id: Uuid,
    pub scope: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// What redeeming an authorization code found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum CodeRedemption {
    Fresh(AuthorizationCode),
    /// Redeemed before: the tokens of that grant have been revoked.
    Replayed,
    Unknown,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
// Returned once per refresh; boxing the token would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum RefreshUse {
    Fresh(OAuthToken),
    /// Used before: stolen or leaked, so the whole grant has been revoked.
    Reused,
    /// Revoked and never used: the session ended (sign-out, access ended or shrank, the
    /// tenant disabled), or an earlier reuse revoked its grant.
    Revoked,
    Unknown,
}

/// A back-channel logout owed to one portal for one ended session. Rows are written with
/// the session's end, in its transaction, and deleted once the portal accepted the
/// logout token (`SsoStore::claim_backchannel_logouts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackchannelLogout {
    pub id: i64,
    pub tenant_id: TenantId,
    pub individual_id: IndividualId,
    pub session_id: Uuid,
    pub client_id: String,
    pub created_at: Timestamp,
    /// Earlier attempts (including the current claim).
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When it was given up (older than the retry period); `None` while it is retried.
    pub dead_at: Option<Timestamp>,
}

/// The back-channel logout queue, for `/metrics` and the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackchannelStats {
    /// Owed and still retried.
    pub queued: u64,
    /// Of those, the ones whose last attempt failed.
    pub failing: u64,
    /// Given up after the retry period.
    pub dead: u64,
    /// Age of the oldest owed one, in seconds.
    pub oldest_seconds: u64,
}

/// The sessions ended because an individual's access ended or shrank, with the portals
/// that hold tokens of each (for back-channel logout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    pub session_id: Uuid,
    pub client_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection() -> IdpConnection {
        serde_json::from_value(serde_json::json!({
            "name": "entra",
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
            "jwks_uri": "https://login.microsoftonline.com/common/discovery/v2.0/keys",
            "authorization_endpoint": "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize",
            "token_endpoint": "https://login.microsoftonline.com/organizations/oauth2/v2.0/token",
            "client_id": "abc",
            "client_secret_env": "ENTRA_SECRET",
            "entra_tenant_ids": ["72f988bf-86f1-41af-91ab-2d7cd011db47"],
        }))
        .unwrap()
    }

    #[test]
    fn an_unverified_email_is_believed_only_where_the_connection_says_so() {
        use EmailVerification::*;
        assert!(UnlessUnverified.believes(Some(true)) && UnlessUnverified.believes(None));
        assert!(!UnlessUnverified.believes(Some(false)));
        assert!(VerifiedOnly.believes(Some(true)));
        assert!(!VerifiedOnly.believes(None) && !VerifiedOnly.believes(Some(false)));
        assert!(Trust.believes(Some(false)) && Trust.believes(None));
        let c = connection();
        assert_eq!(c.email_verification, UnlessUnverified, "the default");
    }

    #[test]
    fn connections_validate() {
        let mut c = connection();
        c.validate().unwrap();
        c.entra_tenant_ids.clear();
        assert!(c.validate().unwrap_err().to_string().contains("entra_tenant_ids"));
        let mut c = connection();
        c.algorithms = vec!["none".into()];
        assert!(c.validate().unwrap_err().to_string().contains("none"));
        let mut c = connection();
        c.issuer = "http://idp.example".into();
        assert!(c.validate().unwrap_err().to_string().contains("https"));
        let mut c = connection();
        c.client_auth = ClientAuth::PrivateKeyJwt;
        assert!(c.validate().unwrap_err().to_string().contains("private_key_file"));
    }

    #[test]
    fn email_domains() {
        let mut c = connection();
        assert!(c.accepts_email("a@b.example"));
        c.allowed_email_domains = vec!["abc.example".into()];
        assert!(c.accepts_email("bob@ABC.example"));
        assert!(!c.accepts_email("bob@abc.example.evil"));
        assert_eq!(normalize_domain("@ABC.Example").unwrap(), "abc.example");
        assert!(normalize_domain("abc").is_err());
    }

    #[test]
    fn portal_clients_validate() {
        let now = crate::clock::now();
        let mut c = PortalClient {
            id: "portal".into(),
            name: "Portal".into(),
            secret_hash: String::new(),
            redirect_uris: vec!["https://portal.example/cb".into()],
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            id_token_alg: "RS256".into(),
            tenants: vec![],
            compact_claims: false,
            created_at: now,
            updated_at: now,
        };
        c.validate().unwrap();
        c.redirect_uris = vec!["http://portal.example/cb".into()];
        assert!(c.validate().is_err());
        c.redirect_uris = vec!["https://portal.example/cb#x".into()];
        assert!(c.validate().is_err());
        c.redirect_uris = vec!["http://127.0.0.1:3000/cb".into()];
        c.validate().unwrap();
    }
}
