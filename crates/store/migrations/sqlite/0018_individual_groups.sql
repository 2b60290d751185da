-- The portal groups each individual is a member of (scopes.groups), a row each, so that a
-- group administrator's listing and a portal's "members of group X" are an index lookup,
-- not a read of every individual's scopes. Written with the individual, in its transaction
-- (store::individuals). No individual had groups before this table existed.
CREATE TABLE individual_groups (
    tenant_id     TEXT NOT NULL,
    individual_id TEXT NOT NULL,
    group_name    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, group_name, individual_id),
    FOREIGN KEY (tenant_id, individual_id) REFERENCES individuals (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX individual_groups_by_individual ON individual_groups (tenant_id, individual_id);
