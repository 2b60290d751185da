-- A tenant's mapping rules, replaced as a whole by `idbridge apply` (JSON list).
CREATE TABLE mapping_rules (
    tenant_id  TEXT   PRIMARY KEY REFERENCES tenants (id),
    rules      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
