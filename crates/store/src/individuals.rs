//! Individuals and their source links, written with their audit record and change event.

use idbridge_core::individual::{Individual, IndividualId, IndividualQuery, IndividualStatus, SourceKind, SourceLink};
use idbridge_core::ports::IndividualWrite;
use idbridge_core::schedule::LocalInstant;
use idbridge_core::tenant::TenantId;
use idbridge_core::{DomainError, DomainResult};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::SqlStore;
use crate::convert::{from_json, micros, storage, timestamp, to_json, unique_or_storage, uuid};
use crate::log::{append_audit, append_change_event};

const COLUMNS: &str = "tenant_id, id, login, email, given_name, family_name, display_name, role, access_profile, scopes,
    time_zone, activation_local, activation_at, expiration_local, expiration_at, status, version, created_at, updated_at,
    deprovisioned_at, provenance";

fn local_instant(row: &AnyRow, prefix: &str, time_zone: &str) -> DomainResult<Option<LocalInstant>> {
    let local: Option<String> = row.try_get(format!("{prefix}_local").as_str()).map_err(storage)?;
    let at: Option<i64> = row.try_get(format!("{prefix}_at").as_str()).map_err(storage)?;
    match (local, at) {
        (Some(local), Some(at)) => Ok(Some(LocalInstant {
            local: local.parse().map_err(|e| DomainError::Storage(format!("stored {prefix} {local:?}: {e}")))?,
            time_zone: time_zone.to_owned(),
            at: timestamp(at)?,
        })),
        _ => Ok(None),
    }
}

fn individual_from_row(row: &AnyRow, links: Vec<SourceLink>) -> DomainResult<Individual> {
    let get_s = |c: &str| row.try_get::<String, _>(c).map_err(storage);
    let get_o = |c: &str| row.try_get::<Option<String>, _>(c).map_err(storage);
    let time_zone = get_s("time_zone")?;
    Ok(Individual {
        id: IndividualId(uuid("individual id", &get_s("id")?)?),
        tenant_id: TenantId(uuid("tenant_id", &get_s("tenant_id")?)?),
        login: get_s("login")?,
        email: get_o("email")?,
        given_name: get_o("given_name")?,
        family_name: get_o("family_name")?,
        display_name: get_o("display_name")?,
        role: get_o("role")?,
        access_profile: get_o("access_profile")?,
        scopes: from_json("scopes", &get_s("scopes")?)?,
        activation: local_instant(row, "activation", &time_zone)?,
        expiration: local_instant(row, "expiration", &time_zone)?,
        time_zone,
        status: IndividualStatus::parse(&get_s("status")?)?,
        links,
        deprovisioned_at: row
            .try_get::<Option<i64>, _>("deprovisioned_at")
            .map_err(storage)?
            .map(timestamp)
            .transpose()?,
        provenance: from_json("provenance", &get_s("provenance")?)?,
        version: row.try_get("version").map_err(storage)?,
        created_at: timestamp(row.try_get("created_at").map_err(storage)?)?,
        updated_at: timestamp(row.try_get("updated_at").map_err(storage)?)?,
    })
}

async fn links_of(conn: &mut AnyConnection, tenant: TenantId, id: IndividualId) -> DomainResult<Vec<SourceLink>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT source, connection, external_id FROM individual_links
         WHERE tenant_id = $1 AND individual_id = $2 ORDER BY source, connection, external_id",
    )
    .bind(tenant.0.to_string())
    .bind(id.0.to_string())
    .fetch_all(conn)
    .await
    .map_err(storage)?;
    rows.into_iter()
        .map(|(source, connection, external_id)| {
            Ok(SourceLink { source: SourceKind::parse(&source)?, connection, external_id })
        })
        .collect()
}

async fn load(conn: &mut AnyConnection, row: Option<AnyRow>) -> DomainResult<Option<Individual>> {
    let Some(row) = row else { return Ok(None) };
    let tenant = TenantId(uuid("tenant_id", &row.try_get::<String, _>("tenant_id").map_err(storage)?)?);
    let id = IndividualId(uuid("id", &row.try_get::<String, _>("id").map_err(storage)?)?);
    let links = links_of(conn, tenant, id).await?;
    individual_from_row(&row, links).map(Some)
}

