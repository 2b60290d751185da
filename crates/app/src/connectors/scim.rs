//! Outbound SCIM 2.0 (RFC 7643/7644): the individual as a SCIM User at any SCIM service
//! provider. The user carries idbridge's individual id as `externalId` — how a lost
//! creation is found again and how idbridge tells its users from the portal's own.

use std::time::Duration;

use async_trait::async_trait;
use idbridge_core::connector::{OAuthClient, OnExpire, PORTAL_EXTENSION, ScimTarget};
use idbridge_core::individual::{Individual, IndividualStatus};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::portal::{Portal, PortalError, Remote, http_client, retry_after};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const MEDIA_TYPE: &str = "application/scim+json";

/// The attributes idbridge owns on the remote user; anything else the portal keeps.
/// The portal extension (idbridge's, or the one configured) comes on top.
const MANAGED: [&str; 8] =
    ["externalId", "userName", "name", "displayName", "emails", "preferredLanguage", "active", "roles"];

pub struct ScimPortal {
    users: String,
    auth: Auth,
    target: ScimTarget,
    http: reqwest::Client,
}

/// How idbridge authenticates to the portal.
pub enum Auth {
    /// A fixed bearer token.
    Token(String),
    /// OAuth 2.0 client credentials: the access token, obtained when there is none, it is
    /// about to expire, or the portal refused it.
    ClientCredentials { client: OAuthClient, secret: String, cached: tokio::sync::Mutex<Option<(String, Instant)>> },
}

impl Auth {
    pub fn client_credentials(client: OAuthClient, secret: String) -> Self {
        Self::ClientCredentials { client, secret, cached: tokio::sync::Mutex::new(None) }
    }

    /// The bearer token to send; `stale` is one the portal just refused.
    async fn bearer(&self, http: &reqwest::Client, stale: Option<&str>) -> Result<String, PortalError> {
        let (client, secret, cached) = match self {
            Self::Token(token) => return Ok(token.clone()),
            Self::ClientCredentials { client, secret, cached } => (client, secret, cached),
        };
        let mut cached = cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
            && Some(token.as_str()) != stale
        {
            return Ok(token.clone());
        }
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &client.scope {
            form.push(("scope", scope));
        }
        let answer = http
            .post(&client.token_url)
            .basic_auth(&client.client_id, Some(secret))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| PortalError::Transient {
                reason: format!("the token request to the authorization server failed: {}", without_url(&e)),
                retry_after: None,
            })?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        let token = body.get("access_token").and_then(Value::as_str).filter(|_| status.is_success());
        let Some(token) = token else {
            let error = body.get("error").and_then(Value::as_str).unwrap_or("no access token");
            let reason =
                format!("the authorization server answered {status} to the client credentials: {}", clip(error));
            return Err(if status.is_server_error() {
                PortalError::Transient { reason, retry_after: None }
            } else {
                PortalError::Refused(reason)
            });
        };
        // Renewed a little before it expires (at least 5 s of use; an hour without `expires_in`).
        let lifetime = body.get("expires_in").and_then(Value::as_u64).unwrap_or(3600);
        let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(30).max(5).min(lifetime.max(1)));
        *cached = Some((token.to_owned(), until));
        Ok(token.to_owned())
    }
}

