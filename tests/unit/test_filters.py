"""Stream-level event filters and the `streams` selection."""

from __future__ import annotations

import pytest

from target_planhat.filters import EventFilters, FilterError, stream_selector
from target_planhat.settings import DEFAULT_STREAMS

RECORD = {
    "event_type": "Page Viewed",
    "user_id": "alice",
    "platform": "Web",
    "event_properties": {"path": "/billing", "ms": 250, "beta": True, "tags": ["a", "b"]},
    "groups": {"company": ["acme-1", "acme-2"]},
    "empty": None,
}


def decide(spec: dict, record: dict = RECORD, action: str = "Page Viewed", stream: str = "events"):
    return EventFilters(spec).decide(stream, record, {"action": action})


def where(op: str, path: str, *value: object) -> dict:
    """A ``*`` rule with one condition; ``value`` only when given (exists takes none)."""
    condition: dict[str, object] = {"path": path, "op": op}
    if value:
        condition["value"] = value[0]
    return {"*": {"where": [condition]}}


def test_no_filters_keep_everything() -> None:
    assert decide({}) is None


def test_include_globs() -> None:
    assert decide({"*": {"include": ["Page *"]}}) is None
    assert decide({"*": {"include": ["Login", "Report*"]}}) == "*: include"


def test_exclude_globs_name_the_glob() -> None:
    assert decide({"events": {"exclude": ["Login", "Page*"]}}) == "events: exclude Page*"
    assert decide({"events": {"exclude": ["Login"]}}) is None


def test_globs_are_case_sensitive() -> None:
    assert decide({"*": {"include": ["page viewed"]}}) == "*: include"
    assert decide({"*": {"exclude": ["page*"]}}) is None


def test_glob_character_classes() -> None:
    assert decide({"*": {"include": ["[A-Z]age ?iewed"]}}) is None
    assert decide({"*": {"include": ["[a-z]age*"]}}) == "*: include"


def test_include_and_exclude_together() -> None:
    spec = {"*": {"include": ["Page*"], "exclude": ["*Viewed"]}}
    assert decide(spec) == "*: exclude *Viewed"


def test_activity_without_action_fails_an_include() -> None:
    assert EventFilters({"*": {"include": ["*"]}}).decide("events", RECORD, {}) is None
    assert EventFilters({"*": {"include": ["P*"]}}).decide("events", RECORD, {}) == "*: include"


def test_stream_rule_and_star_rule_both_apply() -> None:
    spec = {"*": {"exclude": ["Login"]}, "events": {"include": ["Page*"]}}
    assert decide(spec) is None
    assert decide(spec, action="Login") == "*: exclude Login"
    assert decide(spec, stream="other", action="Logout") is None


def test_rules_of_other_streams_do_not_apply() -> None:
    assert decide({"event": {"include": ["Nope"]}}, stream="events") is None


@pytest.mark.parametrize(
    ("op", "path", "value", "kept"),
    [
        ("eq", "$.platform", "Web", True),
        ("eq", "$.platform", "web", False),
        ("eq", "$.event_properties.beta", True, True),
        ("eq", "$.event_properties.beta", 1, False),  # True is not 1
        ("eq", "$.missing", None, False),
        ("ne", "$.platform", "iOS", True),
        ("ne", "$.platform", "Web", False),
        ("ne", "$.missing", "x", True),
        ("in", "$.platform", ["iOS", "Web"], True),
        ("in", "$.platform", ["iOS"], False),
        ("in", "$.missing", ["x"], False),
        ("not_in", "$.platform", ["iOS"], True),
        ("not_in", "$.platform", ["Web"], False),
        ("not_in", "$.missing", ["x"], True),
        ("exists", "$.event_properties.path", None, True),
        ("exists", "$.missing", None, False),
        ("exists", "$.empty", None, False),  # null counts as absent
        ("not_exists", "$.missing", None, True),
        ("not_exists", "$.empty", None, True),
        ("not_exists", "$.platform", None, False),
        ("gt", "$.event_properties.ms", 100, True),
        ("gt", "$.event_properties.ms", 250, False),
        ("gte", "$.event_properties.ms", 250, True),
        ("lt", "$.event_properties.ms", 250, False),
        ("lte", "$.event_properties.ms", 250, True),
        ("lt", "$.event_properties.ms", 1000.5, True),
        ("gt", "$.platform", "A", True),  # strings compare as strings
        ("gt", "$.platform", 1, False),  # a string is never > a number
        ("gt", "$.event_properties.beta", 0, False),  # booleans are not numbers
        ("gt", "$.missing", 0, False),
        ("matches", "$.event_properties.path", "^/bill", True),
        ("matches", "$.event_properties.path", "^bill", False),
        ("matches", "$.event_properties.ms", "^25", True),  # non-strings match as text
        ("matches", "$.missing", ".*", False),
        # a matched list is opened one level
        ("eq", "$.groups.company", "acme-2", True),
        ("in", "$.event_properties.tags", ["b"], True),
        ("not_in", "$.event_properties.tags", ["b"], False),
        ("eq", "$.groups.company[0]", "acme-2", False),
    ],
)
def test_where_ops(op: str, path: str, value: object, kept: bool) -> None:
    spec = where(op, path) if op in ("exists", "not_exists") else where(op, path, value)
    result = decide(spec)
    assert (result is None) == kept, result
    if not kept:
        assert result.startswith(f"*: where {path} {op}")


