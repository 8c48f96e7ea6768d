"""The plain version of ``dates.to_iso_utc`` and the timestamp strategies that test it.

Shared by tests/unit/test_dates.py (``to_iso_utc`` against it) and tests/unit/test_validate.py
(``encode_activity``'s frozen copy calls it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal

from hypothesis import strategies as st

UTC = dt.timezone.utc

# A frozen copy of ``to_iso_utc`` as it was before its hot path was tuned (commit f407e6f). The
# tuned version must give the same text, or raise the same exception with the same message,
# for every input. ``test_validate`` holds ``encode_activity`` to its own frozen copy, which
# calls this one.

_REF_UTC = dt.timezone.utc
_REF_MS_THRESHOLD = 100_000_000_000
_REF_FRACTION = re.compile(r"(\.\d+)(?=[+-]|$)")


def _ref_format(moment: dt.datetime) -> str:
    zone = moment.tzinfo
    if zone is not None and zone is not _REF_UTC and moment.utcoffset():
        try:
            moment = moment.astimezone(_REF_UTC)
        except (OverflowError, ValueError):
            raise ValueError(f"timestamp {moment!r} is out of range") from None
    text = moment.isoformat()
    if moment.microsecond >= 1000:
        return text[:23] + "Z"
    return text[:19] + "Z"


def _ref_is_canonical(text: str) -> bool:
    size = len(text)
    if size == 24:
        if text[19] != "." or text[20:23] == "000":
            return False
    elif size != 20:
        return False
    if text[-1] != "Z" or text[10] != "T" or text[4] != "-" or text[7] != "-":
        return False
    if text[13] != ":" or text[16] != ":":
        return False
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _ref_parse_text(text: str) -> dt.datetime:
    raw = text.strip()
    if not raw:
        raise ValueError("empty timestamp")
    if raw.isdigit() or (raw[0] == "-" and raw[1:].isdigit()):
        return _ref_from_epoch(int(raw))
    try:
        return dt.datetime.fromisoformat(raw)
    except ValueError:
        pass
    candidate = raw[:-1] + "+00:00" if raw[-1] in "zZ" else raw
    match = _REF_FRACTION.search(candidate)
    if match:
        digits = match.group(1)[1:]
        fixed = "." + (digits + "000000")[:6]
        candidate = candidate[: match.start()] + fixed + candidate[match.end() :]
    try:
        return dt.datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError(f"unparsable timestamp {raw[:64]!r}") from None


def _ref_from_epoch(number: float) -> dt.datetime:
    seconds = number / 1000 if abs(number) >= _REF_MS_THRESHOLD else number
    try:
        return dt.datetime.fromtimestamp(seconds, tz=_REF_UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"timestamp {number!r} is out of range") from None


def _ref_fast_text(text: str) -> str | None:
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
        dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    head = text[:19] if separator == "T" else text[:10] + "T" + text[11:19]
    millis = text[20:23]
    return head + "Z" if millis == "000" else head + "." + millis + "Z"


def reference_to_iso_utc(value: object) -> str:
    """``to_iso_utc`` as of commit f407e6f, the behaviour the tuned version must keep."""
    if type(value) is str:
        fast = _ref_fast_text(value)
        if fast is not None:
            return fast
    if isinstance(value, dt.datetime):
        return _ref_format(value)
    if isinstance(value, dt.date):
        return _ref_format(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float, Decimal)):
        if isinstance(value, Decimal):
            finite = value.is_finite()
        else:
            finite = value == value and value not in (float("inf"), float("-inf"))
        if not finite:
            raise ValueError(f"not a timestamp: {value!r}")
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(f"timestamp {value!r} is out of range") from None
        return _ref_format(_ref_from_epoch(number))
    if isinstance(value, str):
        if _ref_is_canonical(value):
            return value
        return _ref_format(_ref_parse_text(value))
    raise ValueError(f"not a timestamp: {type(value).__name__}")


def outcome(function: Callable[[object], str], value: object) -> tuple[str, object]:
    """What ``function(value)`` does: its result, or its exception's type and message."""
    try:
        return ("returned", function(value))
    except Exception as exc:  # the exception itself is the outcome compared
        return ("raised", (type(exc), str(exc)))


class _Text(str):
    """A ``str`` subclass: takes the general path (``type(value) is str`` fails)."""


_FORMATS = [
    "%Y-%m-%dT%H:%M:%S.%fZ",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f+00:00",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d",
]
# Characters a timestamp is made of, plus near misses: other digits, lower-case z, blanks.
_TIME_CHARS = "0123456789-T:.Z+ zt\u0663\uff11/"

zones = st.sampled_from(
    [None, UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(hours=-14))]
)
datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
)


@st.composite
def canonical_texts(draw: st.DrawFn) -> str:
    """Text in or near the canonical ``YYYY-MM-DDTHH:MM:SS[.mmm]Z`` form, with one change."""
    moment = draw(datetimes)
    text = moment.isoformat(timespec=draw(st.sampled_from(["milliseconds", "seconds"]))) + "Z"
    change = draw(st.integers(0, 3))
    if change == 1:  # one character swapped for another timestamp-ish one
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from(_TIME_CHARS)) + text[at + 1 :]
    elif change == 2:  # one character dropped or inserted
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["", *_TIME_CHARS])) + text[at + 1 :]
    elif change == 3:  # a fraction of 000
        text = text[:19] + ".000Z"
    return text


@st.composite
def formatted_texts(draw: st.DrawFn) -> str:
    moment = draw(datetimes)
    text = moment.strftime(draw(st.sampled_from(_FORMATS)))
    if draw(st.booleans()):
        text = moment.replace(tzinfo=draw(zones)).isoformat()
    return text


time_values = st.one_of(
    canonical_texts(),
    formatted_texts(),
    st.text(alphabet=_TIME_CHARS, min_size=18, max_size=34),
    st.text(max_size=30),
    canonical_texts().map(_Text),
    canonical_texts().map(lambda text: f" {text}"),
    st.builds(lambda moment, zone: moment.replace(tzinfo=zone), datetimes, zones),
    st.dates(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(),
    st.decimals(),
    st.integers(min_value=-(10**13), max_value=10**13).map(str),
    st.sampled_from([None, True, False, b"2024-01-01", ["2024-01-01"], {"a": 1}, object()]),
)
