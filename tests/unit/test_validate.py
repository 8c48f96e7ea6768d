"""``validate.encode_activity``: every rule, the reason codes, and the bytes it returns."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_planhat.validate import DEFAULT_MAX_EVENT_BYTES, InvalidActivity, encode_activity
from tests.support.dates_reference import canonical_texts, reference_to_iso_utc, time_values
from tests.support.examples import examples


def activity(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "externalId": "user-1",
        "action": "Login",
        "date": "2024-01-01T10:00:00Z",
        "info": {"plan": "pro"},
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def reason(value: dict[str, Any], max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> str:
    with pytest.raises(InvalidActivity) as caught:
        encode_activity(value, max_event_bytes)
    assert str(caught.value).startswith(caught.value.reason + ": ")
    assert caught.value.detail
    return caught.value.reason


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# --- what passes, and the exact bytes -----------------------------------------------------


def test_returns_the_exact_bytes_to_send():
    value = activity(companyExternalId="acme", weight=2, count=3)
    body = encode_activity(value)
    assert body == (
        b'{"externalId":"user-1","action":"Login","date":"2024-01-01T10:00:00Z",'
        b'"info":{"plan":"pro"},"companyExternalId":"acme","weight":2,"count":3}'
    )
    assert json.loads(body) == value


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2024-01-01T10:00:00.123456Z", "2024-01-01T10:00:00.123Z"),
        ("2024-01-01 10:00:00.123456", "2024-01-01T10:00:00.123Z"),
        ("2024-01-01T12:00:00+02:00", "2024-01-01T10:00:00Z"),
        (dt.datetime(2024, 1, 1, 10, 0, tzinfo=dt.timezone.utc), "2024-01-01T10:00:00Z"),
        (dt.datetime(2024, 1, 1, 10, 0), "2024-01-01T10:00:00Z"),
    ],
)
def test_date_is_normalised_to_iso_utc(given, expected):
    value = activity(date=given)
    encode_activity(value)
    assert value["date"] == expected


def test_email_alone_identifies_the_user():
    encode_activity(activity(externalId=_DROP, email="a@example.com"))


def test_decimals_are_numbers():
    value = activity(weight=Decimal("2.5"), info={"price": Decimal("9.99"), "qty": Decimal("3")})
    body = json.loads(encode_activity(value))
    assert body["weight"] == 2.5
    assert body["info"] == {"price": 9.99, "qty": 3}
    assert isinstance(body["info"]["qty"], int)


def test_other_python_values_are_encoded():
    info = {"tags": {"a"}, "pair": (1, 2), "raw": b"bytes", "day": dt.date(2024, 1, 2), 5: "k"}
    body = json.loads(encode_activity(activity(info=info)))
    assert body["info"] == {
        "tags": ["a"],
        "pair": [1, 2],
        "raw": "bytes",
        "day": "2024-01-02",
        "5": "k",
    }


# --- each rule, its reason ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"externalId": _DROP}, "no_identifier"),
        ({"externalId": ""}, "no_identifier"),
        ({"externalId": None, "email": ""}, "no_identifier"),
        ({"action": _DROP}, "no_action"),
        ({"action": ""}, "no_action"),
        ({"action": " \t"}, "no_action"),
        ({"action": 5}, "no_action"),
        ({"date": _DROP}, "no_date"),
        ({"date": "not a date"}, "bad_date"),
        ({"date": "2024-13-45T99:00:00Z"}, "bad_date"),
        ({"date": ""}, "bad_date"),
        ({"date": None}, "bad_date"),
        ({"date": [2024]}, "bad_date"),
        ({"weight": True}, "bad_number"),
        ({"weight": "3"}, "bad_number"),
        ({"count": None}, "bad_number"),
        ({"weight": math.nan}, "non_finite_number"),
        ({"count": -math.inf}, "non_finite_number"),
        ({"weight": Decimal("Infinity")}, "non_finite_number"),
        ({"info": ["a", "b"]}, "info_not_object"),
        ({"info": "plan=pro"}, "info_not_object"),
        ({"info": {"x": math.nan}}, "non_finite_number"),
        ({"info": {"x": [1, {"y": math.inf}]}}, "non_finite_number"),
        ({"info": {"x": (1, -math.inf)}}, "non_finite_number"),
        ({"info": {"x": Decimal("NaN")}}, "non_finite_number"),
        ({"info": {"x": "ab\ud800"}}, "invalid_utf8"),
        ({"info": {"k\udc00": 1}}, "invalid_utf8"),
        ({"action": "Log\udcffin"}, "invalid_utf8"),
        ({"info": {"raw": b"\xff\xfe"}}, "invalid_utf8"),
        ({"info": {"x": nested(260)}}, "too_deep"),
        ({"info": {"x": nested(5000)}}, "too_deep"),
        ({"info": {"n": 2**70}}, "unserializable"),
        ({"info": {"o": object()}}, "unserializable"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_rule(fields, expected):
    assert reason(activity(**fields)) == expected


def test_non_finite_names_where():
    with pytest.raises(InvalidActivity, match=r"info\.a\[1\]\.b is NaN or Infinity"):
        encode_activity(activity(info={"a": [0, {"b": math.nan}]}))


def test_nesting_within_limit_passes():
    body = encode_activity(activity(info={"x": nested(200)}))
    assert json.loads(body)["info"]["x"] == nested(200)


def test_deep_dicts_do_not_overflow_the_stack():
    value: Any = 1
    for _ in range(50_000):
        value = {"a": value}
    assert reason(activity(info={"x": value})) == "too_deep"


# --- size ---------------------------------------------------------------------------------


def _sized(total: int) -> dict[str, Any]:
    base = len(encode_activity(activity(info={"pad": ""})))
    return activity(info={"pad": "p" * (total - base)})


@pytest.mark.parametrize("limit", [DEFAULT_MAX_EVENT_BYTES, 500])
def test_size_limit_is_inclusive(limit):
    assert len(encode_activity(_sized(limit), limit)) == limit
    with pytest.raises(InvalidActivity, match=f"{limit + 1} bytes encoded, max_event_bytes is"):
        encode_activity(_sized(limit + 1), limit)


def test_size_counts_utf8_bytes_not_characters():
    base = len(encode_activity(activity(info={"pad": ""})))
    value = activity(info={"pad": "é" * 10})  # 2 bytes each
    assert len(encode_activity(value, base + 20)) == base + 20
    assert reason(activity(info={"pad": "é" * 10}), base + 19) == "too_large"


# --- property: what passes is what was given, as JSON ---------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=examples(200), deadline=None)
@given(info=st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_valid_activity_round_trips(info):
    value = activity(info=info)
    body = encode_activity(value)
    assert orjson.loads(body) == json.loads(json.dumps(value))


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


@settings(max_examples=examples(200), deadline=None)
@given(
    info=st.dictionaries(
        st.text(max_size=4),
        st.recursive(
            st.floats() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=3),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
            max_leaves=10,
        ),
        max_size=4,
    )
)
def test_never_sends_what_orjson_would_turn_into_null(info):
    """NaN/Infinity anywhere is refused: orjson would write it as ``null`` silently."""
    value = activity(info=info)
    has_non_finite = _has_non_finite(info)
    try:
        encode_activity(value)
    except InvalidActivity as exc:
        assert exc.reason == "non_finite_number"
        assert has_non_finite
    else:
        assert not has_non_finite


# --- property: encode_activity behaves exactly as the reference copy below ----------------------
#
# A frozen copy of ``encode_activity`` as it was before its hot path was tuned (commit f407e6f),
# calling the frozen copy of ``to_iso_utc`` in ``test_dates``. The tuned version must return the
# same bytes or raise the same reason and message, and leave the activity the same.


def _ref_default(value: Any) -> Any:
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


_REF_MAX_DEPTH = 254
_REF_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def _ref_find_non_finite(value: Any, where: str, depth: int = 0) -> str | None:
    kind = type(value)
    if kind is float:
        return None if math.isfinite(value) else where
    if kind is dict:
        if depth >= _REF_MAX_DEPTH:
            raise InvalidActivity("too_deep", f"nested more than {_REF_MAX_DEPTH} levels deep")
        for key, item in value.items():
            item_kind = type(item)
            if item_kind is str or item_kind is int or item_kind is bool or item is None:
                continue
            found = _ref_find_non_finite(item, f"{where}.{key}", depth + 1)
            if found:
                return found
    elif kind is list or kind is tuple:
        if depth >= _REF_MAX_DEPTH:
            raise InvalidActivity("too_deep", f"nested more than {_REF_MAX_DEPTH} levels deep")
        for index, item in enumerate(value):
            if type(item) is not str:
                found = _ref_find_non_finite(item, f"{where}[{index}]", depth + 1)
                if found:
                    return found
    elif isinstance(value, float) and not math.isfinite(value):
        return where
    return None


def _ref_check_finite(info: dict[str, Any]) -> None:
    where = _ref_find_non_finite(info, "info")
    if where:
        raise InvalidActivity("non_finite_number", f"{where} is NaN or Infinity")


def reference_encode_activity(
    activity: dict[str, Any], max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> bytes:
    """``encode_activity`` as of commit f407e6f, the behaviour the tuned version must keep."""
    if not activity.get("externalId") and not activity.get("email"):
        raise InvalidActivity("no_identifier", "neither externalId nor email is set")
    action = activity.get("action")
    if not isinstance(action, str) or not action.strip():
        raise InvalidActivity("no_action", "action is missing or empty")
    if "date" not in activity:
        raise InvalidActivity("no_date", "date is missing")
    try:
        activity["date"] = reference_to_iso_utc(activity["date"])
    except ValueError as exc:
        raise InvalidActivity("bad_date", str(exc)) from None
    for field in ("weight", "count"):
        if field in activity:
            number = activity[field]
            if isinstance(number, Decimal):
                number = activity[field] = float(number)
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise InvalidActivity("bad_number", f"{field} is not a number: {number!r:.60}")
            if not math.isfinite(number):
                raise InvalidActivity("non_finite_number", f"{field} is {number}")
    info = activity.get("info")
    if info is not None and not isinstance(info, dict):
        raise InvalidActivity("info_not_object", f"info is a {type(info).__name__}")
    try:
        encoded = orjson.dumps(activity, default=_ref_default, option=_REF_OPTIONS)
    except orjson.JSONEncodeError as exc:
        if info is not None:
            _ref_check_finite(info)
        if isinstance(exc.__cause__, InvalidActivity):
            raise exc.__cause__ from None
        message = str(exc)
        if "surrogates" in message or "UTF-8" in message:
            raise InvalidActivity("invalid_utf8", "a string is not valid UTF-8") from None
        if "ecursion" in message:
            raise InvalidActivity("too_deep", "nested deeper than JSON encoders allow") from None
        raise InvalidActivity("unserializable", message) from None
    if info is not None and b"null" in encoded:
        _ref_check_finite(info)
    if len(encoded) > max_event_bytes:
        raise InvalidActivity(
            "too_large", f"{len(encoded)} bytes encoded, max_event_bytes is {max_event_bytes}"
        )
    return encoded


def _encode_outcome(
    encode: Callable[[dict[str, Any], int], bytes], value: dict[str, Any], max_event_bytes: int
) -> tuple[object, ...]:
    """What ``encode`` does to a shallow copy of ``value``: result or error, and the copy after.

    A shallow copy is enough: only top-level fields (``date``, ``weight``, ``count``) change.
    """
    copy = dict(value)
    try:
        result: object = ("returned", encode(copy, max_event_bytes))
    except InvalidActivity as exc:
        result = ("invalid", exc.reason, exc.detail, str(exc))
    except Exception as exc:  # the exception itself is the outcome compared
        result = ("raised", type(exc), str(exc))
    # NaN != NaN, so values are compared by repr (same type, same text), keys by order.
    return result, [(key, type(item), repr(item)) for key, item in copy.items()]


class _Key(str):
    """A ``str`` subclass as a dict key."""


class _Float(float):
    """A ``float`` subclass: orjson hands it to ``default``."""


def _deep(depth: int, outer: str, inner: str, leaf: Any) -> Any:
    """``depth`` nested ``outer`` containers around one ``inner`` container holding ``leaf``.

    orjson stops at 255 levels of dicts and lists but not of tuples, so a dict at the end of a
    long chain of tuples reaches the walk's own depth limit after a successful encoding.
    """
    wrap = {"tuple": lambda v: (v,), "dict": lambda v: {"d": v}, "list": lambda v: [v]}
    value = wrap[inner](leaf)
    for _ in range(depth):
        value = wrap[outer](value)
    return value


_non_finite = st.sampled_from([math.nan, math.inf, -math.inf, -math.nan])
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([2**64, -(2**70)]),
    st.floats(),
    _non_finite,
    st.decimals(),
    st.text(max_size=6),
    st.sampled_from(["null", "nullnull", "nul", "ab\ud800", "\udcff", "a\x00"]),
    st.binary(max_size=4),
    st.dates(),
    st.datetimes(timezones=st.sampled_from([None, dt.timezone.utc])),
    st.sampled_from([_Float(1.5), _Float(math.nan), object()]),
)
_hashables = st.one_of(st.none(), st.integers(-5, 5), st.floats(), st.text(max_size=3))
_keys = st.one_of(
    st.text(max_size=5),
    st.sampled_from(["null", "a\ud800"]),
    st.integers(-3, 3),
    st.sampled_from([None, True, 1.5, math.nan, _Key("k"), dt.date(2024, 1, 2)]),
)
info_values = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(_keys, children, max_size=4),
        st.sets(_hashables, max_size=3),
        st.frozensets(_hashables, max_size=3),
        st.dictionaries(st.text(max_size=3), children, max_size=3).map(OrderedDict),
    ),
    max_leaves=16,
)
_containers = st.sampled_from(["tuple", "dict", "list"])
_deeps = st.builds(
    _deep,
    st.sampled_from(range(250, 257)),  # around both orjson's and the walk's limits
    _containers,
    _containers,
    st.sampled_from([1, None, math.nan, "x"]),
)
infos = st.one_of(
    st.dictionaries(_keys, info_values | _deeps, max_size=6),
    st.dictionaries(st.text(max_size=8), info_values, max_size=6),
    st.sampled_from([None, [], ["a"], "plan=pro", 5, OrderedDict(x=1.0)]),
)
numbers = st.one_of(
    st.integers(),
    st.floats(),
    st.decimals(),
    st.sampled_from([True, False, None, "3", b"3", [1], _Float(2.0)]),
)


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` four times in five, else ``odd``: so that the later rules get reached too."""
    return st.sampled_from(range(5)).flatmap(lambda pick: usual if pick else odd)


