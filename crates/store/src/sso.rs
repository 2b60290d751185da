//! Single sign-on state: portal clients, signing keys, logins in flight, sessions,
//! authorization codes and tokens (see `core::sso`).

use async_trait::async_trait;
use idbridge_core::DomainResult;
use idbridge_core::audit::AuditRecord;
use idbridge_core::individual::IndividualId;
use idbridge_core::ports::SsoStore;
use idbridge_core::sso::{
    AuthorizationCode, CodeRedemption, EndedSession, OAuthToken, PortalClient, RefreshUse, SigningKeyRecord,
    SsoSession, TokenKind,
};
use idbridge_core::tenant::TenantId;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::SqlStore;
use crate::convert::{from_json, micros, storage, timestamp, to_json, uuid};
use crate::log::append_audit;
use crate::stored;

const TOKEN_COLUMNS: &str = "hash, kind, grant_id, client_id, tenant_id, individual_id, session_id, scope, \
                             created_at, expires_at, used_at, revoked_at";
const SESSION_COLUMNS: &str = "id, tenant_id, individual_id, connection, auth_time, expires_at, ended_at";

fn opt_time(row: &AnyRow, column: &str) -> DomainResult<Option<Timestamp>> {
    row.try_get::<Option<i64>, _>(column).map_err(storage)?.map(timestamp).transpose()
}

fn token_from_row(row: &AnyRow) -> DomainResult<OAuthToken> {
    let s = |c: &str| row.try_get::<String, _>(c).map_err(storage);
    Ok(OAuthToken {
        hash: s("hash")?,
        kind: TokenKind::parse(&s("kind")?)?,
        grant_id: uuid("grant_id", &s("grant_id")?)?,
        client_id: s("client_id")?,
        tenant_id: TenantId(uuid("tenant_id", &s("tenant_id")?)?),
        individual_id: IndividualId(uuid("individual_id", &s("individual_id")?)?),
        session_id: uuid("session_id", &s("session_id")?)?,
        scope: s("scope")?,
        created_at: timestamp(row.try_get("created_at").map_err(storage)?)?,
        expires_at: timestamp(row.try_get("expires_at").map_err(storage)?)?,
        used_at: opt_time(row, "used_at")?,
        revoked_at: opt_time(row, "revoked_at")?,
    })
}

fn session_from_row(row: &AnyRow) -> DomainResult<SsoSession> {
    let s = |c: &str| row.try_get::<String, _>(c).map_err(storage);
    Ok(SsoSession {
        id: uuid("id", &s("id")?)?,
        tenant_id: TenantId(uuid("tenant_id", &s("tenant_id")?)?),
        individual_id: IndividualId(uuid("individual_id", &s("individual_id")?)?),
        connection: s("connection")?,
        auth_time: timestamp(row.try_get("auth_time").map_err(storage)?)?,
        expires_at: timestamp(row.try_get("expires_at").map_err(storage)?)?,
        ended_at: opt_time(row, "ended_at")?,
    })
}

fn key_from_row(row: &AnyRow) -> DomainResult<SigningKeyRecord> {
    let s = |c: &str| row.try_get::<String, _>(c).map_err(storage);
    Ok(SigningKeyRecord {
        kid: s("kid")?,
        alg: s("alg")?,
        private_pkcs8: s("private_pkcs8")?,
        public_jwk: from_json("public_jwk", &s("public_jwk")?)?,
        created_at: timestamp(row.try_get("created_at").map_err(storage)?)?,
        activates_at: timestamp(row.try_get("activates_at").map_err(storage)?)?,
        retires_at: opt_time(row, "retires_at")?,
        removed_at: opt_time(row, "removed_at")?,
    })
}