impl ScimPortal {
    pub fn new(target: &ScimTarget, auth: Auth, timeout: Duration) -> Result<Self, String> {
        let http = http_client(timeout)?;
        Ok(Self {
            users: format!("{}/Users", target.base_url.trim_end_matches('/')),
            auth,
            target: target.clone(),
            http,
        })
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url).header(reqwest::header::ACCEPT, MEDIA_TYPE)
    }

    /// Sends with the bearer token; with client credentials, a 401 is answered by a new
    /// token, once.
    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, PortalError> {
        let failed = |e: reqwest::Error| PortalError::Transient {
            reason: if e.is_timeout() {
                "the request timed out".to_owned()
            } else {
                format!("request failed: {}", without_url(&e))
            },
            retry_after: None,
        };
        let token = self.auth.bearer(&self.http, None).await?;
        let again = request.try_clone();
        let response = request.bearer_auth(&token).send().await.map_err(failed)?;
        match (&self.auth, again) {
            (Auth::ClientCredentials { .. }, Some(again)) if response.status() == reqwest::StatusCode::UNAUTHORIZED => {
                let token = self.auth.bearer(&self.http, Some(&token)).await?;
                again.bearer_auth(&token).send().await.map_err(failed)
            }
            _ => Ok(response),
        }
    }

    /// The schema URN the portal attributes go under.
    fn extension_urn(&self) -> &str {
        self.target.portal_extension_schema.as_deref().unwrap_or(PORTAL_EXTENSION)
    }

    fn user_url(&self, id: &str) -> String {
        // A remote id is the portal's; it is put in a path segment, so it is escaped.
        format!("{}/{}", self.users, percent_escape(id))
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Option<String>, Value), PortalError> {
        let response = self.exchange(request).await?;
        let status = response.status();
        let etag = response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let retry_after =
            response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
        let body = response.bytes().await.map_err(|e| PortalError::Transient {
            reason: format!("the answer was cut off: {}", without_url(&e)),
            retry_after: None,
        })?;
        let value: Value =
            if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
        if status.is_success() {
            return Ok((status, etag, value));
        }
        let detail = value.get("detail").and_then(Value::as_str).map(|d| format!(": {}", clip(d))).unwrap_or_default();
        let reason = format!("the portal answered {status}{detail}");
        Err(match status.as_u16() {
            404 => PortalError::Gone,
            409 => PortalError::Taken(reason),
            412 => PortalError::Stale,
            408 | 429 | 500..=599 => PortalError::Transient { reason, retry_after },
            _ => PortalError::Refused(reason),
        })
    }

    async fn find(&self, filter: String) -> Result<Option<Remote>, PortalError> {
        let request =
            self.request(reqwest::Method::GET, &self.users).query(&[("filter", filter.as_str()), ("count", "2")]);
        let (_, _, body) = self.send(request).await?;
        let resources = body.get("Resources").and_then(Value::as_array).cloned().unwrap_or_default();
        match resources.as_slice() {
            [] => Ok(None),
            [one] => remote(one.clone(), None).map(Some),
            _ => Err(PortalError::Refused(format!("the portal has several users matching {filter}"))),
        }
    }
}

#[async_trait]
impl Portal for ScimPortal {
    fn desired(&self, individual: &Individual) -> Option<Value> {
        let active = match individual.status {
            IndividualStatus::Active => true,
            IndividualStatus::Pending | IndividualStatus::Suspended => false,
            IndividualStatus::Expired => match self.target.on_expire {
                OnExpire::Delete => return None,
                OnExpire::Deactivate => false,
            },
            IndividualStatus::Deleted => return None,
        };
        let mut user = serde_json::Map::new();
        let mut schemas = vec![json!(USER_SCHEMA)];
        user.insert("externalId".into(), json!(individual.id.0.to_string()));
        user.insert("userName".into(), json!(individual.login));
        let mut name = serde_json::Map::new();
        if let Some(given) = &individual.given_name {
            name.insert("givenName".into(), json!(given));
        }
        if let Some(family) = &individual.family_name {
            name.insert("familyName".into(), json!(family));
        }
        if !name.is_empty() {
            user.insert("name".into(), Value::Object(name));
        }
        if let Some(display) = &individual.display_name {
            user.insert("displayName".into(), json!(display));
        }
        if let Some(email) = &individual.email {
            user.insert("emails".into(), json!([{"value": email, "type": "work", "primary": true}]));
        }
        if let Some(language) = &individual.language {
            user.insert("preferredLanguage".into(), json!(language));
        }
        user.insert("active".into(), json!(active));
        if let Some(role) = &individual.role {
            user.insert("roles".into(), json!([{"value": role}]));
        }
        if self.target.portal_extension {
            schemas.push(json!(self.extension_urn()));
            user.insert(self.extension_urn().into(), portal_extension(individual));
        }
        user.insert("schemas".into(), Value::Array(schemas));
        Some(Value::Object(user))
    }

    async fn find_managed(&self, individual: &Individual) -> Result<Option<Remote>, PortalError> {
        self.find(format!("externalId eq \"{}\"", individual.id.0)).await
    }

    async fn find_by_login(&self, individual: &Individual) -> Result<Option<Remote>, PortalError> {
        // A SCIM filter's string is a JSON string: quoted and escaped the same way.
        self.find(format!("userName eq {}", json!(individual.login))).await
    }

    async fn read(&self, id: &str) -> Result<Remote, PortalError> {
        let (_, etag, body) = self.send(self.request(reqwest::Method::GET, &self.user_url(id))).await?;
        remote(body, etag)
    }

    async fn create(&self, desired: &Value) -> Result<Remote, PortalError> {
        let request = self
            .request(reqwest::Method::POST, &self.users)
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
            .body(desired.to_string());
        let (_, etag, body) = self.send(request).await?;
        remote(body, etag)
    }

    async fn update(
        &self,
        id: &str,
        version: Option<&str>,
        current: Option<&Value>,
        desired: &Value,
    ) -> Result<Option<String>, PortalError> {
        let operations = patch_operations(current, desired, self.extension_urn());
        if operations.is_empty() {
            return Ok(version.map(str::to_owned));
        }
        let mut request = self
            .request(reqwest::Method::PATCH, &self.user_url(id))
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
            .body(json!({"schemas": [PATCH_SCHEMA], "Operations": operations}).to_string());
        if let Some(version) = version {
            request = request.header(reqwest::header::IF_MATCH, version);
        }
        let (_, etag, body) = self.send(request).await?;
        Ok(etag.or_else(|| body.pointer("/meta/version").and_then(Value::as_str).map(str::to_owned)))
    }

