//! The durable-intent queue (`core::intent`): rows written inside source writes'
//! transactions, claimed by the worker with a lease, deleted when settled.

use idbridge_core::individual::{SourceKind, SourceLink};
use idbridge_core::intent::{self, Intent, IntentStats};
use idbridge_core::tenant::TenantId;
use idbridge_core::{DomainError, DomainResult};
use jiff::Timestamp;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::convert::{micros, storage, timestamp, uuid};
use crate::{Backend, SqlStore};

/// Ids per statement (bind parameters stay far below every backend's limit).
const CHUNK: usize = 400;

const SCIM: &str = "scim";

/// Records an intent for each SCIM user among `ids` (ids of groups or of nothing are
/// left out), returning the intent ids and the users they name.
pub(crate) async fn scim_users(
    conn: &mut AnyConnection,
    tenant: &str,
    ids: &[Uuid],
    change: Uuid,
    now: Timestamp,
    out: &mut idbridge_core::intent::Owed,
) -> DomainResult<()> {
    let due = micros(now + intent::FAST_PATH_GRACE);
    for chunk in ids.chunks(CHUNK) {
        let list: Vec<String> = (0..chunk.len()).map(|n| format!("${}", n + 6)).collect();
        let sql = format!(
            "INSERT INTO reconcile_intents (tenant_id, source, connection, external_id, created_at, due_at, change_id)
             SELECT tenant_id, $2, $2, id, $3, $4, $5 FROM scim_resources
             WHERE tenant_id = $1 AND kind = 'User' AND id IN ({})
             RETURNING id, external_id",
            list.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(tenant).bind(SCIM).bind(micros(now)).bind(due).bind(change.to_string());
        for id in chunk {
            query = query.bind(id.to_string());
        }
        collect(query.fetch_all(&mut *conn).await.map_err(storage)?, out)?;
    }
    Ok(())
}

/// Records an intent for every user that is a member of `group` now.
pub(crate) async fn scim_members_of(
    conn: &mut AnyConnection,
    tenant: &str,
    group: &str,
    change: Uuid,
    now: Timestamp,
    out: &mut idbridge_core::intent::Owed,
) -> DomainResult<()> {
    let rows = sqlx::query(
        "INSERT INTO reconcile_intents (tenant_id, source, connection, external_id, created_at, due_at, change_id)
         SELECT tenant_id, $3, $3, member_id, $4, $5, $6 FROM scim_members
         WHERE tenant_id = $1 AND group_id = $2 AND member_kind = 'User'
         RETURNING id, external_id",
    )
    .bind(tenant)
    .bind(group)
    .bind(SCIM)
    .bind(micros(now))
    .bind(micros(now + intent::FAST_PATH_GRACE))
    .bind(change.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(storage)?;
    collect(rows, out)
}

fn collect(rows: Vec<sqlx::any::AnyRow>, out: &mut idbridge_core::intent::Owed) -> DomainResult<()> {
    for row in rows {
        out.intents.push(row.try_get("id").map_err(storage)?);
        out.users.push(uuid("intent person", &row.try_get::<String, _>("external_id").map_err(storage)?)?);
    }
    Ok(())
}

fn intent_from_row(row: &sqlx::any::AnyRow) -> DomainResult<Intent> {
    let get_s = |c: &str| row.try_get::<String, _>(c).map_err(storage);
    Ok(Intent {
        id: row.try_get("id").map_err(storage)?,
        tenant_id: TenantId(uuid("tenant_id", &get_s("tenant_id")?)?),
        person: SourceLink {
            source: SourceKind::parse(&get_s("source")?)
                .map_err(|e| DomainError::Storage(format!("stored intent source: {e}")))?,
            connection: get_s("connection")?,
            external_id: get_s("external_id")?,
        },
        created_at: timestamp(row.try_get("created_at").map_err(storage)?)?,
        attempts: row.try_get("attempts").map_err(storage)?,
        last_error: row.try_get("last_error").map_err(storage)?,
    })
}

const COLUMNS: &str = "id, tenant_id, source, connection, external_id, created_at, attempts, last_error";

impl SqlStore {
    pub(crate) async fn intents_add(
        &self,
        tenant: TenantId,
        people: &[SourceLink],
        due: Timestamp,
    ) -> DomainResult<Vec<i64>> {
        let now = micros(idbridge_core::clock::now());
        let mut ids = Vec::with_capacity(people.len());
        let mut tx = self.begin().await?;
        for chunk in people.chunks(CHUNK / 4) {
            let mut values = Vec::with_capacity(chunk.len());
            for n in 0..chunk.len() {
                let b = 4 + n * 3;
                values.push(format!("($1, ${}, ${}, ${}, $2, $3)", b, b + 1, b + 2));
            }
            let sql = format!(
                "INSERT INTO reconcile_intents (tenant_id, source, connection, external_id, created_at, due_at)
                 VALUES {} RETURNING id",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(tenant.0.to_string()).bind(now).bind(micros(due));
            for link in chunk {
                query = query.bind(link.source.as_str()).bind(&link.connection).bind(&link.external_id);
            }
            for row in query.fetch_all(&mut *tx).await.map_err(storage)? {
                ids.push(row.try_get("id").map_err(storage)?);
            }
        }
        tx.commit().await.map_err(storage)?;
        Ok(ids)
    }

    /// Takes due intents by whole source changes: the oldest due intents name the changes
    /// to take, and a change is taken — every one of its intents — only when none of
    /// them is still to come (a Bulk request in flight keeps recording intents due a
    /// grace after each operation) or held by another claim. So a request's people are
    /// always planned together, and the mass-deprovision guard sees the whole request.
    pub(crate) async fn intents_claim(&self, now: Timestamp, limit: u32) -> DomainResult<Vec<Intent>> {
        // PostgreSQL: concurrent claimers skip each other's rows instead of taking the same
        // ones. SQLite has one writer at a time, so the transaction is already exclusive.
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let mut tx = self.begin().await?;
        let seeds = sqlx::query(&format!(
            "SELECT id, change_id FROM reconcile_intents WHERE due_at <= $1 ORDER BY due_at, id LIMIT $2 {lock}"
        ))
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(storage)?;
        let mut single: Vec<i64> = Vec::new();
        let mut changes: Vec<String> = Vec::new();
        for row in &seeds {
            match row.try_get::<Option<String>, _>("change_id").map_err(storage)? {
                Some(change) => changes.push(change),
                None => single.push(row.try_get("id").map_err(storage)?),
            }
        }
        changes.sort_unstable();
        changes.dedup();
        let mut whole: Vec<String> = Vec::with_capacity(changes.len());
        for chunk in changes.chunks(CHUNK) {
            let list: Vec<String> = (0..chunk.len()).map(|n| format!("${}", n + 2)).collect();
            let sql = format!(
                "SELECT DISTINCT change_id FROM reconcile_intents WHERE change_id IN ({}) AND due_at > $1",
                list.join(", ")
            );
            let mut query = sqlx::query_as::<_, (String,)>(&sql).bind(micros(now));
            for change in chunk {
                query = query.bind(change);
            }
            let pending: std::collections::HashSet<String> =
                query.fetch_all(&mut *tx).await.map_err(storage)?.into_iter().map(|(c,)| c).collect();
            whole.extend(chunk.iter().filter(|c| !pending.contains(*c)).cloned());
        }
        let lease = micros(now + intent::CLAIM_LEASE);
        let mut rows = Vec::new();
        for chunk in single.chunks(CHUNK) {
            let list: Vec<String> = (0..chunk.len()).map(|n| format!("${}", n + 2)).collect();
            let sql = format!(
                "UPDATE reconcile_intents SET due_at = $1, attempts = attempts + 1 WHERE id IN ({}) RETURNING {COLUMNS}",
                list.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(lease);
            for id in chunk {
                query = query.bind(*id);
            }
            rows.extend(query.fetch_all(&mut *tx).await.map_err(storage)?);
        }
        for chunk in whole.chunks(CHUNK) {
            let list: Vec<String> = (0..chunk.len()).map(|n| format!("${}", n + 2)).collect();
            let sql = format!(
                "UPDATE reconcile_intents SET due_at = $1, attempts = attempts + 1 WHERE change_id IN ({})
                 RETURNING {COLUMNS}",
                list.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(lease);
            for change in chunk {
                query = query.bind(change);
            }
            rows.extend(query.fetch_all(&mut *tx).await.map_err(storage)?);
        }
        tx.commit().await.map_err(storage)?;
        let mut out = rows.iter().map(intent_from_row).collect::<DomainResult<Vec<_>>>()?;
        out.sort_by_key(|i| i.id);
        Ok(out)
    }

    pub(crate) async fn intents_clear(&self, ids: &[i64]) -> DomainResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for chunk in ids.chunks(CHUNK) {
            let list: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!("DELETE FROM reconcile_intents WHERE id IN ({})", list.join(", "));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut *tx).await.map_err(storage)?;
        }
        tx.commit().await.map_err(storage)
    }

    pub(crate) async fn intents_retry(&self, retry: &[(i64, Timestamp)], error: &str) -> DomainResult<()> {
        if retry.is_empty() {
            return Ok(());
        }
        // Failures are the rare path: one statement per intent keeps it plain.
        let mut tx = self.begin().await?;
        for (id, due) in retry {
            sqlx::query("UPDATE reconcile_intents SET due_at = $1, last_error = $2 WHERE id = $3")
                .bind(micros(*due))
                .bind(error)
                .bind(*id)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
        }
        tx.commit().await.map_err(storage)
    }

    pub(crate) async fn intents_release(&self, now: Timestamp) -> DomainResult<u64> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE reconcile_intents SET due_at = $1 WHERE due_at > $1")
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM reconcile_intents").fetch_one(&mut *tx).await.map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn intents_stats(&self, now: Timestamp) -> DomainResult<IntentStats> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS queued, MIN(created_at) AS oldest,
                    COALESCE(SUM(CASE WHEN last_error IS NULL THEN 0 ELSE 1 END), 0) AS failing
             FROM reconcile_intents",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(storage)?;
        let queued: i64 = row.try_get("queued").map_err(storage)?;
        let oldest: Option<i64> = row.try_get("oldest").map_err(storage)?;
        let failing: i64 = row.try_get("failing").map_err(storage)?;
        let last_error: Option<(String,)> = sqlx::query_as(
            "SELECT last_error FROM reconcile_intents WHERE last_error IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        let oldest_seconds =
            oldest.map(|o| u64::try_from((micros(now) - o).max(0) / 1_000_000).unwrap_or(0)).unwrap_or(0);
        Ok(IntentStats {
            queued: u64::try_from(queued).unwrap_or(0),
            oldest_seconds,
            failing: u64::try_from(failing).unwrap_or(0),
            last_error: last_error.map(|(e,)| e),
        })
    }

    pub(crate) async fn intents_of(&self, tenant: TenantId, people: &[SourceLink]) -> DomainResult<Vec<Intent>> {
        let mut out = Vec::new();
        for person in people {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM reconcile_intents
                 WHERE tenant_id = $1 AND source = $2 AND connection = $3 AND external_id = $4 ORDER BY id"
            ))
            .bind(tenant.0.to_string())
            .bind(person.source.as_str())
            .bind(&person.connection)
            .bind(&person.external_id)
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?;
            for row in &rows {
                out.push(intent_from_row(row)?);
            }
        }
        Ok(out)
    }
}
