"""A Planhat stand-in that acknowledges at once: raw sockets, HTTP/1.1 keep-alive, 200 to all.

Much lighter than ``tests/support/receiver.py`` (no http.server, no per-request records): the
benchmark measures the target, not the receiver. It counts requests, bytes and (cheaply, by
counting the top-level array's items with orjson) activities, so a run can be checked.

``latency`` (seconds) delays each answer after the whole body arrived, like a real Planhat that
takes its time over a 5 MB POST; the benchmark's ``--latency``.
"""

from __future__ import annotations

import socket
import threading
import time

import orjson

_REPLY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n"
    b'{"processed": true}'
)


class FastReceiver:
    """``with FastReceiver() as planhat: planhat.url ... planhat.activities``."""

    def __init__(self, count_activities: bool = True, latency: float = 0.0) -> None:
        self.count_activities = count_activities
        self.latency = latency
        self.requests = 0
        self.bytes = 0
        self.activities = 0
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        with self._lock:
            self.requests = self.bytes = self.activities = 0

    def __enter__(self) -> FastReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                end = buffer.find(b"\r\n\r\n")
                while end < 0:
                    chunk = conn.recv(1 << 20)
                    if not chunk:
                        return
                    buffer += chunk
                    end = buffer.find(b"\r\n\r\n")
                head, buffer = buffer[:end], buffer[end + 4 :]
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                parts = [buffer[:length]]
                have = len(parts[0])
                buffer = buffer[length:]
                while have < length:
                    chunk = conn.recv(min(1 << 22, length - have))
                    if not chunk:
                        return
                    parts.append(chunk)
                    have += len(chunk)
                if self.latency > 0:
                    time.sleep(self.latency)
                conn.sendall(_REPLY)
                body = b"".join(parts)
                items = len(orjson.loads(body)) if self.count_activities and body else 0
                with self._lock:
                    self.requests += 1
                    self.bytes += length
                    self.activities += items
