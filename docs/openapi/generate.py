#!/usr/bin/env python3
"""Writes openapi.json beside this file: the OpenAPI 3.1 document of the Spool broker's HTTP API.

Edit this script, not the JSON, and run it (`python3 docs/openapi/generate.py`); the broker serves
the JSON at /openapi.json, and the tests check that the JSON is this script's output, that it is a
valid OpenAPI document, and that a live broker keeps to it (schemathesis).
With --check it writes nothing and exits 1 if openapi.json differs from what it would write.
"""
import json
import os
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


NO_NUL = "^[^\\u0000]*$"  # the broker refuses any string holding U+0000 (PostgreSQL cannot store it)
HTTP_URL = "^[Hh][Tt][Tt][Pp][Ss]?://[^\\u0000]+$"
JOB_STATUSES = ["pending", "running", "done", "failed", "canceled"]
INT64_MIN, INT64_MAX = -9223372036854775808, 9223372036854775807
# Marks what a broker without a webhook secret does not take: the document it serves then has the
# marked members accept null only and leaves the marked parameters out (OpenAPIDocument.swift).
NEEDS_WEBHOOK_SECRET = "x-spool-needs-webhook-secret"


def nullable(schema):
    """A copy of `schema` that also admits null (OpenAPI 3.1 type arrays)."""
    s = dict(schema)
    t = s["type"]
    s["type"] = (t if isinstance(t, list) else [t]) + ["null"]
    return s


def json_content(schema):
    return {"application/json": {"schema": schema}}


# ---------------------------------------------------------------- schemas

schemas = {}

schemas["JSONValue"] = {
    "description": "Any JSON value the broker stores: no string or member name holds U+0000 (PostgreSQL cannot store it) and "
    "no number is beyond the 64-bit integer range (an integer beyond it is refused: it would lose digits; a number written "
    "with a fraction or an exponent is taken as a double, which JSON Schema cannot tell apart). Nesting is limited to 512 levels.",
    "pattern": NO_NUL,
    "if": {"type": "integer"},
    "then": {"minimum": INT64_MIN, "maximum": INT64_MAX},
    "propertyNames": {"pattern": NO_NUL},
    "additionalProperties": ref("JSONValue"),
    "items": ref("JSONValue"),
}

schemas["Error"] = {
    "type": "object",
    "description": "An error in the shape of Together's QueueError (SpoolError.body, ErrorMiddleware.swift). "
    "Some errors add members: a 409 about a job adds `status` (and `attempt` for lease_lost); a quota's 429 adds `limit` "
    "(submits_per_second or max_pending) and `limit_value`; every error under /fal adds `detail`.",
    "required": ["message", "type", "code", "param"],
    "properties": {
        "message": {"type": "string", "description": "What went wrong and what to fix."},
        "type": {
            "type": "string",
            "enum": ["invalid_request_error", "authentication_error", "permission_error", "not_found_error", "conflict_error",
                     "rate_limit_error", "internal_error"],
        },
        "code": {
            "type": "string",
            "description": "A machine-readable code such as missing_field, invalid_type, invalid_field, invalid_json, invalid_body, "
            "invalid_query, invalid_header, invalid_idempotency_key, invalid_webhook_url, webhook_target_refused, webhooks_disabled, "
            "invalid_api_key, job_not_found, request_not_found, unknown_route, job_not_pending, idempotency_key_reused, lease_lost, "
            "payload_too_large, rate_limit_exceeded, max_pending_exceeded, insufficient_scope, model_not_allowed, internal_error.",
        },
        "param": {"type": ["string", "null"], "description": "The request field, query parameter or header at fault, if one is."},
    },
    "additionalProperties": True,
}

schemas["FalError"] = {
    "description": "An error under /fal: the Error shape plus fal's `detail` (the same text as `message`). "
    "A conflict (409 elsewhere) is answered 422 here.",
    "allOf": [
        ref("Error"),
        {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}},
    ],
}

schemas["JobNotPendingError"] = {
    "description": "409 of a Together cancel: the job left `pending` and was left unchanged (code job_not_pending).",
    "allOf": [
        ref("Error"),
        {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": JOB_STATUSES, "description": "The job's status now."}},
        },
    ],
}

schemas["LeaseLostError"] = {
    "description": "409 of a worker write whose lease no longer holds the job (code lease_lost). Stop working on the job.",
    "allOf": [
        ref("Error"),
        {
            "type": "object",
            "required": ["status", "attempt"],
            "properties": {
                "status": {"type": "string", "enum": JOB_STATUSES, "description": "Where the job is now."},
                "attempt": {"type": "integer", "description": "The job's current attempt."},
            },
        },
    ],
}

schemas["HealthResponse"] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["ok"]}},
}

schemas["OpenAPIDocument"] = {"type": "object", "description": "This OpenAPI document."}

schemas["ReadyResponse"] = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "starting", "unavailable"]},
        "reason": {"type": "string", "description": "Why the broker is not ready."},
    },
}

schemas["WorkerSummary"] = {
    "type": "object",
    "required": ["id", "host", "models", "first_seen_at", "last_seen_at", "waiting", "jobs_in_hand", "live"],
    "properties": {
        "id": {"type": "string"},
        "host": {"type": ["string", "null"]},
        "models": {"type": "array", "items": {"type": "string"}},
        "first_seen_at": {"type": "string", "format": "date-time"},
        "last_seen_at": {"type": "string", "format": "date-time", "description": "Its last lease request or heartbeat."},
        "waiting": {"type": "boolean", "description": "Waiting in a long-poll for a job now."},
        "jobs_in_hand": {"type": "integer", "minimum": 0},
        "live": {"type": "boolean", "description": "Seen within the last minute, or waiting now."},
    },
}

schemas["WorkersResponse"] = {
    "type": "object",
    "required": ["workers"],
    "properties": {"workers": {"type": "array", "items": ref("WorkerSummary")}},
}

schemas["ModelSummary"] = {
    "type": "object",
    "required": ["model", "messages_waiting", "messages_running", "oldest_waiting_seconds", "waiting_by_priority", "live_workers"],
    "properties": {
        "model": {"type": "string"},
        "messages_waiting": {"type": "integer", "minimum": 0},
        "messages_running": {"type": "integer", "minimum": 0},
        "oldest_waiting_seconds": {"type": "number", "minimum": 0},
        "waiting_by_priority": {
            "type": "object",
            "description": "Waiting jobs per priority tier; the keys are the priorities.",
            "additionalProperties": {"type": "integer", "minimum": 0},
        },
        "live_workers": {"type": "integer", "minimum": 0},
    },
}

schemas["ModelsResponse"] = {
    "type": "object",
    "required": ["models"],
    "properties": {"models": {"type": "array", "items": ref("ModelSummary")}},
}

# -- The dashboard's reads and actions (JobRoutes.swift, ThroughputHistory.swift)

schemas["JobListItem"] = {
    "type": "object",
    "required": ["request_id", "model", "status", "priority", "retries", "created_at", "claimed_at", "done_at", "error_type",
                 "worker_id", "progress"],
    "properties": {
        "request_id": {"type": "string", "format": "uuid"},
        "model": {"type": "string"},
        "status": {"type": "string", "enum": JOB_STATUSES},
        "priority": {"type": "integer", "format": "int32"},
        "retries": {"type": "integer", "minimum": 0},
        "created_at": {"type": "string", "format": "date-time"},
        "claimed_at": {"type": ["string", "null"], "format": "date-time"},
        "done_at": {"type": ["string", "null"], "format": "date-time"},
        "error_type": {"type": ["string", "null"]},
        "worker_id": {"type": ["string", "null"]},
        "progress": {"type": ["number", "null"], "description": "info.progress when it is a number."},
    },
}

schemas["JobList"] = {
    "type": "object",
    "required": ["data", "next_cursor", "scanned"],
    "properties": {
        "data": {"type": "array", "items": ref("JobListItem"), "maxItems": 200},
        "next_cursor": {
            "type": ["string", "null"],
            "description": "Where the next page starts (send it as `cursor`); null when nothing follows. A page reads at most "
            "20,000 index entries, so a page of a rare filter may be short, even empty, and still have a next_cursor.",
        },
        "scanned": {
            "type": ["integer", "null"],
            "minimum": 0,
            "description": "Index entries a short page read (its whole slice); null when the page filled.",
        },
    },
}

schemas["RequeueResponse"] = {
    "type": "object",
    "required": ["request_id", "status"],
    "properties": {"request_id": {"type": "string", "format": "uuid"}, "status": {"type": "string", "enum": ["pending"]}},
}

schemas["JobNotFailedError"] = {
    "description": "409 of a requeue: the job is not failed (job_not_failed, with its status) or belongs to a batch (job_in_batch).",
    "allOf": [
        ref("Error"),
        {
            "type": "object",
            "properties": {"status": {"type": "string", "enum": JOB_STATUSES, "description": "The job's status now."}},
        },
    ],
}

schemas["JobReference"] = {
    "type": "object",
    "description": "Body of POST /v1/queue/requeue (JobReference.init(json:)). A request_id that is not a UUID answers 404.",
    "required": ["model", "request_id"],
    "properties": {
        "model": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": NO_NUL, "description": "1 to 256 characters."},
        "request_id": {"type": "string", "format": "uuid", "minLength": 1},
    },
}

schemas["ModelHistory"] = {
    "type": "object",
    "required": ["model", "completed", "failed"],
    "properties": {
        "model": {"type": "string"},
        "completed": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 60, "maxItems": 60,
                      "description": "Jobs done in each of the last 60 minutes, oldest first."},
        "failed": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 60, "maxItems": 60},
    },
}

schemas["HistoryResponse"] = {
    "type": "object",
    "required": ["bucket_seconds", "end", "capped", "models"],
    "properties": {
        "bucket_seconds": {"type": "integer", "enum": [60]},
        "end": {"type": "string", "format": "date-time", "description": "The end of the newest minute (the database's now)."},
        "capped": {"type": "boolean", "description": "The hour held more than 100,000 ends: only the newest were counted."},
        "models": {"type": "array", "items": ref("ModelHistory")},
    },
}

# -- Together's Queue API

schemas["SubmitRequest"] = {
    "type": "object",
    "description": "Body of POST /v1/queue/submit (SubmitRequest.init(json:), QueueAPI.swift). Unknown members are ignored; "
    "a null optional member is the same as an absent one. No string anywhere in the body may hold U+0000.",
    "required": ["model", "payload"],
    "properties": {
        "model": {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "pattern": NO_NUL,
            "description": "The model (queue) name: 1 to 256 characters.",
        },
        "payload": {"type": "object", "description": "The job's inputs: any JSON object, handed to the worker as is."},
        "info": {"type": ["object", "null"], "description": "Initial `info`, merged with every emit of the job's workers."},
        "priority": {
            "type": ["integer", "null"],
            "format": "int32",
            "minimum": -2147483648,
            "maximum": 2147483647,
            "description": "Higher runs first; default 0.",
        },
        "webhook_url": {
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": 2048,
            "pattern": HTTP_URL,
            NEEDS_WEBHOOK_SECRET: True,
            "description": "An http:// or https:// URL (at most 2048 characters) that receives the job's terminal state as a signed "
            "Standard Webhooks event. Refused with 400 when the broker has no webhook secret (webhooks_disabled), when the URL has no "
            "host or does not parse (invalid_webhook_url), or when its host resolves to a loopback, private, link-local or other "
            "refused address (webhook_target_refused).",
        },
    },
}

schemas["SubmitResponse"] = {
    "type": "object",
    "required": ["requestId"],
    "properties": {"requestId": {"type": "string", "format": "uuid", "description": "The job's request id (lowercase UUID)."}},
}

