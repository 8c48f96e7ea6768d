"""to_canonical: each Amplitude tap's record shape -> the canonical Export-API event."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections import Counter
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_planhat import shapes
from target_planhat.shapes import MAX_BAG_CHARS, parse_bag, to_canonical

UTC = dt.timezone.utc
PROPS = {"plan": "pro", "n": 1, "ok": True, "off": False, "x": None, "nested": {"a": [1, 2.5]}}


def canon(record):
    seen: Counter[str] = Counter()

    def problem(code: str) -> None:
        seen[code] += 1

    out = to_canonical(record, problem)
    return out, seen


# --- keys ------------------------------------------------------------------------------------


def test_upper_case_snowflake_columns_map_to_lower_case():
    out, problems = canon(
        {
            "EVENT_TYPE": "Viewed",
            "USER_ID": "u-1",
            "$INSERT_ID": "ins-1",
            "$SCHEMA": 12.0,
            "SERVER_UPLOAD_TIME": "2024-01-01T10:00:00.123000Z",
            "EVENT_PROPERTIES": json.dumps(PROPS, indent=2),
        }
    )
    assert out == {
        "event_type": "Viewed",
        "user_id": "u-1",
        "$insert_id": "ins-1",
        "$schema": 12,
        "server_upload_time": "2024-01-01T10:00:00.123Z",
        "event_properties": PROPS,
    }
    assert not problems


def test_unknown_columns_are_kept_lower_cased():
    out, _ = canon({"MY_CUSTOM_COLUMN": "v", "Other Col": [1], "already_lower": {"K": 1}})
    assert out == {"my_custom_column": "v", "other col": [1], "already_lower": {"K": 1}}


def test_bag_keys_are_not_lower_cased():
    out, _ = canon({"EVENT_PROPERTIES": '{"Plan": "Pro", "UPPER": 1}'})
    assert out["event_properties"] == {"Plan": "Pro", "UPPER": 1}


@pytest.mark.parametrize("order", ["lower_first", "upper_first"])
def test_exact_lower_case_spelling_wins_over_other_cases(order):
    pairs = [("user_id", "lower"), ("USER_ID", "upper")]
    if order == "upper_first":
        pairs.reverse()
    out, _ = canon(dict(pairs))
    assert out == {"user_id": "lower"}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"$insert_id": "a"}, "a"),
        ({"$INSERT_ID": "a"}, "a"),
        ({"insert_id": "a"}, "a"),
        ({"INSERT_ID": "a"}, "a"),
        ({"_insert_id": "a"}, "a"),
        ({"_INSERT_ID": "a"}, "a"),
        ({"$insert_id": "a", "insert_id": "b"}, "a"),
        ({"insert_id": "b", "$insert_id": "a"}, "a"),
        ({"insert_id": "b", "_insert_id": "c"}, "b"),
    ],
)
def test_insert_id_under_any_spelling(record, expected):
    out, _ = canon(record)
    assert out["$insert_id"] == expected


def test_no_insert_id_invented():
    out, _ = canon({"insert_id": None, "_insert_id": ""})
    assert "$insert_id" not in out
    out, _ = canon({"uuid": "x"})
    assert "$insert_id" not in out


# --- property bags ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(shapes.BAG_FIELDS))
def test_python_repr_bags_parse(field):
    out, problems = canon({field: str(PROPS)})  # what singer-python's Transformer writes
    assert out[field] == PROPS
    assert out[field]["ok"] is True and out[field]["off"] is False and out[field]["x"] is None
    assert not problems


@pytest.mark.parametrize("field", sorted(shapes.BAG_FIELDS))
def test_json_bags_parse(field):
    for text in (json.dumps(PROPS), json.dumps(PROPS, indent=2)):
        out, problems = canon({field.upper(): text})
        assert out[field] == PROPS
        assert not problems


def test_dict_bags_pass_through_unchanged():
    record = {"event_properties": PROPS, "groups": {"company": ["acme-1"]}}
    out, problems = canon(record)
    assert out == record and not problems


def test_groups_repr_with_list():
    out, _ = canon({"groups": "{'company': ['acme-1', 'acme-2']}"})
    assert out["groups"] == {"company": ["acme-1", "acme-2"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("   ", {}),
        ("{}", {}),
        ("null", None),
        ("[]", []),
        ("[{'a': (1, 2)}]", [{"a": [1, 2]}]),  # tuples become lists
        ('{"x": NaN, "y": Infinity, "z": -Infinity}', {"x": None, "y": None, "z": None}),
        ("{'unicode': 'Zürich ✓', 'esc': 'a\\'b'}", {"unicode": "Zürich ✓", "esc": "a'b"}),
    ],
)
def test_bag_edge_values(text, expected):
    out, problems = canon({"event_properties": text})
    assert out["event_properties"] == expected
    assert not problems


def test_none_bag_stays_none():
    out, problems = canon({"event_properties": None, "GROUPS": None})
    assert out == {"event_properties": None, "groups": None} and not problems


@pytest.mark.parametrize(
    "text",
    [
        "not a bag",
        "{'a': }",
        "{'a': nan}",  # Python repr of a float NaN: not a literal
        "{1, 2}",  # a set
        "{1: 'a'}",  # non-string key
        "{'a': b'bytes'}",
        "{'a': 1j}",
        "[" * 100_000 + "]" * 100_000,  # deep nesting: RecursionError / SyntaxError inside
        "{'a': " + "(" * 5000 + "1" + ")" * 5000 + "}",
        "__import__('os').system('echo hacked')",  # never eval'd
        "{'a': __import__('os')}",
        "123",  # a scalar is no bag
        '"text"',
        "{" + "'k': 'v', " * (MAX_BAG_CHARS // 10) + "}",  # over the size cap
    ],
)
def test_bad_bags_are_counted_not_raised(text):
    out, problems = canon({"event_properties": text})
    assert out["event_properties"] == text  # left as it was
    assert problems == Counter({"unparsed_event_properties": 1})


def test_bad_bag_without_problems_callback_does_not_raise():
    assert to_canonical({"GROUPS": "oops"}) == {"groups": "oops"}


def test_parse_bag_repr_cache_returns_fresh_objects():
    text = "{'role': 'admin', 'tags': ['a']}"
    first = parse_bag(text)
    first["tags"].append("mutated")
    second = parse_bag(text)
    assert second == {"role": "admin", "tags": ["a"]}


# --- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(shapes.TIME_FIELDS))
@pytest.mark.parametrize(
    "value",
    [
        "2024-01-01 10:00:00.123456",
        "2024-01-01T10:00:00.123000Z",
        "2024-01-01T10:00:00.123456+00:00",
        "2024-01-01T10:00:00.123Z",
        dt.datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=UTC),
        dt.datetime(2024, 1, 1, 10, 0, 0, 123456),
        1704103200123,
        Decimal("1704103200123"),
        "1704103200123",
    ],
)
def test_times_become_iso_utc_z(field, value):
    out, problems = canon({field: value})
    assert out[field] == "2024-01-01T10:00:00.123Z"
    assert not problems


def test_upper_case_time_column():
    out, _ = canon({"EVENT_TIME": dt.datetime(2024, 1, 1, 10)})
    assert out == {"event_time": "2024-01-01T10:00:00Z"}


@pytest.mark.parametrize("value", ["garbage", "2024-99-01", True, {"a": 1}, ["x"], float("nan")])
def test_bad_times_are_counted_and_kept(value):
    out, problems = canon({"EVENT_TIME": value, "user_creation_time": value})
    assert out["event_time"] is value or out["event_time"] == value
    assert problems == Counter(
        {"unparsed_time_event_time": 1, "unparsed_time_user_creation_time": 1}
    )


@pytest.mark.parametrize("value", [None, ""])
def test_missing_times_become_none(value):
    out, problems = canon({"user_creation_time": value})
    assert out == {"user_creation_time": None} and not problems


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(shapes.ID_FIELDS))
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.7e12, 1700000000000),
        (1704103200000.0, 1704103200000),
        (Decimal("1700000000000"), 1700000000000),
        (Decimal("1704103200000.0"), 1704103200000),
        (Decimal("1.7E+12"), 1700000000000),
        (123, 123),
        (-1, -1),  # Amplitude's "no session"
        ("123", "123"),  # strings are left alone
        (None, None),
    ],
)
def test_id_numbers_become_int(field, value, expected):
    out, _ = canon({field.upper(): value})
    assert out[field] == expected
    assert type(out[field]) is type(expected)


def test_non_integral_id_stays_float():
    out, _ = canon({"session_id": 1.5, "amplitude_id": Decimal("2.5")})
    assert out == {"session_id": 1.5, "amplitude_id": 2.5}


def test_other_decimals_become_int_or_float():
    out, _ = canon(
        {
            "location_lat": Decimal("52.5200"),
            "sample_rate": Decimal("1"),
            "custom": Decimal("NaN"),
            "big": Decimal("1E+3"),
        }
    )
    assert out == {"location_lat": 52.52, "sample_rate": 1, "custom": None, "big": 1000}
    assert type(out["location_lat"]) is float and type(out["sample_rate"]) is int
    orjson.dumps(out)


def test_decimals_inside_dict_bags_are_left_for_the_encoder():
    out, _ = canon({"event_properties": {"price": Decimal("9.99")}})
    assert out["event_properties"] == {"price": Decimal("9.99")}


# --- whole records, purity -------------------------------------------------------------------


def _api_record():
    """An event as PyPI tap-amplitude-api 0.1.8 writes it, after the SDK read it back."""
    return {
        "uuid": "u",
        "$insert_id": "i",
        "event_type": "Viewed",
        "user_id": "u-1",
        "amplitude_id": Decimal("123456789.0"),
        "session_id": Decimal("1704103200000.0"),
        "event_time": dt.datetime(2024, 1, 1, 10, 0, 0, 123000, tzinfo=UTC),
        "event_properties": str(PROPS),
        "user_properties": "{'role': 'admin'}",
        "groups": "{'company': ['acme-1']}",
        "group_properties": "{}",
        "data": "{'first_event': True}",
        "paying": None,
    }


def test_input_is_never_mutated():
    for record in (
        _api_record(),
        {k.upper(): v for k, v in _api_record().items()},
        {"event_properties": {"a": {"b": [1]}}, "EVENT_TIME": "bad"},
    ):
        before = copy.deepcopy(record)
        out = to_canonical(record, lambda _code: None)
        assert record == before
        assert out is not record


def test_whole_api_record():
    out, problems = canon(_api_record())
    assert not problems
    assert out == {
        "uuid": "u",
        "$insert_id": "i",
        "event_type": "Viewed",
        "user_id": "u-1",
        "amplitude_id": 123456789,
        "session_id": 1704103200000,
        "event_time": "2024-01-01T10:00:00.123Z",
        "event_properties": PROPS,
        "user_properties": {"role": "admin"},
        "groups": {"company": ["acme-1"]},
        "group_properties": {},
        "data": {"first_event": True},
        "paying": None,
    }
    orjson.dumps(out)


def test_canonical_record_is_a_fixed_point():
    out, _ = canon(_api_record())
    again, problems = canon(out)
    assert again == out and not problems


# --- never raises ----------------------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.decimals(allow_nan=True, allow_infinity=True)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_interesting_keys = st.sampled_from(
    sorted(shapes.TIME_FIELDS | shapes.BAG_FIELDS | shapes.ID_FIELDS)
    + [k.upper() for k in sorted(shapes.TIME_FIELDS | shapes.BAG_FIELDS | shapes.ID_FIELDS)]
    + ["$insert_id", "insert_id", "_INSERT_ID", "user_id", "USER_ID"]
)
_bag_texts = st.one_of(
    _json_values.map(lambda v: json.dumps(v, default=str)),
    _json_values.map(repr),
    st.text(max_size=40),
    st.text(alphabet="{}[]()'\":,. 0123456789abcNaTrueFalsNone", max_size=40),
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.one_of(_interesting_keys, st.text(max_size=12)),
        st.one_of(_json_values, _bag_texts),
        max_size=12,
    )
)
def test_never_raises_on_arbitrary_json_like_records(record):
    before = copy.deepcopy(record)
    seen: list[str] = []
    out = to_canonical(record, seen.append)
    assert isinstance(out, dict)
    assert record == before or _has_nan(before)
    assert all(code.startswith("unparsed_") for code in seen)
    for key in out:
        assert key == key.lower()


def _has_nan(value) -> bool:
    """NaN != NaN, so a record holding one never compares equal to its copy."""
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    if isinstance(value, (float, Decimal)):
        return value != value if not isinstance(value, Decimal) else value.is_nan()
    return False
