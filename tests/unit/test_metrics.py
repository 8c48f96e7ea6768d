"""The ``metrics`` rules: compiled at start-up, exact observations and points per event."""

from __future__ import annotations

from decimal import Decimal

import pytest

from target_planhat.metrics import (
    MetricError,
    MetricRules,
    Observation,
    aggregate,
    check_metrics_path,
    day_of,
    distinct_key,
)

EVENT = {
    "user_id": "alice",
    "event_type": "Report Exported",
    "event_properties": {"rows": 120, "feature": "export", "ms": "35.5"},
    "groups": {"company": ["acme-1", "acme-2"]},
}
ACTIVITY = {"action": "Report Exported", "date": "2024-03-05T23:59:59.999Z"}


def rules(*specs: dict) -> MetricRules:
    return MetricRules(list(specs))


def test_count_sum_and_count_distinct_observations() -> None:
    compiled = rules(
        {"dimensionId": "events", "externalId": "$.groups.company"},
        {
            "dimensionId": "rows_exported",
            "externalId": "$.user_id",
            "model": "EndUser",
            "aggregate": "sum",
            "value": "$.event_properties.rows",
        },
        {
            "dimensionId": "features",
            "externalId": "$.groups.company[1]",
            "aggregate": "count_distinct",
            "value": "$.event_properties.feature",
            "actions": ["Report *"],
        },
        {"dimensionId": "logins", "externalId": "$.user_id", "actions": ["Login"]},
    )
    assert compiled.observe(EVENT, ACTIVITY) == [
        Observation(0, "2024-03-05", "acme-1", 1),
        Observation(1, "2024-03-05", "alice", 120),
        Observation(2, "2024-03-05", "acme-2", "export"),
    ]
    assert compiled.rules[1].point("2024-03-05", "alice", 120) == {
        "dimensionId": "rows_exported",
        "value": 120,
        "externalId": "alice",
        "model": "EndUser",
        "date": "2024-03-05T00:00:00.000Z",
    }


def test_where_conditions_as_in_event_filters() -> None:
    compiled = rules(
        {
            "dimensionId": "big",
            "externalId": "$.user_id",
            "where": [{"path": "$.event_properties.rows", "op": "gt", "value": Decimal("100")}],
        },
        {
            "dimensionId": "small",
            "externalId": "$.user_id",
            "where": [{"path": "$.event_properties.rows", "op": "lte", "value": 100}],
        },
    )
    assert compiled.observe(EVENT, ACTIVITY) == [Observation(0, "2024-03-05", "alice", 1)]


def test_numeric_strings_sum_and_unusable_values_are_counted_as_skipped() -> None:
    compiled = rules(
        {"dimensionId": "ms", "externalId": "$.user_id", "aggregate": "sum", "value": "$.x.ms"},
        {"dimensionId": "by_device", "externalId": "$.device_id"},
    )
    event = {"user_id": 42.0, "x": {"ms": "35.5"}}
    assert compiled.observe(event, ACTIVITY) == [Observation(0, "2024-03-05", "42", 35.5)]
    assert compiled.observe({"user_id": "b", "x": {"ms": "n/a"}}, ACTIVITY) == []
    assert compiled.observe({"user_id": "b"}, {"action": "A", "date": "bad"}) == []
    assert dict(compiled.skipped) == {
        "metrics[1] by_device: no externalId at $.device_id": 2,
        "metrics[0] ms: no number at $.x.ms": 1,
        "metrics[0] ms: no date": 1,
        "metrics[1] by_device: no date": 1,
    }


def test_aggregate_per_rule_day_and_object() -> None:
    compiled = rules(
        {"dimensionId": "n", "externalId": "$.u"},
        {"dimensionId": "d", "externalId": "$.u", "aggregate": "count_distinct", "value": "$.v"},
        {"dimensionId": "s", "externalId": "$.u", "aggregate": "sum", "value": "$.v"},
    )
    observations = [
        Observation(0, "2024-01-01", "a", 1),
        Observation(0, "2024-01-01", "a", 1),
        Observation(0, "2024-01-02", "a", 1),
        Observation(1, "2024-01-01", "a", "x"),
        Observation(1, "2024-01-01", "a", "x"),
        Observation(1, "2024-01-01", "a", "y"),
        Observation(2, "2024-01-01", "b", 2.5),
        Observation(2, "2024-01-01", "b", 1),
    ]
    assert aggregate(compiled.rules, observations) == {
        (0, "2024-01-01", "a"): 2,
        (0, "2024-01-02", "a"): 1,
        (1, "2024-01-01", "a"): {"x", "y"},
        (2, "2024-01-01", "b"): 3.5,
    }


def test_distinct_keys_and_days() -> None:
    assert distinct_key(42) == distinct_key(42.0) == distinct_key("42") == "42"
    assert distinct_key(True) == "true"
    assert distinct_key(None) is None
    assert distinct_key("x" * 200).startswith("sha256:")
    assert day_of("2024-01-31T23:59:59.999Z") == "2024-01-31"
    assert day_of("2024-01-31 10:00") is None


def test_rule_keys_are_stable_and_follow_the_rule_not_its_place() -> None:
    one = {"dimensionId": "n", "externalId": "$.u"}
    two = {"dimensionId": "m", "externalId": "$.u"}
    assert rules(one, two).rules[0].key == rules(two, one).rules[1].key
    assert rules(one).rules[0].key != rules({**one, "actions": ["Login"]}).rules[0].key


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"dimensionId": "a b", "externalId": "$.u"}, "metrics[0].dimensionId: 'a b' must be"),
        ({"dimensionId": "x", "externalId": "$.u", "model": "User"}, "metrics[0].model: 'User'"),
        ({"dimensionId": "x", "externalId": "$[", "model": "Asset"}, "metrics[0].externalId: inv"),
        ({"dimensionId": "x"}, "metrics[0].externalId: required"),
        ({"dimensionId": "x", "externalId": "$.u", "aggregate": "avg"}, "metrics[0].aggregate"),
        ({"dimensionId": "x", "externalId": "$.u", "aggregate": "sum"}, "metrics[0].value: requ"),
        ({"dimensionId": "x", "externalId": "$.u", "value": "$.v"}, "metrics[0].value: only"),
        ({"dimensionId": "x", "externalId": "$.u", "actions": "Login"}, "metrics[0].actions:"),
        (
            {"dimensionId": "x", "externalId": "$.u", "where": [{"path": "$.a", "op": "near"}]},
            "metrics[0].where[0].op: unknown op",
        ),
        ({"dimensionId": "x", "externalId": "$.u", "colour": 1}, "metrics[0]: unknown key"),
    ],
)
def test_config_errors_name_the_field(spec: dict, message: str) -> None:
    with pytest.raises(MetricError) as error:
        MetricRules([spec])
    assert str(error.value).startswith(message)


def test_other_config_errors() -> None:
    with pytest.raises(MetricError, match=r"^metrics: must be a list"):
        MetricRules({"dimensionId": "x"})
    same = {"dimensionId": "x", "externalId": "$.u"}
    with pytest.raises(MetricError, match=r"^metrics\[1\]: the same rule is given twice"):
        MetricRules([same, same])
    assert check_metrics_path("/dimensiondata/{tenant}") == "/dimensiondata/{tenant}"
    with pytest.raises(MetricError, match=r"^metrics_path: must hold"):
        check_metrics_path("/dimensiondata")
    with pytest.raises(MetricError, match=r"^metrics_path: 'x' must be a path"):
        check_metrics_path("x")