identifiers = mostly(
    st.sampled_from(["user-1", "u"]) | st.text(min_size=1, max_size=6),
    st.text(max_size=2) | st.sampled_from(["", None, 0, 7]),
)
actions = mostly(
    st.sampled_from(["Login", "Clicked"]),
    st.text(max_size=4) | st.sampled_from(["", " \t", None, 5, "L\udcff"]),
)


@st.composite
def activities(draw: st.DrawFn) -> dict[str, Any]:
    fields = {
        "externalId": identifiers,
        "email": identifiers,
        "companyExternalId": identifiers,
        "action": actions,
        "date": mostly(canonical_texts(), time_values),
        "weight": numbers,
        "count": numbers,
        "info": infos,
        "extra": info_values,
    }
    value: dict[Any, Any] = {}
    for name in draw(st.permutations(list(fields))):
        usual = name in ("externalId", "action", "date", "info")  # present but now and then
        if draw(st.sampled_from(range(20))) < (19 if usual else 5):
            value[name] = draw(fields[name])
    if draw(st.sampled_from(range(20))) == 0:
        value[draw(st.sampled_from([5, None, 1.5]))] = "non-str key"
    return value


max_sizes = st.one_of(st.just(DEFAULT_MAX_EVENT_BYTES), st.integers(min_value=0, max_value=400))


