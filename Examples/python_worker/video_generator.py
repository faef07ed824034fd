"""A video model served by Spool, written as for Together's worker SDK (only the import differs).

    pip install ./python
    python -m spool_worker video_generator:VideoGenerator --broker http://127.0.0.1:8080 --model acme/video

`load_model` and `generate_frames` stand in for a real pipeline (diffusers, say): replace them and
keep the rest. The tests run this file as it is (python/tests/test_worker.py).
"""
import os
import time

from spool_worker import FileOutput, Sprocket, emit


def load_model():
    """Stands in for `DiffusionPipeline.from_pretrained(...).to("cuda")`: slow, so done once."""
    time.sleep(0.5)
    loads = os.environ.get("VIDEO_EXAMPLE_LOADS")  # the tests count loads here
    if loads:
        with open(loads, "a") as file:
            file.write("%d\n" % os.getpid())
    return lambda frame: bytes([frame % 256]) * 1024


class VideoGenerator(Sprocket):
    def setup(self):
        self.pipe = load_model()

    def generate_frames(self, args):
        with open("output.mp4", "wb") as video:
            for i in range(args.get("num_frames", 60)):
                time.sleep(args.get("seconds_per_frame", 0.01))
                frame = self.pipe(i)
                video.write(frame)
                yield frame

    def predict(self, args: dict) -> dict:
        total = args.get("num_frames", 60)
        for i, frame in enumerate(self.generate_frames(args)):
            emit({"progress": (i + 1) / total, "current_frame": i + 1, "total_frames": total})
        return {"video": FileOutput("output.mp4")}


if __name__ == "__main__":
    VideoGenerator().run()
