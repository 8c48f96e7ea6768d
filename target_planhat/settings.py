"""The settings: their JSON schema (what ``--about`` shows) and the compiled run-time form.

Everything that can be wrong in a config is found here, at start-up, before a line of input is
read, and every message names the setting.
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from singer_sdk import typing as th

from target_planhat import redact
from target_planhat.errors import ConfigError, MetricError, RollUpError
from target_planhat.filters import EventFilters, FilterError, stream_selector
from target_planhat.mapping import DEFAULT_MAPPING, ActivityMapper, MappingError
from target_planhat.metrics import (
    DEFAULT_METRICS_PATH,
    MetricRules,
    check_metrics_path,
)
from target_planhat.paths import CompiledPath, PathError
from target_planhat.planhat import DEFAULT_API_URL, check_api_url
from target_planhat.planhat_rest import DEFAULT_PLANHAT_API_URL, MODELS
from target_planhat.rejects import DEFAULT_DEAD_LETTER_PATH, POLICIES
from target_planhat.rollup import RollUp
from target_planhat.shapes import Canonicalizer
from target_planhat.validate import DEFAULT_MAX_EVENT_BYTES

DEFAULT_STREAMS = ["event", "events", "*-events_*"]
DEFAULT_DEDUPE_KEY = ["$['$insert_id']", "$.uuid"]
DEFAULT_DRY_RUN_PATH = "planhat-dry-run.jsonl"
DEFAULT_LEDGER_PATH = ".target-planhat/ledger.sqlite"
LEDGER_URL_ENV = "TARGET_PLANHAT_LEDGER_URL"
DEFAULT_MAX_REQUEST_BYTES = 8_000_000
#: What happens to an activity Planhat would drop (hold.py); checked only with planhat_api_token.
UNMATCHED_POLICIES = ("hold", "send", "dead_letter", "fail")
DEFAULT_HOLD_DAYS = 30
DEFAULT_IDS_TTL_MINUTES = 60
#: Page sizes of Planhat's REST lists: 5,000 is the largest public sources report for companies;
#: Airbyte's Planhat source pages end users by 2,000.
DEFAULT_PAGE_SIZES = {"companies": 5000, "endusers": 2000, "assets": 2000, "projects": 2000}
PLANHAT_MAX_REQUEST_BYTES = 32_000_000


_ANY = th.CustomType({"type": ["object", "array", "string", "null"]})

SCHEMA = th.PropertiesList(
    th.Property(
        "tenant_token",
        th.StringType,
        secret=True,
        description="Planhat tenant token (the analytics endpoint's path secret). Required unless "
        "dry_run is true. Secret: it is never logged or written anywhere.",
    ),
    th.Property(
        "api_url",
        th.StringType,
        default=DEFAULT_API_URL,
        description="Planhat analytics host (the same for every region). http:// is refused "
        "except for loopback hosts.",
    ),
    th.Property(
        "mapping",
        th.ObjectType(additional_properties=_ANY),
        default=DEFAULT_MAPPING,
        description="Planhat field -> JSONPath (jsonpath-ng) over the normalised Amplitude event. "
        "Fields: externalId, email, name, companyExternalId, assetExternalId, projectExternalId, "
        "action, date, weight, count, info. Given fields replace the defaults one by one; map a "
        'field to "" to leave it out.',
    ),
    th.Property(
        "event_filters",
        th.ObjectType(additional_properties=th.ObjectType(additional_properties=True)),
        default={},
        description='Per stream name (or "*" for all): {include: [globs on action], '
        "exclude: [globs], where: [{path, op, value}]}. op: eq, ne, in, not_in, exists, "
        "not_exists, gt, gte, lt, lte, matches.",
    ),
    th.Property(
        "include_properties",
        th.ArrayType(th.StringType),
        description="Globs over the keys of info: only these properties are sent. Default: all.",
    ),
    th.Property(
        "exclude_properties",
        th.ArrayType(th.StringType),
        description="Globs over the keys of info: these properties are never sent.",
    ),
    th.Property(
        "streams",
        th.ArrayType(th.StringType),
        default=DEFAULT_STREAMS,
        description="Globs (case-insensitive) of the stream names to send; other streams are "
        "read, counted and skipped. Default: the event streams of the known Amplitude taps.",
    ),
    th.Property(
        "dry_run",
        th.BooleanType,
        default=False,
        description="Write the exact activities to dry_run_path instead of sending them.",
    ),
    th.Property(
        "dry_run_writes_state",
        th.BooleanType,
        default=False,
        description="Write STATE in a dry run too. Off by default, so a dry run never moves "
        "the bookmark and a later live run still sends those events.",
    ),
    th.Property(
        "dry_run_path",
        th.StringType,
        default=DEFAULT_DRY_RUN_PATH,
        description="Dry run: one activity per line, byte for byte what the POST body would hold "
        "(appended to).",
    ),
    th.Property(
        "max_request_bytes",
        th.IntegerType,
        default=DEFAULT_MAX_REQUEST_BYTES,
        description="Largest POST body in bytes; batches are split to fit. Planhat's hard limit "
        "is 32 MB.",
    ),
    th.Property(
        "request_timeout",
        th.NumberType,
        default=60,
        description="Seconds to wait for Planhat to connect and to answer one request.",
    ),
    th.Property(
        "max_retry_seconds",
        th.NumberType,
        default=900,
        description="Time budget per request for retries (429, 5xx, network errors) before the "
        "run fails. 14400 retries for 4 hours, like Amplitude's own streaming.",
    ),
    th.Property(
        "checkpoint_seconds",
        th.NumberType,
        default=10,
        description="A STATE is written at most this long after Planhat acknowledged the "
        "records it covers; the delivery report is logged as often.",
    ),
    th.Property(
        "dedupe",
        th.BooleanType,
        default=True,
        description="Keep a ledger of acknowledged activity ids so a replay never sends twice.",
    ),
    th.Property(
        "ledger_path",
        th.StringType,
        default=DEFAULT_LEDGER_PATH,
        description="SQLite file of the ledger, used when ledger_url is not set. Lost with the "
        "local disk: on containers or ephemeral workers use ledger_url.",
    ),
    th.Property(
        "ledger_url",
        th.StringType,
        secret=True,
        description="PostgreSQL URL of the ledger (postgresql://user:password@host:port/dbname, "
        "libpq query options such as sslmode allowed); also read from "
        "TARGET_PLANHAT_LEDGER_URL. When set the ledger lives there instead of ledger_path. "
        "Secret: the password is never logged.",
    ),
    th.Property(
        "dedupe_key",
        th.ArrayType(th.StringType),
        default=DEFAULT_DEDUPE_KEY,
        description="JSONPaths tried in order for an event's id; none matching: a hash of the "
        "activity.",
    ),
    th.Property(
        "ledger_ttl_days",
        th.NumberType,
        default=7,
        description="Ledger entries older than this many days are pruned (Amplitude's own "
        "dedupe window); so are the events metrics counted, and a count_distinct day that got no "
        "new value for this long is closed (its later events are not counted).",
    ),
    th.Property(
        "on_invalid_record",
        th.StringType(allowed_values=list(POLICIES)),
        default="dead_letter",
        description="dead_letter (write it to dead_letter_path), skip (count it), or fail.",
    ),
    th.Property(
        "dead_letter_path",
        th.StringType,
        default=DEFAULT_DEAD_LETTER_PATH,
        description="Rejected records, one JSON line each: stream, reason, record, activity, "
        "input line, time.",
    ),
    th.Property(
        "max_event_bytes",
        th.IntegerType,
        default=DEFAULT_MAX_EVENT_BYTES,
        description="Largest single activity, encoded (Planhat: 1 MB).",
    ),
    th.Property(
        "report_path",
        th.StringType,
        description="Also write the delivery report (JSON) here.",
    ),
    th.Property(
        "planhat_api_token",
        th.StringType,
        secret=True,
        description="API token of a Planhat service account (main REST API), sent as "
        "Authorization: Bearer. Required for metrics unless dry_run is true. When set, every "
        "activity is also checked against the ids Planhat knows before it is sent (see "
        "on_unmatched). Secret: never logged or written anywhere.",
    ),
    th.Property(
        "planhat_api_url",
        th.StringType,
        default=DEFAULT_PLANHAT_API_URL,
        description="Planhat REST API host, e.g. https://api-eu3.planhat.com for a regional "
        "tenant. http:// is refused except for loopback hosts.",
    ),
    *(
        th.Property(
            f"planhat_{name}_page_size",
            th.IntegerType,
            default=size,
            description=f"Items per page when listing Planhat's {name} (limit / offset).",
        )
        for name, size in DEFAULT_PAGE_SIZES.items()
    ),
    th.Property(
        "planhat_ids_ttl_minutes",
        th.NumberType,
        default=DEFAULT_IDS_TTL_MINUTES,
        description="The ids Planhat knows are cached in the ledger's store and listed again "
        "when older than this; before anything is held they are listed again (once a run) when "
        "older than a minute.",
    ),
    th.Property(
        "check_planhat_ids",
        th.BooleanType,
        default=True,
        description="With planhat_api_token: check every activity against the ids Planhat "
        "knows (on_unmatched). false: send without checking, as without the token (for a "
        "token that serves metrics only, or may not read companies and end users).",
    ),
    th.Property(
        "on_unmatched",
        th.StringType(allowed_values=list(UNMATCHED_POLICIES)),
        default="hold",
        description="With planhat_api_token, an activity that matches no company or end user "
        "Planhat knows (Planhat would drop it): hold (store it, send it once its ids exist), "
        "send (anyway; counted as sent_unmatched), dead_letter, or fail.",
    ),
    th.Property(
        "hold_days",
        th.NumberType,
        default=DEFAULT_HOLD_DAYS,
        description="A held activity still unmatched this many days after it was held goes to "
        "the dead-letter file (reason unmatched_expired).",
    ),
    th.Property(
        "metrics",
        th.ArrayType(th.ObjectType(additional_properties=True)),
        default=[],
        description="Planhat metrics (dimension data) counted from the events, per UTC day of the "
        "event's date: [{dimensionId, model (Company, EndUser, Asset, Project), externalId: "
        "JSONPath, aggregate: count | sum | count_distinct, value: JSONPath (sum, "
        "count_distinct), actions: [globs], where: [conditions as in event_filters]}]. Each "
        "event counts once per rule across runs (the ledger keeps what each rule counted).",
    ),
    th.Property(
        "metrics_path",
        th.StringType,
        default=DEFAULT_METRICS_PATH,
        description="Path of Planhat's dimension-data endpoint on api_url; {tenant} is replaced "
        "by tenant_token.",
    ),
    th.Property(
        "rollup",
        th.ObjectType(
            th.Property("actions", th.ArrayType(th.StringType)),
            th.Property("per", th.StringType(allowed_values=["hour", "day"])),
        ),
        description='{"actions": [globs], "per": "hour" | "day"}: events of those actions with '
        "the same user, company, asset, project and action in the same UTC hour or day are "
        "sent as one activity with count = how many, date = the first one's, info = the "
        "properties they all share. Default: no roll-up.",
    ),
).to_dict()


@dataclass(frozen=True)
class Settings:
    """The config, checked and compiled."""

    tenant_token: str
    api_url: str
    mapper: ActivityMapper
    filters: EventFilters
    stream_selected: Any
    dry_run: bool
    dry_run_writes_state: bool
    dry_run_path: Path
    max_request_bytes: int
    request_timeout: float
    max_retry_seconds: float
    checkpoint_seconds: float
    dedupe: bool
    ledger_path: Path
    #: PostgreSQL URL of the ledger, or None for SQLite at ``ledger_path``.
    ledger_url: str | None
    dedupe_key: tuple[CompiledPath, ...]
    ledger_ttl_days: float
    on_invalid_record: str
    dead_letter_path: Path
    max_event_bytes: int
    report_path: str | None
    planhat_api_url: str
    #: Page size per Planhat list ("companies", "endusers", "assets", "projects").
    planhat_page_sizes: Mapping[str, int]
    planhat_ids_ttl_minutes: float
    #: None when planhat_api_token is not set: nothing is checked.
    on_unmatched: str | None
    hold_days: float
    #: The Planhat fields the mapping sends (assets / projects are listed only when mapped).
    mapped_fields: frozenset[str]
    #: ``shapes.to_canonical`` restricted to the fields the mapping, filters and dedupe key read.
    canonicalize: Canonicalizer
    #: ``metrics`` compiled (empty: no metrics).
    metrics: MetricRules = field(default_factory=lambda: MetricRules([]))
    #: ``metrics_path`` (``{tenant}`` not yet replaced).
    metrics_path: str = DEFAULT_METRICS_PATH
    #: Planhat REST API token (metrics; and ids are checked, on_unmatched, only when it is set).
    planhat_api_token: str = ""
    rollup: RollUp | None = None


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "null": (type(None),),
}


def _types(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type", [])
    return [declared] if isinstance(declared, str) else list(declared)


def _is_a(value: object, types: Iterable[str]) -> bool:
    for name in types:
        kinds = _JSON_TYPES.get(name)
        if kinds is None:
            continue
        # JSON true is no number, and 1.5 no integer.
        if isinstance(value, bool) and name not in ("boolean",):
            continue
        if name == "integer" and isinstance(value, float) and value.is_integer():
            return True  # JSON Schema: 1000.0 is an integer
        if isinstance(value, kinds):
            return True
    return False


def check_config(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse settings the schema does not know, and parse strings where it wants JSON.

    ``schema`` is the full config schema (this target's and the SDK's built-in settings), so the
    known names come from one place: a setting added to ``SCHEMA`` is known at once. A typo
    (``dryrun``) would otherwise be ignored and a run meant to be dry would go live.

    Meltano passes undeclared settings and environment variables as strings: a string where the
    schema wants an object, array, boolean or number is parsed as JSON, strictly (``"yes"`` is no
    boolean, ``"60s"`` no number), so a value is never guessed.
    """
    properties: Mapping[str, Any] = schema.get("properties", {})
    unknown = [key for key in config if key not in properties]
    if unknown:
        raise ConfigError("; ".join(_unknown_setting(key, properties) for key in unknown))
    checked = dict(config)
    for key, value in config.items():
        types = _types(properties[key])
        if not isinstance(value, str) or "string" in types or not types:
            continue
        wanted = [name for name in types if name != "null"]
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ConfigError(
                f"{key}: the string {_quote(value)} is not JSON; it must be {_describe(wanted)}"
            ) from None
        if not _is_a(parsed, types):
            raise ConfigError(
                f"{key}: the string {_quote(value)} is JSON of another kind; it must be "
                f"{_describe(wanted)}"
            )
        checked[key] = parsed
    return checked


