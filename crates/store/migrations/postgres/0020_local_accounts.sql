-- Individuals without an IdP (core::local_account). One credential row per individual who
-- may sign in with a password: the Argon2id PHC string (never the password), the TOTP
-- secret once enrolment began, when it was confirmed and the last time step a code was
-- accepted for (RFC 6238 §5.2: a code is good once), the recovery codes' hashes (JSON
-- array), the WebAuthn passkeys, and the account's lockout. At most one link is out per
-- individual (an invitation or a password reset): its token's SHA-256, purpose and
-- expiry; issuing another replaces it, revoking or using it clears it. `email_key`: the
-- lower-cased address the person signs in with, written from the individual's email
-- whenever the credential is.
CREATE TABLE local_credentials (
    tenant_id         TEXT   NOT NULL,
    individual_id     TEXT   NOT NULL PRIMARY KEY,
    email_key         TEXT   NOT NULL,
    password_hash     TEXT,
    password_set_at   BIGINT,
    totp_secret       TEXT,
    totp_confirmed_at BIGINT,
    totp_last_step    BIGINT,
    recovery_codes    TEXT   NOT NULL,
    -- Registered passkeys (core::local_account::PasskeyRecord list, in a versioned envelope).
    passkeys          TEXT   NOT NULL DEFAULT '[]',
    link_hash         TEXT,
    link_purpose      TEXT,
    link_expires_at   BIGINT,
    failures          BIGINT NOT NULL,
    locked_until      BIGINT,
    -- The expiration instant the person was last told about (an expiry notice per date).
    expiry_noticed_for BIGINT,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX local_credentials_by_email ON local_credentials (email_key);
CREATE UNIQUE INDEX local_credentials_by_link ON local_credentials (link_hash) WHERE link_hash IS NOT NULL;

-- Mails owed (the SMTP sender is an outbox consumer over this table): the rendered message
-- until it is sent or given up, then only what the audit needs (kind, recipient, outcome).
-- `body` is the JSON of subject, text and HTML; it holds a link's token while it waits,
-- which is why it is emptied once the mail has left.
CREATE TABLE mails (
    id              TEXT   NOT NULL PRIMARY KEY,
    tenant_id       TEXT   NOT NULL,
    individual_id   TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    recipient       TEXT   NOT NULL,
    body            TEXT,
    state           TEXT   NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
-- The sender's query: mails due, soonest first. Sent and dead mails are not in it.
CREATE INDEX mails_due ON mails (next_attempt_at) WHERE state = 'pending';
CREATE INDEX mails_by_individual ON mails (tenant_id, individual_id, created_at);
