"""Every Amplitude tap's record shape, turned into Amplitude's canonical Export-API event.

The public Amplitude taps emit the same event very differently:

* Airbyte ``source-amplitude`` (via tap-airbyte-wrapper), graet / hotglue SDK taps: lower-case
  keys, property bags as objects, RFC 3339 times (``...+00:00``);
* PyPI ``tap-amplitude-api`` (singer-python): bags typed ``string``, so they arrive as Python
  ``repr`` text (``"{'plan': 'pro', 'ok': True, 'x': None}"``), ``amplitude_id``/``session_id``
  as floats, times ``2024-01-01T10:00:00.123000Z``;
* PyPI ``tap-amplitude`` 1.3.0 (singer-io, Snowflake share): UPPER-CASE column names
  (``EVENT_TYPE``, ``$INSERT_ID``), bags as JSON text, every NUMBER column as a float;
* raw Export-API lines: ``2020-02-15 01:00:00.123456`` times.

Records reach the sink with times as the tap wrote them (sinks.py skips the SDK's timestamp
parsing; times are normalised here), but a ``datetime`` or a ``Decimal`` can still arrive (from
stream maps, or another reader), so both are handled.

:func:`to_canonical` maps all of them onto one form, so mapping JSONPaths such as
``$.event_properties.plan`` or ``$.groups.company`` work whatever tap produced the record. What
each field becomes is written once (``_CONVERT``, :func:`_steps`, :func:`_fill_insert_id`) and
used by every path, all fields or only the read ones (:class:`Canonicalizer`):

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

Python-repr bags in the usual form are translated to JSON for orjson; the rest go to
``ast.literal_eval``, several times slower. :class:`Canonicalizer`, which the target runs,
converts only the fields that are read. Costs per tap shape: ``benchmarks/README.md``.
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

from target_planhat.codegen import Source
from target_planhat.dates import format_datetime, to_iso_utc
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


# --- what each field becomes: the one description every path uses ----------------------------

_Problems = Callable[[str], None]
_Convert = Callable[[Any, str, "_Problems | None"], Any]
_Step = tuple[Any, Any, "_Convert | None"]  # raw key, canonical field, conversion (None: plain)
_Run = Callable[[Mapping[str, Any], "_Problems | None"], dict[str, Any]]


def _bag_text(value: str, field: str, problems: _Problems | None) -> Any:
    """A bag given as text: parsed, or kept as it is and reported ``unparsed_<field>``."""
    parsed = parse_bag(value)
    if parsed is _UNPARSED:
        if problems is not None:
            problems("unparsed_" + field)
        return value
    return parsed


def _time_miss(value: Any, field: str, problems: _Problems | None) -> Any:
    """Normalise a non-blank time value not in :data:`_TIME_CACHE` (and cache it if it can be)."""
    try:
        iso = format_datetime(value) if type(value) is _DATETIME else to_iso_utc(value)
    except Exception:  # never raise: report and pass the value through
        if problems is not None:
            problems("unparsed_time_" + field)
        return value
    if type(value) in _CACHEABLE_TIMES:
        if len(_TIME_CACHE) >= _TIME_CACHE_MAX:
            _TIME_CACHE.clear()
        _TIME_CACHE[value] = iso
    return iso


def _time(value: Any, field: str, problems: _Problems | None) -> Any:
    """A time field: ISO 8601 UTC ``Z``; blank is None; unparsable is kept and reported."""
    if value is None or value == "":
        return None
    if type(value) in _CACHEABLE_TIMES:
        cached = _TIME_CACHE.get(value)
        if cached is not None:
            return cached
    return _time_miss(value, field, problems)


def _bag(value: Any, field: str, problems: _Problems | None) -> Any:
    """A property bag: text is parsed (or kept and reported); anything else is left as it is."""
    if type(value) is str:
        return _bag_text(value, field, problems)
    return value


def _id(value: Any, _field: str, _problems: _Problems | None) -> Any:
    """An id-like number: an integral float or Decimal becomes an int."""
    return _id_number(value)


# canonical field -> its conversion. Every other field is plain: only a Decimal changes (into an
# int or a float, see _decimal).
_CONVERT: dict[str, _Convert] = {
    **dict.fromkeys(TIME_FIELDS, _time),
    **dict.fromkeys(BAG_FIELDS, _bag),
    **dict.fromkeys(ID_FIELDS, _id),
}


def _fill_insert_id(
    out: dict[str, Any], record: Mapping[str, Any], aliases: tuple[Any, ...]
) -> None:
    """Set ``out["$insert_id"]`` from the first alias (raw keys, by preference) with a value."""
    for key in aliases:
        value = record[key]
        if type(value) is _DECIMAL:  # aliases are plain fields
            value = _decimal(value)
        if value is not None and value != "":
            out["$insert_id"] = value
            return


# --- plans: the description applied to one key layout -----------------------------------------


def _steps(
    layout: tuple[Any, ...], needed: frozenset[str] | None, selected: frozenset[str] | None
) -> tuple[list[_Step], dict[Any, Any], dict[Any, Any]]:
    """Which raw key feeds which field, for records whose keys are ``layout``, in order.

    Returns the steps ``(raw key, field, conversion or None for plain)`` of the ``selected``
    fields (None: all), and for every ``needed`` field its first spelling and its exactly
    lower-case spelling. Keys are lower-cased; the exactly lower-case spelling of a name wins
    (in the place of the first spelling), else the first spelling. A field whose exact spelling
    comes after another spelling gets two steps: both values are converted (and reported), the
    second keeps the first's place.
    """
    steps: list[_Step] = []
    first: dict[Any, Any] = {}
    exact: dict[Any, Any] = {}
    key_cache = _KEY_CACHE
    for key in layout:
        canonical = key_cache.get(key)
        if canonical is None:
            canonical = _canonical_key(key)
        if needed is not None and canonical not in needed:
            continue
        if canonical == key:
            exact[canonical] = key
        elif canonical in first:
            continue  # an earlier spelling is taken; only the exact one may still replace it
        first.setdefault(canonical, key)
        if selected is None or canonical in selected:
            steps.append((key, canonical, _CONVERT.get(canonical)))
    return steps, first, exact


def _runner(steps: list[_Step], aliases: tuple[Any, ...]) -> _Run:
    """The plain way to apply ``steps``: a loop over the values, converting in record order.

    A layout's first records take it; :func:`_compiled` is the same plan as straight-line code.
    """
    keys = [key for key, _name, _convert in steps]
    names = [name for _key, name, _convert in steps]
    converts = [convert for _key, _name, convert in steps]

    def run(record: Mapping[str, Any], problems: _Problems | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, name, convert in zip(keys, names, converts, strict=True):
            value = record[key]
            if convert is not None:
                value = convert(value, name, problems)
            elif type(value) is _DECIMAL:
                value = _decimal(value)
            out[name] = value  # a repeated field keeps its first place and its last value
        if aliases:
            _fill_insert_id(out, record, aliases)
        return out

    return run


# Per conversion, the statement a compiled plan runs on one value: the conversion's own function,
# called only when the value may change (a str bag, a time not in the cache, a Decimal).
_STATEMENT: dict[_Convert | None, str] = {
    None: "if type({v}) is _DECIMAL: {v} = _decimal({v})",
    # _time inline: the cache, then blank, then the miss (a time is rarely seen twice when each
    # event has its own, so a call of _time would look the cache up a second time per miss).
    _time: (
        "c = _time_get({v}) if type({v}) in _CACHEABLE_TIMES else None\n"
        "if c is not None: {v} = c\n"
        "elif {v} is None or {v} == _BLANK: {v} = None\n"
        "else: {v} = _time_miss({v}, {n}, problems)"
    ),
    _bag: "if type({v}) is str: {v} = _bag({v}, {n}, problems)",
    _id: "{v} = _id({v}, {n}, problems)",
}
_HELPERS: dict[str, Any] = {
    "_DECIMAL": _DECIMAL,
    "_decimal": _decimal,
    "_time_get": _TIME_CACHE.get,  # the cache is cleared, never replaced
    "_CACHEABLE_TIMES": _CACHEABLE_TIMES,
    "_time_miss": _time_miss,
    "_BLANK": "",
    "_bag": _bag,
    "_id": _id,
    "_fill_insert_id": _fill_insert_id,
}


def _compiled(steps: list[_Step], aliases: tuple[Any, ...]) -> _Run:
    """:func:`_runner`'s plan as straight-line code: one fetch of all values, no per-key loop or
    dispatch, and a dict display (about twice as fast; ``benchmarks/README.md``). Keys and field
    names are bound by :mod:`target_planhat.codegen`, never written into the source.
    """
    count = len(steps)
    values = [f"v{i}" for i in range(count)]
    source = Source("run", ("record", "problems"), ("c", "out", "str", "type", *values), _HELPERS)
    if count:
        # itemgetter of one key returns the value itself, of several a tuple
        fetch = source.bind(itemgetter(*[key for key, _name, _convert in steps]))
        source.line(f"{', '.join(values)} = {fetch}(record)")
    names = [source.bind(name) for _key, name, _convert in steps]
    for value, name, (_key, _name, convert) in zip(values, names, steps, strict=True):
        for line in _STATEMENT[convert].format(v=value, n=name).splitlines():
            source.line(line)
    # A dict display keeps a repeated key's first place and last value, like the loop.
    pairs = ", ".join(f"{name}: {value}" for name, value in zip(names, values, strict=True))
    source.line(f"out = {{{pairs}}}")
    if aliases:
        source.line(f"_fill_insert_id(out, record, {source.bind(aliases)})")
    source.line("return out")
    run: _Run = source.function()
    return run


class _Plan:
    """How records whose keys are ``layout`` become canonical: ``run(record, problems)``."""

    __slots__ = ("layout", "run")

    def __init__(self, layout: tuple[Any, ...], run: _Run) -> None:
        self.layout = layout
        self.run = run


_NO_LAYOUT = (object(),)  # no record has this key layout


class Canonicalizer:
    """Records in Amplitude's canonical form, restricted to the top-level fields someone reads.

    The target reads only a handful of fields (its mapping's, filters' and dedupe key's
    JSONPaths), yet a record has ~25-50. ``Canonicalizer(fields)(record, problems)`` returns
    ``to_canonical(record, problems)`` cut down to ``fields`` (canonical, lower-case names) -
    same values, types and key order - converting only those. ``None`` means all fields:
    :func:`to_canonical` is a ``Canonicalizer(None)``.

    ``problems`` is called only for the selected fields (in record order, as often as the
    whole conversion would call it for them): a bag or time nobody reads that does not parse is
    not reported, nor counted anywhere.

    ``"$insert_id"`` is still filled from ``insert_id`` / ``_insert_id`` (any spelling) when the
    record has no ``$insert_id``, even if those aliases are not selected; they appear in the
    output only if selected.

    How: which raw keys feed which field depends only on the record's key layout,
    ``tuple(record)``, and a stream's records share one or a few layouts. A layout's plan
    (:func:`_steps`) is worked out the first time it is seen and run by a loop
    (:func:`_runner`); from its :attr:`COMPILE_AFTER`-th record on, by the same plan compiled
    to straight-line code (:func:`_compiled`, ~0.1 ms to compile). Plans are kept in a bounded
    cache (cleared when full); the last plan is checked first, which saves hashing the layout.
    Thread-safe enough: racing calls at worst work a layout out twice.
    """

    __slots__ = ("_fill", "_last", "_needed", "_plans", "fields")

    # Records of one layout run by the loop before its plan is compiled, which the compiled
    # function wins back in some tens of records.
    COMPILE_AFTER = 16
    # Distinct key layouts remembered. Singer streams have one or a few.
    PLANS_MAX = 256

    def __init__(self, fields: Iterable[str] | None = None) -> None:
        self.fields: frozenset[str] | None = None if fields is None else frozenset(fields)
        # "$insert_id" is filled from its aliases, which are needed even when not selected.
        self._fill = self.fields is None or "$insert_id" in self.fields
        self._needed: frozenset[str] | None = None
        if self.fields is not None:
            self._needed = self.fields | frozenset(INSERT_ID_ALIASES if self._fill else ())
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        self._last = _Plan(_NO_LAYOUT, _runner([], ()))  # never run: no record has this layout

    def __repr__(self) -> str:
        fields = None if self.fields is None else sorted(self.fields)
        return f"Canonicalizer({fields!r})"

    def __call__(
        self, record: Mapping[str, Any], problems: _Problems | None = None
    ) -> dict[str, Any]:
        """Return the selected fields of ``record`` in canonical form; see the class doc."""
        layout = tuple(record)
        plan = self._last
        if plan.layout != layout:  # usually equal, element by element, without hashing
            plans = self._plans
            found = plans.get(layout)
            if found is None:
                if len(plans) >= self.PLANS_MAX:
                    plans.clear()
                found = plans[layout] = self._plan(layout)
            plan = self._last = found
        return plan.run(record, problems)

    def _plan(self, layout: tuple[Any, ...]) -> _Plan:
        """The plan for ``layout``: run by the loop, compiled once it has been used enough."""
        steps, first, exact = _steps(layout, self._needed, self.fields)
        aliases: tuple[Any, ...] = ()
        if self._fill and "$insert_id" not in first:
            # The value the field holds: the exact spelling's if any, else the first one's.
            aliases = tuple(
                exact.get(alias, first[alias]) for alias in INSERT_ID_ALIASES if alias in first
            )
        loop = _runner(steps, aliases)
        left = self.COMPILE_AFTER

        def warming_up(record: Mapping[str, Any], problems: _Problems | None) -> dict[str, Any]:
            nonlocal left
            left -= 1
            if left <= 0:
                plan.run = _compiled(steps, aliases)
            return loop(record, problems)

        plan = _Plan(layout, warming_up)
        return plan


_EVERY_FIELD = Canonicalizer(None)


def to_canonical(record: Mapping[str, Any], problems: _Problems | None = None) -> dict[str, Any]:
    """Return a new dict holding ``record`` in Amplitude's lower-case Export-API form.

    ``problems`` is called with a short code (``unparsed_<field>``, ``unparsed_time_<field>``)
    for each value that could not be normalised; such values are passed through unchanged.
    """
    return _EVERY_FIELD(record, problems)
