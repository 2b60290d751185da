//! Tenants and their SCIM tokens.

use idbridge_core::audit::AuditContext;
use idbridge_core::tenant::{Tenant, TenantId, TenantSettings, TenantSlug};
use idbridge_core::token::ScimTokenRecord;
use idbridge_core::{DomainError, DomainResult};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::SqlStore;
use crate::convert::{micros, storage, timestamp, unique_or_storage, uuid};
use crate::log::append_audit;
use crate::stored;

const TENANT_COLUMNS: &str = "id, slug, name, enabled, default_time_zone, allowed_roles, allowed_access_profiles, policy, version, created_at, updated_at";

fn tenant_from_row(row: &AnyRow) -> DomainResult<Tenant> {
    let get_s = |c: &str| row.try_get::<String, _>(c).map_err(storage);
    Ok(Tenant {
        id: TenantId(uuid("tenant id", &get_s("id")?)?),
        slug: TenantSlug::parse(&get_s("slug")?)?,
        name: get_s("name")?,
        enabled: row.try_get::<i64, _>("enabled").map_err(storage)? != 0,
        default_time_zone: get_s("default_time_zone")?,
        allowed_roles: stored::read("allowed_roles", &get_s("allowed_roles")?)?,
        allowed_access_profiles: stored::read("allowed_access_profiles", &get_s("allowed_access_profiles")?)?,
        policy: stored::read("policy", &get_s("policy")?)?,
        version: row.try_get("version").map_err(storage)?,
        created_at: timestamp(row.try_get("created_at").map_err(storage)?)?,
        updated_at: timestamp(row.try_get("updated_at").map_err(storage)?)?,
    })
}

pub(crate) async fn insert_tenant(
    conn: &mut AnyConnection,
    id: TenantId,
    slug: &TenantSlug,
    settings: &TenantSettings,
) -> DomainResult<Tenant> {
    let now = micros(idbridge_core::clock::now());
    let row = sqlx::query(&format!(
        "INSERT INTO tenants ({TENANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9) RETURNING {TENANT_COLUMNS}"
    ))
    .bind(id.0.to_string())
    .bind(slug.as_str())
    .bind(&settings.name)
    .bind(i64::from(settings.enabled))
    .bind(&settings.default_time_zone)
    .bind(stored::write(&settings.allowed_roles))
    .bind(stored::write(&settings.allowed_access_profiles))
    .bind(stored::write(&settings.policy))
    .bind(now)
    .fetch_one(conn)
    .await
    .map_err(unique_or_storage("tenant", slug.as_str()))?;
    tenant_from_row(&row)
}

pub(crate) async fn update_tenant_row(
    conn: &mut AnyConnection,
    id: TenantId,
    expected_version: i64,
    settings: &TenantSettings,
) -> DomainResult<Tenant> {
    let row = sqlx::query(&format!(
        "UPDATE tenants SET name = $1, enabled = $2, default_time_zone = $3, allowed_roles = $4,
                allowed_access_profiles = $5, policy = $6, version = version + 1, updated_at = $7
         WHERE id = $8 AND version = $9 RETURNING {TENANT_COLUMNS}"
    ))
    .bind(&settings.name)
    .bind(i64::from(settings.enabled))
    .bind(&settings.default_time_zone)
    .bind(stored::write(&settings.allowed_roles))
    .bind(stored::write(&settings.allowed_access_profiles))
    .bind(stored::write(&settings.policy))
    .bind(micros(idbridge_core::clock::now()))
    .bind(id.0.to_string())
    .bind(expected_version)
    .fetch_optional(&mut *conn)
    .await
    .map_err(storage)?;
    match row {
        Some(row) => tenant_from_row(&row),
        None => {
            let found: Option<(String, i64)> = sqlx::query_as("SELECT slug, version FROM tenants WHERE id = $1")
                .bind(id.0.to_string())
                .fetch_optional(conn)
                .await
                .map_err(storage)?;
            Err(match found {
                Some((slug, found)) => {
                    DomainError::VersionConflict { kind: "tenant", key: slug, expected: expected_version, found }
                }
                None => DomainError::not_found("tenant", id.to_string()),
            })
        }
    }
}

fn token_from_row(row: &AnyRow) -> DomainResult<ScimTokenRecord> {
    Ok(ScimTokenRecord {
        id: row.try_get("id").map_err(storage)?,
        tenant_id: TenantId(uuid("tenant_id", &row.try_get::<String, _>("tenant_id").map_err(storage)?)?),
        name: row.try_get("name").map_err(storage)?,
        hash: row.try_get("hash").map_err(storage)?,
        created_at: timestamp(row.try_get("created_at").map_err(storage)?)?,
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at").map_err(storage)?.map(timestamp).transpose()?,
    })
}

