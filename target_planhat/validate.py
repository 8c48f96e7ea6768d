"""Check an activity and encode it exactly as it will be sent.

Planhat's analytics endpoint answers 200 to anything and silently drops what it cannot use, so
this is the last place a bad activity can be caught. Encoding happens here, once: the bytes that
pass the size check are the bytes that go into the POST body and the dry-run file.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import orjson

from target_planhat.dates import to_iso_utc
from target_planhat.errors import InvalidActivity

DEFAULT_MAX_EVENT_BYTES = 1_000_000

_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS
# The same without OPT_NON_STR_KEYS, which refuses a non-str key instead of slowing every dict.
_STR_KEY_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
_MISSING = object()
_isfinite = math.isfinite
_fromisoformat = dt.datetime.fromisoformat


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidActivity("non_finite_number", f"number {value} is not finite")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidActivity("invalid_utf8", "a bytes value is not valid UTF-8") from None
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


# orjson refuses to encode deeper than this (its ``Recursion limit reached``); the walk below stops
# there too, so a 1,000-level record is rejected as ``too_deep`` instead of overflowing the stack
# (254 frames stay far below Python's recursion limit).
MAX_DEPTH = 254


def _find_non_finite(value: Any, where: str, depth: int = 0) -> str | None:
    """Path of the first NaN/Infinity inside ``value``: orjson would quietly write ``null``.

    Raises ``InvalidActivity("too_deep")`` past :data:`MAX_DEPTH` levels of containers.
    """
    kind = type(value)
    if kind is float:
        return None if math.isfinite(value) else where
    if kind is dict:
        if depth >= MAX_DEPTH:
            raise InvalidActivity("too_deep", f"nested more than {MAX_DEPTH} levels deep")
        for key, item in value.items():
            item_kind = type(item)
            if item_kind is str or item_kind is int or item_kind is bool or item is None:
                continue
            found = _find_non_finite(item, f"{where}.{key}", depth + 1)
            if found:
                return found
    elif kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            raise InvalidActivity("too_deep", f"nested more than {MAX_DEPTH} levels deep")
        for index, item in enumerate(value):
            if type(item) is not str:
                found = _find_non_finite(item, f"{where}[{index}]", depth + 1)
                if found:
                    return found
    elif isinstance(value, float) and not math.isfinite(value):
        return where
    return None


def _check_finite(info: dict[str, Any]) -> None:
    where = _find_non_finite(info, "info")
    if where:
        raise InvalidActivity("non_finite_number", f"{where} is NaN or Infinity")


def may_be_non_finite(value: Any, depth: int = 0) -> bool:
    """True if :func:`_find_non_finite` would find something or raise ``too_deep``.

    The same walk over the same nodes, without building a path for each one: most activities
    whose bytes hold ``null`` only hold a ``None``, and naming every container on the way costs
    more than the encoding. Only a ``True`` pays for the walk that names where.
    """
    kind = type(value)
    if kind is dict or kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            return True
        depth += 1
        for item in value.values() if kind is dict else value:
            kind = type(item)
            # _find_non_finite skips only str in a list, but finds nothing in an int, bool or None.
            if kind is str or kind is int or kind is bool or item is None:
                continue
            if kind is float:
                if not _isfinite(item):
                    return True
            elif may_be_non_finite(item, depth):
                return True
        return False
    if kind is float:
        return not _isfinite(value)
    return isinstance(value, float) and not _isfinite(value)


def _check_number(activity: dict[str, Any], field: str) -> None:
    """``weight`` and ``count``: a real, finite number (a ``Decimal`` becomes a ``float``)."""
    number = activity[field]
    if isinstance(number, Decimal):
        number = activity[field] = float(number)
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise InvalidActivity("bad_number", f"{field} is not a number: {number!r:.60}")
    if not _isfinite(number):
        raise InvalidActivity("non_finite_number", f"{field} is {number}")


def _encode_with_any_keys(activity: dict[str, Any], info: dict[str, Any] | None) -> bytes:
    """Encode with non-``str`` keys allowed, and name what went wrong if it cannot be encoded.

    :func:`encode_activity` first tries without ``OPT_NON_STR_KEYS``, which costs orjson about
    15% more. That option changes nothing for ``str`` keys and without it any other key is an
    error, so a first try that succeeds gives these bytes; what it refuses comes here and gets
    this call's outcome (``_default`` may then run twice: it has no side effects).
    """
    try:
        return orjson.dumps(activity, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        if info is not None:
            _check_finite(info)  # NaN/Infinity and too_deep are reported as before
        if isinstance(exc.__cause__, InvalidActivity):  # raised by _default
            raise exc.__cause__ from None
        message = str(exc)
        if "surrogates" in message or "UTF-8" in message:
            raise InvalidActivity("invalid_utf8", "a string is not valid UTF-8") from None
        if "ecursion" in message:
            raise InvalidActivity("too_deep", "nested deeper than JSON encoders allow") from None
        raise InvalidActivity("unserializable", message) from None


def encode_activity(
    activity: dict[str, Any], max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> bytes:
    """Normalise ``date``, check every rule, return the JSON bytes; raise ``InvalidActivity``.

    Mutates ``activity`` only to put ``date`` in ISO 8601 UTC ``Z`` form (and a ``Decimal``
    ``weight`` or ``count`` into a ``float``).

    This runs once per record, so the common case is kept short: a date already in canonical
    form is recognised in place, the encoding first tries orjson's faster ``str``-keys-only
    mode, and the NaN walk runs only when the bytes hold ``null`` and a float could be behind it.
    Every shortcut gives exactly what the general path would (``tests/test_validate.py`` holds
    it to a frozen copy of that path).
    """
    if not activity.get("externalId") and not activity.get("email"):
        raise InvalidActivity("no_identifier", "neither externalId nor email is set")
    action = activity.get("action")
    if not isinstance(action, str) or not action.strip():
        raise InvalidActivity("no_action", "action is missing or empty")
    date = activity.get("date", _MISSING)
    if date is _MISSING:
        raise InvalidActivity("no_date", "date is missing")
    # The 24-character branch of dates._is_canonical, inline: such text is left as it is.
    canonical = (
        type(date) is str
        and len(date) == 24
        and date[4:20:3] == "--T::."  # the separators at 4, 7, 10, 13, 16 and 19
        and date[23] == "Z"
        and date[20:23] != "000"
    )
    if canonical:
        try:
            _fromisoformat(date)  # checks every digit
        except ValueError:
            canonical = False
    if not canonical:
        try:
            activity["date"] = to_iso_utc(date)
        except ValueError as exc:
            raise InvalidActivity("bad_date", str(exc)) from None
    if "weight" in activity:
        _check_number(activity, "weight")
    if "count" in activity:
        _check_number(activity, "count")
    info = activity.get("info")
    if info is not None and not isinstance(info, dict):
        raise InvalidActivity("info_not_object", f"info is a {type(info).__name__}")
    try:
        # Without OPT_NON_STR_KEYS: the same bytes when every key is a str, and faster.
        encoded = orjson.dumps(activity, default=_default, option=_STR_KEY_OPTIONS)
    except orjson.JSONEncodeError:
        encoded = _encode_with_any_keys(activity, info)
    # orjson writes NaN and Infinity as null: no "null" in the bytes, no NaN in the activity.
    # (rfind: on JSON, CPython's reverse search skips ahead more often than find or ``in``.)
    # Then a walk that builds no path looks for one, and only if it finds one does the walk
    # that names where run (it costs more than the encoding).
    if info is not None and encoded.rfind(b"null") != -1 and may_be_non_finite(info):
        _check_finite(info)
    if len(encoded) > max_event_bytes:
        raise InvalidActivity(
            "too_large", f"{len(encoded)} bytes encoded, max_event_bytes is {max_event_bytes}"
        )
    return encoded
