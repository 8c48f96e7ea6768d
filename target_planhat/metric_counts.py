"""What each metric rule has counted, per tenant, in the store (SQLite or PostgreSQL).

Planhat keeps every value sent for a metric and day (the chart's SUM adds them), and has no
idempotency key: an event counted twice is a wrong health score for good. So the store keeps,
per tenant and rule, the ids of the events the rule has counted, and for ``count_distinct`` the
distinct values per day and object. A batch's new observations are those not in the store; they
are committed in one transaction right after Planhat acknowledged the point that carries them,
the same way the ledger records activities. A kill between the answer and the commit can re-send
only the one POST in flight.

``count_distinct`` sends the day's total recomputed from the stored values plus the new ones, so
that point means the same however often it is sent (the README says LAST). Two things keep that
total from ever going down:

- **Retention.** A day's values are kept while the day still receives values: each (rule, day)
  remembers when a value was last added (``tp_metric_days``). Once none was added for
  ``ledger_ttl_days`` the day is *closed*: its values are deleted and a tombstone stays (one row
  per rule and day), and an event of a closed day is not counted by that rule any more (the
  report's ``metrics_skipped``), since a total from what is left would be smaller than the one
  Planhat holds.
- **One process at a time.** Counting, sending and committing the points of one tenant happen
  under an exclusive lock shared by every process on the store (PostgreSQL: a session advisory
  lock; SQLite: ``flock`` on a file beside the database), both released by the OS or the server
  when a process dies. Two runs of one tenant can then neither compute their totals from the same
  stored values nor have their POSTs overtake each other: the later holder's total includes what
  the earlier one committed, and reaches Planhat after it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from target_planhat.digests import digest
from target_planhat.store import Store

T = TypeVar("T")

logger = logging.getLogger("target_planhat.metrics")

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


# Per rule and day of count_distinct values: when a value was last added (Unix seconds), and
# whether the day is closed (its values deleted; events of it are no longer counted).
_DAYS_TABLE = (
    "CREATE TABLE IF NOT EXISTS tp_metric_days (tenant TEXT NOT NULL, rule TEXT NOT NULL,"
    " day TEXT NOT NULL, touched_at BIGINT NOT NULL, closed BIGINT NOT NULL,"
    " PRIMARY KEY (tenant, rule, day))"
)


def schema(kind: str, now: int | None = None) -> tuple[str, ...]:
    """The tables; in SQLite without a rowid (one B-tree per table instead of two), the only
    statement that is not the same in both backends.

    Only ever appended to (``Store.ensure_schema``). The third and fourth statements came with
    the pruning of ``count_distinct`` values: the days already in a store start their retention
    now, so none is closed by the upgrade itself.
    """
    suffix = " WITHOUT ROWID" if kind == "sqlite" else ""
    now = int(time.time()) if now is None else now
    return (
        _EVENTS_TABLE + suffix,
        _DISTINCT_TABLE + suffix,
        _DAYS_TABLE + suffix,
        "INSERT INTO tp_metric_days (tenant, rule, day, touched_at, closed)"
        f" SELECT DISTINCT tenant, rule, day, {now}, 0 FROM tp_metric_values WHERE 1 = 1"
        " ON CONFLICT (tenant, rule, day) DO NOTHING",
    )


_CHUNK = 400  # bound parameters per statement, well under SQLite's limit


def _chunks(values: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def rule_event_key(rule: str, event_id: str) -> tuple[int, int]:
    """(rule, event id) as two signed 64-bit integers (BIGINT in both backends)."""
    hashed = digest(f"{rule}\0{event_id}")
    return (
        int.from_bytes(hashed[:8], "big", signed=True),
        int.from_bytes(hashed[8:], "big", signed=True),
    )


class MetricCounts:
    """The counted events and distinct values of every rule, for this store's tenant."""

    def __init__(
        self,
        store: Store,
        ttl_days: float = 7.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._tenant = store.tenant
        self._sleep = sleep
        self._clock = clock
        store.ensure_schema("metric_counted", schema(store.kind))
        self.pruned_days = 0
        self.pruned = self.prune(ttl_days)

    def prune(self, ttl_days: float) -> int:
        """Forget counted event ids older than ``ttl_days`` (as the ledger forgets its ids), and
        close the ``count_distinct`` days that received no value for ``ttl_days``.

        Event ids: a scan once per run (an index on the age would cost every insert more).
        Days: under the exclusive lock, so no run is counting a day while it closes; a closed
        day's values are deleted on the primary key's range, its tombstone stays.
        """
        cutoff = int(self._clock() - ttl_days * 86400)
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
        due = self._store.execute(
            "SELECT rule, day FROM tp_metric_days WHERE tenant = ? AND closed = 0"
            " AND touched_at < ?",
            (self._tenant, cutoff),
        )
        if due:
            with self.exclusive():
                self.pruned_days = self._close_days(cutoff)
            if self.pruned_days:
                logger.info(
                    "count_distinct: %d rule days without a new value for ledger_ttl_days=%g "
                    "closed (their values pruned; later events of them are not counted)",
                    self.pruned_days,
                    ttl_days,
                )
        return int(old)

    def _close_days(self, cutoff: int) -> int:
        tenant = self._tenant

        def work() -> int:
            # Read again inside the transaction: a run may have added to a day since.
            days = self._store.execute(
                "SELECT rule, day FROM tp_metric_days WHERE tenant = ? AND closed = 0"
                " AND touched_at < ?",
                (tenant, cutoff),
            )
            for rule, day in days:
                self._store.execute(
                    "DELETE FROM tp_metric_values WHERE tenant = ? AND rule = ? AND day = ?",
                    (tenant, rule, day),
                )
                self._store.execute(
                    "UPDATE tp_metric_days SET closed = 1 WHERE tenant = ? AND rule = ?"
                    " AND day = ?",
                    (tenant, rule, day),
                )
            return len(days)

        return int(self._store.atomic(work))

    def closed_days(self, rule: str, days: Iterable[str]) -> set[str]:
        """Which of ``days`` are closed for ``rule``: their events are not counted any more."""
        wanted = sorted(set(days))
        found: set[str] = set()
        for chunk in _chunks(wanted):
            marks = ",".join("?" * len(chunk))
            rows = self._store.execute(
                "SELECT day FROM tp_metric_days WHERE tenant = ? AND rule = ? AND closed = 1"
                f" AND day IN ({marks})",
                (self._tenant, rule, *chunk),
            )
            found.update(row[0] for row in rows)
        return found

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held while a batch's points are counted, sent and committed (and while days close):
        one process per store and tenant at a time (SQLite: per file), ``Store.exclusive``."""
        return self._store.exclusive("metrics", sleep=self._sleep)

    def counted(self, rule: str, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` the rule has counted already."""
        by_key: dict[tuple[int, int], str] = {}
        for event_id in event_ids:
            by_key[rule_event_key(rule, event_id)] = event_id
        keys = list(by_key)
        found: set[str] = set()
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            rows = self._store.execute(
                f"SELECT h1, h2 FROM tp_metric_counted WHERE tenant = ? AND h1 IN ({marks})",
                (self._tenant, *(key[0] for key in chunk)),
            )
            for h1, h2 in rows:
                counted_id = by_key.get((h1, h2))
                if counted_id is not None:
                    found.add(counted_id)
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
        now = int(self._clock())
        event_rows = [
            (self._tenant, *rule_event_key(rule, event_id), now) for rule, event_id in events
        ]
        distinct_rows = [(self._tenant, *row) for row in distinct]
        touched = sorted({(self._tenant, row[0], row[1], now, 0) for row in distinct})

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
                self._store.executemany(
                    "INSERT INTO tp_metric_days (tenant, rule, day, touched_at, closed)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, rule, day)"
                    " DO UPDATE SET touched_at = excluded.touched_at",
                    touched,
                )

        self._store.atomic(work)