schemas["BulkSubmitItem"] = {
    **schemas["SubmitRequest"],
    "description": "One job of a bulk submit: a SubmitRequest with its own optional idempotency_key (BulkSubmitItem.parse, QueueAPI.swift).",
    "properties": {
        **schemas["SubmitRequest"]["properties"],
        "idempotency_key": {
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": 255,
            "pattern": NO_NUL,
            "description": "This job's idempotency key: the same key and job within the window answers the first job's id with "
            "`replayed: true`; the same key for a different job refuses the whole array (409). Keys must differ within the array "
            "(400 duplicate_idempotency_key). They share the Idempotency-Key header's namespace.",
        },
    },
}

schemas["BulkSubmitRequest"] = {
    "type": "array",
    "description": "Body of a bulk POST /v1/queue/submit: 1 to 1,000 jobs, stored in one statement, all or none. A refused job "
    "refuses the array; the error's `param` is `[index].field` and its body carries `index`. The jobs may name at most 16 "
    "distinct webhook hosts (400 too_many_webhook_hosts).",
    "minItems": 1,
    "maxItems": 1000,
    "items": ref("BulkSubmitItem"),
}

schemas["BulkSubmitResponse"] = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {
        "object": {"type": "string", "enum": ["list"]},
        "data": {
            "type": "array",
            "description": "One entry per job, in the order sent.",
            "items": {
                "type": "object",
                "required": ["requestId", "replayed"],
                "properties": {
                    "requestId": {"type": "string", "format": "uuid"},
                    "replayed": {"type": "boolean", "description": "The job's idempotency_key named a job submitted earlier: its id."},
                },
            },
        },
    },
}

schemas["CancelRequest"] = {
    "type": "object",
    "description": "Body of POST /v1/queue/cancel (CancelRequest.init(json:)). A request_id that is not a UUID answers 404.",
    "required": ["model", "request_id"],
    "properties": {
        **schemas["JobReference"]["properties"],
        "cancel_running": {
            "type": ["boolean", "null"],
            "description": "An extension: true asks a running job's worker to stop (202) instead of refusing with 409. Default false.",
        },
    },
}

schemas["CancelResponse"] = {
    "type": "object",
    "description": "200 of a cancel: the job is canceled (it was pending, or already canceled).",
    "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["canceled"]}},
}

schemas["CancelRequestedResponse"] = {
    "type": "object",
    "description": "202 of a cancel with cancel_running: the running job's worker is asked to stop; the job ends canceled.",
    "required": ["status", "cancel_requested"],
    "properties": {
        "status": {"type": "string", "enum": ["running"]},
        "cancel_requested": {"type": "boolean", "enum": [True]},
    },
}

schemas["ModelReference"] = {
    "type": "object",
    "description": "Body of POST /v1/queue/clear (ModelReference.init(json:)).",
    "required": ["model"],
    "properties": {"model": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": NO_NUL, "description": "1 to 256 characters."}},
}

schemas["ClearResponse"] = {
    "type": "object",
    "required": ["canceled_count"],
    "properties": {"canceled_count": {"type": "integer", "minimum": 0, "description": "How many pending jobs were canceled."}},
}

schemas["QueueMetricsResponse"] = {
    "type": "object",
    "required": ["messages_waiting", "messages_running", "total_jobs"],
    "properties": {
        "messages_waiting": {"type": "integer", "minimum": 0},
        "messages_running": {"type": "integer", "minimum": 0},
        "total_jobs": {"type": "integer", "minimum": 0, "description": "messages_waiting + messages_running."},
    },
}

schemas["JobLogLine"] = {
    "type": "object",
    "description": "One of a job's log lines as a status answer shows it.",
    "required": ["message", "level", "source", "timestamp"],
    "properties": {
        "message": {"type": "string"},
        "level": {"type": "string", "enum": ["debug", "info", "warning", "error", "stdout", "stderr"]},
        "source": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
    },
}

schemas["WebhookStatus"] = {
    "type": "object",
    "description": "Where the job's webhook delivery stands (WebhookStatus.encode(to:), QueueAPI.swift): every member always present.",
    "required": [
        "webhook_id", "url", "state", "attempts", "last_status_code", "last_error", "last_attempt_at", "next_attempt_at",
    ],
    "properties": {
        "webhook_id": {"type": ["string", "null"], "description": "The `webhook-id` every attempt carries; null until the job ends."},
        "url": {"type": "string"},
        "state": {
            "type": "string",
            "enum": ["waiting", "pending", "delivered", "failed", "gone"],
            "description": "waiting (the job has not ended), pending (attempts under way or due), delivered, failed (given up), "
            "gone (the receiver answered 410).",
        },
        "attempts": {"type": "integer", "format": "int32", "minimum": 0},
        "last_status_code": {"type": ["integer", "null"], "format": "int32"},
        "last_error": {"type": ["string", "null"]},
        "last_attempt_at": {"type": ["string", "null"], "format": "date-time"},
        "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
    },
}

schemas["JobStatusResponse"] = {
    "type": "object",
    "description": "A job as Together's status shows it, with Spool's extensions (JobStatusResponse.encode(to:), QueueAPI.swift). "
    "Every member is always present (null when unset) except `logs`, present only when the request asked for logs.",
    "required": [
        "model", "request_id", "status", "priority", "info", "inputs", "outputs", "error", "error_type", "retries", "created_at",
        "claimed_at", "done_at", "warnings", "queue_position", "estimated_wait_seconds", "webhook",
    ],
    "properties": {
        "model": {"type": "string"},
        "request_id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": JOB_STATUSES},
        "priority": {"type": "integer", "format": "int32"},
        "info": {"type": "object", "description": "What was submitted, merged with every emit, and `retry_history`."},
        "inputs": {"type": "object", "description": "The submitted payload."},
        "outputs": {"type": ["object", "null"], "description": "The outputs once done."},
        "error": {"type": ["string", "null"]},
        "error_type": {
            "type": ["string", "null"],
            "description": "Why a failed job failed: runner_error, runner_disconnected, runner_timeout or request_timeout.",
        },
        "retries": {"type": "integer", "format": "int32", "minimum": 0},
        "created_at": {"type": "string", "format": "date-time"},
        "claimed_at": {"type": ["string", "null"], "format": "date-time"},
        "done_at": {"type": ["string", "null"], "format": "date-time"},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "queue_position": {
            "type": ["integer", "null"],
            "minimum": 0,
            "description": "While pending: how many jobs a claim takes before this one (0: next); else null.",
        },
        "estimated_wait_seconds": {
            "type": ["number", "null"],
            "description": "While pending: the slot releases ahead of the job at the pace the model's slots (its running jobs, at "
            "least one per live worker) end attempts (their mean run time over the last 5 minutes); null while no worker serves "
            "the model or no attempt ended in that window.",
        },
        "webhook": {
            "oneOf": [ref("WebhookStatus"), {"type": "null"}],
            "description": "The job's webhook delivery; null when the job named no webhook.",
        },
        "logs": {
            "type": "array",
            "items": ref("JobLogLine"),
            "description": "Only with logs=1 (or true/yes): the newest 1,000 log lines, oldest first.",
        },
    },
}

# -- fal's queue API

schemas["FalSubmitResponse"] = {
    "type": "object",
    "required": ["request_id", "response_url", "status_url", "cancel_url", "queue_position"],
    "properties": {
        "request_id": {"type": "string", "format": "uuid"},
        "response_url": {"type": "string", "description": "<base>/fal/{owner}/{app}/requests/{request_id}"},
        "status_url": {"type": "string", "description": "response_url + /status"},
        "cancel_url": {"type": "string", "description": "response_url + /cancel"},
        "queue_position": {"type": "integer", "minimum": 0},
    },
}

schemas["FalLogLine"] = {
    "type": "object",
    "required": ["message", "level", "source", "timestamp"],
    "properties": {
        "message": {"type": "string"},
        "level": {"type": "string", "enum": ["DEBUG", "INFO", "WARN", "ERROR", "STDOUT", "STDERR"]},
        "source": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
    },
}

_fal_common_props = {
    "request_id": {"type": "string", "format": "uuid"},
    "response_url": {"type": "string"},
    "status_url": {"type": "string"},
    "cancel_url": {"type": "string"},
    "logs": {
        "type": ["array", "null"],
        "items": ref("FalLogLine"),
        "description": "The log lines with logs=1 (or true/yes), else null.",
    },
}
_fal_common_required = ["status", "request_id", "response_url", "status_url", "cancel_url", "logs"]

schemas["FalStatusInQueue"] = {
    "type": "object",
    "description": "IN_QUEUE (the job is pending), answered 202.",
    "required": _fal_common_required + ["queue_position", "estimated_wait_seconds"],
    "properties": {
        "status": {"type": "string", "enum": ["IN_QUEUE"]},
        **_fal_common_props,
        "queue_position": {"type": "integer", "minimum": 0},
        "estimated_wait_seconds": {"type": ["number", "null"], "description": "An extension; null when unknown."},
    },
}

schemas["FalStatusInProgress"] = {
    "type": "object",
    "description": "IN_PROGRESS (the job is running), answered 202.",
    "required": _fal_common_required,
    "properties": {"status": {"type": "string", "enum": ["IN_PROGRESS"]}, **_fal_common_props},
}

schemas["FalStatusCompleted"] = {
    "type": "object",
    "description": "COMPLETED (done, failed or canceled), answered 200. `error` and `error_type` are present only when the job "
    "failed (runner_error, runner_disconnected, runner_timeout, request_timeout) or was canceled (request_cancelled).",
    "required": _fal_common_required + ["metrics"],
    "properties": {
        "status": {"type": "string", "enum": ["COMPLETED"]},
        **_fal_common_props,
        "metrics": {"type": "object", "description": "`inference_time` (seconds from claim to end) when the job was claimed."},
        "error": {"type": "string"},
        "error_type": {"type": "string"},
    },
}

schemas["FalStatusQueued"] = {
    "description": "A request that has not completed: IN_QUEUE or IN_PROGRESS.",
    "oneOf": [ref("FalStatusInQueue"), ref("FalStatusInProgress")],
    "discriminator": {
        "propertyName": "status",
        "mapping": {
            "IN_QUEUE": "#/components/schemas/FalStatusInQueue",
            "IN_PROGRESS": "#/components/schemas/FalStatusInProgress",
        },
    },
}

schemas["FalStatus"] = {
    "description": "Any status event of the fal stream.",
    "oneOf": [ref("FalStatusInQueue"), ref("FalStatusInProgress"), ref("FalStatusCompleted")],
    "discriminator": {
        "propertyName": "status",
        "mapping": {
            "IN_QUEUE": "#/components/schemas/FalStatusInQueue",
            "IN_PROGRESS": "#/components/schemas/FalStatusInProgress",
            "COMPLETED": "#/components/schemas/FalStatusCompleted",
        },
    },
}

schemas["FalResultOutputs"] = {"type": "object", "description": "The job's outputs."}

schemas["FalResultInProgress"] = {
    "type": "object",
    "description": "400 of a result asked for too early.",
    "required": ["detail", "status"],
    "properties": {"detail": {"type": "string"}, "status": {"type": "string", "enum": ["IN_QUEUE", "IN_PROGRESS"]}},
}

schemas["FalResultFailed"] = {
    "type": "object",
    "description": "The result of a request that did not complete: failed (500), canceled (400, request_cancelled) or not "
    "started before its X-Fal-Request-Timeout (504, request_timeout).",
    "required": ["detail", "error_type"],
    "properties": {"detail": {"type": "string"}, "error_type": {"type": "string"}},
}

for name, value, desc in [
    ("FalCancelOk", "OK", "200: the queued request was removed."),
    ("FalCancelRequested", "CANCELLATION_REQUESTED", "202: the running request's worker is asked to stop; it ends cancelled."),
    ("FalCancelAlreadyCompleted", "ALREADY_COMPLETED", "400: the request had already finished (or been cancelled)."),
    ("FalCancelNotFound", "NOT_FOUND", "404: no such request for this app."),
]:
    schemas[name] = {
        "type": "object",
        "description": desc,
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": [value]}},
    }

# -- worker protocol

