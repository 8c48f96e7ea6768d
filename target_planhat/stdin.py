"""Standard input as lines, with a callback while the tap is quiet.

A tap can go quiet for minutes (tap-amplitude-api waits for each hourly export). Read in the main
thread, a blocked ``readline`` would hold acknowledged STATE and half-full batches until the next
line. Here a thread reads raw chunks into a small bounded queue and the main thread, which does all
the work, calls ``on_idle`` whenever no input came for ``idle_seconds``. Drains and signals thus
stay in the main thread.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

_CHUNK = 1 << 20
_QUEUED_CHUNKS = 8  # at most ~8 MB read ahead


class IdleAwareLines:
    """Iterate decoded lines of ``stream``; call ``on_idle()`` when input pauses."""

    def __init__(
        self,
        stream: BinaryIO,
        on_idle: Callable[[], None] | None = None,
        idle_seconds: float = 1.0,
    ) -> None:
        self._stream = stream
        self._on_idle = on_idle
        self._idle_seconds = idle_seconds
        self._chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(_QUEUED_CHUNKS)
        self._thread = threading.Thread(target=self._pump, name="stdin-reader", daemon=True)
        self._started = False

    def _read(self) -> bytes:
        try:
            return os.read(self._stream.fileno(), _CHUNK)
        except (AttributeError, OSError, ValueError):
            read1 = getattr(self._stream, "read1", self._stream.read)
            return read1(_CHUNK)

    def _pump(self) -> None:
        try:
            while True:
                data = self._read()
                if not data:
                    break
                self._chunks.put(data)
        except BaseException as exc:  # handed to the main thread, which reports it
            self._chunks.put(exc)
            return
        self._chunks.put(None)

    def _next_chunk(self) -> bytes | None:
        while True:
            try:
                item = self._chunks.get(timeout=self._idle_seconds)
            except queue.Empty:
                if self._on_idle is not None:
                    self._on_idle()
                continue
            if isinstance(item, BaseException):
                raise item
            return item

    def __iter__(self) -> Iterator[bytes]:
        """Each line as bytes, without its newline (orjson reads bytes; the reader decodes a
        line only when it has to). Split per chunk in C: a Python loop per line cost more."""
        if not self._started:
            self._started = True
            self._thread.start()
        parts: list[bytes] = []  # a line begun in earlier chunks
        while True:
            chunk = self._next_chunk()
            if chunk is None:
                break
            lines = chunk.split(b"\n")
            if len(lines) == 1:  # no newline: a long line goes on (joined once, not per chunk)
                parts.append(chunk)
                continue
            if parts:
                parts.append(lines[0])
                lines[0] = b"".join(parts)
                parts = []
            tail = lines.pop()  # after the chunk's last newline: the start of the next line
            if tail:
                parts.append(tail)
            yield from lines
        if parts:
            yield b"".join(parts)
