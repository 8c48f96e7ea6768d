"""to_canonical: each Amplitude tap's record shape -> the canonical Export-API event."""

from __future__ import annotations

import ast
import copy
import datetime as dt
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from target_planhat import shapes
from target_planhat import shapes as _shapes
from target_planhat.shapes import MAX_BAG_CHARS, parse_bag, to_canonical
from tests.support.examples import examples

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


@settings(max_examples=examples(400), deadline=None)
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


# --- Canonicalizer: to_canonical restricted to the fields someone reads ------------------------

SELECTED = {
    "user_id",
    "groups",
    "event_type",
    "event_time",
    "event_properties",
    "user_properties",
    "group_properties",
    "$insert_id",
    "uuid",
}


def _field_of(code: str) -> str:
    """The canonical field a problem code is about."""
    if code.startswith("unparsed_time_") and code[len("unparsed_time_") :] in shapes.TIME_FIELDS:
        return code[len("unparsed_time_") :]
    return code[len("unparsed_") :]


def _reference_to_canonical(record, problems=None):
    """The plain version every plan is held to: one loop over the record's keys, as
    ``to_canonical`` was written before plans (each value converted by its field's rule)."""
    out = {}
    for key, value in record.items():
        canonical = key.lower() if isinstance(key, str) else key
        if canonical != key and canonical in out:
            continue  # an exactly lower-case spelling of this name wins
        if canonical in shapes.TIME_FIELDS:
            value = _shapes._time(value, canonical, problems)
        elif canonical in shapes.BAG_FIELDS:
            value = _shapes._bag(value, canonical, problems)
        elif canonical in shapes.ID_FIELDS:
            value = _shapes._id(value, canonical, problems)
        elif type(value) is Decimal:
            value = _shapes._decimal(value)
        out[canonical] = value
    if "$insert_id" not in out:
        for alias in shapes.INSERT_ID_ALIASES:
            alias_value = out.get(alias)
            if alias_value is not None and alias_value != "":
                out["$insert_id"] = alias_value
                break
    return out


def _restricted(record, fields):
    """What a Canonicalizer must give: the plain version's output and problems, for ``fields``
    only."""
    seen: list[str] = []
    out = _reference_to_canonical(record, seen.append)
    if fields is None:
        return out, seen
    return (
        {k: v for k, v in out.items() if k in fields},
        [code for code in seen if _field_of(code) in fields],
    )


def _assert_same(got, expected):
    """Same keys in the same order, same values and types (repr shows both, and NaN too)."""
    assert list(got) == list(expected)
    assert repr(got) == repr(expected)
    for key in expected:
        assert type(got[key]) is type(expected[key]), key


def _check(canonicalize, record, fields):
    """Every path of a plan (the loop first, compiled later) gives the plain version's answer."""
    expected, expected_problems = _restricted(record, fields)
    for _ in range(shapes.Canonicalizer.COMPILE_AFTER + 2):
        seen: list[str] = []
        _assert_same(canonicalize(record, seen.append), expected)
        assert seen == expected_problems
    _assert_same(canonicalize(record), expected)  # no problems callback
    # the compiled path was taken, not only the loop
    assert canonicalize._last.layout == tuple(record)
    assert canonicalize._last.run.__code__.co_filename == "<generated run>"


def test_canonicalizer_on_each_tap_shape():
    lower = _api_record()
    upper = {k.upper(): v for k, v in lower.items()}
    for fields in (SELECTED, None, set(), {"nope"}, {"event_time"}, {"amplitude_id", "paying"}):
        canonicalize = shapes.Canonicalizer(fields)
        for record in (lower, upper, {}):
            _check(canonicalize, record, fields)


def test_canonicalizer_none_is_to_canonical():
    canonicalize = shapes.Canonicalizer(None)
    assert canonicalize.fields is None
    record = {"EVENT_TIME": "bad", "insert_id": "i", "X": Decimal("1.5")}
    _check(canonicalize, record, None)
    assert repr(to_canonical(record)) == repr(canonicalize(record))


@settings(max_examples=examples(300), deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(_interesting_keys, st.text(max_size=8)), _json_values), max_size=10
    )
)
def test_to_canonical_is_the_plain_version(pairs):
    record = dict(pairs)
    for _ in range(shapes.Canonicalizer.COMPILE_AFTER + 2):  # the loop, then compiled
        seen: list[str] = []
        expected: list[str] = []
        _assert_same(
            to_canonical(record, seen.append), _reference_to_canonical(record, expected.append)
        )
        assert seen == expected


def test_canonicalizer_upper_case_spelling_when_no_lower_case_one():
    canonicalize = shapes.Canonicalizer({"user_id", "event_time"})
    record = {"USER_ID": "u-1", "EVENT_TIME": "2024-01-01 10:00:00", "OTHER": 1}
    assert canonicalize(record) == {"user_id": "u-1", "event_time": "2024-01-01T10:00:00Z"}