/// Writes one individual inside the caller's transaction: `Ok(false)` when the version
/// no longer matches (nothing written, not even the audit record or the event).
async fn write_in(conn: &mut AnyConnection, write: &IndividualWrite, now: i64) -> DomainResult<bool> {
    let i = &write.individual;
    i.validate()?;
    let tenant = i.tenant_id.0.to_string();
    let id = i.id.0.to_string();
    let binds = |q: sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments<'static>>| {
        q.bind(i.login.clone())
            .bind(i.login_key())
            .bind(i.email.clone())
            .bind(i.given_name.clone())
            .bind(i.family_name.clone())
            .bind(i.display_name.clone())
            .bind(i.role.clone())
            .bind(i.access_profile.clone())
            .bind(to_json(&i.scopes))
            .bind(i.time_zone.clone())
            .bind(i.activation.as_ref().map(|a| a.local.to_string()))
            .bind(i.activation.as_ref().map(|a| micros(a.at)))
            .bind(i.expiration.as_ref().map(|e| e.local.to_string()))
            .bind(i.expiration.as_ref().map(|e| micros(e.at)))
            .bind(i.status.as_str())
            .bind(now)
            .bind(tenant.clone())
            .bind(id.clone())
            .bind(i.deprovisioned_at.map(micros))
            .bind(to_json(&i.provenance))
    };
    let written = match write.expected_version {
        None => binds(sqlx::query(
            "INSERT INTO individuals (login, login_key, email, given_name, family_name, display_name, role, access_profile,
                 scopes, time_zone, activation_local, activation_at, expiration_local, expiration_at, status,
                 created_at, updated_at, tenant_id, id, deprovisioned_at, provenance, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17, $18, $19, $20, 1)",
        ))
        .execute(&mut *conn)
        .await
        .map_err(unique_or_storage("individual with login", &i.login))?,
        Some(expected) => binds(sqlx::query(
            "UPDATE individuals SET login = $1, login_key = $2, email = $3, given_name = $4, family_name = $5,
                 display_name = $6, role = $7, access_profile = $8, scopes = $9, time_zone = $10,
                 activation_local = $11, activation_at = $12, expiration_local = $13, expiration_at = $14,
                 status = $15, updated_at = $16, deprovisioned_at = $19, provenance = $20, version = version + 1
             WHERE tenant_id = $17 AND id = $18 AND version = $21",
        ))
        .bind(expected)
        .execute(&mut *conn)
        .await
        .map_err(unique_or_storage("individual with login", &i.login))?,
    };
    if written.rows_affected() == 0 {
        return Ok(false);
    }
    if write.links_changed {
        // Links are replaced as a set; the primary key makes one external identity belong
        // to at most one individual of the tenant.
        sqlx::query("DELETE FROM individual_links WHERE tenant_id = $1 AND individual_id = $2")
            .bind(&tenant)
            .bind(&id)
            .execute(&mut *conn)
            .await
            .map_err(storage)?;
        for link in &i.links {
            sqlx::query(
                "INSERT INTO individual_links (tenant_id, individual_id, source, connection, external_id) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&tenant)
            .bind(&id)
            .bind(link.source.as_str())
            .bind(&link.connection)
            .bind(&link.external_id)
            .execute(&mut *conn)
            .await
            .map_err(unique_or_storage(
                "source identity",
                &format!("{}:{}:{}", link.source.as_str(), link.connection, link.external_id),
            ))?;
        }
    }
    append_audit(conn, &write.audit).await?;
    if let Some(event) = &write.event {
        append_change_event(conn, event).await?;
    }
    Ok(true)
}