    async fn delete(&self, id: &str) -> Result<(), PortalError> {
        match self.send(self.request(reqwest::Method::DELETE, &self.user_url(id))).await {
            Ok(_) | Err(PortalError::Gone) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// idbridge's portal extension, in the attribute names idbridge's own SCIM service reads
/// (`idbridge_scim::schema::portal_user_schema`: local date-times in `timeZone`, scopes as
/// comma-separated strings), plus `accessProfile` and the portal groups and group rights.
fn portal_extension(individual: &Individual) -> Value {
    let scopes = &individual.scopes;
    let mut extension = serde_json::Map::new();
    let mut put = |name: &str, value: Value| {
        extension.insert(name.to_owned(), value);
    };
    put("timeZone", json!(individual.time_zone));
    if let Some(activation) = &individual.activation {
        put("activationDateTime", json!(activation.local.to_string()));
    }
    if let Some(expiration) = &individual.expiration {
        put("expirationDateTime", json!(expiration.local.to_string()));
    }
    if let Some(profile) = &individual.access_profile {
        put("accessProfile", json!(profile));
    }
    put("fullCallReports", json!(scopes.full_call_reports));
    let joined =
        |set: &std::collections::BTreeSet<String>| set.iter().map(String::as_str).collect::<Vec<_>>().join(",");
    for (name, set) in [
        ("extensions", &scopes.extensions),
        ("queues", &scopes.queues),
        ("numbers", &scopes.phone_numbers),
        ("billingAccounts", &scopes.billing_accounts),
        ("groups", &scopes.groups),
    ] {
        if !set.is_empty() {
            put(name, json!(joined(set)));
        }
    }
    if let Some(caller_id) = &scopes.default_caller_id {
        put("defaultCallerId", json!(caller_id));
    }
    if !scopes.group_rights.is_empty() {
        put("groupRights", serde_json::to_value(&scopes.group_rights).unwrap_or(Value::Null));
    }
    Value::Object(extension)
}

/// The remote user as read: its id, version and whether anyone manages it.
fn remote(body: Value, etag: Option<String>) -> Result<Remote, PortalError> {
    let Some(id) = body.get("id").and_then(Value::as_str).map(str::to_owned) else {
        return Err(PortalError::Refused("the portal's answer has no user id".to_owned()));
    };
    let version = etag.or_else(|| body.pointer("/meta/version").and_then(Value::as_str).map(str::to_owned));
    let managed_by = body.get("externalId").and_then(Value::as_str).filter(|e| !e.is_empty()).map(str::to_owned);
    Ok(Remote { id, version, managed_by, document: body })
}

/// PATCH operations that bring the managed attributes of `current` to `desired`: a
/// `replace` for each that differs, a `remove` for each idbridge no longer sets. Without
/// `current` (adopted, or never pushed), everything is replaced.
pub(crate) fn patch_operations(current: Option<&Value>, desired: &Value, extension: &str) -> Vec<Value> {
    let mut operations = Vec::new();
    for attribute in MANAGED.into_iter().chain([extension]) {
        let want = desired.get(attribute);
        let have = current.and_then(|c| c.get(attribute));
        match (have, want) {
            (_, Some(want)) if have != Some(want) => {
                operations.push(json!({"op": "replace", "path": attribute, "value": want}));
            }
            (Some(_), None) => operations.push(json!({"op": "remove", "path": attribute})),
            _ => {}
        }
    }
    operations
}

fn percent_escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An HTTP error without its URL (a URL may carry what an operator put there).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "the portal");
    }
    std::error::Error::source(e).map(|s| format!("{text} ({s})")).unwrap_or(text)
}

