-- Foundation schema (PostgreSQL). Instants are microseconds since the Unix epoch (BIGINT);
-- structured values are JSON text. Keep in step with migrations/sqlite.

CREATE TABLE tenants (
    id                      TEXT    PRIMARY KEY,
    slug                    TEXT    NOT NULL UNIQUE,
    name                    TEXT    NOT NULL,
    enabled                 BIGINT  NOT NULL CHECK (enabled IN (0, 1)), -- BIGINT: sqlx Any cannot decode SQLite booleans
    default_time_zone       TEXT    NOT NULL,
    allowed_roles           TEXT    NOT NULL,
    allowed_access_profiles TEXT    NOT NULL,
    policy                  TEXT    NOT NULL,
    version                 BIGINT  NOT NULL,
    created_at              BIGINT  NOT NULL,
    updated_at              BIGINT  NOT NULL
);

CREATE TABLE catalog_entries (
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);

CREATE TABLE roles (
    name          TEXT   PRIMARY KEY,
    description   TEXT   NOT NULL,
    default_level TEXT   NOT NULL,
    levels        TEXT   NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE access_profiles (
    name        TEXT   PRIMARY KEY,
    description TEXT   NOT NULL,
    flags       TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE scim_tokens (
    tenant_id  TEXT   NOT NULL REFERENCES tenants (id),
    id         TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    hash       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE individuals (
    tenant_id        TEXT   NOT NULL REFERENCES tenants (id),
    id               TEXT   NOT NULL,
    login            TEXT   NOT NULL,
    login_key        TEXT   NOT NULL,
    email            TEXT,
    given_name       TEXT,
    family_name      TEXT,
    display_name     TEXT,
    role             TEXT,
    access_profile   TEXT,
    scopes           TEXT   NOT NULL,
    time_zone        TEXT   NOT NULL,
    activation_local TEXT,
    activation_at    BIGINT,
    expiration_local TEXT,
    expiration_at    BIGINT,
    status           TEXT   NOT NULL,
    version          BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, login_key)
);
CREATE INDEX individuals_activation ON individuals (activation_at) WHERE activation_at IS NOT NULL;
CREATE INDEX individuals_expiration ON individuals (expiration_at) WHERE expiration_at IS NOT NULL;

CREATE TABLE individual_links (
    tenant_id     TEXT NOT NULL,
    individual_id TEXT NOT NULL,
    source        TEXT NOT NULL,
    connection    TEXT NOT NULL,
    external_id   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, source, connection, external_id),
    FOREIGN KEY (tenant_id, individual_id) REFERENCES individuals (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX individual_links_by_individual ON individual_links (tenant_id, individual_id);

CREATE TABLE audit_log (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    TEXT,
    at           BIGINT  NOT NULL,
    actor_kind   TEXT    NOT NULL,
    actor_id     TEXT    NOT NULL,
    subject_kind TEXT    NOT NULL,
    subject_id   TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    before       TEXT,
    after        TEXT,
    request_id   TEXT
);
CREATE INDEX audit_log_by_tenant_time ON audit_log (tenant_id, at);

-- The audit trail outlives every purge: no row is ever changed or removed.

CREATE TABLE change_events (
    position        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    tenant_id       TEXT    NOT NULL,
    individual_id   TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    individual      TEXT    NOT NULL,
    permission_diff TEXT,
    at              BIGINT  NOT NULL
);
CREATE INDEX change_events_by_tenant ON change_events (tenant_id, position);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
