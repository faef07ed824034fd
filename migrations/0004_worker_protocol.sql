-- The worker protocol: a hard run deadline per attempt, cooperative stop, and idempotent completes.
ALTER TABLE jobs
    -- When this attempt is asked to stop however often it heartbeats (the broker's maximum run time).
    ADD COLUMN run_deadline_at timestamptz,
    -- Set while running when the broker wants the job to stop; the worker hears it at its next heartbeat.
    ADD COLUMN stop_reason text CHECK (stop_reason IN ('canceled', 'max_run_time'));

-- A finished job keeps the token of the attempt that finished it, so a worker that retries its
-- complete after a lost answer is told it succeeded instead of being refused.
ALTER TABLE jobs DROP CONSTRAINT jobs_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_running_holds_a_lease
    CHECK (status <> 'running' OR (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL AND run_deadline_at IS NOT NULL));
ALTER TABLE jobs ADD CONSTRAINT jobs_lease_expires_only_while_running
    CHECK (status = 'running' OR lease_expires_at IS NULL);

-- Log lines of every attempt, for status polls and streams.
CREATE TABLE job_logs (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id    bigint      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt   integer     NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT now(),
    level     text        NOT NULL DEFAULT 'info'
              CHECK (level IN ('debug', 'info', 'warning', 'error', 'stdout', 'stderr')),
    source    text        NOT NULL DEFAULT 'worker',
    message   text        NOT NULL
);

-- A job's lines in the order they were written; also serves the cascade when jobs are pruned.
CREATE INDEX job_logs_job_order ON job_logs (job_id, id);

-- The lease length a job was claimed with: a heartbeat that names none extends by as much.
ALTER TABLE jobs ADD COLUMN lease_seconds real;

-- Heartbeats rewrite lease_expires_at many times a minute per job; with no index on it they are HOT
-- updates (no index writes, no index bloat). The requeue finds expired leases through the small
-- partial index of running jobs instead.
DROP INDEX jobs_running_lease_expiry;
