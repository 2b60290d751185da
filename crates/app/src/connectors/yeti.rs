//! Yeti (yeti-switch/yeti-web) through its admin JSON:API: each active individual is a
//! customer portal login (`api-accesses`: customer id, login, write-only password,
//! account ids, allowed IPs) of the tenant's Yeti customer. Yeti has no attribute for an
//! external id and no filter but `id`, and its logins are unique across the whole system:
//! so logins are namespaced per tenant (`login_prefix`), and a login with that prefix under
//! the tenant's customer is idbridge's. Suspension and expiry delete the login — Yeti's
//! only immediate revocation (its authorizer reloads the record on every request) — and
//! reactivation creates it again. The admin JWT (`POST /api/rest/admin/auth`) is obtained
//! again when Yeti answers 401 (its lifetime is `api.token_lifetime`, 600 s by default).

use std::time::Duration;

use async_trait::async_trait;
use idbridge_core::connector::YetiTarget;
use idbridge_core::individual::{Individual, IndividualStatus};
use serde_json::{Value, json};

use super::portal::{Portal, PortalError, Remote, http_client, retry_after};

/// JSON:API's media type, which Yeti's admin API speaks.
const MEDIA_TYPE: &str = "application/vnd.api+json";
/// The api-access attributes idbridge sets (the password is written once, never read).
const MANAGED: [&str; 4] = ["login", "customer-id", "account-ids", "allowed-ips"];
/// Logins per listing page while looking one up (Yeti's maximum page size is 1,000).
const PAGE: usize = 1000;

pub struct YetiPortal {
    admin: String,
    password: String,
    target: YetiTarget,
    prefix: String,
    http: reqwest::Client,
    jwt: tokio::sync::Mutex<Option<String>>,
}

/// A customer token minted for a signed-in individual.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CustomerToken {
    pub token: String,
    pub expires_at: Option<String>,
    pub access_profile_id: i64,
    pub account_ids: Vec<i64>,
}

impl YetiPortal {
    pub fn new(target: &YetiTarget, tenant_slug: &str, password: String, timeout: Duration) -> Result<Self, String> {
        let http = http_client(timeout)?;
        Ok(Self {
            admin: format!("{}/api/rest/admin", target.base_url.trim_end_matches('/')),
            password,
            prefix: target.login_prefix.clone().unwrap_or_else(|| format!("{tenant_slug}.")),
            target: target.clone(),
            http,
            jwt: tokio::sync::Mutex::new(None),
        })
    }

    fn login_of(&self, individual: &Individual) -> String {
        format!("{}{}", self.prefix, individual.login)
    }

    /// The admin JWT, obtained when there is none or `stale` is the one Yeti refused.
    async fn jwt(&self, stale: Option<&str>) -> Result<String, PortalError> {
        let mut jwt = self.jwt.lock().await;
        if let Some(current) = jwt.as_deref()
            && Some(current) != stale
            && !expires_soon(current, idbridge_core::clock::now())
        {
            return Ok(current.to_owned());
        }
        let body = json!({"auth": {"username": self.target.username, "password": self.password}});
        let answer = self
            .http
            .post(format!("{}/auth", self.admin))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(transport)?;
        let status = answer.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(PortalError::Refused(format!(
                "Yeti refused the admin sign-in of {:?} (username, password or allowed IPs)",
                self.target.username
            )));
        }
        let value: Value = answer.json().await.unwrap_or(Value::Null);
        let token = value.get("jwt").and_then(Value::as_str).filter(|_| status.is_success());
        let Some(token) = token else {
            return Err(classify(status, &value));
        };
        *jwt = Some(token.to_owned());
        Ok(token.to_owned())
    }

    /// One admin API call; a 401 (the JWT expired: Yeti answers it with an empty body) is
    /// answered by signing in again, once.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, PortalError> {
        let mut jwt = self.jwt(None).await?;
        for attempt in 0..2 {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.admin))
                .bearer_auth(&jwt)
                .header(reqwest::header::ACCEPT, MEDIA_TYPE);
            if let Some(body) = body {
                request = request.header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE).body(body.to_string());
            }
            let answer = request.send().await.map_err(transport)?;
            let status = answer.status();
            let retry_after =
                answer.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
            let bytes = answer.bytes().await.map_err(transport)?;
            let value: Value =
                if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
            if status == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                jwt = self.jwt(Some(&jwt)).await?;
                continue;
            }
            if status.is_success() {
                return Ok(value);
            }
            return Err(match classify(status, &value) {
                PortalError::Transient { reason, .. } => PortalError::Transient { reason, retry_after },
                other => other,
            });
        }
        Err(PortalError::Refused("Yeti refused the admin JWT it had just issued".into()))
    }

    /// The api-access with this login, by paging through the listing (Yeti filters only by id).
    async fn find_login(&self, login: &str) -> Result<Option<(Remote, i64)>, PortalError> {
        for number in 1.. {
            let page = self
                .call(reqwest::Method::GET, &format!("/api-accesses?page[number]={number}&page[size]={PAGE}"), None)
                .await?;
            let rows = page.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
            for row in &rows {
                if row.pointer("/attributes/login").and_then(Value::as_str) == Some(login) {
                    let customer = row.pointer("/attributes/customer-id").and_then(Value::as_i64).unwrap_or(0);
                    return Ok(Some((remote(row)?, customer)));
                }
            }
            if rows.len() < PAGE {
                break;
            }
        }
        Ok(None)
    }

    /// Mints a customer token for an individual (who must be active): the Yeti access
    /// profile its access profile maps to, its billing accounts, the tenant's allowed IPs.
    pub async fn mint_token(&self, individual: &Individual) -> Result<CustomerToken, String> {
        if individual.status != IndividualStatus::Active {
            return Err(format!("{} is {}, not active", individual.login, individual.status.as_str()));
        }
        let profile = individual
            .access_profile
            .as_deref()
            .ok_or_else(|| format!("{} has no access profile", individual.login))?;
        let profile_id = *self.target.access_profiles.get(profile).ok_or_else(|| {
            format!("access profile {profile:?} has no Yeti profile id (the connector's access_profiles)")
        })?;
        let accounts = account_ids(individual);
        let mut attributes = json!({"customer-portal-access-profile-id": profile_id});
        if !self.target.allowed_ips.is_empty() {
            attributes["allowed-ips"] = json!(self.target.allowed_ips);
        }
        let body = json!({"data": {
            "type": "customer-tokens",
            "attributes": attributes,
            "relationships": {
                "customer": {"data": {"id": self.target.customer_id.to_string(), "type": "contractors"}},
                "accounts": {"data": accounts.iter().map(|a| json!({"id": a.to_string(), "type": "accounts"})).collect::<Vec<_>>()},
            },
        }});
        let answer = self.call(reqwest::Method::POST, "/customer-tokens", Some(&body)).await.map_err(|e| e.reason())?;
        let token = answer
            .pointer("/data/attributes/token")
            .and_then(Value::as_str)
            .ok_or("Yeti's answer has no token")?
            .to_owned();
        let expires_at = answer.pointer("/data/attributes/expires-at").and_then(Value::as_str).map(str::to_owned);
        Ok(CustomerToken { token, expires_at, access_profile_id: profile_id, account_ids: accounts })
    }
}