#[async_trait]
impl SsoStore for SqlStore {
    async fn put_portal_client(&self, client: &PortalClient, audit: &AuditRecord) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO portal_clients (id, body, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        )
        .bind(&client.id)
        .bind(stored::write(client))
        .bind(micros(client.created_at))
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(storage)
    }

    async fn get_portal_client(&self, id: &str) -> DomainResult<Option<PortalClient>> {
        let row = sqlx::query("SELECT body FROM portal_clients WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?;
        row.map(|r| stored::read("portal client", &r.try_get::<String, _>("body").map_err(storage)?)).transpose()
    }

    async fn list_portal_clients(&self) -> DomainResult<Vec<PortalClient>> {
        let rows =
            sqlx::query("SELECT body FROM portal_clients ORDER BY id").fetch_all(&self.pool).await.map_err(storage)?;
        rows.iter().map(|r| stored::read("portal client", &r.try_get::<String, _>("body").map_err(storage)?)).collect()
    }

    async fn delete_portal_client(&self, id: &str, audit: &AuditRecord) -> DomainResult<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM portal_clients WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(storage)?
            .rows_affected()
            > 0;
        if done {
            // Its tokens stop working with it.
            sqlx::query("UPDATE oauth_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL")
                .bind(micros(audit.at))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
            append_audit(&mut tx, audit).await?;
        }
        tx.commit().await.map_err(storage)?;
        Ok(done)
    }

    async fn list_signing_keys(&self) -> DomainResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_pkcs8, public_jwk, created_at, activates_at, retires_at, removed_at
             FROM signing_keys ORDER BY activates_at DESC, kid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        replaces: &[(String, Timestamp, Timestamp)],
        audit: &AuditRecord,
    ) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_pkcs8, public_jwk, created_at, activates_at, retires_at, removed_at)
             VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.private_pkcs8)
        .bind(to_json(&key.public_jwk))
        .bind(micros(key.created_at))
        .bind(micros(key.activates_at))
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        for (kid, retires, removed) in replaces {
            sqlx::query(
                "UPDATE signing_keys SET retires_at = $1, removed_at = $2 WHERE kid = $3 AND retires_at IS NULL",
            )
            .bind(micros(*retires))
            .bind(micros(*removed))
            .bind(kid)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        }
        // Keys removed from the published set long ago are of no further use.
        sqlx::query("DELETE FROM signing_keys WHERE removed_at IS NOT NULL AND removed_at < $1")
            .bind(micros(key.created_at) - 30 * 86_400 * 1_000_000)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(storage)
    }

    async fn put_pending(&self, hash: &str, data: &str, expires_at: Timestamp) -> DomainResult<()> {
        sqlx::query("INSERT INTO sso_pending (hash, data, expires_at) VALUES ($1, $2, $3)")
            .bind(hash)
            .bind(data)
            .bind(micros(expires_at))
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(())
    }

    async fn take_pending(&self, hash: &str, now: Timestamp) -> DomainResult<Option<String>> {
        let row = sqlx::query("DELETE FROM sso_pending WHERE hash = $1 RETURNING data, expires_at")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?;
        let Some(row) = row else { return Ok(None) };
        if row.try_get::<i64, _>("expires_at").map_err(storage)? <= micros(now) {
            return Ok(None);
        }
        Ok(Some(row.try_get("data").map_err(storage)?))
    }

    async fn create_session(&self, session: &SsoSession, cookie_hash: &str) -> DomainResult<()> {
        sqlx::query(
            "INSERT INTO sso_sessions (id, cookie_hash, tenant_id, individual_id, connection, auth_time, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(session.id.to_string())
        .bind(cookie_hash)
        .bind(session.tenant_id.0.to_string())
        .bind(session.individual_id.0.to_string())
        .bind(&session.connection)
        .bind(micros(session.auth_time))
        .bind(micros(session.expires_at))
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    async fn find_session(&self, cookie_hash: &str, now: Timestamp) -> DomainResult<Option<SsoSession>> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sso_sessions
             WHERE cookie_hash = $1 AND ended_at IS NULL AND expires_at > $2"
        ))
        .bind(cookie_hash)
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn get_session(&self, id: Uuid) -> DomainResult<Option<SsoSession>> {
        let row = sqlx::query(&format!("SELECT {SESSION_COLUMNS} FROM sso_sessions WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn end_session(&self, id: Uuid, now: Timestamp) -> DomainResult<Vec<String>> {
        let mut tx = self.begin().await?;
        let ended = sqlx::query(
            "UPDATE sso_sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL RETURNING tenant_id, individual_id",
        )
        .bind(micros(now))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage)?;
        let clients =
            sqlx::query("SELECT DISTINCT client_id FROM oauth_tokens WHERE session_id = $1 ORDER BY client_id")
                .bind(id.to_string())
                .fetch_all(&mut *tx)
                .await
                .map_err(storage)?
                .iter()
                .map(|r| r.try_get::<String, _>("client_id").map_err(storage))
                .collect::<DomainResult<Vec<_>>>()?;
        sqlx::query("UPDATE oauth_tokens SET revoked_at = $1 WHERE session_id = $2 AND revoked_at IS NULL")
            .bind(micros(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        if let Some(row) = ended {
            // Only a session this call ended owes its portals a logout.
            let tenant = TenantId(uuid("tenant_id", &row.try_get::<String, _>("tenant_id").map_err(storage)?)?);
            let individual =
                IndividualId(uuid("individual_id", &row.try_get::<String, _>("individual_id").map_err(storage)?)?);
            crate::backchannel::owe(&mut tx, tenant, &[(individual, id, clients.clone())], now).await?;
        }
        tx.commit().await.map_err(storage)?;
        Ok(clients)
    }

    async fn claim_backchannel_logouts(
        &self,
        now: Timestamp,
        lease: jiff::SignedDuration,
        limit: u32,
    ) -> DomainResult<Vec<idbridge_core::sso::BackchannelLogout>> {
        self.backchannel_claim(now, lease, limit).await
    }

    async fn backchannel_logout_done(&self, id: i64) -> DomainResult<()> {
        self.backchannel_done(id).await
    }

    async fn backchannel_logout_failed(
        &self,
        id: i64,
        due: Option<Timestamp>,
        error: &str,
        now: Timestamp,
    ) -> DomainResult<()> {
        self.backchannel_failed(id, due, error, now).await
    }

    async fn backchannel_logout_stats(&self, now: Timestamp) -> DomainResult<idbridge_core::sso::BackchannelStats> {
        self.backchannel_stats(now).await
    }

    async fn list_dead_backchannel_logouts(
        &self,
        limit: u32,
    ) -> DomainResult<Vec<idbridge_core::sso::BackchannelLogout>> {
        self.backchannel_dead(limit).await
    }

    async fn end_tenant_sessions(
        &self,
        tenant: TenantId,
        now: Timestamp,
    ) -> DomainResult<Vec<(IndividualId, EndedSession)>> {
        let t = tenant.0.to_string();
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "SELECT s.individual_id AS individual_id, s.id AS session_id, t.client_id AS client_id
             FROM sso_sessions s LEFT JOIN oauth_tokens t ON t.session_id = s.id
             WHERE s.tenant_id = $1 AND s.ended_at IS NULL
             ORDER BY s.individual_id, s.id, t.client_id",
        )
        .bind(&t)
        .fetch_all(&mut *tx)
        .await
        .map_err(storage)?;
        let mut ended: Vec<(IndividualId, EndedSession)> = Vec::new();
        for row in &rows {
            let individual =
                IndividualId(uuid("individual_id", &row.try_get::<String, _>("individual_id").map_err(storage)?)?);
            let session_id = uuid("session_id", &row.try_get::<String, _>("session_id").map_err(storage)?)?;
            if ended.last().is_none_or(|(_, e)| e.session_id != session_id) {
                ended.push((individual, EndedSession { session_id, client_ids: Vec::new() }));
            }
            let client = row.try_get::<Option<String>, _>("client_id").map_err(storage)?;
            if let (Some(client), Some((_, last))) = (client, ended.last_mut())
                && last.client_ids.last() != Some(&client)
            {
                last.client_ids.push(client);
            }
        }
        sqlx::query("UPDATE sso_sessions SET ended_at = $1 WHERE tenant_id = $2 AND ended_at IS NULL")
            .bind(micros(now))
            .bind(&t)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        sqlx::query("UPDATE oauth_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND revoked_at IS NULL")
            .bind(micros(now))
            .bind(&t)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        let owed: Vec<_> = ended.iter().map(|(i, e)| (*i, e.session_id, e.client_ids.clone())).collect();
        crate::backchannel::owe(&mut tx, tenant, &owed, now).await?;
        tx.commit().await.map_err(storage)?;
        Ok(ended)
    }

    async fn end_individual_sessions(
        &self,
        tenant: TenantId,
        individual: IndividualId,
        started_before: Timestamp,
        now: Timestamp,
    ) -> DomainResult<Vec<EndedSession>> {
        let mut tx = self.begin().await?;
        let (t, i) = (tenant.0.to_string(), individual.0.to_string());
        // Sessions that were live, and every portal that holds a token of them.
        let rows = sqlx::query(
            "SELECT s.id AS session_id, t.client_id AS client_id
             FROM sso_sessions s LEFT JOIN oauth_tokens t ON t.session_id = s.id
             WHERE s.tenant_id = $1 AND s.individual_id = $2 AND s.ended_at IS NULL AND s.auth_time < $3
             ORDER BY s.id, t.client_id",
        )
        .bind(&t)
        .bind(&i)
        .bind(micros(started_before))
        .fetch_all(&mut *tx)
        .await
        .map_err(storage)?;
        let mut ended: Vec<EndedSession> = Vec::new();
        for row in &rows {
            let session_id = uuid("session_id", &row.try_get::<String, _>("session_id").map_err(storage)?)?;
            let client = row.try_get::<Option<String>, _>("client_id").map_err(storage)?;
            if ended.last().is_none_or(|e| e.session_id != session_id) {
                ended.push(EndedSession { session_id, client_ids: Vec::new() });
            }
            if let (Some(client), Some(last)) = (client, ended.last_mut())
                && last.client_ids.last() != Some(&client)
            {
                last.client_ids.push(client);
            }
        }
        sqlx::query(
            "UPDATE sso_sessions SET ended_at = $1
             WHERE tenant_id = $2 AND individual_id = $3 AND ended_at IS NULL AND auth_time < $4",
        )
        .bind(micros(now))
        .bind(&t)
        .bind(&i)
        .bind(micros(started_before))
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        // Every token of those sessions, also ones minted (refreshed) after the change.
        sqlx::query(
            "UPDATE oauth_tokens SET revoked_at = $1
             WHERE tenant_id = $2 AND individual_id = $3 AND revoked_at IS NULL
               AND session_id IN (SELECT id FROM sso_sessions
                                  WHERE tenant_id = $2 AND individual_id = $3 AND auth_time < $4)",
        )
        .bind(micros(now))
        .bind(&t)
        .bind(&i)
        .bind(micros(started_before))
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        let owed: Vec<_> = ended.iter().map(|e| (individual, e.session_id, e.client_ids.clone())).collect();
        crate::backchannel::owe(&mut tx, tenant, &owed, now).await?;
        tx.commit().await.map_err(storage)?;
        Ok(ended)
    }

    async fn put_code(&self, hash: &str, code: &AuthorizationCode) -> DomainResult<()> {
        sqlx::query("INSERT INTO oauth_codes (hash, data, expires_at) VALUES ($1, $2, $3)")
            .bind(hash)
            .bind(stored::write(code))
            .bind(micros(code.expires_at))
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(())
    }

    async fn redeem_code(&self, hash: &str, grant_id: Uuid, now: Timestamp) -> DomainResult<CodeRedemption> {
        let row = sqlx::query(
            "UPDATE oauth_codes SET redeemed_at = $1, grant_id = $2
             WHERE hash = $3 AND redeemed_at IS NULL RETURNING data, expires_at",
        )
        .bind(micros(now))
        .bind(grant_id.to_string())
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        if let Some(row) = row {
            if row.try_get::<i64, _>("expires_at").map_err(storage)? <= micros(now) {
                return Ok(CodeRedemption::Unknown);
            }
            let code: AuthorizationCode = stored::read("code", &row.try_get::<String, _>("data").map_err(storage)?)?;
            return Ok(CodeRedemption::Fresh(code));
        }
        let earlier = sqlx::query("SELECT grant_id FROM oauth_codes WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?;
        let Some(earlier) = earlier else { return Ok(CodeRedemption::Unknown) };
        // RFC 6749 §4.1.2: a code used twice revokes what it was exchanged for.
        if let Some(grant) = earlier.try_get::<Option<String>, _>("grant_id").map_err(storage)? {
            revoke_grant(self, &grant, now).await?;
        }
        Ok(CodeRedemption::Replayed)
    }

    async fn put_tokens(&self, tokens: &[OAuthToken]) -> DomainResult<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        let mut sql = format!("INSERT INTO oauth_tokens ({TOKEN_COLUMNS}) VALUES ");
        for i in 0..tokens.len() {
            let b = i * 10;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, NULL, NULL)",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9,
                b + 10
            ));
        }
        let mut query = sqlx::query(&sql);
        for t in tokens {
            query = query
                .bind(&t.hash)
                .bind(t.kind.as_str())
                .bind(t.grant_id.to_string())
                .bind(&t.client_id)
                .bind(t.tenant_id.0.to_string())
                .bind(t.individual_id.0.to_string())
                .bind(t.session_id.to_string())
                .bind(&t.scope)
                .bind(micros(t.created_at))
                .bind(micros(t.expires_at));
        }
        query.execute(&self.pool).await.map_err(storage)?;
        Ok(())
    }

    async fn find_access_token(&self, hash: &str, now: Timestamp) -> DomainResult<Option<OAuthToken>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM oauth_tokens
             WHERE hash = $1 AND kind = 'access' AND revoked_at IS NULL AND expires_at > $2"
        ))
        .bind(hash)
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn use_refresh_token(&self, hash: &str, now: Timestamp) -> DomainResult<RefreshUse> {
        let row = sqlx::query(&format!(
            "UPDATE oauth_tokens SET used_at = $1
             WHERE hash = $2 AND kind = 'refresh' AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1
             RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(micros(now))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        if let Some(row) = row {
            return Ok(RefreshUse::Fresh(token_from_row(&row)?));
        }
        let earlier =
            sqlx::query("SELECT grant_id, used_at, revoked_at FROM oauth_tokens WHERE hash = $1 AND kind = 'refresh'")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(storage)?;
        let Some(earlier) = earlier else { return Ok(RefreshUse::Unknown) };
        if opt_time(&earlier, "used_at")?.is_none() {
            return Ok(match opt_time(&earlier, "revoked_at")? {
                Some(_) => RefreshUse::Revoked,
                // Merely expired.
                None => RefreshUse::Unknown,
            });
        }
        // A refresh token presented twice was stolen or leaked: end the whole family.
        let grant: String = earlier.try_get("grant_id").map_err(storage)?;
        revoke_grant(self, &grant, now).await?;
        Ok(RefreshUse::Reused)
    }

    async fn purge_sso(&self, now: Timestamp) -> DomainResult<u64> {
        let now = micros(now);
        // Used and revoked tokens are kept a day past expiry so that reuse is still
        // recognised as reuse, not as an unknown token.
        let day = 86_400 * 1_000_000;
        let mut purged = 0;
        for (sql, cutoff) in [
            ("DELETE FROM sso_pending WHERE expires_at < $1", now),
            ("DELETE FROM oauth_codes WHERE expires_at < $1", now - day),
            ("DELETE FROM oauth_tokens WHERE expires_at < $1", now - day),
            ("DELETE FROM sso_sessions WHERE expires_at < $1", now - day),
        ] {
            purged += sqlx::query(sql).bind(cutoff).execute(&self.pool).await.map_err(storage)?.rows_affected();
        }
        Ok(purged)
    }
}

async fn revoke_grant(store: &SqlStore, grant: &str, now: Timestamp) -> DomainResult<()> {
    sqlx::query("UPDATE oauth_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL")
        .bind(micros(now))
        .bind(grant)
        .execute(&store.pool)
        .await
        .map_err(storage)?;
    Ok(())
}
