"""Downloads the URLs a job's payload names to local files before `predict` runs, as Together's
worker SDK does: `predict` gets paths instead of URLs, and the files are removed after the job."""
from __future__ import annotations

import os
import shutil
import ssl
import tempfile
import urllib.parse
import urllib.request
from typing import Any, Iterable, Optional


class InputTooLarge(Exception):
    """An input URL's content is over the size limit."""


class InputDownloads:
    """Downloads into one temporary directory per job; `close()` removes it."""

    def __init__(self, max_bytes: int, schemes: Iterable[str] = ("https",), timeout: float = 60,
                 ca_file: Optional[str] = None) -> None:
        self.max_bytes = max_bytes
        self.schemes = tuple(schemes)
        self.timeout = timeout
        self.directory: Optional[str] = None
        self.total = 0
        self._ssl = ssl.create_default_context(cafile=ca_file) if ca_file else None

    def localize(self, value: Any) -> Any:
        """`value` with every string that is a URL of an allowed scheme replaced by its local path."""
        if isinstance(value, str):
            scheme = urllib.parse.urlsplit(value).scheme.lower() if "://" in value else ""
            return self._download(value) if scheme in self.schemes else value
        if isinstance(value, dict):
            return {key: self.localize(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.localize(item) for item in value]
        return value

    def _download(self, url: str) -> str:
        if self.directory is None:
            self.directory = tempfile.mkdtemp(prefix="spool-inputs-")
        name = os.path.basename(urllib.parse.urlsplit(url).path) or "input"
        target = os.path.join(self.directory, "%d-%s" % (len(os.listdir(self.directory)), name))
        request = urllib.request.Request(url, headers={"User-Agent": "spool-worker"})
        with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl) as answer, open(target, "wb") as file:
            announced = answer.headers.get("Content-Length")
            if announced is not None and announced.isdigit() and self.total + int(announced) > self.max_bytes:
                raise InputTooLarge("%s is %s bytes: over the %d-byte limit on a job's inputs" % (url, announced, self.max_bytes))
            while True:
                piece = answer.read(1 << 20)
                if not piece:
                    break
                self.total += len(piece)
                # A server may send more than it announced, or announce nothing: count what arrives.
                if self.total > self.max_bytes:
                    raise InputTooLarge("%s is over the %d-byte limit on a job's inputs" % (url, self.max_bytes))
                file.write(piece)
        return target

    def close(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
