//! Individuals' own credentials (`local_credentials`) and the mail outbox (`mails`), see
//! `core::local_account`.

use async_trait::async_trait;
use idbridge_core::DomainResult;
use idbridge_core::audit::AuditRecord;
use idbridge_core::individual::IndividualId;
use idbridge_core::local_account::{CredentialLink, LinkPurpose, LocalCredential, Mail, MailKind, MailState};
use idbridge_core::ports::LocalAccountStore;
use idbridge_core::tenant::TenantId;
use jiff::{SignedDuration, Timestamp};
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::convert::{micros, storage, timestamp, to_json, uuid};
use crate::log::append_audit;
use crate::{Backend, SqlStore};

const CREDENTIAL_COLUMNS: &str = "tenant_id, individual_id, email_key, password_hash, password_set_at, totp_secret, \
                                  totp_confirmed_at, totp_last_step, recovery_codes, passkeys, link_hash, link_purpose, link_expires_at, \
                                  failures, locked_until, expiry_noticed_for, updated_at";
const MAIL_COLUMNS: &str = "id, tenant_id, individual_id, kind, recipient, body, state, attempts, next_attempt_at, last_error, created_at, \
     sent_at";

fn opt_time(row: &AnyRow, column: &str) -> DomainResult<Option<Timestamp>> {
    row.try_get::<Option<i64>, _>(column).map_err(storage)?.map(timestamp).transpose()
}

fn credential_from_row(row: &AnyRow) -> DomainResult<LocalCredential> {
    let text = |c: &str| row.try_get::<String, _>(c).map_err(storage);
    let link_hash: Option<String> = row.try_get("link_hash").map_err(storage)?;
    let purpose: Option<String> = row.try_get("link_purpose").map_err(storage)?;
    let link = match (link_hash, purpose.as_deref().and_then(LinkPurpose::parse), opt_time(row, "link_expires_at")?) {
        (Some(hash), Some(purpose), Some(expires_at)) => Some(CredentialLink { hash, purpose, expires_at }),
        // A purpose a newer version wrote: no link this version can honour.
        _ => None,
    };
    let codes: String = text("recovery_codes")?;
    Ok(LocalCredential {
        tenant_id: TenantId(uuid("tenant_id", &text("tenant_id")?)?),
        individual_id: IndividualId(uuid("individual_id", &text("individual_id")?)?),
        email_key: text("email_key")?,
        password_hash: row.try_get("password_hash").map_err(storage)?,
        password_set_at: opt_time(row, "password_set_at")?,
        totp_secret: row.try_get("totp_secret").map_err(storage)?,
        totp_confirmed_at: opt_time(row, "totp_confirmed_at")?,
        totp_last_step: row.try_get("totp_last_step").map_err(storage)?,
        // Unreadable codes read as none: the person signs in with the TOTP, not with them.
        recovery_codes: serde_json::from_str(&codes).unwrap_or_default(),
        passkeys: crate::stored::read("passkeys", &text("passkeys")?)?,
        link,
        failures: u32::try_from(row.try_get::<i64, _>("failures").map_err(storage)?).unwrap_or(u32::MAX),
        locked_until: opt_time(row, "locked_until")?,
        expiry_noticed_for: opt_time(row, "expiry_noticed_for")?,
        updated_at: timestamp(row.try_get("updated_at").map_err(storage)?)?,
    })
}

