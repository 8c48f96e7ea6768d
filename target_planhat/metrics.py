"""Planhat metrics (dimension data) derived from the events: the ``metrics`` rules.

Health scores in Planhat are built from metrics, time series per Company, EndUser, Asset or
Project. Each rule says which events count (``actions`` globs, ``where`` conditions as in
``event_filters``), for which object (``externalId``), and how (``count``, ``sum`` of a value,
``count_distinct`` of a value), per UTC day of the event's date.

Pure: a canonical event and its activity in, observations out. The rules are compiled at
start-up so a bad one fails before any input is read, naming ``metrics[i].field``. Counting each
event once per rule across runs, and sending the points, belong to the store and the runtime.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from target_planhat.errors import MetricError
from target_planhat.filters import Condition, FilterError, compile_globs
from target_planhat.paths import CompiledPath, PathError

MODELS = ("Company", "EndUser", "Asset", "Project")
AGGREGATES = ("count", "sum", "count_distinct")
DEFAULT_METRICS_PATH = "/dimensiondata/{tenant}"
# Planhat: "a string without spaces or special characters".
_DIMENSION_ID = re.compile(r"[A-Za-z0-9_]+")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}T")
_KEYS = frozenset({"dimensionId", "model", "externalId", "aggregate", "value", "actions", "where"})
# A distinct value longer than this is kept in the store as its hash.
_MAX_DISTINCT_CHARS = 128


class Observation(NamedTuple):
    """One event seen by one rule: what it adds to the rule's point for ``external_id`` on ``day``.

    ``amount`` is 1 for ``count``, the value for ``sum``, and the distinct value (a string) for
    ``count_distinct``.
    """

    rule: int
    day: str
    external_id: str
    amount: int | float | str


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _first(path: CompiledPath, event: Any) -> Any:
    """The first non-null match; a matched list gives its first non-null item (as the mapping).

    Plain loops, no generator: it runs for every rule on every event.
    """
    for value in path.values(event):
        if type(value) is list:
            for item in value:
                if item is not None:
                    return item
        elif value is not None:
            return value
    return None


def _as_id(value: Any) -> str | None:
    """An externalId as Planhat gets it from the mapping: numbers become strings."""
    if type(value) is str and value:
        return value if not value[0].isspace() or value.strip() else None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return None


def _as_number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def distinct_key(value: Any) -> str | None:
    """What ``count_distinct`` counts: ``42`` and ``"42"`` are one user; long values as a hash."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float, Decimal)):
        number = _as_number(value)
        if number is None:
            return None
        text = str(number)
    elif isinstance(value, (dict, list)):
        text = json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), default=str)
    else:
        return None
    if not text:
        return None
    if len(text) > _MAX_DISTINCT_CHARS:
        return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return text


_last_day: list[str] = ["", ""]  # (date[:11], its day): consecutive events share their day


def day_of(date: Any) -> str | None:
    """The UTC day (``YYYY-MM-DD``) of an activity's ``date`` (ISO 8601 UTC after the mapping)."""
    if type(date) is not str or date[-1:] != "Z":
        return None
    head = date[:11]
    if head == _last_day[0]:
        return _last_day[1]
    if _DAY.match(date):
        _last_day[0], _last_day[1] = head, date[:10]
        return date[:10]
    return None