/// A portal's error detail, kept short: it is stored and shown, never trusted.
fn clip(detail: &str) -> String {
    let clipped: String = detail.chars().take(300).filter(|c| !c.is_control()).collect();
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use idbridge_core::individual::IndividualId;

    #[test]
    fn only_changed_managed_attributes_are_patched() {
        let before = json!({"userName": "bob", "active": true, "roles": [{"value": "PBX admin"}], "nickName": "b"});
        let after = json!({"userName": "bob", "active": false, "displayName": "Bob"});
        let ops = patch_operations(Some(&before), &after, PORTAL_EXTENSION);
        assert_eq!(
            ops,
            vec![
                json!({"op": "replace", "path": "displayName", "value": "Bob"}),
                json!({"op": "replace", "path": "active", "value": false}),
                json!({"op": "remove", "path": "roles"}),
            ]
        );
        assert!(patch_operations(Some(&after), &after, PORTAL_EXTENSION).is_empty());
        assert_eq!(patch_operations(None, &after, PORTAL_EXTENSION).len(), 3, "everything, when nothing is known");
    }

    fn individual(status: IndividualStatus) -> Individual {
        let now = idbridge_core::clock::now();
        Individual {
            id: IndividualId(uuid::Uuid::nil()),
            tenant_id: idbridge_core::tenant::TenantId(uuid::Uuid::nil()),
            login: "adam@abc.example".into(),
            email: Some("adam@abc.example".into()),
            given_name: Some("Adam".into()),
            family_name: None,
            display_name: None,
            role: Some("Operations manager".into()),
            access_profile: Some("Billing only".into()),
            scopes: idbridge_core::scopes::Scopes {
                queues: ["sales".to_owned(), "support".to_owned()].into(),
                ..Default::default()
            },
            time_zone: "Europe/Berlin".into(),
            language: None,
            activation: Some(
                idbridge_core::schedule::LocalInstant::parse("2026-04-20T00:00:00", "Europe/Berlin").unwrap(),
            ),
            expiration: None,
            status,
            links: Vec::new(),
            deprovisioned_at: None,
            access_ended_at: None,
            provenance: Default::default(),
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    fn portal(on_expire: OnExpire, portal_extension: bool) -> ScimPortal {
        let target = ScimTarget {
            base_url: "http://127.0.0.1:1/scim/v2/".into(),
            token_file: None,
            token_env: Some("T".into()),
            on_expire,
            portal_extension,
            portal_extension_schema: None,
            oauth: None,
        };
        ScimPortal::new(&target, Auth::Token("t".into()), Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn the_scim_user_follows_the_lifecycle() {
        let deleting = portal(OnExpire::Delete, false);
        let active = deleting.desired(&individual(IndividualStatus::Active)).unwrap();
        assert_eq!(active["externalId"], uuid::Uuid::nil().to_string());
        assert_eq!(active["userName"], "adam@abc.example");
        assert_eq!(active["active"], true);
        assert_eq!(active["roles"], json!([{"value": "Operations manager"}]));
        assert_eq!(active["emails"][0]["primary"], true);
        assert_eq!(active["schemas"], json!([USER_SCHEMA]));
        assert!(active.get(PORTAL_EXTENSION).is_none());
        assert!(active.get("preferredLanguage").is_none(), "the tenant's language is not the person's");
        let mut german = individual(IndividualStatus::Active);
        german.language = Some("de-CH".into());
        assert_eq!(deleting.desired(&german).unwrap()["preferredLanguage"], "de-CH");
        // Known to the portal before activation and while suspended, but not active.
        for status in [IndividualStatus::Pending, IndividualStatus::Suspended] {
            assert_eq!(deleting.desired(&individual(status)).unwrap()["active"], false);
        }
        assert!(deleting.desired(&individual(IndividualStatus::Expired)).is_none());
        assert!(deleting.desired(&individual(IndividualStatus::Deleted)).is_none());
        let keeping = portal(OnExpire::Deactivate, true);
        assert_eq!(keeping.desired(&individual(IndividualStatus::Expired)).unwrap()["active"], false);
        assert!(keeping.desired(&individual(IndividualStatus::Deleted)).is_none(), "purged is purged");
        assert_eq!(keeping.users, "http://127.0.0.1:1/scim/v2/Users");
    }

    #[test]
    fn the_portal_extension_speaks_idbridge_s_own_schema() {
        let user = portal(OnExpire::Delete, true).desired(&individual(IndividualStatus::Pending)).unwrap();
        assert_eq!(user["schemas"], json!([USER_SCHEMA, PORTAL_EXTENSION]));
        let extension = &user[PORTAL_EXTENSION];
        assert_eq!(extension["activationDateTime"], "2026-04-20T00:00:00");
        assert_eq!(extension["timeZone"], "Europe/Berlin");
        assert_eq!(extension["accessProfile"], "Billing only");
        assert_eq!(extension["queues"], "sales,support");
        assert_eq!(extension["fullCallReports"], false);
        assert!(extension.get("extensions").is_none());
        let mut own = portal(OnExpire::Delete, true);
        own.target.portal_extension_schema = Some("urn:example:portal:2.0:User".into());
        let user = own.desired(&individual(IndividualStatus::Active)).unwrap();
        assert_eq!(user["schemas"], json!([USER_SCHEMA, "urn:example:portal:2.0:User"]));
        assert_eq!(user["urn:example:portal:2.0:User"]["queues"], "sales,support");
    }

    #[test]
    fn remote_ids_are_escaped_in_paths() {
        assert_eq!(percent_escape("a/b c?"), "a%2Fb%20c%3F");
        assert_eq!(percent_escape("8da15e1a-71cb"), "8da15e1a-71cb");
    }
}
