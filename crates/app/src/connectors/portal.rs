//! What every portal kind implements (`Portal`), what a portal answers (`Remote`,
//! `PortalError`), and the HTTP pieces the kinds share. Below the connector's runner and
//! the kinds alike.

use std::time::Duration;

use async_trait::async_trait;
use idbridge_core::individual::Individual;
use serde_json::Value;

/// A remote object as a portal answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub id: String,
    pub version: Option<String>,
    /// Who manages it: the id it carries (SCIM `externalId`), if any.
    pub managed_by: Option<String>,
    pub document: Value,
}

/// How a portal call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum PortalError {
    /// Worth trying again later: a timeout, a lost connection, 5xx, 429.
    Transient { reason: String, retry_after: Option<Duration> },
    /// The remote object does not exist (404).
    Gone,
    /// The version given with `If-Match` is not the current one (412).
    Stale,
    /// Another object holds the login (409).
    Taken(String),
    /// Refused for a reason retrying alone will not change (400, 401, 403, 422…); still
    /// retried up to the connector's attempts, since an operator may be fixing it.
    Refused(String),
}

impl PortalError {
    pub(crate) fn reason(&self) -> String {
        match self {
            Self::Transient { reason, .. } | Self::Taken(reason) | Self::Refused(reason) => reason.clone(),
            Self::Gone => "the remote object is gone".to_owned(),
            Self::Stale => "the remote object changed during the update".to_owned(),
        }
    }
}

/// One implementation per portal kind.
#[async_trait]
pub trait Portal: Send + Sync {
    /// The remote document idbridge wants for the individual, or `None` when the portal
    /// should not hold one (expired with deletion, purged).
    fn desired(&self, individual: &Individual) -> Option<Value>;
    /// The remote object that is this individual's (SCIM: carries its id as `externalId`).
    async fn find_managed(&self, individual: &Individual) -> Result<Option<Remote>, PortalError>;
    /// The remote object with the individual's login (only after a creation was refused
    /// as taken); `managed_by` says whose it is.
    async fn find_by_login(&self, individual: &Individual) -> Result<Option<Remote>, PortalError>;
    async fn read(&self, id: &str) -> Result<Remote, PortalError>;
    async fn create(&self, desired: &Value) -> Result<Remote, PortalError>;
    /// Brings the remote object from `current` (what was pushed or read back; `None`:
    /// unknown) to `desired`; answers the new version.
    async fn update(
        &self,
        id: &str,
        version: Option<&str>,
        current: Option<&Value>,
        desired: &Value,
    ) -> Result<Option<String>, PortalError>;
    /// Deleting what is already gone succeeds.
    async fn delete(&self, id: &str) -> Result<(), PortalError>;
    /// Whether a document this portal holds grants access (what the deletion guard counts).
    fn is_active(&self, document: &Value) -> bool {
        document.get("active") == Some(&Value::Bool(true))
    }
}

/// The HTTP client of a connector: its deadline on connecting and on every request, no
/// redirects followed (a portal's API does not move), no Nagle delay.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The `Retry-After` value: seconds, or an HTTP date.
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds.min(3600)));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = at.duration_since(idbridge_core::clock::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO).min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("999999"), Some(Duration::from_secs(3600)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO), "a date in the past");
        assert_eq!(retry_after("soon"), None);
    }
}