/// Individuals for many rows, with their links read in one query per 500 rows instead
/// of one per individual.
async fn load_many(conn: &mut AnyConnection, rows: Vec<AnyRow>) -> DomainResult<Vec<Individual>> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(500) {
        let ids: Vec<String> =
            chunk.iter().map(|r| r.try_get::<String, _>("id").map_err(storage)).collect::<Result<_, _>>()?;
        let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT individual_id, source, connection, external_id FROM individual_links
             WHERE individual_id IN ({}) ORDER BY individual_id, source, connection, external_id",
            placeholders.join(", ")
        );
        let mut query = sqlx::query_as::<_, (String, String, String, String)>(&sql);
        for id in &ids {
            query = query.bind(id);
        }
        let mut links: std::collections::HashMap<String, Vec<SourceLink>> = std::collections::HashMap::new();
        for (individual, source, connection, external_id) in query.fetch_all(&mut *conn).await.map_err(storage)? {
            links.entry(individual).or_default().push(SourceLink {
                source: SourceKind::parse(&source)?,
                connection,
                external_id,
            });
        }
        for (row, id) in chunk.iter().zip(&ids) {
            out.push(individual_from_row(row, links.remove(id).unwrap_or_default())?);
        }
    }
    Ok(out)
}

impl SqlStore {
    pub(crate) async fn individual_write(&self, write: &IndividualWrite) -> DomainResult<Individual> {
        let i = &write.individual;
        let tenant = i.tenant_id.0.to_string();
        let id = i.id.0.to_string();
        let mut tx = self.begin().await?;
        if !write_in(&mut tx, write, micros(jiff::Timestamp::now())).await? {
            let found: Option<(i64,)> =
                sqlx::query_as("SELECT version FROM individuals WHERE tenant_id = $1 AND id = $2")
                    .bind(&tenant)
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(storage)?;
            return Err(match found {
                Some((found,)) => DomainError::VersionConflict {
                    kind: "individual",
                    key: i.login.clone(),
                    expected: write.expected_version.unwrap_or(0),
                    found,
                },
                None => DomainError::not_found("individual", id),
            });
        }
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM individuals WHERE tenant_id = $1 AND id = $2"))
            .bind(&tenant)
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(storage)?;
        let stored = load(&mut tx, row)
            .await?
            .ok_or_else(|| DomainError::Storage("individual vanished inside its own transaction".into()))?;
        tx.commit().await.map_err(storage)?;
        Ok(stored)
    }

    pub(crate) async fn individual_write_batch(&self, writes: &[IndividualWrite]) -> DomainResult<Vec<bool>> {
        let mut tx = self.begin().await?;
        let now = micros(jiff::Timestamp::now());
        let mut out = Vec::with_capacity(writes.len());
        for write in writes {
            out.push(write_in(&mut tx, write, now).await?);
        }
        tx.commit().await.map_err(storage)?;
        Ok(out)
    }

