"""The `together` SDK's files and batches API against a live broker with a worker running.

Env: TOGETHER_BASE_URL, TOGETHER_API_KEY, SPOOL_MODEL, SPOOL_CHAT_MODEL, SPOOL_LINES, SPOOL_WORKDIR.
Uploads a JSONL file the SDK's way, runs it as a batch to COMPLETED, downloads the output; then a
chat-completions batch (answered by a --forward worker); then a file with bad lines, which fails
validation naming them; then a plain multipart upload.
"""
import hashlib
import json
import os
import sys
import time

import httpx
import together
from together import Together

model = os.environ["SPOOL_MODEL"]
chat_model = os.environ["SPOOL_CHAT_MODEL"]
lines = int(os.environ.get("SPOOL_LINES", "50"))
workdir = os.environ["SPOOL_WORKDIR"]
client = Together()


def wait_for(batch_id, statuses, timeout=120):
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        batch = client.batches.retrieve(batch_id)
        seen.append((batch.status, batch.progress))
        if batch.status in statuses:
            return batch, seen
        time.sleep(0.2)
    raise SystemExit(f"batch {batch_id} did not reach {statuses}: {seen[-5:]}")


# 1. Upload through the SDK's flow: POST (302 + file id), PUT to the Location, preprocess.
path = os.path.join(workdir, "requests.jsonl")
with open(path, "w") as f:
    for i in range(lines):
        body = {"model": model, "payload": {"n": i, "text": f"line {i}"}}
        f.write(json.dumps({"custom_id": f"req-{i}", "body": body}) + "\n")
uploaded = client.files.upload(path, purpose="batch-api")
assert uploaded.id.startswith("file-"), uploaded
assert uploaded.bytes == os.path.getsize(path), (uploaded.bytes, os.path.getsize(path))
assert uploaded.filename == "requests.jsonl", uploaded
assert uploaded.purpose == "batch-api", uploaded
assert client.files.retrieve(uploaded.id).bytes == uploaded.bytes
assert uploaded.id in [f.id for f in client.files.list().data]
assert client.files.content(uploaded.id).read() == open(path, "rb").read()

# 2. A batch to COMPLETED, with progress on the way.
created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/queue/submit", completion_window="1h", priority=1)
job = created.job
assert job.status == "VALIDATING", job
assert job.input_file_id == uploaded.id and job.file_size_bytes == uploaded.bytes, job
batch, seen = wait_for(job.id, {"COMPLETED", "FAILED", "EXPIRED", "CANCELLED"})
assert batch.status == "COMPLETED", (batch, seen)
assert batch.progress == 100, batch
assert batch.completed_at is not None and batch.output_file_id, batch
assert batch.error_file_id is None, batch
assert job.id in [b.id for b in client.batches.list()]
progresses = [p for s, p in seen if s == "IN_PROGRESS"]
assert progresses == sorted(progresses), seen

output = client.files.content(batch.output_file_id).read().decode()
answers = [json.loads(line) for line in output.splitlines()]
assert len(answers) == lines, len(answers)
by_id = {answer["custom_id"]: answer for answer in answers}
assert sorted(by_id) == sorted(f"req-{i}" for i in range(lines)), "every line answered exactly once"
for i in range(lines):
    answer = by_id[f"req-{i}"]
    assert answer["response"]["status_code"] == 200, answer
    assert answer["response"]["body"]["echo"] == {"n": i, "text": f"line {i}"}, answer
print(f"batch of {lines} lines COMPLETED; progress seen: {sorted(set(int(p or 0) for p in progresses))}")

# 2b. Chat completions: each body is the payload of a job for body.model; a --forward worker answers.
chat_path = os.path.join(workdir, "chat.jsonl")
with open(chat_path, "w") as f:
    for i in range(5):
        body = {"model": chat_model, "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 8}
        f.write(json.dumps({"custom_id": f"chat-{i}", "body": body}) + "\n")
chat_file = client.files.upload(chat_path, purpose="batch-api")
chat = client.batches.create(input_file_id=chat_file.id, endpoint="/v1/chat/completions").job
chat, _ = wait_for(chat.id, {"COMPLETED", "FAILED", "EXPIRED", "CANCELLED"})
assert chat.status == "COMPLETED", chat
chat_answers = {json.loads(line)["custom_id"]: json.loads(line) for line in client.files.content(chat.output_file_id).read().decode().splitlines()}
assert sorted(chat_answers) == [f"chat-{i}" for i in range(5)], chat_answers
for i in range(5):
    received = chat_answers[f"chat-{i}"]["response"]["body"]["received"]
    assert received["messages"][0]["content"] == f"question {i}" and received["model"] == chat_model, received
print("chat-completions batch COMPLETED through a forwarding worker")

# 3. Bad lines fail validation, named by line number; nothing is enqueued.
bad_path = os.path.join(workdir, "bad.jsonl")
with open(bad_path, "w") as f:
    f.write(json.dumps({"custom_id": "a", "body": {"model": model, "payload": {}}}) + "\n")
    f.write("{not json\n")
    f.write(json.dumps({"custom_id": "b", "body": {"model": model, "payload": {}}}) + "\n")
    f.write(json.dumps({"custom_id": "a", "body": {"model": model, "payload": {}}}) + "\n")
    f.write(json.dumps({"custom_id": "c"}) + "\n")
bad = client.files.upload(bad_path, purpose="batch-api", check=False)
failed = client.batches.create(input_file_id=bad.id, endpoint="/v1/queue/submit").job
failed, _ = wait_for(failed.id, {"FAILED", "COMPLETED", "IN_PROGRESS"})
assert failed.status == "FAILED", failed
for needle in ["line 2 is not valid JSON", "line 4 repeats the custom_id 'a' of line 1", "line 5 has no 'body' object", "3 bad lines"]:
    assert needle in failed.error, (needle, failed.error)
print("bad file FAILED:", failed.error)

# 4. Errors the SDK raises: unknown file, unknown batch, a batch that has ended.
try:
    client.batches.create(input_file_id="file-nope", endpoint="/v1/queue/submit")
    raise SystemExit("a batch of an unknown file was accepted")
except together.NotFoundError:
    pass
try:
    client.batches.cancel(batch.id)
    raise SystemExit("canceling a COMPLETED batch was accepted")
except together.ConflictError as e:
    assert "COMPLETED" in str(e), e

# 5. A plain multipart upload (OpenAI's shape), and delete.
base = os.environ["TOGETHER_BASE_URL"].rstrip("/")
headers = {"Authorization": "Bearer " + os.environ["TOGETHER_API_KEY"]}
content = b'{"custom_id": "x", "body": {}}\n' * 1000
answer = httpx.post(base + "/v1/files", headers=headers, data={"purpose": "batch"},
                    files={"file": ("plain.jsonl", content, "application/jsonl")})
assert answer.status_code == 200, answer.text
plain = answer.json()
assert plain["bytes"] == len(content) and plain["filename"] == "plain.jsonl", plain
assert plain["sha256"] == hashlib.sha256(content).hexdigest(), plain
assert client.files.content(plain["id"]).read() == content
deleted = client.files.delete(plain["id"])
assert deleted.deleted and deleted.id == plain["id"], deleted
try:
    client.files.retrieve(plain["id"])
    raise SystemExit("a deleted file is still there")
except together.NotFoundError:
    pass
print("together SDK files and batches passed")
