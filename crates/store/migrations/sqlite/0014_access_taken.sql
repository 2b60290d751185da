-- Access taken without an operator's approval, per applied change set: the mass-
-- deprovision guard adds what its window saw to the next change set, so a mass
-- deprovision that arrives one request at a time (Entra ID and Okta send one per user)
-- or is re-decided in slices is held like one that arrives at once. Rows older than the
-- longest window (a week) are deleted as new ones are written.
CREATE TABLE access_taken (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT   NOT NULL,
    at        BIGINT NOT NULL,
    taken     BIGINT NOT NULL
);
CREATE INDEX access_taken_by_tenant ON access_taken (tenant_id, at);
