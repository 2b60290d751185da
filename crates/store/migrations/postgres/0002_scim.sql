-- SCIM source records and group memberships (PostgreSQL). Keep in step with migrations/sqlite.

CREATE TABLE scim_resources (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    kind        TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    external_id TEXT,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, kind, name_key)
);
CREATE INDEX scim_resources_by_external_id ON scim_resources (tenant_id, kind, external_id);
CREATE INDEX scim_resources_in_order ON scim_resources (tenant_id, kind, seq);

-- One row per membership: adding or removing one member never reads the others.
CREATE TABLE scim_members (
    tenant_id   TEXT NOT NULL,
    group_id    TEXT NOT NULL,
    member_id   TEXT NOT NULL,
    member_kind TEXT NOT NULL,
    PRIMARY KEY (tenant_id, group_id, member_id)
);
CREATE INDEX scim_members_by_member ON scim_members (tenant_id, member_id);
