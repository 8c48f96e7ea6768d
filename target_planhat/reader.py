"""Singer input: orjson-fast, with the line number in every error, and quiet-tap aware.

Plugged in through the SDK's ``message_reader_class`` hook. The SDK's readers turn a bad line into
a traceback that prints the whole line (a 50 MB line, or one with a secret in it); here a bad line
stops the run with ``input line N: <reason>``. stdin is read through ``stdin.IdleAwareLines``, so
the target can write STATE while the tap is quiet.
"""

from __future__ import annotations

import json
import re
import sys
import typing as t
from collections import Counter, defaultdict

import orjson
from singer_sdk.exceptions import (
    InvalidJSONSchema,
    InvalidRecord,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)
from singer_sdk.singerlib.encoding.base import GenericSingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine
from typing_extensions import override

from target_planhat.errors import RecordSchemaError
from target_planhat.stdin import IdleAwareLines

SINGER_INPUT_ERRORS = (
    RecordSchemaError,
    InvalidInputLine,
    InvalidRecord,
    InvalidJSONSchema,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)
"""What the SDK and this target raise for input the Singer spec does not allow."""


class InputError(InvalidInputLine):
    """A line that is no Singer message; the message starts with the line number."""


def _excerpt(line: str, limit: int = 120) -> str:
    text = line.strip()
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


class LineReader(GenericSingerReader[str]):
    """Reads Singer messages; knows the current line number for error messages.

    The target sets ``on_start`` (work due before the first line: Planhat's ids, the hold) and
    ``on_idle`` (called while no input comes for ``idle_seconds``: checkpoints, signals).
    """

    on_idle: t.Callable[[], None] | None = None
    idle_seconds: float = 1.0
    on_start: t.Callable[[], None] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.line_number = 0

    @property
    @override
    def default_input(self) -> t.Iterable[bytes]:  # type: ignore[override]  # bytes, not an IO
        # stdin through IdleAwareLines, so checkpoints happen while the tap is quiet. Lines stay
        # bytes: orjson reads them, and invalid UTF-8 is decoded (surrogateescape) only on the
        # stdlib fallback, where validation rejects it per record, naming the record.
        return IdleAwareLines(sys.stdin.buffer, self.on_idle, self.idle_seconds)

    @override
    def deserialize_json(self, line: str | bytes) -> dict:
        # orjson, the stdlib for what orjson refuses, and errors naming the line.
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if "depth limit" in str(exc):
                return self._deserialize_too_deep(line)
            # orjson refuses NaN/Infinity and lone surrogates; the stdlib takes them, and
            # validation then rejects the record that holds them, with a reason. (orjson reads
            # integers over 64 bits as floats, as Planhat's JavaScript would.) Invalid UTF-8
            # becomes lone surrogates, so it too is rejected per record, naming the record.
            if isinstance(line, bytes):
                line = line.decode("utf-8", "surrogateescape")
            try:
                message = json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise InputError(
                    f"input line {self.line_number}: not valid JSON ({exc}): {_excerpt(line)}"
                ) from None
        if not isinstance(message, dict):
            raise InputError(
                f"input line {self.line_number}: a Singer message must be a JSON object, "
                f"got {type(message).__name__}"
            )
        return message

    def _deserialize_too_deep(self, line: str | bytes) -> dict:
        """A message nested deeper than orjson reads, with the excess cut off.

        Whether the stdlib could read it instead depends on the interpreter (3.13 reads 5,000
        levels, 3.10-3.12 stop near 1,000), so the run's outcome would too: a crash on one, a
        rejection on another. Cut at :data:`_MAX_READ_DEPTH`, every such record is still deeper
        than validation allows and is rejected as ``too_deep``, naming the record, everywhere.
        """
        text = line.decode("utf-8", "surrogateescape") if isinstance(line, bytes) else line
        cut = _cut_below_depth(text, _MAX_READ_DEPTH)
        try:
            message = orjson.loads(cut)
        except orjson.JSONDecodeError:
            try:
                message = json.loads(cut)  # NaN, lone surrogates: see deserialize_json
            except (ValueError, RecursionError) as exc:
                raise InputError(
                    f"input line {self.line_number}: not valid JSON ({exc}): {_excerpt(text)}"
                ) from None
        if not isinstance(message, dict):
            raise InputError(
                f"input line {self.line_number}: a Singer message must be a JSON object, "
                f"got {type(message).__name__}"
            )
        return message

    @override
    def process_lines(
        self,
        file_input: t.Iterable[str | bytes] | None,
        callbacks: dict[str, t.Callable[[dict], None]],
    ) -> t.Counter[str]:
        # The reader's loop: line numbers, message shapes checked, no traceback with the line.
        # Work that must come before the first line of input runs here, when the target starts
        # listening, not when it is constructed.
        start, self.on_start = self.on_start, None
        if start is not None:
            start()
        stats: dict[str, int] = defaultdict(int)
        for line in file_input or self.default_input:
            self.line_number += 1
            if not line.strip():
                continue
            message = self.deserialize_json(line)
            kind = message.get("type")
            callback = callbacks.get(kind) if isinstance(kind, str) else None
            if callback is None or not isinstance(kind, str):
                raise InputError(
                    f"input line {self.line_number}: unknown Singer message type {kind!r}"
                )
            problem = _shape_problem(kind, message)
            if problem:
                raise InputError(f"input line {self.line_number}: {kind} message {problem}")
            callback(message)
            stats[kind] += 1
        return Counter(**stats)


