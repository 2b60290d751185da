//! SCIM source records and memberships.

use idbridge_core::audit::AuditRecord;
use idbridge_core::intent::Owed;
use idbridge_core::ports::ScimWritten;
use idbridge_core::source_record::{MemberChange, ScimKind, ScimMember, ScimQuery, ScimRecord, ScimWrite};
use idbridge_core::tenant::TenantId;
use idbridge_core::{DomainError, DomainResult};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::convert::{from_json, micros, storage, timestamp, to_json, unique_or_storage, uuid};
use crate::intents;
use crate::log::append_audit;
use crate::rows::placeholders;
use crate::{Backend, SqlStore};

const COLUMNS: &str = "seq, tenant_id, kind, id, external_id, name, data, version, created_at, updated_at";

fn record_from_row(row: &AnyRow) -> DomainResult<ScimRecord> {
    let get_s = |c: &str| row.try_get::<String, _>(c).map_err(storage);
    Ok(ScimRecord {
        tenant_id: TenantId(uuid("tenant_id", &get_s("tenant_id")?)?),
        kind: ScimKind::parse(&get_s("kind")?)?,
        id: uuid("scim id", &get_s("id")?)?,
        external_id: row.try_get("external_id").map_err(storage)?,
        name: get_s("name")?,
        data: from_json("scim data", &get_s("data")?)?,
        version: row.try_get("version").map_err(storage)?,
        created_at: timestamp(row.try_get("created_at").map_err(storage)?)?,
        updated_at: timestamp(row.try_get("updated_at").map_err(storage)?)?,
        seq: row.try_get("seq").map_err(storage)?,
    })
}

async fn fetch(conn: &mut AnyConnection, tenant: &str, kind: ScimKind, id: &str) -> DomainResult<Option<ScimRecord>> {
    let row =
        sqlx::query(&format!("SELECT {COLUMNS} FROM scim_resources WHERE tenant_id = $1 AND id = $2 AND kind = $3"))
            .bind(tenant)
            .bind(id)
            .bind(kind.as_str())
            .fetch_optional(conn)
            .await
            .map_err(storage)?;
    row.as_ref().map(record_from_row).transpose()
}

