//! A connector's configuration: kept in the tenant's policy (`[[tenants.connectors]]` in
//! the apply file), so it names nothing of the tenant's own types.

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, DomainResult};

/// Stored inside the tenant's policy: read tolerantly (unknown fields are refused at the
/// edges, `server::strict`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorConfig {
    /// Unique within the tenant: `portal`, `yeti`.
    pub name: String,
    /// The portal kind's settings, a table named after the kind (`[tenants.connectors.scim]`):
    /// exactly one is given. (A table per kind rather than a `kind` tag keeps input strict:
    /// serde cannot name unknown fields inside a flattened, tagged enum.)
    #[serde(default)]
    pub scim: Option<ScimTarget>,
    #[serde(default)]
    pub yeti: Option<YetiTarget>,
    /// Refusals of one individual's push (400, 403, 422…) before its link is dead-lettered
    /// (shown in `connector status`; the next change of the individual or a `resync` tries
    /// again). A portal that is down, slow or limiting (timeouts, 5xx, 429) is retried
    /// until it answers, however long that takes.
    #[serde(default = "max_attempts")]
    pub max_attempts: u32,
    /// Requests in flight at once.
    #[serde(default = "concurrency")]
    pub concurrency: u32,
    /// Each request's deadline.
    #[serde(default = "timeout_seconds")]
    pub timeout_seconds: u64,
    /// Minutes between drift repairs (every managed remote object read back and repaired,
    /// re-created when deleted behind idbridge's back); 0: only on `connector resync`.
    #[serde(default = "drift_repair_minutes")]
    pub drift_repair_minutes: u64,
    /// Adopt a remote user that has the same login, is not managed by anyone (no
    /// `externalId`) and was there before; off, such a user is parked as a conflict.
    #[serde(default)]
    pub adopt_unmanaged: bool,
}

fn max_attempts() -> u32 {
    8
}
fn concurrency() -> u32 {
    4
}
fn timeout_seconds() -> u64 {
    10
}
fn drift_repair_minutes() -> u64 {
    60
}

/// One implementation per portal kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorKind<'a> {
    /// Outbound SCIM 2.0 to any SCIM service provider.
    Scim(&'a ScimTarget),
    /// Yeti's customer portal logins and tokens, through Yeti's admin JSON:API.
    Yeti(&'a YetiTarget),
}

impl ConnectorKind<'_> {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Scim(_) => "scim",
            Self::Yeti(_) => "yeti",
        }
    }

    /// Where it pushes to, for listings.
    pub fn target(&self) -> &str {
        match self {
            Self::Scim(target) => &target.base_url,
            Self::Yeti(target) => &target.base_url,
        }
    }
}

/// What expiry does to the remote user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpire {
    /// `DELETE` the remote user; reactivation creates it again.
    #[default]
    Delete,
    /// Keep it with `active: false`.
    Deactivate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimTarget {
    /// The service provider's base URL (`…/scim/v2`), without `/Users`.
    pub base_url: String,
    /// The bearer token is read from this file or environment variable; never stored.
    #[serde(default)]
    pub token_file: Option<String>,
    #[serde(default)]
    pub token_env: Option<String>,
    /// Instead of a fixed token: OAuth 2.0 client credentials (RFC 6749 §4.4), the access
    /// token obtained from the portal's authorization server and renewed before it expires
    /// or when the portal answers 401.
    #[serde(default)]
    pub oauth: Option<OAuthClient>,
    #[serde(default)]
    pub on_expire: OnExpire,
    /// Send the access profile, scopes and dates in idbridge's portal extension
    /// ([`PORTAL_EXTENSION`]); the target must know that schema.
    #[serde(default)]
    pub portal_extension: bool,
    /// The schema URN to send those attributes under, when the portal has its own
    /// extension for them (default: idbridge's).
    #[serde(default)]
    pub portal_extension_schema: Option<String>,
}

