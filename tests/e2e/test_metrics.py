"""Metrics (dimension data) and roll-ups, end to end: the real CLI, real HTTP on 127.0.0.1.

The fixture spans three days and two companies. Expected points are written out by hand from it;
a replay and a ``kill -9`` chain must not send any increment twice: what the receiver kept adds up
to the true count per day (a kill during a metric POST may leave exactly that POST behind, as for
activities, and the check accounts for exactly that POST and nothing else).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.cli import (
    TARGET_BIN,
    base_config,
    event,
    run_target,
    schema_message,
    singer_lines,
    state_message,
    write_config,
)
from tests.support.postgres import StoreBackend
from tests.support.receiver import API_TOKEN, TOKEN, PlanhatReceiver, Reply

# n -> (event_type, user, company, day, hour, event_properties)
EVENTS: dict[int, tuple[str, str | None, str, int, int, dict[str, Any]]] = {
    1: ("Login", "ann", "acme", 1, 9, {}),
    2: ("Page Viewed", "ann", "acme", 1, 9, {"feature": "reports"}),
    3: ("Page Viewed", "bob", "acme", 1, 10, {"feature": "billing"}),
    4: ("Seat Added", "ann", "acme", 1, 11, {"seats": 3}),
    5: ("Login", "cid", "beta", 1, 12, {}),
    6: ("Login", "ann", "acme", 2, 8, {}),
    7: ("Login", "ann", "acme", 2, 9, {}),
    8: ("Page Viewed", "ann", "acme", 2, 9, {"feature": "reports"}),
    9: ("Seat Added", "cid", "beta", 2, 10, {"seats": 2.5}),
    10: ("Seat Added", "cid", "beta", 2, 23, {"seats": "4"}),
    11: ("Page Viewed", None, "beta", 2, 23, {"feature": "anon"}),
    12: ("Login", "bob", "acme", 3, 0, {}),
}

METRICS = [
    {"dimensionId": "logins", "externalId": "$.groups.company", "actions": ["Login"]},
    {
        "dimensionId": "active_users",
        "externalId": "$.groups.company",
        "aggregate": "count_distinct",
        "value": "$.user_id",
    },
    {
        "dimensionId": "seats_added",
        "externalId": "$.groups.company",
        "aggregate": "sum",
        "value": "$.event_properties.seats",
        "actions": ["Seat *"],
    },
    {
        "dimensionId": "features_used",
        "externalId": "$.groups.company",
        "aggregate": "count_distinct",
        "value": "$.event_properties.feature",
        "where": [
            {"path": "$.user_id", "op": "exists"},
            {"path": "$.event_properties.feature", "op": "exists"},
        ],
    },
    {
        "dimensionId": "user_logins",
        "model": "EndUser",
        "externalId": "$.user_id",
        "actions": ["Login"],
    },
]
# Page Viewed activities are not sent; their metrics still count.
FILTERS = {"*": {"exclude": ["Page Viewed"]}}


def record(n: int) -> dict[str, Any]:
    action, user, company, day, hour, props = EVENTS[n]
    return {
        "uuid": f"uuid-{n:06d}",
        "$insert_id": f"ins-{n:06d}",
        "user_id": user,
        "event_type": action,
        "event_time": f"2024-02-0{day}T{hour:02d}:{n:02d}:00.000000Z",
        "event_properties": {"n": n, **props},
        "user_properties": {"plan": "pro"},
        "groups": {"company": [company]},
    }


def point(dimension: str, value: float, external_id: str, day: int, model: str = "Company"):
    return {
        "dimensionId": dimension,
        "value": value,
        "externalId": external_id,
        "model": model,
        "date": f"2024-02-0{day}T00:00:00.000Z",
    }


# By hand from EVENTS: sorted by rule (METRICS order), day, externalId.
EXPECTED_POINTS = [
    point("logins", 1, "acme", 1),
    point("logins", 1, "beta", 1),
    point("logins", 2, "acme", 2),
    point("logins", 1, "acme", 3),
    point("active_users", 2, "acme", 1),  # ann, bob
    point("active_users", 1, "beta", 1),  # cid
    point("active_users", 1, "acme", 2),  # ann
    point("active_users", 1, "beta", 2),  # cid (the anonymous event has no user_id)
    point("active_users", 1, "acme", 3),  # bob
    point("seats_added", 3, "acme", 1),
    point("seats_added", 6.5, "beta", 2),  # 2.5 + "4"
    point("features_used", 2, "acme", 1),  # reports, billing
    point("features_used", 1, "acme", 2),  # reports (the anonymous one is excluded by where)
    point("user_logins", 1, "ann", 1, "EndUser"),
    point("user_logins", 1, "cid", 1, "EndUser"),
    point("user_logins", 2, "ann", 2, "EndUser"),
    point("user_logins", 1, "bob", 3, "EndUser"),
]


def live_config(tmp_path: Path, planhat: PlanhatReceiver, **overrides: Any) -> dict[str, Any]:
    return base_config(
        tmp_path,
        tenant_token=TOKEN,
        planhat_api_token=API_TOKEN,
        check_planhat_ids=False,  # the token serves metrics here; the id check: test_hold.py
        api_url=planhat.url,
        metrics=METRICS,
        event_filters=FILTERS,
        on_invalid_record="skip",
        max_retry_seconds=5,
        **overrides,
    )


def lines(numbers: list[int], final_state: bool = True) -> str:
    return singer_lines([record(n) for n in numbers], final_state=final_state)


def test_metric_points_exact(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        result = run_target(live_config(tmp_path, planhat), lines(list(EVENTS)), tmp_path)
        assert result.returncode == 0, result.stderr
        [request] = planhat.metric_requests()
        assert request.path == f"/dimensiondata/{TOKEN}"
        assert request.authorization == f"Bearer {API_TOKEN}"
        assert request.points == EXPECTED_POINTS
        sent = [a["info"]["n"] for a in planhat.kept_activities()]
    assert sent == [1, 4, 5, 6, 7, 9, 10, 12]  # Page Viewed filtered out, metrics counted
    report = result.report
    assert report is not None
    assert report["metrics_sent"] == len(EXPECTED_POINTS)
    assert report["metrics_rejected"] == 0
    # Counted as skipped, never dropped silently: the anonymous event has no user to count.
    assert report["metrics_skipped"] == {"metrics[1] active_users: no value at $.user_id": 1}
    assert result.states == [{"bookmarks": {"events": {"n": 12}}}]
    assert TOKEN not in result.stderr and API_TOKEN not in result.stderr


def test_replay_sends_no_increment_twice(store_backend: StoreBackend, tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        config = store_backend.configure(live_config(tmp_path, planhat))
        first = run_target(config, lines(list(range(1, 9))), tmp_path)
        assert first.returncode == 0, first.stderr
        # The same input again: every event already counted, nothing sent.
        again = run_target(config, lines(list(range(1, 9))), tmp_path)
        assert again.returncode == 0, again.stderr
        assert len(planhat.metric_requests()) == 1
        assert again.report is not None
        assert again.report["metrics_duplicates_skipped"] == 20  # observations of events 1-8
        assert again.report["metrics_sent"] == 0
        # Overlapping input: only events 9-12 add to the counts.
        rest = run_target(config, lines(list(range(5, 13))), tmp_path)
        assert rest.returncode == 0, rest.stderr
        requests = planhat.metric_requests()
        assert len(requests) == 2
        assert requests[1].points == [
            point("logins", 1, "acme", 3),
            point("active_users", 1, "beta", 2),  # the day's distinct total: cid
            point("active_users", 1, "acme", 3),
            point("seats_added", 6.5, "beta", 2),
            point("user_logins", 1, "bob", 3, "EndUser"),
        ]
        summed: Counter[tuple[str, str, str]] = Counter()
        for p in planhat.kept_points():
            if p["dimensionId"] != "active_users" and p["dimensionId"] != "features_used":
                summed[(p["dimensionId"], p["externalId"], p["date"])] += p["value"]
    expected: Counter[tuple[str, str, str]] = Counter()
    for p in EXPECTED_POINTS:
        if p["dimensionId"] not in ("active_users", "features_used"):
            expected[(p["dimensionId"], p["externalId"], p["date"])] += p["value"]
    assert summed == expected


def test_refused_rows_are_dead_lettered_with_planhats_reason(tmp_path: Path) -> None:
    def refuse_seats(index: int, body: bytes) -> Reply:
        points = json.loads(body)
        errors = [
            {"item": p, "error": "value must be an integer"}
            for p in points
            if p["dimensionId"] == "seats_added"
        ]
        answer = {"processed": len(points) - len(errors), "errors": errors}
        return Reply(body=json.dumps(answer).encode())

    with PlanhatReceiver(metrics_script=refuse_seats) as planhat:
        config = live_config(tmp_path, planhat)
        result = run_target(config, lines(list(EVENTS)), tmp_path)
        assert result.returncode == 0, result.stderr
        again = run_target(config, lines(list(EVENTS)), tmp_path)
        assert len(planhat.metric_requests()) == 1  # refused rows are not sent again
    assert result.report is not None
    assert result.report["metrics_rejected"] == 2
    assert result.report["metrics_sent"] == len(EXPECTED_POINTS) - 2
    dead = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [(d["stream"], d["reason"], d["detail"], d["record"]) for d in dead] == [
        ("dimensiondata", "metric_rejected", "value must be an integer", p)
        for p in EXPECTED_POINTS
        if p["dimensionId"] == "seats_added"
    ]
    assert again.returncode == 0
    assert TOKEN not in (tmp_path / "rejected.jsonl").read_text()


def test_dry_run_writes_marked_points_and_stores_nothing(tmp_path: Path) -> None:
    config = base_config(tmp_path, dry_run=True, metrics=METRICS, event_filters=FILTERS)
    config["on_invalid_record"] = "skip"
    result = run_target(config, lines(list(EVENTS)), tmp_path)
    assert result.returncode == 0, result.stderr
    written = [json.loads(line) for line in (tmp_path / "dry-run.jsonl").read_text().splitlines()]
    points = [line["dimensiondata"] for line in written if "dimensiondata" in line]
    activities = [line for line in written if "dimensiondata" not in line]
    assert points == EXPECTED_POINTS
    assert [a["info"]["n"] for a in activities] == [1, 4, 5, 6, 7, 9, 10, 12]
    assert not (tmp_path / "ledger.sqlite").exists()
    assert result.report is not None
    assert result.report["metrics_dry_run_written"] == len(EXPECTED_POINTS)


ROLLUP_EVENTS = {
    # n: (user, hour, minute, properties): all "Page Viewed" at acme on 2024-02-01
    1: ("ann", 9, 1, {"path": "/a", "tab": "x"}),
    2: ("ann", 9, 30, {"path": "/b", "tab": "x"}),
    3: ("bob", 9, 31, {"path": "/a"}),
    4: ("ann", 9, 59, {"path": "/c", "tab": "x"}),
    5: ("ann", 10, 0, {"path": "/a", "tab": "y"}),
    6: ("ann", 10, 5, {"path": "/a", "tab": "y"}),
}


def rollup_record(n: int) -> dict[str, Any]:
    user, hour, minute, props = ROLLUP_EVENTS[n]
    return {
        "uuid": f"uuid-{n:06d}",
        "user_id": user,
        "event_type": "Page Viewed",
        "event_time": f"2024-02-01T{hour:02d}:{minute:02d}:00Z",
        "event_properties": props,
        "groups": {"company": ["acme"]},
    }


def rolled(user: str, date: str, count: int, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "externalId": user,
        "companyExternalId": "acme",
        "action": "Page Viewed",
        "date": date,
        "info": info,
        "count": count,
    }


def single(user: str, date: str, info: dict[str, Any]) -> dict[str, Any]:
    activity = rolled(user, date, 1, info)
    del activity["count"]
    return activity


def test_rollup_exact_bodies(tmp_path: Path) -> None:
    records = [rollup_record(n) for n in ROLLUP_EVENTS] + [
        {**rollup_record(1), "uuid": "login-1", "event_type": "Login"}
    ]
    with PlanhatReceiver() as planhat:
        config = base_config(
            tmp_path, tenant_token=TOKEN, api_url=planhat.url, rollup={"actions": ["Page *"]}
        )
        result = run_target(config, singer_lines(records), tmp_path)
        assert result.returncode == 0, result.stderr
        [request] = planhat.activity_requests()
    assert request.activities == [
        rolled("ann", "2024-02-01T09:01:00Z", 3, {"tab": "x"}),
        single("bob", "2024-02-01T09:31:00Z", {"path": "/a"}),  # alone: sent as it is
        rolled("ann", "2024-02-01T10:00:00Z", 2, {"path": "/a", "tab": "y"}),
        {
            "externalId": "ann",
            "companyExternalId": "acme",
            "action": "Login",
            "date": "2024-02-01T09:01:00Z",
            "info": {"path": "/a", "tab": "x"},
        },
    ]
    assert result.report is not None
    assert (result.report["rollup_events"], result.report["rollup_activities"]) == (6, 3)
    assert result.report["sent"] == 4


def test_a_replayed_event_is_not_counted_twice_in_a_rollup(tmp_path: Path) -> None:
    with PlanhatReceiver() as planhat:
        config = base_config(
            tmp_path,
            tenant_token=TOKEN,
            api_url=planhat.url,
            rollup={"actions": ["Page *"], "per": "day"},
        )
        # The first run ends without a STATE (as after a crash): its input is replayed.
        first = run_target(
            config, singer_lines([rollup_record(n) for n in (1, 2, 3)], final_state=False), tmp_path
        )
        assert first.returncode == 0, first.stderr
        assert first.states == []
        second = run_target(
            config, singer_lines([rollup_record(n) for n in ROLLUP_EVENTS]), tmp_path
        )
        assert second.returncode == 0, second.stderr
        first_body, second_body = (r.activities for r in planhat.activity_requests())
    assert first_body == [
        rolled("ann", "2024-02-01T09:01:00Z", 2, {"tab": "x"}),
        single("bob", "2024-02-01T09:31:00Z", {"path": "/a"}),
    ]
    assert second_body == [rolled("ann", "2024-02-01T09:59:00Z", 3, {})]
    counts = Counter()
    for activity in planhat.kept_activities():
        counts[activity["externalId"]] += activity.get("count", 1)
    assert counts == {"ann": 5, "bob": 1}  # one per event, every event once


# --- kill -9 chain -----------------------------------------------------------------------------

CHAIN_EVENTS = 240
STATE_EVERY = 5


def chain_record(n: int) -> dict[str, Any]:
    return {
        "uuid": f"uuid-{n:06d}",
        "user_id": f"u{n % 7}",
        "event_type": "Login" if n % 3 else "Report Run",
        "event_time": f"2024-02-0{1 + n % 3}T{n % 24:02d}:00:00Z",
        "event_properties": {"n": n, "rows": n % 5},
        "groups": {"company": [f"c{n % 4}"]},
    }


CHAIN_METRICS = [
    {"dimensionId": "events", "externalId": "$.groups.company"},
    {
        "dimensionId": "rows",
        "externalId": "$.user_id",
        "model": "EndUser",
        "aggregate": "sum",
        "value": "$.event_properties.rows",
    },
    {
        "dimensionId": "users",
        "externalId": "$.groups.company",
        "aggregate": "count_distinct",
        "value": "$.user_id",
    },
]


def chain_input(first: int) -> bytes:
    out = [json.dumps(schema_message("events"))]
    for n in range(first, CHAIN_EVENTS + 1):
        out.append(json.dumps({"type": "RECORD", "stream": "events", "record": chain_record(n)}))
        if n % STATE_EVERY == 0 or n == CHAIN_EVENTS:
            out.append(json.dumps(state_message("events", n)))
    return ("\n".join(out) + "\n").encode()


def test_kill_chain_sends_no_increment_twice(store_backend: StoreBackend, tmp_path: Path) -> None:
    """Killed during metric POSTs and an activity POST, resumed from the last STATE each time."""
    current: dict[str, Any] = {}
    lock = threading.Lock()
    metric_posts = [0]
    activity_posts = [0]
    killed_during: list[int] = []  # receiver index of the metric POST a kill landed in

    def kill_now() -> None:
        process = current.get("process")
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)

    def on_metrics(index: int, body: bytes) -> Reply:
        with lock:
            metric_posts[0] += 1
            if metric_posts[0] in (2, 5, 9):  # killed while this POST is in flight
                killed_during.append(index)
                kill_now()
        return Reply()

    def on_activities(index: int, body: bytes) -> Reply:
        with lock:
            activity_posts[0] += 1
            if activity_posts[0] == 4:
                kill_now()
        return Reply()

    with PlanhatReceiver(script=on_activities, metrics_script=on_metrics) as planhat:
        config = store_backend.configure(
            base_config(
                tmp_path,
                tenant_token=TOKEN,
                planhat_api_token=API_TOKEN,
                check_planhat_ids=False,
                api_url=planhat.url,
                metrics=CHAIN_METRICS,
                batch_size_rows=12,
                max_retry_seconds=5,
            )
        )
        config_path = write_config(tmp_path, config)
        first, runs, kills = 1, 0, 0
        while True:
            runs += 1
            assert runs < 20, "the chain does not finish"
            process = subprocess.Popen(
                [TARGET_BIN, "--config", str(config_path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=tmp_path,
            )
            current["process"] = process
            out, _ = process.communicate(chain_input(first), timeout=120)
            bookmarks = [
                json.loads(line)["bookmarks"]["events"]["n"] for line in out.splitlines() if line
            ]
            if bookmarks:
                first = bookmarks[-1] + 1
            if process.returncode == -signal.SIGKILL:
                kills += 1
                continue
            assert process.returncode == 0
            break
        assert kills == 4
        planhat.settle()
        kept: Counter[tuple[str, str, str]] = Counter()
        for p in planhat.kept_points():
            if p["dimensionId"] != "users":
                kept[(p["dimensionId"], p["externalId"], p["date"])] += p["value"]
        in_flight: Counter[tuple[str, str, str]] = Counter()
        for request in planhat.metric_requests():
            if request.index in killed_during and request.kept:
                for p in request.points:
                    if p["dimensionId"] != "users":
                        in_flight[(p["dimensionId"], p["externalId"], p["date"])] += p["value"]
        users_last: dict[tuple[str, str], int] = {}
        for p in planhat.kept_points():
            if p["dimensionId"] == "users":
                users_last[(p["externalId"], p["date"])] = p["value"]
    true: Counter[tuple[str, str, str]] = Counter()
    distinct: dict[tuple[str, str], set[str]] = {}
    for n in range(1, CHAIN_EVENTS + 1):
        r = chain_record(n)
        day = r["event_time"][:10] + "T00:00:00.000Z"
        company = r["groups"]["company"][0]
        true[("events", company, day)] += 1
        true[("rows", r["user_id"], day)] += r["event_properties"]["rows"]
        distinct.setdefault((company, day), set()).add(r["user_id"])
    # Nothing lost, and the only increments sent twice are those of the POSTs a kill cut off.
    assert kept == true + in_flight
    assert sum(in_flight.values()) > 0  # the kills did land in metric POSTs
    # count_distinct (LAST): the last total sent per company and day is the true one.
    assert users_last == {key: len(users) for key, users in distinct.items()}


def test_concurrent_runs_of_one_tenant_end_on_the_true_distinct_total(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    """Two pipelines, one store and tenant, the same company and day, different users, started
    together, each one batch. Planhat takes a second to answer, and a run commits its values
    only after the answer: without the lock both runs count from an empty store and send 60 each,
    and the last point Planhat keeps for the day (LAST) is 60, not 120. With it the second run
    waits for the first to commit and sends 120, after the first's 60."""
    rule = {
        "dimensionId": "active_users",
        "externalId": "$.groups.company",
        "aggregate": "count_distinct",
        "value": "$.user_id",
    }
    per_run = 60
    inputs = {
        name: singer_lines(
            [
                event(n, user=f"{name}-user-{n}", groups={"company": ["acme"]})
                for n in range(first, first + per_run)
            ]
        )
        for name, first in (("a", 1), ("b", 1 + per_run))
    }
    results: dict[str, Any] = {}
    with PlanhatReceiver(lambda i, body: Reply(delay=1.0)) as planhat:

        def run(name: str) -> None:
            workdir = tmp_path / name
            workdir.mkdir()
            config = store_backend.configure({**live_config(workdir, planhat), "metrics": [rule]})
            results[name] = run_target(config, inputs[name], workdir)

        threads = [threading.Thread(target=run, args=(name,)) for name in inputs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        points = planhat.kept_points()
    for name in inputs:
        assert results[name].returncode == 0, results[name].stderr
    totals = [p["value"] for p in points if p["dimensionId"] == "active_users"]
    assert totals == [per_run, 2 * per_run], totals
