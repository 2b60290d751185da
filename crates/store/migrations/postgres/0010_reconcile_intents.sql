-- Durable intent: the people of a tenant that must be re-decided. A source write (a SCIM
-- request, a directory run's changed people, a login's claims) records its rows in the
-- same transaction as the source record, so a success answer means the reconciliation is
-- owed even if the process dies before it runs. Reconciling a person deletes the rows it
-- took. Ids are never reused, so clearing the rows one pass took never
-- clears a newer intent for the same person.
CREATE TABLE reconcile_intents (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    connection  TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    -- When the worker may take it: a short grace after creation (the request's own fast
    -- path usually clears it first), a claim's lease, or a retry's back-off.
    due_at      BIGINT  NOT NULL,
    attempts    BIGINT  NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX reconcile_intents_due ON reconcile_intents (due_at, id);
CREATE INDEX reconcile_intents_by_person ON reconcile_intents (tenant_id, source, connection, external_id);
