"""Timestamps in every form the Amplitude taps emit, turned into one: ISO 8601 UTC with ``Z``.

Planhat parses any JavaScript date string, but a naive ``2020-02-15 01:00:00`` is read in the
*server's* zone by some parsers. Amplitude's raw export times are UTC without a zone, so we make
the zone explicit instead of letting anyone guess.

Output form: ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (milliseconds, truncated, never rounded), or
``YYYY-MM-DDTHH:MM:SSZ`` when the milliseconds are 0. Formatting is idempotent:
``to_iso_utc(to_iso_utc(x)) == to_iso_utc(x)``.

This is on the per-record hot path (``shapes.to_canonical`` calls it for every time field), so
the common cases are short-circuited: ``datetime`` objects are formatted with the C-level
``isoformat`` and strings first go through ``datetime.fromisoformat`` (which on Python 3.11+
accepts ``Z``, a space separator and 1-6 fractional digits). Only what that rejects goes through
the slower, 3.10-compatible normalisation.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

_UTC = dt.timezone.utc
# Seconds since the epoch above this are really milliseconds (year 5138 in seconds).
_MS_THRESHOLD = 100_000_000_000
# A fractional-seconds part, only where a zone or the end follows (rejects "00.1a3").
_FRACTION = re.compile(r"(\.\d+)(?=[+-]|$)")
_fromisoformat = dt.datetime.fromisoformat


def format_datetime(moment: dt.datetime) -> str:
    """Format a datetime as ``YYYY-MM-DDTHH:MM:SS[.mmm]Z``; naive means UTC."""
    zone = moment.tzinfo
    if zone is not None and zone is not _UTC and moment.utcoffset():
        try:
            moment = moment.astimezone(_UTC)
        except (OverflowError, ValueError):
            raise ValueError(f"timestamp {moment!r} is out of range") from None
    # isoformat() is the fastest C-level formatter and always pads the year to 4 digits;
    # slicing drops the microseconds' last 3 digits (truncation) and any "+00:00". A time
    # with less than a millisecond gets no fraction, so formatting is idempotent.
    text = moment.isoformat()
    if moment.microsecond >= 1000:
        return text[:23] + "Z"
    return text[:19] + "Z"


def _is_canonical(text: str) -> bool:
    """True if ``text`` already is exactly what :func:`format_datetime` would return for it."""
    size = len(text)
    # text[4:20:3] is the characters at 4, 7, 10, 13, 16 and 19: one slice for six checks.
    if size == 24:
        if text[4:20:3] != "--T::." or text[23] != "Z" or text[20:23] == "000":
            return False
    elif size != 20 or text[4:20:3] != "--T::Z":
        return False
    try:
        _fromisoformat(text)  # validates the digits (3.11+; on 3.10 "Z" fails: slow path)
    except ValueError:
        return False
    return True


def _parse_text(text: str) -> dt.datetime:
    raw = text.strip()
    if not raw:
        raise ValueError("empty timestamp")
    if raw.isdigit() or (raw[0] == "-" and raw[1:].isdigit()):
        return _from_epoch(int(raw))
    try:
        # Fast path: 3.11+ takes RFC 3339 with Z and Amplitude's "2020-02-15 01:00:00.123456".
        return _fromisoformat(raw)
    except ValueError:
        pass
    candidate = raw[:-1] + "+00:00" if raw[-1] in "zZ" else raw
    # fromisoformat before 3.11 takes only 3 or 6 fractional digits; pad or cut to 6.
    match = _FRACTION.search(candidate)
    if match:
        digits = match.group(1)[1:]
        fixed = "." + (digits + "000000")[:6]
        candidate = candidate[: match.start()] + fixed + candidate[match.end() :]
    try:
        return _fromisoformat(candidate)
    except ValueError:
        raise ValueError(f"unparsable timestamp {raw[:64]!r}") from None


def _from_epoch(number: float) -> dt.datetime:
    seconds = number / 1000 if abs(number) >= _MS_THRESHOLD else number
    try:
        return dt.datetime.fromtimestamp(seconds, tz=_UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"timestamp {number!r} is out of range") from None


def _fast_text(text: str) -> str | None:
    """The forms the taps write, by slicing; ``None`` sends the text down the general path.

    ``YYYY-MM-DDTHH:MM:SS.ffffff`` then ``+00:00`` (Airbyte), ``Z`` (tap-amplitude-api) or nothing
    (naive is UTC: raw export, also with a space for the ``T``). ``fromisoformat`` still checks
    every digit; what it refuses (or, before 3.11, a ``Z``) takes the general path.
    """
    size = len(text)
    if size == 32:
        if not text.endswith("+00:00"):
            return None
    elif size == 27:
        if text[26] != "Z":
            return None
    elif size != 26:
        return None
    if (
        text[19] != "."
        or text[4] != "-"
        or text[7] != "-"
        or text[13] != ":"
        or text[16] != ":"
        or not text[20:26].isdigit()
    ):
        return None
    separator = text[10]
    if separator != "T" and separator != " ":
        return None
    try:
        _fromisoformat(text)
    except ValueError:
        return None
    head = text[:19] if separator == "T" else text[:10] + "T" + text[11:19]
    millis = text[20:23]
    return head + "Z" if millis == "000" else head + "." + millis + "Z"


def to_iso_utc(value: object) -> str:
    """Return ``value`` as ``YYYY-MM-DDTHH:MM:SS[.mmm]Z``; raise ``ValueError`` if it is no time.

    Accepts ``datetime`` (naive means UTC, as in Amplitude exports), ``date``, ISO 8601 / RFC 3339
    strings with or without zone, Amplitude's ``2020-02-15 01:00:00.123456``, and epoch seconds or
    milliseconds as numbers or digit strings.
    """
    if type(value) is str:
        # Straight to the string paths; the two fast ones take disjoint lengths.
        size = len(value)
        if size == 24 or size == 20:
            if _is_canonical(value):
                return value
        else:
            fast = _fast_text(value)
            if fast is not None:
                return fast
        return format_datetime(_parse_text(value))
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, dt.date):
        return format_datetime(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float, Decimal)):
        if isinstance(value, Decimal):
            finite = value.is_finite()  # also avoids comparing a signalling NaN, which raises
        else:
            finite = value == value and value not in (float("inf"), float("-inf"))
        if not finite:
            raise ValueError(f"not a timestamp: {value!r}")
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(f"timestamp {value!r} is out of range") from None
        return format_datetime(_from_epoch(number))
    if isinstance(value, str):
        if _is_canonical(value):
            return value
        return format_datetime(_parse_text(value))
    raise ValueError(f"not a timestamp: {type(value).__name__}")
