//! `idbridge serve`: bind, serve, shut down gracefully.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use idbridge_store::SqlStore;

use crate::config::Settings;
use crate::http::{self, AppState};

/// The global receiver (every tenant without one of its own) and each tenant's receiver.
fn webhook_destinations(settings: &Settings) -> anyhow::Result<Vec<idbridge_app::delivery::Destination>> {
    let w = &settings.webhook;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(w.timeout_seconds.max(1))).build()?;
    let webhook = |url: &str, secret: String| idbridge_app::delivery::Webhook {
        url: url.to_owned(),
        secret,
        max_attempts: w.max_attempts,
        client: client.clone(),
    };
    let mut out = Vec::new();
    if !w.url.is_empty() {
        out.push(idbridge_app::delivery::Destination {
            consumer: "webhook".into(),
            audience: idbridge_app::delivery::Audience::AllExcept(w.tenants.keys().cloned().collect()),
            webhook: webhook(&w.url, w.secret()?),
        });
    }
    for (slug, tenant) in &w.tenants {
        out.push(idbridge_app::delivery::Destination {
            consumer: format!("webhook:{slug}"),
            audience: idbridge_app::delivery::Audience::Tenant(idbridge_core::tenant::TenantSlug::parse(slug)?),
            webhook: webhook(&tenant.url, tenant.secret(slug)?),
        });
    }
    Ok(out)
}

/// The OpenID provider: its keys (generated on first start), upstream clients and
/// login resolution.
pub async fn sso_state(
    settings: &Settings,
    state: &AppState,
    store: &SqlStore,
) -> anyhow::Result<idbridge_oidc::SsoState> {
    let sso_store: Arc<dyn idbridge_core::ports::SsoStore> = Arc::new(store.clone());
    let s = &settings.sso;
    let keys = idbridge_oidc::keys::KeyRing::new(sso_store.clone(), s.rotation()).with_encryption(s.key_encryption()?);
    let ctx = idbridge_core::audit::AuditContext::new(idbridge_core::audit::Actor::new(
        idbridge_core::audit::ActorKind::Scheduler,
        "key-rotation",
    ));
    // Stored keys are loaded (and a wrong key-encryption key refused) before the port is
    // bound; generating the first keys of a fresh start (RSA takes a while) is not.
    keys.reload().await.context("signing keys")?;
    keys.ensure_in_background(ctx);
    let mut provider = idbridge_oidc::ProviderSettings::new(&settings.server.public_url);
    provider.branding.operator_name.clone_from(&s.operator_name);
    provider.branding.logo_url = (!s.logo_url.is_empty()).then(|| s.logo_url.clone());
    provider.code_ttl = jiff::SignedDuration::from_secs(s.code_seconds);
    provider.id_token_ttl = jiff::SignedDuration::from_secs(s.id_token_seconds);
    provider.access_token_ttl = jiff::SignedDuration::from_secs(s.access_token_seconds);
    provider.refresh_token_ttl = jiff::SignedDuration::from_secs(s.refresh_token_seconds);
    provider.session_ttl = jiff::SignedDuration::from_secs(s.session_seconds);
    let mut notifier = idbridge_oidc::backchannel::Notifier::new(
        sso_store.clone(),
        keys.clone(),
        &provider.issuer,
        Duration::from_secs(s.http_timeout_seconds.max(1)),
    );
    notifier.retry_for = jiff::SignedDuration::from_hours(s.backchannel_retry_hours);
    notifier.max_interval = jiff::SignedDuration::from_secs(s.backchannel_max_interval_seconds);
    let local = idbridge_app::local_accounts::LocalAccounts::new(Arc::new(store.clone()), settings.local_settings()?);
    Ok(idbridge_oidc::SsoState {
        local: Some(local),
        config: idbridge_oidc::cache::ConfigCache::new(
            state.operator.clone(),
            sso_store.clone(),
            Duration::from_secs(2),
        ),
        tokens: idbridge_oidc::batch::TokenWriter::start(sso_store.clone()),
        store: sso_store,
        operator: state.operator.clone(),
        keys,
        upstreams: idbridge_oidc::upstream::Upstreams::new(Duration::from_secs(s.http_timeout_seconds.max(1))),
        accounts: Arc::new(idbridge_app::sign_in::SsoAccounts { reconciliation: state.reconciliation.clone() }),
        settings: Arc::new(provider),
        logout: notifier,
    })
}

