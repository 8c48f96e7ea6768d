"""The delivery ledger: ids of activities Planhat has acknowledged, per tenant, in the store.

Planhat has no idempotency key, so a replay after a crash (Meltano resumes from the last STATE)
would record every activity of the unacknowledged tail twice. The ledger remembers what was
acknowledged, so a replay sends only what Planhat never confirmed. It lives in the store
(``store.py``): an SQLite file at ``ledger_path`` (WAL: a committed transaction survives
``kill -9``), or PostgreSQL at ``ledger_url`` where the local disk does not survive the run.

Layout, chosen so the cost stays flat at tens of millions of ids:

- ids are kept as 128-bit BLAKE2b hashes (16 bytes, whatever the id's length): a collision would
  silently drop a real event, and at 128 bits one among 10^9 ids has a chance of ~10^-21;
- one table per tenant and day of acknowledgement, ``tp_ledger_<tenant number>_<UTC day>``, with
  ``(id PRIMARY KEY, at)``: about 28 bytes per id in SQLite; a lookup probes the few tables of
  the TTL window by primary key; pruning drops whole days, in time proportional to what it drops
  (it never scans what it keeps), and one tenant's TTL never prunes another tenant's ids;
- ``tp_tenants`` maps the tenant fingerprint (never the token, see ``store.py``) to its number.

A 0.1.0 ledger file (one ``acked`` table, no tenant) is migrated in place the first time it is
opened, in one transaction: its ids become the opening tenant's, none is lost.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from target_planhat.errors import StoreError
from target_planhat.settings import DEFAULT_LEDGER_PATH
from target_planhat.store import Store, open_path

__all__ = ["DEFAULT_LEDGER_PATH", "Ledger", "id_hash"]

logger = logging.getLogger("target_planhat.ledger")

DAY = 86400
_CHUNK = 999  # SQLite's smallest bound-parameter limit
_PREFIX = "tp_ledger_"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tp_tenants (tenant TEXT NOT NULL PRIMARY KEY, n BIGINT NOT NULL)",
)


def id_hash(activity_id: str) -> bytes:
    """The id as stored: 128 bits of BLAKE2b (any string, lone surrogates included)."""
    return hashlib.blake2b(activity_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class Ledger:
    """Acknowledged ids of one tenant, in a store shared with other tenants and processes."""

    def __init__(
        self,
        where: Store | str | Path,
        ttl_days: float = 7.0,
        tenant_token: str = "",
    ) -> None:
        self.store = where if isinstance(where, Store) else open_path(where, tenant_token)
        self._own_store = not isinstance(where, Store)
        self._recent: dict[str, bytes] = {}
        store = self.store
        self._blob = "BYTEA" if store.kind == "postgres" else "BLOB"
        self._suffix = "" if store.kind == "postgres" else " WITHOUT ROWID"
        store.ensure_schema("ledger", _SCHEMA)
        self.number, self.new = self._tenant_number()
        self._prefix = f"{_PREFIX}{self.number}_"
        self._existing: set[str] = set(store.tables(self._prefix))
        self.migrated = self._migrate_0_1_0() if store.kind == "sqlite" else 0
        if self.new and not self._existing:
            logger.warning(
                "The ledger at %s is new and empty for this tenant: activities that earlier runs "
                "delivered cannot be recognised, so a replay of them would be sent again. Where "
                "the local disk does not survive a run (containers, ephemeral workers), keep the "
                "ledger in PostgreSQL with ledger_url (README: Running in containers).",
                store.location,
            )
        self.pruned = self.prune(ttl_days)

    # --- tenant and partitions ---------------------------------------------------------------

    def _tenant_number(self) -> tuple[int, bool]:
        store = self.store
        rows = store.execute("SELECT n FROM tp_tenants WHERE tenant = ?", (store.tenant,))
        if rows:
            return int(rows[0][0]), False

        def register() -> tuple[int, bool]:
            store.lock("ledger:tenants")
            rows = store.execute("SELECT n FROM tp_tenants WHERE tenant = ?", (store.tenant,))
            if rows:
                return int(rows[0][0]), False
            number = int(store.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM tp_tenants")[0][0])
            store.execute(
                "INSERT INTO tp_tenants (tenant, n) VALUES (?, ?)", (store.tenant, number)
            )
            return number, True

        return store.atomic(register)

    def _table(self, day: int) -> str:
        return f"{self._prefix}{day}"

    @staticmethod
    def _day_of(table: str) -> int:
        return int(table.rsplit("_", 1)[1])

    def _partitions(self, refresh: bool = True) -> list[str]:
        """This tenant's tables, newest day first (another process may have added one)."""
        if refresh:
            self._existing = set(self.store.tables(self._prefix))
        return sorted(self._existing, key=self._day_of, reverse=True)

    def _ensure_partition(self, day: int) -> str:
        """Inside a transaction: the table for ``day``, created if missing."""
        table = self._table(day)
        if table not in self._existing:
            self.store.lock(f"ledger:ddl:{self.number}")
            self.store.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (id {self._blob} NOT NULL PRIMARY KEY,"
                f" at BIGINT NOT NULL){self._suffix}"
            )
        return table

    def _missing_table(self, exc: BaseException) -> bool:
        """A table dropped by another process's prune between listing and reading it."""
        text = str(exc)
        return "no such table" in text or ("does not exist" in text and _PREFIX in text)

    # --- the interface -------------------------------------------------------------------------

    def known(self, ids: Sequence[str]) -> set[str]:
        """The subset of ``ids`` already acknowledged for this tenant."""
        if not ids:
            return set()
        by_hash = {id_hash(i): i for i in ids}
        # ``record`` usually follows with (a subset of) these ids: hash them once.
        self._recent = {i: h for h, i in by_hash.items()}
        for attempt in range(3):
            try:
                found = self._known_hashes(list(by_hash))
                return {by_hash[h] for h in found}
            except StoreError:
                raise
            except Exception as exc:
                if attempt == 2 or not self._missing_table(exc):
                    raise
        raise AssertionError("unreachable")

    def _known_hashes(self, hashes: list[bytes]) -> set[bytes]:
        store = self.store
        tables = self._partitions()
        if not tables:
            return set()
        if store.kind == "postgres":
            # The batch sent once, probed by primary key in every day's table.
            union = " UNION ALL ".join(
                f"SELECT p.id FROM q JOIN {t} AS p USING (id)" for t in tables
            )
            rows = store.execute(
                f"WITH q AS MATERIALIZED (SELECT unnest(?::bytea[]) AS id) {union}", (hashes,)
            )
            return {bytes(row[0]) for row in rows}
        # The batch goes into a temporary table once, then one statement probes every day's
        # table by primary key: an IN list would be rebuilt (and sorted) for each table.
        probe = " UNION ALL ".join(
            f"SELECT p.id FROM temp.tp_probe AS q CROSS JOIN {t} AS p ON p.id = q.id"
            for t in tables
        )
        with store.snapshot():
            store.execute("DELETE FROM temp.tp_probe")
            store.executemany("INSERT INTO temp.tp_probe (id) VALUES (?)", [(h,) for h in hashes])
            rows = store.execute(probe)
            store.execute("DELETE FROM temp.tp_probe")
        return {row[0] for row in rows}

    def record(self, ids: Iterable[str], at: float | None = None) -> None:
        """Record acknowledged ids in one transaction (committed when this returns).

        Retried within ``max_retry_seconds`` when the store's connection is lost; then
        ``StoreError``.
        """
        when = int(time.time() if at is None else at)
        recent = self._recent
        hashes = list({recent.get(i) or id_hash(i): None for i in ids})
        if hashes:
            self._insert(when // DAY, [(h, when) for h in hashes])

    def _insert(self, day: int, rows: Sequence[tuple[bytes, int]]) -> None:
        """``(hash, at)`` rows acknowledged on ``day``, in one transaction."""
        store = self.store

        def work() -> str:
            table = self._ensure_partition(day)
            sql = f"INSERT INTO {table} (id, at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING"
            if store.kind == "postgres":
                store.execute(
                    f"INSERT INTO {table} (id, at) SELECT * FROM unnest(?::bytea[], ?::bigint[])"
                    " ON CONFLICT (id) DO NOTHING",
                    ([r[0] for r in rows], [r[1] for r in rows]),
                )
            else:
                store.executemany(sql, rows)
            return table

        try:
            self._existing.add(store.atomic(work))
        except StoreError:
            raise
        except Exception as exc:
            # Our list of tables is stale: another process pruned it, or a server crash lost
            # its creation (asynchronous commit). Create it again, once.
            if not self._missing_table(exc):
                raise
            self._existing.discard(self._table(day))
            self._existing.add(store.atomic(work))

    def discard(self, ids: Iterable[str]) -> int:
        """Forget these ids (wherever they are); how many were there."""
        hashes = [id_hash(i) for i in ids]

        def work() -> int:
            count = 0
            for table in self._partitions():
                for start in range(0, len(hashes), _CHUNK):
                    chunk = hashes[start : start + _CHUNK]
                    where = f" WHERE id IN ({','.join('?' * len(chunk))})"
                    count += self._rows(table, where, chunk)
                    self.store.execute(f"DELETE FROM {table}{where}", chunk)
            return count

        return self.store.atomic(work)

    def _rows(self, table: str, where: str = "", params: Sequence[object] = ()) -> int:
        return int(self.store.execute(f"SELECT COUNT(*) FROM {table}{where}", params)[0][0])

    def prune(self, ttl_days: float) -> int:
        """Forget ids older than ``ttl_days`` (Amplitude's own dedupe window is 7 days).

        Whole days go, once every id in them is older than the window: an id is kept between
        ``ttl_days`` and ``ttl_days`` + 1 day, never less.
        """
        cutoff = time.time() - ttl_days * DAY
        old = [t for t in self._partitions() if (self._day_of(t) + 1) * DAY <= cutoff]
        return self._drop(old)

    def _drop(self, tables: Sequence[str]) -> int:
        pruned = 0
        for table in tables:

            def work(table: str = table) -> int:
                self.store.lock(f"ledger:ddl:{self.number}")
                if table not in self.store.tables(table):
                    return 0  # another process dropped it first
                count = self._rows(table)
                self.store.execute(f"DROP TABLE {table}")
                return count

            pruned += self.store.atomic(work)
            self._existing.discard(table)
        return pruned

    def forget(self, since: float | None = None, until: float | None = None) -> int:
        """Forget the ids acknowledged in ``[since, until)`` (either end open); how many.

        For re-sending after fixing a mapping: Planhat then keeps both copies.
        """
        low = -(2**62) if since is None else int(since)
        high = 2**62 if until is None else int(until)
        today = int(time.time()) // DAY
        whole: list[str] = []
        forgotten = 0
        for table in self._partitions():
            day = self._day_of(table)
            if day != today and low <= day * DAY and (day + 1) * DAY <= high:
                whole.append(table)
                continue
            if (day + 1) * DAY <= low or high <= day * DAY:
                continue

            def work(table: str = table) -> int:
                where = " WHERE at >= ? AND at < ?"
                count = self._rows(table, where, (low, high))
                self.store.execute(f"DELETE FROM {table}{where}", (low, high))
                return count

            forgotten += self.store.atomic(work)
        return forgotten + self._drop(whole)

    def count(self) -> int:
        return sum(self._rows(table) for table in self._partitions())

    def copy_from(self, source: Ledger) -> int:
        """Copy ``source``'s ids (with when they were acknowledged) into this ledger; how many.

        Idempotent: an id already here stays as it is, so an interrupted copy can run again.
        """
        copied = 0
        for table in source._partitions():
            day = self._day_of(table)
            for rows in _pages(source.store, f"SELECT id, at FROM {table}", "id"):
                self._insert(day, [(bytes(r[0]), int(r[1])) for r in rows])
                copied += len(rows)
        return copied

    def close(self) -> None:
        if self._own_store:
            self.store.close()

    # --- 0.1.0 ---------------------------------------------------------------------------------

    def _migrate_0_1_0(self) -> int:
        """Move a 0.1.0 ``acked`` table into this tenant's tables, atomically, then drop it."""
        store = self.store
        if not store.tables("acked"):
            return 0

        def work() -> int:
            if not store.tables("acked"):
                return 0  # another process migrated it first
            moved = 0
            for rows in _pages(store, "SELECT id, acked_at FROM acked", "id"):
                by_day: dict[int, list[tuple[bytes, int]]] = {}
                for activity_id, acked_at in rows:
                    at = int(acked_at)
                    by_day.setdefault(at // DAY, []).append((id_hash(str(activity_id)), at))
                for day, items in by_day.items():
                    table = self._ensure_partition(day)
                    store.executemany(
                        f"INSERT INTO {table} (id, at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                        items,
                    )
                    self._existing.add(table)
                    moved += len(items)
            store.execute("DROP TABLE acked")
            return moved

        moved = store.atomic(work)
        if moved:
            self.new = False
            logger.info(
                "Migrated the 0.1.0 ledger at %s: %d ids, now this tenant's", store.location, moved
            )
        return moved


def _pages(store: Store, select: str, key: str, size: int = 10_000) -> Iterator[list[tuple]]:
    """The rows of ``select`` (whose first column is ``key``) in pages, by key: flat memory."""
    last: object = None
    while True:
        if last is None:
            rows = store.execute(f"{select} ORDER BY {key} LIMIT {size}")
        else:
            rows = store.execute(f"{select} WHERE {key} > ? ORDER BY {key} LIMIT {size}", (last,))
        if not rows:
            return
        yield rows
        last = rows[-1][0]
