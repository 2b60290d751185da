-- The writes of held change sets, a row each, in the order they were planned. They were
-- one JSON value in change_sets.writes: a 100,000-person set was a 366 MB row, which every
-- listing stepped over and every decision read whole. change_sets.writes is '' for sets
-- stored since; older sets are moved here when the store opens (store::change_sets).
CREATE TABLE change_set_writes (
    tenant_id     TEXT   NOT NULL,
    change_set_id TEXT   NOT NULL,
    position      BIGINT NOT NULL,
    individual_id TEXT   NOT NULL,
    -- How the write counts in the set's summary: create, update or takes_access.
    counts_as     TEXT   NOT NULL,
    -- The held write (store::stored envelope): login, action, statuses, changed fields, links.
    write         TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, change_set_id, position),
    FOREIGN KEY (tenant_id, change_set_id) REFERENCES change_sets (tenant_id, id)
);
-- A person is in a set once: a later request joining the set replaces their write.
CREATE UNIQUE INDEX change_set_writes_by_individual ON change_set_writes (tenant_id, change_set_id, individual_id);
