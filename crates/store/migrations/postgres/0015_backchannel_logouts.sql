-- Back-channel logout deliveries owed (OpenID Connect Back-Channel Logout 1.0): one row per
-- ended session and portal holding tokens of it, written in the same transaction that
-- ends the session, so that a crash, a restart or a portal that is down for hours loses
-- no logout. A sender claims due rows (a lease, like reconcile_intents), signs a fresh
-- logout token at each attempt, and deletes the row once the portal accepted it; failures
-- are retried with back-off until the row is older than the retry period, then kept as
-- dead (dead_at) for an operator to see.
CREATE TABLE backchannel_logouts (
    id            BIGSERIAL PRIMARY KEY,
    tenant_id     TEXT   NOT NULL,
    individual_id TEXT   NOT NULL,
    session_id    TEXT   NOT NULL,
    client_id     TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    due_at        BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT,
    dead_at       BIGINT
);
CREATE INDEX backchannel_logouts_due ON backchannel_logouts (due_at, id);
