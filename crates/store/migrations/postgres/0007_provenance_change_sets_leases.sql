-- Why an individual holds each grant (mapper, rule, groups), what was set by hand, and
-- where its dates came from (JSON, see core::individual::Provenance).
ALTER TABLE individuals ADD COLUMN provenance TEXT NOT NULL DEFAULT '{}';

-- Change sets the mass-deprovision guard held for an operator. `writes` is the planned
-- writes (JSON); approval applies those whose individual has not changed since.
CREATE TABLE change_sets (
    tenant_id  TEXT   NOT NULL REFERENCES tenants (id),
    id         TEXT   NOT NULL,
    origin     TEXT   NOT NULL,
    status     TEXT   NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    summary    TEXT   NOT NULL,
    writes     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    decided_at BIGINT,
    decided_by TEXT,
    result     TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX change_sets_by_status ON change_sets (status, created_at);

-- One holder of a job (the webhook delivery) across instances on one database.
CREATE TABLE leases (
    name   TEXT   PRIMARY KEY,
    holder TEXT   NOT NULL,
    until  BIGINT NOT NULL
);

-- Links of a page of individuals (of any tenant) are read in one query by individual id.
CREATE INDEX individual_links_by_individual_id ON individual_links (individual_id);
