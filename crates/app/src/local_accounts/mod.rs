//! Individuals without an IdP (the PortaBilling customer-individual flow, seed 001): an
//! invitation by mail with a single-use link, their own password (Argon2id) and second
//! factor (TOTP, recovery codes), lockout with back-off per account and per client
//! address, password reset by mail, and the notices at activation and before expiry.
//!
//! The OpenID provider (`idbridge-oidc`) shows the pages and calls these use cases; after a
//! local sign-in it issues exactly the tokens an SSO sign-in gets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use idbridge_core::audit::AuditContext;
use idbridge_core::clock::{Clock, SystemClock};
use idbridge_core::individual::{Individual, IndividualId, IndividualStatus};
use idbridge_core::local_account::{
    CredentialLink, Language, LinkPurpose, LocalCredential, Mail, MailKind, email_key, lockout,
};
use idbridge_core::ports::Store;
use idbridge_core::tenant::{Tenant, TenantId};
use idbridge_core::token::{hash_token, random_secret};
use idbridge_core::{DomainError, DomainResult};
use jiff::Timestamp;

pub mod mail;
pub mod notices;
pub mod passkeys;
pub mod secrets;
pub mod smtp;

use mail::{MailValues, Templates};
use secrets::{HashCost, PasswordRules};

/// What the use cases need besides the store.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// idbridge's public URL: links point at its pages.
    pub public_url: String,
    pub operator_name: String,
    pub logo_url: Option<String>,
    pub cost: HashCost,
    pub rules: PasswordRules,
    pub templates: Templates,
    /// Seals TOTP secrets at rest (`[sso] key_encryption_key_file`), as signing keys are.
    pub sealing: Option<crate::sealing::KeyEncryption>,
    /// Passkeys as a second factor, where the public URL can be a WebAuthn origin.
    pub passkeys: Option<passkeys::Relying>,
}

/// Why a local sign-in step did not pass. What the person is told never says whether the
/// account exists (`Wrong` for an unknown address and a wrong password alike).
#[derive(Debug, thiserror::Error)]
pub enum LocalRefusal {
    #[error("The email address or the password is not right.")]
    Wrong,
    #[error("The code is not right.")]
    WrongCode,
    #[error("The passkey was not accepted. Try again, or use a code.")]
    WrongPasskey,
    #[error("Too many attempts. Try again after {}.", .0.strftime("%H:%M UTC"))]
    Locked(Timestamp),
    #[error("{0}")]
    Unavailable(#[from] DomainError),
}

/// Why a new password was not set.
#[derive(Debug, thiserror::Error)]
pub enum SetPasswordError {
    /// The password breaks a rule; the text says which, for the person.
    #[error("{0}")]
    Refused(String),
    /// The link has expired, was used, or was replaced by a newer one.
    #[error("This link has expired or has already been used. Ask for a new one.")]
    Gone,
    #[error("{0}")]
    Unavailable(#[from] DomainError),
}

/// A link as its page shows it.
#[derive(Debug, Clone)]
pub struct LinkView {
    pub purpose: LinkPurpose,
    pub tenant: Tenant,
    pub individual: Individual,
}

/// Who passed a step, and what comes next.
#[derive(Debug, Clone)]
pub struct Passed {
    pub tenant: Tenant,
    pub individual: Individual,
    /// A second factor (a TOTP or a passkey) is enrolled: it is asked for next.
    pub has_second_factor: bool,
    /// The tenant requires a second factor and none is enrolled: enrolment comes next.
    pub must_enrol: bool,
}

/// A TOTP enrolment begun: what the enrolment page shows.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub secret: String,
    pub url: String,
    pub qr_svg: String,
}

/// Failures per client address (this instance's memory: several instances each count
/// their own) and per unknown address, which must look like a known one.
#[derive(Debug, Default)]
struct Throttle {
    by_client: HashMap<IpAddr, (u32, Option<Timestamp>)>,
    by_unknown_email: HashMap<String, (u32, Option<Timestamp>)>,
}

/// The most addresses the throttle remembers; past it, the oldest half is forgotten.
const THROTTLE_CAPACITY: usize = 100_000;

impl Throttle {
    fn locked<K: std::hash::Hash + Eq>(
        map: &HashMap<K, (u32, Option<Timestamp>)>,
        key: &K,
        now: Timestamp,
    ) -> Option<Timestamp> {
        map.get(key).and_then(|(_, until)| *until).filter(|until| *until > now)
    }

