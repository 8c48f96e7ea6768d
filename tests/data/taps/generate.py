"""Write the same 8 Amplitude events as each public Amplitude tap emits them (Singer messages).

Where each shape comes from (read from the tap's own source, not guessed):

* ``airbyte_source_amplitude.singer.jsonl`` - Airbyte ``source-amplitude`` run through
  MeltanoLabs ``tap-airbyte-wrapper``. Schema: airbytehq/airbyte
  ``airbyte-integrations/connectors/source-amplitude/manifest.yaml`` (``events_stream``
  InlineSchemaLoader; descriptions dropped). Times: the manifest's ``TransformDatetimesToRFC3339``
  (``components.py``) = ``ab_datetime_parse(v).to_datetime().isoformat()`` -> ``...+00:00``.
  Messages: tap-airbyte-wrapper ``tap_airbyte/tap.py`` (orjson, compact; STATE value = the
  Airbyte STREAM state plus the ``airbyte_state`` list); records via the Singer SDK
  (``time_extracted``), key ``uuid``, replication key ``server_upload_time``.
* ``tap_amplitude_api.singer.jsonl`` - PyPI ``tap-amplitude-api`` 0.1.8 (``tap_amplitude/
  __init__.py``, ``tap_amplitude/schemas/event.json``) on singer-python 6.1.1
  (``singer/transform.py``, ``singer/messages.py``, ``singer/schema.py``): stream ``event``,
  bags typed string -> ``str(dict)`` (Python repr), ``number`` -> ``float``, date-time ->
  ``%Y-%m-%dT%H:%M:%S.%fZ``, undeclared fields dropped, flat STATE ``{"event": <max
  server_upload_time>}``, ``json.dumps`` default separators, ASCII escapes.
* ``tap_amplitude_snowflake.singer.jsonl`` - PyPI ``tap-amplitude`` 1.3.0 (singer-io;
  ``tap_amplitude/__init__.py``, ``sync_strategies/incremental.py``): stream id
  ``<SCHEMA>-<TABLE>``, UPPER-CASE Snowflake columns (names/types: Amplitude's Snowflake export
  table as documented by stitchdata/docs ``_integration-schemas/amplitude/v1/events.md`` and
  Amplitude's SQL schema page), ``schema_for_column`` types (NUMBER -> number -> float, VARIANT ->
  string holding Snowflake's indented JSON text, TIMESTAMP_NTZ -> ``isoformat()`` -> singer
  date-time), ``inclusion`` in the schema, STATE ``{}`` first, two SCHEMA messages (tap stream id
  and table name, the second with ``bookmark_properties``), bookmarks STATE written twice.
* ``graet_tap_amplitude.singer.jsonl`` - graet/tap-amplitude (Singer SDK; ``tap_amplitude/
  streams.py``): stream ``events``, key ``uuid``, replication key ``event_time``, its own schema
  (no ``$insert_id`` / ``processed_time``: the SDK drops undeclared fields), five times
  rewritten ``"a b" -> "aTb+00:00"`` and ``user_creation_time`` left raw; SDK SCHEMA/RECORD/STATE.
* ``hotglue_tap_amplitude.singer.jsonl`` - hotglue's tap-amplitude is not in the public index
  this project could read, so this is the generic Singer SDK shape named in amplitude-taps.md:
  stream ``events``, key ``event_id``, raw Export-API times under ``format: date-time``.
* ``raw_export.singer.jsonl`` - Export API JSON lines passed through untouched (every field,
  ``2020-02-15 01:00:00.123456`` times, no ``format`` so they reach the target as text).

Run ``python tests/data/taps/generate.py`` to rewrite the files; output is deterministic.
``EVENTS`` below are the raw Export-API lines; the real-tap test serves the same lines.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
UTC = dt.timezone.utc
TIME_FIELDS = (
    "client_event_time",
    "client_upload_time",
    "event_time",
    "processed_time",
    "server_received_time",
    "server_upload_time",
    "user_creation_time",
)
BAG_FIELDS = (
    "data",
    "event_properties",
    "global_user_properties",
    "group_properties",
    "groups",
    "user_properties",
)
TIME_EXTRACTED = "2024-01-02T00:05:00+00:00"
SNOWFLAKE_STREAM = "AMPLITUDE-EVENTS_123456"
SNOWFLAKE_TABLE = "EVENTS_123456"


def _raw_time(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")  # Export API: UTC, space, 6 digits


def _event(
    n: int,
    event_type: str,
    user_id: str | None,
    at: dt.datetime,
    event_properties: dict[str, Any],
    user_properties: dict[str, Any],
    groups: dict[str, list[str]],
    group_properties: dict[str, Any],
    *,
    user_created: dt.datetime | None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One Export-API line (keys sorted, as Amplitude writes them)."""
    upload = at + dt.timedelta(seconds=2, microseconds=345_000)
    line: dict[str, Any] = {
        "$insert_id": f"ins-{n:04d}-5c1e",
        "$insert_key": None,
        "$schema": 12,
        "adid": None,
        "amplitude_attribution_ids": None,
        "amplitude_event_type": None,
        "amplitude_id": 987654300 + n,
        "app": 123456,
        "city": "Zürich" if n % 2 else "Berlin",
        "client_event_time": _raw_time(at),
        "client_upload_time": _raw_time(upload - dt.timedelta(seconds=1)),
        "country": "Switzerland" if n % 2 else "Germany",
        "data": data if data is not None else {},
        "data_type": "event",
        "device_brand": None,
        "device_carrier": None,
        "device_family": "Mac",
        "device_id": f"dev-{n:04d}-a1b2",
        "device_manufacturer": None,
        "device_model": None,
        "device_type": "Apple Mac",
        "dma": None,
        "event_id": 100 + n,
        "event_properties": event_properties,
        "event_time": _raw_time(at),
        "event_type": event_type,
        "global_user_properties": {},
        "group_properties": group_properties,
        "groups": groups,
        "idfa": None,
        "ip_address": f"10.0.0.{n}",
        "is_attribution_event": False,
        "language": "English",
        "library": "amplitude-ts/2.7.1",
        "location_lat": 47.3769 if n % 2 else 52.52,
        "location_lng": 8.5417 if n % 2 else 13.405,
        "os_name": "Chrome",
        "os_version": "120",
        "partner_id": None,
        "paying": None,
        "plan": {},
        "platform": "Web",
        "processed_time": _raw_time(upload + dt.timedelta(seconds=30)),
        "region": "Zurich" if n % 2 else "Berlin",
        "sample_rate": None,
        "server_received_time": _raw_time(upload),
        "server_upload_time": _raw_time(upload),
        "session_id": 1704099600000 + n * 1000,
        "source_id": None,
        "start_version": "1.0.0",
        "user_creation_time": _raw_time(user_created) if user_created else None,
        "user_id": user_id,
        "user_properties": user_properties,
        "uuid": f"5b0e7a0e-0000-4000-8000-{n:012d}",
        "version_name": "2.3.0",
    }
    return line