@settings(max_examples=examples(2000), deadline=None)
@given(value=activities(), max_event_bytes=max_sizes)
def test_same_outcome_as_reference(value, max_event_bytes):
    assert _encode_outcome(encode_activity, value, max_event_bytes) == _encode_outcome(
        reference_encode_activity, value, max_event_bytes
    )


@st.composite
def typical_activities(draw: st.DrawFn) -> dict[str, Any]:
    """Close to what the mapper builds: the shortcuts' own ground, with NaNs mixed in."""
    value: dict[str, Any] = {
        "externalId": draw(mostly(st.just("user-1"), st.sampled_from(["", None]))),
        "action": "Clicked",
        "date": draw(mostly(canonical_texts(), time_values)),
        "info": draw(
            st.dictionaries(
                st.text(max_size=4),
                st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=5), _deeps)
                | info_values,
                max_size=8,
            )
        ),
    }
    if draw(st.booleans()):
        value["email"] = draw(st.sampled_from(["a@example.com", None]))
    return value


@settings(max_examples=examples(1000), deadline=None)
@given(value=typical_activities())
def test_same_outcome_as_reference_for_typical_activities(value):
    assert _encode_outcome(encode_activity, value, DEFAULT_MAX_EVENT_BYTES) == _encode_outcome(
        reference_encode_activity, value, DEFAULT_MAX_EVENT_BYTES
    )


@settings(max_examples=examples(400), deadline=None)
@given(deep=_deeps, beside=st.sampled_from([None, 1.5, math.nan, "null", [None]]))
def test_same_outcome_as_reference_at_the_depth_limits(deep, beside):
    """Chains of containers around orjson's and the walk's depth limits, a null or NaN beside."""
    value = activity(info={"deep": deep, "beside": beside})
    assert _encode_outcome(encode_activity, value, DEFAULT_MAX_EVENT_BYTES) == _encode_outcome(
        reference_encode_activity, value, DEFAULT_MAX_EVENT_BYTES
    )
