"""``validate.encode_activity``: every rule, the reason codes, and the bytes it returns."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_planhat.validate import DEFAULT_MAX_EVENT_BYTES, InvalidActivity, encode_activity


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


@settings(max_examples=200, deadline=None)
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


@settings(max_examples=200, deadline=None)
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
