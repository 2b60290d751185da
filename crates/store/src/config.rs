//! Operator configuration: catalog extensions, roles, access profiles, and `apply`.

use idbridge_core::DomainResult;
use idbridge_core::audit::AuditContext;
use idbridge_core::catalog::{CatalogEntry, CatalogKind};
use idbridge_core::config_plan::ConfigChange;
use idbridge_core::role::{AccessLevel, AccessProfile, Role};
use sqlx::{AnyConnection, Row};

use crate::SqlStore;
use crate::convert::{micros, storage, uuid};
use crate::log::append_audit;
use crate::stored;
use crate::tenants::{insert_tenant, update_tenant_row};
use idbridge_core::mapping::rules::Rule;
use idbridge_core::tenant::TenantId;

async fn put_role(conn: &mut AnyConnection, role: &Role) -> DomainResult<()> {
    sqlx::query(
        "INSERT INTO roles (name, description, default_level, levels, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET description = excluded.description, default_level = excluded.default_level,
             levels = excluded.levels, updated_at = excluded.updated_at",
    )
    .bind(&role.name)
    .bind(&role.description)
    .bind(role.default_level.as_str())
    .bind(stored::write(&role.levels))
    .bind(micros(idbridge_core::clock::now()))
    .execute(conn)
    .await
    .map_err(storage)?;
    Ok(())
}

async fn put_access_profile(conn: &mut AnyConnection, profile: &AccessProfile) -> DomainResult<()> {
    sqlx::query(
        "INSERT INTO access_profiles (name, description, flags, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET description = excluded.description, flags = excluded.flags,
             updated_at = excluded.updated_at",
    )
    .bind(&profile.name)
    .bind(&profile.description)
    .bind(stored::write(&profile.flags))
    .bind(micros(idbridge_core::clock::now()))
    .execute(conn)
    .await
    .map_err(storage)?;
    Ok(())
}

async fn put_catalog_entry(conn: &mut AnyConnection, entry: &CatalogEntry) -> DomainResult<()> {
    sqlx::query(
        "INSERT INTO catalog_entries (kind, name, description) VALUES ($1, $2, $3)
         ON CONFLICT (kind, name) DO UPDATE SET description = excluded.description",
    )
    .bind(entry.kind.as_str())
    .bind(&entry.name)
    .bind(&entry.description)
    .execute(conn)
    .await
    .map_err(storage)?;
    Ok(())
}

impl SqlStore {
    pub(crate) async fn catalog_list(&self) -> DomainResult<Vec<CatalogEntry>> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT kind, name, description FROM catalog_entries ORDER BY kind, name")
                .fetch_all(&self.pool)
                .await
                .map_err(storage)?;
        rows.into_iter()
            .map(|(kind, name, description)| Ok(CatalogEntry { kind: CatalogKind::parse(&kind)?, name, description }))
            .collect()
    }

    pub(crate) async fn role_list(&self) -> DomainResult<Vec<Role>> {
        let rows = sqlx::query("SELECT name, description, default_level, levels FROM roles ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?;
        rows.iter()
            .map(|row| {
                Ok(Role {
                    name: row.try_get("name").map_err(storage)?,
                    description: row.try_get("description").map_err(storage)?,
                    default_level: AccessLevel::parse(&row.try_get::<String, _>("default_level").map_err(storage)?)?,
                    levels: stored::read("role levels", &row.try_get::<String, _>("levels").map_err(storage)?)?,
                })
            })
            .collect()
    }

    pub(crate) async fn access_profile_list(&self) -> DomainResult<Vec<AccessProfile>> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT name, description, flags FROM access_profiles ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(storage)?;
        rows.into_iter()
            .map(|(name, description, flags)| {
                Ok(AccessProfile { name, description, flags: stored::read("access profile flags", &flags)? })
            })
            .collect()
    }

    pub(crate) async fn mapping_rules_list(&self) -> DomainResult<Vec<(TenantId, Vec<Rule>)>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT tenant_id, rules FROM mapping_rules ORDER BY tenant_id")
                .fetch_all(&self.pool)
                .await
                .map_err(storage)?;
        rows.into_iter()
            .map(|(t, r)| Ok((TenantId(uuid("tenant_id", &t)?), stored::read("mapping rules", &r)?)))
            .collect()
    }

    pub(crate) async fn mapping_rules_get(&self, tenant: TenantId) -> DomainResult<Vec<Rule>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT rules FROM mapping_rules WHERE tenant_id = $1")
            .bind(tenant.0.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?;
        row.map(|(r,)| stored::read("mapping rules", &r)).transpose().map(Option::unwrap_or_default)
    }

    pub(crate) async fn config_apply(&self, changes: &[ConfigChange], ctx: &AuditContext) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        for change in changes {
            match change {
                ConfigChange::PutCatalogEntry { after, .. } => put_catalog_entry(&mut tx, after).await?,
                ConfigChange::PutRole { after, .. } => put_role(&mut tx, after).await?,
                ConfigChange::PutAccessProfile { after, .. } => put_access_profile(&mut tx, after).await?,
                ConfigChange::CreateTenant { id, slug, settings } => {
                    insert_tenant(&mut tx, *id, slug, settings).await?;
                }
                ConfigChange::UpdateTenant { id, expected_version, after, .. } => {
                    update_tenant_row(&mut tx, *id, *expected_version, after).await?;
                }
                ConfigChange::PutRules { id, after, .. } => {
                    sqlx::query(
                        "INSERT INTO mapping_rules (tenant_id, rules, updated_at) VALUES ($1, $2, $3)
                         ON CONFLICT (tenant_id) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at",
                    )
                    .bind(id.0.to_string())
                    .bind(stored::write(after))
                    .bind(micros(idbridge_core::clock::now()))
                    .execute(&mut *tx)
                    .await
                    .map_err(storage)?;
                }
            }
            append_audit(&mut tx, &change.audit(ctx)).await?;
        }
        // Dropping the transaction on any `?` above rolls everything back.
        tx.commit().await.map_err(storage)
    }
}
