"""The delivery ledger: ids of activities Planhat has acknowledged, per tenant, in the store.

Planhat has no idempotency key, so a replay after a crash (Meltano resumes from the last STATE)
would record every activity of the unacknowledged tail twice. The ledger remembers what was
acknowledged, so a replay sends only what Planhat never confirmed. It lives in the store
(``store.py``): an SQLite file at ``ledger_path`` (WAL: a committed transaction survives
``kill -9``), or PostgreSQL at ``ledger_url`` where the local disk does not survive the run.

Layout, chosen so a batch's cost stays flat however many ids the ledger keeps
(``benchmarks/README.md`` has the figures):

- ids are kept as 128-bit BLAKE2b hashes (22 characters of base64, whatever the id's length):
  a collision would silently drop a real event, and at 128 bits one among 10^9 ids has a
  chance of ~10^-21;
- one table per tenant and *event* day (the activity's ``date``, UTC),
  ``tp_ledger_<tenant number>_e<YYYYMMDD>``, with ``(k, at)`` keyed by ``k``: the event's
  minute of the day (2 base-64 digits) and the hash, ``at`` when Planhat acknowledged it. A replay
  carries the same date, so a lookup probes only its own day's table, and Amplitude exports
  events in time order, so a batch's keys sit side by side in that table: a batch reads and
  writes a few neighbouring pages, not one page per id spread over the whole ledger. About 39
  bytes per id in SQLite;
- ``tp_ledger_last`` keeps when each day's table was last written; pruning drops whole tables
  not written for ``ledger_ttl_days``, in time proportional to what it drops (it never scans
  what it keeps), and one tenant's TTL never prunes another tenant's ids. An event of last
  month replayed today is kept as long as one of today;
- ids without a date (a 0.1.0 ledger's, which never stored one) live in tables by day of
  acknowledgement, ``tp_ledger_<tenant number>_<UTC day>`` keyed by the hash alone, probed for
  every lookup until the TTL prunes them;
- ``tp_tenants`` maps the tenant fingerprint (never the token, see ``store.py``) to its number.

A 0.1.0 ledger file (one ``acked`` table, no tenant) is migrated in place the first time it is
opened, in one transaction: its ids become the opening tenant's, none is lost.
"""

from __future__ import annotations

import binascii
import datetime
import functools
import logging
import operator
import re
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


#: A key is text: the digest in 22 base-64 digits, after the event's minute of the day in 2 of
#: them in an event day's table. One text column keyed by itself, where a key was
#: ``(t, hi, lo)`` integers: a batch travels to SQLite as one JSON array of plain strings, which
#: ``json_each`` hands over as they are (no per-row parsing or casting), and a lookup plus record
#: of a 10,000-id batch takes about half the CPU (``benchmarks/README.md``). Base 64 keeps a key
#: short (issue 15's 40 bytes per id); its digits here are in ASCII order, so keys sort as the
#: numbers they stand for, minutes first: a batch's keys, sorted, are neighbours in the table.
_DIGEST_WIDTH = 22
_MINUTE_WIDTH = 2
_TIMED_WIDTH = _MINUTE_WIDTH + _DIGEST_WIDTH
_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ORDERED = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_TO_ORDERED = bytes.maketrans(_BASE64, _ORDERED)
_DIGITS = _ORDERED.decode()
_LAID_OUT = 18  # bytes of a digest with two zero bytes before it: 24 base64 characters
# Each group's digest digits, after its two ``--`` (every match takes one whole group).
_GROUPS = re.compile(f"..(.{{{_DIGEST_WIDTH}}})", re.DOTALL)


def _key_texts(digests: Sequence[bytes]) -> list[str]:
    """16-byte digests as keys of an undated table (and the tail of an event day's keys).

    The whole batch in one base64 pass, not a call per digest (this runs in the thread that
    sends, holding the GIL the thread reading input waits for): each digest is laid out after
    two zero bytes, so it fills whole base64 groups, and its key is its group less the first
    two characters (always ``--``, the zero bits).
    """
    n = len(digests)
    if not n:
        return []
    laid_out = b"\0\0" + b"\0\0".join(digests)
    if len(laid_out) != _LAID_OUT * n:
        raise ValueError("digests of 16 bytes expected")
    text = binascii.b2a_base64(laid_out, newline=False).translate(_TO_ORDERED).decode()
    return _GROUPS.findall(text)  # half the time of slicing per key


