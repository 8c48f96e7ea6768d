"""Every Amplitude tap's record shape, turned into Amplitude's canonical Export-API event.

The public Amplitude taps emit the same event very differently (see ``amplitude-taps.md``):

* Airbyte ``source-amplitude`` (via tap-airbyte-wrapper), graet / hotglue SDK taps: lower-case
  keys, property bags as objects, RFC 3339 times (``...+00:00``);
* PyPI ``tap-amplitude-api`` (singer-python): bags typed ``string``, so they arrive as Python
  ``repr`` text (``"{'plan': 'pro', 'ok': True, 'x': None}"``), ``amplitude_id``/``session_id``
  as floats, times ``2024-01-01T10:00:00.123000Z``;
* PyPI ``tap-amplitude`` 1.3.0 (singer-io, Snowflake share): UPPER-CASE column names
  (``EVENT_TYPE``, ``$INSERT_ID``), bags as JSON text, every NUMBER column as a float;
* raw Export-API lines: ``2020-02-15 01:00:00.123456`` times.

By the time the target's sink sees a record, the Singer SDK has already parsed ``format:
date-time`` strings into ``datetime`` objects and may hand JSON numbers over as ``Decimal``.

:func:`to_canonical` maps all of them onto one form, so mapping JSONPaths such as
``$.event_properties.plan`` or ``$.groups.company`` work whatever tap produced the record:

* top-level keys are lower-cased (``EVENT_TYPE`` -> ``event_type``, ``$INSERT_ID`` ->
  ``$insert_id``); unknown columns are kept, lower-cased too. If a record carries the same name
  in two spellings (``user_id`` and ``USER_ID``), the exactly lower-case one wins.
* the insert id: the Export API calls it ``$insert_id``, ingestion ``insert_id``, Fivetran
  ``_insert_id``. Whenever a record has one of those and no ``$insert_id``, ``$insert_id`` is
  added (the original key is kept as well).
* property bags (``event_properties``, ``user_properties``, ``group_properties``, ``groups``,
  ``data``, ``global_user_properties``, ``plan``) that arrive as text become objects: JSON first
  (orjson, then the stdlib for ``NaN``/``Infinity``, which become ``None`` because JSON has no such
  values and Planhat would get ``null`` anyway), then Python ``repr`` via ``ast.literal_eval``
  (never ``eval``; input capped at :data:`MAX_BAG_CHARS`; result must be JSON-like: dict/list/str/
  int/float/bool/None with string keys, tuples become lists). A blank string becomes ``{}``;
  ``None`` stays ``None``. A bag that does not parse stays the original string and
  ``problems("unparsed_<field>")`` is called.
* time fields (``event_time``, ``client_event_time``, ``client_upload_time``,
  ``server_upload_time``, ``server_received_time``, ``processed_time``, ``user_creation_time``)
  become ``YYYY-MM-DDTHH:MM:SS[.mmm]Z`` via :func:`target_planhat.dates.to_iso_utc`. ``None``
  and ``""`` become ``None``. An unparsable value stays as it was and
  ``problems("unparsed_time_<field>")`` is called.
* id-like numbers (``amplitude_id``, ``session_id``, ``event_id``, ``app``, ``$schema``) given
  as integral floats or Decimals become ``int``; every other top-level ``Decimal`` becomes
  ``int`` if integral, else ``float`` (non-finite Decimals become ``None``). Decimals *inside*
  object bags are left alone (walking every bag would cost more than the rest of this function);
  the target's JSON encoder handles them. Bags parsed from text never contain Decimals.

:func:`to_canonical` never mutates its input and never raises. The returned dict is new, but
bags that already were objects are the input's own objects (not copied, for speed): callers must
not mutate them in place. Bags parsed from text are fresh objects every call. A Python-repr bag
holding ``nan``/``inf`` is not a literal and is reported unparsed. Strings are passed through as
they are (lone surrogates included: the encoder decides).

Speed (per record, ~45 fields, benchmarks/shape_cost.py): ~5 us for object-bag shapes, ~8 us for
the Snowflake shape, ~15 us for Python-repr bags (the usual form is translated to JSON for orjson;
the rest goes to ``ast.literal_eval`` at ~10-20 us a bag). :class:`Canonicalizer`, which the
target runs, converts only the fields that are read: ~1 / ~3.5 / ~11 us.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from operator import itemgetter
from typing import Any

import orjson

from target_planhat.dates import _format as _format_datetime
from target_planhat.dates import to_iso_utc
from target_planhat.validate import may_be_non_finite

__all__ = [
    "BAG_FIELDS",
    "ID_FIELDS",
    "MAX_BAG_CHARS",
    "TIME_FIELDS",
    "Canonicalizer",
    "parse_bag",
    "to_canonical",
]

TIME_FIELDS = frozenset(
    {
        "event_time",
        "client_event_time",
        "client_upload_time",
        "server_upload_time",
        "server_received_time",
        "processed_time",
        "user_creation_time",
    }
)
BAG_FIELDS = frozenset(
    {
        "event_properties",
        "user_properties",
        "group_properties",
        "groups",
        "data",
        "global_user_properties",
        "plan",
    }
)
ID_FIELDS = frozenset({"amplitude_id", "session_id", "event_id", "app", "$schema"})
# Spellings of Amplitude's dedupe key other than the Export API's "$insert_id", by preference.
INSERT_ID_ALIASES = ("insert_id", "_insert_id")

# Longest bag text we try to parse. Planhat caps one event at 1 MB, and literal_eval's cost and
# memory grow with the input, so anything beyond this is reported unparsed instead.
MAX_BAG_CHARS = 1_000_000

_PLAIN, _TIME, _BAG, _ID = 0, 1, 2, 3
_KIND: dict[str, int] = {}
_KIND.update(dict.fromkeys(TIME_FIELDS, _TIME))
_KIND.update(dict.fromkeys(BAG_FIELDS, _BAG))
_KIND.update(dict.fromkeys(ID_FIELDS, _ID))

# raw key -> canonical key. Bounded so a stream of ever-new keys cannot grow it without limit.
_KEY_CACHE: dict[str, str] = {}
_KEY_CACHE_MAX = 4096

_DATETIME = dt.datetime
_DECIMAL = Decimal
_CACHEABLE_TIMES = frozenset({str, dt.datetime})
_UNPARSED = object()

# time value (text or datetime) -> its ISO form. Within one event, event_time usually equals
# client_event_time and server_upload_time equals server_received_time, and user_creation_time
# repeats for every event of a user, so a small cache saves a parse+format (~1 us) per hit.
# Bounded: cleared when full. Values are immutable, so sharing them is safe.
_TIME_CACHE: dict[Any, str] = {}
_TIME_CACHE_MAX = 8192

# Python-repr bag text -> the parsed bag as JSON bytes. literal_eval costs ~10 us for a small bag
# while user_properties / group_properties / groups repeat across a user's events, so each
# distinct text is parsed once and later copies come from orjson.loads (fresh objects every time,
# so callers may mutate what they get). Bounded: cleared when full; long texts are not cached.
_REPR_CACHE: dict[str, bytes] = {}
_REPR_CACHE_MAX = 4096
_REPR_CACHE_TEXT_MAX = 8192


def _canonical_key(key: Any) -> Any:
    if not isinstance(key, str):
        return key
    canonical = key.lower()
    if len(_KEY_CACHE) < _KEY_CACHE_MAX:
        _KEY_CACHE[key] = canonical
    return canonical


def _decimal(value: Decimal) -> int | float | None:
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def _id_number(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        if value.is_integer():
            return int(value)
        return value
    if kind is Decimal:
        return _decimal(value)
    return value


_MAX_REPR_DEPTH = 200


def _json_like(value: Any, depth: int = 0) -> Any:
    """Check a literal_eval result is JSON-like; tuples become lists. Raise ValueError if not."""
    if depth > _MAX_REPR_DEPTH:
        raise ValueError("too deep")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("non-string key")
            out[key] = _json_like(item, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_json_like(item, depth + 1) for item in value]
    raise ValueError(f"not JSON-like: {type(value).__name__}")


def _none_constant(_name: str) -> None:
    return None


# The usual Python-repr bag: single-quoted strings, no double quote or backslash anywhere. Such
# a string runs from one ' to the next, so splitting on them finds every string exactly as
# Python's tokenizer would.
_SINGLE_QUOTED = re.compile(r"('[^']*')")
_LONG_DIGITS = re.compile(r"\d{19}")  # orjson reads integers beyond 64 bits as floats
_JSON_WORDS = re.compile(r"true|false|null")  # JSON's, not Python's: not a Python literal


def _repr_as_json(text: str) -> str | None:
    """The JSON text of a Python-repr bag in the usual form, or None to leave it to
    ``ast.literal_eval``: several times faster than it (~3 vs ~13 us for a small bag).

    Only the simple, frequent form is translated; anything else returns None, and JSON that
    orjson then refuses also goes to literal_eval, so results never differ from it (held to
    that by a property test): text with ``"``, a backslash or NUL, integers of 19+ digits,
    JSON's own ``true``/``false``/``null`` outside strings, or more than 200 brackets (the
    depth literal_eval results are allowed).
    """
    if '"' in text or "\\" in text or "\x00" in text:
        return None
    if text.count("{") + text.count("[") > _MAX_REPR_DEPTH:
        return None
    parts = _SINGLE_QUOTED.split(text)  # outside, string, outside, ..., outside
    outside = "\x00".join(parts[0::2])
    if _LONG_DIGITS.search(outside) or _JSON_WORDS.search(outside):
        return None
    outside = outside.replace("True", "true").replace("False", "false").replace("None", "null")
    parts[0::2] = outside.split("\x00")
    if len(parts) > 1:
        parts[1::2] = "\x00".join(parts[1::2]).replace("'", '"').split("\x00")
    return "".join(parts)


def _parse_repr(text: str) -> Any:
    cached = _REPR_CACHE.get(text)
    if cached is not None:
        return orjson.loads(cached)
    as_json = _repr_as_json(text)
    if as_json is not None:
        try:
            value = orjson.loads(as_json)
        except orjson.JSONDecodeError:
            pass  # not the simple form after all: literal_eval decides
        else:
            if len(text) <= _REPR_CACHE_TEXT_MAX:
                if len(_REPR_CACHE) >= _REPR_CACHE_MAX:
                    _REPR_CACHE.clear()
                _REPR_CACHE[text] = as_json.encode()
            return value
    try:
        value = _json_like(ast.literal_eval(text))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _UNPARSED
    if len(text) <= _REPR_CACHE_TEXT_MAX:
        try:
            encoded = orjson.dumps(value)
        except TypeError:  # e.g. an int beyond 64 bits: fine to return, not to cache
            return value
        # literal_eval results are at most _MAX_REPR_DEPTH deep, below the walk's own limit.
        if b"null" in encoded and may_be_non_finite(value):
            return value  # orjson wrote inf (a literal like 1e400) as null: not to cache
        if len(_REPR_CACHE) >= _REPR_CACHE_MAX:
            _REPR_CACHE.clear()
        _REPR_CACHE[text] = encoded
    return value


def parse_bag(text: str) -> Any:
    """Parse a property bag given as JSON or Python-repr text; return ``_UNPARSED`` if neither.

    The result is a dict, a list or ``None`` (JSON ``null``); scalars are not bags.
    """
    stripped = text.strip()
    if not stripped:
        return {}
    if len(stripped) > MAX_BAG_CHARS:
        return _UNPARSED
    first = stripped[0]
    if first not in "{[n":  # objects, arrays, and the JSON literal null
        return _UNPARSED
    try:
        value = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        value = _UNPARSED
        if "NaN" in stripped or "Infinity" in stripped:
            try:
                value = json.loads(stripped, parse_constant=_none_constant)
            except (ValueError, RecursionError):
                value = _UNPARSED
    if value is _UNPARSED:
        value = _parse_repr(stripped)
    if value is None or isinstance(value, (dict, list)):
        return value
    return _UNPARSED


def _time_miss(value: Any, field: str, problems: Callable[[str], None] | None) -> Any:
    """Normalise a non-blank time value not in :data:`_TIME_CACHE` (and cache it if it can be).

    The cache hit is inlined by the callers, as it is most of the calls; this is the ~1 us rest.
    """
    try:
        iso = _format_datetime(value) if type(value) is _DATETIME else to_iso_utc(value)
    except Exception:  # never raise: report and pass the value through
        if problems is not None:
            problems("unparsed_time_" + field)
        return value
    if type(value) in _CACHEABLE_TIMES:
        if len(_TIME_CACHE) >= _TIME_CACHE_MAX:
            _TIME_CACHE.clear()
        _TIME_CACHE[value] = iso
    return iso


def to_canonical(
    record: Mapping[str, Any], problems: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Return a new dict holding ``record`` in Amplitude's lower-case Export-API form.

    ``problems`` is called with a short code (``unparsed_<field>``, ``unparsed_time_<field>``)
    for each value that could not be normalised; such values are passed through unchanged.
    """
    out: dict[str, Any] = {}
    key_cache = _KEY_CACHE
    time_cache = _TIME_CACHE
    kinds = _KIND
    for key, value in record.items():
        canonical = key_cache.get(key)
        if canonical is None:
            canonical = _canonical_key(key)
        if canonical != key and canonical in out:
            continue  # an exactly lower-case spelling of this name wins
        kind = kinds.get(canonical, _PLAIN)
        if kind == _PLAIN:
            if type(value) is Decimal:
                value = _decimal(value)
        elif kind == _TIME:
            if value is None or value == "":
                value = None
            else:
                cached = time_cache.get(value) if type(value) in _CACHEABLE_TIMES else None
                value = cached if cached is not None else _time_miss(value, canonical, problems)
        elif kind == _BAG:
            if type(value) is str:
                value = _bag_text(value, canonical, problems)
        else:
            value = _id_number(value)
        out[canonical] = value
    if "$insert_id" not in out:
        for alias in INSERT_ID_ALIASES:
            alias_value = out.get(alias)
            if alias_value is not None and alias_value != "":
                out["$insert_id"] = alias_value
                break
    return out