schemas["LogLineInput"] = {
    "description": "A log line a worker sends: a bare string, or an object with a message.",
    "oneOf": [
        {"type": "string", "pattern": NO_NUL},
        {
            "type": "object",
            "required": ["message"],
            "properties": {
                "message": {"type": "string", "pattern": NO_NUL, "description": "Lines over 16 KiB are cut."},
                "level": {
                    "type": ["string", "null"],
                    "pattern": "^([Dd][Ee][Bb][Uu][Gg]|[Ii][Nn][Ff][Oo]|[Ww][Aa][Rr][Nn][Ii][Nn][Gg]|[Ee][Rr][Rr][Oo][Rr]|[Ss][Tt][Dd][Oo][Uu][Tt]|[Ss][Tt][Dd][Ee][Rr][Rr])$",
                    "description": "debug, info, warning, error, stdout or stderr, in any case; default info.",
                },
                "source": {"type": ["string", "null"], "minLength": 1, "maxLength": 64, "pattern": NO_NUL, "description": "1 to 64 characters; default worker."},
                "timestamp": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "minLength": 1,
                    "maxLength": 64,
                    "pattern": "^([0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
                    "(\\.[0-9]{1,9})?([Zz]|[+-](0[0-9]|1[0-5]):[0-5][0-9])$",
                    "description": "RFC 3339 that PostgreSQL stores as meant: year 0001 to 9999, at most 9 fraction digits, a UTC "
                    "offset within ±15:59; default: when the broker received it.",
                },
            },
        },
    ],
}

_log_lines = {
    "type": ["array", "null"],
    "maxItems": 1000,
    "items": ref("LogLineInput"),
    "description": "At most 1,000 log lines to append to the job's log.",
}
_lease_token = {
    "type": "string",
    "format": "uuid",
    "minLength": 1,
    "description": "The token the lease answered with; one that is not a UUID answers 400.",
}
_info_patch = {"type": ["object", "null"], "description": "Merged into the job's info (top-level keys replace): an emit."}

schemas["LeaseRequest"] = {
    "type": "object",
    "description": "Body of POST /v1/worker/lease (LeaseRequest.init(json:), WorkerProtocol.swift).",
    "required": ["worker_id", "models"],
    "properties": {
        "worker_id": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_NUL, "description": "1 to 200 characters."},
        "models": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": NO_NUL, "description": "1 to 256 characters."},
        },
        "max_jobs": {"type": ["integer", "null"], "minimum": 1, "maximum": 100, "description": "Default 1."},
        "wait_seconds": {"type": ["number", "null"], "minimum": 0, "maximum": 30, "description": "Long-poll; default 0."},
        "lease_seconds": {"type": ["number", "null"], "minimum": 1, "maximum": 3600, "description": "Default 30."},
        "host": {"type": ["string", "null"], "minLength": 1, "maxLength": 255, "pattern": NO_NUL, "description": "1 to 255 characters."},
    },
}

schemas["LeasedJob"] = {
    "type": "object",
    "required": [
        "request_id", "model", "lease_token", "attempt", "priority", "payload", "info", "lease_expires_at", "run_deadline_at",
    ],
    "properties": {
        "request_id": {"type": "string", "format": "uuid"},
        "model": {"type": "string"},
        "lease_token": {"type": "string", "format": "uuid"},
        "attempt": {"type": "integer", "format": "int32", "minimum": 1},
        "priority": {"type": "integer", "format": "int32"},
        "payload": {"type": "object"},
        "info": {"type": "object"},
        "lease_expires_at": {"type": "string", "format": "date-time"},
        "run_deadline_at": {"type": "string", "format": "date-time"},
        "path": {
            "type": ["string", "null"],
            "description": "The endpoint within the app a fal client called (/fal/{owner}/{app}/{path}). LeasedJob's synthesized "
            "Codable leaves the member out when there is none.",
        },
    },
}

schemas["LeaseResponse"] = {
    "type": "object",
    "required": ["jobs"],
    "properties": {"jobs": {"type": "array", "maxItems": 100, "items": ref("LeasedJob")}},
}

schemas["HeartbeatRequest"] = {
    "type": "object",
    "required": ["lease_token"],
    "properties": {
        "lease_token": _lease_token,
        "info": _info_patch,
        "logs": _log_lines,
        "lease_seconds": {"type": ["number", "null"], "minimum": 1, "maximum": 3600, "description": "Default: the leased length."},
    },
}

schemas["HeartbeatResponse"] = {
    "type": "object",
    "required": ["lease_expires_at", "stop", "stop_reason"],
    "properties": {
        "lease_expires_at": {"type": "string", "format": "date-time"},
        "stop": {"type": "boolean"},
        "stop_reason": {"type": ["string", "null"], "enum": ["canceled", "max_run_time", None]},
    },
}

schemas["CompleteRequest"] = {
    "type": "object",
    "required": ["lease_token"],
    "properties": {
        "lease_token": _lease_token,
        "outputs": {"type": ["object", "null"], "description": "The job's outputs; default {}."},
        "info": _info_patch,
        "logs": _log_lines,
    },
}

schemas["FailRequest"] = {
    "type": "object",
    "required": ["lease_token", "error"],
    "properties": {
        "lease_token": _lease_token,
        "error": {"type": "string", "minLength": 1, "pattern": NO_NUL, "description": "Cut after 16 KiB."},
        "retryable": {"type": ["boolean", "null"], "description": "Default false."},
        "info": _info_patch,
        "logs": _log_lines,
    },
}

schemas["ReleaseRequest"] = {
    "type": "object",
    "required": ["lease_token"],
    "properties": {"lease_token": _lease_token, "info": _info_patch, "logs": _log_lines},
}

schemas["JobWriteResponse"] = {
    "type": "object",
    "required": ["request_id", "status", "retries"],
    "properties": {
        "request_id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": JOB_STATUSES},
        "retries": {"type": "integer", "format": "int32", "minimum": 0},
    },
}

# ---------------------------------------------------------------- headers, parameters, responses