async fn change_members(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    group: &str,
    change: &MemberChange,
) -> DomainResult<()> {
    match change {
        MemberChange::RemoveAll => {
            sqlx::query("DELETE FROM scim_members WHERE tenant_id = $1 AND group_id = $2")
                .bind(tenant)
                .bind(group)
                .execute(conn)
                .await
                .map_err(storage)?;
        }
        MemberChange::Remove(ids) => {
            // A few statements per thousand members, not one per member.
            for chunk in ids.chunks(MEMBER_CHUNK) {
                let sql = format!(
                    "DELETE FROM scim_members WHERE tenant_id = {} AND group_id = {} AND member_id IN ({})",
                    placeholders(backend, 1, 1),
                    placeholders(backend, 2, 1),
                    placeholders(backend, 3, chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(tenant).bind(group);
                for id in chunk {
                    query = query.bind(id.to_string());
                }
                query.execute(&mut *conn).await.map_err(storage)?;
            }
        }
        MemberChange::Add(ids) => {
            let mut ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
            if ids.iter().any(|id| id == group) {
                return Err(DomainError::invalid("members", "a group cannot be a member of itself"));
            }
            ids.sort_unstable();
            ids.dedup();
            for chunk in ids.chunks(MEMBER_CHUNK) {
                // Members must be resources of the same tenant; adding twice is a no-op.
                let sql = format!(
                    "INSERT INTO scim_members (tenant_id, group_id, member_id, member_kind)
                     SELECT tenant_id, CAST({} AS TEXT), id, kind FROM scim_resources
                     WHERE tenant_id = {} AND id IN ({})
                     ON CONFLICT (tenant_id, group_id, member_id) DO NOTHING",
                    placeholders(backend, 1, 1),
                    placeholders(backend, 2, 1),
                    placeholders(backend, 3, chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(group).bind(tenant);
                for id in chunk {
                    query = query.bind(id);
                }
                let added = query.execute(&mut *conn).await.map_err(storage)?;
                if added.rows_affected() < chunk.len() as u64 {
                    // Fewer rows than ids: members already, or ids that name nothing here.
                    let sql = format!(
                        "SELECT id FROM scim_resources WHERE tenant_id = {} AND id IN ({})",
                        placeholders(backend, 1, 1),
                        placeholders(backend, 2, chunk.len())
                    );
                    let mut query = sqlx::query_as::<_, (String,)>(&sql).bind(tenant);
                    for id in chunk {
                        query = query.bind(id);
                    }
                    let known: std::collections::HashSet<String> =
                        query.fetch_all(&mut *conn).await.map_err(storage)?.into_iter().map(|(id,)| id).collect();
                    if let Some(missing) = chunk.iter().find(|id| !known.contains(*id)) {
                        return Err(DomainError::invalid(
                            "members",
                            format!("member {missing:?} is not a user or group of this tenant"),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Members added or removed per statement.
const MEMBER_CHUNK: usize = 500;

impl SqlStore {
    pub(crate) async fn scim_write(&self, write: &ScimWrite) -> DomainResult<ScimWritten> {
        let r = &write.record;
        let tenant = r.tenant_id.0.to_string();
        let id = r.id.to_string();
        let instant = idbridge_core::clock::now();
        let now = micros(instant);
        let mut owed = Owed::default();
        let mut tx = self.begin().await?;
        // A renamed group, or one whose members are all replaced, may change the access
        // of every member it had: their intents are taken before the members change.
        let every_member = r.kind == ScimKind::Group
            && write.expected_version.is_some()
            && (write.body_changed || write.members.contains(&MemberChange::RemoveAll));
        if every_member {
            intents::scim_members_of(&mut tx, &tenant, &id, write.change, instant, &mut owed).await?;
        }
        let inserted = match write.expected_version {
            None => {
                let row = sqlx::query(&format!(
                    "INSERT INTO scim_resources (tenant_id, kind, id, external_id, name, name_key, data, version, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8) RETURNING {COLUMNS}"
                ))
                .bind(&tenant)
                .bind(r.kind.as_str())
                .bind(&id)
                .bind(&r.external_id)
                .bind(&r.name)
                .bind(r.name.to_lowercase())
                .bind(to_json(&r.data))
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(unique_or_storage(r.kind.as_str(), &r.name))?;
                Some(record_from_row(&row)?)
            }
            Some(expected) => {
                let done = if write.body_changed {
                    sqlx::query(
                        "UPDATE scim_resources SET external_id = $1, name = $2, name_key = $3, data = $4,
                             version = version + 1, updated_at = $5
                         WHERE tenant_id = $6 AND id = $7 AND kind = $8 AND version = $9",
                    )
                    .bind(&r.external_id)
                    .bind(&r.name)
                    .bind(r.name.to_lowercase())
                    .bind(to_json(&r.data))
                    .bind(now)
                    .bind(&tenant)
                    .bind(&id)
                    .bind(r.kind.as_str())
                    .bind(expected)
                    .execute(&mut *tx)
                    .await
                    .map_err(unique_or_storage(r.kind.as_str(), &r.name))?
                } else {
                    // Member-only changes are set operations that commute: they do not
                    // conflict with each other, so the version is bumped, not checked.
                    sqlx::query(
                        "UPDATE scim_resources SET version = version + 1, updated_at = $1
                         WHERE tenant_id = $2 AND id = $3 AND kind = $4",
                    )
                    .bind(now)
                    .bind(&tenant)
                    .bind(&id)
                    .bind(r.kind.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(storage)?
                };
                if done.rows_affected() == 0 {
                    let found = fetch(&mut tx, &tenant, r.kind, &id).await?;
                    return Err(match found {
                        Some(found) => DomainError::VersionConflict {
                            kind: "scim resource",
                            key: id,
                            expected,
                            found: found.version,
                        },
                        None => DomainError::not_found("scim resource", id),
                    });
                }
                None
            }
        };
        for change in &write.members {
            change_members(&mut tx, self.backend, &tenant, &id, change).await?;
        }
        match r.kind {
            ScimKind::User => intents::scim_users(&mut tx, &tenant, &[r.id], write.change, instant, &mut owed).await?,
            ScimKind::Group => {
                let mut listed: Vec<Uuid> = write
                    .members
                    .iter()
                    .flat_map(|c| match c {
                        MemberChange::Add(ids) | MemberChange::Remove(ids) => ids.as_slice(),
                        MemberChange::RemoveAll => &[],
                    })
                    .copied()
                    .collect();
                listed.sort_unstable();
                listed.dedup();
                if every_member {
                    // The old members are owed already; the new ones are the listed adds.
                    listed.retain(|u| !owed.users.contains(u));
                }
                intents::scim_users(&mut tx, &tenant, &listed, write.change, instant, &mut owed).await?;
            }
        }
        append_audit(&mut tx, &write.audit).await?;
        let stored = match inserted {
            Some(record) => record,
            None => fetch(&mut tx, &tenant, r.kind, &id)
                .await?
                .ok_or_else(|| DomainError::Storage("record vanished inside its own transaction".into()))?,
        };
        tx.commit().await.map_err(storage)?;
        Ok(ScimWritten { record: stored, owed })
    }

    pub(crate) async fn scim_get(
        &self,
        tenant: TenantId,
        kind: ScimKind,
        id: Uuid,
    ) -> DomainResult<Option<ScimRecord>> {
        let mut conn = self.pool.acquire().await.map_err(storage)?;
        fetch(&mut conn, &tenant.0.to_string(), kind, &id.to_string()).await
    }

    pub(crate) async fn scim_get_many(
        &self,
        tenant: TenantId,
        kind: ScimKind,
        ids: &[Uuid],
    ) -> DomainResult<Vec<ScimRecord>> {
        let tenant = tenant.0.to_string();
        let mut records = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MEMBER_CHUNK) {
            let sql = format!(
                "SELECT {COLUMNS} FROM scim_resources WHERE tenant_id = {} AND kind = {} AND id IN ({})",
                placeholders(self.backend, 1, 1),
                placeholders(self.backend, 2, 1),
                placeholders(self.backend, 3, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(&tenant).bind(kind.as_str());
            for id in chunk {
                query = query.bind(id.to_string());
            }
            for row in query.fetch_all(&self.pool).await.map_err(storage)? {
                records.push(record_from_row(&row)?);
            }
        }
        Ok(records)
    }

    pub(crate) async fn scim_delete(
        &self,
        tenant: TenantId,
        kind: ScimKind,
        id: Uuid,
        change: Uuid,
        audit: &AuditRecord,
    ) -> DomainResult<Option<Owed>> {
        let uid = id;
        let tenant = tenant.0.to_string();
        let id = id.to_string();
        let now = idbridge_core::clock::now();
        let mut owed = Owed::default();
        let mut tx = self.begin().await?;
        // Taken while the record and its memberships still exist.
        match kind {
            ScimKind::User => intents::scim_users(&mut tx, &tenant, &[uid], change, now, &mut owed).await?,
            ScimKind::Group => intents::scim_members_of(&mut tx, &tenant, &id, change, now, &mut owed).await?,
        }
        let gone = sqlx::query("DELETE FROM scim_resources WHERE tenant_id = $1 AND id = $2 AND kind = $3")
            .bind(&tenant)
            .bind(&id)
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        if gone.rows_affected() == 0 {
            // Dropping the transaction rolls the intents back with it.
            return Ok(None);
        }
        sqlx::query("DELETE FROM scim_members WHERE tenant_id = $1 AND (group_id = $2 OR member_id = $2)")
            .bind(&tenant)
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(storage)?;
        Ok(Some(owed))
    }

    pub(crate) async fn scim_list(
        &self,
        tenant: TenantId,
        kind: ScimKind,
        q: &ScimQuery,
    ) -> DomainResult<(Vec<ScimRecord>, u64)> {
        // Only the conditions in use are written out: `($n IS NULL OR col = $n)` would keep
        // SQLite from using the indexes.
        let mut conditions = String::from("tenant_id = $1 AND kind = $2");
        let mut binds: Vec<Bind> = vec![Bind::Text(tenant.0.to_string()), Bind::Text(kind.as_str().to_owned())];
        let mut add = |sql: &str, value: Bind| {
            binds.push(value);
            conditions.push_str(&format!(" AND {sql} ${}", binds.len()));
        };
        if let Some(name) = &q.name_eq {
            add("name_key =", Bind::Text(name.to_lowercase()));
        }
        if let Some(external_id) = &q.external_id_eq {
            add("external_id =", Bind::Text(external_id.clone()));
        }
        if let Some(id) = q.id_eq {
            add("id =", Bind::Text(id.to_string()));
        }
        if let Some(after) = q.after_seq {
            add("seq >", Bind::Int(after));
        }
        let limit = q.limit.map_or(i64::MAX, i64::from);
        let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
        let by_equality = q.name_eq.is_some() || q.id_eq.is_some() || q.external_id_eq.is_some();
        if by_equality {
            // An equality matches few rows: fetch them by their index and order here.
            // With ORDER BY seq in SQL, SQLite's planner walks the seq index over the
            // whole tenant instead (seen at 100,000 users).
            let sql = format!("SELECT {COLUMNS} FROM scim_resources WHERE {conditions}");
            let mut query = sqlx::query(&sql);
            for b in &binds {
                query = b.bind(query);
            }
            let rows = query.fetch_all(&self.pool).await.map_err(storage)?;
            let mut records = rows.iter().map(record_from_row).collect::<DomainResult<Vec<_>>>()?;
            records.sort_by_key(|r| r.seq);
            let total = records.len() as u64;
            let page = records
                .into_iter()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
                .collect();
            return Ok((page, total));
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM scim_resources WHERE {conditions} ORDER BY seq LIMIT ${} OFFSET ${}",
            binds.len() + 1,
            binds.len() + 2
        );
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = b.bind(query);
        }
        let rows = query.bind(limit).bind(offset).fetch_all(&self.pool).await.map_err(storage)?;
        let records = rows.iter().map(record_from_row).collect::<DomainResult<Vec<_>>>()?;
        let total = {
            let sql = format!("SELECT COUNT(*) FROM scim_resources WHERE {conditions}");
            let mut query = sqlx::query_as::<_, (i64,)>(&sql);
            for b in &binds {
                query = b.bind_as(query);
            }
            let (total,) = query.fetch_one(&self.pool).await.map_err(storage)?;
            u64::try_from(total).unwrap_or(0)
        };
        Ok((records, total))
    }

    pub(crate) async fn scim_members(
        &self,
        tenant: TenantId,
        group: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> DomainResult<Vec<ScimMember>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT m.member_id, m.member_kind, r.name FROM scim_members m
             JOIN scim_resources r ON r.tenant_id = m.tenant_id AND r.id = m.member_id
             WHERE m.tenant_id = $1 AND m.group_id = $2 AND m.member_id > $3
             ORDER BY m.member_id LIMIT $4",
        )
        .bind(tenant.0.to_string())
        .bind(group.to_string())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.into_iter().map(member).collect()
    }

    pub(crate) async fn scim_groups_of_many(
        &self,
        tenant: TenantId,
        members: &[Uuid],
    ) -> DomainResult<Vec<(Uuid, ScimMember)>> {
        let mut out = Vec::new();
        // Chunks keep the statement under every backend's parameter limit.
        for chunk in members.chunks(500) {
            let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT m.member_id, r.id, r.kind, r.name FROM scim_members m
                 JOIN scim_resources r ON r.tenant_id = m.tenant_id AND r.id = m.group_id
                 WHERE m.tenant_id = $1 AND m.member_id IN ({}) ORDER BY r.name_key",
                placeholders.join(", ")
            );
            let mut query = sqlx::query_as::<_, (String, String, String, String)>(&sql).bind(tenant.0.to_string());
            for id in chunk {
                query = query.bind(id.to_string());
            }
            for (member_id, id, kind, name) in query.fetch_all(&self.pool).await.map_err(storage)? {
                out.push((uuid("member id", &member_id)?, member((id, kind, name))?));
            }
        }
        Ok(out)
    }

    pub(crate) async fn scim_groups_of(&self, tenant: TenantId, member_id: Uuid) -> DomainResult<Vec<ScimMember>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT r.id, r.kind, r.name FROM scim_members m
             JOIN scim_resources r ON r.tenant_id = m.tenant_id AND r.id = m.group_id
             WHERE m.tenant_id = $1 AND m.member_id = $2 ORDER BY r.name_key",
        )
        .bind(tenant.0.to_string())
        .bind(member_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.into_iter().map(member).collect()
    }
}

/// A bind value of a query assembled at run time.
enum Bind {
    Text(String),
    Int(i64),
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;
type AnyQueryAs<'q, T> = sqlx::query::QueryAs<'q, sqlx::Any, T, sqlx::any::AnyArguments<'q>>;

impl Bind {
    fn bind<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        match self {
            Self::Text(s) => query.bind(s.clone()),
            Self::Int(i) => query.bind(*i),
        }
    }

    fn bind_as<'q, T>(&self, query: AnyQueryAs<'q, T>) -> AnyQueryAs<'q, T> {
        match self {
            Self::Text(s) => query.bind(s.clone()),
            Self::Int(i) => query.bind(*i),
        }
    }
}

fn member((id, kind, display): (String, String, String)) -> DomainResult<ScimMember> {
    Ok(ScimMember { id: uuid("member id", &id)?, kind: ScimKind::parse(&kind)?, display })
}
