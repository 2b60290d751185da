//! Change sets held by the mass-deprovision guard, and leases (one holder of a job across
//! instances).

use idbridge_core::audit::AuditRecord;
use idbridge_core::changeset::{
    ChangeSet, ChangeSetDecision, ChangeSetHeader, ChangeSetStatus, ChangeSummary, HeldChangeSet, PlannedWrite,
};
use idbridge_core::tenant::TenantId;
use idbridge_core::{DomainError, DomainResult};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::SqlStore;
use crate::convert::{from_json, micros, storage, timestamp, to_json, uuid};
use crate::log::append_audit;
use crate::stored;

const COLUMNS: &str =
    "tenant_id, id, origin, status, summary, writes, created_at, created_by, decided_at, decided_by, result";

fn from_row(row: &AnyRow) -> DomainResult<HeldChangeSet> {
    let writes = writes_from_json(&row.try_get::<String, _>("writes").map_err(storage)?)?;
    Ok(HeldChangeSet::from_header(header_from_row(row)?, writes))
}

/// The stored form of a held set's writes: an envelope with a format number, so that a
/// later change to how writes are kept can tell its rows from these. Read tolerantly:
/// unknown fields (in the envelope or in a write) are ignored, a newer format is read as
/// far as its `writes` are, and rows from before the envelope are a bare array.
#[derive(serde::Serialize)]
struct StoredWrites<'a> {
    format: u32,
    writes: &'a [PlannedWrite],
}

/// The format this version writes.
const WRITES_FORMAT: u32 = 1;

fn writes_to_json(writes: &[PlannedWrite]) -> String {
    to_json(&StoredWrites { format: WRITES_FORMAT, writes })
}

fn writes_from_json(text: &str) -> DomainResult<Vec<PlannedWrite>> {
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

impl SqlStore {
    /// One change set by id (of `tenant`, or of any tenant), read with `columns` into `T`.
    async fn change_set_one<T>(
        &self,
        columns: &str,
        tenant: Option<TenantId>,
        id: Uuid,
        read: fn(&AnyRow) -> DomainResult<T>,
    ) -> DomainResult<Option<T>> {
        let sql = match tenant {
            Some(_) => format!("SELECT {columns} FROM change_sets WHERE id = $1 AND tenant_id = $2"),
            None => format!("SELECT {columns} FROM change_sets WHERE id = $1"),
        };
        let mut query = sqlx::query(&sql).bind(id.to_string());
        if let Some(tenant) = tenant {
            query = query.bind(tenant.0.to_string());
        }
        query.fetch_optional(&self.pool).await.map_err(storage)?.as_ref().map(read).transpose()
    }

    pub(crate) async fn change_set_header(&self, tenant: TenantId, id: Uuid) -> DomainResult<Option<ChangeSetHeader>> {
        self.change_set_one(HEADER_COLUMNS, Some(tenant), id, header_from_row).await
    }

    pub(crate) async fn change_set_find(&self, id: Uuid) -> DomainResult<Option<HeldChangeSet>> {
        self.change_set_one(COLUMNS, None, id, from_row).await
    }

    pub(crate) async fn change_set_extend(
        &self,
        tenant: TenantId,
        id: Uuid,
        more: &[PlannedWrite],
        audit: &AuditRecord,
    ) -> DomainResult<Option<ChangeSummary>> {
        // PostgreSQL: two requests joining the same set take turns (SQLite has one writer).
        let lock = match self.backend {
            crate::Backend::Postgres => "FOR UPDATE",
            crate::Backend::Sqlite => "",
        };
        let mut tx = self.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT writes, summary FROM change_sets WHERE tenant_id = $1 AND id = $2 AND status = 'pending' {lock}"
        ))
        .bind(tenant.0.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage)?;
        let Some(row) = row else { return Ok(None) };
        let mut writes = writes_from_json(&row.try_get::<String, _>("writes").map_err(storage)?)?;
        let old: ChangeSummary = stored::read("summary", &row.try_get::<String, _>("summary").map_err(storage)?)?;
        let joining: std::collections::HashSet<_> = more.iter().map(|w| w.after.id).collect();
        writes.retain(|w| !joining.contains(&w.after.id));
        writes.extend(more.iter().cloned());
        let set = ChangeSet { origin: String::new(), writes, held: Vec::new() };
        let summary = ChangeSummary { taken_recently: old.taken_recently, ..set.summary(old.holding_access) };
        sqlx::query("UPDATE change_sets SET writes = $1, summary = $2 WHERE tenant_id = $3 AND id = $4")
            .bind(writes_to_json(&set.writes))
            .bind(stored::write(&summary))
            .bind(tenant.0.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(storage)?;
        Ok(Some(summary))
    }

    pub(crate) async fn change_set_put(&self, set: &HeldChangeSet, audit: &AuditRecord) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO change_sets (tenant_id, id, origin, status, summary, writes, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(set.tenant_id.0.to_string())
        .bind(set.id.to_string())
        .bind(&set.origin)
        .bind(set.status.as_str())
        .bind(stored::write(&set.summary))
        .bind(writes_to_json(&set.writes))
        .bind(micros(set.created_at))
        .bind(&set.created_by)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(storage)
    }

    pub(crate) async fn change_set_get(&self, tenant: TenantId, id: Uuid) -> DomainResult<Option<HeldChangeSet>> {
        self.change_set_one(COLUMNS, Some(tenant), id, from_row).await
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

    /// What this version writes, what an earlier one wrote (a bare array), and what a
    /// newer one might write (another format, fields this one does not know) all read.
    #[test]
    fn held_writes_are_read_in_every_format() {
        let writes = vec![write()];
        let stored = writes_to_json(&writes);
        assert!(stored.starts_with(r#"{"format":1,"writes":["#), "{stored}");
        assert_eq!(writes_from_json(&stored).unwrap(), writes);
        assert_eq!(writes_from_json(&to_json(&writes)).unwrap(), writes, "rows from before the envelope");
        let mut newer: serde_json::Value = serde_json::from_str(&stored).unwrap();
        newer["format"] = 2.into();
        newer["summary_of_a_newer_kind"] = "x".into();
        newer["writes"][0]["newer_write_field"] = 1.into();
        assert_eq!(writes_from_json(&newer.to_string()).unwrap(), writes);
        assert!(writes_from_json("{\"format\": 1}").is_err(), "no writes is not a held set");
    }
}
