-- Hardening: uploads staged without a held transaction, bounded logs, batches that cannot loop,
-- pruning of files and batches, and key changes announced to every replica.

-- An upload in progress holds its file: chunks are written one short statement at a time, each
-- fenced by the holder, and one short transaction makes the file ready. A holder idle longer than
-- the upload idle timeout has died (its client stalled or its broker crashed) and may be replaced.
ALTER TABLE files
    ADD COLUMN upload_holder    uuid,
    ADD COLUMN upload_active_at timestamptz;

-- Retention finds uploads that never finished, and the files workers returned for a pruned job.
CREATE INDEX files_uploading_created_at ON files (created_at) WHERE status = 'uploading';
CREATE INDEX files_request_id ON files (request_id) WHERE request_id IS NOT NULL;

-- Counters are 64-bit. The batch pass retries a failing step (validation, then writing the
-- results) with a backoff and gives up after a few attempts, so a batch that crashes its broker
-- or fails again and again ends FAILED instead of looping on every replica.
ALTER TABLE batches
    ALTER COLUMN total_lines TYPE bigint,
    ALTER COLUMN finished_lines TYPE bigint,
    ALTER COLUMN failed_lines TYPE bigint,
    -- Attempts at the current step that did not finish; counted before each attempt starts.
    ADD COLUMN step_attempts integer NOT NULL DEFAULT 0,
    -- The current step is not tried again before this.
    ADD COLUMN step_retry_at timestamptz,
    ADD COLUMN step_error    text;

-- Ended batches are pruned after the retention period, oldest first.
CREATE INDEX batches_completed_at ON batches (completed_at) WHERE completed_at IS NOT NULL;

-- A job's stored log lines and their bytes: a cap drops the oldest lines (logs are bounded per job).
-- Constant defaults: adding these columns rewrites nothing.
ALTER TABLE jobs
    ADD COLUMN log_lines integer NOT NULL DEFAULT 0,
    ADD COLUMN log_bytes bigint  NOT NULL DEFAULT 0;

-- Any change to the keys (created, revoked) is announced, so every replica drops its cached
-- lookups and an open broker closes the moment its first key exists.
CREATE FUNCTION spool_announce_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('spool_keys', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_announce AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION spool_announce_keys();
