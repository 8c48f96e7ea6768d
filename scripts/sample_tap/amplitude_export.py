"""An Amplitude Export-API stand-in on 127.0.0.1 for end-to-end tests with real taps.

``GET /api/2/export?start=YYYYMMDDTHH&end=YYYYMMDDTHH`` answers as Amplitude documents it: a zip
archive holding one gzip-compressed JSON-lines file per hour of ``server_upload_time`` in the
range, both ends inclusive, named ``<app>/<app>_<YYYY-MM-DD>_<H>#0.json.gz``; 404 when the range
holds no data; 400 for a malformed range; 401 without the expected HTTP Basic credentials.
Every request is kept (``requests``) so a test can check what a tap asked for.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import json
import threading
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOUR_FORMAT = "%Y%m%dT%H"


@dataclass
class ExportRequest:
    path: str
    start: str | None
    end: str | None
    status: int
    events: int


def _upload_hour(event: dict[str, Any]) -> dt.datetime:
    text = event["server_upload_time"]
    moment = dt.datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S")
    return moment.replace(minute=0, second=0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    export: AmplitudeExport


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        export = self.server.export
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        start = (query.get("start") or [None])[0]
        end = (query.get("end") or [None])[0]
        if url.path != "/api/2/export":
            return self._answer(404, b"Not found", start, end, 0)
        if self.headers.get("Authorization") != export.authorization:
            return self._answer(401, b"Invalid credentials", start, end, 0)
        try:
            first = dt.datetime.strptime(start or "", HOUR_FORMAT)
            last = dt.datetime.strptime(end or "", HOUR_FORMAT)
        except ValueError:
            return self._answer(400, b"Invalid start or end", start, end, 0)
        if last < first:
            return self._answer(400, b"end before start", start, end, 0)
        body, count = export.archive(first, last)
        if not count:
            return self._answer(404, b"Raw data files were not found.", start, end, 0)
        self._answer(200, body, start, end, count, "application/zip")

    def _answer(
        self,
        status: int,
        body: bytes,
        start: str | None,
        end: str | None,
        count: int,
        content_type: str = "text/plain",
    ) -> None:
        self.server.export._record(ExportRequest(self.path, start, end, status, count))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class AmplitudeExport:
    """``with AmplitudeExport(events) as amplitude: ... amplitude.export_url ...``.

    ``events`` are Export-API lines (dicts with ``server_upload_time`` as
    ``YYYY-MM-DD HH:MM:SS.ffffff``); they are served in the given order within each hour file.
    """

    def __init__(
        self,
        events: Iterable[dict[str, Any]],
        api_key: str = "amp-key",
        secret_key: str = "amp-secret",
        app: int = 123456,
    ) -> None:
        self.events = list(events)
        self.api_key = api_key
        self.secret_key = secret_key
        self.app = app
        token = base64.b64encode(f"{api_key}:{secret_key}".encode()).decode()
        self.authorization = f"Basic {token}"
        self.requests: list[ExportRequest] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.export = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def export_url(self) -> str:
        """The Export endpoint, as taps hold it (``https://amplitude.com/api/2/export``)."""
        return f"{self.url}/api/2/export"

    def __enter__(self) -> AmplitudeExport:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, request: ExportRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def served(self, first: dt.datetime, last: dt.datetime) -> list[dict[str, Any]]:
        """The events a request for hours ``first``..``last`` (inclusive) returns."""
        return [e for e in self.events if first <= _upload_hour(e) <= last]

    def archive(self, first: dt.datetime, last: dt.datetime) -> tuple[bytes, int]:
        by_hour: dict[dt.datetime, list[dict[str, Any]]] = {}
        for event in self.served(first, last):
            by_hour.setdefault(_upload_hour(event), []).append(event)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for hour in sorted(by_hour):
                lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in by_hour[hour])
                name = f"{self.app}/{self.app}_{hour:%Y-%m-%d}_{hour.hour}#0.json.gz"
                archive.writestr(name, gzip.compress(lines.encode("utf-8"), mtime=0))
        return buffer.getvalue(), sum(len(v) for v in by_hour.values())
