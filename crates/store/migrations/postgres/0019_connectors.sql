-- Portal connectors (core::connector). A link per individual and connector: the remote
-- object's id and version, the document last pushed, and whether a push is owed — change
-- events bump `wanted`, a finished push records the `wanted` it read as `done`, so a change
-- that arrives during a push is pushed again, never lost. `pushed` is the remote document
-- as the free JSON it is. `remote_active`: the portal's object was last left active (what
-- the deletion guard counts); `guard_passed`: the `wanted` an approved held set let through.
CREATE TABLE connector_links (
    tenant_id       TEXT   NOT NULL,
    connector       TEXT   NOT NULL,
    individual_id   TEXT   NOT NULL,
    remote_id       TEXT,
    remote_version  TEXT,
    pushed          TEXT,
    wanted          BIGINT NOT NULL,
    done            BIGINT NOT NULL,
    verify          BIGINT NOT NULL,
    remote_active   BIGINT NOT NULL DEFAULT 0,
    guard_passed    BIGINT NOT NULL DEFAULT 0,
    state           TEXT   NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connector, individual_id)
);
-- The pusher's query: owed links of one connector, soonest first. Settled links (nearly
-- all of them) are not in the index.
CREATE INDEX connector_links_owed ON connector_links (tenant_id, connector, next_attempt_at)
    WHERE wanted > done AND state IN ('synced', 'retrying');

-- Each connector's health as the instance pushing it last wrote it.
CREATE TABLE connector_health (
    tenant_id            TEXT   NOT NULL,
    connector            TEXT   NOT NULL,
    quarantined_since    BIGINT,
    consecutive_failures BIGINT NOT NULL,
    last_success_at      BIGINT,
    last_error           TEXT,
    last_drift_repair_at BIGINT,
    -- A digest of the connector's configuration as last pushed with: a changed one (another
    -- portal, other attributes) makes everyone owe a push, read back first.
    config_digest        TEXT,
    PRIMARY KEY (tenant_id, connector)
);