headers = {
    "IdempotentReplayed": {
        "description": "`true` when the answer repeats an earlier one (same Idempotency-Key, or a retried worker write).",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "XShouldRetry": {
        "description": "Always `false` on a conflict: retrying will not help.",
        "required": True,
        "schema": {"type": "string", "enum": ["false"]},
    },
    "XFalRequestId": {
        "description": "The request id this answer is about.",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    },
    "XFalRequestIdOptional": {
        "description": "The request id this answer is about (absent when the error came from the broker's error mapping).",
        "schema": {"type": "string", "format": "uuid"},
    },
    "CacheControl": {"required": True, "schema": {"type": "string", "enum": ["no-cache"]}},
    "StatusETag": {"required": True, "schema": {"type": "string", "pattern": "^W/\"[0-9a-f]{24}\"$"}},
    "XAccelBuffering": {"required": True, "schema": {"type": "string", "enum": ["no"]}},
}


def hdr(name):
    return {"$ref": f"#/components/headers/{name}"}


parameters = {
    "Model": {
        "name": "model",
        "in": "query",
        "required": True,
        "description": "The model (queue) name: 1 to 256 characters.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": NO_NUL},
    },
    "RequestIdQuery": {
        "name": "request_id",
        "in": "query",
        "required": True,
        "description": "The job's request id; one that is not a UUID answers 404.",
        "schema": {"type": "string", "format": "uuid", "minLength": 1},
    },
    "LogsQuery": {
        "name": "logs",
        "in": "query",
        "required": False,
        "description": "`1`, `true` or `yes` (any case) adds the job's log lines; any other value is ignored.",
        "schema": {"type": "string", "pattern": NO_NUL},
    },
    "WaitQuery": {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": "Seconds to wait for a change (a long-poll), 0 to 50; 0 or absent answers at once. A job that is not "
        "finished, whose state the client has (If-None-Match names it, or without it, the state at arrival), is answered when its "
        "state changes (status, progress or info, outputs, logs with logs=1) or when the wait is over; a change of queue position "
        "alone does not end the wait.",
        "schema": {"type": "integer", "minimum": 0, "maximum": 50},
    },
    "IfNoneMatch": {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "description": "An ETag from an earlier answer: a job whose state is unchanged answers 304 with no body.",
        "schema": {"type": "string"},
    },
    "FalLogsQuery": {
        "name": "logs",
        "in": "query",
        "required": False,
        "description": "`1`, `true` or `yes` (any case) fills `logs`; any other value leaves it null.",
        "schema": {"type": "string"},
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "1 to 255 characters. The same key with the same request within 24 hours returns the first job and creates "
        "nothing; the same key with a different request is a conflict (idempotency_key_reused). Scoped per API key.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
    "Owner": {
        "name": "owner",
        "in": "path",
        "required": True,
        "description": "The app's owner; the job's model is `{owner}/{app}`.",
        "schema": {"type": "string", "minLength": 1},
    },
    "App": {
        "name": "app",
        "in": "path",
        "required": True,
        "description": "The app's name; the job's model is `{owner}/{app}`.",
        "schema": {"type": "string", "minLength": 1},
    },
    "FalRequestId": {
        "name": "request_id",
        "in": "path",
        "required": True,
        "description": "The request id; one that is not a UUID answers 404.",
        "schema": {"type": "string", "format": "uuid"},
    },
    "WorkerRequestId": {
        "name": "request_id",
        "in": "path",
        "required": True,
        "description": "The job's request id; one that is not a UUID answers 404 (after the body is validated).",
        "schema": {"type": "string", "format": "uuid"},
    },
    "FalQueuePriority": {
        "name": "X-Fal-Queue-Priority",
        "in": "header",
        "required": False,
        "description": "`normal` (priority 0, the default) or `low` (priority -1), in any case.",
        "schema": {"type": "string", "pattern": "^([Nn][Oo][Rr][Mm][Aa][Ll]|[Ll][Oo][Ww])$"},
    },
    "FalRequestTimeout": {
        "name": "X-Fal-Request-Timeout",
        "in": "header",
        "required": False,
        "description": "Seconds the request may wait to start: a number above 1 and at most 2592000 (30 days). A request not "
        "started by then fails with error_type request_timeout. (The broker parses it with Swift's Double(String), so it also "
        "takes forms such as 1e3 that this pattern leaves out.)",
        "schema": {
            "type": "string",
            "pattern": "^0*(1\\.[0-9]*[1-9][0-9]*|[2-9](\\.[0-9]+)?|[1-9][0-9]{1,5}(\\.[0-9]+)?|(1[0-9]{6}|2[0-4][0-9]{5}|25[0-8][0-9]{4}|259[01][0-9]{3})(\\.[0-9]+)?|2592000(\\.0+)?)$",
        },
    },
    "FalWebhook": {
        "name": "fal_webhook",
        "in": "query",
        "required": False,
        "description": "An http:// or https:// URL (at most 2048 characters) that receives fal's webhook body when the request ends. Refused with 400 when "
        "the broker has no webhook secret (webhooks_disabled), when the URL does not parse or has no host (invalid_webhook_url), or "
        "when its host resolves to a refused address (webhook_target_refused).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 2048, "pattern": HTTP_URL},
        NEEDS_WEBHOOK_SECRET: True,
    },
}


def param(name):
    return {"$ref": f"#/components/parameters/{name}"}


responses = {
    "BadRequest": {
        "description": "Malformed request: an empty or non-JSON body, a body that is not an object, a missing, mistyped or "
        "out-of-range field, a NUL character, or a bad header or query parameter.",
        "content": json_content(ref("Error")),
    },
    "Unauthorized": {
        "description": "The broker has API keys and the request carries none, or an unknown or revoked one.",
        "content": json_content(ref("Error")),
    },
    "JobNotFound": {
        "description": "No job with that request id for that model (or the request id is not a UUID).",
        "content": json_content(ref("Error")),
    },
    "PayloadTooLarge": {
        "description": "The body is over the broker's limit (--max-body-bytes, 10 MiB by default).",
        "content": json_content(ref("Error")),
    },
    "InternalError": {"description": "The broker failed; details are in its log.", "content": json_content(ref("Error"))},
    "FalBadRequest": {
        "description": "Malformed request: an empty or non-JSON body, a body that is not an object, a NUL character, a bad "
        "X-Fal-Queue-Priority, X-Fal-Request-Timeout or Idempotency-Key header, or a refused fal_webhook.",
        "content": json_content(ref("FalError")),
    },
    "FalUnauthorized": {
        "description": "The broker has API keys and the request carries none, or an unknown or revoked one.",
        "content": json_content(ref("FalError")),
    },
    "FalNotFound": {
        "description": "No such request for this app, a request id that is not a UUID, or no such route.",
        "content": json_content(ref("FalError")),
    },
    "FalPayloadTooLarge": {
        "description": "The body is over the broker's limit (--max-body-bytes, 10 MiB by default).",
        "content": json_content(ref("FalError")),
    },
    "FalInternalError": {"description": "The broker failed; details are in its log.", "content": json_content(ref("FalError"))},
}


def resp(name):
    return {"$ref": f"#/components/responses/{name}"}


def std_errors(*codes, fal=False):
    table = {
        "400": "FalBadRequest" if fal else "BadRequest",
        "401": "FalUnauthorized" if fal else "Unauthorized",
        "404": "FalNotFound" if fal else "JobNotFound",
        "413": "FalPayloadTooLarge" if fal else "PayloadTooLarge",
        "500": "FalInternalError" if fal else "InternalError",
    }
    return {c: resp(table[c]) for c in codes}


def body(schema_name, description=None):
    b = {"required": True, "content": json_content(ref(schema_name))}
    if description:
        b["description"] = description
    return b


# ---------------------------------------------------------------- paths

paths = {}

paths["/healthz"] = {
    "get": {
        "operationId": "getHealth",
        "summary": "Liveness check; needs no key.",
        "tags": ["broker"],
        "security": [],
        "responses": {"200": {"description": "The broker is up.", "content": json_content(ref("HealthResponse"))}},
    }
}

paths["/openapi.json"] = {
    "get": {
        "operationId": "getOpenAPIDocument",
        "summary": "This OpenAPI document; needs no key.",
        "tags": ["broker"],
        "security": [],
        "responses": {"200": {"description": "The document.", "content": json_content(ref("OpenAPIDocument"))}},
    }
}

paths["/metrics"] = {
    "get": {
        "operationId": "getPrometheusMetrics",
        "summary": "The broker's Prometheus metrics (text exposition format); needs no API key, but the broker's metrics key "
        "(Authorization: Bearer <key>) when it has one (--metrics-key).",
        "tags": ["broker"],
        "security": [],
        "responses": {
            "200": {
                "description": "Prometheus text format 0.0.4 (Content-Type: text/plain; version=0.0.4).",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "401": {"description": "The broker has a metrics key and the request does not carry it.", "content": json_content(ref("Error"))},
        },
    }
}

paths["/readyz"] = {
    "get": {
        "operationId": "getReadiness",
        "summary": "Readiness: the database answers and the migrations are applied; needs no key.",
        "tags": ["broker"],
        "security": [],
        "responses": {
            "200": {"description": "Ready.", "content": json_content(ref("ReadyResponse"))},
            "503": {"description": "Not ready; `reason` says why.", "content": json_content(ref("ReadyResponse"))},
        },
    }
}

paths["/v1/workers"] = {
    "get": {
        "operationId": "listWorkers",
        "summary": "The workers brokers have seen in the last day.",
        "tags": ["operations"],
        "responses": {
            "200": {"description": "The workers, most recently seen first.", "content": json_content(ref("WorkersResponse"))},
            **std_errors("401", "500"),
        },
    }
}

paths["/v1/models"] = {
    "get": {
        "operationId": "listModels",
        "summary": "Every model's queue depth and live workers (from a snapshot at most a few seconds old).",
        "tags": ["operations"],
        "responses": {
            "200": {"description": "The models.", "content": json_content(ref("ModelsResponse"))},
            **std_errors("401", "500"),
        },
    }
}

paths["/v1/stats/history"] = {
    "get": {
        "operationId": "getThroughputHistory",
        "summary": "Each model's done and failed jobs per minute over the last hour (read at most every 5 s per replica).",
        "tags": ["operations"],
        "responses": {
            "200": {"description": "The history.", "content": json_content(ref("HistoryResponse"))},
            **std_errors("401", "500"),
        },
    }
}

_list_filter = {"type": "string", "maxLength": 1024, "pattern": NO_NUL}
# The job list takes an empty query parameter as an absent one.
_empty_or_time = {"type": "string", "anyOf": [{"maxLength": 0}, {"format": "date-time"}]}
paths["/v1/jobs"] = {
    "get": {
        "operationId": "listJobs",
        "summary": "A page of jobs, newest first (or in request-id order for a request-id prefix); the caller's tenant's "
        "unless the key is an admin's. Keyset pages on jobs_model_order (with a model) or the primary key; each page reads at "
        "most 20,000 index entries.",
        "tags": ["operations"],
        "parameters": [
            {"name": "model", "in": "query", "schema": {"type": "string", "maxLength": 256, "pattern": NO_NUL},
             "description": "Only this model's jobs (empty: every model)."},
            {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["", *JOB_STATUSES]},
             "description": "Only jobs in this status (empty: every status)."},
            {"name": "priority", "in": "query", "schema": {"type": "integer", "format": "int32", "minimum": -2147483648,
                                                           "maximum": 2147483647}},
            {"name": "created_after", "in": "query", "schema": _empty_or_time,
             "description": "RFC 3339; jobs created at or after it (empty: no bound)."},
            {"name": "created_before", "in": "query", "schema": _empty_or_time,
             "description": "RFC 3339; jobs created before it (empty: no bound)."},
            {"name": "request_id", "in": "query", "schema": {"type": "string", "pattern": "^(-*([0-9a-fA-F]-*){1,32})?$"},
             "description": "The start of a request id: 1 to 32 hex digits, dashes ignored. Results come in request-id order."},
            {"name": "cursor", "in": "query",
             "schema": {"type": "string", "pattern": "^(|i[1-9][0-9]{0,17}|r[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"},
             "description": "A next_cursor of this list with the same filters: `i…` for a newest-first list, `r…` for a request-id "
             "prefix (the other kind is a 400)."},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
        ],
        "responses": {
            "200": {"description": "The page.", "content": json_content(ref("JobList"))},
            **std_errors("400", "401", "500"),
        },
    }
}

paths["/v1/queue/requeue"] = {
    "post": {
        "operationId": "requeueJob",
        "summary": "Send a failed job back to the queue for a new attempt (admin); its retry history is kept and the audit "
        "trail records it.",
        "tags": ["operations"],
        "requestBody": body("JobReference"),
        "responses": {
            "200": {"description": "The job is pending again.", "content": json_content(ref("RequeueResponse"))},
            **std_errors("400", "401", "404"),
            "409": {"description": "The job is not failed, or belongs to a batch; it is unchanged.",
                    "content": json_content(ref("JobNotFailedError"))},
            **std_errors("413", "500"),
        },
    }
}

_ui_file = {
    "200": {"description": "The file (text/html, text/javascript or text/css), with a Content-Security-Policy that allows "
            "only the broker's own files and API.", "content": {"text/html": {"schema": {"type": "string"}},
                                                                   "text/javascript": {"schema": {"type": "string"}},
                                                                   "text/css": {"schema": {"type": "string"}}}},
    "304": {"description": "The If-None-Match ETag is current."},
}
paths["/ui"] = {
    "get": {
        "operationId": "getDashboard",
        "summary": "The web dashboard (it asks for a key and keeps it for the browser session); needs no key.",
        "tags": ["broker"],
        "security": [],
        "responses": {**_ui_file, **std_errors("500")},
    }
}
paths["/ui/{file}"] = {
    "get": {
        "operationId": "getDashboardFile",
        "summary": "The dashboard's script and style sheet; needs no key.",
        "tags": ["broker"],
        "security": [],
        "parameters": [{"name": "file", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}],
        "responses": {
            **_ui_file,
            "404": {"description": "No such dashboard file.", "content": json_content(ref("Error"))},
            **std_errors("500"),
        },
    }
}

# Together
paths["/v1/queue/submit"] = {
    "post": {
        "operationId": "submitJob",
        "summary": "Submit a job to a model's queue, or up to 1,000 in one request (an array body, an extension).",
        "tags": ["together"],
        "parameters": [param("IdempotencyKey")],
        "requestBody": {
            "required": True,
            "description": "One job (Together's body), or an array of jobs. With an array, the Idempotency-Key header is refused "
            "(400): each job carries its own idempotency_key.",
            "content": json_content({"oneOf": [ref("SubmitRequest"), ref("BulkSubmitRequest")]}),
        },
        "responses": {
            "200": {
                "description": "The job is queued (or, with a replayed Idempotency-Key, was queued earlier); for an array, every job "
                "is, with their ids in order.",
                "headers": {"Idempotent-Replayed": hdr("IdempotentReplayed")},
                "content": json_content({"oneOf": [ref("SubmitResponse"), ref("BulkSubmitResponse")]}),
            },
            **std_errors("400", "401"),
            "409": {
                "description": "The Idempotency-Key was used for a different request within the window (idempotency_key_reused).",
                "headers": {"x-should-retry": hdr("XShouldRetry")},
                "content": json_content(ref("Error")),
            },
            **std_errors("413", "500"),
        },
    }
}

paths["/v1/queue/status"] = {
    "get": {
        "operationId": "getJobStatus",
        "summary": "A job's status, inputs, outputs and extensions.",
        "tags": ["together"],
        "parameters": [param("Model"), param("RequestIdQuery"), param("LogsQuery"), param("WaitQuery"), param("IfNoneMatch")],
        "responses": {
            "200": {
                "description": "The job, with its ETag: a weak tag of its state, not of its queue position or estimated wait.",
                "headers": {"ETag": hdr("StatusETag"), "Cache-Control": hdr("CacheControl")},
                "content": json_content(ref("JobStatusResponse")),
            },
            "304": {
                "description": "If-None-Match names the job's current state: no body.",
                "headers": {"ETag": hdr("StatusETag"), "Cache-Control": hdr("CacheControl")},
            },
            **std_errors("400", "401", "404", "500"),
        },
    }
}

paths["/v1/queue/status/stream"] = {
    "get": {
        "operationId": "streamJobStatus",
        "summary": "A job's status as Server-Sent Events until it is done, failed or canceled.",
        "tags": ["together"],
        "parameters": [param("Model"), param("RequestIdQuery"), param("LogsQuery")],
        "responses": {
            "200": {
                "description": "`data: <JobStatusResponse JSON>` events on every change, `: keep-alive` comments when quiet; the "
                "stream ends after the job's final state.",
                "headers": {"Cache-Control": hdr("CacheControl"), "X-Accel-Buffering": hdr("XAccelBuffering")},
                "content": {"text/event-stream": {"schema": {"type": "string"}, "x-event-schema": ref("JobStatusResponse")}},
            },
            **std_errors("400", "401", "404", "500"),
        },
    }
}

paths["/v1/queue/cancel"] = {
    "post": {
        "operationId": "cancelJob",
        "summary": "Cancel a pending job (or, with cancel_running, ask a running one to stop).",
        "tags": ["together"],
        "requestBody": body("CancelRequest"),
        "responses": {
            "200": {"description": "The job is canceled.", "content": json_content(ref("CancelResponse"))},
            "202": {
                "description": "cancel_running: the running job's worker is asked to stop.",
                "content": json_content(ref("CancelRequestedResponse")),
            },
            **std_errors("400", "401", "404"),
            "409": {
                "description": "The job left pending (running without cancel_running, done or failed) and was left unchanged.",
                "headers": {"x-should-retry": hdr("XShouldRetry")},
                "content": json_content(ref("JobNotPendingError")),
            },
            **std_errors("413", "500"),
        },
    }
}

paths["/v1/queue/clear"] = {
    "post": {
        "operationId": "clearQueue",
        "summary": "Cancel all of a model's pending jobs.",
        "tags": ["together"],
        "requestBody": body("ModelReference"),
        "responses": {
            "200": {"description": "How many were canceled.", "content": json_content(ref("ClearResponse"))},
            **std_errors("400", "401", "413", "500"),
        },
    }
}

paths["/v1/queue/metrics"] = {
    "get": {
        "operationId": "getQueueMetrics",
        "summary": "A model's waiting and running job counts.",
        "tags": ["together"],
        "parameters": [param("Model")],
        "responses": {
            "200": {"description": "The counts.", "content": json_content(ref("QueueMetricsResponse"))},
            **std_errors("400", "401", "500"),
        },
    }
}

# fal
_fal_submit = {
    "tags": ["fal"],
    "requestBody": {
        "required": True,
        "description": "The arguments: any JSON object, the job's payload.",
        "content": json_content({"type": "object"}),
    },
    "responses": {
        "200": {
            "description": "The request is queued.",
            "headers": {"X-Fal-Request-Id": hdr("XFalRequestId")},
            "content": json_content(ref("FalSubmitResponse")),
        },
        **std_errors("400", "401", "404", "413", fal=True),
        "422": {
            "description": "The Idempotency-Key was used for a different request within the window (idempotency_key_reused).",
            "headers": {"x-should-retry": hdr("XShouldRetry")},
            "content": json_content(ref("FalError")),
        },
        **std_errors("500", fal=True),
    },
}
_fal_submit_params = [param("IdempotencyKey"), param("FalQueuePriority"), param("FalRequestTimeout"), param("FalWebhook")]

paths["/fal/{owner}/{app}"] = {
    "parameters": [param("Owner"), param("App")],
    "post": {
        "operationId": "falSubmit",
        "summary": "Submit a request to the app `{owner}/{app}` (fal's queue submit).",
        "parameters": _fal_submit_params,
        **_fal_submit,
    },
}

paths["/fal/{owner}/{app}/{path}"] = {
    "parameters": [
        param("Owner"),
        param("App"),
        {
            "name": "path",
            "in": "path",
            "required": True,
            "description": "The endpoint within the app, handed to the worker as the job's `path`. The broker takes any number of "
            "segments here (a catch-all); OpenAPI can express only one. A path that collides with the request routes (such as "
            "`requests`, or `requests/{id}`) answers 404.",
            "schema": {"type": "string", "minLength": 1},
        },
    ],
    "post": {
        "operationId": "falSubmitToPath",
        "summary": "Submit a request to an endpoint within the app `{owner}/{app}`.",
        "parameters": _fal_submit_params,
        **_fal_submit,
    },
}

_fal_req_params = [param("Owner"), param("App"), param("FalRequestId")]

paths["/fal/{owner}/{app}/requests/{request_id}/status"] = {
    "parameters": _fal_req_params,
    "get": {
        "operationId": "falGetStatus",
        "summary": "A request's status: 202 while IN_QUEUE or IN_PROGRESS, 200 once COMPLETED.",
        "tags": ["fal"],
        "parameters": [param("FalLogsQuery")],
        "responses": {
            "200": {
                "description": "COMPLETED.",
                "headers": {"X-Fal-Request-Id": hdr("XFalRequestId")},
                "content": json_content(ref("FalStatusCompleted")),
            },
            "202": {
                "description": "IN_QUEUE or IN_PROGRESS.",
                "headers": {"X-Fal-Request-Id": hdr("XFalRequestId")},
                "content": json_content(ref("FalStatusQueued")),
            },
            **std_errors("401", "404", "500", fal=True),
        },
    },
}

paths["/fal/{owner}/{app}/requests/{request_id}/status/stream"] = {
    "parameters": _fal_req_params,
    "get": {
        "operationId": "falStreamStatus",
        "summary": "A request's status as Server-Sent Events, closed after COMPLETED.",
        "tags": ["fal"],
        "parameters": [param("FalLogsQuery")],
        "responses": {
            "200": {
                "description": "`data: <status JSON>` events on every change, `: keep-alive` comments when quiet; the stream ends "
                "after COMPLETED.",
                "headers": {
                    "X-Fal-Request-Id": hdr("XFalRequestId"),
                    "Cache-Control": hdr("CacheControl"),
                    "X-Accel-Buffering": hdr("XAccelBuffering"),
                },
                "content": {"text/event-stream": {"schema": {"type": "string"}, "x-event-schema": ref("FalStatus")}},
            },
            **std_errors("401", "404", "500", fal=True),
        },
    },
}

paths["/fal/{owner}/{app}/requests/{request_id}"] = {
    "parameters": _fal_req_params,
    "get": {
        "operationId": "falGetResult",
        "summary": "A completed request's outputs.",
        "tags": ["fal"],
        "responses": {
            "200": {
                "description": "The job's outputs.",
                "headers": {"X-Fal-Request-Id": hdr("XFalRequestId")},
                "content": json_content(ref("FalResultOutputs")),
            },
            "400": {
                "description": "The request is still queued or running, or it was cancelled (error_type request_cancelled).",
                "headers": {"X-Fal-Request-Id": hdr("XFalRequestId")},
                "content": json_content({"anyOf": [ref("FalResultInProgress"), ref("FalResultFailed")]}),
            },
            **std_errors("401", "404", fal=True),
            "500": {
                "description": "The request failed (detail and error_type), or the broker failed.",
                "headers": {"X-Fal-Request-Id": hdr("XFalRequestIdOptional")},
                "content": json_content({"anyOf": [ref("FalResultFailed"), ref("FalError")]}),
            },
            "504": {
                "description": "The request did not start before its X-Fal-Request-Timeout (error_type request_timeout).",
                "headers": {
                    "X-Fal-Request-Id": hdr("XFalRequestId"),
                    "X-Fal-Request-Timeout-Type": {
                        "description": "`user`: a timeout the client set, so fal's clients do not retry.",
                        "required": True,
                        "schema": {"type": "string", "enum": ["user"]},
                    },
                },
                "content": json_content(ref("FalResultFailed")),
            },
        },
    },
}

paths["/fal/{owner}/{app}/requests/{request_id}/cancel"] = {
    "parameters": _fal_req_params,
    "put": {
        "operationId": "falCancel",
        "summary": "Cancel a request: removed when queued, asked to stop when running.",
        "tags": ["fal"],
        "responses": {
            "200": {
                "description": "OK: the queued request was removed.",
                "headers": {"X-Fal-Request-Id": hdr("XFalRequestId")},
                "content": json_content(ref("FalCancelOk")),
            },
            "202": {
                "description": "CANCELLATION_REQUESTED: the running request's worker is asked to stop.",
                "headers": {"X-Fal-Request-Id": hdr("XFalRequestId")},
                "content": json_content(ref("FalCancelRequested")),
            },
            "400": {
                "description": "ALREADY_COMPLETED: the request had already finished or been cancelled.",
                "headers": {"X-Fal-Request-Id": hdr("XFalRequestId")},
                "content": json_content(ref("FalCancelAlreadyCompleted")),
            },
            **std_errors("401", fal=True),
            "404": {
                "description": "NOT_FOUND: no such request for this app; or an error body for a request id that is not a UUID.",
                "headers": {"X-Fal-Request-Id": hdr("XFalRequestIdOptional")},
                "content": json_content({"anyOf": [ref("FalCancelNotFound"), ref("FalError")]}),
            },
            **std_errors("500", fal=True),
        },
    },
}

# worker protocol
paths["/v1/worker/lease"] = {
    "post": {
        "operationId": "leaseJobs",
        "summary": "Claim up to max_jobs pending jobs of the named models, long-polling up to wait_seconds.",
        "tags": ["worker"],
        "requestBody": body("LeaseRequest"),
        "responses": {
            "200": {"description": "The claimed jobs (empty when the wait ended first).", "content": json_content(ref("LeaseResponse"))},
            **std_errors("400", "401", "413", "500"),
        },
    }
}

_lease_lost = {
    "description": "The lease no longer holds the job (lease_lost).",
    "headers": {"x-should-retry": hdr("XShouldRetry")},
    "content": json_content(ref("LeaseLostError")),
}
_write_ok = {
    "description": "Where the job went. A repeat of a write that already succeeded is answered with the job's current state and "
    "Idempotent-Replayed: true.",
    "headers": {"Idempotent-Replayed": hdr("IdempotentReplayed")},
    "content": json_content(ref("JobWriteResponse")),
}

paths["/v1/worker/jobs/{request_id}/heartbeat"] = {
    "parameters": [param("WorkerRequestId")],
    "post": {
        "operationId": "heartbeatJob",
        "summary": "Extend a job's lease, emit info and append log lines; hear whether to stop.",
        "tags": ["worker"],
        "requestBody": body("HeartbeatRequest"),
        "responses": {
            "200": {"description": "The new lease deadline and whether to stop.", "content": json_content(ref("HeartbeatResponse"))},
            **std_errors("400", "401", "404"),
            "409": _lease_lost,
            **std_errors("413", "500"),
        },
    },
}

for action, op, summary, schema_name in [
    ("complete", "completeJob", "End the attempt with the job's outputs.", "CompleteRequest"),
    ("fail", "failJob", "End the attempt with an error, retryable or not.", "FailRequest"),
    ("release", "releaseJob", "Hand an unfinished job back to the queue without using a retry.", "ReleaseRequest"),
]:
    paths[f"/v1/worker/jobs/{{request_id}}/{action}"] = {
        "parameters": [param("WorkerRequestId")],
        "post": {
            "operationId": op,
            "summary": summary,
            "tags": ["worker"],
            "requestBody": body(schema_name),
            "responses": {
                "200": _write_ok,
                **std_errors("400", "401", "404"),
                "409": _lease_lost,
                **std_errors("413", "500"),
            },
        },
    }


# ---------------------------------------------------------------- files and batches

FILE_PURPOSES = ["batch-api", "batch", "fine-tune", "eval", "calibration", "user_data", "job-output"]
BATCH_STATUSES = ["VALIDATING", "IN_PROGRESS", "CANCELLING", "COMPLETED", "FAILED", "EXPIRED", "CANCELLED"]

schemas["File"] = {
    "type": "object",
    "description": "A stored file in Together's FileResponse shape (and OpenAI's file object).",
    "required": ["id", "object", "bytes", "created_at", "filename", "purpose", "FileType", "processing_status"],
    "properties": {
        "id": {"type": "string", "description": "file-<uuid>"},
        "object": {"type": "string", "enum": ["file"]},
        "bytes": {"type": "integer", "minimum": 0},
        "created_at": {"type": "integer", "description": "Unix seconds."},
        "filename": {"type": "string"},
        "purpose": {"type": "string", "enum": FILE_PURPOSES},
        "FileType": {"type": "string", "enum": ["jsonl", "csv", "parquet", "binary"]},
        "content_type": {"type": "string"},
        "processing_status": {"type": "string", "enum": ["PENDING", "COMPLETED"], "description": "COMPLETED once the content is in."},
        "status": {"type": "string", "enum": ["uploaded", "processed"]},
        "sha256": nullable({"type": "string"}),
        "request_id": nullable({"type": "string", "format": "uuid"}),
    },
}
schemas["FileList"] = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {"object": {"type": "string", "enum": ["list"]}, "data": {"type": "array", "items": ref("File")}},
}
schemas["FileDeleted"] = {
    "type": "object",
    "required": ["id", "object", "deleted"],
    "properties": {"id": {"type": "string"}, "object": {"type": "string", "enum": ["file"]}, "deleted": {"type": "boolean"}},
}
schemas["FileUploadForm"] = {
    "type": "object",
    "description": "With a `file` part the content is stored now (200); without one the broker answers 302 with where to PUT it "
    "(the together SDK's flow).",
    "required": ["purpose"],
    "properties": {
        "purpose": {"type": "string", "enum": FILE_PURPOSES},
        "file_name": {"type": "string"},
        "file_type": {"type": "string", "enum": ["jsonl", "csv", "parquet"]},
        "checksum": {"type": "string", "description": "Hex SHA-256 of the content; a mismatch is refused with 400."},
        "file": {"type": "string", "contentMediaType": "application/octet-stream"},
    },
}
schemas["UploadLocation"] = {
    "type": "object",
    "required": ["id", "upload_url"],
    "properties": {"id": {"type": "string"}, "upload_url": {"type": "string"}},
}
schemas["WorkerFileOutput"] = {
    "type": "object",
    "description": "What to put in a job's outputs for a file it returns; clients download `url` with their own key.",
    "required": ["file_id", "file_name", "file_size", "content_type", "url", "sha256"],
    "properties": {
        "file_id": {"type": "string"},
        "file_name": {"type": "string"},
        "file_size": {"type": "integer", "minimum": 0},
        "content_type": {"type": "string"},
        "url": {"type": "string"},
        "sha256": {"type": "string"},
    },
}
schemas["BatchCreateRequest"] = {
    "type": "object",
    "required": ["input_file_id", "endpoint"],
    "properties": {
        "input_file_id": {"type": "string", "minLength": 1, "pattern": NO_NUL},
        "endpoint": {"type": "string", "enum": ["/v1/queue/submit", "/v1/chat/completions"]},
        "completion_window": {
            "type": "string",
            "pattern": "^0*([1-9][0-9]*(\\.[0-9]+)?|0?\\.0*[1-9][0-9]*)[smhd]?$",
            "description": "A duration such as 24h (default), 90m, 2d: more than 0 and at most 30 days (which the pattern does "
            "not bound). The broker also takes upper-case units and surrounding spaces.",
        },
        "model_id": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": NO_NUL},
        "priority": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647},
    },
}
schemas["Batch"] = {
    "type": "object",
    "description": "A batch in Together's BatchJob shape; request_counts is an extension.",
    "required": ["id", "object", "status", "endpoint", "input_file_id", "progress", "created_at", "job_deadline", "file_size_bytes"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "object": {"type": "string", "enum": ["batch"]},
        "status": {"type": "string", "enum": BATCH_STATUSES},
        "endpoint": {"type": "string"},
        "input_file_id": {"type": "string"},
        "output_file_id": nullable({"type": "string"}),
        "error_file_id": nullable({"type": "string"}),
        "model_id": nullable({"type": "string"}),
        "priority": {"type": "integer"},
        "completion_window": {"type": "string"},
        "progress": {"type": "number", "minimum": 0, "maximum": 100},
        "created_at": {"type": "string", "format": "date-time"},
        "job_deadline": {"type": "string", "format": "date-time"},
        "completed_at": nullable({"type": "string", "format": "date-time"}),
        "error": nullable({"type": "string"}),
        "file_size_bytes": {"type": "integer", "minimum": 0},
        "user_id": nullable({"type": "string"}),
        "request_counts": {
            "type": "object",
            "required": ["total", "completed", "failed"],
            "properties": {n: {"type": "integer", "minimum": 0} for n in ["total", "completed", "failed"]},
        },
    },
}
schemas["BatchCreateResponse"] = {
    "type": "object",
    "required": ["job"],
    "properties": {"job": ref("Batch"), "warning": {"type": "string"}},
}

