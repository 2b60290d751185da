//! The operator admin API, `/admin/v1`: JSON in and out, operator bearer tokens.

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use idbridge_core::audit::{Actor, ActorKind, AuditContext, AuditQuery};
use idbridge_core::tenant::{TenantSettings, TenantSlug};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::{ApiError, ApiResult};
use super::query::{AdminQuery, IndividualParams, slug};
use super::state::{AppState, REQUEST_ID, bearer_match};
use crate::apply_file::ApplyDocument;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tenants", get(list_tenants).post(create_tenant))
        .route("/tenants/{slug}", get(show_tenant))
        .route("/tenants/{slug}/enable", post(enable_tenant))
        .route("/tenants/{slug}/disable", post(disable_tenant))
        .route("/tenants/{slug}/scim-tokens", get(list_scim_tokens).post(create_scim_token))
        .route("/tenants/{slug}/scim-tokens/{id}", axum::routing::delete(revoke_scim_token))
        .route("/tenants/{slug}/individuals", get(list_individuals).post(create_individual))
        .route("/tenants/{slug}/individuals/{id}/invitation", post(invite_individual).delete(revoke_invitation))
        .route("/tenants/{slug}/individuals/{id}/mails", get(individual_mails))
        .route("/tenants/{slug}/individuals/{id}", get(show_individual).patch(change_individual))
        .route("/tenants/{slug}/audit", get(tenant_audit))
        .route("/audit", get(operator_audit))
        .route("/catalog", get(catalog))
        .route("/roles", get(roles))
        .route("/access-profiles", get(access_profiles))
        .route("/apply", post(apply))
        .route("/plugins", get(plugins))
        .route("/plugins/reload", post(reload_plugins))
        .route("/tenants/{slug}/mapping/rules", get(mapping_rules).put(replace_mapping_rules))
        .route("/tenants/{slug}/mapping/preview", post(mapping_preview))
        .route("/tenants/{slug}/mapping/diff", post(mapping_diff))
        .route("/tenants/{slug}/mapping/remap", post(mapping_remap))
        .route("/tenants/{slug}/individuals/{id}/explain", get(explain_individual))
        .route("/change-sets", get(list_change_sets))
        .route("/tenants/{slug}/ldap/{source}/sync", post(sync_ldap))
        .route("/sync-runs", get(list_sync_runs))
        .route("/tenants/{slug}/connectors", get(list_connectors))
        .route("/tenants/{slug}/connectors/{name}", get(show_connector))
        .route("/tenants/{slug}/connectors/{name}/resync", post(resync_connector))
        .route("/tenants/{slug}/change-sets/{id}", get(show_change_set))
        .route("/tenants/{slug}/change-sets/{id}/approve", post(approve_change_set))
        .route("/tenants/{slug}/change-sets/{id}/reject", post(reject_change_set))
        .route("/clients", get(list_clients).post(register_client))
        .route("/clients/{id}", axum::routing::delete(delete_client))
        .route("/tenants/{slug}/sign-in", get(show_sign_in).put(replace_sign_in))
        .route("/signing-keys", get(list_signing_keys))
        .route("/backchannel-logouts", get(list_backchannel_logouts))
        .route("/signing-keys/rotate", post(rotate_signing_keys))
}

fn sso(state: &AppState) -> ApiResult<&idbridge_oidc::SsoState> {
    state
        .sso
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "sign-in is not enabled"))
}

async fn list_clients(_: OperatorCaller, State(state): State<AppState>) -> ApiResult<Response> {
    let clients = sso(&state)?.store.list_portal_clients().await?;
    let views: Vec<_> = clients.iter().map(idbridge_app::portal_clients::client_view).collect();
    Ok(Json(json!({ "clients": views })).into_response())
}

/// Registers or updates a portal; a new portal's generated secret is in the answer, once.
async fn register_client(
    caller: OperatorCaller,
    State(state): State<AppState>,
    AdminJson(doc): AdminJson<idbridge_app::portal_clients::ClientDoc>,
) -> ApiResult<Response> {
    if doc.secret_file.is_some() || doc.secret_env.is_some() {
        return Err(ApiError::bad_request(
            "secret_file and secret_env name the daemon host's files and environment; over the API, omit them to get a generated secret",
        ));
    }
    let registered =
        idbridge_app::portal_clients::register(sso(&state)?.store.as_ref(), doc, false, &caller.ctx).await?;
    sso(&state)?.config.invalidate();
    let mut view = idbridge_app::portal_clients::client_view(&registered.client);
    if let Some(secret) = registered.generated_secret {
        view["client_secret"] = json!(secret);
    }
    Ok(Json(view).into_response())
}

