"""`python -m spool_worker my_module:MyModel --broker URL --model acme/video`."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Dict, List, Optional, Union

from .worker import Worker, WorkerOptions


def parser(with_target: bool) -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m spool_worker",
        description="Serve a Sprocket (setup once, predict per job) to Spool brokers. "
                    "Flags win over SPOOL_* environment variables, which win over the defaults.")
    if with_target:
        parse.add_argument("target", help="module:Class of the Sprocket, e.g. my_module:VideoGenerator (imported from the current directory too)")
    parse.add_argument("--broker", action="append", help="broker URL (repeatable: any replica; the next is tried when one fails). Env: SPOOL_BROKER_URL, comma-separated. Default: http://127.0.0.1:8080")
    parse.add_argument("--model", action="append", help="a model to serve (repeatable). Env: SPOOL_MODELS, comma-separated")
    parse.add_argument("--concurrency", type=int, help="jobs run at once. Env: SPOOL_CONCURRENCY. Default: 1 (a GPU)")
    parse.add_argument("--lease-seconds", type=float, help="the lease asked for each job; heartbeats every third of it. Env: SPOOL_LEASE_SECONDS. Default: 30")
    parse.add_argument("--drain-seconds", type=float, help="on SIGTERM, how long running jobs may take to finish before they are handed back. Env: SPOOL_DRAIN_SECONDS. Default: 30")
    parse.add_argument("--api-key", help="API key sent as a Bearer token. Env: SPOOL_API_KEY")
    parse.add_argument("--worker-id", help="this worker's name in job records. Env: SPOOL_WORKER_ID. Default: <host>-<pid>-<random>")
    parse.add_argument("--ca-file", help="PEM file of certificate authorities to trust for an https broker. Env: SPOOL_CA_FILE")
    parse.add_argument("--health-port", type=int, help="serve /health and /metrics on this port. Env: SPOOL_HEALTH_PORT")
    return parse


def load_target(target: str) -> Any:
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise SystemExit("python -m spool_worker: name the Sprocket as module:Class, got %r" % target)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise SystemExit("python -m spool_worker: module %r has no %r" % (module_name, class_name)) from None


def worker_from_arguments(argv: List[str], sprocket: Any = None, model: Optional[Union[str, List[str]]] = None,
                          defaults: Optional[Dict[str, Any]] = None) -> Worker:
    arguments = parser(with_target=sprocket is None).parse_args(argv)
    try:
        # Keyword arguments of run() first, then the environment over them, then the flags.
        base = WorkerOptions()
        for name, value in (defaults or {}).items():
            if not hasattr(base, name):
                raise ValueError("unknown worker option %r" % name)
            setattr(base, name, value)
        if model is not None:
            base.models = [model] if isinstance(model, str) else list(model)
        options = WorkerOptions.from_environment(base=base)
        if arguments.broker:
            options.brokers = [url for value in arguments.broker for url in value.split(",") if url]
        if arguments.model:
            options.models = arguments.model
        for name in ("concurrency", "lease_seconds", "drain_seconds", "api_key", "worker_id", "ca_file", "health_port"):
            value = getattr(arguments, name)
            if value is not None:
                setattr(options, name, value)
        if sprocket is None:
            sprocket = load_target(arguments.target)()
        return Worker(sprocket, options)
    except ValueError as error:
        raise SystemExit("python -m spool_worker: %s" % error) from None


def main() -> None:
    sys.exit(worker_from_arguments(sys.argv[1:]).run())


if __name__ == "__main__":
    main()