class MetricRule:
    """One rule of ``metrics``, compiled."""

    __slots__ = (
        "actions",
        "aggregate",
        "dimension_id",
        "external_id",
        "index",
        "key",
        "label",
        "model",
        "value",
        "where",
    )

    def __init__(self, index: int, spec: Any) -> None:
        setting = f"metrics[{index}]"
        if not isinstance(spec, Mapping):
            raise MetricError(f"{setting}: must be an object with dimensionId and externalId")
        extra = set(spec) - _KEYS
        if extra:
            raise MetricError(f"{setting}: unknown key(s) {', '.join(sorted(extra))}")
        dimension_id = spec.get("dimensionId")
        if not isinstance(dimension_id, str) or not _DIMENSION_ID.fullmatch(dimension_id):
            raise MetricError(
                f"{setting}.dimensionId: {dimension_id!r} must be letters, digits or _ only "
                "(Planhat refuses spaces and special characters)"
            )
        model = spec.get("model", "Company")
        if model not in MODELS:
            raise MetricError(f"{setting}.model: {model!r} is not one of {', '.join(MODELS)}")
        aggregate = spec.get("aggregate", "count")
        if aggregate not in AGGREGATES:
            raise MetricError(
                f"{setting}.aggregate: {aggregate!r} is not one of {', '.join(AGGREGATES)}"
            )
        if "externalId" not in spec:
            raise MetricError(f"{setting}.externalId: required (a JSONPath, e.g. $.groups.company)")
        self.external_id = self._path(f"{setting}.externalId", spec["externalId"])
        self.value: CompiledPath | None = None
        if aggregate == "count":
            if spec.get("value") not in (None, ""):
                raise MetricError(f"{setting}.value: only for sum and count_distinct")
        else:
            if spec.get("value") in (None, ""):
                raise MetricError(f"{setting}.value: required for {aggregate} (a JSONPath)")
            self.value = self._path(f"{setting}.value", spec["value"])
        try:
            self.actions = compile_globs(f"{setting}.actions", spec.get("actions"))
            where = spec.get("where") or []
            if not isinstance(where, list):
                raise FilterError(f"{setting}.where: must be a list of conditions")
            self.where = tuple(
                Condition(f"{setting}.where[{i}]", item) for i, item in enumerate(where)
            )
        except FilterError as exc:
            raise MetricError(str(exc)) from None
        self.index = index
        self.dimension_id = dimension_id
        self.model = model
        self.aggregate = aggregate
        self.label = f"{setting} {dimension_id}"
        # What the store files this rule's counted events under: the same rule keeps its key
        # across runs (and a reordered list), a changed rule is a new one and counts afresh.
        canonical = json.dumps(
            {k: _plain(v) for k, v in spec.items() if k != "dimensionId"} | {"d": dimension_id},
            sort_keys=True,
            default=str,
        )
        self.key = hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @staticmethod
    def _path(setting: str, expression: Any) -> CompiledPath:
        try:
            return CompiledPath(expression)
        except PathError as exc:
            raise MetricError(f"{setting}: {exc}") from None

    @property
    def paths(self) -> list[CompiledPath]:
        paths = [self.external_id, *(condition.path for condition in self.where)]
        return paths if self.value is None else [*paths, self.value]

    def observe(self, event: Any, action: Any, day: str) -> Observation | str | None:
        """The event's observation; ``None`` when the rule does not count it; a reason (str)
        when it should count but cannot (no externalId, no value)."""
        actions = self.actions
        if actions is not None:
            name = action if isinstance(action, str) else ""
            if not any(rx.match(name) for _, rx in actions):
                return None
        for condition in self.where:
            if not condition.test(event):
                return None
        external_id = _as_id(_first(self.external_id, event))
        if external_id is None:
            return f"{self.label}: no externalId at {self.external_id.expression}"
        if self.value is None:
            return Observation(self.index, day, external_id, 1)
        raw = _first(self.value, event)
        amount: int | float | str | None
        if self.aggregate == "sum":
            amount = _as_number(raw)
            if amount is None:
                return f"{self.label}: no number at {self.value.expression}"
        else:
            amount = distinct_key(raw)
            if amount is None:
                return f"{self.label}: no value at {self.value.expression}"
        return Observation(self.index, day, external_id, amount)

    def point(self, day: str, external_id: str, value: int | float) -> dict[str, Any]:
        """The dimension-data row Planhat gets for this rule, object and day."""
        return {
            "dimensionId": self.dimension_id,
            "value": value,
            "externalId": external_id,
            "model": self.model,
            "date": f"{day}T00:00:00.000Z",
        }


class MetricRules:
    """All of ``metrics``: ``observe(event, activity)`` gives each rule's observation."""

    def __init__(self, spec: Any) -> None:
        if spec is None:
            spec = []
        if not isinstance(spec, list):
            raise MetricError("metrics: must be a list of rules")
        self.rules = tuple(MetricRule(i, item) for i, item in enumerate(spec))
        seen: set[str] = set()
        for rule in self.rules:
            if rule.key in seen:
                raise MetricError(f"metrics[{rule.index}]: the same rule is given twice")
            seen.add(rule.key)
        # Why an event that should count did not: label -> events (for the report).
        self.skipped: Counter[str] = Counter()

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def paths(self) -> list[CompiledPath]:
        return [path for rule in self.rules for path in rule.paths]

    def observe(self, event: Any, activity: Mapping[str, Any]) -> list[Observation]:
        """Every rule's observation of one event (before any filter: metrics count events
        whether their activity is sent or not)."""
        day = day_of(activity.get("date"))
        action = activity.get("action")
        found: list[Observation] = []
        for rule in self.rules:
            seen = rule.observe(event, action, day or "")
            if seen is None:
                continue
            if day is None:
                self.skipped[f"{rule.label}: no date"] += 1
            elif isinstance(seen, str):
                self.skipped[seen] += 1
            else:
                found.append(seen)
        return found


def aggregate(
    rules: Sequence[MetricRule], observations: Sequence[Observation]
) -> dict[tuple[int, str, str], int | float | set[str]]:
    """Per (rule, day, externalId): the count or sum of the observations, or their distinct
    values (a set) for ``count_distinct``."""
    out: dict[tuple[int, str, str], Any] = {}
    for rule_index, day, external_id, amount in observations:
        key = (rule_index, day, external_id)
        if rules[rule_index].aggregate == "count_distinct":
            values = out.get(key)
            if values is None:
                values = out[key] = set()
            values.add(amount)
        else:
            out[key] = out.get(key, 0) + amount
    return out


def check_metrics_path(path: Any) -> str:
    """``metrics_path``: a path on api_url holding ``{tenant}`` exactly once."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise MetricError(f"metrics_path: {path!r} must be a path starting with /")
    if path.count("{tenant}") != 1:
        raise MetricError("metrics_path: must hold {tenant} once (the tenant token goes there)")
    return path
