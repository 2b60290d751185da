//! Daemon configuration: embedded `config/default.toml` → `--config FILE` → `IDBRIDGE_`
//! environment (`__` between levels) → `*_file` secrets. Errors name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use idbridge_core::catalog::{Catalog, CatalogEntry, CatalogKind};
use idbridge_core::token::hash_token;
use serde::Deserialize;

/// The reference configuration; also the defaults.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub plugins: Vec<idbridge_plugin_host::PluginSpec>,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub log: LogSettings,
    pub admin: AdminSettings,
    pub portal: AdminSettings,
    pub scim: ScimSettings,
    pub lifecycle: LifecycleSettings,
    pub webhook: WebhookSettings,
    pub catalog: CatalogSettings,
    pub sso: SsoSettings,
    pub local_sign_in: LocalSignInSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSignInSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub min_password_length: usize,
    pub templates_dir: String,
    pub passkeys: bool,
    pub smtp: SmtpSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: String,
    pub username: String,
    pub password_file: String,
    pub password_env: String,
    pub from: String,
    pub timeout_seconds: u64,
    pub max_attempts: u32,
}

impl Settings {
    /// What local accounts need: links point at `server.public_url`, mails carry the
    /// operator's name and logo from `[sso]`.
    pub fn local_settings(&self) -> Result<idbridge_app::local_accounts::LocalSettings, ConfigError> {
        let l = &self.local_sign_in;
        Ok(idbridge_app::local_accounts::LocalSettings {
            public_url: self.server.public_url.trim_end_matches('/').to_owned(),
            operator_name: self.sso.operator_name.clone(),
            logo_url: (!self.sso.logo_url.is_empty()).then(|| self.sso.logo_url.clone()),
            cost: l.cost(),
            rules: idbridge_app::local_accounts::secrets::PasswordRules { min_length: l.min_password_length },
            templates: l.templates()?,
            sealing: self.sso.key_encryption()?,
            passkeys: if l.passkeys {
                idbridge_app::local_accounts::passkeys::Relying::for_public_url(
                    &self.server.public_url,
                    &self.sso.operator_name,
                )
                .map_err(|e| invalid("server.public_url", e))?
            } else {
                None
            },
        })
    }
}

impl LocalSignInSettings {
    pub fn cost(&self) -> idbridge_app::local_accounts::secrets::HashCost {
        idbridge_app::local_accounts::secrets::HashCost {
            memory_kib: self.memory_kib,
            iterations: self.iterations,
            parallelism: self.parallelism,
        }
    }

    pub fn templates(&self) -> Result<idbridge_app::local_accounts::mail::Templates, ConfigError> {
        if self.templates_dir.is_empty() {
            return Ok(idbridge_app::local_accounts::mail::Templates::built_in());
        }
        idbridge_app::local_accounts::mail::Templates::from_dir(Path::new(&self.templates_dir))
            .map_err(|e| invalid("local_sign_in.templates_dir", e))
    }

