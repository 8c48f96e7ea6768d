"""What each metric rule counted, in both store backends: once per rule, per tenant."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson

from target_planhat.metric_counts import MetricCounts, schema
from target_planhat.metric_delivery import MetricDelivery, Seen
from target_planhat.metrics import MetricRules, Observation
from target_planhat.rejects import DeadLetterFile
from target_planhat.report import DeliveryReport
from target_planhat.shutdown import ShutdownGuard
from tests.support.postgres import StoreBackend


def test_counted_events_once_per_rule_and_tenant(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    store = store_backend.open(tmp_path)
    counts = MetricCounts(store)
    assert counts.counted("r1", ["e1", "e2"]) == set()
    counts.commit([("r1", "e1"), ("r1", "e2"), ("r2", "e1")], [])
    counts.commit([("r1", "e1")], [])  # a re-commit (replay after a lost answer) is harmless
    assert counts.counted("r1", ["e1", "e2", "e3"]) == {"e1", "e2"}
    assert counts.counted("r2", ["e1", "e2"]) == {"e1"}
    assert counts.counted("r3", ["e1"]) == set()
    other = MetricCounts(store_backend.open(tmp_path, tenant_token="another-tenant"))
    assert other.counted("r1", ["e1", "e2"]) == set()
    many = [f"e{i}" for i in range(1000)]
    counts.commit([("r1", e) for e in many], [])
    assert counts.counted("r1", [*many, "x"]) == set(many)


def test_distinct_totals_from_the_store_plus_the_new_values(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    counts = MetricCounts(store_backend.open(tmp_path))
    assert counts.distinct_totals("r", "2024-01-01", {"acme": {"u1", "u2"}}) == {"acme": 2}
    counts.commit([], [("r", "2024-01-01", "acme", "u1"), ("r", "2024-01-01", "acme", "u2")])
    counts.commit([], [("r", "2024-01-02", "acme", "u9"), ("r", "2024-01-01", "beta", "u1")])
    new = {"acme": {"u2", "u3"}, "beta": {"u1"}, "gamma": {"u1"}}
    assert counts.distinct_totals("r", "2024-01-01", new) == {"acme": 3, "beta": 1, "gamma": 1}
    assert counts.distinct_totals("q", "2024-01-01", {"acme": {"u1"}}) == {"acme": 1}
    # Reopened (a later run): the same totals.
    again = MetricCounts(store_backend.open(tmp_path))
    assert again.distinct_totals("r", "2024-01-01", {"acme": {"u1"}}) == {"acme": 2}


def test_prune_forgets_old_counted_events_not_distinct_values(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    store = store_backend.open(tmp_path)
    counts = MetricCounts(store)
    counts.commit([("r", "old")], [("r", "2020-01-01", "acme", "u1")])
    store.execute("UPDATE tp_metric_counted SET counted_at = 0")
    assert MetricCounts(store, ttl_days=7).pruned == 1
    assert counts.counted("r", ["old"]) == set()
    assert counts.distinct_totals("r", "2020-01-01", {"acme": {"u2"}}) == {"acme": 2}


def test_a_day_without_new_values_for_the_ttl_closes_and_is_never_counted_smaller(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    """Retention of count_distinct values: by when the day last received a value, not by its
    date; a closed day's values go, its tombstone stays, and its events are skipped."""
    store = store_backend.open(tmp_path)
    counts = MetricCounts(store)
    # An old date that still receives values (a backfill) stays open.
    counts.commit([], [("r", "2020-01-01", "acme", "u1"), ("r", "2020-01-01", "acme", "u2")])
    counts.commit([], [("r", "2020-01-02", "acme", "u1"), ("q", "2020-01-01", "acme", "u1")])
    assert MetricCounts(store, ttl_days=7).pruned_days == 0
    # Nothing added to r's 2020-01-01 for longer than the TTL: closed at the next start.
    store.execute(
        "UPDATE tp_metric_days SET touched_at = 0 WHERE rule = 'r' AND day = '2020-01-01'"
    )
    reopened = MetricCounts(store, ttl_days=7)
    assert reopened.pruned_days == 1
    assert reopened.closed_days("r", ["2020-01-01", "2020-01-02"]) == {"2020-01-01"}
    assert reopened.closed_days("q", ["2020-01-01"]) == set()
    left = store.execute("SELECT rule, day, value FROM tp_metric_values ORDER BY 1, 2, 3")
    assert [tuple(row) for row in left] == [
        ("q", "2020-01-01", "u1"),
        ("r", "2020-01-02", "u1"),
    ]
    assert MetricCounts(store, ttl_days=7).pruned_days == 0  # closed once

    # A late event of the closed day is skipped (reported), never sent as a total of 1.
    rules = MetricRules(
        [{"dimensionId": "dau", "externalId": "$.c", "aggregate": "count_distinct", "value": "$.u"}]
    )
    key = rules.rules[0].key
    store.execute("UPDATE tp_metric_days SET rule = ? WHERE rule = 'r'", (key,))
    store.execute("UPDATE tp_metric_values SET rule = ? WHERE rule = 'r'", (key,))
    written: list[dict] = []
    report = DeliveryReport()
    metrics = MetricDelivery(
        rules,
        reopened,
        report,
        DeadLetterFile(tmp_path / "dead.jsonl"),
        ShutdownGuard(),
        8_000_000,
        write_dry_run=lambda bodies: written.extend(orjson.loads(b) for b in bodies),
    )
    metrics.deliver(
        [
            Seen(Observation(0, "2020-01-01", "acme", "u3"), "late", 0),
            Seen(Observation(0, "2020-01-02", "acme", "u3"), "open", 1),
        ]
    )
    assert [w["dimensiondata"]["value"] for w in written] == [2]  # 2020-01-02: u1, u3
    assert written[0]["dimensiondata"]["date"] == "2020-01-02T00:00:00.000Z"
    assert report.metrics_skipped == {"metrics[0] dau: day closed": 1}