async fn delete_client(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let audit = caller.ctx.record(None, "portal_client", &id, "portal_client.deleted", None, None);
    let deleted = sso(&state)?.store.delete_portal_client(&id, &audit).await?;
    sso(&state)?.config.invalidate();
    if !deleted {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no portal client {id}")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn show_sign_in(
    _: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let tenant = state.operator.tenant(&slug(&raw)?).await?;
    Ok(Json(json!({
        "domains": tenant.policy.domains,
        "oidc": tenant.policy.oidc,
        "jit_provisioning": tenant.policy.jit_provisioning,
    }))
    .into_response())
}

/// Replaces the tenant's verified domains and IdP connections.
async fn replace_sign_in(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    AdminJson(doc): AdminJson<idbridge_app::portal_clients::SignInDoc>,
) -> ApiResult<Response> {
    idbridge_app::portal_clients::set_sign_in(&state.operator, &slug(&raw)?, doc, &caller.ctx).await?;
    if let Some(sso) = &state.sso {
        sso.config.invalidate();
    }
    show_sign_in(caller, State(state), Path(raw)).await
}

/// The back-channel logout queue: how many are owed, failing and dead, and the dead ones
/// (newest first), for an operator whose portal missed logouts.
async fn list_backchannel_logouts(_: OperatorCaller, State(state): State<AppState>) -> ApiResult<Response> {
    let store = &sso(&state)?.store;
    let stats = store.backchannel_logout_stats(idbridge_core::clock::now()).await?;
    let dead = store.list_dead_backchannel_logouts(100).await?;
    Ok(Json(json!({ "stats": stats, "dead": dead })).into_response())
}

/// How long key listing and rotation wait for the first keys of a fresh start.
const KEYS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn list_signing_keys(_: OperatorCaller, State(state): State<AppState>) -> ApiResult<Response> {
    let keys = &sso(&state)?.keys;
    // Right after a first start the keys may still be being generated: show them once
    // they exist (or, after the wait, whatever is there).
    let _ = keys.wait_until_signing(KEYS_WAIT).await;
    keys.reload().await?;
    Ok(Json(json!({ "keys": keys.describe(idbridge_core::clock::now()) })).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateParams {
    /// Sign with the new keys at once (a key believed compromised).
    #[serde(default)]
    now: bool,
}

async fn rotate_signing_keys(
    caller: OperatorCaller,
    State(state): State<AppState>,
    AdminQuery(p): AdminQuery<RotateParams>,
) -> ApiResult<Response> {
    let keys = &sso(&state)?.keys;
    // Not beside the first generation of a fresh start (it would make extra keys).
    let _ = keys.wait_until_signing(KEYS_WAIT).await;
    let created = keys.rotate(idbridge_core::clock::now(), p.now, &caller.ctx).await?;
    Ok(Json(json!({ "created": created, "keys": keys.describe(idbridge_core::clock::now()) })).into_response())
}

/// An authenticated operator. Being an extractor, no handler can forget the check.
pub struct OperatorCaller {
    ctx: AuditContext,
}

impl FromRequestParts<AppState> for OperatorCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let stored = bearer_match(&parts.headers, &state.admin_token_hashes).ok_or_else(ApiError::unauthorized)?;
        let request_id = parts.headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // The actor is named by a prefix of the token's hash: stable, not a secret.
        let actor = Actor::new(ActorKind::Operator, format!("admin-token:{}", &stored[..12]));
        Ok(Self { ctx: AuditContext { actor, request_id } })
    }
}

/// `Json` whose rejections use the admin error format.
pub struct AdminJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AdminJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            // As axum's `Json`: `application/json` and `application/*+json`.
            .is_some_and(|m| m == "application/json" || (m.starts_with("application/") && m.ends_with("+json")));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_body",
                "expected a request with `Content-Type: application/json`",
            ));
        }
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_body", rejection.body_text()))?;
        strict_body(&body).map(Self)
    }
}