parameters["FileId"] = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The file's id (file-<uuid>).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": NO_NUL},
}
parameters["BatchId"] = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The batch's id; one that is not a UUID answers 404.",
    "schema": {"type": "string", "format": "uuid"},
}
parameters["ListLimit"] = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "How many, newest first: 1 to 1000 (default 100).",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
}
parameters["UploadToken"] = {
    "name": "token",
    "in": "query",
    "required": True,
    "description": "The secret from the Location a create answered.",
    "schema": {"type": "string"},
}
headers["Location"] = {"required": True, "description": "Where to PUT the content.", "schema": {"type": "string"}}
headers["XTogetherFileId"] = {"required": True, "description": "The new file's id.", "schema": {"type": "string"}}
responses["NotFound"] = {"description": "No such file, batch, job or upload.", "content": json_content(ref("Error"))}
responses["FileTooLarge"] = {
    "description": "The file is over the broker's limit (--max-file-bytes, 4 GiB by default); nothing was kept.",
    "content": json_content(ref("Error")),
}
responses["Conflict"] = {
    "description": "The file has no content yet, or the batch has already ended.",
    "headers": {"x-should-retry": hdr("XShouldRetry")},
    "content": json_content(ref("Error")),
}

paths["/v1/files"] = {
    "get": {
        "operationId": "listFiles",
        "summary": "Files, newest first.",
        "tags": ["files"],
        "parameters": [param("ListLimit")],
        "responses": {"200": {"description": "The files.", "content": json_content(ref("FileList"))}, **std_errors("400", "401", "500")},
    },
    "post": {
        "operationId": "createFile",
        "summary": "Upload a file (multipart), or start Together's upload (no file part: 302 to where to PUT it).",
        "tags": ["files"],
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": ref("FileUploadForm")}}},
        "responses": {
            "200": {"description": "The file part is stored.", "content": json_content(ref("File"))},
            "302": {
                "description": "PUT the content to Location.",
                "headers": {"Location": {"$ref": "#/components/headers/Location"}, "X-Together-File-Id": {"$ref": "#/components/headers/XTogetherFileId"}},
                "content": json_content(ref("UploadLocation")),
            },
            **std_errors("400", "401"),
            "413": resp("FileTooLarge"),
            **std_errors("500"),
        },
    },
}
paths["/v1/files/{id}"] = {
    "parameters": [param("FileId")],
    "get": {
        "operationId": "retrieveFile",
        "summary": "One file.",
        "tags": ["files"],
        "responses": {"200": {"description": "The file.", "content": json_content(ref("File"))}, **std_errors("401"), "404": resp("NotFound"), **std_errors("500")},
    },
    "delete": {
        "operationId": "deleteFile",
        "summary": "Delete a file and its content.",
        "tags": ["files"],
        "responses": {"200": {"description": "Deleted.", "content": json_content(ref("FileDeleted"))}, **std_errors("401"), "404": resp("NotFound"), **std_errors("500")},
    },
}
paths["/v1/files/{id}/content"] = {
    "parameters": [param("FileId")],
    "get": {
        "operationId": "getFileContent",
        "summary": "The file's bytes, streamed.",
        "tags": ["files"],
        "responses": {
            "200": {"description": "The content.", "content": {"*/*": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}},
            **std_errors("401"),
            "404": resp("NotFound"),
            "409": resp("Conflict"),
            **std_errors("500"),
        },
    },
}
paths["/v1/files/{id}/preprocess"] = {
    "parameters": [param("FileId")],
    "post": {
        "operationId": "preprocessFile",
        "summary": "The file, after Together's upload (processing_status COMPLETED once its content is in).",
        "tags": ["files"],
        "responses": {"200": {"description": "The file.", "content": json_content(ref("File"))}, **std_errors("401"), "404": resp("NotFound"), **std_errors("500")},
    },
}
paths["/v1/files/{id}/upload"] = {
    "parameters": [param("FileId"), param("UploadToken")],
    "put": {
        "operationId": "uploadFileContent",
        "summary": "The content of a file created without it; authorized by the token, not an API key.",
        "tags": ["files"],
        "security": [],
        "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}},
        "responses": {
            "200": {"description": "Stored; the upload URL is spent.", "content": json_content(ref("File"))},
            "400": {"description": "The content's SHA-256 is not the announced checksum; nothing was kept.", "content": json_content(ref("Error"))},
            "404": resp("NotFound"),
            "413": resp("FileTooLarge"),
            **std_errors("500"),
        },
    },
}
paths["/v1/batches"] = {
    "get": {
        "operationId": "listBatches",
        "summary": "Batches, newest first.",
        "tags": ["batches"],
        "parameters": [param("ListLimit")],
        "responses": {"200": {"description": "The batches.", "content": json_content({"type": "array", "items": ref("Batch")})}, **std_errors("400", "401", "500")},
    },
    "post": {
        "operationId": "createBatch",
        "summary": "Run every line of a JSONL file as a job.",
        "tags": ["batches"],
        "requestBody": body("BatchCreateRequest"),
        "responses": {
            "201": {"description": "The batch, VALIDATING.", "content": json_content(ref("BatchCreateResponse"))},
            **std_errors("400", "401"),
            "404": resp("NotFound"),
            "409": resp("Conflict"),
            **std_errors("413", "500"),
        },
    },
}
paths["/v1/batches/{id}"] = {
    "parameters": [param("BatchId")],
    "get": {
        "operationId": "retrieveBatch",
        "summary": "One batch, with its progress.",
        "tags": ["batches"],
        "responses": {"200": {"description": "The batch.", "content": json_content(ref("Batch"))}, **std_errors("401"), "404": resp("NotFound"), **std_errors("500")},
    },
}
paths["/v1/batches/{id}/cancel"] = {
    "parameters": [param("BatchId")],
    "post": {
        "operationId": "cancelBatch",
        "summary": "Cancel pending lines and stop running ones: CANCELLING, then CANCELLED with partial results.",
        "tags": ["batches"],
        "responses": {
            "200": {"description": "The batch.", "content": json_content(ref("Batch"))},
            **std_errors("401"),
            "404": resp("NotFound"),
            "409": resp("Conflict"),
            **std_errors("500"),
        },
    },
}
paths["/v1/worker/jobs/{request_id}/files"] = {
    "parameters": [param("WorkerRequestId")],
    "post": {
        "operationId": "uploadJobFile",
        "summary": "A file the job returns, fenced by its lease; the answer goes in the job's outputs.",
        "tags": ["worker"],
        "parameters": [
            {"name": "lease_token", "in": "query", "required": True, "schema": {"type": "string", "format": "uuid"}},
            {"name": "name", "in": "query", "required": False,
             "description": "The file's name: 1 to 255 bytes of UTF-8 (the schema counts characters), no '/'; default output.",
             "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^/\\u0000]+$"}},
            {"name": "sha256", "in": "query", "required": False, "description": "Hex SHA-256 to check the content against (at most 128 bytes).",
             "schema": {"type": "string", "maxLength": 128, "pattern": NO_NUL}},
        ],
        "requestBody": {"required": True, "content": {"*/*": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}},
        "responses": {
            "201": {"description": "Stored.", "content": json_content(ref("WorkerFileOutput"))},
            **std_errors("400", "401", "404"),
            "409": _lease_lost,
            "413": resp("FileTooLarge"),
            **std_errors("500"),
        },
    },
}