def test_an_older_store_keeps_its_distinct_values_on_upgrade(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    """A store from before the days table: its days start their retention at the upgrade."""
    store = store_backend.open(tmp_path)
    store.ensure_schema("metric_counted", schema(store.kind)[:2])
    store.execute(
        "INSERT INTO tp_metric_values (tenant, rule, day, external_id, value)"
        " VALUES (?, 'r', '2020-01-01', 'acme', 'u1')",
        (store.tenant,),
    )
    counts = MetricCounts(store, ttl_days=7)
    assert counts.pruned_days == 0
    assert counts.distinct_totals("r", "2020-01-01", {"acme": {"u2"}}) == {"acme": 2}
    rows = store.execute("SELECT rule, day, closed FROM tp_metric_days")
    assert [tuple(row) for row in rows] == [("r", "2020-01-01", 0)]


def test_exclusive_serialises_two_processes_of_one_tenant(
    store_backend: StoreBackend, tmp_path: Path
) -> None:
    """Two connections (as two runs): the second waits for the first, and its total then
    includes what the first committed, so a stale total cannot overtake a fresh one."""
    first = MetricCounts(store_backend.open(tmp_path))
    waiting = threading.Event()

    def sleep(seconds: float) -> None:
        waiting.set()
        threading.Event().wait(seconds)

    second = MetricCounts(store_backend.open(tmp_path), sleep=sleep)
    totals: list[dict[str, int]] = []

    def other_run() -> None:
        with second.exclusive():
            totals.append(second.distinct_totals("r", "2024-01-01", {"acme": {"u2"}}))

    with first.exclusive():
        thread = threading.Thread(target=other_run)
        thread.start()
        assert waiting.wait(30), "the second run never waited"
        assert not totals  # still waiting while the first holds the lock
        assert first.distinct_totals("r", "2024-01-01", {"acme": {"u1"}}) == {"acme": 1}
        first.commit([("r", "e1")], [("r", "2024-01-01", "acme", "u1")])
    thread.join(30)
    assert totals == [{"acme": 2}]
    # Another tenant is not held up by this one (PostgreSQL: the lock is per tenant).
    if store_backend.kind == "postgres":
        other = MetricCounts(store_backend.open(tmp_path, tenant_token="another-tenant"))
        with first.exclusive(), other.exclusive():
            pass