/// A JSON body held to its schema: unknown fields are named, not dropped (400 for
/// malformed JSON, 422 for a document the schema refuses).
pub(crate) fn strict_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    crate::strict::from_json(body).map_err(|e| {
        let status = if e.is_syntax() { StatusCode::BAD_REQUEST } else { StatusCode::UNPROCESSABLE_ENTITY };
        ApiError::new(status, "invalid_body", e.to_string())
    })
}

async fn list_tenants(_: OperatorCaller, State(state): State<AppState>) -> ApiResult<Response> {
    Ok(Json(crate::views::tenants(&state.operator.tenants().await?)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    slug: String,
    name: String,
    #[serde(default)]
    time_zone: Option<String>,
}

async fn create_tenant(
    caller: OperatorCaller,
    State(state): State<AppState>,
    AdminJson(body): AdminJson<CreateTenant>,
) -> ApiResult<Response> {
    let slug = TenantSlug::parse(&body.slug)?;
    let mut settings = TenantSettings::new(body.name);
    if let Some(tz) = body.time_zone {
        settings.default_time_zone = tz;
    }
    let tenant = state.operator.create_tenant(&slug, &settings, &caller.ctx).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/admin/v1/tenants/{slug}"))],
        Json(crate::views::Tenant::from(&tenant)),
    )
        .into_response())
}

async fn show_tenant(_: OperatorCaller, State(state): State<AppState>, Path(raw): Path<String>) -> ApiResult<Response> {
    let view = state.operator.tenant_view(&slug(&raw)?).await?;
    Ok(Json(crate::views::TenantDetail::from(&view)).into_response())
}

async fn enable_tenant(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let tenant = state.operator.set_tenant_enabled(&slug(&raw)?, true, &caller.ctx).await?;
    Ok(Json(crate::views::Tenant::from(&tenant)).into_response())
}

async fn disable_tenant(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let tenant = state.operator.set_tenant_enabled(&slug(&raw)?, false, &caller.ctx).await?;
    state.forget_scim_logins();
    Ok(Json(crate::views::Tenant::from(&tenant)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    #[serde(default)]
    name: Option<String>,
}

async fn create_scim_token(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // The body is optional: an empty POST issues a token named "scim".
    let body: CreateToken = if body.iter().all(u8::is_ascii_whitespace) {
        CreateToken::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", format!("{e}")))?
    };
    let name = body.name.unwrap_or_else(|| "scim".to_owned());
    let issued = state.operator.issue_scim_token(&slug(&raw)?, &name, &caller.ctx).await?;
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(issued)).into_response())
}

async fn list_scim_tokens(
    _: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(crate::views::scim_tokens(state.operator.scim_tokens(&slug(&raw)?).await?)).into_response())
}