fn mail_from_row(row: &AnyRow) -> DomainResult<Mail> {
    let text = |c: &str| row.try_get::<String, _>(c).map_err(storage);
    let body: Option<String> = row.try_get("body").map_err(storage)?;
    let kind = text("kind")?;
    let state = text("state")?;
    Ok(Mail {
        id: uuid("id", &text("id")?)?,
        tenant_id: TenantId(uuid("tenant_id", &text("tenant_id")?)?),
        individual_id: IndividualId(uuid("individual_id", &text("individual_id")?)?),
        kind: MailKind::parse(&kind)
            .ok_or_else(|| idbridge_core::DomainError::Storage(format!("mail kind {kind:?} is unknown")))?,
        recipient: text("recipient")?,
        body: body.and_then(|b| serde_json::from_str(&b).ok()),
        state: MailState::parse(&state).unwrap_or(MailState::Pending),
        attempts: u32::try_from(row.try_get::<i64, _>("attempts").map_err(storage)?).unwrap_or(u32::MAX),
        next_attempt_at: timestamp(row.try_get("next_attempt_at").map_err(storage)?)?,
        last_error: row.try_get("last_error").map_err(storage)?,
        created_at: timestamp(row.try_get("created_at").map_err(storage)?)?,
        sent_at: opt_time(row, "sent_at")?,
    })
}

