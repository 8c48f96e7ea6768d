"""Per-record cost of ``shapes.to_canonical`` on each Amplitude tap's record shape.

The same generated events are rewritten the way each public tap writes them (see
``../shared/amplitude-taps.md``); the fixtures under ``tests/data/taps/`` are measured too when
they exist. Records are measured as the tap writes them (decoded JSON), before any SDK parsing.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from target_planhat.settings import compile_settings
from target_planhat.shapes import BAG_FIELDS, TIME_FIELDS, to_canonical

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "data" / "taps"
_FLOATS = ("amplitude_id", "session_id", "location_lat", "location_lng")


def _time(text: str, form: str) -> str:
    moment = dt.datetime.fromisoformat(text).astimezone(dt.timezone.utc)
    if form == "z":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def airbyte(event: dict[str, Any]) -> dict[str, Any]:
    return event


def tap_amplitude_api(event: dict[str, Any]) -> dict[str, Any]:
    """PyPI tap-amplitude-api: bags as Python repr text, numbers as floats, ``...Z`` times."""
    out = {}
    for key, value in event.items():
        if key in BAG_FIELDS and value is not None:
            value = str(value)
        elif key in TIME_FIELDS and value:
            value = _time(value, "z")
        elif key in _FLOATS and isinstance(value, int):
            value = float(value)
        out[key] = value
    return out


def snowflake(event: dict[str, Any]) -> dict[str, Any]:
    """PyPI tap-amplitude 1.3.0: UPPER-CASE columns, JSON-text bags, NUMBERs as floats."""
    out = {}
    for key, value in event.items():
        if key in BAG_FIELDS and value is not None:
            value = json.dumps(value)
        elif key in TIME_FIELDS and value:
            value = _time(value, "z")
        elif isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[key.upper()] = value
    return out


def raw_export(event: dict[str, Any]) -> dict[str, Any]:
    """Export-API lines: objects, ``2024-03-01 08:00:00.049000`` times."""
    return {
        key: _time(value, "space") if key in TIME_FIELDS and value else value
        for key, value in event.items()
    }


SHAPES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "airbyte source-amplitude": airbyte,
    "tap-amplitude-api (repr bags)": tap_amplitude_api,
    "tap-amplitude 1.3.0 (UPPER, JSON bags)": snowflake,
    "raw export": raw_export,
}


def _records(path: Path, limit: int) -> list[dict[str, Any]]:
    out = []
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            message = orjson.loads(line)
            if message.get("type") == "RECORD":
                out.append(message["record"])
                if len(out) >= limit:
                    break
    return out


def _cost(
    records: list[dict[str, Any]],
    normalise: Callable[[dict[str, Any]], Any] = to_canonical,
    min_seconds: float = 0.3,
) -> float:
    """Microseconds per record (best of 3 passes; each pass at least ``min_seconds``)."""
    best = float("inf")
    for _ in range(3):
        done = 0
        start = time.perf_counter()
        while True:
            for record in records:
                normalise(record)
            done += len(records)
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / done)
    return best * 1e6


def measure(events_file: Path, sample: int = 5_000) -> list[tuple[str, float, float]]:
    """``[(shape, us per record: to_canonical, us: what the default config normalises)]``.

    The target runs ``settings.canonicalize``: to_canonical restricted to the fields its default
    mapping and dedupe key read.
    """
    canonicalize = compile_settings({"dry_run": True}).canonicalize
    events = _records(events_file, sample)
    sets = [(name, [shape(e) for e in events]) for name, shape in SHAPES.items()]
    if FIXTURES.is_dir():
        for path in sorted(FIXTURES.glob("*.jsonl")):
            records = _records(path, sample)
            if records:
                sets.append((f"fixture {path.name} ({len(records)} records)", records))
    return [(name, _cost(records), _cost(records, canonicalize)) for name, records in sets]
