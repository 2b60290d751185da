-- Single sign-on: portals registered with idbridge's OpenID provider, its signing keys,
-- logins in flight, sessions, authorization codes and tokens. Secrets (client secrets,
-- session cookies, codes, tokens) are stored as SHA-256 hashes only.
CREATE TABLE portal_clients (
    id         TEXT   PRIMARY KEY,
    body       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

-- Private keys are needed to sign; they live with the rest of the state so that every
-- instance signs with the same key and a restart keeps the published key set.
CREATE TABLE signing_keys (
    kid           TEXT   PRIMARY KEY,
    alg           TEXT   NOT NULL,
    private_pkcs8 TEXT   NOT NULL,
    public_jwk    TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    activates_at  BIGINT NOT NULL,
    retires_at    BIGINT,
    removed_at    BIGINT
);

CREATE TABLE sso_pending (
    hash       TEXT   PRIMARY KEY,
    data       TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sso_pending_by_expiry ON sso_pending (expires_at);

CREATE TABLE sso_sessions (
    id            TEXT   PRIMARY KEY,
    cookie_hash   TEXT   NOT NULL UNIQUE,
    tenant_id     TEXT   NOT NULL REFERENCES tenants (id),
    individual_id TEXT   NOT NULL,
    connection    TEXT   NOT NULL,
    auth_time     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    ended_at      BIGINT
);
CREATE INDEX sso_sessions_by_individual ON sso_sessions (tenant_id, individual_id);

CREATE TABLE oauth_codes (
    hash        TEXT   PRIMARY KEY,
    data        TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL,
    redeemed_at BIGINT,
    grant_id    TEXT
);

CREATE TABLE oauth_tokens (
    hash          TEXT   PRIMARY KEY,
    kind          TEXT   NOT NULL,
    grant_id      TEXT   NOT NULL,
    client_id     TEXT   NOT NULL,
    tenant_id     TEXT   NOT NULL REFERENCES tenants (id),
    individual_id TEXT   NOT NULL,
    session_id    TEXT   NOT NULL,
    scope         TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX oauth_tokens_by_grant ON oauth_tokens (grant_id);
CREATE INDEX oauth_tokens_by_individual ON oauth_tokens (tenant_id, individual_id);
CREATE INDEX oauth_tokens_by_session ON oauth_tokens (session_id);
CREATE INDEX oauth_tokens_by_expiry ON oauth_tokens (expires_at);
