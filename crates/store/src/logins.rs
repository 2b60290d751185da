//! Login records: what each person's last sign-in said (`ports::LoginRecordStore`).

use async_trait::async_trait;
use idbridge_core::DomainResult;
use idbridge_core::individual::SourceLink;
use idbridge_core::intent;
use idbridge_core::ports::LoginRecordStore;
use idbridge_core::reconcile::SourcePerson;
use idbridge_core::tenant::TenantId;
use jiff::Timestamp;
use sqlx::Row;

use crate::SqlStore;
use crate::convert::{micros, storage, timestamp};
use crate::stored;

fn record(person: &str, at: i64) -> DomainResult<(SourcePerson, Timestamp)> {
    Ok((stored::read_person("login person", person)?, timestamp(at)?))
}

#[async_trait]
impl LoginRecordStore for SqlStore {
    async fn put_login_record(&self, tenant: TenantId, person: &SourcePerson, at: Timestamp) -> DomainResult<i64> {
        let tenant = tenant.0.to_string();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO login_records (tenant_id, connection, subject, person, logged_in_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, connection, subject) DO UPDATE SET person = excluded.person,
                 logged_in_at = excluded.logged_in_at",
        )
        .bind(&tenant)
        .bind(&person.link.connection)
        .bind(&person.link.external_id)
        .bind(stored::write_person(person))
        .bind(micros(at))
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        let row = sqlx::query(
            "INSERT INTO reconcile_intents (tenant_id, source, connection, external_id, created_at, due_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&tenant)
        .bind(person.link.source.as_str())
        .bind(&person.link.connection)
        .bind(&person.link.external_id)
        .bind(micros(at))
        .bind(micros(at + intent::FAST_PATH_GRACE))
        .fetch_one(&mut *tx)
        .await
        .map_err(storage)?;
        let id: i64 = row.try_get("id").map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        Ok(id)
    }

    async fn login_record(
        &self,
        tenant: TenantId,
        link: &SourceLink,
    ) -> DomainResult<Option<(SourcePerson, Timestamp)>> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT person, logged_in_at FROM login_records WHERE tenant_id = $1 AND connection = $2 AND subject = $3",
        )
        .bind(tenant.0.to_string())
        .bind(&link.connection)
        .bind(&link.external_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.map(|(p, at)| record(&p, at)).transpose()
    }

    async fn login_records_after(
        &self,
        tenant: TenantId,
        after: Option<&(String, String)>,
        limit: u32,
    ) -> DomainResult<Vec<(SourcePerson, Timestamp)>> {
        let (connection, subject) = after.cloned().unwrap_or_default();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT person, logged_in_at FROM login_records
             WHERE tenant_id = $1 AND (connection > $2 OR (connection = $2 AND subject > $3))
             ORDER BY connection, subject LIMIT $4",
        )
        .bind(tenant.0.to_string())
        .bind(connection)
        .bind(subject)
        .bind(i64::from(limit.clamp(1, 100_000)))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(|(p, at)| record(p, *at)).collect()
    }
}
