//! Change sets held by the mass-deprovision guard, and leases (one holder of a job across
//! instances).

use idbridge_core::audit::AuditRecord;
use idbridge_core::changeset::{
    ChangeSetDecision, ChangeSetHeader, ChangeSetStatus, ChangeSummary, HeldChangeSet, HeldWrite, PlannedWrite,
    WriteCount,
};
use idbridge_core::tenant::TenantId;
use idbridge_core::{DomainError, DomainResult};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::SqlStore;
use crate::convert::{from_json, micros, storage, timestamp, uuid};
use crate::log::append_audit;
use crate::rows::{placeholders, value_rows};
use crate::stored;

/// Held writes per statement (six values each).
const WRITE_ROWS: usize = 500;

/// Held writes of sets stored before `change_set_writes` (migration 0016): one JSON value
/// in `change_sets.writes`, full planned writes, in an envelope `{"format": 1, "writes":
/// […]}` or, before that, a bare array. Read only to move them into rows.
fn legacy_writes_from_json(text: &str) -> DomainResult<Vec<PlannedWrite>> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Envelope { writes: Vec<PlannedWrite> },
        Bare(Vec<PlannedWrite>),
    }
    Ok(match from_json::<Stored>("writes", text)? {
        Stored::Envelope { writes } | Stored::Bare(writes) => writes,
    })
}

const HEADER_COLUMNS: &str =
    "tenant_id, id, origin, status, summary, created_at, created_by, decided_at, decided_by, result";

fn header_from_row(row: &AnyRow) -> DomainResult<ChangeSetHeader> {
    let get_s = |c: &str| row.try_get::<String, _>(c).map_err(storage);
    let get_o = |c: &str| row.try_get::<Option<String>, _>(c).map_err(storage);
    Ok(ChangeSetHeader {
        tenant_id: TenantId(uuid("tenant_id", &get_s("tenant_id")?)?),
        id: uuid("change set id", &get_s("id")?)?,
        origin: get_s("origin")?,
        status: ChangeSetStatus::parse(&get_s("status")?)?,
        summary: stored::read("summary", &get_s("summary")?)?,
        created_at: timestamp(row.try_get("created_at").map_err(storage)?)?,
        created_by: get_s("created_by")?,
        decided_at: row.try_get::<Option<i64>, _>("decided_at").map_err(storage)?.map(timestamp).transpose()?,
        decided_by: get_o("decided_by")?,
        result: get_o("result")?,
    })
}

fn write_from_row(row: &AnyRow) -> DomainResult<(u64, HeldWrite)> {
    let position: i64 = row.try_get("position").map_err(storage)?;
    let write = stored::read("write", &row.try_get::<String, _>("write").map_err(storage)?)?;
    Ok((u64::try_from(position).unwrap_or(0), write))
}

/// Inserts `writes` into a set's rows from `first` on, a few statements per thousand.
async fn insert_writes(
    backend: crate::Backend,
    conn: &mut sqlx::AnyConnection,
    tenant: TenantId,
    id: Uuid,
    first: i64,
    writes: &[HeldWrite],
) -> DomainResult<()> {
    let (tenant, id) = (tenant.0.to_string(), id.to_string());
    let mut position = first;
    for chunk in writes.chunks(WRITE_ROWS) {
        let sql = format!(
            "INSERT INTO change_set_writes (tenant_id, change_set_id, position, individual_id, counts_as, write)
             VALUES {}",
            value_rows(backend, chunk.len(), 6, &[])
        );
        let mut query = sqlx::query(&sql);
        for write in chunk {
            query = query
                .bind(tenant.clone())
                .bind(id.clone())
                .bind(position)
                .bind(write.individual_id.0.to_string())
                .bind(write.counts_as().as_str())
                .bind(stored::write(write));
            position += 1;
        }
        query.execute(&mut *conn).await.map_err(storage)?;
    }
    Ok(())
}

impl SqlStore {
    /// One change set's header by id (of `tenant`, or of any tenant).
    async fn change_set_one(&self, tenant: Option<TenantId>, id: Uuid) -> DomainResult<Option<ChangeSetHeader>> {
        let sql = match tenant {
            Some(_) => format!("SELECT {HEADER_COLUMNS} FROM change_sets WHERE id = $1 AND tenant_id = $2"),
            None => format!("SELECT {HEADER_COLUMNS} FROM change_sets WHERE id = $1"),
        };
        let mut query = sqlx::query(&sql).bind(id.to_string());
        if let Some(tenant) = tenant {
            query = query.bind(tenant.0.to_string());
        }
        query.fetch_optional(&self.pool).await.map_err(storage)?.as_ref().map(header_from_row).transpose()
    }