    pub(crate) async fn individual_count_holding_access(&self, tenant: TenantId) -> DomainResult<u64> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM individuals WHERE tenant_id = $1 AND status IN ('pending', 'active')")
                .bind(tenant.0.to_string())
                .fetch_one(&self.pool)
                .await
                .map_err(storage)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn individual_by_links(
        &self,
        tenant: TenantId,
        source: SourceKind,
        connection: &str,
        external_ids: &[String],
    ) -> DomainResult<Vec<Individual>> {
        let mut conn = self.pool.acquire().await.map_err(storage)?;
        let mut out = Vec::with_capacity(external_ids.len());
        for chunk in external_ids.chunks(500) {
            let placeholders: Vec<String> = (0..chunk.len()).map(|n| format!("${}", n + 4)).collect();
            let columns: Vec<String> = COLUMNS.split(',').map(|c| format!("i.{}", c.trim())).collect();
            let sql = format!(
                "SELECT {} FROM individual_links l
                 JOIN individuals i ON i.tenant_id = l.tenant_id AND i.id = l.individual_id
                 WHERE l.tenant_id = $1 AND l.source = $2 AND l.connection = $3 AND l.external_id IN ({})",
                columns.join(", "),
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(tenant.0.to_string()).bind(source.as_str()).bind(connection);
            for id in chunk {
                query = query.bind(id);
            }
            let rows = query.fetch_all(&mut *conn).await.map_err(storage)?;
            out.extend(load_many(&mut conn, rows).await?);
        }
        Ok(out)
    }

    pub(crate) async fn individual_get(&self, tenant: TenantId, id: IndividualId) -> DomainResult<Option<Individual>> {
        let mut conn = self.pool.acquire().await.map_err(storage)?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM individuals WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.0.to_string())
            .bind(id.0.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(storage)?;
        load(&mut conn, row).await
    }

    pub(crate) async fn individual_by_login(&self, tenant: TenantId, login: &str) -> DomainResult<Option<Individual>> {
        let mut conn = self.pool.acquire().await.map_err(storage)?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM individuals WHERE tenant_id = $1 AND login_key = $2"))
            .bind(tenant.0.to_string())
            .bind(login.to_lowercase())
            .fetch_optional(&mut *conn)
            .await
            .map_err(storage)?;
        load(&mut conn, row).await
    }

    pub(crate) async fn individual_by_link(
        &self,
        tenant: TenantId,
        source: SourceKind,
        connection: &str,
        external_id: &str,
    ) -> DomainResult<Option<Individual>> {
        let mut conn = self.pool.acquire().await.map_err(storage)?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM individuals WHERE tenant_id = $1 AND id = (
                SELECT individual_id FROM individual_links
                WHERE tenant_id = $1 AND source = $2 AND connection = $3 AND external_id = $4)"
        ))
        .bind(tenant.0.to_string())
        .bind(source.as_str())
        .bind(connection)
        .bind(external_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(storage)?;
        load(&mut conn, row).await
    }

    pub(crate) async fn individual_due(&self, now: jiff::Timestamp, limit: u32) -> DomainResult<Vec<Individual>> {
        let mut conn = self.pool.acquire().await.map_err(storage)?;
        // Two index-friendly halves rather than one OR over both columns.
        let mut rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM individuals WHERE activation_at <= $1 AND status = 'pending' ORDER BY activation_at LIMIT $2"
        ))
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(storage)?;
        rows.extend(
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM individuals WHERE expiration_at <= $1 AND status IN ('pending', 'active')
                 ORDER BY expiration_at LIMIT $2"
            ))
            .bind(micros(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await
            .map_err(storage)?,
        );
        let mut seen = std::collections::HashSet::new();
        Ok(load_many(&mut conn, rows).await?.into_iter().filter(|i| seen.insert(i.id)).collect())
    }

    pub(crate) async fn individual_deprovision_due(
        &self,
        tenant: TenantId,
        grace_cutoff: jiff::Timestamp,
        retention_cutoff: jiff::Timestamp,
        limit: u32,
    ) -> DomainResult<Vec<Individual>> {
        let mut conn = self.pool.acquire().await.map_err(storage)?;
        let mut rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM individuals WHERE tenant_id = $1 AND status = 'suspended'
               AND deprovisioned_at IS NOT NULL AND deprovisioned_at <= $2 LIMIT $3"
        ))
        .bind(tenant.0.to_string())
        .bind(micros(grace_cutoff))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(storage)?;
        rows.extend(
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM individuals WHERE tenant_id = $1 AND status = 'expired'
                   AND COALESCE(deprovisioned_at, expiration_at, updated_at) <= $2 LIMIT $3"
            ))
            .bind(tenant.0.to_string())
            .bind(micros(retention_cutoff))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await
            .map_err(storage)?,
        );
        load_many(&mut conn, rows).await
    }

    pub(crate) async fn individual_list(&self, tenant: TenantId, q: &IndividualQuery) -> DomainResult<Vec<Individual>> {
        let mut conn = self.pool.acquire().await.map_err(storage)?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM individuals
             WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR login_key > $3)
             ORDER BY login_key LIMIT $4"
        ))
        .bind(tenant.0.to_string())
        .bind(q.status.map(|s| s.as_str()))
        .bind(q.after_login.as_ref().map(|l| l.to_lowercase()))
        .bind(i64::from(q.limit.clamp(1, 10_000)))
        .fetch_all(&mut *conn)
        .await
        .map_err(storage)?;
        load_many(&mut conn, rows).await
    }
}
