"""Downloads the URLs a job's payload names to local files before `predict` runs, as Together's
worker SDK does: `predict` gets paths instead of URLs, and the files are removed after the job."""
from __future__ import annotations

import os
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterable, Optional


class InputTooLarge(Exception):
    """An input URL's content is over the size limit."""


class InputTooSlow(Exception):
    """An input URL's content did not arrive within the download deadline."""


class _SchemeRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a scheme the Sprocket allows (never https to http, or to ftp)."""

    def __init__(self, schemes: "tuple[str, ...]") -> None:
        self.schemes = schemes

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Optional[urllib.request.Request]:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in self.schemes:
            raise urllib.error.HTTPError(newurl, code, "redirect to a scheme inputs may not use: %s" % newurl, headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class InputDownloads:
    """Downloads into one temporary directory per job; `close()` removes it. A download must send
    something every `timeout` seconds and end within `deadline` seconds in all; a redirect may lead
    only to an allowed scheme."""

    def __init__(self, max_bytes: int, schemes: Iterable[str] = ("https",), timeout: float = 60,
                 ca_file: Optional[str] = None, deadline: float = 900) -> None:
        self.max_bytes = max_bytes
        self.schemes = tuple(schemes)
        self.timeout = timeout
        self.deadline = deadline
        self.directory: Optional[str] = None
        self.total = 0
        context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _SchemeRedirects(self.schemes))

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
        ends_by = time.monotonic() + self.deadline
        with self._opener.open(request, timeout=self.timeout) as answer, open(target, "wb") as file:
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
                if time.monotonic() > ends_by:
                    raise InputTooSlow("%s did not arrive within %gs" % (url, self.deadline))
                file.write(piece)
        return target

    def close(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