def _t(hour: int, minute: int, second: int = 0, micro: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, 1, hour, minute, second, micro)


ALICE = {"plan": "pro", "role": "admin", "beta": False, "seats": 25}
BOB = {"plan": "pro", "role": "member", "beta": True, "seats": None}
CAROL = {"plan": "basic", "role": "owner", "referrer": {"source": "ads", "campaign": "q1"}}
DAVE = {"plan": "basic", "role": "owner", "locale": "de-CH"}
ACME = {"company": {"tier": "gold", "arr": 120000, "active": True}}

EVENTS: list[dict[str, Any]] = [
    _event(
        1,
        "Viewed Dashboard",
        "alice@acme.example",
        _t(10, 0, 0, 123456),
        {"dashboard": "Revenue", "widgets": 4, "shared": True, "filter": None},
        ALICE,
        {"company": ["acme-1"]},
        ACME,
        user_created=_t(9, 0),
        data={"first_event": True},
    ),
    _event(
        2,
        "Exported Report",
        "alice@acme.example",
        _t(10, 5, 7, 0),  # no sub-second part
        {
            "format": "csv",
            "rows": 1200,
            "filters": {"region": ["EU", "US"], "since": "2023-12-01", "archived": False},
        },
        ALICE,
        {"company": ["acme-1"]},
        ACME,
        user_created=_t(9, 0),
    ),
    _event(
        3,
        "Login",
        "bob@acme.example",
        _t(10, 30, 1, 999999),
        {"method": "sso", "mfa": True, "score": 0.75},
        BOB,
        {"company": ["acme-1"]},
        ACME,
        user_created=_t(8, 15, 0, 500000),
    ),
    _event(
        4,
        "Created Project",
        "bob@acme.example",
        _t(11, 0, 0, 1000),
        {"project_id": 42, "template": None, "tags": ["q1", "launch"], "public": False},
        BOB,
        {"company": ["acme-1", "acme-2"]},  # several companies: the first one is used
        ACME,
        user_created=_t(8, 15, 0, 500000),
    ),
    _event(
        5,
        "Login",
        "carol@globex.example",
        _t(11, 45, 30, 250000),
        {"method": "password", "mfa": False, "score": 0.5},
        CAROL,
        {"company": ["globex"]},
        {"company": {"tier": "silver", "arr": 48000.5, "active": True}},
        user_created=None,
    ),
    _event(
        6,
        "Invited User",
        "carol@globex.example",
        _t(12, 0, 0, 10),
        {"invitee_role": "viewer", "seats": 3, "note": "Grüße aus Zürich ✓"},
        CAROL,
        {},  # no group on this event
        {},
        user_created=None,
    ),
    _event(
        7,
        "Viewed Pricing Page",
        None,  # anonymous: only device_id
        _t(12, 30, 0, 400000),
        {"referrer": "https://www.example.com/blog", "variant": "B"},
        {},
        {},
        {},
        user_created=None,
    ),
    _event(
        8,
        "Upgraded Plan",
        "dave@initech.example",
        _t(13, 30, 0, 0),
        {"from": "basic", "to": "pro", "amount": 499.0, "currency": "EUR", "annual": True},
        DAVE,
        {"company": ["initech"]},
        {"company": {"tier": "bronze", "arr": 0, "active": False}},
        user_created=_t(13, 0, 0, 123),
    ),
]


