-- What each person's last sign-in said, per IdP connection (issuer) and subject: the
-- person as the ID token's claims describe them (JSON, see core::reconcile::SourcePerson,
-- with the groups kept from an earlier login when this one's groups claim was absent or
-- an overage), and when. A login is a source like SCIM and LDAP: re-maps, the sweep and
-- `explain` read it, so a person provisioned just in time follows rule changes.
CREATE TABLE login_records (
    tenant_id    TEXT   NOT NULL,
    connection   TEXT   NOT NULL,
    subject      TEXT   NOT NULL,
    person       TEXT   NOT NULL,
    logged_in_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connection, subject)
);
