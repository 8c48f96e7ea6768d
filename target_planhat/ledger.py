"""The delivery ledger: ids of activities Planhat has acknowledged, per tenant, in the store.

Planhat has no idempotency key, so a replay after a crash (Meltano resumes from the last STATE)
would record every activity of the unacknowledged tail twice. The ledger remembers what was
acknowledged, so a replay sends only what Planhat never confirmed. It lives in the store
(``store.py``): an SQLite file at ``ledger_path`` (WAL: a committed transaction survives
``kill -9``), or PostgreSQL at ``ledger_url`` where the local disk does not survive the run.

Layout, chosen so a batch's cost stays flat however many ids the ledger keeps
(``benchmarks/README.md`` has the figures):

- ids are kept as 128-bit BLAKE2b hashes (two 64-bit integers, whatever the id's length): a
  collision would silently drop a real event, and at 128 bits one among 10^9 ids has a chance
  of ~10^-21;
- one table per tenant and *event* day (the activity's ``date``, UTC),
  ``tp_ledger_<tenant number>_e<YYYYMMDD>``, with ``(t, hi, lo, at)`` keyed by ``(t, hi, lo)``,
  ``t`` the event's minute of the day and ``at`` when Planhat acknowledged it. A replay carries
  the same date, so a lookup probes only its own day's table, and Amplitude exports events in
  time order, so a batch's keys sit side by side in that table: a batch reads and writes a few
  neighbouring pages, not one page per id spread over the whole ledger. About 35 bytes per id
  in SQLite;
- ``tp_ledger_last`` keeps when each day's table was last written; pruning drops whole tables
  not written for ``ledger_ttl_days``, in time proportional to what it drops (it never scans
  what it keeps), and one tenant's TTL never prunes another tenant's ids. An event of last
  month replayed today is kept as long as one of today;
- ids without a date (a 0.1.0 ledger's, which never stored one) live in tables by day of
  acknowledgement, ``tp_ledger_<tenant number>_<UTC day>`` keyed by ``(hi, lo)``, probed for
  every lookup until the TTL prunes them;
- ``tp_tenants`` maps the tenant fingerprint (never the token, see ``store.py``) to its number.

A 0.1.0 ledger file (one ``acked`` table, no tenant) is migrated in place the first time it is
opened, in one transaction: its ids become the opening tenant's, none is lost.
"""

from __future__ import annotations

import datetime
import functools
import logging
import operator
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from pathlib import Path
from typing import cast

import orjson

from target_planhat.digests import digest as id_digest
from target_planhat.digests import digests as id_digests
from target_planhat.errors import StoreError
from target_planhat.settings import DEFAULT_LEDGER_PATH
from target_planhat.store import Store, open_path

__all__ = ["DEFAULT_LEDGER_PATH", "Ledger", "id_key"]

logger = logging.getLogger("target_planhat.ledger")

