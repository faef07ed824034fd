-- Webhooks: a job may name a callback URL; its terminal state is delivered from a durable outbox.
ALTER TABLE jobs
    ADD COLUMN webhook_url text,
    -- The body the callback gets: 'spool' (Standard Webhooks event) or 'fal' (fal's webhook body).
    ADD COLUMN webhook_format text CHECK (webhook_format IN ('spool', 'fal')),
    ADD CONSTRAINT jobs_webhook_has_a_format CHECK ((webhook_url IS NULL) = (webhook_format IS NULL));

-- The outbox: one delivery per finished job that named a URL, kept until delivered or given up.
CREATE TABLE webhook_deliveries (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Standard Webhooks' `webhook-id`: the same on every attempt, so receivers can deduplicate.
    webhook_id       text        NOT NULL UNIQUE,
    job_id           bigint      NOT NULL UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
    url              text        NOT NULL,
    -- The exact bytes every attempt sends and signs.
    body             text        NOT NULL,
    state            text        NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'failed', 'gone')),
    attempts         integer     NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    last_attempt_at  timestamptz,
    -- When the next attempt is due; while an attempt runs, when its lease on the delivery ends.
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);

-- Deliveries that are due: the sender reads only these.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';

-- A job that ends with a webhook URL enqueues its delivery in the same transaction as the status
-- change, whichever statement made it (complete, fail, requeue, cancel, clear, start timeout):
-- nothing is lost if the broker dies right after.
CREATE FUNCTION spool_enqueue_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER jobs_enqueue_webhook AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (NEW.webhook_url IS NOT NULL AND NEW.status IN ('done', 'failed', 'canceled') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION spool_enqueue_webhook();
