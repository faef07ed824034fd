"""The class a worker subclasses: `setup()` once, `predict(args) -> dict` per job."""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional, Union

from .job import current_job


class Sprocket:
    """Subclass it: load the model in `setup()`, answer one job in `predict()`.

    Class attributes a subclass may set: `download_inputs = True` downloads the https:// URLs in a
    job's payload to local files before `predict` (paths replace the URLs; the files are removed
    after the job), at most `max_input_bytes` in all (1 GiB) over `input_schemes` (("https",)).
    """

    download_inputs: bool = False
    max_input_bytes: int = 1 << 30
    input_schemes: "tuple[str, ...]" = ("https",)

    def setup(self) -> None:
        """Runs once, before the first lease: load weights here. An exception ends the process."""

    def predict(self, args: Dict[str, Any]) -> Dict[str, Any]:
        """Runs one job: `args` is its payload; the answer (a dict) becomes its outputs."""
        raise NotImplementedError("a Sprocket implements predict(self, args) -> dict")

    @property
    def canceled(self) -> bool:
        """True once the broker wants the current job to stop (a client canceled it, it ran past
        its maximum run time, or its lease moved on): `predict` can check it and return early."""
        job = current_job()
        return job is not None and job.canceled

    def run(self, model: Optional[Union[str, List[str]]] = None, **options: Any) -> None:
        """Serves this Sprocket as `python -m spool_worker` would: flags from `sys.argv`, then the
        SPOOL_* environment variables; `model` and keyword options (brokers, concurrency,
        lease_seconds, drain_seconds, api_key, worker_id, health_port) fill in what neither sets."""
        run(self, model, **options)


def run(sprocket: Any, model: Optional[Union[str, List[str]]] = None, argv: Optional[List[str]] = None, **options: Any) -> None:
    """Serves `sprocket` until SIGTERM (then drains) and exits the process with the status."""
    from .__main__ import worker_from_arguments

    worker = worker_from_arguments(sys.argv[1:] if argv is None else argv, sprocket=sprocket, model=model, defaults=options)
    sys.exit(worker.run())
