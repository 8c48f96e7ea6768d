"""Which rejected events are already in the dead-letter file: (event id, reason), per tenant.

A replay (Meltano resumes from the last STATE, or a tap re-exports a day) brings the same invalid
events again; appending them to the dead-letter file each time makes it grow with every replay
and hides what is new. The dead-letter file remembers nothing, so the store does: a replayed
event rejected for the same reason is counted (``rejected_again``) and not written again.

Ids are kept as hex hashes (fixed size, any text) after the event's hour where its date is known
(:func:`event_key`), with the reason and when they were first written; they are pruned after
``ledger_ttl_days`` like the ledger, whose replay window they share.
"""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Iterable, Sequence

import orjson

from target_planhat.digests import digests
from target_planhat.store import Store

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tp_rejected (tenant TEXT NOT NULL, id TEXT NOT NULL,"
    " reason TEXT NOT NULL, rejected_at BIGINT NOT NULL, PRIMARY KEY (tenant, id, reason))",
    "CREATE INDEX IF NOT EXISTS tp_rejected_at ON tp_rejected (tenant, rejected_at)",
)

Pair = tuple[str, str]  # (event id, reason)


_HOUR = 10  # "2024030108": the hour of the event's date, a key's prefix
_SEPARATOR = "\x1f"


def event_key(event_id: str, date: object) -> str:
    """The id a rejected event is remembered by: its hour, where ``date`` is an ISO 8601 text,
    then its event id.

    A replay brings the same event with the same date, so the same key. The hour leads the key
    as stored: Amplitude exports in time order, so a settle's keys land side by side in the
    table's index instead of on a random page each (a commit then writes a few pages, not most
    of the index: about half the time per settle).
    """
    if isinstance(date, str):
        hour = _hour(date[:13])
        if hour:
            return f"{hour}{_SEPARATOR}{event_id}"
    return event_id


@functools.lru_cache(maxsize=1024)
def _hour(text: str) -> str:
    """``2024-03-01T08`` -> ``2024030108``, else "". Cached: a run's rejected events share a
    few hours, and this runs for each of them in the thread reading input."""
    if len(text) == 13 and text[4] + text[7] + text[10] == "--T":
        hour = text[:4] + text[5:7] + text[8:10] + text[11:13]
        if _is_hour(hour):
            return hour
    return ""


def _is_hour(text: str) -> bool:
    """``text`` is 10 ASCII digits: an hour :func:`event_key` lays out (never other id text)."""
    return len(text) == _HOUR and text.isascii() and text.isdigit()


@functools.lru_cache(maxsize=1024)
def _prefix(head: str) -> str:
    """The hour :func:`event_key` put before the id, given a key's first 11 characters, or ""
    (only where it is laid out). Cached: a settle's keys share a few hours."""
    hour = head[:_HOUR]
    return hour if head[_HOUR:] == _SEPARATOR and _is_hour(hour) else ""


_HEAD = operator.itemgetter(slice(0, _HOUR + 1))


def _hashes(event_ids: Sequence[str]) -> list[str]:
    """Each event id (a key) as stored: its hour if it has one, then its 128-bit digest
    (``digests.py``, of the whole key) in hex. C-level maps: a settle runs beside the thread
    reading input, holding the GIL that thread waits for."""
    hours = map(_prefix, map(_HEAD, event_ids))
    return list(map(str.__add__, hours, map(bytes.hex, digests(event_ids))))


_EVENT_ID, _REASON = operator.itemgetter(0), operator.itemgetter(1)


