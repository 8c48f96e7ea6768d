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

import hashlib
import time
from collections.abc import Iterable, Sequence
from typing import TypeVar

from target_planhat.store import Store

T = TypeVar("T")

# Counted events by a 128-bit hash of (rule, event id) in two BIGINTs: a fixed, short key (event
# ids are often 36-character UUIDs), inserted in about a third of the time of the text key.
_EVENTS_TABLE = (
    "CREATE TABLE IF NOT EXISTS tp_metric_counted (tenant TEXT NOT NULL, h1 BIGINT NOT NULL,"
    " h2 BIGINT NOT NULL, counted_at BIGINT NOT NULL, PRIMARY KEY (tenant, h1, h2))"
)
_DISTINCT_TABLE = (
    "CREATE TABLE IF NOT EXISTS tp_metric_values (tenant TEXT NOT NULL, rule TEXT NOT NULL,"
    " day TEXT NOT NULL, external_id TEXT NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY (tenant, rule, day, external_id, value))"
)


def schema(kind: str) -> tuple[str, ...]:
    """The tables; in SQLite without a rowid (one B-tree per table instead of two), the only
    statement that is not the same in both backends."""
    suffix = " WITHOUT ROWID" if kind == "sqlite" else ""
    return (_EVENTS_TABLE + suffix, _DISTINCT_TABLE + suffix)


_CHUNK = 400  # bound parameters per statement, well under SQLite's limit


def _chunks(values: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def event_key(rule: str, event_id: str) -> tuple[int, int]:
    """(rule, event id) as two signed 64-bit integers (BIGINT in both backends)."""
    digest = hashlib.blake2b(
        f"{rule}\0{event_id}".encode("utf-8", "surrogatepass"), digest_size=16
    ).digest()
    return (
        int.from_bytes(digest[:8], "big", signed=True),
        int.from_bytes(digest[8:], "big", signed=True),
    )


class MetricCounts:
    """The counted events and distinct values of every rule, for this store's tenant."""

    def __init__(self, store: Store, ttl_days: float = 7.0) -> None:
        self._store = store
        self._tenant = store.tenant
        store.ensure_schema("metric_counted", schema(store.kind))
        self.pruned = self.prune(ttl_days)

    def prune(self, ttl_days: float) -> int:
        """Forget counted event ids older than ``ttl_days`` (as the ledger forgets its ids).

        A scan once per run (an index on the age would cost every insert more). Distinct values
        are kept: they are the count, and a late event of an old day must not send a smaller
        total.
        """
        cutoff = int(time.time() - ttl_days * 86400)
        old = self._store.execute(
            "SELECT COUNT(*) FROM tp_metric_counted WHERE tenant = ? AND counted_at < ?",
            (self._tenant, cutoff),
        )[0][0]
        if old:
            self._store.atomic(
                lambda: self._store.execute(
                    "DELETE FROM tp_metric_counted WHERE tenant = ? AND counted_at < ?",
                    (self._tenant, cutoff),
                )
            )
        return int(old)

    def counted(self, rule: str, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` the rule has counted already."""
        by_key: dict[tuple[int, int], str] = {}
        for event_id in event_ids:
            by_key[event_key(rule, event_id)] = event_id
        keys = list(by_key)
        found: set[str] = set()
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            rows = self._store.execute(
                f"SELECT h1, h2 FROM tp_metric_counted WHERE tenant = ? AND h1 IN ({marks})",
                (self._tenant, *(key[0] for key in chunk)),
            )
            for h1, h2 in rows:
                event_id = by_key.get((h1, h2))
                if event_id is not None:
                    found.add(event_id)
        return found

    def distinct_totals(self, rule: str, day: str, new: dict[str, set[str]]) -> dict[str, int]:
        """Per object: how many distinct values the day holds once ``new`` ones are added.

        Per object, a count and a lookup of the new values, both on the primary key's range for
        (rule, day, object): cost grows with the object's values that day, not the day's all.
        """
        totals: dict[str, int] = {}
        where = "WHERE tenant = ? AND rule = ? AND day = ? AND external_id = ?"
        for external_id, values in new.items():
            params = (self._tenant, rule, day, external_id)
            stored = int(
                self._store.execute(f"SELECT COUNT(*) FROM tp_metric_values {where}", params)[0][0]
            )
            known = 0
            if stored:
                for chunk in _chunks(sorted(values)):
                    marks = ",".join("?" * len(chunk))
                    known += len(
                        self._store.execute(
                            f"SELECT value FROM tp_metric_values {where} AND value IN ({marks})",
                            (*params, *chunk),
                        )
                    )
            totals[external_id] = stored + len(values) - known
        return totals

    def commit(
        self,
        events: Iterable[tuple[str, str]],
        distinct: Iterable[tuple[str, str, str, str]],
    ) -> None:
        """Record counted ``(rule, event_id)`` and ``(rule, day, external_id, value)`` in one
        transaction: after it, a replay of these events adds nothing."""
        now = int(time.time())
        event_rows = [(self._tenant, *event_key(rule, event_id), now) for rule, event_id in events]
        distinct_rows = [(self._tenant, *row) for row in distinct]

        def work() -> None:
            if event_rows:
                self._store.executemany(
                    "INSERT INTO tp_metric_counted (tenant, h1, h2, counted_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (tenant, h1, h2) DO NOTHING",
                    event_rows,
                )
            if distinct_rows:
                self._store.executemany(
                    "INSERT INTO tp_metric_values (tenant, rule, day, external_id, value)"
                    " VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (tenant, rule, day, external_id, value) DO NOTHING",
                    distinct_rows,
                )

        self._store.atomic(work)
