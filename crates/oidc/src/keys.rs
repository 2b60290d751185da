//! idbridge's token signing keys: generated and stored by idbridge (one RS256 and one
//! ES256 key live at a time), published in the JWKS, and rotated with overlap — a new
//! key is published `publish_ahead` before it signs, and a retired key stays published
//! for `keep_after` so that tokens it signed still verify.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use idbridge_core::audit::AuditContext;
use idbridge_core::ports::SsoStore;
use idbridge_core::sso::SigningKeyRecord;
use idbridge_core::{DomainError, DomainResult};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::jose::{self, Signer};

pub const ALGS: [&str; 2] = ["RS256", "ES256"];

#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    /// A key signs for this long before a successor is generated.
    pub rotate_after: SignedDuration,
    /// A successor is published this long before it starts signing (portals refresh
    /// their cached key sets in between).
    pub publish_ahead: SignedDuration,
    /// A retired key stays published this long (the longest token lifetime, and more).
    pub keep_after: SignedDuration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            rotate_after: SignedDuration::from_hours(24 * 90),
            publish_ahead: SignedDuration::from_hours(24),
            keep_after: SignedDuration::from_hours(24),
        }
    }
}

/// Private key material at rest: sealed with the operator's key-encryption key (see
/// `idbridge_app::sealing`); without one, plain base64.
pub use idbridge_app::sealing::KeyEncryption;
use idbridge_app::sealing::SEALED;

#[derive(Debug)]
struct LoadedKey {
    record: SigningKeyRecord,
    signer: Signer,
}

impl LoadedKey {
    fn signs(&self, alg: &str, now: Timestamp) -> bool {
        self.record.alg == alg && self.record.activates_at <= now && self.record.retires_at.is_none_or(|r| r > now)
    }
}

