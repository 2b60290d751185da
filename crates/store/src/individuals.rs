//! Individuals and their source links, written with their audit record and change event.

use idbridge_core::individual::{Individual, IndividualId, IndividualQuery, IndividualStatus, SourceKind, SourceLink};
use idbridge_core::ports::IndividualWrite;
use idbridge_core::schedule::LocalInstant;
use idbridge_core::tenant::TenantId;
use idbridge_core::{DomainError, DomainResult};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::convert::{micros, storage, timestamp, unique_or_storage, uuid};
use crate::rows::value_rows;
use crate::stored;
use crate::{Backend, SqlStore};

const COLUMNS: &str = "tenant_id, id, login, email, given_name, family_name, display_name, role, access_profile, scopes,
    time_zone, activation_local, activation_at, expiration_local, expiration_at, status, version, created_at, updated_at,
    deprovisioned_at, provenance, access_ended_at, language";

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
        scopes: stored::read("scopes", &get_s("scopes")?)?,
        activation: local_instant(row, "activation", &time_zone)?,
        expiration: local_instant(row, "expiration", &time_zone)?,
        time_zone,
        language: get_o("language")?,
        status: IndividualStatus::parse(&get_s("status")?)?,
        links,
        deprovisioned_at: row
            .try_get::<Option<i64>, _>("deprovisioned_at")
            .map_err(storage)?
            .map(timestamp)
            .transpose()?,
        provenance: stored::read("provenance", &get_s("provenance")?)?,
        access_ended_at: row
            .try_get::<Option<i64>, _>("access_ended_at")
            .map_err(storage)?
            .map(timestamp)
            .transpose()?,
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

/// Writes in a few statements per 500 inside the caller's transaction: sqlx runs SQLite
/// on a worker thread, and every statement is a round trip to it, so one statement per
/// table per chunk instead of four per individual is what makes 100,000 writes take
/// seconds, not minutes. `false` at a position: that write's version no longer matched,
/// and nothing of it (not its audit record or event) was written.
async fn write_many(backend: Backend, tx: &mut AnyConnection, writes: &[IndividualWrite]) -> DomainResult<Vec<bool>> {
    let mut written = vec![false; writes.len()];
    for (offset, chunk) in chunks_of(writes, 500) {
        let creates: Vec<usize> = (0..chunk.len()).filter(|n| chunk[*n].expected_version.is_none()).collect();
        // An individual planned twice (two sources in one change set) is written once:
        // the second plan was made from the same version and is stale.
        let mut seen = std::collections::HashSet::new();
        let all_updates: Vec<usize> = (0..chunk.len())
            .filter(|n| chunk[*n].expected_version.is_some() && seen.insert(chunk[*n].individual.id))
            .collect();
        let (narrow, updates): (Vec<usize>, Vec<usize>) =
            all_updates.into_iter().partition(|n| chunk[*n].status_only && !chunk[*n].links_changed);
        let key = |w: &IndividualWrite| (w.individual.tenant_id.0.to_string(), w.individual.id.0.to_string());
        if !narrow.is_empty() {
            let done = update_status_many(backend, tx, narrow.iter().map(|n| &chunk[*n])).await?;
            for n in &narrow {
                written[offset + n] = done.contains(&key(&chunk[*n]));
            }
        }
        if !creates.is_empty() {
            insert_many(backend, tx, creates.iter().map(|n| &chunk[*n])).await?;
            for n in &creates {
                written[offset + n] = true;
            }
        }
        if !updates.is_empty() {
            let done = update_many(backend, tx, updates.iter().map(|n| &chunk[*n])).await?;
            for n in &updates {
                written[offset + n] = done.contains(&key(&chunk[*n]));
            }
        }
        let applied: Vec<&IndividualWrite> =
            (0..chunk.len()).filter(|n| written[offset + n]).map(|n| &chunk[n]).collect();
        replace_links_many(backend, tx, applied.iter().copied().filter(|w| w.links_changed)).await?;
        replace_groups_many(backend, tx, applied.iter().copied().filter(|w| w.groups_changed)).await?;
        crate::log::append_audit_many(backend, tx, applied.iter().map(|w| &w.audit)).await?;
        crate::log::append_change_events_many(backend, tx, applied.iter().filter_map(|w| w.event.as_ref())).await?;
    }
    Ok(written)
}

/// The login named in a uniqueness error: the one write's, or "one of a batch".
fn login_of<'w>(writes: &[&'w IndividualWrite]) -> &'w str {
    match writes {
        [one] => &one.individual.login,
        _ => "(one of a batch)",
    }
}