    pub(crate) async fn change_set_header(&self, tenant: TenantId, id: Uuid) -> DomainResult<Option<ChangeSetHeader>> {
        self.change_set_one(Some(tenant), id).await
    }

    pub(crate) async fn change_set_find(&self, id: Uuid) -> DomainResult<Option<ChangeSetHeader>> {
        self.change_set_one(None, id).await
    }

    pub(crate) async fn change_set_page(
        &self,
        tenant: TenantId,
        id: Uuid,
        after: Option<u64>,
        limit: usize,
    ) -> DomainResult<Vec<(u64, HeldWrite)>> {
        let after = after.map_or(-1, |p| i64::try_from(p).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        sqlx::query(
            "SELECT position, write FROM change_set_writes
             WHERE tenant_id = $1 AND change_set_id = $2 AND position > $3 ORDER BY position LIMIT $4",
        )
        .bind(tenant.0.to_string())
        .bind(id.to_string())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?
        .iter()
        .map(write_from_row)
        .collect()
    }

    pub(crate) async fn change_set_get(&self, tenant: TenantId, id: Uuid) -> DomainResult<Option<HeldChangeSet>> {
        let Some(header) = self.change_set_header(tenant, id).await? else { return Ok(None) };
        let mut writes = Vec::new();
        let mut after = None;
        loop {
            let page = self.change_set_page(tenant, id, after, 5_000).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            writes.extend(page.into_iter().map(|(_, w)| w));
        }
        Ok(Some(HeldChangeSet::from_header(header, writes)))
    }

    pub(crate) async fn change_set_extend(
        &self,
        tenant: TenantId,
        id: Uuid,
        more: &[HeldWrite],
        audit: &AuditRecord,
    ) -> DomainResult<Option<ChangeSummary>> {
        // PostgreSQL: two requests joining the same set take turns (SQLite has one writer).
        let lock = match self.backend {
            crate::Backend::Postgres => "FOR UPDATE",
            crate::Backend::Sqlite => "",
        };
        let (tenant_s, id_s) = (tenant.0.to_string(), id.to_string());
        let mut tx = self.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT summary FROM change_sets WHERE tenant_id = $1 AND id = $2 AND status = 'pending' {lock}"
        ))
        .bind(&tenant_s)
        .bind(&id_s)
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage)?;
        let Some(row) = row else { return Ok(None) };
        let old: ChangeSummary = stored::read("summary", &row.try_get::<String, _>("summary").map_err(storage)?)?;
        // A person already in the set keeps one write: the later one.
        for chunk in more.chunks(WRITE_ROWS) {
            let sql = format!(
                "DELETE FROM change_set_writes WHERE tenant_id = {} AND change_set_id = {} AND individual_id IN ({})",
                placeholders(self.backend, 1, 1),
                placeholders(self.backend, 2, 1),
                placeholders(self.backend, 3, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(&tenant_s).bind(&id_s);
            for write in chunk {
                query = query.bind(write.individual_id.0.to_string());
            }
            query.execute(&mut *tx).await.map_err(storage)?;
        }
        let (last,): (Option<i64>,) = sqlx::query_as(
            "SELECT CAST(MAX(position) AS BIGINT) FROM change_set_writes WHERE tenant_id = $1 AND change_set_id = $2",
        )
        .bind(&tenant_s)
        .bind(&id_s)
        .fetch_one(&mut *tx)
        .await
        .map_err(storage)?;
        insert_writes(self.backend, &mut tx, tenant, id, last.map_or(0, |p| p + 1), more).await?;
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT counts_as, CAST(COUNT(*) AS BIGINT) FROM change_set_writes
             WHERE tenant_id = $1 AND change_set_id = $2 GROUP BY counts_as",
        )
        .bind(&tenant_s)
        .bind(&id_s)
        .fetch_all(&mut *tx)
        .await
        .map_err(storage)?;
        let mut summary = ChangeSummary {
            creates: 0,
            updates: 0,
            takes_access: 0,
            holding_access: old.holding_access,
            taken_recently: old.taken_recently,
        };
        for (counts_as, n) in counts {
            let n = u64::try_from(n).unwrap_or(0);
            match WriteCount::parse(&counts_as) {
                Some(WriteCount::Create) => summary.creates = n,
                Some(WriteCount::Update) => summary.updates = n,
                Some(WriteCount::TakesAccess) => summary.takes_access = n,
                None => {
                    return Err(DomainError::Storage(format!(
                        "change set {id} has writes counted as {counts_as:?}, which this idbridge does not know"
                    )));
                }
            }
        }
        sqlx::query("UPDATE change_sets SET summary = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(stored::write(&summary))
            .bind(&tenant_s)
            .bind(&id_s)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(storage)?;
        Ok(Some(summary))
    }

    pub(crate) async fn change_set_put(
        &self,
        set: &ChangeSetHeader,
        writes: &[HeldWrite],
        audit: &AuditRecord,
    ) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO change_sets (tenant_id, id, origin, status, summary, writes, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, '', $6, $7)",
        )
        .bind(set.tenant_id.0.to_string())
        .bind(set.id.to_string())
        .bind(&set.origin)
        .bind(set.status.as_str())
        .bind(stored::write(&set.summary))
        .bind(micros(set.created_at))
        .bind(&set.created_by)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        insert_writes(self.backend, &mut tx, set.tenant_id, set.id, 0, writes).await?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(storage)
    }

    /// Moves the writes of sets stored before `change_set_writes` into its rows, a set per
    /// transaction. Instances starting together on PostgreSQL take turns on each set (the
    /// row lock), and the one that comes second finds it moved.
    pub(crate) async fn move_legacy_held_writes(&self) -> DomainResult<u64> {
        let lock = match self.backend {
            crate::Backend::Postgres => "FOR UPDATE",
            crate::Backend::Sqlite => "",
        };
        let sets: Vec<(String, String)> = sqlx::query_as("SELECT tenant_id, id FROM change_sets WHERE writes <> ''")
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?;
        let mut moved = 0;
        for (tenant, id) in sets {
            let mut tx = self.begin().await?;
            let row: Option<(String,)> = sqlx::query_as(&format!(
                "SELECT writes FROM change_sets WHERE tenant_id = $1 AND id = $2 AND writes <> '' {lock}"
            ))
            .bind(&tenant)
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(storage)?;
            let Some((text,)) = row else { continue };
            let writes = HeldWrite::all_of(&legacy_writes_from_json(&text)?);
            let tenant_id = TenantId(uuid("tenant_id", &tenant)?);
            insert_writes(self.backend, &mut tx, tenant_id, uuid("change set id", &id)?, 0, &writes).await?;
            sqlx::query("UPDATE change_sets SET writes = '' WHERE tenant_id = $1 AND id = $2")
                .bind(&tenant)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
            tx.commit().await.map_err(storage)?;
            moved += 1;
        }
        Ok(moved)
    }

    pub(crate) async fn change_set_list(
        &self,
        tenant: Option<TenantId>,
        status: Option<ChangeSetStatus>,
    ) -> DomainResult<Vec<ChangeSetHeader>> {
        let mut sql = format!("SELECT {HEADER_COLUMNS} FROM change_sets WHERE 1 = 1");
        let mut n = 0;
        if tenant.is_some() {
            n += 1;
            sql.push_str(&format!(" AND tenant_id = ${n}"));
        }
        if status.is_some() {
            n += 1;
            sql.push_str(&format!(" AND status = ${n}"));
        }
        sql.push_str(" ORDER BY created_at DESC LIMIT 1000");
        let mut query = sqlx::query(&sql);
        if let Some(tenant) = tenant {
            query = query.bind(tenant.0.to_string());
        }
        if let Some(status) = status {
            query = query.bind(status.as_str());
        }
        query.fetch_all(&self.pool).await.map_err(storage)?.iter().map(header_from_row).collect()
    }

    pub(crate) async fn change_set_decide(
        &self,
        tenant: TenantId,
        id: Uuid,
        decision: &ChangeSetDecision,
        audit: &AuditRecord,
    ) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE change_sets SET status = $1, decided_by = $2, decided_at = $3, result = $4
             WHERE tenant_id = $5 AND id = $6 AND status = 'pending'",
        )
        .bind(decision.status.as_str())
        .bind(&decision.by)
        .bind(micros(decision.at))
        .bind(&decision.result)
        .bind(tenant.0.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        if done.rows_affected() == 0 {
            return Err(DomainError::Rejected(format!("change set {id} is no longer pending")));
        }
        append_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(storage)
    }

    pub(crate) async fn access_taken_record(
        &self,
        tenant: TenantId,
        at: jiff::Timestamp,
        taken: u64,
    ) -> DomainResult<()> {
        let tenant = tenant.0.to_string();
        let mut tx = self.begin().await?;
        // Nothing older than the longest window is ever asked for.
        sqlx::query("DELETE FROM access_taken WHERE tenant_id = $1 AND at < $2")
            .bind(&tenant)
            .bind(micros(at - jiff::SignedDuration::from_hours(7 * 24)))
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        sqlx::query("INSERT INTO access_taken (tenant_id, at, taken) VALUES ($1, $2, $3)")
            .bind(&tenant)
            .bind(micros(at))
            .bind(i64::try_from(taken).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        tx.commit().await.map_err(storage)
    }

    pub(crate) async fn access_taken_count(&self, tenant: TenantId, since: jiff::Timestamp) -> DomainResult<u64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(taken), 0) AS BIGINT) FROM access_taken WHERE tenant_id = $1 AND at >= $2",
        )
        .bind(tenant.0.to_string())
        .bind(micros(since))
        .fetch_one(&self.pool)
        .await
        .map_err(storage)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Insert the lease if absent, else take it over when it expired or is ours: one
    /// statement, so two instances cannot both win.
    pub(crate) async fn lease_try(
        &self,
        name: &str,
        holder: &str,
        now: jiff::Timestamp,
        until: jiff::Timestamp,
    ) -> DomainResult<bool> {
        let mut tx = self.begin().await?;
        let taken = sqlx::query(
            "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE leases.holder = excluded.holder OR leases.until < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(micros(until))
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        Ok(taken.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write() -> PlannedWrite {
        use idbridge_core::individual::{Individual, IndividualId, IndividualStatus};
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let after = Individual {
            id: IndividualId(Uuid::nil()),
            tenant_id: TenantId(Uuid::nil()),
            login: "bob@acme.example".into(),
            email: None,
            given_name: None,
            family_name: None,
            display_name: None,
            role: Some("PBX admin".into()),
            access_profile: None,
            scopes: Default::default(),
            time_zone: "UTC".into(),
            language: None,
            activation: None,
            expiration: None,
            status: IndividualStatus::Active,
            links: vec![],
            deprovisioned_at: None,
            access_ended_at: None,
            provenance: Default::default(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        PlannedWrite { before: None, after, action: "individual.created".into() }
    }

    /// Sets stored before migration 0016 (an envelope of full planned writes, or before
    /// that a bare array) still read, to be moved into rows; a held write as rows keep it
    /// reads back, also from a newer format with fields this version does not know.
    #[test]
    fn held_writes_are_read_in_every_format() {
        let writes = vec![write()];
        let envelope = crate::convert::to_json(&serde_json::json!({ "format": 1, "writes": writes }));
        assert_eq!(legacy_writes_from_json(&envelope).unwrap(), writes);
        assert_eq!(legacy_writes_from_json(&crate::convert::to_json(&writes)).unwrap(), writes, "a bare array");
        assert!(legacy_writes_from_json("{\"format\": 1}").is_err(), "no writes is not a held set");

        let held = HeldWrite::of(&writes[0]);
        assert_eq!(held.counts_as(), WriteCount::Create);
        assert_eq!(held.changed_after["role"], "PBX admin");
        assert!(held.changed_after.get("provenance").is_none(), "why is not repeated per write");
        let stored = stored::write(&held);
        assert!(stored.starts_with(r#"{"format":1,"value":{"#), "{stored}");
        assert_eq!(stored::read::<HeldWrite>("write", &stored).unwrap(), held);
        let mut newer: serde_json::Value = serde_json::from_str(&stored).unwrap();
        newer["format"] = 2.into();
        newer["value"]["newer_write_field"] = 1.into();
        assert_eq!(stored::read::<HeldWrite>("write", &newer.to_string()).unwrap(), held);
    }
}