    /// The SMTP server, when one is set.
    pub fn smtp(&self) -> Result<Option<idbridge_app::local_accounts::smtp::SmtpSettings>, ConfigError> {
        let m = &self.smtp;
        if m.host.is_empty() {
            return Ok(None);
        }
        let security = idbridge_app::local_accounts::smtp::SmtpSecurity::parse(&m.security)
            .ok_or_else(|| invalid("local_sign_in.smtp.security", "must be starttls, tls or none"))?;
        let password =
            idbridge_core::secret::read_referenced(Some(&m.password_file), Some(&m.password_env)).map_err(|e| {
                let (suffix, reason) = e.describe();
                invalid(format!("local_sign_in.smtp.password{suffix}"), reason)
            })?;
        Ok(Some(idbridge_app::local_accounts::smtp::SmtpSettings {
            host: m.host.clone(),
            port: m.port,
            security,
            username: (!m.username.is_empty()).then(|| m.username.clone()),
            password,
            from: m.from.clone(),
            timeout: Duration::from_secs(m.timeout_seconds.clamp(1, 600)),
            max_attempts: m.max_attempts.max(1),
        }))
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: String,
    pub secret_file: String,
    pub max_attempts: u32,
    pub timeout_seconds: u64,
    /// Tenants with a receiver of their own (by slug); their events go there instead of
    /// to `url`.
    #[serde(default)]
    pub tenants: std::collections::BTreeMap<String, TenantWebhookSettings>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantWebhookSettings {
    pub url: String,
    #[serde(default)]
    pub secret: String,
    #[serde(default)]
    pub secret_file: String,
}

impl TenantWebhookSettings {
    pub fn secret(&self, slug: &str) -> Result<String, ConfigError> {
        read_file_or(&self.secret, &self.secret_file, &format!("webhook.tenants.{slug}.secret_file"))
    }
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("secret", &"***")
            .field("tenants", &self.tenants.iter().map(|(k, v)| (k, &v.url)).collect::<Vec<_>>())
            .finish()
    }
}

impl WebhookSettings {
    /// The signing secret, from `secret_file` when set.
    pub fn secret(&self) -> Result<String, ConfigError> {
        read_file_or(&self.secret, &self.secret_file, "webhook.secret_file")
    }
}

/// A value given inline, or (for secrets, preferred) by a `*_file` setting.
fn read_file_or(inline: &str, file: &str, setting: &str) -> Result<String, ConfigError> {
    match idbridge_core::secret::read_referenced(Some(file), None) {
        Ok(Some(secret)) => Ok(secret),
        Ok(None) => Ok(inline.to_owned()),
        Err(e) => Err(invalid(setting, e.describe().1)),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoSettings {
    pub operator_name: String,
    pub logo_url: String,
    pub code_seconds: i64,
    pub id_token_seconds: i64,
    pub access_token_seconds: i64,
    pub refresh_token_seconds: i64,
    pub session_seconds: i64,
    pub rotate_days: i64,
    pub publish_ahead_hours: i64,
    pub keep_hours: i64,
    pub http_timeout_seconds: u64,
    pub key_encryption_key_file: String,
    /// How long a back-channel logout a portal does not accept is retried.
    pub backchannel_retry_hours: i64,
    /// The longest wait between two attempts at one back-channel logout.
    pub backchannel_max_interval_seconds: i64,
}

impl SsoSettings {
    /// The key signing keys are sealed with, when configured.
    pub fn key_encryption(&self) -> Result<Option<idbridge_oidc::keys::KeyEncryption>, ConfigError> {
        if self.key_encryption_key_file.is_empty() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&self.key_encryption_key_file).map_err(|e| {
            invalid("sso.key_encryption_key_file", format!("cannot read {}: {e}", self.key_encryption_key_file))
        })?;
        idbridge_oidc::keys::KeyEncryption::from_text(&text)
            .map(Some)
            .map_err(|e| invalid("sso.key_encryption_key_file", e))
    }

    pub fn rotation(&self) -> idbridge_oidc::keys::RotationPolicy {
        idbridge_oidc::keys::RotationPolicy {
            rotate_after: jiff::SignedDuration::from_hours(self.rotate_days * 24),
            publish_ahead: jiff::SignedDuration::from_hours(self.publish_ahead_hours),
            keep_after: jiff::SignedDuration::from_hours(self.keep_hours),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSettings {
    pub tick_seconds: u64,
    pub sweep_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimSettings {
    pub auth_cache_seconds: u64,
    pub bulk_max_operations: usize,
    pub default_page_size: u32,
    pub max_page_size: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub public_url: String,
    pub max_body_bytes: usize,
    pub shutdown_grace_seconds: u64,
    pub header_read_timeout_seconds: u64,
    pub body_read_timeout_seconds: u64,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub http2_max_concurrent_streams: u32,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
}

impl ServerSettings {
    /// `trusted_proxies` as networks; the first entry that is neither is named.
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let entry = entry.trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("trusted_proxies[{i}]: {entry:?} is not an IP address or CIDR block"))
            })
            .collect()
    }

    pub fn limits(&self) -> crate::listener::Limits {
        crate::listener::Limits {
            trusted_proxies: std::sync::Arc::new(self.trusted_proxies().unwrap_or_default()),
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_seconds.max(1)),
            max_connections: self.max_connections.max(1),
            max_header_bytes: self.max_header_bytes,
            http2_max_concurrent_streams: self.http2_max_concurrent_streams.max(1),
        }
    }

    pub fn body_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.body_read_timeout_seconds.max(1))
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub url_file: String,
    pub max_connections: u32,
    pub connect_timeout_seconds: u64,
    /// PostgreSQL: a statement running longer is cancelled (0: no limit).
    pub statement_timeout_seconds: u64,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &idbridge_store::redact_url(&self.url))
            .field("url_file", &self.url_file)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub token_hashes: Vec<String>,
    pub token_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSettings {
    pub sections: Vec<CatalogItem>,
    pub flags: Vec<CatalogItem>,
    pub group_rights: Vec<CatalogItem>,
}

