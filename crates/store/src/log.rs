//! The audit log and the change-event outbox: appended inside the writer's transaction.

use idbridge_core::DomainResult;
use idbridge_core::audit::{Actor, ActorKind, AuditEntry, AuditQuery, AuditRecord, ChangeEvent, ChangeKind};
use idbridge_core::individual::IndividualId;
use idbridge_core::tenant::TenantId;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::SqlStore;
use crate::convert::{from_json, micros, storage, timestamp, to_json, uuid};
use crate::stored;

pub(crate) async fn append_audit(conn: &mut AnyConnection, record: &AuditRecord) -> DomainResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, at, actor_kind, actor_id, subject_kind, subject_id, action, before, after, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(record.tenant_id.map(|t| t.0.to_string()))
    .bind(micros(record.at))
    .bind(record.actor.kind.as_str())
    .bind(&record.actor.id)
    .bind(&record.subject_kind)
    .bind(&record.subject_id)
    .bind(&record.action)
    .bind(record.before.as_ref().map(to_json))
    .bind(record.after.as_ref().map(to_json))
    .bind(&record.request_id)
    .execute(conn)
    .await
    .map_err(storage)?;
    Ok(())
}

/// Many audit records in one statement per 500.
pub(crate) async fn append_audit_many<'r>(
    backend: crate::Backend,
    conn: &mut AnyConnection,
    records: impl Iterator<Item = &'r AuditRecord>,
) -> DomainResult<()> {
    let records: Vec<&AuditRecord> = records.collect();
    for chunk in records.chunks(500) {
        let sql = format!(
            "INSERT INTO audit_log (tenant_id, at, actor_kind, actor_id, subject_kind, subject_id, action, before, after, request_id)
             VALUES {}",
            crate::rows::value_rows(backend, chunk.len(), 10, &[1])
        );
        let mut query = sqlx::query(&sql);
        for record in chunk {
            query = query
                .bind(record.tenant_id.map(|t| t.0.to_string()))
                .bind(micros(record.at))
                .bind(record.actor.kind.as_str())
                .bind(record.actor.id.clone())
                .bind(record.subject_kind.clone())
                .bind(record.subject_id.clone())
                .bind(record.action.clone())
                .bind(record.before.as_ref().map(to_json))
                .bind(record.after.as_ref().map(to_json))
                .bind(record.request_id.clone());
        }
        query.execute(&mut *conn).await.map_err(storage)?;
    }
    Ok(())
}

/// Many change events in one statement per 500, in the order given (their outbox order).
pub(crate) async fn append_change_events_many<'e>(
    backend: crate::Backend,
    conn: &mut AnyConnection,
    events: impl Iterator<Item = &'e ChangeEvent>,
) -> DomainResult<()> {
    let events: Vec<&ChangeEvent> = events.collect();
    for chunk in events.chunks(500) {
        let sql = format!(
            "INSERT INTO change_events (id, tenant_id, individual_id, kind, individual, permission_diff, at) VALUES {}",
            crate::rows::value_rows(backend, chunk.len(), 7, &[6])
        );
        let mut query = sqlx::query(&sql);
        for event in chunk {
            query = query
                .bind(event.id.to_string())
                .bind(event.tenant_id.0.to_string())
                .bind(event.individual_id.0.to_string())
                .bind(event.kind.as_str())
                .bind(stored::write(&event.individual))
                .bind(event.permission_diff.as_ref().map(stored::write))
                .bind(micros(event.at));
        }
        query.execute(&mut *conn).await.map_err(storage)?;
    }
    Ok(())
}

fn audit_from_row(row: &AnyRow) -> DomainResult<AuditEntry> {
    let get_s = |c: &str| row.try_get::<String, _>(c).map_err(storage);
    let get_o = |c: &str| row.try_get::<Option<String>, _>(c).map_err(storage);
    let tenant_id = get_o("tenant_id")?.map(|t| uuid("tenant_id", &t).map(TenantId)).transpose()?;
    Ok(AuditEntry {
        id: row.try_get("id").map_err(storage)?,
        record: AuditRecord {
            tenant_id,
            actor: Actor { kind: ActorKind::parse(&get_s("actor_kind")?)?, id: get_s("actor_id")? },
            subject_kind: get_s("subject_kind")?,
            subject_id: get_s("subject_id")?,
            action: get_s("action")?,
            before: get_o("before")?.map(|t| from_json("audit before", &t)).transpose()?,
            after: get_o("after")?.map(|t| from_json("audit after", &t)).transpose()?,
            request_id: get_o("request_id")?,
            at: timestamp(row.try_get("at").map_err(storage)?)?,
        },
    })
}

