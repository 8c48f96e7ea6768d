"""The delivery ledger: ids of activities Planhat has acknowledged, per tenant, in the store.

Planhat has no idempotency key, so a replay after a crash (Meltano resumes from the last STATE)
would record every activity of the unacknowledged tail twice. The ledger remembers what was
acknowledged, so a replay sends only what Planhat never confirmed. It lives in the store
(``store.py``): an SQLite file at ``ledger_path`` (WAL: a committed transaction survives
``kill -9``), or PostgreSQL at ``ledger_url`` where the local disk does not survive the run.

Layout, chosen so no step scans what the ledger keeps (a lookup still probes every day's table,
so it grows with the TTL window's size; ``benchmarks/README.md`` has the figures):

- ids are kept as 128-bit BLAKE2b hashes (two 64-bit integers, whatever the id's length): a
  collision would silently drop a real event, and at 128 bits one among 10^9 ids has a chance
  of ~10^-21;
- one table per tenant and day of acknowledgement, ``tp_ledger_<tenant number>_<UTC day>``, with
  ``(hi, lo, at)`` keyed by ``(hi, lo)``: about 30 bytes per id in SQLite; a lookup sends the
  batch once, in key order, and probes the tables of the TTL window by primary key; pruning
  drops whole days, in time proportional to what it drops (it never scans what it keeps), and
  one tenant's TTL never prunes another tenant's ids;
- ``tp_tenants`` maps the tenant fingerprint (never the token, see ``store.py``) to its number.

A 0.1.0 ledger file (one ``acked`` table, no tenant) is migrated in place the first time it is
opened, in one transaction: its ids become the opening tenant's, none is lost.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import operator
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import orjson

from target_planhat.errors import StoreError
from target_planhat.settings import DEFAULT_LEDGER_PATH
from target_planhat.store import Store, open_path

__all__ = ["DEFAULT_LEDGER_PATH", "Ledger", "id_key"]

logger = logging.getLogger("target_planhat.ledger")

DAY = 86400
_PREFIX = "tp_ledger_"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tp_tenants (tenant TEXT NOT NULL PRIMARY KEY, n BIGINT NOT NULL)",
)


_KEY = struct.Struct(">qq")
Key = tuple[int, int]  # the id as stored: 128 bits of BLAKE2b as two signed 64-bit integers


_ENCODE = operator.methodcaller("encode", "utf-8", "surrogatepass")
_HASH = functools.partial(hashlib.blake2b, digest_size=16)
_DIGEST = operator.methodcaller("digest")


def _digests(ids: Iterable[str]) -> list[bytes]:
    """The 16-byte BLAKE2b digest of each id, through C-level ``map`` calls (no Python loop)."""
    return list(map(_DIGEST, map(_HASH, map(_ENCODE, ids))))


def _keys(digests: list[bytes]) -> list[Key]:
    """Sorted digests as stored keys, so the store probes and inserts them in key order.

    In key order consecutive B-tree probes and inserts land on neighbouring pages: in a ledger
    of millions of ids each page is read once per batch, not once per id. Digests sort as bytes
    (one ``memcmp`` per comparison, about half the cost of sorting the integer pairs); a
    negative first half sorts after the positive ones, which leaves two ascending runs.
    """
    digests.sort()
    return list(map(_KEY.unpack, digests))


def _digest(activity_id: str) -> bytes:
    return _HASH(_ENCODE(activity_id)).digest()


def id_key(activity_id: str) -> Key:
    """The id as stored: 128 bits of BLAKE2b (any string, lone surrogates included).

    Two 64-bit integers rather than 16 bytes: the same size on disk, and a batch of them
    travels as one JSON (SQLite) or array (PostgreSQL) parameter instead of a row at a time.
    """
    return _KEY.unpack(_digest(activity_id))


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
        self._pg = store.kind == "postgres"
        self._suffix = "" if self._pg else " WITHOUT ROWID"
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
                f"CREATE TABLE IF NOT EXISTS {table} (hi BIGINT NOT NULL, lo BIGINT NOT NULL,"
                f" at BIGINT NOT NULL, PRIMARY KEY (hi, lo)){self._suffix}"
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
        digests = _digests(ids)
        by_digest = dict(zip(digests, ids, strict=True))
        # ``record`` usually follows with (a subset of) these ids: hash them once.
        self._recent = dict(zip(ids, digests, strict=True))
        keys = _keys(digests)
        for attempt in range(3):
            try:
                found = self._known_keys(keys)
                return {by_digest[_KEY.pack(*k)] for k in found}
            except StoreError:
                raise
            except Exception as exc:
                if attempt == 2 or not self._missing_table(exc):
                    raise
        raise AssertionError("unreachable")

    def _batch(self, keys: Sequence[Key]) -> tuple[str, tuple[object, ...]]:
        """The rows ``q(hi, lo)`` of ``keys``: SQL and its parameters, one for the whole batch."""
        if self._pg:
            return (
                "SELECT * FROM unnest(?::bigint[], ?::bigint[]) AS q(hi, lo)",
                ([k[0] for k in keys], [k[1] for k in keys]),
            )
        return (
            "SELECT json_extract(value, '$[0]') AS hi, json_extract(value, '$[1]') AS lo"
            " FROM json_each(?)",
            (orjson.dumps(keys).decode(),),
        )

    def _known_keys(self, keys: list[Key]) -> set[Key]:
        tables = self._partitions()
        if not tables:
            return set()
        # The batch is sent once and probed by primary key in every day's table.
        batch, params = self._batch(keys)
        # A probe by primary key per id, never a scan of a table (its cost would grow with the
        # ledger): SQLite's CROSS JOIN keeps the batch as the outer loop; PostgreSQL, once it
        # has statistics, would hash-join a whole day's table, and a LATERAL ... LIMIT 1 it
        # cannot flatten keeps it to index probes.
        if self._pg:
            union = " UNION ALL ".join(
                f"SELECT p.hi, p.lo FROM q CROSS JOIN LATERAL (SELECT hi, lo FROM {t}"
                " WHERE hi = q.hi AND lo = q.lo LIMIT 1) AS p"
                for t in tables
            )
            sql = f"WITH q AS MATERIALIZED ({batch}) {union}"
        else:
            union = " UNION ALL ".join(
                f"SELECT p.hi, p.lo FROM q CROSS JOIN {t} AS p ON p.hi = q.hi AND p.lo = q.lo"
                for t in tables
            )
            sql = f"WITH q AS ({batch}) {union}"
        rows = self.store.execute(sql, params)
        return {(int(r[0]), int(r[1])) for r in rows}

    def record(self, ids: Iterable[str], at: float | None = None) -> None:
        """Record acknowledged ids in one transaction (committed when this returns).

        Retried within ``max_retry_seconds`` when the store's connection is lost; then
        ``StoreError``.
        """
        when = int(time.time() if at is None else at)
        recent = self._recent
        digests = [recent.get(i) or _digest(i) for i in ids]
        keys = _keys(list(set(digests)))
        if keys:
            self._insert(when // DAY, keys, when)

    def _insert(self, day: int, rows: Sequence[tuple[int, ...]], at: int | None = None) -> None:
        """Rows acknowledged on ``day``, in one transaction: ``(hi, lo)`` all acknowledged
        ``at``, or each ``(hi, lo, at)`` when ``at`` is None (copies, the migration).

        A run's batch binds its one ``at`` once instead of repeating it per row: SQLite then
        parses a third less JSON per id.
        """
        store = self.store
        params: tuple[object, ...]
        if at is not None and self._pg:
            select = (
                "SELECT q.hi, q.lo, ?::bigint FROM unnest(?::bigint[], ?::bigint[]) AS q(hi, lo)"
            )
            params = (at, [r[0] for r in rows], [r[1] for r in rows])
        elif at is not None:
            select = (
                "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), ?"
                " FROM json_each(?) WHERE true"
            )
            params = (at, orjson.dumps(list(rows)).decode())
        elif self._pg:
            select = "SELECT * FROM unnest(?::bigint[], ?::bigint[], ?::bigint[])"
            params = tuple([r[i] for r in rows] for i in range(3))
        else:
            select = (
                "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
                " json_extract(value, '$[2]') FROM json_each(?) WHERE true"
            )
            params = (orjson.dumps(list(rows)).decode(),)

        def work() -> str:
            table = self._ensure_partition(day)
            store.execute(
                f"INSERT INTO {table} (hi, lo, at) {select} ON CONFLICT (hi, lo) DO NOTHING",
                params,
            )
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
        batch, params = self._batch([id_key(i) for i in ids])
        where = f" WHERE (hi, lo) IN (SELECT hi, lo FROM ({batch}) AS q)"

        def work() -> int:
            count = 0
            for table in self._partitions():
                count += self._rows(table, where, params)
                self.store.execute(f"DELETE FROM {table}{where}", params)
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
            for rows in _pages(source.store, f"SELECT hi, lo, at FROM {table}", ("hi", "lo")):
                self._insert(day, [(int(r[0]), int(r[1]), int(r[2])) for r in rows])
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
            for rows in _pages(store, "SELECT id, acked_at FROM acked", ("id",)):
                by_day: dict[int, list[tuple[int, int, int]]] = {}
                for activity_id, acked_at in rows:
                    at = int(acked_at)
                    by_day.setdefault(at // DAY, []).append((*id_key(str(activity_id)), at))
                for day, items in by_day.items():
                    self._insert(day, items)  # joins this transaction
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


def _pages(
    store: Store, select: str, keys: tuple[str, ...], size: int = 10_000
) -> Iterator[list[tuple]]:
    """The rows of ``select`` (its first columns are ``keys``) in pages by key: flat memory."""
    order = ", ".join(keys)
    marks = ", ".join("?" * len(keys))
    last: tuple | None = None
    while True:
        if last is None:
            rows = store.execute(f"{select} ORDER BY {order} LIMIT {size}")
        else:
            rows = store.execute(
                f"{select} WHERE ({order}) > ({marks}) ORDER BY {order} LIMIT {size}", last
            )
        if not rows:
            return
        yield rows
        last = tuple(rows[-1][: len(keys)])