async fn revoke_scim_token(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    state.operator.revoke_scim_token(&slug(&raw)?, &id, &caller.ctx).await?;
    state.forget_scim_logins();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_individuals(
    _: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    AdminQuery(params): AdminQuery<IndividualParams>,
) -> ApiResult<Response> {
    let query = params.query()?;
    Ok(Json(crate::views::individuals(&state.operator.individuals(&slug(&raw)?, &query).await?)).into_response())
}

async fn show_individual(
    _: OperatorCaller,
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(Json(crate::views::Individual::from(&state.operator.individual(&slug(&raw)?, &id).await?)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    since: Option<String>,
    until: Option<String>,
    actor: Option<String>,
    subject: Option<String>,
    after: Option<i64>,
    limit: Option<u32>,
    /// `jsonl` for JSON lines (one entry per line, for export).
    format: Option<String>,
}

async fn audit_response(
    state: &AppState,
    slug: Option<TenantSlug>,
    params: AuditParams,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let query = AuditQuery::from_filters(
        params.since.as_deref(),
        params.until.as_deref(),
        params.actor,
        params.subject,
        params.after,
        params.limit.unwrap_or(1000).clamp(1, 10_000),
    )
    .map_err(ApiError::bad_request)?;
    let entries = state.operator.audit(slug.as_ref(), query).await?;
    let wants_lines = params.format.as_deref() == Some("jsonl")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/x-ndjson"));
    if let Some(format) = params.format.as_deref().filter(|f| !matches!(*f, "jsonl" | "json")) {
        return Err(ApiError::bad_request(format!("format: {format:?} is not json or jsonl")));
    }
    if wants_lines {
        let mut body = String::new();
        for entry in &entries {
            body.push_str(&serde_json::to_string(&crate::views::AuditEntry::from(entry)).unwrap_or_default());
            body.push('\n');
        }
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response());
    }
    Ok(Json(entries.iter().map(crate::views::AuditEntry::from).collect::<Vec<_>>()).into_response())
}

async fn tenant_audit(
    _: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    AdminQuery(params): AdminQuery<AuditParams>,
) -> ApiResult<Response> {
    audit_response(&state, Some(slug(&raw)?), params, &headers).await
}

async fn operator_audit(
    _: OperatorCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
    AdminQuery(params): AdminQuery<AuditParams>,
) -> ApiResult<Response> {
    audit_response(&state, None, params, &headers).await
}

async fn catalog(_: OperatorCaller, State(state): State<AppState>) -> ApiResult<Response> {
    let catalog = state.operator.catalog().await?;
    Ok(Json(crate::views::Catalog::from(&catalog)).into_response())
}

async fn roles(_: OperatorCaller, State(state): State<AppState>) -> ApiResult<Response> {
    let roles = state.operator.roles().await?;
    Ok(Json(crate::views::roles(&roles)).into_response())
}

async fn access_profiles(_: OperatorCaller, State(state): State<AppState>) -> ApiResult<Response> {
    let profiles = state.operator.access_profiles().await?;
    Ok(Json(crate::views::access_profiles(&profiles)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyParams {
    #[serde(default)]
    dry_run: bool,
}

/// Takes the apply document as TOML (`application/toml`) or JSON.
async fn apply(
    caller: OperatorCaller,
    State(state): State<AppState>,
    AdminQuery(params): AdminQuery<ApplyParams>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
    let document = if content_type.starts_with("application/toml") {
        ApplyDocument::from_toml(text)?
    } else if content_type.starts_with("application/json") {
        crate::strict::from_json(text.as_bytes())
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", format!("apply document: {e}")))?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the apply document as application/toml or application/json",
        ));
    };
    let desired = document.into_desired(state.known_mappers.as_ref().clone())?;
    let report = state.operator.apply(&desired, params.dry_run, &caller.ctx).await?;
    state.forget_scim_logins();
    let remapped = state.reconciliation.remap_after(&report, &caller.ctx).await?;
    Ok(Json(json!({ "dry_run": report.dry_run, "changes": report.changes, "remapped": remapped })).into_response())
}

async fn plugins(_: OperatorCaller, State(state): State<AppState>) -> ApiResult<Response> {
    Ok(Json(state.mapping.plugins.statuses()).into_response())
}

/// Re-reads the config file's `[[plugins]]` and re-creates every instance.
async fn reload_plugins(_: OperatorCaller, State(state): State<AppState>) -> ApiResult<Response> {
    crate::app::reload_plugins(&state.mapping.plugins, state.config_path.as_deref())
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "plugin_reload_failed", e))?;
    Ok(Json(state.mapping.plugins.statuses()).into_response())
}

async fn mapping_rules(
    _: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let tenant = state.operator.tenant(&slug(&raw)?).await?;
    Ok(Json(state.operator.mapping_rules(tenant.id).await?).into_response())
}

async fn mapping_preview(
    _: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    AdminJson(person): AdminJson<idbridge_app::mapping::PreviewPerson>,
) -> ApiResult<Response> {
    Ok(Json(state.mapping.preview(&slug(&raw)?, person).await?).into_response())
}

/// Replaces the tenant's rules with the posted JSON list (`?dry_run=true` to preview).
async fn replace_mapping_rules(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    AdminQuery(params): AdminQuery<ApplyParams>,
    AdminJson(rules): AdminJson<Vec<idbridge_core::mapping::rules::Rule>>,
) -> ApiResult<Response> {
    let report = state
        .operator
        .replace_rules(&slug(&raw)?, rules, state.known_mappers.as_ref().clone(), params.dry_run, &caller.ctx)
        .await?;
    let remapped = state.reconciliation.remap_after(&report, &caller.ctx).await?;
    Ok(Json(json!({ "dry_run": report.dry_run, "changes": report.changes, "remapped": remapped })).into_response())
}

/// What would change for every individual if the posted rules replaced the stored ones.
async fn mapping_diff(
    _: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    AdminJson(rules): AdminJson<Vec<idbridge_core::mapping::rules::Rule>>,
) -> ApiResult<Response> {
    Ok(Json(state.reconciliation.diff(&slug(&raw)?, &rules).await?).into_response())
}

/// Re-decides every individual of the tenant from its sources now.
async fn mapping_remap(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let tenant = state.operator.tenant(&slug(&raw)?).await?;
    let submitted = state.reconciliation.remap(&tenant, "re-map requested by an operator", &caller.ctx).await?;
    Ok(Json(idbridge_app::reconciliation::RemapSummary::of(&tenant, submitted)).into_response())
}

async fn explain_individual(
    _: OperatorCaller,
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(Json(idbridge_app::explain::explain(&state.reconciliation, &slug(&raw)?, &id).await?).into_response())
}

/// An operator's change by hand: dates, time zone, scopes added or removed.
fn local(state: &AppState) -> ApiResult<&idbridge_app::local_accounts::LocalAccounts> {
    sso(state)?
        .local
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "local sign-in is not enabled"))
}

