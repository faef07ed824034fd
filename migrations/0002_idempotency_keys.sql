-- Submits retried with the same Idempotency-Key return the first job instead of a new one.
CREATE TABLE idempotency_keys (
    -- The API key's id (or 'anonymous' on an open broker): keys are scoped per caller.
    owner        text        NOT NULL,
    key          text        NOT NULL,
    -- SHA-256 of the request body, to tell a retry from a different request under the same key.
    request_hash text        NOT NULL,
    request_id   uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