_DAY_HH_MM = operator.itemgetter(slice(0, 16))
# "HH:MM" -> the minute of the day in 2 base-64 digits, the prefix of a timed key.
_MINUTE = {
    f"{m // 60:02d}:{m % 60:02d}": _DIGITS[m // 64] + _DIGITS[m % 64] for m in range(24 * 60)
}


def id_key(activity_id: str) -> str:
    """The id as stored in an undated table: 128 bits of BLAKE2b in base64 (any string, lone
    surrogates included); an event day's table puts the minute before it."""
    return _key_texts([id_digest(activity_id)])[0]


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


_Part = tuple[str, Sequence[str], Sequence[int] | None]  # (table, keys, when each was acked)


class _Batch:
    """A batch's ids as keys: by event day where the date is an ISO 8601 UTC text (what
    ``validate`` makes of every activity's date), and the rest, undated, by digest alone."""

    __slots__ = ("_sorted", "by_day", "dates", "digests", "undated")

    def __init__(
        self,
        ids: Sequence[str],
        dates: Sequence[str | None] | None,
        digests: list[str] | None = None,
    ) -> None:
        self.dates = dates
        #: each id's digest as a key text (an undated key), in the order of ``ids``
        self.digests = digests = _key_texts(id_digests(ids)) if digests is None else digests
        self.by_day: dict[str, list[str]] = {}
        self.undated: list[str] = []
        self._sorted: dict[str, list[str]] = {}
        if dates is None:
            self.undated = list(digests)
            return
        if len(dates) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(dates)} dates")
        if dates and all(map(isinstance, dates, repeat(str))):
            # The usual batch: one day, every date well formed; C-level maps, no Python loop.
            # Each distinct "YYYY-MM-DDTHH:MM" (a batch has a few hundred) is read once.
            heads = list(map(_DAY_HH_MM, cast("Sequence[str]", dates)))
            prefixes = {head: _MINUTE.get(head[11:16]) for head in set(heads)}
            days = {head[:10] for head in prefixes}
            if len(days) == 1 and None not in prefixes.values():
                day = _event_day(days.pop())
                if day is not None:
                    minutes = cast("dict[str, str]", prefixes)
                    self.by_day[day] = list(
                        map(str.__add__, map(minutes.__getitem__, heads), digests)
                    )
                    return
        for date, digest in zip(dates, digests, strict=True):
            prefix = _MINUTE.get(date[11:16]) if isinstance(date, str) else None
            day = _event_day(date[:10]) if prefix is not None and date is not None else None
            if prefix is None or day is None:
                self.undated.append(digest)
            else:
                self.by_day.setdefault(day, []).append(prefix + digest)

    def timed(self, day: str) -> list[str]:
        """``day``'s keys, sorted (once: the lookup's, then the record's), so the store probes
        and inserts them in key order: neighbouring B-tree pages, each read once per batch."""
        keys = self._sorted.get(day)
        if keys is None:
            keys = self._sorted[day] = sorted(self.by_day[day])
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
        self._texts: dict[int, tuple[Sequence[str], str]] = {}
        store = self.store
        self._pg = store.kind == "postgres"
        # PostgreSQL compares the keys byte by byte (as SQLite does), not by a locale's rules.
        self._key_type = 'TEXT COLLATE "C"' if self._pg else "TEXT"
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

    def _width(self, table: str) -> int:
        """The length of ``table``'s keys."""
        return _TIMED_WIDTH if self._timed(table) else _DIGEST_WIDTH

    def _digest_sql(self, table: str, key: str) -> str:
        """SQL of the digest part of ``table``'s key column ``key`` (an undated key)."""
        return f"substr({key}, {_MINUTE_WIDTH + 1})" if self._timed(table) else key

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
            self.store.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (k {self._key_type} NOT NULL PRIMARY KEY,"
                f" at BIGINT NOT NULL){self._suffix}"
            )
        return table

    def _layout_error(self) -> StoreError | None:
        """Where a lookup failed: a ledger whose tables a development build wrote with integer
        keys ``(t, hi, lo)`` is named, with the way out, instead of "no such column"."""
        if not self._existing:
            return None
        try:
            self.store.execute(f"SELECT k FROM {min(self._existing)} LIMIT 0")
        except Exception as exc:
            return StoreError(
                f"The ledger at {self.store.location} was written by a development build"
                " of target-planhat, in a key layout this version does not read"
                f" ({type(exc).__name__}). Forget it with --forget-delivered, or point"
                " ledger_path / ledger_url at a new ledger."
            )
        return None

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
                return {by_digest[k] for k in found}
            except StoreError:
                raise
            except Exception as exc:
                if attempt == 2 or not self._missing_table(exc):
                    error = self._layout_error()
                    if error is not None:
                        raise error from exc
                    raise
        raise AssertionError("unreachable")

    def _rows_of(self, keys: Sequence[str]) -> tuple[str, tuple[object, ...]]:
        """The rows ``q(k)`` of ``keys``: SQL and its parameter, one for the whole batch."""
        if self._pg:
            return "SELECT * FROM unnest(?::text[]) AS q(k)", (list(keys),)
        return "SELECT value AS k FROM json_each(?)", (self._json(keys, keep=True),)

    def _json(self, keys: Sequence[str], keep: bool = False) -> str:
        """``keys`` as one JSON parameter, made once for the keys a lookup (``keep``) and its
        record send."""
        kept = self._texts.get(id(keys))
        if kept is not None and kept[0] is keys:
            return kept[1]
        text = orjson.dumps(keys).decode()
        if keep:  # only a lookup's: until the next lookup, so at most one batch's
            self._texts[id(keys)] = (keys, text)
        return text

    def _probe(
        self, table: str, keys: Sequence[str], n: int
    ) -> tuple[str, str, tuple[object, ...]]:
        """One part of a lookup, ``keys`` probed by primary key in ``table``: its CTE ``q{n}``,
        its SELECT (of the found keys' digests) and the CTE's parameters.

        A probe per id, never a scan of a table (its cost would grow with the ledger): SQLite's
        CROSS JOIN keeps the batch as the outer loop; PostgreSQL, once it has statistics, would
        hash-join a whole table, and a LATERAL ... LIMIT 1 it cannot flatten keeps it to index
        probes.
        """
        rows, params = self._rows_of(keys)
        digest = self._digest_sql(table, "p.k")
        if keys and len(keys[0]) != self._width(table):
            # Ids without their dates in an event day's table: no key to probe, a scan.
            cte = f"q{n} AS ({rows})"
            select = f"SELECT {digest} FROM {table} AS p WHERE {digest} IN (SELECT k FROM q{n})"
        elif self._pg:
            cte = f"q{n} AS MATERIALIZED ({rows})"
            select = (
                f"SELECT r.d FROM q{n} CROSS JOIN LATERAL (SELECT {digest} AS d FROM {table}"
                f" AS p WHERE p.k = q{n}.k LIMIT 1) AS r"
            )
        else:
            cte = f"q{n} AS ({rows})"
            select = f"SELECT {digest} FROM q{n} CROSS JOIN {table} AS p ON p.k = q{n}.k"
        return cte, select, params

    def _known_keys(self, batch: _Batch) -> set[str]:
        """The digests (undated keys) of ``batch`` the ledger holds."""
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
            flat = sorted(
                [
                    *batch.undated,
                    *(k[_MINUTE_WIDTH:] for keys in batch.by_day.values() for k in keys),
                ]
            )
            for table in undated:
                parts.append(self._probe(table, flat, len(parts)))
        if not parts:
            return set()
        ctes = ", ".join(part[0] for part in parts)
        union = " UNION ALL ".join(part[1] for part in parts)
        params = [p for part in parts for p in part[2]]
        rows = self.store.execute(f"WITH {ctes} {union}", params)
        return {r[0] for r in rows}

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
            missing = [i for i in ids if i not in recent]  # roll-ups' members: made at once
            if missing:
                recent.update(zip(missing, _key_texts(id_digests(missing)), strict=True))
            batch = _Batch(ids, dates, [recent[i] for i in ids])
        # A repeated id is inserted once: ON CONFLICT DO NOTHING within the statement too.
        parts: list[_Part] = [
            (self._event_table(day), batch.timed(day), None) for day in sorted(batch.by_day)
        ]
        if batch.undated:
            parts.append((self._table(when // DAY), sorted(batch.undated), None))
        self._write(parts, when)

    def _insert_sql(
        self, table: str, keys: Sequence[str], stamps: Sequence[int] | None, at: int | None
    ) -> tuple[str, tuple[object, ...]]:
        """INSERT of ``keys`` into ``table``, all acknowledged ``at``, or each at its own time
        of ``stamps`` (copies, the migration).

        A run's batch binds its one ``at`` once instead of repeating it per row: SQLite then
        parses less JSON per id. With ``stamps``, SQLite gets each row as one text, the key
        (every key of a table has the same length) and its time after it.
        """
        conflict = " ON CONFLICT (k) DO NOTHING"
        if stamps is None:
            if self._pg:
                select = "SELECT k, ?::bigint FROM unnest(?::text[]) AS q(k)"
                return f"INSERT INTO {table} (k, at) {select}{conflict}", (at, list(keys))
            select = "SELECT value, ? FROM json_each(?) WHERE true"
            return f"INSERT INTO {table} (k, at) {select}{conflict}", (at, self._json(keys))
        width = self._width(table)
        if any(len(key) != width for key in keys):
            raise ValueError(f"{table}: keys of {width} characters expected")
        if self._pg:
            select = "SELECT k, a FROM unnest(?::text[], ?::bigint[]) AS q(k, a)"
            return f"INSERT INTO {table} (k, at) {select}{conflict}", (list(keys), list(stamps))
        select = (
            f"SELECT substr(value, 1, {width}), CAST(substr(value, {width + 1}) AS INTEGER)"
            " FROM json_each(?) WHERE true"
        )
        rows = orjson.dumps(
            [f"{key}{stamp:d}" for key, stamp in zip(keys, stamps, strict=True)]
        ).decode()
        return f"INSERT INTO {table} (k, at) {select}{conflict}", (rows,)

    def _write(self, parts: Sequence[_Part], at: int | None) -> None:
        """Insert each ``(table, keys, stamps)`` of ``parts`` (``stamps``: when each key was
        acknowledged, or None for ``at``), all in one transaction.

        Locks are taken in one order, so concurrent writers and a prune never wait on each
        other in a circle: the DDL lock first (only if a table must be created), then each
        table's ``tp_ledger_last`` row and rows, tables in name order.
        """
        parts = sorted((part for part in parts if part[1]), key=lambda part: part[0])
        if not parts:
            return
        store = self.store
        statements = [self._insert_sql(*part, at) for part in parts]

        def work() -> None:
            if any(part[0] not in self._existing for part in parts):
                store.lock(f"ledger:ddl:{self.number}")
            for (table, _, stamps), (sql, params) in zip(parts, statements, strict=True):
                self._ensure_partition(table)
                if self._timed(table):
                    last = max(stamps) if stamps is not None else at
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
        self._existing.update(part[0] for part in parts)

    def discard(self, ids: Iterable[str]) -> int:
        """Forget these ids (wherever they are, by scanning: for tests); how many were there."""
        batch, params = self._rows_of(sorted(map(id_key, ids)))

        def work() -> int:
            count = 0
            for table in self._partitions():
                where = f" WHERE {self._digest_sql(table, 'k')} IN (SELECT k FROM ({batch}) AS q)"
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
            for rows in _pages(source.store, f"SELECT k, at FROM {table}", ("k",)):
                self._write([(mine, [r[0] for r in rows], [int(r[1]) for r in rows])], None)
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
                by_day: dict[int, dict[str, int]] = {}
                for activity_id, acked_at in rows:
                    at = int(acked_at)
                    by_day.setdefault(at // DAY, {})[id_key(str(activity_id))] = at
                for day, items in by_day.items():
                    keys = sorted(items)
                    stamps = [items[k] for k in keys]
                    # Joins this transaction.
                    self._write([(self._table(day), keys, stamps)], None)
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
