-- API keys created with `spool-broker keys create`, stored only as SHA-256 hashes:
-- a database dump gives no one access. Keys from the broker's configuration are hashed in memory.
CREATE TABLE api_keys (
    id         text        PRIMARY KEY,
    key_hash   text        NOT NULL UNIQUE,
    name       text        NOT NULL,
    -- Room for scoped keys and tenants: every key may do everything for now.
    scopes     text[]      NOT NULL DEFAULT '{client,worker,admin}',
    tenant     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