#[async_trait]
impl LocalAccountStore for SqlStore {
    async fn get_local_credential(
        &self,
        tenant: TenantId,
        individual: IndividualId,
    ) -> DomainResult<Option<LocalCredential>> {
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM local_credentials WHERE individual_id = $1 AND tenant_id = $2"
        ))
        .bind(individual.0.to_string())
        .bind(tenant.0.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.as_ref().map(credential_from_row).transpose()
    }

    async fn find_local_credentials(&self, email_key: &str) -> DomainResult<Vec<LocalCredential>> {
        let rows = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM local_credentials WHERE email_key = $1 ORDER BY tenant_id LIMIT 20"
        ))
        .bind(email_key)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(credential_from_row).collect()
    }

    async fn put_local_credential(&self, c: &LocalCredential, audit: Option<&AuditRecord>) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        upsert_credential(&mut tx, c).await?;
        if let Some(audit) = audit {
            append_audit(&mut tx, audit).await?;
        }
        tx.commit().await.map_err(storage)
    }

    async fn put_local_credential_and_mail(
        &self,
        credential: &LocalCredential,
        audit: &AuditRecord,
        mail: &Mail,
        mail_audit: &AuditRecord,
    ) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        upsert_credential(&mut tx, credential).await?;
        append_audit(&mut tx, audit).await?;
        insert_mail(&mut tx, mail).await?;
        append_audit(&mut tx, mail_audit).await?;
        tx.commit().await.map_err(storage)
    }

    async fn take_local_link(
        &self,
        link_hash: &str,
        purpose: LinkPurpose,
        now: Timestamp,
    ) -> DomainResult<Option<LocalCredential>> {
        let row = sqlx::query(&format!(
            "UPDATE local_credentials SET link_hash = NULL, link_purpose = NULL, link_expires_at = NULL
             WHERE link_hash = $1 AND link_purpose = $2 AND link_expires_at > $3
             RETURNING {CREDENTIAL_COLUMNS}"
        ))
        .bind(link_hash)
        .bind(purpose.as_str())
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.as_ref().map(credential_from_row).transpose()
    }

    async fn find_local_link(&self, link_hash: &str, now: Timestamp) -> DomainResult<Option<LocalCredential>> {
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM local_credentials WHERE link_hash = $1 AND link_expires_at > $2"
        ))
        .bind(link_hash)
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.as_ref().map(credential_from_row).transpose()
    }

    async fn count_local_failure(
        &self,
        tenant: TenantId,
        individual: IndividualId,
        now: Timestamp,
    ) -> DomainResult<u32> {
        let failures: Option<i64> = sqlx::query_scalar(
            "UPDATE local_credentials SET failures = failures + 1, updated_at = $3
             WHERE individual_id = $1 AND tenant_id = $2 RETURNING failures",
        )
        .bind(individual.0.to_string())
        .bind(tenant.0.to_string())
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        Ok(failures.map_or(0, |f| u32::try_from(f).unwrap_or(u32::MAX)))
    }

    async fn lock_local_account(
        &self,
        tenant: TenantId,
        individual: IndividualId,
        until: Timestamp,
        audit: &AuditRecord,
    ) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE local_credentials SET locked_until = $3 WHERE individual_id = $1 AND tenant_id = $2")
            .bind(individual.0.to_string())
            .bind(tenant.0.to_string())
            .bind(micros(until))
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(storage)
    }

    async fn reset_local_failures(&self, tenant: TenantId, individual: IndividualId) -> DomainResult<()> {
        sqlx::query(
            "UPDATE local_credentials SET failures = 0, locked_until = NULL
             WHERE individual_id = $1 AND tenant_id = $2 AND (failures <> 0 OR locked_until IS NOT NULL)",
        )
        .bind(individual.0.to_string())
        .bind(tenant.0.to_string())
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    async fn list_expiry_notices_due(
        &self,
        tenant: TenantId,
        now: Timestamp,
        horizon: Timestamp,
        limit: u32,
    ) -> DomainResult<Vec<LocalCredential>> {
        let columns = CREDENTIAL_COLUMNS.split(", ").map(|c| format!("c.{}", c.trim())).collect::<Vec<_>>().join(", ");
        // Driven by the individuals' expiration index: the few expiring in the window,
        // then their credential (if they have one).
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM individuals i
             JOIN local_credentials c ON c.individual_id = i.id AND c.tenant_id = i.tenant_id
             WHERE i.tenant_id = $1 AND i.expiration_at > $2 AND i.expiration_at <= $3
               AND i.status IN ('pending', 'active')
               AND (c.expiry_noticed_for IS NULL OR c.expiry_noticed_for <> i.expiration_at)
             ORDER BY i.expiration_at LIMIT $4"
        ))
        .bind(tenant.0.to_string())
        .bind(micros(now))
        .bind(micros(horizon))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(credential_from_row).collect()
    }

    async fn enqueue_expiry_notice(
        &self,
        mail: &Mail,
        expiration: Timestamp,
        audit: &AuditRecord,
    ) -> DomainResult<bool> {
        let mut tx = self.begin().await?;
        let marked = sqlx::query(
            "UPDATE local_credentials SET expiry_noticed_for = $1
             WHERE individual_id = $2 AND tenant_id = $3
               AND (expiry_noticed_for IS NULL OR expiry_noticed_for <> $4)",
        )
        .bind(micros(expiration))
        .bind(mail.individual_id.0.to_string())
        .bind(mail.tenant_id.0.to_string())
        .bind(micros(expiration))
        .execute(&mut *tx)
        .await
        .map_err(storage)?
        .rows_affected();
        if marked == 0 {
            return Ok(false);
        }
        insert_mail(&mut tx, mail).await?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(storage)?;
        Ok(true)
    }

    async fn enqueue_mail(&self, mail: &Mail, audit: &AuditRecord) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        insert_mail(&mut tx, mail).await?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(storage)
    }

    async fn claim_due_mails(&self, now: Timestamp, lease: SignedDuration, limit: u32) -> DomainResult<Vec<Mail>> {
        // PostgreSQL: concurrent senders skip each other's rows. SQLite has one writer.
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE mails SET next_attempt_at = $1, attempts = attempts + 1
             WHERE id IN (SELECT id FROM mails WHERE state = 'pending' AND next_attempt_at <= $2
                          ORDER BY next_attempt_at LIMIT $3 {lock})
             RETURNING {MAIL_COLUMNS}"
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
        let mut mails = rows.iter().map(mail_from_row).collect::<DomainResult<Vec<_>>>()?;
        mails.sort_by_key(|m| m.created_at);
        Ok(mails)
    }

    async fn mail_sent(&self, id: Uuid, now: Timestamp, audit: &AuditRecord) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE mails SET state = 'sent', body = NULL, sent_at = $2, last_error = NULL WHERE id = $1")
            .bind(id.to_string())
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(storage)
    }

    async fn mail_failed(
        &self,
        id: Uuid,
        due: Option<Timestamp>,
        error: &str,
        now: Timestamp,
        audit: Option<&AuditRecord>,
    ) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        match due {
            Some(due) => {
                sqlx::query("UPDATE mails SET next_attempt_at = $2, last_error = $3 WHERE id = $1")
                    .bind(id.to_string())
                    .bind(micros(due))
                    .bind(error)
                    .execute(&mut *tx)
                    .await
                    .map_err(storage)?;
            }
            None => {
                sqlx::query(
                    "UPDATE mails SET state = 'dead', body = NULL, last_error = $3, next_attempt_at = $2 WHERE id = $1",
                )
                .bind(id.to_string())
                .bind(micros(now))
                .bind(error)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
            }
        }
        if let Some(audit) = audit {
            append_audit(&mut tx, audit).await?;
        }
        tx.commit().await.map_err(storage)
    }

    async fn list_mails(
        &self,
        tenant: TenantId,
        individual: Option<IndividualId>,
        limit: u32,
    ) -> DomainResult<Vec<Mail>> {
        let rows = match individual {
            Some(individual) => sqlx::query(&format!(
                "SELECT {MAIL_COLUMNS} FROM mails WHERE tenant_id = $1 AND individual_id = $2
                 ORDER BY created_at DESC LIMIT $3"
            ))
            .bind(tenant.0.to_string())
            .bind(individual.0.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?,
            None => sqlx::query(&format!(
                "SELECT {MAIL_COLUMNS} FROM mails WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT $2"
            ))
            .bind(tenant.0.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?,
        };
        rows.iter().map(mail_from_row).collect()
    }
}

async fn upsert_credential(conn: &mut AnyConnection, c: &LocalCredential) -> DomainResult<()> {
    sqlx::query(&format!(
        "INSERT INTO local_credentials ({CREDENTIAL_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT (individual_id) DO UPDATE SET
                 email_key = excluded.email_key, password_hash = excluded.password_hash,
                 password_set_at = excluded.password_set_at, totp_secret = excluded.totp_secret,
                 totp_confirmed_at = excluded.totp_confirmed_at, totp_last_step = excluded.totp_last_step,
                 recovery_codes = excluded.recovery_codes, passkeys = excluded.passkeys,
                 link_hash = excluded.link_hash, link_purpose = excluded.link_purpose,
                 link_expires_at = excluded.link_expires_at, failures = excluded.failures,
                 locked_until = excluded.locked_until, expiry_noticed_for = excluded.expiry_noticed_for,
                 updated_at = excluded.updated_at
             WHERE local_credentials.tenant_id = excluded.tenant_id"
    ))
    .bind(c.tenant_id.0.to_string())
    .bind(c.individual_id.0.to_string())
    .bind(&c.email_key)
    .bind(&c.password_hash)
    .bind(c.password_set_at.map(micros))
    .bind(&c.totp_secret)
    .bind(c.totp_confirmed_at.map(micros))
    .bind(c.totp_last_step)
    .bind(to_json(&c.recovery_codes))
    .bind(crate::stored::write(&c.passkeys))
    .bind(c.link.as_ref().map(|l| l.hash.clone()))
    .bind(c.link.as_ref().map(|l| l.purpose.as_str()))
    .bind(c.link.as_ref().map(|l| micros(l.expires_at)))
    .bind(i64::from(c.failures))
    .bind(c.locked_until.map(micros))
    .bind(c.expiry_noticed_for.map(micros))
    .bind(micros(c.updated_at))
    .execute(&mut *conn)
    .await
    .map_err(storage)?;
    Ok(())
}

async fn insert_mail(conn: &mut AnyConnection, mail: &Mail) -> DomainResult<()> {
    sqlx::query(&format!(
        "INSERT INTO mails ({MAIL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(mail.id.to_string())
    .bind(mail.tenant_id.0.to_string())
    .bind(mail.individual_id.0.to_string())
    .bind(mail.kind.as_str())
    .bind(&mail.recipient)
    .bind(mail.body.as_ref().map(to_json))
    .bind(mail.state.as_str())
    .bind(i64::from(mail.attempts))
    .bind(micros(mail.next_attempt_at))
    .bind(&mail.last_error)
    .bind(micros(mail.created_at))
    .bind(mail.sent_at.map(micros))
    .execute(&mut *conn)
    .await
    .map_err(storage)?;
    Ok(())
}
