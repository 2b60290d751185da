//! The core ports for `SqlStore`, one impl per concern, each method delegating to the
//! module of its tables.

use async_trait::async_trait;
use idbridge_core::DomainResult;
use idbridge_core::audit::AuditRecord;
use idbridge_core::audit::{AuditContext, AuditEntry, AuditQuery, ChangeEvent};
use idbridge_core::catalog::CatalogEntry;
use idbridge_core::changeset::{ChangeSetDecision, ChangeSetStatus, HeldChangeSet};
use idbridge_core::config_plan::ConfigChange;
use idbridge_core::individual::SourceLink;
use idbridge_core::individual::{Individual, IndividualId, IndividualQuery, SourceKind};
use idbridge_core::intent::{Intent, IntentStats, Owed};
use idbridge_core::ports::{
    AuditLog, ChangeSetStore, ConfigStore, IndividualStore, IndividualWrite, IndividualWriter, IntentQueue, Leases,
    ScimRecordStore, ScimWritten, TenantStore,
};
use idbridge_core::role::{AccessProfile, Role};
use idbridge_core::source_record::{ScimKind, ScimMember, ScimQuery, ScimRecord, ScimWrite};
use idbridge_core::tenant::{Tenant, TenantId, TenantSettings, TenantSlug};
use idbridge_core::token::ScimTokenRecord;
use uuid::Uuid;

use crate::SqlStore;
use crate::convert::storage;

#[async_trait]
impl TenantStore for SqlStore {
    async fn create_tenant(
        &self,
        id: TenantId,
        slug: &TenantSlug,
        settings: &TenantSettings,
        ctx: &AuditContext,
    ) -> DomainResult<Tenant> {
        self.tenant_create(id, slug, settings, ctx).await
    }

    async fn get_tenant(&self, slug: &TenantSlug) -> DomainResult<Option<Tenant>> {
        self.tenant_get(slug).await
    }

    async fn list_tenants(&self) -> DomainResult<Vec<Tenant>> {
        self.tenant_list().await
    }

    async fn update_tenant(
        &self,
        id: TenantId,
        expected_version: i64,
        settings: &TenantSettings,
        ctx: &AuditContext,
    ) -> DomainResult<Tenant> {
        self.tenant_update(id, expected_version, settings, ctx).await
    }

    async fn create_scim_token(&self, token: &ScimTokenRecord, ctx: &AuditContext) -> DomainResult<()> {
        self.scim_token_create(token, ctx).await
    }

    async fn list_scim_tokens(&self, tenant: TenantId) -> DomainResult<Vec<ScimTokenRecord>> {
        self.scim_token_list(tenant).await
    }

    async fn find_scim_token(&self, tenant: TenantId, id: &str) -> DomainResult<Option<ScimTokenRecord>> {
        self.scim_token_find(tenant, id).await
    }

    async fn revoke_scim_token(&self, tenant: TenantId, id: &str, ctx: &AuditContext) -> DomainResult<()> {
        self.scim_token_revoke(tenant, id, ctx).await
    }
}

#[async_trait]
impl ConfigStore for SqlStore {
    async fn list_catalog_entries(&self) -> DomainResult<Vec<CatalogEntry>> {
        self.catalog_list().await
    }

    async fn list_roles(&self) -> DomainResult<Vec<Role>> {
        self.role_list().await
    }

    async fn list_access_profiles(&self) -> DomainResult<Vec<AccessProfile>> {
        self.access_profile_list().await
    }

    async fn list_mapping_rules(&self) -> DomainResult<Vec<(TenantId, Vec<idbridge_core::mapping::rules::Rule>)>> {
        self.mapping_rules_list().await
    }

    async fn get_mapping_rules(&self, tenant: TenantId) -> DomainResult<Vec<idbridge_core::mapping::rules::Rule>> {
        self.mapping_rules_get(tenant).await
    }

    async fn apply_config(&self, changes: &[ConfigChange], ctx: &AuditContext) -> DomainResult<()> {
        self.config_apply(changes, ctx).await
    }
}

#[async_trait]
impl IndividualStore for SqlStore {
    async fn count_individuals_holding_access(&self, tenant: TenantId) -> DomainResult<u64> {
        self.individual_count_holding_access(tenant).await
    }