# --- Canonicalizer: to_canonical for the fields someone reads --------------------------------

_Problems = Callable[[str], None]
_Run = Callable[[Mapping[str, Any], _Problems | None], dict[str, Any]]


def _bag_text(value: str, field: str, problems: _Problems | None) -> Any:
    """A bag given as text: parsed, or kept as it is and reported ``unparsed_<field>``."""
    parsed = parse_bag(value)
    if parsed is _UNPARSED:
        if problems is not None:
            problems("unparsed_" + field)
        return value
    return parsed


def _convert(value: Any, field: str, kind: int, problems: _Problems | None) -> Any:
    """One value of a time/bag/id ``field``, as to_canonical's loop converts it."""
    if kind == _TIME:
        if value is None or value == "":
            return None
        cached = _TIME_CACHE.get(value) if type(value) in _CACHEABLE_TIMES else None
        return cached if cached is not None else _time_miss(value, field, problems)
    if kind == _BAG:
        return _bag_text(value, field, problems) if type(value) is str else value
    return _id_number(value)


def _fill_insert_id(
    out: dict[str, Any], record: Mapping[str, Any], aliases: tuple[Any, ...]
) -> None:
    """Set ``out["$insert_id"]`` from the first alias (raw keys, by preference) with a value."""
    for key in aliases:
        value = record[key]
        if type(value) is _DECIMAL:  # aliases are plain fields: to_canonical converts Decimals
            value = _decimal(value)
        if value is not None and value != "":
            out["$insert_id"] = value
            return