/// Whether a JWT's `exp` is less than 30 s away (Yeti's admin tokens carry one unless its
/// `api.token_lifetime` is empty): renewed before a request fails with it. A token whose
/// payload cannot be read is used until Yeti refuses it.
fn expires_soon(jwt: &str, now: jiff::Timestamp) -> bool {
    use base64::Engine as _;
    let Some(payload) = jwt.split('.').nth(1) else { return false };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
        return false;
    };
    let exp = serde_json::from_slice::<Value>(&bytes).ok().and_then(|claims| claims.get("exp").and_then(Value::as_i64));
    exp.is_some_and(|exp| exp - 30 <= now.as_second())
}

/// The billing-account scopes that are Yeti account ids (integers).
fn account_ids(individual: &Individual) -> Vec<i64> {
    individual.scopes.billing_accounts.iter().filter_map(|a| a.parse().ok()).collect()
}

#[async_trait]
impl Portal for YetiPortal {
    fn desired(&self, individual: &Individual) -> Option<Value> {
        // Only an active individual has a login: Yeti has no "inactive" login, deleting is
        // how access ends, and creating one waits for the activation.
        if individual.status != IndividualStatus::Active {
            return None;
        }
        let mut attributes = json!({
            "login": self.login_of(individual),
            "customer-id": self.target.customer_id,
            "account-ids": account_ids(individual),
        });
        if !self.target.allowed_ips.is_empty() {
            attributes["allowed-ips"] = json!(self.target.allowed_ips);
        }
        Some(attributes)
    }

    async fn find_managed(&self, individual: &Individual) -> Result<Option<Remote>, PortalError> {
        match self.find_login(&self.login_of(individual)).await? {
            Some((remote, customer)) if customer == self.target.customer_id => {
                Ok(Some(Remote { managed_by: Some(individual.id.0.to_string()), ..remote }))
            }
            _ => Ok(None),
        }
    }

    async fn find_by_login(&self, individual: &Individual) -> Result<Option<Remote>, PortalError> {
        Ok(self.find_login(&self.login_of(individual)).await?.map(|(remote, customer)| {
            // The namespaced login under the tenant's customer is idbridge's by construction;
            // under another customer it is somebody else's.
            let managed_by = if customer == self.target.customer_id {
                individual.id.0.to_string()
            } else {
                format!("Yeti customer {customer}")
            };
            Remote { managed_by: Some(managed_by), ..remote }
        }))
    }

    async fn read(&self, id: &str) -> Result<Remote, PortalError> {
        let answer = self.call(reqwest::Method::GET, &format!("/api-accesses/{}", segment(id)?), None).await?;
        remote(answer.get("data").unwrap_or(&Value::Null))
    }

