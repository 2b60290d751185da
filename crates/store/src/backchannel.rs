//! The back-channel logout queue (`backchannel_logouts`): rows written in the transaction
//! that ends sessions, claimed by the sender with a lease, deleted once delivered, kept
//! as dead after the retry period.

use idbridge_core::DomainResult;
use idbridge_core::individual::IndividualId;
use idbridge_core::sso::{BackchannelLogout, BackchannelStats};
use idbridge_core::tenant::TenantId;
use jiff::{SignedDuration, Timestamp};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::convert::{micros, storage, timestamp, uuid};
use crate::{Backend, SqlStore};

const COLUMNS: &str = "id, tenant_id, individual_id, session_id, client_id, created_at, attempts, last_error, dead_at";

/// Rows per statement (bind parameters stay far below every backend's limit).
const CHUNK: usize = 200;

/// Records, inside the caller's transaction, a logout owed to each portal of each ended
/// session.
pub(crate) async fn owe(
    conn: &mut AnyConnection,
    tenant: TenantId,
    ended: &[(IndividualId, Uuid, Vec<String>)],
    now: Timestamp,
) -> DomainResult<()> {
    let rows: Vec<(IndividualId, Uuid, &String)> = ended
        .iter()
        .flat_map(|(individual, session, clients)| clients.iter().map(move |c| (*individual, *session, c)))
        .collect();
    for chunk in rows.chunks(CHUNK) {
        let values: Vec<String> =
            (0..chunk.len()).map(|n| format!("($1, ${}, ${}, ${}, $2, $2)", 3 + n * 3, 4 + n * 3, 5 + n * 3)).collect();
        let sql = format!(
            "INSERT INTO backchannel_logouts (tenant_id, individual_id, session_id, client_id, created_at, due_at)
             VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(tenant.0.to_string()).bind(micros(now));
        for (individual, session, client) in chunk {
            query = query.bind(individual.0.to_string()).bind(session.to_string()).bind(client.as_str());
        }
        query.execute(&mut *conn).await.map_err(storage)?;
    }
    Ok(())
}

fn from_row(row: &sqlx::any::AnyRow) -> DomainResult<BackchannelLogout> {
    Ok(BackchannelLogout {
        id: row.try_get("id").map_err(storage)?,
        tenant_id: TenantId(uuid("tenant_id", &row.try_get::<String, _>("tenant_id").map_err(storage)?)?),
        individual_id: IndividualId(uuid(
            "individual_id",
            &row.try_get::<String, _>("individual_id").map_err(storage)?,
        )?),
        session_id: uuid("session_id", &row.try_get::<String, _>("session_id").map_err(storage)?)?,
        client_id: row.try_get("client_id").map_err(storage)?,
        created_at: timestamp(row.try_get("created_at").map_err(storage)?)?,
        attempts: row.try_get("attempts").map_err(storage)?,
        last_error: row.try_get("last_error").map_err(storage)?,
        dead_at: row.try_get::<Option<i64>, _>("dead_at").map_err(storage)?.map(timestamp).transpose()?,
    })
}

impl SqlStore {
    pub(crate) async fn backchannel_claim(
        &self,
        now: Timestamp,
        lease: SignedDuration,
        limit: u32,
    ) -> DomainResult<Vec<BackchannelLogout>> {
        // PostgreSQL: concurrent senders skip each other's rows. SQLite has one writer.
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE backchannel_logouts SET due_at = $1, attempts = attempts + 1
             WHERE id IN (SELECT id FROM backchannel_logouts WHERE due_at <= $2 AND dead_at IS NULL
                          ORDER BY due_at, id LIMIT $3 {lock})
             RETURNING {COLUMNS}"
        );
        let mut tx = self.begin().await?;
        let rows = sqlx::query(&sql)
            .bind(micros(now + lease))
            .bind(micros(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        let mut out = rows.iter().map(from_row).collect::<DomainResult<Vec<_>>>()?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    pub(crate) async fn backchannel_done(&self, id: i64) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM backchannel_logouts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        tx.commit().await.map_err(storage)
    }

    pub(crate) async fn backchannel_failed(
        &self,
        id: i64,
        due: Option<Timestamp>,
        error: &str,
        now: Timestamp,
    ) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        match due {
            Some(due) => sqlx::query("UPDATE backchannel_logouts SET due_at = $1, last_error = $2 WHERE id = $3")
                .bind(micros(due))
                .bind(error)
                .bind(id),
            None => sqlx::query("UPDATE backchannel_logouts SET dead_at = $1, last_error = $2 WHERE id = $3")
                .bind(micros(now))
                .bind(error)
                .bind(id),
        }
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        tx.commit().await.map_err(storage)
    }

    pub(crate) async fn backchannel_stats(&self, now: Timestamp) -> DomainResult<BackchannelStats> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN dead_at IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS queued,
                    CAST(COALESCE(SUM(CASE WHEN dead_at IS NULL AND last_error IS NOT NULL THEN 1 ELSE 0 END), 0)
                         AS BIGINT) AS failing,
                    CAST(COALESCE(SUM(CASE WHEN dead_at IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) AS dead,
                    MIN(CASE WHEN dead_at IS NULL THEN created_at END) AS oldest
             FROM backchannel_logouts",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(storage)?;
        let count = |name: &str| -> DomainResult<u64> {
            Ok(u64::try_from(row.try_get::<i64, _>(name).map_err(storage)?).unwrap_or(0))
        };
        let oldest: Option<i64> = row.try_get("oldest").map_err(storage)?;
        Ok(BackchannelStats {
            queued: count("queued")?,
            failing: count("failing")?,
            dead: count("dead")?,
            oldest_seconds: oldest.map_or(0, |o| u64::try_from((micros(now) - o).max(0) / 1_000_000).unwrap_or(0)),
        })
    }

    pub(crate) async fn backchannel_dead(&self, limit: u32) -> DomainResult<Vec<BackchannelLogout>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM backchannel_logouts WHERE dead_at IS NOT NULL ORDER BY dead_at DESC, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(from_row).collect()
    }
}
