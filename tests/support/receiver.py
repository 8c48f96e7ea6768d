"""A Planhat stand-in on 127.0.0.1 for end-to-end tests: real HTTP, scriptable faults.

Every request is kept with what the receiver did with it, so a test can count, per event id, what
Planhat would have recorded: an activity counts as *kept* when the receiver read the whole body
and did not refuse it (a 2xx answer, or a dropped connection after the body was read: the case
where Planhat has the data but the client never learns it).

Each request also carries its timing on the test process's monotonic clock: when it arrived, when
its body was read, and when its answer was fully written (``answered_at``; ``None`` when no
answer went out). Crash and checkpoint tests compare those with the moment of a kill or of a
STATE line.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "tok-SECRET-3f9a1c"
#: The REST API token the dimension-data endpoint expects as ``Authorization: Bearer``.
API_TOKEN = "rest-SECRET-77e2b0"


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"processed": true}'
    delay: float = 0.0  # seconds before answering (after reading the body)
    # Slow drip: write the answer one byte at a time, this many seconds apart. Every gap stays
    # under a client's read timeout while the whole answer can take far longer.
    drip: float = 0.0


@dataclass
class Reset:
    """Close the connection (RST) without an answer: nothing is kept.

    Decided before the body (``decide_before_body``): nothing of it is read. With
    ``after_bytes``: that many bytes of the body are read first, so the reset lands while the
    client is still sending (mid-request).
    """

    after_bytes: int | None = None


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
    arrived: float = 0.0  # request line and headers read
    answered_at: float | None = None  # answer fully written (None: none went out)
    authorization: str = ""

    @property
    def activities(self) -> list[dict[str, Any]]:
        return json.loads(self.body) if self.body else []

    @property
    def points(self) -> list[dict[str, Any]]:
        """The metric points of a dimension-data POST."""
        return json.loads(self.body) if self.body else []


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: PlanhatReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client killed or gone between requests: expected in these tests
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK adds ~40 ms
    # to every request.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        receiver = self.server.receiver
        arrived = time.monotonic()
        index = receiver._next_index()
        action = receiver.script(index, b"") if receiver.decide_before_body else None
        length = int(self.headers.get("Content-Length") or 0)
        if isinstance(action, Reset):
            partial = self.rfile.read(min(length, action.after_bytes or 0))
            receiver._record(index, self.path, partial, "reset", kept=False, arrived=arrived)
            self._drop()
            return
        try:
            body = self.rfile.read(length)
        except OSError:
            body = b""
        if len(body) < length:  # the client went away while sending (killed, or gave up)
            receiver._record(index, self.path, body, "client_gone", kept=False, arrived=arrived)
            self.close_connection = True
            return
        is_metrics = self.path == receiver.metrics_path
        if action is None:
            script = receiver.metrics_script if is_metrics else None
            action = (script or receiver.script)(index, body)
        if isinstance(action, Reset):
            receiver._record(index, self.path, body, "reset", kept=False, arrived=arrived)
            self._drop()
            return
        if isinstance(action, KeepAndDrop):
            receiver._record(index, self.path, body, "kept_and_dropped", kept=True, arrived=arrived)
            self._drop()
            return
        if action.delay:
            receiver._closing.wait(action.delay)  # cut short when the receiver closes
        authorization = self.headers.get("Authorization") or ""
        ok = 200 <= action.status < 300 and (
            self.path == receiver.expected_path
            or (is_metrics and authorization == f"Bearer {receiver.api_token}")
        )
        record = receiver._record(
            index, self.path, body, f"status {action.status}", kept=ok, arrived=arrived
        )
        record.authorization = authorization
        try:
            if action.drip:
                self._send_dripping(action)
            else:
                self.send_response(action.status)
                for name, value in action.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(action.body)))
                self.end_headers()
                self.wfile.write(action.body)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (timeout, or killed): the answer is lost
        record.answered_at = time.monotonic()

    def _send_dripping(self, action: Reply) -> None:
        head = [f"HTTP/1.1 {action.status} {self.responses.get(action.status, ('',))[0]}"]
        head += [f"{name}: {value}" for name, value in action.headers.items()]
        head += ["Content-Type: application/json", f"Content-Length: {len(action.body)}"]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + action.body
        for i in range(len(raw)):
            self.wfile.write(raw[i : i + 1])
            self.wfile.flush()
            time.sleep(action.drip)

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
        metrics_script: Script | None = None,
        api_token: str = API_TOKEN,
    ) -> None:
        self.script = script
        self.token = token
        self.expected_path = f"/analytics/bulk/{token}"
        # The dimension-data endpoint (metrics): its own answers when ``metrics_script`` is set.
        self.metrics_path = f"/dimensiondata/{token}"
        self.metrics_script = metrics_script
        self.api_token = api_token
        self.decide_before_body = decide_before_body
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._count = 0
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        # serve_forever looks for shutdown() every poll_interval (0.5 s by default): leaving the
        # ``with`` block would cost up to that each time, for hundreds of tests.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> PlanhatReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self.settle()
        self._server.shutdown()
        self._server.server_close()

    def _next_index(self) -> int:
        with self._lock:
            self._count += 1
            return self._count - 1

    def _record(
        self, index: int, path: str, body: bytes, action: str, kept: bool, arrived: float = 0.0
    ) -> Received:
        record = Received(index, path, body, action, kept, time.monotonic(), arrived or 0.0)
        with self._lock:
            self.received.append(record)
        return record

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until every request that arrived has been recorded (its handler decided)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= self._count:
                    return True
            time.sleep(0.01)
        return False

    @property
    def arrivals(self) -> int:
        """Requests that have arrived so far (recorded or still being handled)."""
        with self._lock:
            return self._count

    def requests(self) -> list[Received]:
        with self._lock:
            return sorted(self.received, key=lambda r: r.index)

    def activity_requests(self) -> list[Received]:
        return [r for r in self.requests() if r.path != self.metrics_path]

    def metric_requests(self) -> list[Received]:
        return [r for r in self.requests() if r.path == self.metrics_path]

    def kept_activities(self) -> list[dict[str, Any]]:
        """Every activity Planhat would have recorded, in arrival order (duplicates included)."""
        return [a for r in self.activity_requests() if r.kept for a in r.activities]

    def kept_points(self) -> list[dict[str, Any]]:
        """Every metric point Planhat would have recorded, in arrival order."""
        return [p for r in self.metric_requests() if r.kept for p in r.points]

    def acknowledged_activities(self) -> list[dict[str, Any]]:
        """Only those the client got a 2xx answer for."""
        return [
            a
            for r in self.activity_requests()
            if r.kept and r.action.startswith("status 2")
            for a in r.activities
        ]

    def kept_counts(self, key: Callable[[dict[str, Any]], Any] | None = None) -> Counter:
        """How often each activity was kept, by ``key`` (default: ``info.n``, the event number)."""
        key = key or (lambda activity: activity["info"]["n"])
        return Counter(key(a) for a in self.kept_activities())
