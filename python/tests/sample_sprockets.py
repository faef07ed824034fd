"""Sprockets the tests run in real worker processes; each says what it does in its name."""
import hashlib
import os
import time

from spool_worker import FileOutput, JobCanceled, RetryableError, Sprocket, current_job, emit, log

SCRATCH = os.environ.get("SPOOL_TEST_SCRATCH", ".")


def mark(name: str, text: str = "") -> None:
    with open(os.path.join(SCRATCH, name), "a") as file:
        file.write(text + "\n")


class Echo(Sprocket):
    """Answers its payload, the attempt and its process; sleeps `seconds` first (a blocking predict,
    no emits), or `first_attempt_seconds` on attempt 1 only."""

    def predict(self, args):
        job = current_job()
        mark("started-%s" % job.request_id, str(os.getpid()))
        seconds = args.get("first_attempt_seconds", 0) if job.attempt == 1 else 0
        time.sleep(args.get("seconds", 0) or seconds)
        log("echoing")
        return {"echo": args, "attempt": job.attempt, "pid": os.getpid()}


class Tensorish:
    """Stands in for a NumPy array: JSON knows it only through tolist()."""

    def tolist(self):
        return [[1, 2], [3, 4]]


class Odd(Sprocket):
    """Returns what JSON needs help with (an array-like) or cannot carry (NaN, an object)."""

    def predict(self, args):
        if args["kind"] == "array":
            return {"matrix": Tensorish(), "items": (1, 2)}
        if args["kind"] == "nan":
            return {"score": float("nan")}
        if args["kind"] == "list":
            return [1, 2]
        return {"model": object()}


class Fails(Sprocket):
    """Raises ValueError, or RetryableError on attempt 1 when `retryable`."""

    def predict(self, args):
        if args.get("retryable") and current_job().attempt == 1:
            raise RetryableError("the GPU fell off the bus")
        if args.get("retryable"):
            return {"attempt": current_job().attempt}
        raise ValueError("num_frames must be positive")


class BrokenSetup(Sprocket):
    def setup(self):
        raise RuntimeError("CUDA driver version is insufficient")

    def predict(self, args):
        return {}


class EmitsUntilCanceled(Sprocket):
    """Emits every 50 ms for up to a minute; records when `emit` raised JobCanceled and whether
    `self.canceled` said so."""

    def predict(self, args):
        job = current_job()
        for step in range(1200):
            try:
                emit({"step": step})
            except JobCanceled as stop:
                mark("canceled-%s" % job.request_id, "%f %s %s" % (time.time(), stop.reason, self.canceled))
                raise
            time.sleep(0.05)
        return {"steps": 1200}


class LargeFile(Sprocket):
    """Writes `bytes` random bytes and returns them as a FileOutput, with their SHA-256."""

    def predict(self, args):
        path = os.path.join(SCRATCH, "out-%s.bin" % current_job().request_id)
        digest = hashlib.sha256()
        with open(path, "wb") as file:
            left = args["bytes"]
            while left > 0:
                piece = os.urandom(min(left, 1 << 20))
                digest.update(piece)
                file.write(piece)
                left -= len(piece)
        return {"file": FileOutput(path, content_type="application/octet-stream"), "sha256": digest.hexdigest()}


class Downloads(Sprocket):
    """Gets its payload's URLs as local files; answers their sizes and paths."""

    download_inputs = True
    input_schemes = ("http",)
    max_input_bytes = 3 * 1024 * 1024

    def predict(self, args):
        paths = [args["image"]] + args.get("more", [])
        return {"paths": paths, "sizes": [os.path.getsize(path) for path in paths],
                "sha256": hashlib.sha256(open(args["image"], "rb").read()).hexdigest(), "plain": args.get("plain")}