/// Slices of at most `size`, with the offset of each.
fn chunks_of<T>(items: &[T], size: usize) -> impl Iterator<Item = (usize, &[T])> {
    items.chunks(size).enumerate().map(move |(n, chunk)| (n * size, chunk))
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds an individual's columns in the order of `ROW_COLUMNS`. `updated_at` is the
/// writer's (the reconciler's clock), not the store's.
fn bind_row<'q>(q: AnyQuery<'q>, w: &'q IndividualWrite) -> AnyQuery<'q> {
    let i = &w.individual;
    q.bind(i.tenant_id.0.to_string())
        .bind(i.id.0.to_string())
        .bind(w.expected_version.unwrap_or(0))
        .bind(i.login.clone())
        .bind(i.login_key())
        .bind(i.email.clone())
        .bind(i.given_name.clone())
        .bind(i.family_name.clone())
        .bind(i.display_name.clone())
        .bind(i.role.clone())
        .bind(i.access_profile.clone())
        .bind(stored::write(&i.scopes))
        .bind(i.time_zone.clone())
        .bind(i.activation.as_ref().map(|a| a.local.to_string()))
        .bind(i.activation.as_ref().map(|a| micros(a.at)))
        .bind(i.expiration.as_ref().map(|e| e.local.to_string()))
        .bind(i.expiration.as_ref().map(|e| micros(e.at)))
        .bind(i.status.as_str())
        .bind(micros(i.updated_at))
        .bind(i.deprovisioned_at.map(micros))
        .bind(stored::write(&i.provenance))
        .bind(i.access_ended_at.map(micros))
        .bind(i.language.clone())
}

/// The columns `bind_row` binds, in order; `expected` is the version a writer read.
const ROW_COLUMNS: [&str; 23] = [
    "tenant_id",
    "id",
    "expected",
    "login",
    "login_key",
    "email",
    "given_name",
    "family_name",
    "display_name",
    "role",
    "access_profile",
    "scopes",
    "time_zone",
    "activation_local",
    "activation_at",
    "expiration_local",
    "expiration_at",
    "status",
    "updated_at",
    "deprovisioned_at",
    "provenance",
    "access_ended_at",
    "language",
];
const ROW_BIGINT: [usize; 6] = [2, 14, 16, 18, 19, 21];

async fn insert_many<'w>(
    backend: Backend,
    conn: &mut AnyConnection,
    writes: impl Iterator<Item = &'w IndividualWrite>,
) -> DomainResult<()> {
    let writes: Vec<&IndividualWrite> = writes.collect();
    // `expected` goes into `version` (0 + 1 below) and `updated_at` doubles as created_at.
    let sql = format!(
        "INSERT INTO individuals (tenant_id, id, version, login, login_key, email, given_name, family_name,
             display_name, role, access_profile, scopes, time_zone, activation_local, activation_at, expiration_local,
             expiration_at, status, created_at, deprovisioned_at, provenance, access_ended_at, language, updated_at)
         SELECT column1, column2, column3 + 1, column4, column5, column6, column7, column8, column9, column10,
             column11, column12, column13, column14, column15, column16, column17, column18, column19, column20,
             column21, column22, column23, column19
         FROM (VALUES {}) AS v",
        value_rows(backend, writes.len(), ROW_COLUMNS.len(), &ROW_BIGINT)
    );
    let mut query = sqlx::query(&sql);
    for w in &writes {
        query = bind_row(query, w);
    }
    query.execute(&mut *conn).await.map_err(unique_or_storage("individual with login", login_of(&writes)))?;
    Ok(())
}

/// Updates whose version still matches; returns the (tenant, id) of those written.
async fn update_many<'w>(
    backend: Backend,
    conn: &mut AnyConnection,
    writes: impl Iterator<Item = &'w IndividualWrite>,
) -> DomainResult<std::collections::HashSet<(String, String)>> {
    let writes: Vec<&IndividualWrite> = writes.collect();
    let sql = format!(
        "UPDATE individuals SET login = v.column4, login_key = v.column5, email = v.column6,
             given_name = v.column7, family_name = v.column8, display_name = v.column9, role = v.column10,
             access_profile = v.column11, scopes = v.column12, time_zone = v.column13,
             activation_local = v.column14, activation_at = v.column15, expiration_local = v.column16,
             expiration_at = v.column17, status = v.column18, updated_at = v.column19,
             deprovisioned_at = v.column20, provenance = v.column21, access_ended_at = v.column22,
             language = v.column23, version = individuals.version + 1
         FROM (VALUES {}) AS v
         {BATCH_MATCH}",
        value_rows(backend, writes.len(), ROW_COLUMNS.len(), &ROW_BIGINT)
    );
    let mut query = sqlx::query(&sql);
    for w in &writes {
        query = bind_row(query, w);
    }
    let rows =
        query.fetch_all(&mut *conn).await.map_err(unique_or_storage("individual with login", login_of(&writes)))?;
    written_keys(&rows)
}

