-- Files (batch inputs and outputs, files workers return) and batches of jobs.
-- Files live in PostgreSQL so every broker replica serves every file.
CREATE TABLE files (
    id                text        PRIMARY KEY,
    filename          text        NOT NULL,
    purpose           text        NOT NULL,
    -- jsonl, csv or parquet for uploads (Together's FileType); 'binary' for what workers return.
    file_type         text        NOT NULL,
    content_type      text        NOT NULL DEFAULT 'application/octet-stream',
    bytes             bigint      NOT NULL DEFAULT 0,
    -- SHA-256 (hex) of the content, once it is uploaded; a client's checksum is compared with it.
    sha256            text,
    status            text        NOT NULL DEFAULT 'uploading' CHECK (status IN ('uploading', 'ready')),
    -- The together SDK PUTs content without its API key (as to a presigned URL): this secret's hash authorizes it.
    upload_token_hash text,
    -- The checksum the client announced before uploading.
    expected_sha256   text,
    owner             text,
    -- The job whose worker returned this file, if one did.
    request_id        uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (status = 'uploading' OR sha256 IS NOT NULL)
);

CREATE INDEX files_created_at ON files (created_at);

-- Content in 1 MiB pieces: uploads and downloads stream one piece at a time, never a whole file.
CREATE TABLE file_chunks (
    file_id text    NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    seq     integer NOT NULL,
    data    bytea   NOT NULL,
    PRIMARY KEY (file_id, seq)
);

CREATE TABLE batches (
    id                uuid        PRIMARY KEY,
    status            text        NOT NULL DEFAULT 'VALIDATING'
                      CHECK (status IN ('VALIDATING', 'IN_PROGRESS', 'CANCELLING', 'COMPLETED', 'FAILED', 'EXPIRED', 'CANCELLED')),
    endpoint          text        NOT NULL,
    input_file_id     text        NOT NULL,
    output_file_id    text,
    error_file_id     text,
    model_id          text,
    priority          integer     NOT NULL DEFAULT 0,
    completion_window text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    job_deadline      timestamptz NOT NULL,
    -- When validation ended and the lines were enqueued.
    in_progress_at    timestamptz,
    completed_at      timestamptz,
    error             text,
    file_size_bytes   bigint      NOT NULL,
    total_lines       integer,
    -- Refreshed by the brokers' batch pass, so reading progress costs one row.
    finished_lines    integer     NOT NULL DEFAULT 0,
    failed_lines      integer     NOT NULL DEFAULT 0,
    -- Why a batch ends before its lines do: a cancel (shown CANCELLING) or its completion window.
    ending            text        CHECK (ending IN ('cancel', 'expire')),
    owner             text
);

-- The batch pass visits only batches with work left.
CREATE INDEX batches_active ON batches (created_at) WHERE status IN ('VALIDATING', 'IN_PROGRESS', 'CANCELLING');
CREATE INDEX batches_created_at ON batches (created_at);

-- Each line of a batch is one job; (batch_id, batch_line) is unique, so no line is enqueued twice.
ALTER TABLE jobs
    ADD COLUMN batch_id   uuid,
    ADD COLUMN batch_line integer,
    ADD COLUMN custom_id  text,
    -- NOT VALID: existing rows have neither column, and a busy table is not scanned to prove it.
    ADD CONSTRAINT jobs_batch_line_with_batch CHECK ((batch_id IS NULL) = (batch_line IS NULL)) NOT VALID;

CREATE UNIQUE INDEX jobs_batch_lines ON jobs (batch_id, batch_line) WHERE batch_id IS NOT NULL;
-- A batch's unfinished lines, counted by every batch pass: shrinks as the batch runs.
CREATE INDEX jobs_batch_unfinished ON jobs (batch_id) WHERE batch_id IS NOT NULL AND done_at IS NULL;
