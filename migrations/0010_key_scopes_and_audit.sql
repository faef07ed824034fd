-- Scoped keys: what each key may do (client, worker, admin), which models a worker key serves,
-- when it expires; and an audit trail of what admin keys did.
ALTER TABLE api_keys
    -- Model patterns a worker key may lease and write for ('acme/*'); NULL: every model.
    ADD COLUMN models     text[],
    ADD COLUMN expires_at timestamptz,
    -- The id of the key (or 'cli') that created it.
    ADD COLUMN created_by text,
    -- NOT VALID: keys from before this migration hold the old default, which passes anyway.
    ADD CONSTRAINT api_keys_known_scopes
        CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['client', 'worker', 'admin']) NOT VALID;

-- Who did what and when: every key created or revoked, queue cleared. Written in the same
-- transaction as the action, so an action without its record (or the reverse) cannot exist.
CREATE TABLE audit_events (
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    -- The acting key's id ('cfg_…' for a key from the broker's configuration, 'cli' for
    -- `spool-broker keys`, 'anonymous' on an open broker).
    actor   text        NOT NULL,
    action  text        NOT NULL,
    target  text,
    details jsonb       NOT NULL DEFAULT '{}'
);
