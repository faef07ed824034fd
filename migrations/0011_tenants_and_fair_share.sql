-- Tenants: every job, file and batch belongs to one (its client key's tenant, or 'default'), and
-- a client key reads only its own tenant's. Constant defaults: no rewrite of a large queue.
ALTER TABLE jobs
    ADD COLUMN tenant   text   NOT NULL DEFAULT 'default',
    -- Fair share within a priority: the job's start tag in its tenant's virtual time (start-time
    -- fair queuing); the claim takes the smallest tag first. Set below for jobs already waiting.
    ADD COLUMN fair_tag float8 NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE batches ADD COLUMN tenant text NOT NULL DEFAULT 'default';

-- The claim's order: priority, then fair tag, then submission.
DROP INDEX jobs_pending_claim_order;
CREATE INDEX jobs_pending_claim_order ON jobs (model, priority DESC, fair_tag, id) WHERE status = 'pending';

-- Running jobs per model and tenant: the depth metric and the running-jobs quota.
DROP INDEX jobs_running_model;
CREATE INDEX jobs_running_model ON jobs (model, tenant) WHERE status = 'running';

-- Pending jobs per tenant: the pending-jobs quota counts here, and with running limits the claim
-- reads each tenant's own head here, never through the backlog of a tenant at its limit.
CREATE INDEX jobs_pending_tenant ON jobs (tenant, model, priority DESC, fair_tag, id) WHERE status = 'pending';

-- Each tenant's last tag per model and priority; a submit moves it on by one job over the
-- tenant's weight, from the queue's virtual time if the tenant was idle.
CREATE TABLE fair_share_tags (
    model     text    NOT NULL,
    priority  integer NOT NULL,
    tenant    text    NOT NULL,
    last_tag  float8  NOT NULL,
    -- The tag span of the last submit: its first job's tag is last_tag - last_step + 1/weight.
    last_step float8  NOT NULL,
    PRIMARY KEY (model, priority, tenant)
);

-- Each tenant's submit token bucket, shared by every broker replica: a submit takes a token, the
-- bucket refills at the tenant's rate up to its burst.
CREATE TABLE rate_buckets (
    tenant      text        PRIMARY KEY,
    tokens      float8      NOT NULL,
    refilled_at timestamptz NOT NULL
);

-- Jobs already waiting are the default tenant's, in their old order: tags are their ids, and the
-- tenant's last tags follow them (one pass over the pending jobs, once).
UPDATE jobs SET fair_tag = id WHERE status = 'pending';
INSERT INTO fair_share_tags (model, priority, tenant, last_tag, last_step)
SELECT model, priority, 'default', max(id), 0 FROM jobs WHERE status = 'pending' GROUP BY model, priority;
