-- Where each outbox consumer (the webhook, later portal connectors) has got to, and the
-- events it gave up on after its retries.
CREATE TABLE outbox_consumers (
    consumer TEXT   PRIMARY KEY,
    position BIGINT NOT NULL
);

CREATE TABLE outbox_dead_letters (
    consumer   TEXT   NOT NULL,
    position   BIGINT NOT NULL,
    event_id   TEXT   NOT NULL,
    last_error TEXT   NOT NULL,
    failed_at  BIGINT NOT NULL,
    PRIMARY KEY (consumer, position)
);
