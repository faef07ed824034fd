-- fal's queue and live status streams: endpoint paths, start deadlines, error types, watched jobs.
ALTER TABLE jobs
    -- The endpoint within the app (fal's `/{owner}/{app}/{path}`); workers see it beside the payload.
    ADD COLUMN path text,
    -- A job not started by then fails (fal's X-Fal-Request-Timeout) instead of running late.
    ADD COLUMN start_deadline_at timestamptz,
    -- Why a failed job failed, as a code: runner_error, runner_disconnected, runner_timeout, request_timeout.
    ADD COLUMN error_type text,
    -- Set while a client streams the job's status: changes to the row are announced (trigger below).
    ADD COLUMN watched_until timestamptz;

-- The sweep that fails jobs past their start deadline reads only pending jobs that have one.
CREATE INDEX jobs_pending_start_deadline ON jobs (start_deadline_at)
    WHERE status = 'pending' AND start_deadline_at IS NOT NULL;

-- Any change to a job someone is streaming is announced on spool_job with its request id, so the
-- stream on any broker replica sends the change at once. Unwatched jobs cost only the WHEN test.
CREATE FUNCTION spool_announce_watched_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('spool_job', NEW.request_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_announce_watched AFTER UPDATE ON jobs FOR EACH ROW
    WHEN (NEW.watched_until IS NOT NULL AND NEW.watched_until > now())
    EXECUTE FUNCTION spool_announce_watched_job();