fn event_from_row(row: &AnyRow, tenant: TenantId) -> DomainResult<(i64, ChangeEvent)> {
    let get_s = |c: &str| row.try_get::<String, _>(c).map_err(storage);
    let event = ChangeEvent {
        id: uuid("change id", &get_s("id")?)?,
        tenant_id: tenant,
        individual_id: IndividualId(uuid("individual_id", &get_s("individual_id")?)?),
        kind: ChangeKind::parse(&get_s("kind")?)?,
        individual: stored::read("change individual", &get_s("individual")?)?,
        permission_diff: row
            .try_get::<Option<String>, _>("permission_diff")
            .map_err(storage)?
            .map(|t| stored::read("permission_diff", &t))
            .transpose()?,
        at: timestamp(row.try_get("at").map_err(storage)?)?,
    };
    Ok((row.try_get::<i64, _>("position").map_err(storage)?, event))
}

impl SqlStore {
    pub(crate) async fn audit_list(&self, q: &AuditQuery) -> DomainResult<Vec<AuditEntry>> {
        // Optional filters are written as `($n IS NULL OR col = $n)` so that one statement
        // serves every combination and is prepared once.
        let rows = sqlx::query(
            "SELECT id, tenant_id, at, actor_kind, actor_id, subject_kind, subject_id, action, before, after, request_id
             FROM audit_log
             WHERE (($1 IS NULL AND tenant_id IS NULL) OR tenant_id = $1)
               AND ($2 IS NULL OR at >= $2)
               AND ($3 IS NULL OR at < $3)
               AND ($4 IS NULL OR actor_id = $4)
               AND ($5 IS NULL OR subject_id = $5)
               AND id > $6
             ORDER BY id
             LIMIT $7",
        )
        .bind(q.tenant_id.map(|t| t.0.to_string()))
        .bind(q.since.map(micros))
        .bind(q.until.map(micros))
        .bind(&q.actor)
        .bind(&q.subject)
        .bind(q.after_id.unwrap_or(0))
        .bind(i64::from(q.limit.clamp(1, 10_000)))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(audit_from_row).collect()
    }

    pub(crate) async fn change_events_all(&self, after: i64, limit: u32) -> DomainResult<Vec<(i64, ChangeEvent)>> {
        let rows = sqlx::query(
            "SELECT position, id, tenant_id, individual_id, kind, individual, permission_diff, at FROM change_events
             WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter()
            .map(|row| {
                let tenant = TenantId(uuid("tenant_id", &row.try_get::<String, _>("tenant_id").map_err(storage)?)?);
                event_from_row(row, tenant)
            })
            .collect()
    }

    pub(crate) async fn consumer_position(&self, consumer: &str) -> DomainResult<i64> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT position FROM outbox_consumers WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?;
        Ok(row.map_or(0, |(p,)| p))
    }

    pub(crate) async fn advance_consumer(
        &self,
        consumer: &str,
        position: i64,
        dead: Option<(&ChangeEvent, &str)>,
    ) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO outbox_consumers (consumer, position) VALUES ($1, $2)
             ON CONFLICT (consumer) DO UPDATE SET position = excluded.position",
        )
        .bind(consumer)
        .bind(position)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        if let Some((event, error)) = dead {
            sqlx::query(
                "INSERT INTO outbox_dead_letters (consumer, position, event_id, last_error, failed_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (consumer, position) DO NOTHING",
            )
            .bind(consumer)
            .bind(position)
            .bind(event.id.to_string())
            .bind(error)
            .bind(micros(idbridge_core::clock::now()))
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        }
        tx.commit().await.map_err(storage)
    }

    pub(crate) async fn change_events_list(
        &self,
        tenant: TenantId,
        after: i64,
        limit: u32,
    ) -> DomainResult<Vec<(i64, ChangeEvent)>> {
        let rows = sqlx::query(
            "SELECT position, id, individual_id, kind, individual, permission_diff, at FROM change_events
             WHERE tenant_id = $1 AND position > $2 ORDER BY position LIMIT $3",
        )
        .bind(tenant.0.to_string())
        .bind(after)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(|row| event_from_row(row, tenant)).collect()
    }
}
