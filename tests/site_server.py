"""A local web server for fixture docs sites, as real sites behave: ETag and Last-Modified, 304s, redirects, robots.txt.

It also fails on request (a status, with Retry-After, a given number of times) and logs
every request, so tests can check what a crawler asked for and what it got.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Failure:
    status: int
    times: int
    retry_after: str | None = None


@dataclass
class SiteServer:
    root: Path
    server: ThreadingHTTPServer | None = None
    log: list[tuple[str, int]] = field(default_factory=list)  # (path, status) of each request
    failures: dict[str, Failure] = field(default_factory=dict)  # path → what to answer instead, while times > 0

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SiteServer:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, self, directory=str(self.root)))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def statuses(self, path: str) -> list[int]:
        return [status for logged, status in self.log if logged == path]


def serve_copy(fixtures: Path, target: Path) -> SiteServer:
    shutil.copytree(fixtures, target)
    return SiteServer(target).start()


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, site: SiteServer, *args, **kwargs):
        self.site = site
        super().__init__(*args, **kwargs)

    def log_message(self, format, *args):
        pass

    def send_response(self, code, message=None):
        self.site.log.append((self.path, int(code)))
        super().send_response(code, message)

    def list_directory(self, path):
        self.send_error(HTTPStatus.NOT_FOUND)  # as a real site: no folder listings

    def do_GET(self):
        failure = self.site.failures.get(self.path)
        if failure is not None and failure.times > 0:
            failure.times -= 1
            self.send_response(failure.status)
            if failure.retry_after is not None:
                self.send_header("Retry-After", failure.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        local = Path(self.translate_path(self.path))
        if local.is_dir() and self.path.endswith("/"):
            local = local / "index.html"
        if local.is_file() and local.suffix in (".html", ".xml"):
            self._send_page(local)
            return
        super().do_GET()

    def _send_page(self, local: Path) -> None:
        body = local.read_bytes().replace(b"{{base}}", self.site.base.encode())
        etag = f'"{hashlib.sha1(body).hexdigest()[:16]}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8" if local.suffix == ".html" else "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", self.date_time_string(int(local.stat().st_mtime)))
        self.end_headers()
        self.wfile.write(body)
