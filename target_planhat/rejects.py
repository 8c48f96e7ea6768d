"""What happens to an activity that fails validation: ``on_invalid_record``.

``dead_letter`` keeps the record with its reason in a JSON-lines file, so nothing bad is sent
and nothing is dropped silently; ``skip`` only counts it; ``fail`` stops the run naming record
and reason.
"""

from __future__ import annotations

import datetime as dt
import os
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


def _encode(value: Any) -> bytes:
    return orjson.dumps(
        value,
        default=str,
        option=orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z,
    )


def _keepable(value: Any) -> Any:
    """The value itself, or a truncated JSON excerpt when it is huge or cannot be encoded."""
    try:
        encoded = _encode(value)
    except (orjson.JSONEncodeError, TypeError) as exc:
        return {"unencodable": str(exc), "repr_excerpt": repr(value)[:_MAX_KEPT_BYTES]}
    if len(encoded) <= _MAX_KEPT_BYTES:
        return value
    return {
        "truncated": True,
        "original_bytes": len(encoded),
        "excerpt": encoded[:_MAX_KEPT_BYTES].decode("utf-8", errors="replace"),
    }


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
    """Appends one JSON line per rejected record; flushed per line so a crash keeps them."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._handle: Any = None

    def check_writable(self) -> None:
        """Fail at start-up, not at the first bad record hours into a run."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab"):
            pass

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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "ab")  # noqa: SIM115 - kept open for the run
        entry = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            "stream": stream,
            "reason": reason,
            "detail": redact.redact(detail),
            "input_line": line_number,
            "record": _keepable(record),
            "activity": _keepable(activity) if activity is not None else None,
        }
        line = _encode(entry)
        self._handle.write(redact.redact(line.decode("utf-8", errors="replace")).encode() + b"\n")
        self._handle.flush()

    def sync(self) -> None:
        """Before a STATE that covers rejected records, make their lines durable."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