/// Creates an individual by hand; in a tenant that allows local sign-in, one with an
/// email is invited (the mail is owed by the creation's change event).
async fn create_individual(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    AdminJson(new): AdminJson<super::bodies::NewIndividualBody>,
) -> ApiResult<Response> {
    let tenant = state.operator.tenant(&slug(&raw)?).await?;
    let created = state.reconciliation.create_by_hand(&tenant, new.into(), &caller.ctx).await?;
    Ok((StatusCode::CREATED, Json(crate::views::Individual::from(&created))).into_response())
}

/// Sends an invitation again (or a reset link to someone with a password).
async fn invite_individual(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let tenant = state.operator.tenant(&slug(&raw)?).await?;
    let individual = state.operator.individual(&tenant.slug, &id).await?;
    let mail = local(&state)?.invite(&caller.ctx, &tenant, &individual).await?;
    Ok((StatusCode::ACCEPTED, Json(crate::views::mail(&mail))).into_response())
}

async fn revoke_invitation(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let tenant = state.operator.tenant(&slug(&raw)?).await?;
    let individual = state.operator.individual(&tenant.slug, &id).await?;
    let revoked = local(&state)?.revoke(&caller.ctx, &tenant, individual.id).await?;
    Ok(Json(json!({ "revoked": revoked })).into_response())
}

async fn individual_mails(
    _: OperatorCaller,
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let tenant = state.operator.tenant(&slug(&raw)?).await?;
    let individual = state.operator.individual(&tenant.slug, &id).await?;
    let mails = local(&state)?.mails(&tenant, Some(individual.id), 100).await?;
    Ok(Json(json!({ "mails": mails.iter().map(crate::views::mail).collect::<Vec<_>>() })).into_response())
}

async fn change_individual(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
    AdminJson(change): AdminJson<super::bodies::ManualChangeBody>,
) -> ApiResult<Response> {
    let slug = slug(&raw)?;
    let tenant = state.operator.tenant(&slug).await?;
    let individual = state.operator.individual(&slug, &id).await?;
    state.reconciliation.change_by_hand(&tenant, &individual, &change.into(), &caller.ctx).await?;
    let changed = state.operator.individual(&slug, &individual.id.to_string()).await?;
    Ok(Json(crate::views::Individual::from(&changed)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeSetParams {
    tenant: Option<String>,
    status: Option<String>,
}

/// A held change set without its planned writes (they can be many); `show` has them.
fn change_set_summary(set: &idbridge_core::changeset::ChangeSetHeader) -> serde_json::Value {
    json!({
        "id": set.id,
        "tenant_id": set.tenant_id,
        "origin": set.origin,
        "status": set.status,
        "summary": set.summary,
        "created_at": set.created_at,
        "created_by": set.created_by,
        "decided_at": set.decided_at,
        "decided_by": set.decided_by,
        "result": set.result,
    })
}

async fn list_change_sets(
    _: OperatorCaller,
    State(state): State<AppState>,
    AdminQuery(params): AdminQuery<ChangeSetParams>,
) -> ApiResult<Response> {
    let tenant = match &params.tenant {
        Some(raw) => Some(state.operator.tenant(&slug(raw)?).await?.id),
        None => None,
    };
    let status = params.status.as_deref().map(idbridge_core::changeset::ChangeSetStatus::parse).transpose()?;
    let sets = state.operator.change_sets(tenant, status).await?;
    Ok(Json(sets.iter().map(change_set_summary).collect::<Vec<_>>()).into_response())
}

fn change_set_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::bad_request(format!("change set id {raw:?} is not a UUID")))
}

/// `?after=` (the `next_after` of the page before) and `?limit=` (1–5,000; 1,000).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WritesPage {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn show_change_set(
    _: OperatorCaller,
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
    AdminQuery(page): AdminQuery<WritesPage>,
) -> ApiResult<Response> {
    let tenant = state.operator.tenant(&slug(&raw)?).await?;
    let id = change_set_id(&id)?;
    let set = state.operator.change_set(tenant.id, id).await?;
    let limit = page.limit.unwrap_or(1_000);
    let writes = state.operator.change_set_writes(tenant.id, id, page.after, limit).await?;
    let full = writes.len() == limit;
    Ok(Json(crate::views::HeldChangeSet::page(&set, &writes, full)).into_response())
}

