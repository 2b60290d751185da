//! Connects SCIM writes to the reconciliation service: each affected SCIM user becomes a
//! source person, goes through the tenant's mapping pipeline, and the decision is applied
//! to the individual by `core::reconcile::Reconciler` (the only writer of individuals).

use std::sync::Arc;

use async_trait::async_trait;
use idbridge_core::DomainResult;
use idbridge_core::audit::AuditContext;
use idbridge_core::mapping::Pipeline;
use idbridge_core::ports::{ScimRecordStore, SourceChanges};
use idbridge_core::reconcile::{Outcome, Reconciler};
use idbridge_core::source_record::ScimKind;
use idbridge_core::tenant::Tenant;
use uuid::Uuid;

use crate::mapping::MappingService;

/// Up to this many users are reconciled before the SCIM response; more (a big group
/// renamed or emptied) are reconciled in the background.
const INLINE_LIMIT: usize = 20;

#[derive(Clone)]
pub struct ScimReconciliation {
    pub mapping: MappingService,
    pub reconciler: Reconciler,
    pub records: Arc<dyn ScimRecordStore>,
    /// Background batches run one at a time, so that re-mapping a 100,000-member group
    /// does not crowd out the requests being served.
    pub background: Arc<tokio::sync::Semaphore>,
}

impl ScimReconciliation {
    async fn one(&self, tenant: &Tenant, pipeline: &Pipeline, id: Uuid, ctx: &AuditContext) -> DomainResult<Outcome> {
        let Some(record) = self.records.get_scim(tenant.id, ScimKind::User, id).await? else {
            return self.reconciler.removed(tenant, &idbridge_scim::person::link(id), ctx).await;
        };
        let groups = self.records.list_scim_groups_of(tenant.id, id).await?;
        let person = idbridge_scim::person::from_record(&record, &groups);
        let (input, existing) = self.reconciler.prepare(tenant, &person).await?;
        let pipeline = pipeline.clone();
        let decision = tokio::task::spawn_blocking(move || pipeline.decide(&input))
            .await
            .map_err(|e| idbridge_core::DomainError::Storage(format!("mapping task failed: {e}")))?;
        self.reconciler.apply(tenant, &person, existing, &decision, ctx).await
    }

    async fn all(&self, tenant: Tenant, users: Vec<Uuid>, ctx: AuditContext) {
        // One pipeline (rules compiled once) for the whole batch.
        let pipeline = match self.mapping.pipeline(&tenant).await {
            Ok(pipeline) => pipeline,
            Err(e) => {
                tracing::error!(tenant = %tenant.slug, error = %e, "cannot build the mapping pipeline; nobody reconciled");
                return;
            }
        };
        for id in users {
            match self.one(&tenant, &pipeline, id, &ctx).await {
                Ok(Outcome::Held(reason)) => tracing::warn!(tenant = %tenant.slug, user = %id, reason, "mapping held"),
                Ok(outcome) => tracing::debug!(tenant = %tenant.slug, user = %id, ?outcome, "reconciled"),
                Err(e) => tracing::error!(tenant = %tenant.slug, user = %id, error = %e, "reconciliation failed"),
            }
        }
    }
}

#[async_trait]
impl SourceChanges for ScimReconciliation {
    async fn scim_users_changed(&self, tenant: &Tenant, users: Vec<Uuid>, ctx: &AuditContext) {
        if users.is_empty() {
            return;
        }
        if users.len() <= INLINE_LIMIT {
            self.all(tenant.clone(), users, ctx.clone()).await;
        } else {
            let this = self.clone();
            tokio::spawn(this.all_owned(tenant.clone(), users, ctx.clone()));
        }
    }

    async fn scim_user_removed(&self, tenant: &Tenant, user: Uuid, ctx: &AuditContext) {
        if let Err(e) = self.reconciler.removed(tenant, &idbridge_scim::person::link(user), ctx).await {
            tracing::error!(tenant = %tenant.slug, user = %user, error = %e, "deprovisioning failed");
        }
    }
}

impl ScimReconciliation {
    async fn all_owned(self, tenant: Tenant, users: Vec<Uuid>, ctx: AuditContext) {
        let Ok(_turn) = self.background.clone().acquire_owned().await else { return };
        self.all(tenant, users, ctx).await;
    }
}