    async fn access_taken_since(&self, tenant: TenantId, since: jiff::Timestamp) -> DomainResult<u64> {
        self.access_taken_count(tenant, since).await
    }

    async fn get_individual(&self, tenant: TenantId, id: IndividualId) -> DomainResult<Option<Individual>> {
        self.individual_get(tenant, id).await
    }

    async fn find_individual_by_login(&self, tenant: TenantId, login: &str) -> DomainResult<Option<Individual>> {
        self.individual_by_login(tenant, login).await
    }

    async fn find_individual_by_link(
        &self,
        tenant: TenantId,
        source: SourceKind,
        connection: &str,
        external_id: &str,
    ) -> DomainResult<Option<Individual>> {
        self.individual_by_link(tenant, source, connection, external_id).await
    }

    async fn get_individuals(&self, tenant: TenantId, ids: &[IndividualId]) -> DomainResult<Vec<Individual>> {
        self.individuals_by_ids(tenant, ids).await
    }

    async fn find_individuals_by_links(
        &self,
        tenant: TenantId,
        source: SourceKind,
        connection: &str,
        external_ids: &[String],
    ) -> DomainResult<Vec<Individual>> {
        self.individual_by_links(tenant, source, connection, external_ids).await
    }

    async fn list_individuals(&self, tenant: TenantId, query: &IndividualQuery) -> DomainResult<Vec<Individual>> {
        self.individual_list(tenant, query).await
    }

    async fn list_due_individuals(&self, now: jiff::Timestamp, limit: u32) -> DomainResult<Vec<Individual>> {
        self.individual_due(now, limit).await
    }

    async fn list_deprovision_due(
        &self,
        tenant: TenantId,
        grace_cutoff: jiff::Timestamp,
        retention_cutoff: jiff::Timestamp,
        limit: u32,
    ) -> DomainResult<Vec<Individual>> {
        self.individual_deprovision_due(tenant, grace_cutoff, retention_cutoff, limit).await
    }
}

#[async_trait]
impl IndividualWriter for SqlStore {
    async fn write_individual(&self, write: &IndividualWrite) -> DomainResult<Individual> {
        self.individual_write(write).await
    }

    async fn write_individuals(&self, writes: &[IndividualWrite]) -> DomainResult<Vec<bool>> {
        self.individual_write_batch(writes).await
    }

    async fn record_access_taken(&self, tenant: TenantId, at: jiff::Timestamp, taken: u64) -> DomainResult<()> {
        self.access_taken_record(tenant, at, taken).await
    }
}

#[async_trait]
impl ChangeSetStore for SqlStore {
    async fn put_change_set(
        &self,
        set: &idbridge_core::changeset::ChangeSetHeader,
        writes: &[idbridge_core::changeset::HeldWrite],
        audit: &AuditRecord,
    ) -> DomainResult<()> {
        self.change_set_put(set, writes, audit).await
    }

    async fn get_change_set(&self, tenant: TenantId, id: Uuid) -> DomainResult<Option<HeldChangeSet>> {
        self.change_set_get(tenant, id).await
    }

    async fn change_set_writes(
        &self,
        tenant: TenantId,
        id: Uuid,
        after: Option<u64>,
        limit: usize,
    ) -> DomainResult<Vec<(u64, idbridge_core::changeset::HeldWrite)>> {
        self.change_set_page(tenant, id, after, limit).await
    }

    async fn extend_change_set(
        &self,
        tenant: TenantId,
        id: Uuid,
        writes: &[idbridge_core::changeset::HeldWrite],
        audit: &AuditRecord,
    ) -> DomainResult<Option<idbridge_core::changeset::ChangeSummary>> {
        self.change_set_extend(tenant, id, writes, audit).await
    }

