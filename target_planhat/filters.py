"""Stream-level event filters: which activities go to Planhat (Amplitude's "event filters").

Rules are compiled once. ``decide`` returns ``None`` to keep an event, or the name of the rule
that dropped it, so the delivery report can say *which* filter removed how many events.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from target_planhat.errors import FilterError, PathError
from target_planhat.paths import CompiledPath

logger = logging.getLogger("target_planhat.filters")
# "[Amplitude]" in a glob is a character class, almost surely meant as literal text.
_WORD_CLASS = re.compile(r"(?<!\[)\[[A-Za-z][A-Za-z ]{3,}\]")

OPS = ("eq", "ne", "in", "not_in", "exists", "not_exists", "gt", "gte", "lt", "lte", "matches")
_NO_VALUE_OPS = ("exists", "not_exists")
_ORDER_OPS = ("gt", "gte", "lt", "lte")


def warn_word_classes(setting: str, globs: Sequence[str]) -> None:
    """Warn about ``[Amplitude]`` in a glob: a one-character class, surely meant literally."""
    for glob in globs:
        if _WORD_CLASS.search(glob):
            logger.warning(
                "%s: %r: in a glob, [...] matches ONE character of the set; to match the "
                "literal text (Amplitude's own events are named '[Amplitude] ...') write %r",
                setting,
                glob,
                _WORD_CLASS.sub(lambda m: "[[]" + m.group(0)[1:], glob),
            )


def _candidates(path: CompiledPath, record: Any) -> list[Any]:
    """Matched values, with a matched list opened one level (so ``$.groups.company`` works)."""
    out: list[Any] = []
    for value in path.values(record):
        if isinstance(value, list):
            out.extend(item for item in value if item is not None)
        elif value is not None:
            out.append(value)
    return out


def _plain(value: Any) -> Any:
    """Config numbers arrive as ``Decimal`` (the SDK's config parser); records carry floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _comparable(left: Any, right: Any) -> bool:
    numbers = (int, float)
    if isinstance(left, bool) or isinstance(right, bool):
        return False
    return (isinstance(left, numbers) and isinstance(right, numbers)) or (
        isinstance(left, str) and isinstance(right, str)
    )


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) != isinstance(right, bool):
        return False  # True must not equal 1
    return bool(left == right)


def compile_globs(setting: str, globs: Any) -> list[tuple[str, re.Pattern[str]]] | None:
    """Action globs as ``event_filters`` reads them (also for ``metrics`` and ``rollup``)."""
    if globs is None:
        return None
    if not isinstance(globs, list) or not all(isinstance(g, str) for g in globs):
        raise FilterError(f"{setting}: must be a list of glob strings")
    warn_word_classes(setting, globs)
    # fnmatchcase semantics: case-sensitive on every platform.
    return [(glob, re.compile(fnmatch.translate(glob))) for glob in globs]


class _Where:
    __slots__ = ("label", "path", "test")

    def __init__(self, setting: str, spec: Any) -> None:
        if not isinstance(spec, Mapping) or "path" not in spec or "op" not in spec:
            raise FilterError(f"{setting}: must be an object with 'path', 'op' and 'value'")
        extra = set(spec) - {"path", "op", "value"}
        if extra:
            raise FilterError(f"{setting}: unknown key(s) {', '.join(sorted(extra))}")
        op = spec["op"]
        if op not in OPS:
            raise FilterError(f"{setting}.op: unknown op {op!r}; known ops are {', '.join(OPS)}")
        try:
            path = CompiledPath(spec["path"])
        except PathError as exc:
            raise FilterError(f"{setting}.path: {exc}") from None
        if op not in _NO_VALUE_OPS and "value" not in spec:
            raise FilterError(f"{setting}.value: op {op!r} needs a value")
        value = _plain(spec.get("value"))
        self.path = path
        self.label = f"{path.expression} {op}" + ("" if op in _NO_VALUE_OPS else f" {value!r}")
        self.test = self._compile(setting, path, op, value)

    @staticmethod
    def _compile(setting: str, path: CompiledPath, op: str, value: Any) -> Callable[[Any], bool]:
        if op == "exists":
            return lambda record: bool(_candidates(path, record))
        if op == "not_exists":
            return lambda record: not _candidates(path, record)
        if op == "eq":
            return lambda record: any(_equal(v, value) for v in _candidates(path, record))
        if op == "ne":
            return lambda record: not any(_equal(v, value) for v in _candidates(path, record))
        if op in ("in", "not_in"):
            if not isinstance(value, list):
                raise FilterError(f"{setting}.value: op {op!r} needs a list")
            options = list(value)

            def inside(record: Any) -> bool:
                return any(
                    any(_equal(v, option) for option in options) for v in _candidates(path, record)
                )

            return inside if op == "in" else (lambda record: not inside(record))
        if op == "matches":
            try:
                pattern = re.compile(str(value))
            except re.error as exc:
                raise FilterError(f"{setting}.value: invalid regex {value!r}: {exc}") from None
            return lambda record: any(
                pattern.search(v if isinstance(v, str) else str(v))
                for v in _candidates(path, record)
            )
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise FilterError(f"{setting}.value: op {op!r} needs a number or a string")
        compare: Callable[[Any, Any], bool] = {
            "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b,
            "lt": lambda a, b: a < b,
            "lte": lambda a, b: a <= b,
        }[op]
        return lambda record: any(
            _comparable(v, value) and compare(v, value) for v in _candidates(path, record)
        )


