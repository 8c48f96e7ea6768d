"""Run (c), the floor: decode every input line and encode the mapped activities with orjson.

In-process, no Singer SDK, no checks: a straightforward hand-written version of the default
mapping (``externalId``, ``companyExternalId``, ``action``, ``date``, ``info`` with ``user.`` and
``group.`` prefixes), records without ``user_id`` skipped as the target rejects them, bodies
joined into POST-sized arrays as the target sends them. Nothing is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

BATCH = 10_000


def activity(event: dict[str, Any]) -> dict[str, Any] | None:
    user_id = event.get("user_id")
    if not user_id:
        return None
    out: dict[str, Any] = {"externalId": str(user_id)}
    companies = (event.get("groups") or {}).get("company")
    if companies:
        out["companyExternalId"] = companies[0]
    out["action"] = event["event_type"]
    date = event["event_time"]
    out["date"] = date[:-6] + "Z" if date.endswith("+00:00") else date
    info = dict(event.get("event_properties") or {})
    for prefix, bag in (("user.", "user_properties"), ("group.", "group_properties")):
        for key, value in (event.get(bag) or {}).items():
            info[prefix + key] = value
    out["info"] = info
    return out


def run(path: Path) -> tuple[int, int, int]:
    """Return (records read, activities encoded, body bytes)."""
    records = encoded = size = 0
    bodies: list[bytes] = []
    loads, dumps = orjson.loads, orjson.dumps
    with open(path, "rb") as handle:
        for line in handle:
            message = loads(line)
            if message.get("type") != "RECORD":
                continue
            records += 1
            mapped = activity(message["record"])
            if mapped is None:
                continue
            bodies.append(dumps(mapped))
            if len(bodies) >= BATCH:
                size += len(b"[" + b",".join(bodies) + b"]")
                encoded += len(bodies)
                bodies = []
    if bodies:
        size += len(b"[" + b",".join(bodies) + b"]")
        encoded += len(bodies)
    return records, encoded, size