    fn fail<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, (u32, Option<Timestamp>)>, key: &K, now: Timestamp) {
        if map.len() >= THROTTLE_CAPACITY {
            // Forget those not locked: a flood of addresses cannot grow memory without bound.
            map.retain(|_, (_, until)| until.is_some_and(|u| u > now));
        }
        let entry = map.entry(key.clone()).or_insert((0, None));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = lockout(entry.0).map(|d| now + d);
    }
}

#[derive(Clone)]
pub struct LocalAccounts {
    store: Arc<dyn Store>,
    pub settings: Arc<LocalSettings>,
    throttle: Arc<Mutex<Throttle>>,
    /// Links expire, lockouts end and notices fall due by this clock (a manual one in tests).
    clock: Arc<dyn Clock>,
}

impl LocalAccounts {
    pub fn new(store: Arc<dyn Store>, settings: LocalSettings) -> Self {
        Self::with_clock(store, settings, Arc::new(SystemClock))
    }

    pub fn with_clock(store: Arc<dyn Store>, settings: LocalSettings, clock: Arc<dyn Clock>) -> Self {
        Self { store, settings: Arc::new(settings), throttle: Arc::default(), clock }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn link_url(&self, purpose: LinkPurpose, token: &str) -> String {
        let page = match purpose {
            LinkPurpose::Invitation => "setup",
            LinkPurpose::Reset => "reset/new",
        };
        format!("{}/account/{page}?token={token}", self.settings.public_url.trim_end_matches('/'))
    }

    fn values(&self, tenant: &Tenant, individual: &Individual) -> MailValues {
        let name = individual
            .display_name
            .clone()
            .or_else(|| individual.given_name.clone())
            .unwrap_or_else(|| individual.login.clone());
        MailValues {
            operator: self.settings.operator_name.clone(),
            logo_url: self.settings.logo_url.clone(),
            name,
            organisation: tenant.name.clone(),
            link: String::new(),
            starts: None,
            ends: None,
            valid_for: String::new(),
        }
    }

    /// The individual's own language when a template speaks it, else the tenant's, else
    /// English.
    fn language(tenant: &Tenant, individual: &Individual) -> Language {
        individual
            .language
            .as_deref()
            .and_then(Language::parse)
            .or_else(|| Language::parse(&tenant.policy.local_sign_in.language))
            .unwrap_or(Language::En)
    }

    /// Sends an invitation (or, to someone who already has a password, a reset link): a
    /// new single-use link replaces any link still out. Refused, naming why, for a tenant
    /// without local sign-in, an individual without an email, one who signs in through
    /// the organisation's IdP (a SCIM or directory link), or one whose access has ended.
    pub async fn invite(&self, ctx: &AuditContext, tenant: &Tenant, individual: &Individual) -> DomainResult<Mail> {
        let policy = &tenant.policy.local_sign_in;
        if !policy.allowed {
            return Err(DomainError::Rejected(format!("tenant {} does not allow local sign-in", tenant.slug)));
        }
        let Some(email) = individual.email.as_deref().filter(|e| e.contains('@')) else {
            return Err(DomainError::Rejected(format!("individual {} has no email address", individual.login)));
        };
        if has_directory(individual) {
            return Err(DomainError::Rejected(format!(
                "individual {} signs in through the organisation's identity provider",
                individual.login
            )));
        }
        if individual.status == IndividualStatus::Expired {
            return Err(DomainError::Rejected(format!("individual {}'s access has ended", individual.login)));
        }
        let now = self.now();
        let existing = self.store.get_local_credential(tenant.id, individual.id).await?;
        let mut credential =
            existing.clone().unwrap_or_else(|| LocalCredential::new(tenant.id, individual.id, email, now));
        credential.email_key = email_key(email);
        let (purpose, kind, valid) = if credential.password_hash.is_some() {
            (
                LinkPurpose::Reset,
                MailKind::PasswordReset,
                jiff::SignedDuration::from_mins(i64::from(policy.reset_minutes)),
            )
        } else {
            (
                LinkPurpose::Invitation,
                MailKind::Invitation,
                jiff::SignedDuration::from_hours(i64::from(policy.invitation_hours)),
            )
        };
        let mail = self.issue_link(ctx, tenant, individual, credential, purpose, kind, valid, now).await?;
        Ok(mail)
    }

    #[allow(clippy::too_many_arguments)]
    async fn issue_link(
        &self,
        ctx: &AuditContext,
        tenant: &Tenant,
        individual: &Individual,
        mut credential: LocalCredential,
        purpose: LinkPurpose,
        kind: MailKind,
        valid: jiff::SignedDuration,
        now: Timestamp,
    ) -> DomainResult<Mail> {
        let token = random_secret();
        let expires_at = now + valid;
        credential.link = Some(CredentialLink { hash: hash_token(&token), purpose, expires_at });
        credential.updated_at = now;
        let action = match purpose {
            LinkPurpose::Invitation => "invitation.issued",
            LinkPurpose::Reset => "password_reset.issued",
        };
        let audit = ctx.record(
            Some(tenant.id),
            "individual",
            individual.id.to_string(),
            action,
            None,
            Some(serde_json::json!({ "expires_at": expires_at })),
        );
        let mut values = self.values(tenant, individual);
        values.link = self.link_url(purpose, &token);
        let language = Self::language(tenant, individual);
        values.valid_for = words_for(valid, language);
        values.starts = individual.activation.clone().filter(|a| a.at > now);
        let body = self.settings.templates.render(kind, language, &values);
        let recipient = individual.email.clone().unwrap_or_default();
        let mail = Mail::new(tenant.id, individual.id, kind, &recipient, body, now);
        let queued = ctx.record(
            Some(tenant.id),
            "individual",
            individual.id.to_string(),
            "mail.queued",
            None,
            Some(serde_json::json!({ "mail": mail.id, "kind": kind.as_str(), "recipient": recipient })),
        );
        // The link and the mail that carries it in one transaction: a crash between them
        // would leave a link nobody was sent, and nothing would send it again.
        self.store.put_local_credential_and_mail(&credential, &audit, &mail, &queued).await?;
        Ok(mail)
    }

    /// Revokes the link still out, if any; returns whether there was one.
    pub async fn revoke(&self, ctx: &AuditContext, tenant: &Tenant, individual: IndividualId) -> DomainResult<bool> {
        let Some(mut credential) = self.store.get_local_credential(tenant.id, individual).await? else {
            return Ok(false);
        };
        let Some(link) = credential.link.take() else { return Ok(false) };
        credential.updated_at = self.now();
        let audit = ctx.record(
            Some(tenant.id),
            "individual",
            individual.to_string(),
            "link.revoked",
            Some(serde_json::json!({ "purpose": link.purpose.as_str(), "expires_at": link.expires_at })),
            None,
        );
        self.store.put_local_credential(&credential, Some(&audit)).await?;
        Ok(true)
    }

    /// A tenant's mails (one individual's), newest first.
    pub async fn mails(
        &self,
        tenant: &Tenant,
        individual: Option<IndividualId>,
        limit: u32,
    ) -> DomainResult<Vec<Mail>> {
        self.store.list_mails(tenant.id, individual, limit.clamp(1, 1000)).await
    }

    /// A reset asked for on the sign-in page: a link to every account with a password at
    /// this address. The page answers the same whether there is one or not.
    pub async fn request_reset(&self, email: &str) -> DomainResult<()> {
        let now = self.now();
        for credential in self.store.find_local_credentials(&email_key(email)).await? {
            if credential.password_hash.is_none() {
                continue;
            }
            let Some(tenant) = self.tenant(credential.tenant_id).await? else { continue };
            if !tenant.enabled || !tenant.policy.local_sign_in.allowed {
                continue;
            }
            let Some(individual) = self.store.get_individual(tenant.id, credential.individual_id).await? else {
                continue;
            };
            let ctx = own_context(individual.id);
            let valid = jiff::SignedDuration::from_mins(i64::from(tenant.policy.local_sign_in.reset_minutes));
            self.issue_link(
                &ctx,
                &tenant,
                &individual,
                credential,
                LinkPurpose::Reset,
                MailKind::PasswordReset,
                valid,
                now,
            )
            .await?;
        }
        Ok(())
    }

    async fn tenant(&self, id: TenantId) -> DomainResult<Option<Tenant>> {
        Ok(self.store.list_tenants().await?.into_iter().find(|t| t.id == id))
    }

    /// The link behind `token`, if it can still be used.
    pub async fn link(&self, token: &str) -> DomainResult<Option<LinkView>> {
        let now = self.now();
        let Some(credential) = self.store.find_local_link(&hash_token(token), now).await? else { return Ok(None) };
        let Some(link) = &credential.link else { return Ok(None) };
        let Some(tenant) = self.tenant(credential.tenant_id).await? else { return Ok(None) };
        let Some(individual) = self.store.get_individual(tenant.id, credential.individual_id).await? else {
            return Ok(None);
        };
        Ok(Some(LinkView { purpose: link.purpose, tenant, individual }))
    }

    /// Sets the password a link allows; the link is used up. The password is checked
    /// before the link is taken, so a refused password leaves the link usable.
    pub async fn set_password(&self, token: &str, password: &str) -> Result<Passed, SetPasswordError> {
        let view = self.link(token).await?.ok_or(SetPasswordError::Gone)?;
        let individual = &view.individual;
        let mut inputs: Vec<&str> =
            [individual.email.as_deref(), individual.given_name.as_deref(), individual.family_name.as_deref()]
                .into_iter()
                .flatten()
                .collect();
        inputs.push(&individual.login);
        if let Some(why) = self.settings.rules.refuse(password, &inputs) {
            return Err(SetPasswordError::Refused(why));
        }
        let hash = {
            let (cost, password) = (self.settings.cost, password.to_owned());
            tokio::task::spawn_blocking(move || secrets::hash_password(cost, &password))
                .await
                .map_err(|e| DomainError::Internal(e.to_string()))?
                .map_err(DomainError::Internal)?
        };
        let now = self.now();
        let mut credential =
            self.store.take_local_link(&hash_token(token), view.purpose, now).await?.ok_or(SetPasswordError::Gone)?;
        credential.password_hash = Some(hash);
        credential.password_set_at = Some(now);
        credential.failures = 0;
        credential.locked_until = None;
        credential.updated_at = now;
        if let Some(email) = &individual.email {
            credential.email_key = email_key(email);
        }
        let action = match view.purpose {
            LinkPurpose::Invitation => "password.set",
            LinkPurpose::Reset => "password.reset",
        };
        let audit = own_act(view.tenant.id, individual.id, action, None);
        self.store.put_local_credential(&credential, Some(&audit)).await?;
        let has_second_factor = credential.has_second_factor();
        let must_enrol = view.tenant.policy.local_sign_in.second_factor && !has_second_factor;
        Ok(Passed { tenant: view.tenant, individual: view.individual, has_second_factor, must_enrol })
    }

    fn throttled(&self, client: Option<IpAddr>, email: &str, now: Timestamp) -> Option<Timestamp> {
        let throttle = self.throttle.lock().expect("the throttle lock is never poisoned");
        let by_client = client.and_then(|c| Throttle::locked(&throttle.by_client, &c, now));
        let by_email = Throttle::locked(&throttle.by_unknown_email, &email.to_owned(), now);
        by_client.into_iter().chain(by_email).max()
    }

    fn count_client_failure(&self, client: Option<IpAddr>, unknown_email: Option<&str>, now: Timestamp) {
        let mut throttle = self.throttle.lock().expect("the throttle lock is never poisoned");
        if let Some(client) = client {
            Throttle::fail(&mut throttle.by_client, &client, now);
        }
        if let Some(email) = unknown_email {
            Throttle::fail(&mut throttle.by_unknown_email, &email.to_owned(), now);
        }
    }

    /// The password step of a local sign-in. The person's access (activation, expiry,
    /// role) is decided by the caller as for SSO (`may_log_in`).
    pub async fn check_password(
        &self,
        email: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Passed, LocalRefusal> {
        let now = self.now();
        let key = email_key(email);
        if let Some(until) = self.throttled(client, &key, now) {
            return Err(LocalRefusal::Locked(until));
        }
        if password.chars().count() > secrets::MAX_PASSWORD_CHARS {
            self.count_client_failure(client, None, now);
            return Err(LocalRefusal::Wrong);
        }
        let mut candidates = Vec::new();
        for credential in self.store.find_local_credentials(&key).await? {
            if credential.password_hash.is_none() {
                continue;
            }
            let Some(tenant) = self.tenant(credential.tenant_id).await? else { continue };
            if tenant.policy.local_sign_in.allowed {
                candidates.push((tenant, credential));
            }
        }
        if candidates.is_empty() {
            let (cost, password) = (self.settings.cost, password.to_owned());
            let _ = tokio::task::spawn_blocking(move || secrets::spend_a_verification(cost, &password)).await;
            self.count_client_failure(client, Some(&key), now);
            return Err(LocalRefusal::Wrong);
        }
        for (tenant, credential) in candidates {
            if let Some(until) = credential.locked(now) {
                return Err(LocalRefusal::Locked(until));
            }
            let stored = credential.password_hash.clone().unwrap_or_default();
            let typed = password.to_owned();
            let matches = tokio::task::spawn_blocking(move || secrets::verify_password(&stored, &typed))
                .await
                .map_err(|e| DomainError::Internal(e.to_string()))?;
            if !matches {
                self.account_failed(&tenant, credential.individual_id, now).await?;
                continue;
            }
            let Some(individual) = self.store.get_individual(tenant.id, credential.individual_id).await? else {
                continue;
            };
            self.store.reset_local_failures(tenant.id, individual.id).await?;
            let has_second_factor = credential.has_second_factor();
            let must_enrol = tenant.policy.local_sign_in.second_factor && !has_second_factor;
            return Ok(Passed { tenant, individual, has_second_factor, must_enrol });
        }
        self.count_client_failure(client, None, now);
        Err(LocalRefusal::Wrong)
    }

    async fn account_failed(&self, tenant: &Tenant, individual: IndividualId, now: Timestamp) -> DomainResult<()> {
        let failures = self.store.count_local_failure(tenant.id, individual, now).await?;
        if let Some(pause) = lockout(failures) {
            let until = now + pause;
            let details = serde_json::json!({ "failures": failures, "until": until });
            let audit = own_act(tenant.id, individual, "sign_in.locked", Some(details));
            tracing::info!(tenant = %tenant.slug, individual = %individual, failures, %until, "local account locked");
            self.store.lock_local_account(tenant.id, individual, until, &audit).await?;
        }
        Ok(())
    }

    /// Begins (or begins again) TOTP enrolment: a new secret, not asked for until a code
    /// from it is entered (`confirm_totp`).
    pub async fn begin_totp(&self, tenant: &Tenant, individual: &Individual) -> DomainResult<Enrolment> {
        let mut credential = self
            .store
            .get_local_credential(tenant.id, individual.id)
            .await?
            .ok_or_else(|| DomainError::Rejected("no local credential".into()))?;
        if credential.has_second_factor() {
            return Err(DomainError::Rejected("a second factor is already enrolled".into()));
        }
        let secret = secrets::new_totp_secret();
        let account = individual.email.clone().unwrap_or_else(|| individual.login.clone());
        let url = secrets::totp_url(&secret, &self.settings.operator_name, &account).map_err(DomainError::Internal)?;
        let qr_svg = secrets::qr_svg(&url).map_err(DomainError::Internal)?;
        credential.totp_secret = Some(crate::sealing::seal_text(self.settings.sealing.as_ref(), &secret)?);
        credential.totp_confirmed_at = None;
        credential.updated_at = self.now();
        self.store.put_local_credential(&credential, None).await?;
        Ok(Enrolment { secret, url, qr_svg })
    }

    /// A TOTP secret as stored (sealed, or from before there was a key) opened.
    fn totp_secret(&self, individual: IndividualId, stored: &str) -> DomainResult<String> {
        crate::sealing::open_text(self.settings.sealing.as_ref(), &format!("the TOTP secret of {individual}"), stored)
    }

    /// The secret of an enrolment begun and not finished (to show it again after a wrong code).
    pub async fn pending_totp_secret(&self, tenant: &Tenant, individual: &Individual) -> DomainResult<Option<String>> {
        let credential = self.store.get_local_credential(tenant.id, individual.id).await?;
        match credential.filter(|c| !c.has_second_factor()).and_then(|c| c.totp_secret) {
            Some(stored) => Ok(Some(self.totp_secret(individual.id, &stored)?)),
            None => Ok(None),
        }
    }

    /// The QR code of a secret, for the enrolment page.
    pub fn totp_qr(&self, secret: &str, individual: &Individual) -> Result<String, String> {
        let account = individual.email.clone().unwrap_or_else(|| individual.login.clone());
        secrets::qr_svg(&secrets::totp_url(secret, &self.settings.operator_name, &account)?)
    }

    /// Finishes enrolment with a code from the new secret; returns the recovery codes,
    /// shown this once.
    pub async fn confirm_totp(
        &self,
        tenant: &Tenant,
        individual: &Individual,
        code: &str,
    ) -> Result<Vec<String>, LocalRefusal> {
        let now = self.now();
        let mut credential =
            self.store.get_local_credential(tenant.id, individual.id).await?.ok_or(LocalRefusal::WrongCode)?;
        let stored = credential.totp_secret.clone().ok_or(LocalRefusal::WrongCode)?;
        let secret = self.totp_secret(individual.id, &stored)?;
        let step = secrets::check_totp(&secret, code, unix_seconds(now), credential.totp_last_step)
            .ok_or(LocalRefusal::WrongCode)?;
        let (codes, hashes) = secrets::recovery_codes();
        credential.totp_confirmed_at = Some(now);
        credential.totp_last_step = Some(step);
        credential.recovery_codes = hashes;
        credential.updated_at = now;
        let audit = own_act(tenant.id, individual.id, "second_factor.enrolled", None);
        self.store.put_local_credential(&credential, Some(&audit)).await?;
        Ok(codes)
    }

    /// Begins registering a passkey (offered beside TOTP on the enrolment page); `None`
    /// where passkeys are not offered.
    pub async fn begin_passkey(
        &self,
        tenant: &Tenant,
        individual: &Individual,
    ) -> DomainResult<Option<passkeys::Ceremony>> {
        let Some(rp) = &self.settings.passkeys else { return Ok(None) };
        let credential = self
            .store
            .get_local_credential(tenant.id, individual.id)
            .await?
            .ok_or_else(|| DomainError::Rejected("no local credential".into()))?;
        let existing: Vec<_> = credential.passkeys.iter().filter_map(passkeys::passkey_of).collect();
        let display = individual.display_name.clone().or_else(|| individual.given_name.clone());
        let display = display.unwrap_or_else(|| individual.login.clone());
        rp.begin_registration(individual.id.0, &individual.login, &display, &existing)
            .map(Some)
            .map_err(DomainError::Internal)
    }

    /// Finishes a passkey registration with the browser's answer. The first second factor
    /// comes with recovery codes, shown this once (empty when a factor was there before).
    pub async fn confirm_passkey(
        &self,
        tenant: &Tenant,
        individual: &Individual,
        state: &str,
        answer: &str,
    ) -> Result<Vec<String>, LocalRefusal> {
        let rp = self.settings.passkeys.as_ref().ok_or(LocalRefusal::WrongPasskey)?;
        let now = self.now();
        let mut credential =
            self.store.get_local_credential(tenant.id, individual.id).await?.ok_or(LocalRefusal::WrongPasskey)?;
        let passkey = rp.finish_registration(state, answer).map_err(|reason| {
            tracing::info!(tenant = %tenant.slug, individual = %individual.id, reason, "passkey registration refused");
            LocalRefusal::WrongPasskey
        })?;
        let first = !credential.has_second_factor();
        let codes = if first {
            let (codes, hashes) = secrets::recovery_codes();
            credential.recovery_codes = hashes;
            codes
        } else {
            Vec::new()
        };
        let credential_id = passkeys::credential_id(&passkey);
        credential.passkeys.push(idbridge_core::local_account::PasskeyRecord {
            credential_id: credential_id.clone(),
            created_at: now,
            last_used_at: None,
            key: serde_json::to_value(&passkey).map_err(|e| DomainError::Internal(e.to_string()))?,
        });
        credential.updated_at = now;
        let details = serde_json::json!({ "kind": "passkey", "credential_id": credential_id });
        let audit = own_act(tenant.id, individual.id, "second_factor.enrolled", Some(details));
        self.store.put_local_credential(&credential, Some(&audit)).await?;
        Ok(codes)
    }

    /// An assertion to ask for at the second step, when the person has passkeys and they
    /// are offered here.
    pub async fn begin_passkey_check(
        &self,
        tenant: &Tenant,
        individual: IndividualId,
    ) -> DomainResult<Option<passkeys::Ceremony>> {
        let Some(rp) = &self.settings.passkeys else { return Ok(None) };
        let Some(credential) = self.store.get_local_credential(tenant.id, individual).await? else { return Ok(None) };
        let keys: Vec<_> = credential.passkeys.iter().filter_map(passkeys::passkey_of).collect();
        if keys.is_empty() {
            return Ok(None);
        }
        rp.begin_assertion(&keys).map(Some).map_err(DomainError::Internal)
    }

    /// The second step with a passkey: the assertion is checked against the ceremony the
    /// page was given; its counter is kept. A refused assertion counts as a wrong code.
    pub async fn check_passkey(
        &self,
        tenant: &Tenant,
        individual: IndividualId,
        state: &str,
        answer: &str,
    ) -> Result<(), LocalRefusal> {
        let now = self.now();
        let rp = self.settings.passkeys.as_ref().ok_or(LocalRefusal::WrongPasskey)?;
        let mut credential =
            self.store.get_local_credential(tenant.id, individual).await?.ok_or(LocalRefusal::WrongPasskey)?;
        if let Some(until) = credential.locked(now) {
            return Err(LocalRefusal::Locked(until));
        }
        let result = match rp.finish_assertion(state, answer) {
            Ok(result) => result,
            Err(reason) => {
                tracing::info!(tenant = %tenant.slug, %individual, reason, "passkey assertion refused");
                self.account_failed(tenant, individual, now).await?;
                return Err(LocalRefusal::WrongPasskey);
            }
        };
        for record in &mut credential.passkeys {
            if let Some(mut passkey) = passkeys::passkey_of(record)
                && passkey.cred_id() == result.cred_id()
            {
                passkey.update_credential(&result);
                record.key = serde_json::to_value(&passkey).map_err(|e| DomainError::Internal(e.to_string()))?;
                record.last_used_at = Some(now);
            }
        }
        credential.failures = 0;
        credential.locked_until = None;
        credential.updated_at = now;
        self.store.put_local_credential(&credential, None).await?;
        Ok(())
    }

    /// The second step of a sign-in: a TOTP code, or one of the recovery codes (used up).
    pub async fn check_second_factor(
        &self,
        tenant: &Tenant,
        individual: IndividualId,
        code: &str,
    ) -> Result<(), LocalRefusal> {
        let now = self.now();
        let mut credential =
            self.store.get_local_credential(tenant.id, individual).await?.ok_or(LocalRefusal::WrongCode)?;
        if let Some(until) = credential.locked(now) {
            return Err(LocalRefusal::Locked(until));
        }
        let secret = match credential.totp_secret.as_deref().filter(|_| credential.has_totp()) {
            Some(stored) => Some(self.totp_secret(individual, stored)?),
            None => None,
        };
        if let Some(secret) = secret
            && let Some(step) = secrets::check_totp(&secret, code, unix_seconds(now), credential.totp_last_step)
        {
            credential.totp_last_step = Some(step);
            credential.failures = 0;
            credential.locked_until = None;
            credential.updated_at = now;
            self.store.put_local_credential(&credential, None).await?;
            return Ok(());
        }
        let hashed = secrets::hash_recovery_code(code);
        if let Some(position) = credential.recovery_codes.iter().position(|h| *h == hashed) {
            credential.recovery_codes.remove(position);
            credential.failures = 0;
            credential.locked_until = None;
            credential.updated_at = now;
            let details = serde_json::json!({ "left": credential.recovery_codes.len() });
            let audit = own_act(tenant.id, individual, "recovery_code.used", Some(details));
            self.store.put_local_credential(&credential, Some(&audit)).await?;
            return Ok(());
        }
        self.account_failed(tenant, individual, now).await?;
        Err(LocalRefusal::WrongCode)
    }
}

/// What the person did themselves, as the audit records it: they are the actor and the
/// subject.
fn own_act(
    tenant: TenantId,
    individual: IndividualId,
    action: &'static str,
    details: Option<serde_json::Value>,
) -> idbridge_core::audit::AuditRecord {
    own_context(individual).record(Some(tenant), "individual", individual.to_string(), action, None, details)
}

fn own_context(individual: IndividualId) -> AuditContext {
    AuditContext::new(idbridge_core::audit::Actor::new(
        idbridge_core::audit::ActorKind::Individual,
        individual.to_string(),
    ))
}

/// Whether a SCIM client or a directory stands behind the individual: such people sign in
/// through their organisation's IdP. One made by hand carries only its `manual` link.
pub fn has_directory(individual: &Individual) -> bool {
    individual.links.iter().any(|l| l.source != idbridge_core::individual::SourceKind::Manual)
}

fn unix_seconds(now: Timestamp) -> u64 {
    u64::try_from(now.as_second()).unwrap_or(0)
}

/// `72 hours` / `72 Stunden`, `30 minutes` / `30 Minuten`.
fn words_for(duration: jiff::SignedDuration, language: Language) -> String {
    let minutes = duration.as_mins();
    let (n, unit) = if minutes % 60 == 0 { (minutes / 60, 'h') } else { (minutes, 'm') };
    match (language, unit) {
        (Language::En, 'h') => format!("{n} hour{}", if n == 1 { "" } else { "s" }),
        (Language::En, _) => format!("{n} minute{}", if n == 1 { "" } else { "s" }),
        (Language::De, 'h') => format!("{n} Stunde{}", if n == 1 { "" } else { "n" }),
        (Language::De, _) => format!("{n} Minute{}", if n == 1 { "" } else { "n" }),
    }
}