# Per-kind statements of a compiled plan, on local ``v{i}`` (value) and global ``n{i}`` (field).
_COMPILED_STEP = {
    _PLAIN: "    if type(v{i}) is _DECIMAL: v{i} = _decimal(v{i})",
    _TIME: (
        "    if v{i} is None or v{i} == '': v{i} = None\n"
        "    else:\n"
        "        c = _time_get(v{i}) if type(v{i}) in _CACHEABLE_TIMES else None\n"
        "        v{i} = c if c is not None else _time_miss(v{i}, n{i}, problems)"
    ),
    _BAG: "    if type(v{i}) is str: v{i} = _bag_text(v{i}, n{i}, problems)",
    _ID: "    v{i} = _id_number(v{i})",
}


def _compile_plan(steps: list[tuple[Any, Any, int]], aliases: tuple[Any, ...]) -> _Run:
    """Generate and compile the function for one key layout: straight-line code, no per-key
    loop or dispatch. The source holds no record data (keys and field names are globals of the
    generated code, named by position), so any key is safe.

    ``steps`` are to_canonical's assignments to selected fields, in record order: (raw key,
    field, kind); a field whose exact spelling comes after another spelling has two (to_canonical
    converts and reports both values, the second keeping the first's place). ``aliases`` are the
    raw keys of the insert-id aliases, by preference, when "$insert_id" is selected but the
    layout has no spelling of it.
    """
    count = len(steps)
    namespace: dict[str, Any] = {
        # itemgetter of one key returns the value itself, of several a tuple
        "_fetch": itemgetter(*[key for key, _name, _kind in steps]) if count else None,
        "_aliases": aliases,
        "_DECIMAL": _DECIMAL,
        "_decimal": _decimal,
        "_time_get": _TIME_CACHE.get,  # the cache is cleared, never replaced
        "_CACHEABLE_TIMES": _CACHEABLE_TIMES,
        "_time_miss": _time_miss,
        "_bag_text": _bag_text,
        "_id_number": _id_number,
        "_fill_insert_id": _fill_insert_id,
    }
    lines = ["def run(record, problems):"]
    if count:
        lines.append("    " + ", ".join(f"v{i}" for i in range(count)) + " = _fetch(record)")
    for i, (_key, name, kind) in enumerate(steps):
        namespace[f"n{i}"] = name
        lines.append(_COMPILED_STEP[kind].format(i=i))
    # A dict display keeps a repeated key's first place and last value, like to_canonical.
    lines.append("    out = {" + ", ".join(f"n{i}: v{i}" for i in range(count)) + "}")
    if aliases:
        lines.append("    _fill_insert_id(out, record, _aliases)")
    lines.append("    return out")
    exec(compile("\n".join(lines), "<shapes.Canonicalizer plan>", "exec"), namespace)
    return namespace["run"]