/// Yeti (yeti-switch/yeti-web): each active individual is a customer portal login
/// (`api-accesses`) of the tenant's Yeti customer; suspension and expiry delete it (Yeti's
/// only immediate revocation), reactivation creates it again. Customer tokens
/// (`customer-tokens`) are minted for a signed-in individual with the Yeti access profile
/// its idbridge access profile maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct YetiTarget {
    /// Yeti's web root (`https://yeti.example`); the admin API is under `/api/rest/admin`.
    pub base_url: String,
    /// The admin user the connector signs in as (`POST /api/rest/admin/auth`).
    pub username: String,
    #[serde(default)]
    pub password_file: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// The tenant's customer (contractor) id in Yeti.
    pub customer_id: i64,
    /// Put before each login: Yeti's logins are unique across the whole system, so each
    /// tenant's are namespaced (`acme.` + `bob@acme.example`). Default: the tenant's slug
    /// and a dot. A login with this prefix and the tenant's customer id is idbridge's.
    #[serde(default)]
    pub login_prefix: Option<String>,
    /// The tenant's allowed IP ranges (Yeti's default when empty: any address).
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// idbridge access profile name → Yeti customer portal access profile id, for minted
    /// tokens (Yeti's admin API does not list its profiles).
    #[serde(default)]
    pub access_profiles: std::collections::BTreeMap<String, i64>,
    /// A login created through Yeti's admin API gets Yeti's default access profile (id 1),
    /// whatever idbridge decided: the connector creates logins only when the operator says
    /// so here. Tokens carry the mapped profile.
    #[serde(default)]
    pub acknowledge_default_profile: bool,
}

/// A client of an OAuth 2.0 authorization server (the client credentials grant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthClient {
    pub token_url: String,
    pub client_id: String,
    /// The client secret, read from this file or environment variable (sent with HTTP
    /// Basic authentication); never stored.
    #[serde(default)]
    pub client_secret_file: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Space-separated scopes to ask for.
    #[serde(default)]
    pub scope: Option<String>,
}

/// The SCIM schema URN of idbridge's portal extension of the User.
pub const PORTAL_EXTENSION: &str = "urn:idbridge:params:scim:schemas:extension:portal:2.0:User";

impl ConnectorConfig {
    /// What decides the pushes (everything but the delivery settings: attempts,
    /// concurrency, timeouts, repair schedule), as a stable string: a change of it means
    /// every individual is pushed again.
    pub fn push_fingerprint(&self) -> String {
        // Secrets and who signs in are not in it: rotating a token pushes nobody again.
        let scim = self.scim.as_ref().map(|t| {
            serde_json::json!({ "base_url": t.base_url, "on_expire": t.on_expire, "extension": t.portal_extension,
                                "extension_schema": t.portal_extension_schema })
        });
        let yeti = self.yeti.as_ref().map(|t| {
            serde_json::json!({ "base_url": t.base_url, "customer_id": t.customer_id, "login_prefix": t.login_prefix,
                                "allowed_ips": t.allowed_ips })
        });
        serde_json::json!({ "scim": scim, "yeti": yeti, "adopt": self.adopt_unmanaged }).to_string()
    }

