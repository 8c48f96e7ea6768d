"""Realistic Amplitude events in the Airbyte ``source-amplitude`` shape (stream ``events``).

Lower-case Export-API fields, property bags as objects, RFC 3339 timestamps, ``groups`` as
``{"company": ["acme-12"]}``, a mix of event types, ~15% anonymous events (no ``user_id``), a
STATE (``server_upload_time`` bookmark, Airbyte style) every 1,000 records. ~830 bytes a line.
Deterministic: the same ``n`` and ``seed`` give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from pathlib import Path
from typing import Any

import orjson

STREAM = "events"
STATE_EVERY = 1_000

_STR = {"type": ["null", "string"]}
_INT = {"type": ["null", "integer"]}
_NUM = {"type": ["null", "number"]}
_TIME = {"type": ["null", "string"], "format": "date-time"}
_OBJ = {"type": ["null", "object"]}

# Airbyte source-amplitude's `events` schema (manifest.yaml), field for field.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "uuid": _STR,
        "$insert_id": _STR,
        "event_id": _INT,
        "event_type": _STR,
        "user_id": _STR,
        "device_id": _STR,
        "amplitude_id": _INT,
        "event_time": _TIME,
        "client_event_time": _TIME,
        "client_upload_time": _TIME,
        "server_upload_time": _TIME,
        "server_received_time": _TIME,
        "processed_time": _TIME,
        "user_creation_time": _TIME,
        "session_id": _INT,
        "event_properties": _OBJ,
        "user_properties": _OBJ,
        "group_properties": _OBJ,
        "groups": _OBJ,
        "data": _OBJ,
        "country": _STR,
        "region": _STR,
        "city": _STR,
        "dma": _STR,
        "platform": _STR,
        "os_name": _STR,
        "os_version": _STR,
        "device_type": _STR,
        "device_family": _STR,
        "device_carrier": _STR,
        "language": _STR,
        "library": _STR,
        "ip_address": _STR,
        "location_lat": _NUM,
        "location_lng": _NUM,
        "version_name": _STR,
        "start_version": _STR,
        "paying": {"type": ["null", "boolean"]},
        "app": _INT,
        "sample_rate": _NUM,
        "amplitude_attribution_ids": _STR,
        "amplitude_event_type": _STR,
        "is_attribution_event": {"type": ["null", "boolean"]},
    },
}

EVENT_TYPES = [
    ("Viewed Dashboard", 30),
    ("Clicked Button", 20),
    ("Created Report", 8),
    ("Exported CSV", 5),
    ("Invited Teammate", 3),
    ("session_start", 12),
    ("session_end", 10),
    ("Searched", 9),
    ("[Amplitude] Page Viewed", 3),
]
PLANS = ["free", "starter", "pro", "enterprise"]
COUNTRIES = [("Sweden", "Stockholm"), ("Germany", "Berlin"), ("United States", "Austin")]
PLATFORMS = [("Web", "Chrome", "131.0"), ("iOS", "ios", "17.5"), ("Android", "android", "14")]
_NS = uuid.UUID("6f1c3f62-42cf-4a28-9a5c-1d8a4a0b7e51")
_START = dt.datetime(2024, 3, 1, 8, 0, tzinfo=dt.timezone.utc)


def _ts(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="microseconds")  # 2024-03-01T08:00:00.123000+00:00


def _event(i: int, rng: random.Random) -> dict[str, Any]:
    event_type = rng.choices([e for e, _ in EVENT_TYPES], [w for _, w in EVENT_TYPES])[0]
    user_no = rng.randrange(2_000)
    company = f"acme-{user_no % 150}"
    anonymous = rng.random() < 0.15
    country, city = COUNTRIES[user_no % len(COUNTRIES)]
    platform, os_name, os_version = PLATFORMS[user_no % len(PLATFORMS)]
    moment = _START + dt.timedelta(seconds=i * 0.7, microseconds=rng.randrange(1_000) * 1000)
    event_id = str(uuid.uuid5(_NS, str(i)))
    props: dict[str, Any] = {
        "page": rng.choice(["/home", "/reports", "/settings", "/billing"]),
        "duration_ms": rng.randrange(50, 9_000),
        "ok": rng.random() < 0.9,
    }
    if event_type == "Clicked Button":
        props["button"] = {"id": f"btn-{rng.randrange(40)}", "label": "Save", "ab": [1, 2]}
    if rng.random() < 0.25:
        props["referrer"] = None  # Amplitude keeps properties sent as null
    if event_type == "Searched":
        props["query"] = rng.choice(["churn", "nps score", "renewals q3"])
    return {
        "uuid": event_id,
        "$insert_id": f"ins-{event_id[:18]}",
        "event_id": i % 1_000,
        "event_type": event_type,
        "user_id": None if anonymous else f"user-{user_no}",
        "device_id": f"dev-{user_no:05d}-{rng.randrange(3)}",
        "amplitude_id": 100_000_000 + user_no,
        "event_time": _ts(moment),
        "server_upload_time": _ts(moment + dt.timedelta(seconds=2)),
        "session_id": 1_709_280_000_000 + (i // 25) * 1000,
        "event_properties": props,
        "user_properties": {
            "plan": PLANS[user_no % 4],
            "role": "admin" if user_no % 7 == 0 else "member",
            "signup_cohort": f"2023-{user_no % 12 + 1:02d}",
        },
        "group_properties": {"company": {company: {"seats": 5 + user_no % 60}}},
        "groups": {} if anonymous else {"company": [company]},
        "country": country,
        "city": city,
        "platform": platform,
        "os_name": os_name,
        "os_version": os_version,
        "device_type": "Mac" if platform == "Web" else "Phone",
        "language": "English",
        "ip_address": f"10.{user_no % 250}.{i % 250}.7",
        "location_lat": 59.33 if country == "Sweden" else 52.52,
        "paying": user_no % 4 >= 2,
        "app": 123456,
    }


def write(path: Path, n: int, seed: int = 7) -> Path:
    """Write SCHEMA, ``n`` RECORDs and a STATE every 1,000 of them (and at the end)."""
    rng = random.Random(seed)
    with open(path, "wb") as out:
        out.write(
            orjson.dumps(
                {
                    "type": "SCHEMA",
                    "stream": STREAM,
                    "schema": SCHEMA,
                    "key_properties": ["uuid"],
                    "bookmark_properties": ["server_upload_time"],
                }
            )
            + b"\n"
        )
        bookmark = None
        lines = []
        for i in range(n):
            record = _event(i, rng)
            bookmark = record["server_upload_time"]
            lines.append(orjson.dumps({"type": "RECORD", "stream": STREAM, "record": record}))
            if (i + 1) % STATE_EVERY == 0 or i + 1 == n:
                lines.append(orjson.dumps(_state(bookmark)))
                out.write(b"\n".join(lines) + b"\n")
                lines = []
    return path


def _state(bookmark: str) -> dict[str, Any]:
    return {"type": "STATE", "value": {"bookmarks": {STREAM: {"server_upload_time": bookmark}}}}