@pytest.mark.parametrize(
    "record",
    [
        {"USER_ID": "upper", "x": 1, "user_id": "lower"},  # exact wins, in the first one's place
        {"user_id": "lower", "USER_ID": "upper"},
        {"User_Id": "first", "USER_ID": "second"},  # no exact one: the first spelling wins
        {"EVENT_TIME": "bad", "event_time": "worse", "Event_Time": "worst"},  # both reported
    ],
)
def test_canonicalizer_two_spellings(record):
    for fields in ({"user_id", "event_time"}, {"x", "user_id"}):
        _check(shapes.Canonicalizer(fields), record, fields)


@pytest.mark.parametrize(
    "record",
    [
        {"insert_id": "a", "uuid": "u"},
        {"uuid": "u", "_INSERT_ID": "c", "INSERT_ID": None},
        {"insert_id": "", "_insert_id": Decimal("7")},
        {"INSERT_ID": "upper", "insert_id": "lower"},
        {"$INSERT_ID": None, "insert_id": "a"},  # present (even None): no fill
        {"insert_id": None},
    ],
)
def test_canonicalizer_fills_insert_id_from_unselected_aliases(record):
    for fields in ({"$insert_id"}, {"$insert_id", "_insert_id"}, {"insert_id", "uuid"}):
        _check(shapes.Canonicalizer(fields), record, fields)
    assert "insert_id" not in shapes.Canonicalizer({"$insert_id"})(record)


def test_canonicalizer_reports_problems_of_selected_fields_only():
    record = {"EVENT_PROPERTIES": "{not a bag", "event_time": "never", "user_id": "u"}
    seen: list[str] = []
    assert shapes.Canonicalizer({"user_id", "event_time"})(record, seen.append) == {
        "user_id": "u",
        "event_time": "never",
    }
    assert seen == ["unparsed_time_event_time"]


def test_canonicalizer_plan_cache_is_bounded():
    canonicalize = shapes.Canonicalizer({"user_id"})
    for n in range(shapes.Canonicalizer.PLANS_MAX * 2 + 3):
        record = {f"k{n}": n, "USER_ID" if n % 2 else "user_id": n}
        assert canonicalize(record) == {"user_id": n}
    assert len(canonicalize._plans) <= shapes.Canonicalizer.PLANS_MAX


def test_canonicalizer_keys_never_reach_generated_source():
    key = "x'] = 1; import os; os._exit(3) #"
    canonicalize = shapes.Canonicalizer({key, "user_id"})
    for _ in range(shapes.Canonicalizer.COMPILE_AFTER + 2):
        assert canonicalize({key: 1, "USER_ID": 2}) == {key: 1, "user_id": 2}


_NAMES = sorted(
    shapes.TIME_FIELDS
    | shapes.BAG_FIELDS
    | shapes.ID_FIELDS
    | {"$insert_id", "insert_id", "_insert_id", "user_id", "uuid", "event_type", "country"}
)


def _spellings(name: str) -> list[str]:
    return [name, name.upper(), name.title(), name[:1].upper() + name[1:]]


_key_pool = st.one_of(
    # the insert id's spellings and aliases often, so their rarer mixes come up too
    st.sampled_from(
        sorted({s for n in ("$insert_id", *shapes.INSERT_ID_ALIASES) for s in _spellings(n)})
    ),
    st.sampled_from(
        sorted({s for name in _NAMES for s in _spellings(name)} | {"Weird Col", "weird col", ""})
    ),
)
_times = st.one_of(
    st.none(),
    st.just(""),
    st.sampled_from(
        [
            "2024-03-01T08:00:00.049000+00:00",
            "2024-01-01T10:00:00.123000Z",
            "2020-02-15 01:00:00.123456",
            "2024-01-01T10:00:00.123Z",
            "1704103200000",
            "not a time",
            "2024-02-30T00:00:00Z",
        ]
    ),
    st.text(max_size=12),
    st.datetimes(timezones=st.none() | st.just(UTC)),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.decimals(allow_nan=True, allow_infinity=True, places=3),
)
_bags = st.one_of(
    _json_values,
    st.dictionaries(st.text(max_size=5), _json_values, max_size=3),
    _json_values.map(lambda v: json.dumps(v, default=str)),
    st.dictionaries(st.text(max_size=5), _json_scalars, max_size=3).map(repr),
    _bag_texts,
)
_ids = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=0, max_value=10**13).map(float),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.text(max_size=5),
)
_any_value = st.one_of(_times, _bags, _ids, _json_values)
_field_sets = st.one_of(
    st.none(),
    st.just(SELECTED),
    st.sets(
        st.sampled_from([*_NAMES, "weird col", "Weird Col", "", "nope", "USER_ID"]), max_size=10
    ),
)


@settings(max_examples=examples(500), deadline=None)
@given(st.lists(st.tuples(_key_pool, _any_value), max_size=14), _field_sets)
def test_canonicalizer_is_to_canonical_restricted(pairs, fields):
    record = dict(pairs)
    before = copy.deepcopy(record)
    _check(shapes.Canonicalizer(fields), record, fields)
    assert repr(record) == repr(before)


