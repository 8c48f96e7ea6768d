"""Roll-ups: which events go together, and the exact activity they become."""

from __future__ import annotations

import pytest

from target_planhat.rollup import RollUp, RollUpError, combine


def activity(n: int, date: str, user: str = "u1", action: str = "Page Viewed", **info) -> dict:
    return {
        "externalId": user,
        "companyExternalId": "acme",
        "action": action,
        "date": date,
        "info": {"n": n, "plan": "pro", **info},
    }


def test_groups_by_user_company_action_and_hour() -> None:
    rollup = RollUp({"actions": ["Page *"], "per": "hour"})
    batch = [
        activity(0, "2024-01-01T10:00:00.000Z"),
        activity(1, "2024-01-01T10:59:59.999Z"),
        activity(2, "2024-01-01T11:00:00.000Z"),
        activity(3, "2024-01-01T10:30:00.000Z", user="u2"),
        activity(4, "2024-01-01T10:31:00.000Z", action="Page Left"),
        activity(5, "2024-01-01T10:32:00.000Z"),
    ]
    assert rollup.groups(enumerate(batch)) == [[0, 1, 5], [2], [3], [4]]
    day = RollUp({"actions": ["Page *"], "per": "day"})
    assert day.groups(enumerate(batch)) == [[0, 1, 2, 5], [3], [4]]
    assert rollup.applies("Page Viewed") and not rollup.applies("Login")
    assert not rollup.applies(None)


def test_combined_activity_exact() -> None:
    group = [
        activity(0, "2024-01-01T10:00:00.000Z", path="/a", tags=["x"]),
        activity(1, "2024-01-01T10:05:00.000Z", path="/b", tags=["x"]),
        activity(2, "2024-01-01T10:09:00.000Z", path="/a", tags=["x"]),
    ]
    assert combine(group) == {
        "externalId": "u1",
        "companyExternalId": "acme",
        "action": "Page Viewed",
        "date": "2024-01-01T10:00:00.000Z",
        "info": {"plan": "pro", "tags": ["x"]},
        "count": 3,
    }


def test_shared_info_compares_as_json_and_counts_add_up() -> None:
    one = {"action": "A", "date": "d", "count": 4, "info": {"flag": True, "k": 1}}
    two = {"action": "A", "date": "d", "info": {"flag": 1, "k": 1}}
    assert combine([one, two]) == {"action": "A", "date": "d", "count": 5, "info": {"k": 1}}
    assert combine([{"action": "A"}, {"action": "A"}]) == {"action": "A", "count": 2}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "rollup: must be an object"),
        ({"per": "hour"}, "rollup.actions: required"),
        ({"actions": "Page*"}, "rollup.actions: must be a list"),
        ({"actions": ["A"], "per": "week"}, "rollup.per: 'week'"),
        ({"actions": ["A"], "every": "hour"}, "rollup: unknown key"),
    ],
)
def test_config_errors(spec: object, message: str) -> None:
    with pytest.raises(RollUpError) as error:
        RollUp(spec)
    assert str(error.value).startswith(message)
