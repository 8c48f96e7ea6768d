"""What each metric rule has counted, per tenant, in the store (SQLite or PostgreSQL).

Planhat keeps every value sent for a metric and day (the chart's SUM adds them), and has no
idempotency key: an event counted twice is a wrong health score for good. So the store keeps,
per tenant and rule, the ids of the events the rule has counted, and for ``count_distinct`` the
distinct values per day and object. A batch's new observations are those not in the store; they
are committed in one transaction right after Planhat acknowledged the point that carries them,
the same way the ledger records activities. A kill between the answer and the commit can re-send
only the one POST in flight.

``count_distinct`` sends the day's total recomputed from the stored values plus the new ones, so
that point means the same however often it is sent (the README says LAST).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from target_planhat.store import Store

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tp_metric_events (tenant TEXT NOT NULL, rule TEXT NOT NULL,"
    " event_id TEXT NOT NULL, counted_at BIGINT NOT NULL, PRIMARY KEY (tenant, rule, event_id))",
    "CREATE INDEX IF NOT EXISTS tp_metric_events_age ON tp_metric_events (tenant, counted_at)",
    "CREATE TABLE IF NOT EXISTS tp_metric_distinct (tenant TEXT NOT NULL, rule TEXT NOT NULL,"
    " day TEXT NOT NULL, external_id TEXT NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY (tenant, rule, day, external_id, value))",
)
_CHUNK = 400  # bound parameters per statement, well under SQLite's limit


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


class MetricCounts:
    """The counted events and distinct values of every rule, for this store's tenant."""

    def __init__(self, store: Store, ttl_days: float = 7.0) -> None:
        self._store = store
        self._tenant = store.tenant
        store.ensure_schema("metric_counts", SCHEMA)
        self.pruned = self.prune(ttl_days)

    def prune(self, ttl_days: float) -> int:
        """Forget counted event ids older than ``ttl_days`` (as the ledger forgets its ids).

        Distinct values are kept: they are the count, and a late event of an old day must not
        send a smaller total.
        """
        cutoff = int(time.time() - ttl_days * 86400)
        before = self._store.execute(
            "SELECT COUNT(*) FROM tp_metric_events WHERE tenant = ? AND counted_at < ?",
            (self._tenant, cutoff),
        )[0][0]
        if before:
            self._store.atomic(
                lambda: self._store.execute(
                    "DELETE FROM tp_metric_events WHERE tenant = ? AND counted_at < ?",
                    (self._tenant, cutoff),
                )
            )
        return int(before)

    def counted(self, rule: str, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` the rule has counted already."""
        found: set[str] = set()
        for chunk in _chunks(list(dict.fromkeys(event_ids))):
            marks = ",".join("?" * len(chunk))
            rows = self._store.execute(
                "SELECT event_id FROM tp_metric_events WHERE tenant = ? AND rule = ?"
                f" AND event_id IN ({marks})",
                (self._tenant, rule, *chunk),
            )
            found.update(row[0] for row in rows)
        return found

    def distinct_totals(self, rule: str, day: str, new: dict[str, set[str]]) -> dict[str, int]:
        """Per object: how many distinct values the day holds once ``new`` ones are added."""
        ids = sorted(new)
        totals: dict[str, int] = {}
        stored: dict[str, set[str]] = {}
        values = sorted({value for found in new.values() for value in found})
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            rows = self._store.execute(
                "SELECT external_id, COUNT(*) FROM tp_metric_distinct WHERE tenant = ?"
                f" AND rule = ? AND day = ? AND external_id IN ({marks}) GROUP BY external_id",
                (self._tenant, rule, day, *chunk),
            )
            totals.update((row[0], int(row[1])) for row in rows)
            for value_chunk in _chunks(values):
                value_marks = ",".join("?" * len(value_chunk))
                rows = self._store.execute(
                    "SELECT external_id, value FROM tp_metric_distinct WHERE tenant = ?"
                    f" AND rule = ? AND day = ? AND external_id IN ({marks})"
                    f" AND value IN ({value_marks})",
                    (self._tenant, rule, day, *chunk, *value_chunk),
                )
                for external_id, value in rows:
                    stored.setdefault(external_id, set()).add(value)
        return {
            external_id: totals.get(external_id, 0) + len(found - stored.get(external_id, set()))
            for external_id, found in new.items()
        }

    def commit(
        self,
        events: Iterable[tuple[str, str]],
        distinct: Iterable[tuple[str, str, str, str]],
    ) -> None:
        """Record counted ``(rule, event_id)`` and ``(rule, day, external_id, value)`` in one
        transaction: after it, a replay of these events adds nothing."""
        now = int(time.time())
        event_rows = [(self._tenant, rule, event_id, now) for rule, event_id in events]
        distinct_rows = [(self._tenant, *row) for row in distinct]

        def work() -> None:
            if event_rows:
                self._store.executemany(
                    "INSERT INTO tp_metric_events (tenant, rule, event_id, counted_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (tenant, rule, event_id) DO NOTHING",
                    event_rows,
                )
            if distinct_rows:
                self._store.executemany(
                    "INSERT INTO tp_metric_distinct (tenant, rule, day, external_id, value)"
                    " VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (tenant, rule, day, external_id, value) DO NOTHING",
                    distinct_rows,
                )

        self._store.atomic(work)