# ---------------------------------------------------------------- document

# ---------------------------------------------------------------- refusals every route of a kind shares

responses["UnsupportedMediaType"] = {
    "description": "The body is not sent as JSON: JSON routes read 'Content-Type: application/json' only (a browser's "
    "cross-site form or text/plain POST is refused).",
    "content": json_content(ref("Error")),
}
responses["FalUnsupportedMediaType"] = {
    "description": "The body is not sent as JSON ('Content-Type: application/json').",
    "content": json_content(ref("FalError")),
}
responses["TooManyUploads"] = {
    "description": "The API key already has --max-uploads-per-key uploads in progress on this broker; retry after Retry-After seconds.",
    "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}},
    "content": json_content(ref("Error")),
}
responses["QuotaExceeded"] = {
    "description": "The key's tenant is over a quota (--tenant: rate, max-pending); nothing was stored. `limit` names it; retry after Retry-After seconds.",
    "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}},
    "content": json_content(ref("Error")),
}
responses["UploadConflict"] = {
    "description": "Another upload of this file is under way, or this one was replaced while idle; nothing of it was kept.",
    "headers": {"x-should-retry": hdr("XShouldRetry")},
    "content": json_content(ref("Error")),
}

# Keys and the audit trail (admin scope)
schemas["CreateKeyRequest"] = {
    "type": "object",
    "required": ["name", "scopes"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_NUL},
        "scopes": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string", "enum": ["client", "worker", "admin"]}},
        "tenant": {"type": ["string", "null"], "minLength": 1, "maxLength": 100, "pattern": "^[A-Za-z0-9._-]+$"},
        "models": {
            "type": ["array", "null"],
            "description": "Model patterns a worker key serves: a model name or a prefix ending in '*'. Only with the worker scope.",
            "minItems": 1,
            "maxItems": 100,
            "items": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^*\\u0000]*\\*?$"},
        },
        "expires_at": {"type": ["string", "null"], "format": "date-time", "description": "In the future."},
    },
    "description": "Body of POST /v1/admin/keys (CreateKeyRequest, KeysAPI.swift). `models` only with the worker scope.",
    "anyOf": [
        {"properties": {"scopes": {"contains": {"const": "worker"}}}},
        {"properties": {"models": {"type": "null"}}},
    ],
}
schemas["APIKey"] = {
    "type": "object",
    "required": ["object", "id", "name", "scopes", "tenant", "models", "created_at", "expires_at", "created_by"],
    "properties": {
        "object": {"const": "api_key"},
        "id": {"type": "string"},
        "name": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string", "enum": ["client", "worker", "admin"]}},
        "tenant": {"type": ["string", "null"]},
        "models": {"type": ["array", "null"], "items": {"type": "string"}},
        "created_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "created_by": {"type": ["string", "null"]},
        "key": {"type": "string", "description": "The key itself: only in the answer to its create."},
    },
}
schemas["APIKeyList"] = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": ref("APIKey")}},
}
schemas["RevokedKey"] = {
    "type": "object",
    "required": ["id", "object", "revoked"],
    "properties": {"id": {"type": "string"}, "object": {"const": "api_key"}, "revoked": {"const": True}},
}
schemas["AuditEvent"] = {
    "type": "object",
    "required": ["id", "at", "actor", "action", "target", "details"],
    "properties": {
        "id": {"type": "integer"},
        "at": {"type": "string", "format": "date-time"},
        "actor": {"type": "string", "description": "The acting key's id (cfg_… for a configured key, cli for spool-broker keys)."},
        "action": {"type": "string", "enum": ["key.created", "key.revoked", "queue.cleared"]},
        "target": {"type": ["string", "null"]},
        "details": {"type": "object"},
    },
}
schemas["AuditList"] = {
    "type": "object",
    "required": ["object", "data", "next_before"],
    "properties": {
        "object": {"const": "list"},
        "data": {"type": "array", "items": ref("AuditEvent")},
        "next_before": {"type": ["integer", "null"], "description": "Pass as `before` for the next page."},
    },
}
responses["Forbidden"] = {
    "description": "The key lacks the scope this route needs (insufficient_scope), or a worker key's model patterns do not "
    "allow the job's model (model_not_allowed); the message says which.",
    "content": json_content(ref("Error")),
}
responses["KeyNotFound"] = {"description": "No live key has that id.", "content": json_content(ref("Error"))}

