//! Portal connectors' links (`connector_links`) and health (`connector_health`).

use idbridge_core::DomainResult;
use idbridge_core::connector::{ConnectorHealth, ConnectorLink, LinkCounts, LinkState};
use idbridge_core::individual::IndividualId;
use idbridge_core::tenant::TenantId;
use jiff::Timestamp;
use sqlx::Row;

use crate::SqlStore;
use crate::convert::{micros, storage, timestamp, uuid};
use crate::rows::{placeholders, value_rows};

const COLUMNS: &str = "tenant_id, connector, individual_id, remote_id, remote_version, pushed, wanted, done, verify, \
                       state, attempts, next_attempt_at, last_error, updated_at, remote_active, guard_passed";

/// Links per owing statement.
const CHUNK: usize = 500;

fn link_from_row(row: &sqlx::any::AnyRow) -> DomainResult<ConnectorLink> {
    let text = |c: &str| row.try_get::<String, _>(c).map_err(storage);
    let pushed: Option<String> = row.try_get("pushed").map_err(storage)?;
    let state = text("state")?;
    Ok(ConnectorLink {
        tenant_id: TenantId(uuid("tenant_id", &text("tenant_id")?)?),
        connector: text("connector")?,
        individual_id: IndividualId(uuid("individual_id", &text("individual_id")?)?),
        remote_id: row.try_get("remote_id").map_err(storage)?,
        remote_version: row.try_get("remote_version").map_err(storage)?,
        // The remote document as it was pushed; one that no longer parses is simply
        // pushed again in full.
        pushed: pushed.and_then(|p| serde_json::from_str(&p).ok()),
        wanted: row.try_get("wanted").map_err(storage)?,
        done: row.try_get("done").map_err(storage)?,
        verify: row.try_get::<i64, _>("verify").map_err(storage)? != 0,
        remote_active: row.try_get::<i64, _>("remote_active").map_err(storage)? != 0,
        guard_passed: row.try_get("guard_passed").map_err(storage)?,
        // A state a newer version wrote reads as owing a push.
        state: LinkState::parse(&state).unwrap_or(LinkState::Retrying),
        attempts: u32::try_from(row.try_get::<i64, _>("attempts").map_err(storage)?).unwrap_or(u32::MAX),
        next_attempt_at: timestamp(row.try_get("next_attempt_at").map_err(storage)?)?,
        last_error: row.try_get("last_error").map_err(storage)?,
        updated_at: timestamp(row.try_get("updated_at").map_err(storage)?)?,
    })
}

impl SqlStore {
    pub(crate) async fn connector_owe(
        &self,
        tenant: TenantId,
        connector: &str,
        individuals: &[IndividualId],
        now: Timestamp,
    ) -> DomainResult<()> {
        // One row per individual per statement (PostgreSQL refuses to update a row twice).
        let individuals: Vec<IndividualId> =
            individuals.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        if individuals.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for chunk in individuals.chunks(CHUNK) {
            // (tenant, connector, individual, now): a new link owes its first push.
            let sql = format!(
                "INSERT INTO connector_links ({COLUMNS})
                 SELECT v.column1, v.column2, v.column3, NULL, NULL, NULL, 1, 0, 0, 'synced', 0, v.column4, NULL,
                     v.column4, 0, 0
                 FROM (VALUES {}) AS v
                 WHERE true
                 ON CONFLICT (tenant_id, connector, individual_id) DO UPDATE SET
                     wanted = connector_links.wanted + 1,
                     state = CASE WHEN connector_links.state IN ('conflict', 'held', 'unexplained')
                                  THEN connector_links.state ELSE 'synced' END,
                     attempts = 0, next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at",
                value_rows(self.backend, chunk.len(), 4, &[3])
            );
            let mut query = sqlx::query(&sql);
            for individual in chunk {
                query =
                    query.bind(tenant.0.to_string()).bind(connector).bind(individual.0.to_string()).bind(micros(now));
            }
            query.execute(&mut *tx).await.map_err(storage)?;
        }
        tx.commit().await.map_err(storage)
    }

