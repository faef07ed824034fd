"""Spool workers in Python, in the shape of Together's worker SDK:

    from spool_worker import Sprocket, emit, FileOutput

    class VideoGenerator(Sprocket):
        def setup(self):
            self.pipe = load_model()
        def predict(self, args: dict) -> dict:
            emit({"progress": 0.5})
            return {"video": FileOutput("output.mp4")}

Run it with `python -m spool_worker my_module:VideoGenerator --broker URL --model acme/video`, or
`VideoGenerator().run()`. The protocol it speaks is docs/worker-protocol.md.
"""
from .job import FileOutput, Job, JobCanceled, RetryableError, current_job, emit, log
from .sprocket import Sprocket, run
from .worker import Worker, WorkerOptions

__all__ = ["Sprocket", "emit", "log", "FileOutput", "run", "JobCanceled", "RetryableError", "Job", "current_job",
           "Worker", "WorkerOptions"]
__version__ = "0.1.0"