class RejectedIds:
    """The (event id, reason) pairs this tenant's dead-letter lines were written for."""

    def __init__(self, store: Store, ttl_days: float = 7.0, one_statement: bool = True) -> None:
        self.store = store
        #: SQLite: each batch in one statement (JSON); False: the plain ``?`` lists, which
        #: PostgreSQL always uses (the tests compare the two).
        self.one_statement = one_statement
        store.ensure_schema("rejected", SCHEMA)
        self.pruned = self.prune(ttl_days)
        # The hashes of the pairs ``known`` was last asked about: ``remember`` follows with
        # those not found (the dead-letter file's settle), which need not be hashed again.
        self._hashed: dict[Pair, str] = {}

    def prune(self, ttl_days: float) -> int:
        cutoff = int(time.time() - ttl_days * 86400)
        store = self.store

        def work() -> int:
            rows = store.execute(
                "SELECT COUNT(*) FROM tp_rejected WHERE tenant = ? AND rejected_at < ?",
                (store.tenant, cutoff),
            )
            store.execute(
                "DELETE FROM tp_rejected WHERE tenant = ? AND rejected_at < ?",
                (store.tenant, cutoff),
            )
            return int(rows[0][0])

        return store.atomic(work)

    def known(self, pairs: Sequence[Pair]) -> set[Pair]:
        """Those of ``pairs`` already written to the dead-letter file."""
        store = self.store
        stored = _hashes(list(map(_EVENT_ID, pairs)))
        self._hashed = dict(zip(pairs, stored, strict=True))
        # A row (stored id, reason) is one pair: the stored id stands for one event id.
        by_row = dict(zip(zip(stored, map(_REASON, pairs), strict=True), pairs, strict=True))
        hashes = sorted(set(stored))
        rows: list[tuple[object, ...]] = []
        if store.kind == "sqlite" and self.one_statement:
            # The batch as one JSON parameter: one statement, so sqlite3 lets go of the GIL
            # once for it, not once per id as for a list of ``?`` (the dead-letter file settles
            # in a thread beside the one reading input, see rejects.py).
            rows = store.execute(
                "SELECT t.id, t.reason FROM json_each(?) AS q"
                " CROSS JOIN tp_rejected AS t ON t.tenant = ? AND t.id = q.value",
                (orjson.dumps(hashes).decode(), store.tenant),
            )
        else:
            step = max(1, store.max_params - 1)
            for start in range(0, len(hashes), step):
                chunk = hashes[start : start + step]
                marks = ", ".join("?" * len(chunk))
                rows += store.execute(
                    f"SELECT id, reason FROM tp_rejected WHERE tenant = ? AND id IN ({marks})",
                    (store.tenant, *chunk),
                )
        return {by_row[row] for row in map(tuple, rows) if row in by_row}

    def _hashes_of(self, pairs: Sequence[Pair]) -> list[str]:
        """The stored id of each pair: from the last ``known`` where it was asked, else made."""
        hashed = self._hashed
        if not hashed.keys() >= set(pairs):  # the usual settle asked known about them all
            missing = [pair for pair in pairs if pair not in hashed]
            made = _hashes(list(map(_EVENT_ID, missing)))
            hashed = {**hashed, **dict(zip(missing, made, strict=True))}
        return list(map(hashed.__getitem__, pairs))

    def remember(self, pairs: Iterable[Pair]) -> None:
        """Record pairs whose dead-letter lines are durable (synced) now."""
        store = self.store
        now = int(time.time())
        pairs = list(pairs)
        hashed_ids = self._hashes_of(pairs)
        # Lazy: each branch below reads it at most once, and the usual settle (one reason) not
        # at all; it is read before any of the id lists is sorted in place.
        stored = zip(hashed_ids, map(_REASON, pairs), strict=True)
        if store.kind == "sqlite" and self.one_statement:
            # One statement per reason (a run has few), each id list as one JSON parameter:
            # see known().
            by_reason: dict[str, list[str]] = {}
            reasons = set(map(_REASON, pairs))
            if len(reasons) == 1:  # the usual settle: one reason, no loop per id
                by_reason[reasons.pop()] = hashed_ids
            else:
                for hashed_id, reason in stored:
                    by_reason.setdefault(reason, []).append(hashed_id)
            if not by_reason:
                return
            for hashes in by_reason.values():
                hashes.sort()  # in index order

            def insert() -> None:
                for reason, hashes in by_reason.items():
                    store.execute(
                        "INSERT INTO tp_rejected (tenant, id, reason, rejected_at)"
                        " SELECT ?, value, ?, ? FROM json_each(?) WHERE true"
                        " ON CONFLICT (tenant, id, reason) DO NOTHING",
                        (store.tenant, reason, now, orjson.dumps(hashes).decode()),
                    )

            store.atomic(insert)
            return
        rows = [(store.tenant, hashed_id, reason, now) for hashed_id, reason in stored]
        if not rows:
            return
        store.atomic(
            lambda: store.executemany(
                "INSERT INTO tp_rejected (tenant, id, reason, rejected_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant, id, reason) DO NOTHING",
                rows,
            )
        )