    pub(crate) async fn connector_owe_repair(
        &self,
        tenant: TenantId,
        connector: &str,
        now: Timestamp,
    ) -> DomainResult<u64> {
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE connector_links SET wanted = wanted + 1, verify = 1, attempts = 0,
                 state = CASE WHEN state IN ('held', 'unexplained') THEN state ELSE 'synced' END,
                 next_attempt_at = CAST($3 AS BIGINT), updated_at = CAST($3 AS BIGINT)
             WHERE tenant_id = $1 AND connector = $2",
        )
        .bind(tenant.0.to_string())
        .bind(connector)
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(storage)?
        .rows_affected();
        // Individuals the connector has no link for yet (made before it was configured).
        let inserted = sqlx::query(&format!(
            "INSERT INTO connector_links ({COLUMNS})
             SELECT i.tenant_id, $2, i.id, NULL, NULL, NULL, 1, 0, 1, 'synced', 0, CAST($3 AS BIGINT), NULL,
                 CAST($3 AS BIGINT), 0, 0
             FROM individuals i
             WHERE i.tenant_id = $1 AND NOT EXISTS (
                 SELECT 1 FROM connector_links l
                 WHERE l.tenant_id = i.tenant_id AND l.connector = $2 AND l.individual_id = i.id)"
        ))
        .bind(tenant.0.to_string())
        .bind(connector)
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(storage)?
        .rows_affected();
        tx.commit().await.map_err(storage)?;
        Ok(updated + inserted)
    }

    pub(crate) async fn connector_due(
        &self,
        tenant: TenantId,
        connector: &str,
        now: Timestamp,
        limit: u32,
    ) -> DomainResult<Vec<ConnectorLink>> {
        // The predicate is the owed index's, word for word, so both backends use it.
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM connector_links
             WHERE tenant_id = $1 AND connector = $2 AND wanted > done AND state IN ('synced', 'retrying')
               AND next_attempt_at <= $3
             ORDER BY next_attempt_at LIMIT $4"
        ))
        .bind(tenant.0.to_string())
        .bind(connector)
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(link_from_row).collect()
    }

    pub(crate) async fn connector_attempting(
        &self,
        tenant: TenantId,
        connector: &str,
        individuals: &[IndividualId],
    ) -> DomainResult<()> {
        if individuals.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for chunk in individuals.chunks(CHUNK) {
            let sql = format!(
                "UPDATE connector_links SET attempts = attempts + 1
                 WHERE tenant_id = {} AND connector = {} AND individual_id IN ({})",
                placeholders(self.backend, 1, 1),
                placeholders(self.backend, 2, 1),
                placeholders(self.backend, 3, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(tenant.0.to_string()).bind(connector);
            for individual in chunk {
                query = query.bind(individual.0.to_string());
            }
            query.execute(&mut *tx).await.map_err(storage)?;
        }
        tx.commit().await.map_err(storage)
    }

    pub(crate) async fn connector_finish(&self, link: &ConnectorLink) -> DomainResult<()> {
        let pushed = link.pushed.as_ref().map(|p| p.to_string());
        let mut tx = self.begin().await?;
        // `verify` is cleared only when nothing asked for a push meanwhile: a resync that
        // came during this push still gets its read-back.
        sqlx::query(
            "UPDATE connector_links SET remote_id = $4, remote_version = $5, pushed = $6,
                 done = CASE WHEN done > $7 THEN done ELSE $7 END,
                 verify = CASE WHEN wanted = $7 THEN $8 ELSE verify END,
                 state = $9, attempts = $10, next_attempt_at = $11, last_error = $12, updated_at = $13,
                 remote_active = $14
             WHERE tenant_id = $1 AND connector = $2 AND individual_id = $3",
        )
        .bind(link.tenant_id.0.to_string())
        .bind(link.connector.as_str())
        .bind(link.individual_id.0.to_string())
        .bind(link.remote_id.as_deref())
        .bind(link.remote_version.as_deref())
        .bind(pushed)
        .bind(link.done)
        .bind(i64::from(link.verify))
        .bind(link.state.as_str())
        .bind(i64::from(link.attempts))
        .bind(micros(link.next_attempt_at))
        .bind(link.last_error.as_deref())
        .bind(micros(link.updated_at))
        .bind(i64::from(link.remote_active))
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        tx.commit().await.map_err(storage)
    }

    pub(crate) async fn connector_reschedule(
        &self,
        tenant: TenantId,
        connector: &str,
        now: Timestamp,
    ) -> DomainResult<u64> {
        let mut tx = self.begin().await?;
        let rescheduled = sqlx::query(
            "UPDATE connector_links SET next_attempt_at = $3
             WHERE tenant_id = $1 AND connector = $2 AND state = 'retrying' AND next_attempt_at > $3",
        )
        .bind(tenant.0.to_string())
        .bind(connector)
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(storage)?
        .rows_affected();
        tx.commit().await.map_err(storage)?;
        Ok(rescheduled)
    }

    pub(crate) async fn connector_counts(&self, tenant: TenantId, connector: &str) -> DomainResult<LinkCounts> {
        let rows = sqlx::query(
            "SELECT state, CAST(CASE WHEN wanted > done THEN 1 ELSE 0 END AS BIGINT) AS owed, COUNT(*) AS n
             FROM connector_links WHERE tenant_id = $1 AND connector = $2
             GROUP BY state, CAST(CASE WHEN wanted > done THEN 1 ELSE 0 END AS BIGINT)",
        )
        .bind(tenant.0.to_string())
        .bind(connector)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        let mut counts = LinkCounts::default();
        for row in &rows {
            let state: String = row.try_get("state").map_err(storage)?;
            let owed = row.try_get::<i64, _>("owed").map_err(storage)? != 0;
            let n = u64::try_from(row.try_get::<i64, _>("n").map_err(storage)?).unwrap_or(0);
            match LinkState::parse(&state) {
                Some(LinkState::Synced) if !owed => counts.synced += n,
                Some(LinkState::Conflict) => counts.conflict += n,
                Some(LinkState::Dead) => counts.dead += n,
                Some(LinkState::Retrying) => counts.retrying += n,
                Some(LinkState::Held | LinkState::Unexplained) => counts.held += n,
                _ => {}
            }
            if owed && !["conflict", "dead", "held", "unexplained"].contains(&state.as_str()) {
                counts.owed += n;
            }
        }
        Ok(counts)
    }

    pub(crate) async fn connector_links_in(
        &self,
        tenant: TenantId,
        connector: &str,
        state: LinkState,
        after: Option<IndividualId>,
        limit: u32,
    ) -> DomainResult<Vec<ConnectorLink>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM connector_links
             WHERE tenant_id = $1 AND connector = $2 AND state = $3 AND individual_id > $4
             ORDER BY individual_id LIMIT $5"
        ))
        .bind(tenant.0.to_string())
        .bind(connector)
        .bind(state.as_str())
        .bind(after.map(|a| a.0.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(link_from_row).collect()
    }

    pub(crate) async fn connector_guard(&self, tenant: TenantId, connector: &str) -> DomainResult<(u64, u64, bool)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'unexplained' THEN 1 ELSE 0 END), 0) AS BIGINT) AS unexplained,
                    CAST(COALESCE(SUM(remote_active), 0) AS BIGINT) AS active,
                    CAST(COALESCE(SUM(CASE WHEN verify = 1 AND wanted > done AND state IN ('synced', 'retrying')
                                          THEN 1 ELSE 0 END), 0) AS BIGINT) AS surveying
             FROM connector_links WHERE tenant_id = $1 AND connector = $2",
        )
        .bind(tenant.0.to_string())
        .bind(connector)
        .fetch_one(&self.pool)
        .await
        .map_err(storage)?;
        let count = |c: &str| -> DomainResult<u64> {
            Ok(u64::try_from(row.try_get::<i64, _>(c).map_err(storage)?).unwrap_or(0))
        };
        Ok((count("unexplained")?, count("active")?, count("surveying")? > 0))
    }

    pub(crate) async fn connector_hold(
        &self,
        tenant: TenantId,
        connector: &str,
        note: &str,
    ) -> DomainResult<Vec<(IndividualId, Option<(String, String)>)>> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "SELECT l.individual_id, i.login, i.status FROM connector_links l
             LEFT JOIN individuals i ON i.tenant_id = l.tenant_id AND i.id = l.individual_id
             WHERE l.tenant_id = $1 AND l.connector = $2 AND l.state = 'unexplained'
             ORDER BY l.individual_id",
        )
        .bind(tenant.0.to_string())
        .bind(connector)
        .fetch_all(&mut *tx)
        .await
        .map_err(storage)?;
        let mut held = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("individual_id").map_err(storage)?;
            let login: Option<String> = row.try_get("login").map_err(storage)?;
            let status: Option<String> = row.try_get("status").map_err(storage)?;
            held.push((IndividualId(uuid("individual_id", &id)?), login.zip(status)));
        }
        sqlx::query(
            "UPDATE connector_links SET state = 'held', last_error = $3
             WHERE tenant_id = $1 AND connector = $2 AND state = 'unexplained'",
        )
        .bind(tenant.0.to_string())
        .bind(connector)
        .bind(note)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        Ok(held)
    }

    pub(crate) async fn connector_release(
        &self,
        tenant: TenantId,
        connector: &str,
        from: LinkState,
        approved: bool,
        note: &str,
        now: Timestamp,
    ) -> DomainResult<u64> {
        let mut tx = self.begin().await?;
        // Let through: pushed as they are now, past the guard up to their current `wanted`.
        // Rejected: parked, like a conflict, until a resync.
        let query = if approved {
            sqlx::query(
                "UPDATE connector_links SET state = 'synced', guard_passed = wanted, last_error = NULL, attempts = 0,
                     next_attempt_at = $4
                 WHERE tenant_id = $1 AND connector = $2 AND state = $3",
            )
            .bind(tenant.0.to_string())
            .bind(connector)
            .bind(from.as_str())
            .bind(micros(now))
        } else {
            sqlx::query(
                "UPDATE connector_links SET state = 'conflict', last_error = $4, next_attempt_at = $5
                 WHERE tenant_id = $1 AND connector = $2 AND state = $3",
            )
            .bind(tenant.0.to_string())
            .bind(connector)
            .bind(from.as_str())
            .bind(note)
            .bind(micros(now))
        };
        let released = query.execute(&mut *tx).await.map_err(storage)?.rows_affected();
        tx.commit().await.map_err(storage)?;
        Ok(released)
    }

    pub(crate) async fn connector_quarantined(&self) -> DomainResult<Vec<(TenantId, String, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT tenant_id, connector, quarantined_since FROM connector_health
             WHERE quarantined_since IS NOT NULL ORDER BY tenant_id, connector",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter()
            .map(|row| {
                let tenant: String = row.try_get("tenant_id").map_err(storage)?;
                Ok((
                    TenantId(uuid("tenant_id", &tenant)?),
                    row.try_get("connector").map_err(storage)?,
                    timestamp(row.try_get("quarantined_since").map_err(storage)?)?,
                ))
            })
            .collect()
    }

    pub(crate) async fn connector_health_get(
        &self,
        tenant: TenantId,
        connector: &str,
    ) -> DomainResult<Option<ConnectorHealth>> {
        let row = sqlx::query(
            "SELECT quarantined_since, consecutive_failures, last_success_at, last_error, last_drift_repair_at,
                    config_digest
             FROM connector_health WHERE tenant_id = $1 AND connector = $2",
        )
        .bind(tenant.0.to_string())
        .bind(connector)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        let Some(row) = row else { return Ok(None) };
        let instant = |c: &str| -> DomainResult<Option<Timestamp>> {
            row.try_get::<Option<i64>, _>(c).map_err(storage)?.map(timestamp).transpose()
        };
        Ok(Some(ConnectorHealth {
            quarantined_since: instant("quarantined_since")?,
            consecutive_failures: u32::try_from(row.try_get::<i64, _>("consecutive_failures").map_err(storage)?)
                .unwrap_or(u32::MAX),
            last_success_at: instant("last_success_at")?,
            last_error: row.try_get("last_error").map_err(storage)?,
            last_drift_repair_at: instant("last_drift_repair_at")?,
            config_digest: row.try_get("config_digest").map_err(storage)?,
        }))
    }

    pub(crate) async fn connector_health_put(
        &self,
        tenant: TenantId,
        connector: &str,
        health: &ConnectorHealth,
    ) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO connector_health
                 (tenant_id, connector, quarantined_since, consecutive_failures, last_success_at, last_error,
                  last_drift_repair_at, config_digest)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, connector) DO UPDATE SET
                 quarantined_since = excluded.quarantined_since, consecutive_failures = excluded.consecutive_failures,
                 last_success_at = excluded.last_success_at, last_error = excluded.last_error,
                 last_drift_repair_at = excluded.last_drift_repair_at, config_digest = excluded.config_digest",
        )
        .bind(tenant.0.to_string())
        .bind(connector)
        .bind(health.quarantined_since.map(micros))
        .bind(i64::from(health.consecutive_failures))
        .bind(health.last_success_at.map(micros))
        .bind(health.last_error.as_deref())
        .bind(health.last_drift_repair_at.map(micros))
        .bind(health.config_digest.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        tx.commit().await.map_err(storage)
    }
}