    async fn get_change_set_header(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> DomainResult<Option<idbridge_core::changeset::ChangeSetHeader>> {
        self.change_set_header(tenant, id).await
    }

    async fn list_change_sets(
        &self,
        tenant: Option<TenantId>,
        status: Option<ChangeSetStatus>,
    ) -> DomainResult<Vec<idbridge_core::changeset::ChangeSetHeader>> {
        self.change_set_list(tenant, status).await
    }

    async fn find_change_set(&self, id: Uuid) -> DomainResult<Option<idbridge_core::changeset::ChangeSetHeader>> {
        self.change_set_find(id).await
    }

    async fn decide_change_set(
        &self,
        tenant: TenantId,
        id: Uuid,
        decision: &ChangeSetDecision,
        audit: &AuditRecord,
    ) -> DomainResult<()> {
        self.change_set_decide(tenant, id, decision, audit).await
    }
}

#[async_trait]
impl Leases for SqlStore {
    async fn ping(&self) -> DomainResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(storage)?;
        Ok(())
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: jiff::Timestamp,
        until: jiff::Timestamp,
    ) -> DomainResult<bool> {
        self.lease_try(name, holder, now, until).await
    }
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn append_audit(&self, record: &AuditRecord) -> DomainResult<()> {
        let mut tx = self.begin().await?;
        crate::log::append_audit(&mut tx, record).await?;
        tx.commit().await.map_err(storage)
    }

    async fn list_audit(&self, query: &AuditQuery) -> DomainResult<Vec<AuditEntry>> {
        self.audit_list(query).await
    }

    async fn list_all_change_events(&self, after: i64, limit: u32) -> DomainResult<Vec<(i64, ChangeEvent)>> {
        self.change_events_all(after, limit).await
    }

    async fn consumer_position(&self, consumer: &str) -> DomainResult<i64> {
        self.consumer_position(consumer).await
    }

    async fn advance_consumer(
        &self,
        consumer: &str,
        position: i64,
        dead_letter: Option<(&ChangeEvent, &str)>,
    ) -> DomainResult<()> {
        self.advance_consumer(consumer, position, dead_letter).await
    }

    async fn list_change_events(
        &self,
        tenant: TenantId,
        after: i64,
        limit: u32,
    ) -> DomainResult<Vec<(i64, ChangeEvent)>> {
        self.change_events_list(tenant, after, limit).await
    }
}

#[async_trait]
impl ScimRecordStore for SqlStore {
    async fn write_scim(&self, write: &ScimWrite) -> DomainResult<ScimWritten> {
        self.scim_write(write).await
    }

    async fn get_scim(&self, tenant: TenantId, kind: ScimKind, id: Uuid) -> DomainResult<Option<ScimRecord>> {
        self.scim_get(tenant, kind, id).await
    }

    async fn get_scim_many(&self, tenant: TenantId, kind: ScimKind, ids: &[Uuid]) -> DomainResult<Vec<ScimRecord>> {
        self.scim_get_many(tenant, kind, ids).await
    }

    async fn delete_scim(
        &self,
        tenant: TenantId,
        kind: ScimKind,
        id: Uuid,
        change: Uuid,
        audit: &AuditRecord,
    ) -> DomainResult<Option<Owed>> {
        self.scim_delete(tenant, kind, id, change, audit).await
    }

    async fn list_scim(
        &self,
        tenant: TenantId,
        kind: ScimKind,
        query: &ScimQuery,
    ) -> DomainResult<(Vec<ScimRecord>, u64)> {
        self.scim_list(tenant, kind, query).await
    }

    async fn list_scim_members(
        &self,
        tenant: TenantId,
        group: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> DomainResult<Vec<ScimMember>> {
        self.scim_members(tenant, group, after, limit).await
    }

    async fn list_scim_groups_of(&self, tenant: TenantId, member: Uuid) -> DomainResult<Vec<ScimMember>> {
        self.scim_groups_of(tenant, member).await
    }

    async fn list_scim_groups_of_many(
        &self,
        tenant: TenantId,
        members: &[Uuid],
    ) -> DomainResult<Vec<(Uuid, ScimMember)>> {
        self.scim_groups_of_many(tenant, members).await
    }
}

#[async_trait]
impl IntentQueue for SqlStore {
    async fn add_intents(
        &self,
        tenant: TenantId,
        people: &[SourceLink],
        due: jiff::Timestamp,
    ) -> DomainResult<Vec<i64>> {
        self.intents_add(tenant, people, due).await
    }

    async fn claim_intents(&self, now: jiff::Timestamp, limit: u32) -> DomainResult<Vec<Intent>> {
        self.intents_claim(now, limit).await
    }