    /// The portal kind, from the one settings table given.
    pub fn kind(&self) -> DomainResult<ConnectorKind<'_>> {
        match (&self.scim, &self.yeti) {
            (Some(target), None) => Ok(ConnectorKind::Scim(target)),
            (None, Some(target)) => Ok(ConnectorKind::Yeti(target)),
            (None, None) => Err(DomainError::invalid(
                format!("connectors.{}", self.name),
                "no portal kind: give the settings table of one (scim or yeti)",
            )),
            _ => Err(DomainError::invalid(
                format!("connectors.{}", self.name),
                "one portal kind per connector (scim or yeti), not several",
            )),
        }
    }

    pub fn validate(&self) -> DomainResult<()> {
        let field = |f: &str| format!("connectors.{}.{f}", self.name);
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 63
            && self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok_name {
            return Err(DomainError::invalid(
                "connectors.name",
                format!("{:?} must be 1-63 of a-z, 0-9, -", self.name),
            ));
        }
        if !(1..=100).contains(&self.max_attempts) {
            return Err(DomainError::invalid(field("max_attempts"), "must be 1-100"));
        }
        if !(1..=64).contains(&self.concurrency) {
            return Err(DomainError::invalid(field("concurrency"), "must be 1-64"));
        }
        if !(1..=300).contains(&self.timeout_seconds) {
            return Err(DomainError::invalid(field("timeout_seconds"), "must be 1-300"));
        }
        let kind = self.kind()?;
        let url = kind.target();
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !scheme_ok || url.contains(['?', '#']) || url.trim() != url {
            return Err(DomainError::invalid(
                field("base_url"),
                format!("{url:?} is not an http:// or https:// base URL (no query, no fragment)"),
            ));
        }
        match kind {
            ConnectorKind::Yeti(target) => {
                if target.password_file.is_some() == target.password_env.is_some() {
                    return Err(DomainError::invalid(
                        field("password_file"),
                        "the admin password: give password_file or password_env (one of them)",
                    ));
                }
                if target.username.trim().is_empty() {
                    return Err(DomainError::invalid(field("username"), "must not be empty"));
                }
                if target.customer_id <= 0 {
                    return Err(DomainError::invalid(field("customer_id"), "must be Yeti's customer id (positive)"));
                }
                if !target.acknowledge_default_profile {
                    return Err(DomainError::invalid(
                        field("acknowledge_default_profile"),
                        "a login created through Yeti's admin API gets Yeti's default access profile (id 1), not the one \
                         idbridge decided; set acknowledge_default_profile = true to create logins anyway",
                    ));
                }
                if let Some(prefix) = &target.login_prefix
                    && (prefix.is_empty() || prefix.chars().any(char::is_whitespace))
                {
                    return Err(DomainError::invalid(field("login_prefix"), "must be non-empty, without spaces"));
                }
                for ip in &target.allowed_ips {
                    if !plausible_ip_range(ip) {
                        return Err(DomainError::invalid(
                            field("allowed_ips"),
                            format!("{ip:?} is not an IP address or CIDR range"),
                        ));
                    }
                }
                for (name, id) in &target.access_profiles {
                    if *id <= 0 {
                        return Err(DomainError::invalid(
                            field("access_profiles"),
                            format!("{name:?} maps to {id}; Yeti's profile ids are positive"),
                        ));
                    }
                }
            }
            ConnectorKind::Scim(target) => {
                let tokens = usize::from(target.token_file.is_some())
                    + usize::from(target.token_env.is_some())
                    + usize::from(target.oauth.is_some());
                if tokens != 1 {
                    return Err(DomainError::invalid(
                        field("token_file"),
                        "how idbridge authenticates: one of token_file, token_env or [oauth] (client credentials)",
                    ));
                }
                if let Some(urn) = &target.portal_extension_schema
                    && (!urn.starts_with("urn:") || urn.contains(char::is_whitespace))
                {
                    return Err(DomainError::invalid(
                        field("portal_extension_schema"),
                        format!("{urn:?} is not a URN"),
                    ));
                }
                if let Some(oauth) = &target.oauth {
                    let url = oauth.token_url.as_str();
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        return Err(DomainError::invalid(
                            field("oauth.token_url"),
                            format!("{url:?} is not an http(s) URL"),
                        ));
                    }
                    if oauth.client_id.trim().is_empty() {
                        return Err(DomainError::invalid(field("oauth.client_id"), "must not be empty"));
                    }
                    if oauth.client_secret_file.is_some() == oauth.client_secret_env.is_some() {
                        return Err(DomainError::invalid(
                            field("oauth.client_secret_file"),
                            "the client secret: give client_secret_file or client_secret_env (one of them)",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`.
fn plausible_ip_range(text: &str) -> bool {
    let (address, bits) = match text.split_once('/') {
        Some((address, bits)) => (address, Some(bits)),
        None => (text, None),
    };
    let Ok(address) = address.parse::<std::net::IpAddr>() else { return false };
    let max = if address.is_ipv4() { 32 } else { 128 };
    bits.is_none_or(|b| b.parse::<u8>().is_ok_and(|b| b <= max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scim(base_url: &str) -> ConnectorConfig {
        ConnectorConfig {
            name: "portal".into(),
            scim: Some(ScimTarget {
                base_url: base_url.into(),
                token_file: Some("/run/secrets/portal".into()),
                token_env: None,
                on_expire: OnExpire::Delete,
                portal_extension: false,
                portal_extension_schema: None,
                oauth: None,
            }),
            yeti: None,
            max_attempts: 8,
            concurrency: 4,
            timeout_seconds: 10,
            drift_repair_minutes: 60,
            adopt_unmanaged: false,
        }
    }

    #[test]
    fn configs_are_checked_by_name() {
        assert!(scim("https://portal.example/scim/v2").validate().is_ok());
        let err = scim("ftp://portal.example").validate().unwrap_err().to_string();
        assert!(err.contains("connectors.portal.base_url"), "{err}");
        let mut no_token = scim("https://portal.example/scim/v2");
        no_token.scim.as_mut().unwrap().token_file = None;
        assert!(no_token.validate().unwrap_err().to_string().contains("token_file, token_env or [oauth]"));
        let mut oauth = scim("https://portal.example/scim/v2");
        let target = oauth.scim.as_mut().unwrap();
        target.token_file = None;
        target.oauth = Some(OAuthClient {
            token_url: "https://auth.portal.example/token".into(),
            client_id: "idbridge".into(),
            client_secret_file: Some("/run/secrets/portal-client".into()),
            client_secret_env: None,
            scope: Some("scim".into()),
        });
        oauth.validate().unwrap();
        oauth.scim.as_mut().unwrap().token_env = Some("ALSO".into());
        assert!(oauth.validate().is_err(), "a token and client credentials at once");
        let mut bad = scim("https://portal.example/scim/v2");
        bad.name = "Portal!".into();
        assert!(bad.validate().is_err());
        bad = scim("https://portal.example/scim/v2");
        bad.concurrency = 0;
        assert!(bad.validate().unwrap_err().to_string().contains("concurrency"));
        bad = scim("https://portal.example/scim/v2");
        bad.scim = None;
        assert!(bad.validate().unwrap_err().to_string().contains("no portal kind"));
    }

    #[test]
    fn a_yeti_connector_needs_the_default_profile_acknowledged() {
        let mut config = scim("https://yeti.example");
        let target = YetiTarget {
            base_url: "https://yeti.example".into(),
            username: "idbridge".into(),
            password_file: Some("/run/secrets/yeti".into()),
            password_env: None,
            customer_id: 42,
            login_prefix: None,
            allowed_ips: vec!["10.0.0.0/8".into(), "2001:db8::/32".into(), "192.0.2.7".into()],
            access_profiles: [("Billing only".to_owned(), 7)].into(),
            acknowledge_default_profile: false,
        };
        config.scim = None;
        config.yeti = Some(target.clone());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("acknowledge_default_profile"), "{err}");
        config.yeti = Some(YetiTarget { acknowledge_default_profile: true, ..target.clone() });
        config.validate().unwrap();
        config.yeti = Some(YetiTarget {
            acknowledge_default_profile: true,
            allowed_ips: vec!["10.0.0.0/33".into()],
            ..target.clone()
        });
        assert!(config.validate().unwrap_err().to_string().contains("allowed_ips"));
        config.yeti = Some(YetiTarget { acknowledge_default_profile: true, customer_id: 0, ..target });
        assert!(config.validate().unwrap_err().to_string().contains("customer_id"));
        config.scim = scim("https://p.example").scim;
        assert!(config.validate().unwrap_err().to_string().contains("not several"));
    }

    #[test]
    fn the_stored_form_reads_with_defaults_and_ignores_newer_fields() {
        let stored = serde_json::json!({
            "name": "portal", "a_field_from_a_newer_version": 1,
            "scim": {"base_url": "https://p.example/scim/v2", "token_env": "PORTAL_TOKEN", "newer": true}
        });
        let config: ConnectorConfig = serde_json::from_value(stored).unwrap();
        assert_eq!(config.max_attempts, 8);
        assert_eq!(config.drift_repair_minutes, 60);
        assert_eq!(config.scim.as_ref().unwrap().on_expire, OnExpire::Delete);
        let back: ConnectorConfig = serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
        assert_eq!(back, config);
    }
}
