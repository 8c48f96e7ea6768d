"""Generate the bundled sample: Amplitude events as PyPI `tap-amplitude-api` 0.1.8 writes them.

Run from anywhere: ``python data/sample/generate.py``. The outputs beside this script are
committed: ``amplitude-export.jsonl`` (the raw Export-API events, which the demo serves to the real
tap) and ``amplitude-events.singer.jsonl`` (what the tap writes from them); the script is
deterministic (fixed seed, uuid5 ids, fixed dates), so running it again gives the same bytes.

What the real tap does, and what this script reproduces (read from tap_amplitude/__init__.py and
singer-python's ``singer.transform.Transformer``):

* one stream, ``event``; SCHEMA first, the package's own ``schemas/event.json`` (a verbatim copy is
  ``tap-amplitude-api-0.1.8.event.schema.json`` here), ``key_properties: ["uuid"]``, no
  ``bookmark_properties``;
* each Export-API event is passed through the Transformer against that schema:
  - keys the schema does not declare (``data_type``, ``global_user_properties``, ``plan``, ...)
    are dropped;
  - the property bags (``event_properties``, ``user_properties``, ``group_properties``,
    ``groups``, ``data``) are typed string, so they become ``str(dict)``: a Python repr such as
    ``"{'plan': 'pro', 'n': 1, 'ok': True}"``, not JSON;
  - ``number`` fields (``amplitude_id``, ``session_id``, ``location_*``) become floats;
  - ``date-time`` fields are re-formatted ``%Y-%m-%dT%H:%M:%S.%fZ``;
  - ``paying`` is boolean, and the Transformer turns a null ``paying`` into ``false``;
* STATE is flat, ``{"event": "<max server_upload_time so far>"}``. The real tap writes it once
  per one-day export window; this sample writes it every 10 records (and at the end), so a
  consumer sees several checkpoints in a small file.

Events without ``user_id`` (anonymous visitors, only ``device_id``) are included on purpose.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_FILE = HERE / "tap-amplitude-api-0.1.8.event.schema.json"
OUTPUT_FILE = HERE / "amplitude-events.singer.jsonl"
EXPORT_FILE = HERE / "amplitude-export.jsonl"
STREAM = "event"
STATE_EVERY = 10
SEED = 20240304
NAMESPACE = uuid.UUID("6f1c1d2e-5a8b-4c3d-9e0f-a1b2c3d4e5f6")
RAW_TS = "%Y-%m-%d %H:%M:%S.%f"  # the Export API's own timestamp form (UTC, no zone)
SINGER_TS = "%Y-%m-%dT%H:%M:%S.%fZ"  # singer-python's strftime form
APP_ID = 187520

COMPANIES: dict[str, dict[str, Any]] = {
    "acme-1": {"name": "Acme Corp", "plan": "enterprise", "seats": 25, "region": "us"},
    "globex-7": {"name": "Globex", "plan": "pro", "seats": 8, "region": "eu"},
    "initech-3": {"name": "Initech", "plan": "starter", "seats": 3, "region": "us"},
}

USERS: list[dict[str, Any]] = [
    {
        "user_id": "u-1001",
        "email": "alice@acme.example",
        "name": "Alice Archer",
        "role": "admin",
        "companies": ["acme-1"],
        "country": "United States",
        "region": "California",
        "city": "San Francisco",
        "lat": 37.7749,
        "lng": -122.4194,
        "os": ("Chrome", "122"),
        "device": ("Mac", "Mac OS X", "Mac OS"),
        "language": "English",
        "ip": "198.51.100.23",
    },
    {
        "user_id": "u-1002",
        "email": "bob@acme.example",
        "name": "Bob O'Brien",
        "role": "editor",
        "companies": ["acme-1"],
        "country": "Ireland",
        "region": "Leinster",
        "city": "Dublin",
        "lat": 53.3498,
        "lng": -6.2603,
        "os": ("Firefox", "123"),
        "device": ("Windows", "Windows", "Windows"),
        "language": "English",
        "ip": "203.0.113.7",
    },
    {
        "user_id": "u-2001",
        "email": "carla@globex.example",
        "name": "Carla Müller",
        "role": "admin",
        "companies": ["globex-7"],
        "country": "Switzerland",
        "region": "Zurich",
        "city": "Zürich",
        "lat": 47.3769,
        "lng": 8.5417,
        "os": ("Chrome", "121"),
        "device": ("Windows", "Windows", "Windows"),
        "language": "German",
        "ip": "192.0.2.44",
    },
    {
        "user_id": "u-2002",
        "email": "dev.patel@globex.example",
        "name": "Dev Patel",
        "role": "viewer",
        "companies": ["globex-7"],
        "country": "United Kingdom",
        "region": "England",
        "city": "London",
        "lat": 51.5072,
        "lng": -0.1276,
        "os": ("Safari", "17.3"),
        "device": ("Mac", "Mac OS X", "Mac OS"),
        "language": "English",
        "ip": "198.51.100.190",
    },
    {
        "user_id": "u-3001",
        "email": "erin@initech.example",
        "name": "Erin Lee",
        "role": "admin",
        "companies": ["initech-3"],
        "country": "United States",
        "region": "Texas",
        "city": "Austin",
        "lat": 30.2672,
        "lng": -97.7431,
        "os": ("Chrome", "122"),
        "device": ("Mac", "Mac OS X", "Mac OS"),
        "language": "English",
        "ip": "203.0.113.88",
    },
    {
        # A consultant who works in two customer accounts: two company groups.
        "user_id": "frank.nguyen@partner.example",
        "email": "frank.nguyen@partner.example",
        "name": "Frank Nguyen",
        "role": "consultant",
        "companies": ["initech-3", "acme-1"],
        "country": "Canada",
        "region": "Ontario",
        "city": "Toronto",
        "lat": 43.6532,
        "lng": -79.3832,
        "os": ("Edge", "122"),
        "device": ("Windows", "Windows", "Windows"),
        "language": "English",
        "ip": "192.0.2.201",
    },
]

PAGES = [
    ("/dashboard", "Dashboard"),
    ("/reports", "Reports"),
    ("/reports/rpt-42", "Quarterly churn report"),
    ("/settings/billing", "Billing"),
    ("/settings/team", "Team"),
]
MARKETING_PAGES = [("/", "Home"), ("/pricing", "Pricing"), ("/blog/customer-health", "Blog")]


def _event_properties(rng: random.Random, event_type: str, user: dict[str, Any] | None) -> dict:
    if event_type == "session_start":
        return {}
    if event_type == "Login":
        return {
            "method": rng.choice(["sso", "password", "google"]),
            "success": True,
            "mfa": rng.random() < 0.5,
        }
    if event_type == "Page Viewed":
        path, title = rng.choice(PAGES if user else MARKETING_PAGES)
        return {
            "path": path,
            "title": title,
            "referrer": rng.choice([None, "https://www.google.com/", "/dashboard"]),
            "load_ms": rng.randint(80, 900),
        }
    if event_type == "[Amplitude] Page Viewed":
        path, title = rng.choice(PAGES if user else MARKETING_PAGES)
        domain = "app.example.com" if user else "www.example.com"
        return {
            "[Amplitude] Page Domain": domain,
            "[Amplitude] Page Location": f"https://{domain}{path}",
            "[Amplitude] Page Path": path,
            "[Amplitude] Page Title": title,
            "[Amplitude] Page URL": f"https://{domain}{path}",
        }
    if event_type == "Report Exported":
        return {
            "report_id": rng.choice(["rpt-42", "rpt-77", "rpt-108"]),
            "format": rng.choice(["csv", "xlsx", "pdf"]),
            "rows": rng.randint(10, 50_000),
            "duration_ms": round(rng.uniform(120, 9000), 1),
            "scheduled": rng.random() < 0.3,
            "filters": {
                "segment": rng.choice(["at-risk", "expansion", "all"]),
                "columns": ["name", "mrr", "health"],
            },
        }
    if event_type == "Seat Added":
        before = rng.randint(2, 30)
        return {
            "seats_before": before,
            "seats_after": before + 1,
            "role": rng.choice(["editor", "viewer"]),
            "invited_by": user["user_id"],
        }
    raise ValueError(event_type)


def _raw_event(
    rng: random.Random, number: int, when: datetime, event_type: str, user: dict[str, Any] | None
) -> dict[str, Any]:
    """One event as the Amplitude Export API returns it (before the tap's transform)."""
    anonymous = user is None
    device_id = (
        str(uuid.uuid5(NAMESPACE, f"device-{user['user_id']}"))
        if user
        else str(uuid.uuid5(NAMESPACE, f"anon-device-{number % 3}"))
    )
    amplitude_id = 500_000_000 + (USERS.index(user) * 1_000 if user else 900_000 + number % 3)
    hour = when.replace(minute=0, second=0, microsecond=0, tzinfo=timezone.utc)
    session_id = int(hour.timestamp() * 1000)
    client_upload = when + timedelta(milliseconds=rng.randint(50, 2500))
    server_received = client_upload + timedelta(milliseconds=rng.randint(20, 400))
    server_upload = server_received + timedelta(milliseconds=rng.randint(1, 50))
    processed = server_upload + timedelta(seconds=rng.randint(1, 20))
    server_side = event_type == "Seat Added"
    if user:
        companies = user["companies"]
        groups: dict[str, Any] = {"company": list(companies)}
        group_properties: dict[str, Any] = {"company": {c: COMPANIES[c] for c in companies}}
        user_properties: dict[str, Any] = {
            "email": user["email"],
            "name": user["name"],
            "role": user["role"],
            "plan": COMPANIES[companies[0]]["plan"],
            "initial_utm_source": rng.choice(["google", "linkedin", "(none)"]),
        }
        os_name, os_version = user["os"]
        device_type, device_family, device_model = user["device"]
        geo = user
    else:
        groups = {}
        group_properties = {}
        user_properties = {
            "initial_utm_source": rng.choice(["google", "newsletter"]),
            "initial_referrer": "https://www.google.com/",
        }
        os_name, os_version = "Chrome", "122"
        device_type, device_family, device_model = "Windows", "Windows", "Windows"
        geo = {
            "country": "Germany",
            "region": "Berlin",
            "city": "Berlin",
            "lat": 52.52,
            "lng": 13.405,
            "language": "German",
            "ip": "203.0.113.250",
        }
    event_uuid = str(uuid.uuid5(NAMESPACE, f"event-{number}"))
    return {
        "$insert_id": str(uuid.uuid5(NAMESPACE, f"insert-{number}")),
        "$insert_key": None,
        "$schema": 12,
        "adid": None,
        "amplitude_attribution_ids": None,
        "amplitude_event_type": None,
        "amplitude_id": amplitude_id,
        "app": APP_ID,
        "city": geo["city"],
        "client_event_time": when.strftime(RAW_TS),
        "client_upload_time": client_upload.strftime(RAW_TS),
        "country": geo["country"],
        "data": {"path": "/2/httpapi"} if server_side else {},
        "data_type": "event",
        "device_brand": None,
        "device_carrier": None,
        "device_family": None if server_side else device_family,
        "device_id": device_id,
        "device_manufacturer": None,
        "device_model": None if server_side else device_model,
        "device_type": None if server_side else device_type,
        "dma": None,
        "event_id": number,
        "event_properties": _event_properties(rng, event_type, user),
        "event_time": when.strftime(RAW_TS),
        "event_type": event_type,
        "global_user_properties": {},
        "group_properties": group_properties,
        "groups": groups,
        "idfa": None,
        "ip_address": geo["ip"],
        "is_attribution_event": False,
        "language": geo["language"],
        "library": "http/2.0" if server_side else "amplitude-ts/2.5.1",
        "location_lat": geo["lat"],
        "location_lng": geo["lng"],
        "os_name": None if server_side else os_name,
        "os_version": None if server_side else os_version,
        "partner_id": None,
        "paying": None,
        "plan": {},
        "platform": None if server_side else "Web",
        "processed_time": processed.strftime(RAW_TS),
        "region": geo["region"],
        "sample_rate": None,
        "server_received_time": server_received.strftime(RAW_TS),
        "server_upload_time": server_upload.strftime(RAW_TS),
        "session_id": -1 if server_side else session_id,
        "source_id": None,
        "start_version": None,
        "user_creation_time": None if anonymous else "2023-11-02 14:21:07.000000",
        "user_id": None if anonymous else user["user_id"],
        "user_properties": user_properties,
        "uuid": event_uuid,
        "version_name": None,
    }


def _transform_value(value: Any, prop_schema: dict[str, Any]) -> Any:
    """singer-python's Transformer for the types this schema uses (nulls go last)."""
    types = prop_schema["type"]
    types = [t for t in types if t != "null"] + (["null"] if "null" in types else [])
    for typ in types:
        if typ == "null":
            if value is None:
                return None
            continue
        if typ == "string":
            if value is None:
                continue
            if prop_schema.get("format") == "date-time":
                return datetime.strptime(value, RAW_TS).strftime(SINGER_TS)
            return str(value)  # a dict becomes its Python repr
        if typ == "integer":
            if value is None or isinstance(value, bool):
                continue
            return int(value)
        if typ == "number":
            if value is None or isinstance(value, bool):
                continue
            return float(value)
        if typ == "boolean":
            return bool(value)  # singer-python: bool(None) is False
    raise ValueError(f"cannot transform {value!r} for {prop_schema}")


def transform(raw: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    props = schema["properties"]
    return {key: _transform_value(value, props[key]) for key, value in raw.items() if key in props}


def build_events() -> list[dict[str, Any]]:
    """56 raw events over three working days: 50 by known users, 6 anonymous."""
    rng = random.Random(SEED)
    plan: list[tuple[datetime, str, dict[str, Any] | None]] = []
    start = datetime(2024, 3, 4, 8, 0, 0)
    for day in range(3):
        for position, user in enumerate(USERS):
            if (day + position) % 3 == 2:
                continue  # not everyone works every day
            t = start + timedelta(
                days=day,
                hours=position,
                minutes=rng.randint(0, 50),
                seconds=rng.randint(0, 59),
                microseconds=rng.randint(0, 999) * 1000,
            )
            page = rng.choice(["Page Viewed", "[Amplitude] Page Viewed"])
            flow = ["session_start", "Login", page]
            flow.append(rng.choice(["Report Exported", "Page Viewed", "Report Exported"]))
            if user["role"] == "admin" and day == 1:
                flow.append("Seat Added")
            for event_type in flow:
                plan.append((t, event_type, user))
                t += timedelta(seconds=rng.randint(3, 240), microseconds=rng.randint(0, 999) * 1000)
    for visit in range(2):  # anonymous visitors on the marketing site
        t = start + timedelta(days=visit, hours=5, minutes=17, microseconds=250_000)
        for event_type in ("session_start", "Page Viewed", "[Amplitude] Page Viewed"):
            plan.append((t, event_type, None))
            t += timedelta(seconds=rng.randint(5, 60), microseconds=rng.randint(0, 999) * 1000)
    plan.sort(key=lambda item: item[0])
    return [
        _raw_event(rng, number, when, event_type, user)
        for number, (when, event_type, user) in enumerate(plan, start=1)
    ]


def main() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    lines = [{"type": "SCHEMA", "stream": STREAM, "schema": schema, "key_properties": ["uuid"]}]
    bookmark: str | None = None
    raw_events = build_events()
    # What the Export API serves (one JSON object per line, as in its hourly files): the demo's
    # replayer serves these to the real tap-amplitude-api from a local Export-API stand-in.
    EXPORT_FILE.write_text(
        "".join(json.dumps(raw, ensure_ascii=False) + "\n" for raw in raw_events),
        encoding="utf-8",
    )
    records = [transform(raw, schema) for raw in raw_events]
    for count, record in enumerate(records, start=1):
        lines.append({"type": "RECORD", "stream": STREAM, "record": record})
        candidate = record["server_upload_time"]
        if bookmark is None or datetime.strptime(candidate, SINGER_TS) > datetime.strptime(
            bookmark, SINGER_TS
        ):
            bookmark = candidate
        if count % STATE_EVERY == 0 or count == len(records):
            lines.append({"type": "STATE", "value": {STREAM: bookmark}})
    # singer-python writes messages with json.dumps defaults (ASCII escapes, ", " separators).
    OUTPUT_FILE.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    anonymous = sum(1 for r in records if r["user_id"] is None)
    print(f"wrote {OUTPUT_FILE.name}: {len(records)} events ({anonymous} anonymous)")


if __name__ == "__main__":
    main()
