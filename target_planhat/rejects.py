"""What happens to an activity that fails validation: ``on_invalid_record``.

``dead_letter`` keeps the record with its reason in a JSON-lines file, so nothing bad is sent
and nothing is dropped silently; ``skip`` only counts it; ``fail`` stops the run naming record
and reason.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import threading
from pathlib import Path
from typing import Any

import orjson

from target_planhat import redact

POLICIES = ("dead_letter", "skip", "fail")
DEFAULT_DEAD_LETTER_PATH = "planhat-rejected.jsonl"
# A 50 MB record is kept as an excerpt: the dead-letter file must stay readable.
_MAX_KEPT_BYTES = 64 * 1024


class RejectedRecord(Exception):
    """Raised with ``on_invalid_record: fail``; the message names the record and the reason."""


_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
# A rejected record may be what orjson cannot encode (lone surrogates, 300 levels of nesting):
# the stdlib then writes it, with anything deeper than this replaced by a marker.
_MAX_KEPT_DEPTH = 100


def _encode(value: Any) -> bytes:
    return orjson.dumps(value, default=str, option=_OPTIONS)


def _clip(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with containers below ``_MAX_KEPT_DEPTH`` levels replaced by a marker."""
    if isinstance(value, dict):
        if depth >= _MAX_KEPT_DEPTH:
            return f"<object nested deeper than {_MAX_KEPT_DEPTH} levels>"
        return {str(k): _clip(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if depth >= _MAX_KEPT_DEPTH:
            return f"<array nested deeper than {_MAX_KEPT_DEPTH} levels>"
        return [_clip(v, depth + 1) for v in value]
    return value


def _json(value: Any) -> bytes:
    """Valid JSON for any record: orjson, else the stdlib with ``\\uXXXX`` escapes, else a note.

    The stdlib keeps a lone surrogate as its escape (the record as received) and writes NaN as
    ``NaN``, which is not JSON: non-finite numbers become ``null`` like orjson writes them.
    """
    try:
        return _encode(value)
    except (orjson.JSONEncodeError, TypeError) as exc:
        problem = str(exc)
    try:
        text = json.dumps(
            _finite(_clip(value)),
            ensure_ascii=True,
            default=str,
            separators=(",", ":"),
            allow_nan=False,
        )
    except (ValueError, TypeError, RecursionError) as exc:
        return _encode({"unencodable": f"{problem}; {exc}"})
    return text.encode("ascii")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _kept(value: Any) -> bytes:
    """JSON of the value itself, or of a truncated excerpt when it is huge."""
    encoded = _json(value)
    if len(encoded) <= _MAX_KEPT_BYTES:
        return encoded
    return _encode(
        {
            "truncated": True,
            "original_bytes": len(encoded),
            "excerpt": encoded[:_MAX_KEPT_BYTES].decode("utf-8", errors="ignore"),
        }
    )


def describe(record: Any, key_fields: tuple[str, ...] = ("$insert_id", "insert_id", "uuid")) -> str:
    """A short handle for a record in messages: its id when it has one."""
    if isinstance(record, dict):
        for key in key_fields:
            if record.get(key) not in (None, ""):
                return f"{key}={str(record[key])[:80]}"
        for key in ("event_id", "user_id", "event_type"):
            if record.get(key) not in (None, ""):
                return f"{key}={str(record[key])[:80]}"
    return "without id"


class DeadLetterFile:
    """Appends one JSON line per rejected record.

    Buffered, not flushed per line (a flush per line cost 5% of a run with 15% anonymous events):
    :meth:`sync` makes the lines durable before any STATE that covers their records is written,
    so a crash can only lose lines whose records the tap sends again.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._handle: Any = None
        # The sender thread writes rows Planhat refused (metrics) beside the main thread.
        self._lock = threading.Lock()

    def write(
        self,
        stream: str,
        reason: str,
        detail: str,
        record: Any,
        activity: dict[str, Any] | None,
        line_number: int | None,
    ) -> None:
        if self._handle is None:
            with self._lock:
                if self._handle is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    # A large buffer: a write per 8 KB default buffer (about 3 lines) cost 10% of
                    # a run with 15% anonymous events. sync() flushes before every STATE.
                    self._handle = open(self.path, "ab", buffering=1 << 20)  # noqa: SIM115
        head = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            "stream": stream,
            "reason": reason,
            "detail": redact.redact(detail),
            "input_line": line_number,
        }
        # Built from parts so a record orjson refuses still gets a valid JSON line.
        line = (
            _json(head)[:-1]
            + b',"record":'
            + _kept(record)
            + b',"activity":'
            + (_kept(activity) if activity is not None else b"null")
            + b"}"
        )
        self._handle.write(redact.redact_bytes(line) + b"\n")

    def sync(self) -> None:
        """Before a STATE that covers rejected records, make their lines durable."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