impl SqlStore {
    pub(crate) async fn tenant_create(
        &self,
        id: TenantId,
        slug: &TenantSlug,
        settings: &TenantSettings,
        ctx: &AuditContext,
    ) -> DomainResult<Tenant> {
        let mut tx = self.begin().await?;
        let tenant = insert_tenant(&mut tx, id, slug, settings).await?;
        let after = json!({ "slug": slug, "settings": settings });
        append_audit(&mut tx, &ctx.record(Some(id), "tenant", slug.as_str(), "tenant.created", None, Some(after)))
            .await?;
        tx.commit().await.map_err(storage)?;
        Ok(tenant)
    }

    pub(crate) async fn tenant_get(&self, slug: &TenantSlug) -> DomainResult<Option<Tenant>> {
        let row = sqlx::query(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1"))
            .bind(slug.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    pub(crate) async fn tenant_list(&self) -> DomainResult<Vec<Tenant>> {
        let rows = sqlx::query(&format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY slug"))
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?;
        rows.iter().map(tenant_from_row).collect()
    }

    pub(crate) async fn tenant_update(
        &self,
        id: TenantId,
        expected_version: i64,
        settings: &TenantSettings,
        ctx: &AuditContext,
    ) -> DomainResult<Tenant> {
        let mut tx = self.begin().await?;
        let before: Option<AnyRow> = sqlx::query(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"))
            .bind(id.0.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(storage)?;
        let before = before
            .as_ref()
            .map(tenant_from_row)
            .transpose()?
            .ok_or_else(|| DomainError::not_found("tenant", id.to_string()))?;
        let tenant = update_tenant_row(&mut tx, id, expected_version, settings).await?;
        let record = ctx.record(
            Some(id),
            "tenant",
            tenant.slug.as_str(),
            "tenant.updated",
            Some(serde_json::to_value(before.settings()).unwrap_or_default()),
            Some(serde_json::to_value(settings).unwrap_or_default()),
        );
        append_audit(&mut tx, &record).await?;
        tx.commit().await.map_err(storage)?;
        Ok(tenant)
    }

    pub(crate) async fn scim_token_create(&self, token: &ScimTokenRecord, ctx: &AuditContext) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO scim_tokens (tenant_id, id, name, hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(token.tenant_id.0.to_string())
            .bind(&token.id)
            .bind(&token.name)
            .bind(&token.hash)
            .bind(micros(token.created_at))
            .execute(&mut *tx)
            .await
            .map_err(unique_or_storage("scim token", &token.id))?;
        let after = json!({ "id": token.id, "name": token.name });
        append_audit(
            &mut tx,
            &ctx.record(Some(token.tenant_id), "scim_token", &token.id, "scim_token.created", None, Some(after)),
        )
        .await?;
        tx.commit().await.map_err(storage)
    }

    pub(crate) async fn scim_token_list(&self, tenant: TenantId) -> DomainResult<Vec<ScimTokenRecord>> {
        let rows = sqlx::query("SELECT tenant_id, id, name, hash, created_at, revoked_at FROM scim_tokens WHERE tenant_id = $1 ORDER BY created_at, id")
            .bind(tenant.0.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?;
        rows.iter().map(token_from_row).collect()
    }

    pub(crate) async fn scim_token_find(&self, tenant: TenantId, id: &str) -> DomainResult<Option<ScimTokenRecord>> {
        let row = sqlx::query("SELECT tenant_id, id, name, hash, created_at, revoked_at FROM scim_tokens WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0.to_string())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub(crate) async fn scim_token_revoke(&self, tenant: TenantId, id: &str, ctx: &AuditContext) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE scim_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(micros(idbridge_core::clock::now()))
        .bind(tenant.0.to_string())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        if done.rows_affected() == 0 {
            let exists: Option<(String,)> =
                sqlx::query_as("SELECT id FROM scim_tokens WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.0.to_string())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(storage)?;
            return Err(match exists {
                Some(_) => DomainError::Rejected(format!("scim token {id:?} is already revoked")),
                None => DomainError::not_found("scim token", id),
            });
        }
        append_audit(&mut tx, &ctx.record(Some(tenant), "scim_token", id, "scim_token.revoked", None, None)).await?;
        tx.commit().await.map_err(storage)
    }
}