/// The matching, version-checked tail of a batch `UPDATE … FROM (VALUES …) AS v` whose
/// first three values are tenant, id and expected version. The `|| ''` and `+ 0` keep
/// SQLite from joining the other way round: without them it builds an automatic index on
/// the batch's version column and scans every individual, which made each batch cost in
/// proportion to the tenant's size.
const BATCH_MATCH: &str = "WHERE individuals.tenant_id = v.column1 || '' AND individuals.id = v.column2 || ''
           AND individuals.version = v.column3 + 0
         RETURNING individuals.tenant_id, individuals.id";

/// The (tenant, id) an `UPDATE … RETURNING` wrote.
fn written_keys(rows: &[AnyRow]) -> DomainResult<std::collections::HashSet<(String, String)>> {
    rows.iter()
        .map(|row| Ok((row.try_get::<String, _>(0).map_err(storage)?, row.try_get::<String, _>(1).map_err(storage)?)))
        .collect()
}

/// Status-only updates (scheduler transitions): four columns instead of twenty, so SQLite
/// leaves the other indexes alone. Returns the (tenant, id) of those written.
async fn update_status_many<'w>(
    backend: Backend,
    conn: &mut AnyConnection,
    writes: impl Iterator<Item = &'w IndividualWrite>,
) -> DomainResult<std::collections::HashSet<(String, String)>> {
    let writes: Vec<&IndividualWrite> = writes.collect();
    let sql = format!(
        "UPDATE individuals SET status = v.column4, deprovisioned_at = v.column5, updated_at = v.column6,
             access_ended_at = v.column7, version = individuals.version + 1
         FROM (VALUES {}) AS v
         {BATCH_MATCH}",
        value_rows(backend, writes.len(), 7, &[2, 4, 5, 6])
    );
    let mut query = sqlx::query(&sql);
    for w in &writes {
        query = query
            .bind(w.individual.tenant_id.0.to_string())
            .bind(w.individual.id.0.to_string())
            .bind(w.expected_version.unwrap_or(0))
            .bind(w.individual.status.as_str())
            .bind(w.individual.deprovisioned_at.map(micros))
            .bind(micros(w.individual.updated_at))
            .bind(w.individual.access_ended_at.map(micros));
    }
    let rows = query.fetch_all(&mut *conn).await.map_err(storage)?;
    written_keys(&rows)
}

async fn replace_links_many<'w>(
    backend: Backend,
    conn: &mut AnyConnection,
    writes: impl Iterator<Item = &'w IndividualWrite>,
) -> DomainResult<()> {
    let writes: Vec<&IndividualWrite> = writes.collect();
    if writes.is_empty() {
        return Ok(());
    }
    let sql =
        format!("DELETE FROM individual_links WHERE individual_id IN {}", value_rows(backend, 1, writes.len(), &[]));
    let mut query = sqlx::query(&sql);
    for w in &writes {
        query = query.bind(w.individual.id.0.to_string());
    }
    query.execute(&mut *conn).await.map_err(storage)?;
    let links: Vec<(&IndividualWrite, &SourceLink)> =
        writes.iter().flat_map(|w| w.individual.links.iter().map(move |l| (*w, l))).collect();
    for chunk in links.chunks(1000) {
        let sql = format!(
            "INSERT INTO individual_links (tenant_id, individual_id, source, connection, external_id) VALUES {}",
            value_rows(backend, chunk.len(), 5, &[])
        );
        let mut query = sqlx::query(&sql);
        for (w, link) in chunk {
            query = query
                .bind(w.individual.tenant_id.0.to_string())
                .bind(w.individual.id.0.to_string())
                .bind(link.source.as_str())
                .bind(link.connection.clone())
                .bind(link.external_id.clone());
        }
        query.execute(&mut *conn).await.map_err(unique_or_storage("source identity", "(one of a batch)"))?;
    }
    Ok(())
}

