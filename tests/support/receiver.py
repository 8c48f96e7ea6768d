"""A Planhat stand-in on 127.0.0.1 for end-to-end tests: real HTTP, scriptable faults.

Every request is kept with what the receiver did with it, so a test can count, per event id, what
Planhat would have recorded: an activity counts as *kept* when the receiver read the whole body
and did not refuse it (a 2xx answer, or a dropped connection after the body was read: the case
where Planhat has the data but the client never learns it).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "tok-SECRET-3f9a1c"


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"processed": true}'
    delay: float = 0.0  # seconds before answering (after reading the body)


@dataclass
class Reset:
    """Close the connection before reading the body: nothing is kept."""


@dataclass
class KeepAndDrop:
    """Read and keep the body, then close without an answer (the lost-answer case)."""


Action = Reply | Reset | KeepAndDrop
Script = Callable[[int, bytes], Action]


@dataclass
class Received:
    index: int
    path: str
    body: bytes
    action: str
    kept: bool
    at: float

    @property
    def activities(self) -> list[dict[str, Any]]:
        return json.loads(self.body) if self.body else []


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: PlanhatReceiver


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        receiver = self.server.receiver
        index = receiver._next_index()
        action = receiver.script(index, b"") if receiver.decide_before_body else None
        if isinstance(action, Reset):
            receiver._record(index, self.path, b"", "reset", kept=False)
            self._drop()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if action is None:
            action = receiver.script(index, body)
        if isinstance(action, Reset):
            receiver._record(index, self.path, body, "reset", kept=False)
            self._drop()
            return
        if isinstance(action, KeepAndDrop):
            receiver._record(index, self.path, body, "kept_and_dropped", kept=True)
            self._drop()
            return
        if action.delay:
            time.sleep(action.delay)
        ok = 200 <= action.status < 300 and self.path == receiver.expected_path
        receiver._record(index, self.path, body, f"status {action.status}", kept=ok)
        try:
            self.send_response(action.status)
            for name, value in action.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(action.body)))
            self.end_headers()
            self.wfile.write(action.body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): the answer is lost

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def always_ok(index: int, body: bytes) -> Action:
    return Reply()


class PlanhatReceiver:
    """``with PlanhatReceiver() as planhat: ... planhat.url ... planhat.kept_activities()``."""

    def __init__(
        self,
        script: Script = always_ok,
        token: str = TOKEN,
        decide_before_body: bool = False,
    ) -> None:
        self.script = script
        self.token = token
        self.expected_path = f"/analytics/bulk/{token}"
        self.decide_before_body = decide_before_body
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._count = 0
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> PlanhatReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_index(self) -> int:
        with self._lock:
            self._count += 1
            return self._count - 1

    def _record(self, index: int, path: str, body: bytes, action: str, kept: bool) -> None:
        with self._lock:
            self.received.append(Received(index, path, body, action, kept, time.monotonic()))

    def requests(self) -> list[Received]:
        with self._lock:
            return sorted(self.received, key=lambda r: r.index)

    def kept_activities(self) -> list[dict[str, Any]]:
        """Every activity Planhat would have recorded, in arrival order (duplicates included)."""
        return [a for r in self.requests() if r.kept for a in r.activities]

    def acknowledged_activities(self) -> list[dict[str, Any]]:
        """Only those the client got a 2xx answer for."""
        return [
            a for r in self.requests() if r.kept and r.action.startswith("status 2")
            for a in r.activities
        ]