_INSERT_ID_SPELLINGS = sorted(
    {s for name in ("$insert_id", *shapes.INSERT_ID_ALIASES) for s in _spellings(name)}
)


@settings(max_examples=examples(300), deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([*_INSERT_ID_SPELLINGS, "uuid"]),
            st.sampled_from([None, "", "a", "b", Decimal("7"), Decimal("7.5"), 8.0]),
        ),
        max_size=6,
    ),
    st.sets(st.sampled_from(["insert_id", "_insert_id", "uuid"])),
)
def test_canonicalizer_insert_id_from_any_mix_of_spellings(pairs, others):
    fields = {"$insert_id", *others}
    _check(shapes.Canonicalizer(fields), dict(pairs), fields)


# --- Python-repr bags: the fast translation to JSON never differs from ast.literal_eval -------


def _reference_parse_bag(text: str):
    """parse_bag as it was before the fast repr path: JSON, then literal_eval (no cache)."""
    stripped = text.strip()
    if not stripped:
        return {}
    if len(stripped) > MAX_BAG_CHARS or stripped[0] not in "{[n":
        return _shapes._UNPARSED
    try:
        value = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        value = _shapes._UNPARSED
        if "NaN" in stripped or "Infinity" in stripped:
            try:
                value = json.loads(stripped, parse_constant=lambda _name: None)
            except (ValueError, RecursionError):
                value = _shapes._UNPARSED
    if value is _shapes._UNPARSED:
        try:
            value = _shapes._json_like(ast.literal_eval(stripped))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return _shapes._UNPARSED
    if value is None or isinstance(value, (dict, list)):
        return value
    return _shapes._UNPARSED


def _same_bag(text: str) -> None:
    _shapes._REPR_CACHE.clear()
    expected = repr(_reference_parse_bag(text))  # repr: types and key order must match too
    assert repr(parse_bag(text)) == expected
    assert repr(parse_bag(text)) == expected  # again, from the cache


_repr_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["None", "True", "false", "null", "it's", 'say "hi"', "a\\b", "1e400", ""]),
)
_repr_values = st.recursive(
    _repr_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["True", "null", "'"]), children, max_size=4
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=examples(400), deadline=None)
@given(st.dictionaries(st.text(max_size=8), _repr_values, max_size=6) | st.lists(_repr_values))
def test_repr_bags_parse_as_literal_eval_does(value) -> None:
    _same_bag(repr(value))


@settings(max_examples=examples(600), deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "{",
                "}",
                "[",
                "]",
                ":",
                ",",
                " ",
                "'",
                '"',
                "\\",
                "True",
                "False",
                "None",
                "true",
                "null",
                "0",
                "1",
                "-",
                ".",
                "5e3",
                "1e400",
                "12345678901234567890",
                "a",
                "\t",
                "\n",
                "\x00",
                "(",
                ")",
                "''",
                "u",
                "b",
                "nan",
            ]
        ),
        max_size=25,
    ).map("".join)
)
@example("{'a': 1, 'a': 2}")
@example("{'a': true}")
@example("{'a': 1e400}")
@example("{'a': 123456789012345678901}")
@example("{'a': '''x'''}")
@example("{'a' 'b': 1}")
@example("[" * 201 + "'a'" + "]" * 201)  # deeper than literal_eval results may be
@example("[" * 200 + "'a'" + "]" * 200)
@example("""["'", 'a', "'"]""")
@example("{'a': (1, 2)}")
@example("{'status': 'None', 'ok': True, 'n': None}")
def test_any_bag_text_parses_as_before(text: str) -> None:
    _same_bag(text)


def test_the_usual_repr_bag_takes_the_fast_path() -> None:
    text = "{'plan': 'pro', 'ok': True, 'none': None, 'n': -5, 'f': 1.5e-07, 'l': ['a', {}]}"
    assert _shapes._repr_as_json(text) is not None
    _same_bag(text)


# --- the tap fixtures (tests/data/taps/) the end-to-end tests feed the CLI --------------------

TAPS_DIR = Path(__file__).resolve().parents[1] / "data" / "taps"
FIXTURES = sorted(TAPS_DIR.glob("*.singer.jsonl"))


def test_every_tap_has_a_fixture():
    names = {path.name for path in FIXTURES}
    assert {
        "airbyte_source_amplitude.singer.jsonl",
        "tap_amplitude_api.singer.jsonl",
        "tap_amplitude_snowflake.singer.jsonl",
        "graet_tap_amplitude.singer.jsonl",
        "hotglue_tap_amplitude.singer.jsonl",
        "raw_export.singer.jsonl",
    } <= names


def test_fixtures_are_what_the_generator_writes(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_taps", TAPS_DIR / "generate.py")
    assert spec and spec.loader
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    for name, build in generator.FIXTURES.items():
        assert (TAPS_DIR / name).read_text(encoding="utf-8") == "\n".join(
            build(generator.EVENTS)
        ) + "\n", name