DAY = 86400
_PREFIX = "tp_ledger_"
_EVENT_DAY = "e"  # tp_ledger_<n>_e<YYYYMMDD>: by event day; tp_ledger_<n>_<day>: undated ids
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tp_tenants (tenant TEXT NOT NULL PRIMARY KEY, n BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tp_ledger_last (tbl TEXT NOT NULL PRIMARY KEY,"
    " last BIGINT NOT NULL)",
)


_KEY = struct.Struct(">qq")
_TIMED_KEY = struct.Struct(">Hqq")  # (minute of the day, hi, lo): a key in an event day's table
Key = tuple[int, int]  # the id as stored: 128 bits of BLAKE2b as two signed 64-bit integers
TimedKey = tuple[int, int, int]
_UNDATED_KEY = ("hi", "lo")  # the key columns of an undated table, and of a Key
_TIMED_COLUMNS = ("t", "hi", "lo")  # of an event day's table, and of a TimedKey


#: SQLite: a batch travels as one JSON array of texts, a row each, every column written as
#: ``%+020d`` (a sign and 19 digits hold any 64-bit integer) and read back with ``substr`` and
#: ``CAST``. Plain strings are atoms to ``json_each``; rows as arrays (``[t, hi, lo]``) cost it
#: the array's text for each row's ``value`` and then a parse of it per ``->>``. A 10,000-key
#: lookup and record take about 20% less CPU this way, formatting included (made once per
#: batch); and it needs no SQLite newer than JSON1 (``->>`` is 3.38+).
_COLUMN_TEXT = "%+020d"
_COLUMN_WIDTH = 20


def _row_texts(rows: Sequence[tuple[int, ...]], width: int) -> str:
    """``rows`` (tuples of ``width`` integers) as the JSON parameter :func:`_text_columns` reads."""
    return orjson.dumps(list(map((_COLUMN_TEXT * width).__mod__, rows))).decode()


def _text_columns(width: int) -> list[str]:
    """The SQL of each column of a ``json_each`` row written by :func:`_row_texts`."""
    return [
        f"CAST(substr(value, {1 + i * _COLUMN_WIDTH}, {_COLUMN_WIDTH}) AS INTEGER)"
        for i in range(width)
    ]


def _key_columns(keys: Sequence[tuple[int, ...]]) -> tuple[str, ...]:
    """The columns ``keys`` (Keys or TimedKeys) stand for."""
    return _TIMED_COLUMNS if keys and len(keys[0]) == 3 else _UNDATED_KEY


_DAY_TEXT = operator.itemgetter(slice(0, 10))
_HH_MM = operator.itemgetter(slice(11, 16))
# "HH:MM" -> the minute of the day as 2 big-endian bytes, the prefix of a timed key.
_MINUTE = {
    f"{h:02d}:{m:02d}": (h * 60 + m).to_bytes(2, "big") for h in range(24) for m in range(60)
}


def _keys(digests: list[bytes]) -> list[Key]:
    """Sorted digests as stored keys, so the store probes and inserts them in key order.

    In key order consecutive B-tree probes and inserts land on neighbouring pages: in a ledger
    of millions of ids each page is read once per batch, not once per id. Digests sort as bytes
    (one ``memcmp`` per comparison, about half the cost of sorting the integer pairs); a
    negative first half sorts after the positive ones, which leaves two ascending runs.
    """
    digests.sort()
    return list(map(_KEY.unpack, digests))


def _timed_keys(keys: list[bytes]) -> list[TimedKey]:
    """Sorted minute-and-digest keys as stored: by minute first, so a batch's are neighbours."""
    keys.sort()
    return list(map(_TIMED_KEY.unpack, keys))


def id_key(activity_id: str) -> Key:
    """The id as stored: 128 bits of BLAKE2b (any string, lone surrogates included).

    Two 64-bit integers rather than 16 bytes: the same size on disk, and a batch of them
    travels as one JSON (SQLite) or array (PostgreSQL) parameter instead of a row at a time.
    """
    return _KEY.unpack(id_digest(activity_id))


@functools.lru_cache(maxsize=4096)
def _event_day(text: str) -> str | None:
    """``2026-11-30`` -> ``20261130`` (a table name's day), or None where it is not a date."""
    digits = text[:4] + text[5:7] + text[8:10]
    if len(text) != 10 or text[4] != "-" or text[7] != "-" or not digits.isascii():
        return None
    if not digits.isdigit():  # and never a sign or a space: it becomes part of a table name
        return None
    try:
        datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None
    return digits


class _Batch:
    """A batch's ids as keys: by event day where the date is an ISO 8601 UTC text (what
    ``validate`` makes of every activity's date), and the rest, undated, by digest alone."""

    __slots__ = ("_sorted", "by_day", "dates", "digests", "undated")

    def __init__(
        self,
        ids: Sequence[str],
        dates: Sequence[str | None] | None,
        digests: list[bytes] | None = None,
    ) -> None:
        self.dates = dates
        self.digests = digests = id_digests(ids) if digests is None else digests
        self.by_day: dict[str, list[bytes]] = {}
        self.undated: list[bytes] = []
        self._sorted: dict[str, list[TimedKey]] = {}
        if dates is None:
            self.undated = list(digests)
            return
        if len(dates) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(dates)} dates")
        if dates and all(map(isinstance, dates, repeat(str))):
            # The usual batch: one day, every date well formed; C-level maps, no Python loop.
            texts = cast("Sequence[str]", dates)
            minutes = list(map(_MINUTE.get, map(_HH_MM, texts)))
            days = set(map(_DAY_TEXT, texts))
            if len(days) == 1 and None not in minutes:
                day = _event_day(days.pop())
                if day is not None:
                    self.by_day[day] = list(
                        map(bytes.__add__, cast("list[bytes]", minutes), digests)
                    )
                    return
        for date, digest in zip(dates, digests, strict=True):
            prefix = _MINUTE.get(date[11:16]) if isinstance(date, str) else None
            day = _event_day(date[:10]) if prefix is not None and date is not None else None
            if prefix is None or day is None:
                self.undated.append(digest)
            else:
                self.by_day.setdefault(day, []).append(prefix + digest)

    def timed(self, day: str) -> list[TimedKey]:
        """``day``'s keys as stored, sorted (once: the lookup's, then the record's)."""
        keys = self._sorted.get(day)
        if keys is None:
            keys = self._sorted[day] = _timed_keys(self.by_day[day])
        return keys


