"""The hold in the store (both backends) and ``on_unmatched`` in the delivery path."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from target_planhat.hold import EXPIRED, Hold, Item, UnmatchedActivity, UnmatchedPolicy
from target_planhat.known_ids import KnownIds, Unmatched
from target_planhat.planhat_rest import COMPANIES, ENDUSERS, PlanhatRestClient
from target_planhat.rejects import DeadLetterFile
from target_planhat.report import DeliveryReport
from target_planhat.settings import DEFAULT_PAGE_SIZES
from tests.support.planhat_rest import REST_TOKEN, PlanhatRestStandIn
from tests.support.postgres import StoreBackend

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _item(n: int, company: str, user: str = "u-x") -> Item:
    activity = {
        "externalId": user,
        "companyExternalId": company,
        "action": "Login",
        "date": f"2024-01-{n % 28 + 1:02d}T10:00:00.000Z",
        "info": {"n": n},
    }
    return (f"ins-{n:06d}", orjson.dumps(activity), "Login", n, str(activity["date"]))


@pytest.fixture
def store(store_backend: StoreBackend, tmp_path: Path):
    store = store_backend.open(tmp_path)
    yield store
    store.close()


def test_held_rows_round_trip_and_summarise(store, tmp_path: Path):
    clock = Clock()
    hold = Hold(store, clock)
    rows = [
        (f"ins-{n}", "events", _item(n, "co-a")[1], "Login", Unmatched("unknown_company", "co-a"))
        for n in range(3)
    ]
    rows.append(("ins-9", "events", _item(9, "")[1], "Login", Unmatched("unknown_user", "u-x")))
    hold.add(rows)
    clock.now += 10
    hold.add(rows[:1])  # held again (a replay): keeps its first held_at
    assert hold.count() == 4
    pages = list(hold.pages(size=3))
    assert [len(p) for p in pages] == [3, 1]
    assert {h.id for p in pages for h in p} == {"ins-0", "ins-1", "ins-2", "ins-9"}
    assert pages[0][0].held_at == pytest.approx(1_700_000_000.0)
    assert orjson.loads(pages[0][0].activity)["info"] == {"n": 0}
    summary = hold.summary()
    assert summary["held"] == 4
    assert summary["held_by"] == {"unknown_company": 3, "unknown_user": 1}
    assert summary["top_unknown_ids"][0] == {
        "reason": "unknown_company",
        "id": "co-a",
        "activities": 3,
    }
    assert summary["oldest_held_at"] == "2023-11-14T22:13:20Z"
    assert summary["oldest_activity_date"] == "2024-01-01T10:00:00.000Z"
    hold.delete(["ins-0", "ins-9"])
    assert hold.count() == 2


def test_the_hold_is_scoped_by_tenant(store_backend: StoreBackend, tmp_path: Path):
    mine = store_backend.open(tmp_path, tenant_token="tenant-token-1")
    other = store_backend.open(tmp_path, tenant_token="tenant-token-2")
    try:
        Hold(mine).add([("i", "s", b"{}", "a", Unmatched("unknown_user", "u"))])
        assert Hold(other).count() == 0 and Hold(mine).count() == 1
    finally:
        mine.close()
        other.close()


_OPENED: list[DeadLetterFile] = []


@pytest.fixture(autouse=True)
def _close_dead_letter_files():
    yield
    while _OPENED:
        _OPENED.pop().close()


def _policy(rest, store, tmp_path: Path, policy: str = "hold", clock=None, hold_days: float = 30):
    clock = clock or Clock()
    client = PlanhatRestClient(rest.url, REST_TOKEN, request_timeout=5, max_retry_seconds=3)
    known = KnownIds(
        client, (COMPANIES, ENDUSERS), DEFAULT_PAGE_SIZES, 60, store=store, clock=clock
    )
    known.refresh_if_due()
    hold = Hold(store, clock) if store is not None else None
    report = DeliveryReport()
    dead = DeadLetterFile(tmp_path / "rejected.jsonl")
    _OPENED.append(dead)
    return UnmatchedPolicy(policy, known, hold, hold_days, dead, report), report


def _dead_letters(tmp_path: Path) -> list[dict]:
    path = tmp_path / "rejected.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


ITEMS = [_item(1, "co-known"), _item(2, "co-new"), _item(3, "co-known"), _item(4, "co-new")]


def test_hold_stores_the_unmatched_and_sends_the_rest(store, tmp_path: Path):
    with PlanhatRestStandIn(companies=["co-known"]) as rest:
        policy, report = _policy(rest, store, tmp_path)
        send, unmatched = policy.split(ITEMS, "events")
    assert [i[0] for i in send] == ["ins-000001", "ins-000003"] and not unmatched
    assert dict(report.held) == {"unknown_company": 2}
    assert "unknown_company 'co-new' (2)" in report.top_unknown_ids()
    held = [h for page in Hold(store).pages() for h in page]
    assert [(h.id, h.stream, h.reason, h.unknown_id) for h in held] == [
        ("ins-000002", "events", "unknown_company", "co-new"),
        ("ins-000004", "events", "unknown_company", "co-new"),
    ]
    assert held[0].activity == ITEMS[1][1]  # byte for byte what would have been sent


def test_send_sends_all_and_says_which_were_unmatched(store, tmp_path: Path):
    with PlanhatRestStandIn(companies=["co-known"]) as rest:
        policy, _ = _policy(rest, store, tmp_path, "send")
        send, unmatched = policy.split(ITEMS, "events")
    assert send == ITEMS and unmatched == {"ins-000002", "ins-000004"}
    assert Hold(store).count() == 0


def test_dead_letter_writes_each_unmatched_with_its_reason(store, tmp_path: Path):
    with PlanhatRestStandIn(companies=["co-known"]) as rest:
        policy, report = _policy(rest, store, tmp_path, "dead_letter")
        send, _ = policy.split(ITEMS, "events")
    assert len(send) == 2 and dict(report.rejected) == {"unknown_company": 2}
    lines = _dead_letters(tmp_path)
    assert [(x["reason"], x["activity"]["info"]["n"]) for x in lines] == [
        ("unknown_company", 2),
        ("unknown_company", 4),
    ]
    assert Hold(store).count() == 0


def test_fail_stops_naming_the_activity(store, tmp_path: Path):
    with PlanhatRestStandIn(companies=["co-known"]) as rest:
        policy, _ = _policy(rest, store, tmp_path, "fail")
        with pytest.raises(UnmatchedActivity, match=r"ins-000002 .*unknown_company 'co-new'"):
            policy.split(ITEMS, "events")


def test_dry_run_counts_what_would_be_held_and_stores_nothing(tmp_path: Path):
    with PlanhatRestStandIn(companies=["co-known"]) as rest:
        policy, report = _policy(rest, None, tmp_path)
        send, _ = policy.split(ITEMS, "events")
    assert len(send) == 2 and dict(report.held) == {"unknown_company": 2}


def test_release_sends_what_now_matches_and_lets_go_of_it(store, tmp_path: Path):
    clock = Clock()
    with PlanhatRestStandIn(companies=["co-known"]) as rest:
        policy, _ = _policy(rest, store, tmp_path, clock=clock)
        policy.split([*ITEMS, _item(5, "co-later")], "events")
        rest.add_company("co-new")
        clock.now += 61  # the next run: its ids are over a minute old, so listed again
        policy, _ = _policy(rest, store, tmp_path, clock=clock)
        delivered: list[list] = []
        policy.release(delivered.append)
    assert [[i[0] for i in batch] for batch in delivered] == [["ins-000002", "ins-000004"]]
    assert delivered[0][0][1] == ITEMS[1][1]
    assert [h.id for p in Hold(store).pages() for h in p] == ["ins-000005"]


def test_a_failed_release_keeps_the_activities_held(store, tmp_path: Path):
    clock = Clock()
    with PlanhatRestStandIn(companies=["co-known"]) as rest:
        policy, _ = _policy(rest, store, tmp_path, clock=clock)
        policy.split(ITEMS, "events")
        rest.add_company("co-new")
        clock.now += 61
        policy, _ = _policy(rest, store, tmp_path, clock=clock)

        def failing(items: list) -> None:
            raise RuntimeError("Planhat is down")

        with pytest.raises(RuntimeError):
            policy.release(failing)
    assert Hold(store).count() == 2


def test_expired_activities_go_to_the_dead_letter_file(store, tmp_path: Path):
    clock = Clock()
    with PlanhatRestStandIn(companies=["co-known"]) as rest:
        policy, _ = _policy(rest, store, tmp_path, clock=clock, hold_days=30)
        policy.split(ITEMS[:2], "events")  # ins-000002 held now
        clock.now += 20 * DAY
        policy.split(ITEMS[3:], "events")  # ins-000004 held 20 days later
        clock.now += 11 * DAY
        policy, report = _policy(rest, store, tmp_path, clock=clock, hold_days=30)
        policy.expire(now=clock.now)
    assert report.expired == 1
    lines = _dead_letters(tmp_path)
    assert [(x["reason"], x["stream"], x["activity"]["info"]["n"]) for x in lines] == [
        (EXPIRED, "events", 2)
    ]
    assert "unknown_company 'co-new'" in lines[0]["detail"]
    assert [h.id for p in Hold(store).pages() for h in p] == ["ins-000004"]