def _quote(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


_KINDS = {
    "object": 'a JSON object like {"key": "value"}',
    "array": 'a JSON array like ["a", "b"]',
    "boolean": "true or false",
    "integer": "a whole number like 60",
    "number": "a number like 60 or 0.5",
}


def _describe(types: list[str]) -> str:
    return " or ".join(_KINDS.get(name, name) for name in types)


def _unknown_setting(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    hint = f"did you mean `{close[0]}`?" if close else "see `target-planhat --about` for them all"
    return f"{key}: unknown setting; {hint}"


def read_fields(paths: Iterable[CompiledPath]) -> frozenset[str] | None:
    """The top-level fields ``paths`` can read, or None when one of them can read any field."""
    fields: set[str] = set()
    for path in paths:
        if path.root_field is None:
            return None
        fields.add(path.root_field)
    return frozenset(fields)


def _positive(config: Mapping[str, Any], name: str, default: float) -> float:
    value = config.get(name, default)
    if value is None:
        return default
    # Decimal: the SDK parses config files with floats as Decimal.
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or value <= 0:
        raise ConfigError(f"{name}: must be a positive number, got {value!r}")
    return float(value)


def _writable(name: str, path: Path) -> Path:
    """Create the parent folder and check the file can be written, so a bad path fails now.

    An existing file is opened for append; a missing one is not created (a run with nothing
    to write leaves no empty file behind): its folder must be writable instead.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            with open(path, "ab"):
                pass
        elif not os.access(path.parent, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path.parent))
    except OSError as exc:
        raise ConfigError(f"{name}: cannot write {str(path)!r}: {exc.strerror or exc}") from None
    return path


def _ledger_url(config: Mapping[str, Any], ledger_path: Path) -> str | None:
    """``ledger_url`` from the config, else from ``TARGET_PLANHAT_LEDGER_URL``; checked."""
    url = config.get("ledger_url")
    if url is None or url == "":
        url = os.environ.get(LEDGER_URL_ENV) or None
    if url is None:
        return None
    if not isinstance(url, str):
        raise ConfigError("ledger_url: must be a string")
    redact.register(_password(url))
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            "ledger_url: must start with postgresql:// or postgres:// "
            "(postgresql://user:password@host:port/dbname)"
        )
    if str(ledger_path) != str(Path(DEFAULT_LEDGER_PATH)):
        raise ConfigError(
            "ledger_path, ledger_url: both are set; the ledger lives in one place: keep "
            "ledger_url (PostgreSQL) or ledger_path (SQLite), not both"
        )
    return url


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _unmatched_settings(config: Mapping[str, Any], dry_run: bool) -> dict[str, Any]:
    """planhat_api_token and what hangs on it: the id check and ``on_unmatched``."""
    token = config.get("planhat_api_token") or ""
    if not isinstance(token, str):
        raise ConfigError("planhat_api_token: must be a string")
    redact.register(token)
    token = token.strip()
    policy = config.get("on_unmatched") or "hold"
    if policy not in UNMATCHED_POLICIES:
        raise ConfigError(f"on_unmatched: must be one of {', '.join(UNMATCHED_POLICIES)}")
    check = config.get("check_planhat_ids", True)
    if not isinstance(check, bool):
        raise ConfigError("check_planhat_ids: must be true or false")
    if (not token or not check) and policy != "hold":
        # hold is the schema's default, so only another value was chosen on purpose.
        raise ConfigError(
            f"on_unmatched: {policy!r} needs planhat_api_token and check_planhat_ids (without "
            "them, activities are not checked against the ids Planhat knows)"
        )
    try:
        api_url = check_api_url(
            str(config.get("planhat_api_url") or DEFAULT_PLANHAT_API_URL),
            "planhat_api_url",
            "the planhat_api_token travels in a header",
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    sizes = {}
    for name, default in DEFAULT_PAGE_SIZES.items():
        setting = f"planhat_{name}_page_size"
        size = _positive(config, setting, default)
        if size != int(size):
            raise ConfigError(f"{setting}: must be a whole number, got {size:g}")
        sizes[name] = int(size)
    assert set(sizes) == set(MODELS)
    spec = {**DEFAULT_MAPPING, **(config.get("mapping") or {})}
    return {
        "planhat_api_url": api_url,
        "planhat_page_sizes": sizes,
        "planhat_ids_ttl_minutes": _positive(
            config, "planhat_ids_ttl_minutes", DEFAULT_IDS_TTL_MINUTES
        ),
        "on_unmatched": policy if token and check else None,
        "hold_days": _positive(config, "hold_days", DEFAULT_HOLD_DAYS),
        "mapped_fields": frozenset(k for k, v in spec.items() if v not in (None, "")),
    }


def compile_settings(config: Mapping[str, Any]) -> Settings:
    try:
        mapper = ActivityMapper(
            config.get("mapping"),
            config.get("include_properties"),
            config.get("exclude_properties"),
        )
        filters = EventFilters(config.get("event_filters"))
        stream_selected = stream_selector(config.get("streams") or DEFAULT_STREAMS)
        metrics = MetricRules(config.get("metrics"))
        metrics_path = check_metrics_path(config.get("metrics_path") or DEFAULT_METRICS_PATH)
        rollup = RollUp(config["rollup"]) if config.get("rollup") is not None else None
    except (MappingError, FilterError, MetricError, RollUpError) as exc:
        raise ConfigError(str(exc)) from None

    dry_run = bool(config.get("dry_run", False))
    token = config.get("tenant_token") or ""
    if not isinstance(token, str):
        raise ConfigError("tenant_token: must be a string")
    if not dry_run and not token.strip():
        raise ConfigError("tenant_token: required unless dry_run is true")
    api_token = config.get("planhat_api_token") or ""
    if not isinstance(api_token, str):
        raise ConfigError("planhat_api_token: must be a string")
    if metrics and not dry_run and not api_token.strip():
        raise ConfigError(
            "metrics: planhat_api_token is required to send metrics (unless dry_run is true)"
        )
    try:
        api_url = check_api_url(str(config.get("api_url") or DEFAULT_API_URL))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

    max_request_bytes = int(_positive(config, "max_request_bytes", DEFAULT_MAX_REQUEST_BYTES))
    if max_request_bytes > PLANHAT_MAX_REQUEST_BYTES:
        raise ConfigError(
            f"max_request_bytes: {max_request_bytes} is over Planhat's limit of "
            f"{PLANHAT_MAX_REQUEST_BYTES} bytes"
        )
    max_event_bytes = int(_positive(config, "max_event_bytes", DEFAULT_MAX_EVENT_BYTES))
    if max_event_bytes + 2 > max_request_bytes:
        raise ConfigError("max_event_bytes: must be smaller than max_request_bytes")

    policy = config.get("on_invalid_record") or "dead_letter"
    if policy not in POLICIES:
        raise ConfigError(f"on_invalid_record: must be one of {', '.join(POLICIES)}")
    dead_letter_path = Path(config.get("dead_letter_path") or DEFAULT_DEAD_LETTER_PATH)
    if policy == "dead_letter":
        _writable("dead_letter_path", dead_letter_path)
    dry_run_path = Path(config.get("dry_run_path") or DEFAULT_DRY_RUN_PATH)
    if dry_run:
        _writable("dry_run_path", dry_run_path)
    report_path = config.get("report_path") or None
    if report_path:
        _writable("report_path", Path(report_path))

    keys = config.get("dedupe_key") or DEFAULT_DEDUPE_KEY
    if not isinstance(keys, list):
        raise ConfigError("dedupe_key: must be a list of JSONPaths")
    try:
        dedupe_key = tuple(CompiledPath(k) for k in keys)
    except PathError as exc:
        raise ConfigError(f"dedupe_key: {exc}") from None
    dedupe = bool(config.get("dedupe", True))
    ledger_path = Path(config.get("ledger_path") or DEFAULT_LEDGER_PATH)
    ledger_url = _ledger_url(config, ledger_path)
    if dedupe and not dry_run and ledger_url is None:
        try:
            ledger_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"ledger_path: cannot use {str(ledger_path)!r}: cannot create its folder "
                f"{str(ledger_path.parent)!r}: {exc.strerror or exc}"
            ) from None

    unmatched = _unmatched_settings(config, dry_run)

    return Settings(
        tenant_token=token,
        api_url=api_url,
        mapper=mapper,
        filters=filters,
        stream_selected=stream_selected,
        dry_run=dry_run,
        dry_run_writes_state=bool(config.get("dry_run_writes_state", False)),
        dry_run_path=dry_run_path,
        max_request_bytes=max_request_bytes,
        request_timeout=_positive(config, "request_timeout", 60),
        max_retry_seconds=_positive(config, "max_retry_seconds", 900),
        checkpoint_seconds=_positive(config, "checkpoint_seconds", 10),
        dedupe=dedupe,
        ledger_path=ledger_path,
        ledger_url=ledger_url,
        dedupe_key=dedupe_key,
        ledger_ttl_days=_positive(config, "ledger_ttl_days", 7),
        on_invalid_record=policy,
        dead_letter_path=dead_letter_path,
        max_event_bytes=max_event_bytes,
        report_path=report_path,
        **unmatched,
        canonicalize=Canonicalizer(
            read_fields([*mapper.paths, *filters.paths, *dedupe_key, *metrics.paths])
        ),
        metrics=metrics,
        metrics_path=metrics_path,
        planhat_api_token=api_token,
        rollup=rollup,
    )