pub async fn serve(settings: Settings, config_path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    // Everything that can fail on configuration fails before the port is bound.
    let admin_token_hashes = settings.admin_token_hashes()?;
    let services = crate::app::Services::connect(&settings).await?;
    let metrics = crate::telemetry::install_metrics();
    // The daemon loads its plugins at start: a broken one stops it before the port is bound.
    let mut reconciliation = services.reconciliation()?.clone();
    let (store, operator) = (services.store.clone(), services.operator.clone());
    let mapping = reconciliation.mapping.clone();
    let plugins = mapping.plugins.clone();
    if admin_token_hashes.is_empty() {
        tracing::info!("no operator tokens configured: the admin API answers 401 to everyone");
    }
    // Shutdown reaches directory runs too: they end as cancelled, releasing their leases.
    let (stop_runs, stopping) = idbridge_app::stopping::Stopping::new();
    reconciliation.stopping = stopping;
    let state = AppState {
        reconciliation: reconciliation.clone(),
        operator,
        admin_token_hashes: Arc::new(admin_token_hashes),
        portal_token_hashes: Arc::new(settings.portal_token_hashes()?),
        metrics,
        scim_auth_cache: None,
        mapping,
        known_mappers: Arc::new(settings.known_mappers()),
        config_path: config_path.clone(),
        sso: None,
        intent_queue: idbridge_app::intent_worker::QueueView::default(),
    };
    #[cfg(unix)]
    {
        // SIGHUP re-creates plugin instances with the config file's current settings.
        let plugins = plugins.clone();
        let config_path = config_path.clone();
        if let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    if let Err(e) = crate::app::reload_plugins(&plugins, config_path.as_deref()) {
                        tracing::error!(error = %e, "plugin reload on SIGHUP failed; the previous plugins stay");
                    }
                }
            });
        }
    }
    let instance = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    for destination in webhook_destinations(&settings)? {
        tracing::info!(consumer = destination.consumer, url = destination.webhook.url, "delivering change events");
        tokio::spawn(idbridge_app::delivery::run(services.ports.store.clone(), destination, instance.clone()));
    }
    tokio::spawn(idbridge_app::connectors::supervise(
        services.ports.store.clone(),
        instance.clone(),
        reconciliation.stopping.clone(),
    ));
    tokio::spawn(idbridge_app::intent_worker::run(reconciliation.clone()));
    tokio::spawn(idbridge_app::intent_worker::publish_stats(reconciliation.clone(), state.intent_queue.clone()));
    let runs = idbridge_app::directory_sync::RunsInFlight::default();
    tokio::spawn(idbridge_app::directory_sync::run_schedules(reconciliation.clone(), runs.clone()));
    tokio::spawn(idbridge_app::sweep::run(
        reconciliation.clone(),
        Duration::from_secs(settings.lifecycle.sweep_seconds),
        instance.clone(),
    ));
    tokio::spawn(idbridge_app::scheduler::run(
        reconciliation.scheduler(),
        Duration::from_secs(settings.lifecycle.tick_seconds),
    ));
    let scim = idbridge_scim::ScimState::new(
        state.operator.clone(),
        Arc::new(store.clone()),
        Arc::new(reconciliation),
        &settings.server.public_url,
        idbridge_scim::ScimLimits {
            max_body_bytes: settings.server.max_body_bytes,
            bulk_max_operations: settings.scim.bulk_max_operations,
            default_page_size: settings.scim.default_page_size,
            max_page_size: settings.scim.max_page_size,
            auth_cache_ttl: Duration::from_secs(settings.scim.auth_cache_seconds),
        },
    );
    let sso = sso_state(&settings, &state, &store).await?;
    tokio::spawn(idbridge_oidc::keys::run_maintenance(sso.keys.clone(), sso.store.clone()));
    tokio::spawn(sso.logout.clone().run());
    tokio::spawn(sso.logout.clone().publish_stats());
    tokio::spawn(idbridge_app::sign_in::run_logout_consumer(
        state.operator.clone(),
        services.ports.store.clone(),
        sso.store.clone(),
        Arc::new(sso.logout.clone()),
        instance.clone(),
    ));
    if let Some(local) = &sso.local {
        tokio::spawn(idbridge_app::local_accounts::notices::run(
            local.clone(),
            services.ports.store.clone(),
            instance.clone(),
        ));
        match settings.local_sign_in.smtp()? {
            Some(smtp) => {
                let mailer = idbridge_app::local_accounts::smtp::Mailer::new(&smtp).map_err(anyhow::Error::msg)?;
                tracing::info!(host = smtp.host, port = smtp.port, "sending mails");
                tokio::spawn(idbridge_app::local_accounts::smtp::run(services.ports.store.clone(), mailer));
            }
            None => tracing::info!("no SMTP server configured: mails wait in the outbox"),
        }
    }
    let state = AppState { scim_auth_cache: Some(scim.auth_cache.clone()), sso: Some(sso.clone()), ..state };
    let app = http::router(state, scim, idbridge_oidc::router(sso), &settings.server);
    let listener = tokio::net::TcpListener::bind(settings.server.listen)
        .await
        .with_context(|| format!("server.listen: cannot bind {}", settings.server.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, database = %idbridge_store::redact_url(&settings.database_url()?), "idbridge serving");
    // Tests start the daemon on port 0 and read the chosen port from this line.
    println!("listening on http://{local}");

    let grace = Duration::from_secs(settings.server.shutdown_grace_seconds);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = crate::listener::serve(listener, app, settings.server.limits(), async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        stop_runs.stop();
        let _ = stop_tx.send(true);
    });
    let mut stop_rx = stop_rx;
    let forced = async move {
        let _ = stop_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result.context("HTTP server failed")?,
        () = forced => tracing::warn!("shutdown grace period over; dropping remaining connections"),
    }
    // Scheduled directory runs record themselves as cancelled and release their leases.
    runs.wait_until_none(grace).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    idbridge_app::stopping::signal().await;
}