/// Rewrites the portal-group rows of individuals whose groups changed: a statement per
/// tenant to drop the old rows (none for creates), one per 1,000 new rows.
async fn replace_groups_many<'w>(
    backend: Backend,
    conn: &mut AnyConnection,
    writes: impl Iterator<Item = &'w IndividualWrite>,
) -> DomainResult<()> {
    let writes: Vec<&IndividualWrite> = writes.collect();
    let mut updated: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for w in writes.iter().filter(|w| w.expected_version.is_some()) {
        updated.entry(w.individual.tenant_id.0.to_string()).or_default().push(w.individual.id.0.to_string());
    }
    for (tenant, ids) in &updated {
        let sql = format!(
            "DELETE FROM individual_groups WHERE tenant_id = {} AND individual_id IN ({})",
            crate::rows::placeholders(backend, 1, 1),
            crate::rows::placeholders(backend, 2, ids.len())
        );
        let mut query = sqlx::query(&sql).bind(tenant);
        for id in ids {
            query = query.bind(id);
        }
        query.execute(&mut *conn).await.map_err(storage)?;
    }
    let rows: Vec<(&IndividualWrite, &String)> =
        writes.iter().flat_map(|w| w.individual.scopes.groups.iter().map(move |g| (*w, g))).collect();
    for chunk in rows.chunks(1000) {
        let sql = format!(
            "INSERT INTO individual_groups (tenant_id, individual_id, group_name) VALUES {}",
            value_rows(backend, chunk.len(), 3, &[])
        );
        let mut query = sqlx::query(&sql);
        for (w, group) in chunk {
            query = query
                .bind(w.individual.tenant_id.0.to_string())
                .bind(w.individual.id.0.to_string())
                .bind(group.as_str());
        }
        query.execute(&mut *conn).await.map_err(storage)?;
    }
    Ok(())
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
        i.validate()?;
        let tenant = i.tenant_id.0.to_string();
        let id = i.id.0.to_string();
        let mut tx = self.begin().await?;
        if !write_many(self.backend, &mut tx, std::slice::from_ref(write)).await?[0] {
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

    /// A batch in few statements: sqlx runs SQLite on a worker thread, and every
    /// statement is a round trip to it, so one statement per table per chunk instead of
    /// four per individual is what makes 100,000 writes take seconds, not minutes.
    pub(crate) async fn individual_write_batch(&self, writes: &[IndividualWrite]) -> DomainResult<Vec<bool>> {
        for write in writes {
            write.individual.validate()?;
        }
        let mut tx = self.begin().await?;
        let written = write_many(self.backend, &mut tx, writes).await?;
        tx.commit().await.map_err(storage)?;
        Ok(written)
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

    pub(crate) async fn individuals_by_ids(
        &self,
        tenant: TenantId,
        ids: &[IndividualId],
    ) -> DomainResult<Vec<Individual>> {
        let mut conn = self.pool.acquire().await.map_err(storage)?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT {COLUMNS} FROM individuals WHERE tenant_id = {} AND id IN ({})",
                crate::rows::placeholders(self.backend, 1, 1),
                crate::rows::placeholders(self.backend, 2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(tenant.0.to_string());
            for id in chunk {
                query = query.bind(id.0.to_string());
            }
            let rows = query.fetch_all(&mut *conn).await.map_err(storage)?;
            out.extend(load_many(&mut conn, rows).await?);
        }
        Ok(out)
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
                   AND COALESCE(access_ended_at, deprovisioned_at, updated_at) <= $2 LIMIT $3"
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
        let groups: Vec<&String> = match &q.in_groups {
            Some(groups) if groups.is_empty() => return Ok(Vec::new()),
            Some(groups) => groups.iter().collect(),
            None => Vec::new(),
        };
        // Pages walk the (tenant, login_key) index from the cursor — `login_key > ''` from
        // the start, logins are never empty — so a page costs its own rows, not the rows
        // before it. Members are checked per person through the group rows' primary key
        // (tenant, group, individual): listing every member of a 100,000-member group is
        // then linear overall, where collecting the members first costs the whole group on
        // every page. Parameters are numbered in the order they first appear, as SQLite
        // numbers `$n`.
        let in_groups = if groups.is_empty() {
            String::new()
        } else {
            let numbered: Vec<String> = (4..4 + groups.len()).map(|n| format!("${n}")).collect();
            format!(
                "AND EXISTS (SELECT 1 FROM individual_groups g WHERE g.tenant_id = individuals.tenant_id
                     AND g.individual_id = individuals.id AND g.group_name IN ({}))",
                numbered.join(", ")
            )
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM individuals
             WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) AND login_key > COALESCE($3, '') {in_groups}
             ORDER BY login_key LIMIT ${}",
            4 + groups.len()
        );
        let mut query = sqlx::query(&sql)
            .bind(tenant.0.to_string())
            .bind(q.status.map(|s| s.as_str()))
            .bind(q.after_login.as_ref().map(|l| l.to_lowercase()));
        for group in groups {
            query = query.bind(group.as_str());
        }
        let rows = query.bind(i64::from(q.limit.clamp(1, 10_000))).fetch_all(&mut *conn).await.map_err(storage)?;
        load_many(&mut conn, rows).await
    }
}