class _Plan:
    """A compiled :class:`Canonicalizer` function for records whose keys are ``layout``."""

    __slots__ = ("layout", "run")

    def __init__(self, layout: tuple[Any, ...], run: _Run) -> None:
        self.layout = layout
        self.run = run


_NO_LAYOUT = (object(),)  # no record has this key layout


class Canonicalizer:
    """:func:`to_canonical` restricted to the top-level fields someone reads.

    The target reads only a handful of fields (its mapping's, filters' and dedupe key's
    JSONPaths), yet :func:`to_canonical` converts all ~25-50 of a record's. ``Canonicalizer(
    fields)(record, problems)`` returns exactly ``{k: v for k, v in to_canonical(record,
    problems).items() if k in fields}`` - same values, types and key order - at less than
    half the cost for a handful of fields. ``fields`` are canonical (lower-case) names; ``None``
    means all fields, and then the call *is* :func:`to_canonical`.

    ``problems`` is called only for the selected fields (in the same order and as often as
    :func:`to_canonical` would call it for them): a bag or time nobody reads that does not
    parse is not reported, nor counted anywhere.

    ``"$insert_id"`` is still filled from ``insert_id`` / ``_insert_id`` (any spelling) when the
    record has no ``$insert_id``, even if those aliases are not selected; they appear in the
    output only if selected.

    How: which raw keys feed which selected field (lower-casing, "exactly lower-case spelling
    wins, else the first spelling", the aliases) depends only on the record's key layout,
    ``tuple(record)``, and a stream's records share one or a few layouts. A layout's first
    :attr:`COMPILE_AFTER` - 1 records take a direct pass (to_canonical's loop, converting only
    the needed fields); then its plan is worked out once and compiled to a function that fetches
    and converts just those values. Layouts are counted and plans kept in a bounded cache
    (cleared when full); the last plan is checked first, which saves hashing the layout. A
    stream whose layout never repeats thus costs a direct pass per record, less than
    :func:`to_canonical`. Thread-safe enough: racing calls at worst compile a layout twice.
    """

    __slots__ = ("_drop", "_fill", "_last", "_needed", "_plans", "fields")

    # Records of one layout taken by the direct pass before its plan is compiled (~0.1 ms, which
    # the compiled function wins back in some tens of records).
    COMPILE_AFTER = 16
    # Distinct key layouts remembered (counted or compiled). Singer streams have one or a few.
    PLANS_MAX = 256

    def __init__(self, fields: Iterable[str] | None = None) -> None:
        self.fields: frozenset[str] | None = None if fields is None else frozenset(fields)
        selected = self.fields or frozenset()
        # "$insert_id" is filled from its aliases, which are needed even when not selected
        # (and dropped from the output then).
        self._fill = "$insert_id" in selected
        self._drop = tuple(a for a in INSERT_ID_ALIASES if a not in selected) if self._fill else ()
        self._needed = selected | frozenset(self._drop)
        self._plans: dict[tuple[Any, ...], _Plan | int] = {}
        self._last = _Plan(_NO_LAYOUT, to_canonical)  # never run: no record has this layout

    def __repr__(self) -> str:
        fields = None if self.fields is None else sorted(self.fields)
        return f"Canonicalizer({fields!r})"

    def __call__(
        self, record: Mapping[str, Any], problems: _Problems | None = None
    ) -> dict[str, Any]:
        """Return the selected fields of ``to_canonical(record, problems)``; see the class doc."""
        if self.fields is None:
            return to_canonical(record, problems)
        layout = tuple(record)
        plan = self._last
        if plan.layout != layout:  # usually equal, element by element, without hashing
            plans = self._plans
            entry = plans.get(layout)
            if type(entry) is _Plan:
                plan = entry
            else:
                seen = (entry or 0) + 1
                if len(plans) >= self.PLANS_MAX:
                    plans.clear()
                if seen < self.COMPILE_AFTER:
                    plans[layout] = seen
                    return self._direct(record, problems)
                plan = plans[layout] = self._plan(layout)
            self._last = plan
        return plan.run(record, problems)

    def _direct(self, record: Mapping[str, Any], problems: _Problems | None) -> dict[str, Any]:
        """to_canonical's loop for the needed fields only (kept in step by the tests)."""
        needed = self._needed
        selected = self.fields
        assert selected is not None
        key_cache = _KEY_CACHE
        out: dict[str, Any] = {}
        for key, value in record.items():
            canonical = key_cache.get(key)
            if canonical is None:
                canonical = _canonical_key(key)
            if canonical not in needed:
                continue
            if canonical != key and canonical in out:
                continue  # an exactly lower-case spelling of this name wins
            kind = _KIND.get(canonical, _PLAIN)
            if kind != _PLAIN:
                value = _convert(value, canonical, kind, problems)
            elif type(value) is _DECIMAL:
                value = _decimal(value)
            out[canonical] = value
        if self._fill and "$insert_id" not in out:
            for alias in INSERT_ID_ALIASES:
                alias_value = out.get(alias)
                if alias_value is not None and alias_value != "":
                    out["$insert_id"] = alias_value
                    break
        for alias in self._drop:
            out.pop(alias, None)
        return out

    def _plan(self, layout: tuple[Any, ...]) -> _Plan:
        """Work out and compile the plan for records whose keys are ``layout``, in order."""
        selected = self.fields
        assert selected is not None
        needed = self._needed
        steps: list[tuple[Any, Any, int]] = []
        first: dict[Any, Any] = {}  # needed field -> its first spelling (to_canonical's out key)
        exact: dict[Any, Any] = {}  # needed field -> its exactly lower-case spelling, if any
        for key in layout:
            canonical = _KEY_CACHE.get(key)
            if canonical is None:
                canonical = _canonical_key(key)
            if canonical not in needed:
                continue
            if canonical == key:
                exact[canonical] = key
            elif canonical in first:
                continue  # to_canonical skips it: an earlier spelling is already in its out
            first.setdefault(canonical, key)
            if canonical in selected:
                # A later exact spelling is a second step: to_canonical converts (and reports)
                # both values, the second overwriting the first in the first one's place.
                steps.append((key, canonical, _KIND.get(canonical, _PLAIN)))
        aliases: tuple[Any, ...] = ()
        if self._fill and "$insert_id" not in first:
            # to_canonical reads out[alias]: the exact spelling's value if any, else the first.
            aliases = tuple(
                exact.get(alias, first[alias]) for alias in INSERT_ID_ALIASES if alias in first
            )
        return _Plan(layout, _compile_plan(steps, aliases))
