-- When idbridge last took access away from an individual (suspended, deprovisioned,
-- expired — by a source, the mapping or the calendar): the retention period counts from
-- this instant, never from a date in the past (an expiry the source reported late).
ALTER TABLE individuals ADD COLUMN access_ended_at BIGINT;
-- Individuals without access before this column existed: their last write is the best
-- known instant (it is never earlier than when access ended).
UPDATE individuals SET access_ended_at = COALESCE(deprovisioned_at, updated_at)
 WHERE status IN ('suspended', 'expired');