paths["/v1/admin/keys"] = {
    "post": {
        "operationId": "createKey",
        "summary": "Create an API key; the answer holds the key once, in `key`.",
        "tags": ["admin"],
        "requestBody": body("CreateKeyRequest"),
        "responses": {
            "201": {"description": "The key.", "content": json_content(ref("APIKey"))},
            **std_errors("400", "401", "413", "500"),
        },
    },
    "get": {
        "operationId": "listKeys",
        "summary": "Live API keys, newest first, never the keys themselves.",
        "tags": ["admin"],
        "responses": {"200": {"description": "The keys.", "content": json_content(ref("APIKeyList"))}, **std_errors("401", "500")},
    },
}
paths["/v1/admin/keys/{id}"] = {
    "delete": {
        "operationId": "revokeKey",
        "summary": "Revoke a key: every replica refuses it within a second.",
        "tags": ["admin"],
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64, "pattern": NO_NUL}}],
        "responses": {
            "200": {"description": "Revoked.", "content": json_content(ref("RevokedKey"))},
            "404": resp("KeyNotFound"),
            **std_errors("401", "500"),
        },
    }
}
paths["/v1/admin/audit"] = {
    "get": {
        "operationId": "listAuditEvents",
        "summary": "What admin keys did, newest first.",
        "tags": ["admin"],
        "parameters": [
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
            {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 9223372036854775807}},
        ],
        "responses": {"200": {"description": "The events.", "content": json_content(ref("AuditList"))}, **std_errors("400", "401", "500")},
    }
}


# -- RunPod's serverless APIs under /v2/{endpoint_id}: the client's (runpod.Endpoint) and the worker's
# (runpod.serverless.start). An endpoint id is a model; a model with slashes (acme/sd) is sent as that
# many segments (the broker reads the action from the end of the path), which OpenAPI cannot express.

RUNPOD_STATUSES = ["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]

schemas["RunPodRunRequest"] = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "input": {"type": "object", "description": "What the worker gets as job['input'] (the job's payload)."},
        "webhook": {
            "type": ["string", "null"], "minLength": 1, "maxLength": 2048, "pattern": NO_NUL, NEEDS_WEBHOOK_SECRET: True,
            "description": "An http(s) URL that receives the job's status body (as /status answers it) when it ends, signed with "
            "Standard Webhooks. Refused with 400 when the broker has no webhook secret.",
        },
        "policy": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {
                "executionTimeout": {
                    "type": ["number", "null"], "minimum": 1000, "maximum": 604800000,
                    "description": "Milliseconds the job may run (within the broker's --max-run-seconds); past it the job is stopped "
                    "and ends TIMED_OUT.",
                },
                "ttl": {
                    "type": ["number", "null"], "minimum": 1000, "maximum": 604800000,
                    "description": "Milliseconds the job may wait to start; past it, it ends TIMED_OUT.",
                },
                "lowPriority": {"type": ["boolean", "null"], "description": "true: priority -1, behind the endpoint's other jobs."},
            },
        },
    },
}
schemas["RunPodRunResponse"] = {
    "type": "object",
    "required": ["id", "status"],
    "properties": {"id": {"type": "string", "format": "uuid"}, "status": {"type": "string", "enum": RUNPOD_STATUSES}},
}
schemas["RunPodJobStatus"] = {
    "type": "object",
    "description": "A job in RunPod's words. FAILED by a time limit (the run time or the ttl) is TIMED_OUT.",
    "required": ["id", "status"],
    "properties": {
        "id": {"type": "string", "format": "uuid", "description": "The request id (the same job every API sees)."},
        "status": {"type": "string", "enum": RUNPOD_STATUSES},
        "delayTime": {"type": "integer", "minimum": 0, "description": "Milliseconds it waited before it started."},
        "executionTime": {"type": "integer", "minimum": 0, "description": "Milliseconds it ran (so far, while IN_PROGRESS)."},
        "output": {
            "description": "COMPLETED: what the worker returned (a RunPod worker's output; another worker's outputs object). "
            "IN_PROGRESS: the last progress update.",
        },
        "error": {"type": "string", "description": "FAILED or TIMED_OUT: the worker's error (a RunPod handler's is JSON text)."},
        "retries": {"type": "integer", "minimum": 1, "description": "Attempts lost to expired leases or retryable failures, when any."},
    },
}
schemas["RunPodStreamResponse"] = {
    "type": "object",
    "required": ["id", "status", "stream"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": RUNPOD_STATUSES},
        "stream": {
            "type": "array",
            "description": "The chunks streamed since the last read, in order; each chunk is handed out once.",
            "items": {"type": "object", "required": ["output"], "properties": {"output": {}}},
        },
    },
}
schemas["RunPodHealth"] = {
    "type": "object",
    "required": ["jobs", "workers"],
    "properties": {
        "jobs": {
            "type": "object",
            "required": ["completed", "failed", "inProgress", "inQueue", "retried"],
            "description": "inQueue and inProgress now; completed, failed and retried (ended after more than one attempt) over the "
            "last hour, counted up to 100,000.",
            "properties": {k: {"type": "integer", "minimum": 0} for k in ["completed", "failed", "inProgress", "inQueue", "retried"]},
        },
        "workers": {
            "type": "object",
            "required": ["idle", "running"],
            "description": "Live workers serving the endpoint, with jobs in hand (running) or without (idle).",
            "properties": {"idle": {"type": "integer", "minimum": 0}, "running": {"type": "integer", "minimum": 0}},
        },
    },
}
schemas["RunPodPurgeResponse"] = {
    "type": "object",
    "required": ["removed", "status"],
    "properties": {"removed": {"type": "integer", "minimum": 0}, "status": {"type": "string", "enum": ["completed"]}},
}
schemas["RunPodTakenJob"] = {
    "type": "object",
    "required": ["id", "input"],
    "properties": {
        "id": {"type": "string", "description": "The attempt's id, <request id>.<lease token>: the worker's writes name it."},
        "input": {"type": "object"},
    },
}
schemas["RunPodDoneRequest"] = {
    "type": "object",
    "description": "{output} completes the job; {error} fails it (not retried); {status: IN_PROGRESS, output} is a progress "
    "update (an emit of info.progress). Workers send it as JSON text with Content-Type application/x-www-form-urlencoded; "
    "application/json is accepted too.",
    "properties": {
        "output": {},
        "error": {},
        "status": {"type": "string"},
        "stopPod": {"type": "boolean", "description": "Ignored."},
    },
}
schemas["RunPodWriteResponse"] = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": RUNPOD_STATUSES},
        "seq": {"type": "integer", "minimum": 1, "description": "A stream chunk's place."},
        "ignored": {"type": "string", "description": "A progress update after the job ended, from the attempt that ended it."},
    },
}

_rp_endpoint = {
    "name": "endpoint_id",
    "in": "path",
    "required": True,
    "description": "The endpoint id: the model the jobs are for, read percent-decoded. A model with slashes is sent as that many "
    "segments (an escaped slash, %2F, is refused).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\s/?#\\u0000-\\u001f\\u007f]+$"},
}
_rp_id = {"name": "id", "in": "path", "required": True, "description": "The request id.", "schema": {"type": "string", "minLength": 1}}
_rp_worker = {
    "name": "worker_id",
    "in": "path",
    "required": True,
    "description": "The worker's RUNPOD_POD_ID: 1 to 200 printable characters.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\u0000-\\u001f\\u007f]+$"},
}
_rp_attempt = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "description": "The attempt's id as the take answered it (<request id>.<lease token>).",
    "schema": {"type": "string", "minLength": 1},
}
_rp_security = [{"bearer": []}, {"falKey": []}, {"runpodKey": []}, {}]
_rp_status_ok = {"description": "The job's status.", "content": json_content(ref("RunPodJobStatus"))}
_rp_run = {
    "tags": ["runpod"],
    "security": _rp_security,
    "parameters": [param("IdempotencyKey")],
    "requestBody": body("RunPodRunRequest"),
}