async fn approve_change_set(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let tenant = state.operator.tenant(&slug(&raw)?).await?;
    let report = state.reconciliation.approve(&tenant, change_set_id(&id)?, &caller.ctx).await?;
    Ok(Json(json!({
        "applied": report.written.len(),
        "skipped": report.skipped.len(),
        "failed": report.failed.iter().map(|(id, e)| format!("{id}: {e}")).collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn reject_change_set(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let tenant = state.operator.tenant(&slug(&raw)?).await?;
    state.reconciliation.reject(&tenant, change_set_id(&id)?, &caller.ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncParams {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    full: bool,
}

/// Runs one LDAP source now (`?dry_run=true`: the plan only; `?full=true`: read everyone).
async fn sync_ldap(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path((raw, name)): Path<(String, String)>,
    AdminQuery(params): AdminQuery<SyncParams>,
) -> ApiResult<Response> {
    let tenant = state.operator.tenant(&slug(&raw)?).await?;
    let source = tenant
        .policy
        .ldap
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| idbridge_core::DomainError::not_found("LDAP source", name.clone()))?;
    let ctx = AuditContext { actor: Actor::new(ActorKind::SyncRun, caller.ctx.actor.id.clone()), ..caller.ctx.clone() };
    let outcome = state.reconciliation.sync_ldap(&tenant, source, params.dry_run, params.full, &ctx).await?;
    Ok(Json(outcome).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectorParams {
    /// Problem links to list (conflicts, dead, retrying); 0-1000, default 50.
    problems: Option<u32>,
}

async fn list_connectors(
    _: OperatorCaller,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(state.operator.connectors().status(&slug(&raw)?, None, 0).await?).into_response())
}

async fn show_connector(
    _: OperatorCaller,
    State(state): State<AppState>,
    Path((raw, name)): Path<(String, String)>,
    AdminQuery(params): AdminQuery<ConnectorParams>,
) -> ApiResult<Response> {
    let problems = params.problems.unwrap_or(50);
    if problems > 1000 {
        return Err(idbridge_core::DomainError::invalid("problems", "must be 0-1000").into());
    }
    let mut statuses = state.operator.connectors().status(&slug(&raw)?, Some(&name), problems).await?;
    Ok(Json(statuses.remove(0)).into_response())
}

async fn resync_connector(
    caller: OperatorCaller,
    State(state): State<AppState>,
    Path((raw, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let owed = state.operator.connectors().resync(&slug(&raw)?, &name, &caller.ctx).await?;
    Ok(Json(serde_json::json!({ "owed": owed })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncRunParams {
    tenant: Option<String>,
    limit: Option<u32>,
}

async fn list_sync_runs(
    _: OperatorCaller,
    State(state): State<AppState>,
    AdminQuery(params): AdminQuery<SyncRunParams>,
) -> ApiResult<Response> {
    let tenant = params.tenant.as_deref().map(slug).transpose()?;
    let limit = params.limit.unwrap_or(100);
    let runs = idbridge_app::directory_sync::sync_runs(
        &state.operator,
        state.reconciliation.directory.as_ref(),
        tenant.as_ref(),
        limit,
    )
    .await?;
    Ok(Json(runs.iter().map(crate::views::SyncRun::from).collect::<Vec<_>>()).into_response())
}
