"""What each metric rule counted, in both store backends: once per rule, per tenant."""

from __future__ import annotations

from pathlib import Path

from target_planhat.metric_counts import MetricCounts
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
