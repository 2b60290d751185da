//! Directory source records (what each LDAP source said at its last complete run) and
//! sync runs.

use std::collections::HashMap;

use async_trait::async_trait;
use idbridge_core::DomainResult;
use idbridge_core::directory::{RunStatus, SyncRun};
use idbridge_core::ports::{DirectoryRecord, DirectoryStore, GroupsSeen, RecordDigest};
use idbridge_core::reconcile::SourcePerson;
use idbridge_core::tenant::TenantId;
use sqlx::Row;

use crate::SqlStore;
use crate::convert::{micros, storage, timestamp, uuid};
use crate::rows::{placeholders, value_rows};
use crate::stored;

#[async_trait]
impl DirectoryStore for SqlStore {
    async fn directory_hashes(&self, tenant: TenantId, source: &str) -> DomainResult<HashMap<String, RecordDigest>> {
        let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT external_id, hash, member_key, groups_digest FROM directory_records
             WHERE tenant_id = $1 AND source = $2",
        )
        .bind(tenant.0.to_string())
        .bind(source)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        Ok(rows
            .into_iter()
            .map(|(id, digest, key, groups)| {
                let groups_seen = key.zip(groups).map(|(key, digest)| GroupsSeen { key, digest });
                (id, RecordDigest { digest, groups_seen })
            })
            .collect())
    }

    async fn directory_person(
        &self,
        tenant: TenantId,
        source: &str,
        external_id: &str,
    ) -> DomainResult<Option<SourcePerson>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT person FROM directory_records WHERE tenant_id = $1 AND source = $2 AND external_id = $3",
        )
        .bind(tenant.0.to_string())
        .bind(source)
        .bind(external_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.map(|(p,)| stored::read_person("directory person", &p)).transpose()
    }

    async fn directory_persons_after(
        &self,
        tenant: TenantId,
        source: &str,
        after: Option<&str>,
        limit: u32,
    ) -> DomainResult<Vec<SourcePerson>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT person FROM directory_records WHERE tenant_id = $1 AND source = $2 AND external_id > $3
             ORDER BY external_id LIMIT $4",
        )
        .bind(tenant.0.to_string())
        .bind(source)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit.clamp(1, 100_000)))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(|(p,)| stored::read_person("directory person", p)).collect()
    }

    async fn directory_persons(
        &self,
        tenant: TenantId,
        source: &str,
        external_ids: &[String],
    ) -> DomainResult<Vec<SourcePerson>> {
        let mut people = Vec::with_capacity(external_ids.len());
        for chunk in external_ids.chunks(500) {
            let sql = format!(
                "SELECT person FROM directory_records WHERE tenant_id = {} AND source = {} AND external_id IN ({})",
                placeholders(self.backend, 1, 1),
                placeholders(self.backend, 2, 1),
                placeholders(self.backend, 3, chunk.len())
            );
            let mut query = sqlx::query_as::<_, (String,)>(&sql).bind(tenant.0.to_string()).bind(source);
            for id in chunk {
                query = query.bind(id);
            }
            for (person,) in query.fetch_all(&self.pool).await.map_err(storage)? {
                people.push(stored::read_person("directory person", &person)?);
            }
        }
        Ok(people)
    }

    async fn update_directory_records(
        &self,
        tenant: TenantId,
        source: &str,
        upserts: &[DirectoryRecord],
        deletes: &[String],
    ) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        let tenant = tenant.0.to_string();
        for chunk in deletes.chunks(500) {
            let sql = format!(
                "DELETE FROM directory_records WHERE tenant_id = {} AND source = {} AND external_id IN ({})",
                placeholders(self.backend, 1, 1),
                placeholders(self.backend, 2, 1),
                placeholders(self.backend, 3, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(&tenant).bind(source);
            for id in chunk {
                query = query.bind(id);
            }
            query.execute(&mut *tx).await.map_err(storage)?;
        }
        for chunk in upserts.chunks(500) {
            let sql = format!(
                "INSERT INTO directory_records (tenant_id, source, external_id, hash, person, member_key, groups_digest)
                 VALUES {}
                 ON CONFLICT (tenant_id, source, external_id) DO UPDATE SET hash = excluded.hash,
                 person = excluded.person, member_key = excluded.member_key, groups_digest = excluded.groups_digest",
                value_rows(self.backend, chunk.len(), 7, &[])
            );
            let mut query = sqlx::query(&sql);
            for record in chunk {
                query = query
                    .bind(&tenant)
                    .bind(source)
                    .bind(record.external_id())
                    .bind(&record.digest)
                    .bind(stored::write_person(&record.person))
                    .bind(record.groups_seen.as_ref().map(|g| g.key.clone()))
                    .bind(record.groups_seen.as_ref().map(|g| g.digest.clone()));
            }
            query.execute(&mut *tx).await.map_err(storage)?;
        }
        tx.commit().await.map_err(storage)
    }

    async fn record_sync_run(&self, run: &SyncRun) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO sync_runs (id, tenant_id, source, started_at, finished_at, status, summary, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET finished_at = excluded.finished_at, status = excluded.status,
                 summary = excluded.summary, error = excluded.error",
        )
        .bind(run.id.to_string())
        .bind(run.tenant_id.0.to_string())
        .bind(&run.source)
        .bind(micros(run.started_at))
        .bind(micros(run.finished_at))
        .bind(run.status.as_str())
        .bind(stored::write(&run.summary))
        .bind(&run.error)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        tx.commit().await.map_err(storage)
    }

    async fn abandon_sync_runs(
        &self,
        tenant: TenantId,
        source: &str,
        at: jiff::Timestamp,
        error: &str,
    ) -> DomainResult<u64> {
        let done = sqlx::query(
            "UPDATE sync_runs SET status = 'abandoned', finished_at = $1, error = $2
             WHERE tenant_id = $3 AND source = $4 AND status = 'running'",
        )
        .bind(micros(at))
        .bind(error)
        .bind(tenant.0.to_string())
        .bind(source)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(done.rows_affected())
    }

    async fn list_sync_runs(&self, tenant: Option<TenantId>, limit: u32) -> DomainResult<Vec<SyncRun>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, source, started_at, finished_at, status, summary, error FROM sync_runs
             WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY started_at DESC LIMIT $2",
        )
        .bind(tenant.map(|t| t.0.to_string()))
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter()
            .map(|row| {
                let get = |c: &str| row.try_get::<String, _>(c).map_err(storage);
                Ok(SyncRun {
                    id: uuid("sync run id", &get("id")?)?,
                    tenant_id: TenantId(uuid("tenant_id", &get("tenant_id")?)?),
                    source: get("source")?,
                    started_at: timestamp(row.try_get("started_at").map_err(storage)?)?,
                    finished_at: timestamp(row.try_get("finished_at").map_err(storage)?)?,
                    status: RunStatus::parse(&get("status")?)?,
                    summary: stored::read("summary", &get("summary")?)?,
                    error: row.try_get("error").map_err(storage)?,
                })
            })
            .collect()
    }
}