def _parse_raw(text: str | None) -> dt.datetime | None:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f") if text else None


# --- singer-python (tap-amplitude-api, tap-amplitude Snowflake) --------------------------------


def _singer_python_dumps(message: dict[str, Any]) -> str:
    # singer.messages.format_message: simplejson.dumps(..., use_decimal=True, ensure_ascii=True),
    # default separators: same text as the stdlib here (no Decimals in these messages).
    return json.dumps(message)


def _singer_strftime(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # singer.utils.strftime on a UTC datetime


def _singer_transform(value: Any, schema: dict[str, Any]) -> Any:
    """singer.Transformer.transform_recur for the flat schemas these taps use.

    singer-python tries the types in order with ``null`` moved last, so ``None`` under
    ``["null", "boolean"]`` becomes ``bool(None) == False`` and ``""`` under a string stays ``""``.
    """
    types = schema["type"]
    types = types if isinstance(types, list) else [types]
    types = [t for t in types if t != "null"] + (["null"] if "null" in types else [])
    for kind in types:
        if kind == "null":
            if value is None or value == "":
                return None
            continue
        if schema.get("format") == "date-time":
            if value is None or value == "":
                continue
            parsed = value if isinstance(value, dt.datetime) else _parse_any(value)
            return _singer_strftime(parsed)
        if kind == "string":
            if value is None:
                continue
            return str(value)
        if kind in ("integer", "number"):
            if value is None:
                continue
            return int(value) if kind == "integer" else float(value)
        if kind == "boolean":
            if isinstance(value, str) and value.lower() == "false":
                return False
            return bool(value)
    raise AssertionError(f"no type for {value!r} in {schema}")


def _parse_any(text: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        return dt.datetime.fromisoformat(text).replace(tzinfo=None)


def _schema_obj_to_dict(properties: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """singer.schema.Schema.to_dict key order: properties first, then STANDARD_KEYS order."""
    order = ["selected", "inclusion", "description", "format", "type"]
    props = {
        name: {key: spec[key] for key in order if key in spec} for name, spec in properties.items()
    }
    return {"properties": props, "type": "object"}


TAP_AMPLITUDE_API_SCHEMA: dict[str, dict[str, Any]] = {}


def _api_schema() -> dict[str, dict[str, Any]]:
    """tap_amplitude/schemas/event.json of tap-amplitude-api 0.1.8, in file order."""
    s, n, i, b = (["null", "string"], ["null", "number"], ["null", "integer"], ["null", "boolean"])
    date = {"type": s, "format": "date-time"}
    spec: list[tuple[str, Any]] = [
        ("server_received_time", date), ("app", i), ("device_carrier", s), ("$schema", i),
        ("event_id", i), ("city", s), ("user_id", s), ("uuid", s), ("event_time", date),
        ("platform", s), ("os_version", s), ("amplitude_id", n), ("processed_time", date),
        ("user_creation_time", date), ("version_name", s), ("ip_address", s), ("paying", b),
        ("dma", s), ("group_properties", s), ("user_properties", s), ("client_upload_time", date),
        ("$insert_id", s), ("event_type", s), ("library", s), ("amplitude_attribution_ids", s),
        ("device_type", s), ("device_manufacturer", s), ("start_version", s),
        ("location_lng", n), ("server_upload_time", date), ("location_lat", n), ("os_name", s),
        ("amplitude_event_type", s), ("device_brand", s), ("groups", s),
        ("event_properties", s), ("data", s), ("device_id", s), ("language", s),
        ("device_model", s), ("country", s), ("region", s), ("is_attribution_event", b),
        ("adid", s), ("session_id", n), ("device_family", s), ("idfa", s),
        ("client_event_time", date),
    ]  # fmt: skip
    return {name: (dict(t) if isinstance(t, dict) else {"type": list(t)}) for name, t in spec}


def tap_amplitude_api_record(line: dict[str, Any]) -> dict[str, Any]:
    """What tap-amplitude-api writes for one Export-API line (Transformer drops undeclared)."""
    schema = _api_schema()
    return {k: _singer_transform(v, schema[k]) for k, v in line.items() if k in schema}


def tap_amplitude_api_lines(events: list[dict[str, Any]]) -> list[str]:
    schema = _api_schema()
    out = [
        _singer_python_dumps(
            {
                "type": "SCHEMA",
                "stream": "event",
                "schema": _schema_obj_to_dict(schema),
                "key_properties": ["uuid"],
            }
        )
    ]
    max_upload = None
    for line in events:
        record = tap_amplitude_api_record(line)
        out.append(_singer_python_dumps({"type": "RECORD", "stream": "event", "record": record}))
        upload = _parse_any(line["server_upload_time"])
        max_upload = upload if max_upload is None else max(max_upload, upload)
    assert max_upload is not None
    out.append(
        _singer_python_dumps({"type": "STATE", "value": {"event": _singer_strftime(max_upload)}})
    )
    return out


# Amplitude's Snowflake events table: (column, Snowflake type), as information_schema lists it.
SNOWFLAKE_COLUMNS: list[tuple[str, str]] = [
    ("$INSERT_ID", "TEXT"), ("$INSERT_KEY", "TEXT"), ("$SCHEMA", "NUMBER"), ("ADID", "TEXT"),
    ("AMPLITUDE_ATTRIBUTION_IDS", "TEXT"), ("AMPLITUDE_EVENT_TYPE", "TEXT"),
    ("AMPLITUDE_ID", "NUMBER"), ("APP", "NUMBER"), ("CITY", "TEXT"),
    ("CLIENT_EVENT_TIME", "TIMESTAMP_NTZ"), ("CLIENT_UPLOAD_TIME", "TIMESTAMP_NTZ"),
    ("COUNTRY", "TEXT"), ("DATA", "VARIANT"), ("DEVICE_BRAND", "TEXT"),
    ("DEVICE_CARRIER", "TEXT"), ("DEVICE_FAMILY", "TEXT"), ("DEVICE_ID", "TEXT"),
    ("DEVICE_MANUFACTURER", "TEXT"), ("DEVICE_MODEL", "TEXT"), ("DEVICE_TYPE", "TEXT"),
    ("DMA", "TEXT"), ("EVENT_ID", "NUMBER"), ("EVENT_PROPERTIES", "VARIANT"),
    ("EVENT_TIME", "TIMESTAMP_NTZ"), ("EVENT_TYPE", "TEXT"),
    ("GLOBAL_USER_PROPERTIES", "VARIANT"), ("GROUP_PROPERTIES", "VARIANT"),
    ("GROUPS", "VARIANT"), ("IDFA", "TEXT"), ("IP_ADDRESS", "TEXT"),
    ("IS_ATTRIBUTION_EVENT", "BOOLEAN"), ("LANGUAGE", "TEXT"), ("LIBRARY", "TEXT"),
    ("LOCATION_LAT", "FLOAT"), ("LOCATION_LNG", "FLOAT"), ("OS_NAME", "TEXT"),
    ("OS_VERSION", "TEXT"), ("PAYING", "TEXT"), ("PLATFORM", "TEXT"),
    ("PROCESSED_TIME", "TIMESTAMP_NTZ"), ("REGION", "TEXT"), ("SAMPLE_RATE", "NUMBER"),
    ("SERVER_RECEIVED_TIME", "TIMESTAMP_NTZ"), ("SERVER_UPLOAD_TIME", "TIMESTAMP_NTZ"),
    ("SESSION_ID", "NUMBER"), ("START_VERSION", "TEXT"),
    ("USER_CREATION_TIME", "TIMESTAMP_NTZ"), ("USER_ID", "TEXT"),
    ("USER_PROPERTIES", "VARIANT"), ("UUID", "TEXT"), ("VERSION_NAME", "TEXT"),
]  # fmt: skip


def _snowflake_schema() -> dict[str, dict[str, Any]]:
    """tap_amplitude.schema_for_column for each column (key/bookmark columns 'automatic')."""
    mapping = {
        "BOOLEAN": {"type": ["null", "boolean"]},
        "NUMBER": {"type": ["null", "number"]},
        "FLOAT": {"type": ["null", "number"]},
        "TEXT": {"type": ["null", "string"]},
        "TIMESTAMP_NTZ": {"type": ["null", "string"], "format": "date-time"},
        "VARIANT": {"type": ["null", "string"]},
    }
    props = {}
    for name, kind in SNOWFLAKE_COLUMNS:
        inclusion = "automatic" if name in ("UUID", "SERVER_UPLOAD_TIME") else "available"
        props[name] = {"inclusion": inclusion, **mapping[kind]}
    return props


def _snowflake_cell(value: Any, kind: str) -> Any:
    """What snowflake-connector-python returns for the column, before the tap touches it."""
    if value is None:
        return None
    if kind == "TIMESTAMP_NTZ":
        return _parse_any(value)  # naive datetime
    if kind == "VARIANT":
        # Snowflake hands semi-structured values over as indented JSON text.
        return json.dumps(value, indent=2, ensure_ascii=False)
    return value


def tap_amplitude_snowflake_lines(events: list[dict[str, Any]]) -> list[str]:
    schema = _snowflake_schema()
    schema_dict = _schema_obj_to_dict(schema)
    out = [
        _singer_python_dumps({"type": "STATE", "value": {}}),
        _singer_python_dumps(
            {
                "type": "SCHEMA",
                "stream": SNOWFLAKE_STREAM,
                "schema": schema_dict,
                "key_properties": ["UUID"],
            }
        ),
        _singer_python_dumps(
            {
                "type": "SCHEMA",
                "stream": SNOWFLAKE_TABLE,
                "schema": schema_dict,
                "key_properties": ["UUID"],
                "bookmark_properties": ["SERVER_UPLOAD_TIME"],
            }
        ),
    ]
    bookmark = None
    # The tap selects ... ORDER BY SERVER_UPLOAD_TIME ASC.
    for line in sorted(events, key=lambda e: e["server_upload_time"]):
        row = {}
        for name, kind in SNOWFLAKE_COLUMNS:
            cell = _snowflake_cell(line.get(name.lower()), kind)
            if isinstance(cell, (dt.datetime, dt.date)):
                cell = cell.isoformat()  # incremental.sync_table does this before transforming
            row[name] = _singer_transform(cell, schema[name])
        out.append(
            _singer_python_dumps({"type": "RECORD", "stream": SNOWFLAKE_STREAM, "record": row})
        )
        bookmark = row["SERVER_UPLOAD_TIME"]
    state = {"bookmarks": {SNOWFLAKE_STREAM: {"SERVER_UPLOAD_TIME": bookmark}}}
    out.append(_singer_python_dumps({"type": "STATE", "value": state}))  # end of sync_table
    out.append(_singer_python_dumps({"type": "STATE", "value": state}))  # end of do_sync
    return out


# --- Singer SDK taps ---------------------------------------------------------------------------


def _sdk_dumps(message: dict[str, Any]) -> str:
    # singer_sdk.singerlib.json.serialize_json: simplejson, compact separators, ASCII escapes.
    return json.dumps(message, separators=(",", ":"))


def _orjson_like_dumps(message: dict[str, Any]) -> str:
    # tap-airbyte-wrapper writes with orjson: compact, UTF-8 (no ASCII escapes).
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def _airbyte_schema() -> dict[str, Any]:
    s, n, i, b, o = (
        ["null", "string"],
        ["null", "number"],
        ["null", "integer"],
        ["null", "boolean"],
        ["null", "object"],
    )
    date = {"type": s, "format": "date-time"}
    spec: list[tuple[str, Any]] = [
        ("server_received_time", date), ("app", i), ("device_carrier", s), ("$schema", i),
        ("city", s), ("user_id", s), ("uuid", s), ("event_time", date), ("platform", s),
        ("os_version", s), ("amplitude_id", i), ("processed_time", date),
        ("user_creation_time", date), ("version_name", s), ("ip_address", s), ("paying", b),
        ("dma", s), ("group_properties", o), ("user_properties", o),
        ("client_upload_time", date), ("$insert_id", s), ("event_type", s), ("library", s),
        ("amplitude_attribution_ids", s), ("device_type", s), ("device_manufacturer", s),
        ("start_version", s), ("location_lng", n), ("server_upload_time", date),
        ("event_id", i), ("location_lat", n), ("os_name", s), ("amplitude_event_type", s),
        ("device_brand", s), ("groups", o), ("event_properties", o), ("data", o),
        ("device_id", s), ("language", s), ("device_model", s), ("country", s),
        ("region", s), ("is_attribution_event", b), ("adid", s), ("session_id", n),
        ("device_family", s), ("sample_rate", ["null", "string", "number"]), ("idfa", s),
        ("client_event_time", date), ("$insert_key", s), ("data_type", s),
        (
            "plan",
            {
                "type": o,
                "properties": {
                    "branch": {"type": s},
                    "source": {"type": s},
                    "version": {"type": s},
                },
            },
        ),
        ("source_id", s), ("partner_id", s), ("global_user_properties", o),
    ]  # fmt: skip
    props = {name: (t if isinstance(t, dict) else {"type": t}) for name, t in spec}
    return {
        "$schema": "https://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": props,
    }


def airbyte_record(line: dict[str, Any]) -> dict[str, Any]:
    declared = _airbyte_schema()["properties"]
    record = {k: copy.deepcopy(v) for k, v in line.items() if k in declared}  # SDK conformance
    for field in TIME_FIELDS:  # TransformDatetimesToRFC3339
        if record.get(field):
            record[field] = _parse_any(record[field]).replace(tzinfo=UTC).isoformat()
    return record


def airbyte_lines(events: list[dict[str, Any]]) -> list[str]:
    out = [
        _orjson_like_dumps(
            {
                "type": "SCHEMA",
                "stream": "events",
                "schema": _airbyte_schema(),
                "key_properties": ["uuid"],
                "bookmark_properties": ["server_upload_time"],
            }
        )
    ]
    for line in events:
        out.append(
            _orjson_like_dumps(
                {
                    "type": "RECORD",
                    "stream": "events",
                    "record": airbyte_record(line),
                    "time_extracted": TIME_EXTRACTED,
                }
            )
        )
    stream_state = {
        "stream_descriptor": {"name": "events"},
        "stream_state": {"server_upload_time": "20240101T13"},
    }
    value = {**stream_state, "airbyte_state": [{"type": "STREAM", "stream": stream_state}]}
    out.append(_orjson_like_dumps({"type": "STATE", "value": value}))  # forwarded Airbyte STATE
    out.append(_orjson_like_dumps({"type": "STATE", "value": value}))  # final, after EOF
    return out


def _graet_schema() -> dict[str, Any]:
    s, n, i, b = ["string", "null"], ["number", "null"], ["integer", "null"], ["boolean", "null"]
    date = {"type": s, "format": "date-time"}
    obj = {"type": ["object", "null"], "additionalProperties": True}
    spec: list[tuple[str, Any]] = [
        ("uuid", {"type": "string"}), ("event_id", i), ("amplitude_id", i), ("user_id", s),
        ("device_id", s), ("session_id", i), ("app", i), ("event_type", s),
        ("event_time", date), ("server_upload_time", date), ("client_event_time", date),
        ("client_upload_time", date), ("server_received_time", date), ("ip_address", s),
        ("city", s), ("region", s), ("country", s), ("dma", s), ("location_lat", n),
        ("location_lng", n), ("platform", s), ("os_name", s), ("os_version", s),
        ("device_brand", s), ("device_carrier", s), ("device_family", s),
        ("device_manufacturer", s), ("device_model", s), ("device_type", s),
        ("version_name", s), ("start_version", s), ("language", s), ("library", s),
        ("paying", b), ("user_creation_time", s), ("is_attribution_event", b), ("adid", s),
        ("idfa", s), ("event_properties", obj), ("user_properties", obj), ("groups", obj),
        ("group_properties", obj), ("data", obj),
    ]  # fmt: skip
    props = {name: (dict(t) if "type" in t else {"type": t}) for name, t in spec}
    return {"type": "object", "properties": props}


def graet_record(line: dict[str, Any]) -> dict[str, Any]:
    schema = _graet_schema()["properties"]
    record = copy.deepcopy(line)
    for field in TIME_FIELDS[:3] + TIME_FIELDS[4:6]:  # streams._TIMESTAMP_FIELDS
        value = record.get(field)
        if value and isinstance(value, str) and " " in value:
            record[field] = value.replace(" ", "T") + "+00:00"
    # The SDK's record conformance drops what the schema does not declare, in schema order.
    return {name: record[name] for name in schema if name in record}


def graet_lines(events: list[dict[str, Any]]) -> list[str]:
    out = [
        _sdk_dumps(
            {
                "type": "SCHEMA",
                "stream": "events",
                "schema": _graet_schema(),
                "key_properties": ["uuid"],
                "bookmark_properties": ["event_time"],
            }
        )
    ]
    for line in events:
        out.append(
            _sdk_dumps(
                {
                    "type": "RECORD",
                    "stream": "events",
                    "record": graet_record(line),
                    "time_extracted": TIME_EXTRACTED,
                }
            )
        )
    last = max(graet_record(line)["event_time"] for line in events)
    state = {
        "bookmarks": {"events": {"replication_key": "event_time", "replication_key_value": last}}
    }
    out.append(_sdk_dumps({"type": "STATE", "value": state}))
    return out


def _hotglue_schema() -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, value in EVENTS[0].items():
        if name in TIME_FIELDS:
            props[name] = {"type": ["string", "null"], "format": "date-time"}
        elif name in BAG_FIELDS or name == "plan":
            props[name] = {"type": ["object", "null"]}
        elif isinstance(value, bool):
            props[name] = {"type": ["boolean", "null"]}
        elif isinstance(value, int):
            props[name] = {"type": ["integer", "null"]}
        elif isinstance(value, float):
            props[name] = {"type": ["number", "null"]}
        else:
            props[name] = {"type": ["string", "null"]}
    return {"type": "object", "properties": props}


def hotglue_lines(events: list[dict[str, Any]]) -> list[str]:
    out = [
        _sdk_dumps(
            {
                "type": "SCHEMA",
                "stream": "events",
                "schema": _hotglue_schema(),
                "key_properties": ["event_id"],
                "bookmark_properties": ["server_upload_time"],
            }
        )
    ]
    for line in events:
        out.append(
            _sdk_dumps(
                {
                    "type": "RECORD",
                    "stream": "events",
                    "record": line,
                    "time_extracted": TIME_EXTRACTED,
                }
            )
        )
    last = max(line["server_upload_time"] for line in events)
    state = {
        "bookmarks": {
            "events": {"replication_key": "server_upload_time", "replication_key_value": last}
        }
    }
    out.append(_sdk_dumps({"type": "STATE", "value": state}))
    return out


def raw_export_lines(events: list[dict[str, Any]]) -> list[str]:
    props = {name: {} for name in EVENTS[0]}  # any type: values reach the target untouched
    schema = {"type": "object", "properties": props}
    out = [
        _sdk_dumps(
            {"type": "SCHEMA", "stream": "events", "schema": schema, "key_properties": ["uuid"]}
        )
    ]
    out += [_sdk_dumps({"type": "RECORD", "stream": "events", "record": line}) for line in events]
    last = max(line["server_upload_time"] for line in events)
    out.append(_sdk_dumps({"type": "STATE", "value": {"events": last}}))
    return out


FIXTURES = {
    "airbyte_source_amplitude.singer.jsonl": airbyte_lines,
    "tap_amplitude_api.singer.jsonl": tap_amplitude_api_lines,
    "tap_amplitude_snowflake.singer.jsonl": tap_amplitude_snowflake_lines,
    "graet_tap_amplitude.singer.jsonl": graet_lines,
    "hotglue_tap_amplitude.singer.jsonl": hotglue_lines,
    "raw_export.singer.jsonl": raw_export_lines,
}


def main() -> None:
    for name, build in FIXTURES.items():
        (HERE / name).write_text("\n".join(build(EVENTS)) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
