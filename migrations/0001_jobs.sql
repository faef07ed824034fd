-- The queue: one row per job, from submit to its terminal state.
CREATE TABLE jobs (
    -- Submission order: FIFO within a priority follows this identity.
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id       uuid        NOT NULL UNIQUE,
    model            text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'done', 'failed', 'canceled')),
    priority         integer     NOT NULL DEFAULT 0,
    payload          jsonb       NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    info             jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(info) = 'object'),
    outputs          jsonb,
    error            text,
    retries          integer     NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    claimed_at       timestamptz,
    done_at          timestamptz,
    -- The lease of the current attempt: every worker write names lease_token (fencing).
    attempt          integer     NOT NULL DEFAULT 0,
    lease_token      uuid,
    lease_expires_at timestamptz,
    worker_id        text,
    -- Who submitted it (an API key's id); room for tenants later.
    submitted_by     text,
    CHECK ((status = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK (status NOT IN ('done', 'failed', 'canceled') OR done_at IS NOT NULL)
) WITH (
    -- Leave room on each page so status changes can be HOT updates.
    fillfactor = 80,
    -- A queue churns: vacuum after 1% of rows change, not the default 20%.
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- The claim path: only pending rows, in exactly the claim's order, so the claim reads
-- the first n entries of one model and stops.
CREATE INDEX jobs_pending_claim_order ON jobs (model, priority DESC, id) WHERE status = 'pending';

-- Running jobs are few (one per busy GPU): the requeue scans them by lease expiry,
-- the metrics count them per model.
CREATE INDEX jobs_running_lease_expiry ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_running_model ON jobs (model) WHERE status = 'running';

-- Pruning terminal jobs after their retention period.
CREATE INDEX jobs_done_at ON jobs (done_at) WHERE done_at IS NOT NULL;