#: One ``where`` condition, as ``event_filters`` reads it (``metrics`` rules reuse it).
Condition = _Where


class _Rule:
    """The filter of one key of ``event_filters`` (a stream name or ``*``)."""

    def __init__(self, key: str, spec: Any) -> None:
        setting = f"event_filters.{key}"
        if not isinstance(spec, Mapping):
            raise FilterError(f"{setting}: must be an object with include/exclude/where")
        extra = set(spec) - {"include", "exclude", "where"}
        if extra:
            raise FilterError(f"{setting}: unknown key(s) {', '.join(sorted(extra))}")
        self.key = key
        self.include = self._globs(f"{setting}.include", spec.get("include"))
        self.exclude = self._globs(f"{setting}.exclude", spec.get("exclude"))
        where = spec.get("where") or []
        if not isinstance(where, list):
            raise FilterError(f"{setting}.where: must be a list of conditions")
        self.where = [_Where(f"{setting}.where[{i}]", item) for i, item in enumerate(where)]

    @staticmethod
    def _globs(setting: str, globs: Any) -> list[tuple[str, re.Pattern[str]]] | None:
        return compile_globs(setting, globs)

    def decide(self, record: Any, action: Any) -> str | None:
        name = action if isinstance(action, str) else ""
        if self.include is not None and not any(rx.match(name) for _, rx in self.include):
            return f"{self.key}: include"
        if self.exclude is not None:
            for glob, rx in self.exclude:
                if rx.match(name):
                    return f"{self.key}: exclude {glob}"
        for condition in self.where:
            if not condition.test(record):
                return f"{self.key}: where {condition.label}"
        return None


class EventFilters:
    """All ``event_filters``. A stream gets its own rule and the ``*`` rule; both must pass."""

    def __init__(self, spec: Mapping[str, Any] | None) -> None:
        if spec is not None and not isinstance(spec, Mapping):
            raise FilterError("event_filters: must be an object keyed by stream name or '*'")
        self._rules = {str(key): _Rule(str(key), value) for key, value in (spec or {}).items()}
        self._per_stream: dict[str, tuple[_Rule, ...]] = {}

    @property
    def paths(self) -> list[CompiledPath]:
        """Every ``where`` path: what the filters read of a record."""
        return [where.path for rule in self._rules.values() for where in rule.where]

    def rules_for(self, stream: str) -> tuple[_Rule, ...]:
        rules = self._per_stream.get(stream)
        if rules is None:
            rules = tuple(r for k, r in self._rules.items() if k in ("*", stream))
            self._per_stream[stream] = rules
        return rules

    def decide(self, stream: str, record: Any, activity: Mapping[str, Any]) -> str | None:
        """``None`` keeps the event; otherwise the label of the first rule that dropped it.

        ``include``/``exclude`` globs match the activity's ``action``; ``where`` paths address
        the same normalised record the mapping reads.
        """
        for rule in self.rules_for(stream):
            reason = rule.decide(record, activity.get("action"))
            if reason is not None:
                return reason
        return None


def stream_selector(globs: Sequence[str]) -> Callable[[str], bool]:
    """``streams``: case-insensitive globs of the stream names to send."""
    if not isinstance(globs, (list, tuple)) or not all(isinstance(g, str) for g in globs):
        raise FilterError("streams: must be a list of glob strings")
    pattern = re.compile("|".join(f"(?:{fnmatch.translate(g.lower())})" for g in globs) or "(?!)")
    return lambda stream: bool(pattern.match(stream.lower()))
