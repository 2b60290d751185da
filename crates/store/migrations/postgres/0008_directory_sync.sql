-- What each directory source said about each person at its last complete run: the
-- person (JSON, see core::reconcile::SourcePerson) and a hash of it, so a run reconciles
-- only the people whose facts changed, and deletions are found by difference.
CREATE TABLE directory_records (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    source      TEXT NOT NULL,
    external_id TEXT NOT NULL,
    hash        TEXT NOT NULL,
    person      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, source, external_id)
);

-- Every sync run, with its counts, duration and error.
CREATE TABLE sync_runs (
    id          TEXT   PRIMARY KEY,
    tenant_id   TEXT   NOT NULL REFERENCES tenants (id),
    source      TEXT   NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    status      TEXT   NOT NULL,
    summary     TEXT   NOT NULL,
    error       TEXT
);
CREATE INDEX sync_runs_by_tenant ON sync_runs (tenant_id, source, started_at);
