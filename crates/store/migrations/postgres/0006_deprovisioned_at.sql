-- When access was taken by deprovisioning (removed at the source, or a deny decision):
-- the start of the suspension grace period and of the retention period.
ALTER TABLE individuals ADD COLUMN deprovisioned_at BIGINT;
CREATE INDEX individuals_deprovisioned ON individuals (tenant_id, deprovisioned_at) WHERE deprovisioned_at IS NOT NULL;