_MAX_READ_DEPTH = 500
"""Containers deeper than this are cut when a line is too deep for orjson (1,024 levels).

Well under the stdlib's recursion limit (~1,000 frames, the caller's included) on every supported
Python, and far over ``validate.MAX_DEPTH``, so what is cut was going to be rejected as
``too_deep`` anyway.
"""

_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def _cut_below_depth(text: str, limit: int) -> str:
    """``text`` with each container opened below ``limit`` levels replaced by a marker string.

    A scan of brackets outside strings, without recursion; text that is not JSON stays not JSON.
    """
    parts: list[str] = []
    depth = 0
    kept_until = 0
    cut_from = -1
    for token in _JSON_TOKENS.finditer(text):
        char = text[token.start()]
        if char == '"':
            continue
        if char in "[{":
            depth += 1
            if depth == limit + 1:
                cut_from = token.start()
        else:
            if depth == limit + 1 and cut_from >= 0:
                parts.append(text[kept_until:cut_from])
                parts.append(f'"<nested deeper than {limit} levels: cut on input>"')
                kept_until = token.end()
                cut_from = -1
            depth -= 1
    parts.append(text[kept_until:])
    return "".join(parts)


# What each message must hold, beyond what the SDK checks: a wrong type there makes the SDK fail
# deep inside (``pop expected at most 1 argument``) instead of naming the line.
_SHAPES: dict[str, tuple[tuple[str, type, bool], ...]] = {
    "RECORD": (("stream", str, True), ("record", dict, True)),
    "SCHEMA": (("stream", str, True), ("schema", dict, True), ("key_properties", list, False)),
    "ACTIVATE_VERSION": (("stream", str, True),),
    "BATCH": (("stream", str, True),),
}


def _shape_problem(kind: str, message: dict) -> str | None:
    record, stream = message.get("record"), message.get("stream")
    if kind == "RECORD" and type(record) is dict and type(stream) is str:
        return None  # the usual message: accepted without the loop below
    for key, expected, required in _SHAPES.get(kind, ()):
        value = message.get(key)
        if value is None:
            if required:
                return f"has no {key!r}"
            continue
        if not isinstance(value, expected):
            what = "an object" if expected is dict else f"a {expected.__name__}"
            return f"{key!r} must be {what}, got {type(value).__name__}"
    return None


def describe_input_error(exc: BaseException, line_number: int) -> str:
    """``input line N: <first line of the reason>`` (SDK messages can hold the whole record)."""
    reason = _first_line(exc)
    return reason if reason.startswith("input line ") else f"input line {line_number}: {reason}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= 500 else first[:500] + "..."
