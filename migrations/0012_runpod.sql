-- RunPod's serverless protocols: a job's own maximum run time, RunPod webhooks, stream chunks.
ALTER TABLE jobs
    -- RunPod's policy.executionTimeout: the claim's run deadline is the shorter of this and the broker's.
    ADD COLUMN max_run_seconds double precision CHECK (max_run_seconds > 0),
    DROP CONSTRAINT jobs_webhook_format_check,
    ADD CONSTRAINT jobs_webhook_format_check CHECK (webhook_format IN ('spool', 'fal', 'runpod'));

-- What a RunPod worker's generator yields, in order; `/stream/{id}` hands each chunk out once.
CREATE TABLE job_stream_chunks (
    job_id    bigint      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq       integer     NOT NULL,
    chunk     jsonb       NOT NULL,
    -- The job's chunks' bytes up to and including this one: the next append reads one row to know it.
    total_bytes bigint    NOT NULL,
    -- Set when a client's stream read returned it.
    read_at   timestamptz,
    PRIMARY KEY (job_id, seq)
);

-- The webhook body of a job now has a third form, RunPod's status.
CREATE OR REPLACE FUNCTION spool_enqueue_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    body jsonb;
BEGIN
    IF NEW.webhook_format = 'fal' THEN
        body := jsonb_build_object(
            'request_id', NEW.request_id,
            'gateway_request_id', NEW.request_id,
            'status', CASE WHEN NEW.status = 'done' THEN 'OK' ELSE 'ERROR' END,
            'payload', NEW.outputs,
            'error', CASE NEW.status WHEN 'done' THEN NULL
                                     WHEN 'canceled' THEN 'The request was cancelled.'
                                     ELSE coalesce(NEW.error, 'The request failed.') END);
    ELSIF NEW.webhook_format = 'runpod' THEN
        body := jsonb_strip_nulls(jsonb_build_object(
            'id', NEW.request_id,
            'status', CASE NEW.status WHEN 'done' THEN 'COMPLETED'
                                      WHEN 'canceled' THEN 'CANCELLED'
                                      ELSE CASE WHEN NEW.error_type IN ('runner_timeout', 'request_timeout') THEN 'TIMED_OUT'
                                                ELSE 'FAILED' END END,
            'delayTime', (extract(epoch FROM coalesce(NEW.claimed_at, NEW.done_at) - NEW.created_at) * 1000)::bigint,
            'executionTime', (extract(epoch FROM NEW.done_at - NEW.claimed_at) * 1000)::bigint,
            -- A RunPod worker's output is kept as {"output": …}; another worker's outputs are the output.
            'output', CASE WHEN NEW.outputs ? 'output' AND (SELECT count(*) FROM jsonb_object_keys(NEW.outputs)) = 1
                           THEN NEW.outputs -> 'output' ELSE NEW.outputs END,
            'error', NEW.error));
    ELSE
        body := jsonb_build_object(
            'type', 'job.' || NEW.status,
            'timestamp', now(),
            'data', jsonb_build_object(
                'request_id', NEW.request_id,
                'model', NEW.model,
                'status', NEW.status,
                'outputs', NEW.outputs,
                'error', NEW.error,
                'error_type', NEW.error_type,
                'retries', NEW.retries,
                'info', NEW.info,
                'created_at', NEW.created_at,
                'done_at', NEW.done_at));
    END IF;
    INSERT INTO webhook_deliveries (webhook_id, job_id, url, body)
    VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), NEW.id, NEW.webhook_url, body::text)
    ON CONFLICT (job_id) DO NOTHING;
    PERFORM pg_notify('spool_webhook', '');
    RETURN NULL;
END
$$;