/// The keys, loaded from the store and refreshed from it (another instance may rotate).
#[derive(Clone)]
pub struct KeyRing {
    store: Arc<dyn SsoStore>,
    keys: Arc<RwLock<Arc<Vec<LoadedKey>>>>,
    pub policy: RotationPolicy,
    encryption: Option<KeyEncryption>,
    /// True while every algorithm has a key that signs: the daemon answers `/readyz`
    /// before a first start has generated its keys, and whatever signs waits for this.
    signing: Arc<tokio::sync::watch::Sender<bool>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

fn key_error(e: jose::JoseError) -> DomainError {
    DomainError::Internal(format!("signing key: {e}"))
}

impl KeyRing {
    pub fn new(store: Arc<dyn SsoStore>, policy: RotationPolicy) -> Self {
        Self {
            store,
            keys: Arc::new(RwLock::new(Arc::new(Vec::new()))),
            policy,
            encryption: None,
            signing: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Private keys are sealed with this key at rest (and must be opened with it).
    pub fn with_encryption(mut self, encryption: Option<KeyEncryption>) -> Self {
        self.encryption = encryption;
        self
    }

    /// Reloads the keys from the store.
    pub async fn reload(&self) -> DomainResult<()> {
        let records = self.store.list_signing_keys().await?;
        let mut loaded = Vec::with_capacity(records.len());
        for record in records {
            let der = match (record.private_pkcs8.starts_with(SEALED), &self.encryption) {
                (true, Some(encryption)) => {
                    encryption.open(&format!("signing key {}", record.kid), &record.private_pkcs8)?
                }
                (true, None) => {
                    return Err(DomainError::invalid(
                        "sso.key_encryption_key_file",
                        format!("signing key {} is sealed; set it to the key that sealed it", record.kid),
                    ));
                }
                (false, _) => STANDARD
                    .decode(&record.private_pkcs8)
                    .map_err(|e| DomainError::Storage(format!("signing key {}: {e}", record.kid)))?,
            };
            let signer = Signer::from_pkcs8(&der).map_err(key_error)?;
            loaded.push(LoadedKey { record, signer });
        }
        let now = idbridge_core::clock::now();
        let signs = ALGS.iter().all(|alg| loaded.iter().any(|k| k.signs(alg, now)));
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded);
        self.signing.send_replace(signs);
        Ok(())
    }

    /// Waits, at most `wait`, until every algorithm has a key that signs — on a first
    /// start the keys are generated after the port is bound.
    pub async fn wait_until_signing(&self, wait: std::time::Duration) -> DomainResult<()> {
        let mut signing = self.signing.subscribe();
        match tokio::time::timeout(wait, signing.wait_for(|s| *s)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(DomainError::Unavailable("the signing keys are still being generated; try again shortly".into())),
        }
    }

    /// Generates the first keys (or a due successor) in the background, retrying with
    /// back-off until it succeeds: a first start binds its port at once and signs
    /// nothing until the keys exist.
    pub fn ensure_in_background(&self, ctx: AuditContext) -> tokio::task::JoinHandle<()> {
        let ring = self.clone();
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_millis(200);
            loop {
                match ring.ensure(idbridge_core::clock::now(), &ctx).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "generating signing keys failed");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(std::time::Duration::from_secs(30));
                    }
                }
            }
        })
    }

    fn snapshot(&self) -> Arc<Vec<LoadedKey>> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Generates what is missing or due: a first key per algorithm (signing at once), and
    /// a successor for a key past `rotate_after`. Returns the new kids.
    pub async fn ensure(&self, now: Timestamp, ctx: &AuditContext) -> DomainResult<Vec<String>> {
        self.reload().await?;
        let mut created = Vec::new();
        for alg in ALGS {
            let keys = self.snapshot();
            let live: Vec<&LoadedKey> =
                keys.iter().filter(|k| k.record.alg == alg && k.record.retires_at.is_none_or(|r| r > now)).collect();
            let newest = live.iter().max_by_key(|k| k.record.activates_at);
            match newest {
                None => created.push(self.add(alg, now, now, ctx).await?),
                // A successor is already waiting.
                Some(k) if k.record.activates_at > now => {}
                Some(k) if now.duration_since(k.record.activates_at) >= self.policy.rotate_after => {
                    created.push(self.add(alg, now, now + self.policy.publish_ahead, ctx).await?);
                }
                Some(_) => {}
            }
        }
        if !created.is_empty() {
            self.reload().await?;
        }
        Ok(created)
    }

    /// Publishes a successor for every algorithm now; it signs after `publish_ahead`
    /// (`immediately`: at once, for a key believed compromised).
    pub async fn rotate(&self, now: Timestamp, immediately: bool, ctx: &AuditContext) -> DomainResult<Vec<String>> {
        self.reload().await?;
        let activates = if immediately { now } else { now + self.policy.publish_ahead };
        let mut created = Vec::new();
        for alg in ALGS {
            created.push(self.add(alg, now, activates, ctx).await?);
        }
        self.reload().await?;
        Ok(created)
    }

    async fn add(
        &self,
        alg: &str,
        now: Timestamp,
        activates_at: Timestamp,
        ctx: &AuditContext,
    ) -> DomainResult<String> {
        let alg_owned = alg.to_owned();
        // RSA generation takes a while; keep it off the async workers.
        let der = tokio::task::spawn_blocking(move || jose::generate_pkcs8(&alg_owned))
            .await
            .map_err(|e| DomainError::Internal(format!("key generation: {e}")))?
            .map_err(key_error)?;
        let signer = Signer::from_pkcs8(&der).map_err(key_error)?;
        let mut jwk = signer.public_jwk();
        let kid = jose::thumbprint(&jwk);
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg);
        jwk["use"] = json!("sig");
        let record = SigningKeyRecord {
            kid: kid.clone(),
            alg: alg.to_owned(),
            private_pkcs8: match &self.encryption {
                Some(encryption) => encryption.seal(&der)?,
                None => STANDARD.encode(&der),
            },
            public_jwk: jwk,
            created_at: now,
            activates_at,
            retires_at: None,
            removed_at: None,
        };
        let replaces: Vec<(String, Timestamp, Timestamp)> = self
            .snapshot()
            .iter()
            .filter(|k| k.record.alg == alg && k.record.retires_at.is_none())
            .map(|k| (k.record.kid.clone(), activates_at, activates_at + self.policy.keep_after))
            .collect();
        let audit = ctx.record(None, "signing_key", &kid, "signing_key.created", None, Some(json!({
            "kid": kid, "alg": alg, "activates_at": activates_at, "replaces": replaces.iter().map(|r| &r.0).collect::<Vec<_>>(),
        })));
        self.store.add_signing_key(&record, &replaces, &audit).await?;
        tracing::info!(kid, alg, %activates_at, "signing key created");
        Ok(kid)
    }

    /// The published key set: every key not yet removed, including successors that do
    /// not sign yet.
    pub fn jwks(&self, now: Timestamp) -> Value {
        let keys: Vec<Value> = self
            .snapshot()
            .iter()
            .filter(|k| k.record.removed_at.is_none_or(|r| r > now))
            .map(|k| k.record.public_jwk.clone())
            .collect();
        json!({ "keys": keys })
    }

    /// Signs `claims` with the current key of `alg`.
    pub fn sign(&self, alg: &str, typ: Option<&str>, claims: &Value, now: Timestamp) -> DomainResult<String> {
        let keys = self.snapshot();
        let key = keys.iter().filter(|k| k.signs(alg, now)).max_by_key(|k| k.record.activates_at).ok_or_else(|| {
            DomainError::Storage(format!("no {alg} signing key is active; is the daemon's key ring loaded?"))
        })?;
        key.signer.jws(Some(&key.record.kid), typ, claims).map_err(key_error)
    }

    /// The claims of a JWS that one of this ring's keys signed (any key not yet removed,
    /// so a token signed before a rotation still verifies); `None` for anything else —
    /// an unknown kid, another algorithm, `alg: none`, a bad signature. Expiry is the
    /// caller's to judge.
    pub fn verify(&self, token: &str, now: Timestamp) -> Option<Value> {
        let (header, claims, signing_input, signature) = jose::parse_jws(token)?;
        let (alg, kid) = (header["alg"].as_str()?, header["kid"].as_str()?);
        let keys = self.snapshot();
        let key = keys.iter().find(|k| k.record.kid == kid && k.record.removed_at.is_none_or(|r| r > now))?;
        key.signer.verifies(alg, signing_input.as_bytes(), &signature).then_some(claims)
    }

    /// Kids with their state, for `idbridge keys list`.
    pub fn describe(&self, now: Timestamp) -> Vec<Value> {
        self.snapshot()
            .iter()
            .map(|k| {
                let r = &k.record;
                let state = if r.removed_at.is_some_and(|t| t <= now) {
                    "removed"
                } else if r.retires_at.is_some_and(|t| t <= now) {
                    "retired (published)"
                } else if r.activates_at > now {
                    "published (not signing yet)"
                } else {
                    "signing"
                };
                json!({ "kid": r.kid, "alg": r.alg, "state": state, "created_at": r.created_at,
                        "activates_at": r.activates_at, "retires_at": r.retires_at, "removed_at": r.removed_at })
            })
            .collect()
    }
}

/// Generates and rotates signing keys, reloads them (another instance may rotate), and
/// purges expired codes, tokens and logins.
pub async fn run_maintenance(keys: KeyRing, sso: std::sync::Arc<dyn idbridge_core::ports::SsoStore>) {
    let ctx = idbridge_core::audit::AuditContext::new(idbridge_core::audit::Actor::new(
        idbridge_core::audit::ActorKind::Scheduler,
        "key-rotation",
    ));
    let mut tick = 0u64;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        tick += 1;
        if let Err(e) = keys.ensure(idbridge_core::clock::now(), &ctx).await {
            tracing::warn!(error = %e, "signing key maintenance failed");
        }
        if tick.is_multiple_of(10) {
            match sso.purge_sso(idbridge_core::clock::now()).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "expired sign-in records purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging sign-in records failed"),
            }
        }
    }
}