    async fn create(&self, desired: &Value) -> Result<Remote, PortalError> {
        let mut attributes = desired.clone();
        // Yeti requires a password; the individual signs in through idbridge, so it is a
        // random one nobody keeps (never stored, never logged).
        attributes["password"] = json!(format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()));
        let body = json!({"data": {"type": "api-accesses", "attributes": attributes}});
        let answer = self.call(reqwest::Method::POST, "/api-accesses", Some(&body)).await?;
        remote(answer.get("data").unwrap_or(&Value::Null))
    }

    async fn update(
        &self,
        id: &str,
        version: Option<&str>,
        current: Option<&Value>,
        desired: &Value,
    ) -> Result<Option<String>, PortalError> {
        let mut changed = serde_json::Map::new();
        for attribute in MANAGED {
            let want = desired.get(attribute);
            if current.and_then(|c| c.get(attribute)) != want {
                // An attribute idbridge stopped setting goes back to Yeti's default.
                let value = match (attribute, want) {
                    (_, Some(want)) => want.clone(),
                    ("allowed-ips", None) => json!(["0.0.0.0/0", "::/0"]),
                    (_, None) => continue,
                };
                changed.insert(attribute.to_owned(), value);
            }
        }
        if changed.is_empty() {
            return Ok(version.map(str::to_owned));
        }
        let body = json!({"data": {"type": "api-accesses", "id": id, "attributes": changed}});
        self.call(reqwest::Method::PATCH, &format!("/api-accesses/{}", segment(id)?), Some(&body)).await?;
        Ok(None)
    }

    async fn delete(&self, id: &str) -> Result<(), PortalError> {
        match self.call(reqwest::Method::DELETE, &format!("/api-accesses/{}", segment(id)?), None).await {
            Ok(_) | Err(PortalError::Gone) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn is_active(&self, _document: &Value) -> bool {
        // A login that exists grants access; access ends by deleting it.
        true
    }
}

/// A JSON:API resource object as a remote object (its attributes are the document).
fn remote(resource: &Value) -> Result<Remote, PortalError> {
    let id = match resource.get("id") {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => return Err(PortalError::Refused("Yeti's answer has no api-access id".into())),
    };
    let document = resource.get("attributes").cloned().unwrap_or(Value::Null);
    Ok(Remote { id, version: None, managed_by: None, document })
}

/// Yeti's ids are integers; anything else is not put in a path.
fn segment(id: &str) -> Result<&str, PortalError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id)
    } else {
        Err(PortalError::Refused(format!("{id:?} is not a Yeti id")))
    }
}

fn transport(e: reqwest::Error) -> PortalError {
    PortalError::Transient {
        reason: if e.is_timeout() {
            "the request to Yeti timed out".to_owned()
        } else {
            format!("request to Yeti failed: {e}")
        },
        retry_after: None,
    }
}

/// A JSON:API error answer as a portal error: a login taken is 422 with "has already been
/// taken" (Rails' uniqueness message).
fn classify(status: reqwest::StatusCode, body: &Value) -> PortalError {
    let details: Vec<String> = body
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e.get("detail").or_else(|| e.get("title")).and_then(Value::as_str))
                .map(|d| d.chars().take(200).filter(|c| !c.is_control()).collect())
                .collect()
        })
        .unwrap_or_default();
    let reason = if details.is_empty() {
        format!("Yeti answered {status}")
    } else {
        format!("Yeti answered {status}: {}", details.join("; "))
    };
    match status.as_u16() {
        404 => PortalError::Gone,
        422 if details.iter().any(|d| d.contains("already been taken")) => PortalError::Taken(reason),
        408 | 429 | 500..=599 => PortalError::Transient { reason, retry_after: None },
        _ => PortalError::Refused(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_login_is_told_apart_from_other_refusals() {
        let taken = json!({"errors": [{"title": "has already been taken", "detail": "login - has already been taken", "code": "100", "status": "422"}]});
        assert!(matches!(classify(reqwest::StatusCode::UNPROCESSABLE_ENTITY, &taken), PortalError::Taken(_)));
        let other = json!({"errors": [{"detail": "customer - can't be blank"}]});
        let PortalError::Refused(reason) = classify(reqwest::StatusCode::UNPROCESSABLE_ENTITY, &other) else {
            panic!()
        };
        assert!(reason.contains("can't be blank"), "{reason}");
        assert!(matches!(classify(reqwest::StatusCode::NOT_FOUND, &Value::Null), PortalError::Gone));
        assert!(matches!(classify(reqwest::StatusCode::BAD_GATEWAY, &Value::Null), PortalError::Transient { .. }));
    }

    #[test]
    fn an_admin_jwt_is_renewed_before_it_expires() {
        use base64::Engine as _;
        let jwt = |exp: i64| {
            let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(json!({"sub": 1, "aud": "admin", "exp": exp}).to_string());
            format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig")
        };
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        assert!(!expires_soon(&jwt(1_800_000_600), now));
        assert!(expires_soon(&jwt(1_800_000_010), now));
        assert!(!expires_soon("not-a-jwt", now), "unreadable: used until refused");
    }

    #[test]
    fn only_integer_ids_go_into_paths() {
        assert_eq!(segment("42").unwrap(), "42");
        assert!(segment("../customers").is_err());
        assert!(segment("").is_err());
    }
}