    async fn clear_intents(&self, ids: &[i64]) -> DomainResult<()> {
        self.intents_clear(ids).await
    }

    async fn retry_intents(&self, retry: &[(i64, jiff::Timestamp)], error: &str) -> DomainResult<()> {
        self.intents_retry(retry, error).await
    }

    async fn release_intents(&self, now: jiff::Timestamp) -> DomainResult<u64> {
        self.intents_release(now).await
    }

    async fn intent_stats(&self, now: jiff::Timestamp) -> DomainResult<IntentStats> {
        self.intents_stats(now).await
    }

    async fn intents_of(&self, tenant: TenantId, people: &[SourceLink]) -> DomainResult<Vec<Intent>> {
        SqlStore::intents_of(self, tenant, people).await
    }
}

#[async_trait]
impl idbridge_core::ports::ConnectorStore for SqlStore {
    async fn owe_connector_pushes(
        &self,
        tenant: TenantId,
        connector: &str,
        individuals: &[IndividualId],
        now: jiff::Timestamp,
    ) -> DomainResult<()> {
        self.connector_owe(tenant, connector, individuals, now).await
    }

    async fn owe_connector_repair(&self, tenant: TenantId, connector: &str, now: jiff::Timestamp) -> DomainResult<u64> {
        self.connector_owe_repair(tenant, connector, now).await
    }

    async fn due_connector_links(
        &self,
        tenant: TenantId,
        connector: &str,
        now: jiff::Timestamp,
        limit: u32,
    ) -> DomainResult<Vec<idbridge_core::connector::ConnectorLink>> {
        self.connector_due(tenant, connector, now, limit).await
    }

    async fn begin_connector_attempts(
        &self,
        tenant: TenantId,
        connector: &str,
        individuals: &[IndividualId],
    ) -> DomainResult<()> {
        self.connector_attempting(tenant, connector, individuals).await
    }

    async fn finish_connector_push(&self, link: &idbridge_core::connector::ConnectorLink) -> DomainResult<()> {
        self.connector_finish(link).await
    }

    async fn reschedule_connector_retries(
        &self,
        tenant: TenantId,
        connector: &str,
        now: jiff::Timestamp,
    ) -> DomainResult<u64> {
        self.connector_reschedule(tenant, connector, now).await
    }

    async fn connector_link_counts(
        &self,
        tenant: TenantId,
        connector: &str,
    ) -> DomainResult<idbridge_core::connector::LinkCounts> {
        self.connector_counts(tenant, connector).await
    }

    async fn list_connector_links(
        &self,
        tenant: TenantId,
        connector: &str,
        state: idbridge_core::connector::LinkState,
        after: Option<IndividualId>,
        limit: u32,
    ) -> DomainResult<Vec<idbridge_core::connector::ConnectorLink>> {
        self.connector_links_in(tenant, connector, state, after, limit).await
    }

    async fn connector_guard_counts(&self, tenant: TenantId, connector: &str) -> DomainResult<(u64, u64, bool)> {
        self.connector_guard(tenant, connector).await
    }

    async fn hold_connector_disables(
        &self,
        tenant: TenantId,
        connector: &str,
        note: &str,
    ) -> DomainResult<Vec<(IndividualId, Option<(String, String)>)>> {
        self.connector_hold(tenant, connector, note).await
    }

    async fn release_connector_disables(
        &self,
        tenant: TenantId,
        connector: &str,
        from: idbridge_core::connector::LinkState,
        approved: bool,
        note: &str,
        now: jiff::Timestamp,
    ) -> DomainResult<u64> {
        self.connector_release(tenant, connector, from, approved, note, now).await
    }

    async fn quarantined_connectors(&self) -> DomainResult<Vec<(TenantId, String, jiff::Timestamp)>> {
        self.connector_quarantined().await
    }

    async fn get_connector_health(
        &self,
        tenant: TenantId,
        connector: &str,
    ) -> DomainResult<Option<idbridge_core::connector::ConnectorHealth>> {
        self.connector_health_get(tenant, connector).await
    }

    async fn put_connector_health(
        &self,
        tenant: TenantId,
        connector: &str,
        health: &idbridge_core::connector::ConnectorHealth,
    ) -> DomainResult<()> {
        self.connector_health_put(tenant, connector, health).await
    }
}