impl CatalogSettings {
    /// Each item with its kind and the key it was written under.
    fn entries(&self) -> impl Iterator<Item = (&'static str, CatalogEntry)> + '_ {
        [
            (CatalogKind::Section, "catalog.sections", &self.sections),
            (CatalogKind::Flag, "catalog.flags", &self.flags),
            (CatalogKind::GroupRight, "catalog.group_rights", &self.group_rights),
        ]
        .into_iter()
        .flat_map(|(kind, key, items)| {
            items
                .iter()
                .map(move |i| (key, CatalogEntry { kind, name: i.name.clone(), description: i.description.clone() }))
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogItem {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// A configuration problem, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Figment(String),
    #[error("configuration: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), reason: reason.into() }
}

/// The layered sources, without extraction (tests pin precedence on this).
pub fn figment(file: Option<&Path>) -> Figment {
    let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
    if let Some(file) = file {
        figment = figment.merge(Toml::file_exact(file));
    }
    // Only nested keys are settings (every setting lives in a section), so unrelated
    // variables that happen to start with IDBRIDGE_ (IDBRIDGE_TEST_…) are not mistaken
    // for unknown settings.
    figment.merge(Env::prefixed("IDBRIDGE_").filter(|key| key.as_str().contains("__")).split("__"))
}

impl Settings {
    /// Loads and validates everything a start needs, before any port is bound.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        if let Some(file) = file
            && !file.is_file()
        {
            return Err(invalid("--config", format!("{} does not exist or is not a file", file.display())));
        }
        let settings: Settings = figment(file).extract().map_err(|e| ConfigError::Figment(describe_figment(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database_url()?;
        idbridge_store::Backend::from_url(&url).map_err(|e| invalid("database.url", e.to_string()))?;
        if !(self.server.public_url.starts_with("http://") || self.server.public_url.starts_with("https://")) {
            return Err(invalid("server.public_url", "must start with http:// or https://"));
        }
        let s = &self.sso;
        for (key, value, max) in [
            ("sso.code_seconds", s.code_seconds, 600),
            ("sso.id_token_seconds", s.id_token_seconds, 86_400),
            ("sso.access_token_seconds", s.access_token_seconds, 86_400),
            ("sso.refresh_token_seconds", s.refresh_token_seconds, 86_400 * 365),
            ("sso.session_seconds", s.session_seconds, 86_400 * 30),
            ("sso.rotate_days", s.rotate_days, 3650),
            ("sso.publish_ahead_hours", s.publish_ahead_hours, 24 * 30),
            ("sso.keep_hours", s.keep_hours, 24 * 30),
        ] {
            if !(1..=max).contains(&value) {
                return Err(invalid(key, format!("must be 1-{max}")));
            }
        }
        if s.keep_hours * 3600 < s.id_token_seconds.max(s.access_token_seconds) {
            return Err(invalid("sso.keep_hours", "must cover the ID and access token lifetimes"));
        }
        s.key_encryption()?;
        let l = &self.local_sign_in;
        l.cost().validate().map_err(|e| invalid("local_sign_in.memory_kib", e))?;
        if !(8..=128).contains(&l.min_password_length) {
            return Err(invalid("local_sign_in.min_password_length", "must be 8-128"));
        }
        l.templates()?;
        if let Some(smtp) = l.smtp()? {
            idbridge_app::local_accounts::smtp::Mailer::new(&smtp).map_err(|e| invalid("local_sign_in.smtp", e))?;
        }
        self.server.trusted_proxies().map_err(|e| invalid("server.trusted_proxies", e))?;
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        if self.scim.max_page_size == 0 || self.scim.default_page_size > self.scim.max_page_size {
            return Err(invalid(
                "scim.default_page_size",
                "must be at most scim.max_page_size, which must be at least 1",
            ));
        }
        if !self.webhook.url.is_empty() {
            if !(self.webhook.url.starts_with("http://") || self.webhook.url.starts_with("https://")) {
                return Err(invalid("webhook.url", "must start with http:// or https://"));
            }
            if self.webhook.secret()?.len() < 16 {
                return Err(invalid("webhook.secret", "must be at least 16 characters (or give webhook.secret_file)"));
            }
        }
        if self.webhook.max_attempts == 0 {
            return Err(invalid("webhook.max_attempts", "must be at least 1"));
        }
        if !(1..=720).contains(&self.sso.backchannel_retry_hours) {
            return Err(invalid("sso.backchannel_retry_hours", "must be 1-720 (a month)"));
        }
        if !(1..=3600).contains(&self.sso.backchannel_max_interval_seconds) {
            return Err(invalid("sso.backchannel_max_interval_seconds", "must be 1-3600 (an hour)"));
        }
        for (slug, tenant) in &self.webhook.tenants {
            idbridge_core::tenant::TenantSlug::parse(slug)
                .map_err(|e| invalid(format!("webhook.tenants.{slug}"), e.to_string()))?;
            if !(tenant.url.starts_with("http://") || tenant.url.starts_with("https://")) {
                return Err(invalid(format!("webhook.tenants.{slug}.url"), "must start with http:// or https://"));
            }
            if tenant.secret(slug)?.len() < 16 {
                return Err(invalid(
                    format!("webhook.tenants.{slug}.secret"),
                    "must be at least 16 characters (or give secret_file)",
                ));
            }
        }
        if self.lifecycle.tick_seconds == 0 || self.lifecycle.tick_seconds > 3600 {
            return Err(invalid("lifecycle.tick_seconds", "must be 1-3600"));
        }
        if self.scim.bulk_max_operations == 0 {
            return Err(invalid("scim.bulk_max_operations", "must be at least 1"));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", format!("{:?} is not a tracing filter: {e}", self.log.level)))?;
        for (i, hash) in self.admin.token_hashes.iter().enumerate() {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    format!("admin.token_hashes[{i}]"),
                    "must be 64 hex digits (SHA-256); see `idbridge admin-token create`",
                ));
            }
        }
        self.admin_token_hashes()?;
        let mut ids = std::collections::BTreeSet::new();
        for (i, plugin) in self.plugins.iter().enumerate() {
            if plugin.id == "rules" || plugin.id.is_empty() || !ids.insert(plugin.id.as_str()) {
                return Err(invalid(
                    format!("plugins[{i}].id"),
                    format!("{:?} must be unique, non-empty and not \"rules\"", plugin.id),
                ));
            }
        }
        for (key, entry) in self.catalog.entries() {
            entry.validate().map_err(|e| invalid(key, e.to_string()))?;
        }
        Ok(())
    }

    /// The database URL, from `database.url_file` when set.
    pub fn database_url(&self) -> Result<String, ConfigError> {
        read_file_or(&self.database.url, &self.database.url_file, "database.url_file")
    }

    pub fn store_options(&self) -> Result<idbridge_store::StoreOptions, ConfigError> {
        Ok(idbridge_store::StoreOptions {
            url: self.database_url()?,
            max_connections: self.database.max_connections,
            connect_timeout: Duration::from_secs(self.database.connect_timeout_seconds.max(1)),
            statement_timeout: Duration::from_secs(self.database.statement_timeout_seconds),
        })
    }

    /// Every accepted operator-token hash (config hashes plus hashed token files).
    pub fn admin_token_hashes(&self) -> Result<Vec<String>, ConfigError> {
        token_hashes("admin", &self.admin)
    }

    /// Every accepted portal service-token hash.
    pub fn portal_token_hashes(&self) -> Result<Vec<String>, ConfigError> {
        token_hashes("portal", &self.portal)
    }
}

fn token_hashes(section: &str, settings: &AdminSettings) -> Result<Vec<String>, ConfigError> {
    let mut hashes: Vec<String> = settings.token_hashes.iter().map(|h| h.to_ascii_lowercase()).collect();
    for (i, path) in settings.token_files.iter().enumerate() {
        let key = format!("{section}.token_files[{i}]");
        let token = idbridge_core::secret::read_referenced(Some(&path.display().to_string()), None)
            .map_err(|e| invalid(&key, e.describe().1))?
            .unwrap_or_default();
        let token = token.trim();
        if token.len() < 16 {
            return Err(invalid(&key, format!("{} holds fewer than 16 characters", path.display())));
        }
        hashes.push(hash_token(token));
    }
    Ok(hashes)
}

impl Settings {
    /// Mapper ids tenants may name: `rules` and every configured plugin.
    pub fn known_mappers(&self) -> std::collections::BTreeSet<String> {
        std::iter::once("rules".to_owned()).chain(self.plugins.iter().map(|p| p.id.clone())).collect()
    }

    /// Built-in catalog plus `[catalog]`.
    pub fn catalog(&self) -> Catalog {
        let mut catalog = Catalog::builtin();
        let entries: Vec<CatalogEntry> = self.catalog.entries().map(|(_, entry)| entry).collect();
        catalog.extend(&entries);
        catalog
    }
}

/// figment's message plus where the value came from, on one line.
fn describe_figment(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() { String::new() } else { format!("key `{}`: ", e.path.join(".")) };
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(source) => format!(" (in {} {source})", m.name),
                    None => format!(" (from {})", m.name),
                })
                .unwrap_or_default();
            // TOML parse errors draw a multi-line caret diagram; keep one line.
            let kind = e.kind.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
            format!("{key}{kind}{source}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_listen_on_loopback_with_sqlite_in_the_working_directory() {
        Jail::expect_with(|_| {
            let s = Settings::load(None).unwrap();
            assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(s.database.url, "sqlite://idbridge.db");
            assert_eq!(s.log.format, LogFormat::Text);
            Ok(())
        });
    }

    #[test]
    fn file_overrides_defaults_and_environment_overrides_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[server]\nlisten = \"127.0.0.1:9000\"\n[database]\nurl = \"sqlite://a.db\"\n")?;
            jail.set_env("IDBRIDGE_DATABASE__URL", "sqlite://b.db");
            jail.set_env("IDBRIDGE_TEST_SOMETHING", "ignored: not a nested key");
            let s = Settings::load(Some(Path::new("c.toml"))).unwrap();
            assert_eq!(s.server.listen.port(), 9000);
            assert_eq!(s.database.url, "sqlite://b.db");
            Ok(())
        });
    }

    #[test]
    fn the_catalog_is_extended_with_group_rights_from_config() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[catalog]\ngroup_rights = [{ name = \"wallboard\", description = \"Wallboard of the group\" }]\n",
            )?;
            let catalog = Settings::load(Some(Path::new("c.toml"))).unwrap().catalog();
            assert!(catalog.has_group_right("wallboard") && catalog.has_group_right("co_monitoring"));
            jail.create_file("d.toml", "[catalog]\ngroup_rights = [{ name = \"Wall Board\" }]\n")?;
            let err = Settings::load(Some(Path::new("d.toml"))).unwrap_err().to_string();
            assert!(err.contains("catalog.group_rights"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[server]\nlisten_adress = \"127.0.0.1:9000\"\n")?;
            let err = Settings::load(Some(Path::new("c.toml"))).unwrap_err().to_string();
            assert!(err.contains("listen_adress"), "{err}");
            jail.set_env("IDBRIDGE_DATABSE__URL", "x");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("databse"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_their_key() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[database]\nurl = \"mysql://x\"\n")?;
            let err = Settings::load(Some(Path::new("c.toml"))).unwrap_err().to_string();
            assert!(err.contains("database.url"), "{err}");
            jail.create_file("d.toml", "[server]\nlisten = \"nowhere\"\n")?;
            let err = Settings::load(Some(Path::new("d.toml"))).unwrap_err().to_string();
            assert!(err.contains("server.listen"), "{err}");
            jail.create_file("p.toml", "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.example\"]\n")?;
            let err = Settings::load(Some(Path::new("p.toml"))).unwrap_err().to_string();
            assert!(err.contains("server.trusted_proxies") && err.contains("trusted_proxies[1]"), "{err}");
            jail.create_file("e.toml", "[admin]\ntoken_hashes = [\"abc\"]\n")?;
            let err = Settings::load(Some(Path::new("e.toml"))).unwrap_err().to_string();
            assert!(err.contains("admin.token_hashes[0]"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn secrets_come_from_files() {
        Jail::expect_with(|jail| {
            jail.create_file("db-url", "sqlite://from-file.db\n")?;
            jail.create_file("admin-token", "idb_admin_0123456789ab_secretsecret\n")?;
            jail.set_env("IDBRIDGE_DATABASE__URL_FILE", "db-url");
            jail.set_env("IDBRIDGE_ADMIN__TOKEN_FILES", "[\"admin-token\"]");
            let s = Settings::load(None).unwrap();
            assert_eq!(s.database_url().unwrap(), "sqlite://from-file.db");
            assert_eq!(s.admin_token_hashes().unwrap(), vec![hash_token("idb_admin_0123456789ab_secretsecret")]);
            Ok(())
        });
    }

    #[test]
    fn malformed_file_is_reported_with_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[server\n")?;
            let err = Settings::load(Some(Path::new("c.toml"))).unwrap_err().to_string();
            assert!(err.contains("c.toml"), "{err}");
            Ok(())
        });
    }
}