def test_every_where_condition_must_hold() -> None:
    spec = {
        "*": {
            "where": [
                {"path": "$.platform", "op": "eq", "value": "Web"},
                {"path": "$.event_properties.ms", "op": "lt", "value": 100},
            ]
        }
    }
    assert decide(spec) == "*: where $.event_properties.ms lt 100"


def test_where_uses_jsonpath_ng_for_complex_paths() -> None:
    record = dict(RECORD, data={"items": [{"ms": 100, "p": "/a"}, {"ms": 300, "p": "/b"}]})
    assert decide(where("eq", "$.data.items[?(@.ms > 200)].p", "/b"), record) is None
    assert decide(where("eq", "$.data.items[?(@.ms > 200)].p", "/a"), record) is not None
    spec = where("exists", "$..ms")
    assert decide(spec) is None


W0 = "event_filters.*.where[0]"


@pytest.mark.parametrize(
    ("spec", "setting"),
    [
        ([], "event_filters"),
        ({"events": []}, "event_filters.events"),
        ({"events": {"includes": ["x"]}}, "event_filters.events: unknown key(s) includes"),
        ({"events": {"include": "Login"}}, "event_filters.events.include"),
        ({"*": {"exclude": [1]}}, "event_filters.*.exclude"),
        ({"*": {"where": {"path": "$.a"}}}, "event_filters.*.where"),
        ({"*": {"where": [{"path": "$.a", "op": "like", "value": 1}]}}, W0 + ".op"),
        ({"*": {"where": [{"path": "$.[[", "op": "eq", "value": 1}]}}, W0 + ".path"),
        ({"*": {"where": [{"path": "$.a", "op": "eq"}]}}, W0 + ".value"),
        ({"*": {"where": [{"path": "$.a", "op": "in", "value": 1}]}}, W0 + ".value"),
        ({"*": {"where": [{"path": "$.a", "op": "matches", "value": "("}]}}, W0 + ".value"),
        ({"*": {"where": [{"path": "$.a", "op": "gt", "value": [1]}]}}, W0 + ".value"),
        ({"*": {"where": [{"op": "eq", "value": 1}]}}, W0),
        ({"*": {"where": [{"path": "$.a", "op": "eq", "value": 1, "x": 2}]}}, W0),
    ],
)
def test_bad_filters_name_the_setting(spec: object, setting: str) -> None:
    with pytest.raises(FilterError) as caught:
        EventFilters(spec)  # type: ignore[arg-type]
    assert str(caught.value).startswith(setting)


@pytest.mark.parametrize(
    ("stream", "selected"),
    [
        ("event", True),
        ("events", True),
        ("EVENTS", True),
        ("AMPLITUDE-EVENTS_123456", True),
        ("amplitude-events_42", True),
        ("events_list", False),
        ("cohorts", False),
        ("annotations", False),
        ("active_users", False),
        ("average_session_length", False),
        ("AMPLITUDE-MERGE_IDS_123456", False),
    ],
)
def test_default_stream_selection(stream: str, selected: bool) -> None:
    assert stream_selector(DEFAULT_STREAMS)(stream) is selected


def test_custom_stream_globs() -> None:
    selected = stream_selector(["Prod-*"])
    assert selected("prod-events")
    assert not selected("events")
    assert not stream_selector([])("events")
    with pytest.raises(FilterError, match="streams"):
        stream_selector("events")  # type: ignore[arg-type]


def test_config_decimals_compare_like_the_floats_in_records() -> None:
    """The SDK parses config files with floats as Decimal; 0.1 must still equal 0.1."""
    from decimal import Decimal

    record = {"event_properties": {"ratio": 0.1}}
    assert decide(where("eq", "$.event_properties.ratio", Decimal("0.1")), record) is None
    assert decide(where("in", "$.event_properties.ratio", [Decimal("0.1")]), record) is None
    assert decide(where("gt", "$.event_properties.ratio", Decimal("0.05")), record) is None


def test_word_in_brackets_warns_with_the_literal_spelling(caplog: pytest.LogCaptureFixture) -> None:
    """'[Amplitude] *' is a character class in fnmatch: say so, and how to write it."""
    with caplog.at_level("WARNING", logger="target_planhat.filters"):
        EventFilters({"*": {"exclude": ["[Amplitude] *"]}})
    assert "'[[]Amplitude] *'" in caplog.text
    assert "event_filters.*.exclude" in caplog.text
    assert decide({"*": {"exclude": ["[[]Amplitude] *"]}}, action="[Amplitude] Page Viewed")
    caplog.clear()
    with caplog.at_level("WARNING", logger="target_planhat.filters"):
        EventFilters({"*": {"exclude": ["[[]Amplitude] *", "Page [A-Z]*", "[!a]x"]}})
    assert caplog.text == ""
