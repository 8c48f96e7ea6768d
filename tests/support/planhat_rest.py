"""A stand-in for Planhat's main REST API on 127.0.0.1: the lists target-planhat reads.

``GET /companies``, ``/endusers``, ``/assets``, ``/projects`` with ``limit`` / ``offset`` /
``select``, Bearer auth (401 for a missing or wrong token), and scriptable faults: 429 with
``Retry-After`` or ``X-Rate-Limit-*`` headers, 401 / 403, a body that echoes the token, a page
size cap below what is asked. Companies and end users can be added while a test runs (the
company "created in Planhat" between two runs). Every request is kept: path, query, whether its
token was right, the answer's status.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

REST_TOKEN = "rest-SECRET-7c2e9b"


@dataclass
class Answer:
    """What to answer instead of the list: a status, headers and a body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"error": "scripted"}'


#: (request index, path, query) -> an Answer, or None for the normal list answer.
Script = Callable[[int, str, dict[str, str]], "Answer | None"]


@dataclass
class RestRequest:
    index: int
    path: str
    query: dict[str, str]
    authorized: bool
    status: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stand_in: PlanhatRestStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.stand_in._handle(self)

    def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


class PlanhatRestStandIn:
    """``with PlanhatRestStandIn(companies=[...]) as rest: ... rest.url ... rest.requests``."""

    def __init__(
        self,
        companies: list[str] | None = None,
        endusers: list[dict[str, str]] | None = None,
        *,
        assets: list[str] | None = None,
        projects: list[str] | None = None,
        token: str = REST_TOKEN,
        max_page: int = 5000,
        script: Script | None = None,
        echo_token: bool = False,
        quota: int | None = None,
        quota_seconds: float = 1.0,
    ) -> None:
        self.token = token
        self.max_page = max_page  # the server's own cap on `limit`
        self.script = script
        self.echo_token = echo_token  # put the Authorization header's value in every answer
        # Planhat's call counter: `quota` calls per window of `quota_seconds`, told in
        # X-Rate-Limit-* headers; a call over it gets a 429.
        self.quota = quota
        self.quota_seconds = quota_seconds
        self._window_start = 0.0
        self._window_calls = 0
        self._lock = threading.Lock()
        self.lists: dict[str, list[dict[str, Any]]] = {
            "companies": [],
            "endusers": [],
            "assets": [],
            "projects": [],
        }
        for external_id in companies or []:
            self.add_company(external_id)
        for user in endusers or []:
            self.add_enduser(**user)
        for external_id in assets or []:
            self._add("assets", {"externalId": external_id, "name": external_id})
        for external_id in projects or []:
            self._add("projects", {"externalId": external_id, "name": external_id})
        self.requests: list[RestRequest] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stand_in = self
        # serve_forever looks for shutdown() every poll_interval (0.5 s by default): leaving the
        # ``with`` block would cost up to that each time, for hundreds of tests.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> PlanhatRestStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _add(self, name: str, item: dict[str, Any]) -> None:
        with self._lock:
            items = self.lists[name]
            item = {"_id": f"{name[:3]}{len(items):08d}", **item}
            items.append(item)

    def add_company(self, external_id: str, name: str | None = None) -> None:
        self._add(
            "companies",
            {"externalId": external_id, "name": name or f"Company {external_id}", "domains": []},
        )

    def add_enduser(
        self, externalId: str | None = None, email: str | None = None, companyId: str = ""
    ) -> None:
        self._add("endusers", {"externalId": externalId, "email": email, "companyId": companyId})

    def list_requests(self, path: str | None = None) -> list[RestRequest]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def _handle(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        auth = handler.headers.get("Authorization") or ""
        authorized = auth == f"Bearer {self.token}"
        with self._lock:
            index = len(self.requests)
            record = RestRequest(index, parts.path, query, authorized, 0)
            self.requests.append(record)
        echo = {"seen_authorization": auth} if self.echo_token else {}
        scripted = self.script(index, parts.path, query) if self.script else None
        if scripted is not None:
            record.status = scripted.status
            body = scripted.body
            if echo:
                body = json.dumps({**echo, "error": scripted.body.decode()}).encode()
            handler.answer(scripted.status, body, scripted.headers)
            return
        limits = self._count_call()
        if limits is not None and limits["X-Rate-Limit-Remaining"] == "-1":
            record.status = 429
            limits["X-Rate-Limit-Remaining"] = "0"
            handler.answer(429, b'{"error": "Too many requests"}', limits)
            return
        if not authorized:
            record.status = 401
            body = {"error": "Unauthorized", **echo}
            handler.answer(401, json.dumps(body).encode())
            return
        name = parts.path.strip("/")
        if name not in self.lists:
            record.status = 404
            handler.answer(404, json.dumps({"error": f"no route {parts.path}", **echo}).encode())
            return
        limit = min(int(query.get("limit", "100")), self.max_page)
        offset = int(query.get("offset", "0"))
        with self._lock:
            page = self.lists[name][offset : offset + limit]
        select = [f for f in query.get("select", "").split(",") if f]
        if select:
            page = [{k: v for k, v in item.items() if k in select or k == "_id"} for item in page]
        if echo:
            page = [{**item, **echo} for item in page]
        record.status = 200
        handler.answer(200, json.dumps(page).encode(), limits or {"X-Rate-Limit-Limit": "200"})

    def _count_call(self) -> dict[str, str] | None:
        """The rate-limit headers for this call (Remaining -1: over the quota)."""
        if self.quota is None:
            return None
        with self._lock:
            now = time.monotonic()
            if now - self._window_start >= self.quota_seconds:
                self._window_start, self._window_calls = now, 0
            self._window_calls += 1
            left = self.quota_seconds - (now - self._window_start)
            return {
                "X-Rate-Limit-Limit": str(self.quota),
                "X-Rate-Limit-Remaining": str(max(-1, self.quota - self._window_calls)),
                "X-Rate-Limit-Reset": str(max(1, math.ceil(left))),
            }