class Ledger:
    """Acknowledged ids of one tenant, in a store shared with other tenants and processes.

    ``known`` and ``record`` take the activities' dates beside their ids (``dates[i]`` the ISO
    8601 UTC ``date`` of ``ids[i]``), as a run does: an id is looked up in its event day's
    table. Without dates, ids are recorded undated (by day of acknowledgement, probed on every
    lookup, as 0.1.0's were) and looked up everywhere, event days' tables scanned: right, but
    slow as the ledger grows, for tools and tests.
    """

    def __init__(
        self,
        where: Store | str | Path,
        ttl_days: float = 7.0,
        tenant_token: str = "",
    ) -> None:
        self.store = where if isinstance(where, Store) else open_path(where, tenant_token)
        self._own_store = not isinstance(where, Store)
        self._looked_up: tuple[list[str], list[str | None] | None, _Batch] | None = None
        # SQLite: the JSON parameter of each key list of the last lookup, kept with the list it
        # was made from (so the identity check is sound): ``record`` sends the same keys again.
        self._texts: dict[int, tuple[Sequence[tuple[int, ...]], int, str]] = {}
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

    def _event_table(self, day: str) -> str:
        return f"{self._prefix}{_EVENT_DAY}{day}"

    @staticmethod
    def _timed(table: str) -> bool:
        return table.rsplit("_", 1)[1].startswith(_EVENT_DAY)

    def _columns(self, table: str) -> tuple[str, ...]:
        """``table``'s primary key columns."""
        return _TIMED_COLUMNS if self._timed(table) else _UNDATED_KEY

    @staticmethod
    def _day_of(table: str) -> int:
        return int(table.rsplit("_", 1)[1])

    def _partitions(self, refresh: bool = True) -> list[str]:
        """This tenant's tables, event days first (another process may have added one)."""
        if refresh:
            self._existing = set(self.store.tables(self._prefix))
        timed = sorted((t for t in self._existing if self._timed(t)), reverse=True)
        undated = sorted(
            (t for t in self._existing if not self._timed(t)), key=self._day_of, reverse=True
        )
        return timed + undated

    def _ensure_partition(self, table: str) -> str:
        """Inside a transaction: ``table``, created if missing."""
        if table not in self._existing:
            self.store.lock(f"ledger:ddl:{self.number}")
            key = self._columns(table)
            columns = "".join(f"{c} BIGINT NOT NULL, " for c in key)
            self.store.execute(
                f"CREATE TABLE IF NOT EXISTS {table} ({columns}at BIGINT NOT NULL,"
                f" PRIMARY KEY ({', '.join(key)})){self._suffix}"
            )
        return table

    def _missing_table(self, exc: BaseException) -> bool:
        """A table dropped by another process's prune between listing and reading it."""
        text = str(exc)
        return "no such table" in text or ("does not exist" in text and _PREFIX in text)

    # --- the interface -------------------------------------------------------------------------

    def known(self, ids: Sequence[str], dates: Sequence[str | None] | None = None) -> set[str]:
        """The subset of ``ids`` already acknowledged for this tenant."""
        if not ids:
            return set()
        batch = _Batch(ids, dates)
        # ``record`` usually follows with these ids (or a subset): hash and sort them once.
        self._looked_up = (list(ids), None if dates is None else list(dates), batch)
        self._texts = {}
        for attempt in range(3):
            try:
                found = self._known_keys(batch)
                if not found:
                    return set()  # the usual batch: new events
                by_digest = dict(zip(batch.digests, ids, strict=True))
                return {by_digest[_KEY.pack(*k)] for k in found}
            except StoreError:
                raise
            except Exception as exc:
                if attempt == 2 or not self._missing_table(exc):
                    raise
        raise AssertionError("unreachable")

    def _rows_of(self, keys: Sequence[tuple[int, ...]]) -> tuple[str, tuple[object, ...]]:
        """The rows ``q(hi, lo)`` or ``q(t, hi, lo)`` of ``keys``: SQL and its parameters, one
        for the whole batch."""
        names = _key_columns(keys)
        if self._pg:
            arrays = ", ".join("?::bigint[]" for _ in names)
            return (
                f"SELECT * FROM unnest({arrays}) AS q({', '.join(names)})",
                tuple([k[i] for k in keys] for i in range(len(names))),
            )
        columns = ", ".join(
            f"{sql} AS {n}" for sql, n in zip(_text_columns(len(names)), names, strict=True)
        )
        return f"SELECT {columns} FROM json_each(?)", (
            self._row_texts(keys, len(names), keep=True),
        )

    def _row_texts(self, rows: Sequence[tuple[int, ...]], width: int, keep: bool = False) -> str:
        """:func:`_row_texts`, made once for the keys a lookup (``keep``) and its record send."""
        kept = self._texts.get(id(rows))
        if kept is not None and kept[0] is rows and kept[1] == width:
            return kept[2]
        text = _row_texts(rows, width)
        if keep:  # only a lookup's: until the next lookup, so at most one batch's
            self._texts[id(rows)] = (rows, width, text)
        return text

    def _probe(
        self, table: str, keys: Sequence[tuple[int, ...]], n: int
    ) -> tuple[str, str, tuple[object, ...]]:
        """One part of a lookup, ``keys`` probed by primary key in ``table``: its CTE ``q{n}``,
        its SELECT and the CTE's parameters.

        A probe per id, never a scan of a table (its cost would grow with the ledger): SQLite's
        CROSS JOIN keeps the batch as the outer loop; PostgreSQL, once it has statistics, would
        hash-join a whole table, and a LATERAL ... LIMIT 1 it cannot flatten keeps it to index
        probes.
        """
        rows, params = self._rows_of(keys)
        columns = _key_columns(keys)
        match = " AND ".join(f"p.{c} = q{n}.{c}" for c in columns)
        if len(columns) == 2 and self._timed(table):
            # Ids without their dates in an event day's table: no key to probe, a scan.
            cte = f"q{n} AS ({rows})"
            select = (
                f"SELECT p.hi, p.lo FROM {table} AS p WHERE (p.hi, p.lo) IN"
                f" (SELECT hi, lo FROM q{n})"
            )
        elif self._pg:
            cte = f"q{n} AS MATERIALIZED ({rows})"
            select = (
                f"SELECT r.hi, r.lo FROM q{n} CROSS JOIN LATERAL (SELECT p.hi, p.lo FROM {table}"
                f" AS p WHERE {match} LIMIT 1) AS r"
            )
        else:
            cte = f"q{n} AS ({rows})"
            select = f"SELECT p.hi, p.lo FROM q{n} CROSS JOIN {table} AS p ON {match}"
        return cte, select, params

    def _known_keys(self, batch: _Batch) -> set[Key]:
        self._partitions()
        parts: list[tuple[str, str, tuple[object, ...]]] = []
        for day in sorted(batch.by_day):
            table = self._event_table(day)
            if table in self._existing:
                parts.append(self._probe(table, batch.timed(day), len(parts)))
        undated = self._undated_tables(refresh=False)
        if batch.dates is None:
            # Looked up without dates (tools, tests): every event day's table, scanned.
            undated = sorted(self._existing)
        if undated:
            # Ids without a date, and every id while undated tables (0.1.0's) remain.
            everything = [*batch.undated, *(k[2:] for keys in batch.by_day.values() for k in keys)]
            flat = _keys(everything)
            for table in undated:
                parts.append(self._probe(table, flat, len(parts)))
        if not parts:
            return set()
        ctes = ", ".join(part[0] for part in parts)
        union = " UNION ALL ".join(part[1] for part in parts)
        params = [p for part in parts for p in part[2]]
        rows = self.store.execute(f"WITH {ctes} {union}", params)
        return {(int(r[0]), int(r[1])) for r in rows}

    def record(
        self,
        ids: Sequence[str],
        at: float | None = None,
        dates: Sequence[str | None] | None = None,
    ) -> None:
        """Record acknowledged ids (``dates`` beside them) in one transaction, committed when
        this returns.

        Retried within ``max_retry_seconds`` when the store's connection is lost; then
        ``StoreError``.
        """
        when = int(time.time() if at is None else at)
        looked_up = self._looked_up
        if (
            looked_up is not None
            and looked_up[0] == ids
            and looked_up[1] == (None if dates is None else list(dates))
        ):
            batch = looked_up[2]  # what ``known`` was just asked: keys made and sorted there
        else:
            # A subset (a split batch, roll-ups): the digests known made, where it made them.
            recent = (
                {}
                if looked_up is None
                else dict(zip(looked_up[0], looked_up[2].digests, strict=True))
            )
            batch = _Batch(ids, dates, [recent.get(i) or id_digest(i) for i in ids])
        # A repeated id is inserted once: ON CONFLICT DO NOTHING within the statement too.
        parts: list[tuple[str, Sequence[tuple[int, ...]]]] = [
            (self._event_table(day), batch.timed(day)) for day in sorted(batch.by_day)
        ]
        if batch.undated:
            parts.append((self._table(when // DAY), _keys(list(batch.undated))))
        self._write(parts, when)

    def _insert_sql(
        self, table: str, rows: Sequence[tuple[int, ...]], at: int | None
    ) -> tuple[str, tuple[object, ...]]:
        """INSERT of ``rows`` (keys, all acknowledged ``at``; or keys and each its own ``at``
        last when ``at`` is None: copies, the migration) into ``table``.

        A run's batch binds its one ``at`` once instead of repeating it per row: SQLite then
        parses less JSON per id.
        """
        key = self._columns(table)
        width = len(key) + (at is None)
        params: tuple[object, ...] = () if at is None else (at,)
        if self._pg:
            names = [f"c{i}" for i in range(width)]
            stamp = "?::bigint" if at is not None else names[-1]
            arrays = ", ".join("?::bigint[]" for _ in names)
            select = (
                f"SELECT {', '.join(names[: len(key)])}, {stamp}"
                f" FROM unnest({arrays}) AS q({', '.join(names)})"
            )
            params += tuple([r[i] for r in rows] for i in range(width))
        else:
            values = _text_columns(width)
            stamp = "?" if at is not None else values[-1]
            select = f"SELECT {', '.join(values[: len(key)])}, {stamp} FROM json_each(?) WHERE true"
            params += (self._row_texts(rows, width),)
        columns = ", ".join(key)
        return (
            f"INSERT INTO {table} ({columns}, at) {select} ON CONFLICT ({columns}) DO NOTHING",
            params,
        )

    def _write(
        self, parts: Sequence[tuple[str, Sequence[tuple[int, ...]]]], at: int | None
    ) -> None:
        """Insert each ``(table, rows)`` of ``parts``, all in one transaction.

        Locks are taken in one order, so concurrent writers and a prune never wait on each
        other in a circle: the DDL lock first (only if a table must be created), then each
        table's ``tp_ledger_last`` row and rows, tables in name order.
        """
        parts = sorted((part for part in parts if part[1]), key=lambda part: part[0])
        if not parts:
            return
        store = self.store
        statements = [self._insert_sql(table, rows, at) for table, rows in parts]

        def work() -> None:
            if any(table not in self._existing for table, _ in parts):
                store.lock(f"ledger:ddl:{self.number}")
            for (table, rows), (sql, params) in zip(parts, statements, strict=True):
                self._ensure_partition(table)
                if self._timed(table):
                    last = at if at is not None else max(r[-1] for r in rows)
                    store.execute(
                        "INSERT INTO tp_ledger_last (tbl, last) VALUES (?, ?) ON CONFLICT (tbl)"
                        " DO UPDATE SET last = excluded.last"
                        " WHERE excluded.last > tp_ledger_last.last",
                        (table, last),
                    )
                store.execute(sql, params)

        try:
            store.atomic(work)
        except StoreError:
            raise
        except Exception as exc:
            # Our list of tables is stale: another process pruned one, or a server crash lost
            # its creation (asynchronous commit). Create them again, once.
            if not self._missing_table(exc):
                raise
            self._partitions()
            store.atomic(work)
        self._existing.update(table for table, _ in parts)

    def discard(self, ids: Iterable[str]) -> int:
        """Forget these ids (wherever they are, by scanning: for tests); how many were there."""
        batch, params = self._rows_of([id_key(i) for i in ids])
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

        Whole tables go, never a row at a time: an event day's table once nothing was written
        to it for ``ttl_days``, an undated day once every id in it is older than that. An id
        is kept at least ``ttl_days`` after it was acknowledged, never less.
        """
        cutoff = int(time.time() - ttl_days * DAY)
        undated = [t for t in self._undated_tables() if (self._day_of(t) + 1) * DAY <= cutoff]
        escaped = f"{self._prefix}{_EVENT_DAY}".replace("_", "\\_")
        stale = self.store.execute(
            "SELECT tbl FROM tp_ledger_last WHERE tbl LIKE ? ESCAPE '\\' AND last <= ?",
            (escaped + "%", cutoff),
        )
        return self._drop(undated) + self._drop(sorted(r[0] for r in stale), cutoff)

    def _undated_tables(self, refresh: bool = True) -> list[str]:
        return [t for t in self._partitions(refresh) if not self._timed(t)]

    def _drop(self, tables: Sequence[str], unwritten_since: int | None = None) -> int:
        """Drop ``tables`` whole (an event day's only if not written after ``unwritten_since``,
        checked again under the lock: another process may have just written to it)."""
        pruned = 0
        store = self.store
        for table in tables:

            def work(table: str = table) -> int:
                store.lock(f"ledger:ddl:{self.number}")
                forget_last = "DELETE FROM tp_ledger_last WHERE tbl = ?"
                if self._timed(table) and unwritten_since is None:
                    store.execute(forget_last, (table,))
                elif self._timed(table) and not store.execute(
                    f"{forget_last} AND last <= ? RETURNING tbl", (table, unwritten_since)
                ):
                    return 0  # written meanwhile, or dropped by another process
                if table not in store.tables(table):
                    return 0  # another process dropped it first
                count = self._rows(table)
                store.execute(f"DROP TABLE {table}")
                return count

            pruned += store.atomic(work)
            self._existing.discard(table)
        return pruned

    def forget(self, since: float | None = None, until: float | None = None) -> int:
        """Forget the ids acknowledged in ``[since, until)`` (either end open); how many.

        For re-sending after fixing a mapping: Planhat then keeps both copies. Everything
        forgotten drops whole tables; a time range deletes row by row (an operator's command,
        not a run's step).
        """
        if since is None and until is None:
            return self._drop(self._partitions())
        low = -(2**62) if since is None else int(since)
        high = 2**62 if until is None else int(until)
        today = int(time.time()) // DAY
        whole: list[str] = []
        forgotten = 0
        for table in self._partitions():
            if not self._timed(table):
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
            mine = self._prefix + table.rsplit("_", 1)[1]
            key = self._columns(table)
            select = f"SELECT {', '.join(key)}, at FROM {table}"
            for rows in _pages(source.store, select, key):
                self._write([(mine, [tuple(int(v) for v in r) for r in rows])], None)
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
                    self._write([(self._table(day), items)], None)  # joins this transaction
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
