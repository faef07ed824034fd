-- The workers brokers have seen, so operators (and waiting clients) can tell why a job waits.
CREATE TABLE workers (
    id            text        PRIMARY KEY,
    host          text,
    models        text[]      NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    -- The worker's last lease request (heartbeats show on its running jobs' leases instead).
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    -- While it waits in a long-poll: until when.
    waiting_until timestamptz
) WITH (
    -- Every lease rewrites the row: leave room for HOT updates, vacuum often.
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.05,
    autovacuum_vacuum_cost_delay = 0
);

-- The outbox churns like the queue: rows are inserted, updated per attempt and pruned with their jobs.
ALTER TABLE webhook_deliveries SET (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- Log lines are appended and deleted with their jobs by the retention sweep, in batches.
ALTER TABLE job_logs SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);