paths["/v2/{endpoint_id}/run"] = {
    "parameters": [_rp_endpoint],
    "post": {
        "operationId": "runpodRun",
        "summary": "Queue a job for the endpoint (runpod.Endpoint.run).",
        **_rp_run,
        "responses": {
            "200": {
                "description": "Queued: {id, status: IN_QUEUE}; with a replayed Idempotency-Key, the first job's status.",
                "headers": {"Idempotent-Replayed": hdr("IdempotentReplayed")},
                "content": json_content({"anyOf": [ref("RunPodRunResponse"), ref("RunPodJobStatus")]}),
            },
            "409": resp("Conflict"),
            **std_errors("400", "401", "413", "500"),
        },
    },
}
paths["/v2/{endpoint_id}/runsync"] = {
    "parameters": [_rp_endpoint],
    "post": {
        "operationId": "runpodRunSync",
        "summary": "Queue a job and wait for it to end, up to `wait` ms (default 60 s, at most 300 s); then its status.",
        **_rp_run,
        "parameters": [
            param("IdempotencyKey"),
            {"name": "wait", "in": "query", "required": False, "description": "Milliseconds to wait.",
             "schema": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"}},
        ],
        "responses": {
            "200": {
                "description": "The job's status when it ended or the wait ran out.",
                "headers": {"Idempotent-Replayed": hdr("IdempotentReplayed")},
                "content": json_content(ref("RunPodJobStatus")),
            },
            "409": resp("Conflict"),
            **std_errors("400", "401", "413", "500"),
        },
    },
}
for _name, _summary, _schema, _op in (
    ("status", "A job's status (runpod Job.status, Job.output).", "RunPodJobStatus", "runpodStatus"),
    ("stream", "The chunks a generator handler streamed since the last read, and the job's status (Job.stream).",
     "RunPodStreamResponse", "runpodStream"),
):
    paths[f"/v2/{{endpoint_id}}/{_name}/{{id}}"] = {
        "parameters": [_rp_endpoint, _rp_id],
        "get": {
            "operationId": _op,
            "summary": _summary,
            "tags": ["runpod"],
            "security": _rp_security,
            "responses": {"200": {"description": "The answer.", "content": json_content(ref(_schema))}, **std_errors("401", "404", "500")},
        },
    }
paths["/v2/{endpoint_id}/cancel/{id}"] = {
    "parameters": [_rp_endpoint, _rp_id],
    "post": {
        "operationId": "runpodCancel",
        "summary": "Cancel a job: a queued one at once, a running one through its worker's job-stop (both answer CANCELLED); an "
        "ended job is left as it is and its status answered.",
        "tags": ["runpod"],
        "security": _rp_security,
        "responses": {"200": _rp_status_ok, **std_errors("401", "404", "500")},
    },
}
paths["/v2/{endpoint_id}/purge-queue"] = {
    "parameters": [_rp_endpoint],
    "post": {
        "operationId": "runpodPurgeQueue",
        "summary": "Cancel the endpoint's queued jobs (the caller's tenant's; an admin key's: every tenant's).",
        "tags": ["runpod"],
        "security": _rp_security,
        "responses": {"200": {"description": "How many.", "content": json_content(ref("RunPodPurgeResponse"))}, **std_errors("401", "500")},
    },
}
paths["/v2/{endpoint_id}/health"] = {
    "parameters": [_rp_endpoint],
    "get": {
        "operationId": "runpodHealth",
        "summary": "Jobs by state and live workers of the endpoint.",
        "tags": ["runpod"],
        "security": _rp_security,
        "responses": {"200": {"description": "The counts.", "content": json_content(ref("RunPodHealth"))}, **std_errors("401", "500")},
    },
}
_rp_none = {"description": "Nothing within the wait (a long-poll of up to 30 s)."}
for _name, _op, _summary, _schema in (
    ("job-take", "runpodTake", "Take one job, long-polling up to 30 s: a lease of three ping intervals.", ref("RunPodTakenJob")),
    ("job-take-batch", "runpodTakeBatch", "Take up to `batch_size` jobs (1 to 100), long-polling up to 30 s.",
     {"type": "array", "items": ref("RunPodTakenJob")}),
):
    paths[f"/v2/{{endpoint_id}}/{_name}/{{worker_id}}"] = {
        "parameters": [_rp_endpoint, _rp_worker],
        "get": {
            "operationId": _op,
            "summary": _summary,
            "tags": ["runpod-worker"],
            "security": _rp_security,
            "parameters": [
                {"name": "batch_size", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "job-take-batch: how many; outside 1 to 100 it is clamped."},
                {"name": "job_in_progress", "in": "query", "required": False, "schema": {"type": "string"}, "description": "Ignored."},
            ],
            "responses": {
                "200": {"description": "The job(s).", "content": json_content(_schema)},
                "204": _rp_none,
                **std_errors("400", "401", "500"),
            },
        },
    }
paths["/v2/{endpoint_id}/job-stop/{worker_id}"] = {
    "parameters": [_rp_endpoint, _rp_worker],
    "get": {
        "operationId": "runpodJobStop",
        "summary": "Long-poll (up to 30 s) for the worker's jobs that were cancelled or ran past their run time; each is told once "
        "and ends as its stop says.",
        "tags": ["runpod-worker"],
        "security": _rp_security,
        "responses": {
            "200": {
                "description": "The attempts to stop.",
                "content": json_content({
                    "type": "object", "required": ["jobsToStop"],
                    "properties": {"jobsToStop": {"type": "array", "items": {"type": "string"}}},
                }),
            },
            "204": _rp_none,
            **std_errors("400", "401", "500"),
        },
    },
}
paths["/v2/{endpoint_id}/ping/{worker_id}"] = {
    "parameters": [_rp_endpoint, _rp_worker],
    "get": {
        "operationId": "runpodPing",
        "summary": "The worker's heartbeat: extends the lease of every attempt `job_id` names (comma-separated, at most 1,000).",
        "tags": ["runpod-worker"],
        "security": _rp_security,
        "parameters": [
            {"name": "job_id", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "runpod_version", "in": "query", "required": False, "schema": {"type": "string"}},
        ],
        "responses": {"200": {"description": "Seen.", "content": json_content({"type": "object"})}, **std_errors("400", "401", "500")},
    },
}
for _name, _op, _summary, _schema in (
    ("job-done", "runpodJobDone", "The attempt's result, failure or progress update.", ref("RunPodDoneRequest")),
    ("job-stream", "runpodJobStream", "One chunk of a generator handler's output, kept for /stream (at most 10,000 chunks and 64 MiB per job; past either, 413).",
     {"type": "object", "properties": {"output": {}}}),
):
    paths[f"/v2/{{endpoint_id}}/{_name}/{{worker_id}}/{{job_id}}"] = {
        "parameters": [_rp_endpoint, _rp_worker, _rp_attempt],
        "post": {
            "operationId": _op,
            "summary": _summary,
            "tags": ["runpod-worker"],
            "security": _rp_security,
            "parameters": [{"name": "isStream", "in": "query", "required": False, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": json_content(_schema)},
            "responses": {
                "200": {
                    "description": "Recorded; a repeated result is answered as a replay (Idempotent-Replayed: true).",
                    "headers": {"Idempotent-Replayed": hdr("IdempotentReplayed")},
                    "content": json_content(ref("RunPodWriteResponse")),
                },
                "409": _lease_lost,
                **std_errors("400", "401", "404", "413", "500"),
            },
        },
    }


for path, item in paths.items():
    for method, operation in item.items():
        if not isinstance(operation, dict) or "responses" not in operation:
            continue
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            fal = path.startswith("/fal/")
            operation["responses"]["415"] = resp("FalUnsupportedMediaType" if fal else "UnsupportedMediaType")
        if path in ("/v1/files", "/v1/files/{id}/upload", "/v1/worker/jobs/{request_id}/files") and method in ("post", "put"):
            operation["responses"]["429"] = resp("TooManyUploads")
        if path == "/v1/files/{id}/upload":
            operation["responses"]["409"] = resp("UploadConflict")
        if (path, method) in (("/v1/queue/submit", "post"), ("/fal/{owner}/{app}", "post"), ("/fal/{owner}/{app}/{path}", "post"),
                              ("/v1/batches", "post"), ("/v2/{endpoint_id}/run", "post"), ("/v2/{endpoint_id}/runsync", "post")):
            operation["responses"]["429"] = resp("QuotaExceeded")
        if path.startswith("/v2/"):
            # An endpoint id the broker cannot read as a model (too long, empty parts) is an unknown route.
            operation["responses"].setdefault("404", resp("NotFound"))
        operation["responses"] = dict(sorted(operation["responses"].items()))

# What the broker refuses anywhere in a request body, stated on every body's schema: a string or member
# name holding U+0000, and an integer beyond 64 bits (RequestBody.swift, JSONText.swift). Unknown members
# are ignored, so they may be any JSON value the broker stores (JSONValue); a member without a schema of
# its own is one.
_hardened = set()


def _harden(schema, form=False):
    if not isinstance(schema, dict):
        return
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if schema["$ref"].startswith("#/components/schemas/") and name not in _hardened:
            _hardened.add(name)
            _harden(schemas[name])
        return
    for key in ("oneOf", "anyOf", "allOf"):
        for sub in schema.get(key, []):
            _harden(sub)
    types = schema.get("type", [])
    types = types if isinstance(types, list) else [types]
    if "string" in types and not any(k in schema for k in ("pattern", "format", "enum", "const", "contentMediaType")):
        schema["pattern"] = NO_NUL
    if "object" in types and form:
        # A form's fields are text: an unknown one is read (and refused holding U+0000), its name is not.
        schema.setdefault("additionalProperties", {"pattern": NO_NUL})
        for sub in schema.get("properties", {}).values():
            _harden(sub)
    elif "object" in types:
        schema.setdefault("propertyNames", {"pattern": NO_NUL})
        schema.setdefault("additionalProperties", ref("JSONValue"))
        _harden(schema["additionalProperties"])
        properties = schema.get("properties", {})
        for name, sub in properties.items():
            if not set(sub) - {"description"}:
                properties[name] = {**ref("JSONValue"), **sub}
            else:
                _harden(sub)
    if "array" in types:
        _harden(schema.get("items"))


for item in paths.values():
    for method, operation in item.items():
        if isinstance(operation, dict):
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                if media == "application/json":
                    _harden(content["schema"])
                elif media == "multipart/form-data":
                    _harden(schemas[content["schema"]["$ref"].rsplit("/", 1)[1]], form=True)

# Every route that needs a key answers 403 to a key without its scope.
for item in paths.values():
    for method, operation in item.items():
        if method in ("get", "post", "put", "delete") and operation.get("security") != []:
            operation["responses"].setdefault("403", resp("Forbidden"))

doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "Spool",
        "version": "1",
        "description": "Spool's broker: Together's Queue API under /v1/queue, its files and batches under /v1/files and /v1/batches, fal's queue API under /fal, RunPod's serverless APIs under /v2, and the worker protocol "
        "under /v1/worker (docs/client-api.md, docs/worker-protocol.md). Errors are JSON in the shape of Together's QueueError. "
        "A path this document lists, asked with a method it does not list, answers 405 with an Allow header (code "
        "method_not_allowed); a path it does not list, 404 (unknown_route). "
        "String length limits count characters (Unicode code points), as JSON Schema does.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}, {"falKey": []}, {}],
    "tags": [
        {"name": "broker", "description": "Public endpoints."},
        {"name": "together", "description": "Together's Queue API."},
        {"name": "fal", "description": "fal's queue API; the app id {owner}/{app} is the job's model."},
        {"name": "worker", "description": "The worker protocol."},
        {"name": "runpod", "description": "RunPod's serverless client API; the endpoint id is the job's model."},
        {"name": "runpod-worker", "description": "RunPod's serverless worker protocol (runpod.serverless.start), mapped onto leases."},
        {"name": "files", "description": "Together's files API (and OpenAI's multipart upload)."},
        {"name": "batches", "description": "Together's batch API: each line of a JSONL file runs as a job."},
        {"name": "operations", "description": "What operators and the spool command line read (admin scope)."},
        {"name": "admin", "description": "API keys and the audit trail (admin scope)."},
    ],
    "paths": paths,
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "Authorization: Bearer <key>. Without configured keys the broker is open.",
            },
            "runpodKey": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "Authorization: <key> (the key alone, as RunPod's workers send it), accepted under /v2 only.",
            },
            "falKey": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "Authorization: Key <key> (fal's form), accepted everywhere Bearer is.",
            },
        },
        "schemas": schemas,
        "parameters": parameters,
        "headers": headers,
        "responses": responses,
    },
}

text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
if "--check" in sys.argv:
    current = open(OUT).read() if os.path.exists(OUT) else ""
    if current != text:
        print(OUT, "is not the output of", os.path.basename(__file__), "- run it and commit the result")
        sys.exit(1)
    print(OUT, "is up to date")
    sys.exit(0)
with open(OUT, "w") as f:
    f.write(text)
print("wrote", OUT)
